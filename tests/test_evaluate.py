import numpy as np
import pytest

from kit.report import tables
from kit.scoring import hf as scoring
from kit.stages import evaluate
from kit.tasks import metrics
from kit.tasks.base import parse_label

LABELS = ["a", "b", "c"]


def test_metrics_match_hand_computed_values():
    y = ["a", "a", "b", "b", "c", "c"]
    p = ["a", "b", "b", "b", "c", "a"]
    m = metrics.metrics(y, p, LABELS, bootstrap_samples=200)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2; b: P=2/3 R=1; c: P=1 R=1/2
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    f1 = [0.5, 0.8, 2 / 3]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    lo, hi = m["accuracy_ci95"]
    assert lo <= m["accuracy"] <= hi


def test_bootstrap_interval_covers_the_true_accuracy_most_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(60):
        correct = rng.random(200) < 0.8
        y = ["a"] * 200
        p = ["a" if c else "b" for c in correct]
        lo, hi = metrics.metrics(y, p, ["a", "b"], bootstrap_samples=300, seed=trial)["accuracy_ci95"]
        covered += lo <= 0.8 <= hi
    assert covered / 60 >= 0.85


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _reference_logprobs(model, prompt_ids, conts):
    """One prompt + continuation at a time, whole forward, no cache, no padding: what the fast path must equal."""
    import torch

    out = np.zeros((len(prompt_ids), len(conts)))
    for i, p in enumerate(prompt_ids):
        for j, c in enumerate(conts):
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
            out[i, j] = sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(c))
    return out


# Prompts of different lengths sharing a 20+ token opening, in no length order: padding, sorting and the shared
# prefix all come into play.
SHARED = "Route this support email to one lane. Answer with the lane name only.\n\n"
TICKETS = ["hi", "my claim was denied last week and nobody calls back", "invoice?", "cancel my policy now please",
           "the storm took half the roof, what do I do about the claim for the repairs"]


@pytest.mark.parametrize("labels, single", [(["claim_status", "billing_dispute", "cancel"], True),
                                            (["claim_status", "claim_denied", "billing"], False)])
def test_fast_label_scoring_equals_one_prompt_at_a_time(tiny, tokenizer, labels, single, monkeypatch):
    from kit.models.chat import GEMMA

    prefix_runs = []
    real = scoring._prefix_cache
    monkeypatch.setattr(scoring, "_prefix_cache", lambda *a: prefix_runs.append(len(a[1])) or real(*a))
    monkeypatch.setattr(scoring, "_continuations_per_prompt", None)  # three labels go pair by pair (TREE_FROM)

    prompts = [GEMMA.prompt(t, SHARED) for t in TICKETS]
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    assert evaluate.common_prefix_length(ids) >= 20
    conts = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    assert (evaluate.label_first_tokens(tokenizer, labels) is not None) == single
    fast = evaluate.continuation_logprobs(tiny, ids, [[c[0]] for c in conts] if single else conts, batch_size=4,
                                          pad_id=tokenizer.pad_token_id)
    ref = _reference_logprobs(tiny, ids, [[c[0]] for c in conts] if single else conts)
    assert prefix_runs == [evaluate.common_prefix_length(ids)]  # the shared opening ran once, for all batches
    assert np.allclose(fast, ref, atol=1e-4), np.abs(fast - ref).max()
    probs = evaluate.score_labels(tiny, tokenizer, prompts, labels, batch_size=4, progress=False)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(probs, np.exp(ref) / np.exp(ref).sum(1, keepdims=True), atol=1e-4)


