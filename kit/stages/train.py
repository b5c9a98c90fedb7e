"""Train stage: a LoRA adapter on the base model, with loss only on the answer.

In: `data/train.jsonl` and `data/task.json` from the prepare stage, an approved license note, a passing privacy
audit; the holdout is never read here (it is 04's test set). Out: `adapters/<adapter_name>/` (PEFT files +
`kit_adapter.json` metadata), `train/log.json` (the recipe and why, validation curve, wall time, tokens/s, device,
memory, cost) and `train/loss.png`.

How much to train is decided by validation (kit.recipe): a stratified slice of train.jsonl is held out, scored with
the task's metric at every evaluation, and the best checkpoint is the adapter saved.

Recipe. `quantization='auto'` means nf4 QLoRA on CUDA and LoRA on an unquantized base on CPU: on a CPU the 4-bit
weights must be dequantized for every matmul, which costs more than the matmul itself (measured ~4x slower on
Gemma 3 270M). Loss is taken on the completion only, and only the answer tokens go through Gemma's 262k-token output
head, in one chunked pass that yields the loss and its gradient without vocabulary-sized tensors; the instruction
every prompt starts with is computed once per batch (`completion_loss`). On CPU each LoRA projection runs as one
fused op in the base's dtype (kit/models/fused.py). With LoRA in the top layers only (`lora_layers`), backward stops at the
lowest of them. bench/train.py measures the speed of the recipe
against the seed one, bench/recipe.py its quality against TF-IDF and retrieval on real data.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit import __version__, hardware, models, progress
from kit import recipe as recipe_mod
from kit.errors import KitError
from kit.io import read_jsonl, sha256_file, write_json
from kit.rundir import RunDir
from kit.settings import advanced
from kit.tasks.base import Task


class TrainError(KitError):
    """Training cannot start or cannot go on, for a reason the user can fix."""


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str
    model: str
    adapter_name: str = "default"
    quantization: str = "auto"  # auto | nf4 | none
    dtype: str = "auto"  # auto (what this machine computes fastest: kit.hardware) | float32 | bfloat16
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "family"  # the family's projections (kit/models/families.py), "all-linear", or e.g. "q_proj,v_proj"
    lora_layers: int = -1  # LoRA on the last N decoder layers only (backward stops there); 0 = all; -1 = by recipe
    recipe: str = "auto"  # auto | default: how parameters left unset (-1 / 0) are chosen (kit.recipe)
    learning_rate: float = 0.0  # 0 = by recipe
    lr_scheduler: str = field(default="cosine",
                              metadata=advanced("transformers' schedule: cosine, linear, constant, ..."))
    warmup_ratio: float = field(default=0.05,
                                metadata=advanced("share of the steps spent warming the learning rate up"))
    epochs: float = 0.0  # 0 = by recipe
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 0  # tokens of prompt + answer (longer tickets lose their end); 0 = sized from the data
    seed: int = 0
    validation_fraction: float = 0.15  # of train.jsonl, held out to choose the checkpoint; 0 = no validation
    early_stopping_patience: int = 2  # stop after this many validations without a gain; 0 = never stop early
    validate_every_steps: int = 0  # 0 = once per epoch (twice per epoch for runs of 2 epochs or less)
    max_train_minutes: float = 10.0  # time budget for training; auto epochs are planned to fit it; 0 = none
    checkpoint_every_steps: int = 25
    resume: bool = False
    usd_per_hour: float = 0.0  # price of the machine, for the cost estimate in train/log.json
    threads: int = field(default=0, metadata=advanced(
        "CPU threads for torch; 0 = the cores other programs leave free, re-checked after every step"))

    def __post_init__(self):
        if self.lora_layers < -1:
            raise TrainError(f"lora_layers={self.lora_layers}: use -1 (auto), 0 (all layers) or a number of layers.")
        if self.dtype not in hardware.DTYPES:
            raise TrainError(f"dtype='{self.dtype}' is not one of {', '.join(hardware.DTYPES)}.")
        if self.quantization not in ("auto", "nf4", "none"):
            raise TrainError(f"quantization='{self.quantization}' is not one of auto, nf4, none.")
        for name in ("lora_r", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.max_length < 0:
            raise TrainError(f"max_length={self.max_length} must be 0 (sized from the data) or a number of tokens.")
        if self.recipe not in recipe_mod.RECIPES:
            raise TrainError(f"recipe='{self.recipe}' is not one of {', '.join(recipe_mod.RECIPES)}.")
        if not 0 <= self.learning_rate < 1:
            raise TrainError(f"learning_rate={self.learning_rate} is outside [0, 1); 0 lets the recipe choose, "
                             "typical LoRA values are 1e-4–2e-3.")
        if self.epochs < 0 or self.max_steps < 0:
            raise TrainError("epochs and max_steps must be 0 (chosen by the recipe) or more.")
        if not 0 <= self.validation_fraction <= 0.5:
            raise TrainError(f"validation_fraction={self.validation_fraction} is outside 0–0.5 (0 = no validation).")
        for name in ("early_stopping_patience", "validate_every_steps", "max_train_minutes"):
            if getattr(self, name) < 0:
                raise TrainError(f"{name}={getattr(self, name)} must be 0 or more.")

    @property
    def adapter_dir(self) -> Path:
        return RunDir(self.run_dir).adapter_dir(self.adapter_name)


def resolved_quantization(quantization: str, device: str) -> str:
    if quantization == "auto":
        return "nf4" if device == "cuda" else "none"
    return quantization


def lora_targets(model, target_modules: str, explicit: bool = False, family=None):
    """PEFT target modules: "family" (the family entry's projections), "all-linear" or a comma-separated list. PEFT
    accepts "all-linear" only without a layer restriction, so with `lora_layers` it is spelled out as the model's
    linear module names (the output head excluded)."""
    import torch

    if target_modules == "family" and family is not None:
        present = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
        targets = [t for t in family.target_modules if t in present]
        if not targets:
            raise TrainError(f"none of the {family.name} family's LoRA targets {list(family.target_modules)} is a "
                             f"linear layer of this model (it has {sorted(present)}); set target_modules.")
        return targets
    if target_modules == "family":
        target_modules = "all-linear"
    if target_modules != "all-linear":
        return [t.strip() for t in target_modules.split(",") if t.strip()]
    if not explicit:
        return "all-linear"
    names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.Linear) and ".layers." in name}
    return sorted(names)


def answer_ids(rows: list[dict], task: Task, fmt, tokenizer) -> dict[str, list[int]]:
    """Token ids of every distinct answer (with its end-of-turn marker), as the model must write it."""
    answers = set(task.labels) | {task.answer(r) for r in rows}
    return {a: tokenizer(task.completion(fmt, a), add_special_tokens=False)["input_ids"] for a in sorted(answers)}


# max_length 0 sizes the sequence from the data: the instruction, 95% of the texts whole, and the longest answer.
# Never below the 192 tokens kit used before (batches pad to their own longest row, so a higher cap costs short
# texts nothing), never above 1024 (a CPU step grows with the square of the length past that).
AUTO_LENGTH = (192, 1024)
MIN_TEXT_TOKENS = 32  # a prompt must leave the text at least this much room (or all of it, when texts are shorter)


def fit_length(rows: list[dict], task: Task, fmt, tokenizer, max_length: int) -> tuple[int, str]:
    """(max_length, why): `max_length` when set, else the length the data needs (AUTO_LENGTH)."""
    if max_length:
        return max_length, "set"
    overhead = task.prompt_overhead(fmt, tokenizer)
    longest = max(len(a) for a in answer_ids(rows, task, fmt, tokenizer).values())
    lengths = sorted(len(ids) for ids in tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"])
    p95 = lengths[int(0.95 * (len(lengths) - 1))]
    need = overhead + p95 + longest
    low, high = AUTO_LENGTH
    fitted = min(high, max(low, -(-need // 32) * 32))
    why = (f"sized from the data: instruction {overhead} + 95% of texts within {p95} + longest answer {longest} = "
           f"{need} tokens")
    return fitted, why + (f", capped at {high}" if need > high else "")


def prompt_budget(rows: list[dict], task: Task, fmt, tokenizer, max_length: int) -> tuple[int, int]:
    """(prompt tokens, answer tokens): the longest answer always fits, and every prompt, in training and later in
    evaluation and export, is cut to the same number of tokens (recorded in kit_adapter.json). Refused when the
    instruction and the longest answer leave the text too little room: a ticket cut to a few words (or to nothing,
    under a long label list) would train a model that never reads it."""
    longest = max(len(a) for a in answer_ids(rows, task, fmt, tokenizer).values())
    overhead = task.prompt_overhead(fmt, tokenizer)
    longest_text = max(len(ids) for ids in tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"])
    room = max_length - longest - overhead
    if room < min(MIN_TEXT_TOKENS, longest_text):
        need = overhead + longest + min(MIN_TEXT_TOKENS * 4, longest_text)
        raise TrainError(
            f"max_length={max_length} leaves the text {max(room, 0)} tokens: the instruction takes {overhead} and the "
            f"longest answer {longest}. Raise max_length (e.g. to {-(-need // 32) * 32}, or 0 to size it from the "
            "data), shorten the answers, or shorten the instruction"
            + (" (with many labels, leave {labels} out of it: the model learns the labels from the training rows)."
               if task.kind == "classify" else "."))
    return max_length - longest, longest


def build_dataset(rows: list[dict], task: Task, fmt, tokenizer, max_length: int, budget: int | None = None):
    """Tokenized prompt/completion examples: `input_ids` and a `completion_mask` marking the answer tokens.

    The prompt is tokenized exactly as at inference (BOS + prompt), the answer appended after it, so the model
    learns the token sequence it will see when served. Tickets are cut so the answer always fits in max_length.
    Tokenizing here also spares TRL's dataset map from hashing the 262k-token tokenizer (a minute per map).
    """
    from datasets import Dataset

    answers = answer_ids(rows, task, fmt, tokenizer)
    if budget is None:
        budget = max_length - max(len(a) for a in answers.values())
    out = []
    for r in rows:
        prompt_ids = tokenizer(task.prompt(fmt, r["text"], tokenizer, budget), add_special_tokens=True)["input_ids"]
        prompt_ids = prompt_ids[:budget]
        answer = answers[task.answer(r)][: max_length - len(prompt_ids)]
        if not answer:  # every label would be masked: the step would learn nothing and report a loss of 0 or NaN
            raise TrainError(f"row {r.get('id', '?')}: no answer token is left to train on (prompt of "
                             f"{len(prompt_ids)} tokens, max_length {max_length}). Raise max_length.")
        out.append({"input_ids": prompt_ids + answer, "completion_mask": [0] * len(prompt_ids) + [1] * len(answer)})
    return Dataset.from_list(out)


def completion_loss(model, inputs, num_items_in_batch=None):
    """Cross-entropy on the answer tokens only, projecting only those tokens through the output head.

    Gemma 3's output head has 262k rows, more weights than the rest of the 270M model: one position through it costs
    about as much as a token through all 18 layers. So the head sees exactly the (row, position) pairs that carry a
    label, about 5 per ticket, not every prompt position, and not the union of answer positions over a right-padded
    batch either (answers end at different columns; the union would be ~8x larger).
    """
    import torch

    from kit.models import fused

    labels = inputs["labels"]
    shifted = labels[:, 1:]
    supervised = shifted != -100
    if not bool(supervised.any()):
        raise TrainError("a training batch has no supervised tokens: every answer was masked or cut off. "
                         "Raise max_length, or check that completions are not empty.")
    rows, cols = supervised.nonzero(as_tuple=True)  # the hidden state at column c predicts the token at c + 1
    forward = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    if _distributed():
        # DDP/FSDP synchronise gradients inside their own forward: go through it, with logits at the answer columns.
        columns = supervised.any(0).nonzero().squeeze(-1)
        outputs = model(**forward, logits_to_keep=columns, use_cache=False)
        outputs = {"logits": outputs.logits[rows, torch.searchsorted(columns, cols)]}
    else:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps; LoRA sits inside
        shared = shared_prefix_length(model, forward, int(cols.min()))
        hidden = _decoder_states(base, forward, shared)[rows, cols - shared]
        if fused.head_applies(base):  # a frozen plain head: loss and gradient in one chunked pass (kit/models/fused.py)
            total = fused.head_cross_entropy(base, hidden, shifted[rows, cols])
            outputs = {}
        else:
            logits = models.output_head(base, hidden)
            outputs = {"logits": logits}
    if "logits" in outputs:
        total = torch.nn.functional.cross_entropy(outputs["logits"].float(), shifted[rows, cols], reduction="sum")
    n = num_items_in_batch if num_items_in_batch is not None else supervised.sum()
    return total / torch.as_tensor(n, device=total.device).clamp(min=1), outputs


def _distributed() -> bool:
    import torch

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def shared_prefix_length(model, forward: dict, first_supervised: int) -> int:
    """How many leading tokens every row of the batch shares (0 = do not share).

    Every training prompt starts with the same BOS, turn marker and task instruction (40 of the ~100 tokens of a
    demo ticket). Those positions hold identical hidden states in every row, so they can be computed once for the
    batch and broadcast: same loss, same gradients, about a third fewer tokens through the model. Not used where it
    would change the computation: padding-free batches (position_ids), sliding-window attention shorter than the
    batch, gradient checkpointing (it replays the forward). Distributed runs never get here (see completion_loss).
    """
    ids = forward["input_ids"]
    batch, length = ids.shape
    if batch < 2 or "position_ids" in forward or getattr(model, "is_activation_checkpointing", False):
        return 0
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    if window and length > window:
        return 0
    same = (ids == ids[:1]).all(0)
    if "attention_mask" in forward:
        same &= forward["attention_mask"].bool().all(0)
    n = int(same.long().cumprod(0).sum())
    n = min(n, first_supervised, length - 1)  # the answer positions and at least one token stay per row
    return n if n >= models.MIN_SHARED_PREFIX else 0


def _decoder_states(base, forward: dict, shared: int):
    """Final hidden states (after the last norm) of every position from `shared` on.

    With a shared prefix, it runs once (batch 1), its key/value cache is repeated over the batch, and the rest runs
    on top. Autograd sums the gradients of the repeated cache back into the single prefix pass, so LoRA weights get
    the same gradients as from the full batch (tests/test_train.py checks loss and gradients against the plain pass).
    """
    if not shared:
        return models.decoder_states(base, forward)
    ids = forward["input_ids"]
    rest = {"input_ids": ids[:, shared:]}
    if "attention_mask" in forward:
        rest["attention_mask"] = forward["attention_mask"]  # prefix + rest
    return models.decoder_states(base, rest, models.prefix_cache(base, ids[:1, :shared]))


def _trainer_class():
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        """SFTTrainer with kit's completion loss (answer positions only, refusing batches with nothing to learn)."""

        kit_stopped_early = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = completion_loss(model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            """Validation: the loss on answer tokens (computed as in training, no logits gathered) and the task's
            metric (kit.recipe.Validator); the best evaluation's weights are kept, and training stops when
            validation has not improved for `early_stopping_patience` evaluations."""
            import torch

            if getattr(self, "_kit_last_eval", (None,))[0] == self.state.global_step:
                return self._kit_last_eval[1]  # the Trainer may ask twice at the last step; once is enough
            started = time.time()
            model, total, count = self.model, 0.0, 0
            was_training = model.training
            model.eval()
            with torch.no_grad():
                for batch in self.get_eval_dataloader(eval_dataset):
                    batch = self._prepare_inputs(batch)
                    k = int((batch["labels"][:, 1:] != -100).sum())
                    loss, _ = completion_loss(model, batch)
                    total, count = total + float(loss) * k, count + k
            model.train(was_training)
            if _distributed():  # each process saw its shard of the validation rows: pool them, so all decide alike
                pooled = torch.tensor([total, float(count)], device=self.args.device)
                torch.distributed.all_reduce(pooled)
                total, count = float(pooled[0]), int(pooled[1])
            metrics = {f"{metric_key_prefix}_loss": total / max(count, 1)}
            validator, selection = getattr(self, "kit_validation", (None, None))
            if validator is not None:
                metrics[f"{metric_key_prefix}_{validator.metric}"] = value = validator(model, self.state.global_step)
                if selection.update(model, self.state.global_step, self.state.epoch or 0.0, value,
                                    metrics[f"{metric_key_prefix}_loss"]):
                    self.control.should_training_stop = self.kit_stopped_early = True
            self._kit_last_eval = (self.state.global_step, metrics)
            self.kit_eval_s = getattr(self, "kit_eval_s", 0.0) + time.time() - started
            self.log(metrics)
            return metrics

    return CompletionSFTTrainer


def _latest_checkpoint(out_dir: Path) -> str | None:
    """The newest complete checkpoint. A process killed while saving leaves a directory without trainer_state.json
    (the Trainer writes it last): that one is skipped, so a kill can cost at most one checkpoint interval."""
    ckpts = sorted((p for p in out_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                   key=lambda p: int(p.name.split("-")[1]))
    return str(ckpts[-1]) if ckpts else None


@dataclass
class TrainResult:
    adapter_dir: str
    log: dict


def run(cfg: TrainConfig, on_log=None) -> TrainResult:
    """Train after checking the license and privacy gates; returns where the adapter is and the training log.

    On CPU with `threads` 0, torch's threads follow the cores other programs leave free, checked after every step
    (kit.hardware.ThreadGovernor; changes in the log's `thread_changes`); the count is restored afterwards."""
    with hardware.governed(models.pick_device(), cfg.threads) as governor:
        return _run(cfg, on_log, governor)


def _run(cfg: TrainConfig, on_log, governor) -> TrainResult:
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig

    run_dir = Path(cfg.run_dir)
    rd = RunDir(run_dir)
    resolved = models.resolve(cfg.model)
    rd.check_license(resolved.sha256)
    audit = rd.check_audit()
    device = models.pick_device()
    quant = resolved_quantization(cfg.quantization, device)
    if quant == "nf4" and device == "cpu":
        print("nf4 QLoRA on CPU: expect roughly 4x slower steps than quantization='none' (4-bit weights are "
              "dequantized on every matmul).")

    task = Task.load(run_dir)
    fmt = resolved.chat_format
    tok = models.load_tokenizer(resolved)
    all_rows = read_jsonl(rd.train_jsonl)
    train_rows, val_rows, split_note = recipe_mod.validation_split(all_rows, task.kind, cfg.validation_fraction,
                                                                   cfg.seed)
    max_length, length_why = fit_length(all_rows, task, fmt, tok, cfg.max_length)
    print(f"max_length: {max_length} ({length_why})")
    prompt_tokens, answer_tokens = prompt_budget(all_rows, task, fmt, tok, max_length)
    train_ds = build_dataset(train_rows, task, fmt, tok, max_length, prompt_tokens)
    # Validation rows sorted by length, so each loss batch pads little.
    val_rows = sorted(val_rows, key=lambda r: len(r["text"]))
    val_ds = build_dataset(val_rows, task, fmt, tok, max_length, prompt_tokens) if val_rows else None

    dtype = hardware.compute_dtype(cfg.dtype, device)
    print(f"dtype: {dtype.dtype} ({dtype.reason})")
    model = models.load_model(resolved, dtype=dtype.dtype, quantization=quant)
    model.train()
    n_layers = model.config.get_text_config().num_hidden_layers
    choices = recipe_mod.choose(cfg.recipe, len(train_rows), device, n_layers, cfg.lora_layers,
                                cfg.epochs, cfg.learning_rate)
    n_lora = int(choices["lora_layers"].value)
    layers = list(range(n_layers - n_lora, n_layers)) if 0 < n_lora < n_layers else None
    targets = lora_targets(model, cfg.target_modules, explicit=layers is not None, family=fmt.family)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")
    work_dir = rd.train_dir
    ckpt_dir = work_dir / "checkpoints" / cfg.adapter_name
    if not cfg.resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # a fresh run must never resume from a stale checkpoint
    args = SFTConfig(
        output_dir=str(ckpt_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=16, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=choices["learning_rate"].value, lr_scheduler_type=cfg.lr_scheduler,
        max_length=max_length, completion_only_loss=True, train_sampling_strategy="group_by_length", seed=cfg.seed,
        eval_strategy="steps" if val_ds is not None else "no",
        save_strategy="steps", save_steps=cfg.checkpoint_every_steps, save_total_limit=2, report_to=[],
        bf16=device == "cuda", use_cpu=device == "cpu",
        # TRL turns gradient checkpointing on by default; for a 270M model it only costs time (a second forward).
        activation_checkpointing=False, dataloader_num_workers=0, disable_tqdm=False,
    )

    history: list[dict] = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                history.append({"step": state.global_step, **logs})
                if on_log:
                    on_log(history[-1])

    budget_s = cfg.max_train_minutes * 60

    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                               processing_class=tok, peft_config=lora,
                               callbacks=[Recorder(), *([progress.trainer_callback()] if progress.mode() == "lines" else [])])
    if device == "cpu":  # LoRA in the base's dtype in one fused op per projection (kit/models/fused.py)
        from kit.models import fused

        fused.install_lora(trainer.model)
    validator = recipe_mod.Validator(val_rows, task, fmt, tok, prompt_tokens, answer_tokens) if val_rows else None
    selection = recipe_mod.Selection(cfg.early_stopping_patience)
    trainer.kit_validation = (validator, selection)

    # Plan the run: the untrained adapter's validation score (and what one validation costs); the machine's speed
    # is measured on the first training steps (kit.recipe.pace_callback).
    start = time.time()
    validation_s = 0.0
    if validator is not None:
        trainer.evaluate()  # step 0
        validation_s = time.time() - start
    steps_per_epoch = math.ceil(len(train_ds) / (cfg.batch_size * cfg.grad_accum))
    epochs = float(choices["epochs"].value)
    evals_per_epoch = 2 if epochs <= 2 else 1
    if cfg.max_steps > 0:
        epochs_note, total_steps = f"max_steps={cfg.max_steps} set by you", cfg.max_steps
    else:
        epochs_note, total_steps = f"{epochs:g} epochs ({choices['epochs'].why})", math.ceil(steps_per_epoch * epochs)
    eval_steps = cfg.validate_every_steps or max(1, math.ceil(steps_per_epoch / evals_per_epoch))
    args.num_train_epochs = epochs
    args.max_steps = cfg.max_steps if cfg.max_steps > 0 else -1
    args.warmup_steps = round(cfg.warmup_ratio * total_steps)
    args.logging_steps = max(1, total_steps // 20)
    args.eval_steps = eval_steps
    plan = {
        "recipe": cfg.recipe, "choices": recipe_mod.record(choices), "validation": split_note,
        "validation_metric": validator.metric if validator else None, "epochs_planned": epochs,
        "epochs_note": epochs_note, "total_steps_planned": total_steps, "validate_every_steps": eval_steps,
        "validation_s": round(validation_s, 1), "max_train_minutes": cfg.max_train_minutes,
    }
    if validator is not None and task.generative:  # answers written at validation: up to how many tokens
        plan["validation_max_new_tokens"] = {"step 0": validator.step0_max_new, "later": validator.max_new}
    shrink = cfg.max_steps <= 0 and cfg.epochs <= 0  # only epochs the recipe chose are shortened to the budget
    selection.min_step = total_steps // 2
    pace = recipe_mod.pace_callback(trainer, selection, start, budget_s, validation_s, eval_steps, total_steps, shrink,
                                    plan)
    trainer.add_callback(pace)
    if governor is not None:
        governor.where = lambda: f"step {trainer.state.global_step}"

        class Threads(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                governor.after_step()

        trainer.add_callback(Threads())
    print(describe_plan(plan))

    resume_from = _latest_checkpoint(ckpt_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        print(f"resume=True but no checkpoint in {ckpt_dir}; starting from step 0.")
    planning_s = time.time() - start
    train_start = time.time()
    threads_at_start = torch.get_num_threads()
    trainer.train(resume_from_checkpoint=resume_from)
    wall = time.time() - train_start
    if not trainer.is_world_process_zero():
        return TrainResult(str(cfg.adapter_dir), {})  # under accelerate launch, one process writes the files

    restored = selection.restore(trainer.model)
    if pace.budget_hit:
        stop = "time budget spent"
    elif trainer.kit_stopped_early:
        stop = f"early stopping: no validation gain in {cfg.early_stopping_patience} evaluations"
    else:
        stop = "planned steps done" + (" (shortened to fit the time budget)" if pace.stop_at else "")
    best = selection.best
    plan.update({"stopped": stop, "best": best, "restored_best": restored, "evaluations": selection.evaluations})
    out = cfg.adapter_dir
    trainer.model.save_pretrained(out)
    tok.save_pretrained(out)
    n_tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    steps_done = trainer.state.global_step - (int(resume_from.rsplit("-", 1)[1]) if resume_from else 0)
    # Examples this run processed (every process of an accelerate launch included) times their mean length.
    examples_seen = steps_done * cfg.batch_size * cfg.grad_accum * trainer.args.world_size
    if cfg.max_steps <= 0:  # the last batch of an epoch may be short
        examples_seen = min(examples_seen, math.ceil(len(train_ds) * epochs))
    tokens_seen = n_tokens / max(len(train_ds), 1) * examples_seen
    eval_s = getattr(trainer, "kit_eval_s", 0.0) - validation_s  # validations during training (step 0 is planning)
    log = {
        "device": device, "quantization": quant, "lora_layers": n_lora or n_layers,
        # What the weights were in while training (read off the model, not the setting), and why that dtype.
        "dtype": str(_base_dtype(trainer.model)).removeprefix("torch."), "dtype_choice": dtype.record(),
        "cpu": hardware.cpu_name() if device == "cpu" else None, "recipe": plan,
        "steps": trainer.state.global_step, "epochs_done": round(trainer.state.epoch or 0.0, 3),
        "wall_s": round(wall, 1), "planning_s": round(planning_s, 1), "train_examples": len(train_ds), "validation_examples": len(val_rows),
        "tokens_seen": int(tokens_seen), "tokens_per_s": round(tokens_seen / wall, 1) if wall else None,
        # Training alone, without the validations: the figure bench/train.py compares.
        "validation_eval_s": round(eval_s, 1),
        "train_tokens_per_s": round(tokens_seen / (wall - eval_s), 1) if wall > eval_s else None,
        "processes": trainer.args.world_size,
        "best_validation": best,  # the evaluation whose weights were saved
        "final_validation_loss": selection.evaluations[-1]["loss"] if selection.evaluations else None,
        "history": history,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
        "estimated_cost_usd": round(wall / 3600 * cfg.usd_per_hour, 4), "resumed_from": resume_from,
        "max_length": max_length, "max_length_why": length_why,
        "threads": threads_at_start,  # thread_changes says when that changed during training, and why
        "thread_changes": governor.changes if governor else [],
    }
    write_json(rd.train_log_json, log)
    meta = {
        "adapter_name": cfg.adapter_name, "base_model": cfg.model, "base_model_sha256": resolved.sha256,
        "chat_format": fmt.name, "task": task.kind, "labels": list(task.labels), "system": task.system,
        "schema": task.schema or None, "prompt_tokens": prompt_tokens, "answer_tokens": answer_tokens,
        "max_length": max_length, "max_length_why": length_why,
        "data_sha256": sha256_file(rd.train_jsonl), "audit_passed": audit["passed"],
        "parameters": asdict(cfg), "recipe": {k: plan[k] for k in ("recipe", "choices", "epochs_planned", "stopped")},
        "validation_ids": [r["id"] for r in val_rows],
        "metrics": {"validation_metric": plan["validation_metric"], "best_validation": best,
                    "final_validation_loss": log["final_validation_loss"]},
        "kit_version": __version__,
    }
    write_json(out / "kit_adapter.json", meta)
    loss_plot(history, rd.loss_plot, plan)
    return TrainResult(str(out), log)


def describe_plan(plan: dict) -> str:
    """The recipe in sentences: what was chosen, why, and how the run was planned."""
    lines = [f"recipe: {plan['recipe']}"]
    for name, c in plan["choices"].items():
        lines.append(f"  {name} = {c['value']:g}: {c['why']}")
    lines.append(f"  planned: {plan['total_steps_planned']} steps; {plan['epochs_note']}")
    lines.append(f"  validation: {plan['validation']}"
                 + (f"; metric {plan['validation_metric']} every {plan['validate_every_steps']} steps"
                    if plan["validation_metric"] else ""))
    if "measured_step_s" in plan:
        lines.append(f"  measured {plan['measured_step_s']:.2f} s per training step and {plan['validation_s']:.0f} s per "
                     f"validation: ~{plan['projected_min']:g} min for the planned steps")
    if "stopped" in plan:
        best = plan["best"]
        lines.append(f"  stopped: {plan['stopped']}" + (
            f"; kept step {best['step']} (epoch {best['epoch']:g}, {plan['validation_metric']} {best['metric']:.3f})"
            if best else ""))
    return "\n".join(lines)


def _base_dtype(model):
    """The dtype of the base model's weights (LoRA weights are float32 whatever the base is)."""
    return next(p.dtype for n, p in model.named_parameters() if "lora_" not in n and p.is_floating_point())


def loss_plot(history: list[dict], path: str | Path, plan: dict | None = None):
    """Training and validation loss over steps (left), the validation metric with the kept checkpoint (right)."""
    from matplotlib.figure import Figure  # no pyplot: nothing global to switch or close

    tr = [(h["step"], h["loss"]) for h in history if "loss" in h]
    ev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    metric = (plan or {}).get("validation_metric")
    scored = [(e["step"], e["metric"]) for e in (plan or {}).get("evaluations", [])] if metric else []
    fig = Figure(figsize=(10 if scored else 6, 3.5))
    axes = fig.subplots(1, 2 if scored else 1)
    ax = axes[0] if scored else axes
    if tr:
        ax.plot(*zip(*tr), label="train loss")
    if ev:
        ax.plot(*zip(*ev), "o-", label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("step"); ax.set_ylabel("loss (answer tokens only)"); ax.legend()
    if scored:
        right = axes[1]
        right.plot(*zip(*scored), "o-", color="tab:green", label=f"validation {metric}")
        best = plan.get("best")
        if best:
            right.plot([best["step"]], [best["metric"]], "*", markersize=14, color="tab:red",
                       label=f"kept: step {best['step']} ({best['metric']:.3f})")
        right.set_xlabel("step"); right.set_ylabel(metric.replace("_", " ")); right.legend(loc="lower right")
        right.set_title(plan.get("stopped", ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
