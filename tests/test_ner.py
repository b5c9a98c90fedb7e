"""The entity recogniser in the redactor: international names, places and addresses; near-misses left alone; the
audit's own evidence; the answer column redacted like the ticket."""

import json

import pytest
from conftest import REPO

from kit.privacy import audit, ner
from kit.privacy.redact import Redactor
from kit.stages import prepare


@pytest.fixture(scope="module")
def r():
    return Redactor.default()


def _masked(text, spans, value):
    """Leak view: `value` counts as masked when >= 90% of its characters are inside redacted spans."""
    start = text.index(value)
    covered = sum(1 for i in range(start, start + len(value)) if any(s <= i < e for s, e, _ in spans))
    return covered >= 0.9 * len(value)


# Names, places and addresses from many countries, in the kinds of sentences customers write; none of these names
# or streets is in the recogniser's training templates.
@pytest.mark.parametrize("text, values", [
    ("Aigerim Nurlanova called about her refund.", ["Aigerim Nurlanova"]),
    ("Please send it to Rua das Flores 128, 4050-265 Porto.", ["Rua das Flores 128", "4050-265", "Porto"]),
    ("My name is Chidi Nwosu and I live in Enugu.", ["Chidi Nwosu", "Enugu"]),
    ("The parcel for Siobhán Ní Bhriain never reached Galway.", ["Siobhán Ní Bhriain", "Galway"]),
    ("Deliver to ul. Marszałkowska 84/92, 00-514 Warszawa", ["ul. Marszałkowska 84/92", "00-514", "Warszawa"]),
    ("Herr Jürgen Baumgärtner, Lindenstraße 12, 10969 Berlin", ["Jürgen Baumgärtner", "Lindenstraße 12", "10969",
                                                                 "Berlin"]),
    ("Nguyễn Thị Lan wrote from Đà Nẵng about the invoice.", ["Nguyễn Thị Lan", "Đà Nẵng"]),
    ("Mehmet Yılmaz moved to Atatürk Caddesi No: 45, Kadıköy, İstanbul.", ["Mehmet Yılmaz", "Kadıköy", "İstanbul"]),
    ("Thanks,\nOluwaseun Adeyemi\nLagos", ["Oluwaseun Adeyemi", "Lagos"]),
    ("hi its priya ramasubramanian, my card is blocked", ["priya ramasubramanian"]),
    ("Can Kwame Mensah pick up the order in Kumasi?", ["Kwame Mensah", "Kumasi"]),
    ("Our office is at 221B Baker Street, London NW1 6XE.", ["221B Baker Street", "NW1 6XE"]),
    ("I spoke with Ingrid Johansson from your Malmö branch.", ["Ingrid Johansson", "Malmö"]),
    ("Send the forms to Avenida Paulista 1578, São Paulo.", ["Avenida Paulista 1578", "São Paulo"]),
    # Lone given names with no cue and from outside the census, found by the two models together.
    ("Toomas said the heater is still broken.", ["Toomas"]),
    ("Please ask Zinaida about the refund.", ["Zinaida"]),
    ("Gulnara and Bakhyt signed the lease together.", ["Gulnara", "Bakhyt"]),
    ("my cousin ermek lives in bishkek now", ["ermek", "bishkek"]),
    ("Our office: Kalvervej 12, 8000 Aarhus C", ["Kalvervej 12", "8000 Aarhus"]),
    ("Send it to PO Box 771, Nelson 7040", ["PO Box 771", "Nelson 7040"]),
    ("Flat 2, 9 Ormeau Road, Belfast BT7 1SH", ["Flat 2, 9 Ormeau Road", "Belfast", "BT7 1SH"]),
    ("Ship to Calle 45 # 12-30, Bogotá", ["Calle 45 # 12-30", "Bogotá"]),
    ("The contract is with Nordlicht Logistik GmbH in Kiel.", ["Nordlicht Logistik GmbH", "Kiel"]),
])
def test_international_names_and_addresses_are_masked(r, text, values):
    spans = r.find(text)
    missed = [v for v in values if not _masked(text, spans, v)]
    assert not missed, (missed, [(text[s:e], t) for s, e, t in spans])


