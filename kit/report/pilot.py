"""The pilot report: what a client's manager, lawyer and CISO ask about one run, on one page.

In: a run directory, with whatever stages have run. Out: `<run>/report.html`, self-contained (plots inlined as
data URIs, the stylesheet in the page, no script, nothing fetched), readable on a phone and printable to PDF.
Every figure is read from the files the stages wrote; a stage that has not run says so instead of showing a figure.
Ticket text appears only as the stages wrote it: redacted. Rendered by Jinja2 from `pilot.html.j2`, autoescaped.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from kit import __version__
from kit.errors import KitError
from kit.io import read_json, read_jsonl, write_text_atomic
from kit.rundir import RunDir

# (section id, title, the stage that writes what it shows). The ids are the page's anchors, and what tests look for.
SECTIONS = (
    ("scope", "Use case and scope decision", "00_scope"),
    ("model", "Base model and license", "01_license"),
    ("data", "Data: what was used and what was kept out", "02_prepare"),
    ("training", "Training", "03_train"),
    ("results", "Results against the baselines", "04_evaluate"),
    ("probes", "Memorisation probes", "04_evaluate"),
    ("export", "Export for Ollama", "05_export"),
    ("release", "Release notes", "05_export"),
    ("monitor", "After launch: monitoring", "06_monitor"),
)
# What a section says when its stage ran and still wrote nothing it could show.
EMPTY_NOTES = {"monitor": "06_monitor ran without a batch of production traffic: give it batch_paths (files in "
                          "stage 02's formats) to see drift, reviewer feedback and the registry's decision.",
               "release": "05_export wrote no release notes."}
FAILURE_EXAMPLES = 6
EXAMPLE_CHARS = 400


class ReportError(KitError):
    """The report cannot be built: no run directory, or a file in it that cannot be read."""


def build(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `report.html` for a run directory (or to `out`) and return its path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"run directory '{run}' does not exist; give a directory under papermill_runs/ "
                          "(e.g. papermill_runs/demo) that `python -m kit run` wrote.")
    if not any((run / f).exists() for f in ("manifest.json", "scope.json", "license_note.json")):
        raise ReportError(f"'{run}' holds no run: no manifest.json, scope.json or license_note.json. Run the course "
                          "into it first (python -m kit run --config papermill_runs/demo.yaml).")
    collectors = {"scope": _scope, "model": _model, "data": _data, "training": _training, "results": _results,
                  "probes": _probes, "export": _export, "release": _release, "monitor": _monitor}
    manifest = _json(RunDir(run).manifest_json) or {}  # read once: stage status, times and parameters
    notebooks = manifest.get("notebooks", {})
    sections = []
    for sid, title, stage in SECTIONS:
        try:
            body = collectors[sid](run, notebooks)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            raise ReportError(f"{run}: the files of stage {stage} cannot be read for the report's '{title}' section "
                              f"({type(e).__name__}: {e}). Re-run that stage (python -m kit run --config <your "
                              f"config> --from {stage[:2]}) and build the report again.") from None
        ran = notebooks.get(stage, {}).get("status") == "ok"
        sections.append({"id": sid, "title": title, "stage": stage, "done": body is not None, "ran": ran,
                         "empty_note": EMPTY_NOTES.get(sid, ""), **(body or {})})
    page = _render(run, sections, manifest)
    path = Path(out) if out else RunDir(run).report_html
    write_text_atomic(path, page)
    return path


# --- one collector per section: a dict for the template, or None when its stage has not run ------------------------

def _scope(run: Path, notebooks: dict) -> dict | None:
    s = _json(RunDir(run).scope_json)
    if s is None:
        return None
    c, p = s["costs"], s.get("parameters", {})
    be = c.get("break_even_requests_per_month")
    return {
        "use_case": s["use_case"], "recommendation": s["recommendation"], "reasons": s["reasons"],
        "costs": _table(["option", "USD per month", "what it includes"], [
            ["hosted API", _usd(c["api_usd"]), f"{p.get('prompt_tokens', '?')} prompt + "
                                              f"{p.get('completion_tokens', '?')} answer tokens per request"],
            ["hosted API, short prompt", _usd(c["api_with_short_prompt_usd"]),
             f"{p.get('tuned_prompt_tokens', '?')} prompt tokens: what a tuned model needs"],
            ["self-hosted tuned model", _usd(c["self_hosted_usd"]),
             ", ".join(f"{k} {_usd(v)}" for k, v in c["self_hosted_breakdown"].items())]]),
        "volume": f"{c['requests_per_month']:,} requests per month",
        "break_even": (f"Self-hosting costs less than the API above {be:,} requests per month." if be is not None
                       else "The API is free at these prices: self-hosting never costs less."),
        "plot": _img(RunDir(run).scope_plot),
    }


def _model(run: Path, notebooks: dict) -> dict | None:
    n = _json(RunDir(run).license_note_json)
    if n is None:
        return None
    answers = [[q.replace("_", " "), a, "yes" if q in n["intended_uses"] else ""] for q, a in n["answers"].items()]
    return {
        "model": n["model"], "source": n.get("weights_source", ""), "revision": n.get("revision", ""),
        "sha256": n.get("weights_sha256", ""), "obtained": n.get("date_obtained", ""),
        "license": n["license"], "url": n["url"], "notice": n.get("notice", ""),
        "answers": _table(["question", "the license says", "this pilot needs it"], answers),
        "conditions": [c["text"] if isinstance(c, dict) else str(c) for c in n.get("conditions", [])],
        "conflicts": n.get("conflicts", []), "conditional": n.get("conditional_uses", []),
        "approved": bool(n.get("approved")), "approver": n.get("approver") or "nobody",
        "approval_date": n.get("approval_date") or "not approved",
    }


def _data(run: Path, notebooks: dict) -> dict | None:
    prov = _json(RunDir(run).provenance_json)
    if prov is None:
        return None
    counts = prov.get("counts", {})
    audit = _json(RunDir(run).audit_json) or {}
    quarantine = _jsonl(RunDir(run).quarantine_jsonl)
    reasons = Counter(q.get("code", "other") for q in quarantine)
    example = {q.get("code", "other"): q.get("reason", "") for q in quarantine}
    redactions: Counter = Counter()
    rows = _jsonl(RunDir(run).train_jsonl) + _jsonl(RunDir(run).holdout_jsonl)
    for r in rows:
        redactions.update(r.get("redactions") or {})
    consent = prov.get("consent") or {}
    canaries = _json(RunDir(run).canaries_json) or {}
    kinds = Counter(c["kind"] for c in canaries.get("canaries", []))
    review = _json(RunDir(run).review_status_json) or {}
    sources = prov.get("sources", [])
    return {
        "purpose": prov.get("purpose", ""), "prepared_at": prov.get("prepared_at", ""),
        "retention": f"{prov.get('retention_days', '?')} days (prepared copy expires {prov.get('expires_on', '?')})",
        "sources": _table(["source", "file", "rows read", "sha256"],
                          [[s.get("role", ""), Path(s.get("path", "")).name, s.get("rows_read", ""),
                            str(s.get("sha256", ""))[:16] + "…"] for s in sources]),
        "counts": _table(["rows read", "train", "holdout", "quarantined", "duplicates"],
                         [[counts.get(k, 0) for k in ("read", "train", "holdout", "quarantined", "duplicates")]]),
        "quarantine": _table(["reason", "rows", "for example"],
                             [[code, n, example[code]] for code, n in reasons.most_common()]),
        "consent": (f"Column `{consent['column']}`: {consent.get('rows_excluded', 0)} rows without training consent "
                    "were kept out" + (" (" + ", ".join(f"{t}: {k}" for t, k in
                                                       consent.get("rows_excluded_by_tenant", {}).items()) + ")"
                                       if consent.get("rows_excluded_by_tenant") else "") + "."
                    if consent.get("column") else "No consent column was given: every row was taken as consented."),
        "redactions": _table(["replaced by a placeholder", "values"], [[k, n] for k, n in redactions.most_common()]),
        "redacted_rows": sum(1 for r in rows if r.get("redactions")), "rows_written": len(rows),
        "fields_dropped": prov.get("fields_dropped", []),
        "audit_passed": bool(audit.get("passed")), "audit_hits": audit.get("hits", 0),
        "audit_rows": sum((audit.get("rows_scanned") or {}).values()), "audit_checks": audit.get("checks", []),
        "audit_by_check": _table(["check", "hits"], [[k, v] for k, v in (audit.get("by_check") or {}).items()]),
        "canaries": sum(kinds.values()), "canary_kinds": ", ".join(f"{k} × {n}" for k, n in kinds.items()),
        "canaries_found": audit.get("canaries_found", 0), "holdout_leaks": audit.get("holdout_leaks", 0),
        "review": review.get("note") or ("reviewed by " + str(review.get("reviewer")) if review.get("reviewed")
                                         else ""),
    }


def _training(run: Path, notebooks: dict) -> dict | None:
    log = _json(RunDir(run).train_log_json)
    if log is None:
        return None
    recipe = log.get("recipe") or {}
    dtype = log.get("dtype_choice") or {}
    best = log.get("best_validation") or {}
    hardware = log.get("cpu") or log.get("device", "")
    if log.get("device") == "cuda":
        hardware = "CUDA GPU"
    facts = [
        ["wall time", _duration(log["wall_s"])],
        ["hardware", f"{hardware}, {log.get('threads', '?')} threads, {log.get('processes', 1)} process(es)"
                     + (f"; thread count changed {len(log['thread_changes'])} time(s) as other programs used the "
                        "cores" if log.get("thread_changes") else "")],
        ["weights dtype", f"{log.get('dtype', '')} ({dtype.get('reason', '')})".strip()],
        ["quantization", log.get("quantization") or "none"],
        ["LoRA layers", log.get("lora_layers", "")],
        ["recipe", f"{recipe.get('recipe', '')}: {recipe.get('stopped', '')}"],
        ["steps (epochs)", f"{log.get('steps', '')} ({log.get('epochs_done', '')})"],
        ["examples", f"{log.get('train_examples', '')} training, {log.get('validation_examples', '')} validation"],
        ["throughput", f"{log.get('train_tokens_per_s') or log.get('tokens_per_s')} tokens/s"],
        ["peak memory", f"{log.get('peak_rss_mb', '?')} MB"],
        ["estimated cost", (_usd(log["estimated_cost_usd"], 4) + " (wall time × the hourly price set in 03)")
         if log.get("estimated_cost_usd") else "not priced: set usd_per_hour in 03 to see the compute cost"],
    ]
    if best:
        facts.append(["checkpoint kept", ", ".join(f"{k} {_fmt(v)}" for k, v in best.items())])
    choices = recipe.get("choices") or {}
    return {"facts": _table(["", ""], facts),
            "choices": [f"{k} = {v['value']}: {v['why']}" if isinstance(v, dict) and "why" in v else f"{k}: {v}"
                        for k, v in choices.items()],
            "plot": _img(RunDir(run).loss_plot)}


def _results(run: Path, notebooks: dict) -> dict | None:
    m = _json(RunDir(run).metrics_json)
    if m is None:
        return None
    from kit.report.tables import (
        models_table,  # the notebook's own table: one rule for both
    )

    df = models_table(m)
    table = _table(["model", *df.columns], [[name, *[_fmt(v) for v in row]] for name, row in df.iterrows()])
    tuned = m["models"]["tuned"]
    facts = []
    if tuned.get("ece") is not None:
        facts.append(["calibration (ECE)", f"{tuned['ece']:.3f}: confidence is off by this much on average "
                                           "(0 is perfectly calibrated)"])
    if tuned.get("handoff"):
        h = tuned["handoff"]
        facts.append(["hand-off to a person", f"{1 - h['coverage']:.1%} of texts ({h['handed_to_person']}) below "
                                             f"confidence {h['threshold']}; the rest is automated at "
                                             f"{_pct(h['accuracy_automated'])} accuracy "
                                             f"({h['errors_automated']} errors)"])
    if tuned.get("escalation"):
        e = tuned["escalation"]
        facts.append([f"escalations to {e['critical_label']}",
                      f"wrongly escalated {_pct(e['wrong_escalation_rate'])} ({e['wrong_escalations']} of "
                      f"{e['negatives']}), missed {_pct(e['missed_escalation_rate'])} ({e['missed_escalations']} of "
                      f"{e['positives']})"])
    prev = ((m.get("regression") or {}).get("models") or {}).get("tuned")
    if prev:
        lo, hi = prev.get("ci95", (None, None))
        facts.append(["against the previous run", f"accuracy {_pct(prev['previous_accuracy'])} → "
                                                 f"{_pct(prev['accuracy'])} ({100 * prev['delta']:+.1f} points"
                                                 + (f", 95% interval {100 * lo:+.1f} to {100 * hi:+.1f})"
                                                    if lo is not None else ")")])
    return {"verdict": (m.get("verdict") or {}).get("sentence", ""), "table": table, "n": tuned.get("n"),
            "facts": _table(["", ""], facts),
            "failures": _failures(run, m.get("task", "classify")),
            "plots": [p for p in (_img(RunDir(run).eval_dir / f) for f in ("models.png", "calibration.png", "confusion.png"))
                      if p]}


def _failures(run: Path, kind: str) -> list[dict]:
    """The tuned model's mistakes on the holdout (the worst replies, for reply), with the redacted text."""
    holdout = {r["id"]: r for r in _jsonl(RunDir(run).holdout_jsonl)}
    tuned = [p for p in _jsonl(RunDir(run).predictions_jsonl) if p.get("model") == "tuned"]
    if kind == "reply":
        wrong = sorted(tuned, key=lambda p: p.get("rouge_l", 1.0))
    else:
        wrong = sorted((p for p in tuned if p.get("correct") is False), key=lambda p: -(p.get("confidence") or 0))
    out = []
    for p in wrong[:FAILURE_EXAMPLES]:
        text = holdout.get(p["id"], {}).get("text", "")
        conf = p.get("confidence")
        out.append({"id": p["id"], "text": _cut(text), "expected": _answer(p.get("label")),
                    "answer": _answer(p.get("prediction")),
                    "note": (f"confidence {conf:.2f}" if isinstance(conf, (int, float)) else "")
                            + (f", ROUGE-L {p['rouge_l']:.2f}" if "rouge_l" in p else "")})
    return out


