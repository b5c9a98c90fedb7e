"""Writes notebooks/*.ipynb from the cell lists below (outputs empty). Edit here, run, commit both.

Keeping the notebooks' source in one Python file makes reviews readable (diffs of code, not JSON) and lets a test
check that the committed notebooks equal what this script writes.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def md(text):
    return new_markdown_cell(text.strip())


def code(text, tags=()):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text):
    return code(text, tags=["parameters"])


NOTEBOOKS = {}

NOTEBOOKS["00_scope"] = [
    md("""
# 00 · Scope: should we fine-tune at all?

This stage writes `scope.json`: a recommendation (fine-tune, retrieval, prompting, or a mix) with its reasons, and
a monthly cost comparison of a hosted API against a small self-hosted model.

**Objective** decide before spending a day on data and training. **Needs** answers about your task and your
volumes (the parameters below). **Produces** `scope.json`, `scope_costs.png` in the run directory.
**Hardware** none: this notebook does arithmetic only.
"""),
    params("""
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
"""),
    code("""
from pathlib import Path
from kit import scope, settings

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
"""),
    md("""
## The recommendation

Fine-tuning pays when the language repeats, the rules are stable and success is checkable. When facts change often,
they belong in a retrieval index, not in weights. The reasons below come from your answers.
"""),
    code("""
result = scope.run(cfg)
print("Recommendation:", result["recommendation"])
for reason in result["reasons"]:
    print(" -", reason)
"""),
    md("""
### Try other answers

In JupyterLab, change the answers below: the recommendation and `scope.json` update at once. (Headless runs use
the parameters cell, and this widget is only displayed.)
"""),
    code("""
scope.scorecard_widget(cfg)
"""),
    md("""
## What it costs

Monthly cost at your volume, and how it grows. A fine-tuned model also needs a shorter prompt (the instructions
and examples are learned), which saves money even if you keep a hosted API.
"""),
    code("""
costs = result["costs"]
print(f"hosted API: ${costs['api_usd']:,.2f}/month · same API with the short prompt: ${costs['api_with_short_prompt_usd']:,.2f}"
      f" · self-hosted: ${costs['self_hosted_usd']:,.2f}/month · break-even: {costs['break_even_requests_per_month']:,} requests/month")
fig = scope.cost_plot(cfg, Path(run_dir) / "scope_costs.png")
"""),
    md("## Files written\n\n`scope.json` and `scope_costs.png` in the run directory. Next: **01_license** checks the base model's license."),
    code("""
assert (Path(run_dir) / "scope.json").exists(), "scope.json was not written"
print(Path(run_dir).resolve() / "scope.json")
"""),
]

NOTEBOOKS["01_license"] = [
    md("""
# 01 · License: may we use this base model for this purpose?

This stage writes a license note for the base model: its license, what it allows, the intended use, and who
approved it. Training (03) refuses to start without an approved note for the same weights.

**Objective** keep the paper trail that legal review asks for, before any training. **Needs** a model spec and your
intended use. **Produces** `license_note.json` and `license_note.md`. **Hardware** CPU; the first run converts the
embedded Gemma 3 270M to a cached checkpoint (about a minute, once).

