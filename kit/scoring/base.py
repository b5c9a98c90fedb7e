"""The scorer interface, and the label rule every engine follows.

A scorer answers two questions about prompts: how likely each label is as the answer (`score`, a row of
probabilities per prompt that sums to 1 over the labels) and what the model writes (`generate`, greedy). Three
engines implement it: transformers with the adapter (`kit.scoring.hf.HFScorer`), llama.cpp with a GGUF
(`kit.scoring.llamacpp.LlamaCppScorer`) and an OpenAI-compatible completions server
(`kit.scoring.endpoint.EndpointScorer`). Evaluation (04), export parity (05), the served-model check and
monitoring (06) all turn scores into predictions with `predict` / `best_labels`, so a label set is judged alike
everywhere.

The rule (`label_tokens`): when every label starts with its own token, a label's score is the log-probability of
that first token at the end of the prompt (one forward pass reads all labels); when two labels share a first token,
every label is scored whole (the sum of its tokens' log-probabilities after the prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Scorer(Protocol):
    name: str

    def score(self, prompts: list[str], labels: Sequence[str]) -> np.ndarray:
        """Probabilities over `labels` for each prompt: an array [prompt, label] whose rows sum to 1."""

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12) -> list[str]:
        """The greedy answer to each prompt, cut at the first stop string."""


@dataclass(frozen=True)
class LabelTokens:
    """The tokens each label is scored by: its first token only (`first_only`), or all of them."""

    ids: tuple[tuple[int, ...], ...]
    first_only: bool


def label_tokens(tokenize: Callable[[str], list[int]], labels: Sequence[str]) -> LabelTokens:
    """The one label rule: first tokens when they all differ, else each whole label.

    `tokenize` gives a label's token ids as the model writes it after the prompt (no BOS, no special tokens).
    """
    whole = [tuple(tokenize(lab)) for lab in labels]
    empty = [lab for lab, ids in zip(labels, whole) if not ids]
    if empty:
        raise ValueError(f"labels {empty} have no tokens; give every label some text")
    firsts = [ids[0] for ids in whole]
    if len(set(firsts)) == len(firsts):
        return LabelTokens(tuple((f,) for f in firsts), True)
    if len(set(whole)) != len(whole):
        raise ValueError("two labels have the same tokens; give the labels different names")
    return LabelTokens(tuple(whole), False)


def softmax_rows(logprobs: np.ndarray) -> np.ndarray:
    """Per-label log-likelihoods [prompt, label] → probabilities renormalized over the labels."""
    z = np.asarray(logprobs, dtype=np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def best_labels(probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]]:
    """The most likely label of each row and its probability (the confidence)."""
    probs, labels = np.asarray(probs), list(labels)
    k = probs.argmax(1)
    return [(labels[j], float(probs[i, j])) for i, j in enumerate(k)]


def rows_from_probs(rows: list[dict], probs: np.ndarray, labels) -> list[dict]:
    """Prediction records (id, label, prediction, confidence, correct, probs) from label probabilities."""
    labels = list(labels)
    out = []
    for r, pr in zip(rows, probs):
        k = int(np.argmax(pr))
        out.append({"id": r["id"], "label": r["label"], "prediction": labels[k], "confidence": round(float(pr[k]), 4),
                    "correct": labels[k] == r["label"], "probs": {lab: round(float(p), 4) for lab, p in zip(labels, pr)}})
    return out


def predict(scorer: Scorer, task, rows: list[dict], prompts: list[str]) -> list[dict]:
    """Score every label of `task` for every prompt with any scorer, as prediction records."""
    return rows_from_probs(rows, scorer.score(prompts, task.labels), task.labels)