def _probes(run: Path, notebooks: dict) -> dict | None:
    p = _json(RunDir(run).probes_json)
    if p is None:
        return None
    rows = [[c.get("kind", ""), c.get("rank"), _fmt(c.get("exposure")), c.get("base_rank"),
             _fmt(c.get("base_exposure")), "yes" if c.get("memorized") else "no"] for c in p.get("canaries", [])]
    ctrl = p.get("control")
    control = None
    if ctrl:
        control = (f"Control: a throwaway LoRA trained {ctrl['steps']} steps on a text holding a fresh {ctrl['kind']} "
                   f"canary ranks it {ctrl['planted_rank_after']} (exposure {ctrl['planted_before']:.1f} → "
                   f"{ctrl['planted_after']:.1f} bits), an unseen one {ctrl['unseen_rank_after']} "
                   f"({ctrl['unseen_after']:.1f} bits): the probe "
                   + ("fires on memorised text, so its silence above means something." if ctrl["detected"] else
                      "did NOT fire on memorised text; its silence above proves little."))
    echo = p.get("pii_echo")
    return {"planted": p.get("planted"), "memorized": p.get("memorized_canaries", 0), "n": len(rows),
            "canaries": _table(["canary", "tuned rank", "tuned exposure (bits)", "base rank", "base exposure (bits)",
                                "memorised"], rows),
            "control": control, "control_detected": bool(ctrl and ctrl["detected"]),
            "echo": (f"Asked for personal data, the tuned model wrote {echo['tuned_findings']} PII-like values "
                     f"(the base model {echo['base_findings']}), and repeated {echo['canaries_echoed']} canaries."
                     if echo else ""),
            "plot": _img(RunDir(run).eval_dir / "probes.png")}


