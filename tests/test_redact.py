import pytest

from kit.redact import Redactor


@pytest.fixture(scope="module")
def r():
    return Redactor.default()


@pytest.mark.parametrize("text, entity", [
    ("mail me at maria.okafor12@example.com please", "EMAIL"),
    ("card 4111 1111 1111 1111 was charged", "CARD_NUMBER"),
    ("call (555) 012-3456 today", "PHONE"),
    ("call +44 7700 900123 today", "PHONE"),
    ("ruf an: +49 30 1234567", "PHONE"),
    ("policy POL-123456 renewal", "POLICY_NUMBER"),
    ("claim clm-2024-004512 status", "CLAIM_NUMBER"),
    ("I live at 12 Harbour Road, Leeds LS6 2AB.", "ADDRESS"),
    ("storm damage at 7 Rue des Lilas, Lyon 69003.", "ADDRESS"),
])
def test_detector_finds_entity(r, text, entity):
    assert entity in {e for _, _, e in r.find(text)}


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 was charged",  # fails Luhn
    "I filed it 10 days ago, 14 times",  # short numbers are not phones
    "I was charged $120.50 twice",
    "see section 12 of the terms",
])
def test_near_misses_are_not_redacted(r, text):
    assert r.find(text) == []


def test_placeholders_are_typed_and_consistent_within_a_text(r):
    res = r.redact("a@example.com wrote, then b@example.com, then a@example.com again")
    assert res.text == "<EMAIL_1> wrote, then <EMAIL_2>, then <EMAIL_1> again"
    assert [e for _, _, e in res.spans] == ["EMAIL"] * 3


def test_known_values_scrub_full_name_and_parts(r):
    res = r.redact("Maria Okafor here. Thanks, Maria", known={"PERSON": ["Maria Okafor"]})
    assert "Maria" not in res.text and "Okafor" not in res.text
    assert res.text.startswith("<PERSON_1> here.")


def test_spans_refer_to_original_text(r):
    text = "email x@example.com now"
    (s, e, ent), = r.redact(text).spans
    assert text[s:e] == "x@example.com" and ent == "EMAIL"