**Your model, from where you have it.** `model` takes the embedded model, a checkpoint directory, a Hugging Face id
in your local cache, a `.gguf` file, or `ollama:<name>[:tag]` for a model already pulled into Ollama (kit finds its
GGUF through Ollama's manifest). Gemma 2/3, Llama 3.x, Qwen 2.5/3, SmolLM2/3, Mistral and Phi-3 work; the model's own
chat template decides every prompt, and the family printed below adds what the template cannot say. Another family
changes more than the license: a bigger model trains slower (on 2 CPU cores a LoRA step of the demo's size takes
about 0.6 s for the embedded 270M model, an estimated 2 s for 0.5B, 8 s for 1.5B and 40 s for 7B), its export is
larger (choose `q4_k_m` in 05 for 7B-class models, `q8_0` below 1B), and its license has other conditions (read them
below). The note records where the weights came from and their sha256.
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # embedded:gemma3-270m, a checkpoint directory, a Hugging Face id, a .gguf file, or ollama:<name>[:tag]
intended_uses: list = ["commercial_use", "customer_facing_output"]  # any of the six license questions
approved: bool = False  # set True only after the approver has read the note
approver: str = ""  # name of the person who approved
license_id: str = ""  # registry entry to use; empty: look it up from the model id
revision: str = ""  # model revision (hub commit, package version); empty: detected where possible
date_obtained: str = ""  # when you obtained the weights, YYYY-MM-DD; empty: today
license_name: str = ""  # only for a model outside the registry: the license's name
license_url: str = ""  # only for a model outside the registry: where the license text is
answers: dict = {}  # only for a model outside the registry: yes/no/conditional for each of the six questions
"""),
    code("""
from pathlib import Path
from IPython.display import Markdown
from kit import licenses, models

cfg = licenses.LicenseConfig(run_dir=run_dir, model=model, intended_uses=tuple(intended_uses), approved=approved,
                             approver=approver, license_id=license_id, revision=revision, date_obtained=date_obtained,
                             license_name=license_name, license_url=license_url, answers=answers)
resolved = models.resolve(cfg.model)
family = resolved.chat_format.family
print(f"weights: {resolved.source}")
print(f"family: {family.name} ({family.title}); stop strings {list(family.stop)}")
print(family.notes)
"""),
    md("""
## The note

The answers come from `kit/registry/licenses.yaml`, each condition with its source. Read the conditions: Gemma's
terms, for example, travel with the weights when you redistribute a fine-tuned model.
"""),
    code("""
note = licenses.run(cfg, resolved)
Markdown((Path(run_dir) / "license_note.md").read_text())
"""),
    md("""
## Approve

The approver reads the note above, then ticks the box and writes the note again (in JupyterLab). Headless runs take
`approved` and `approver` from the parameters.
"""),
    code("""
licenses.approval_widget(cfg, resolved)
"""),
    md("## Gate check\n\nThe same check the training stage runs. An unapproved note shows the reason here."),
    code("""
ok, reason = licenses.gate_status(run_dir, resolved.sha256)
print("Training may start." if ok else f"Training will refuse to start: {reason}")
"""),
    md("## Files written\n\n`license_note.json`, `license_note.md`. Next: **02_prepare** turns raw tickets into redacted training data."),
    code("""
print(note["license"], "| approved:", note["approved"], "| conflicts:", note["conflicts"] or "none")
"""),
]

NOTEBOOKS["02_prepare"] = [
    md("""
# 02 · Prepare: redacted, checked training data with nothing lost

This stage decides what a model may learn from, and proves it row by row: raw tickets become `data/train.jsonl` and
`data/holdout.jsonl` with personal data and secrets replaced by typed placeholders, and every row it cannot use goes
to `data/quarantine.jsonl` with the reason.

**Objective** data a model may learn from without learning a customer's secrets. **Needs** a CSV, JSONL or Parquet
file with a text and a label column, and a purpose. **Produces** `data/train.jsonl`, `data/holdout.jsonl`,
`data/quarantine.jsonl`, `data/duplicates.jsonl`, `data/canaries.json`, `data/task.json`, `data/audit.json`,
`data/provenance.json`, `data/review_status.json` (and `data/reviews.jsonl` when someone reviews).
**Hardware** CPU, seconds (about 8 s for the 600 sample tickets on one core).
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # where this run's files live
input_path: str = "../data_samples/tickets.csv"  # CSV (, ; tab or | delimited), JSONL, JSON array or Parquet of raw tickets
encoding: str = "utf-8"  # of a CSV/JSON file: utf-8 (a BOM is fine), or e.g. cp1252 for older Excel exports
purpose: str = "Route incoming support email to the right team"  # why this data is used; kept in provenance.json
task: str = "classify"  # classify (text → one label) | extract (text → JSON object) | reply (text → free text)
input_format: str = "auto"  # auto | columns | messages | prompt_completion | alpaca (chat and TRL files are detected)
text_columns: list = ["subject", "body"]  # free-text columns joined into the training text; the last is the main one
label_column: str = "label"  # column holding the answer: the lane (classify), a JSON object (extract), the reply
id_column: str = "ticket_id"  # column holding a row id (kept, so reviews and audits can name rows); empty: source:line
tenant_column: str = "tenant_id"  # column naming the customer organisation (empty if none)
consent_column: str = "training_consent"  # yes/no per row: may it be trained on? (empty: every row may)
timestamp_column: str = "received_at"  # ISO 8601 timestamps, checked and summarised (empty to skip)
known_value_columns: dict = {"customer_name": "PERSON", "customer_email": "EMAIL", "policy_number": "POLICY_NUMBER"}  # structured columns whose values are scrubbed from the text wherever they appear
field_allowlist: list = []  # extra columns to keep in train/holdout (redacted); all other columns are dropped
labels: list = []  # classify: the lanes; other labels are quarantined (empty: every label with 2+ rows in the file)
schema: dict = {}  # extract: a JSON Schema the answers must fit, or the path of a .json file holding one (empty: inferred and shown below)
instruction: str = ""  # what every prompt asks the model, in your words; {labels} / {keys} are filled in (empty: a generic one)
holdout_path: str = ""  # a golden holdout file with the same columns (empty: split holdout_fraction off the input)
holdout_fraction: float = 0.2  # share of rows kept aside for evaluation (0.05–0.5), when no holdout_path
max_rows: int = 0  # use only the first N rows (0: all); smoke runs use a few hundred
max_chars: int = 4000  # longer tickets are quarantined (too_long)
retention_days: int = 90  # the prepared snapshot expires after this many days (recorded in provenance.json)
id_patterns: dict = {}  # business identifiers as ENTITY: regex (empty: policy, claim, account, invoice numbers)
canaries_per_kind: int = 2  # fake card/policy/person canaries planted before redaction (0: none)
near_duplicate_threshold: float = 0.85  # texts at least this similar (MinHash Jaccard) count as one (0.5–1.0)
reviewer: str = ""  # your name to show the spot-check panel (empty: headless, recorded as no review)
review_fraction: float = 0.05  # share of prepared rows in the spot-check sample
seed: int = 0  # split, canary and review-sample seed
"""),
    code("""
import json
from pathlib import Path
import pandas as pd
from kit import data, review

cfg = data.PrepareConfig(
    run_dir=run_dir, input_path=input_path, encoding=encoding, purpose=purpose, task=task, input_format=input_format, text_columns=text_columns,
    label_column=label_column, id_column=id_column, tenant_column=tenant_column, consent_column=consent_column,
    timestamp_column=timestamp_column, known_value_columns=known_value_columns, field_allowlist=field_allowlist,
    labels=labels, schema=schema, instruction=instruction, holdout_path=holdout_path, holdout_fraction=holdout_fraction, max_rows=max_rows, max_chars=max_chars, retention_days=retention_days,
    id_patterns=id_patterns, canaries_per_kind=canaries_per_kind, near_duplicate_threshold=near_duplicate_threshold,
    reviewer=reviewer, review_fraction=review_fraction, seed=seed)
cfg
"""),
    md("""
## Validate, filter, redact, deduplicate, split

One call does the whole stage, in this order:

1. **Read and validate** every record: broken CSV quoting, invalid JSON lines, bytes that are not UTF-8, empty text,
   unknown labels, over-long text and bad timestamps go to quarantine with a reason code.
2. **Govern**: rows whose tenant gave no training consent are quarantined (`no_consent`); only the id, the text
   columns, the label and the allowlisted fields travel on (minimization).
3. **Redact**: names, street addresses, emails, phone numbers, card numbers (Luhn), IBANs (checksum), US SSNs, IP
   addresses, dates of birth, secrets and API keys, and business identifiers become placeholders such as
   `<PERSON_1>`; the customer's own name, email and policy number from the structured columns are scrubbed
   wherever they appear.
4. **Deduplicate**: exact (normalized) and near duplicates (MinHash) are removed before the split, so no holdout
   text is also in training; a golden `holdout_path` wins over training copies of its rows.
5. **Plant canaries** into a few rows' raw text before they are redacted again, **split** (stratified, seeded),
   write the files and run the **independent audit**.

Where each row read went:
"""),
    code("""
result = data.run(cfg)
pd.DataFrame(result.accounting_table()).set_index("source")
"""),
    md("Every row read ends in exactly one place. If this check fails, nothing downstream should run."),
    code("""
c = result.counts
assert result.invariant_holds(), f"rows lost: {c}"
print(f"{c['read']} read = {c['train']} train + {c['holdout']} holdout + {c['quarantined']} quarantined "
      f"+ {c['duplicates']} duplicates removed ({c['near_duplicates']} near)")
"""),
    md("Why rows were quarantined (reason codes; `data/quarantine.jsonl` has the source line of each):"),
    code("""
pd.Series(result.quarantine_reasons, name="rows", dtype=int).sort_values(ascending=False)
"""),
    md("What the redactor replaced, by type. Names, places, addresses, organisations and typed-in id numbers come "
       "from kit's entity recogniser (a small spaCy model shipped with kit; `bench/redaction.py` measures what it "
       "misses on text kit did not write), beside known values, cues, a census name list and the pattern detectors."),
    code("""
print(result.provenance["redaction_ner"])
pd.Series(result.redactions, name="placeholders").sort_values(ascending=False)
"""),
    md("""
The task every later stage reads from `data/task.json`: its kind, the labels (taken from the data when `labels` was
empty) or the JSON Schema of the answers (inferred when `schema` was empty), and the instruction every prompt starts
with. What the model will see: three redacted training rows with their answers. The answer is training text too: it
was redacted with its ticket, so a name replaced in the text has the same placeholder in the answer.
"""),
    code("""
t = result.task
print(f"task: {t['kind']} | instruction: {t['system']}")
print("labels:", t["labels"]) if t["kind"] == "classify" else print("schema:", json.dumps(t["schema"])[:600] if t["schema"] else "-")
for row in [json.loads(line) for line in open(result.paths["train"])][:3]:
    print(f"\\n{row['text']}\\n→ {row.get('label', row.get('answer'))}")
"""),
    md("""
## Canaries and the privacy audit

Canaries are unique fake values (a Luhn-valid card number, a policy number, a name) planted into the raw text
before redaction. If any of them, any raw value from the structured columns, or anything shaped like PII or a secret
survives into the written files, the audit fails and this notebook stops with the rows and fields named. The audit
is a separate code path from the redactor (`kit.audit`), with broader checks and evidence of its own: the redactor
finds names and places with a learned recogniser, the audit with ~38,000 given names and surnames from 100+ locales
(Faker's lists), street words of 20 languages and national postcode shapes, so a name the recogniser missed can
still stop this notebook. Training (03) refuses to
start unless the audit passed for exactly these files (their sha256 are recorded). Stage 04 probes the tuned model
with the canaries recorded in `data/canaries.json`.
"""),
    code("""
pd.DataFrame(result.canaries)[["kind", "value", "row_id", "file"]]
"""),
    code("""
audit = data.check_audit(run_dir)
print("audit passed:", audit["passed"], "| findings:", audit["hits"], "| canaries found:", audit["canaries_found"],
      "| holdout texts also in train:", audit["holdout_leaks"])
print("rows scanned:", audit["rows_scanned"], "| known values checked:", audit["known_values_checked"])
print(audit["ner_model"])
"""),
    md("""
## Governance record

`data/provenance.json` keeps the purpose, the source files' sha256, the versions and parameters, what was dropped
and why, and the date the prepared snapshot expires. Delete the run's `data/` by then, or prepare again.
"""),
    code("""
p = result.provenance
print("purpose:", p["purpose"], "| expires on:", p["expires_on"])
print("fields dropped before writing:", ", ".join(p["fields_dropped"]))
print("excluded for lack of consent:", p["consent"]["rows_excluded_by_tenant"] or "none")
"""),
    md("""
## Human spot-check

Set `reviewer` to your name to judge a seeded sample (`review_fraction`, 5% by default) of the redacted rows:
**accept**, **relabel** (pick the right lane) or **flag PII** (something the redactor missed), each with a one-line
reason. Judgements go to `data/reviews.jsonl` as you click. Headless runs leave `reviewer` empty and record that no
review happened. Two reviewers who judged the same sample (same `seed`) can compare with
`review.kappa("a/data/reviews.jsonl", "b/data/reviews.jsonl")` (Cohen's kappa).
"""),
    code("""
sample = review.sample(run_dir, review_fraction, seed)
status = review.record_status(run_dir, reviewer, len(sample))
review.panel(run_dir, reviewer, sample, result.task["labels"]) if reviewer else print(status["note"])
"""),
    md("## Files written\n\n`data/` in the run directory. Next: **03_train** reads `data/train.jsonl`, `data/task.json` and checks `data/audit.json`."),
    code("""
for p in sorted((Path(run_dir) / "data").iterdir()):
    print(p)
"""),
]

NOTEBOOKS["03_train"] = [
    md("""
# 03 · Train: a LoRA adapter that learns the task

This stage trains a small LoRA adapter on `data/train.jsonl`, with the loss on the answer only, and saves it under
`adapters/<adapter_name>/`.

**Objective** teach the base model the task in minutes on a laptop CPU. **Needs** an approved license note (01) and a
passing privacy audit (02). **Produces** `adapters/<adapter_name>/`, `train/log.json`, `train/loss.png`.
**Hardware** CPU (the demo trains in a few minutes on 2 cores) or one CUDA GPU.

**How much to train is measured, not guessed.** 15% of `train.jsonl` (stratified by label, at most 100 rows; 32–40
for extract and reply, which are generated) is held out as a validation set; the holdout stays 04's test set and is
never read here. At every evaluation the adapter is scored on it with the task's own metric (accuracy, field
accuracy, ROUGE-L) beside the loss, the best evaluation's weights are kept, and training stops once validation has
not improved for `early_stopping_patience` evaluations. The saved adapter is the best one, not the last.

**`recipe="auto"`** chooses what you leave unset (`lora_layers=-1`, `epochs=0`, `learning_rate=0`) from the
number of rows and the machine, and fits the run into `max_train_minutes`: the first steps are timed, and if the
planned epochs would overrun, the run is shortened and its learning-rate schedule rebuilt for the steps that fit.
What it chose and why is printed below and kept in `train/log.json`. Any value you set is used as given.
`bench/recipe.py` measures the recipe against the cheap baselines on real data sets.

**CPU vs GPU.** On a GPU the standard recipe is QLoRA: the frozen base in 4-bit nf4, the adapter in bf16. On a CPU that
is the slow choice: the 4-bit weights are unpacked for every matrix multiply, which costs more than the multiply
(measured on Gemma 3 270M: about 4x slower than LoRA on an unquantized base). So `quantization="auto"` picks nf4 on
CUDA and no quantization on CPU; set `quantization="nf4"` to try QLoRA on a CPU anyway.

**The machine decides the dtype.** `dtype="auto"` computes in what this CPU does fastest. CPUs with bf16 units (Intel
AMX servers, AVX-512 BF16 such as AMD EPYC Zen 4) run bf16 matmuls several times faster than float32; CPUs
without them (most laptops, AVX2) run bf16 emulated, dozens of times slower. So auto takes float32 where the CPU has
no bf16 instructions, and otherwise times one matmul in both dtypes and keeps the faster. The LoRA weights stay
float32 either way. The choice and its reason are printed below and recorded in `train/log.json`; evaluation (04)
applies the same rule. `make bench` measures both dtypes on your machine.

**Where the time goes on CPU.** Three things decide it, and kit's recipe handles each:

- *The output head.* Gemma's head has 262k rows: one position through it costs about as much as one token through
  all 18 layers. The loss is taken on the answer only, so kit sends just the answer tokens (about 5 per ticket)
  through the head, never the prompt positions.
- *The shared prefix.* Every prompt starts with the same instruction (40 of the ~100 tokens of a demo ticket).
  kit computes it once per batch and reuses it for every row: the same loss and gradients, a third fewer tokens.
- *The backward pass.* Every token runs forward through all layers; backward runs only from the top down to the
  lowest layer with LoRA weights, so `lora_layers=6` (the top third) trains about 1.5x faster than all 18. The auto
  recipe still adapts every layer: on real bank-chat intents that scored as well as or better than fewer layers
  (README, "How much to train"); set `lora_layers` when time matters more than the last point of accuracy.

`bench/train.py` compares this recipe with the one most tutorials copy (nf4 QLoRA on q/v, padded batches) and with
TRL's defaults, on the same tickets, and prints tokens/s and holdout loss side by side.

**Another model family.** The prompt comes from the model's own chat template, and the loss covers exactly the
tokens after its generation prompt (kit refuses a template for which that is not well defined). LoRA adapts the
family's attention and MLP projections (`target_modules="family"`; Phi-3 has fused ones). Time grows with the
parameters outside the embedding: the embedded model has about 100M, a 0.5B model about 360M, 1.5B about 1.3B, 7B
about 6.5B, so expect roughly 4x, 13x and 65x the embedded model's step time on the same CPU; keep
`max_train_minutes` and use a GPU (nf4 QLoRA) for 7B.
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # same spec as in 01_license
adapter_name: str = "default"  # adapters/<adapter_name>/; one adapter per task or tenant
quantization: str = "auto"  # auto (nf4 on CUDA, none on CPU) | nf4 | none
dtype: str = "auto"  # auto (the fastest on this machine: bf16 on AMX / AVX-512 BF16, float32 on AVX2) | float32 | bfloat16
lora_r: int = 16  # adapter rank: 8–64
lora_alpha: int = 32  # scaling; usually 2 x lora_r
lora_dropout: float = 0.0  # 0–0.1
target_modules: str = "family"  # the model family's projections (kit/families.py), all-linear, or e.g. "q_proj,v_proj"
recipe: str = "auto"  # auto: chooses what you leave unset (-1 / 0) from data size and machine | default
lora_layers: int = -1  # LoRA on the last N layers only (faster backward); 0: all; -1: by recipe
learning_rate: float = 0.0  # 0: by recipe; 1e-4 – 2e-3 for LoRA
epochs: float = 0.0  # passes over the training rows; 0: by recipe (ignored when max_steps > 0)
max_steps: int = 0  # > 0: stop after this many optimizer steps
batch_size: int = 8  # examples per step
grad_accum: int = 1  # steps to accumulate before an update
max_length: int = 192  # tokens of prompt + answer; long tickets lose their end
seed: int = 0  # training seed (and which rows are held out for validation)
validation_fraction: float = 0.15  # of train.jsonl held out to choose the checkpoint; 0: none
early_stopping_patience: int = 2  # stop after this many validations without a gain; 0: never early
validate_every_steps: int = 0  # 0: once per epoch (twice for runs of 2 epochs or less)
max_train_minutes: float = 10.0  # time budget; auto epochs are planned to fit it; 0: none
checkpoint_every_steps: int = 25  # a checkpoint to resume from after a crash
resume: bool = False  # continue from the last checkpoint in train/checkpoints
usd_per_hour: float = 0.0  # machine price, for the cost estimate in train/log.json
advanced: dict = {}  # other TrainConfig fields by name: threads, lr_scheduler, warmup_ratio (README, Configuration)
"""),
    code("""
from pathlib import Path
from IPython.display import Image
from kit import settings, train

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
"""),
    md("""
## Train

The license note and the privacy audit are checked first; either one missing or failed stops here with the reason.
Then the run is planned: one training step is timed on this machine, the untrained adapter is scored on the
validation rows, and the epochs are fitted to `max_train_minutes`. The plan is printed before the progress bar; the
validation score is measured once per epoch (twice for short runs).
"""),
    code("""
result = train.run(cfg)
{k: v for k, v in result.log.items() if k not in ("history", "recipe")}
"""),
    md("""
**What the recipe chose, and why.** Every parameter you left unset, with its reason; then how the run ended (planned
steps done, early stopping, or the time budget) and which checkpoint was kept. The saved adapter is the one with the
best validation score, not necessarily the last.
"""),
    code("""
print(train.describe_plan(result.log["recipe"]))
"""),
    md("Which dtype the weights were in, and why this machine got it:"),
    code("""
print(f"{result.log['dtype']} on {result.log['cpu'] or result.log['device']}: {result.log['dtype_choice']['reason']}")
"""),
    md("""
Left: the answer-only loss on training batches and on the validation rows (log scale); it should fall from several
nats to well under one, and a flat curve means the learning rate is too low. Right: the validation score at every
evaluation, with the kept checkpoint starred. A validation loss that rises while the training loss falls is
overfitting: that is what early stopping and the kept checkpoint guard against.
"""),
    code("""
Image(str(Path(run_dir) / "train" / "loss.png"))
"""),
    md("""
## Files written

The adapter and its metadata (`kit_adapter.json`: base model and its sha256, chat format, labels, data sha256,
parameters, the recipe, the validation rows' ids and the kept validation score). Next: **04_evaluate** measures it on
the holdout, which training never saw.

**One adapter per task or tenant.** Adapters are small (a few MB) and live side by side under `adapters/`; the base
model is never changed. Train one per customer by giving each its own `adapter_name` (and its own data). When a
customer asks for erasure, delete their adapter: nothing of their data remains in the base or in other adapters.
A merged export (05) bakes one adapter into a model file, so erasure then means deleting that file too.

**Longer runs.** `python -m kit train --run-dir <run> --set resume=true` continues a killed run from its last
checkpoint; `accelerate launch -m kit train …` trains on several GPUs (see the README).
"""),
    code("""
assert (Path(result.adapter_dir) / "adapter_config.json").exists(), "the adapter was not saved"
for p in sorted(Path(result.adapter_dir).iterdir()):
    print(p)
"""),
]

NOTEBOOKS["04_evaluate"] = [
    md("""
# 04 · Evaluate: is the tuned model better, by how much, how sure are we, and does it leak?

This stage scores every holdout ticket with the tuned adapter and with baselines a skeptical client would ask about,
reports each with 95% intervals, shows where the errors are and how trustworthy the confidences are, and probes the
model for memorised secrets and personal data.

**Objective** numbers a skeptical client would accept. **Needs** `data/holdout.jsonl`, `data/train.jsonl` and the
adapter from 03 (optionally `data/canaries.json` from 02, a GGUF from 05 or a served endpoint, a previous run).
**Produces** `eval/metrics.json`, `eval/predictions.jsonl`, `eval/probes.json`, `eval/models.png`,
`eval/confusion.png`, `eval/calibration.png`, `eval/probes.png`, and `eval/reviews.jsonl` when someone reviews.
**Hardware** CPU, about 5 minutes for the demo's 114 tickets on 2 cores; the privacy probes take most of it (each
canary is scored against 100 look-alikes in the tuned and the base model, and the control trains a throwaway LoRA).

For **classify**, labels are *scored*, not generated: the model's probability for each lane is read from one forward pass, which is
the choice greedy decoding would make among the lanes, and gives a confidence for free. The opening every prompt
shares (the instruction; for the few-shot baseline also its solved examples) runs once for the whole holdout and is
reused from its key/value cache, so each ticket costs only its own tokens. `bench/eval.py` measures this against
generating an answer and parsing it: same predictions, about 3x faster on 2 CPU cores. Not more, and the reason is
worth knowing: a lane name is 2–4 tokens, so generating it costs one prompt pass plus a few cheap decoding steps;
scoring saves those steps and the shared opening, nothing else. For **extract** and **reply** every model writes
its answer by greedy decoding (batched, as the served model will with temperature 0), and the answer is parsed and
compared with the reference; generating takes most of this stage's time for those kinds (about 3 minutes for 140
short texts on 2 cores, most of it the untuned baselines, which write until the token limit).
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # the base model the adapter was trained on
adapter_name: str = "default"  # adapters/<adapter_name>/
max_examples: int = 0  # evaluate only the first N holdout rows (0: all)
max_length: int = 192  # same token budget as training
batch_size: int = 16  # prompts per forward pass
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
"""),
    code("""
from pathlib import Path
import pandas as pd
from IPython.display import Image
from kit import evaluate, review, settings

cfg = evaluate.EvalConfig(run_dir=run_dir, model=model, adapter_name=adapter_name, max_examples=max_examples,
                          max_length=max_length, batch_size=batch_size, dtype=dtype, critical_label=critical_label,
                          handoff_confidence=handoff_confidence, few_shot_k=few_shot_k,
                          few_shot_example_tokens=few_shot_example_tokens, endpoint_url=endpoint_url,
                          endpoint_gguf_type=endpoint_gguf_type, endpoint_top_logprobs=endpoint_top_logprobs,
                          previous_run_dir=previous_run_dir, canary_seed=canary_seed, canary_candidates=canary_candidates,
                          pii_probes=pii_probes, probe_control_steps=probe_control_steps, reviewer=reviewer,
                          require_gain=require_gain, **settings.checked(evaluate.EvalConfig, advanced))
cfg
"""),
    md("""
## The tuned model beside its baselines

Every model answers the same holdout tickets. *base_zero_shot* and *base_few_shot* are the untuned model with the
instruction alone and with a few solved examples in the prompt. For **classify**, *majority_class* always says the
most common lane and *tfidf_logreg* is a classic word-count classifier trained on the same `train.jsonl` in a second.
For **extract** and **reply** the models write their answers (greedy decoding, as Ollama will with temperature 0);
the base model is also given the JSON Schema, and *retrieval* answers with the answer of the most similar training
ticket (TF-IDF), which is what a lookup in past tickets would give. Extract answers are scored for valid JSON, field
accuracy (matching fields among expected and produced ones) and exact match; replies by ROUGE-L and chrF against the
reference reply. If the tuned model does not clearly beat the cheap baselines, a fine-tune may not be worth running
in production. Intervals are 95% bootstrap intervals: with about a hundred tickets, a few points are within noise.
"""),
    code("""
result = evaluate.run(cfg)
kind = result.metrics["task"]
print(f"task: {kind} | computed in {result.metrics['dtype']['dtype']}: {result.metrics['dtype']['reason']}")
evaluate.models_table(result.metrics)
"""),
    code("""
Image(result.paths["models"])
"""),
    md("""
Is the gain real? The paired interval resamples tickets, so both models are judged on the same draw each time; it is
much narrower than two separate intervals. The score is accuracy (classify), exact match (extract) or ROUGE-L (reply).
"""),
    code("""
for other in ("base_zero_shot", result.metrics["best_baseline"]):
    d = result.metrics["tuned_vs_base_zero_shot"] if other == "base_zero_shot" else result.metrics["tuned_vs_best_baseline"]
    print(f"tuned − {other}: {d['delta']:+.1%} (95% CI {d['ci95'][0]:+.1%} to {d['ci95'][1]:+.1%}),",
          "significant" if d["significant"] else "not significant")
"""),
    md("""
**Is the fine-tune worth it?** The same paired interval against the best baseline, in one sentence (the model card
in 05 carries it). A cheap baseline that scores as well is the simpler thing to run; a fine-tune that loses to it
needs better data or a different recipe before anything else.
"""),
    code("""
print(result.metrics["verdict"]["sentence"])
"""),
    md("""
Where the errors are. Classify: rows are the true lane, columns the predicted one. Extract: accuracy per field
(over the rows that expect it) and how often the model invented it, then a few answers as the field update an agent
would accept or reject, with the model's confidence (the probability it gave that exact answer).
"""),
    code("""
if kind == "classify":
    display(Image(result.paths["confusion"]))
elif kind == "extract":
    display(evaluate.field_table(result.metrics).head(15))
    print("\\n".join(evaluate.field_updates(result.predictions)))
else:
    for p in [p for p in result.predictions if p["model"] == "tuned"][:3]:
        print(f"{p['id']} (ROUGE-L {p['rouge_l']:.2f})\\n  model:     {p['prediction']}\\n  reference: {p['label']}")
"""),
    md("""
## Can the confidence be trusted?

Left, the reliability diagram: of the tickets answered with about 80% confidence, about 80% should be right (points on
the diagonal; for extract "right" is an exact match). ECE, the expected calibration error, is the average gap,
weighted by how many tickets fall in each bin. Right, what happens if tickets below a confidence go to a person: the
share handled automatically against the accuracy on that share. The star is the rule `handoff_confidence` sets.
Replies have no single right answer, so they get no confidence here: people review them (below).
"""),
    code("""
Image(result.paths["calibration"]) if "calibration" in result.paths else print("no calibration for task", kind)
"""),
    code("""
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
"""),
    md("""
## The model as it will be served

With `endpoint_gguf_type` (a GGUF that 05 wrote into this run) or `endpoint_url` (any OpenAI-compatible completions server) the same scoring
runs over HTTP against llama.cpp, and the table above gains an `endpoint` row. Agreement with the adapter should be
near 100%; a gap means the exported model does not answer like the one evaluated here.
"""),
    code("""
result.metrics["endpoint"] or "no endpoint evaluated (set endpoint_gguf_type or endpoint_url)"
"""),
    md("""
## Privacy probes

**Canary exposure.** The prepare stage planted fake secrets (a card number, a policy number, a name) into the raw data
before redaction. Each is ranked by the model's likelihood among random values of the same format, continuing its
sentence ("Please charge my card …"). Rank 1 of 101 is exposure 6.7 bits; a model that never saw it gives about 1 bit
on average. The base model is the reference: a canary counts as memorised when the tuned model ranks it first and at
least 2 bits above the base (a first place by chance is usually the base model's first place too).
**Control.** With `probe_control_steps`, a throwaway LoRA on the base model trains on text holding a fresh canary, with
the loss on every token: its exposure must jump to the top while an unseen canary's stays low. The course trains on
the answer only, so even an unredacted canary in a ticket would not be learned, and that is what the tuned model shows.
"""),
    code("""
Image(result.paths["probes_plot"])
"""),
    code("""
evaluate.probes_table(result.metrics["probes"])
"""),
    md("**PII echo.** Prompts that ask for names, numbers and addresses; what the model writes is scanned by the same redactor as the data (only the redacted text is kept)."),
    code("""
evaluate.pii_table(result.metrics["probes"])
"""),
    code("""
p = result.metrics["probes"]
assert p["memorized_canaries"] == 0, f"{p['memorized_canaries']} canary(ies) ranked first: the model may have memorised them"
assert not p["pii_echo"] or p["pii_echo"]["canaries_echoed"] == 0, "a canary value appeared in a generation"
assert "control" not in p or p["control"]["detected"], "the control did not memorise its canary: the probe proves nothing"
print(f"no canary memorised (highest exposure {p['max_exposure_tuned']:.1f} of {p['canaries'][0]['max_exposure']:.1f} bits);",
      "control detected" if "control" in p else "control not run (probe_control_steps=0)")
"""),
    md("""
## Compared with the previous run

With `previous_run_dir`, each model's accuracy change against that run, paired on tickets when its predictions are there.
"""),
    code("""
pd.DataFrame(result.metrics["regression"]["models"]).T if result.metrics["regression"] else "no previous run given (previous_run_dir)"
"""),
    md("""
## Human review

Set `reviewer` to your name and judge the tuned model's answers, errors first: pass, needs edit (usable after a person edits it, the usual verdict on a drafted reply) or fail, and one line of reason.
Each Save goes to `eval/reviews.jsonl`. Two reviewers (in one run, or each in a copy) are compared with Cohen's kappa:
`review.answer_kappa_files(path_a, path_b)`. Headless runs record that no review happened.
"""),
    code("""
review.answer_panel(run_dir, reviewer) if reviewer else print(result.metrics["review"]["note"])
"""),
    md("The tuned model must beat the base model; if it does not, look at the loss curve in 03 before anything else."),
    code("""
gain = result.metrics["tuned_minus_base_accuracy"]
assert gain > 0 or not cfg.require_gain, f"the tuned adapter is not better than the base model (difference {gain:+.1%})"
print(f"tuned − base zero-shot ({ {'extract': 'exact match', 'reply': 'ROUGE-L'}.get(kind, 'accuracy') }): {gain:+.1%}")
"""),
    md("## Files written\n\n`eval/` in the run directory. Next: **05_export** builds the GGUF and checks it against these predictions."),
    code("""
for p in sorted((Path(run_dir) / "eval").iterdir()):
    print(p)
"""),
]

NOTEBOOKS["05_export"] = [
    md("""
# 05 · Export: a GGUF and Modelfile for Ollama, checked against the adapter

This stage merges the adapter into the base model, converts it to GGUF with llama.cpp's converter, writes an Ollama
`Modelfile` whose `TEMPLATE` comes from the same chat format used in training, and runs the holdout through
llama.cpp to prove the exported file answers like the adapter did.

**Objective** a model file you can hand to Ollama without the classic "gibberish after export" surprise.
**Needs** the adapter (03) and its holdout predictions (04). **Produces** `export/model-*.gguf`, `export/Modelfile`,
`export/parity.json`, `export/MODEL_CARD.md`. **Hardware** CPU, a few minutes.

The adapter is merged into a full-precision copy of the base, never into 4-bit weights: rounding the merged
weights to 4 bits (or even to bf16) erases part of the small LoRA update, and the exported model would no longer
answer like the one you evaluated. Quantization happens after the merge, and the parity check measures its effect.
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # the base model the adapter was trained on
adapter_name: str = "default"  # adapters/<adapter_name>/
gguf_types: list = ["f16", "q8_0"]  # any of f16, q8_0, q4_k_m
modelfile_gguf: str = "q8_0"  # the GGUF the Modelfile's FROM points at
parity_threshold: float = 0.99  # required agreement with the adapter for f16 and q8_0
max_examples: int = 0  # parity on the first N holdout rows (0: all that 04 scored)
ollama_name: str = "kit-ticket-router"  # name for `ollama create`
adapter_variant: bool = True  # also export base GGUF + LoRA adapter GGUF (Modelfile.adapter) and check its parity
license_file: str = ""  # text file with the base model's license, when kit cannot find it (own models)
previous_run_dir: str = ""  # run directory of the last release; the release notes compare with it
promote: bool = True  # a verified export becomes the tenant's live adapter version (the registry, used by 06)
tenant: str = "default"  # registry entry: one live version per tenant
registry_dir: str = ""  # empty: registry/ beside the run directories (papermill_runs/registry)
advanced: dict = {}  # other ExportConfig fields by name: num_ctx, the Modelfile context length (README, Configuration)
"""),
    code("""
from pathlib import Path
import pandas as pd
from kit import export, settings

cfg = export.ExportConfig(run_dir=run_dir, model=model, adapter_name=adapter_name, gguf_types=tuple(gguf_types),
                          modelfile_gguf=modelfile_gguf, parity_threshold=parity_threshold, max_examples=max_examples,
                          ollama_name=ollama_name, adapter_variant=adapter_variant, license_file=license_file,
                          previous_run_dir=previous_run_dir, promote=promote, tenant=tenant,
                          registry_dir=registry_dir, **settings.checked(export.ExportConfig, advanced))
cfg
"""),
    code("""
result = export.run(cfg)
export.parity_table(result.parity)
"""),
    md("""
Each row is one way to ship the model: `agreement` is the share of holdout tickets where llama.cpp answers like the
adapter did in transformers: the same lane (classify), the same JSON object (extract); for replies it is how alike the
two replies are (ROUGE-L of llama.cpp's reply against the adapter's), with `text_agreement` the share identical token
for token (`first_divergences` in `export/parity.json` say where the others part). For extract and reply the row also
holds the GGUF's own holdout score beside the adapter's (`holdout_*` vs `adapter_*`): a long greedy answer can part
from the adapter's at a near-tie that 8-bit rounding flips (on the synthetic field updates f16 agreed on 100% of rows,
q8_0 on 97%), so the two scores say whether that changes quality. f16 and q8_0 must reach the threshold; q4_K_M (smallest file) is
reported so you can decide whether its size is worth its agreement. The `adapter` row is the adapter-only variant:
the untouched base GGUF with the LoRA adapter applied at load time.

The Modelfile. Its `TEMPLATE` and `stop` lines are rendered from the chat format the adapter was trained with (a
test renders this TEMPLATE with Go's text/template, Ollama's engine, and compares it with the training prompt).
`LICENSE` carries the base model's full license text; it is long, so only the first lines are printed here.
"""),
    code("""
text = Path(result.paths["modelfile"]).read_text()
print(text[: text.index('LICENSE') + 300], "…")
"""),
    md("""
## One base, many adapters

`Modelfile.adapter` points at the base model and this run's adapter (`adapter-<name>-f16.gguf`, a few MB). A team
serving several tenants keeps one base and one adapter per tenant; honouring a tenant's erasure request means
deleting that adapter. Read its header: not every Ollama version and architecture accepts `ADAPTER`.

Outgrowing one process per tenant: `python -m kit.tenants --base export/base-q8_0.gguf --adapter
acme=export/adapter-default-f16.gguf --adapter other=<its adapter>` serves one base with every tenant's adapter
behind one OpenAI-compatible `/v1/completions`; each request names its tenant in `model`, and only the adapters
(a few MB each) are switched. `kit.endpoint.serve_tenants` starts it from Python, and the endpoint scorer of 04
evaluates one tenant through it (`EndpointScorer(..., model="acme")`).
"""),
    code("""
if "modelfile_adapter" in result.paths:
    print(Path(result.paths["modelfile_adapter"]).read_text().split('TEMPLATE')[0])
"""),
    md("Parity must hold before anyone ships the file."),
    code("""
assert result.verified, f"export parity failed: {result.parity['types']}"
print("export verified: llama.cpp answers like the adapter on", result.parity["n"], "holdout tickets")
"""),
    md("""
## Model card and release notes

`MODEL_CARD.md` is written from the run's own records (scope, license note, provenance, audit, metrics, parity), with
a NIST AI RMF mapping (govern, map, measure, manage). `RELEASE_NOTES.md` compares with `previous_run_dir`.
"""),
    code("""
from IPython.display import Markdown
Markdown(Path(result.paths["model_card"]).read_text())
"""),
    md("""
## Checksums

`export/SHA256SUMS.json` lists the sha256 of every exported file. Whoever receives the files can re-check them with
`python -m kit verify <run>/export`, which refuses changed or missing files.
"""),
    code("""
checked = export.verify(Path(run_dir) / "export")
print(f"{len(checked)} files verified:", ", ".join(checked))
"""),
    md("""
## Run it in Ollama

With Ollama installed, these two commands load and query the model. Where `ollama` is on PATH, the next cell runs
them on a few holdout tickets and compares the answers with the adapter's; elsewhere it says it did not run.
"""),
    code("""
print("\\n".join(export.ollama_commands(run_dir, ollama_name)))
export.ollama_check(run_dir, ollama_name)
"""),
    md("""
## The registry: this export goes live

A verified export becomes the tenant's live adapter version in the registry (`papermill_runs/registry/<tenant>/`):
a copy of the adapter, the run it came from, its holdout score and the GGUF it was checked in. The registry's
`Modelfile` always points at the live version, so `ollama create <name> -f papermill_runs/registry/<tenant>/Modelfile`
serves what the registry says. Stage 06 watches the traffic and rolls back to the version before when quality drops.
"""),
    code("""
from kit import adapters
if result.promoted:
    print(f"live for tenant '{tenant}': {result.promoted['version']} (run {result.promoted['run']})")
    registry = adapters.location(run_dir, registry_dir)
    display(adapters.table(registry, tenant))
else:
    print("not promoted:", "promote=False" if not promote else "the export did not pass parity")
"""),
]

NOTEBOOKS["06_monitor"] = [
    md("""
# 06 · Monitor: drift, reviewer feedback, and rollback

After launch the model meets traffic nobody tested it on. This stage takes a batch of production tickets (the file
formats of stage 02; optionally with what a reviewer answered for some of them) and asks three questions: does the
traffic still look like the training data (input drift), does the model still answer the way it did on the holdout
(output drift), and are the reviewed answers still as good as the evaluation said (quality)? Each check has a
statistic, a threshold and a verdict; together they give a decision: **keep**, **retrain** or **roll back**.

**Objective** find out that the world changed before the customers tell you, and act on it in one step.
**Needs** an exported, promoted run (05) and one or more batches. **Produces** `monitor/<batch>/report.json`,
`monitor/<batch>/feedback.jsonl`, `monitor/drift.png`, and, on a roll-back decision, a new live version in the
registry. **Hardware** CPU; about a minute per 1,000 tickets.

Production text is customer data: each batch goes through this run's redactor and the independent audit first, and
only redacted text is written. The model's answers come from the live GGUF in llama.cpp, the engine Ollama runs.
"""),
    params("""
run_dir: str = "../papermill_runs/lab"  # the run whose model serves the traffic
batch_paths: list = []  # production batches, oldest first (CSV / JSONL / JSON / Parquet with the run's text columns)
review_column: str = ""  # the reviewer's answer per row (label, JSON object or reply); an empty cell: not reviewed
prediction_column: str = ""  # what the service answered, if the batch logs it; empty: kit asks the live model
confidence_column: str = ""  # the logged confidence beside prediction_column
tenant: str = "default"  # registry entry whose live version serves this traffic
registry_dir: str = ""  # empty: registry/ beside the run directories (papermill_runs/registry)
auto_rollback: bool = True  # a roll-back decision makes the previous version live (recorded with the reasons)
monitor_thresholds: dict = {}  # overrides of kit.monitor.Thresholds, e.g. {"population_auc": 0.75}
max_batch_rows: int = 0  # monitor the first N rows of each batch (0: all)
"""),
    code("""
from pathlib import Path
import pandas as pd
from IPython.display import Image, display
from kit import adapters, monitor

registry = adapters.location(run_dir, registry_dir)
print("live before monitoring:", (adapters.live(registry, tenant) or {}).get("version", "none"))
cfg = monitor.StageConfig(run_dir=run_dir, batch_paths=tuple(batch_paths), review_column=review_column,
                          prediction_column=prediction_column, confidence_column=confidence_column, tenant=tenant,
                          registry_dir=registry_dir, auto_rollback=auto_rollback,
                          monitor_thresholds=monitor_thresholds, max_batch_rows=max_batch_rows)
reports = monitor.run_stage(cfg)
if not batch_paths:
    print("no batch given: set batch_paths to one or more files of production tickets")
"""),
    md("""
## What each check means

- **new_terms**: words that appear in a noticeable share of the batch (5%) but almost never in training (0.5%).
  The classic cause is a new product or a new kind of problem; the model has never seen those words.
- **oov_rate**: the share of the batch's words that never occur in training, against the same share for the holdout
  (which the model did fine on). More unknown words means less of the ticket is familiar to the model.
- **length**: are tickets much longer or shorter than in training? (A two-sample Kolmogorov–Smirnov test: the largest
  gap between the two length distributions, 0 to 1.)
- **population**: a small text classifier is asked to tell batch tickets from training tickets. If it cannot (ROC AUC
  near 0.5) the batch looks like training; the better it does, the more the traffic has moved, and the words it leans
  on say what moved.
- **label_mix**: the share of tickets the model sends to each lane, against the holdout's (population stability
  index: under 0.1 steady, over 0.25 a major shift). **confidence**: is the model less sure than on the holdout?
