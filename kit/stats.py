"""Interval and calibration statistics shared by evaluation, answer metrics and the plots."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values: np.ndarray, stat, samples: int, seed: int) -> list[float]:
    """Percentile bootstrap 95% interval of `stat` over resampled rows of `values`."""
    rng = np.random.default_rng(seed)
    n = len(values)
    boots = [stat(values[rng.integers(0, n, n)]) for _ in range(samples)]
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def calibration(confidence, correct, n_bins: int = 10) -> dict:
    """Expected calibration error of the top-label confidence, and the reliability diagram's bins.

    Written here because scikit-learn has no ECE (`calibration_curve` gives the curve but not the bin counts ECE
    weighs by). Bins are equal-width on [0, 1]; a confidence of exactly 1 falls in the last bin.
    ECE = sum over bins of (rows in bin / all rows) * |accuracy in bin - mean confidence in bin|.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        acc = float(corr[mask].mean()) if n else None
        mean_conf = float(conf[mask].mean()) if n else None
        if n:
            ece += n / len(conf) * abs(acc - mean_conf)
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": n, "accuracy": acc, "confidence": mean_conf})
    return {"ece": float(ece), "bins": bins}


def coverage_curve(confidence, correct) -> dict:
    """Accuracy on the tickets the model keeps when the least confident ones go to a person, at every coverage."""
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    order = np.argsort(-conf, kind="stable")
    kept = np.arange(1, len(conf) + 1)
    return {"coverage": (kept / len(conf)).tolist(), "accuracy": (np.cumsum(corr[order]) / kept).tolist(),
            "threshold": conf[order].tolist()}


def at_threshold(confidence, correct, threshold: float) -> dict:
    """What a hand-off rule 'confidence below threshold goes to a person' does on this holdout."""
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=bool)
    auto = conf >= threshold
    return {"threshold": threshold, "coverage": float(auto.mean()), "handed_to_person": int((~auto).sum()),
            "accuracy_automated": float(corr[auto].mean()) if auto.any() else None,
            "errors_automated": int((auto & ~corr).sum())}


def paired_bootstrap(correct_new, correct_old, samples: int = 2000, seed: int = 0) -> dict:
    """Accuracy difference new − old on the same examples, with a paired percentile-bootstrap 95% interval.

    Resampling examples (not each model separately) keeps the pairing: both models are judged on the same draw,
    which makes the interval much narrower than comparing two independent intervals.
    """
    new = np.asarray(correct_new, dtype=float)
    old = np.asarray(correct_old, dtype=float)
    diff = new - old
    lo, hi = bootstrap_ci(diff, np.mean, samples, seed)
    return {"delta": float(diff.mean()), "ci95": [lo, hi], "significant": bool(lo > 0 or hi < 0), "method": "paired",
            "n": len(diff)}


def interval_delta(new: dict, old: dict) -> dict:
    """Accuracy difference from two reports alone (no shared examples): normal approximation from their intervals."""
    se = lambda m: (m["accuracy_ci95"][1] - m["accuracy_ci95"][0]) / (2 * 1.96)
    delta = new["accuracy"] - old["accuracy"]
    half = 1.96 * float(np.hypot(se(new), se(old)))
    return {"delta": float(delta), "ci95": [delta - half, delta + half], "significant": bool(abs(delta) > half),
            "method": "intervals"}
