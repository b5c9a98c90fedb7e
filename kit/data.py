"""Prepare stage: raw tickets in, redacted train/holdout files out, with nothing lost.

In: a CSV, JSONL or Parquet file of tickets. Out, inside the run directory:
`data/train.jsonl`, `data/holdout.jsonl`, `data/quarantine.jsonl` (every rejected row with its source line and a
reason), `data/task.json` (labels and the instruction every later stage prompts with), `data/audit.json` (an
independent re-scan of what was written) and `data/provenance.json` (purpose, source hashes, parameters).

Invariant, checked here and shown in the notebook: rows read = train + holdout + quarantined + duplicates removed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from kit import KitError, __version__
from kit.io import read_json, read_jsonl, sha256_file, write_json, write_jsonl
from kit.redact import Redactor

DEFAULT_LABELS = ["claim_status", "document_request", "billing_dispute", "agent_escalation"]
DEFAULT_INSTRUCTION = ("Route this insurance support email to exactly one lane: {labels}. "
                       "Answer with the lane name only.")


class DataError(KitError):
    """The input file or the prepare settings are wrong."""


class PrivacyAuditError(KitError):
    """Personal data was found in a file that is about to be used for training or evaluation."""


@dataclass(frozen=True)
class PrepareConfig:
    run_dir: str
    input_path: str
    purpose: str  # why this data is used; recorded in provenance.json
    text_columns: tuple[str, ...] = ("subject", "body")
    label_column: str = "label"
    id_column: str = "ticket_id"
    labels: tuple[str, ...] = tuple(DEFAULT_LABELS)
    known_value_columns: dict = field(default_factory=lambda: {
        "customer_name": "PERSON", "customer_email": "EMAIL", "policy_number": "POLICY_NUMBER"})
    holdout_fraction: float = 0.2
    max_rows: int = 0  # 0 = all rows
    max_chars: int = 4000
    retention_days: int = 90
    seed: int = 0

    def __post_init__(self):
        if not Path(self.input_path).exists():
            raise DataError(f"input_path '{self.input_path}' does not exist; point it at a CSV, JSONL or Parquet file.")
        if Path(self.input_path).suffix.lower() not in (".csv", ".jsonl", ".json", ".parquet"):
            raise DataError(f"input_path '{self.input_path}' has an unsupported extension; use .csv, .jsonl or .parquet.")
        if not 0.05 <= self.holdout_fraction <= 0.5:
            raise DataError(f"holdout_fraction={self.holdout_fraction} is outside 0.05–0.5.")
        if len(set(self.labels)) < 2:
            raise DataError("labels must name at least two distinct lanes.")
        if not self.purpose.strip():
            raise DataError("purpose is empty; state why this data is used (it is recorded with the data).")


@dataclass
class RawRow:
    line: int  # 1-based line in the source file where the record starts
    fields: dict | None
    problem: str | None = None


def read_raw(path: str | Path) -> list[RawRow]:
    """Every record of the file, well-formed or not; broken ones carry a `problem` instead of failing the read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [RawRow(i + 2, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if suffix in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if _has_bad_bytes(line):
                rows.append(RawRow(i, None, "bytes that are not valid UTF-8"))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                rows.append(RawRow(i, None, f"invalid JSON ({e.msg} at column {e.colno})"))
                continue
            rows.append(RawRow(i, obj) if isinstance(obj, dict) else RawRow(i, None, "JSON line is not an object"))
        return rows
    return _read_csv(text)


def _has_bad_bytes(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _read_csv(text: str) -> list[RawRow]:
    # csv.reader stops at the first malformed record; to keep every other row we restart it after the bad one.
    # Line tracking by hand is needed because a quoted field may span several physical lines.
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    rows, start = [], 1
    while start < len(lines):
        reader = csv.reader(io.StringIO("".join(lines[start:])), strict=True)
        consumed = 0
        try:
            for rec in reader:
                line_no = start + consumed + 1
                consumed = reader.line_num
                if not rec:
                    continue
                if len(rec) != len(header):
                    rows.append(RawRow(line_no, None, f"expected {len(header)} fields, found {len(rec)}"))
                elif any(_has_bad_bytes(v) for v in rec):
                    rows.append(RawRow(line_no, None, "bytes that are not valid UTF-8"))
                else:
                    rows.append(RawRow(line_no, dict(zip(header, rec))))
            break
        except csv.Error as e:
            bad = start + max(reader.line_num, consumed + 1)
            rows.append(RawRow(start + consumed + 1, None, f"broken CSV quoting ({e})"))
            start = bad
    return rows


def normalize(text: str) -> str:
    """Key for exact-duplicate detection: case, whitespace and punctuation do not make a new ticket."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def task_text(fields: dict, text_columns: tuple[str, ...]) -> str:
    parts = []
    for col in text_columns:
        value = (fields.get(col) or "").strip()
        if value:
            parts.append(f"{col.capitalize()}: {value}" if col != text_columns[-1] else value)
    return "\n\n".join(parts)


@dataclass
class PrepareResult:
    counts: dict
    quarantine_reasons: dict
    audit: dict
    paths: dict

    def invariant_holds(self) -> bool:
        c = self.counts
        return c["read"] == c["train"] + c["holdout"] + c["quarantined"] + c["duplicates"]


def run(cfg: PrepareConfig) -> PrepareResult:
    from sklearn.model_selection import train_test_split

    run_dir = Path(cfg.run_dir)
    data_dir = run_dir / "data"
    redactor = Redactor.default()
    raw = read_raw(cfg.input_path)
    if cfg.max_rows:
        raw = raw[: cfg.max_rows]
    if raw and raw[0].fields is not None:
        missing = [c for c in (*cfg.text_columns, cfg.label_column, cfg.id_column) if c not in raw[0].fields]
        if missing:
            raise DataError(f"input_path '{cfg.input_path}' has no column(s) {missing}; found {list(raw[0].fields)}. "
                            "Set text_columns / label_column / id_column to the names your file uses.")

    good, quarantine, seen, duplicates = [], [], {}, 0
    for r in raw:
        reason = r.problem
        if reason is None:
            label = str(r.fields.get(cfg.label_column) or "").strip()
            text = task_text(r.fields, cfg.text_columns)
            body = str(r.fields.get(cfg.text_columns[-1]) or "").strip()
            if not body:
                reason = f"empty text in '{cfg.text_columns[-1]}'"
            elif label not in cfg.labels:
                reason = "unknown label (not one of `labels`)"
            elif len(text) > cfg.max_chars:
                reason = f"text longer than max_chars={cfg.max_chars}"
        if reason:
            quarantine.append({"source_line": r.line, "id": (r.fields or {}).get(cfg.id_column), "reason": reason})
            continue
        known = {}
        for col, entity in cfg.known_value_columns.items():
            if r.fields.get(col):
                known.setdefault(entity, []).append(str(r.fields[col]))
        red = redactor.redact(text, known)
        key = normalize(red.text)
        if key in seen:
            duplicates += 1
            continue
        seen[key] = r.line
        good.append({"id": str(r.fields.get(cfg.id_column) or f"line{r.line}"), "text": red.text, "label": label,
                     "source_line": r.line, "redactions": red.counts()})

    if len(good) < 2 * len(cfg.labels):
        raise DataError(f"only {len(good)} usable rows in '{cfg.input_path}' after quarantine; need at least "
                        f"{2 * len(cfg.labels)}. See data/quarantine.jsonl for why rows were rejected.")
    labels_of = [g["label"] for g in good]
    stratify = labels_of if min(labels_of.count(lab) for lab in set(labels_of)) >= 2 else None
    train, holdout = train_test_split(good, test_size=cfg.holdout_fraction, random_state=cfg.seed, stratify=stratify)

    train_path = write_jsonl(data_dir / "train.jsonl", train)
    holdout_path = write_jsonl(data_dir / "holdout.jsonl", holdout)
    write_jsonl(data_dir / "quarantine.jsonl", quarantine)
    instruction = DEFAULT_INSTRUCTION.format(labels=", ".join(cfg.labels))
    write_json(data_dir / "task.json", {"labels": list(cfg.labels), "system": instruction})
    audit = audit_files([train_path, holdout_path], redactor)
    audit["data_sha256"] = sha256_file(train_path)
    write_json(data_dir / "audit.json", audit)

    counts = {"read": len(raw), "train": len(train), "holdout": len(holdout), "quarantined": len(quarantine),
              "duplicates": duplicates}
    reasons: dict[str, int] = {}
    for q in quarantine:
        key = q["reason"].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    write_json(data_dir / "provenance.json", {
        "purpose": cfg.purpose, "source": str(cfg.input_path), "source_sha256": sha256_file(cfg.input_path),
        "kit_version": __version__, "parameters": asdict(cfg), "counts": counts,
        "fields_kept": ["id", "text", "label"], "expires_on": str(date.today() + timedelta(days=cfg.retention_days)),
    })
    result = PrepareResult(counts, reasons, audit, {"train": str(train_path), "holdout": str(holdout_path),
                                                     "quarantine": str(data_dir / "quarantine.jsonl")})
    if not result.invariant_holds():
        raise DataError(f"row accounting does not add up: {counts}. This is a bug in kit; please report it.")
    return result


def audit_files(paths: list[Path], redactor: Redactor) -> dict:
    """An independent second pass: scan written files for anything the detectors still find.

    Returns counts per entity type and the (file, row, entity) of each hit; never the text itself.
    """
    hits = []
    for path in paths:
        for i, row in enumerate(read_jsonl(path)):
            for s, e, entity in redactor.find(re.sub(r"<[A-Z_]+_\d+>", " ", row["text"])):
                hits.append({"file": Path(path).name, "row": i + 1, "id": row["id"], "entity": entity})
    by_entity: dict[str, int] = {}
    for h in hits:
        by_entity[h["entity"]] = by_entity.get(h["entity"], 0) + 1
    return {"passed": not hits, "hits": len(hits), "by_entity": by_entity, "findings": hits[:50],
            "ner_model": "none installed: person names are found only as known values from structured columns"}


def check_audit(run_dir: str | Path) -> dict:
    """Raise unless the privacy audit passed for the train file that is there now."""
    data_dir = Path(run_dir) / "data"
    audit_path = data_dir / "audit.json"
    if not audit_path.exists():
        raise PrivacyAuditError(f"no privacy audit at {audit_path}; run notebook 02_prepare for this run first.")
    audit = read_json(audit_path)
    if not audit["passed"]:
        rows = ", ".join(f"{h['file']} row {h['row']} ({h['entity']})" for h in audit["findings"][:10])
        raise PrivacyAuditError(f"the privacy audit found {audit['hits']} unredacted item(s): {rows}. Add a "
                                "redaction pattern or known-value column for them and re-run 02_prepare.")
    if audit["data_sha256"] != sha256_file(data_dir / "train.jsonl"):
        raise PrivacyAuditError(f"{data_dir / 'train.jsonl'} changed after its privacy audit; re-run 02_prepare.")
    return audit
