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
# # 02 · Prepare: redacted, checked training data with nothing lost
#
# This stage decides what a model may learn from, and proves it row by row: raw tickets become `data/train.jsonl` and
# `data/holdout.jsonl` with personal data and secrets replaced by typed placeholders, and every row it cannot use goes
# to `data/quarantine.jsonl` with the reason.
#
# **Objective** data a model may learn from without learning a customer's secrets. **Needs** a CSV, JSONL or Parquet
# file with a text and a label column, and a purpose. **Produces** `data/train.jsonl`, `data/holdout.jsonl`,
# `data/quarantine.jsonl`, `data/duplicates.jsonl`, `data/canaries.json`, `data/task.json`, `data/audit.json`,
# `data/provenance.json`, `data/review_status.json` (and `data/reviews.jsonl` when someone reviews).
# **Hardware** CPU, seconds (about 8 s for the 600 sample tickets on one core).

# %% tags=["parameters"]
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
audit_findings: str = "stop"  # rows the privacy audit flags after redaction: stop (fix the redaction first) | quarantine (set them aside, go on)

# %%
import json
from pathlib import Path
import pandas as pd
from kit.stages import prepare
from kit.report import review

cfg = prepare.PrepareConfig(
    run_dir=run_dir, input_path=input_path, encoding=encoding, purpose=purpose, task=task, input_format=input_format, text_columns=text_columns,
    label_column=label_column, id_column=id_column, tenant_column=tenant_column, consent_column=consent_column,
    timestamp_column=timestamp_column, known_value_columns=known_value_columns, field_allowlist=field_allowlist,
    labels=labels, schema=schema, instruction=instruction, holdout_path=holdout_path, holdout_fraction=holdout_fraction, max_rows=max_rows, max_chars=max_chars, retention_days=retention_days,
    id_patterns=id_patterns, canaries_per_kind=canaries_per_kind, near_duplicate_threshold=near_duplicate_threshold,
    reviewer=reviewer, review_fraction=review_fraction, seed=seed,
    audit_findings=audit_findings)
cfg

# %% [markdown]
# ## Validate, filter, redact, deduplicate, split
#
# One call does the whole stage, in this order:
#
# 1. **Read and validate** every record: broken CSV quoting, invalid JSON lines, bytes that are not UTF-8, empty text,
#    unknown labels, over-long text and bad timestamps go to quarantine with a reason code.
# 2. **Govern**: rows whose tenant gave no training consent are quarantined (`no_consent`); only the id, the text
#    columns, the label and the allowlisted fields travel on (minimization).
# 3. **Redact**: names, street addresses, emails, phone numbers, card numbers (Luhn), IBANs (checksum), US SSNs, IP
#    addresses, dates of birth, secrets and API keys, and business identifiers become placeholders such as
#    `<PERSON_1>`; the customer's own name, email and policy number from the structured columns are scrubbed
#    wherever they appear.
# 4. **Deduplicate**: exact (normalized) and near duplicates (MinHash) are removed before the split, so no holdout
#    text is also in training; a golden `holdout_path` wins over training copies of its rows.
# 5. **Plant canaries** into a few rows' raw text before they are redacted again, **split** (stratified, seeded),
#    write the files and run the **independent audit**.
#
# Where each row read went:

# %%
result = prepare.run(cfg)
pd.DataFrame(result.accounting_table()).set_index("source")

# %% [markdown]
# Every row read ends in exactly one place. If this check fails, nothing downstream should run.

# %%
c = result.counts
assert result.invariant_holds(), f"rows lost: {c}"
print(f"{c['read']} read = {c['train']} train + {c['holdout']} holdout + {c['quarantined']} quarantined "
      f"+ {c['duplicates']} duplicates removed ({c['near_duplicates']} near)")

# %% [markdown]
# Why rows were quarantined (reason codes; `data/quarantine.jsonl` has the source line of each):

# %%
pd.Series(result.quarantine_reasons, name="rows", dtype=int).sort_values(ascending=False)

# %% [markdown]
# What the redactor replaced, by type. Names, places, addresses, organisations and typed-in id numbers come from kit's entity recogniser (a small spaCy model shipped with kit; `bench/redaction.py` measures what it misses on text kit did not write), beside known values, cues, a census name list and the pattern detectors.