def _export(run: Path, notebooks: dict) -> dict | None:
    parity = _json(RunDir(run).parity_json)
    if parity is None:
        return None
    from kit.stages import export

    verdict = lambda v: "passed" if v["passed"] else "FAILED" if v["passed"] is False else "reported"
    rows = [[k, v["file"], f"{v['size_mb']} MB", _pct(v["agreement"]), _pct(v.get("tokenization_agreement")),
             verdict(v), f"{v.get('seconds', '')} s"] for k, v in parity["types"].items()]
    sums = _json(RunDir(run).export_dir / export.CHECKSUMS) or {}
    name = notebooks.get("05_export", {}).get("parameters", {}).get("ollama_name", export.ExportConfig.ollama_name)
    return {"verified": bool(parity["verified"]), "threshold": parity["threshold"], "n": parity["n"],
            "parity": _table(["export", "files", "size", "agreement with the adapter", "same tokens", "parity",
                              "time"], rows),
            "checksums": _table(["file", "sha256"], [[f, d] for f, d in sums.items()]),
            "commands": export.ollama_commands(run.resolve(), name)}


def _release(run: Path, notebooks: dict) -> dict | None:
    path = RunDir(run).release_notes
    if not path.exists():
        return None
    from markdown_it import MarkdownIt

    text = path.read_text(encoding="utf-8").split("\n", 1)[-1]  # the page has its own heading
    return {"html": MarkdownIt("commonmark", {"html": False}).enable("table").render(text)}


