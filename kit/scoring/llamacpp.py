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


def label_tree(label_ids: Sequence[Sequence[int]]) -> list[tuple[tuple[int, ...], list[int], list[int]]]:
    """The openings of labels scored whole, breadth first: [(opening tokens, sequence ids of the labels through it,
    the tokens that follow it in some label)]. Label j is sequence j + 1 (0 is the prompt's); a label's last token
    needs no node, as nothing is predicted after it."""
    through: dict[tuple[int, ...], list[int]] = {}
    following: dict[tuple[int, ...], set[int]] = {}
    for j, ids in enumerate(label_ids):
        for k in range(1, len(ids)):
            through.setdefault(tuple(ids[:k]), []).append(j + 1)
            following.setdefault(tuple(ids[:k]), set()).add(ids[k])
    return [(o, through[o], sorted(following[o])) for o in sorted(through, key=lambda o: (len(o), o))]


def answer_text(raw: bytes, stop: Sequence[str]) -> str:
    """An answer as llama-cpp-python's completion gives it: the text before the first stop string, stripped."""
    text = raw.decode("utf-8", errors="ignore")
    return text[:min((text.index(s) for s in stop if s in text), default=len(text))].strip()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max()
    return logits - top - np.log(np.exp(logits - top).sum())


# Labels scored whole run on the prompt's cache as one tree per prompt: a sequence per label (the prompt's cells
# shared by all of them in llama.cpp's unified cache), a node per distinct opening that belongs to every label
# through it, all nodes in one decode. llama.cpp holds at most 256 sequences (one is the prompt's); more labels are
# walked one opening at a time. Nodes are decoded TREE_BATCH at a time (each chunk's logits are 262k floats a node).
MAX_TREE_LABELS = 255
TREE_BATCH = 256
# Answers generated together at most (`LlamaCppScorer(sequences=...)`): 40 long replies (up to 244 tokens, q8_0, 2 AMX
# cores) took 57.5 s at 32 and 60.4 s at 16, against 249.6 s one at a time (before `compact`, which costs them 1-3 s
# and takes 100 STAR replies from 29.8 to 21.3 s).
GENERATE_SEQS = 32