# %%
print(result.provenance["redaction_ner"])
pd.Series(result.redactions, name="placeholders").sort_values(ascending=False)

# %% [markdown]
# The task every later stage reads from `data/task.json`: its kind, the labels (taken from the data when `labels` was
# empty) or the JSON Schema of the answers (inferred when `schema` was empty), and the instruction every prompt starts
# with. What the model will see: three redacted training rows with their answers. The answer is training text too: it
# was redacted with its ticket, so a name replaced in the text has the same placeholder in the answer.

# %%
t = result.task
print(f"task: {t['kind']} | instruction: {t['system']}")
print("labels:", t["labels"]) if t["kind"] == "classify" else print("schema:", json.dumps(t["schema"])[:600] if t["schema"] else "-")
for row in [json.loads(line) for line in open(result.paths["train"])][:3]:
    print(f"\n{row['text']}\n→ {row.get('label', row.get('answer'))}")

# %% [markdown]
# ## Canaries and the privacy audit
#
# Canaries are unique fake values (a Luhn-valid card number, a policy number, a name) planted into the raw text
# before redaction. If any of them, any raw value from the structured columns, or anything shaped like PII or a secret
# survives into the written files, the audit fails and this notebook stops with the rows and fields named. The audit
# is a separate code path from the redactor (`kit.privacy.audit`), with broader checks and evidence of its own: the redactor
# finds names and places with a learned recogniser, the audit with ~38,000 given names and surnames from 100+ locales
# (Faker's lists), street words of 20 languages and national postcode shapes, so a name the recogniser missed can
# still stop this notebook. With `audit_findings` set to quarantine, the rows it flags are set aside instead (reason
# `audit_finding`, with the checks that fired) and the files are audited again without them; a surviving canary or
# a holdout text in training still stops. Training (03) refuses to
# start unless the audit passed for exactly these files (their sha256 are recorded). Stage 04 probes the tuned model
# with the canaries recorded in `data/canaries.json`.

# %%
pd.DataFrame(result.canaries)[["kind", "value", "row_id", "file"]]

# %%
audit = prepare.check_audit(run_dir)
print("audit passed:", audit["passed"], "| findings:", audit["hits"], "| canaries found:", audit["canaries_found"],
      "| holdout texts also in train:", audit["holdout_leaks"])
print("rows scanned:", audit["rows_scanned"], "| known values checked:", audit["known_values_checked"])
if "set_aside" in audit:
    print(f"set aside by the audit (audit_findings: quarantine): {audit['set_aside']['rows']} rows,",
          audit["set_aside"]["by_check"])
print(audit["ner_model"])

# %% [markdown]
# ## Governance record
#
# `data/provenance.json` keeps the purpose, the source files' sha256, the versions and parameters, what was dropped
# and why, and the date the prepared snapshot expires. Delete the run's `data/` by then, or prepare again.

# %%
p = result.provenance
print("purpose:", p["purpose"], "| expires on:", p["expires_on"])
print("fields dropped before writing:", ", ".join(p["fields_dropped"]))
print("excluded for lack of consent:", p["consent"]["rows_excluded_by_tenant"] or "none")

# %% [markdown]
# ## Human spot-check
#
# Set `reviewer` to your name to judge a seeded sample (`review_fraction`, 5% by default) of the redacted rows:
# **accept**, **relabel** (pick the right lane) or **flag PII** (something the redactor missed), each with a one-line
# reason. Judgements go to `data/reviews.jsonl` as you click. Headless runs leave `reviewer` empty and record that no
# review happened. Two reviewers who judged the same sample (same `seed`) can compare with
# `review.kappa("a/data/reviews.jsonl", "b/data/reviews.jsonl")` (Cohen's kappa).

# %%
sample = review.sample(run_dir, review_fraction, seed)
status = review.record_status(run_dir, reviewer, len(sample))
review.panel(run_dir, reviewer, sample, result.task["labels"]) if reviewer else print(status["note"])

# %% [markdown]
# ## Files written
#
# `data/` in the run directory. Next: **03_train** reads `data/train.jsonl`, `data/task.json` and checks `data/audit.json`.

# %%
for p in sorted((Path(run_dir) / "data").iterdir()):
    print(p)
