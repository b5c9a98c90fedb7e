import json

import pytest

from conftest import REPO, read_jsonl
from kit import data
from kit.io import write_text_atomic


def _prepare(tmp_path, input_path, **kw):
    return data.run(data.PrepareConfig(run_dir=str(tmp_path), input_path=str(input_path), purpose="tests", **kw))


def test_read_raw_keeps_every_record_of_a_broken_csv():
    rows = data.read_raw(REPO / "data_samples" / "bad_tickets.csv")
    problems = {r.line: r.problem for r in rows}
    assert [r.fields["ticket_id"] for r in rows if r.fields] == ["B001", "B002", "B003", "B006"]
    assert "not valid UTF-8" in problems[5] and "quoting" in problems[6]


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(tmp_path):
    good = (REPO / "data_samples" / "tickets.csv").read_bytes()
    bad = (REPO / "data_samples" / "bad_tickets.csv").read_bytes().split(b"\n", 1)[1]
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(good + bad)
    res = _prepare(tmp_path / "run", mixed)
    assert res.invariant_holds()
    q = read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl")
    reasons = " | ".join(x["reason"] for x in q)
    assert len(q) == 4
    for fragment in ("empty text", "unknown label", "not valid UTF-8", "quoting"):
        assert fragment in reasons
    assert all("source_line" in x for x in q)


def test_jsonl_with_an_invalid_line_is_quarantined(tmp_path):
    src = tmp_path / "t.jsonl"
    lines = (REPO / "data_samples" / "tickets.jsonl").read_text().splitlines()[:40]
    src.write_text("\n".join(lines[:10] + ["{not json"] + lines[10:]) + "\n")
    res = _prepare(tmp_path / "run", src)
    assert res.counts["quarantined"] == 1 and res.invariant_holds()
    assert read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl")[0]["source_line"] == 11


def test_missing_label_column_error_names_column_and_fix(tmp_path):
    with pytest.raises(data.DataError, match=r"no column\(s\) \['category'\].*Set text_columns / label_column"):
        _prepare(tmp_path, REPO / "data_samples" / "tickets.csv", label_column="category")


def test_outputs_contain_no_raw_pii_from_structured_columns(tmp_path):
    _prepare(tmp_path, REPO / "data_samples" / "tickets.csv", max_rows=200)
    src = data.read_raw(REPO / "data_samples" / "tickets.csv")[:200]
    written = (tmp_path / "data" / "train.jsonl").read_text() + (tmp_path / "data" / "holdout.jsonl").read_text()
    for r in src:
        assert r.fields["customer_email"] not in written
        assert r.fields["policy_number"] not in written
    assert json.loads((tmp_path / "data" / "audit.json").read_text())["passed"]


def test_split_is_stratified(tmp_path):
    res = _prepare(tmp_path, REPO / "data_samples" / "tickets.csv")
    hold = [r["label"] for r in read_jsonl(res.paths["holdout"])]
    counts = {lab: hold.count(lab) for lab in set(hold)}
    assert max(counts.values()) - min(counts.values()) <= 2


def test_audit_gate_refuses_a_train_file_changed_after_the_audit(tmp_path):
    _prepare(tmp_path, REPO / "data_samples" / "tickets.csv", max_rows=80)
    data.check_audit(tmp_path)
    train = tmp_path / "data" / "train.jsonl"
    write_text_atomic(train, train.read_text() + json.dumps({"id": "x", "text": "hi", "label": "claim_status"}) + "\n")
    with pytest.raises(data.PrivacyAuditError, match="changed after its privacy audit"):
        data.check_audit(tmp_path)


def test_audit_gate_refuses_a_failed_audit_naming_rows(tmp_path):
    _prepare(tmp_path, REPO / "data_samples" / "tickets.csv", max_rows=80)
    train = tmp_path / "data" / "train.jsonl"
    write_text_atomic(train, json.dumps({"id": "x", "text": "call +44 7700 900123", "label": "claim_status"}) + "\n")
    from kit.redact import Redactor

    audit = data.audit_files([train], Redactor.default())
    audit["data_sha256"] = "irrelevant"
    write_text_atomic(tmp_path / "data" / "audit.json", json.dumps(audit))
    with pytest.raises(data.PrivacyAuditError, match=r"train.jsonl row 1 \(PHONE\)"):
        data.check_audit(tmp_path)


def test_missing_audit_says_which_notebook_to_run(tmp_path):
    with pytest.raises(data.PrivacyAuditError, match="run notebook 02_prepare"):
        data.check_audit(tmp_path)
