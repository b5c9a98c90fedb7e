"""Prepare stage: raw tickets in, redacted train/holdout files out, with nothing lost and every decision recorded.

In: a CSV (any of , ; tab | as delimiter, UTF-8 with or without BOM, or the `encoding` you name), JSONL, JSON array
or Parquet file of tickets (and optionally a golden holdout file), plus a column mapping. Out,
inside the run directory's `data/`:

- `train.jsonl`, `holdout.jsonl` — `id`, redacted `text`, the answer (`label` for classify; `answer` for extract, the
  object as canonical JSON text, and for reply), the allowlisted fields, where the row came from;
- `quarantine.jsonl` — every rejected row: source, line, id, a reason code and a reason (never the row's text);
- `duplicates.jsonl` — every removed duplicate, exact or near, and the row it duplicates;
- `canaries.json` — the canaries planted into the in-memory copy of the raw data, and the rows that carried them;
- `task.json` — the task kind, labels or schema, and the instruction every later stage prompts with;
- `audit.json` — the independent privacy audit (`kit.privacy.audit`) of the written files, tied to their sha256;
- `provenance.json` — purpose, sources and their sha256, versions, parameters, consent and retention (expiry date).

Invariant, checked here and shown in the notebook: rows read = train + holdout + quarantined + duplicates removed.
Rows of tenants without training consent are quarantined with the reason `no_consent`, so they are in that sum.
The answer is training text too: it is redacted with the ticket (same placeholders) and audited like it.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kit import __version__
from kit.io import (
    DataError,
    RawRow,
    package_versions,
    read_jsonl,
    read_raw,
    sha256_file,
    write_json,
    write_jsonl,
)
from kit.privacy import audit as privacy_audit
from kit.privacy import canaries as canary_mod
from kit.privacy.redact import DEFAULT_ID_PATTERNS, NER_NOTE, Redactor
from kit.rundir import PrivacyAuditError, RunDir, audit_failure_message
from kit.tasks.base import (
    DEFAULT_INSTRUCTIONS,
    KINDS,
    Task,
    canonical_json,
    default_instruction,
    parse_object,
)

# The course demo's lanes (data_samples/tickets.csv); a run config names its own, or leaves labels empty to take
# the label set from the data.
DEFAULT_LABELS = ["claim_status", "document_request", "billing_dispute", "agent_escalation"]
DEFAULT_INSTRUCTION = DEFAULT_INSTRUCTIONS["classify"]
MIN_ROWS_PER_LABEL = 2  # a label needs one row to learn from and one to test on
MIN_GENERATIVE_ROWS = 10  # extract and reply: fewer rows cannot be split into something to learn from and to test
CONSENT_YES = {"yes", "y", "true", "1", "granted", "opt-in", "opt_in"}
CONSENT_NO = {"no", "n", "false", "0", "denied", "opt-out", "opt_out", "withdrawn", ""}


@dataclass(frozen=True)
class PrepareConfig:
    run_dir: str
    input_path: str
    purpose: str  # why this data is used; recorded in provenance.json
    task: str = "classify"  # classify (text → label) | extract (text → JSON object) | reply (text → free text)
    input_format: str = "auto"  # auto | columns | prompt_completion | messages | alpaca (see apply_convention)
    text_columns: tuple[str, ...] = ("subject", "body")  # free-text columns, joined; the last is the main text
    label_column: str = "label"  # the answer: a label (classify), a JSON object or its text (extract), a reply
    id_column: str = "ticket_id"  # "" = ids from the source and line ("input:line12")
    encoding: str = "utf-8"  # of CSV/JSON files; e.g. "cp1252" for files older Excel versions save (a BOM is skipped)
    tenant_column: str = "tenant_id"  # "" if the file has no tenants
    consent_column: str = "training_consent"  # yes/no per row; "" treats every row as consented
    timestamp_column: str = "received_at"  # ISO 8601; "" to skip the check
    known_value_columns: dict = field(default_factory=lambda: {
        "customer_name": "PERSON", "customer_email": "EMAIL", "policy_number": "POLICY_NUMBER"})
    field_allowlist: tuple[str, ...] = ()  # extra columns to keep (redacted); every other column is dropped
    labels: tuple[str, ...] = ()  # classify: the label set; () = every label with 2+ rows in the input file
    schema: dict | str = field(default_factory=dict)  # extract: a JSON Schema (dict or .json path); {} = inferred
    instruction: str = ""  # every prompt starts with it; {labels} / {keys} are filled in; "" = a generic one
    holdout_path: str = ""  # a golden holdout file with the same columns; "" = split holdout_fraction off the input
    holdout_fraction: float = 0.2
    max_rows: int = 0  # 0 = all rows
    max_chars: int = 4000
    retention_days: int = 90
    id_patterns: dict = field(default_factory=dict)  # {ENTITY: regex}; {} = DEFAULT_ID_PATTERNS
    canaries_per_kind: int = 2  # planted fake card/policy/person values per kind; 0 = none
    near_duplicate_threshold: float = 0.85  # estimated Jaccard similarity above which two texts are one
    reviewer: str = ""  # who spot-checks in the notebook panel; "" = no review (headless runs), recorded as such
    review_fraction: float = 0.05  # share of prepared rows shown in the review panel
    seed: int = 0
    # A row the privacy audit flags after redaction: "stop" (nothing is trained until the redaction is fixed) or
    # "quarantine" (the flagged rows are set aside with their reason, the rest goes on; a surviving canary or a
    # holdout text in training still stops, as those are not one row's problem).
    audit_findings: str = "stop"

    def __post_init__(self):
        if self.task not in KINDS:
            raise DataError(f"task='{self.task}' is not one of {', '.join(KINDS)}.")
        if self.audit_findings not in AUDIT_FINDINGS:
            raise DataError(f"audit_findings='{self.audit_findings}' is not one of {', '.join(AUDIT_FINDINGS)}.")
        if self.input_format not in INPUT_FORMATS:
            raise DataError(f"input_format='{self.input_format}' is not one of {', '.join(INPUT_FORMATS)}.")
        for name in ("text_columns", "labels", "field_allowlist"):  # papermill and YAML hand over lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("input_path", "holdout_path"):
            value = getattr(self, name)
            if name == "holdout_path" and not value:
                continue
            if not Path(value).exists():
                raise DataError(f"{name} '{value}' does not exist; point it at a CSV, JSONL or Parquet file.")
            if Path(value).suffix.lower() not in (".csv", ".jsonl", ".json", ".parquet"):
                raise DataError(f"{name} '{value}' has an unsupported extension; use .csv, .jsonl, .json or .parquet.")
        if not 0.05 <= self.holdout_fraction <= 0.5:
            raise DataError(f"holdout_fraction={self.holdout_fraction} is outside 0.05–0.5.")
        try:
            self.instruction_text()
        except (KeyError, IndexError, ValueError):
            raise DataError(f"instruction {self.instruction!r} uses braces other than {{labels}} and {{keys}}; write a "
                            "literal brace as {{ or }}.") from None
        if self.task == "classify" and self.labels and len(set(self.labels)) < 2:
            raise DataError("labels must name at least two distinct lanes (or be empty to take them from the data).")
        if self.task != "extract" and self.schema:
            raise DataError(f"schema is set but task='{self.task}'; a schema belongs to task='extract'.")
        if isinstance(self.schema, str) and self.schema:
            object.__setattr__(self, "schema", _load_schema(self.schema))
        if self.schema:
            try:
                import jsonschema

                jsonschema.validators.validator_for(self.schema).check_schema(self.schema)
            except jsonschema.SchemaError as e:
                raise DataError(f"schema is not a valid JSON Schema ({e.message}).") from None
        if not self.text_columns:
            raise DataError("text_columns is empty; name the column(s) holding the ticket text, e.g. ['body'].")
        if not self.purpose.strip():
            raise DataError("purpose is empty; state why this data is used (it is recorded with the data).")
        if self.retention_days < 1:
            raise DataError(f"retention_days={self.retention_days}; the prepared snapshot must expire 1 or more days "
                            "from now (it is recorded in provenance.json).")
        if not 0.5 <= self.near_duplicate_threshold <= 1.0:
            raise DataError(f"near_duplicate_threshold={self.near_duplicate_threshold} is outside 0.5–1.0 "
                            "(1.0 keeps only exact duplicate removal).")
        if not 0.0 < self.review_fraction <= 1.0:
            raise DataError(f"review_fraction={self.review_fraction} is outside (0, 1].")
        if self.canaries_per_kind < 0:
            raise DataError("canaries_per_kind must be 0 or more.")
        for entity, pattern in self.id_patterns.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise DataError(f"id_patterns['{entity}'] is not a valid regular expression ({e}).") from None
            if not re.fullmatch(r"[A-Z][A-Z_]*", entity):
                raise DataError(f"id_patterns key '{entity}' must be UPPER_CASE (it names the placeholder).")

    def instruction_text(self, labels: tuple[str, ...] | None = None, schema: dict | None = None) -> str:
        labels = self.labels if labels is None else labels
        keys = list((schema if schema is not None else self.schema or {}).get("properties", {}))
        if not self.instruction.strip():
            return default_instruction(self.task, labels, keys)
        return self.instruction.strip().format(
            labels=", ".join(labels) or "(taken from the data)", keys=", ".join(keys) or "(taken from the data)")


def _load_schema(path: str) -> dict:
    import json

    p = Path(path)
    if not p.is_file():
        raise DataError(f"schema '{path}' is neither a JSON Schema object nor an existing .json file.")
    try:
        schema = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"schema file '{path}' is not valid JSON ({e.msg}, line {e.lineno}).") from None
    if not isinstance(schema, dict):
        raise DataError(f"schema file '{path}' holds a JSON {type(schema).__name__}; a JSON Schema is an object.")
    return schema


# --- the conventions people already store training data in ---------------------------------------------------------

INPUT_FORMATS = ("auto", "columns", "prompt_completion", "messages", "alpaca")
AUDIT_FINDINGS = ("stop", "quarantine")  # what a row flagged by the privacy audit does (PrepareConfig.audit_findings)
CONVENTION_KEYS = ("messages", "prompt", "completion", "instruction", "input", "output")
# Columns our demo data has; a file in one of the conventions above is not expected to carry them.
DEMO_COLUMNS = {"id_column": "ticket_id", "tenant_column": "tenant_id", "consent_column": "training_consent",
                "timestamp_column": "received_at"}


def detect_format(cfg: PrepareConfig, first: dict | None) -> str:
    """`input_format`, or for "auto" the convention the first record follows (the column mapping when it fits)."""
    if cfg.input_format != "auto" or first is None:
        return "columns" if cfg.input_format == "auto" else cfg.input_format
    if all(c in first for c in (*cfg.text_columns, cfg.label_column)):
        return "columns"
    if "messages" in first:
        return "messages"
    if "prompt" in first and "completion" in first:
        return "prompt_completion"
    if "output" in first and ("instruction" in first or "input" in first):  # input/output alone: no instruction
        return "alpaca"
    return "columns"


def _content(message) -> str | None:
    """A chat message's text: a string, or the text parts of a list of content parts (OpenAI / HF style)."""
    if not isinstance(message, dict):
        return None
    c = message.get("content")
    if isinstance(c, list):
        c = "".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type", "text") == "text")
    return c if isinstance(c, str) else None


