"""Human spot-check of prepared data: a seeded 5% sample, a panel to judge each row, agreement between reviewers.

In: the run's `data/train.jsonl` and `data/holdout.jsonl` (already redacted: a reviewer never sees raw text). Out:
`data/reviews.jsonl`, one line per judged row — reviewer, row id, decision (`accept`, `relabel`, `flag_pii`), the
label the reviewer would give, a one-line reason — and `data/review_status.json`, which says whether a review
happened (headless runs skip the panel and record that none did). `kappa` compares two reviewers' files with
scikit-learn's Cohen's kappa over the rows both judged.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from kit import KitError
from kit.io import read_jsonl, write_json, write_text_atomic

DECISIONS = ("accept", "relabel", "flag_pii")


class ReviewError(KitError):
    """A review file or a review entry is wrong."""


@dataclass(frozen=True)
class Review:
    reviewer: str
    id: str
    decision: str  # accept | relabel | flag_pii
    label: str  # the label the reviewer gives the row (the file's label when accepted)
    reason: str = ""
    at: str = ""

    def __post_init__(self):
        if self.decision not in DECISIONS:
            raise ReviewError(f"decision '{self.decision}' is not one of {', '.join(DECISIONS)}.")
        if self.decision != "accept" and not self.reason.strip():
            raise ReviewError(f"a '{self.decision}' decision needs a one-line reason (row {self.id}).")
        if "\n" in self.reason:
            raise ReviewError(f"the reason for row {self.id} must fit on one line.")


def sample(run_dir: str | Path, fraction: float = 0.05, seed: int = 0, minimum: int = 5) -> list[dict]:
    """A seeded sample of the prepared rows (train and holdout), at least `minimum` rows."""
    data_dir = Path(run_dir) / "data"
    rows = [dict(r, file="train") for r in read_jsonl(data_dir / "train.jsonl")] + \
           [dict(r, file="holdout") for r in read_jsonl(data_dir / "holdout.jsonl")]
    k = min(len(rows), max(minimum, round(fraction * len(rows))))
    return random.Random(f"review-{seed}").sample(rows, k)


def save(path: str | Path, review: Review) -> Path:
    """Append one review (a later review of the same row by the same reviewer replaces the earlier one)."""
    path = Path(path)
    existing = [r for r in load(path) if not (r.reviewer == review.reviewer and r.id == review.id)] \
        if path.exists() else []
    stamped = Review(**(asdict(review) | {"at": review.at or datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    lines = [json.dumps(asdict(r), ensure_ascii=False) for r in existing + [stamped]]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def load(path: str | Path) -> list[Review]:
    path = Path(path)
    if not path.exists():
        raise ReviewError(f"no review file at {path}; run the review panel in 02_prepare (set reviewer).")
    out = []
    for i, row in enumerate(read_jsonl(path), start=1):
        try:
            out.append(Review(**row))
        except TypeError as e:
            raise ReviewError(f"{path} line {i} is not a review entry ({e}).") from None
    return out


def kappa(path_a: str | Path, path_b: str | Path) -> dict:
    """Cohen's kappa between two reviewers on the rows both judged, for the decision and for the label."""
    from sklearn.metrics import cohen_kappa_score

    a = {r.id: r for r in load(path_a)}
    b = {r.id: r for r in load(path_b)}
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise ReviewError(f"{path_a} and {path_b} share {len(common)} judged row(s); kappa needs at least 2. "
                          "Have both reviewers judge the same sample (same seed).")

    def _k(x, y):
        # sklearn returns nan when both reviewers use one single category: agreement is then perfect.
        value = cohen_kappa_score(x, y)
        return 1.0 if value != value and x == y else round(float(value), 3)

    return {"rows": len(common),
            "decision_kappa": _k([a[i].decision for i in common], [b[i].decision for i in common]),
            "label_kappa": _k([a[i].label for i in common], [b[i].label for i in common]),
            "agreement": round(sum(a[i].decision == b[i].decision for i in common) / len(common), 3)}


def record_status(run_dir: str | Path, reviewer: str, sampled: int) -> dict:
    """Write `data/review_status.json`: who reviews, or that nobody did (a headless run)."""
    status = {"reviewed": bool(reviewer), "reviewer": reviewer or None, "sampled_rows": sampled,
              "reviews_path": "data/reviews.jsonl" if reviewer else None,
              "note": "review panel shown; judgements are saved as they are made" if reviewer else
              "no human review happened: reviewer was empty (headless run); set reviewer to show the panel",
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(Path(run_dir) / "data" / "review_status.json", status)
    return status


def panel(run_dir: str | Path, reviewer: str, rows: list[dict], labels: list[str]):
    """An ipywidgets panel: one row at a time, its redacted text and label; accept / relabel / flag PII + reason.

    For extract and reply rows (an `answer`, no labels) the answer is shown under the text, since it is training
    text too, and relabel is not offered: accept, or flag PII in the text or the answer.
    """
    import ipywidgets as w

    rows = [r if "label" in r else {**r, "label": r["answer"], "text": f"{r['text']}\n\n--- answer ---\n{r['answer']}"}
            for r in rows]
    out_path = Path(run_dir) / "data" / "reviews.jsonl"
    state = {"i": 0}
    header = w.HTML()
    text = w.Textarea(layout=w.Layout(width="100%", height="160px"), disabled=True)
    label = w.Dropdown(options=labels, description="label", layout=w.Layout(display="" if labels else "none"))
    reason = w.Text(placeholder="one-line reason (needed for relabel / flag PII)", layout=w.Layout(width="100%"))
    message = w.HTML()
    buttons = {d: w.Button(description=d.replace("_", " "), button_style=s)
               for d, s in zip(DECISIONS, ("success", "warning", "danger")) if labels or d != "relabel"}

    def show():
        if state["i"] >= len(rows):
            header.value = f"<b>Done: {len(rows)} rows reviewed; saved to {out_path}</b>"
            text.value = ""
            return
        row = rows[state["i"]]
        header.value = f"<b>{state['i'] + 1}/{len(rows)}</b> · {row['file']} · id {row['id']} · label <b>{row['label']}</b>"
        text.value = row["text"]
        if labels:
            label.value = row["label"] if row["label"] in labels else labels[0]
        reason.value = ""

    def decide(decision):
        def handler(_):
            if state["i"] >= len(rows):
                return
            row = rows[state["i"]]
            try:
                save(out_path, Review(reviewer, row["id"], decision,
                                      label.value if decision == "relabel" else row["label"], reason.value.strip()))
            except ReviewError as e:
                message.value = f"<span style='color:#b00'>{e}</span>"
                return
            message.value = ""
            state["i"] += 1
            show()
        return handler

    for d, b in buttons.items():
        b.on_click(decide(d))
    show()
    return w.VBox([header, text, w.HBox([label, *buttons.values()]), reason, message])
