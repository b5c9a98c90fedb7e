"""Human review, one module for both places a person judges: the prepared data (02) and the model's answers (04).

Both share one error type, one way to save (a judgement replaces the same reviewer's earlier one on the same item,
the file is rewritten atomically, each line stamped `at`), one rule for agreement between two reviewers (Cohen's
kappa from scikit-learn over the items both judged; `None` where kappa is undefined because both used one single
category, with the plain agreement beside it).

- **Data review** (02): a seeded sample (5%) of the redacted rows, a panel to `accept`, `relabel` or `flag_pii` each
  with a one-line reason; `data/reviews.jsonl` ({reviewer, id, decision, label, reason, at}) and
  `data/review_status.json`, which says whether a review happened (headless runs record that none did).
- **Answer review** (04): the tuned model's answers, errors first; `pass`, `needs_edit` (usable after a person's
  edit, the usual verdict on a drafted reply) or `fail` with a reason; `eval/reviews.jsonl` ({id, model, reviewer,
  verdict, reason, at}) and a summary for `eval/metrics.json` that says plainly when no review happened.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from kit.errors import KitError
from kit.io import read_jsonl, write_json, write_jsonl
from kit.rundir import RunDir

DECISIONS = ("accept", "relabel", "flag_pii")  # data review
VERDICTS = ("pass", "needs_edit", "fail")  # answer review


class ReviewError(KitError):
    """A review file, entry or setting is wrong."""


# ---------------------------------------------------------------- shared


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _upsert(path: Path, entry: dict, key: tuple[str, ...], rows: list[dict] | None = None) -> Path:
    """Add `entry` to the JSONL file at `path` (whose lines are `rows` when the caller read them already), replacing
    an earlier line with the same `key` fields; stamped."""
    if rows is None:
        rows = read_jsonl(path) if path.exists() else []
    same = lambda r: all(r.get(k) == entry.get(k) for k in key)  # noqa: E731
    return write_jsonl(path, [r for r in rows if not same(r)] + [{**entry, "at": entry.get("at") or _now()}])


def agreement(a: dict, b: dict, labels=None) -> dict:
    """Two reviewers' judgements ({item: category}) on the items both judged: how many, Cohen's kappa, raw agreement.

    kappa is None with fewer than two common items, and where it is undefined (both reviewers used one single
    category: sklearn returns nan); the raw agreement then says what there is to say.
    """
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return {"rows": len(common), "kappa": None, "agreement": None,
                "note": "fewer than two items judged by both reviewers"}
    x, y = [a[k] for k in common], [b[k] for k in common]
    with warnings.catch_warnings():  # undefined kappa is handled below; no warning in the notebook for it
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        k = cohen_kappa_score(x, y, labels=list(labels) if labels else sorted(set(x) | set(y), key=str))
    return {"rows": len(common), "kappa": None if k != k else round(float(k), 3),
            "agreement": round(sum(p == q for p, q in zip(x, y)) / len(common), 3)}


def _need_files(*paths, where: str) -> None:
    for p in paths:
        if not Path(p).exists():
            raise ReviewError(f"no review file at {p}; each reviewer saves one with the review panel in {where}.")


# ---------------------------------------------------------------- data review (02)


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
    rd = RunDir(run_dir)
    rows = [dict(r, file="train") for r in read_jsonl(rd.train_jsonl)] + \
           [dict(r, file="holdout") for r in read_jsonl(rd.holdout_jsonl)]
    k = min(len(rows), max(minimum, round(fraction * len(rows))))
    return random.Random(f"review-{seed}").sample(rows, k)


def save(path: str | Path, review: Review) -> Path:
    """Save one data judgement (a later one of the same row by the same reviewer replaces the earlier one)."""
    path = Path(path)
    rows = [asdict(r) for r in load(path)] if path.exists() else []  # refuses a file that is not a review file
    return _upsert(path, asdict(review), ("reviewer", "id"), rows)


def load(path: str | Path) -> list[Review]:
    path = Path(path)
    _need_files(path, where="02_prepare (set reviewer)")
    out = []
    for i, row in enumerate(read_jsonl(path), start=1):
        try:
            out.append(Review(**row))
        except TypeError as e:
            raise ReviewError(f"{path} line {i} is not a review entry ({e}).") from None
    return out


def kappa(path_a: str | Path, path_b: str | Path) -> dict:
    """Agreement of two reviewers' data review files on the rows both judged: for the decision and for the label."""
    a = {r.id: r for r in load(path_a)}
    b = {r.id: r for r in load(path_b)}
    common = set(a) & set(b)
    if len(common) < 2:
        raise ReviewError(f"{path_a} and {path_b} share {len(common)} judged row(s); kappa needs at least 2. "
                          "Have both reviewers judge the same sample (same seed).")
    decision = agreement({i: a[i].decision for i in common}, {i: b[i].decision for i in common}, DECISIONS)
    label = agreement({i: a[i].label for i in common}, {i: b[i].label for i in common})
    return {"rows": decision["rows"], "decision_kappa": decision["kappa"], "label_kappa": label["kappa"],
            "agreement": decision["agreement"], "label_agreement": label["agreement"]}


def record_status(run_dir: str | Path, reviewer: str, sampled: int) -> dict:
    """Write `data/review_status.json`: who reviews, or that nobody did (a headless run)."""
    status = {"reviewed": bool(reviewer), "reviewer": reviewer or None, "sampled_rows": sampled,
              "reviews_path": "data/reviews.jsonl" if reviewer else None,
              "note": "review panel shown; judgements are saved as they are made" if reviewer else
              "no human review happened: reviewer was empty (headless run); set reviewer to show the panel",
              "at": _now()}
    write_json(RunDir(run_dir).review_status_json, status)
    return status


