import json
import socket
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, read_jsonl

from kit.io import read_raw, write_text_atomic
from kit.stages import prepare
from tools import synth

SAMPLES = REPO / "data_samples"


def _prepare(run_dir, input_path, **kw):
    kw.setdefault("purpose", "tests")
    return prepare.run(prepare.PrepareConfig(run_dir=str(run_dir), input_path=str(input_path), **kw))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One prepare run over the first 240 sample rows, shared by the read-only tests below."""
    run_dir = tmp_path_factory.mktemp("prepared")
    res = _prepare(run_dir, SAMPLES / "tickets.csv", max_rows=240)
    return run_dir, res


def _mixed_csv(tmp_path, n_good=120):
    """The first n_good sample tickets (whole records: bodies span lines) followed by the bad rows."""
    import csv
    import io

    records = list(csv.reader(io.StringIO((SAMPLES / "tickets.csv").read_text(encoding="utf-8"))))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records[: n_good + 1])
    bad = (SAMPLES / "bad_tickets.csv").read_bytes().split(b"\n", 1)[1]
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(out.getvalue().encode() + bad)
    return mixed


def test_read_raw_keeps_every_record_of_a_broken_csv():
    rows = read_raw(SAMPLES / "bad_tickets.csv")
    problems = {r.line: r.code for r in rows}
    assert [r.fields["ticket_id"] for r in rows if r.fields] == ["B001", "B002", "B003", "B006", "B007", "B008",
                                                                 "B009", "B010"]
    assert problems[5] == "bad_bytes" and problems[6] == "bad_quoting"


def test_bad_input_file_is_fully_accounted_for_with_a_reason_per_row(tmp_path):
    res = _prepare(tmp_path / "run", _mixed_csv(tmp_path))
    assert res.invariant_holds()
    q = {x["id"] or f"line{x['source_line']}": x for x in read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl")}
    codes = {k: v["code"] for k, v in q.items()}
    assert codes["B002"] == "empty_text" and codes["B003"] == "unknown_label" and codes["B007"] == "too_long"
    assert codes["B008"] == "no_consent" and codes["B009"] == "bad_consent_value" and codes["B010"] == "bad_timestamp"
    assert sorted(c for k, c in codes.items() if k.startswith("line")) == ["bad_bytes", "bad_quoting"]
    written = {r["id"] for r in read_jsonl(res.paths["train"]) + read_jsonl(res.paths["holdout"])}
    assert {"B001", "B006"} <= written
    assert all(x["source_line"] and x["reason"] for x in q.values())
    assert res.counts["no_consent"] == sum(c == "no_consent" for c in codes.values())


def test_bad_jsonl_lines_are_quarantined_by_kind(tmp_path):
    src = tmp_path / "t.jsonl"
    sample = (SAMPLES / "tickets.jsonl").read_bytes().splitlines(keepends=True)[:60]
    src.write_bytes(b"".join(sample) + (SAMPLES / "bad_tickets.jsonl").read_bytes())
    res = _prepare(tmp_path / "run", src)
    assert res.invariant_holds()
    codes = sorted(x["code"] for x in read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl"))
    assert [c for c in codes if c != "no_consent"] == ["bad_bytes", "bad_json", "missing_field", "not_an_object",
                                                       "unknown_label"]


def test_parquet_input_reads_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()[:80]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    res = _prepare(tmp_path / "run", tmp_path / "t.parquet")
    assert res.counts["read"] == 80 and res.invariant_holds()


def test_column_mapping_renamed_columns_work(tmp_path):
    rows = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()[:80]]
    renamed = [{"key": r["ticket_id"], "message": r["body"], "lane": r["label"], "org": r["tenant_id"],
                "ok_to_train": r["training_consent"], "name": r["customer_name"]} for r in rows]
    src = tmp_path / "renamed.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in renamed))
    res = _prepare(tmp_path / "run", src, text_columns=["message"], label_column="lane", id_column="key",
                   tenant_column="org", consent_column="ok_to_train", timestamp_column="",
                   known_value_columns={"name": "PERSON"})
    assert res.invariant_holds() and res.counts["train"] > 0


def test_missing_label_column_error_names_column_and_fix(tmp_path):
    with pytest.raises(prepare.DataError, match=r"no column\(s\) \['category'\].*Set label_column"):
        _prepare(tmp_path, SAMPLES / "tickets.csv", label_column="category")


def test_missing_consent_column_error_says_how_to_opt_out(tmp_path):
    with pytest.raises(prepare.DataError, match=r"consent_column=''"):
        _prepare(tmp_path, SAMPLES / "tickets.csv", consent_column="gdpr_ok")


def test_bad_id_pattern_is_a_config_error(tmp_path):
    with pytest.raises(prepare.DataError, match=r"id_patterns\['ORDER_ID'\] is not a valid regular expression"):
        _prepare(tmp_path, SAMPLES / "tickets.csv", id_patterns={"ORDER_ID": "ORD-(\\d+"})


def test_outputs_contain_no_raw_values_from_structured_columns(prepared):
    run_dir, _ = prepared
    src = read_raw(SAMPLES / "tickets.csv")[:240]
    written = (run_dir / "data" / "train.jsonl").read_text() + (run_dir / "data" / "holdout.jsonl").read_text()
    for r in src:
        assert r.fields["customer_email"] not in written
        assert r.fields["policy_number"] not in written
        assert r.fields["customer_name"] not in written
    assert json.loads((run_dir / "data" / "audit.json").read_text())["passed"]


def test_minimization_drops_fields_not_allowlisted(prepared, tmp_path):
    run_dir, res = prepared
    row = read_jsonl(res.paths["train"])[0]
    assert set(row) == {"id", "text", "label", "source", "source_line", "redactions"}
    assert "customer_email" in res.provenance["fields_dropped"]
    res2 = _prepare(tmp_path, SAMPLES / "tickets.csv", max_rows=80, field_allowlist=["tenant_id", "received_at"])
    assert {"tenant_id", "received_at"} <= set(read_jsonl(res2.paths["train"])[0])


def test_provenance_records_purpose_sources_versions_and_expiry(prepared):
    run_dir, _ = prepared
    prov = json.loads((run_dir / "data" / "provenance.json").read_text())
    assert prov["purpose"] == "tests" and prov["retention_days"] == 90
    assert prov["expires_on"] > prov["prepared_at"][:10]
    assert len(prov["sources"][0]["sha256"]) == 64 and prov["versions"]["kit"]
    assert prov["consent"]["rows_excluded"] == prov["counts"]["no_consent"] > 0
    assert prov["consent"]["rows_excluded_by_tenant"] == {"bluefin-assurance": prov["counts"]["no_consent"]}


def test_canaries_are_planted_recorded_and_absent_from_outputs(prepared):
    run_dir, res = prepared
    record = json.loads((run_dir / "data" / "canaries.json").read_text())
    assert len(record["canaries"]) == 6 and {c["kind"] for c in record["canaries"]} == {"card", "policy", "person"}
    written = (run_dir / "data" / "train.jsonl").read_text() + (run_dir / "data" / "holdout.jsonl").read_text()
    for c in record["canaries"]:
        assert c["value"] not in written and c["row_id"] and c["file"] in ("train", "holdout")
    assert res.audit["canaries_checked"] == 6 and res.audit["canaries_found"] == 0


def test_split_is_stratified_and_has_no_text_in_both_files(prepared):
    _, res = prepared
    hold = [r["label"] for r in read_jsonl(res.paths["holdout"])]
    every = hold + [r["label"] for r in read_jsonl(res.paths["train"])]
    for lab in set(every):  # each lane's share of the holdout equals its share of the data, within rounding
        assert abs(hold.count(lab) - every.count(lab) * len(hold) / len(every)) <= 1
    train_texts = {prepare.normalize(r["text"]) for r in read_jsonl(res.paths["train"])}
    assert not train_texts & {prepare.normalize(r["text"]) for r in read_jsonl(res.paths["holdout"])}
    assert res.audit["holdout_leaks"] == 0


def test_near_duplicates_are_removed_with_a_reason(tmp_path):
    rows = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()[:60]]
    base = next(r for r in rows if len(r["body"]) > 200 and r["training_consent"] == "yes")
    near = dict(base, ticket_id="NEAR1", body=base["body"].replace(".", "!", 1) + " ok")
    exact = dict(base, ticket_id="EXACT1", body=base["body"].upper())
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows + [near, exact]))
    res = _prepare(tmp_path / "run", src)
    dups = {d["id"]: d for d in read_jsonl(res.paths["duplicates"])}
    assert dups["NEAR1"]["kind"] == "near" and dups["NEAR1"]["duplicate_of"] == base["ticket_id"]
    assert dups["EXACT1"]["kind"] == "exact"
    assert res.invariant_holds()


def test_holdout_path_is_used_as_the_holdout_and_training_copies_of_it_are_removed(tmp_path):
    lines = (SAMPLES / "tickets.jsonl").read_text().splitlines()
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(lines[100:140]) + "\n")
    train_src = tmp_path / "train.jsonl"
    train_src.write_text("\n".join(lines[:100] + lines[100:105]) + "\n")  # five golden rows leak into the input
    res = _prepare(tmp_path / "run", train_src, holdout_path=str(golden))
    hold_ids = {r["id"] for r in read_jsonl(res.paths["holdout"])}
    golden_ids = {json.loads(x)["ticket_id"] for x in lines[100:140] if json.loads(x)["training_consent"] == "yes"}
    assert hold_ids == golden_ids
    assert not hold_ids & {r["id"] for r in read_jsonl(res.paths["train"])}
    leaked = [d for d in read_jsonl(res.paths["duplicates"]) if d["duplicate_of_source"] == "holdout_file"]
    assert len(leaked) == sum(json.loads(x)["training_consent"] == "yes" for x in lines[100:105])
    assert res.counts["read"] == 145 and res.invariant_holds()


def test_prepare_makes_no_network_call(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("prepare tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    res = _prepare(tmp_path, _mixed_csv(tmp_path, 80))
    assert res.audit["passed"]


def _leaking_file(tmp_path, monkeypatch):
    """Another customer's full name in row 3, with no cue and neither part in the census gazetteer, and the entity
    recogniser made blind (it would find this one): the redactor scrubs only this row's own known values, the audit
    checks every known value of the file."""
    from kit.privacy import ner
    from kit.privacy.redact import Redactor

    monkeypatch.setattr(ner.EntityRecogniser, "find", lambda self, text: [])

    census = next(d for d in Redactor.default().detectors if d.name == "person_census")
    rows = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()[:60]]
    rows = [r for r in rows if r["training_consent"] == "yes"]
    other = next(r["customer_name"] for r in rows[4:] if not list(census.find(f"I think {r['customer_name']} had")))
    rows[3]["body"] += f" I think {other} had the same problem."
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src, rows[3]["ticket_id"]


def test_a_leak_the_redactor_misses_fails_prepare_naming_row_and_field(tmp_path, monkeypatch):
    src, leaking_id = _leaking_file(tmp_path, monkeypatch)
    with pytest.raises(prepare.PrivacyAuditError, match=rf"id {leaking_id} field 'text' \(known_value:PERSON\)"
                                                        r".*audit_findings: quarantine"):
        _prepare(tmp_path / "run", src, canaries_per_kind=0)
    with pytest.raises(prepare.PrivacyAuditError, match="unredacted"):
        prepare.check_audit(tmp_path / "run")


def test_audit_findings_quarantine_sets_the_flagged_row_aside_and_trains_on_the_rest(tmp_path, monkeypatch):
    src, leaking_id = _leaking_file(tmp_path, monkeypatch)
    res = _prepare(tmp_path / "run", src, canaries_per_kind=0, audit_findings="quarantine")
    # With the recogniser blind, another row's street address leaks too (the audit's own street words catch it).
    assert res.audit["passed"] and res.audit["set_aside"]["rows"] == 2
    assert res.audit["set_aside"]["by_check"]["known_value:PERSON"] == 1
    assert prepare.check_audit(tmp_path / "run")["passed"]  # the gate of training accepts the files as written
    data = tmp_path / "run" / "data"
    written = {json.loads(x)["id"] for f in ("train.jsonl", "holdout.jsonl") for x in (data / f).read_text().splitlines()}
    quarantined = [json.loads(x) for x in (data / "quarantine.jsonl").read_text().splitlines()]
    flagged = [q for q in quarantined if q["code"] == "audit_finding"]
    assert leaking_id in [q["id"] for q in flagged] and len(flagged) == 2 and leaking_id not in written
    assert "known_value:PERSON" in next(q["reason"] for q in flagged if q["id"] == leaking_id)
    assert not {q["id"] for q in flagged} & written
    assert res.invariant_holds()
    assert res.counts["quarantined"] == len(quarantined) and len(written) == res.counts["train"] + res.counts["holdout"]
    # The redaction counts are those of the written files: the rows set aside took theirs to quarantine.
    in_files = sum((Counter(json.loads(x)["redactions"]) for f in ("train.jsonl", "holdout.jsonl")
                    for x in (data / f).read_text().splitlines()), Counter())
    assert res.redactions == dict(in_files) and sum(in_files.values()) > 0


def test_audit_findings_quarantine_still_stops_on_a_surviving_canary(tmp_path, monkeypatch):
    # A canary that survives means the redactor misses that format in every row: setting one row aside hides that.
    from kit.privacy import redact

    real_find = redact.Redactor.find
    monkeypatch.setattr(redact.Redactor, "find",
                        lambda self, text, known=None: [s for s in real_find(self, text, known) if s[2] != "PERSON"])
    with pytest.raises(prepare.PrivacyAuditError, match=r"\(canary:person\)") as err:
        _prepare(tmp_path, SAMPLES / "tickets.csv", max_rows=80, audit_findings="quarantine")
    assert "audit_findings: quarantine" not in str(err.value)


def test_audit_findings_quarantine_still_stops_on_any_finding_in_a_canary_row(tmp_path, monkeypatch):
    # Part of a canary surviving would trip another check in its row: that is a gap in the redaction, not in the row.
    real = prepare.run_audit

    def with_a_finding_in_the_canary_row(cfg, raw, train_path, holdout_path, planted, max_findings=100):
        report = real(cfg, raw, train_path, holdout_path, planted, max_findings)
        ids = [json.loads(x)["id"] for x in Path(train_path).read_text().splitlines()]
        row_id = next(row.out["id"] for _, row in planted if row.out["id"] in ids)
        report["findings"].append({"file": "train.jsonl", "row": ids.index(row_id) + 1, "id": row_id,
                                   "field": "text", "check": "person_name"})
        report["hits"] += 1
        report["passed"] = False
        return report

    monkeypatch.setattr(prepare, "run_audit", with_a_finding_in_the_canary_row)
    with pytest.raises(prepare.PrivacyAuditError, match="person_name"):
        _prepare(tmp_path, SAMPLES / "tickets.csv", max_rows=80, audit_findings="quarantine")
    assert not [q for q in (json.loads(x) for x in (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines())
                if q["code"] == "audit_finding"]


def test_audit_findings_takes_stop_or_quarantine():
    with pytest.raises(prepare.DataError, match="audit_findings='skip' is not one of stop, quarantine"):
        prepare.PrepareConfig(run_dir="r", input_path=str(SAMPLES / "tickets.csv"), purpose="t", audit_findings="skip")


def test_audit_gate_refuses_a_train_file_changed_after_the_audit(prepared, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(prepared[0], run_dir)
    prepare.check_audit(run_dir)
    train = run_dir / "data" / "train.jsonl"
    write_text_atomic(train, train.read_text() + json.dumps({"id": "x", "text": "hi", "label": "claim_status"}) + "\n")
    with pytest.raises(prepare.PrivacyAuditError, match="changed after its privacy audit"):
        prepare.check_audit(run_dir)


def test_audit_gate_refuses_a_holdout_file_changed_after_the_audit(prepared, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(prepared[0], run_dir)
    hold = run_dir / "data" / "holdout.jsonl"
    write_text_atomic(hold, hold.read_text()[: -200] + "\n")
    with pytest.raises(prepare.PrivacyAuditError, match="holdout.jsonl changed after its privacy audit"):
        prepare.check_audit(run_dir)


def test_audit_gate_refuses_an_expired_snapshot(prepared, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(prepared[0], run_dir)
    prov_path = run_dir / "data" / "provenance.json"
    prov = json.loads(prov_path.read_text())
    write_text_atomic(prov_path, json.dumps(prov | {"expires_on": "2020-01-01"}))
    with pytest.raises(prepare.PrivacyAuditError, match="expired on 2020-01-01.*re-run 02_prepare"):
        prepare.check_audit(run_dir)


def test_missing_audit_says_which_notebook_to_run(tmp_path):
    with pytest.raises(prepare.PrivacyAuditError, match="run notebook 02_prepare"):
        prepare.check_audit(tmp_path)


def test_committed_bad_jsonl_matches_the_generator(tmp_path):
    synth.write_bad_jsonl(tmp_path / "b.jsonl")
    synth.write_bad_inputs(tmp_path / "b.csv")
    assert (tmp_path / "b.jsonl").read_bytes() == (SAMPLES / "bad_tickets.jsonl").read_bytes()
    assert (tmp_path / "b.csv").read_bytes() == (SAMPLES / "bad_tickets.csv").read_bytes()


def test_audit_failure_message_names_rows_fields_and_the_canary_cause_without_text():
    finding = {"file": "train.jsonl", "row": 4, "id": "T9", "field": "text", "check": "canary:policy"}
    msg = prepare.audit_failure_message({"hits": 1, "findings": [finding]})
    assert "train.jsonl row 4 id T9 field 'text' (canary:policy)" in msg
    assert "planted canary survived redaction" in msg and "id_patterns" in msg and "re-run 02_prepare" in msg


def test_prepare_stops_when_the_redactor_lets_a_planted_canary_through(tmp_path, monkeypatch):
    # Simulate a redactor bug that skips person names: the audit, a separate code path, must still stop the run.
    from kit.privacy import redact

    real_find = redact.Redactor.find
    monkeypatch.setattr(redact.Redactor, "find",
                        lambda self, text, known=None: [s for s in real_find(self, text, known) if s[2] != "PERSON"])
    with pytest.raises(prepare.PrivacyAuditError, match=r"\(canary:person\)"):
        _prepare(tmp_path, SAMPLES / "tickets.csv", max_rows=80)
    assert json.loads((tmp_path / "data" / "audit.json").read_text())["passed"] is False


# --- files as people export them -------------------------------------------------------------------------------------

def _sample_records(n=80):
    import csv
    import io

    return list(csv.reader(io.StringIO((SAMPLES / "tickets.csv").read_text(encoding="utf-8"))))[: n + 1]


def _write_csv(path, records, delimiter=",", encoding="utf-8", bom=b""):
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(records)
    path.write_bytes(bom + out.getvalue().encode(encoding))
    return path


def _ids(res):
    return sorted(r["id"] for r in read_jsonl(res.paths["train"]) + read_jsonl(res.paths["holdout"]))


@pytest.fixture(scope="module")
def plain_80(tmp_path_factory):
    """The first 80 sample tickets as a plain UTF-8 CSV, prepared: what the exported variants must match."""
    tmp = tmp_path_factory.mktemp("plain80")
    return _prepare(tmp / "run", _write_csv(tmp / "plain.csv", _sample_records()))


def test_excel_csv_utf8_with_a_byte_order_mark_is_read_like_plain_utf8(tmp_path, plain_80):
    res = _prepare(tmp_path / "run", _write_csv(tmp_path / "bom.csv", _sample_records(), bom=b"\xef\xbb\xbf"))
    assert _ids(res) == _ids(plain_80) and res.counts["read"] == 80


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path, plain_80, delimiter):
    res = _prepare(tmp_path / "run", _write_csv(tmp_path / "d.csv", _sample_records(), delimiter=delimiter))
    assert _ids(res) == _ids(plain_80)


def test_a_windows_1252_csv_is_named_with_the_setting_that_reads_it(tmp_path):
    records = _sample_records()
    for rec in records[1:]:
        rec[7] = rec[7].replace("claim", "réclamation").replace("policy", "polic\u00e9") + " \u2013 merci, \u00e0 bient\u00f4t, \u00e7a ira"
    src = _write_csv(tmp_path / "excel.csv", records, encoding="cp1252")
    with pytest.raises(prepare.DataError, match=r"80 of 80 records .* not valid utf-8.*encoding='cp1252'"):
        _prepare(tmp_path / "run", src)
    assert not (tmp_path / "run" / "data" / "train.jsonl").exists()  # refused before anything was written
    res = _prepare(tmp_path / "run", src, encoding="cp1252")
    assert res.counts["read"] == 80 and res.invariant_holds()
    texts = " ".join(r["text"] for r in read_jsonl(res.paths["train"]))
    assert "\u00e0 bient\u00f4t, \u00e7a ira" in texts and "\u2013" in texts  # decoded, not mangled


def test_a_json_array_file_is_read_and_a_wrapped_one_is_refused_with_what_kit_expects(tmp_path):
    rows = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text(encoding="utf-8").splitlines()[:80]]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "rows.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    as_lines = _prepare(tmp_path / "a", tmp_path / "rows.jsonl")
    as_array = _prepare(tmp_path / "b", tmp_path / "rows.json")
    assert _ids(as_array) == _ids(as_lines) and as_array.counts["read"] == 80
    (tmp_path / "wrapped.json").write_text(json.dumps({"count": 80, "data": rows}), encoding="utf-8")
    with pytest.raises(prepare.DataError, match=r"single JSON object \(its key\(s\) \['data'\] hold lists.*JSON Lines"):
        _prepare(tmp_path / "c", tmp_path / "wrapped.json")


def test_without_an_id_column_rows_are_named_by_source_and_line(tmp_path):
    records = [[c for i, c in enumerate(rec) if i != 0] for rec in _sample_records()]  # drop ticket_id
    src = _write_csv(tmp_path / "noid.csv", records)
    with pytest.raises(prepare.DataError, match=r"no column\(s\) \['ticket_id'\].*id_column=''"):
        _prepare(tmp_path / "run", src)
    res = _prepare(tmp_path / "run", src, id_column="")
    ids = _ids(res)
    assert len(ids) == len(set(ids)) and all(i.startswith("input:line") for i in ids)


def test_a_repeated_id_with_a_different_text_is_quarantined_and_named(tmp_path):
    records = _sample_records()
    records[5][0] = records[2][0]  # row 5 reuses row 2's id, with its own text
    res = _prepare(tmp_path / "run", _write_csv(tmp_path / "dup.csv", records))
    q = [x for x in read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl") if x["code"] == "duplicate_id"]
    assert [x["id"] for x in q] == [records[2][0]] and "line" in q[0]["reason"] and res.invariant_holds()
    assert _ids(res).count(records[2][0]) <= 1


def test_too_few_usable_rows_says_why_and_leaves_the_reasons_on_disk(tmp_path):
    src = _write_csv(tmp_path / "t.csv", _sample_records())
    with pytest.raises(prepare.DataError, match=r"Quarantined \d+ row\(s\): unknown_label \d+.*labels \[.*'billing_dispute'"
                                             r".*are not in labels=\['refund', 'other'\]"):
        _prepare(tmp_path / "run", src, labels=["refund", "other"])
    assert read_jsonl(tmp_path / "run" / "data" / "quarantine.jsonl")


def test_the_instruction_is_the_users_and_the_default_names_no_domain(tmp_path):
    src = _write_csv(tmp_path / "t.csv", _sample_records())
    _prepare(tmp_path / "a", src)  # labels not given: the file's label set, in order of first appearance
    generic = json.loads((tmp_path / "a" / "data" / "task.json").read_text())["system"]
    assert "insurance" not in generic.lower() and "document_request, billing_dispute, claim_status" in generic
    _prepare(tmp_path / "b", src, instruction="Pick the queue for this banking chat ({labels}); reply with one word.",
             labels=prepare.DEFAULT_LABELS)
    own = json.loads((tmp_path / "b" / "data" / "task.json").read_text())["system"]
    assert own == ("Pick the queue for this banking chat (claim_status, document_request, billing_dispute, "
                   "agent_escalation); reply with one word.")
    with pytest.raises(prepare.DataError, match="braces other than"):
        prepare.PrepareConfig(run_dir="x", input_path=str(src), purpose="t", instruction="Use {lanes}")