def _turns(messages) -> tuple[str | None, list[dict]] | None:
    """(system text or None, the other messages), or None when `messages` is not a list of role/content objects."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        return None
    system = [_content(m) for m in messages if m["role"] in ("system", "developer")]
    rest = [m for m in messages if m["role"] not in ("system", "developer")]
    return ("\n\n".join(s for s in system if s) or None), rest


def _from_convention(fmt: str, fields: dict) -> tuple[dict | None, str | None, str | None]:
    """One record in a convention → (fields with `text` and `answer`, its system instruction, problem)."""
    out = {k: v for k, v in fields.items() if k not in CONVENTION_KEYS}
    system = None
    if fmt == "messages":
        split = _turns(fields.get("messages"))
        if split is None:
            return None, None, "'messages' is not a list of {role, content} objects"
        system, rest = split
        roles = [m["role"] for m in rest]
        if roles != ["user", "assistant"]:
            return None, None, (f"'messages' holds the turns {roles}; kit trains single-turn tasks: one user message "
                                "(optionally after a system message) and the assistant's answer")
        text, answer = _content(rest[0]), _content(rest[1])
    elif fmt == "prompt_completion":
        text, answer = fields.get("prompt"), fields.get("completion")
        if isinstance(text, list):  # TRL's conversational prompt/completion
            split = _turns(text)
            if split is None or [m["role"] for m in split[1]] != ["user"]:
                return None, None, "'prompt' is not one user message (optionally after a system message)"
            system, text = split[0], _content(split[1][0])
        if isinstance(answer, list):
            if len(answer) != 1 or not isinstance(answer[0], dict) or answer[0].get("role") != "assistant":
                return None, None, "'completion' is not one assistant message"
            answer = _content(answer[0])
    else:  # alpaca: instruction / input / output
        instruction, text, answer = (fields.get(k) for k in ("instruction", "input", "output"))
        if not _str(text).strip():
            text, instruction = instruction, None
        system = instruction if isinstance(instruction, str) and instruction.strip() else None
    if not isinstance(text, str) or answer is None:
        return None, None, "the text or the answer is missing or not a string"
    return out | {"text": text, "answer": answer}, system, None


def apply_convention(cfg: PrepareConfig, raw_by_source: dict) -> tuple[PrepareConfig, dict, str]:
    """Records in a convention become `text` + `answer` columns. The system message (or Alpaca instruction) that most
    records share becomes the task instruction when `instruction` is empty; a different one stays with its record,
    in front of the text, so nothing is lost. Returns the mapping the rest of the stage uses, the records, the format.
    """
    first = next((r.fields for raw in raw_by_source.values() for r in raw if r.fields is not None), None)
    fmt = detect_format(cfg, first)
    if fmt == "columns":
        return cfg, raw_by_source, fmt
    converted, systems = {}, []
    for source, raw in raw_by_source.items():
        rows = []
        for r in raw:
            fields, system, problem = _from_convention(fmt, r.fields) if r.fields is not None else (None, None, None)
            if r.fields is None:
                rows.append(r)
            elif problem:
                rows.append(RawRow(r.line, None, problem, "bad_convention"))
            else:
                rows.append(RawRow(r.line, fields))
                systems.append((fields, system))
        converted[source] = rows
    common = Counter(s for _, s in systems if s).most_common(1)
    adopted = common[0][0] if common and not cfg.instruction.strip() and common[0][1] > len(systems) / 2 else None
    for fields, system in systems:
        if system and system != adopted:
            fields["text"] = f"{system}\n\n{fields['text']}"
    mapping = {"text_columns": ("text",), "label_column": "answer"}
    if adopted:
        mapping["instruction"] = adopted.replace("{", "{{").replace("}", "}}")  # the data's text, not a template
    sample = next((f for f, _ in systems), {})
    for setting, demo_name in DEMO_COLUMNS.items():  # our demo's columns, absent from a convention file: not used
        if getattr(cfg, setting) == demo_name and demo_name not in sample:
            mapping[setting] = ""
    mapping["known_value_columns"] = {c: e for c, e in cfg.known_value_columns.items() if c in sample}
    return replace(cfg, **mapping), converted, fmt


def normalize(text: str) -> str:
    """Key for exact-duplicate detection: case, whitespace and punctuation do not make a new ticket."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def task_text(fields: dict, text_columns: tuple[str, ...]) -> str:
    parts = []
    for col in text_columns:
        value = _str(fields.get(col)).strip()
        if value:
            parts.append(f"{col.capitalize()}: {value}" if col != text_columns[-1] else value)
    return "\n\n".join(parts)


