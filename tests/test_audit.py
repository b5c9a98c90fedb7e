"""The independent audit catches each kind of leak planted straight into a written file (redactor bypassed)."""

import csv

import pytest
from conftest import REPO

from kit.privacy import audit, canaries
from kit.privacy.redact import DEFAULT_ID_PATTERNS, Redactor
from tools import pii_corpus

KNOWN = {"PERSON": ["Maria Okafor"], "EMAIL": ["maria@example.com"], "POLICY_NUMBER": ["POL-123456"]}
CANARIES = canaries.make(seed=4, per_kind=1)
CANARY_VALUES = {c.kind: [c.value] for c in CANARIES}


def _audit(text, field="text"):
    row = {"id": "r1", "text": "Any update on <CLAIM_NUMBER_1>?", "label": "claim_status"}
    row[field] = text
    return audit.audit_rows({"train.jsonl": [row]}, known_values=KNOWN, canary_values=CANARY_VALUES,
                            id_patterns=DEFAULT_ID_PATTERNS)


@pytest.mark.parametrize("leak, check", [
    ("charge 4111 1111 1111 1111 please", "card_number"),
    ("call me on 07700 900123", "long_digit_run"),
    ("mail x.y@example.org", "email"),
    ("RSVP museumeducation@croydon . gov . uk", "email"),  # tokenised text (WNUT-17)
    ("I live at 5 via Roma", "street_address"),
    ("I live at 12 via garibaldi", "street_address"),
    ("Keizersgracht 1012 AB Amsterdam", "postcode"),
    ("Damrak 1, 1012 AM Amsterdam", "postcode"),  # AM is a Dutch letter pair too
    ("mail jane.doe@gmail", "email"),  # no dot: a broken address or a glued handle, which the redactor replaces
    ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
    ("ssn 123-45-6789", "us_ssn"),
    ("from 203.0.113.9", "ip_address"),
    ("from 2001:db8::7", "ip_address"),
    ("born 12/03/1984", "date_of_birth"),
    ("I live at 4 Kingfisher Close, Leeds", "street_address"),
    ("key AKIAIOSFODNN7EXAMPLE", "secret"),
    ("password: Sunflower#2291", "secret"),
    ("use brk_Qx7hT2mZ9pL4vW8nR3kY6sD1", "secret"),
    ("see https://api.example.com/v1/orders?key=Qx7hT2mZ9pL4vW8nR3kY6sD1", "secret"),  # a key inside a link
    ("the key is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEX4MPLE9KEY1", "secret"),  # a base64 key with "/" is judged whole
    ("renewal for POL-987654", "business_id:POLICY_NUMBER"),
    ("I think maria okafor knows", "known_value:PERSON"),
    ("Hannah Brennan from your office rang me", "person_name"),  # a census given name and surname
    ("then Tomasz Brennan rang", "person_name"),  # a census surname
    ("then Aisha Okafor rang", "person_name"),  # a census given name
    ("policy pol123456", "known_value:POLICY_NUMBER"),
    (CANARIES[0].sentence, "canary:card"),
    (CANARIES[0].value.replace(" ", ""), "canary:card"),
    (CANARIES[1].sentence, "canary:policy"),
    (CANARIES[2].sentence, "canary:person"),
])
def test_audit_catches_each_kind_of_leak(leak, check):
    report = _audit(leak)
    assert not report["passed"] and check in report["by_check"], report["by_check"]
    finding = next(f for f in report["findings"] if f["check"] == check)
    assert finding == {"file": "train.jsonl", "row": 1, "id": "r1", "field": "text", "check": check}


def test_audit_scans_every_string_field_not_only_text():
    report = _audit("maria@example.com", field="customer_email")
    assert {f["field"] for f in report["findings"]} == {"customer_email"}


@pytest.mark.parametrize("clean", [
    "Hi <PERSON_1>, I was charged $120.50 twice on 2026-03-01, card ending 4821.",
    "The call was at 10:30 and lasted 14 minutes; claim <CLAIM_NUMBER_1> still pending.",
    "Thanks,\n<PERSON_1>\n<PHONE_1>",
    "I waited 10 days and no way forward. received 2026-03-05T09:15:00Z",
    "Dear Team, the Grace Period and Late Fee on Oak Lane: Customer Service said Next Friday.",
    "Hi <PERSON_1>, <PERSON_2> from your office rang; <PERSON_1> Brennan's form is at Harbor Life.",
    # short links and article links in social-media text: long and mixed only as a whole (WNUT-17 posts)
    "RT <PERSON_1> : At least it is permanent https://t.co/Ri48RQT03e",
    "drinks this Friday ( https://www.reddit.com/r/sydney/comments/5z1ahm/st_patricks_day_drinks_kellys_ )",
    # what stopped stage 02 on WNUT-17 posts, as the redactor leaves them: handles glued to words (replaced), a
    # hashtag, a file name and a slug around one number, "via" before a link, an era after a year
    "RT <PERSON_1> : I 'm scared \" #pow#pow#<EMAIL_1>",
    "Thrilled about this <USERNAME_1>//<EMAIL_1> : girls , register4 #livethedream",
    "sent 3 via email, 2 via the app",
    "#PeopleWhoMadeMy2014 mon ange @Hannyversaire",
    "found this 1981 computer https://en.wikipedia.org/wiki/Touchscreen#/media/File:Platovterm1981.jpg",
    "[ here ] ( https://www.reddit.com/r/soccer/comments/5my29a/nearcertain_fifpro_xi_for_2016_neuer_dani_alves/ )",
    "signed into law on December 18th , 2014 via http://t.co/pSL2FQZlWS",
    "New Post : 2000 AD At <LOCATION_1> https://t.co/k1wMU7Kvst",
])
def test_redacted_text_passes(clean):
    assert _audit(clean)["passed"]


def test_audit_report_never_contains_the_matched_text():
    report = _audit("mail maria@example.com, card 4111 1111 1111 1111")
    assert "maria" not in str(report) and "4111" not in str(report)


def test_audit_does_not_import_the_redactor():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(audit))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
               {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "kit.privacy.redact" not in imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "kit.privacy"
                and any(a.name == "redact" for a in n.names)]  # nor as `from kit.privacy import redact`


def test_text_the_redactor_has_been_over_never_trips_the_name_check():
    # The audit's name check restates the redactor's no-cue rule; redacted text must pass it, or every prepare run
    # would fail closed on ordinary text. Checked on the labeled corpus and on the course's sample tickets.
    with open(REPO / "data_samples" / "tickets.csv", encoding="utf-8", newline="") as f:
        texts = [row["subject"] + "\n" + row["body"] for row in csv.DictReader(f)]
    texts += [d.text for d in pii_corpus.make(300, seed=3)]
    raw = audit.audit_rows({"train.jsonl": [{"id": str(i), "text": t} for i, t in enumerate(texts)]})
    assert raw["by_check"].get("person_name", 0) > 100  # the check does fire on the raw text
    r = Redactor.default()
    redacted = audit.audit_rows({"train.jsonl": [{"id": str(i), "text": r.redact(t).text}
                                                 for i, t in enumerate(texts)]})
    assert "person_name" not in redacted["by_check"], redacted["by_check"]
