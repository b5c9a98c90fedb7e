"""Evaluate stage: how good the tuned adapter is on the holdout, against what, how sure we are, and what it leaks.

In: `data/holdout.jsonl`, `data/train.jsonl`, `data/task.json`, `adapters/<adapter_name>/`, optionally
`data/canaries.json` (canaries planted by the prepare stage), a served endpoint or GGUF, a previous run to compare with.
Out, under `eval/`: `predictions.jsonl` (one line per holdout row and model: prediction, confidence, label
probabilities, correct), `metrics.json` (per model: accuracy and macro-F1 with bootstrap 95% intervals, per-class
precision/recall, confusion matrix, ECE and reliability bins, coverage when unsure cases go to a person, wrong and
missed escalations; plus privacy probes, review status and the regression comparison), `probes.json`, and plots
`models.png`, `confusion.png`, `calibration.png`, `probes.png`.

Models compared on the same holdout: the tuned adapter, the base model zero-shot and few-shot (same scoring), a
TF-IDF + logistic regression baseline, the majority class, and optionally the served model (`kit.scoring.serve`).

Labels are scored, not generated: one forward pass per prompt gives the probability of every label's first token,
which is exactly the choice greedy decoding would make among the labels, and a confidence for free. When two labels
share a first token the whole label sequences are scored instead. `bench/eval.py` measures scoring against
generate-and-parse (`generate_predictions`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from kit import hardware
from kit.errors import KitError
from kit.io import read_json, read_jsonl, write_json, write_jsonl
from kit.report.plots import confusion_plot
from kit.rundir import RunDir

# Scoring and statistics live in their own modules (imported by the probes and plots without this stage); their
# names stay reachable here, as notebooks and earlier code use them from kit.stages.evaluate.
from kit.scoring import (  # noqa: F401
    EndpointScorer,
    HFScorer,
    common_prefix_length,
    continuation_logprobs,
    generate_texts,
    label_first_tokens,
    predict,
    rows_from_probs,
    score_labels,
)
from kit.settings import advanced
from kit.stats import (  # noqa: F401
    at_threshold,
    bootstrap_ci,
    calibration,
    coverage_curve,
    interval_delta,
    paired_bootstrap,
    sample_indices,
)
from kit.tasks.base import (
    LEGACY_MAX_LENGTH,
    Task,
    answer_token_cap,
    parse_label,
    prompt_budget,
)
from kit.tasks.metrics import escalation, metrics


class EvalError(KitError):
    """Evaluation inputs are missing or inconsistent."""


@dataclass(frozen=True)
class EvalConfig:
    run_dir: str
    model: str
    adapter_name: str = "default"
    max_examples: int = 0  # 0 = the whole holdout, or a seeded sample of eval_cap() rows when larger; N = the first N
    max_length: int = 0  # 0 = the adapter's own (kit_adapter.json), so prompts are cut as in training
    batch_size: int = 16
    dtype: str = "auto"  # auto (what this machine computes fastest: kit.hardware) | float32 | bfloat16
    bootstrap_samples: int = field(default=1000, metadata=advanced("bootstrap resamples behind every 95% interval"))
    seed: int = field(default=0, metadata=advanced("seed of the bootstrap resampling"))
    critical_label: str = ""  # classify: the lane whose misses and false alarms cost the most ("" = none)
    handoff_confidence: float = 0.9  # below this confidence a ticket goes to a person
    few_shot_k: int = 4  # examples in the base model's few-shot prompt (one per lane first); 0 = no few-shot baseline
    few_shot_example_tokens: int = 48  # each example ticket is cut to this many tokens
    endpoint_url: str = ""  # an OpenAI-compatible /v1 URL serving this model (e.g. llama.cpp), evaluated as 'endpoint'
    endpoint_gguf_type: str = ""  # or f16 | q8_0 | q4_k_m: serve this run's export/model-<type>.gguf on 127.0.0.1
    endpoint_top_logprobs: int = 20  # first-token alternatives asked from the endpoint
    previous_run_dir: str = ""  # a previous run directory (or its eval/metrics.json) to compare with
    canary_seed: int = 0  # canaries made from this seed when data/canaries.json is absent
    canary_candidates: int = 100  # random same-format values each canary is ranked against (10–250)
    pii_probes: bool = True  # prompt the tuned model to reveal names and numbers, and scan what it writes
    probe_control_steps: int = 0  # > 0: train a throwaway LoRA this many steps on a canary to show the probe fires
    reviewer: str = ""  # name shown in the review panel; empty = nobody reviews (headless runs)
    require_gain: bool = True  # 04 stops when the tuned model does not beat the base model (False: random test models)

    def __post_init__(self):
        if not 0.0 <= self.handoff_confidence <= 1.0:
            raise EvalError(f"handoff_confidence={self.handoff_confidence} must be between 0 and 1.")
        if not 0 <= self.few_shot_k <= 16:
            raise EvalError(f"few_shot_k={self.few_shot_k} must be 0 (off) to 16; each example lengthens every prompt.")
        if not 10 <= self.canary_candidates <= 250:
            raise EvalError(f"canary_candidates={self.canary_candidates} must be 10–250 (a person-name canary has "
                            "only 255 others of its format).")
        if self.endpoint_url and self.endpoint_gguf_type:
            raise EvalError("set endpoint_url (a running server) or endpoint_gguf_type (a GGUF of this run to serve), "
                            "not both.")
        if self.endpoint_gguf_type not in ("", "f16", "q8_0", "q4_k_m"):
            raise EvalError(f"endpoint_gguf_type='{self.endpoint_gguf_type}' is not one of f16, q8_0, q4_k_m (or empty).")
        if self.dtype not in hardware.DTYPES:
            raise EvalError(f"dtype='{self.dtype}' is not one of {', '.join(hardware.DTYPES)}.")
        if self.probe_control_steps < 0 or self.bootstrap_samples < 100:
            raise EvalError("probe_control_steps must be >= 0 and bootstrap_samples >= 100.")


# --- prediction -----------------------------------------------------------------------------------------------------

def prompts_for(task: Task, fmt, tokenizer, rows: list[dict], budget: int) -> list[str]:
    """Zero-shot prompts cut to `budget` tokens (`kit.tasks.base.prompt_budget`: as in training; export builds them alike)."""
    return [task.prompt(fmt, r["text"], tokenizer, budget) for r in rows]


def generate_predictions(scorer, task: Task, fmt, rows: list[dict], prompts: list[str],
                         max_new_tokens: int = 12) -> list[dict]:
    """Generate-and-parse: what a served chat model would answer, parsed to a label (None = unusable answer)."""
    texts = scorer.generate(prompts, fmt.stop, max_new_tokens)
    out = []
    for r, text in zip(rows, texts):
        label = parse_label(text, task.labels)
        out.append({"id": r["id"], "label": r["label"], "prediction": label, "valid": label is not None,
                    "correct": label == r["label"]})
    return out


# --- metrics --------------------------------------------------------------------------------------------------------


def model_report(preds: list[dict], labels, cfg: EvalConfig) -> dict:
    """All metrics of one model's predictions (calibration and coverage only when it gives confidences)."""
    y = [p["label"] for p in preds]
    yp = [p["prediction"] for p in preds]
    out = metrics(y, yp, labels, cfg.bootstrap_samples, cfg.seed)
    if cfg.critical_label:
        out["escalation"] = escalation(y, yp, cfg.critical_label)
    if all(p.get("confidence") is not None for p in preds):
        conf = [p["confidence"] for p in preds]
        corr = [p["correct"] for p in preds]
        cal = calibration(conf, corr)
        out["ece"], out["reliability"] = cal["ece"], cal["bins"]
        out["handoff"] = at_threshold(conf, corr, cfg.handoff_confidence)
    return out


