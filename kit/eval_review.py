"""Human review of model answers: a panel to judge them, a file of judgements, agreement between reviewers.

In: a run directory with `eval/predictions.jsonl` and `data/holdout.jsonl`, a reviewer's name. Out: one line per
judgement appended to `eval/reviews.jsonl` ({id, model, reviewer, verdict pass|needs_edit|fail, reason}; needs_edit:
usable after a person's edit, the usual verdict on a drafted reply); a summary for
`eval/metrics.json` that says plainly when no review happened (headless runs), and Cohen's kappa between two
reviewers (scikit-learn) on the tickets both judged.
"""

from __future__ import annotations

import random
from pathlib import Path

from kit import KitError
from kit.io import read_jsonl, write_jsonl

VERDICTS = ("pass", "needs_edit", "fail")


class ReviewError(KitError):
    """A review file or setting is wrong."""


def reviews_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "eval" / "reviews.jsonl"


def read_reviews(path: str | Path, reviewer: str | None = None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = read_jsonl(path)
    return [r for r in rows if reviewer is None or r.get("reviewer") == reviewer]


def record(run_dir: str | Path, review: dict) -> Path:
    """Add or replace (same reviewer, model and id) one judgement; the file is rewritten atomically."""
    missing = [k for k in ("id", "model", "reviewer", "verdict") if not review.get(k)]
    if missing:
        raise ReviewError(f"a review needs {', '.join(missing)}; fill them in before saving.")
    if review["verdict"] not in VERDICTS:
        raise ReviewError(f"verdict '{review['verdict']}' is not one of {', '.join(VERDICTS)}.")
    path = reviews_path(run_dir)
    key = lambda r: (r["reviewer"], r["model"], r["id"])
    rows = [r for r in read_reviews(path) if key(r) != key(review)]
    return write_jsonl(path, rows + [{k: review.get(k, "") for k in ("id", "model", "reviewer", "verdict", "reason")}])


def kappa(a: list[dict], b: list[dict]) -> dict:
    """Cohen's kappa between two reviewers' verdicts on the (model, id) pairs both judged."""
    from sklearn.metrics import cohen_kappa_score

    va = {(r["model"], r["id"]): r["verdict"] for r in a}
    vb = {(r["model"], r["id"]): r["verdict"] for r in b}
    common = sorted(set(va) & set(vb))
    if len(common) < 2:
        return {"n_common": len(common), "kappa": None, "agreement": None,
                "note": "fewer than two tickets judged by both reviewers"}
    ya, yb = [va[k] for k in common], [vb[k] for k in common]
    agree = sum(x == y for x, y in zip(ya, yb)) / len(common)
    k = cohen_kappa_score(ya, yb, labels=list(VERDICTS))
    # kappa is undefined (nan) when both reviewers used one verdict only; report agreement alone then
    return {"n_common": len(common), "kappa": None if k != k else float(k), "agreement": agree}


def kappa_files(path_a: str | Path, path_b: str | Path, reviewer_a: str | None = None,
                reviewer_b: str | None = None) -> dict:
    """Kappa between two reviews files (e.g. two reviewers each working in their own copy of the run)."""
    for p in (path_a, path_b):
        if not Path(p).exists():
            raise ReviewError(f"no reviews file at {p}; each reviewer saves one with the review panel in 04_evaluate.")
    return kappa(read_reviews(path_a, reviewer_a), read_reviews(path_b, reviewer_b))


def summary(run_dir: str | Path) -> dict:
    """Who reviewed how much, pass rates, and kappa between the first two reviewers; or that nobody reviewed."""
    rows = read_reviews(reviews_path(run_dir))
    if not rows:
        return {"done": False, "reviews": 0,
                "note": "no human review happened (headless run, or nobody used the review panel yet)"}
    by = {}
    for r in rows:
        by.setdefault(r["reviewer"], []).append(r)
    out = {"done": True, "reviews": len(rows),
           "reviewers": {name: {"reviews": len(rs), "pass_rate": sum(r["verdict"] == "pass" for r in rs) / len(rs),
                                "needs_edit_rate": sum(r["verdict"] == "needs_edit" for r in rs) / len(rs)}
                         for name, rs in by.items()}}
    names = sorted(by)
    if len(names) >= 2:
        out["kappa"] = {"reviewers": names[:2], **kappa(by[names[0]], by[names[1]])}
    return out


def sample(run_dir: str | Path, model: str = "tuned", n: int = 20, seed: int = 0) -> list[dict]:
    """Tickets to review: the model's errors first (for replies, the least like the reference), then a random draw of
    the rest (ticket text, expected, answer)."""
    run_dir = Path(run_dir)
    texts = {r["id"]: r["text"] for r in read_jsonl(run_dir / "data" / "holdout.jsonl")}
    preds = [p for p in read_jsonl(run_dir / "eval" / "predictions.jsonl") if p["model"] == model]
    if preds and preds[0].get("correct") is None:  # replies: no right answer, so the lowest ROUGE-L first
        preds = sorted(preds, key=lambda p: p.get("rouge_l", 0))
        wrong, right = preds[: n // 2], preds[n // 2:]
    else:
        wrong = [p for p in preds if not p["correct"]]
        right = [p for p in preds if p["correct"]]
    random.Random(seed).shuffle(right)
    return [{**p, "text": texts.get(p["id"], "")} for p in (wrong + right)[:n]]


def panel(run_dir: str | Path, reviewer: str, model: str = "tuned", n: int = 20):
    """An ipywidgets panel: one ticket at a time with the expected lane and the model's answer; pass / needs edit / fail + reason.

    Each Save writes to eval/reviews.jsonl at once, so closing the notebook loses nothing.
    """
    import ipywidgets as w

    items = sample(run_dir, model, n)
    if not items:
        return w.HTML("<i>No predictions to review; run the evaluation above first.</i>")
    state = {"i": 0}
    source = w.Textarea(layout=w.Layout(width="100%", height="160px"), disabled=True)
    facts = w.HTML()
    verdict = w.ToggleButtons(options=list(VERDICTS), value=None)
    reason = w.Text(placeholder="one line: why", layout=w.Layout(width="100%"))
    status = w.HTML()
    save, nxt = w.Button(description="Save", button_style="primary"), w.Button(description="Next")

    def show():
        it = items[state["i"]]
        source.value = it["text"]
        conf = f" (confidence {it['confidence']:.2f})" if it.get("confidence") is not None else ""
        facts.value = (f"<b>{state['i'] + 1}/{len(items)}</b> · expected <b>{it['label']}</b> · "
                       f"{model} answered <b>{it['prediction']}</b>{conf}")
        verdict.value, reason.value = None, ""

    def on_save(_):
        it = items[state["i"]]
        if not reviewer:
            status.value = "<span style='color:#b00'>Set the reviewer parameter to your name first.</span>"
            return
        if verdict.value is None:
            status.value = "<span style='color:#b00'>Choose pass, needs edit or fail.</span>"
            return
        record(run_dir, {"id": it["id"], "model": model, "reviewer": reviewer, "verdict": verdict.value,
                         "reason": reason.value.strip()})
        status.value = f"saved {it['id']} to {reviews_path(run_dir)}"
        on_next(None)

    def on_next(_):
        state["i"] = (state["i"] + 1) % len(items)
        show()

    save.on_click(on_save)
    nxt.on_click(on_next)
    show()
    return w.VBox([facts, source, verdict, reason, w.HBox([save, nxt]), status])
