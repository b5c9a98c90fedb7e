"""Task kinds: extract and reply rows through prepare (answers parsed, checked, redacted, audited), the helpers every
stage shares (canonical JSON, parsing, flattening), and the metrics of generated answers."""

import json
from pathlib import Path

import pytest

from kit.privacy import audit
from kit.privacy.redact import Redactor
from kit.stages import prepare
from kit.tasks import metrics
from kit.tasks.base import Task, canonical_json, flatten, parse_object

NO_COLUMNS = dict(tenant_column="", consent_column="", timestamp_column="", known_value_columns={},
                  canaries_per_kind=0)


def _rows(n, make):
    return [make(i) for i in range(n)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _prepare(tmp_path, src, **kw):
    return prepare.run(prepare.PrepareConfig(run_dir=str(tmp_path / "run"), input_path=str(src), purpose="tests",
                                       text_columns=("text",), id_column="id", **{**NO_COLUMNS, **kw}))


# What makes the rows distinct must survive redaction (cities are places: redacted, and the rows would be duplicates).
ITEMS = ["umbrella", "toaster", "bicycle", "kettle", "blender", "lantern", "backpack", "scooter", "printer", "camera",
         "guitar", "mattress", "heater", "jacket", "monitor", "speaker", "tablet", "vacuum", "wardrobe", "drill",
         "stroller", "projector", "sofa", "fridge"]


def test_canonical_json_follows_the_schema_order_and_parse_takes_the_first_object():
    schema = {"properties": {"intent": {}, "fields": {"properties": {"city": {}, "date": {}}}}}
    obj = {"fields": {"date": "today", "city": "Rome", "extra": 1}, "intent": "Book"}
    text = canonical_json(obj, schema)
    assert text == '{"intent":"Book","fields":{"city":"Rome","date":"today","extra":1}}'
    assert parse_object(text + " and then some words") == obj
    assert parse_object("Sure! " + text) is None and parse_object('["a"]') is None and parse_object("{broken") is None
    assert flatten(obj) == {"fields.date": "today", "fields.city": "Rome", "fields.extra": 1, "intent": "Book"}


def test_extract_report_counts_missing_and_invented_fields():
    expected = [{"intent": "A", "fields": {"city": "Rome"}}, {"intent": "B", "fields": {}},
                {"intent": "C", "fields": {"x": "1"}}]
    texts = ['{"intent":"A","fields":{"city":"Rome"}}',  # exact
             '{"intent":"B","fields":{"city":"Oslo"}}',  # one invented field: 1 of 2 leaves match
             'not json']  # invalid: both expected leaves missed
    r = metrics.extract_report(expected, texts, samples=200)
    assert r["validity_rate"] == pytest.approx(2 / 3) and r["exact_match"] == pytest.approx(1 / 3)
    # leaves: row 1 2/2, row 2 intent match + invented city (fields {} counts as one empty leaf) 1/3, row 3 0/2
    assert r["field_accuracy"] == pytest.approx(3 / 7)
    assert r["per_field"]["fields.city"] == {"support": 1, "correct": 1, "invented": 1, "accuracy": 1.0}
    assert r["accuracy"] == r["exact_match"] and r["field_accuracy_ci95"][0] <= 3 / 7 <= r["field_accuracy_ci95"][1]
    schema = {"type": "object", "required": ["intent"], "properties": {"intent": {"enum": ["A", "B", "C"]}}}
    assert metrics.extract_report(expected, ['{"intent":"Z"}'] * 3, schema, samples=200)["validity_rate"] == 0


def test_reply_report_scores_overlap_length_and_refusals():
    refs = ["Hi Ana, your claim is with our assessors.", "Hello Bo, the document is on its way."]
    same = metrics.reply_report(refs, refs, samples=200)
    assert same["rouge_l"] == pytest.approx(1.0) and same["chrf"] == pytest.approx(1.0)
    other = metrics.reply_report(refs, ["I'm sorry, I cannot help with that.", ""], samples=200)
    assert other["rouge_l"] < 0.3 and other["refusal_rate"] == 0.5 and other["empty_rate"] == 0.5


def test_redact_many_shares_placeholders_between_ticket_and_answer():
    r = Redactor.default()
    text, answer = r.redact_many(["Please call Maria Okafor on +44 7700 900123 about it.", "Maria Okafor"])
    assert "<PERSON_1>" in text.text and "<PHONE_1>" in text.text and answer.text == "<PERSON_1>"


def test_extract_prepare_parses_checks_redacts_and_infers_the_schema(tmp_path):
    rows = _rows(24, lambda i: {"id": f"r{i}", "text": f"Order a {ITEMS[i]} for {i + 2} people",
                                "target": {"intent": "Book", "fields": {"item": ITEMS[i], "party": str(i + 2)}}})
    rows[3]["target"] = json.dumps(rows[3]["target"])  # CSV exports hold the object as JSON text: read too
    rows[5]["target"] = "item=sofa"  # not an object: quarantined
    rows[7]["target"] = {"intent": "Book", "fields": {"item": "scooter", "party": "2", "contact": "Maria Okafor"}}
    rows[7]["text"] = "Order a scooter for 2, my name is Maria Okafor"
    res = _prepare(tmp_path, _jsonl(tmp_path / "in.jsonl", rows), task="extract", label_column="target")
    assert res.quarantine_reasons == {"bad_answer": 1} and res.invariant_holds()
    task = Task.load(tmp_path / "run")
    assert task.kind == "extract" and list(task.schema["properties"]) == ["intent", "fields"]
    assert "intent, fields" in task.system
    written = {r["id"]: r for f in ("train", "holdout") for r in
               map(json.loads, (tmp_path / "run" / "data" / f"{f}.jsonl").read_text().splitlines())}
    assert json.loads(written["r3"]["answer"]) == {"intent": "Book", "fields": {"item": "kettle", "party": "5"}}
    # The answer is training text too: the name is a placeholder there, the same one as in the ticket.
    assert "Okafor" not in written["r7"]["answer"] and "<PERSON_1>" in written["r7"]["answer"]
    assert "<PERSON_1>" in written["r7"]["text"] and res.audit["passed"]


def test_extract_with_a_schema_quarantines_answers_that_do_not_fit(tmp_path):
    rows = _rows(20, lambda i: {"id": f"r{i}", "text": f"Rate the {ITEMS[i]} {i % 5} stars",
                                "target": {"rating": str(i % 5), "unit": "stars"}})
    rows[2]["target"] = {"unit": "stars"}
    schema = {"type": "object", "required": ["rating"], "properties": {"rating": {"type": "string"},
                                                                       "unit": {"enum": ["stars", "points"]}}}
    res = _prepare(tmp_path, _jsonl(tmp_path / "in.jsonl", rows), task="extract", label_column="target",
                   schema=schema)
    assert res.quarantine_reasons == {"answer_schema": 1}
    line = json.loads((tmp_path / "run" / "data" / "quarantine.jsonl").read_text().splitlines()[0])
    assert line["id"] == "r2" and "does not fit the schema" in line["reason"] and "stars" not in line["reason"]
    with pytest.raises(prepare.DataError, match="not a valid JSON Schema"):
        prepare.PrepareConfig(run_dir="x", input_path=str(tmp_path / "in.jsonl"), purpose="t", task="extract",
                           schema={"type": "no-such-type"})
    with pytest.raises(prepare.DataError, match="schema belongs to task='extract'"):
        prepare.PrepareConfig(run_dir="x", input_path=str(tmp_path / "in.jsonl"), purpose="t", schema=schema)


def test_reply_prepare_redacts_the_reply_and_quarantines_empty_ones(tmp_path):
    rows = _rows(20, lambda i: {"id": f"r{i}", "text": f"Where is my {ITEMS[i]}? Regards, Aigerim",
                                "reply": f"Hi Aigerim, the {ITEMS[i]} arrives tomorrow. Customer Care"})
    rows[4]["reply"] = "  "
    rows[6]["reply"] = "Hi, we emailed maria.okafor@example.com yesterday."
    res = _prepare(tmp_path, _jsonl(tmp_path / "in.jsonl", rows), task="reply", label_column="reply")
    assert res.quarantine_reasons == {"empty_answer": 1}
    written = [json.loads(x) for f in ("train", "holdout")
               for x in (tmp_path / "run" / "data" / f"{f}.jsonl").read_text().splitlines()]
    r6 = next(r for r in written if r["id"] == "r6")
    assert "<EMAIL_1>" in r6["answer"] and "example.com" not in r6["answer"]
    assert Task.load(tmp_path / "run").system == "Write the reply to this message."


def test_audit_checks_the_values_inside_a_json_answer():
    # Compact JSON is one long run of letters and digits: read as text, the random-token check took it for a key.
    rows = [{"id": "a", "text": "x", "answer": '{"intent":"PlayMusic","fields":{"year":"1979","service":"Groove Shark"}}'},
            {"id": "b", "text": "x", "answer": '{"contact":"write to ana.lopez@example.com"}'}]
    report = audit.audit_rows({"train.jsonl": rows})
    assert [(f["id"], f["field"], f["check"]) for f in report["findings"]] == [("b", "answer", "email")]


def test_labels_are_taken_from_the_data_when_not_given(tmp_path):
    rows = _rows(30, lambda i: {"id": f"r{i}", "text": f"text number {i} about {['cards', 'loans', 'fees'][i % 3]}",
                                "label": ["card", "loan", "fee"][i % 3]})
    rows[0]["label"] = "typo_lane"  # seen once: not a label, quarantined as unknown
    res = _prepare(tmp_path, _jsonl(tmp_path / "in.jsonl", rows))
    assert set(res.task["labels"]) == {"card", "loan", "fee"} and res.quarantine_reasons == {"unknown_label": 1}
    assert "card" in res.task["system"] and "insurance" not in res.task["system"]
    one = _rows(6, lambda i: {"id": f"r{i}", "text": f"t{i}", "label": "same"})
    with pytest.raises(prepare.DataError, match="holds 1 label"):
        _prepare(tmp_path / "b", _jsonl(tmp_path / "one.jsonl", one))


def test_the_default_instruction_lists_a_few_labels_and_counts_many():
    from kit.tasks.base import LABEL_LIST_CHARS, default_instruction

    few = ("card", "loan", "fee")
    assert default_instruction("classify", few) == ("Assign the text to exactly one of these labels: card, loan, fee. "
                                                    "Answer with the label only.")
    many = tuple(f"card_payment_issue_{i}" for i in range(77))
    assert len(", ".join(many)) > LABEL_LIST_CHARS
    text = default_instruction("classify", many)
    assert "77 labels" in text and "card_payment" not in text
    data = str(Path(__file__).resolve().parent.parent / "data_samples" / "tickets.csv")
    cfg = prepare.PrepareConfig(input_path=data, run_dir="x", purpose="tests", labels=many)
    assert cfg.instruction_text() == text  # what stage 02 writes to task.json
    assert "card_payment_issue_3" in prepare.PrepareConfig(input_path=data, run_dir="x", purpose="tests", labels=many,
                                                           instruction="Route to: {labels}").instruction_text()


def _trl_rows(n):
    return [{"messages": [{"role": "system", "content": "Route the chat to {a queue}."},
                          {"role": "user", "content": f"my {ITEMS[i]} was stolen"},
                          {"role": "assistant", "content": ["lost_card", "dispute"][i % 2]}]} for i in range(n)]


def test_chat_messages_rows_are_read_and_their_shared_system_message_becomes_the_instruction(tmp_path):
    rows = _trl_rows(20)
    rows[3]["messages"].append({"role": "user", "content": "and another thing"})  # multi-turn: quarantined
    rows[4]["messages"][0]["content"] = "Be brief."  # its own system message stays with it, before the text
    rows[5] = {"messages": "not a list"}
    src = _jsonl(tmp_path / "chat.jsonl", rows)
    res = prepare.run(prepare.PrepareConfig(run_dir=str(tmp_path / "run"), input_path=str(src), purpose="tests",
                                      canaries_per_kind=0))  # demo column names absent from a chat file: not used
    assert res.quarantine_reasons == {"bad_convention": 2} and res.invariant_holds()
    assert res.provenance["input_format"] == "messages" and res.provenance["parameters"]["consent_column"] == ""
    assert res.task["system"] == "Route the chat to {a queue}." and res.task["labels"] == ["lost_card", "dispute"]
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "run" / "data" / "quarantine.jsonl").read_text().splitlines()]
    assert any("single-turn" in r for r in reasons)
    written = [json.loads(x) for f in ("train", "holdout")
               for x in (tmp_path / "run" / "data" / f"{f}.jsonl").read_text().splitlines()]
    assert next(r for r in written if r["id"] == "input:line5")["text"].startswith("Be brief.\n\nmy blender was stolen")