# --- regression ------------------------------------------------------------------------------------------------------

def compare(previous: str | Path, summary: dict, predictions: list[dict], samples: int = 2000, seed: int = 0) -> dict:
    """Deltas of every model both runs evaluated; paired on examples when the previous predictions are available."""
    prev_path = Path(previous)
    if prev_path.is_dir():
        prev_path = RunDir(prev_path).metrics_json if (prev_path / "eval").is_dir() else prev_path / "metrics.json"
    if not prev_path.exists():
        raise EvalError(f"previous_run_dir='{previous}' has no metrics.json; point it at a previous run directory or its "
                        "eval/metrics.json, or leave it empty.")
    prev = read_json(prev_path)
    prev_preds_path = prev_path.with_name("predictions.jsonl")
    prev_preds = read_jsonl(prev_preds_path) if prev_preds_path.exists() else []
    by_model = lambda ps: {(p["model"], p["id"]): p["correct"] for p in ps}
    old_c, new_c = by_model(prev_preds), by_model(predictions)
    out = {"previous": str(prev_path), "models": {}}
    for name, m in summary["models"].items():
        if name not in prev.get("models", {}):
            continue
        ids = [k[1] for k in new_c if k[0] == name and k in old_c]
        n_new = sum(1 for k in new_c if k[0] == name)
        if ids and len(ids) == n_new:
            d = paired_bootstrap([new_c[(name, i)] for i in ids], [old_c[(name, i)] for i in ids], samples, seed)
        else:
            d = interval_delta(m, prev["models"][name])
        d["previous_accuracy"], d["accuracy"] = prev["models"][name]["accuracy"], m["accuracy"]
        if "macro_f1" in m and "macro_f1" in prev["models"][name]:
            d["macro_f1_delta"] = m["macro_f1"] - prev["models"][name]["macro_f1"]
        out["models"][name] = d
    return out


