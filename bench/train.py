"""Training speed on CPU: the seed recipe articles copy, plain LoRA with TRL's defaults, and kit's recipe, side by side.

All three train the embedded Gemma 3 270M on the same tickets (prepared from data_samples/ into a scratch run) and
are then scored with the same holdout loss (answer tokens only, float32, the same 32 holdout tickets).

- seed: nf4 QLoRA (bitsandbytes), r=16 on q_proj/v_proj, TRL SFTTrainer with its defaults (gradient checkpointing,
  full-vocabulary logits), batch 4 padded to max_length, lr 2e-4.
- trl_bf16: LoRA with PEFT's default targets for Gemma (q_proj/v_proj) on the checkpoint's bf16 weights, TRL's
  defaults otherwise (batch 8, lr 2e-5, gradient checkpointing).
- kit: `kit.stages.train.run` with the course defaults (the base in the dtype this machine computes fastest, `dtype=auto`:
  bf16 on AMX / AVX-512 BF16, float32 on AVX2; float32 LoRA on every linear module of the layers `recipe: auto`
  picks, all 18 here, so the backward runs through the whole model; only answer tokens through the output head, the
  shared instruction prefix computed once per batch, length-grouped batches, no gradient checkpointing; on CPU the
  head's cross-entropy and each LoRA projection as fused ops, kit/models/fused.py).
- kit_plain: kit with `KIT_FUSED=0`: PEFT's LoRA forward and the plain head + cross-entropy instead of kit/models/fused.py's
  fused paths (same loss and gradients, tested), to show what those are worth on this CPU.
- kit_top: the same as kit with LoRA in the top third of the layers only (6 of 18; backward stops there), the CPU default
  before `recipe: auto` and the recipe earlier figures in the README were measured with.

Tokens/s counts real (non-padding) tokens over training time only. For kit it also prints the machine's matmul peak
in kit's dtype, measured in the same run, and the share of it kit's useful FLOPs reach (see `useful_flops`). Each recipe sees the same --examples tickets;
one that would take longer than --max-seconds stops early and its loss is reported after the tickets it saw.

Run: .venv/bin/python bench/train.py  [--examples 96] [--max-seconds 300]   (7 minutes on 2 cores of the AMX machine)
Last line: kit_tokens_per_s=<x> seed_tokens_per_s=<y> ratio=<x/y>
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kit import models  # noqa: E402
from kit.io import read_jsonl  # noqa: E402
from kit.stages import train  # noqa: E402
from kit.tasks.base import Task  # noqa: E402


def prepare_run(run_dir: Path, resolved):
    import yaml

    from kit.stages import licenses, prepare

    demo = yaml.safe_load((REPO / "papermill_runs" / "demo.yaml").read_text())["parameters"]
    prepare.run(prepare.PrepareConfig(run_dir=str(run_dir), input_path=str(REPO / "data_samples" / "tickets.csv"),
                                purpose="training benchmark", instruction=demo["instruction"]))  # the demo's prompts
    licenses.run(licenses.LicenseConfig(run_dir=str(run_dir), model="embedded:gemma3-270m", approved=True,
                                        approver="bench", license_id="gemma"), resolved)


def holdout_loss(model, eval_ds, tokenizer) -> float:
    """Mean answer-token loss on the holdout set, computed the same way for every recipe."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from kit.stages.train import completion_loss

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
    return {"recipe": name, "dtype": str(dtype).removeprefix("torch."), "examples": seen, "tokens": tokens,
            "train_s": wall, "tokens_per_s": tokens / wall,
            "holdout_loss": holdout_loss(model, eval_ds, tok), "stopped_early": seen < examples}


def layer_params(config) -> tuple[int, int]:
    """Weights of the linear layers of one decoder layer, and of the output head (Gemma ties it to the embedding)."""
    c = config.get_text_config()
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    attn = c.hidden_size * hd * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)  # q, o and k, v
    mlp = 3 * c.hidden_size * c.intermediate_size  # gate, up, down
    return attn + mlp, c.vocab_size * c.hidden_size


def useful_flops(config, tokens: int, answer_tokens: int, lora_layers: int) -> float:
    """FLOPs the recipe cannot do without, counted per real token as model-FLOPs utilisation counts them: forward
    through every layer (2 per weight), backward through the layers from the lowest LoRA layer up (2 per weight: the
    input gradient; frozen weights need no weight gradient), and the output head forward + backward on answer tokens
    only. LoRA's own matmuls (<2% at r=16) and attention scores (~4% at ~100 tokens) are left out: a lower bound."""
    per_layer, head = layer_params(config)
    n_layers = config.get_text_config().num_hidden_layers
    return tokens * 2 * per_layer * (n_layers + lora_layers) + answer_tokens * 4 * head