def _str(value) -> str:
    return "" if value is None else str(value)


def check_columns(cfg: PrepareConfig, raw: list[RawRow], path: str) -> None:
    """Fail early, naming the setting to change, when the column mapping does not fit the file."""
    first = next((r.fields for r in raw if r.fields is not None), None)
    if first is None:
        return
    found = list(first)
    settings = {"text_columns": list(cfg.text_columns), "label_column": [cfg.label_column],
                "id_column": [cfg.id_column] if cfg.id_column else [],
                "tenant_column": [cfg.tenant_column] if cfg.tenant_column else [],
                "consent_column": [cfg.consent_column] if cfg.consent_column else [],
                "timestamp_column": [cfg.timestamp_column] if cfg.timestamp_column else [],
                "known_value_columns": list(cfg.known_value_columns), "field_allowlist": list(cfg.field_allowlist)}
    for setting, cols in settings.items():
        missing = [c for c in cols if c not in first]
        if missing:
            hint = {"consent_column": " (or set consent_column='' if every row may be trained on)",
                    "id_column": " (or set id_column='' to number rows by source and line)",
                    "tenant_column": " (or set tenant_column='')",
                    "timestamp_column": " (or set timestamp_column='')"}.get(setting, "")
            raise DataError(f"'{path}' has no column(s) {missing}; found {found}. Set {setting} to the names your "
                            f"file uses{hint}. (Set text_columns / label_column / id_column the same way.)")


