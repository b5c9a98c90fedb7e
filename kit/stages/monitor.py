"""Stage 06, monitor: a batch of production traffic against the training data and the evaluated model.

In: a batch file (the formats stage 02 reads; optionally with each row's reviewer answer, and with the prediction
the service logged), the run directory, the adapter registry. Out: `monitor/<batch>/report.json` (every check with
its statistic, threshold and verdict; alerts; the decision keep / retrain / roll back), `monitor/<batch>/batch.jsonl`
(the batch redacted, with predictions and outcomes), `monitor/<batch>/feedback.jsonl` (overridden and edited rows in
the run's own input columns, to append to the next training export), `monitor/report.json` (the latest batch's report), `monitor/history.jsonl` and
`monitor/drift.png` (every batch so far). `run(cfg)` monitors the notebook's batches in order (`StageConfig`);
`run_batch` monitors one (`MonitorConfig`).

Production text never lands on disk unredacted: the batch goes through the run's own redactor and columns first, and
the independent audit checks what would be written; a row it flags is kept out of every file (counted, with ids).
Predictions come from the live version's GGUF in llama.cpp (what Ollama serves), unless the batch carries the logged
predictions; the holdout is scored by the same file once (cached), so batch and baseline are measured alike.

Checks (statistics from scipy and scikit-learn; thresholds are parameters, recorded in the report):
- input: new frequent terms, out-of-vocabulary rate, length shift (two-sample KS), and a classifier two-sample test
  (TF-IDF + logistic regression told to tell training texts from batch texts; its cross-validated ROC AUC is 0.5 when
  the two are alike). The classifier test is chosen over a drift library: it needs only scikit-learn, which kit
  already uses, and its statistic reads plainly ("how well can a model tell the batch from training?").
- output: predicted label mix against the holdout's (PSI and chi-square), confidences (two-sample KS); answer length
  for extract/reply.
- quality, on the reviewed rows: accuracy (exact match for extract, acceptance for reply) with a Wilson interval,
  against the same engine's holdout figure; the override rate per predicted label (a label everyone overrides is a
  repair target).
Decision: a quality drop → roll back (to the version live before, when there is one; else retrain); drift or a
repair target without a quality drop → retrain (with the feedback rows); nothing → keep.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kit import adapters, progress
from kit.errors import KitError
from kit.io import (
    read_json,
    read_jsonl,
    sha256_file,
    write_json,
    write_jsonl,
)
from kit.models import llamacpp
from kit.report.plots import drift_plot
from kit.rundir import RunDir
from kit.stats import (
    chi_square,
    ks,
    most_telling_terms,
    new_terms,
    oov_rate,
    population_auc,
    psi,
    shares,
    wilson,
    words,
)
from kit.tasks.base import (
    LEGACY_MAX_LENGTH,
    Task,
    canonical_json,
    parse_object,
    prompt_budget,
)

DECISIONS = ("keep", "retrain", "roll back")


class MonitorError(KitError):
    """A batch cannot be monitored (missing run files, columns, or a registry without a live version)."""


@dataclass(frozen=True)
class Thresholds:
    new_term_share: float = 0.05  # a term in ≥5% of the batch's texts …
    new_term_train_share: float = 0.005  # … and in ≤0.5% of the training texts is new
    new_term_min_rows: int = 5
    oov_increase: float = 0.02  # batch out-of-vocabulary rate above the holdout's by this much (absolute)
    length_ks: float = 0.15  # KS statistic on text lengths (words)
    population_auc: float = 0.6  # a classifier tells batch from training texts this well (0.5 = alike)
    label_psi: float = 0.25  # population stability index of the predicted label mix (0.25 = a major shift)
    confidence_ks: float = 0.2  # KS statistic of the confidences
    p_value: float = 0.01  # a test's statistic alerts only when its p-value is also below this
    quality_drop: float = 0.05  # reviewed accuracy this far below the holdout's, with the interval's top below it
    min_reviewed: int = 20  # fewer reviewed rows: quality is reported, not judged
    override_rate: float = 0.3  # a predicted label overridden this often (with ≥ override_min rows) needs repair …
    override_min: int = 3  # … when that many overrides are also unlikely at the holdout's error rate (p < p_value)


@dataclass(frozen=True)
class MonitorConfig:
    run_dir: str
    batch_path: str
    batch_name: str = ""  # "" = the file's name without extension
    review_column: str = ""  # the reviewer's answer (label, JSON object or reply); empty cell = not reviewed
    prediction_column: str = ""  # what the service answered, if the batch logs it; "" = kit predicts
    confidence_column: str = ""  # the logged confidence, with prediction_column
    registry_dir: str = ""  # "" = registry/ beside the run directories
    tenant: str = "default"
    auto_rollback: bool = True  # a roll-back decision makes the previous version live (recorded with the reasons)
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_rows: int = 0  # 0 = the whole batch
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.thresholds, dict):
            unknown = set(self.thresholds) - set(Thresholds.__dataclass_fields__)
            if unknown:
                raise MonitorError(f"unknown threshold(s) {sorted(unknown)}; known: "
                                   f"{', '.join(Thresholds.__dataclass_fields__)}.")
            object.__setattr__(self, "thresholds", Thresholds(**self.thresholds))
        if not Path(self.batch_path).exists():
            raise MonitorError(f"batch_path '{self.batch_path}' does not exist; point it at a CSV, JSONL, JSON or "
                               "Parquet file of production traffic.")
        if self.confidence_column and not self.prediction_column:
            raise MonitorError("confidence_column is set without prediction_column; name the logged prediction too.")

    @property
    def name(self) -> str:
        return self.batch_name or Path(self.batch_path).stem


@dataclass(frozen=True)
class StageConfig:
    """Notebook 06's parameters: several batches, oldest first, each monitored with `MonitorConfig`."""
    run_dir: str
    batch_paths: tuple[str, ...] = ()
    review_column: str = ""
    prediction_column: str = ""
    confidence_column: str = ""
    tenant: str = "default"
    registry_dir: str = ""
    auto_rollback: bool = True
    monitor_thresholds: dict = field(default_factory=dict)
    max_batch_rows: int = 0

    def batches(self) -> list[MonitorConfig]:
        return [MonitorConfig(run_dir=self.run_dir, batch_path=str(p), review_column=self.review_column,
                              prediction_column=self.prediction_column, confidence_column=self.confidence_column,
                              registry_dir=self.registry_dir, tenant=self.tenant, auto_rollback=self.auto_rollback,
                              thresholds=dict(self.monitor_thresholds), max_rows=self.max_batch_rows)
                for p in self.batch_paths]