# --- the stage ------------------------------------------------------------------------------------------------------

@dataclass
class EvalResult:
    metrics: dict
    paths: dict
    predictions: list[dict]


def _endpoint_scorer(cfg: EvalConfig, tok, task: Task, stack):
    """The served model as a scorer: a given URL, or a llama.cpp server started here for a GGUF."""
    from kit.scoring import serve

    url = cfg.endpoint_url
    if cfg.endpoint_gguf_type:
        gguf = RunDir(cfg.run_dir).gguf(cfg.endpoint_gguf_type)
        url = stack.enter_context(serve.serve_gguf(gguf, n_ctx=max(512, cfg.max_length * 2)))
    return EndpointScorer.for_tokenizer(url, tok, task.labels, top_logprobs=cfg.endpoint_top_logprobs)


def run(cfg: EvalConfig) -> EvalResult:
    """Score the tuned model and the baselines on the holdout; write eval/. On CPU, torch's threads follow the cores
    other programs leave free (kit.hardware.ThreadGovernor), recorded as `thread_changes` in metrics.json."""
    from kit import models

    with hardware.governed(models.pick_device()):
        return _run(cfg)


# Past this many holdout rows, 04 scores a seeded sample of this size unless max_examples says otherwise: every model
# answers every row, and on a CPU a 3,000-row holdout with 77 labels (or long generated replies) would take hours
# for an interval (±1.5 points at 1,000 rows) barely narrower than the sample's.
EVAL_MAX_ROWS = {"classify": 1000, "extract": 300, "reply": 300}


# Generated answers cost their length: three models write up to `max_new` tokens for every row, and an untuned base
# model often writes to the limit. Past EVAL_ANSWER_TOKENS answer tokens per model (rows x max_new), the sample is
# smaller, down to EVAL_MIN_GENERATED rows. STAR replies (max_new 75) keep 300 rows; replies of ~200 tokens
# (max_new 244), where 40 rows took 229 s of 04 on 2 AMX cores (three models), get 122.
EVAL_ANSWER_TOKENS = 30_000
EVAL_MIN_GENERATED = 100