def _reject(cfg: PrepareConfig, r: RawRow) -> tuple[str, str] | None:
    """(code, reason) if the row cannot be used, else None. Reasons name fields, never their content."""
    if r.problem:
        return r.code or "unreadable", r.problem
    f = r.fields
    missing = [c for c in (*cfg.text_columns, cfg.label_column) if c not in f]
    if missing:
        return "missing_field", f"missing field(s) {missing}"
    if not _str(f.get(cfg.text_columns[-1])).strip():
        return "empty_text", f"empty text in '{cfg.text_columns[-1]}'"
    answer = _answer_problem(cfg, f.get(cfg.label_column))
    if answer:
        return answer
    if len(task_text(f, cfg.text_columns)) > cfg.max_chars:
        return "too_long", f"text longer than max_chars={cfg.max_chars}"
    if cfg.timestamp_column and _str(f.get(cfg.timestamp_column)).strip():
        try:
            datetime.fromisoformat(_str(f[cfg.timestamp_column]).strip().replace("Z", "+00:00"))
        except ValueError:
            return "bad_timestamp", f"'{cfg.timestamp_column}' is not an ISO 8601 timestamp"
    if cfg.consent_column:
        value = _str(f.get(cfg.consent_column)).strip().lower()
        if value not in CONSENT_YES | CONSENT_NO:
            return "bad_consent_value", f"'{cfg.consent_column}' is neither yes nor no"
        if value in CONSENT_NO:
            tenant = _str(f.get(cfg.tenant_column)) if cfg.tenant_column else "?"
            return "no_consent", f"no training consent (tenant '{tenant}')"
    return None


def _answer_problem(cfg: PrepareConfig, value) -> tuple[str, str] | None:
    """Why a row's answer cannot be trained on, per task kind; None when it can."""
    if cfg.task == "classify":
        if _str(value).strip() not in cfg.labels:
            return "unknown_label", "unknown label (not one of `labels`)"
        return None
    if cfg.task == "reply":
        return None if _str(value).strip() else ("empty_answer", f"empty reply in '{cfg.label_column}'")
    obj = _as_object(value)
    if obj is None:
        return "bad_answer", f"'{cfg.label_column}' is not a JSON object (nor the text of one)"
    if cfg.schema:
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(cfg.schema)(cfg.schema)
                                                 .iter_errors(obj))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            return "answer_schema", f"'{cfg.label_column}' does not fit the schema at {where} ({error.validator})"
    return None


def _as_object(value) -> dict | None:
    """An extract answer as given: an object (JSONL, Parquet) or the JSON text of one (CSV)."""
    if isinstance(value, dict):
        return value
    return parse_object(value) if isinstance(value, str) and value.strip().endswith("}") else None


def infer_schema(objects: list[dict]) -> dict:
    """A JSON Schema of the training answers (genson): keys and value types, in the order they first appear."""
    from genson import SchemaBuilder

    builder = SchemaBuilder(schema_uri=False)
    for obj in objects:
        builder.add_object(obj)
    return builder.to_schema()


def infer_labels(cfg: PrepareConfig, raw: list[RawRow]) -> tuple[str, ...]:
    """classify with labels=(): every label value with at least MIN_ROWS_PER_LABEL rows, in order of first
    appearance in the file (Counter keeps insertion order)."""
    counts = Counter(_str(r.fields.get(cfg.label_column)).strip() for r in raw if r.fields is not None)
    counts.pop("", None)
    labels = tuple(lab for lab, n in counts.items() if n >= MIN_ROWS_PER_LABEL)
    if len(labels) < 2:
        raise DataError(f"labels is empty, so kit takes the label set from '{cfg.label_column}', but it holds "
                        f"{len(labels)} label(s) with {MIN_ROWS_PER_LABEL}+ rows ({dict(counts.most_common(5))}). "
                        "Check label_column, or set labels to your label set.")
    return labels


def _duplicate_id(cfg: PrepareConfig, r: RawRow, seen: dict) -> tuple[str, str] | None:
    """A second row with an id already used: a repeat of the same text is left to dedupe, a different text is
    quarantined (later stages key rows by id, so two texts under one id would silently become one)."""
    key = _str(r.fields[cfg.id_column]).strip()
    text = normalize(task_text(r.fields, cfg.text_columns))
    if key not in seen:
        seen[key] = (r.line, text)
        return None
    first_line, first_text = seen[key]
    if first_text == text:
        return None
    return "duplicate_id", f"'{cfg.id_column}' repeats the id of line {first_line} with a different text"


def _quarantine_summary(cfg: PrepareConfig, raw_by_source: dict, quarantine: list[dict]) -> str:
    """Why rows were rejected, most common reason first, with what to change for the usual culprits."""
    if not quarantine:
        return "No row was quarantined: the file has too few rows (or too few per label) for a split."
    counts = Counter(q["code"] for q in quarantine)
    parts = [f"Quarantined {len(quarantine)} row(s): " + ", ".join(f"{c} {n}" for c, n in counts.most_common()) + "."]
    top = counts.most_common(1)[0][0]
    if top == "unknown_label":
        found = {_str(r.fields.get(cfg.label_column)).strip() for raw in raw_by_source.values() for r in raw
                 if r.fields is not None} - set(cfg.labels)
        parts.append(f"The file's labels {sorted(found)[:12]} are not in labels={list(cfg.labels)}: set labels to "
                     "the label set of your data.")
    elif top == "field_count":
        parts.append("Rows have a different number of fields than the header: check the delimiter and quoting.")
    elif top == "missing_field":
        parts.append("Set text_columns / label_column to the file's columns.")
    elif top == "no_consent":
        parts.append(f"Rows of '{cfg.consent_column}' = no are never trained on; set consent_column='' if every row "
                     "may be.")
    return " ".join(parts) + " Each row's reason is in data/quarantine.jsonl."


