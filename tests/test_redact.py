import pytest

from kit import pii_corpus
from kit.redact import Redactor


@pytest.fixture(scope="module")
def r():
    return Redactor.default()


def _entities(r, text, known=None):
    return {e for _, _, e in r.find(text, known)}


# One table per detector: positives, then near-misses that must not be redacted (checksum failures included).
@pytest.mark.parametrize("text, entity", [
    ("mail me at maria.okafor12@example.com please", "EMAIL"),
    ("card 4111 1111 1111 1111 was charged", "CARD_NUMBER"),
    ("amex 3782-8224-6310-005 ok", "CARD_NUMBER"),
    ("call (555) 012-3456 today", "PHONE"),
    ("call +44 7700 900123 today", "PHONE"),
    ("ruf an: +49 30 1234567", "PHONE"),
    ("appelez +33 1 23 45 67 89", "PHONE"),
    ("call +91 98765 43210", "PHONE"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN"),
    ("iban gb82west12345698765432.", "IBAN"),
    ("NL91ABNA0417164300 is mine", "IBAN"),
    ("SSN 123-45-6789", "US_SSN"),
    ("my ssn: 123456789", "US_SSN"),
    ("blocked from 203.0.113.45.", "IP_ADDRESS"),
    ("from 2001:db8:85a3::8a2e:370:7334 today", "IP_ADDRESS"),
    ("I was born on 12/03/1984", "DATE_OF_BIRTH"),
    ("DOB: March 12, 1984", "DATE_OF_BIRTH"),
    ("brn on 1975-06-01 (typo in the cue)", "DATE_OF_BIRTH"),
    ("key AKIAIOSFODNN7EXAMPLE in the log", "SECRET"),
    ("password: Sunflower#2291", "SECRET"),
    ("my passwrod is Harbour!8812", "SECRET"),
    ("token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc", "SECRET"),
    ("api key kit_live_9fA3kLm2Qp8ZrT4vWx1YbC7d", "SECRET"),
    ("policy POL-123456 renewal", "POLICY_NUMBER"),
    ("claim clm-2024-004512 status", "CLAIM_NUMBER"),
    ("account ACC-12345678", "ACCOUNT_NUMBER"),
    ("invoice INV-2024001", "INVOICE_NUMBER"),
    ("I live at 12 Harbour Road, Leeds LS6 2AB.", "ADDRESS"),
    ("storm damage at 7 Rue des Lilas, Lyon 69003.", "ADDRESS"),
    ("My name is Maria Okafor.", "PERSON"),
    ("hi, i'm Henrik Petrov. my card", "PERSON"),
    ("Thanks,\nAisha van der Berg", "PERSON"),
    ("Dear Hannah Sørensen,", "PERSON"),
    ("Your adjuster Priya Khan never called.", "PERSON"),
])
def test_detector_finds_entity(r, text, entity):
    assert entity in _entities(r, text)


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 was charged",  # fails Luhn
    "I filed it 10 days ago, 14 times",  # short numbers are not phones
    "I was charged $120.50 twice",
    "see section 12 of the terms",
    "Account DE89 3704 0044 0532 0130 02 is not mine",  # fails the IBAN checksum
    "the call was at 10:30:45",  # a time, not IPv6
    "version 1.2.3.4.5 of the app",  # not an IPv4
    "paid on 2026-03-01",  # a recent date is not a date of birth
    "my password reset did not work",  # a cue word with no secret after it
    "Dear Team, this is Urgent.",  # capitalised words after a cue that are not names
    "Thanks,\nThe Smith family",
    "received 2026-03-05T09:15:00Z",  # a timestamp is not a random token
    "I waited 10 days and no way forward",  # not a street
])
def test_near_misses_are_not_redacted(r, text):
    assert r.find(text) == []


@pytest.mark.parametrize("text", ["ref 000-12-3456", "ref 666-12-3456", "ref 923-12-3456", "ref 123-00-4567"])
def test_never_issued_ssns_are_not_ssns(r, text):
    assert "US_SSN" not in _entities(r, text)


def test_placeholders_are_typed_and_consistent_within_a_text(r):
    res = r.redact("a@example.com wrote, then b@example.com, then a@example.com again")
    assert res.text == "<EMAIL_1> wrote, then <EMAIL_2>, then <EMAIL_1> again"
    assert [e for _, _, e in res.spans] == ["EMAIL"] * 3


def test_a_first_name_alone_gets_the_full_names_placeholder(r):
    res = r.redact("My name is Maria Okafor. Call me, Maria and Liam Walsh", known={"PERSON": ["Maria Okafor"]})
    assert res.text.startswith("My name is <PERSON_1>. Call me, <PERSON_1> and")


def test_known_values_scrub_full_name_and_parts(r):
    res = r.redact("Maria Okafor here. thanks, maria", known={"PERSON": ["Maria Okafor"]})
    assert "Maria" not in res.text and "maria" not in res.text and "Okafor" not in res.text
    assert res.text.startswith("<PERSON_1> here.")


def test_spans_refer_to_original_text(r):
    text = "email x@example.com now"
    (s, e, ent), = r.redact(text).spans
    assert text[s:e] == "x@example.com" and ent == "EMAIL"


def test_custom_id_patterns_replace_the_defaults():
    r = Redactor.default({"ORDER_ID": r"\bORD-\d{5}\b"})
    assert _entities(r, "order ORD-12345") == {"ORDER_ID"}
    assert "POLICY_NUMBER" not in _entities(r, "policy POL-123456")


def test_a_card_number_is_not_also_a_phone_number(r):
    assert _entities(r, "card 4111 1111 1111 1111 please") == {"CARD_NUMBER"}


def test_recall_on_the_labeled_corpus_is_at_least_098_on_what_kit_claims(r):
    docs = pii_corpus.make(150, seed=5)
    scores = pii_corpus.score(docs, [r.find(d.text, d.known) for d in docs])
    assert scores["recall_claimed"] >= 0.98, scores
    assert scores["precision"] >= 0.95, scores
    # The no-cue names in the corpus are the documented gap: without an NER model they stay, so total recall is lower.
    assert scores["hard_spans"] > 0 and scores["recall"] < scores["recall_claimed"]
