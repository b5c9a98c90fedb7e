"""The transformers engine of the scorer interface: label probabilities and continuation log-likelihoods with the
prompts' shared opening run once, and greedy generation batched by length.

Used by the evaluate stage (holdout), training's validation (kit.recipe), the privacy probes (canary exposure) and the
baselines. The label rule is `kit.scoring.base.label_tokens`, the same one llama.cpp and the endpoint follow.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np

from kit import hardware
from kit.scoring.base import label_tokens


def _tokenize(tokenizer):
    """A label's token ids as the model writes it after the prompt."""
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def label_first_tokens(tokenizer, labels) -> list[int] | None:
    """First token id of each label as the model would write it, or None when two labels share one (then every label
    is scored whole: `kit.scoring.base.label_tokens`)."""
    plan = label_tokens(_tokenize(tokenizer), labels)
    return [ids[0] for ids in plan.ids] if plan.first_only else None


def common_prefix_length(seqs: list[list[int]]) -> int:
    """Number of leading tokens all sequences share, leaving at least one token of the shortest to run per row."""
    from os.path import commonprefix  # element-wise, so it works on token lists too

    return max(min(len(commonprefix(seqs)), min(len(s) for s in seqs) - 1), 0) if seqs else 0


def score_labels(model, tokenizer, prompts: list[str], labels, batch_size: int = 16, progress: bool = True):
    """Probabilities over `labels` for each prompt (rows sum to 1), from the model's next-token distribution.

    When every label starts with its own token, one forward pass per prompt reads all of them at the last position.
    When two labels share a first token, each whole label is scored as a continuation (sum of its token
    log-probabilities) on top of its prompt. Either way the prompts' common opening (the task instruction, or the
    few-shot examples) runs once for the whole set; see `continuation_logprobs`.
    """
    import torch

    label_ids = [list(ids) for ids in label_tokens(_tokenize(tokenizer), labels).ids]
    prompt_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    logp = continuation_logprobs(model, prompt_ids, label_ids, batch_size, progress, pad_id=tokenizer.pad_token_id)
    return torch.softmax(torch.as_tensor(logp), -1).numpy()  # renormalized over the labels only


def _desc(progress: bool | str, default: str) -> str:
    """A progress flag may be the bar's label ("scoring tuned"); True gives the default label."""
    return progress if isinstance(progress, str) and progress else default