def run(cfg: StageConfig, log=print) -> list[dict]:
    """Monitor each batch in order (a rollback after one batch means the next is judged against the version live
    then); returns the reports."""
    reports = []
    for batch in cfg.batches():
        r = run_batch(batch)
        log(f"{r['batch']}: {r['rows']['monitored']} rows, {r['reviewed']['n']} reviewed, {len(r['alerts'])} "
            f"alert(s) -> {r['decision']}  ({r['timings']['total_s']:.0f} s)")
        reports.append(r)
    return reports


# ---------------------------------------------------------------- the batch

def prepare_config(run_dir: Path, batch_path: str):
    """The run's own stage-02 settings (columns, known values, id patterns), pointed at the batch."""
    from kit.stages.prepare import PrepareConfig

    prov = RunDir(run_dir).provenance_json
    if not prov.exists():
        raise MonitorError(f"no {prov}; the run must have been prepared (02) before its traffic can be monitored.")
    params = dict(read_json(prov)["parameters"])
    params.update(run_dir=str(run_dir), input_path=str(batch_path), holdout_path="", max_rows=0)
    return PrepareConfig(**params)


def read_batch(cfg: MonitorConfig, run_dir: Path, task: Task) -> tuple[list[dict], dict]:
    """The batch's usable rows as {id, line, text, tenant, consent, timestamp, review, logged prediction} (raw text,
    in memory only) and the accounting of the rows left out."""
    from kit.io import read_raw
    from kit.stages.prepare import _str, apply_convention, task_text

    pcfg = prepare_config(run_dir, cfg.batch_path)
    raw = read_raw(cfg.batch_path, pcfg.encoding)
    if cfg.max_rows:
        raw = raw[: cfg.max_rows]
    pcfg, by_source, _ = apply_convention(replace(pcfg), {"input": raw})
    raw = by_source["input"]
    fields = {k for r in raw if r.fields for k in r.fields}
    missing = [c for c in pcfg.text_columns if c not in fields]
    for name in ("review_column", "prediction_column", "confidence_column"):
        col = getattr(cfg, name)
        if col and col not in fields:
            missing.append(f"{col} ({name})")
    if missing:
        raise MonitorError(f"{cfg.batch_path} has no column(s) {missing}; it has {sorted(fields)}. The batch needs "
                           f"the text columns the run was prepared with ({list(pcfg.text_columns)}).")
    rows, skipped = [], Counter()
    seen = set()
    for r in raw:
        if r.problem or not r.fields:
            skipped[r.code or "unreadable"] += 1
            continue
        text = task_text(r.fields, pcfg.text_columns)
        if not text.strip():
            skipped["empty_text"] += 1
            continue
        rid = _str(r.fields.get(pcfg.id_column)) if pcfg.id_column else ""
        rid = rid or f"batch:line{r.line}"
        if rid in seen:
            skipped["duplicate_id"] += 1
            continue
        seen.add(rid)
        review = r.fields.get(cfg.review_column) if cfg.review_column else None
        review = None if review is None or (isinstance(review, str) and not review.strip()) else review
        known = {}
        for col, entity in pcfg.known_value_columns.items():
            if _str(r.fields.get(col)).strip():
                known.setdefault(entity, []).append(_str(r.fields[col]))
        rows.append({"id": rid, "line": r.line, "text": text, "known": known, "review": review,
                     "tenant": _str(r.fields.get(pcfg.tenant_column)) if pcfg.tenant_column else "",
                     "consent": _str(r.fields.get(pcfg.consent_column)) if pcfg.consent_column else "",
                     "timestamp": _str(r.fields.get(pcfg.timestamp_column)) if pcfg.timestamp_column else "",
                     "logged": r.fields.get(cfg.prediction_column) if cfg.prediction_column else None,
                     "logged_confidence": r.fields.get(cfg.confidence_column) if cfg.confidence_column else None})
    for row in rows:
        row["review"] = _review_answer(task, row["review"], row["id"])
        if cfg.prediction_column and task.kind == "classify" and str(row["logged"]).strip() not in task.labels:
            raise MonitorError(f"row {row['id']}: the logged prediction {row['logged']!r} in '{cfg.prediction_column}' "
                               f"is not one of this task's labels ({', '.join(task.labels)}); is it the right column?")
    return rows, {"read": len(raw), "monitored": len(rows), "skipped": dict(skipped), "config": pcfg}


