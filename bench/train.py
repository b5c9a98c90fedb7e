"""Training speed on CPU: the seed recipe articles copy, plain LoRA with TRL's defaults, and kit's recipe, side by side.

All three train the embedded Gemma 3 270M on the same tickets (prepared from data_samples/ into a scratch run) and
are then scored with the same holdout loss (answer tokens only, float32, the same 32 holdout tickets).

- seed: nf4 QLoRA (bitsandbytes), r=16 on q_proj/v_proj, TRL SFTTrainer with its defaults (gradient checkpointing,
  full-vocabulary logits), batch 4 padded to max_length, lr 2e-4.
- trl_bf16: LoRA with PEFT's default targets for Gemma (q_proj/v_proj) on the checkpoint's bf16 weights, TRL's
  defaults otherwise (batch 8, lr 2e-5, gradient checkpointing).
- kit: `kit.train.run` with the course defaults (float32 LoRA on every linear module of the top third of the
  layers, only answer tokens through the output head, the shared instruction prefix computed once per batch,
  length-grouped batches, no gradient checkpointing).

Tokens/s counts real (non-padding) tokens over training time only. Each recipe sees the same --examples tickets;
one that would take longer than --max-seconds stops early and its loss is reported after the tickets it saw.

Run: .venv/bin/python bench/train.py  [--examples 96] [--max-seconds 300]   (about 15 minutes on 2 cores)
Last line: kit_tokens_per_s=<x> seed_tokens_per_s=<y> ratio=<x/y>
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def prepare(run_dir: Path, resolved):
    from kit import data, licenses

    data.run(data.PrepareConfig(run_dir=str(run_dir), input_path=str(REPO / "data_samples" / "tickets.csv"),
                                purpose="training benchmark"))
    licenses.run(licenses.LicenseConfig(run_dir=str(run_dir), model="embedded:gemma3-270m", approved=True,
                                        approver="bench", license_id="gemma"), resolved)


def holdout_loss(model, eval_ds, tokenizer) -> float:
    """Mean answer-token loss on the holdout set, computed the same way for every recipe."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from kit.train import completion_loss

    pad = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)

    def collate(examples):  # labels only on answer tokens, as every recipe's training loss
        labelled = [{"input_ids": e["input_ids"],
                     "labels": [t if m else -100 for t, m in zip(e["input_ids"], e["completion_mask"])]}
                    for e in examples]
        return pad(labelled)

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float32, enabled=False):
        for i in range(0, len(eval_ds), 8):
            batch = collate([eval_ds[j] for j in range(i, min(i + 8, len(eval_ds)))])
            k = int((batch["labels"][:, 1:] != -100).sum())
            loss, _ = completion_loss(model, batch)
            total, count = total + float(loss) * k, count + k
    return total / count


class Deadline:
    """A TrainerCallback that stops training after `seconds` and remembers how many steps ran."""

    def __init__(self, seconds: float):
        from transformers import TrainerCallback

        outer = self
        self.seconds, self.start, self.steps = seconds, None, 0

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                outer.start = time.time()

            def on_step_end(self, args, state, control, **kw):
                outer.steps = state.global_step
                if time.time() - outer.start > outer.seconds:
                    control.should_training_stop = True

        self.callback = _CB()


def trl_recipe(name, resolved, train_ds, eval_ds, tok, examples, max_seconds, *, dtype, quant, batch, lr,
               pad_to_max, max_length):
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from kit import models

    if quant == "nf4":
        model = models.load_model(resolved, quantization="nf4")
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
    steps = math.ceil(examples / batch)
    deadline = Deadline(max_seconds)
    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix=f"bench-{name}-"), per_device_train_batch_size=batch,
                     learning_rate=lr, max_steps=steps, max_length=max_length, report_to=[], save_strategy="no",
                     logging_steps=max(1, steps // 4), use_cpu=True, bf16=dtype == torch.bfloat16, seed=0,
                     pad_to_multiple_of=max_length if pad_to_max else None, disable_tqdm=True)
    peft_cfg = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds.select(range(examples)),
                         processing_class=tok, peft_config=peft_cfg, callbacks=[deadline.callback])
    start = time.time()
    trainer.train()
    wall = time.time() - start
    seen = min(deadline.steps * batch, examples)
    tokens = sum(len(x) for x in train_ds.select(range(seen))["input_ids"])
    model = trainer.model.float() if dtype == torch.bfloat16 else trainer.model
    return {"recipe": name, "examples": seen, "tokens": tokens, "train_s": wall, "tokens_per_s": tokens / wall,
            "holdout_loss": holdout_loss(model, eval_ds, tok), "stopped_early": seen < examples}