def continuation_logprobs(model, prompt_ids: list[list[int]], conts: list[list[int]], batch_size: int = 16,
                          progress: bool = False, pad_id: int = 0, trees: bool | None = None) -> np.ndarray:
    """Log-likelihood of each continuation after each prompt: an array [prompt, continuation].

    Continuations of several tokens are laid out as a tree per prompt from TREE_FROM of them on, else scored as
    prompt + continuation rows, pair by pair; `trees=True` or `False` forces one layout (`bench/label_scoring.py`
    compares the two). Prompts longer than a sliding window always go pair by pair.

    Written here because no installed library scores continuations of a causal LM while sharing the prompt work
    (HF `generate` decodes; evaluation harnesses re-run the prompt for every choice). What is cut, without changing a
    score beyond float rounding (tests/test_evaluate.py compares with one plain forward per prompt and continuation):
    - the prompts' common token prefix runs once; its key/value cache is repeated over every batch;
    - rows are batched by length (right padding, so no real token moves), results come back in the input order;
    - single-token continuations need no extra rows: a prompt's last position scores all of them at once;
    - longer continuations run on top of their own prompt's cache, as one tree (`_continuations_per_prompt`);
    - only positions that predict a continuation token go through the 262k-row output head.
    """
    import torch

    from kit import progress as progress_bars
    from kit.models import MIN_SHARED_PREFIX, output_head

    if not prompt_ids or not conts or any(len(c) == 0 for c in conts):
        raise ValueError("continuation_logprobs needs prompts and non-empty continuations")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    single = all(len(c) == 1 for c in conts)
    shared = common_prefix_length(prompt_ids)
    longest = max(len(p) for p in prompt_ids) + max(len(c) for c in conts) - 1
    window = getattr(base.config.get_text_config(), "sliding_window", None)
    too_long = bool(window and longest > window)
    if shared < MIN_SHARED_PREFIX or too_long:
        shared = 0  # a sliding-window cache keeps only the last window-1 tokens: such rows run whole
    device = next(model.parameters()).device
    prefix = _prefix_cache(base, prompt_ids[0][:shared], device) if shared else None
    if not single and not too_long and (trees if trees is not None else len(conts) >= TREE_FROM):
        return _continuations_per_prompt(base, prompt_ids, conts, prefix, shared, progress, device)
    # One row per prompt when every continuation is one token (all read at its last position), else one per pair.
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    items = [(i, None) for i in order] if single else [(i, j) for i in order for j in range(len(conts))]
    firsts = torch.tensor([c[0] for c in conts], device=device)
    out = np.zeros((len(prompt_ids), len(conts)))
    with torch.no_grad():  # scoring only; also keeps a trainable adapter's graph out of memory
        for start in hardware.paced(progress_bars.bar(range(0, len(items), batch_size), unit="batches",
                                                      desc=_desc(progress, "scoring"), disable=not progress)):
            chunk = items[start:start + batch_size]
            rows = [prompt_ids[i][shared:] + ([] if j is None else conts[j][:-1]) for i, j in chunk]
            hidden = _decoder_rows(base, rows, prefix, shared, pad_id, device)
            if single:
                last = torch.tensor([len(r) - 1 for r in rows], device=device)
                logits = output_head(base, hidden[torch.arange(len(rows), device=device), last])
                out[[i for i, _ in chunk]] = torch.log_softmax(logits.float(), -1)[:, firsts].cpu().numpy()
                continue
            # (row, position, token) for every continuation token; position = the one that predicts it
            where = [(r, len(prompt_ids[i]) - shared - 1 + k, t)
                     for r, (i, j) in enumerate(chunk) for k, t in enumerate(conts[j])]
            r, p, t = (torch.tensor(col, device=device) for col in zip(*where))
            token_lp = torch.log_softmax(output_head(base, hidden[r, p]).float(), -1)[torch.arange(len(where)), t]
            sums = torch.zeros(len(chunk), device=device).index_add_(0, r, token_lp).cpu().numpy()
            for (i, j), s in zip(chunk, sums):
                out[i, j] = s
    return out


TREE_NODES = 1024  # tokens per tree row: any label set fits one; ~100 canary candidates (sentence tails) take a few
HEAD_ROWS = 256  # tree nodes through the output head at once
# Fewer continuations than this run pair by pair: a tree costs two forward passes of one row per prompt, which batched
# pairs beat when there are few of them (bench/label_scoring.py, embedded model, 2 AMX cores: trees 0.4x as fast at 3
# labels, 1.1-1.2x at 10, 5.2-5.4x at 70; ~100 canary candidates after one prompt: about even).
TREE_FROM = 10


