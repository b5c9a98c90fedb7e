"""The validation split, the auto recipe's choices, the time budget, and the checkpoint validation keeps."""

import json
from collections import Counter

import pytest
from conftest import write_run_basics

from kit import models, recipe
from kit.stages import train


def _rows(counts: dict[str, int]) -> list[dict]:
    return [{"id": f"{lab}-{i}", "text": f"t {lab} {i}", "label": lab} for lab, n in counts.items() for i in range(n)]


def test_validation_split_is_stratified_seeded_and_keeps_every_label_in_training():
    rows = _rows({"a": 60, "b": 30, "c": 8, "d": 2})
    fit, val, note = recipe.validation_split(rows, "classify", 0.15, seed=3)
    assert len(val) == 15 and len(fit) + len(val) == len(rows)
    assert {r["id"] for r in fit}.isdisjoint(r["id"] for r in val)
    v = Counter(r["label"] for r in val)
    assert v == {"a": 9, "b": 5, "c": 1}  # quotas 9, 4.5, 1.2, 0.3: the largest remainder (b) gets the 15th row
    assert all(Counter(r["label"] for r in fit)[lab] >= 1 for lab in "abcd")  # no label leaves training
    assert "stratified" in note and "15 of 100" in note
    assert recipe.validation_split(rows, "classify", 0.15, seed=3)[1] == val  # seeded
    assert recipe.validation_split(rows, "classify", 0.15, seed=4)[1] != val
    assert [r["id"] for r in fit] == [r["id"] for r in rows if r in fit]  # original order kept


def test_generative_validation_is_a_capped_random_sample_and_tiny_data_gets_none():
    rows = [{"id": str(i), "text": "x", "answer": str(i)} for i in range(1000)]
    _, val, note = recipe.validation_split(rows, "reply", 0.15, seed=0)
    assert len(val) == recipe.VALIDATION_MAX_ROWS["reply"] and "random" in note
    fit, val, note = recipe.validation_split(rows[:20], "extract", 0.15, seed=0)
    assert val == [] and len(fit) == 20 and "too few" in note
    assert recipe.validation_split(rows, "reply", 0.0, 0)[1] == []


def test_auto_recipe_choices_follow_the_data_size_and_keep_what_you_set():
    small = recipe.choose("auto", 150, "cpu", 18, -1, 0, 0)
    large = recipe.choose("auto", 3000, "cpu", 18, -1, 0, 0)
    assert small["epochs"].value == 8 and large["epochs"].value == 2  # small data gets more passes
    assert small["learning_rate"].value > 0 and "set by you" not in small["learning_rate"].why
    mine = recipe.choose("auto", 150, "cpu", 18, 3, 1.5, 2e-4)
    assert {k: v.value for k, v in mine.items()} == {"lora_layers": 3, "epochs": 1.5, "learning_rate": 2e-4}
    assert all(v.why == "set by you" for v in mine.values())
    default = recipe.choose("default", 150, "cpu", 18, -1, 0, 0)
    assert (default["epochs"].value, default["learning_rate"].value, default["lora_layers"].value) == (2.0, 1e-3, 6)
    assert small["learning_rate"].value == 5e-4


def test_steps_that_fit_the_budget_count_the_validations():
    assert recipe.steps_that_fit(10, 100, elapsed_s=20, step_s=1.0, validation_s=0, eval_steps=10, budget_s=60) == 50
    assert recipe.steps_that_fit(10, 100, 20, 1.0, validation_s=10, eval_steps=10, budget_s=60) == 30  # 2 s a step
    assert recipe.steps_that_fit(10, 40, 20, 1.0, 0, 10, 600) == 40 and recipe.steps_that_fit(10, 40, 20, 9, 0, 1, 0) == 40