def kit_recipe(run_dir, eval_ds, tok, examples, batch=8):
    from kit import train

    cfg = train.TrainConfig(run_dir=str(run_dir), model="embedded:gemma3-270m", max_steps=math.ceil(examples / batch),
                            batch_size=batch, holdout_loss_examples=32, holdout_loss_every_steps=10**6,
                            checkpoint_every_steps=10**6, adapter_name="bench")
    res = train.run(cfg)
    log = res.log
    from kit import models

    model = models.load_model(models.resolve(), adapter_dir=res.adapter_dir)
    train_s = log["wall_s"] - log["holdout_eval_s"]
    return {"recipe": "kit", "examples": examples, "tokens": log["tokens_seen"], "train_s": train_s,
            "tokens_per_s": log["train_tokens_per_s"], "holdout_loss": holdout_loss(model, eval_ds, tok),
            "stopped_early": False}


def main() -> None:
    import torch

    from kit import models, train
    from kit.io import read_jsonl
    from kit.task import Task

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=96, help="training tickets every recipe sees")
    ap.add_argument("--max-seconds", type=float, default=300, help="time cap per recipe (slow recipes stop early)")
    ap.add_argument("--recipes", default="seed,trl_bf16,kit")
    opts = ap.parse_args()

    resolved = models.resolve()
    tok = models.load_tokenizer(resolved)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    prepare(run_dir, resolved)
    task, fmt = Task.load(run_dir), resolved.chat_format
    max_length = train.TrainConfig(run_dir="x", model="x").max_length
    train_ds = train.build_dataset(read_jsonl(run_dir / "data" / "train.jsonl"), task, fmt, tok, max_length)
    eval_ds = train.build_dataset(read_jsonl(run_dir / "data" / "holdout.jsonl")[:32], task, fmt, tok, max_length)
    torch.manual_seed(0)

    results = []
    for name in opts.recipes.split(","):
        print(f"--- {name}", flush=True)
        if name == "seed":
            r = trl_recipe("seed", resolved, train_ds, eval_ds, tok, opts.examples, opts.max_seconds,
                           dtype=torch.float32, quant="nf4", batch=4, lr=2e-4, pad_to_max=True, max_length=max_length)
        elif name == "trl_bf16":
            r = trl_recipe("trl_bf16", resolved, train_ds, eval_ds, tok, opts.examples, opts.max_seconds,
                           dtype=torch.bfloat16, quant="none", batch=8, lr=2e-5, pad_to_max=False,
                           max_length=max_length)
        elif name == "kit":
            r = kit_recipe(run_dir, eval_ds, tok, opts.examples)
        else:
            raise SystemExit(f"unknown recipe {name}")
        results.append(r)
        print(r, flush=True)

    base = next((r for r in results if r["recipe"] == "seed"), None)
    print(f"\n{'recipe':10} {'examples':>8} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'vs seed':>8} {'holdout loss':>12}")
    for r in results:
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        note = "  (stopped at the time cap)" if r["stopped_early"] else ""
        print(f"{r['recipe']:10} {r['examples']:8d} {r['tokens']:7d} {r['train_s']:8.1f} {r['tokens_per_s']:9.1f} "
              f"{ratio:7.1f}x {r['holdout_loss']:12.3f}{note}")
    kit = next((r for r in results if r["recipe"] == "kit"), None)
    if kit and base:
        print(f"kit_tokens_per_s={kit['tokens_per_s']:.1f} seed_tokens_per_s={base['tokens_per_s']:.1f} "
              f"ratio={kit['tokens_per_s'] / base['tokens_per_s']:.1f}")


if __name__ == "__main__":
    main()