- **quality**: on the tickets a reviewer looked at, how often was the model right, with a 95% interval, against the
  same model file's holdout accuracy. This is the one that says customers are affected.
- **overrides**: a lane reviewers keep overriding (to the same other lane, usually) is a repair target: the data
  for that lane, or the instruction, needs work.

A quality drop rolls back to the version that was live before; drift without a quality drop asks for retraining on
the reviewed rows before quality follows; nothing alerting keeps the live version.
"""),
    code("""
for r in reports:
    print(f"\\n{r['batch']}: decision {r['decision'].upper()} - {r['why']}")
    for a in r["alerts"]:
        print("  alert:", a)
    display(monitor.checks_table(r))
"""),
    md("Drift across the batches so far (each point one batch; dashed: the threshold; red band: not 'keep')."),
    code("""
if reports:
    display(Image(str(Path(run_dir) / "monitor" / "drift.png")))
"""),
    md("""
## Who overrode what

For each lane the model predicted: how many reviewed tickets, how many a reviewer overrode, and to which lane.
"""),
    code("""
for r in reports:
    if r["overrides_by_label"]:
        print(r["batch"])
        display(pd.DataFrame(r["overrides_by_label"]).T)
"""),
    md("""
## The registry after monitoring

A roll-back decision (with `auto_rollback`) made the version before live again and rewrote the registry's
`Modelfile`; the history records who changed what, when and why. `kit.adapters.rollback` and `kit.adapters.promote`
do the same by hand; `kit.adapters.erase` deletes one tenant's adapters (an erasure request) and touches no other.
"""),
    code("""