def _review_answer(task: Task, value, rid: str):
    if value is None:
        return None
    if task.kind == "classify":
        label = str(value).strip()
        if label not in task.labels:
            raise MonitorError(f"row {rid}: the reviewer's label '{label}' is not one of this task's labels "
                               f"({', '.join(task.labels)}); fix the batch's review column.")
        return label
    if task.kind == "extract":
        obj = value if isinstance(value, dict) else parse_object(str(value))
        if obj is None:
            raise MonitorError(f"row {rid}: the reviewer's answer is not a JSON object; fix the batch's review column.")
        return obj
    return str(value).strip()


def redact_and_audit(rows: list[dict], pcfg, task: Task) -> dict:
    """Redact every row's text (and a reviewer's answer) with the run's redactor; the audit of the redacted rows
    withholds flagged rows from every file. Returns the redaction counts and the audit summary."""
    from kit.privacy import audit as privacy_audit
    from kit.privacy.redact import Redactor
    from kit.stages.prepare import DEFAULT_ID_PATTERNS, _replace_leaves, _string_leaves

    redactor = Redactor.default(pcfg.id_patterns or None)
    # A reviewer's answer and an answer the service logged are text about the customer too (extract, reply).
    answers = [_string_leaves(r["review"]) if task.generative else [] for r in rows]
    logged = [_string_leaves(r["logged"]) if task.generative and r["logged"] is not None else [] for r in rows]
    redactor.prefetch(t for r, a, g in zip(rows, answers, logged) for t in [r["text"], *a, *g])
    counts = Counter()
    known_values: dict[str, set] = {}
    for r, a, g in zip(rows, answers, logged):
        for entity, values in r["known"].items():
            known_values.setdefault(entity, set()).update(v.strip() for v in values)
        red, *leaves = redactor.redact_many([r["text"], *a, *g], r["known"])
        counts.update(red.counts())
        r["text"] = red.text
        if a:
            r["review"] = _replace_leaves(r["review"], iter(x.text for x in leaves[: len(a)]))
        if g:
            r["logged"] = _replace_leaves(r["logged"], iter(x.text for x in leaves[len(a):]))
        del r["known"]
    audit_view = [{"id": r["id"], "text": r["text"],
                   **({"answer": _answer_text(task, r["review"])} if task.generative and r["review"] else {}),
                   **({"logged": _answer_text(task, r["logged"]) if not isinstance(r["logged"], str) else r["logged"]}
                      if task.generative and r["logged"] is not None else {})}
                  for r in rows]
    report = privacy_audit.audit_rows({"batch": audit_view}, max_findings=len(audit_view) * 20, id_patterns=pcfg.id_patterns or DEFAULT_ID_PATTERNS,
                                      known_values={k: sorted(v) for k, v in known_values.items()})
    flagged = {f["id"] for f in report["findings"]}
    for r in rows:
        r["withheld"] = r["id"] in flagged
    return {"redactions": dict(counts), "audit": {"hits": report["hits"], "by_check": report["by_check"],
                                                  "rows_withheld": sorted(flagged)[:50],
                                                  "n_withheld": len(flagged)}}


