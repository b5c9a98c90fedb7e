"""Files in and out: atomic writes, JSON Lines and hashing shared by the stages, and reading the data files a team
hands in (the prepare stage's input and the monitor's batches).

`read_raw` reads a CSV (any of , ; tab | as delimiter, UTF-8 with or without BOM, or the `encoding` you name), JSONL,
JSON array or Parquet file record by record: a broken record becomes a `RawRow` with a `problem` (quarantined by the
caller), a file in the wrong encoding or shape is refused as a whole with a `DataError` that names the setting.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from kit.errors import KitError


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write to a temporary file beside `path`, then rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def package_versions(names) -> dict:
    """{distribution: installed version, or None when it is not installed}, for the records stages write."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --- reading the data files a team hands in ----------------------------------------------------------------------

class DataError(KitError):
    """The input file or the prepare settings are wrong."""


@dataclass
class RawRow:
    line: int  # 1-based line in the source file where the record starts (record number for Parquet)
    fields: dict | None
    problem: str | None = None
    code: str | None = None


MAX_BAD_BYTES_SHARE = 0.2  # above this share of records with invalid UTF-8, the file's encoding is what is wrong


def read_raw(path: str | Path, encoding: str = "utf-8") -> list[RawRow]:
    """Every record of the file, well-formed or not; broken ones carry a `problem` instead of failing the read.

    A file in another encoding than `encoding` is refused as a whole, naming the setting, rather than quarantined
    record by record; a UTF-8 byte-order mark (Excel's "CSV UTF-8") is skipped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(f"'{path}' is not a readable Parquet file ({type(e).__name__}); re-export it.") from None
        return [RawRow(i + 1, r) for i, r in enumerate(table.to_pylist())]
    data = path.read_bytes()
    text = _decode(data, path, encoding)
    if suffix == ".json" and text.lstrip().startswith(("[", "{")):
        rows = _read_json_document(text, path)
    elif suffix in (".jsonl", ".json"):
        rows = _read_jsonl(text)
    else:
        rows = _read_csv(text)
    bad = sum(r.code == "bad_bytes" for r in rows)
    if bad >= 2 and bad > MAX_BAD_BYTES_SHARE * len(rows):
        raise DataError(
            f"{bad} of {len(rows)} records in '{path}' are not valid {encoding}: the file is in another encoding. "
            f"{_encoding_hint(data)}")
    return rows


def _decode(data: bytes, path: Path, encoding: str) -> str:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data.decode("utf-8", errors="surrogateescape")  # invalid bytes are marked, their records quarantined
    try:
        return data.decode(encoding)
    except LookupError:
        raise DataError(f"encoding='{encoding}' is not an encoding Python knows; use e.g. utf-8, cp1252, "
                        "latin-1.") from None
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"'{path}' is not valid {encoding} (line {line}); set encoding to the file's encoding, or "
                        "save it as UTF-8.") from None


def _encoding_hint(data: bytes) -> str:
    """Which setting would read the file: Windows-1252 is what older Excel versions save CSV as."""
    try:
        data.decode("cp1252")
        likely = "Set encoding='cp1252' (Windows-1252 / Latin-1, what older Excel versions save), "
    except UnicodeDecodeError:
        likely = "Set encoding to the file's encoding, "
    return likely + "or save the file as UTF-8 (Excel: 'CSV UTF-8')."


def _read_json_document(text: str, path: Path) -> list[RawRow]:
    """A .json file holding one JSON document: an array of row objects is read; anything else is refused."""
    import json

    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(text)  # not one document: perhaps JSON Lines under a .json name
    expects = "kit reads JSON Lines (one object per line) or a JSON array of objects, one per row"
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        where = f" (its key(s) {lists} hold lists: save the rows' list itself)" if lists else ""
        raise DataError(f"'{path}' holds a single JSON object{where}; {expects}.")
    if not isinstance(doc, list):
        raise DataError(f"'{path}' holds a JSON {type(doc).__name__}; {expects}.")
    return [RawRow(i, obj) if isinstance(obj, dict) else
            RawRow(i, None, "array element is not an object", "not_an_object") for i, obj in enumerate(doc, start=1)]


def _read_jsonl(text: str) -> list[RawRow]:
    import json

    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if _has_bad_bytes(line):
            rows.append(RawRow(i, None, "bytes that are not valid UTF-8", "bad_bytes"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append(RawRow(i, None, f"invalid JSON ({e.msg} at column {e.colno})", "bad_json"))
            continue
        rows.append(RawRow(i, obj) if isinstance(obj, dict) else RawRow(i, None, "JSON line is not an object",
                                                                          "not_an_object"))
    return rows


def _has_bad_bytes(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _read_csv(text: str) -> list[RawRow]:
    # csv.reader stops at the first malformed record; to keep every other row we restart it after the bad one.
    # Line tracking by hand is needed because a quoted field may span several physical lines.
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    delimiter = _delimiter(lines[0])
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    rows, start = [], 1
    while start < len(lines):
        reader = csv.reader(io.StringIO("".join(lines[start:])), delimiter=delimiter, strict=True)
        consumed = 0
        try:
            for rec in reader:
                line_no = start + consumed + 1
                consumed = reader.line_num
                if not rec:
                    continue
                if len(rec) != len(header):
                    rows.append(RawRow(line_no, None, f"expected {len(header)} fields, found {len(rec)}",
                                       "field_count"))
                elif any(_has_bad_bytes(v) for v in rec):
                    rows.append(RawRow(line_no, None, "bytes that are not valid UTF-8", "bad_bytes"))
                else:
                    rows.append(RawRow(line_no, dict(zip(header, rec))))
            break
        except csv.Error as e:
            bad = start + max(reader.line_num, consumed + 1)
            rows.append(RawRow(start + consumed + 1, None, f"broken CSV quoting ({e})", "bad_quoting"))
            start = bad
    return rows


def _delimiter(header_line: str) -> str:
    """The CSV delimiter, sniffed from the header: ',' and also ';' (European Excel), tab and '|'."""
    try:
        return csv.Sniffer().sniff(header_line, delimiters=",;\t|").delimiter
    except csv.Error:  # a one-column file: nothing to sniff
        return ","
