"""Scope stage: decide whether fine-tuning is the right tool, and what it costs, before any training.

In: answers to a short scorecard and the team's volumes and prices. Out: `scope.json` in the run directory with
the recommendation (fine-tune, retrieval, prompting, or a combination), the reasons, and a monthly cost comparison
of a hosted API against a self-hosted small model, with the break-even volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.errors import KitError
from kit.io import write_json
from kit.rundir import RunDir
from kit.settings import advanced


class ScopeError(KitError):
    """A scope parameter is out of range."""


@dataclass(frozen=True)
class ScopeConfig:
    run_dir: str
    use_case: str
    repeated_language: bool = True  # the same kinds of requests come back again and again
    stable_rules: bool = True  # the routing rules change rarely
    clear_success_test: bool = True  # a right answer can be checked (a label, a JSON field)
    facts_change_often: bool = False  # answers depend on fresh facts: then retrieval, not weights
    style_drift_intolerant: bool = False  # output must keep one house tone / format
    new_hire_learns_from_examples: bool = True  # a trained person could learn the task from examples
    labeled_examples: int = 600
    requests_per_month: int = 20000
    prompt_tokens: int = 600  # per request with a hosted API (instructions + few-shot examples + ticket)
    tuned_prompt_tokens: int = 200  # per request after fine-tuning (the instructions live in the weights)
    completion_tokens: int = field(default=5, metadata=advanced("tokens per answer (a label is a few)"))
    api_usd_per_million_input: float = 0.15
    api_usd_per_million_output: float = 0.60
    server_usd_per_hour: float = 0.10  # a small CPU VM serves a 270M model
    serving_hours_per_month: float = field(default=730,
                                           metadata=advanced("server hours a month (730 = always on)"))
    training_runs_per_year: int = field(default=12, metadata=advanced("retraining runs a year"))
    training_hours_per_run: float = field(default=0.5, metadata=advanced("machine hours per training run"))
    training_usd_per_hour: float = field(default=1.50,
                                         metadata=advanced("training machine price per hour (one rented GPU)"))
    labeling_hours: float = field(default=20, metadata=advanced("hours of labeling to build the training set"))
    labeling_usd_per_hour: float = field(default=40, metadata=advanced("price of an hour of labeling"))

    def __post_init__(self):
        for name in ("labeled_examples", "requests_per_month", "prompt_tokens", "completion_tokens"):
            if getattr(self, name) < 0:
                raise ScopeError(f"{name}={getattr(self, name)} is negative; use a count of zero or more.")


def recommend(cfg: ScopeConfig) -> tuple[str, list[str]]:
    """A recommendation and the reasons for it, from the scorecard answers."""
    reasons, fit = [], 0
    if cfg.repeated_language:
        fit += 1; reasons.append("requests repeat: a small model can learn the patterns")
    if cfg.stable_rules:
        fit += 1; reasons.append("rules are stable: what is learned stays true")
    if cfg.clear_success_test:
        fit += 1; reasons.append("success is checkable: accuracy can be measured on a holdout")
    if cfg.new_hire_learns_from_examples:
        fit += 1; reasons.append("a person could learn it from examples, so a model can too")
    if cfg.style_drift_intolerant:
        fit += 1; reasons.append("output style must not drift: weights hold a format better than a prompt")
    enough = 100 <= cfg.labeled_examples
    if not enough:
        reasons.append(f"only {cfg.labeled_examples} labeled examples: label a few hundred before fine-tuning")
    if cfg.facts_change_often:
        reasons.append("facts change often: keep them in a retrieval index, not in weights")
    if fit >= 3 and enough:
        choice = "fine-tune + retrieval" if cfg.facts_change_often else "fine-tune"
    elif cfg.facts_change_often:
        choice = "retrieval"
    else:
        choice = "prompting"
    return choice, reasons


def costs(cfg: ScopeConfig, requests_per_month: float | None = None) -> dict:
    """Monthly cost in USD of the hosted API vs a self-hosted tuned model at a volume."""
    n = cfg.requests_per_month if requests_per_month is None else requests_per_month
    api = n * (cfg.prompt_tokens * cfg.api_usd_per_million_input
               + cfg.completion_tokens * cfg.api_usd_per_million_output) / 1e6
    api_tuned_prompt = n * (cfg.tuned_prompt_tokens * cfg.api_usd_per_million_input
                            + cfg.completion_tokens * cfg.api_usd_per_million_output) / 1e6
    training = cfg.training_runs_per_year * cfg.training_hours_per_run * cfg.training_usd_per_hour / 12
    labeling = cfg.labeling_hours * cfg.labeling_usd_per_hour / 12  # spread over a year
    self_hosted = cfg.server_usd_per_hour * cfg.serving_hours_per_month + training + labeling
    per_request_api = (cfg.prompt_tokens * cfg.api_usd_per_million_input
                       + cfg.completion_tokens * cfg.api_usd_per_million_output) / 1e6
    break_even = self_hosted / per_request_api if per_request_api else None  # None: the API is free
    return {"requests_per_month": n, "api_usd": round(api, 2), "self_hosted_usd": round(self_hosted, 2),
            "self_hosted_breakdown": {"serving": round(cfg.server_usd_per_hour * cfg.serving_hours_per_month, 2),
                                      "training": round(training, 2), "labeling": round(labeling, 2)},
            "api_with_short_prompt_usd": round(api_tuned_prompt, 2),
            "break_even_requests_per_month": round(break_even) if break_even is not None else None}


def run(cfg: ScopeConfig) -> dict:
    choice, reasons = recommend(cfg)
    result = {"use_case": cfg.use_case, "recommendation": choice, "reasons": reasons, "costs": costs(cfg),
              "parameters": asdict(cfg)}
    write_json(RunDir(cfg.run_dir).scope_json, result)
    return result


def cost_plot(cfg: ScopeConfig, path: str | Path | None = None):
    """Monthly cost against volume for both options, with the break-even marked."""
    import matplotlib.pyplot as plt
    import numpy as np

    c = costs(cfg)
    top = max(cfg.requests_per_month * 3, min((c["break_even_requests_per_month"] or 0) * 2, 1e8), 1000)
    xs = np.linspace(0, top, 100)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, [costs(cfg, x)["api_usd"] for x in xs], label="hosted API")
    ax.plot(xs, [costs(cfg, x)["self_hosted_usd"] for x in xs], label="self-hosted tuned model")
    ax.axvline(cfg.requests_per_month, color="grey", ls=":", label="your volume")
    ax.set_xlabel("requests per month"); ax.set_ylabel("USD per month"); ax.legend(); fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def scorecard_widget(cfg: ScopeConfig):
    """Checkboxes and volume fields for the scorecard; every change re-runs the stage and rewrites scope.json.

    Headless runs (papermill) never touch the widget: the parameters cell decides there.
    """
    import dataclasses

    import ipywidgets as w

    questions = [f.name for f in dataclasses.fields(cfg) if f.type in (bool, "bool")]
    boxes = {q: w.Checkbox(value=getattr(cfg, q), description=q.replace("_", " "), indent=False) for q in questions}
    numbers = {q: w.IntText(value=getattr(cfg, q), description=q.replace("_", " "),
                            style={"description_width": "initial"})
               for q in ("labeled_examples", "requests_per_month")}
    out = w.Output()

    def refresh(_=None):
        new = dataclasses.replace(cfg, **{q: b.value for q, b in boxes.items()},
                                  **{q: n.value for q, n in numbers.items()})
        result = run(new)
        out.clear_output()
        with out:
            c = result["costs"]
            print(f"Recommendation: {result['recommendation']}  (scope.json updated)")
            print(f"API ${c['api_usd']:,.2f}/month vs self-hosted ${c['self_hosted_usd']:,.2f}/month")

    for widget in [*boxes.values(), *numbers.values()]:
        widget.observe(refresh, names="value")
    return w.VBox([*boxes.values(), *numbers.values(), out])