def kit_recipe(run_dir, train_ds, eval_ds, tok, examples, batch=8, lora_layers=-1, name="kit"):
    cfg = train.TrainConfig(run_dir=str(run_dir), model="embedded:gemma3-270m", max_steps=math.ceil(examples / batch),
                            batch_size=batch, validation_fraction=0, max_train_minutes=0, lora_layers=lora_layers,
                            checkpoint_every_steps=10**6, adapter_name="bench")  # every recipe sees the same tickets
    res = train.run(cfg)
    log = res.log
    model = models.load_model(models.resolve(), dtype="float32", adapter_dir=res.adapter_dir)  # scored as the others
    train_s = log["wall_s"] - log["validation_eval_s"]
    # Answer tokens seen: training walks train.jsonl in length-grouped order, so use the mean answer length.
    answer_per_row = sum(sum(m) for m in train_ds["completion_mask"]) / len(train_ds)
    seen = min(examples, len(train_ds))
    flops = useful_flops(model.config, log["tokens_seen"], round(answer_per_row * seen), log["lora_layers"])
    return {"recipe": name, "examples": examples, "tokens": log["tokens_seen"], "train_s": train_s,
            "tokens_per_s": log["train_tokens_per_s"], "holdout_loss": holdout_loss(model, eval_ds, tok),
            "stopped_early": False, "dtype": log["dtype"], "dtype_reason": log["dtype_choice"]["reason"],
            "useful_gflops": flops / train_s / 1e9, "lora_layers": log["lora_layers"]}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=96, help="training tickets every recipe sees")
    ap.add_argument("--max-seconds", type=float, default=300, help="time cap per recipe (slow recipes stop early)")
    ap.add_argument("--recipes", default="seed,trl_bf16,kit,kit_plain,kit_top")
    opts = ap.parse_args()

    resolved = models.resolve()
    tok = models.load_tokenizer(resolved)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    prepare_run(run_dir, resolved)
    task, fmt = Task.load(run_dir), resolved.chat_format
    train_rows = read_jsonl(run_dir / "data" / "train.jsonl")
    max_length, _ = train.fit_length(train_rows, task, fmt, tok, train.TrainConfig(run_dir="x", model="x").max_length)
    train_ds = train.build_dataset(train_rows, task, fmt, tok, max_length)
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
            r = kit_recipe(run_dir, train_ds, eval_ds, tok, opts.examples)
        elif name == "kit_plain":  # kit with the library paths instead of kit/models/fused.py's, to show what those add
            os.environ["KIT_FUSED"] = "0"
            try:
                r = kit_recipe(run_dir, train_ds, eval_ds, tok, opts.examples, name="kit_plain")
            finally:
                del os.environ["KIT_FUSED"]
        elif name == "kit_top":  # LoRA in the top third only: the CPU default before recipe=auto
            from transformers import AutoConfig

            layers = AutoConfig.from_pretrained(resolved.path).get_text_config().num_hidden_layers
            r = kit_recipe(run_dir, train_ds, eval_ds, tok, opts.examples, lora_layers=max(1, layers // 3),
                           name="kit_top")
        else:
            raise SystemExit(f"unknown recipe {name}")
        results.append(r)
        print(r, flush=True)

    base = next((r for r in results if r["recipe"] == "seed"), None)
    print(f"\n{'recipe':10} {'dtype':>9} {'examples':>8} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'vs seed':>8} "
          f"{'holdout loss':>12}")
    for r in results:
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        note = "  (stopped at the time cap)" if r["stopped_early"] else ""
        print(f"{r['recipe']:10} {r['dtype']:>9} {r['examples']:8d} {r['tokens']:7d} {r['train_s']:8.1f} {r['tokens_per_s']:9.1f} "
              f"{ratio:7.1f}x {r['holdout_loss']:12.3f}{note}")
    kit = next((r for r in results if r["recipe"] == "kit"), None)
    if kit:
        from kit import hardware

        peak = hardware.matmul_gflops(kit["dtype"], seconds=2.0)
        print(f"\nmachine: {hardware.cpu_name()} ({hardware.cpu_kind()}), {torch.get_num_threads()} threads")
        print(f"kit dtype: {kit['dtype']} ({kit['dtype_reason']})")
        print(f"matmul peak in {kit['dtype']} (256x640 @ 640x2048, measured now): {peak:.0f} GFLOP/s")
        print(f"kit useful throughput: {kit['useful_gflops']:.0f} GFLOP/s = {kit['useful_gflops'] / peak:.0%} of that "
              f"peak (forward all layers, backward through the top {kit['lora_layers']}, head on answer tokens only)")
    if kit and base:
        print(f"kit_tokens_per_s={kit['tokens_per_s']:.1f} seed_tokens_per_s={base['tokens_per_s']:.1f} "
              f"ratio={kit['tokens_per_s'] / base['tokens_per_s']:.1f}")


if __name__ == "__main__":
    main()