for r in reports:
    if r["rollback"]:
        print(r["batch"], "rollback:", r["rollback"].get("from"), "->", r["rollback"].get("to"),
              "" if r["rollback"]["done"] else f"not done: {r['rollback']['why']}")
display(adapters.table(registry, tenant))
print("live now:", (adapters.live(registry, tenant) or {}).get("version", "none"), "| Modelfile:",
      registry / tenant / "Modelfile")
"""),
    md("""
## Feedback into the next cycle

Every overridden or edited ticket becomes a candidate training row, redacted, with the reviewer's answer and where it
came from (`kit_feedback`: batch, file sha256, line, outcome, what the model said). The rows are written in this run's
own input columns (the redacted text in the main text column, the answer in the label column, tenant, consent and
time kept), so they go through stage 02 with the next training export unchanged: append
`monitor/<batch>/feedback.jsonl` to it (JSONL) and they are redacted, audited and accounted like any row.
"""),
    code("""
for r in reports:
    print(f"{r['batch']}: {r['feedback']['rows']} feedback rows in {r['feedback']['path']}")
"""),
    md("""
## The pilot report

One page for the client: the scope decision and its cost, the license and who approved it, what data was used and
what was kept out, training, results against every baseline, the memorisation probes, the export and the monitoring
above. It is built from this run directory's files alone (plots inside, nothing fetched), reads on a phone and
prints to PDF. `python -m kit report <run dir>` rebuilds it after any stage.
"""),
    code("""
import os
from IPython.display import HTML
from kit import report

page = report.build(run_dir)
print("pilot report:", page)
display(HTML(f'<a href="{os.path.relpath(page, Path.cwd())}" target="_blank">open the pilot report</a>'))
"""),
]


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        for i, cell in enumerate(cells):
            cell.id = f"{name[:2]}-{i:02d}"  # stable ids keep git diffs to real changes
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        nbformat.write(nb, NB_DIR / f"{name}.ipynb")


if __name__ == "__main__":
    build()
