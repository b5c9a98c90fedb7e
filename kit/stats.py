"""Statistics kit reports: intervals and calibration (evaluation, answer metrics, the plots) and drift (monitoring).

The drift tests take words and label shares from a batch and the training data and return a statistic with a p-value
where one exists; `kit.stages.monitor` sets their thresholds and turns them into alerts.
"""

from __future__ import annotations

import re
from collections import Counter

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


# ---------------------------------------------------------------- drift (monitoring; each small, tested by hand)

WORD = re.compile(r"[^\W\d_][\w'’-]*")
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


def words(text: str) -> list[str]:
    """Lower-cased words of a redacted text, placeholders left out."""
    return [w.lower() for w in WORD.findall(PLACEHOLDER.sub(" ", text))]


def doc_share(texts: list[list[str]]) -> Counter:
    """Share of texts each word appears in."""
    c = Counter(w for ws in texts for w in set(ws))
    return Counter({w: n / max(len(texts), 1) for w, n in c.items()})


def new_terms(batch: list[list[str]], train: list[list[str]], th) -> list[dict]:
    """Words in at least `th.new_term_share` of the batch (and `th.new_term_min_rows` rows) and rare in training;
    `th` is the monitor's `Thresholds`."""
    b, t = doc_share(batch), doc_share(train)
    need = max(th.new_term_share, th.new_term_min_rows / max(len(batch), 1))
    out = [{"term": w, "batch_share": round(s, 4), "train_share": round(t.get(w, 0.0), 4)}
           for w, s in b.items() if s >= need and t.get(w, 0.0) <= th.new_term_train_share]
    return sorted(out, key=lambda x: -x["batch_share"])


def oov_rate(texts: list[list[str]], vocab: set[str]) -> float:
    n = sum(len(ws) for ws in texts)
    return sum(w not in vocab for ws in texts for w in ws) / n if n else 0.0


def ks(a, b) -> dict:
    from scipy.stats import ks_2samp

    r = ks_2samp(np.asarray(a, float), np.asarray(b, float))
    return {"statistic": float(r.statistic), "p_value": float(r.pvalue)}


def psi(expected: dict[str, float], actual: dict[str, float], floor: float = 1e-4) -> float:
    """Population stability index Σ (a − e)·ln(a / e) over the categories, shares floored at `floor`."""
    keys = set(expected) | set(actual)
    e = {k: max(expected.get(k, 0.0), floor) for k in keys}
    a = {k: max(actual.get(k, 0.0), floor) for k in keys}
    return float(sum((a[k] - e[k]) * np.log(a[k] / e[k]) for k in keys))


def shares(values: list[str], categories) -> dict[str, float]:
    c = Counter(values)
    return {k: c.get(k, 0) / max(len(values), 1) for k in categories}


def chi_square(expected_shares: dict[str, float], observed: list[str]) -> dict:
    """Goodness of fit of the batch's label counts to the holdout's shares (categories with no expected rows get a
    floor share, as a label the holdout never saw predicted must still count)."""
    from scipy.stats import chisquare

    keys = sorted(set(expected_shares) | set(observed))
    n = len(observed)
    exp = np.array([max(expected_shares.get(k, 0.0), 0.5 / max(n, 1)) for k in keys])
    exp = exp / exp.sum() * n
    obs = np.array([Counter(observed).get(k, 0) for k in keys], float)
    r = chisquare(obs, exp)
    return {"statistic": float(r.statistic), "p_value": float(r.pvalue)}


def wilson(k: int, n: int) -> list[float]:
    from scipy.stats import binomtest

    if n == 0:
        return [0.0, 1.0]
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def population_auc(train_texts: list[str], batch_texts: list[str], seed: int = 0) -> dict:
    """Classifier two-sample test: out-of-fold ROC AUC of TF-IDF + logistic regression telling batch from training
    texts, and the Mann–Whitney p-value of that AUC (0.5 and a large p when the two are alike)."""
    from scipy.stats import mannwhitneyu
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    texts = [PLACEHOLDER.sub(" ", t) for t in train_texts + batch_texts]
    y = np.array([0] * len(train_texts) + [1] * len(batch_texts))
    if min(len(train_texts), len(batch_texts)) < 10:
        return {"statistic": 0.5, "p_value": 1.0, "note": "fewer than 10 texts on a side: not tested"}
    model = make_pipeline(TfidfVectorizer(min_df=2, sublinear_tf=True),
                          LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(model, texts, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, p))
    mw = mannwhitneyu(p[y == 1], p[y == 0], alternative="greater")
    return {"statistic": auc, "p_value": float(mw.pvalue)}


def most_telling_terms(train_texts: list[str], batch_texts: list[str], k: int = 8) -> list[str]:
    """The words a batch-vs-training classifier leans on most towards the batch: what the shift is about."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [PLACEHOLDER.sub(" ", t) for t in train_texts + batch_texts]
    y = np.array([0] * len(train_texts) + [1] * len(batch_texts))
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True)
    X = vec.fit_transform(texts)
    coef = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(X, y).coef_[0]
    names = vec.get_feature_names_out()
    return [str(names[i]) for i in np.argsort(-coef)[:k]]


def sample_indices(rows: list[dict], kind: str, want: int, seed: int, keep_one: bool = False) -> tuple[set, str]:
    """(indices of `want` rows, how they were drawn): for classify stratified by label with largest-remainder quotas
    (with `keep_one`, every label keeps at least one row out of the sample); otherwise a seeded random sample."""
    import random

    rng = random.Random(seed)
    if kind != "classify":
        return set(rng.sample(range(len(rows)), want)), "random"
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["label"], []).append(i)
    room = {lab: len(ix) - keep_one for lab, ix in groups.items()}
    exact = {lab: want * len(ix) / len(rows) for lab, ix in groups.items()}
    quota = {lab: min(int(q), room[lab]) for lab, q in exact.items()}
    for lab in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True):
        if sum(quota.values()) >= want:
            break
        if quota[lab] < room[lab]:
            quota[lab] += 1
    chosen = set()
    for lab, ix in groups.items():
        ix = ix[:]
        rng.shuffle(ix)
        chosen.update(ix[:quota[lab]])
    return chosen, "stratified by label"
