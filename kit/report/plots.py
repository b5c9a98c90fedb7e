"""Plots: models side by side with intervals, reliability and coverage, canary exposure, the confusion matrix (04), and
drift across monitored batches (06).

In: the dicts `kit.stages.evaluate.run` builds, a run's `monitor/history.jsonl`. Out: PNG files. matplotlib's object
API only (no pyplot state), except `drift_plot`, which keeps the pyplot figure it was written with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.io import read_jsonl
from kit.rundir import RunDir

ORDER = ("tuned", "endpoint", "base_few_shot", "base_zero_shot", "retrieval", "tfidf_logreg", "majority_class")


def _fig(w, h, ncols=1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    return fig, fig.subplots(1, ncols)


CLASSIFY_KEYS = ("accuracy", "macro_f1")
EXTRACT_KEYS = ("validity_rate", "field_accuracy", "exact_match")
REPLY_KEYS = ("rouge_l", "chrf")


def models_plot(results: dict, path: str | Path, keys: tuple[str, ...] = CLASSIFY_KEYS) -> Path:
    """Each metric in `keys` (accuracy and macro-F1 for classify) of every model with its 95% interval."""
    names = [n for n in ORDER if n in results] + [n for n in results if n not in ORDER]
    fig, ax = _fig(7, 0.5 * len(names) * max(1, len(keys) / 2) + 1.4)
    y = np.arange(len(names))
    colors = ("#3366aa", "#cc8833", "#55aa55")
    step = 0.36 / max(len(keys) - 1, 1)
    for i, key in enumerate(keys):
        vals = np.array([results[n][key] for n in names])
        ci = np.array([results[n][f"{key}_ci95"] for n in names])
        ax.errorbar(vals, y - 0.18 + i * step, xerr=[vals - ci[:, 0], ci[:, 1] - vals], fmt="o", color=colors[i],
                    capsize=3, label=key.replace("_", "-"))
    ax.set_yticks(y, names); ax.invert_yaxis(); ax.set_xlim(0, 1.02); ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("holdout score (95% bootstrap interval)")
    # below the axes: a score near 1 would sit under a legend drawn inside them
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(keys), fontsize=8, frameon=False)
    fig.tight_layout(); fig.savefig(path, dpi=110, bbox_inches="tight")
    return Path(path)


def calibration_plot(results: dict, preds: dict, handoff: float, path: str | Path) -> Path:
    """Left: reliability diagram (accuracy vs confidence per bin). Right: accuracy kept vs share automated."""
    from kit.stats import coverage_curve

    names = [n for n in ("tuned", "base_zero_shot", "base_few_shot", "tfidf_logreg") if n in results
             and "reliability" in results[n]]
    fig, (left, right) = _fig(11, 4.2, 2)
    left.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for n in names:
        bins = [b for b in results[n]["reliability"] if b["n"]]
        left.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-",
                  label=f"{n} (ECE {results[n]['ece']:.3f})")
        cov = coverage_curve([p["confidence"] for p in preds[n]], [p["correct"] for p in preds[n]])
        right.plot(cov["coverage"], cov["accuracy"], label=n)
    if "tuned" in results and "handoff" in results["tuned"]:
        h = results["tuned"]["handoff"]
        if h["accuracy_automated"] is not None:
            right.plot([h["coverage"]], [h["accuracy_automated"]], "k*", markersize=12,
                       label=f"tuned, confidence ≥ {handoff:g}")
    left.set_xlabel("confidence (top label)"); left.set_ylabel("accuracy in bin"); left.set_title("reliability")
    left.legend(fontsize=7); left.set_xlim(0, 1); left.set_ylim(0, 1.02)
    right.set_xlabel("share of tickets handled automatically (the rest go to a person)")
    right.set_ylabel("accuracy on the automated share"); right.set_title("coverage vs accuracy")
    right.legend(fontsize=7); right.set_xlim(0, 1.02); right.set_ylim(0, 1.02)
    fig.tight_layout(); fig.savefig(path, dpi=110)
    return Path(path)


def probes_plot(probes: dict, path: str | Path) -> Path:
    """Exposure of each canary in the tuned and base model; the control's planted vs unseen canary."""
    rows = probes["canaries"]
    control = probes.get("control")
    fig, axes = _fig(11 if control else 6, 3.6, 2 if control else 1)
    ax = axes[0] if control else axes
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["exposure"] for r in rows], 0.4, label="tuned")
    ax.bar(x + 0.2, [r["base_exposure"] for r in rows], 0.4, label="base")
    if rows:
        ax.axhline(rows[0]["max_exposure"], ls=":", color="grey", label="memorised (rank 1)")
    ax.set_xticks(x, [r["kind"] for r in rows]); ax.set_ylabel("exposure (bits)")
    ax.set_title(f"canaries ({'planted' if probes['planted'] else 'not planted'})"); ax.legend(fontsize=7)
    if control:
        c = axes[1]
        c.bar([0, 1], [control["planted_before"], control["unseen_before"]], 0.35, label="before", color="#bbbbbb")
        c.bar([0.4, 1.4], [control["planted_after"], control["unseen_after"]], 0.35, label="after training",
              color="#cc4444")
        c.axhline(control["max_exposure"], ls=":", color="grey")
        c.set_xticks([0.2, 1.2], ["planted canary", "unseen canary"]); c.set_ylabel("exposure (bits)")
        c.set_title(f"control: {control['steps']} steps on text with the planted canary"); c.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=110)
    return Path(path)


