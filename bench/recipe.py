"""Does the fine-tune earn its place? `recipe='auto'` against the best cheap baseline, on data kit did not write.

For each data set the course's stages run as a user's run would (prepare, license, train, evaluate) from the run
configs in papermill_runs/, with the recipe parameters left to the recipe under test:

- routing: ../shared/devdata/routing (MultiDoGO finance, 10 intents; classify), config devdata-routing.yaml
- extraction: ../shared/devdata/extraction (Snips slots as JSON; extract), config devdata-extract.yaml
- demo: the synthetic demo tickets (data_samples/tickets.csv; classify), config demo.yaml

Recipes: `auto` (validation split, epochs planned for the data size and the time budget, best checkpoint kept) and
`default` (what kit trained before the validation split: top third of the layers, two epochs as the demo did,
nothing held out). Each is scored on the data set's own test split with 95% intervals, against
the best baseline (TF-IDF + logistic regression for classify, retrieval for extract), with the paired interval of
the difference. Everything is printed side by side in one table, and written to --out as JSON.

Run: .venv/bin/python bench/recipe.py [--sets routing,extraction,demo] [--recipes auto,default]
(about 25 minutes on 2 cores for all of it; `--sets routing` alone about 8)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from kit import hardware, models  # noqa: E402
from kit.stages import evaluate, licenses, prepare, train  # noqa: E402

SETS = {"routing": "devdata-routing.yaml", "extraction": "devdata-extract.yaml", "demo": "demo.yaml"}
RECIPE_KEYS = ("recipe", "lora_layers", "epochs", "learning_rate", "max_steps")  # left to the recipe under test


def _only(cls, params: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in params.items() if k in names}


def _paths(params: dict) -> dict:
    out = dict(params)
    for key in ("input_path", "holdout_path"):
        if out.get(key):
            out[key] = str((REPO / out[key]).resolve())
    return out


def run_one(name: str, recipe: str, work: Path) -> dict:
    params = _paths(yaml.safe_load((REPO / "papermill_runs" / SETS[name]).read_text())["parameters"])
    params = {k: v for k, v in params.items() if k not in RECIPE_KEYS}
    run_dir = work / f"{name}-{recipe}"
    shutil.rmtree(run_dir, ignore_errors=True)
    resolved = models.resolve(params.get("model", models.EMBEDDED_SPEC))
    prepare.run(prepare.PrepareConfig(run_dir=str(run_dir), **_only(prepare.PrepareConfig, {**params, "canaries_per_kind": 0})))
    licenses.run(licenses.LicenseConfig(run_dir=str(run_dir), model=params.get("model", models.EMBEDDED_SPEC),
                                        approved=True, approver="bench", license_id="gemma"), resolved)
    extra = {"validation_fraction": 0.0} if recipe == "default" else {}
    started = time.time()
    res = train.run(train.TrainConfig(run_dir=str(run_dir), recipe=recipe, checkpoint_every_steps=10**6,
                                      **_only(train.TrainConfig, {**params, **extra})))
    train_s = time.time() - started
    ev = evaluate.run(evaluate.EvalConfig(run_dir=str(run_dir), few_shot_k=0, pii_probes=False,
                                          **_only(evaluate.EvalConfig, {k: v for k, v in params.items()
                                                                        if k != "probe_control_steps"})))
    m = ev.metrics
    kind = m["task"]
    key = "field_accuracy" if kind == "extract" else "accuracy"
    best = m["best_baseline"]
    plan = res.log["recipe"]
    return {
        "set": name, "recipe": recipe, "task": kind, "metric": key, "n": m["models"]["tuned"]["n"],
        "tuned": m["models"]["tuned"][key], "tuned_ci95": m["models"]["tuned"][f"{key}_ci95"],
        "baseline": best, "baseline_score": m["models"][best][key], "baseline_ci95": m["models"][best][f"{key}_ci95"],
        "paired": m["tuned_vs_best_baseline"], "paired_metric": m["verdict"]["metric"],
        "verdict": m["verdict"]["outcome"], "train_s": round(train_s, 1),
        "choices": {k: v["value"] for k, v in plan["choices"].items()}, "epochs_planned": plan["epochs_planned"],
        "epochs_done": res.log["epochs_done"], "stopped": plan["stopped"],
        "best": plan["best"], "dtype": res.log["dtype"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="routing,extraction,demo")
    ap.add_argument("--recipes", default="auto,default")
    ap.add_argument("--work", default="", help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args()
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="kit-bench-recipe-"))
    results = []
    for name in args.sets.split(","):
        for recipe in args.recipes.split(","):
            results.append(run_one(name, recipe, work))
            print("RESULT", json.dumps(results[-1]), flush=True)
    print(f"\nCPU: {hardware.cpu_name()} ({hardware.cpu_kind()}), dtype {results[0]['dtype']}")
    head = (f"{'set':<11}{'recipe':<8}{'metric':<15}{'tuned (95% CI)':<22}{'best baseline (95% CI)':<36}"
            f"{'paired delta (95% CI)':<26}{'train s':>8}  auto chose / how it ended")
    print(head)
    for r in results:
        ci = lambda c: f"{c[0]:.3f}–{c[1]:.3f}"
        d = r["paired"]
        chose = ", ".join(f"{k} {v:g}" for k, v in r["choices"].items())
        print(f"{r['set']:<11}{r['recipe']:<8}{r['metric']:<15}{r['tuned']:.3f} ({ci(r['tuned_ci95'])})  "
              f"{r['baseline']:<14}{r['baseline_score']:.3f} ({ci(r['baseline_ci95'])})  "
              f"{d['delta']:+.3f} ({d['ci95'][0]:+.3f}–{d['ci95'][1]:+.3f}) {r['train_s']:>8.0f}  "
              f"{chose}; {r['epochs_done']:g}/{r['epochs_planned']:g} epochs, {r['stopped']}")
    print("paired delta: tuned minus best baseline, per row (exact match for extraction), paired bootstrap")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