# Capitalised words that are not personal data: product and plan names, support vocabulary, weekdays, a customer
# who names nobody. None of these may be redacted.
@pytest.mark.parametrize("text", [
    "The Premium Plan renews automatically every March.",
    "Customer Support closed my ticket on Monday without an answer.",
    "Why was I charged twice for the Family Bundle?",
    "The Android App crashes when I open Order History.",
    "Please cancel the subscription at the end of the month.",
    "Your Help Center article on Two-Factor Authentication is wrong.",
    "I waited 10 days and still no refund.",
    "the call was at 10:30:45",
    "Dear Team, this is Urgent.",
    "I filed it 10 days ago, 14 times",
    "I was charged $120.50 twice",
    "see section 12 of the terms",
    "my password reset did not work",
    "received 2026-03-05T09:15:00Z",
    "the adjuster never showed up and nobody called",  # a lower-case guess of an address with no number or street
    "Can I get the 3 Day Pass refunded?",
    # Known over-redaction, kept visible: the second model takes a number and capitalised product words for a street.
    pytest.param("Order 12 Green Tea Bags arrived broken.",
                 marks=pytest.mark.xfail(strict=True, reason="the second model tags '12 Green Tea Bags' ADDRESS")),
])
def test_near_misses_are_left_alone(r, text):
    assert r.find(text) == [], [(text[s:e], t) for s, e, t in r.find(text)]


# Lower-case chat where the models take the words carrying the customer's intent for names or places ("stolen",
# "inquire", "new lower rates", "owed", "burnt"): everyday words, no name cue, so nothing is redacted.
@pytest.mark.parametrize("text", [
    "please help me block my card it was stolen yesterday",
    "i want to inquire about the new lower rates",
    "please send me the money i am owed now",
    "yes it was burnt in the fire last week",
])
def test_everyday_words_in_lower_case_chat_are_not_taken_for_names(r, text):
    assert r.find(text) == [], [(text[s:e], t) for s, e, t in r.find(text)]


@pytest.mark.parametrize("text, value", [
    ("my name is hope and i need a new card", "hope"),  # an everyday word after a self-introduction
    ("this is drew calling about my bill", "drew"),  # a census given name that is also a verb form
    ("hi its priya ramasubramanian, my card is blocked", "priya ramasubramanian"),  # no English words
])
def test_a_name_that_is_also_a_word_is_still_redacted_after_a_cue(r, text, value):
    assert _masked(text, r.find(text), value), r.find(text)


# Bank chat as typed (../shared/devdata/routing): words run together after a greeting or around "please", and shorthand,
# were taken for names ("himy" -> <PERSON_1>), and the intent went with them.
@pytest.mark.parametrize("text", [
    "himy card missed so please close the card",
    "hello my credit card was lostpls suggest way to forward",
    "okneed to change my address in my ac",
    "hmmm ok and my another credit card was expired so kindly provide me new one",
])
def test_run_together_words_and_chat_shorthand_are_not_names(r, text):
    assert r.find(text) == [], [(text[s:e], t) for s, e, t in r.find(text)]


@pytest.mark.parametrize("word, typed", [
    ("himy", True), ("okneed", True), ("lostpls", True), ("hellocan", True), ("hmmm", True), ("accidentplease", True),
    # names that split into words: a greeting before a word that does not follow greetings, a courtesy word first,
    # two function words, "no"/"ya" at an end, a greeting at the end, a census name
    ("hisham", False), ("okon", False), ("hiten", False), ("hino", False), ("thankam", False), ("okey", False),
    ("hasan", False), ("noam", False), ("yahya", False), ("aditya", False), ("draghi", False), ("herman", False),
])
def test_a_run_together_word_needs_a_greeting_first_or_a_courtesy_word(word, typed):
    assert ner.everyday(word) is typed


