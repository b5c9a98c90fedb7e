"""The llama.cpp engine of the scorer interface: a GGUF (optionally with a GGUF LoRA) in llama-cpp-python.

What Ollama serves is this file in this engine, so export parity (05) and monitoring (06) score through it. Loaded
with the buffer settings that are safe on this CPU (`kit.models.llamacpp.load`); callers that must survive a native crash
run it in a child process (`kit.models.llamacpp.isolated`). Labels follow `kit.scoring.base.label_tokens`; prompts that open
alike (the instruction, the chat frame) reuse the key/value cache of what they share with the previous prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kit import hardware
from kit.models import llamacpp
from kit.scoring.base import label_tokens, softmax_rows


def last_logits(llm) -> np.ndarray:
    """The last evaluated position's logits (with logits_all=False llama-cpp-python keeps no scores of its own)."""
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).astype(np.float64)


def first_divergence_ids(a: list[int], b: list[int]) -> int:
    """Position of the first token where two token lists differ (the shorter one's length when one extends the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def eval_prompt(llm, tokens: list[int]) -> np.ndarray:
    """Evaluate a prompt's tokens and return the next-token logits. Prompts share their opening (instruction, chat
    frame): the cached key/values of the tokens this prompt has in common with the last one evaluated are kept and only
    the rest is run (eval() drops the cache beyond n_tokens)."""
    cached = llm.input_ids[: llm.n_tokens].tolist()
    common = min(first_divergence_ids(cached, tokens), len(tokens) - 1)
    llm.n_tokens = common
    llm.eval(tokens[common:])
    return last_logits(llm)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max()
    return logits - top - np.log(np.exp(logits - top).sum())


class LlamaCppScorer:
    """Label probabilities and greedy answers from a GGUF in llama.cpp (`kit.scoring.base.Scorer`).

    `report`, when given, is called after each prompt (progress from a child process).
    """

    name = "llama.cpp"

    def __init__(self, gguf_path: str | Path, n_ctx: int = 1024, lora_path: str | Path | None = None,
                 n_threads: int = 0, report: Callable[[], None] | None = None):
        n_threads = n_threads or hardware.free_threads()  # a core busy with another program stalls the team
        self.llm = llamacpp.load(Path(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=False, n_threads=n_threads,
                                 n_threads_batch=n_threads, lora_path=str(lora_path) if lora_path else None)
        self.report = report

    def _tokenize_label(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def score(self, prompts: list[str], labels: Sequence[str]) -> np.ndarray:
        plan = label_tokens(self._tokenize_label, labels)
        out = np.zeros((len(prompts), len(plan.ids)))
        for i, prompt in enumerate(prompts):
            tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
            logp = _log_softmax(eval_prompt(self.llm, tokens))
            if plan.first_only:
                out[i] = logp[[ids[0] for ids in plan.ids]]
            else:  # every label whole, each continuing the prompt's key/value cache
                out[i] = self._whole_labels(len(tokens), logp, plan.ids)
            if self.report:
                self.report()
        return softmax_rows(out)

    def _whole_labels(self, n_prompt: int, logp: np.ndarray, label_ids: Sequence[Sequence[int]]) -> list[float]:
        """Each label's log-probability after the prompt, summed token by token. Labels are walked in sorted order, so
        ones that open alike ("card_arrival", "card_declined") evaluate their shared opening once: the cache keeps
        the last label's tokens and only what differs is run (eval() drops the cache beyond n_tokens)."""
        after = {(): logp}  # log-probabilities of the next token after each opening evaluated for this prompt
        path: list[int] = []  # label tokens in the cache after the prompt
        scores = [0.0] * len(label_ids)
        for j in sorted(range(len(label_ids)), key=lambda j: list(label_ids[j])):
            ids = tuple(label_ids[j])
            for k in range(1, len(ids)):
                if ids[:k] not in after:
                    common = min(first_divergence_ids(path, list(ids[:k])), k - 1)
                    self.llm.n_tokens = n_prompt + common
                    self.llm.eval(list(ids[common:k]))
                    path = list(ids[:k])
                    after[ids[:k]] = _log_softmax(last_logits(self.llm))
            scores[j] = sum(float(after[ids[:k]][t]) for k, t in enumerate(ids))
        return scores

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12) -> list[str]:
        out = []
        for prompt in prompts:
            self.llm.reset()
            r = self.llm(prompt, max_tokens=max_new_tokens, temperature=0.0, top_k=1, stop=stop)
            out.append(r["choices"][0]["text"].strip())
            if self.report:
                self.report()
        return out
