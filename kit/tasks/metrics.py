"""Metrics per task kind: labels (classify), JSON objects (extract) and free-text replies (reply), and the answer
baselines of the generative kinds.

In: expected answers and generated texts, in holdout order. Out: one report per model, with percentile-bootstrap 95%
intervals over holdout rows, in the same shape for every model (so baselines and the tuned model share one table).

extract. An answer counts as *valid* when it parses to a JSON object (and fits the schema, when there is one). Its
fields are compared leaf by leaf on dotted paths ("fields.city"): *field accuracy* is the share of matching leaves
among the union of expected and produced leaves (a missing field and an invented one both count against it), *exact
match* the share of answers equal to the expected object. The summary's `accuracy` is exact match, so the regression
comparison and the release notes read every kind alike.

reply. ROUGE-L F-measure (`rouge-score`, Google's reference implementation) and chrF (`sacrebleu`) against the
reference reply, both per row, so they get intervals; answer length against the reference; refusals.

classify. Accuracy and macro-F1 with intervals, per-class precision/recall and the confusion matrix (`metrics`), and
the errors of one critical lane (`escalation`); `json_field_metrics` is the older whole-field check for JSON outputs.
"""

from __future__ import annotations

import numpy as np

from kit.stats import bootstrap_ci
from kit.tasks.base import flatten, parse_object


def _ci(values, samples: int, seed: int) -> list[float]:
    return bootstrap_ci(np.asarray(values, dtype=float), np.mean, samples, seed)


def schema_check(schema: dict | None):
    """`check(obj) -> bool`: a parsed object that fits `schema` (any object when there is none); the validator is
    built once."""
    if not schema:
        return lambda obj: obj is not None
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return lambda obj: obj is not None and validator.is_valid(obj)


def field_scores(expected: dict, produced: dict | None) -> tuple[int, int, int, int]:
    """(matching leaves, union of leaves, expected leaves, produced leaves) of one answer."""
    exp = flatten(expected)
    got = flatten(produced) if produced is not None else {}
    matched = sum(1 for k, v in exp.items() if k in got and got[k] == v)
    return matched, len(exp.keys() | got.keys()), len(exp), len(got)


def field_accuracy(scores: np.ndarray) -> float:
    """Micro field accuracy: matching leaves over the union of leaves, pooled over rows of `field_scores`."""
    return float(scores[:, 0].sum() / max(scores[:, 1].sum(), 1))


def extract_report(expected: list[dict], texts: list[str], schema: dict | None = None, samples: int = 1000,
                   seed: int = 0) -> dict:
    """Validity, exact match, field accuracy (with intervals), field precision/recall and per-field accuracy; `rows`
    holds each answer's verdicts (valid, correct = exact match, fields_matched) in holdout order."""
    objs = [parse_object(t) for t in texts]
    fits = schema_check(schema)
    valid = [fits(o) for o in objs]
    exact = [o == e for o, e in zip(objs, expected)]
    per_row = [field_scores(e, o) for e, o in zip(expected, objs)]
    scores = np.array(per_row, dtype=float).reshape(-1, 4)
    per_field: dict[str, dict] = {}
    for e, o in zip(expected, objs):
        got = flatten(o) if o is not None else {}
        for k, v in flatten(e).items():
            f = per_field.setdefault(k, {"support": 0, "correct": 0, "invented": 0})
            f["support"] += 1
            f["correct"] += int(got.get(k, object()) == v)
        for k in got.keys() - flatten(e).keys():
            per_field.setdefault(k, {"support": 0, "correct": 0, "invented": 0})["invented"] += 1
    for f in per_field.values():
        f["accuracy"] = f["correct"] / f["support"] if f["support"] else None
    n = len(expected)
    precision = scores[:, 0].sum() / max(scores[:, 3].sum(), 1)
    recall = scores[:, 0].sum() / max(scores[:, 2].sum(), 1)
    return {
        "n": n,
        "validity_rate": float(np.mean(valid)) if n else None, "validity_rate_ci95": _ci(valid, samples, seed),
        "exact_match": float(np.mean(exact)) if n else None, "exact_match_ci95": _ci(exact, samples, seed),
        "field_accuracy": field_accuracy(scores) if n else None,
        "field_accuracy_ci95": bootstrap_ci(scores, field_accuracy, samples, seed),
        "field_precision": float(precision), "field_recall": float(recall),
        "field_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "per_field": dict(sorted(per_field.items(), key=lambda kv: -kv[1]["support"])),
        "accuracy": float(np.mean(exact)) if n else None, "accuracy_ci95": _ci(exact, samples, seed),
        "rows": [{"valid": v, "correct": c, "fields_matched": f"{m}/{u}"}
                 for v, c, (m, u, _, _) in zip(valid, exact, per_row)],
    }


REFUSALS = ("i can't", "i cannot", "i'm sorry", "i am sorry", "as an ai", "i am unable", "i'm unable")


