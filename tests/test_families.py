"""Every model family through kit's path, on a tiny random model with the family's real tokenizer and template.

For each family: the chat format comes from the model's own template; kit prepares, trains a few steps, evaluates,
merges and exports a GGUF; llama.cpp loads the GGUF and tokenizes the rendered prompts exactly as transformers does;
the Modelfile's TEMPLATE, rendered by Go (Ollama's engine), equals the Python-rendered prompt and answer byte for
byte. Tokenizers and templates come from llama.cpp's own test files (tests/families.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import families
import numpy as np
import pytest
from conftest import REPO, read_jsonl

from kit import models
from kit.models import chat
from kit.models.families import FAMILIES
from kit.models.modelfile import parse_modelfile
from kit.stages import export, licenses, train
from kit.tasks.base import Task

EXPECTED_FAMILY = {"llama3": "llama3", "qwen2": "chatml", "mistral": "mistral", "phi3": "phi3", "gemma2": "gemma"}
LICENSE_ID = {"llama3": "llama3", "qwen2": "qwen2.5", "mistral": "mistral-7b", "phi3": "phi3", "gemma2": "gemma"}
BOS_EOS = {"llama3.1": ("<|begin_of_text|>", "<|eot_id|>", True), "qwen3": ("", "<|im_end|>", False),
           "smollm3": ("", "<|im_end|>", False)}
# The whole course per family. Gemma 3 runs it on the real embedded model (test_notebooks); Gemma 2 is checked in
# templates and LoRA targets here (its course passes too, but its 262k vocabulary makes it the slowest: ~100 s).
EXPORTED = ("llama3", "mistral", "phi3", "qwen2")
TEXTS = ["Where is my claim CLM-2024-1234? It's been 10 days.",
         "Hi,\n\nI was charged twice — please refund.\n\nThanks, <PERSON_1>",
         'Ünïcode, "quotes", {braces} and [brackets]']


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory, tokenizer):
    built = {}

    def get(family: str):
        if family not in built:
            out = families.tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"), tokenizer)
            (out / "LICENSE").write_text(f"License text of the {family} test checkpoint.\n")
            built[family] = out
        return built[family]

    return get


def _format_of_template(name: str) -> chat.ChatFormat:
    text = families.template(families.TEMPLATE_ONLY[name])
    bos, eos, adds = BOS_EOS[name]
    return chat.ChatFormat(chat.detect(text), text, bos, eos, adds)


@pytest.mark.parametrize("name", sorted(families.SPECS) + sorted(families.TEMPLATE_ONLY))
@pytest.mark.parametrize("system", ["Route the email to one lane.", ""])
def test_ollama_template_renders_in_go_exactly_as_the_official_template(render, family_dir, name, system):
    if name in families.TEMPLATE_ONLY:
        fmt = _format_of_template(name)
    else:
        fmt = models.resolve(str(family_dir(name))).chat_format
        assert fmt.name == EXPECTED_FAMILY[name]
    template = fmt.go_template()
    for text in TEXTS:
        assert render(template, text, system) == fmt.prompt(text, system)
        full = render(template, text, system, response="billing_dispute", cut=False)
        assert full == fmt.prompt(text, system) + fmt.completion("billing_dispute")


def test_llama3_prompt_carries_a_fixed_date_never_the_clock():
    fmt = _format_of_template("llama3.1")
    assert "Today Date: 26 Jul 2024" in fmt.prompt("hi") and fmt.go_template().count("26 Jul 2024") == 2


@pytest.mark.parametrize("name", ["qwen3", "smollm3"])
def test_reasoning_templates_are_rendered_with_thinking_off(name):
    fmt = _format_of_template(name)
    assert fmt.prompt("hi").endswith("<think>\n\n</think>\n\n" if name == "qwen3" else "<think>\n\n</think>\n")


@pytest.mark.parametrize("family", sorted(families.SPECS))
def test_family_targets_are_linear_layers_of_the_architecture(family_dir, family):
    from transformers import AutoModelForCausalLM

    resolved = models.resolve(str(family_dir(family)))
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    targets = train.lora_targets(model, "family", family=resolved.chat_format.family)
    assert targets == list(resolved.chat_format.family.target_modules)


# The smoke course (papermill_runs/smoke.yaml) with a tiny random model: few rows and steps, one f16 GGUF, and no
# quality bars (a random model has no accuracy to defend; tokenization and templates are what is checked).
TINY_COURSE = {"max_rows": 80, "max_steps": 3, "validation_fraction": 0, "max_examples": 8, "few_shot_k": 0,
               "canary_candidates": 10, "probe_control_steps": 0, "gguf_types": "[f16]", "modelfile_gguf": "f16",
               "adapter_variant": "false", "parity_threshold": 0.0, "max_length": 160, "require_gain": "false",
               # stage 06 is the family-independent monitor (tested on the real model's smoke run): no batches here
               "batch_paths": "[]"}


def kit_run(runs_dir, sets: dict):
    """`python -m kit run` of the tiny course with these parameters; (run directory, finished process)."""
    cmd = [sys.executable, "-m", "kit", "run", "--config", str(REPO / "papermill_runs" / "smoke.yaml"),
           "--runs-dir", str(runs_dir)] + [a for k, v in {**TINY_COURSE, **sets}.items() for a in ("--set", f"{k}={v}")]
    return runs_dir / "smoke", subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="session")
def family_course(tmp_path_factory, family_dir):
    """The whole course, headless (`kit run --set model=<dir>`), for every exported family, two at a time.

    Each course spends most of its minute starting notebook kernels and importing torch, one core each, so running
    two side by side on a 2-core machine takes about as long as one.
    """
    from concurrent.futures import ThreadPoolExecutor

    done = {}

    def course(family: str):
        return kit_run(tmp_path_factory.mktemp(f"course-{family}"),
                       {"model": str(family_dir(family)), "license_id": LICENSE_ID[family]})

    def run(family: str):
        if not done:
            for f in EXPORTED:
                family_dir(f)  # build the models first, one at a time (they share the tokenizer cache)
            with ThreadPoolExecutor(max_workers=2) as pool:
                done.update(zip(EXPORTED, pool.map(course, EXPORTED)))
        run_dir, proc = done[family]
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        resolved = models.resolve(str(family_dir(family)))
        return run_dir, resolved, json.loads((run_dir / "export" / "parity.json").read_text())

    return run


@pytest.mark.notebooks
@pytest.mark.parametrize("family", EXPORTED)
def test_family_goes_through_the_course_and_llama_cpp_reads_its_prompts_as_transformers(family_course, render, family):
    run_dir, resolved, parity = family_course(family)
    fmt, task = resolved.chat_format, Task.load(run_dir)
    for stage in ("00_scope", "01_license", "02_prepare", "03_train", "04_evaluate", "05_export"):
        assert (run_dir / f"{stage}.ipynb").exists()
    meta = json.loads((run_dir / "adapters" / "default" / "kit_adapter.json").read_text())
    assert meta["chat_format"] == EXPECTED_FAMILY[family]
    # The GGUF carries the model's own template and llama.cpp loads it.
    gguf = str(run_dir / "export" / "model-f16.gguf")
    assert export.gguf_metadata(gguf)["tokenizer.chat_template"] == fmt.jinja_template()
    assert parity["n"] == 8 and parity["types"]["f16"]["tokenization_agreement"] == 1.0 and parity["verified"]
    # Prompts (system + ticket, as training and parity render them) tokenize identically in both engines.
    tok = models.load_tokenizer(resolved)
    rows = read_jsonl(run_dir / "data" / "holdout.jsonl")[:8]
    prompts = [task.prompt(fmt, r["text"]) for r in rows]
    hf = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
    assert export.gguf_token_ids(gguf, prompts) == hf
    assert all(ids.count(tok.bos_token_id) == (1 if fmt.adds_bos else 0) for ids in hf)
    # The Modelfile's TEMPLATE, rendered by Go with the Modelfile's SYSTEM, is the training prompt byte for byte.
    mf = parse_modelfile((run_dir / "export" / "Modelfile").read_text())
    assert mf["PARAMETER"]["stop"] == fmt.stop
    for r, p in zip(rows[:3], prompts):
        assert render(mf["TEMPLATE"], r["text"], mf.get("SYSTEM", "")) == p
    # Completion-only loss: exactly the answer tokens are supervised, and they end with the family's end of turn.
    ds = train.build_dataset(read_jsonl(run_dir / "data" / "train.jsonl")[:4], task, fmt, tok, max_length=160)
    for ex, r in zip(ds, read_jsonl(run_dir / "data" / "train.jsonl")[:4]):
        answer = tok(task.completion(fmt, task.answer(r)), add_special_tokens=False)["input_ids"]
        assert sum(ex["completion_mask"]) == len(answer) and ex["input_ids"][-len(answer):] == answer
        assert tok.decode(answer).endswith(fmt.family.stop[0])


def test_every_registered_family_is_covered_here():
    covered = set(EXPECTED_FAMILY.values()) | {chat.detect(families.template(t)).name
                                                for t in families.TEMPLATE_ONLY.values()}
    assert covered == set(FAMILIES)


def _fake_ollama(models_dir, name, tag, gguf, license_text):
    """An Ollama models directory as `ollama pull` lays it out: a manifest naming content-addressed blobs."""
    import hashlib
    import os

    blobs = models_dir / "blobs"
    blobs.mkdir(parents=True)
    layers = []
    for media, path in (("application/vnd.ollama.image.model", gguf), ("application/vnd.ollama.image.license", None)):
        content = path.read_bytes() if path else license_text.encode()
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        target = blobs / digest.replace(":", "-")
        os.link(path, target) if path else target.write_bytes(content)
        layers.append({"mediaType": media, "digest": digest, "size": len(content)})
    manifest = models_dir / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers,
                                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json"}}))


@pytest.mark.notebooks
def test_a_gguf_file_and_an_ollama_model_go_through_the_course(family_course, tmp_path, monkeypatch, render):
    run_dir, _, _ = family_course("phi3")  # a GGUF llama.cpp wrote for a tiny Phi-3, its template inside
    gguf = tmp_path / "tiny-phi3-f16.gguf"
    shutil.copy(run_dir / "export" / "model-f16.gguf", gguf)
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))  # the courses below inherit both variables
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    resolved = models.resolve(str(gguf))
    assert resolved.chat_format.name == "phi3" and resolved.sha256 == export.sha256_file(gguf)
    assert "GGUF file" in resolved.source and (Path(resolved.path) / "tokenizer.model").exists()
    _fake_ollama(tmp_path / "ollama", "tiny-phi3", "mini", gguf, "MIT License (test copy)")
    pulled = models.resolve("ollama:tiny-phi3:mini")
    assert pulled.path == resolved.path and pulled.sha256 == resolved.sha256  # converted once, found by its digest
    assert "manifest" in pulled.source
    # The GGUF file's license note records the file; its course is the ollama one's from here on: both specs resolve
    # to this same converted checkpoint (asserted above), which the stages read.
    note = licenses.run(licenses.LicenseConfig(run_dir=str(tmp_path / "gguf"), model=str(gguf), approved=True,
                                               approver="tester", license_id="phi3"), resolved)
    assert note["weights_sha256"] == resolved.sha256 and "GGUF file" in note["weights_source"]
    run, proc = kit_run(tmp_path / "ollama-run", {"model": "ollama:tiny-phi3:mini", "license_id": "phi3"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["types"]["f16"]["tokenization_agreement"] == 1.0 and parity["verified"]
    note = json.loads((run / "license_note.json").read_text())
    assert note["weights_sha256"] == resolved.sha256 and "Ollama model 'tiny-phi3:mini'" in note["weights_source"]
    mf = parse_modelfile((run / "export" / "Modelfile").read_text())
    assert "MIT License (test copy)" in mf["LICENSE"]  # Ollama's license layer
    assert render(mf["TEMPLATE"], "Where is my claim?", mf.get("SYSTEM", "")) == resolved.chat_format.prompt(
        "Where is my claim?", Task.load(run).system)


def test_ollama_names_map_to_manifests_as_ollama_stores_them(tmp_path):
    root = tmp_path
    assert models.ollama_manifest_path("qwen2.5:0.5b", root) == root / "manifests/registry.ollama.ai/library/qwen2.5/0.5b"
    assert models.ollama_manifest_path("me/router", root) == root / "manifests/registry.ollama.ai/me/router/latest"
    assert models.ollama_manifest_path("host:5000/ns/m:v1".replace(":5000", ""), root) == root / "manifests/host/ns/m/v1"
    with pytest.raises(models.ModelError, match="not an Ollama model name"):
        models.ollama_manifest_path("../../etc:x", root)
    with pytest.raises(models.ModelError, match="`ollama pull qwen2.5:0.5b`"):
        models.ollama_blobs("qwen2.5:0.5b", root)


def test_a_damaged_ollama_blob_is_refused(tmp_path, monkeypatch):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF not really")
    _fake_ollama(tmp_path / "ollama", "broken", "latest", gguf, "license")
    blob = next((tmp_path / "ollama" / "blobs").glob("sha256-*"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    gguf.write_bytes(b"GGUF changed after the pull")  # hard link: the blob changes with it
    assert blob.read_bytes() == b"GGUF changed after the pull"
    with pytest.raises(models.ModelError, match="damaged"):
        models.resolve("ollama:broken")


def test_the_embedded_gguf_as_a_file_needs_its_template_chosen_explicitly(embedded, tmp_path, monkeypatch):
    import os

    from kit.__main__ import main

    # The embedded GGUF carries no chat template. Its cached conversion is linked into a fresh cache, file by file.
    cache = tmp_path / "cache" / "models" / Path(embedded.path).name
    cache.mkdir(parents=True)
    for f in Path(embedded.path).iterdir():
        os.link(f, cache / f.name)
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    spec = str(models.embedded_gguf_path())
    resolved = models.resolve(spec)
    assert resolved.sha256 == embedded.sha256 and resolved.path == str(cache) and resolved.license_id == "gemma"
    with pytest.raises(chat.ChatFormatError, match="ships no chat template"):
        resolved.chat_format
    assert main(["chat-template", spec, "--family", "gemma"]) == 0
    assert models.resolve(spec).chat_format.prompt("hi", "sys") == chat.GEMMA.prompt("hi", "sys")
    assert not (Path(embedded.path) / "chat_template.jinja").exists()  # the real cache is untouched


@pytest.mark.parametrize("family", ["llama3", "qwen2", "mistral", "phi3"])
def test_few_shot_prompt_is_one_conversation_as_the_template_renders_it(family_dir, tokenizer, family):
    """The few-shot baseline's turns come from the template: Llama 3's system header and Qwen's default system text
    appear once, not once per example."""
    resolved = models.resolve(str(family_dir(family)))
    fmt, tok = resolved.chat_format, models.load_tokenizer(resolved)
    turns = [("My claim was refused", "claim_status"), ("I was charged twice", "billing_dispute")]
    system = "Route the email to one lane."
    got = fmt.conversation(turns, "Where is my form?", system)
    user0 = f"{system}\n\n{turns[0][0]}" if fmt.family.system_in_user else turns[0][0]
    msgs = ([] if fmt.family.system_in_user else [{"role": "system", "content": system}]) + [
        {"role": "user", "content": user0}, {"role": "assistant", "content": "claim_status"},
        {"role": "user", "content": turns[1][0]}, {"role": "assistant", "content": "billing_dispute"},
        {"role": "user", "content": "Where is my form?"}]
    expected = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **fmt.family.template_vars)
    if fmt.adds_bos:
        expected = expected.removeprefix(tok.bos_token)
    assert got == expected and got.count(system) == 1
    assert fmt.conversation([], "Where is my form?", system) == fmt.prompt("Where is my form?", system)


@pytest.mark.parametrize("family", sorted(families.SPECS))
def test_labels_that_share_first_tokens_score_as_one_plain_forward_per_pair(family_dir, family, monkeypatch):
    """The tree layout of `_continuations_per_prompt` (a 4-D attention mask, positions by depth, on a prompt's own
    cache) on every architecture kit trains: equal to prompt + label run whole, pair by pair."""
    import torch
    from test_evaluate import _reference_logprobs
    from transformers import AutoModelForCausalLM

    from kit.scoring import hf

    calls = []
    real = hf._continuations_per_prompt
    monkeypatch.setattr(hf, "_continuations_per_prompt", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(hf, "TREE_FROM", 2)  # six labels: a tree too
    resolved = models.resolve(str(family_dir(family)))
    tok = models.load_tokenizer(resolved)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32).eval()
    labels = ["card_arrival", "card_declined", "card_fee", "transfer_fee", "transfer_pending", "refund"]
    assert hf.label_first_tokens(tok, labels) is None  # some labels share a first token
    fmt = resolved.chat_format
    prompts = [fmt.prompt(f"Route this message to one of: {', '.join(labels)}.\n\n{t}")
               for t in ("my card has not arrived", "why was I charged a fee for the transfer?")]
    ids = tok(prompts, add_special_tokens=True)["input_ids"]
    conts = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    fast = hf.continuation_logprobs(model, ids, conts, pad_id=tok.pad_token_id or 0)
    ref = _reference_logprobs(model, ids, conts)
    assert calls == [1] and np.allclose(fast, ref, atol=1e-4), np.abs(fast - ref).max()