@pytest.mark.parametrize("fmt", ["prompt_completion", "conversational_prompt_completion", "alpaca",
                                 "input_output"])
def test_prompt_completion_and_alpaca_rows_are_read(tmp_path, fmt):
    def row(i):
        text, answer = f"Book a table for {i + 2} with a {ITEMS[i]}", {"item": ITEMS[i], "party": str(i + 2)}
        if fmt == "prompt_completion":
            return {"prompt": text, "completion": json.dumps(answer)}
        if fmt == "alpaca":
            return {"instruction": "Fill in the booking.", "input": text, "output": json.dumps(answer)}
        if fmt == "input_output":  # Alpaca without an instruction column: the generic instruction is used
            return {"input": text, "output": json.dumps(answer)}
        return {"prompt": [{"role": "user", "content": text}],
                "completion": [{"role": "assistant", "content": json.dumps(answer)}]}
    src = _jsonl(tmp_path / "in.jsonl", _rows(20, row))
    res = prepare.run(prepare.PrepareConfig(run_dir=str(tmp_path / "run"), input_path=str(src), purpose="tests",
                                      task="extract", canaries_per_kind=0))
    assert res.counts["train"] + res.counts["holdout"] == 20
    assert res.provenance["input_format"] == ("alpaca" if fmt == "input_output" else
                                              "prompt_completion" if "prompt_completion" in fmt else fmt)
    assert res.task["system"] == ("Fill in the booking." if fmt == "alpaca" else
                                  "Extract the information in the text as a JSON object with the keys item, party. "
                                  "Answer with the JSON object only.")
    first = json.loads((tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()[0])
    assert first["text"].startswith("Book a table for") and json.loads(first["answer"])["party"]
