"""Redaction: replace personal data and business identifiers in free text with typed, consistent placeholders.

In: a text (and optionally the values known to belong to this customer, from structured columns). Out: the text
with `<EMAIL_1>`, `<PERSON_1>` … placeholders — the same value gets the same placeholder throughout one text — and
the spans found, as `(start, end, entity_type)` in the original text. Findings never carry the matched text.

Detectors are small and independent (a registry, as in Presidio): each has a name, an entity type and a finder.
Libraries do the hard parts: `phonenumbers` finds international phone numbers, `python-stdnum` checks Luhn.
The regexes kept by hand are for formats no installed library covers (business identifiers, street lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

import phonenumbers
from stdnum import luhn

Span = tuple[int, int, str]

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD_RE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# A house number, one to three words and a street-type word ("12 Harbour Road", "7 Rue des Lilas"), then the
# rest of the address line (city, postcode) up to the end of the sentence.
STREET_RE = re.compile(
    r"\b\d{1,5},? (?:(?:[a-z]+ ){0,2}[a-z]+ ?"
    r"(?:avenue|ave|road|rd|street|st|lane|ln|drive|dr|close|court|way|strasse|straße|boulevard|blvd|place)"
    r"|(?:rue|via|calle) (?:[a-z]+ ){0,2}[a-z]+)\b(?:,[^.\n!?]{1,40})?", re.IGNORECASE)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "AU", "IN")

# Business identifiers: sensible defaults for the course's insurance data; users pass their own patterns.
DEFAULT_ID_PATTERNS = {
    "POLICY_NUMBER": r"\bPOL-?\d{6,10}\b",
    "CLAIM_NUMBER": r"\bCLM-?\d{4}-?\d{4,8}\b",
    "ACCOUNT_NUMBER": r"\bACC-?\d{6,12}\b",
    "INVOICE_NUMBER": r"\bINV-?\d{5,12}\b",
}


@dataclass(frozen=True)
class Detector:
    name: str
    entity: str
    find: Callable[[str], Iterable[tuple[int, int]]]


def _regex(pattern: re.Pattern) -> Callable[[str], Iterable[tuple[int, int]]]:
    return lambda text: ((m.start(), m.end()) for m in pattern.finditer(text))


def _cards(text: str) -> Iterable[tuple[int, int]]:
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield m.start(), m.end()


_PIECE_BEFORE = re.compile(r"\d[ -]?$")
_PIECE_AFTER = re.compile(r"[ -]?\d")


def _phones(text: str) -> Iterable[tuple[int, int]]:
    seen = set()
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            # POSSIBLE also accepts short digit runs ("10 days"); a phone number has at least 7 digits.
            # A match glued to more digits ("4111 | 1111 1111 1112") is a piece of a longer number, such as a card.
            if (m.start, m.end) not in seen and sum(ch.isdigit() for ch in m.raw_string) >= 7 \
                    and not _PIECE_BEFORE.search(text[:m.start]) and not _PIECE_AFTER.match(text[m.end:]):
                seen.add((m.start, m.end))
                yield m.start, m.end


@dataclass(frozen=True)
class RedactionResult:
    text: str
    spans: list[Span] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, entity in self.spans:
            out[entity] = out.get(entity, 0) + 1
        return out


class Redactor:
    def __init__(self, detectors: list[Detector]):
        self.detectors = detectors

    @classmethod
    def default(cls, id_patterns: dict[str, str] | None = None) -> "Redactor":
        patterns = DEFAULT_ID_PATTERNS if id_patterns is None else id_patterns
        detectors = [
            Detector("email", "EMAIL", _regex(EMAIL_RE)),
            Detector("card_luhn", "CARD_NUMBER", _cards),
            *[Detector(f"id_{k.lower()}", k, _regex(re.compile(p, re.IGNORECASE))) for k, p in patterns.items()],
            Detector("phone", "PHONE", _phones),
            Detector("street_address", "ADDRESS", _regex(STREET_RE)),
        ]
        return cls(detectors)

    def find(self, text: str, known: dict[str, list[str]] | None = None) -> list[Span]:
        """Spans to redact, earlier detectors winning overlaps (so a card number is not also a phone number)."""
        spans: list[Span] = []
        for entity, values in (known or {}).items():
            for value in _known_variants(entity, values):
                for m in re.finditer(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.IGNORECASE):
                    spans.append((m.start(), m.end(), entity))
        for det in self.detectors:
            spans.extend((s, e, det.entity) for s, e in det.find(text))
        kept: list[Span] = []
        for s, e, ent in sorted(spans, key=lambda x: (x[0], -(x[1] - x[0]))):
            if kept and s < kept[-1][1]:
                continue
            kept.append((s, e, ent))
        return kept

    def redact(self, text: str, known: dict[str, list[str]] | None = None) -> RedactionResult:
        spans = self.find(text, known)
        ids: dict[tuple[str, str], int] = {}
        per_type: dict[str, int] = {}
        out, pos = [], 0
        for s, e, ent in spans:
            key = (ent, _norm(text[s:e]))
            if key not in ids:
                per_type[ent] = per_type.get(ent, 0) + 1
                ids[key] = per_type[ent]
            out.append(text[pos:s])
            out.append(f"<{ent}_{ids[key]}>")
            pos = e
        out.append(text[pos:])
        return RedactionResult("".join(out), spans)


def _norm(value: str) -> str:
    return re.sub(r"[\s\-().]", "", value).lower()


def _known_variants(entity: str, values: list[str]) -> list[str]:
    """Known values to scrub; for a person also each name part ("Maria Okafor" → "Maria", "Okafor")."""
    out = []
    for v in values:
        v = (v or "").strip()
        if len(v) < 2:
            continue
        out.append(v)
        if entity == "PERSON":
            out.extend(p for p in v.split() if len(p) >= 3)
    return sorted(set(out), key=len, reverse=True)