def _answer_text(task: Task, value) -> str:
    if value is None:
        return ""
    return canonical_json(value, task.schema) if task.kind == "extract" else str(value)


# ---------------------------------------------------------------- predictions (the live GGUF in llama.cpp)

def served_gguf(cfg: MonitorConfig, run_dir: Path) -> tuple[Path, dict | None]:
    """The GGUF the tenant's live version serves (the registry's), or this run's Modelfile's when none is live."""
    registry = adapters.location(run_dir, cfg.registry_dir)
    record = adapters.live(registry, cfg.tenant)
    if record:
        return Path(record["gguf"]), record
    mf = RunDir(run_dir).modelfile
    if not mf.exists():
        raise MonitorError(f"tenant '{cfg.tenant}' has no live version in {registry} and {mf} does not exist; run "
                           "05_export (it promotes a verified export) before monitoring its traffic.")
    gguf = adapters.modelfile_gguf(RunDir(run_dir).export_dir)
    if gguf is None:
        raise MonitorError(f"{mf} names no GGUF beside it (FROM ./<file>); re-run 05_export.")
    return gguf, None


def _prompts(run_dir: Path, task: Task, texts: list[str]):
    """Prompts cut as evaluation and export cut them (the adapter's budget)."""
    meta = read_json(_adapter_meta_path(run_dir))
    resolved, tok = _model_and_tokenizer(meta["base_model"])
    metrics = read_json(RunDir(run_dir).metrics_json)
    budget = prompt_budget(meta, metrics.get("max_length", LEGACY_MAX_LENGTH))
    fmt = resolved.chat_format
    return [task.prompt(fmt, t, tok, budget) for t in texts], fmt, metrics


@functools.lru_cache(maxsize=2)
def _model_and_tokenizer(spec: str):
    from kit import models

    resolved = models.resolve(spec)
    return resolved, models.load_tokenizer(resolved)


def _adapter_meta_path(run_dir: Path) -> Path:
    found = sorted(RunDir(run_dir).adapters_dir.glob("*/kit_adapter.json"))
    if not found:
        raise MonitorError(f"no adapter in {run_dir / 'adapters'}; the run must be trained (03) and exported (05).")
    return found[0]