@dataclass
class PrepareResult:
    counts: dict
    quarantine_reasons: dict
    audit: dict
    paths: dict
    canaries: list = field(default_factory=list)
    redactions: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)  # what data/task.json holds: kind, labels, schema, instruction

    def invariant_holds(self) -> bool:
        c = self.counts
        return c["read"] == c["train"] + c["holdout"] + c["quarantined"] + c["duplicates"]

    def accounting_table(self) -> list[dict]:
        """Rows read and where each went, per source, for the notebook."""
        return self.counts["by_source"]


@dataclass
class _Row:  # a usable row on its way through redaction, dedupe and split
    source: str
    line: int
    fields: dict
    out: dict | None = None
    canary: canary_mod.Canary | None = None


def run(cfg: PrepareConfig) -> PrepareResult:
    rd = RunDir(cfg.run_dir)
    redactor = Redactor.default(cfg.id_patterns or None)
    sources = {"input": cfg.input_path}
    if cfg.holdout_path:
        sources["holdout_file"] = cfg.holdout_path
    raw_by_source: dict[str, list[RawRow]] = {}
    for source, path in sources.items():
        raw = read_raw(path, cfg.encoding)
        if cfg.max_rows and source == "input":
            raw = raw[: cfg.max_rows]
        raw_by_source[source] = raw
    cfg, raw_by_source, input_format = apply_convention(cfg, raw_by_source)
    for source, path in sources.items():
        check_columns(cfg, raw_by_source[source], path)
    if cfg.task == "classify" and not cfg.labels:
        cfg = replace(cfg, labels=infer_labels(cfg, raw_by_source["input"]))

    quarantine, usable = [], []
    for source, raw in raw_by_source.items():
        seen_ids: dict[str, tuple[int, str]] = {}  # id -> (line, normalized text) of its first row in this source
        for r in raw:
            rejected = _reject(cfg, r)
            if not rejected and cfg.id_column and _str(r.fields.get(cfg.id_column)).strip():
                rejected = _duplicate_id(cfg, r, seen_ids)
            if rejected:
                fields = r.fields or {}
                quarantine.append({"source": source, "source_line": r.line,
                                   "id": _str(fields.get(cfg.id_column)) or None,
                                   "tenant": _str(fields.get(cfg.tenant_column)) or None if cfg.tenant_column else None,
                                   "code": rejected[0], "reason": rejected[1]})
            else:
                usable.append(_Row(source, r.line, dict(r.fields)))

    schema = cfg.schema
    if cfg.task == "extract" and not schema and usable:
        schema = infer_schema([_as_object(r.fields[cfg.label_column]) for r in usable])
    # The entity recogniser runs over every text of the file in batches first; the per-row redaction below looks
    # its results up (one row at a time through spaCy would be several times slower).
    redactor.prefetch(text for row in usable for text in _texts_to_redact(row, cfg))
    for row in usable:
        row.out = _redacted_row(row, cfg, redactor, schema)
    # Holdout-file rows go first, so a training row that repeats a golden holdout row is the one removed.
    usable.sort(key=lambda x: x.source != "holdout_file")
    kept, duplicates = dedupe(usable, cfg.near_duplicate_threshold, cfg.text_columns)
    # Canaries go into rows that survived dedupe (a planted sentence must not hide a duplicate), then those rows
    # are redacted again from their raw text: the canary passes through redaction like any customer's value.
    planted = plant_canaries(kept, cfg)
    for _, row in planted:
        row.out = _redacted_row(row, cfg, redactor, schema)
    if not cfg.holdout_path and len(kept) < min_rows(cfg):
        write_jsonl(rd.quarantine_jsonl, quarantine)  # the reasons, for the user to read
        raise DataError(f"only {len(kept)} usable rows after quarantine and dedupe; need at least "
                        f"{min_rows(cfg)}. {_quarantine_summary(cfg, raw_by_source, quarantine)}")
    train, holdout = split(kept, cfg)
    if len(train) < max(len(cfg.labels), 1) or not holdout:
        write_jsonl(rd.quarantine_jsonl, quarantine)  # the reasons, for the user to read
        raise DataError(f"only {len(train)} training and {len(holdout)} holdout rows are usable; need at least "
                        f"{max(len(cfg.labels), 1)} and 1. {_quarantine_summary(cfg, raw_by_source, quarantine)}")

    train_path = write_jsonl(rd.train_jsonl, [r.out for r in train])
    holdout_path = write_jsonl(rd.holdout_jsonl, [r.out for r in holdout])
    # Setting rows aside needs every finding, not the report's first 100.
    audit = run_audit(cfg, raw_by_source, train_path, holdout_path, planted,
                      max_findings=None if cfg.audit_findings == "quarantine" else 100)
    set_aside = []
    if not audit["passed"] and cfg.audit_findings == "quarantine":
        train, holdout, set_aside, audit = _set_aside_flagged(cfg, rd, raw_by_source, train, holdout, planted, audit)
        quarantine += set_aside
    write_jsonl(rd.quarantine_jsonl, quarantine)
    write_jsonl(rd.duplicates_jsonl, duplicates)
    task = Task(tuple(cfg.labels), cfg.instruction_text(schema=schema), cfg.task, schema or {})
    write_json(rd.task_json, task.to_dict())
    where = {id(r): "train" for r in train} | {id(r): "holdout" for r in holdout}
    flagged_ids = {q["id"] for q in set_aside}
    canary_records = [{**c.to_dict(), "row_id": row.out["id"], "source_line": row.line,
                       "file": where.get(id(row), "quarantined by the audit" if row.out["id"] in flagged_ids
                                         else "removed as duplicate")} for c, row in planted]
    write_json(rd.canaries_json, {
        "seed": cfg.seed, "per_kind": cfg.canaries_per_kind, "canaries": canary_records,
        "note": "Planted into an in-memory copy of the raw rows before redaction; the audit proves none reached "
                "train/holdout. Stage 04 probes the tuned model with each canary's prefix (exposure)."})

    counts = _counts(raw_by_source, train, holdout, quarantine, duplicates)
    write_json(rd.audit_json, audit)
    # what the written files hold: rows the audit set aside are in quarantine, and their redactions with them
    redactions = dict(sum((Counter(r.out["redactions"]) for r in [*train, *holdout]), Counter()))
    provenance = _provenance(cfg, raw_by_source, counts, train, holdout, quarantine)
    provenance["input_format"] = input_format
    write_json(rd.provenance_json, provenance)

    result = PrepareResult(counts, dict(Counter(q["code"] for q in quarantine)), audit,
                           {"train": str(train_path), "holdout": str(holdout_path),
                            "quarantine": str(rd.quarantine_jsonl),
                            "duplicates": str(rd.duplicates_jsonl),
                            "canaries": str(rd.canaries_json), "audit": str(rd.audit_json),
                            "provenance": str(rd.provenance_json)},
                           canary_records, redactions, provenance, task.to_dict())
    if not result.invariant_holds():
        raise DataError(f"row accounting does not add up: {counts}. This is a bug in kit; please report it.")
    if not audit["passed"]:
        raise PrivacyAuditError(audit_failure_message(audit))
    return result


