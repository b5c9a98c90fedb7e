import json

import pytest
from conftest import write_run_basics

from kit import models
from kit.stages import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("run")
    resolved = models.resolve(str(tiny_model_dir))
    write_run_basics(run_dir, str(tiny_model_dir), resolved)
    return run_dir, resolved


def _cfg(run_dir, model, **kw):
    base = dict(run_dir=str(run_dir), model=str(model), max_steps=2, batch_size=4, 
                checkpoint_every_steps=1)
    return train.TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("distributed", [False, True], ids=["gathered answer states", "through the wrapper"])
def test_completion_loss_equals_cross_entropy_on_full_logits(tiny_model_dir, monkeypatch, distributed):
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(train, "_distributed", lambda: distributed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.randint(5, 1000, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 10:] = 0  # a right-padded row: its answer ends before the others'
    labels = torch.full_like(ids, -100)
    labels[0, 8:10] = ids[0, 8:10]
    labels[1, 5:12] = ids[1, 5:12]
    labels[2, 9] = ids[2, 9]
    loss, _ = train.completion_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    full = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    ref = torch.nn.functional.cross_entropy(full.reshape(-1, full.shape[-1]), labels[:, 1:].reshape(-1),
                                            ignore_index=-100)
    assert torch.allclose(loss, ref, atol=1e-5)


def _lora_tiny(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # LoRA B starts at zero; give it values so every gradient path is live
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model.train()


def _prefix_batch(shared=12, lengths=(30, 22, 27)):
    """Right-padded rows that share their first `shared` tokens, with labels on each row's last 3 tokens."""
    import torch

    torch.manual_seed(1)
    prefix = torch.randint(5, 1000, (shared,))
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.cat([prefix, torch.randint(5, 1000, (n - shared,))])
        mask[i, :n] = 1
        labels[i, n - 3:n] = ids[i, n - 3:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_shared_prefix_pass_gives_the_loss_and_gradients_of_the_plain_pass(tiny_model_dir, monkeypatch):
    model = _lora_tiny(tiny_model_dir)
    batch = _prefix_batch()
    assert train.shared_prefix_length(model, batch, first_supervised=19) == 12

    def loss_and_grads():
        model.zero_grad()
        loss, _ = train.completion_loss(model, batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    shared_loss, shared_grads = loss_and_grads()
    monkeypatch.setattr(train, "shared_prefix_length", lambda *a, **k: 0)
    plain_loss, plain_grads = loss_and_grads()
    import torch

    assert torch.allclose(shared_loss, plain_loss, atol=1e-5)
    assert len(plain_grads) > 0 and all(plain_grads[n].abs().sum() > 0 for n in plain_grads)
    for n in plain_grads:
        assert torch.allclose(shared_grads[n], plain_grads[n], atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize("situation, kw, expected", [
    ("prefix shorter than the minimum", {"shared": 4}, 0),
    ("rows longer than the sliding window", {"lengths": (70, 66, 68)}, 0),
    ("one row", {"lengths": (30,)}, 0),
])
def test_shared_prefix_is_not_used_where_it_cannot_help_or_would_change_the_math(tiny_model_dir, situation, kw,
                                                                                expected):
    model = _lora_tiny(tiny_model_dir)  # the tiny model's sliding window is 64 tokens
    assert train.shared_prefix_length(model, _prefix_batch(**kw), first_supervised=19) == expected, situation


def test_shared_prefix_stops_before_the_first_answer_position(tiny_model_dir):
    model = _lora_tiny(tiny_model_dir)
    assert train.shared_prefix_length(model, _prefix_batch(shared=16), first_supervised=10) == 10


def test_batch_without_supervised_tokens_is_refused(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.randint(5, 1000, (2, 8))
    with pytest.raises(train.TrainError, match="no supervised tokens"):
        train.completion_loss(model, {"input_ids": ids, "labels": torch.full_like(ids, -100)})


def test_examples_keep_the_answer_when_the_ticket_is_too_long(tiny_run, tokenizer):
    run_dir, resolved = tiny_run
    from kit.tasks.base import Task

    task = Task.load(run_dir)
    rows = [{"text": "word " * 500, "label": "billing_dispute"}]
    ex = train.build_dataset(rows, task, resolved.chat_format, tokenizer, max_length=64)[0]
    assert len(ex["input_ids"]) <= 64
    answer = [t for t, m in zip(ex["input_ids"], ex["completion_mask"]) if m]
    assert tokenizer.decode(answer) == "billing_dispute<end_of_turn>"
    assert ex["input_ids"][0] == tokenizer.bos_token_id


def test_training_refuses_without_license_note(tmp_path, tiny_run):
    run_dir, _ = tiny_run
    import shutil

    shutil.copytree(run_dir / "data", tmp_path / "data")
    from kit.rundir import LicenseError

    with pytest.raises(LicenseError, match="no license note"):
        train.run(_cfg(tmp_path, tiny_run[1].path))


def test_training_refuses_without_privacy_audit(tmp_path, tiny_run):
    run_dir, resolved = tiny_run
    (tmp_path / "license_note.json").write_text((run_dir / "license_note.json").read_text())
    from kit.rundir import PrivacyAuditError

    with pytest.raises(PrivacyAuditError, match="no privacy audit"):
        train.run(_cfg(tmp_path, resolved.path))


def test_tiny_training_writes_adapter_with_metadata_log_and_plot(tiny_run):
    run_dir, resolved = tiny_run
    res = train.run(_cfg(run_dir, resolved.path, adapter_name="tenant-a"))
    meta = json.loads((run_dir / "adapters" / "tenant-a" / "kit_adapter.json").read_text())
    assert meta["base_model_sha256"] == resolved.sha256 and meta["chat_format"] == "gemma"
    assert meta["labels"] == ["claim_status", "document_request", "billing_dispute", "agent_escalation"]
    assert len(meta["data_sha256"]) == 64 and meta["parameters"]["max_steps"] == 2
    assert res.log["steps"] == 2 and res.log["tokens_per_s"] > 0 and res.log["device"] == "cpu"
    assert (run_dir / "train" / "loss.png").stat().st_size > 1000
    assert (run_dir / "adapters" / "tenant-a" / "adapter_config.json").exists()


def test_resume_continues_from_the_last_checkpoint(tiny_run):
    run_dir, resolved = tiny_run
    train.run(_cfg(run_dir, resolved.path, adapter_name="r", max_steps=2))
    res = train.run(_cfg(run_dir, resolved.path, adapter_name="r", max_steps=3, resume=True))
    assert res.log["resumed_from"].endswith("checkpoint-2")
    assert res.log["steps"] == 3


def test_nf4_qlora_path_trains_on_a_tiny_model(tiny_run):
    pytest.importorskip("bitsandbytes")
    run_dir, resolved = tiny_run
    res = train.run(_cfg(run_dir, resolved.path, adapter_name="nf4", quantization="nf4", max_steps=1))
    assert res.log["quantization"] == "nf4" and res.log["steps"] == 1


@pytest.mark.parametrize("kw, msg", [({"quantization": "int3"}, "not one of auto, nf4, none"),
                                     ({"learning_rate": 5.0}, "outside"), ({"batch_size": 0}, "at least 1")])
def test_bad_settings_are_rejected_with_the_setting_named(kw, msg):
    with pytest.raises(train.TrainError, match=msg):
        train.TrainConfig(run_dir="x", model="m", **kw)


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_run):
    """Start training in a separate process, kill -9 it after a few checkpoints, resume in this one."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    run_dir, resolved = tiny_run
    for name in ("data", "license_note.json"):
        (shutil.copytree if name == "data" else shutil.copy)(run_dir / name, tmp_path / name)
    settings = [f"model={resolved.path}", "max_steps=30", "batch_size=2", "checkpoint_every_steps=2",
                "validate_every_steps=1000"]
    cmd = [sys.executable, "-m", "kit", "train", "--run-dir", str(tmp_path)] + sum((["--set", s] for s in settings), [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt_dir = tmp_path / "train" / "checkpoints" / "default"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt_dir / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "adapters" / "default").exists()  # the killed run never finished
    done = max(int(p.name.split("-")[1]) for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    assert 4 <= done < 30

    res = train.run(train.TrainConfig(run_dir=str(tmp_path), model=resolved.path, max_steps=30, batch_size=2,
                                      checkpoint_every_steps=2, validate_every_steps=1000, resume=True))
    assert res.log["resumed_from"].endswith(f"checkpoint-{done}")
    assert res.log["steps"] == 30
    steps_logged = [h["step"] for h in res.log["history"] if "loss" in h]
    assert steps_logged and min(steps_logged) > done  # nothing before the checkpoint was trained again


def test_lora_on_the_last_layers_only_leaves_lower_layers_untouched(tiny_run):
    from safetensors import safe_open

    run_dir, resolved = tiny_run
    res = train.run(_cfg(run_dir, resolved.path, adapter_name="top1", lora_layers=1, max_steps=1))
    with safe_open(f"{res.adapter_dir}/adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all(".layers.1." in k for k in keys)  # the tiny model has layers 0 and 1
    assert {k.split(".")[-3] for k in keys} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"}


def test_train_entry_point_runs_data_parallel_in_two_processes(tmp_path, tiny_run):
    """The same entry point as `accelerate launch -m kit train`, here as two CPU processes (gloo) via torchrun."""
    import shutil
    import subprocess
    import sys

    run_dir, resolved = tiny_run
    shutil.copytree(run_dir / "data", tmp_path / "data")
    shutil.copy(run_dir / "license_note.json", tmp_path / "license_note.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "kit", "train",
           "--run-dir", str(tmp_path), "--set", f"model={resolved.path}", "--set", "max_steps=2",
           "--set", "batch_size=2", "--set", "threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads((tmp_path / "train" / "log.json").read_text())
    assert log["processes"] == 2 and log["steps"] == 2
    assert (tmp_path / "adapters" / "default" / "kit_adapter.json").exists()
    assert proc.stdout.count("adapter: ") == 1  # only the main process reports


def test_lora_layers_by_recipe_on_cpu_and_gpu_and_as_set():
    from kit import recipe

    pick = lambda r, device, layers=-1: recipe.choose(r, 300, device, 18, layers, 0, 0)["lora_layers"]
    assert pick("auto", "cpu").value == 18 and pick("default", "cpu").value == 6
    assert pick("auto", "cuda").value == 18  # every layer on a GPU
    assert pick("auto", "cpu", 4) == recipe.Choice(4, "set by you") and pick("auto", "cpu", 0).value == 18
    with pytest.raises(train.TrainError, match="lora_layers=-2"):
        train.TrainConfig(run_dir="x", model="m", lora_layers=-2)


def test_nf4_layers_keep_their_input_gradient_after_an_evaluation_pass(tiny_model_dir):
    """bitsandbytes repacks nf4 weights on AVX-512 BF16 CPUs at the first no-grad eval pass, into a kernel without a
    backward (and fails on layers narrower than 64): kit's loader keeps training layers on the autograd path."""
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    model = models.load_model(models.resolve(str(tiny_model_dir)), dtype="float32", quantization="nf4")
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    layer = layers[0]
    x = torch.randn(3, layer.in_features, requires_grad=True)
    layer.train()
    layer(x).sum().backward()
    before, x.grad = x.grad.clone(), None
    layer.eval()
    with torch.no_grad():
        layer(x.detach())  # what the holdout loss does between training steps
    layer.train()
    layer(x).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, before)
