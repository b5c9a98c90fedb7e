"""How much to train: the validation split, what `recipe='auto'` chooses, and the checkpoint validation picks.

The holdout (04's test set) never steers training. Instead a stratified, seeded slice of `data/train.jsonl` is kept
out of training as a validation set; at every evaluation the adapter is scored on it with the task's own metric
(accuracy for classify, field accuracy for extract, ROUGE-L for reply) beside the answer-token loss. The best
evaluation's LoRA weights are kept, training stops when validation has not improved for `early_stopping_patience`
evaluations, and the saved adapter is the best one, not the last.

`recipe='auto'` fills in every training parameter you left unset (`lora_layers=-1`, `epochs=0`,
`learning_rate=0`) from the task kind, the data size and the machine, and plans the epochs to fit
`max_train_minutes` at the speed this machine measured just before training. Parameters you set are used as given.
What was chosen and why is recorded in `train/log.json` (`recipe`). `recipe='default'` fills them in with the
values kit used before validation existed (two epochs as the demo trained, top third of the layers on CPU, 1e-3):
the comparison line for `bench/recipe.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

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
    rng = random.Random(seed)
    if kind == "classify":
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r["label"], []).append(i)
        exact = {lab: want * len(ix) / len(rows) for lab, ix in groups.items()}
        quota = {lab: min(int(q), len(groups[lab]) - 1) for lab, q in exact.items()}
        for lab in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True):
            if sum(quota.values()) >= want:
                break
            if quota[lab] < len(groups[lab]) - 1:
                quota[lab] += 1
        chosen = set()
        for lab, ix in groups.items():
            ix = ix[:]
            rng.shuffle(ix)
            chosen.update(ix[:quota[lab]])
        how = "stratified by label"
    else:
        chosen = set(rng.sample(range(len(rows)), want))
        how = "random"
    fit = [r for i, r in enumerate(rows) if i not in chosen]
    val = [r for i, r in enumerate(rows) if i in chosen]
    return fit, val, f"{len(val)} of {len(rows)} training rows held out for validation ({how}, seed {seed})"


@dataclass(frozen=True)
class Choice:
    value: float | int
    why: str


def choose(recipe: str, kind: str, n_fit: int, device: str, n_layers: int, lora_layers: int, epochs: float,
           learning_rate: float) -> dict[str, Choice]:
    """LoRA layers, epochs (before the time budget) and learning rate; a value you set is kept as given."""
    out = {}
    if lora_layers >= 0:
        out["lora_layers"] = Choice(lora_layers or n_layers, "set by you")
    elif device == "cuda":
        out["lora_layers"] = Choice(n_layers, "GPU: every layer (backward through all of them is cheap there)")
    elif recipe == "default":
        out["lora_layers"] = Choice(max(1, n_layers // 3), "default recipe: the top third of the layers on CPU")
    else:
        # Measured on Gemma 3 270M (18 layers), 2 CPU cores: on real routing and extraction data the top two
        # thirds learned what the top third could not, and every layer was not better than two thirds while a
        # backward through them all costs ~1.5x more (bench/recipe.py; kit/recipe.py's docstring names the data).
        out["lora_layers"] = Choice(max(1, round(n_layers * 2 / 3)), "CPU: the top two thirds of the layers")
    if learning_rate > 0:
        out["learning_rate"] = Choice(learning_rate, "set by you")
    else:
        out["learning_rate"] = Choice(1e-3, "LoRA r=16 on a small model: 1e-3 (cosine decay, 5% warm-up)")
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


def fit_to_budget(epochs: float, explicit: bool, epoch_s: float, validation_s: float, evals_per_epoch: float,
                  budget_s: float) -> tuple[float, str]:
    """Epochs that fit the time budget at the measured speed (auto epochs only; set ones are kept and warned)."""
    if budget_s <= 0:
        return epochs, "no time budget (max_train_minutes=0)"
    per_epoch = epoch_s + validation_s * evals_per_epoch
    need = epochs * per_epoch + validation_s
    if need <= budget_s:
        return epochs, f"{epochs:g} epochs take ~{need / 60:.1f} min at the measured speed, inside {budget_s / 60:g} min"
    if explicit:
        return epochs, (f"{epochs:g} epochs would take ~{need / 60:.1f} min at the measured speed, more than "
                        f"max_train_minutes={budget_s / 60:g}: training stops at the budget (raise it, or set 0 to "
                        "lift it)")
    fit = max(0.25, (budget_s - validation_s) / per_epoch)
    fit = int(fit * 4) / 4  # quarter epochs
    return fit, (f"{epochs:g} epochs would take ~{need / 60:.1f} min at the measured speed; {fit:g} fit inside "
                 f"max_train_minutes={budget_s / 60:g}")


class Validator:
    """Scores a model on the validation rows with the task's metric: accuracy (classify), field accuracy (extract),
    ROUGE-L (reply). The prompts are cut to the training budget, exactly as in 04."""

    def __init__(self, rows: list[dict], task, fmt, tokenizer, prompt_tokens: int, answer_tokens: int,
                 batch_size: int = 16):
        self.rows, self.task, self.fmt, self.tok, self.batch_size = rows, task, fmt, tokenizer, batch_size
        self.prompts = [task.prompt(fmt, r["text"], tokenizer, prompt_tokens) for r in rows]
        self.references = [task.answer(r) for r in rows]
        self.max_new = int(answer_tokens * 1.25) + 8
        self.metric = {"classify": "accuracy", "extract": "field_accuracy", "reply": "rouge_l"}[task.kind]

    def __call__(self, model) -> float:
        import json

        import numpy as np
        import torch

        from kit import answer_metrics, evaluate

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if self.task.kind == "classify":
                    probs = evaluate.score_labels(model, self.tok, self.prompts, self.task.labels, self.batch_size,
                                                  progress=False)
                    pred = [self.task.labels[i] for i in probs.argmax(1)]
                    return float(np.mean([p == ref for p, ref in zip(pred, self.references)]))
                start = "{" if self.task.kind == "extract" else ""
                texts = evaluate.generate_texts(model, self.tok, self.prompts, self.fmt.stop, self.max_new,
                                                self.batch_size, must_start_with=start)
        finally:
            model.train(was_training)
        if self.task.kind == "extract":
            from kit.task import parse_object

            scores = np.array([answer_metrics.field_scores(json.loads(ref), parse_object(t))
                               for ref, t in zip(self.references, texts)], dtype=float)
            return float(scores[:, 0].sum() / max(scores[:, 1].sum(), 1))
        rouge, _ = answer_metrics.reply_scores(self.references, texts)
        return float(np.mean(rouge))


class Selection:
    """Keeps the best evaluation's LoRA weights and says when validation has stopped improving.

    Better = a higher task metric; on a tie, a lower validation loss. The weights are copied in memory (a few MB
    of LoRA parameters), so a killed and resumed run chooses among the evaluations after the resume.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best: dict | None = None  # {"step", "epoch", "metric", "loss"}
        self.best_weights: dict | None = None
        self.since_best = 0
        self.evaluations: list[dict] = []

    def update(self, model, step: int, epoch: float, metric: float, loss: float | None) -> bool:
        """Record one evaluation; True when training should stop (no gain in `patience` evaluations)."""
        entry = {"step": step, "epoch": round(epoch, 3), "metric": metric, "loss": loss}
        self.evaluations.append(entry)
        key = lambda e: (e["metric"], -(e["loss"] if e["loss"] is not None else 0.0))
        if self.best is None or key(entry) > key(self.best):
            self.best, self.since_best = entry, 0
            self.best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return False
        self.since_best += 1
        return bool(self.patience) and self.since_best >= self.patience

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


def measure_speed(trainer, dataset, batch_size: int) -> float:
    """Training tokens/s of this model on this machine: one forward and backward of a typical batch, timed after a
    warm-up batch (the first call allocates and picks kernels). Gradients are cleared again, weights untouched."""
    from kit.train import completion_loss

    model = trainer.model
    n = len(dataset)
    picks = [list(range(i, min(n, i + batch_size))) for i in (0, n // 2)]
    rate = 0.0
    for k, idx in enumerate(picks):
        batch = trainer._prepare_inputs(trainer.data_collator([dataset[i] for i in idx]))
        tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        started = time.perf_counter()
        loss, _ = completion_loss(model, batch)
        loss.backward()
        elapsed = time.perf_counter() - started
        model.zero_grad(set_to_none=True)
        if k == len(picks) - 1:
            rate = tokens / max(elapsed, 1e-6)
    return rate


def record(choices: dict[str, Choice]) -> dict:
    return {k: asdict(v) for k, v in choices.items()}
