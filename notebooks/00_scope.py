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
# # 00 · Scope: should we fine-tune at all?
#
# This stage writes `scope.json`: a recommendation (fine-tune, retrieval, prompting, or a mix) with its reasons, and
# a monthly cost comparison of a hosted API against a small self-hosted model.
#
# **Objective** decide before spending a day on data and training. **Needs** answers about your task and your
# volumes (the parameters below). **Produces** `scope.json`, `scope_costs.png` in the run directory.
# **Hardware** none: this notebook does arithmetic only.

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # where this run's files live (created if missing)
use_case: str = "Route insurance support emails to one of four lanes"  # one sentence, recorded in scope.json
repeated_language: bool = True  # do the same kinds of requests come back again and again?
stable_rules: bool = True  # do the routing rules stay the same for months?
clear_success_test: bool = True  # can a right answer be checked (a label, a JSON field)?
facts_change_often: bool = False  # do answers depend on facts that change weekly (prices, stock)? then retrieval
style_drift_intolerant: bool = False  # must every answer keep one house format or tone?
new_hire_learns_from_examples: bool = True  # could a new hire learn the task from a pile of examples?
labeled_examples: int = 600  # labeled examples you have (hundreds to a few thousand is the sweet spot)
requests_per_month: int = 20000  # expected volume
prompt_tokens: int = 600  # tokens per request with a hosted API (instructions + examples + ticket)
tuned_prompt_tokens: int = 200  # tokens per request after fine-tuning (instructions now live in the weights)
api_usd_per_million_input: float = 0.15  # hosted API price, input tokens
api_usd_per_million_output: float = 0.60  # hosted API price, output tokens
server_usd_per_hour: float = 0.10  # self-hosting: a small CPU VM is enough for a 270M model
advanced: dict = {}  # the other ScopeConfig inputs by name, e.g. {"labeling_hours": 40} (README, Configuration)

# %%
from pathlib import Path
from kit import settings
from kit.stages import scope

cfg = scope.ScopeConfig(run_dir=run_dir, use_case=use_case, repeated_language=repeated_language,
                        stable_rules=stable_rules, clear_success_test=clear_success_test,
                        facts_change_often=facts_change_often, style_drift_intolerant=style_drift_intolerant,
                        new_hire_learns_from_examples=new_hire_learns_from_examples, labeled_examples=labeled_examples,
                        requests_per_month=requests_per_month, prompt_tokens=prompt_tokens,
                        tuned_prompt_tokens=tuned_prompt_tokens, api_usd_per_million_input=api_usd_per_million_input,
                        api_usd_per_million_output=api_usd_per_million_output, server_usd_per_hour=server_usd_per_hour,
                        **settings.checked(scope.ScopeConfig, advanced))
Path(run_dir).mkdir(parents=True, exist_ok=True)
cfg

# %% [markdown]
# ## The recommendation
#
# Fine-tuning pays when the language repeats, the rules are stable and success is checkable. When facts change often,
# they belong in a retrieval index, not in weights. The reasons below come from your answers.

# %%
result = scope.run(cfg)
print("Recommendation:", result["recommendation"])
for reason in result["reasons"]:
    print(" -", reason)

# %% [markdown]
# ### Try other answers
#
# In JupyterLab, change the answers below: the recommendation and `scope.json` update at once. (Headless runs use
# the parameters cell, and this widget is only displayed.)

# %%
scope.scorecard_widget(cfg)

# %% [markdown]
# ## What it costs
#
# Monthly cost at your volume, and how it grows. A fine-tuned model also needs a shorter prompt (the instructions
# and examples are learned), which saves money even if you keep a hosted API.

# %%
costs = result["costs"]
print(f"hosted API: ${costs['api_usd']:,.2f}/month · same API with the short prompt: ${costs['api_with_short_prompt_usd']:,.2f}"
      f" · self-hosted: ${costs['self_hosted_usd']:,.2f}/month · break-even: {costs['break_even_requests_per_month']:,} requests/month")
fig = scope.cost_plot(cfg, Path(run_dir) / "scope_costs.png")

# %% [markdown]
# ## Files written
#
# `scope.json` and `scope_costs.png` in the run directory. Next: **01_license** checks the base model's license.

# %%
assert (Path(run_dir) / "scope.json").exists(), "scope.json was not written"
print(Path(run_dir).resolve() / "scope.json")
