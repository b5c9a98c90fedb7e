"""A labeled PII corpus: short support messages whose personal-data spans are known by construction.

In: a document count and a seed. Out: `LabeledDoc`s (text, gold spans `(start, end, entity)`, and the known values a
prepare run would read from structured columns). It measures redaction recall and precision in tests and in
`bench/redaction.py`. It is separate from `data_samples/` (which the course trains on) and built from its own
templates, so the detectors are not scored on the exact sentences of the demo data. Every value is invented.

Some templates are deliberately hard: a third party named with no cue at all, lower-case text, numbers that look
like PII but fail a checksum (the negatives that precision is measured on).
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

from stdnum import iban, luhn

GIVEN = ["Maria", "James", "Aisha", "Tomasz", "Priya", "Liam", "Sofia", "Kenji", "Hannah", "Diego", "Fatima", "Noah",
         "Ingrid", "Mateo", "Chloe", "Ravi", "Emeka", "Yara", "Lukas", "Grace", "Bronwyn", "Siobhan", "Dmitri",
         "Anouk", "Thabo", "Marisol", "Henrik", "Ngozi", "Paulo", "Keiko"]
FAMILY = ["Okafor", "Lindqvist", "Moreau", "Kowalski", "Haddad", "Brennan", "Castillo", "Tanaka", "Fischer",
          "Nguyen", "Petrov", "McAllister", "Rossi", "Dubois", "Khan", "Schmidt", "van der Berg", "O'Neill",
          "Adeyemi", "Sørensen", "Lefebvre", "Papadopoulos", "Mbeki", "Ivanova"]
STREETS = ["Maple Avenue", "Harbour Road", "Linden Strasse", "Rue des Lilas", "Oak Lane", "Queen Street",
           "Willow Drive", "Via Garibaldi", "Church Lane", "Beech Court"]
CITIES = ["Leeds LS6 2AB", "Austin, TX 78701", "Berlin 10115", "Lyon 69003", "Cork T12 X70A", "Perth WA 6000"]

# Each template: text with {ENTITY} slots. Several slots of one type in a template get distinct values, except
# PERSON_SAME, which repeats the customer's name.
TEMPLATES = [
    "My name is {PERSON} and my email is {EMAIL}.",
    "Dear team,\nplease call me on {PHONE}.\nThanks,\n{PERSON}",
    "Hi, I'm {PERSON}. My card {CARD_NUMBER} was charged twice.",
    "Refund to my IBAN {IBAN} please.",
    "For verification my SSN is {US_SSN}.",
    "I could not log in from {IP_ADDRESS} this morning.",
    "My date of birth is {DATE_OF_BIRTH}.",
    "I was born on {DATE_OF_BIRTH} and the form rejected it.",
    "Here is the API key our broker uses: {SECRET}",
    "my password is {SECRET} and it doesnt work",
    "Please send the letter to {ADDRESS}.",
    "Policy {POLICY_NUMBER}, claim {CLAIM_NUMBER}: any update?",
    "Invoice {INVOICE_NUMBER} was billed to account {ACCOUNT_NUMBER}.",
    "I'm writing on behalf of my father, {PERSON}.",
    "Your adjuster {PERSON} never called back.",
    "I spoke to {PERSON} at your office last week.",
    "{PERSON_HARD} from your office rang me yesterday.",  # no cue, not a known value: only a name list or NER sees it
    "{PERSON_SAME} here again, still waiting.",  # found only as a known value
    "reach me at {EMAIL} or {PHONE}",
    "the charge on {CARD_NUMBER} is wrong",
    "Regards,\n{PERSON}\n{PHONE}",
    "DOB {DATE_OF_BIRTH}, policy {POLICY_NUMBER}",
    "Server logs show {IP_ADDRESS} used my account.",
    "ACCESS KEY {SECRET}",
]
# Text with no personal data that looks a little like it: precision is measured on these.
NEGATIVES = [
    "I was charged $120.50 on 2026-03-01.",
    "My card ending 4821 was declined.",
    "The reference 4111 1111 1111 1112 does not work.",  # fails Luhn
    "Account DE89 3704 0044 0532 0130 02 is not mine.",  # fails the IBAN checksum (and Luhn)
    "See section 12.4 of the terms, version 2.4.1.",
    "The call was at 10:30 and lasted 14 minutes.",
    "I have been waiting 21 days for claim status.",
    "Order 12345 shipped in 3 boxes.",
    "Dear Team, this is Urgent.",
    "Thanks,\nThe Smith family",
]


@dataclass
class LabeledDoc:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    known: dict[str, list[str]] = field(default_factory=dict)
    hard: list[tuple[int, int, str]] = field(default_factory=list)  # no-cue names: only a name list or NER finds them


def _digits(rng, n):
    return "".join(rng.choice(string.digits) for _ in range(n))


def _value(entity: str, rng: random.Random, name: str) -> str:
    if entity == "PERSON":
        return f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}"
    if entity == "EMAIL":
        return f"{rng.choice(GIVEN).lower()}{rng.choice(['.', '_', ''])}{rng.randint(1, 999)}@" \
               f"{rng.choice(['example.com', 'mail.example.org', 'post.test'])}"
    if entity == "PHONE":
        return rng.choice([f"+1 555 01{rng.randint(0, 9)} {_digits(rng, 4)}", f"(555) 01{rng.randint(0, 9)}-{_digits(rng, 4)}",
                           f"+44 7700 900{_digits(rng, 3)}", f"07700 900{_digits(rng, 3)}", f"+49 30 {_digits(rng, 7)}",
                           f"+33 1 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
                           f"+61 491 570 {_digits(rng, 3)}", f"+91 98765 {_digits(rng, 5)}"])
    if entity == "CARD_NUMBER":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16)])
        number = prefix + _digits(rng, length - len(prefix) - 1)
        number += luhn.calc_check_digit(number)
        return rng.choice([number, " ".join(number[i:i + 4] for i in range(0, len(number), 4)),
                           "-".join(number[i:i + 4] for i in range(0, len(number), 4))])
    if entity == "IBAN":
        country, bban = rng.choice([("DE", _digits(rng, 18)), ("NL", "ABNA" + _digits(rng, 10)),
                                    ("GB", "NWBK" + _digits(rng, 14))])
        number = country + iban.calc_check_digits(country + "00" + bban) + bban
        return rng.choice([number, " ".join(number[i:i + 4] for i in range(0, len(number), 4))])
    if entity == "US_SSN":
        sep = rng.choice(["-", " "])
        return f"{rng.choice([a for a in range(1, 900) if a != 666]):03d}{sep}{rng.randint(1, 99):02d}{sep}" \
               f"{rng.randint(1, 9999):04d}"
    if entity == "IP_ADDRESS":
        return rng.choice([f"203.0.113.{rng.randint(1, 254)}", f"198.51.100.{rng.randint(1, 254)}",
                           f"2001:db8:{rng.randint(1, 0xfff):x}::{rng.randint(1, 0xfff):x}"])
    if entity == "DATE_OF_BIRTH":
        y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
        month = ["January", "March", "June", "September", "November", "Dec"][m % 6]
        return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{month} {d}, {y}", f"{d} {month} {y}"])
    if entity == "SECRET":
        alphabet = string.ascii_letters + string.digits
        return rng.choice(["AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
                           "tok_" + "".join(rng.choice(alphabet) for _ in range(30)),
                           rng.choice(["Kestrel", "Paprika", "Lantern"]) + rng.choice("!#$") + _digits(rng, 4)])
    if entity == "ADDRESS":
        return f"{rng.randint(1, 999)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    if entity == "POLICY_NUMBER":
        return f"POL-{_digits(rng, 7)}"
    if entity == "CLAIM_NUMBER":
        return f"CLM-{rng.randint(2020, 2026)}-{_digits(rng, 6)}"
    if entity == "INVOICE_NUMBER":
        return f"INV-{_digits(rng, 8)}"
    if entity == "ACCOUNT_NUMBER":
        return f"ACC-{_digits(rng, 9)}"
    raise ValueError(entity)


def make(n_docs: int = 400, seed: int = 11, negatives_share: float = 0.2) -> list[LabeledDoc]:
    """`n_docs` messages of two to four sentences each; a share of sentences are negatives."""
    rng = random.Random(f"pii-corpus-{seed}")
    docs = []
    for _ in range(n_docs):
        customer = _value("PERSON", rng, "")
        email = _value("EMAIL", rng, "")
        doc = LabeledDoc("", [], {"PERSON": [customer], "EMAIL": [email]})
        pieces = []
        for _ in range(rng.randint(2, 4)):
            pieces.append(rng.choice(NEGATIVES) if rng.random() < negatives_share else rng.choice(TEMPLATES))
        lower = rng.random() < 0.1
        for k, template in enumerate(pieces):
            if k:
                doc.text += rng.choice([" ", "\n"])
            pos = 0
            for m in re.finditer(r"\{([A-Z_]+)\}", template):
                doc.text += template[pos:m.start()]
                entity = m.group(1)
                value = customer if entity == "PERSON_SAME" else _value(entity.replace("_HARD", ""), rng, customer)
                if entity == "PERSON_HARD":
                    doc.hard.append((len(doc.text), len(doc.text) + len(value), "PERSON"))
                entity = "PERSON" if entity in ("PERSON_SAME", "PERSON_HARD") else entity
                if lower and entity not in ("PERSON",):
                    value = value.lower()
                doc.spans.append((len(doc.text), len(doc.text) + len(value), entity))
                doc.text += value
                pos = m.end()
            doc.text += template[pos:]
        if lower:  # lower-case mail: names stay capitalised so they remain names in the gold set
            doc.text = "".join(ch.lower() if not any(s <= i < e and t == "PERSON" for s, e, t in doc.spans) else ch
                               for i, ch in enumerate(doc.text))
        docs.append(doc)
    return docs


def score(docs: list[LabeledDoc], predicted: list[list[tuple[int, int, str]]]) -> dict:
    """Recall: share of gold spans fully covered by predicted spans (any type: for privacy, gone is gone).
    Precision: share of predicted spans that overlap a gold span. Also recall per gold entity type, and recall on
    the spans kit claims to find (`recall_claimed`: all but the no-cue names of `LabeledDoc.hard`)."""
    hits: dict[str, list[int]] = {}
    claimed = [0, 0]
    pred_ok = pred_total = 0
    for doc, pred in zip(docs, predicted):
        mask = [False] * len(doc.text)
        for s, e, _ in pred:
            for i in range(s, min(e, len(mask))):
                mask[i] = True
        for span in doc.spans:
            s, e, t = span
            hit = all(mask[s:e])
            hits.setdefault(t, [0, 0])
            hits[t][0] += hit
            hits[t][1] += 1
            if span not in doc.hard:
                claimed[0] += hit
                claimed[1] += 1
        for s, e, _ in pred:
            pred_total += 1
            pred_ok += any(s < ge and e > gs for gs, ge, _ in doc.spans)
    covered, total = sum(h for h, _ in hits.values()), sum(n for _, n in hits.values())
    return {"gold_spans": total, "recall": round(covered / total, 4) if total else None,
            "recall_claimed": round(claimed[0] / claimed[1], 4) if claimed[1] else None,
            "hard_spans": total - claimed[1],
            "predicted_spans": pred_total, "precision": round(pred_ok / pred_total, 4) if pred_total else None,
            "recall_by_type": {t: round(h / n, 4) for t, (h, n) in sorted(hits.items())}}