def plant_canaries(rows: list[_Row], cfg: PrepareConfig) -> list[tuple[canary_mod.Canary, _Row]]:
    """Append each canary's sentence to the main text of a distinct, seeded-random input row (in memory only)."""
    if not cfg.canaries_per_kind:
        return []
    planted_values = canary_mod.make(cfg.seed, cfg.canaries_per_kind)
    candidates = [r for r in rows if r.source == "input"]
    if len(candidates) < len(planted_values):
        return []
    chosen = random.Random(f"plant-{cfg.seed}").sample(candidates, len(planted_values))
    main = cfg.text_columns[-1]
    for c, row in zip(planted_values, chosen):
        row.fields[main] = _str(row.fields.get(main)).rstrip() + " " + c.sentence
        row.canary = c
    return list(zip(planted_values, chosen))


def _answer(row: _Row, cfg: PrepareConfig):
    if cfg.task == "extract":
        return _as_object(row.fields[cfg.label_column])
    if cfg.task == "reply":
        return _str(row.fields.get(cfg.label_column)).strip()
    return None


def _texts_to_redact(row: _Row, cfg: PrepareConfig) -> list[str]:
    return [task_text(row.fields, cfg.text_columns), *_string_leaves(_answer(row, cfg)),
            *(_str(row.fields.get(col)) for col in cfg.field_allowlist)]


def _redacted_row(row: _Row, cfg: PrepareConfig, redactor: Redactor, schema: dict | None = None) -> dict:
    f = row.fields
    known: dict[str, list[str]] = {}
    for col, entity in cfg.known_value_columns.items():
        if _str(f.get(col)).strip():
            known.setdefault(entity, []).append(_str(f[col]))
    out = {"id": _str(f.get(cfg.id_column)) or f"{row.source}:line{row.line}"}
    # The answer is training text too (extract, reply): redacted with the ticket, so a name keeps its placeholder in
    # both. A label (classify) is one of `labels`, not free text.
    answer = _answer(row, cfg)
    red, *red_leaves = redactor.redact_many([task_text(f, cfg.text_columns), *_string_leaves(answer)], known)
    counts = Counter(red.counts())
    for r in red_leaves:
        counts.update(r.counts())
    out["text"] = red.text
    if cfg.task == "classify":
        out["label"] = _str(f.get(cfg.label_column)).strip()
    else:
        answer = _replace_leaves(answer, iter(r.text for r in red_leaves))
        out["answer"] = answer if cfg.task == "reply" else canonical_json(answer, schema)
    for col in cfg.field_allowlist:  # minimization: only allowlisted columns travel, and they are redacted too
        value = redactor.redact(_str(f.get(col)), known)
        out[col] = value.text
        counts.update(value.counts())
    out.update({"source": row.source, "source_line": row.line, "redactions": dict(counts)})
    return out