@pytest.mark.parametrize("shrink", [True, False], ids=["auto epochs: shortened", "epochs set: kept"])
def test_pace_measures_the_first_steps_and_rebuilds_the_schedule_for_the_steps_that_fit(monkeypatch, shrink):
    """One second per step, a 20-second budget, 100 planned steps: 20 fit, and the learning rate reaches zero there;
    with epochs set, the plan is kept and the budget stops training when it is spent."""
    from types import SimpleNamespace

    import torch
    from transformers import get_scheduler

    clock = iter(range(10_000))
    monkeypatch.setattr(recipe.time, "time", lambda: float(next(clock)))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    trainer = SimpleNamespace(lr_scheduler=get_scheduler("cosine", optimizer=opt, num_warmup_steps=5,
                                                         num_training_steps=100), kit_eval_s=0.0,
                              eval_dataset=["a validation row"])
    selection = recipe.Selection(2, min_step=50)
    plan = {"epochs_note": "8 epochs", "total_steps_planned": 100}
    cb = recipe.pace_callback(trainer, selection, started=-1.0, budget_s=20, validation_s=0.0, eval_steps=50, total=100,
                              shrink=shrink, plan=plan)
    args = SimpleNamespace(lr_scheduler_type="cosine", warmup_steps=5)
    lrs, stopped_at = [], None
    for step in range(1, 40):
        opt.step()
        trainer.lr_scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
        control = SimpleNamespace(should_training_stop=False, should_evaluate=False)
        cb.on_step_end(args, SimpleNamespace(global_step=step), control)
        if control.should_training_stop:
            stopped_at = step
            break
    assert plan["measured_step_s"] == pytest.approx(1.0) and plan["projected_min"] > 1.5
    if shrink:
        assert stopped_at == 20 and plan["total_steps_planned"] == 20 and "shortened" in plan["epochs_note"]
        assert selection.min_step == 10  # early stopping waits for half of the shortened run
        assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and lrs[10] > lrs[15] > lrs[18] > 0  # decays to the new end
    else:
        assert plan["total_steps_planned"] == 100 and "stops at the budget" in plan["epochs_note"]
        assert stopped_at == 21 and cb.budget_hit  # kept, then stopped once the 20 s were spent
    if shrink:
        assert not cb.budget_hit


class _Model:  # named parameters, as a PEFT model has them
    def __init__(self):
        import torch

        self.w = torch.nn.Parameter(torch.zeros(2))
        self.frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)

    def named_parameters(self):
        return [("lora_w", self.w), ("base", self.frozen)]


def test_selection_keeps_the_best_trained_weights_and_stops_without_progress():
    import torch

    m, sel = _Model(), recipe.Selection(patience=2)
    seq = [(0.95, 9.0), (0.8, 0.5), (0.8, 0.4), (0.7, 0.3), (0.8, 0.45), (0.6, 0.5)]
    with torch.no_grad():
        stops = []
        for step, (metric, loss) in enumerate(seq):
            m.w.fill_(step)
            stops.append(sel.update(m, step, step / 2, metric, loss))
    # step 0 (the base model) is a reference only, even with the best score; 3 is progress by loss (0.3 < 0.9 x 0.4);
    # 4 and 5 are not: two evaluations without progress end training
    assert stops == [False, False, False, False, False, True]
    assert sel.best["step"] == 2  # same metric as step 1, lower loss
    assert sel.restore(m) and m.w.tolist() == [2.0, 2.0]
    assert set(sel.best_weights) == {"lora_w"}  # frozen weights are not copied
    late = recipe.Selection(patience=1, min_step=3)
    assert [late.update(m, s, 0, x, 1.0) for s, x in enumerate([0.9, 0.5, 0.5, 0.5])] == [False, False, False, True]


def _data_rows(run_dir):
    return [json.loads(x) for x in (run_dir / "data" / "train.jsonl").read_text().splitlines()]


