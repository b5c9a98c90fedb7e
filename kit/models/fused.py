"""Two fused training paths for CPU: the output head with its cross-entropy, and a LoRA linear layer.

Written by hand because the library paths spend most of a CPU training step outside the matrix products (measured on
the AMX machine, LoRA in all 18 layers of Gemma 3 270M, batch 8, bf16 base; `bench/train.py`):
- The head: 262k rows. The plain path materialises float32 logits for every answer token, their log-softmax, a
  zero-filled gradient of the same size, its log-softmax backward and a cast back: about 350 ms of a 1.25 s step,
  on top of the two passes over the 335 MB weight. `head_cross_entropy` walks the vocabulary in chunks, keeps a
  running log-sum-exp, and accumulates the gradient with respect to the hidden states in the same pass (the
  gradient of cross-entropy through a frozen head is softmax @ W - W[target], known once the forward is done), so
  nothing of vocabulary size outlives a chunk.
- LoRA: PEFT casts each layer's input to the adapter's float32, runs B(A(x)), scales the float32 output, adds it to
  the base output and casts back: five full-width element-wise passes and float32 temporaries per projection, and
  twice that in the backward. `LoraLinear` computes the same thing in the base's dtype with the adapter's float32
  weights cast once per call (mixed precision as autocast does it), the scale applied on the rank-16 side and the
  low-rank product added inside the base matmul (`addmm`), with a hand-written backward of five small matmuls.

Both are used only where they compute what the library does (tests/test_fused.py compares loss and every gradient
with the plain path, in float32 tightly and in bf16 to bf16's precision); anything else takes the library path.
"""

from __future__ import annotations

import os

import torch

HEAD_CHUNK = 16384  # vocabulary rows per step of the head: a [answers x chunk] block stays in the CPU's cache


def enabled() -> bool:
    """On unless `KIT_FUSED=0` (the library paths throughout, e.g. to compare: bench/train.py's kit_plain row)."""
    return os.environ.get("KIT_FUSED", "1") != "0"


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):
        n, vocab = hidden.shape[0], weight.shape[0]
        running_max = torch.full((n,), float("-inf"), dtype=torch.float32, device=hidden.device)
        total = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        grad = torch.zeros(n, hidden.shape[1], dtype=torch.float32, device=hidden.device)
        target_logit = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        rows = torch.arange(n, device=hidden.device)
        want_grad = ctx.needs_input_grad[0]
        for start in range(0, vocab, chunk):
            w = weight[start:start + chunk]
            logits = (hidden @ w.T).float()  # rounded to the compute dtype first, as the plain head's logits are
            inside = (targets >= start) & (targets < start + w.shape[0])
            if bool(inside.any()):
                target_logit[inside] = logits[rows[inside], targets[inside] - start]
            new_max = torch.maximum(running_max, logits.amax(1))
            rescale = torch.exp(running_max - new_max)
            p = torch.exp(logits - new_max[:, None])
            total = total * rescale + p.sum(1)
            if want_grad:
                grad = grad * rescale[:, None] + (p.to(w.dtype) @ w).float()
            running_max = new_max
        lse = running_max + torch.log(total)
        if want_grad:
            grad = grad / total[:, None] - weight[targets].float()  # softmax @ W - onehot @ W
            ctx.save_for_backward(grad)
            ctx.hidden_dtype = hidden.dtype
        return (lse - target_logit).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss).to(ctx.hidden_dtype), None, None, None


def head_applies(base) -> bool:
    """Whether `head_cross_entropy` computes what `models.output_head` + cross-entropy would for this model: a plain,
    frozen, bias-free linear head without logit soft-capping."""
    head = base.get_output_embeddings()
    return enabled() and (type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad
            and not getattr(base.config.get_text_config(), "final_logit_softcapping", None))


def head_cross_entropy(base, hidden, targets, chunk: int = HEAD_CHUNK):
    """Summed cross-entropy of the output head's logits at `hidden` ([n, d]) against `targets` ([n])."""
    return _HeadCrossEntropy.apply(hidden, base.get_output_embeddings().weight, targets, chunk)


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, lora_a, lora_b, scaling):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        a, b = lora_a.to(x.dtype), lora_b.to(x.dtype)
        h = (x2 @ a.T) * scaling  # [tokens, rank]: the scale on the narrow side
        y = torch.addmm(x2 @ weight.T, h, b.T)
        ctx.save_for_backward(x2, h, a, b, weight)
        ctx.scaling, ctx.shape = scaling, shape
        ctx.master = (lora_a.dtype, lora_b.dtype)
        return y.view(*shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y):
        x2, h, a, b, weight = ctx.saved_tensors
        gy = grad_y.reshape(-1, weight.shape[0]).to(x2.dtype)
        grad_b = (gy.T @ h).to(ctx.master[1])
        gh = (gy @ b) * ctx.scaling
        grad_a = (gh.T @ x2).to(ctx.master[0])
        grad_x = torch.addmm(gy @ weight, gh, a).view(ctx.shape) if ctx.needs_input_grad[0] else None
        return grad_x, None, grad_a, grad_b, None


def _fused_forward(layer, original):
    def forward(x, *args, **kwargs):
        if args or kwargs or layer.disable_adapters or layer.merged:
            return original(x, *args, **kwargs)
        active = [a for a in layer.active_adapters if a in layer.lora_A]
        if len(active) != 1:
            return original(x)
        name = active[0]
        base = layer.base_layer
        if (name in layer.lora_variant or not isinstance(layer.lora_dropout[name], torch.nn.Identity)
                or type(base) is not torch.nn.Linear or base.bias is not None or base.weight.requires_grad
                or x.dtype != base.weight.dtype):
            return original(x)
        return _LoraLinear.apply(x, base.weight, layer.lora_A[name].weight, layer.lora_B[name].weight,
                                 float(layer.scaling[name]))
    return forward


def install_lora(model) -> int:
    """Route the forward of every PEFT LoRA linear layer in `model` through `LoraLinear` (a layer whose setup the
    fused path does not cover, e.g. dropout, DoRA, a 4-bit base or several active adapters, keeps PEFT's forward
    call by call). Returns how many layers were routed."""
    from peft.tuners.lora.layer import Linear

    n = 0
    if not enabled():
        return n
    for module in model.modules():
        if type(module) is Linear and not getattr(module, "_kit_fused", False):
            module.forward = _fused_forward(module, module.forward)
            module._kit_fused = True
            n += 1
    return n