def _string_leaves(value) -> list[str]:
    """Every string inside an answer (a reply is one), depth first in key order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _string_leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _string_leaves(v)]
    return []


def _replace_leaves(value, texts):
    """`value` with its strings replaced, in `_string_leaves` order, by the next items of `texts`."""
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, dict):
        return {k: _replace_leaves(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_leaves(v, texts) for v in value]
    return value


def min_rows(cfg: PrepareConfig) -> int:
    return MIN_ROWS_PER_LABEL * len(cfg.labels) if cfg.task == "classify" else MIN_GENERATIVE_ROWS


def _shingles(text: str, k: int = 5) -> set[bytes]:
    t = normalize(text)
    return {t[i:i + k].encode() for i in range(max(1, len(t) - k + 1))}


def minhash(text: str):
    from datasketch import MinHash

    m = MinHash(num_perm=64, seed=1)
    m.update_batch(list(_shingles(text)))
    return m


def dedupe(rows: list[_Row], threshold: float,
           text_columns: tuple[str, ...] = ()) -> tuple[list[_Row], list[dict]]:
    """Drop exact (normalized) duplicates and near-duplicates (MinHash LSH over character 5-grams); keep the first.

    datasketch does the hashing and the candidate search; the candidate's estimated Jaccard similarity is checked
    against `threshold` before a row is dropped. Returns the kept rows and one record per removed row.
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=min(threshold, 0.99), num_perm=64) if threshold < 1.0 else None
    seen: dict[str, _Row] = {}
    hashes: dict[str, object] = {}
    kept, removed = [], []
    for i, row in enumerate(rows):
        # Exact: the redacted text, or the raw one (the recogniser may tag an upper-cased copy differently).
        key, raw_key = normalize(row.out["text"]), "raw:" + normalize(task_text(row.fields, text_columns))
        dup_of, kind, sim = seen.get(key) or seen.get(raw_key), "exact", 1.0
        mh = None
        if dup_of is None and lsh is not None:
            mh = minhash(row.out["text"])
            best = max(((hashes[c].jaccard(mh), c) for c in lsh.query(mh)), default=(0.0, None))
            if best[1] is not None and best[0] >= threshold:
                dup_of, kind, sim = kept[int(best[1])], "near", round(best[0], 3)
        if dup_of is not None:
            removed.append({"source": row.source, "source_line": row.line, "id": row.out["id"], "kind": kind,
                            "similarity": sim, "duplicate_of": dup_of.out["id"],
                            "duplicate_of_source": dup_of.source,
                            "reason": f"{kind} duplicate of {dup_of.source} row {dup_of.out['id']}"})
            continue
        seen[key] = seen[raw_key] = row
        if lsh is not None:
            hashes[str(len(kept))] = mh
            lsh.insert(str(len(kept)), mh)
        kept.append(row)
    return kept, removed


def split(rows: list[_Row], cfg: PrepareConfig) -> tuple[list[_Row], list[_Row]]:
    """The user's golden holdout when given, else a seeded split stratified by label."""
    if cfg.holdout_path:
        return [r for r in rows if r.source == "input"], [r for r in rows if r.source == "holdout_file"]
    from sklearn.model_selection import train_test_split

    if len(rows) < min_rows(cfg):
        raise DataError(f"only {len(rows)} usable rows after quarantine and dedupe; need at least "
                        f"{min_rows(cfg)}. See data/quarantine.jsonl for why rows were rejected.")
    labels = [r.out["label"] for r in rows] if cfg.task == "classify" else None
    stratify = labels if labels and min(Counter(labels).values()) >= 2 else None
    train, holdout = train_test_split(rows, test_size=cfg.holdout_fraction, random_state=cfg.seed, stratify=stratify)
    return list(train), list(holdout)


def cross_split_overlap(train_rows: list[dict], holdout_rows: list[dict], threshold: float) -> list[dict]:
    """Holdout rows whose text repeats (exactly or nearly) a training row: a fresh check after the split."""
    from datasketch import MinHashLSH

    exact = {normalize(r["text"]): r["id"] for r in train_rows}
    lsh = MinHashLSH(threshold=min(threshold, 0.99), num_perm=64)
    hashes = {}
    for i, r in enumerate(train_rows):
        hashes[str(i)] = minhash(r["text"])
        lsh.insert(str(i), hashes[str(i)])
    out = []
    for j, r in enumerate(holdout_rows, start=1):
        if normalize(r["text"]) in exact:
            out.append({"file": "holdout.jsonl", "row": j, "id": r["id"], "check": "holdout_leak:exact"})
            continue
        mh = minhash(r["text"])
        if any(hashes[c].jaccard(mh) >= threshold for c in lsh.query(mh)):
            out.append({"file": "holdout.jsonl", "row": j, "id": r["id"], "check": "holdout_leak:near"})
    return out


def _set_aside_flagged(cfg: PrepareConfig, rd: RunDir, raw_by_source: dict, train: list[_Row], holdout: list[_Row],
                       planted: list, full: dict) -> tuple[list[_Row], list[_Row], list[dict], dict]:
    """audit_findings="quarantine": the rows the audit (`full`, every finding) flagged leave train/holdout for the
    quarantine, each with the checks that fired (never the text); the files are written again and audited again. A
    surviving canary or a holdout text in training is no single row's fault, so the audit stays failed and prepare
    stops; so is any finding in a row a canary was planted in (part of a canary that survived is a gap in the
    redaction, not in that row)."""
    checks: dict[tuple[str, int], set[str]] = {}
    for f in full["findings"]:
        checks.setdefault((f["file"], f["row"]), set()).add(f["check"])
    canary_rows = {id(row) for _, row in planted}
    in_canary_row = any(id(row) in canary_rows and (fname, i) in checks
                        for fname, rows in (("train.jsonl", train), ("holdout.jsonl", holdout))
                        for i, row in enumerate(rows, start=1))
    if in_canary_row or any(f["check"].startswith(("canary:", "holdout_leak")) for f in full["findings"]):
        full["findings"] = full["findings"][:100]
        return train, holdout, [], full
    set_aside, kept = [], {}
    for fname, rows in (("train.jsonl", train), ("holdout.jsonl", holdout)):
        kept[fname] = []
        for i, row in enumerate(rows, start=1):
            fired = checks.get((fname, i))
            if not fired:
                kept[fname].append(row)
                continue
            set_aside.append({
                "source": row.source, "source_line": row.line, "id": row.out["id"],
                "tenant": _str(row.fields.get(cfg.tenant_column)) or None if cfg.tenant_column else None,
                "code": "audit_finding",
                "reason": f"after redaction the privacy audit still found {', '.join(sorted(fired))} in this row, so "
                          "it is neither trained on nor evaluated. If the finding is real, add a redaction or id "
                          "pattern (id_patterns) or a known-value column and prepare again to keep the row."})
    train, holdout = kept["train.jsonl"], kept["holdout.jsonl"]
    if len(train) < max(len(cfg.labels), 1) or not holdout:
        by_check = Counter(f["check"] for f in full["findings"])
        checks_found = ", ".join(f"{c} {n}" for c, n in by_check.most_common())
        raise DataError(f"the privacy audit flagged {len(set_aside)} rows ({checks_found}), "
                        f"which leaves {len(train)} training and {len(holdout)} holdout rows; fix the redaction "
                        "(id_patterns, known_value_columns) rather than quarantining that much.")
    write_jsonl(rd.train_jsonl, [r.out for r in train])
    write_jsonl(rd.holdout_jsonl, [r.out for r in holdout])
    audit = run_audit(cfg, raw_by_source, rd.train_jsonl, rd.holdout_jsonl, planted)
    audit["set_aside"] = {"rows": len(set_aside),
                          "by_check": dict(Counter(f["check"] for f in full["findings"])),
                          "note": "rows the first audit flagged, moved to quarantine.jsonl (audit_findings: "
                                  "quarantine); this report is the audit of the files without them"}
    return train, holdout, set_aside, audit


