"""The model card: MODEL_CARD.md for an export, from the run's own records (nothing typed by hand, no ticket text).

In: the export stage's config, the license note, the task, `eval/metrics.json`, the parity results and the release
notes. Out: the card's Markdown. `kit.stages.export` writes it beside the GGUF files.
"""

from __future__ import annotations

from pathlib import Path

from kit.io import read_json
from kit.rundir import RunDir
from kit.tasks.base import Task


def optional_json(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def pct_ci(m: dict) -> str:
    lo, hi = m["accuracy_ci95"]
    return f"{m['accuracy']:.1%} ({lo:.1%}–{hi:.1%})"


def model_card(cfg, note: dict, task: Task, eval_metrics: dict, parity: dict, run_dir: Path,
               notes: str) -> str:
    """MODEL_CARD.md from the run's own records: nothing in it is typed by hand, and no ticket text appears."""
    n = eval_metrics["models"]["tuned"]["n"]
    metrics_table, weak_text = _card_metrics(task, eval_metrics)
    agreement = {"classify": "label agreement (near-ties within 0.2 count as agreeing)", "extract": "same JSON object",
                 "reply": "reply similarity (ROUGE-L vs the adapter's)"}[task.kind]
    rows = "\n".join(f"| {k} | {v['file']} | {v['size_mb']} MB | {v['agreement']:.1%}"
                     + (f" ({v['near_tie_flips']} near-tie flips)" if v.get("near_tie_flips") else "") + " | "
                     f"{'yes' if v['passed'] else 'no' if v['passed'] is False else 'reported'} |"
                     for k, v in parity["types"].items())
    rd = RunDir(run_dir)
    prov, audit, scope = (optional_json(p) for p in (rd.provenance_json, rd.audit_json, rd.scope_json))
    counts = prov.get("counts", {})
    data_line = (", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "see data/provenance.json")
    approver = note.get("approver") or "not recorded"
    release = notes.split("\n", 2)[-1].strip()
    does = {"classify": f"Assigns a text one of: {', '.join(f'`{lab}`' for lab in task.labels)}.",
            "extract": f"Writes the JSON object of a text's fields (keys: "
                       f"{', '.join(f'`{k}`' for k in (task.schema or {}).get('properties', {}))}); the schema is "
                       "`schema.json`.",
            "reply": "Writes a reply to a message, in the tone of the training replies."}[task.kind]
    return f"""# {cfg.ollama_name}

{does}
Instruction it was trained with (the Modelfile's SYSTEM): "{task.system}"
Base model: `{cfg.model}` under the {note['license']} ({note['url']}). {note.get('notice', '')}

## Intended use
{scope.get('use_case', 'Suggesting an answer for incoming support text')}, with a person able to correct the answer.
Out of scope: decisions made without a person, and any text unlike the training data or in another language.

## Training data
Purpose recorded with the data: {prov.get('purpose', 'not recorded')}. Rows: {data_line}.
Prepared snapshot expires {prov.get('expires_on', 'see data/provenance.json')}; source sha256
`{str(prov.get('source_sha256', ''))[:16]}…`. Personal data was replaced by typed placeholders before training; the
independent privacy audit {'passed' if audit.get('passed') else 'did not pass'} ({audit.get('hits', 'n/a')} hits).

## Evaluation (holdout, n={n}, 95% bootstrap intervals)
{f"Rows: {eval_metrics['holdout']}." if eval_metrics.get('holdout') else ''}
{metrics_table}

{(eval_metrics.get('verdict') or {}).get('sentence', '')}

## Known failure modes
{weak_text} A score on an interval's low end is what to plan for.
Texts unlike the training data (other languages, new products, several requests in one text) are handled with less
reliability than the table shows.

## Export parity (llama.cpp vs the adapter in transformers)
| export | files | size | {agreement} | required ≥ {parity['threshold']:.0%} |
|---|---|---|---|---|
{rows}

Verified: **{parity['verified']}**. Check the files you received with `python -m kit verify <export dir>`.

## Limitations
Trained on {'synthetic data (course demo)' if 'demo' in str(prov.get('purpose', '')).lower() else 'the data above'};
accuracy on real mail must be measured on a real holdout. Names: {audit.get('ner_model', 'see data/audit.json')}.
A 270M-parameter model follows its trained format, not general instructions.

## NIST AI RMF mapping
| function | what this run did |
|---|---|
| Govern | License note approved by {approver} ({note.get('license')}); purpose and retention recorded in `data/provenance.json`. |
| Map | Scope decision `{scope.get('recommendation', 'n/a')}` with reasons in `scope.json`; intended and out-of-scope uses above. |
| Measure | Holdout metrics with intervals against baselines (`eval/metrics.json`); privacy audit (`data/audit.json`); export parity (`export/parity.json`). |
| Manage | Checksums in `SHA256SUMS.json` and `kit verify`; release notes against the previous run; a person reviews routed email; per-tenant adapters can be dropped to honour erasure requests. |

## Release notes
{release}
"""


def _card_metrics(task: Task, eval_metrics: dict) -> tuple[str, str]:
    """The model card's results table and its weakest-spot sentence, per task kind."""
    pct = lambda m, k: f"{m[k]:.1%} ({m[k + '_ci95'][0]:.1%}–{m[k + '_ci95'][1]:.1%})"
    models = eval_metrics["models"]
    tuned = models["tuned"]
    if task.kind == "extract":
        table = ["| model | valid JSON | field accuracy (95% interval) | exact match (95% interval) |", "|---|---|---|---|"]
        table += [f"| {n} | {m['validity_rate']:.1%} | {pct(m, 'field_accuracy')} | {pct(m, 'exact_match')} |"
                  for n, m in models.items()]
        weak = sorted(((k, v) for k, v in tuned["per_field"].items() if v["support"] >= 3 and v["accuracy"] is not None),
                      key=lambda kv: kv[1]["accuracy"])[:3]
        text = "Weakest fields for the tuned model: " + ("; ".join(f"`{k}` {v['accuracy']:.1%} of {v['support']}"
                                                                  for k, v in weak) or "none") + "."
    elif task.kind == "reply":
        table = ["| model | ROUGE-L (95% interval) | chrF (95% interval) | words per reply |", "|---|---|---|---|"]
        table += [f"| {n} | {pct(m, 'rouge_l')} | {pct(m, 'chrf')} | {m['mean_words']:.1f} |" for n, m in models.items()]
        text = (f"Replies are compared with one reference each; ROUGE-L rewards the reference's wording, not its "
                f"correctness. Refusals {tuned['refusal_rate']:.1%}, empty replies {tuned['empty_rate']:.1%}; people "
                "review replies before they are sent.")
    else:
        table = ["| model | accuracy | 95% interval | macro-F1 |", "|---|---|---|---|"]
        table += [f"| {n} | {m['accuracy']:.1%} | {m['accuracy_ci95'][0]:.1%}–{m['accuracy_ci95'][1]:.1%} | "
                  f"{m['macro_f1']:.3f} |" for n, m in models.items() if "macro_f1" in m]
        weak = sorted(((k, v) for k, v in tuned.get("per_class", {}).items() if v.get("recall", 1.0) < 1.0),
                      key=lambda kv: kv[1]["recall"])[:2]
        text = "Weakest labels for the tuned model: " + ("; ".join(f"`{k}` recall {v['recall']:.1%}" for k, v in weak)
                                                         or "none missed on this holdout") + "."
    return "\n".join(table), text
