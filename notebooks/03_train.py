# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Train: a LoRA adapter that learns the task
#
# This stage trains a small LoRA adapter on `data/train.jsonl`, with the loss on the answer only, and saves it under
# `adapters/<adapter_name>/`.
#
# **Objective** teach the base model the task in minutes on a laptop CPU. **Needs** an approved license note (01) and a
# passing privacy audit (02). **Produces** `adapters/<adapter_name>/`, `train/log.json`, `train/loss.png`.
# **Hardware** CPU (the demo trains in a few minutes on 2 cores) or one CUDA GPU.
#
# **How much to train is measured, not guessed.** 15% of `train.jsonl` (stratified by label, at most 100 rows; 32–40
# for extract and reply, which are generated) is held out as a validation set; the holdout stays 04's test set and is
# never read here. At every evaluation the adapter is scored on it with the task's own metric (accuracy, field
# accuracy, ROUGE-L) beside the loss, the best evaluation's weights are kept, and training stops once validation has
# not improved for `early_stopping_patience` evaluations. The saved adapter is the best one, not the last.
#
# **`recipe="auto"`** chooses what you leave unset (`lora_layers=-1`, `epochs=0`, `learning_rate=0`) from the
# number of rows and the machine, and fits the run into `max_train_minutes`: the first steps are timed, and if the
# planned epochs would overrun, the run is shortened and its learning-rate schedule rebuilt for the steps that fit.
# What it chose and why is printed below and kept in `train/log.json`. Any value you set is used as given.
# `bench/recipe.py` measures the recipe against the cheap baselines on real data sets.
#
# **CPU vs GPU.** On a GPU the standard recipe is QLoRA: the frozen base in 4-bit nf4, the adapter in bf16. On a CPU that
# is the slow choice: the 4-bit weights are unpacked for every matrix multiply, which costs more than the multiply
# (measured on Gemma 3 270M: about 4x slower than LoRA on an unquantized base). So `quantization="auto"` picks nf4 on
# CUDA and no quantization on CPU; set `quantization="nf4"` to try QLoRA on a CPU anyway.
#
# **The machine decides the dtype.** `dtype="auto"` computes in what this CPU does fastest. CPUs with bf16 units (Intel
# AMX servers, AVX-512 BF16 such as AMD EPYC Zen 4) run bf16 matmuls several times faster than float32; CPUs
# without them (most laptops, AVX2) run bf16 emulated, dozens of times slower. So auto takes float32 where the CPU has
# no bf16 instructions, and otherwise times one matmul in both dtypes and keeps the faster. The LoRA weights stay
# float32 either way. The choice and its reason are printed below and recorded in `train/log.json`; evaluation (04)
# applies the same rule. `make bench` measures both dtypes on your machine.
#
# **Where the time goes on CPU.** Three things decide it, and kit's recipe handles each:
#
# - *The output head.* Gemma's head has 262k rows: one position through it costs about as much as one token through
#   all 18 layers. The loss is taken on the answer only, so kit sends just the answer tokens (about 5 per ticket)
#   through the head, never the prompt positions.
# - *The shared prefix.* Every prompt starts with the same instruction (40 of the ~100 tokens of a demo ticket).
#   kit computes it once per batch and reuses it for every row: the same loss and gradients, a third fewer tokens.
# - *The backward pass.* Every token runs forward through all layers; backward runs only from the top down to the
#   lowest layer with LoRA weights, so `lora_layers=6` (the top third) trains about 1.5x faster than all 18. The auto
#   recipe still adapts every layer: on real bank-chat intents that scored as well as or better than fewer layers
#   (README, "How much to train"); set `lora_layers` when time matters more than the last point of accuracy.
#
# `bench/train.py` compares this recipe with the one most tutorials copy (nf4 QLoRA on q/v, padded batches) and with
# TRL's defaults, on the same tickets, and prints tokens/s and holdout loss side by side.
#
# **Another model family.** The prompt comes from the model's own chat template, and the loss covers exactly the
# tokens after its generation prompt (kit refuses a template for which that is not well defined). LoRA adapts the
# family's attention and MLP projections (`target_modules="family"`; Phi-3 has fused ones). Time grows with the
# parameters outside the embedding: the embedded model has about 100M, a 0.5B model about 360M, 1.5B about 1.3B, 7B
# about 6.5B, so expect roughly 4x, 13x and 65x the embedded model's step time on the same CPU; keep
# `max_train_minutes` and use a GPU (nf4 QLoRA) for 7B.

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # same spec as in 01_license
adapter_name: str = "default"  # adapters/<adapter_name>/; one adapter per task or tenant
quantization: str = "auto"  # auto (nf4 on CUDA, none on CPU) | nf4 | none
dtype: str = "auto"  # auto (the fastest on this machine: bf16 on AMX / AVX-512 BF16, float32 on AVX2) | float32 | bfloat16
lora_r: int = 16  # adapter rank: 8–64
lora_alpha: int = 32  # scaling; usually 2 x lora_r
lora_dropout: float = 0.0  # 0–0.1
target_modules: str = "family"  # the model family's projections (kit/models/families.py), all-linear, or e.g. "q_proj,v_proj"
recipe: str = "auto"  # auto: chooses what you leave unset (-1 / 0) from data size and machine | default
lora_layers: int = -1  # LoRA on the last N layers only (faster backward); 0: all; -1: by recipe
learning_rate: float = 0.0  # 0: by recipe; 1e-4 – 2e-3 for LoRA
epochs: float = 0.0  # passes over the training rows; 0: by recipe (ignored when max_steps > 0)
max_steps: int = 0  # > 0: stop after this many optimizer steps
batch_size: int = 8  # examples per step
grad_accum: int = 1  # steps to accumulate before an update
max_length: int = 0  # tokens of prompt + answer, long tickets lose their end (0: sized from the data)
seed: int = 0  # training seed (and which rows are held out for validation)
validation_fraction: float = 0.15  # of train.jsonl held out to choose the checkpoint; 0: none
early_stopping_patience: int = 2  # stop after this many validations without a gain; 0: never early
validate_every_steps: int = 0  # 0: once per epoch (twice for runs of 2 epochs or less)
max_train_minutes: float = 10.0  # time budget; auto epochs are planned to fit it; 0: none
checkpoint_every_steps: int = 25  # a checkpoint to resume from after a crash
resume: bool = False  # continue from the last checkpoint in train/checkpoints
usd_per_hour: float = 0.0  # machine price, for the cost estimate in train/log.json
advanced: dict = {}  # other TrainConfig fields by name: threads, lr_scheduler, warmup_ratio (README, Configuration)