@pytest.mark.parametrize("tree_nodes", [1024, 5])  # one tree per prompt, or several on copies of its cache
def test_many_labels_sharing_first_tokens_run_on_each_prompts_cache(tiny, tokenizer, monkeypatch, tree_nodes):
    """Intent names as teams write them ("card_arrival", "card_declined", ...): continuations of several tokens run
    on top of each prompt's own cache as one tree, and score as one plain forward per pair."""
    from kit.models.chat import GEMMA

    calls = []
    real = scoring._continuations_per_prompt
    monkeypatch.setattr(scoring, "_continuations_per_prompt", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(scoring, "TREE_NODES", tree_nodes)
    labels = [f"{h}_{t}" for h in ("card", "transfer", "top_up") for t in ("arrival", "declined", "pending", "fee")]
    prompts = [GEMMA.prompt(t, SHARED) for t in TICKETS[:3]]
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    conts = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    fast = evaluate.continuation_logprobs(tiny, ids, conts, batch_size=1, pad_id=tokenizer.pad_token_id)
    assert calls == [1] and (len(scoring._trees(conts)) > 2) == (tree_nodes == 5)
    ref = _reference_logprobs(tiny, ids, conts)
    assert np.allclose(fast, ref, atol=1e-4), np.abs(fast - ref).max()


@pytest.mark.parametrize("case", ["no shared prefix", "one prompt", "awkward continuations", "bfloat16"])
def test_tree_scoring_edge_cases_equal_one_prompt_at_a_time(tiny, tokenizer, monkeypatch, case):
    """Prompts with no common opening (no prefix cache), a single prompt (canary candidates: all of it is the shared
    prefix but its last token), continuations that repeat, end where another goes on, or are one token beside longer
    ones, and a bfloat16 model (the additive mask in its dtype)."""
    import torch

    from kit.models.chat import GEMMA

    calls = []
    real = scoring._continuations_per_prompt
    monkeypatch.setattr(scoring, "_continuations_per_prompt", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(scoring, "TREE_FROM", 2)  # trees for these few continuations too
    if case == "no shared prefix":
        ids = tokenizer(TICKETS, add_special_tokens=False)["input_ids"]
        assert evaluate.common_prefix_length(ids) < 8
    else:
        ids = tokenizer([GEMMA.prompt(t, SHARED) for t in TICKETS[:1 if case == "one prompt" else 3]],
                        add_special_tokens=True)["input_ids"]
    conts = [[11, 12], [11, 13, 14], [21, 22, 23]]
    if case == "awkward continuations":
        conts = [[11], [11, 12], [11, 12], [11, 12, 13], [40, 41], [40]]
    model = tiny.to(torch.bfloat16) if case == "bfloat16" else tiny
    try:
        fast = evaluate.continuation_logprobs(model, ids, conts, batch_size=2)
    finally:
        tiny.to(torch.float32)
    assert calls == [1]
    ref = _reference_logprobs(tiny, ids, conts)
    atol = 0.1 if case == "bfloat16" else 1e-4  # bf16 rounding, against the float32 reference
    assert np.allclose(fast, ref, atol=atol), np.abs(fast - ref).max()


@pytest.mark.parametrize("conts", [[[5], [6]], [[5, 9], [5, 6, 7]]])
def test_prompts_longer_than_the_sliding_window_are_scored_without_the_shared_cache(tiny, monkeypatch, conts):
    monkeypatch.setattr(scoring, "_prefix_cache", None)  # calling it would fail the test
    monkeypatch.setattr(scoring, "_continuations_per_prompt", None)  # nor may a prompt's own cache be used
    window = tiny.config.sliding_window
    ids = [[2] + [100 + k for k in range(window)] + [7 + i] * (i + 1) for i in range(3)]  # longer than the window
    fast = evaluate.continuation_logprobs(tiny, ids, conts, batch_size=2)
    assert np.allclose(fast, _reference_logprobs(tiny, ids, conts), atol=1e-4)


@pytest.mark.parametrize("seqs, n", [([[1, 2, 3], [1, 2, 4], [1, 2]], 1), ([[5, 6, 7, 8]] * 3, 3),
                                     ([[1, 2], [3, 4]], 0), ([[1]], 0), ([], 0)])
def test_common_prefix_leaves_a_token_of_the_shortest_sequence(seqs, n):
    assert evaluate.common_prefix_length(seqs) == n


def test_macro_f1_interval_brackets_the_estimate():
    y = ["a", "b", "c"] * 20
    p = ["a", "b", "b"] * 20
    m = metrics.metrics(y, p, LABELS, bootstrap_samples=200)
    lo, hi = m["macro_f1_ci95"]
    assert lo <= m["macro_f1"] <= hi and hi - lo < 0.3


def test_unparseable_answers_count_as_wrong_not_as_a_label():
    m = metrics.metrics(["a", "b"], ["a", None], ["a", "b"], bootstrap_samples=100)
    assert m["accuracy"] == 0.5 and m["confusion"] == [[1, 0], [0, 0]]


def test_ece_and_reliability_bins_match_hand_computed_values():
    conf = [0.95, 0.95, 0.65, 0.65, 0.15, 1.0]
    corr = [1, 0, 1, 1, 0, 1]
    cal = evaluate.calibration(conf, corr, n_bins=10)
    # bin 9: conf .95,.95,1.0 acc 2/3 -> |2/3 - .9667| * 3/6; bin 6: |1 - .65| * 2/6; bin 1: |0 - .15| * 1/6
    expected = abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3) * 3 / 6 + 0.35 * 2 / 6 + 0.15 / 6
    assert cal["ece"] == pytest.approx(expected)
    assert [b["n"] for b in cal["bins"]] == [0, 1, 0, 0, 0, 0, 2, 0, 0, 3]
    assert cal["bins"][6]["accuracy"] == 1.0 and cal["bins"][1]["confidence"] == pytest.approx(0.15)


def test_a_perfectly_calibrated_model_has_ece_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    corr = rng.random(20000) < conf
    assert evaluate.calibration(conf, corr)["ece"] < 0.02
    assert evaluate.calibration(conf, np.ones_like(corr))["ece"] > 0.2  # always right, under-confident


def test_coverage_curve_and_handoff_match_hand_computed_values():
    conf, corr = [0.6, 0.9, 0.7, 0.8], [1, 1, 1, 0]
    cov = evaluate.coverage_curve(conf, corr)
    assert cov["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert cov["accuracy"] == pytest.approx([1.0, 0.5, 2 / 3, 0.75])
    h = evaluate.at_threshold(conf, corr, 0.75)
    assert h == {"threshold": 0.75, "coverage": 0.5, "handed_to_person": 2, "accuracy_automated": 0.5,
                 "errors_automated": 1}
    assert evaluate.at_threshold(conf, corr, 0.95)["accuracy_automated"] is None


def test_escalation_rates_match_hand_computed_values():
    y = ["esc", "esc", "esc", "x", "x", "x", "x", "y"]
    p = ["esc", "x", "x", "esc", "x", "x", "x", "esc"]
    e = metrics.escalation(y, p, "esc")
    assert (e["positives"], e["negatives"], e["wrong_escalations"], e["missed_escalations"]) == (3, 5, 2, 2)
    assert e["wrong_escalation_rate"] == pytest.approx(2 / 5) and e["missed_escalation_rate"] == pytest.approx(2 / 3)


def test_json_outputs_are_scored_for_validity_and_per_field_matches():
    expected = [{"lane": "a", "urgent": True}, {"lane": "b", "urgent": False}, {"lane": "c", "urgent": False}]
    outputs = ['{"lane": "a", "urgent": true}', '{"lane": "b", "urgent": true}', "lane: c"]
    m = metrics.json_field_metrics(expected, outputs)
    assert m["validity_rate"] == pytest.approx(2 / 3) and m["exact_match"] == pytest.approx(1 / 3)
    assert m["field_exact_match"] == {"lane": pytest.approx(2 / 3), "urgent": pytest.approx(1 / 3)}


@pytest.mark.parametrize("text, label", [("billing_dispute", "billing_dispute"), (" billing_dispute.\n", "billing_dispute"),
                                         ("claim_status please", "claim_status"), ("claim", None), ("", None),
                                         ("I think billing_dispute", None)])
def test_generated_answers_parse_to_a_label_or_none(text, label):
    assert parse_label(text, ["claim_status", "billing_dispute"]) == label


def test_paired_bootstrap_finds_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    old = rng.random(300) < 0.6
    new = old | (rng.random(300) < 0.3)  # fixes about 30% of the errors, breaks nothing
    d = evaluate.paired_bootstrap(new, old, 1000, 0)
    assert d["significant"] and d["ci95"][0] > 0 and d["delta"] == pytest.approx(new.mean() - old.mean())
    same = evaluate.paired_bootstrap(old, old, 500, 0)
    assert not same["significant"] and same["delta"] == 0


def test_paired_interval_covers_the_true_difference_most_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(50):
        old = rng.random(200) < 0.7
        flip = rng.random(200)
        new = np.where(old, flip > 0.1, flip < 0.4)  # true delta: 0.7*(-0.1) + 0.3*0.4 = +0.05
        lo, hi = evaluate.paired_bootstrap(new, old, 400, trial)["ci95"]
        covered += lo <= 0.05 <= hi
    assert covered / 50 >= 0.85


def test_interval_delta_uses_both_intervals():
    new = {"accuracy": 0.9, "accuracy_ci95": [0.85, 0.95]}
    old = {"accuracy": 0.8, "accuracy_ci95": [0.75, 0.85]}
    d = evaluate.interval_delta(new, old)
    half = 1.96 * np.hypot(0.1 / 3.92, 0.1 / 3.92)
    assert d["delta"] == pytest.approx(0.1) and d["ci95"] == pytest.approx([0.1 - half, 0.1 + half])
    assert d["significant"] and d["method"] == "intervals"


def _write_eval(run_dir, correct, model="tuned"):
    from kit.io import write_json, write_jsonl

    preds = [{"model": model, "id": f"T{i}", "correct": bool(c)} for i, c in enumerate(correct)]
    acc = float(np.mean(correct))
    m = {"models": {model: {"accuracy": acc, "accuracy_ci95": [acc - 0.05, acc + 0.05], "macro_f1": acc}}}
    write_json(run_dir / "eval" / "metrics.json", m)
    write_jsonl(run_dir / "eval" / "predictions.jsonl", preds)
    return m, preds


def test_regression_compare_is_paired_when_previous_predictions_exist(tmp_path):
    old_c = [1] * 60 + [0] * 40
    new_c = [1] * 95 + [0] * 5
    _write_eval(tmp_path / "old", old_c)
    summary, preds = _write_eval(tmp_path / "new", new_c)
    r = evaluate.compare(tmp_path / "old", summary, preds, 500, 0)
    assert r["models"]["tuned"]["method"] == "paired" and r["models"]["tuned"]["significant"]
    assert r["models"]["tuned"]["delta"] == pytest.approx(0.35)
    (tmp_path / "old" / "eval" / "predictions.jsonl").unlink()
    r = evaluate.compare(tmp_path / "old" / "eval" / "metrics.json", summary, preds, 500, 0)
    assert r["models"]["tuned"]["method"] == "intervals"
    with pytest.raises(evaluate.EvalError, match="has no metrics.json"):
        evaluate.compare(tmp_path / "nowhere", summary, preds)


@pytest.mark.parametrize("kw, msg", [({"handoff_confidence": 1.5}, "between 0 and 1"),
                                     ({"few_shot_k": 40}, "few_shot_k"),
                                     ({"canary_candidates": 300}, "10–250"),
                                     ({"endpoint_url": "http://x/v1", "endpoint_gguf_type": "q8_0"}, "not both")])
def test_bad_evaluate_settings_are_rejected(kw, msg):
    with pytest.raises(evaluate.EvalError, match=msg):
        evaluate.EvalConfig(run_dir="x", model="m", **kw)


def test_cohen_kappa_matches_a_hand_computed_value():
    from kit.report import review

    a = [{"model": "m", "id": str(i), "verdict": v} for i, v in enumerate(["pass"] * 6 + ["fail"] * 4)]
    b = [{"model": "m", "id": str(i), "verdict": v} for i, v in enumerate(["pass"] * 5 + ["fail"] * 3 + ["pass"] * 2)]
    # agree on 0-4 and 6-7: 7/10; chance: a passes .6, b .7 -> .6*.7 + .4*.3 = .54; kappa = (.7 - .54) / (1 - .54)
    k = review.answer_kappa(a, b)
    assert k["agreement"] == pytest.approx(0.7) and k["kappa"] == pytest.approx(0.16 / 0.46, abs=1e-3)
    assert review.answer_kappa(a[:1], b[:1])["kappa"] is None
    same = [{**r, "verdict": "pass"} for r in a]  # both used one verdict only: undefined, not a made-up 1.0
    assert review.answer_kappa(same, same) == {"rows": 10, "kappa": None, "agreement": 1.0}


def test_models_table_is_sorted_by_accuracy_and_rounded():
    def model(acc, ece):
        return {"accuracy": acc, "accuracy_ci95": [acc - 0.05, acc + 0.05], "macro_f1": acc - 0.01234,
                "macro_f1_ci95": [acc - 0.1, acc], "ece": ece,
                "escalation": {"wrong_escalation_rate": 1 / 3, "missed_escalation_rate": None}}

    table = tables.models_table({"models": {"base": model(0.4912281, 0.14523), "tuned": model(0.9649122, None)}})
    assert list(table.index) == ["tuned", "base"]
    assert table.loc["tuned", "accuracy"] == 0.965 and table.loc["base", "ECE"] == 0.145
    assert table.loc["base", "macro-F1"] == 0.479 and table.loc["base", "wrong escalations"] == 0.333
    assert table.loc["tuned", "acc ci95"] == "0.915–1.015" and table.loc["tuned", "ECE"] is None


@pytest.mark.parametrize("ci, outcome, words", [([0.01, 0.05], "tuned_better", "earns its place"),
                                                ([-0.02, 0.03], "no_difference", "does not measurably beat"),
                                                ([-0.06, -0.01], "baseline_better", "use the baseline")])
def test_verdict_says_from_the_paired_interval_whether_the_fine_tune_beats_the_best_baseline(ci, outcome, words):
    delta = sum(ci) / 2
    summary = {"best_baseline": "tfidf_logreg",
               "tuned_vs_best_baseline": {"delta": delta, "ci95": ci, "n": 221, "significant": ci[0] > 0 or ci[1] < 0}}
    v = evaluate.verdict(summary, "classify")
    assert v["outcome"] == outcome and v["baseline"] == "tfidf_logreg" and v["metric"] == "accuracy"
    assert words in v["sentence"] and "TF-IDF + logistic regression" in v["sentence"] and "n=221" in v["sentence"]
    assert f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}" in v["sentence"]
    assert "ROUGE-L points" in evaluate.verdict({**summary, "best_baseline": "retrieval"}, "reply")["sentence"]