def test_the_run_together_rule_passes_almost_no_name_of_the_worlds_locales():
    from kit.privacy.gazetteer import world_names

    names = {n.lower() for kind in world_names().values() for n in kind if n.isascii() and n.isalpha()}
    names = {n for n in names if not ner._census_name(n) and not ner._plain_word(n)}
    passed = sorted(n for n in names if ner._typed_word(n))
    assert len(names) > 20_000 and len(passed) <= 3, passed  # 1 today: "gudis" (gud + is)


def test_a_bare_amount_is_not_an_address_line_but_its_numbers_stay_masked(r):
    text = "transfer 1000 money from account ending in 9234 to account ending in 3442"
    found = r.find(text)
    assert all(_masked(text, found, v) for v in ("1000", "9234", "3442")), found
    assert "money from account ending in" in r.redact(text).text
    # A postcode with a town and country after it keeps the whole line.
    text = "Please forward the paperwork to Verhoeven at Pietersingel 03, 2020 Kaggevinne, Sri Lanka."
    assert all(_masked(text, r.find(text), v) for v in ("Pietersingel 03", "2020 Kaggevinne", "Sri Lanka"))


@pytest.mark.parametrize("line", ["12 elm dr", "77 sunset blvd", "house 12 oak walk", "4 the mews", "40 park row",
                                  "plot 45 sector 21 phase two", "flat 402 rose apartments"])
def test_street_lines_in_lower_case_stay_whole_addresses(line):
    assert ner._address(line, 0, len(line)) == [(0, len(line), "ADDRESS")]


def test_the_everyday_word_list_has_no_census_names_and_ships_with_its_source():
    words = ner.english_words()
    assert {"stolen", "inquire", "owed", "burnt"} <= words and len(words) > 50_000
    assert not ner.everyday("aaron") and not ner.everyday("smith") and ner.everyday("lost")
    meta = json.loads(ner.WORDS_FILE.with_name("english_words.json").read_text())
    import hashlib

    assert meta["sha256"] == hashlib.sha256(ner.WORDS_FILE.read_bytes()).hexdigest() and meta["wheel_sha256"]
    assert "WordNet" in ner.WORDS_FILE.with_name("english_words.LICENSE").read_text()


def test_the_recogniser_ships_with_its_provenance():
    assert len(ner.MODEL_DIRS) == 2
    for path in ner.MODEL_DIRS:
        p = ner.provenance(path)
        assert set(p["labels"]) == {"PERSON", "LOCATION", "ADDRESS", "ORG", "ID_NUMBER"}
        assert p["inputs"]["wnut17_train"]["sha256"] and p["inputs"]["generated"]["faker_locales"]
        assert (path / "meta.json").exists()
    # The bench's unseen locales stay unseen by both models.
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from redaction import UNSEEN

    for path in ner.MODEL_DIRS:
        assert not set(UNSEEN) & set(ner.provenance(path)["inputs"]["generated"]["faker_locales"])


def test_the_models_spans_are_united():
    # Two models' guesses: one label's overlapping spans merge; different labels stay apart for the redactor to settle.
    assert ner._union([(0, 5, "PERSON", 0), (3, 9, "PERSON", 1), (20, 30, "ORG", 0), (25, 40, "LOCATION", 1)]) \
        == [(0, 9, "PERSON"), (20, 30, "ORG"), (25, 40, "LOCATION")]
    # Where both start together, the first model's span comes first, so its label wins in the redactor.
    assert ner._union([(4, 11, "LOCATION", 1), (4, 11, "PERSON", 0)]) == [(4, 11, "PERSON"), (4, 11, "LOCATION")]


def test_batched_and_single_recognition_agree(r):
    texts = ["Aigerim Nurlanova called.", "Send it to Rua das Flores 128, 4050-265 Porto.", "No names here."]
    fresh = ner.EntityRecogniser()
    assert fresh.find_many(texts) == [ner.EntityRecogniser().find(t) for t in texts]