class LlamaCppScorer:
    """Label probabilities and greedy answers from a GGUF in llama.cpp (`kit.scoring.base.Scorer`).

    `report`, when given, is called after each prompt (progress from a child process). `trees=False` walks labels
    scored whole one opening at a time instead of as one tree per prompt (slower; kept to compare).
    """

    name = "llama.cpp"

    def __init__(self, gguf_path: str | Path, n_ctx: int = 1024, lora_path: str | Path | None = None,
                 n_threads: int = 0, report: Callable[[], None] | None = None, trees: bool = True,
                 sequences: int = 0):
        n_threads = n_threads or hardware.free_threads()  # a core busy with another program stalls the team
        if sequences:  # for generation: `sequences` answers at once, each in a cache of its own of n_ctx cells
            context = {"n_seq_max": sequences, "kv_unified": False}
            self.max_tree_labels, self.generate_seqs, self.seq_ctx = 0, sequences, n_ctx
            n_ctx *= sequences
        else:
            # Sequences for the label trees: one cache for all (unified), as many outputs per sequence as it has
            # nodes. (llama.cpp reserves an output per sequence within a batch of n_ctx tokens: at most n_ctx.)
            self.max_tree_labels = min(MAX_TREE_LABELS, n_ctx - 1) if trees else 0
            context = ({"n_seq_max": self.max_tree_labels + 1, "kv_unified": True, "n_outputs_max_per_seq": 0}
                       if trees else None)
            # One answer at a time here: in the cache all sequences share, answers decoded together parted from
            # answers decoded alone far more often than in caches of their own (15 against 1 of 40 long STAR replies,
            # q8_0, 2026-12-07), so only `sequences` generates in groups.
            self.generate_seqs, self.seq_ctx = 1, 0
        # llama-cpp-python reserves n_batch rows of logits (a GiB per 1,000 rows at a 262k vocabulary): generation
        # decodes its prompts in pieces of 512 tokens, as llama.cpp's own default batch.
        n_batch = min(n_ctx, 512) if sequences else n_ctx
        self.llm = llamacpp.load(Path(gguf_path), context=context, n_ctx=n_ctx, n_batch=n_batch, logits_all=False,
                                 n_threads=n_threads, n_threads_batch=n_threads,
                                 lora_path=str(lora_path) if lora_path else None)
        if sequences:  # llama.cpp may round the context up: each answer's cache is what it says
            import llama_cpp.llama_cpp as low

            self.seq_ctx = low.llama_n_ctx_seq(self.llm.ctx)
        self.tree_batch = min(TREE_BATCH, n_ctx)
        self.report = report

    def _tokenize_label(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def score(self, prompts: list[str], labels: Sequence[str]) -> np.ndarray:
        plan = label_tokens(self._tokenize_label, labels)
        tree = label_tree(plan.ids) if not plan.first_only and len(plan.ids) <= self.max_tree_labels else None
        out = np.zeros((len(prompts), len(plan.ids)))
        for i, prompt in enumerate(prompts):
            tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
            logp = _log_softmax(eval_prompt(self.llm, tokens))
            if plan.first_only:
                out[i] = logp[[ids[0] for ids in plan.ids]]
            elif tree is not None and len(tokens) + len(tree) <= self.llm.n_ctx():  # all labels at once
                out[i] = self._tree_labels(len(tokens), logp, plan.ids, tree)
            else:  # one opening after another (too many labels, or a prompt too long for the tree beside it)
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

    def _tree_labels(self, n_prompt: int, logp: np.ndarray, label_ids: Sequence[Sequence[int]], tree: list
                     ) -> list[float]:
        """Each label's log-probability after the prompt, from one tree of its openings (`label_tree`). The prompt's
        cells join every label's sequence; a node's token sits at the position of its depth in the sequences of the
        labels through it, so it attends to the prompt and its own ancestors only (llama.cpp masks a token by its
        first sequence, and every label through a node has the same ancestors). The label sequences are dropped
        afterwards, leaving the prompt's cache as it was."""
        import llama_cpp.llama_cpp as low

        ctx, n_vocab = self.llm.ctx, self.llm.n_vocab()
        memory = low.llama_get_memory(ctx)
        after = {(): logp}
        batch = low.llama_batch_init(self.tree_batch, 0, len(label_ids))
        try:
            for seq in range(1, len(label_ids) + 1):
                low.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            for start in range(0, len(tree), self.tree_batch):  # breadth first: a node's ancestors come before it
                chunk = tree[start:start + self.tree_batch]
                batch.n_tokens = len(chunk)
                for i, (opening, seqs, _) in enumerate(chunk):
                    batch.token[i], batch.pos[i], batch.logits[i] = opening[-1], n_prompt + len(opening) - 1, True
                    batch.n_seq_id[i] = len(seqs)
                    for k, seq in enumerate(seqs):
                        batch.seq_id[i][k] = seq
                if low.llama_decode(ctx, batch) != 0:
                    raise llamacpp.LlamaCppError(f"llama.cpp could not decode a tree of {len(chunk)} label tokens "
                                                 f"after a prompt of {n_prompt} (context {self.llm.n_ctx()}).")
                logits = np.ctypeslib.as_array(low.llama_get_logits(ctx), shape=(len(chunk), n_vocab))
                for (opening, _, nexts), row in zip(chunk, logits):  # row by row: no chunk-sized temporaries
                    top = float(row.max())
                    z = top + float(np.log(np.exp(row - top).sum(dtype=np.float64)))
                    after[opening] = {t: float(row[t]) - z for t in nexts}  # log-probabilities of what follows
        finally:
            low.llama_batch_free(batch)
            for seq in range(1, len(label_ids) + 1):
                low.llama_memory_seq_rm(memory, seq, -1, -1)
        return [sum(float(after[tuple(ids[:k])][t]) for k, t in enumerate(ids)) for ids in label_ids]

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12) -> list[str]:
        """Greedy answers, up to `max_new_tokens` each, cut before the first stop string or end-of-generation token.

        Loaded with `sequences`, up to that many prompts are decoded together, each in a cache of its own: a decoding
        step reads the weights (Gemma 3's 262k-row output head alone is ~170 MB in q8_0) once for the whole group,
        where one prompt at a time reads them once per answer token. Each sequence attends to its own cells only, so
        the answers are those of one prompt at a time up to float rounding (38 of 40 long STAR replies identical).
        """
        n_ctx = self.seq_ctx or self.llm.n_ctx()  # the cells one answer may use
        ids = [self.llm.tokenize(p.encode(), add_bos=True, special=True) for p in prompts]
        for i, t in enumerate(ids):
            if len(t) >= n_ctx:
                raise llamacpp.LlamaCppError(f"prompt {i} has {len(t)} tokens, more than llama.cpp's context of {n_ctx}; "
                                             "shorten the text (max_length) or load with a larger n_ctx.")
        budget = [min(max_new_tokens, n_ctx - len(t)) if max_new_tokens > 0 else n_ctx - len(t) for t in ids]
        out: list[str] = [""] * len(prompts)
        for start in range(0, len(prompts), self.generate_seqs):
            self._generate_group(list(range(start, min(start + self.generate_seqs, len(prompts)))), ids, budget, stop,
                                 out)
        return out

    def _generate_group(self, group: list[int], ids: list[list[int]], budget: list[int], stop: list[str],
                        out: list[str]) -> None:
        """Greedy decoding of the prompts `group` (indices into `ids`), prompt k in sequence k; answers into `out`."""
        import llama_cpp.llama_cpp as low

        ctx, vocab, n_vocab = self.llm.ctx, self.llm._model.vocab, self.llm.n_vocab()
        memory = low.llama_get_memory(ctx)
        low.llama_memory_clear(memory, True)
        n_batch = self.llm.n_batch
        batch = low.llama_batch_init(n_batch, 0, 1)

        def decode(entries: list[tuple[int, int, int, bool]]) -> list[int]:
            """Decode (token, position, sequence, wants logits) entries, n_batch at a time; the greedy next token
            after each entry that wants logits, in order."""
            nxt = []
            for start in range(0, len(entries), n_batch):
                chunk = entries[start:start + n_batch]
                for n, (token, pos, seq, wants) in enumerate(chunk):
                    batch.token[n], batch.pos[n], batch.logits[n] = token, pos, wants
                    batch.n_seq_id[n], batch.seq_id[n][0] = 1, seq
                batch.n_tokens = len(chunk)
                if low.llama_decode(ctx, batch) != 0:
                    raise llamacpp.LlamaCppError(f"llama.cpp could not decode {len(chunk)} tokens of {len(group)} "
                                                 f"answers together (context {self.llm.n_ctx()}).")
                rows = sum(wants for *_, wants in chunk)
                if rows:
                    logits = np.ctypeslib.as_array(low.llama_get_logits(ctx), shape=(rows, n_vocab))
                    nxt += logits.argmax(axis=1).tolist()
            return nxt

        def compact(live: list[int]) -> list[int]:
            """Keep the live answers in sequences 0..n-1: llama.cpp puts only consecutive sequence ids in one
            micro-batch of caches of their own, so a step over sequences 0, 2, 4 … 30 was 4.7x slower than over
            0 … 15 (0.40 against 0.086 s, q8_0 270M, 2 AMX cores). The highest live sequence moves to the lowest free
            one (its cache copied whole)."""
            for target in sorted(set(range(len(live))) - {slot[q] for q in live}):
                seq = max(live, key=lambda q: slot[q])
                low.llama_memory_seq_cp(memory, slot[seq], target, -1, -1)
                low.llama_memory_seq_rm(memory, slot[seq], -1, -1)
                slot[seq] = target
            return sorted(live, key=lambda q: slot[q])

        try:
            answers: dict[int, list[int]] = {seq: [] for seq in range(len(group))}
            texts = {seq: b"" for seq in range(len(group))}  # each answer's bytes so far: stop strings, the answer
            slot = {seq: seq for seq in range(len(group))}  # the llama.cpp sequence that holds each answer's cache
            live = list(range(len(group)))  # answers still writing, in the order of their entries
            nxt = decode([(token, pos, seq, pos == len(ids[i]) - 1)  # every prompt, logits at its last token
                          for seq, i in enumerate(group) for pos, token in enumerate(ids[i])])
            while live:
                going = []
                for seq, token in zip(live, nxt):
                    i = group[seq]
                    done = low.llama_vocab_is_eog(vocab, token)
                    if not done:
                        answers[seq].append(token)
                        texts[seq] += self.llm.detokenize([token])
                        text = texts[seq].decode("utf-8", errors="ignore")
                        done = len(answers[seq]) >= budget[i] or any(s in text for s in stop)
                    if done:
                        out[i] = answer_text(texts[seq], stop)
                        if self.report:
                            self.report()
                    else:
                        going.append(seq)
                live = compact(going) if len(going) < len(live) else going
                # the next token of every live answer, in one batch
                nxt = decode([(answers[seq][-1], len(ids[group[seq]]) + len(answers[seq]) - 1, slot[seq], True)
                              for seq in live]) if live else []
        finally:
            low.llama_batch_free(batch)
            low.llama_memory_clear(memory, True)
            self.llm.n_tokens = 0  # the cache is empty: scoring after this evaluates its prompt from the start