def predict_rows(gguf: Path, task: Task, prompts: list[str], fmt, metrics: dict,
                 what: str = "answering the batch") -> list[dict]:
    """The served GGUF's answer to every prompt, in llama.cpp child processes.

    Labels are scored by two workers of one thread each on a 2-core machine: one llama.cpp context per core scored
    ~12% more tokens per second than one context on both (514 + 514 vs 915 tokens/s, q8_0 270M, AMD EPYC, 2 cores),
    as the small matrices of a 270M model keep two threads of one context waiting on each other.
    """
    from concurrent.futures import ThreadPoolExecutor

    from kit.stages.export import gguf_labels, parity_generations

    if not prompts:
        return []
    with progress.bar(total=len(prompts), desc=f"{what} ({gguf.name})", unit="rows") as answered:
        if task.kind == "classify":
            cores = os.cpu_count() or 1
            workers = max(1, min(cores, 4, len(prompts) // 50))
            chunks = [c.tolist() for c in np.array_split(np.arange(len(prompts)), workers)]
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda idx: llamacpp.isolated(
                    gguf_labels, str(gguf), list(task.labels), [prompts[i] for i in idx], max(1, cores // workers),
                    what=f"{what} with", gguf=gguf, error=MonitorError, progress=answered), chunks))
            return [{"prediction": p, "confidence": c} for part in parts for p, c in part]
        gen = llamacpp.isolated(parity_generations, str(gguf), prompts, list(fmt.stop), None,
                                int(metrics.get("max_new_tokens", 64)), what=f"{what} with", gguf=gguf,
                                error=MonitorError, progress=answered)
        return [{"prediction": g, "confidence": None} for g in gen]


def baseline(run_dir: Path, gguf: Path, task: Task) -> dict:
    """The holdout answered by the served GGUF (cached per file sha256): what the batch is compared with."""
    sha = sha256_file(gguf)
    path = RunDir(run_dir).monitor_dir / f"baseline-{sha[:16]}.json"
    if path.exists():
        return read_json(path)
    holdout = read_jsonl(RunDir(run_dir).holdout_jsonl)
    prompts, fmt, metrics = _prompts(run_dir, task, [r["text"] for r in holdout])
    preds = predict_rows(gguf, task, prompts, fmt, metrics, what="answering the holdout")
    correct = [_is_correct(task, p["prediction"], task.answer(r) if task.kind != "extract" else parse_object(
        r["answer"])) for p, r in zip(preds, holdout)]
    out = {"gguf": str(gguf), "gguf_sha256": sha, "n": len(holdout),
           "predictions": [p["prediction"] for p in preds], "confidences": [p["confidence"] for p in preds],
           "accuracy": float(np.mean(correct)) if correct else None,
           "accuracy_ci95": wilson(int(sum(correct)), len(correct))}
    write_json(path, out)
    return out


def _is_correct(task: Task, prediction, answer) -> bool:
    if task.kind == "extract":
        return parse_object(prediction) == answer if isinstance(prediction, str) else prediction == answer
    return str(prediction).strip() == str(answer).strip()


# ---------------------------------------------------------------- the report

def _check(name: str, what: str, statistic, threshold, alert: bool, **more) -> dict:
    return {"check": name, "what": what, "statistic": statistic, "threshold": threshold,
            "verdict": "alert" if alert else "ok", **more}


def run_batch(cfg: MonitorConfig) -> dict:
    t0 = time.time()
    run_dir = Path(cfg.run_dir).resolve()
    th = cfg.thresholds
    task = Task.load(run_dir)
    timings = {}

    rows, accounting = read_batch(cfg, run_dir, task)
    pcfg = accounting.pop("config")
    if not rows:
        raise MonitorError(f"{cfg.batch_path}: none of its {accounting['read']} rows has text to monitor "
                           f"({accounting['skipped']}).")
    t = time.time()
    privacy = redact_and_audit(rows, pcfg, task)
    timings["redact_s"] = round(time.time() - t, 2)

    t = time.time()
    gguf, live_record = served_gguf(cfg, run_dir)
    base = baseline(run_dir, gguf, task)
    timings["baseline_s"] = round(time.time() - t, 2)
    t = time.time()
    if cfg.prediction_column:
        preds = [{"prediction": r["logged"] if task.kind != "extract" or isinstance(r["logged"], str)
                  else canonical_json(r["logged"], task.schema),
                  "confidence": float(r["logged_confidence"]) if r["logged_confidence"] not in (None, "") else None}
                 for r in rows]
        engine = f"logged by the service ({cfg.prediction_column})"
    else:
        prompts, fmt, metrics = _prompts(run_dir, task, [r["text"] for r in rows])
        preds = predict_rows(gguf, task, prompts, fmt, metrics)
        engine = f"llama.cpp, {gguf.name}"
    timings["predict_s"] = round(time.time() - t, 2)
    for r, p in zip(rows, preds):
        r.update(p)
        r["outcome"] = _outcome(task, r)

    t = time.time()
    train = read_jsonl(RunDir(run_dir).train_jsonl)
    holdout = read_jsonl(RunDir(run_dir).holdout_jsonl)
    checks = input_checks(train, holdout, rows, th, cfg.seed) + output_checks(task, base, rows, th)
    quality = quality_checks(task, base, rows, th)
    checks += quality["checks"]
    timings["checks_s"] = round(time.time() - t, 2)

    alerts = [c for c in checks if c["verdict"] == "alert"]
    decision, why = decide(alerts)
    rollback = None
    if decision == "roll back":
        rollback = _roll_back(cfg, run_dir, live_record, alerts) if cfg.auto_rollback else {
            "done": False, "why": "auto_rollback is off: roll back by hand (kit.adapters.rollback)"}
        if not rollback["done"] and rollback.get("no_previous"):
            why += " There is no earlier version to go back to: retrain on the feedback rows."

    out_dir = RunDir(run_dir).monitor_dir / cfg.name
    feedback = feedback_rows(cfg, task, rows, pcfg)
    write_jsonl(out_dir / "batch.jsonl", [_written(r) for r in rows if not r["withheld"]])
    write_jsonl(out_dir / "feedback.jsonl", feedback)
    report = {
        "batch": cfg.name, "batch_path": str(cfg.batch_path), "batch_sha256": sha256_file(cfg.batch_path),
        "monitored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "task": task.kind,
        "tenant": cfg.tenant, "served": {"gguf": str(gguf), "version": live_record["version"] if live_record else None,
                                         "engine": engine},
        "rows": accounting, "privacy": privacy, "reviewed": quality["reviewed"],
        "outcomes": dict(Counter(r["outcome"] for r in rows if r["outcome"])),
        "checks": checks, "alerts": [f"{c['check']}: {c['message']}" for c in alerts],
        "decision": decision, "why": why, "rollback": rollback,
        "overrides_by_label": quality.get("overrides_by_label"),
        "feedback": {"path": str(out_dir / "feedback.jsonl"), "rows": len(feedback)},
        "baseline": {k: base[k] for k in ("gguf", "n", "accuracy", "accuracy_ci95")},
        "thresholds": asdict(th), "timings": {**timings, "total_s": round(time.time() - t0, 2)},
    }
    write_json(out_dir / "report.json", report)
    write_json(RunDir(run_dir).monitor_report_json, report)
    _append_history(run_dir, report)
    drift_plot(run_dir)
    return report


def _outcome(task: Task, r: dict) -> str | None:
    """accepted (the reviewer kept the answer), overridden (another label) or edited (another object or text)."""
    if r["review"] is None:
        return None
    pred = parse_object(r["prediction"]) if task.kind == "extract" else r["prediction"]
    if _is_correct(task, pred, r["review"]):
        return "accepted"
    return "overridden" if task.kind == "classify" else "edited"


def input_checks(train: list[dict], holdout: list[dict], rows: list[dict], th: Thresholds, seed: int) -> list[dict]:
    tr = [words(r["text"]) for r in train]
    ho = [words(r["text"]) for r in holdout]
    ba = [words(r["text"]) for r in rows]
    vocab = {w for ws in tr for w in ws}
    terms = new_terms(ba, tr, th)
    out = [_check("new_terms", "words frequent in the batch that training barely saw (a new product, a new issue)",
                  len(terms), 0, bool(terms), terms=terms[:15],
                  message=f"{len(terms)} new frequent term(s): " + ", ".join(t["term"] for t in terms[:8]))]
    base_oov, batch_oov = oov_rate(ho, vocab), oov_rate(ba, vocab)
    out.append(_check("oov_rate", "share of the batch's words that never occur in training (holdout: the baseline)",
                      round(batch_oov, 4), round(base_oov + th.oov_increase, 4),
                      batch_oov > base_oov + th.oov_increase, baseline=round(base_oov, 4),
                      message=f"{batch_oov:.1%} of words unseen in training (holdout {base_oov:.1%})"))
    k = ks([len(ws) for ws in tr], [len(ws) for ws in ba])
    out.append(_check("length", "text length in words against training (two-sample KS)", round(k["statistic"], 4),
                      th.length_ks, k["statistic"] > th.length_ks and k["p_value"] < th.p_value,
                      p_value=k["p_value"], train_median=float(np.median([len(w) for w in tr])),
                      batch_median=float(np.median([len(w) for w in ba])),
                      message=f"length distribution moved (KS {k['statistic']:.2f}, median "
                              f"{np.median([len(w) for w in tr]):.0f} → {np.median([len(w) for w in ba]):.0f} words)"))
    pop = population_auc([r["text"] for r in train], [r["text"] for r in rows], seed)
    alert = pop["statistic"] >= th.population_auc and pop["p_value"] < th.p_value
    telling = most_telling_terms([r["text"] for r in train], [r["text"] for r in rows]) if alert else []
    out.append(_check("population", "how well a TF-IDF classifier tells batch texts from training texts "
                                    "(cross-validated ROC AUC; 0.5 = alike)", round(pop["statistic"], 4),
                      th.population_auc, alert, p_value=pop["p_value"], telling_terms=telling,
                      message=f"batch texts are told from training texts with AUC {pop['statistic']:.2f}"
                              + (f" (by: {', '.join(telling[:5])})" if telling else "")))
    return out


def output_checks(task: Task, base: dict, rows: list[dict], th: Thresholds) -> list[dict]:
    preds = [r["prediction"] for r in rows]
    if task.kind == "classify":
        exp = shares(base["predictions"], task.labels)
        act = shares(preds, task.labels)
        value = psi(exp, act)
        chi = chi_square(exp, preds)
        moved = sorted(task.labels, key=lambda k: -abs(act[k] - exp[k]))[:2]
        out = [_check("label_mix", "mix of predicted labels against the holdout's (PSI; chi-square p-value)",
                      round(value, 4), th.label_psi, value > th.label_psi and chi["p_value"] < th.p_value,
                      p_value=chi["p_value"], holdout_shares=exp, batch_shares=act,
                      message="predicted label mix shifted (PSI %.2f): " % value + ", ".join(
                          f"{k} {exp[k]:.0%} → {act[k]:.0%}" for k in moved))]
        conf = [r["confidence"] for r in rows if r["confidence"] is not None]
        base_conf = [c for c in base["confidences"] if c is not None]
        if conf and base_conf:
            k = ks(base_conf, conf)
            out.append(_check("confidence", "confidences against the holdout's (two-sample KS)",
                              round(k["statistic"], 4), th.confidence_ks,
                              k["statistic"] > th.confidence_ks and k["p_value"] < th.p_value, p_value=k["p_value"],
                              holdout_median=float(np.median(base_conf)), batch_median=float(np.median(conf)),
                              message=f"confidence distribution moved (KS {k['statistic']:.2f}, median "
                                      f"{np.median(base_conf):.2f} → {np.median(conf):.2f})"))
        return out
    k = ks([len(words(p)) for p in base["predictions"]], [len(words(p)) for p in preds])
    return [_check("answer_length", "length of the answers against the holdout's (two-sample KS)",
                   round(k["statistic"], 4), th.length_ks, k["statistic"] > th.length_ks and k["p_value"] < th.p_value,
                   p_value=k["p_value"], message=f"answer lengths moved (KS {k['statistic']:.2f})")]


def quality_checks(task: Task, base: dict, rows: list[dict], th: Thresholds) -> dict:
    reviewed = [r for r in rows if r["outcome"]]
    n = len(reviewed)
    good = sum(r["outcome"] == "accepted" for r in reviewed)
    out = {"reviewed": {"n": n, "share": n / len(rows)}, "checks": []}
    if not n:
        return out
    acc, ci = good / n, wilson(good, n)
    ref = base["accuracy"]
    what = {"classify": "accuracy", "extract": "exact match", "reply": "acceptance"}[task.kind]
    judged = n >= th.min_reviewed and ref is not None and task.kind != "reply"
    drop = judged and acc < ref - th.quality_drop and ci[1] < ref
    note = "" if judged else (f"only {n} reviewed rows (< min_reviewed {th.min_reviewed}): reported, not judged"
                              if n < th.min_reviewed else "no holdout figure to compare a reply's acceptance with")
    out["checks"].append(_check("quality", f"{what} on the reviewed rows (Wilson 95% interval) against the served "
                                           f"model's holdout {what}", round(acc, 4),
                                round(ref - th.quality_drop, 4) if ref is not None else None, bool(drop),
                                ci95=ci, baseline=ref, baseline_ci95=base["accuracy_ci95"], n=n, note=note,
                                message=f"{what} on reviewed rows {acc:.1%} ({ci[0]:.1%}–{ci[1]:.1%}, n={n}) vs "
                                        f"holdout {ref:.1%}" if ref is not None else ""))
    if task.kind == "classify":
        by_label = {}
        for lab in task.labels:
            rs = [r for r in reviewed if r["prediction"] == lab]
            over = [r for r in rs if r["outcome"] == "overridden"]
            by_label[lab] = {"reviewed": len(rs), "overridden": len(over),
                             "rate": round(len(over) / len(rs), 4) if rs else 0.0,
                             "corrected_to": dict(Counter(r["review"] for r in over))}
        # The served model errs on the holdout too: a lane is a repair target only when its overrides are both
        # frequent and improbable at that error rate (one-sided binomial test).
        from scipy.stats import binomtest

        error = max(1.0 - (ref if ref is not None else 1.0), 0.02)
        for v in by_label.values():
            v["p_value"] = float(binomtest(v["overridden"], v["reviewed"], error, alternative="greater").pvalue) \
                if v["reviewed"] else 1.0
        targets = [lab for lab, v in by_label.items() if v["overridden"] >= th.override_min
                   and v["rate"] >= th.override_rate and v["p_value"] < th.p_value]
        out["overrides_by_label"] = by_label
        out["checks"].append(_check(
            "overrides", "predicted labels reviewers override often, and more than the holdout's error rate explains "
            "(repair targets)", len(targets), 0, bool(targets), targets=targets, holdout_error_rate=error, message="reviewers override " + ", ".join(
                f"{lab} {by_label[lab]['rate']:.0%} of the time (mostly to "
                f"{max(by_label[lab]['corrected_to'], key=by_label[lab]['corrected_to'].get)})" for lab in targets)))
    return out


def decide(alerts: list[dict]) -> tuple[str, str]:
    names = {a["check"] for a in alerts}
    if "quality" in names:
        return "roll back", ("Quality on the reviewed rows dropped below the evaluated level: serve the version "
                             "before this one while the cause is fixed.")
    if names:
        return "retrain", (f"The traffic moved ({', '.join(sorted(names))}) but the reviewed quality holds: collect "
                           "the feedback rows and retrain before quality follows.")
    return "keep", "No check alerts: keep serving the live version."


def _roll_back(cfg: MonitorConfig, run_dir: Path, live_record: dict | None, alerts: list[dict]) -> dict:
    registry = adapters.location(run_dir, cfg.registry_dir)
    if live_record is None:
        return {"done": False, "no_previous": True, "why": f"tenant '{cfg.tenant}' has no live version in the registry"}
    reason = f"monitor batch '{cfg.name}': " + "; ".join(f"{a['check']}: {a['message']}" for a in alerts)
    try:
        target = adapters.rollback(registry, cfg.tenant, reason)
    except adapters.RegistryError as e:
        return {"done": False, "no_previous": True, "why": str(e)}
    return {"done": True, "from": live_record["version"], "to": target["version"], "run": target["run"],
            "modelfile": str(registry / cfg.tenant / "Modelfile"), "reason": reason}


def feedback_rows(cfg: MonitorConfig, task: Task, rows: list[dict], pcfg) -> list[dict]:
    """Overridden and edited rows, redacted, in the run's own stage-02 columns (the redacted text in the main text
    column, the reviewer's answer in the label column, tenant, consent and time kept), so the file can be appended to
    the next training export as it is; `kit_feedback` says where each row came from. A row the audit withheld is left
    out."""
    sha = sha256_file(cfg.batch_path)
    out = []
    for r in rows:
        if r["outcome"] not in ("overridden", "edited") or r["withheld"]:
            continue
        row = {c: "" for c in pcfg.text_columns}
        row[pcfg.text_columns[-1]] = r["text"]  # the columns were joined before redaction: the whole text goes here
        row[pcfg.id_column or "id"] = f"{cfg.name}:{r['id']}"
        row[pcfg.label_column] = r["review"] if task.kind != "extract" else canonical_json(r["review"], task.schema)
        for col, key in ((pcfg.tenant_column, "tenant"), (pcfg.consent_column, "consent"),
                         (pcfg.timestamp_column, "timestamp")):
            if col:
                row[col] = r[key]
        row["kit_feedback"] = {"batch": cfg.name, "batch_path": str(cfg.batch_path), "batch_sha256": sha,
                               "line": r["line"], "outcome": r["outcome"], "served_prediction": r["prediction"]}
        out.append(row)
    return out


def _written(r: dict) -> dict:
    keep = ("id", "line", "text", "tenant", "timestamp", "prediction", "confidence", "review", "outcome")
    return {k: r[k] for k in keep}


def _append_history(run_dir: Path, report: dict) -> None:
    path = RunDir(run_dir).monitor_history_jsonl
    past = [h for h in read_jsonl(path) if h["batch"] != report["batch"]] if path.exists() else []
    stats = {c["check"]: c["statistic"] for c in report["checks"]}
    past.append({"batch": report["batch"], "monitored_at": report["monitored_at"], "rows": report["rows"]["monitored"],
                 "stats": stats, "thresholds": {c["check"]: c["threshold"] for c in report["checks"]},
                 "alerts": len(report["alerts"]), "decision": report["decision"]})
    write_jsonl(path, past)