def reply_scores(references: list[str], texts: list[str]) -> tuple[list[float], list[float]]:
    """Per-row ROUGE-L F-measure and chrF (0–1) of each reply against its reference."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    chrf = CHRF()
    rl = [rouge.score(ref, hyp)["rougeL"].fmeasure for ref, hyp in zip(references, texts)]
    cf = [chrf.sentence_score(hyp, [ref]).score / 100 for ref, hyp in zip(references, texts)]
    return rl, cf


def reply_report(references: list[str], texts: list[str], samples: int = 1000, seed: int = 0) -> dict:
    """ROUGE-L and chrF with intervals, length against the reference, empty answers and refusals."""
    rl, cf = reply_scores(references, texts)
    words = lambda t: len(t.split())
    ratio = [words(t) / max(words(r), 1) for r, t in zip(references, texts)]
    refused = [t.lower().startswith(REFUSALS) for t in texts]
    n = len(references)
    return {
        "n": n, "rouge_l": float(np.mean(rl)) if n else None, "rouge_l_ci95": _ci(rl, samples, seed),
        "chrf": float(np.mean(cf)) if n else None, "chrf_ci95": _ci(cf, samples, seed),
        "mean_words": float(np.mean([words(t) for t in texts])) if n else None,
        "reference_mean_words": float(np.mean([words(r) for r in references])) if n else None,
        "length_ratio_median": float(np.median(ratio)) if n else None,
        "empty_rate": float(np.mean([not t.strip() for t in texts])) if n else None,
        "refusal_rate": float(np.mean(refused)) if n else None,
        # the same prefix rule on the references: real agents apologise too ("I'm sorry, that hotel is full")
        "reference_refusal_rate": float(np.mean([r.lower().startswith(REFUSALS) for r in references])) if n else None,
        # `accuracy` keeps the regression comparison and release notes kind-agnostic: for replies it is ROUGE-L.
        "accuracy": float(np.mean(rl)) if n else None, "accuracy_ci95": _ci(rl, samples, seed),
        "row_rouge_l": [round(x, 4) for x in rl],
    }


def nearest_training_answers(train_rows: list[dict], rows: list[dict], answer) -> tuple[list[str], list[float]]:
    """The retrieval baseline: for each row, the answer of the most similar training text (TF-IDF cosine), and
    that similarity. Honest for both kinds: it is what a lookup in past tickets would answer."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_m = vec.fit_transform([r["text"] for r in train_rows])
    sims = (vec.transform([r["text"] for r in rows]) @ train_m.T).toarray()
    best = sims.argmax(1)
    return [answer(train_rows[j]) for j in best], [round(float(sims[i, j]), 4) for i, j in enumerate(best)]


# --- classify (and the older JSON field check) ----------------------------------------------------------------

def metrics(y_true: list[str], y_pred: list[str], labels, bootstrap_samples: int = 1000, seed: int = 0) -> dict:
    """Accuracy and macro-F1 with percentile-bootstrap 95% intervals, per-class precision/recall, confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(labels)
    y_pred = [p if p is not None else "<invalid>" for p in y_pred]
    correct = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=float)
    pairs = np.array(list(zip(y_true, y_pred)), dtype=object)
    macro = lambda yp: f1_score(list(yp[:, 0]), list(yp[:, 1]), labels=labels, average="macro", zero_division=0)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": bootstrap_ci(correct, np.mean, bootstrap_samples, seed),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        # fewer resamples for F1: each costs a sklearn call, and the interval's ends settle well before 1000
        "macro_f1_ci95": bootstrap_ci(pairs, macro, max(100, bootstrap_samples // 5), seed),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def escalation(y_true: list[str], y_pred: list[str], critical: str) -> dict:
    """Business view of one critical lane: sent there wrongly (false alarms) and missed (left in another lane)."""
    t = np.array([y == critical for y in y_true])
    p = np.array([y == critical for y in y_pred])
    neg, pos = int((~t).sum()), int(t.sum())
    return {"critical_label": critical, "positives": pos, "negatives": neg,
            "wrong_escalations": int((p & ~t).sum()), "missed_escalations": int((~p & t).sum()),
            "wrong_escalation_rate": float((p & ~t).sum() / neg) if neg else None,
            "missed_escalation_rate": float((~p & t).sum() / pos) if pos else None}


def json_field_metrics(expected: list[dict], outputs: list[str]) -> dict:
    """For JSON outputs: share of outputs that parse to an object, whole-object exact match, and exact match per field.

    A field counts as matched only when the output parsed and holds the same value; invalid outputs count as misses.
    """
    import json

    parsed = []
    for text in outputs:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            obj = None
        parsed.append(obj if isinstance(obj, dict) else None)
    n = len(expected)
    fields = sorted({k for e in expected for k in e})
    return {"n": n, "validity_rate": sum(p is not None for p in parsed) / n if n else None,
            "exact_match": sum(p == e for p, e in zip(parsed, expected)) / n if n else None,
            "field_exact_match": {f: sum(p is not None and f in e and p.get(f) == e[f] for p, e in zip(parsed, expected))
                                  / max(1, sum(f in e for e in expected)) for f in fields}}