def _trees(conts: list[list[int]]) -> list[tuple]:
    """Continuations laid out as trees of at most ~TREE_NODES nodes: [(continuation indices, node tokens, node depths,
    ancestor matrix, (row, node, token) of every continuation token)]. Node 0 stands for the prompt's last token;
    there is a node per distinct opening after it, and a continuation's k-th token is predicted by the node of its
    first k tokens (row: the continuation's place among the tree's indices)."""
    import torch

    groups: list[dict] = []
    for j, c in enumerate(map(tuple, conts)):
        if not groups or len(groups[-1]["tokens"]) + len(c) - 1 > TREE_NODES:
            groups.append({"ix": [], "node_of": {(): 0}, "tokens": [None], "parents": [-1]})
        g = groups[-1]
        g["ix"].append(j)
        for k in range(1, len(c)):
            if c[:k] not in g["node_of"]:
                g["node_of"][c[:k]] = len(g["tokens"])
                g["tokens"].append(c[k - 1])
                g["parents"].append(g["node_of"][c[:k - 1]])
    out = []
    for g in groups:
        n = len(g["tokens"])
        ancestors = torch.zeros(n, n, dtype=torch.bool)
        for node in range(n):
            m = node
            while m >= 0:
                ancestors[node, m] = True
                m = g["parents"][m]
        pick = [(r, g["node_of"][tuple(conts[j][:k])], t)
                for r, j in enumerate(g["ix"]) for k, t in enumerate(conts[j])]
        out.append((g["ix"], g["tokens"], (ancestors.sum(1) - 1).tolist(), ancestors, pick))
    return out


def _continuations_per_prompt(base, prompt_ids, conts, prefix, shared: int, progress, device) -> np.ndarray:
    """`continuation_logprobs` for continuations of several tokens (labels that share a first token), one prompt at
    a time: the prompt runs once into its own key/value cache (continuing the shared prefix's), then the labels run
    on top of it in one row laid out as a tree (`_trees`). Labels that open alike ("card_arrival", "card_declined")
    share the nodes that read "card" and "_"; each node attends to the prompt and its own ancestors only (a 4-D
    attention mask, positions by depth) and goes through the 262k-row output head once. Against prompt + label for
    every pair this runs a few hundred tokens per prompt instead of thousands with 70 labels, and the shared prefix's
    cache is copied once per prompt (and the prompt's once per extra tree) instead of once per row."""
    import torch

    from kit import progress as progress_bars
    from kit.models import _cache_keyword, output_head, prefix_cache

    # each tree's (row, node, token) columns as tensors, built once for all prompts
    trees = [(*tree[:4], tuple(torch.tensor(col, device=device) for col in zip(*tree[4]))) for tree in _trees(conts)]
    dtype = next(base.parameters()).dtype
    decoder = base.get_decoder()
    out = np.zeros((len(prompt_ids), len(conts)))
    with torch.no_grad():
        bar = progress_bars.bar(range(len(prompt_ids)), unit="prompts", desc=_desc(progress, "scoring"),
                                disable=not progress)
        for i in hardware.paced(bar):
            ids = prompt_ids[i]
            cached = len(ids) - 1
            cache = copy.deepcopy(prefix) if prefix is not None else None
            if ids[shared:-1]:  # a single prompt is all shared prefix but its last token
                cache = prefix_cache(base, torch.tensor([ids[shared:-1]], device=device), cache)
            for n, (ix, tokens, depth, ancestors, (r, node, t)) in enumerate(trees):
                keep = torch.cat([torch.ones(len(tokens), cached, dtype=torch.bool), ancestors], 1)
                mask = torch.zeros(keep.shape, dtype=dtype).masked_fill_(~keep, torch.finfo(dtype).min)
                # the forward appends the tree to the cache: the next tree needs the prompt alone
                run_on = copy.deepcopy(cache) if n < len(trees) - 1 else cache
                hidden = decoder(input_ids=torch.tensor([[ids[-1]] + tokens[1:]], device=device),
                                 attention_mask=mask[None, None].to(device),
                                 position_ids=torch.tensor([[cached + d for d in depth]], device=device),
                                 **{_cache_keyword(type(decoder)): run_on}, use_cache=True).last_hidden_state[0]
                token_lp = torch.empty(len(node), device=device)
                for b in range(0, len(tokens), HEAD_ROWS):  # 256 x 262k float32 logits at a time, ~270 MB
                    sel = (node >= b) & (node < b + HEAD_ROWS)
                    if sel.any():
                        logits = output_head(base, hidden[b:b + HEAD_ROWS]).float()
                        at = node[sel] - b
                        token_lp[sel] = logits[at, t[sel]] - torch.logsumexp(logits, -1)[at]
                out[i, ix] = torch.zeros(len(ix), device=device).index_add_(0, r, token_lp).cpu().numpy()
    return out