def test_a_value_found_in_the_ticket_is_redacted_in_the_answer_too(r):
    # The answer's bare "Porto" has no context for the recogniser; found in the ticket, it is a known value.
    ticket, answer = r.redact_many(["What is the weather in Porto tomorrow?", "Porto"])
    assert "Porto" not in ticket.text and "Porto" not in answer.text
    assert answer.text in ticket.text  # the same placeholder in both


@pytest.mark.parametrize("text", [
    "Voldemārs Skuja rang about <POLICY_NUMBER_1>.",  # a Latvian given name and surname
    "please ship to Rua das Flores 128 thanks",  # a Portuguese street line
    "it goes to 4050-265 Porto",  # a Portuguese postcode before a place
    "my name is araújo",  # a surname of a Faker locale after a self-introduction, lower case
])
def test_the_audit_has_its_own_evidence_for_international_names_and_addresses(text):
    report = audit.audit_rows({"train.jsonl": [{"id": "r1", "text": text}]})
    assert not report["passed"], report["by_check"]


NO_COLUMNS = dict(tenant_column="", consent_column="", timestamp_column="", known_value_columns={},
                  canaries_per_kind=0, purpose="tests", id_column="id", text_columns=("text",))
TOPICS = ["invoice", "refund", "password", "delivery", "upgrade", "contract", "receipt", "voucher", "warranty",
          "login", "parcel", "discount", "payment", "battery", "screen", "charger", "booking", "account", "address",
          "statement"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    return path


def test_the_audit_catches_a_name_the_redactor_was_made_to_skip(tmp_path, monkeypatch):
    # The recogniser is made blind to one text; the audit's own evidence must stop stage 02 (fail closed).
    rows = [{"id": f"t{i}", "text": f"Question {i} about my {t}: nobody has answered for {i + 2} days.",
             "label": "billing" if i % 2 else "technical"} for i, t in enumerate(TOPICS)]
    rows[3]["text"] = "Voldemārs Skuja from your accounts team asked about my invoice."
    src = _jsonl(tmp_path / "tickets.jsonl", rows)
    real_find = ner.EntityRecogniser.find

    def blind(self, text):
        return [] if "Skuja" in text else real_find(self, text)

    monkeypatch.setattr(ner.EntityRecogniser, "find", blind)
    cfg = prepare.PrepareConfig(input_path=str(src), run_dir=str(tmp_path / "run"), label_column="label", **NO_COLUMNS)
    with pytest.raises(prepare.PrivacyAuditError, match="person_name"):
        prepare.run(cfg)
    monkeypatch.undo()
    assert prepare.run(cfg).audit["passed"]  # with the recogniser seeing the text, the same file passes


def test_the_reply_column_is_redacted_and_audited_like_the_ticket(tmp_path):
    rows = [{"id": f"r{i}", "text": f"Hello, this is Aigerim Nurlanova. My {t} sent from Kumasi is late.",
             "reply": f"Dear Aigerim Nurlanova, sorry about the {t}; we send a new one from Kumasi today."}
            for i, t in enumerate(TOPICS)]
    src = _jsonl(tmp_path / "replies.jsonl", rows)
    res = prepare.run(prepare.PrepareConfig(input_path=str(src), run_dir=str(tmp_path / "run"), label_column="reply",
                                      task="reply", near_duplicate_threshold=0.95, **NO_COLUMNS))
    assert res.audit["passed"] and res.counts["train"] > 10
    written = (tmp_path / "run" / "data" / "train.jsonl").read_text(encoding="utf-8")
    assert "Nurlanova" not in written and "Aigerim" not in written and "Kumasi" not in written
    first = json.loads(written.splitlines()[0])
    assert "<PERSON_1>" in first["text"] and "<PERSON_1>" in first["answer"]
    assert res.redactions.get("PERSON", 0) >= 2 * res.counts["train"]