def panel(run_dir: str | Path, reviewer: str, rows: list[dict], labels: list[str]):
    """An ipywidgets panel: one row at a time, its redacted text and label; accept / relabel / flag PII + reason.

    For extract and reply rows (an `answer`, no labels) the answer is shown under the text, since it is training
    text too, and relabel is not offered: accept, or flag PII in the text or the answer.
    """
    import ipywidgets as w

    rows = [r if "label" in r else {**r, "label": r["answer"], "text": f"{r['text']}\n\n--- answer ---\n{r['answer']}"}
            for r in rows]
    out_path = RunDir(run_dir).data_reviews_jsonl
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


# ---------------------------------------------------------------- answer review (04)


def answers_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir).eval_reviews_jsonl


def read_answer_reviews(path: str | Path, reviewer: str | None = None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [r for r in read_jsonl(path) if reviewer is None or r.get("reviewer") == reviewer]


def record_answer(run_dir: str | Path, review: dict) -> Path:
    """Add or replace (same reviewer, model and id) one judgement of a model's answer."""
    missing = [k for k in ("id", "model", "reviewer", "verdict") if not review.get(k)]
    if missing:
        raise ReviewError(f"a review needs {', '.join(missing)}; fill them in before saving.")
    if review["verdict"] not in VERDICTS:
        raise ReviewError(f"verdict '{review['verdict']}' is not one of {', '.join(VERDICTS)}.")
    if "\n" in review.get("reason", ""):
        raise ReviewError(f"the reason for {review['id']} must fit on one line.")
    entry = {k: review.get(k, "") for k in ("id", "model", "reviewer", "verdict", "reason", "at")}
    return _upsert(answers_path(run_dir), entry, ("reviewer", "model", "id"))


def answer_kappa(a: list[dict], b: list[dict]) -> dict:
    """Agreement of two reviewers' verdicts on the (model, id) pairs both judged (see `agreement`)."""
    return agreement({(r["model"], r["id"]): r["verdict"] for r in a},
                     {(r["model"], r["id"]): r["verdict"] for r in b}, VERDICTS)


def answer_kappa_files(path_a: str | Path, path_b: str | Path, reviewer_a: str | None = None,
                       reviewer_b: str | None = None) -> dict:
    """Agreement between two answer review files (e.g. two reviewers each working in their own copy of the run)."""
    _need_files(path_a, path_b, where="04_evaluate")
    return answer_kappa(read_answer_reviews(path_a, reviewer_a), read_answer_reviews(path_b, reviewer_b))


def answer_summary(run_dir: str | Path) -> dict:
    """Who reviewed how much, pass rates, and agreement between the first two reviewers; or that nobody reviewed."""
    rows = read_answer_reviews(answers_path(run_dir))
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
        out["kappa"] = {"reviewers": names[:2], **answer_kappa(by[names[0]], by[names[1]])}
    return out


def sample_answers(run_dir: str | Path, model: str = "tuned", n: int = 20, seed: int = 0) -> list[dict]:
    """Answers to review: the model's errors first (for replies, the least like the reference), then a random draw
    of the rest (ticket text, expected, answer)."""
    run_dir = Path(run_dir)
    texts = {r["id"]: r["text"] for r in read_jsonl(RunDir(run_dir).holdout_jsonl)}
    preds = [p for p in read_jsonl(RunDir(run_dir).predictions_jsonl) if p["model"] == model]
    if preds and preds[0].get("correct") is None:  # replies: no right answer, so the lowest ROUGE-L first
        preds = sorted(preds, key=lambda p: p.get("rouge_l", 0))
        wrong, right = preds[: n // 2], preds[n // 2:]
    else:
        wrong = [p for p in preds if not p["correct"]]
        right = [p for p in preds if p["correct"]]
    random.Random(seed).shuffle(right)
    return [{**p, "text": texts.get(p["id"], "")} for p in (wrong + right)[:n]]


def answer_panel(run_dir: str | Path, reviewer: str, model: str = "tuned", n: int = 20):
    """An ipywidgets panel: one ticket at a time with the expected answer and the model's; pass / needs edit / fail
    + reason. Each Save writes to eval/reviews.jsonl at once, so closing the notebook loses nothing."""
    import ipywidgets as w

    items = sample_answers(run_dir, model, n)
    if not items:
        return w.HTML("<i>No predictions to review; run the evaluation above first.</i>")
    state = {"i": 0}
    source = w.Textarea(layout=w.Layout(width="100%", height="160px"), disabled=True)
    facts = w.HTML()
    verdict = w.ToggleButtons(options=list(VERDICTS), value=None)
    reason = w.Text(placeholder="one line: why", layout=w.Layout(width="100%"))
    status = w.HTML()
    save_button, nxt = w.Button(description="Save", button_style="primary"), w.Button(description="Next")

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
        try:
            record_answer(run_dir, {"id": it["id"], "model": model, "reviewer": reviewer, "verdict": verdict.value,
                                    "reason": reason.value.strip()})
        except ReviewError as e:
            status.value = f"<span style='color:#b00'>{e}</span>"
            return
        status.value = f"saved {it['id']} to {answers_path(run_dir)}"
        on_next(None)

    def on_next(_):
        state["i"] = (state["i"] + 1) % len(items)
        show()

    save_button.on_click(on_save)
    nxt.on_click(on_next)
    show()
    return w.VBox([facts, source, verdict, reason, w.HBox([save_button, nxt]), status])