def eval_cap(kind: str, max_new: int = 0) -> int:
    """How many holdout rows 04 evaluates without max_examples: EVAL_MAX_ROWS, fewer for long generated answers."""
    if kind == "classify" or not max_new:
        return EVAL_MAX_ROWS[kind]
    return min(EVAL_MAX_ROWS[kind], max(EVAL_MIN_GENERATED, EVAL_ANSWER_TOKENS // max_new))


def answer_cap(meta: dict) -> int:
    """Tokens a generated answer may take, from the adapter's longest training answer (`answer_token_cap`)."""
    return answer_token_cap(meta.get("answer_tokens", 64))


def holdout_rows(rows: list[dict], kind: str, max_examples: int, seed: int, max_new: int = 0
                 ) -> tuple[list[dict], str]:
    """(the holdout rows 04 evaluates, in file order; a sentence on which). `max_new`: the answer token cap of a
    generative task (`eval_cap`)."""
    if max_examples:
        return rows[:max_examples], (f"the first {min(max_examples, len(rows))} of {len(rows)} holdout rows "
                                     f"(max_examples={max_examples})")
    cap = eval_cap(kind, max_new)
    if len(rows) <= cap:
        return rows, f"all {len(rows)} holdout rows"
    chosen, how = sample_indices(rows, kind, cap, seed)
    why = (f"; {cap} rather than {EVAL_MAX_ROWS[kind]}, as answers may run to {max_new} tokens"
           if cap < EVAL_MAX_ROWS[kind] else "")
    return ([r for i, r in enumerate(rows) if i in chosen],
            f"{cap} of {len(rows)} holdout rows, a seeded sample ({how}, seed {seed}{why})")


def _run(cfg: EvalConfig) -> EvalResult:
    from contextlib import ExitStack

    from kit import models
    from kit.tasks import baselines

    run_dir = Path(cfg.run_dir)
    rd = RunDir(run_dir)
    resolved = models.resolve(cfg.model)
    meta = rd.check_adapter(cfg.adapter_name, resolved.sha256, EvalError, cfg.model)
    if not cfg.max_length:  # adapters from before kit recorded it were trained at 192
        cfg = replace(cfg, max_length=int(meta.get("max_length") or LEGACY_MAX_LENGTH))
    adapter_dir = rd.adapter_dir(cfg.adapter_name)
    task = Task.load(run_dir)
    if task.generative and cfg.critical_label:
        raise EvalError(f"critical_label is set, but task '{task.kind}' has no labels; leave it empty.")
    if task.generative and (cfg.endpoint_url or cfg.endpoint_gguf_type):
        raise EvalError(f"the endpoint evaluation scores labels (classify); for task '{task.kind}', 05_export runs the "
                        "GGUF in llama.cpp on the holdout and compares its answers with these (export/parity.json). "
                        "Leave endpoint_url and endpoint_gguf_type empty.")
    if cfg.critical_label and cfg.critical_label not in task.labels:
        raise EvalError(f"critical_label='{cfg.critical_label}' is not a lane of this task; use one of "
                        f"{', '.join(task.labels)}.")
    holdout = read_jsonl(rd.need(rd.holdout_jsonl, EvalError))
    rows, holdout_note = holdout_rows(holdout, task.kind, cfg.max_examples, cfg.seed,
                                      answer_cap(meta) if task.generative else 0)
    print(f"holdout: {holdout_note}" + (f"; a sample keeps evaluation to minutes on a CPU (max_examples={len(holdout)} "
                                        "scores them all)" if len(rows) < len(holdout) and not cfg.max_examples else ""))
    train_rows = read_jsonl(rd.need(rd.train_jsonl, EvalError))
    tok = models.load_tokenizer(resolved)
    fmt = resolved.chat_format
    budget = prompt_budget(meta, cfg.max_length)
    prompts = prompts_for(task, fmt, tok, rows, budget)

    # One model in memory: the adapter switched off is exactly the base model.
    dtype = hardware.compute_dtype(cfg.dtype, models.pick_device())
    model = models.load_model(resolved, dtype=dtype.dtype, adapter_dir=str(adapter_dir))
    if task.generative:
        return _run_generative(cfg, run_dir, resolved, meta, task, rows, train_rows, tok, fmt, model, dtype,
                               holdout_note)
    tuned = HFScorer(model, tok, cfg.batch_size, name="tuned")
    base = HFScorer(model, tok, cfg.batch_size, adapter_off=True, name="base zero-shot")
    preds = {"tuned": predict(tuned, task, rows, prompts), "base_zero_shot": predict(base, task, rows, prompts)}
    base.name = "base few-shot"
    if cfg.few_shot_k:
        shots = baselines.pick_examples(train_rows, task.labels, cfg.few_shot_k, cfg.seed)
        fs_prompts = [baselines.few_shot_prompt(task, fmt, tok, shots, r["text"], cfg.few_shot_example_tokens,
                                                budget) for r in rows]
        preds["base_few_shot"] = predict(base, task, rows, fs_prompts)
    preds["tfidf_logreg"] = rows_from_probs(rows, baselines.tfidf_logreg(train_rows, rows, task.labels, cfg.seed),
                                            task.labels)
    preds["majority_class"] = rows_from_probs(rows, baselines.majority(train_rows, len(rows), task.labels), task.labels)
    endpoint_info = None
    if cfg.endpoint_url or cfg.endpoint_gguf_type:
        with ExitStack() as stack:
            scorer = _endpoint_scorer(cfg, tok, task, stack)
            preds["endpoint"] = predict(scorer, task, rows, prompts)
        agree = float(np.mean([a["prediction"] == b["prediction"] for a, b in zip(preds["endpoint"], preds["tuned"])]))
        endpoint_info = {"url": cfg.endpoint_url or "llama.cpp server on 127.0.0.1 (started for this evaluation)",
                         "gguf": cfg.endpoint_gguf_type or None, "agreement_with_tuned": agree,
                         "labels_outside_top_k": scorer.outside_top_k, "top_logprobs": cfg.endpoint_top_logprobs}

    results = {name: model_report(p, task.labels, cfg) for name, p in preds.items()}
    flat = [{"model": name, **p} for name, ps in preds.items() for p in ps]
    summary = {
        "labels": list(task.labels), "adapter": cfg.adapter_name, "max_length": cfg.max_length,
        "prompt_tokens": budget, "holdout": holdout_note, "parameters": asdict(cfg), "models": results,
        "tuned_minus_base_accuracy": results["tuned"]["accuracy"] - results["base_zero_shot"]["accuracy"],
        "tuned_vs_base_zero_shot": paired_bootstrap([p["correct"] for p in preds["tuned"]],
                                                    [p["correct"] for p in preds["base_zero_shot"]],
                                                    cfg.bootstrap_samples, cfg.seed),
        "endpoint": endpoint_info, "dtype": dtype.record(),
    }
    best = max((n for n in results if n not in ("tuned", "endpoint")), key=lambda n: results[n]["accuracy"])
    summary["best_baseline"] = best
    summary["tuned_vs_best_baseline"] = paired_bootstrap([p["correct"] for p in preds["tuned"]],
                                                         [p["correct"] for p in preds[best]],
                                                         cfg.bootstrap_samples, cfg.seed)
    summary["verdict"] = verdict(summary, "classify")
    summary["task"] = task.kind
    paths = _finish(cfg, run_dir, resolved, task, fmt, tok, model, summary, preds, flat)
    paths["confusion"] = str(confusion_plot(results, task.labels, rd.eval_dir / "confusion.png"))
    return EvalResult(summary, paths, flat)


def _finish(cfg: EvalConfig, run_dir: Path, resolved, task: Task, fmt, tok, model, summary: dict, preds: dict,
            flat: list[dict]) -> dict:
    """What every kind shares after the predictions: privacy probes, review status, the regression comparison,
    the files and the plots."""
    from kit.privacy import probes
    from kit.report import plots, review

    summary["probes"] = probes.run_probes(model, tok, fmt, task, run_dir, cfg)
    del model
    if cfg.probe_control_steps:
        summary["probes"]["control"] = probes.control_on_base(resolved, tok, cfg)
    summary["review"] = review.answer_summary(run_dir)
    summary["thread_changes"] = hardware.thread_changes()
    summary["regression"] = compare(cfg.previous_run_dir, summary, flat, cfg.bootstrap_samples,
                                    cfg.seed) if cfg.previous_run_dir else None
    rd = RunDir(run_dir)
    out = rd.eval_dir
    write_jsonl(rd.predictions_jsonl, flat)
    write_json(rd.probes_json, summary["probes"])
    write_json(rd.metrics_json, summary)
    results = summary["models"]
    keys = {"classify": plots.CLASSIFY_KEYS, "extract": plots.EXTRACT_KEYS,
            "reply": plots.REPLY_KEYS}[task.kind]
    paths = {"metrics": str(rd.metrics_json), "predictions": str(rd.predictions_jsonl), "probes": str(rd.probes_json),
             "models": str(plots.models_plot(results, out / "models.png", keys)),
             "probes_plot": str(plots.probes_plot(summary["probes"], out / "probes.png"))}
    if "ece" in results.get("tuned", {}):
        paths["calibration"] = str(plots.calibration_plot(results, preds, cfg.handoff_confidence,
                                                               out / "calibration.png"))
    return paths


def _run_generative(cfg: EvalConfig, run_dir: Path, resolved, meta: dict, task: Task, rows: list[dict],
                    train_rows: list[dict], tok, fmt, model, dtype, holdout_note: str) -> EvalResult:
    """extract and reply: every model writes its answer (greedy), which is parsed and compared with the reference.

    Prompts are cut to the adapter's own prompt budget (kit_adapter.json), exactly as in training. The untuned base
    model gets the schema in its instruction (extract), since it never learned the format; the few-shot baseline
    adds solved examples; the retrieval baseline answers with the most similar training ticket's answer.
    """
    from kit.tasks import baselines
    from kit.tasks.metrics import extract_report, nearest_training_answers, reply_report

    budget = prompt_budget(meta, cfg.max_length)
    max_new = answer_cap(meta)
    prompts = [task.prompt(fmt, r["text"], tok, budget) for r in rows]
    base_system = task.schema_system()
    base_prompts = [task.prompt(fmt, r["text"], tok, budget, system=base_system) for r in rows]
    tuned = HFScorer(model, tok, cfg.batch_size, name="tuned")
    base = HFScorer(model, tok, cfg.batch_size, adapter_off=True, name="base zero-shot")
    start = task.answer_start  # an answer that opens otherwise is invalid: stop it there
    texts = {"tuned": tuned.generate(prompts, fmt.stop, max_new, True, start),
             "base_zero_shot": base.generate(base_prompts, fmt.stop, max_new, True, start)}
    if cfg.few_shot_k:
        shots = baselines.pick_examples(train_rows, (), cfg.few_shot_k, cfg.seed, answer=task.answer)
        few = [baselines.few_shot_prompt(task, fmt, tok, shots, r["text"], cfg.few_shot_example_tokens, budget,
                                         system=base_system) for r in rows]
        base.name = "base few-shot"
        texts["base_few_shot"] = base.generate(few, fmt.stop, max_new, True, start)
    nearest, sims = nearest_training_answers(train_rows, rows, task.answer)
    texts["retrieval"] = list(zip(nearest, sims))

    references = [task.answer(r) for r in rows]
    preds: dict[str, list[dict]] = {}
    results = {}
    for name, outs in texts.items():
        answers = [a for a, _ in outs]
        if task.kind == "extract":
            expected = [json.loads(a) for a in references]
            report = extract_report(expected, answers, task.schema, cfg.bootstrap_samples, cfg.seed)
            verdicts = report.pop("rows")
            correct = [v.pop("correct") for v in verdicts]
            extra = verdicts
        else:
            report = reply_report(references, answers, cfg.bootstrap_samples, cfg.seed)
            correct = [None] * len(rows)
            extra = [{"rouge_l": x} for x in report.pop("row_rouge_l")]
        preds[name] = [{"id": r["id"], "label": ref, "prediction": a, "confidence": c, "correct": ok, **x}
                       for r, ref, (a, c), ok, x in zip(rows, references, outs, correct, extra)]
        if task.kind == "extract" and name != "retrieval":  # the retrieval score is a similarity, not a probability
            cal = calibration([c for _, c in outs], correct)
            report["ece"], report["reliability"] = cal["ece"], cal["bins"]
            report["handoff"] = at_threshold([c for _, c in outs], correct, cfg.handoff_confidence)
        results[name] = report
    flat = [{"model": name, **p} for name, ps in preds.items() for p in ps]
    headline = "field_accuracy" if task.kind == "extract" else "accuracy"  # reply: accuracy is ROUGE-L
    best = max((n for n in results if n != "tuned"), key=lambda n: results[n][headline])
    summary = {
        "task": task.kind, "labels": [], "adapter": cfg.adapter_name, "max_length": cfg.max_length,
        "prompt_tokens": budget, "max_new_tokens": max_new, "holdout": holdout_note, "parameters": asdict(cfg),
        "models": results,
        "tuned_minus_base_accuracy": results["tuned"]["accuracy"] - results["base_zero_shot"]["accuracy"],
        "tuned_vs_base_zero_shot": _paired(preds, "tuned", "base_zero_shot", task, cfg),
        "best_baseline": best, "tuned_vs_best_baseline": _paired(preds, "tuned", best, task, cfg),
        "endpoint": None, "dtype": dtype.record(),
    }
    summary["verdict"] = verdict(summary, task.kind)
    paths = _finish(cfg, run_dir, resolved, task, fmt, tok, model, summary, preds, flat)
    return EvalResult(summary, paths, flat)


BASELINE_NAMES = {"tfidf_logreg": "TF-IDF + logistic regression", "majority_class": "the most common label",
                  "retrieval": "retrieval (the nearest training text's answer)",
                  "base_zero_shot": "the untuned base model", "base_few_shot": "the base model with examples"}
VERDICT_METRIC = {"classify": ("accuracy", "points of accuracy"), "extract": ("exact match", "points of exact match"),
                  "reply": ("ROUGE-L", "ROUGE-L points")}


def verdict(summary: dict, kind: str) -> dict:
    """Whether the tuned model beats the best baseline, from the paired 95% interval, in one plain sentence
    (notebook 04 shows it; the model card carries it)."""
    best, d = summary["best_baseline"], summary["tuned_vs_best_baseline"]
    name = BASELINE_NAMES.get(best, best)
    _, unit = VERDICT_METRIC[kind]
    pts = lambda x: f"{100 * x:+.1f}"
    span = f"paired 95% interval {pts(d['ci95'][0])} to {pts(d['ci95'][1])}, n={d['n']}"
    if d["ci95"][0] > 0:
        outcome = "tuned_better"
        sentence = (f"The tuned model beats the best baseline, {name}, by {100 * d['delta']:.1f} {unit} ({span}): "
                    "the fine-tune earns its place.")
    elif d["ci95"][1] < 0:
        outcome = "baseline_better"
        sentence = (f"The best baseline, {name}, beats the tuned model by {-100 * d['delta']:.1f} {unit} ({span}): "
                    "use the baseline, or improve the data or the recipe (03) before fine-tuning.")
    else:
        outcome = "no_difference"
        sentence = (f"The tuned model does not measurably beat the best baseline, {name}: the difference is "
                    f"{pts(d['delta'])} {unit} ({span}), within noise on this holdout. The cheaper baseline does as "
                    "well here; fine-tune only for what it adds beyond this score (one model for several tasks, "
                    "calibrated confidence, serving in Ollama).")
    return {"baseline": best, "metric": VERDICT_METRIC[kind][0], "delta": d["delta"], "ci95": d["ci95"],
            "outcome": outcome, "sentence": sentence}


def _paired(preds: dict, a: str, b: str, task: Task, cfg: EvalConfig) -> dict:
    """Paired bootstrap of the headline per-row score (exact match for extract, ROUGE-L for reply)."""
    key = "correct" if task.kind == "extract" else "rouge_l"
    return paired_bootstrap([p[key] for p in preds[a]], [p[key] for p in preds[b]], cfg.bootstrap_samples, cfg.seed)