def _monitor(run: Path, notebooks: dict) -> dict | None:
    history = _jsonl(RunDir(run).monitor_history_jsonl)
    if not history:
        return None
    reports = []
    for h in history:
        r = _json(RunDir(run).monitor_dir / h["batch"] / "report.json") or {}
        reports.append([h["batch"], r.get("rows", {}).get("read", ""), _pct(_check(r, "quality")),
                        len(r.get("alerts", [])), h["decision"], r.get("why", "")])
    last = _json(RunDir(run).monitor_report_json) or {}
    rb = last.get("rollback") or {}
    if rb.get("done"):
        registry = f"The registry rolled back from {rb['from']} to {rb['to']} (run {rb['run']}), now served by {rb['modelfile']}."
    elif rb:
        registry = f"Roll back not done: {rb.get('why', '')}"
    else:
        registry = ""
    return {"batches": _table(["batch", "rows", "reviewed accuracy", "alerts", "decision", "why"], reports),
            "alerts": last.get("alerts", []), "decision": last.get("decision", ""), "registry": registry,
            "plot": _img(RunDir(run).drift_plot)}


def _check(report: dict, name: str):
    for c in report.get("checks", []):
        if c.get("check") == name:
            return c.get("statistic")
    return None


# --- helpers ------------------------------------------------------------------------------------------------------

