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
# # 06 · Monitor: drift, reviewer feedback, and rollback
#
# After launch the model meets traffic nobody tested it on. This stage takes a batch of production tickets (the file
# formats of stage 02; optionally with what a reviewer answered for some of them) and asks three questions: does the
# traffic still look like the training data (input drift), does the model still answer the way it did on the holdout
# (output drift), and are the reviewed answers still as good as the evaluation said (quality)? Each check has a
# statistic, a threshold and a verdict; together they give a decision: **keep**, **retrain** or **roll back**.
#
# **Objective** find out that the world changed before the customers tell you, and act on it in one step.
# **Needs** an exported, promoted run (05) and one or more batches. **Produces** `monitor/<batch>/report.json`,
# `monitor/<batch>/feedback.jsonl`, `monitor/drift.png`, and, on a roll-back decision, a new live version in the
# registry. **Hardware** CPU; about a minute per 1,000 tickets.
#
# Production text is customer data: each batch goes through this run's redactor and the independent audit first, and
# only redacted text is written. The model's answers come from the live GGUF in llama.cpp, the engine Ollama runs.

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # the run whose model serves the traffic
batch_paths: list = []  # production batches, oldest first (CSV / JSONL / JSON / Parquet with the run's text columns)
review_column: str = ""  # the reviewer's answer per row (label, JSON object or reply); an empty cell: not reviewed
prediction_column: str = ""  # what the service answered, if the batch logs it; empty: kit asks the live model
confidence_column: str = ""  # the logged confidence beside prediction_column
tenant: str = "default"  # registry entry whose live version serves this traffic
registry_dir: str = ""  # empty: registry/ beside the run directories (papermill_runs/registry)
auto_rollback: bool = True  # a roll-back decision makes the previous version live (recorded with the reasons)
monitor_thresholds: dict = {}  # overrides of kit.stages.monitor.Thresholds, e.g. {"population_auc": 0.75}
max_batch_rows: int = 0  # monitor the first N rows of each batch (0: all)

# %%
from pathlib import Path
import pandas as pd
from IPython.display import Image, display
from kit import adapters
from kit.report import tables
from kit.stages import monitor

registry = adapters.location(run_dir, registry_dir)
print("live before monitoring:", (adapters.live(registry, tenant) or {}).get("version", "none"))
cfg = monitor.StageConfig(run_dir=run_dir, batch_paths=tuple(batch_paths), review_column=review_column,
                          prediction_column=prediction_column, confidence_column=confidence_column, tenant=tenant,
                          registry_dir=registry_dir, auto_rollback=auto_rollback,
                          monitor_thresholds=monitor_thresholds, max_batch_rows=max_batch_rows)
reports = monitor.run(cfg)
if not batch_paths:
    print("no batch given: set batch_paths to one or more files of production tickets")

# %% [markdown]
# ## What each check means
#
# - **new_terms**: words that appear in a noticeable share of the batch (5%) but almost never in training (0.5%).
#   The classic cause is a new product or a new kind of problem; the model has never seen those words.
# - **oov_rate**: the share of the batch's words that never occur in training, against the same share for the holdout
#   (which the model did fine on). More unknown words means less of the ticket is familiar to the model.
# - **length**: are tickets much longer or shorter than in training? (A two-sample Kolmogorov–Smirnov test: the largest
#   gap between the two length distributions, 0 to 1.)
# - **population**: a small text classifier is asked to tell batch tickets from training tickets. If it cannot (ROC AUC
#   near 0.5) the batch looks like training; the better it does, the more the traffic has moved, and the words it leans
#   on say what moved.
# - **label_mix**: the share of tickets the model sends to each lane, against the holdout's (population stability
#   index: under 0.1 steady, over 0.25 a major shift). **confidence**: is the model less sure than on the holdout?
# - **quality**: on the tickets a reviewer looked at, how often was the model right, with a 95% interval, against the
#   same model file's holdout accuracy. This is the one that says customers are affected.
# - **overrides**: a lane reviewers keep overriding (to the same other lane, usually) is a repair target: the data
#   for that lane, or the instruction, needs work.
#
# A quality drop rolls back to the version that was live before; drift without a quality drop asks for retraining on
# the reviewed rows before quality follows; nothing alerting keeps the live version.

# %%
for r in reports:
    print(f"\n{r['batch']}: decision {r['decision'].upper()} - {r['why']}")
    for a in r["alerts"]:
        print("  alert:", a)
    display(tables.checks_table(r))

# %% [markdown]
# Drift across the batches so far (each point one batch; dashed: the threshold; red band: not 'keep').

# %%
if reports:
    display(Image(str(Path(run_dir) / "monitor" / "drift.png")))

# %% [markdown]
# ## Who overrode what
#
# For each lane the model predicted: how many reviewed tickets, how many a reviewer overrode, and to which lane.

# %%
for r in reports:
    if r["overrides_by_label"]:
        print(r["batch"])
        display(pd.DataFrame(r["overrides_by_label"]).T)

# %% [markdown]
# ## The registry after monitoring
#
# A roll-back decision (with `auto_rollback`) made the version before live again and rewrote the registry's
# `Modelfile`; the history records who changed what, when and why. `kit.adapters.rollback` and `kit.adapters.promote`
# do the same by hand; `kit.adapters.erase` deletes one tenant's adapters (an erasure request) and touches no other.

# %%
for r in reports:
    if r["rollback"]:
        print(r["batch"], "rollback:", r["rollback"].get("from"), "->", r["rollback"].get("to"),
              "" if r["rollback"]["done"] else f"not done: {r['rollback']['why']}")
display(adapters.table(registry, tenant))
print("live now:", (adapters.live(registry, tenant) or {}).get("version", "none"), "| Modelfile:",
      registry / tenant / "Modelfile")

# %% [markdown]
# ## Feedback into the next cycle
#
# Every overridden or edited ticket becomes a candidate training row, redacted, with the reviewer's answer and where it
# came from (`kit_feedback`: batch, file sha256, line, outcome, what the model said). The rows are written in this run's
# own input columns (the redacted text in the main text column, the answer in the label column, tenant, consent and
# time kept), so they go through stage 02 with the next training export unchanged: append
# `monitor/<batch>/feedback.jsonl` to it (JSONL) and they are redacted, audited and accounted like any row.

# %%
for r in reports:
    print(f"{r['batch']}: {r['feedback']['rows']} feedback rows in {r['feedback']['path']}")

# %% [markdown]
# ## The pilot report
#
# One page for the client: the scope decision and its cost, the license and who approved it, what data was used and
# what was kept out, training, results against every baseline, the memorisation probes, the export and the monitoring
# above. It is built from this run directory's files alone (plots inside, nothing fetched), reads on a phone and
# prints to PDF. `python -m kit report <run dir>` rebuilds it after any stage.

# %%
import os
from IPython.display import HTML
from kit import report

page = report.build(run_dir)
print("pilot report:", page)
display(HTML(f'<a href="{os.path.relpath(page, Path.cwd())}" target="_blank">open the pilot report</a>'))
