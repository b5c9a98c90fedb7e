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
# # 04 · Evaluate: is the tuned model better, by how much, how sure are we, and does it leak?
#
# This stage scores every holdout ticket with the tuned adapter and with baselines a skeptical client would ask about,
# reports each with 95% intervals, shows where the errors are and how trustworthy the confidences are, and probes the
# model for memorised secrets and personal data.
#
# **Objective** numbers a skeptical client would accept. **Needs** `data/holdout.jsonl`, `data/train.jsonl` and the
# adapter from 03 (optionally `data/canaries.json` from 02, a GGUF from 05 or a served endpoint, a previous run).
# **Produces** `eval/metrics.json`, `eval/predictions.jsonl`, `eval/probes.json`, `eval/models.png`,
# `eval/confusion.png`, `eval/calibration.png`, `eval/probes.png`, and `eval/reviews.jsonl` when someone reviews.
# **Hardware** CPU, about 5 minutes for the demo's 114 tickets on 2 cores; the privacy probes take most of it (each
# canary is scored against 100 look-alikes in the tuned and the base model, and the control trains a throwaway LoRA).
#
# For **classify**, labels are *scored*, not generated: the model's probability for each lane is read from one forward pass, which is
# the choice greedy decoding would make among the lanes, and gives a confidence for free. The opening every prompt
# shares (the instruction; for the few-shot baseline also its solved examples) runs once for the whole holdout and is
# reused from its key/value cache, so each ticket costs only its own tokens. `bench/eval.py` measures this against
# generating an answer and parsing it: same predictions, about 3x faster on 2 CPU cores. Not more, and the reason is
# worth knowing: a lane name is 2–4 tokens, so generating it costs one prompt pass plus a few cheap decoding steps;
# scoring saves those steps and the shared opening, nothing else. For **extract** and **reply** every model writes
# its answer by greedy decoding (batched, as the served model will with temperature 0), and the answer is parsed and
# compared with the reference; generating takes most of this stage's time for those kinds (about 3 minutes for 140
# short texts on 2 cores, most of it the untuned baselines, which write until the token limit).

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # the base model the adapter was trained on
adapter_name: str = "default"  # adapters/<adapter_name>/
max_examples: int = 0  # evaluate only the first N holdout rows (0: all; past 1,000, or 300 for extract/reply, fewer for long answers, a seeded sample)
max_length: int = 0  # 0: the adapter's own token budget, as in training
batch_size: int = 16  # prompts per forward pass (answers are generated up to 64 at a time while their cache fits 1 GB)
dtype: str = "auto"  # auto (the fastest on this machine, as in 03) | float32 | bfloat16
critical_label: str = ""  # classify: the lane whose misses and false alarms cost most (escalation rates); empty: none
handoff_confidence: float = 0.9  # answers below this confidence go to a person (0–1)
few_shot_k: int = 4  # solved examples in the base model's few-shot prompt (0: skip that baseline; up to 16)
few_shot_example_tokens: int = 48  # each few-shot example is cut to this many tokens
endpoint_url: str = ""  # an OpenAI-compatible /v1 URL serving this model (e.g. llama.cpp server); empty: none
endpoint_gguf_type: str = ""  # or f16 | q8_0 | q4_k_m: serve this run's export/model-<type>.gguf (after 05) on 127.0.0.1
endpoint_top_logprobs: int = 20  # first-token alternatives asked from the endpoint (labels must be among them)
previous_run_dir: str = ""  # a previous run directory (or its eval/metrics.json) to compare with; empty: none
canary_seed: int = 0  # canaries are made from this seed when 02 planted none (data/canaries.json absent)
canary_candidates: int = 100  # random same-format values each canary is ranked against (10–250)
pii_probes: bool = True  # ask the model for names and numbers and scan its answers
probe_control_steps: int = 0  # > 0: train a throwaway LoRA this many steps on a canary to prove the probe fires (~30)
reviewer: str = ""  # your name, to review answers in the panel below (empty: no review; headless runs)
require_gain: bool = True  # stop here if the tuned model does not beat the base model (False: tests on random models)
advanced: dict = {}  # other EvalConfig fields by name: bootstrap_samples, seed (README, Configuration)

# %%
from pathlib import Path
import pandas as pd
from IPython.display import Image, display
from kit import settings
from kit.stages import evaluate
from kit.report import review, tables

