"""extract and reply through train, evaluate and export on a tiny random model: every model, metric and parity field
the generative path promises (the real model runs the same path in the smoke course)."""

import json
from pathlib import Path

import pytest
from conftest import REPO

from kit import models
from kit.report import tables
from kit.stages import evaluate, export, licenses, prepare, train


def _run(tmp_path_factory, tiny_model_dir, kind, input_name, column):
    run_dir = tmp_path_factory.mktemp(f"{kind}run")
    resolved = models.resolve(str(tiny_model_dir))
    prepare.run(prepare.PrepareConfig(run_dir=str(run_dir), input_path=str(REPO / "data_samples" / input_name),
                                purpose="tests", task=kind, label_column=column, max_rows=80))
    licenses.run(licenses.LicenseConfig(run_dir=str(run_dir), model=str(tiny_model_dir), approved=True,
                                        approver="tester", license_id="gemma"), resolved)
    train.run(train.TrainConfig(run_dir=str(run_dir), model=str(tiny_model_dir), max_steps=2, batch_size=4,
                                checkpoint_every_steps=10, max_length=256))
    cfg = evaluate.EvalConfig(run_dir=str(run_dir), model=str(tiny_model_dir), max_examples=6, batch_size=3,
                              bootstrap_samples=100, few_shot_k=1, canary_candidates=10, max_length=256)
    return cfg, evaluate.run(cfg)


@pytest.fixture(scope="module")
def extract_run(tmp_path_factory, tiny_model_dir):
    return _run(tmp_path_factory, tiny_model_dir, "extract", "field_updates.jsonl", "update")


@pytest.fixture(scope="module")
def reply_run(tmp_path_factory, tiny_model_dir):
    return _run(tmp_path_factory, tiny_model_dir, "reply", "replies.jsonl", "reply")


def test_extract_evaluates_every_model_on_the_same_rows(extract_run):
    cfg, result = extract_run
    m = result.metrics
    assert m["task"] == "extract" and set(m["models"]) == {"tuned", "base_zero_shot", "base_few_shot", "retrieval"}
    for name, r in m["models"].items():
        assert r["n"] == 6 and 0 <= r["field_accuracy"] <= 1 and r["field_accuracy_ci95"][0] <= r["field_accuracy"]
        assert r["accuracy"] == r["exact_match"] and "per_field" in r
    # retrieval copies training answers, which are valid objects by construction
    assert m["models"]["retrieval"]["validity_rate"] == 1.0 and m["best_baseline"] in m["models"]
    tuned = [p for p in result.predictions if p["model"] == "tuned"]
    assert all(0 <= p["confidence"] <= 1 and isinstance(p["valid"], bool) for p in tuned)
    meta = json.loads((result.paths["metrics"] and open(f"{cfg.run_dir}/adapters/default/kit_adapter.json").read()))
    assert meta["task"] == "extract" and m["prompt_tokens"] == meta["prompt_tokens"]
    assert "lane" in meta["schema"]["properties"]
    assert not tables.models_table(m).empty and len(tables.field_updates(result.predictions, 3)) == 3


def test_reply_is_scored_against_the_reference_replies(reply_run):
    _, result = reply_run
    m = result.metrics
    assert m["task"] == "reply" and set(m["models"]) == {"tuned", "base_zero_shot", "base_few_shot", "retrieval"}
    # the retrieval baseline answers with real training replies, so it overlaps with the references
    assert m["models"]["retrieval"]["rouge_l"] > 0.2 and m["models"]["retrieval"]["empty_rate"] == 0
    assert all("rouge_l" in p for p in result.predictions) and "calibration" not in result.paths


@pytest.mark.parametrize("which", ["extract", "reply"])
def test_export_parity_compares_generations_in_llama_cpp(which, extract_run, reply_run, tmp_path):
    cfg, result = extract_run if which == "extract" else reply_run
    license_file = tmp_path / "LICENSE.txt"
    license_file.write_text("Test license text for the tiny model.")
    res = export.run(export.ExportConfig(run_dir=cfg.run_dir, model=cfg.model, gguf_types=("f16",),
                                         modelfile_gguf="f16", adapter_variant=False, max_examples=4,
                                         license_file=str(license_file)))
    row = res.parity["types"]["f16"]
    assert res.parity["task"] == which and res.parity["n"] == 4 and 0 <= row["agreement"] <= 1
    assert len(row["first_divergences"]) == round((1 - row["text_agreement"]) * 4)
    card = open(res.paths["model_card"]).read()
    assert ("field accuracy" in card) if which == "extract" else ("ROUGE-L" in card)
    assert not tables.parity_table(res.parity).empty
    if which == "extract":
        assert json.loads(open(f"{cfg.run_dir}/export/schema.json").read())["properties"]["lane"]