def test_training_validates_keeps_the_best_checkpoint_and_stops_early(tmp_path, tiny_model_dir, monkeypatch):
    """A validator that peaks at step 2 and then falls: training stops once half the run is done, and the adapter
    saved holds the step-2 weights, not the last ones."""
    from safetensors.torch import load_file

    resolved = models.resolve(str(tiny_model_dir))
    write_run_basics(tmp_path, str(tiny_model_dir), resolved)
    scores = iter([0.1, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1])
    monkeypatch.setattr(recipe.Validator, "__call__", lambda self, model, step=None: next(scores))
    monkeypatch.setattr(recipe, "LOSS_PROGRESS", 0.0)  # only the metric counts as progress here
    made = []

    class Spy(recipe.Selection):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(recipe, "Selection", Spy)
    res = train.run(train.TrainConfig(run_dir=str(tmp_path), model=str(tiny_model_dir), max_steps=12, batch_size=4,
                                      validate_every_steps=2, early_stopping_patience=2, checkpoint_every_steps=2,
                                      learning_rate=5e-3))
    plan = res.log["recipe"]
    assert [e["step"] for e in plan["evaluations"]] == [0, 2, 4, 6]  # no gain at 4 and 6; 6 is half of 12
    assert plan["stopped"].startswith("early stopping") and res.log["steps"] == 6
    assert plan["best"]["step"] == 2 and plan["restored_best"]
    saved = load_file(f"{res.adapter_dir}/adapter_model.safetensors")
    best = {k.replace(".default", ""): v for k, v in made[0].best_weights.items()}
    assert saved and all(k in best and bool((saved[k] == best[k]).all()) for k in saved)
    last = load_file(str(tmp_path / "train" / "checkpoints" / "default" / "checkpoint-6" / "adapter_model.safetensors"))
    assert any(not bool((saved[k] == last[k]).all()) for k in saved)  # the last weights were not the ones kept
    meta = json.loads((tmp_path / "adapters" / "default" / "kit_adapter.json").read_text())
    val_ids = set(meta["validation_ids"])
    assert len(val_ids) == res.log["validation_examples"] > 0
    assert res.log["train_examples"] + len(val_ids) == len(_data_rows(tmp_path))
    assert (tmp_path / "train" / "loss.png").stat().st_size > 10_000


def test_real_validation_metric_and_time_budget_on_a_tiny_model(tmp_path, tiny_model_dir):
    resolved = models.resolve(str(tiny_model_dir))
    write_run_basics(tmp_path, str(tiny_model_dir), resolved)
    res = train.run(train.TrainConfig(run_dir=str(tmp_path), model=str(tiny_model_dir), epochs=50, batch_size=4,
                                      max_train_minutes=0.002, checkpoint_every_steps=100))
    plan = res.log["recipe"]
    assert plan["stopped"] == "time budget spent" and res.log["steps"] < 10  # epochs=50 was set: the hard stop
    assert plan["validation_metric"] == "accuracy"
    assert all(0.0 <= e["metric"] <= 1.0 and e["loss"] > 0 for e in plan["evaluations"])
    assert plan["choices"]["epochs"] == {"value": 50, "why": "set by you"}
    assert plan["choices"]["lora_layers"]["why"] != "set by you"
    assert "recipe: auto" in train.describe_plan(plan)


def test_training_without_a_validation_set_runs_to_its_end_and_to_a_budget_stop(tmp_path, tiny_model_dir):
    # validation_fraction=0 (or too few rows) leaves nothing to evaluate: the last step and a budget stop must not ask
    # the trainer for an evaluation it cannot run.
    resolved = models.resolve(str(tiny_model_dir))
    write_run_basics(tmp_path, str(tiny_model_dir), resolved)
    res = train.run(train.TrainConfig(run_dir=str(tmp_path), model=str(tiny_model_dir), max_steps=3, batch_size=4,
                                      validation_fraction=0, checkpoint_every_steps=100))
    assert res.log["steps"] == 3 and not res.log["recipe"].get("evaluations")
    res = train.run(train.TrainConfig(run_dir=str(tmp_path), model=str(tiny_model_dir), epochs=50, batch_size=4,
                                      validation_fraction=0, max_train_minutes=0.002, checkpoint_every_steps=100))
    assert res.log["recipe"]["stopped"] == "time budget spent" and res.log["steps"] < 10
