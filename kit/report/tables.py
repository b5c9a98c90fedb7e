"""Tables for the notebooks and the pilot report: models side by side (04), the most confused labels (classify),
per-field accuracy and field updates (extract), privacy probes (04), export parity (05), the monitor's checks (06).

In: the dicts the stages write (`eval/metrics.json`, `eval/probes.json`, `export/parity.json`, a monitor report).
Out: pandas DataFrames (or lines of text) to display; nothing is written.
"""

from __future__ import annotations

from kit.tasks.base import flatten, parse_object


def checks_table(report: dict):
    """The report's checks as a table for the notebook."""
    import pandas as pd

    return pd.DataFrame([{"check": c["check"], "statistic": c["statistic"], "threshold": c["threshold"],
                          "verdict": c["verdict"], "what it measures": c["what"]} for c in report["checks"]])


def models_table(summary: dict):
    """One row per model, best first: for classify accuracy and macro-F1 with intervals, ECE and (with a
    critical_label) escalation errors; for extract validity, field accuracy and exact match; for reply ROUGE-L, chrF,
    length and refusals."""
    import pandas as pd

    r3 = lambda x: None if x is None else round(float(x), 3)  # per value: the interval strings make columns objects
    ci = lambda m, k: f"{m[k + '_ci95'][0]:.3f}–{m[k + '_ci95'][1]:.3f}"
    kind = summary.get("task", "classify")
    rows = {}
    for name, m in summary["models"].items():
        if kind == "extract":
            rows[name] = {"valid JSON": r3(m["validity_rate"]), "field accuracy": r3(m["field_accuracy"]),
                          "field ci95": ci(m, "field_accuracy"), "exact match": r3(m["exact_match"]),
                          "exact ci95": ci(m, "exact_match"), "field F1": r3(m["field_f1"]), "ECE": r3(m.get("ece"))}
        elif kind == "reply":
            rows[name] = {"ROUGE-L": r3(m["rouge_l"]), "ROUGE-L ci95": ci(m, "rouge_l"), "chrF": r3(m["chrf"]),
                          "chrF ci95": ci(m, "chrf"), "words": r3(m["mean_words"]),
                          "refusals": r3(m["refusal_rate"]), "reference refusals": r3(m.get("reference_refusal_rate")),
                          "empty": r3(m["empty_rate"])}
        else:
            rows[name] = {"accuracy": r3(m["accuracy"]), "acc ci95": ci(m, "accuracy"), "macro-F1": r3(m["macro_f1"]),
                          "F1 ci95": ci(m, "macro_f1"), "ECE": r3(m.get("ece"))}
            if "escalation" in m:
                e = m["escalation"]
                rows[name] |= {"wrong escalations": r3(e["wrong_escalation_rate"]),
                               "missed escalations": r3(e["missed_escalation_rate"])}
    sort = {"extract": "field accuracy", "reply": "ROUGE-L"}.get(kind, "accuracy")
    return pd.DataFrame(rows).T.sort_values(sort, ascending=False)


def field_table(summary: dict, model: str = "tuned"):
    """extract: accuracy per field of one model (rows that expect the field), and how often it invented it."""
    import pandas as pd

    per = summary["models"][model]["per_field"]
    return pd.DataFrame(per).T[["support", "accuracy", "invented"]].astype({"support": int, "invented": int})


def confused_pairs(summary: dict, labels, model: str = "tuned", top: int = 10):
    """classify: the most frequent errors of one model as (true, predicted) rows with their count and the share of
    the true label's rows: the confusion matrix read off for label sets too large to look at (50+ intents)."""
    import pandas as pd

    cm = summary["models"][model]["confusion"]
    rows = [{"true": labels[i], "predicted": labels[j], "rows": n, "share of true": n / sum(cm[i])}
            for i, line in enumerate(cm) for j, n in enumerate(line) if i != j and n]
    rows.sort(key=lambda r: (-r["rows"], -r["share of true"], r["true"], r["predicted"]))
    return pd.DataFrame(rows[:top], columns=["true", "predicted", "rows", "share of true"])


def field_updates(predictions: list[dict], rows: int = 5, model: str = "tuned") -> list[str]:
    """extract: answers shown as the field update an agent would accept or reject, with the model's confidence."""
    out = []
    for p in [p for p in predictions if p["model"] == model][:rows]:
        obj = parse_object(p["prediction"])
        fields = ", ".join(f"{k} = {v!r}" for k, v in flatten(obj).items()) if obj else "(no valid JSON object)"
        verdict = "matches" if p["correct"] else "differs from"
        out.append(f"{p['id']}: set {fields} · confidence {p['confidence']:.2f} · {verdict} the reference")
    return out


def probes_table(probes: dict):
    import pandas as pd

    cols = ["kind", "rank", "exposure", "base_rank", "base_exposure", "max_exposure", "memorized"]
    return pd.DataFrame(probes["canaries"])[cols].round(2)


def pii_table(probes: dict):
    """What each PII probe drew out of the tuned and the base model (entity counts, redacted text)."""
    import pandas as pd

    echo = probes.get("pii_echo") or {"tuned": [], "base": []}
    return pd.DataFrame([{"probe": t["probe"], "tuned findings": t["findings"] or "-",
                          "tuned (redacted)": t["output_redacted"][:60], "base findings": b["findings"] or "-"}
                         for t, b in zip(echo["tuned"], echo["base"])])


def parity_table(parity: dict):
    """One row per exported variant: size, agreement with the adapter, its holdout score, verdict, seconds."""
    import pandas as pd

    score = {"extract": ["valid_json", "holdout_exact_match", "adapter_exact_match"],
             "reply": ["text_agreement", "holdout_rouge_l", "adapter_rouge_l"]}.get(
        parity.get("task", "classify"), ["holdout_accuracy"])
    cols = ["size_mb", "agreement", "label_agreement", "near_tie_flips", *score, "tokenization_agreement", "passed",
            "seconds"]
    table = pd.DataFrame(parity["types"]).T
    return table[[c for c in cols if c in table.columns]]