def run_audit(cfg: PrepareConfig, raw_by_source: dict, train_path: Path, holdout_path: Path,
              planted: list, max_findings: int | None = 100) -> dict:
    """The independent audit of what was written, plus the split-leak check; tied to both files' sha256."""
    known: dict[str, set[str]] = {}
    for raw in raw_by_source.values():
        for r in raw:
            for col, entity in cfg.known_value_columns.items():
                if r.fields and _str(r.fields.get(col)).strip():
                    known.setdefault(entity, set()).add(_str(r.fields[col]).strip())
    canary_values: dict[str, list[str]] = {}
    for c, _ in planted:
        canary_values.setdefault(c.kind, []).append(c.value)
    train_rows, holdout_rows = read_jsonl(train_path), read_jsonl(holdout_path)
    report = privacy_audit.audit_rows(
        {"train.jsonl": train_rows, "holdout.jsonl": holdout_rows},
        known_values={k: sorted(v) for k, v in known.items()}, canary_values=canary_values,
        id_patterns=cfg.id_patterns or DEFAULT_ID_PATTERNS, max_findings=max_findings)
    leaks = cross_split_overlap(train_rows, holdout_rows, cfg.near_duplicate_threshold)
    report["findings"] = (report["findings"] + leaks)[:max_findings]
    report["hits"] += len(leaks)
    if leaks:
        report["by_check"].update(Counter(x["check"] for x in leaks))
    report["passed"] = report["hits"] == 0
    report["holdout_leaks"] = len(leaks)
    report["canaries_found"] = sum(v for k, v in report["by_check"].items() if k.startswith("canary:"))
    report["redactor_ner"] = NER_NOTE
    report["data_sha256"] = sha256_file(train_path)
    report["holdout_sha256"] = sha256_file(holdout_path)
    report["audited_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return report


def _counts(raw_by_source, train, holdout, quarantine, duplicates) -> dict:
    by_source = []
    for source, raw in raw_by_source.items():
        by_source.append({
            "source": source, "read": len(raw), "train": sum(r.source == source for r in train),
            "holdout": sum(r.source == source for r in holdout),
            "quarantined": sum(q["source"] == source for q in quarantine),
            "duplicates": sum(d["source"] == source for d in duplicates)})
    return {"read": sum(len(r) for r in raw_by_source.values()), "train": len(train), "holdout": len(holdout),
            "quarantined": len(quarantine), "duplicates": len(duplicates),
            "no_consent": sum(q["code"] == "no_consent" for q in quarantine),
            "near_duplicates": sum(d["kind"] == "near" for d in duplicates), "by_source": by_source}


def _versions() -> dict:
    return {"kit": __version__, **package_versions(
        ("phonenumbers", "python-stdnum", "detect-secrets", "names", "datasketch", "scikit-learn", "pyarrow"))}


def _provenance(cfg, raw_by_source, counts, train, holdout, quarantine) -> dict:
    all_columns = sorted({k for raw in raw_by_source.values() for r in raw if r.fields for k in r.fields})
    kept_from = {*cfg.text_columns, cfg.label_column, cfg.id_column, *cfg.field_allowlist}
    stamps = sorted(_str(r.fields.get(cfg.timestamp_column)) for r in train + holdout
                    if cfg.timestamp_column and _str(r.fields.get(cfg.timestamp_column)))
    no_consent = Counter(q["tenant"] or "(no tenant)" for q in quarantine if q["code"] == "no_consent")
    today = datetime.now(timezone.utc)
    return {
        "purpose": cfg.purpose,
        "prepared_at": today.isoformat(timespec="seconds"),
        "retention_days": cfg.retention_days,
        "expires_on": str(today.date() + timedelta(days=cfg.retention_days)),
        "sources": [{"role": s, "path": str(p), "sha256": sha256_file(p), "rows_read": len(raw_by_source[s])}
                    for s, p in ({"input": cfg.input_path} | ({"holdout_file": cfg.holdout_path}
                                                              if cfg.holdout_path else {})).items()],
        "versions": _versions(),
        "parameters": asdict(cfg),
        "counts": counts,
        "fields_written": ["id", "text", "label" if cfg.task == "classify" else "answer", *cfg.field_allowlist, "source", "source_line", "redactions"],
        "fields_dropped": [c for c in all_columns if c not in kept_from],
        "text_built_from": list(cfg.text_columns),
        "consent": {"column": cfg.consent_column or None, "rows_excluded": counts["no_consent"],
                    "rows_excluded_by_tenant": dict(no_consent)},
        "timestamps": {"column": cfg.timestamp_column or None, "first": stamps[0] if stamps else None,
                       "last": stamps[-1] if stamps else None},
        "redaction_ner": NER_NOTE,
    }


def check_audit(run_dir: str | Path) -> dict:
    """The privacy gate of training (`kit.rundir.RunDir.check_audit`)."""
    return RunDir(run_dir).check_audit()
