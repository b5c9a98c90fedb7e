"""Privacy audit: an independent second pass over the files prepare wrote, looking for anything that should be gone.

In: the written JSONL files, the raw known values (every customer name, email, account number … read from the
structured columns of the source), the planted canaries, and the business-id patterns. Out: a dict for
`data/audit.json` — passed or not, counts per check, and for each hit the file, row, id, field and check that fired.
Never the matched text: an audit report must not become a new copy of the leak.

Why a separate code path: a bug in `kit.privacy.redact` would also blind an audit that calls it. So nothing here imports
`kit.privacy.redact`; the checks are written differently and deliberately broader (any 13–19 digit run passing Luhn, any
run of 9+ digits, any "@" between word characters, any full date with a birth-plausible year, any long random token).
A broad audit can fail on something harmless; it then names the row, and the fix is a redaction pattern or an
id pattern — failing closed is the point. Names are the exception: a broader name rule would fail on ordinary
capitalised words, so the person-name check restates the redactor's no-cue rule (a census given name followed by a
capitalised word, or a capitalised word followed by a census surname) in its own code over the same gazetteer data
(`kit.privacy.gazetteer`), on plain ASCII words only. The redactor replaces every pair this check matches, so redacted text
does not trip it; a hit means a full name got past the redactor.

The redactor's strongest evidence for names, places and addresses is a learned recogniser (`kit.privacy.ner`); checking its
output with the same model, or the same model at a lower threshold, would repeat its blind spots. The audit has its
own evidence instead, which the redactor never reads: a list of ~19,000 given names and ~19,000 surnames from every
locale of Faker (`gazetteer.world_names`; a capitalised given name followed by a capitalised surname, or either one
right after "my name is" in any case), and its own international street words and postcode shapes
(`_STREET_LINE`, `_POSTCODE_PLACE`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Iterable

from stdnum import iban, luhn

from kit.io import read_jsonl
from kit.privacy.gazetteer import NOT_NAME_PARTS, census_key, census_names, world_names

PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")
NER_NOTE = ("names are checked against the known names from structured columns, the planted canary names, census "
            "given names and surnames in pairs of capitalised words, and ~38,000 given names and surnames of 100+ "
            "locales (Faker's lists; independent of the redactor's recogniser); addresses by street words of 20 "
            "languages and postcode shapes next to a place name")

_DIGIT_RUN = re.compile(r"\+?\d(?:[ ().\-/]{0,2}\d){8,}")  # 9+ digits, people's separators allowed
# Any "@" between word characters: an address, tokenised ("a@croydon . gov . uk"), broken ("jane@example. com") or
# a handle glued to a word ("RT@DeLynnRizzo"), all of which the redactor replaces whole.
_AT_SIGN = re.compile(r"\w@\w")
_IBAN_LIKE = re.compile(r"\b[A-Za-z]{2}\d{2}[A-Za-z0-9 ]{11,36}")
_SSN_LIKE = re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")
_IP_LIKE = re.compile(r"[0-9A-Fa-f:.]{7,39}")
_YEAR = r"((?:19|20)\d\d)"
_DATE_LIKE = re.compile("|".join([rf"\b{_YEAR}-\d\d?-\d\d?\b", rf"\b\d\d?[./-]\d\d?[./-]{_YEAR}\b",
                                  rf"\b\d\d?(?:st|nd|rd|th)? [A-Za-z]{{3,9}}\.?,? {_YEAR}\b",
                                  rf"\b[A-Za-z]{{3,9}}\.? \d\d?(?:st|nd|rd|th)?,? {_YEAR}\b"]))
_BIRTH_CUE = re.compile(r"born|birth|d\.?o\.?b", re.IGNORECASE)
_SECRET_PREFIX = re.compile(r"\b(?:AKIA[0-9A-Z]{12,}|sk_(?:live|test)_\w+|xox[abposr]-[\w-]+|gh[pousr]_\w{20,}|"
                            r"eyJ[\w-]{10,}\.[\w-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY)")
_SECRET_CUE = re.compile(r"\b(?:password|passwd|pwd|passcode|api[ _-]?key|token|secret)\b\W{0,4}(?:is |was |to )?"
                         r"\W{0,2}(\S+)", re.IGNORECASE)
_LONG_TOKEN = re.compile(r"\S{20,}")
_LINK = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.)")
# A plain capitalised ASCII word, not touching letters, digits, apostrophes, hyphens, dots before it or "@".
_NAME_WORD = re.compile(r"(?<![\w'’@.\-])[A-Z][a-z]+(?![\w'’@\-])")
# Unambiguous street words in any case; words that are also common English ("way", "close", "court") only when
# capitalised, as in "4 Kingfisher Close".
_STREET_LINE = re.compile(r"\b\d{1,5},? (?:[^\W\d_]+ ){1,3}(?:(?i:road|street|avenue|lane|drive|boulevard|rd|ave|blvd)|"
                          # "via" is English too ("2014 via http…", "sent 3 via email"): not before a link, a
                          # handle or a word that says how something was sent.
                          r"Close|Court|Way|Place|St|Dr)\b|\b\d{1,5},? (?:(?i:rue|calle) \w+|(?i:via) (?!(?i:https?|www|"
                          r"e-?mail|mail|phone|text|sms|post|the|an?|my|our|your|their)\b)[^\W\d_])|"
                          r"\b\d{1,5},? \w*(?i:strasse|straße|weg|gasse)\b|"
                          # A street word of another language before the name, a house number after it ("Rua das
                          # Flores 128", "aleja Okrężna 776", "Calle Mayor, 5"), or a suffix word ("Kossuth utca 54").
                          r"(?i:\b(?:rua|avenida|av\.|travessa|praça|largo|calle|carrera|paseo|plaza|camino|"
                          r"ulica|ul\.|aleja|al\.|plac|osiedle|chemin|allée|impasse|boulevard|bd|quai|piazza|viale|"
                          r"corso|vicolo|strada|stradă|bulevardul|str\.|jalan|jl\.|gang|gg\.|sokak|sokağı|caddesi|"
                          r"cd\.|mahallesi|ngõ|đường|phố|ulice|utca|út|tér|straat|laan|plein|gracht|vej|gade|gatan|"
                          r"vägen|gata|veien|katu|tie|iela|gatvė|cesta|trg|ulitsa) )(?:[^\W\d_]+[ ,]{1,2}){1,4}"
                          r"(?:n[º°o]\.? ?)?\d{1,5}[a-z]?\b|"
                          r"\b[^\W\d_]+(?:ova|eva|ská|ého)? (?i:utca|út|iela|gatvė|ulica|tie|katu|vej|gade|gatan|vägen|"
                          r"straat|laan|sokak|caddesi|cesta) \d{1,5}\b")
# A postcode in a national shape right before a capitalised place name ("4050-265 Porto", "00-950 Warszawa",
# "SW1A 1AA London" and "London SW1A 1AA", "1012 AB Amsterdam", "H3Z 2Y7"), or after a comma ("…, 80331 München").
_POSTCODE_PLACE = re.compile(r"\b\d{4}-\d{3} [A-ZÀ-Þ]|\b\d{2}-\d{3} [A-ZÀ-Þ]|\b\d{5}-\d{3}\b|"
                             r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|"
                             # not a year's era or an hour before a function word ("2000 AD At …"); "1012 AM Amsterdam"
                             # is a Dutch postcode
                             r"\b\d{4} ?(?!(?:AD|BC|AM|PM) (?:At|In|On|The|And|Of|To|For|By|From|With)\b)[A-Z]{2} "
                             r"[A-ZÀ-Þ][a-zà-ÿ]|"
                             r"\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b|, \d{4,5} [A-ZÀ-Þ][a-zà-ÿ]{2,}")


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


# A capitalised word in any Latin alphabet ("Voldemārs", "Araújo", "Ó Rúnaidhe" by its second word).
_WORLD_WORD = re.compile(r"(?<![\w'’@.\-])[A-ZÀ-ÖØ-ÞĀ-ſ][a-zß-öø-ÿĀ-ſ]+(?![\w'’@\-])")
# Only cues that introduce a name; "I am"/"I'm" also introduce states ("I'm fed up", "I am Will-ing").
_NAME_CUE = re.compile(r"\b(?:my name is|my name's|name is|call me|this is \w+ speaking)\W{1,3}([^\W\d_]{2,})",
                       re.IGNORECASE)


def _has_world_name(text: str) -> bool:
    """A capitalised given name of any locale right before a capitalised surname of any locale, or either kind of
    name in any case right after a self-introduction ("my name is sekaran")."""
    names = world_names()
    words = list(_WORLD_WORD.finditer(text))
    for first, second in zip(words, words[1:]):
        # world_names() already leaves out the words that are never name parts.
        if second.start() == first.end() + 1 and census_key(first.group()) in names["given"] \
                and census_key(second.group()) in names["surname"]:
            return True
    for m in _NAME_CUE.finditer(text):
        key = census_key(m.group(1))
        if key in names["given"] or key in names["surname"]:
            return True
    return False


def _has_census_name(text: str) -> bool:
    """Two capitalised words one space apart, neither a word that is never a name part, where the first is a census
    given name or the second a census surname ("Hannah Brennan", "Tomasz Brennan", "Hannah Okafor")."""
    names = census_names()
    words = list(_NAME_WORD.finditer(text))
    for first, second in zip(words, words[1:]):
        if second.start() == first.end() + 1 and text[first.end()] == " " \
                and first.group().lower() not in NOT_NAME_PARTS and second.group().lower() not in NOT_NAME_PARTS \
                and (first.group().upper() in names["given"] or second.group().upper() in names["surname"]):
            return True
    return False


def _pattern_checks(text: str) -> Iterable[str]:
    """Names of the generic checks that fire on `text` (placeholders already blanked out)."""
    for m in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield "card_number"
        else:
            yield "long_digit_run"
    if _AT_SIGN.search(text):
        yield "email"
    for m in _IBAN_LIKE.finditer(text):
        words = m.group().split(" ")
        if any(iban.is_valid("".join(words[:k]).upper()) for k in range(len(words), 0, -1)):
            yield "iban"
    if _SSN_LIKE.search(text):
        yield "us_ssn"
    for m in _IP_LIKE.finditer(text):
        candidate = m.group().strip(".:")
        if candidate.count(".") == 3 or candidate.count(":") >= 2:
            try:
                ipaddress.ip_address(candidate)
                yield "ip_address"
            except ValueError:
                pass
    last_birth_year = date.today().year - 16
    for m in _DATE_LIKE.finditer(text):
        year = int(next(g for g in m.groups() if g))
        if 1900 <= year <= last_birth_year or _BIRTH_CUE.search(text[max(0, m.start() - 25):m.start()]):
            yield "date_of_birth"
    if _STREET_LINE.search(text):
        yield "street_address"
    if _POSTCODE_PLACE.search(text):
        yield "postcode"
    if _has_census_name(text) or _has_world_name(text):
        yield "person_name"
    if _SECRET_PREFIX.search(text):
        yield "secret"
    for m in _SECRET_CUE.finditer(text):
        if not PLACEHOLDER.fullmatch(m.group(1).strip(".,;:!?")) and len(m.group(1)) >= 6 \
                and any(c.isdigit() for c in m.group(1)):
            yield "secret"
    for m in _LONG_TOKEN.finditer(text):
        # A link is judged piece by piece (between / ? & = #): a key in "?key=…" is one piece, while a short link
        # ("https://t.co/Ri48RQT03e") is long and mixed only as a whole, and its code is no secret. Anything else is
        # judged whole (a base64 key may hold "/").
        token = m.group().strip(".,;:!?()")
        for tok in re.split(r"[/?&=#]", token) if _LINK.match(token) else [token]:
            # 4+ letters and 4+ digits: a random key has both, a timestamp ("2026-03-05T09:15:00Z") has 2 letters.
            # A random key's digits fall apart in several runs; words around one number are a hashtag, a file or a
            # slug ("#PeopleWhoMadeMy2014", "File:Platovterm1981.jpg", "fifpro_xi_for_2016_neuer").
            if len(tok) >= 20 and sum(c.isdigit() for c in tok) >= 4 and sum(c.isalpha() for c in tok) >= 4 \
                    and len(re.findall(r"\d+", tok)) >= 2 and _entropy(tok) >= 3.5:
                yield "secret"


def _value_pattern(values: Iterable[str]) -> re.Pattern | None:
    """One case-insensitive regex for a list of literal values, each also matched with its spaces/dashes removed."""
    alts = set()
    for v in values:
        v = str(v or "").strip()
        if len(v) >= 4:
            alts.add(re.escape(v))
            compact = re.sub(r"[\s\-]", "", v)
            if compact != v and len(compact) >= 6:
                alts.add(re.escape(compact))
    if not alts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(sorted(alts, key=len, reverse=True)) + r")(?!\w)", re.IGNORECASE)


def _json_strings(value: str) -> str:
    """An extract answer is JSON text: its string values are checked, one per line, not its punctuation (compact
    JSON is a long run of non-space characters, which the random-token check would take for a key)."""
    import json

    if not value.startswith("{"):
        return value
    try:
        obj = json.loads(value)
    except json.JSONDecodeError:
        return value
    out, stack = [], [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif v is not None:
            out.append(str(v))
    return "\n".join(out)


def audit_rows(files: dict[str, list[dict]], known_values: dict[str, list[str]] | None = None,
               canary_values: dict[str, list[str]] | None = None, id_patterns: dict[str, str] | None = None,
               skip_fields: tuple[str, ...] = ("id", "label", "source_line", "source", "redactions"),
               max_findings: int | None = 100) -> dict:
    """Scan every string field of every row; return the audit report (no matched text in it)."""
    known = {k: _value_pattern(v) for k, v in (known_values or {}).items()}
    canary = {k: _value_pattern(v) for k, v in (canary_values or {}).items()}
    ids = {k: re.compile(p, re.IGNORECASE) for k, p in (id_patterns or {}).items()}
    findings = []
    for fname, rows in files.items():
        for i, row in enumerate(rows, start=1):
            for fld, value in row.items():
                if fld in skip_fields or not isinstance(value, str):
                    continue
                text = PLACEHOLDER.sub(" ", _json_strings(value))
                checks = set(_pattern_checks(text))
                checks |= {f"business_id:{k}" for k, rx in ids.items() if rx.search(text)}
                checks |= {f"known_value:{k}" for k, rx in known.items() if rx and rx.search(text)}
                checks |= {f"canary:{k}" for k, rx in canary.items() if rx and rx.search(text)}
                for check in sorted(checks):
                    findings.append({"file": fname, "row": i, "id": row.get("id"), "field": fld, "check": check})
    by_check = dict(Counter(f["check"] for f in findings))
    return {
        "passed": not findings, "hits": len(findings), "by_check": by_check, "findings": findings[:max_findings],
        "rows_scanned": {f: len(r) for f, r in files.items()},
        "known_values_checked": {k: len(v) for k, v in (known_values or {}).items()},
        "canaries_checked": sum(len(v) for v in (canary_values or {}).values()),
        "checks": ["card_number (Luhn)", "long_digit_run (9+ digits)", "email", "iban (checksum)", "us_ssn",
                   "ip_address", "street_address (street words of 20 languages)",
                   "postcode (national shapes next to a place)",
                   "person_name (census given name or surname in a capitalised pair; a given name and a surname of "
                   "any locale in a capitalised pair; a name of any locale after a self-introduction)",
                   "date_of_birth (cue or birth-plausible year)", "secret (provider prefixes, "
                   "'password: …', random tokens)", "business_id:*", "known_value:*", "canary:*"],
        "ner_model": NER_NOTE,
    }


def audit_files(paths: list[str | Path], **kw) -> dict:
    return audit_rows({Path(p).name: read_jsonl(p) for p in paths}, **kw)
