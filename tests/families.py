"""Tiny random models of each family with that family's real tokenizer and official chat template.

Both come from llama.cpp as vendored in the PyPI sdist of llama-cpp-python 0.3.36 (MIT): its vocab-only GGUFs
(`vendor/llama.cpp/models/ggml-vocab-*.gguf`, the publishers' tokenizers) and the chat templates it tests against
(`vendor/llama.cpp/models/templates/*.jinja`, copied from each publisher's tokenizer_config.json). The sdist is
fetched from PyPI once (`pip download`, ~75 MB) and what the tests need is cached under $KIT_CACHE_DIR (or
~/.cache/kit)/families, tokenizers saved in Hugging Face form so later sessions load them in about a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
SDIST_MODELS = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"

# family → (vocab GGUF or "embedded", template file, transformers config class, BOS added by the real tokenizer)
SPECS = {
    "llama3": ("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct", "LlamaConfig", True),
    "qwen2": ("qwen2", "Qwen-Qwen2.5-7B-Instruct", "Qwen2Config", False),
    "mistral": ("llama-spm", "mistralai-Mistral-Nemo-Instruct-2407", "MistralConfig", True),
    "phi3": ("phi-3", "microsoft-Phi-3.5-mini-instruct", "Phi3Config", True),
    "gemma2": ("embedded", "google-gemma-2-2b-it", "Gemma2Config", True),
}
# Templates checked in Python and Go only (their architectures are covered above).
TEMPLATE_ONLY = {
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct",
    "qwen3": "Qwen-Qwen3-0.6B",
    "smollm3": "HuggingFaceTB-SmolLM3-3B",
}


def cache_root() -> Path:
    return Path(os.environ.get("KIT_CACHE_DIR", Path.home() / ".cache" / "kit")) / "families"


def vendor_files() -> Path:
    """The vocab GGUFs and templates this module needs, extracted once from the sdist."""
    out = cache_root() / "llama.cpp-models"
    names = [f"ggml-vocab-{v}.gguf" for v, *_ in SPECS.values() if v != "embedded"]
    names += [f"templates/{t}.jinja" for _, t, *_ in SPECS.values()] + [f"templates/{t}.jinja" for t in TEMPLATE_ONLY.values()]
    if all((out / n).exists() for n in names):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        LLAMA_CPP_PYTHON, "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staging = Path(tempfile.mkdtemp(dir=cache_root().parent if cache_root().parent.exists() else None))
        with tarfile.open(sdist) as tar:
            for n in names + ["../LICENSE"]:
                member = tar.getmember(os.path.normpath(SDIST_MODELS + n))
                member.name = n.replace("../", "llama.cpp-")
                tar.extract(member, staging, filter="data")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    return out


def template(name: str) -> str:
    return (vendor_files() / "templates" / f"{name}.jinja").read_text()


def tokenizer_dir(family: str, embedded_tokenizer=None) -> Path:
    """The family's real tokenizer with its official template, saved in Hugging Face form (cached)."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    from kit import models

    vocab, tmpl, _, adds_bos = SPECS[family]
    out = cache_root() / "tokenizers" / family
    if (out / "tokenizer_config.json").exists():
        return out
    if vocab == "embedded":
        tok = embedded_tokenizer
    else:
        src = vendor_files()
        tok = AutoTokenizer.from_pretrained(src, gguf_file=f"ggml-vocab-{vocab}.gguf")
    tok.chat_template = template(tmpl)
    if family == "llama3":
        # The vocab GGUF does not say that Llama 3's tokenizer adds <|begin_of_text|>; Meta's tokenizer.json does, with
        # this post-processor.
        bos = tok.bos_token
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.bos_token_id)])
    ids = tok("a", add_special_tokens=True)["input_ids"]
    assert (ids[0] == tok.bos_token_id) == adds_bos, f"{family}: BOS handling differs from the real tokenizer"
    tmp = Path(tempfile.mkdtemp(dir=out.parent.parent if out.parent.parent.exists() else None))
    tok.save_pretrained(tmp)
    # SentencePiece families ship tokenizer.model beside tokenizer.json; llama.cpp's converter reads it.
    spm_bytes = models.sentencepiece_model(models.embedded_gguf_path() if vocab == "embedded"
                                           else vendor_files() / f"ggml-vocab-{vocab}.gguf")
    if spm_bytes:
        (tmp / "tokenizer.model").write_bytes(spm_bytes)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def tiny_model(family: str, out: Path, embedded_tokenizer=None) -> Path:
    """A 2-layer random model of the family's architecture, with its real tokenizer and template, in `out`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir(family, embedded_tokenizer))
    cfg_cls = getattr(transformers, SPECS[family][2])
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
              tie_word_embeddings=True)
    if family == "gemma2":
        kw.update(head_dim=16, sliding_window=64)
    if family == "phi3":
        kw.update(tie_word_embeddings=False)  # llama.cpp's phi3 graph reads a separate output matrix
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg_cls(**kw))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    src = tokenizer_dir(family, embedded_tokenizer) / "tokenizer.model"
    if src.exists():
        shutil.copy(src, out / "tokenizer.model")
    json.loads((out / "config.json").read_text())  # written and readable
    return out