cfg = evaluate.EvalConfig(run_dir=run_dir, model=model, adapter_name=adapter_name, max_examples=max_examples,
                          max_length=max_length, batch_size=batch_size, dtype=dtype, critical_label=critical_label,
                          handoff_confidence=handoff_confidence, few_shot_k=few_shot_k,
                          few_shot_example_tokens=few_shot_example_tokens, endpoint_url=endpoint_url,
                          endpoint_gguf_type=endpoint_gguf_type, endpoint_top_logprobs=endpoint_top_logprobs,
                          previous_run_dir=previous_run_dir, canary_seed=canary_seed, canary_candidates=canary_candidates,
                          pii_probes=pii_probes, probe_control_steps=probe_control_steps, reviewer=reviewer,
                          require_gain=require_gain, **settings.checked(evaluate.EvalConfig, advanced))
cfg

# %% [markdown]
# ## The tuned model beside its baselines
#
# Every model answers the same holdout tickets. *base_zero_shot* and *base_few_shot* are the untuned model with the
# instruction alone and with a few solved examples in the prompt. For **classify**, *majority_class* always says the
# most common lane and *tfidf_logreg* is a classic word-count classifier trained on the same `train.jsonl` in a second.
# For **extract** and **reply** the models write their answers (greedy decoding, as Ollama will with temperature 0);
# the base model is also given the JSON Schema, and *retrieval* answers with the answer of the most similar training
# ticket (TF-IDF), which is what a lookup in past tickets would give. Extract answers are scored for valid JSON, field
# accuracy (matching fields among expected and produced ones) and exact match; replies by ROUGE-L and chrF against the
# reference reply. If the tuned model does not clearly beat the cheap baselines, a fine-tune may not be worth running
# in production. Intervals are 95% bootstrap intervals: with about a hundred tickets, a few points are within noise.

# %%
result = evaluate.run(cfg)
kind = result.metrics["task"]
print(f"task: {kind} | computed in {result.metrics['dtype']['dtype']}: {result.metrics['dtype']['reason']}")
tables.models_table(result.metrics)

# %%
Image(result.paths["models"])

# %% [markdown]
# Is the gain real? The paired interval resamples tickets, so both models are judged on the same draw each time; it is
# much narrower than two separate intervals. The score is accuracy (classify), exact match (extract) or ROUGE-L (reply).

# %%
for other in ("base_zero_shot", result.metrics["best_baseline"]):
    d = result.metrics["tuned_vs_base_zero_shot"] if other == "base_zero_shot" else result.metrics["tuned_vs_best_baseline"]
    print(f"tuned − {other}: {d['delta']:+.1%} (95% CI {d['ci95'][0]:+.1%} to {d['ci95'][1]:+.1%}),",
          "significant" if d["significant"] else "not significant")

# %% [markdown]
# **Is the fine-tune worth it?** The same paired interval against the best baseline, in one sentence (the model card
# in 05 carries it). A cheap baseline that scores as well is the simpler thing to run; a fine-tune that loses to it
# needs better data or a different recipe before anything else.

# %%
print(result.metrics["verdict"]["sentence"])

# %% [markdown]
# Where the errors are. Classify: rows are the true lane, columns the predicted one, and below it the most frequent
# errors by name (with many labels the matrix shows each row's shares; the table is what to read). Extract: accuracy
# per field (over the rows that expect it) and how often the model invented it, then a few answers as the field
# update an agent would accept or reject, with the model's confidence (the probability it gave that exact answer).

# %%
if kind == "classify":
    display(Image(result.paths["confusion"]))
    display(tables.confused_pairs(result.metrics, result.metrics["labels"]))
elif kind == "extract":
    display(tables.field_table(result.metrics).head(15))
    print("\n".join(tables.field_updates(result.predictions)))
else:
    for p in [p for p in result.predictions if p["model"] == "tuned"][:3]:
        print(f"{p['id']} (ROUGE-L {p['rouge_l']:.2f})\n  model:     {p['prediction']}\n  reference: {p['label']}")

# %% [markdown]
# ## Can the confidence be trusted?
#
# Left, the reliability diagram: of the tickets answered with about 80% confidence, about 80% should be right (points on
# the diagonal; for extract "right" is an exact match). ECE, the expected calibration error, is the average gap,
# weighted by how many tickets fall in each bin. Right, what happens if tickets below a confidence go to a person: the
# share handled automatically against the accuracy on that share. The star is the rule `handoff_confidence` sets.
# Replies have no single right answer, so they get no confidence here: people review them (below).

# %%
Image(result.paths["calibration"]) if "calibration" in result.paths else print("no calibration for task", kind)