def drift_plot(run_dir: Path) -> Path:
    """One panel per check across the batches so far, threshold dashed, alerts in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = read_jsonl(RunDir(run_dir).monitor_history_jsonl)
    names = [n for n in ("population", "oov_rate", "label_mix", "confidence", "answer_length", "quality")
             if any(n in h["stats"] for h in hist)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    xs = [h["batch"] for h in hist]
    for ax, n in zip(axes[0], names):
        ys = [h["stats"].get(n, np.nan) for h in hist]
        ax.plot(range(len(xs)), ys, "o-", color="tab:blue")
        ths = [h["thresholds"].get(n) for h in hist]
        if any(t is not None for t in ths):
            ax.plot(range(len(xs)), [np.nan if t is None else t for t in ths], "--", color="grey", label="threshold")
        for i, h in enumerate(hist):
            if h["decision"] != "keep":
                ax.axvspan(i - 0.3, i + 0.3, color="tab:red", alpha=0.12)
        ax.set_xticks(range(len(xs)), xs, rotation=30, ha="right", fontsize=8)
        ax.set_title(n.replace("_", " "), fontsize=10)
    fig.suptitle("Drift across batches (red: a batch that did not end in 'keep')", fontsize=10)
    fig.tight_layout()
    out = RunDir(run_dir).drift_plot
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_plot(results: dict, labels, path: str | Path):
    """Rows: the true label, columns: the predicted one. Up to 12 labels with counts in the cells; more (intent sets
    of 50+), each row as shares of its label's rows so a few errors still show, counts only where they fit, and the
    figure grows with the labels (04's table `tables.confused_pairs` names the largest errors)."""
    from matplotlib.figure import Figure  # no pyplot: nothing global to switch or close

    names = [m for m in ("base_zero_shot", "tuned") if m in results]
    n = len(labels)
    side = min(max(4.2, 0.22 * n + 2), 16)
    fig = Figure(figsize=(side * 1.2 * len(names), side))
    axes = fig.subplots(1, len(names))
    for ax, name in zip(np.atleast_1d(axes), names):
        cm = np.array(results[name]["confusion"])
        shade = cm if n <= 12 else cm / np.maximum(cm.sum(1, keepdims=True), 1)
        top = max(cm.max(), 1) if n <= 12 else 1.0
        ax.imshow(shade, cmap="Blues", vmin=0, vmax=top)
        if n <= 30:
            for (i, j), v in np.ndenumerate(cm):
                if v or n <= 12:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=8 if n <= 12 else 5,
                            color="white" if shade[i, j] > top / 2 else "black")
        size = 8 if n <= 12 else max(4, 8 - n // 15)
        short = [lab.replace("_", "\n") for lab in labels] if n <= 12 else list(labels)
        ax.set_xticks(range(n), short, fontsize=size, rotation=0 if n <= 12 else 90)
        ax.set_yticks(range(n), short, fontsize=size)
        ax.set_xlabel("predicted"); ax.set_ylabel("true" if n <= 12 else "true (shade: share of the row)")
        ax.set_title(f"{name}: accuracy {results[name]['accuracy']:.0%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