@pytest.mark.parametrize("which", ["extract", "reply"])
def test_monitor_answers_a_generative_batch_through_the_exported_gguf(which, extract_run, reply_run, tmp_path):
    """Stage 06 for extract and reply: the batch answered by the run's GGUF in llama.cpp (no registry entry: the run's
    own Modelfile), reviewed answers compared as objects (extract) or texts (reply), edits become feedback rows."""
    from kit.io import read_jsonl
    from kit.stages import monitor

    cfg, _ = extract_run if which == "extract" else reply_run
    if not (Path(cfg.run_dir) / "export" / "parity.json").exists():
        license_file = tmp_path / "LICENSE.txt"
        license_file.write_text("Test license text for the tiny model.")
        export.run(export.ExportConfig(run_dir=cfg.run_dir, model=cfg.model, gguf_types=("f16",), modelfile_gguf="f16",
                                       adapter_variant=False, max_examples=4, license_file=str(license_file)))
    name, column = ("field_updates.jsonl", "update") if which == "extract" else ("replies.jsonl", "reply")
    rows = read_jsonl(REPO / "data_samples" / name)[300:340]
    for i, r in enumerate(rows):
        answer = r.pop(column)
        r["reviewed"] = answer if i % 2 == 0 else ""
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = monitor.run_batch(monitor.MonitorConfig(run_dir=cfg.run_dir, batch_path=str(batch), review_column="reviewed",
                                               registry_dir=str(tmp_path / "empty-registry")))
    assert report["task"] == which and report["rows"]["monitored"] == 40 and report["reviewed"]["n"] == 20
    assert report["served"]["version"] is None and report["served"]["gguf"].endswith("model-f16.gguf")
    checks = {c["check"]: c for c in report["checks"]}
    assert {"new_terms", "oov_rate", "length", "population", "answer_length", "quality"} <= set(checks)
    assert set(report["outcomes"]) <= {"accepted", "edited"} and sum(report["outcomes"].values()) == 20
    if which == "reply":
        assert "no holdout figure" in checks["quality"]["note"] and checks["quality"]["verdict"] == "ok"
    feedback = read_jsonl(report["feedback"]["path"])
    edited, withheld = report["outcomes"].get("edited", 0), report["privacy"]["audit"]["n_withheld"]
    assert edited - withheld <= len(feedback) <= edited
    assert all(f["kit_feedback"]["outcome"] == "edited" and f[column] for f in feedback)
    assert report["decision"] in monitor.DECISIONS


def test_replies_are_reviewed_least_like_the_reference_first_with_needs_edit(reply_run):
    from kit.report import review

    cfg, _ = reply_run
    items = review.sample_answers(cfg.run_dir, n=4)
    scores = [it["rouge_l"] for it in items[:2]]
    assert len(items) == 4 and scores == sorted(scores) and max(scores) <= min(it["rouge_l"] for it in items[2:])
    for i, it in enumerate(items):
        review.record_answer(cfg.run_dir, {"id": it["id"], "model": "tuned", "reviewer": "ana",
                                           "verdict": ["pass", "needs_edit", "fail", "needs_edit"][i]})
        review.record_answer(cfg.run_dir, {"id": it["id"], "model": "tuned", "reviewer": "ben",
                                           "verdict": ["pass", "needs_edit", "fail", "fail"][i], "reason": "tone"})
    s = review.answer_summary(cfg.run_dir)
    assert s["reviewers"]["ana"]["needs_edit_rate"] == 0.5 and s["kappa"]["agreement"] == 0.75
    assert review.answer_panel(cfg.run_dir, "ana") is not None  # the panel renders for replies (no confidence)
    review.answers_path(cfg.run_dir).unlink()


def test_generative_tasks_refuse_label_only_settings(extract_run):
    cfg, _ = extract_run
    with pytest.raises(evaluate.EvalError, match="endpoint evaluation scores labels.*parity"):
        evaluate.run(evaluate.EvalConfig(**{**cfg.__dict__, "endpoint_gguf_type": "q8_0"}))
    with pytest.raises(evaluate.EvalError, match="critical_label is set, but task 'extract' has no labels"):
        evaluate.run(evaluate.EvalConfig(**{**cfg.__dict__, "critical_label": "claim_status"}))


def test_an_answer_too_long_for_max_length_is_refused_before_training(tokenizer):
    from kit.models.chat import GEMMA
    from kit.tasks.base import Task

    task = Task((), "Write the reply.", "reply")
    rows = [{"id": "a", "text": "a question " * 20, "answer": "word " * 150}]
    with pytest.raises(train.TrainError, match=r"max_length=192 leaves the text \d+ tokens: .* longest answer 15\d"):
        train.prompt_budget(rows, task, GEMMA, tokenizer, 192)
    assert train.prompt_budget(rows, task, GEMMA, tokenizer, 512)[0] < 512 - 150
    # max_length 0 (the default) fits the data: the instruction, the text and the 150-word answer.
    fitted, why = train.fit_length(rows, task, GEMMA, tokenizer, 0)
    assert fitted % 32 == 0 and 192 < fitted < 512 and "longest answer 15" in why
    assert train.prompt_budget(rows, task, GEMMA, tokenizer, fitted)[0] > 0
    assert train.fit_length(rows, task, GEMMA, tokenizer, 300) == (300, "set")