def _prefix_cache(base, ids: list[int], device):
    """Key/value cache of the prompts' shared opening, computed once (batch of one)."""
    import torch

    from kit.models import prefix_cache

    with torch.no_grad():
        return prefix_cache(base, torch.tensor([ids], device=device))


def _decoder_rows(base, rows: list[list[int]], prefix, shared: int, pad_id: int, device):
    """Final hidden states of right-padded `rows`, each continuing the shared prefix (when there is one)."""
    import copy

    import torch

    from kit.models import decoder_states

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, shared:shared + len(r)] = 1
    # the forward appends to the cache: a copy keeps the prefix clean for the next batch
    return decoder_states(base, {"input_ids": ids.to(device), "attention_mask": mask.to(device)},
                          copy.deepcopy(prefix) if prefix is not None else None)


GENERATION_ROWS = 64  # answers decoded together, where their key/value cache fits KV_CACHE_BYTES
KV_CACHE_BYTES = 1 << 30


def generation_rows(model, batch_size: int, tokens: int) -> int:
    """How many prompts to decode together: at least `batch_size`, up to GENERATION_ROWS while the key/value cache of
    `tokens` per row stays under KV_CACHE_BYTES. Each decoding step reads every weight once, the output head's
    262k × 640 included, whatever the number of rows, so more rows share that cost: on 2 CPU cores (Gemma 3 270M,
    bf16) 64 replies to STAR messages took 12.0 s in one batch against 18.7 s in batches of 16, and the untuned
    model's 19.8 s against 36.4 s."""
    import torch

    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    itemsize = torch.finfo(next(model.parameters()).dtype).bits // 8
    per_row = 2 * cfg.num_hidden_layers * heads * head_dim * itemsize * max(tokens, 1)
    return max(batch_size, min(GENERATION_ROWS, KV_CACHE_BYTES // per_row))


def generate_texts(model, tokenizer, prompts: list[str], stop: list[str], max_new_tokens: int = 12,
                   batch_size: int = 16, with_confidence: bool = False, progress: bool = False,
                   must_start_with: str = ""):
    """Greedy generations for prompts, cut at the first stop string (the way a served model answers).

    Prompts are batched by length (left padding), like the scoring path, as many together as `generation_rows` allows,
    and answers come back in the input order.
    Decoding ends at the chat format's end-of-turn token. With `with_confidence`, each answer comes with the
    probability the model gave that whole answer (the product of its tokens' probabilities, end-of-turn included):
    for greedy decoding, how sure the model was of exactly this output.
    """
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList

    from kit import progress as progress_bars

    class Recorder(LogitsProcessor):  # greedy picks the argmax, so its log-probability is known at each step
        def __init__(self):
            self.steps = []

        def __call__(self, input_ids, scores):
            scores32 = scores.float()  # the greedy token's log-probability: its logit minus the log of the sum
            self.steps.append(scores32.max(-1).values - torch.logsumexp(scores32, -1))
            return scores

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    batch_size = generation_rows(model, batch_size, max(lengths, default=0) + max_new_tokens)
    ends = _stop_token_ids(tokenizer, stop)
    out: list = [""] * len(prompts)
    for start in hardware.paced(progress_bars.bar(range(0, len(order), batch_size), unit="batches",
                                                  desc=_desc(progress, "generating"), disable=not progress)):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=True).to(device)
        rec = Recorder()
        width = enc["input_ids"].shape[1]
        stopping = StoppingCriteriaList([_stop_on_wrong_start(tokenizer, width, must_start_with)]) if must_start_with else None
        with torch.no_grad(), _contiguous_head(model):
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=ends or None,
                                 logits_processor=LogitsProcessorList([rec]), stopping_criteria=stopping)
        new = gen[:, width:]
        logp = torch.stack(rec.steps, 1) if rec.steps else torch.zeros(len(idx), 0)
        for k, (i, row) in enumerate(zip(idx, new)):
            ids = row.tolist()
            # the answer's tokens: up to its end token (included), else up to the padding of a row stopped early
            n = next((j + 1 for j, t in enumerate(ids) if t in ends),
                     next((j for j, t in enumerate(ids) if t == tokenizer.pad_token_id), len(ids)))
            text = tokenizer.decode(ids[:n], skip_special_tokens=False)
            for s in stop + [tokenizer.eos_token or "", tokenizer.pad_token or ""]:
                if s and s in text:
                    text = text[:text.index(s)]
            text = text.strip()
            out[i] = (text, round(float(torch.exp(logp[k, :n].sum())), 4)) if with_confidence else text
    return out


