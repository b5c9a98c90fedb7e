"""Baselines the tuned model must beat on the same holdout: majority class, TF-IDF + logistic regression, few-shot.

In: training rows (`text`, `label`), holdout rows, the labels. Out: label probabilities per holdout row (rows sum to
1), in the label order of the task, so every baseline goes through the same metrics as the language models.
The few-shot baseline is a prompt, not a model: `few_shot_prompt` writes k solved examples as earlier chat turns and
the base model is scored on it exactly like the zero-shot prompt.
"""

from __future__ import annotations

import random

import numpy as np


def majority(train_rows: list[dict], n: int, labels) -> np.ndarray:
    """The training set's lane frequencies for every holdout row: always predicts the most common lane."""
    labels = list(labels)
    counts = np.array([sum(r["label"] == lab for r in train_rows) for lab in labels], dtype=float)
    return np.tile(counts / counts.sum(), (n, 1))


def tfidf_logreg(train_rows: list[dict], rows: list[dict], labels, seed: int = 0) -> np.ndarray:
    """A classic text classifier: word and bigram TF-IDF features, logistic regression (scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                        LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit([r["text"] for r in train_rows], [r["label"] for r in train_rows])
    proba = clf.predict_proba([r["text"] for r in rows])
    out = np.zeros((len(rows), len(labels)))
    for j, cls in enumerate(clf.classes_):  # a lane absent from train keeps probability 0
        out[:, list(labels).index(cls)] = proba[:, j]
    return out


def pick_examples(train_rows: list[dict], labels, k: int, seed: int = 0, answer=None) -> list[dict]:
    """k training rows for the prompt, one per lane in turn, so no lane is missing and none dominates.

    Without labels (extract, reply), k seeded-random rows; `answer(row)` then gives each example's answer text.
    """
    rng = random.Random(f"few-shot-{seed}")
    if not labels:
        picked = rng.sample(train_rows, min(k, len(train_rows)))
        return [{**r, "label": answer(r)} if answer else r for r in picked]
    pools = {lab: [r for r in train_rows if r["label"] == lab] for lab in labels}
    for pool in pools.values():
        rng.shuffle(pool)
    picked: list[dict] = []
    while len(picked) < k and any(pools.values()):
        for lab in labels:
            if pools[lab] and len(picked) < k:
                picked.append(pools[lab].pop())
    rng.shuffle(picked)  # the last example's lane must not hint at the answer
    return picked


def cut(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def few_shot_prompt(task, fmt, tokenizer, examples: list[dict], text: str, example_tokens: int,
                    max_ticket_tokens: int, system: str | None = None) -> str:
    """Earlier user/model turns holding solved examples, then the ticket, as one conversation rendered by the model's
    chat template (`ChatFormat.conversation`); the system text goes where the template puts it, once."""
    system = task.system if system is None else system
    turns = [(cut(tokenizer, ex["text"], example_tokens), ex["label"]) for ex in examples]
    # The ticket gets the same token budget as in the zero-shot prompt, so both see the same text.
    room = max(max_ticket_tokens - task.prompt_overhead(fmt, tokenizer, system), 8)
    return fmt.conversation(turns, cut(tokenizer, text, room), system)