def test_max_length_from_the_data_keeps_192_for_short_texts_and_caps_long_ones(tokenizer):
    from kit.models.chat import GEMMA
    from kit.tasks.base import Task

    task = Task(("yes", "no"), "Answer yes or no.")
    short = [{"text": "is it raining", "label": "yes"}, {"text": "is it dry", "label": "no"}]
    assert train.fit_length(short, task, GEMMA, tokenizer, 0)[0] == 192  # never below what kit always used
    long = [{"text": "word " * 3000, "label": "yes"}] * 20
    fitted, why = train.fit_length(long, task, GEMMA, tokenizer, 0)
    assert fitted == 1024 and why.endswith("capped at 1024")
    assert train.prompt_budget(long, task, GEMMA, tokenizer, fitted)[0] > 1000  # the text is cut, the answer fits


def test_an_instruction_that_crowds_the_text_out_is_refused_with_the_fix(tokenizer):
    """77 intent names listed in a user's instruction take ~400 tokens: at max_length 192 every ticket would be cut
    away entirely (the model would learn labels from nothing). Training refuses and names the ways out."""
    from kit.models.chat import GEMMA
    from kit.tasks.base import Task

    labels = [f"intent_{w}_{i}" for i in range(11) for w in ("card", "transfer", "refund", "pin", "cash", "atm", "fee")]
    task = Task(tuple(labels), "Route the message to one of: " + ", ".join(labels) + ".")
    rows = [{"text": "my card has not arrived yet and it has been two weeks", "label": lab} for lab in labels]
    with pytest.raises(train.TrainError, match=r"(?s)max_length=192 leaves the text 0 tokens: the instruction takes "
                                               r"\d{3}.*leave \{labels\} out"):
        train.prompt_budget(rows, task, GEMMA, tokenizer, 192)
    fitted, _ = train.fit_length(rows, task, GEMMA, tokenizer, 0)  # sized from the data, the whole text fits
    prompt_tokens, _ = train.prompt_budget(rows, task, GEMMA, tokenizer, fitted)
    assert prompt_tokens - task.prompt_overhead(GEMMA, tokenizer) >= len(tokenizer(rows[0]["text"])["input_ids"])


def test_generation_stops_an_answer_that_cannot_be_json_and_scores_do_not_change(tiny_model_dir, tokenizer):
    from kit.models.chat import GEMMA
    from kit.tasks.base import parse_object

    model = models.load_model(models.resolve(str(tiny_model_dir)), dtype="float32")
    prompts = [GEMMA.prompt(f"ticket number {i}", "Answer with JSON.") for i in range(4)]
    full = evaluate.generate_texts(model, tokenizer, prompts, GEMMA.stop, 24, 2, with_confidence=True)
    cut = evaluate.generate_texts(model, tokenizer, prompts, GEMMA.stop, 24, 2, with_confidence=True,
                                  must_start_with="{")
    for (a, _), (b, conf) in zip(full, cut):
        assert parse_object(a) is None and parse_object(b) is None  # a random model writes no JSON
        assert a.startswith(b) and len(b) <= len(a) and 0 <= conf <= 1  # the same greedy opening, stopped early
    assert sum(len(b) for b, _ in cut) < sum(len(a) for a, _ in full)


def test_answers_decoded_many_at_a_time_equal_answers_decoded_one_by_one(tiny_model_dir, tokenizer):
    # Up to 64 prompts of different lengths share one decoding batch (left padding); in float32 every answer and its
    # confidence must be what the prompt gets alone.
    from kit.models.chat import GEMMA
    from kit.scoring.hf import GENERATION_ROWS, generation_rows

    model = models.load_model(models.resolve(str(tiny_model_dir)), dtype="float32")
    prompts = [GEMMA.prompt("ticket " + "about my claim " * (i % 7), "Write the reply.") for i in range(20)]
    assert generation_rows(model, 2, 64) == GENERATION_ROWS  # a tiny cache: the whole set in one batch
    together = evaluate.generate_texts(model, tokenizer, prompts, GEMMA.stop, 12, 2, with_confidence=True)
    alone = [evaluate.generate_texts(model, tokenizer, [p], GEMMA.stop, 12, 1, with_confidence=True)[0] for p in prompts]
    assert [t for t, _ in together] == [t for t, _ in alone]
    assert [c for _, c in together] == pytest.approx([c for _, c in alone], rel=1e-3, abs=1e-6)


def test_rows_decoded_together_are_bounded_by_the_cache_they_need(tiny_model_dir):
    from kit.scoring.hf import GENERATION_ROWS, KV_CACHE_BYTES, generation_rows

    model = models.load_model(models.resolve(str(tiny_model_dir)), dtype="float32")
    cfg = model.config
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4
    tokens = KV_CACHE_BYTES // (per_token * 10)  # ten rows' caches fill the budget
    assert generation_rows(model, 4, tokens) == 10
    assert generation_rows(model, 16, tokens) == 16  # never below the batch size asked for
    assert generation_rows(model, 4, 1) == GENERATION_ROWS