def _stop_on_wrong_start(tokenizer, prompt_width: int, prefix: str):
    """Stops a row as soon as its answer begins with anything but `prefix` (extract: "{").

    An extract answer is parsed only when it starts with a JSON object (`parse_object`), so once an untuned model
    opens with prose or a code fence its answer is invalid whatever follows, and decoding it to the token limit only
    costs time (most of 04's time for the base-model baselines). Scores are unchanged; the stored text is the
    opening that made the answer invalid.
    """
    import torch
    from transformers import StoppingCriteria

    class WrongStart(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            return torch.tensor([bool(t.strip()) and not t.lstrip().startswith(prefix) for t in texts],
                                device=input_ids.device)

    return WrongStart()


@contextmanager
def _contiguous_head(model):
    """Hand the output head a contiguous input while generating.

    transformers slices the prompt's last position (`hidden[:, -1:, :]`, a strided view) before the head; matmul
    cannot fold a strided 3-D input into one matrix product, so it expands the 262k x 640 head weight over the
    batch and runs a batched product instead. In bf16 on CPU that one call cost ~10 s for 16 prompts; with the copy
    made first, generation ran 8x faster (0.62 → 0.08 s per step, batch 16, AMD EPYC with AVX-512 BF16).
    """
    head = model.get_output_embeddings()
    hook = head.register_forward_pre_hook(lambda mod, args: (args[0].contiguous(), *args[1:])) if head is not None \
        else None
    try:
        yield
    finally:
        if hook is not None:
            hook.remove()


def _stop_token_ids(tokenizer, stop: list[str]) -> list[int]:
    """Token ids that end an answer: the tokenizer's EOS and every stop string that is a single token."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for s in stop:
        t = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(t) == 1:
            ids.add(t[0])
    return sorted(ids)


class HFScorer:
    """A transformers model (optionally with its LoRA adapter switched off) behind the scorer interface
    (`kit.scoring.base.Scorer`); `generate` can also return each answer's probability and stop answers that do not
    open as the task's answers must."""

    def __init__(self, model, tokenizer, batch_size: int = 16, adapter_off: bool = False, progress: bool = True,
                 name: str = ""):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.adapter_off, self.progress, self.name = adapter_off, progress, name

    def _progress(self, verb: str) -> bool | str:
        return f"{verb} {self.name}".strip() if self.progress else False

    def _ctx(self):
        from contextlib import nullcontext

        return self.model.disable_adapter() if self.adapter_off else nullcontext()

    def score(self, prompts: list[str], labels) -> np.ndarray:
        with self._ctx():
            return score_labels(self.model, self.tokenizer, prompts, labels, self.batch_size, self._progress("scoring"))

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12, with_confidence: bool = False,
                 must_start_with: str = ""):
        with self._ctx():
            return generate_texts(self.model, self.tokenizer, prompts, stop, max_new_tokens, self.batch_size,
                                  with_confidence, self._progress("generating"), must_start_with)
