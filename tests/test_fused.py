"""The fused CPU paths of kit/models/fused.py compute what the library paths compute: loss and every gradient."""

import pytest

from kit.models import fused
from kit.stages import train

torch = pytest.importorskip("torch")


class _Head(torch.nn.Module):
    """Just enough of a causal LM for `fused.head_cross_entropy`: a frozen linear head and a text config."""

    def __init__(self, vocab, dim, dtype, cap=None):
        super().__init__()
        self.head = torch.nn.Linear(dim, vocab, bias=False, dtype=dtype).requires_grad_(False)
        torch.nn.init.normal_(self.head.weight, std=0.5)
        self.config = type("Cfg", (), {"final_logit_softcapping": cap, "get_text_config": lambda self: self})()

    def get_output_embeddings(self):
        return self.head


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_head_cross_entropy_equals_the_plain_loss_and_gradient(dtype, tol):
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    base = _Head(vocab=1000, dim=24, dtype=dt)
    hidden = (torch.randn(7, 24) * 2).to(dt)
    targets = torch.tensor([0, 999, 250, 251, 600, 3, 999])  # first and last rows of the vocabulary, several chunks
    h1 = hidden.clone().requires_grad_()
    plain = torch.nn.functional.cross_entropy(base.head(h1).float(), targets, reduction="sum")
    plain.backward()
    h2 = hidden.clone().requires_grad_()
    loss = fused.head_cross_entropy(base, h2, targets, chunk=256)  # 1000 rows: chunks of 256 and a short last one
    (loss * 0.5).backward()  # the upstream gradient scales the saved one
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(plain)) <= tol * abs(float(plain))
    g1, g2 = h1.grad.float(), 2 * h2.grad.float()
    assert float((g2 - g1).norm() / g1.norm()) <= tol


def test_head_cross_entropy_is_used_only_where_it_computes_the_same(monkeypatch):
    assert fused.head_applies(_Head(50, 8, torch.float32))
    monkeypatch.setenv("KIT_FUSED", "0")  # switched off: the library path
    assert not fused.head_applies(_Head(50, 8, torch.float32))
    monkeypatch.delenv("KIT_FUSED")
    assert not fused.head_applies(_Head(50, 8, torch.float32, cap=30.0))  # soft-capped logits: the plain path
    trainable = _Head(50, 8, torch.float32)
    trainable.head.weight.requires_grad_(True)  # a head being trained needs its weight gradient: the plain path
    assert not fused.head_applies(trainable)


def _lora_model(tiny_model_dir, dtype, dropout=0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=getattr(torch, dtype))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # LoRA B starts at zero; give it values so every gradient path is live
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model.train()


def _batch():
    ids = torch.randint(5, 1000, (3, 16), generator=torch.Generator().manual_seed(1))
    ids[:, :6] = ids[0, :6]  # a shared prefix, as training batches have
    mask = torch.ones_like(ids)
    mask[2, 13:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 12:15] = ids[0, 12:15]
    labels[1, 9:16] = ids[1, 9:16]
    labels[2, 11:13] = ids[2, 11:13]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model):
    loss, _ = train.completion_loss(model, _batch())
    loss.backward()
    return float(loss), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}


def _relative_errors(grads, ref):
    return {n: float((g - ref[n]).norm() / ref[n].norm()) for n, g in grads.items()}


def test_fused_lora_gives_peft_loss_and_gradients_in_float32(tiny_model_dir):
    plain_loss, plain_grads = _loss_and_grads(_lora_model(tiny_model_dir, "float32"))
    model = _lora_model(tiny_model_dir, "float32")
    assert fused.install_lora(model) == 14  # 7 projections in each of the 2 layers
    loss, grads = _loss_and_grads(model)
    assert abs(loss - plain_loss) <= 1e-5 * abs(plain_loss)
    assert grads.keys() == plain_grads.keys() and len(grads) == 28
    assert all(float(g.abs().max()) > 0 for g in plain_grads.values())  # live gradients: the comparison means something
    assert max(_relative_errors(grads, plain_grads).values()) <= 1e-5


def test_fused_lora_in_bf16_is_as_close_to_float32_as_peft_in_bf16(tiny_model_dir):
    """bf16 rounds at different places in the two paths, so neither equals the other; both are measured against
    the float32 computation, and the fused one must be no further from it than PEFT's own bf16 path."""
    ref_loss, ref = _loss_and_grads(_lora_model(tiny_model_dir, "float32"))
    peft_loss, peft = _loss_and_grads(_lora_model(tiny_model_dir, "bfloat16"))
    model = _lora_model(tiny_model_dir, "bfloat16")
    fused.install_lora(model)
    loss, grads = _loss_and_grads(model)
    assert abs(loss - ref_loss) <= max(1e-3 * abs(ref_loss), 2 * abs(peft_loss - ref_loss))
    err, peft_err = _relative_errors(grads, ref), _relative_errors(peft, ref)
    assert max(err.values()) <= 0.05  # bf16's precision, per gradient
    assert sum(err.values()) <= 1.2 * sum(peft_err.values())


def test_fused_lora_steps_aside_where_it_does_not_apply(tiny_model_dir):
    model = _lora_model(tiny_model_dir, "float32", dropout=0.2)
    fused.install_lora(model)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    x = torch.randn(2, 5, layer.in_features)
    model.eval()  # dropout off in eval, but the layer still has a Dropout module: PEFT's forward, unchanged
    with torch.no_grad():
        expected = layer.base_layer(x) + layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        assert torch.allclose(layer(x), expected, atol=1e-6)
        with model.disable_adapter():  # the base model alone, as evaluation's baselines use it
            assert torch.allclose(layer(x), layer.base_layer(x))
