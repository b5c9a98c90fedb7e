"""How much to train: the validation split, what `recipe='auto'` chooses, and the checkpoint validation picks.

The holdout (04's test set) never steers training. Instead a stratified, seeded slice of `data/train.jsonl` is kept
out of training as a validation set; at every evaluation the adapter is scored on it with the task's own metric
(accuracy for classify, field accuracy for extract, ROUGE-L for reply) beside the answer-token loss. The best
evaluation's LoRA weights are kept, training stops when validation has not improved for `early_stopping_patience`
evaluations, and the saved adapter is the best one, not the last.

`recipe='auto'` fills in every training parameter you left unset (`lora_layers=-1`, `epochs=0`,
`learning_rate=0`) from the data size and the device (the task kind sets the validation metric and size), and fits
the run to `max_train_minutes` at the speed this machine shows in its first training steps (`pace_callback`). Parameters you set are used as given.
What was chosen and why is recorded in `train/log.json` (`recipe`). `recipe='default'` fills them in with the
values kit used before validation existed (two epochs as the demo trained, top third of the layers on CPU, 1e-3):
the comparison line for `bench/recipe.py`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from kit.stats import sample_indices
from kit.tasks.base import answer_token_cap

RECIPES = ("auto", "default")
VALIDATION_MAX_ROWS = {"classify": 100, "extract": 40, "reply": 32}  # generation costs more per row than scoring
MIN_VALIDATION_ROWS = 8  # fewer rows than this measure nothing: no validation (recorded with the reason)
MIN_FIT_ROWS = 8


def validation_split(rows: list[dict], kind: str, fraction: float, seed: int) -> tuple[list[dict], list[dict], str]:
    """(rows to train on, validation rows, a note on the split), both lists in their original order.

    classify: stratified by label (largest-remainder quotas, every label keeps at least one training row); extract
    and reply: a seeded random sample. At most VALIDATION_MAX_ROWS[kind] rows are held out.
    """
    if fraction <= 0:
        return rows, [], "no validation (validation_fraction=0)"
    want = min(VALIDATION_MAX_ROWS[kind], round(fraction * len(rows)))
    if want < MIN_VALIDATION_ROWS or len(rows) - want < MIN_FIT_ROWS:
        return rows, [], (f"no validation: {len(rows)} training rows are too few to hold out {MIN_VALIDATION_ROWS} "
                          f"and still train on {MIN_FIT_ROWS}")
    chosen, how = sample_indices(rows, kind, want, seed, keep_one=True)
    fit = [r for i, r in enumerate(rows) if i not in chosen]
    val = [r for i, r in enumerate(rows) if i in chosen]
    return fit, val, f"{len(val)} of {len(rows)} training rows held out for validation ({how}, seed {seed})"


@dataclass(frozen=True)
class Choice:
    value: float | int
    why: str


def choose(recipe: str, n_fit: int, device: str, n_layers: int, lora_layers: int, epochs: float,
           learning_rate: float) -> dict[str, Choice]:
    """LoRA layers, epochs (before the time budget) and learning rate; a value you set is kept as given."""
    out = {}
    if lora_layers >= 0:
        out["lora_layers"] = Choice(lora_layers or n_layers, "set by you")
    elif device == "cuda":
        out["lora_layers"] = Choice(n_layers, "GPU: every layer")
    elif recipe == "default":
        out["lora_layers"] = Choice(max(1, n_layers // 3), "default recipe: the top third of the layers on CPU")
    else:
        # Measured on Gemma 3 270M (18 layers), 2 CPU cores, on bank chat intents with validation rows cut from
        # ../shared/devdata/routing's training split (README, "How much to train"): every layer scored as well as or
        # better than the top two thirds, for ~10% more training time.
        out["lora_layers"] = Choice(n_layers, "CPU: every layer (measured as good as or better than fewer on real "
                                              "intents, for ~10% more time than two thirds)")
    if learning_rate > 0:
        out["learning_rate"] = Choice(learning_rate, "set by you")
    else:
        # Same measurement: 5e-4 reached a lower validation loss than 1e-3 (0.04 vs 0.11) and higher accuracy
        # (96.1% vs 94.8%); 1e-3 swung by several points between epochs.
        lr = 1e-3 if recipe == "default" else 5e-4
        out["learning_rate"] = Choice(lr, f"LoRA r=16 on a small model: {lr:g}, cosine decay, 5% warm-up"
                                          + (" (default recipe)" if recipe == "default" else ""))
    if epochs > 0:
        out["epochs"] = Choice(epochs, "set by you")
    elif recipe == "default":
        out["epochs"] = Choice(2.0, "default recipe: two epochs (what the course demo trained before validation)")
    else:
        # Enough passes for about 2,400 training examples seen, between 2 and 8 epochs: small data sets need more
        # passes; validation and early stopping decide where in that range the adapter is taken.
        e = min(8, max(2, round(2400 / max(n_fit, 1))))
        out["epochs"] = Choice(float(e), f"{n_fit} training rows: {e} epochs (~2,400 examples seen, 2–8 epochs), "
                                         "the best validation checkpoint is kept")
    return out


def steps_that_fit(done: int, total: int, elapsed_s: float, step_s: float, validation_s: float, eval_steps: int,
                   budget_s: float) -> int:
    """How many optimizer steps in all fit the time budget, at the measured seconds per step (validations included);
    `total` when they all do or there is no budget."""
    if budget_s <= 0:
        return total
    per_step = step_s + validation_s / max(eval_steps, 1)
    return min(total, done + max(0, int((budget_s - elapsed_s) / per_step)))


def pace_callback(trainer, selection, started: float, budget_s: float, validation_s: float, eval_steps: int,
                  total: int, shrink: bool, plan: dict):
    """A TrainerCallback that times this machine's first steps and keeps the run inside the time budget.

    The step time is measured on the real training steps (steps 3 to ~5% of the run, at least 6), not predicted:
    a separate timing pass before training misjudged it several-fold (kernels are prepared per shape on first use).
    When the planned steps would overrun `max_train_minutes` and the epochs were the recipe's choice, the run is
    shortened to the steps that fit and the learning-rate schedule is rebuilt for that length, so it still decays
    to its end; epochs you set are kept, and training stops once the budget is spent (`budget_hit`), with the
    last step validated so the best weights so far are what is kept.
    """
    import warnings

    from transformers import TrainerCallback, get_scheduler

    warm, measure_at = 2, max(6, min(30, round(0.05 * total)))
    validates = trainer.eval_dataset is not None  # validation_fraction=0 or too few rows: nothing to evaluate

    class Pace(TrainerCallback):
        def __init__(self):
            self.stop_at, self.budget_hit, self.marks = None, False, {}

        def on_step_end(self, args, state, control, **kw):
            step, now = state.global_step, time.time()
            if budget_s and now - started > budget_s:
                control.should_training_stop = self.budget_hit = True
                control.should_evaluate = validates
            if step in (warm, measure_at):
                self.marks[step] = (now, getattr(trainer, "kit_eval_s", 0.0))
            if step == measure_at and warm in self.marks:
                (t0, e0), (t1, e1) = self.marks[warm], self.marks[measure_at]
                step_s = ((t1 - t0) - (e1 - e0)) / (measure_at - warm)
                fit = steps_that_fit(step, total, now - started, step_s, validation_s, eval_steps, budget_s)
                plan["measured_step_s"] = round(step_s, 3)
                plan["projected_min"] = round((now - started + (total - step) * (step_s + validation_s / eval_steps))
                                              / 60, 1)
                if fit < total and shrink:
                    self.stop_at = fit
                    opt = trainer.lr_scheduler.optimizer
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # fast-forwarding a schedule warns about step order
                        sched = get_scheduler(args.lr_scheduler_type, optimizer=opt,
                                              num_warmup_steps=min(args.warmup_steps, fit), num_training_steps=fit)
                        for _ in range(step):
                            sched.step()
                    trainer.lr_scheduler = sched
                    plan["total_steps_planned"] = fit
                    selection.min_step = fit // 2
                    plan["epochs_note"] += (f"; at the measured {step_s:.2f} s per step the run would take "
                                            f"~{plan['projected_min']:g} min, so it was shortened to the {fit} of "
                                            f"{total} steps that fit max_train_minutes={budget_s / 60:g} (the "
                                            "learning-rate schedule rebuilt for them)")
                    print(f"time budget: shortened to {fit} of {total} steps ({plan['projected_min']:g} min "
                          f"projected at {step_s:.2f} s per step, budget {budget_s / 60:g} min)")
                elif fit < total:
                    plan["epochs_note"] += (f"; at the measured {step_s:.2f} s per step the run would take "
                                            f"~{plan['projected_min']:g} min, more than max_train_minutes="
                                            f"{budget_s / 60:g}: it stops at the budget (raise it, or set 0 to lift "
                                            "it)")
                    print(f"time budget: {plan['projected_min']:g} min projected, budget {budget_s / 60:g} min; "
                          "training will stop at the budget")
            if step >= getattr(state, "max_steps", 0) > 0 and validates:
                control.should_evaluate = True  # the last step is a candidate too: nothing saved goes unvalidated
            if self.stop_at is not None and step >= self.stop_at:
                control.should_training_stop = True
                control.should_evaluate = validates  # validate the last step, so the schedule's end is a candidate

    return Pace()


class Validator:
    """Scores a model on the validation rows with the task's metric: accuracy (classify), field accuracy (extract),
    ROUGE-L (reply). The prompts are cut to the training budget, exactly as in 04."""

    def __init__(self, rows: list[dict], task, fmt, tokenizer, prompt_tokens: int, answer_tokens: int,
                 batch_size: int = 16):
        self.rows, self.task, self.fmt, self.tok, self.batch_size = rows, task, fmt, tokenizer, batch_size
        self.prompts = [task.prompt(fmt, r["text"], tokenizer, prompt_tokens) for r in rows]
        self.references = [task.answer(r) for r in rows]
        self.max_new = answer_token_cap(answer_tokens)
        # Step 0 is the untrained adapter, i.e. the base model, which seldom stops by itself: it would write up to
        # the longest training answer on every row (on STAR replies: 44 s, against ~19 s for a validation once the
        # model stops where its answers stop). It writes up to the validation answers' 90th percentile instead, so
        # the reference point costs what a later validation costs, and the time budget is planned with that cost.
        lengths = sorted(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for ref in self.references) \
            if task.generative and self.references else [answer_tokens]
        self.step0_max_new = min(self.max_new, answer_token_cap(lengths[int(0.9 * (len(lengths) - 1))]))
        self.metric = {"classify": "accuracy", "extract": "field_accuracy", "reply": "rouge_l"}[task.kind]

    def __call__(self, model, step: int | None = None) -> float:
        import json

        import numpy as np

        from kit.stages import evaluate
        from kit.tasks import metrics
        from kit.tasks.base import parse_object

        scorer = evaluate.HFScorer(model, self.tok, self.batch_size, progress=False)
        was_training = model.training
        model.eval()
        try:
            if self.task.kind == "classify":
                preds = evaluate.predict(scorer, self.task, self.rows, self.prompts)
                return float(np.mean([p["correct"] for p in preds]))
            texts = scorer.generate(self.prompts, self.fmt.stop, self.step0_max_new if step == 0 else self.max_new,
                                    must_start_with=self.task.answer_start)
        finally:
            model.train(was_training)
        if self.task.kind == "extract":
            return metrics.field_accuracy(np.array(
                [metrics.field_scores(json.loads(ref), parse_object(t))
                 for ref, t in zip(self.references, texts)], dtype=float).reshape(-1, 4))
        rouge, _ = metrics.reply_scores(self.references, texts)
        return float(np.mean(rouge))


LOSS_PROGRESS = 0.9  # a validation loss under this share of the lowest so far counts as progress


class Selection:
    """Keeps the best evaluation's LoRA weights and says when validation has stopped improving.

    Best = the highest task metric; on a tie, the lower validation loss. The evaluation at step 0 (the untrained
    adapter, i.e. the base model) is recorded as the reference but never kept: 04 compares with the base model, and a
    noisy metric early in training must not throw the training away (seen: 23 validation rows, the base scored 39%,
    the adapter 26% and 35% after 9 and 18 steps while its loss fell from 9.2 to 1.1). Early stopping counts
    evaluations without progress (a higher metric, or a loss 10% under the lowest so far) and waits for half the
    planned steps: while the learning rate is high, validation swings by several points between epochs (measured on
    bank-chat intents). The weights are copied in memory (a few MB of LoRA parameters), so a killed and resumed run
    chooses among the evaluations after the resume.
    """

    def __init__(self, patience: int, min_step: int = 0):
        self.patience = patience
        self.min_step = min_step  # no early stop before this step (set to half the planned steps)
        self.best: dict | None = None  # {"step", "epoch", "metric", "loss"}
        self.best_weights: dict | None = None
        self.lowest_loss: float | None = None
        self.since_progress = 0
        self.evaluations: list[dict] = []

    def update(self, model, step: int, epoch: float, metric: float, loss: float | None) -> bool:
        """Record one evaluation; True when training should stop (no progress in `patience` evaluations)."""
        entry = {"step": step, "epoch": round(epoch, 3), "metric": metric, "loss": loss}
        self.evaluations.append(entry)
        if step == 0:
            return False
        key = lambda e: (e["metric"], -(e["loss"] if e["loss"] is not None else 0.0))
        progress = (self.best is None or metric > self.best["metric"]
                    or (loss is not None and self.lowest_loss is not None and loss < LOSS_PROGRESS * self.lowest_loss))
        if self.best is None or key(entry) > key(self.best):
            self.best = entry
            self.best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        if loss is not None:
            self.lowest_loss = loss if self.lowest_loss is None else min(self.lowest_loss, loss)
        self.since_progress = 0 if progress else self.since_progress + 1
        return bool(self.patience) and self.since_progress >= self.patience and step >= self.min_step

    def restore(self, model) -> bool:
        """Put the best weights back; False when the model already holds them (the best was the last)."""
        import torch

        if self.best_weights is None or self.best is self.evaluations[-1]:
            return False
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.best_weights:
                    p.copy_(self.best_weights[n])
        return True


def record(choices: dict[str, Choice]) -> dict:
    return {k: asdict(v) for k, v in choices.items()}