# %%
tuned = result.metrics["models"]["tuned"]
if "handoff" in tuned:
    h = tuned["handoff"]
    auto = "no" if h["accuracy_automated"] is None else f"{h['accuracy_automated']:.1%}"  # None: no ticket that sure
    print(f"confidence ≥ {h['threshold']}: {h['coverage']:.0%} automated at {auto} accuracy,",
          f"{h['handed_to_person']} tickets to a person")
if "escalation" in tuned:
    e = tuned["escalation"]
    print(f"{e['critical_label']}: {e['wrong_escalations']} wrongly escalated of {e['negatives']},",
          f"{e['missed_escalations']} missed of {e['positives']}")
else:
    print("no critical_label set: no escalation rates")

# %% [markdown]
# ## The model as it will be served
#
# With `endpoint_gguf_type` (a GGUF that 05 wrote into this run) or `endpoint_url` (any OpenAI-compatible completions server) the same scoring
# runs over HTTP against llama.cpp, and the table above gains an `endpoint` row. Agreement with the adapter should be
# near 100%; a gap means the exported model does not answer like the one evaluated here.

# %%
result.metrics["endpoint"] or "no endpoint evaluated (set endpoint_gguf_type or endpoint_url)"

# %% [markdown]
# ## Privacy probes
#
# **Canary exposure.** The prepare stage planted fake secrets (a card number, a policy number, a name) into the raw data
# before redaction. Each is ranked by the model's likelihood among random values of the same format, continuing its
# sentence ("Please charge my card …"). Rank 1 of 101 is exposure 6.7 bits; a model that never saw it gives about 1 bit
# on average. The base model is the reference: a canary counts as memorised when the tuned model ranks it first and at
# least 2 bits above the base (a first place by chance is usually the base model's first place too).
# **Control.** With `probe_control_steps`, a throwaway LoRA on the base model trains on text holding a fresh canary, with
# the loss on every token: its exposure must jump to the top while an unseen canary's stays low. The course trains on
# the answer only, so even an unredacted canary in a ticket would not be learned, and that is what the tuned model shows.

# %%
Image(result.paths["probes_plot"])

# %%
tables.probes_table(result.metrics["probes"])

# %% [markdown]
# **PII echo.** Prompts that ask for names, numbers and addresses; what the model writes is scanned by the same redactor as the data (only the redacted text is kept).

# %%
tables.pii_table(result.metrics["probes"])

# %%
p = result.metrics["probes"]
assert p["memorized_canaries"] == 0, f"{p['memorized_canaries']} canary(ies) ranked first: the model may have memorised them"
assert not p["pii_echo"] or p["pii_echo"]["canaries_echoed"] == 0, "a canary value appeared in a generation"
assert "control" not in p or p["control"]["detected"], "the control did not memorise its canary: the probe proves nothing"
print(f"no canary memorised (highest exposure {p['max_exposure_tuned']:.1f} of {p['canaries'][0]['max_exposure']:.1f} bits);",
      "control detected" if "control" in p else "control not run (probe_control_steps=0)")

# %% [markdown]
# ## Compared with the previous run
#
# With `previous_run_dir`, each model's accuracy change against that run, paired on tickets when its predictions are there.

# %%
pd.DataFrame(result.metrics["regression"]["models"]).T if result.metrics["regression"] else "no previous run given (previous_run_dir)"

# %% [markdown]
# ## Human review
#
# Set `reviewer` to your name and judge the tuned model's answers, errors first: pass, needs edit (usable after a person edits it, the usual verdict on a drafted reply) or fail, and one line of reason.
# Each Save goes to `eval/reviews.jsonl`. Two reviewers (in one run, or each in a copy) are compared with Cohen's kappa:
# `review.answer_kappa_files(path_a, path_b)`. Headless runs record that no review happened.

# %%
review.answer_panel(run_dir, reviewer) if reviewer else print(result.metrics["review"]["note"])

# %% [markdown]
# The tuned model must beat the base model; if it does not, look at the loss curve in 03 before anything else.

# %%
gain = result.metrics["tuned_minus_base_accuracy"]
assert gain > 0 or not cfg.require_gain, f"the tuned adapter is not better than the base model (difference {gain:+.1%})"
print(f"tuned − base zero-shot ({ {'extract': 'exact match', 'reply': 'ROUGE-L'}.get(kind, 'accuracy') }): {gain:+.1%}")

# %% [markdown]
# ## Files written
#
# `eval/` in the run directory. Next: **05_export** builds the GGUF and checks it against these predictions.

# %%
for p in sorted((Path(run_dir) / "eval").iterdir()):
    print(p)