def _render(run: Path, sections: list[dict], manifest: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    stages = [[k, v.get("status", ""), _duration(v.get("wall_s", 0))] for k, v in manifest.get("notebooks", {}).items()]
    by_id = {s["id"]: s for s in sections}
    glance = []
    if by_id["scope"]["done"]:
        glance.append(("Scope", by_id["scope"]["recommendation"]))
    if by_id["model"]["done"]:
        m = by_id["model"]
        glance.append(("License", f"{m['license']}: " + (f"approved by {m['approver']}" if m["approved"]
                                                          else "NOT approved")))
    if by_id["data"]["done"]:
        d = by_id["data"]
        glance.append(("Privacy audit", "passed" if d["audit_passed"] else f"FAILED ({d['audit_hits']} hits)"))
    if by_id["results"]["done"]:
        glance.append(("Result", by_id["results"]["verdict"]))
    if by_id["export"]["done"]:
        glance.append(("Export", "verified in llama.cpp" if by_id["export"]["verified"] else "NOT verified"))
    if by_id["monitor"]["done"]:
        glance.append(("Monitoring", f"last batch: {by_id['monitor']['decision']}"))
    return env.get_template("pilot.html.j2").render(
        run_name=manifest.get("run_name") or run.name, sections=sections, glance=glance,
        stages=_table(["stage", "status", "time"], stages), kit_version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _json(path: Path):
    if not path.exists():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e}); re-run the stage that writes it.") from None


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path) if path.exists() else []


def _img(path: Path) -> str | None:
    """A PNG as a data URI, so the page carries its plots (one file to send, nothing fetched)."""
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(head: list, rows: list[list]) -> dict:
    return {"head": [str(h) for h in head], "rows": [["" if c is None else str(c) for c in r] for r in rows]}


def _usd(x, digits: int = 2) -> str:
    return f"${x:,.{digits}f}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3f}"
    return "" if x is None else str(x)


def _duration(seconds: float) -> str:
    seconds = float(seconds or 0)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS].rsplit(" ", 1)[0] + " …"


def _answer(x) -> str:
    if isinstance(x, (dict, list)):
        return json.dumps(x, ensure_ascii=False)
    return _cut(str(x)) if x is not None else ""