# %%
from pathlib import Path
from IPython.display import Image
from kit import settings
from kit.stages import train

cfg = train.TrainConfig(run_dir=run_dir, model=model, adapter_name=adapter_name, quantization=quantization, dtype=dtype,
                        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                        recipe=recipe, lora_layers=lora_layers, learning_rate=learning_rate, epochs=epochs,
                        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
                        seed=seed, validation_fraction=validation_fraction,
                        early_stopping_patience=early_stopping_patience, validate_every_steps=validate_every_steps,
                        max_train_minutes=max_train_minutes,
                        checkpoint_every_steps=checkpoint_every_steps, resume=resume, usd_per_hour=usd_per_hour,
                        **settings.checked(train.TrainConfig, advanced))
cfg

# %% [markdown]
# ## Train
#
# The license note and the privacy audit are checked first; either one missing or failed stops here with the reason.
# Then the run is planned: one training step is timed on this machine, the untrained adapter is scored on the
# validation rows, and the epochs are fitted to `max_train_minutes`. The plan is printed before the progress bar; the
# validation score is measured once per epoch (twice for short runs). For extract and reply, the untrained model
# writes its answers only up to the validation answers' 90th-percentile length (it seldom stops by itself), so this
# reference point costs what a later validation costs.

# %%
result = train.run(cfg)
{k: v for k, v in result.log.items() if k not in ("history", "recipe")}

# %% [markdown]
# **What the recipe chose, and why.** Every parameter you left unset, with its reason; then how the run ended (planned
# steps done, early stopping, or the time budget) and which checkpoint was kept. The saved adapter is the one with the
# best validation score, not necessarily the last.

# %%
print(train.describe_plan(result.log["recipe"]))

# %% [markdown]
# Which dtype the weights were in, and why this machine got it; and how many CPU threads trained. With `threads` left
# at 0, kit uses the cores other programs leave free and re-checks after every step: a core taken by another program
# stalls a team of threads that counts on it (a step took 14x longer beside one busy program), so the count drops,
# and comes back once the core is free again.

# %%
print(f"{result.log['dtype']} on {result.log['cpu'] or result.log['device']}: {result.log['dtype_choice']['reason']}")
print(f"threads: {result.log['threads']} when training started" + "".join(
    f"\n  {c['at']}: {c['threads']} ({c['why']})" for c in result.log["thread_changes"]))

# %% [markdown]
# Left: the answer-only loss on training batches and on the validation rows (log scale); it should fall from several
# nats to well under one, and a flat curve means the learning rate is too low. Right: the validation score at every
# evaluation, with the kept checkpoint starred. A validation loss that rises while the training loss falls is
# overfitting: that is what early stopping and the kept checkpoint guard against.

# %%
Image(str(Path(run_dir) / "train" / "loss.png"))

# %% [markdown]
# ## Files written
#
# The adapter and its metadata (`kit_adapter.json`: base model and its sha256, chat format, labels, data sha256,
# parameters, the recipe, the validation rows' ids and the kept validation score). Next: **04_evaluate** measures it on
# the holdout, which training never saw.
#
# **One adapter per task or tenant.** Adapters are small (a few MB) and live side by side under `adapters/`; the base
# model is never changed. Train one per customer by giving each its own `adapter_name` (and its own data). When a
# customer asks for erasure, delete their adapter: nothing of their data remains in the base or in other adapters.
# A merged export (05) bakes one adapter into a model file, so erasure then means deleting that file too.
#
# **Longer runs.** `python -m kit train --run-dir <run> --set resume=true` continues a killed run from its last
# checkpoint; `accelerate launch -m kit train …` trains on several GPUs (see the README).

# %%
assert (Path(result.adapter_dir) / "adapter_config.json").exists(), "the adapter was not saved"
for p in sorted(Path(result.adapter_dir).iterdir()):
    print(p)
