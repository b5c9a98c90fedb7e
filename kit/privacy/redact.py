"""Redaction: replace personal data, secrets and business identifiers in free text with typed, consistent placeholders.

In: a text (and optionally the values known to belong to this customer, from structured columns). Out: the text
with `<EMAIL_1>`, `<PERSON_1>` … placeholders — the same value gets the same placeholder throughout one text, and a
person's first name alone gets the placeholder of their full name — and the spans found, as
`(start, end, entity_type)` in the original text. Findings never carry the matched text.

    from kit.privacy.redact import Redactor
    res = Redactor.default().redact("mail me at a@example.com")
    res.text   # 'mail me at <EMAIL_1>'
    res.spans  # [(11, 24, 'EMAIL')]

Detectors are small and independent (a registry, as in Presidio): each has a name, an entity type and a finder, and
each is tested alone. Libraries do the hard parts: `phonenumbers` finds international phone numbers,
`python-stdnum` checks Luhn and IBAN checksums, `detect-secrets` supplies the provider key formats (AWS, Slack,
Stripe, JWT, private keys …), `ipaddress` validates IPs. The regexes kept by hand cover what no installed library
does: business identifiers, street lines, dates of birth (a date is only personal next to "born"/"DOB"), secrets
typed as "password: …", and names next to a cue ("my name is …", a sign-off line).

Names, places, street addresses, postcodes and organisations are found by an entity recogniser (`kit.privacy.ner`: two small
spaCy pipelines kit trains itself on public NER text and generated multi-locale messages, spans united, shipped in
the package), and also (1) as known values from structured columns, (2) by the cue heuristic above, (3) with no cue,
as two or three adjacent capitalised words whose first is a given name or whose last is a surname of the 1990 US
Census (`kit.privacy.gazetteer`; the census files ship in the PyPI package `names`), (4) by address grammar: street types of
the US Postal Service's list after a house number, street words of other languages before one, compound street
names ("Dietzgasse 1"), PO boxes, Latin American plate numbers ("Cl. 109 # 7R-3 Sur"), US lines ending in a state and
ZIP, and (5) organisations by their legal form ("Rogner Albers KG"). The rules run first; a recogniser span mostly
covered by a rule's span of another type gives way to it. Two fallbacks add only what nothing else found: a lone
census given name ("ring Jane back") and, in chat typed in lower case, letter-and-digit codes ("nma 647814914").
What one text of a record reveals is a known value for the record's other texts (the answer's bare "Porto"). `bench/redaction.py` measures all of it on text kit did not write;
`NER_NOTE` says what is used, for reports.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable

import phonenumbers
from stdnum import iban, luhn

from kit.privacy.gazetteer import NOT_NAME_PARTS, census_key, census_names
from kit.privacy.ner import ENTITY as _NER_LABELS
from kit.privacy.ner import (
    EntityRecogniser,
    _function_words,
    _plain_word,
    address_tail,
    plausible,
)

NER_ENTITIES = tuple(sorted(set(_NER_LABELS.values())))

Span = tuple[int, int, str]

NER_NOTE = ("entity recogniser: two spaCy NER models of kit's, spans united (kit/privacy/ner_model, kit/privacy/ner_model_2; PERSON, "
            "LOCATION, ADDRESS, ORGANIZATION, ID_NUMBER; trained on WNUT-17, MultiDoGO and generated messages from "
            "35 and 43 Faker locales), beside known values from structured columns, name cues, the 1990 US Census "
            "name gazetteer (name pairs, and lone given names as a fallback), address grammar (street types, "
            "PO boxes, plate numbers, US state and ZIP) and legal forms of organisations; measured by "
            "bench/redaction.py")

# An address as written, or as tokenised text spells it ("museumeducation@croydon . gov . uk": spaces around each dot,
# lower-case parts, so a sentence's end in "me@home . Then" is not taken in).
EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9.-]+\.[A-Za-z]{2,}|[A-Za-z0-9-]+(?: \. [a-z0-9-]+)* \. [a-z]{2,})\b")
# A social-media handle ("@edsheeran", "RT@DeLynnRizzo"): it names its owner as directly as a full name does. It starts
# with a letter or "_" ("@5pm" is a time). Tokenised posts put a space after "@" ("@ jaketapper"), where "@" also means
# "at" ("@ the venue", "@ Cactus Club"): see _handles.
HANDLE_RE = re.compile(r"(?<![A-Za-z0-9._%+-])@( ?)([A-Za-z_][A-Za-z0-9_]{1,29})(?![A-Za-z0-9_])")
# "@" glued to the word before it is an address EMAIL_RE could not read whole ("jane.doe@example. com",
# "jane.doe@gmail") or a handle glued to a word ("RT@DeLynnRizzo"): the word before goes with it, since an address's
# local part is often its owner's name.
AT_GLUED_RE = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9]@[A-Za-z0-9_-]+")
CARD_RE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.IGNORECASE)
# US SSN as people write it (123-45-6789, 123 45 6789), or nine bare digits right after "SSN"/"social security".
SSN_RE = re.compile(r"\b(\d{3})([- ])(\d{2})\2(\d{4})\b")
SSN_CONTEXT_RE = re.compile(r"(?:ssn|social security(?: number| no\.?)?)\W{0,4}(?:is\W{0,2})?(\d{9})\b", re.IGNORECASE)
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE_PATTERN = (r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
                rf"|\d{{1,2}}(?:st|nd|rd|th)? {_MONTHS},? \d{{4}}|{_MONTHS} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})")
# A date is a date of birth next to a cue ("born on …", "DOB: …"), or when its year is one a customer could have been
# born in (1900 to 16 years ago): "charged on 2026-03-01" stays, a typo'd cue before "12/03/1984" does not save it.
DOB_RE = re.compile(rf"(?:born(?: on)?|date of birth|d\.?o\.?b\.?|birthday)\W{{0,3}}(?:is\W{{0,2}})?({DATE_PATTERN})",
                    re.IGNORECASE)
DATE_RE = re.compile(rf"\b{DATE_PATTERN}(?!\d)", re.IGNORECASE)
ADULT_AGE_YEARS = 16
# A house number, one to three words and a street-type word ("12 Harbour Road", "7 Rue des Lilas"), then the
# rest of the address line (city, postcode) up to the end of the sentence.
# Street-type words that are also everyday English ("no way", "close", "court") count only capitalised.
STREET_RE = re.compile(
    r"\b\d{1,5},? (?:(?:[A-Za-z]+ ){0,2}[A-Za-z]+ "
    r"(?:(?i:avenue|ave|road|rd|street|lane|ln|drive|strasse|straße|boulevard|blvd)|Close|Court|Way|Place|St|Dr)"
    r"|(?:[A-Za-z]+ )?[A-Za-z]+(?i:strasse|straße|weg|gasse)"
    r"|(?:(?i:rue|calle)|Via) (?:[A-Za-z]+ ){0,2}[A-Za-z]+)\b(?:,[^.\n!?]{1,40})?")
# The street types of the US Postal Service's list (Publication 28, appendix C1) and their British kin, less those that
# are often a product's or a ticket's last word ("3 Day Pass", "2 Smart Lights", "Key", "Club", "Course"), capitalised
# after one to three capitalised name words and a house number ("6658 Alexander Overpass", "132 Leonard Ferry"), or in
# a message typed all in lower case. A flat, suite or unit number may follow ("Apt. 905", "Suite 347").
_USPS_TYPES = """
alley annex arcade avenue bayou beach bend bluff bluffs bottom boulevard branch bridge brook brooks burg burgs
bypass canyon cape causeway center centre centers circle circles cliff cliffs corner corners court courts cove coves
creek crescent crest crossing crossroad curve dale dam divide drive drives estate estates expressway extension
extensions falls ferry field fields flat flats ford fords forest forge forges fork forks freeway garden gardens
gateway glen glens green greens grove groves harbor harbors harbour haven heights highway hill hills hollow inlet
island islands isle junction junctions knoll knolls lake lakes landing lane lodge loop manor manors meadow meadows
mews mill mills motorway mount mountain mountains neck orchard oval overpass park parks parkway parkways passage
path pike pine pines place plain plains plaza point points parade port ports prairie radial ranch rapid rapids rest
ridge ridges river road roads route row shoal shoals shore shores skyway spring springs square squares station
stravenue stream street streets summit terrace throughway trace track trafficway trail tunnel turnpike underpass
valley valleys viaduct view views village villages ville vista walk way ways wharf
""".split()
_UNIT = r"(?:,? (?:(?i:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|#)\.? ?#?\d{1,5}[A-Za-z]?|RD \d{1,2}))?"
STREET_TYPED_RE = re.compile(
    r"(?<![\w.,])\d{1,5}[A-Za-z]?,? (?:[A-ZÀ-Þ][^\W\d_]+[ -]){1,3}(?:" + "|".join(t.title() for t in _USPS_TYPES)
    + r")\b(?![ -](?!Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|Room)[A-Z][a-z])" + _UNIT)
# In a message typed all in lower case, only the unambiguous street types count, after name words that are not
# function words ("i waited 10 days and no way forward" is no street; "no 56 ben road" is).
_LOWER_TYPES = ("street st road rd avenue ave lane ln drive dr boulevard blvd highway hwy parkway pkwy terrace "
                "crescent circle court ct square sq cross").split()
STREET_TYPED_LOWER_RE = re.compile(
    r"(?<![\w.,])(?:(?:no\.?|#) ?)?\d{1,5},? ((?:[^\W\d_]+ |\d{1,3} (?:th|st|nd|rd) ){1,3})(?:"
    + "|".join(_LOWER_TYPES) + r")\b" + _UNIT.replace("(?i:", "(?:"))
# A flat, suite or unit before the street ("Flat 0, Wright Curve", "Studio 32, Newton Mountains", "Unit 4, 12 High
# Street"): the number and the street together.
UNIT_FIRST_RE = re.compile(r"\b(?:Flat|Apartment|Apt\.?|Unit|Suite|Studio)\s\d{1,4}[A-Za-z]?,\s(?:\d{1,5}\s)?"
                           r"(?:[A-ZÀ-Þ][^\W\d_]+\s){0,3}(?:" + "|".join(t.title() for t in _USPS_TYPES) + r")\b")
# A street name made of a name and a street word in one ("Dietzgasse 1", "Jockelallee 3-2", "Ladeckplatz 9/7",
# "Lindenstraße 12", "Dannebrogsgade 77", "Storgatan 4"), with its house number.
STREET_COMPOUND_RE = re.compile(
    r"(?<![\w-])[A-ZÀ-Þ][^\W\d_]*(?:straße|strasse|str\.|gasse|weg|allee|platz|ring|damm|ufer|steig|pfad|"
    r"gade|vej|gatan|vägen|gata|veien|vegen|katu|tie|straat|laan|plein|gracht|hof|dreef|kade|singel|markt|utca|út|"
    r"iela|gatvė|ulica)"
    r",?\s(?:n[º°o]\.?\s?)?\d{1,5}[a-zA-Z]?(?:[/-]\d{1,4}[a-zA-Z]?)?\b")
# A post-office box ("PO Box 23", "Postfach 1207", "Apartado 45", "Caixa Postal 12"); the town and postcode after it
# come with the address tail.
PO_BOX_RE = re.compile(r"(?<!\w)(?:(?i:p\.?\s?o\.?\s?box|post office box|postfach|apartado(?: postal)?|caixa postal|"
                       r"casilla(?: de correo)?|boîte postale|postbus|postboks))\s?\d{1,6}\b")
# Colombian and other Latin American lines: a street type, its number or name, then "#" or "N°" and the plate
# ("Cl. 109 # 7R-3 Sur", "Cr. 3I Este # 1-6", "Diag. San Juan N° 55", "av. calle 1ª # 7-1").
PLATE_RE = re.compile(
    r"(?<!\w)(?:(?i:cl|calle|cr|cra|kr|carrera|dg|diag|diagonal|tv|transv|transversal|av|avda|avenida|blv|bv|"
    r"circular|autopista)|AK|AC)\.?\s(?:[\w.ªº]+\s){0,3}?(?:#|N[º°o]\.?|n[º°]\.?|no\.)\s?\d{1,4}[A-Za-z]?"
    r"(?:-\d{1,4}[A-Za-z]?)?"
    r"(?:\s(?:Sur|Este|Norte|Oeste|Bis|sur|este|norte|oeste|bis)\b)?"
    r"(?:,?\s(?i:apto|apartamento|torre|casa|interior|int|piso|of|oficina|local)\.?\s?\d{1,5}[A-Za-z]?){0,2}")
# Capitalised words, a house number and a unit as written in Chile and elsewhere ("Los Palmitos 13 Of. 2195", "Calle
# Esmeralda 29 Dpto. 5147", "Pedro Aguirre Cerda 2681 Of. 9472").
NAME_NUMBER_UNIT_RE = re.compile(r"(?<![\w.])(?:[A-ZÀ-Þ][^\W\d_]+ ){1,4}\d{1,5} (?:Of|Dpto|Depto|Oficina|Piso|Apto|"
                                 r"Local|Casa)\.? ?\d{1,5}\b")
# US-style lines with no street word, as typed in chat: a house number, up to six words and a state code with a ZIP
# ("504 north 8 th cross seatlle wa 56874"). State codes that are everyday words ("in", "me", "or", "ok", "hi") are
# left out.
_STATES = ("al ak az ar ca co ct dc fl ga ia id il ks ky la ma md mi mn mo ms mt nc nd ne nh nj nm nv ny pa ri sc "
           "sd tn tx ut va vt wa wi wv wy").split()
US_LINE_RE = re.compile(r"(?<![\w.,])(?:(?i:no\.?|#) ?)?\d{1,5} (?:[^\W\d_]+ |\d{1,3} ){1,7}"
                        r"(?i:" + "|".join(_STATES) + r")\.? \d{4,5}(?:-\d{4})?\b")
# Street lines written street-word first, house number last, as in much of Europe and Latin America ("Rua das Flores
# 128", "avenue Lucas Badel 74", "ul. Marszałkowska 84/92", "Calle Mayor, 5", "Blv. San Fernando N° 921").
STREET_FIRST_RE = re.compile(
    r"(?<!\w)(?:(?i:avenue|av\.|avda\.|avenida|boulevard|blvd?\.|chemin|allée|impasse|rua|travessa|praça|ulica|ul\.|"
    r"aleja|osiedle|calle|carrera|cra?\.|cl\.|piazza|viale|strada|jalan|jl\.|gg\.|alameda|rambla|ronda|contrada|"
    r"vicolo|borgo|rotonda|quartiere|sentiero|ladeira|estrada|rodovia|vereda|diagonal|transversal|pasaje|"
    r"callejón|glorieta|cuesta|senda|ruta|urbanización|sokak|sokağı|caddesi|bulevardul|strada|ngõ|ngách|phố|"
    r"đường|hẻm)"
    # Words that are also everyday English or Spanish count only capitalised ("via phone 5", "plaza", "al.").
    r"|Via|Corso|Plaza|Paseo|Camino|Largo|Plac|Quai|Gang|"
    r"Av|Avda|R\.|C\.|Cl|Cra|Rue|Khu|Số|Residencial|Conjunto|Setor|Loteamento|Vila|Núcleo|"
    r"Travesía|Carretera|Camino|Prolongación|Calzada|Circuito|Cerrada|Privada|Andador|Retorno|Periférico|Viaducto|"
    r"Eje|Corredor)"
    r"\s+(?:[^\W\d_][\w'’.\-]*,?\s+){1,6}(?:n[º°o]\.?\s?|#\s?)?\d{1,5}[a-zA-Z]?(?:[/-]\d{1,4})?\b"
    r"(?:,? (?:(?i:apt|apartment|appartamento|piso|andar|suite|unit|flat|bloco|casa|lote|dpto|depto|of|apto)\.? ?"
    r"\d{1,5}[A-Za-z]?))?")
PHONE_REGIONS = ("US", "GB", "DE", "FR", "AU", "IN")

# Secrets typed in prose: "password: hunter2", "my PIN is 4821", "api key = abc…". The value is redacted.
SECRET_KEYWORD_RE = re.compile(
    r"\b(?:password|passwd|pwd|passcode|pin|api[ _-]?key|access[ _-]?key|secret(?:[ _-]?key)?|token|"
    r"private[ _-]?key)\b(?: (?:is|was))?\s*[:=]?\s*[\"']?([^\s\"'<>]{4,})", re.IGNORECASE)
# Random-looking tokens (unknown providers' keys): long, letters and digits mixed, high Shannon entropy.
TOKEN_RE = re.compile(r"[A-Za-z0-9_\-+/=.]{20,}")
TOKEN_MIN_ENTROPY = 3.5  # bits per character; English words and ids score lower, random keys over 4
# A password-shaped word: letters, then a symbol and digits ("Sunflower#2291"), even when the cue word before it is
# misspelt. Emails, ids and amounts match their own, earlier detectors first.
PASSWORD_SHAPED_RE = re.compile(r"(?<![\w@#!$%&*])[A-Za-z]{3,}[#!$%&*@][A-Za-z]*\d{2,}(?![\w@.])")

# Business identifiers: sensible defaults for the course's insurance data; users pass their own patterns.
DEFAULT_ID_PATTERNS = {
    "POLICY_NUMBER": r"\bPOL-?\d{6,10}\b",
    "CLAIM_NUMBER": r"\bCLM-?\d{4}-?\d{4,8}\b",
    "ACCOUNT_NUMBER": r"\bACC-?\d{6,12}\b",
    "INVOICE_NUMBER": r"\bINV-?\d{5,12}\b",
}

# An organisation by its legal form, after one to five capitalised words, "and"/"&" between them allowed ("Rogner Albers
# KG", "Bähr e.V.", "Hermanos Andreu S.L.", "Mzyk Sp.k.", "Comercial Valdés y Asociados SPA", "Jans CommV"). Forms that
# are also everyday words or initials ("AS", "SA", "ME", "CV", "AB") are left out; leading greetings, function and
# support words are not part of the name ("Thanks, Maria Ltd" → "Maria Ltd").
_LEGAL_FORMS = (r"GmbH(?: & Co\. KG)?|AG|KG|KGaA|OHG|GbR|UG|e\.\s?V\.|e\.\s?G\.|S\.\s?L\.|S\.\s?A\.|S\.A\.S\.|"
                r"S\.p\.A\.|SpA|SPA|S\.r\.l\.|Srl|SRL|S\.C\.|SARL|Ltd\.?|Limited|LLC|L\.L\.C\.|Inc\.?|"
                r"Corp\.?|PLC|plc|LLP|Pty\.? Ltd\.?|BV|B\.V\.|NV|N\.V\.|VOF|CommV|BVBA|Oy|Oyj|ASA|A/S|ApS|"
                r"Sp\. z o\.o\.|Sp\.\s?k\.|S\.A\.|s\.r\.o\.|a\.s\.|d\.o\.o\.|d\.d\.|Kft\.|Zrt\.|Nyrt\.|MMC|ASC|"
                r"TNHH|JSC|Tbk|C\.V\.|Ltda\.?|EIRELI|S\.A\.C\.|S\.R\.L\.|e figli|y Asociados|and Sons|& Sons|"
                r"e Hijos|y Hnos\.?|& Co\.?|und Partner|en Zonen")
LEGAL_FORM_RE = re.compile(r"(?<![\w-])(?:[A-ZÀ-Þ][^\W\d_]*(?:[-'’][^\W\d_]+)*,? (?:(?:and|und|e|y|et|en|&) )?){1,5}"
                           r"(?:" + _LEGAL_FORMS + r")(?![\w/])")

# Person-name cues. A name is one to three capitalised words (any alphabet's letters, hyphens, apostrophes), with
# lower-case particles allowed inside ("Aisha van der Berg").
_WORD = r"[A-ZÀ-ÖØ-Þ][^\W\d_]*(?:['’\-][^\W\d_]+)*"
_NAME = rf"({_WORD}(?: (?:(?:van|von|der|den|de|del|della|di|da|du|la|le|bin|al) )*{_WORD}){{0,2}})"
NAME_CUE_RE = re.compile(
    r"(?:\b(?i:my name is|name:|i am|i'm|this is|on behalf of(?: my \w+)?,?|account holder is|policy ?holder is|"
    r"signed,?|dear|hi|hello|(?:mr|mrs|ms|miss|mx|dr)\.?|(?:spoke|spoken|talked|talking|speak) (?:to|with)|"
    r"(?:your|the|my) (?:adjuster|agent|colleague|manager|supervisor|advisor|broker|case handler),?)) " + _NAME)
CLOSING_RE = re.compile(r"(?:^|\s)(?:thanks|thank you|regards|kind regards|best regards|best|cheers|sincerely|"
                        r"thx|many thanks|yours|warm regards)[,!.]?\s*$", re.IGNORECASE)
SIGNATURE_RE = re.compile(r"^" + _NAME + r"(?=\s|$)")
# Capitalised words that follow a cue but are not names ("I'm Writing", "Dear Team", "This is Urgent").
NOT_NAMES = frozenset("""
a an the team sir madam all there customer support service services claims claim billing policy insurance manager
supervisor writing not very so still really just here sorry happy glad afraid going trying also again please thanks
urgent regarding about your you we i it this that my our no yes ok okay good morning afternoon evening re fwd
complaint complaints department agent adjuster home car monday tuesday wednesday thursday friday saturday sunday
""".split())


@dataclass(frozen=True)
class Detector:
    name: str
    entity: str
    find: Callable[[str], Iterable[tuple[int, int]]]


def _regex(pattern: re.Pattern, group: int = 0) -> Callable[[str], Iterable[tuple[int, int]]]:
    return lambda text: ((m.start(group), m.end(group)) for m in pattern.finditer(text))


def _cards(text: str) -> Iterable[tuple[int, int]]:
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield m.start(), m.end()


def _ibans(text: str) -> Iterable[tuple[int, int]]:
    for m in IBAN_RE.finditer(text):
        # The regex may swallow a following word ("DE89 3704 … 3000 THANKS"); shrink to the longest valid prefix.
        value = m.group()
        while value:
            if iban.is_valid(value.upper()):
                yield m.start(), m.start() + len(value)
                break
            value = value[:value.rfind(" ")] if " " in value else ""


def _ssns(text: str) -> Iterable[tuple[int, int]]:
    for m in SSN_RE.finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(4)
        # Numbers the SSA never issues: area 000, 666 or 9xx, group 00, serial 0000.
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            yield m.start(), m.end()
    for m in SSN_CONTEXT_RE.finditer(text):
        yield m.start(1), m.end(1)


def _ips(text: str) -> Iterable[tuple[int, int]]:
    for pattern in (IPV4_RE, IPV6_RE):
        for m in pattern.finditer(text):
            if m.group().count(":") == 2 and "::" not in m.group():
                continue  # "10:30:45" is a time, not an IPv6 address
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            yield m.start(), m.end()


def _dates_of_birth(text: str) -> Iterable[tuple[int, int]]:
    from datetime import date

    for m in DOB_RE.finditer(text):
        yield m.start(1), m.end(1)
    last_birth_year = date.today().year - ADULT_AGE_YEARS
    for m in DATE_RE.finditer(text):
        year = re.search(r"(\d{4})|(\d{2})$", m.group())
        y = int(year.group(1)) if year.group(1) else None
        if y is not None and 1900 <= y <= last_birth_year:
            yield m.start(), m.end()


_PIECE_BEFORE = re.compile(r"\d[ -]?$")
_LOOKS_LIKE_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_PIECE_AFTER = re.compile(r"[ -]?\d")


def _phones(text: str) -> Iterable[tuple[int, int]]:
    if sum(c.isdigit() for c in text) < 7:
        return  # no phone number to find (the check below wants 7 digits): skip six passes of the matcher
    seen = set()
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            # POSSIBLE also accepts short digit runs ("10 days"); a phone number has at least 7 digits.
            # A match glued to more digits ("4111 | 1111 1111 1112") is a piece of a longer number, such as a card.
            if (m.start, m.end) not in seen and sum(ch.isdigit() for ch in m.raw_string) >= 7 \
                    and not _PIECE_BEFORE.search(text[:m.start]) and not _PIECE_AFTER.match(text[m.end:]) \
                    and not _LOOKS_LIKE_DATE.fullmatch(m.raw_string):
                seen.add((m.start, m.end))
                yield m.start, m.end


@lru_cache(maxsize=1)
def _provider_key_patterns() -> tuple[re.Pattern, ...]:
    """The key formats of detect-secrets' provider plugins (AWS, Slack, Stripe, GitHub, JWT, private keys …).

    Only the plugins' regexes are used: the plugins' own `analyze_line` can call the provider to verify a key, and
    preparation must make no network call. Entropy plugins need quoted strings (source code), so kit has its own
    token rule for prose, and IP addresses have their own detector.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    skip = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector", "KeywordDetector"}
    patterns = []
    for cls in get_mapping_from_secret_type_to_class().values():
        if cls.__name__ not in skip:
            patterns.extend(getattr(cls(), "denylist", ()))
    return tuple(patterns)


def shannon_entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def looks_random(token: str) -> bool:
    """A token that reads like a generated key: long, letters and digits mixed, high entropy."""
    token = token.strip(".,;:!?")
    if len(token) < 20 or shannon_entropy(token) < TOKEN_MIN_ENTROPY:
        return False
    # 4+ of each: a random key has both, a timestamp ("2026-03-05T09:15:00Z") has only two letters.
    digits_and_letters = sum(c.isdigit() for c in token) >= 4 and sum(c.isalpha() for c in token) >= 4
    mixed_case = sum(c.isupper() for c in token) >= 3 and sum(c.islower() for c in token) >= 3
    return digits_and_letters or (mixed_case and len(token) >= 24)


def _secrets(text: str) -> Iterable[tuple[int, int]]:
    for pattern in _provider_key_patterns():
        for m in pattern.finditer(text):
            yield m.start(), m.end()
    for m in SECRET_KEYWORD_RE.finditer(text):
        value = m.group(1).rstrip(".,;:!?)")
        if not re.fullmatch(r"<[A-Z_]+_\d+>", value) and value.lower() not in ("reset", "expired", "changed"):
            yield m.start(1), m.start(1) + len(value)


URL_PIECE_RE = re.compile(r"[^/?&=#]+")


def _words_joined(piece: str) -> bool:
    """A link slug: words and short numbers joined by "_" or "-" ("nearcertain_fifpro_xi_for_2016")."""
    parts = re.split(r"[_\-.]", piece)
    return len(parts) >= 3 and all(p.isalpha() or p.isdigit() and len(p) <= 4 for p in parts if p)


def _street_lines(text: str) -> Iterable[tuple[int, int]]:
    """Street lines by their street type (USPS list), unit-first lines, compound street names, US lines with a state
    and ZIP; in all-lower-case text also by the common street types after name words that are not function words."""
    for pattern in (STREET_TYPED_RE, UNIT_FIRST_RE, STREET_COMPOUND_RE, US_LINE_RE, PO_BOX_RE, PLATE_RE,
                    NAME_NUMBER_UNIT_RE):
        for m in pattern.finditer(text):
            yield m.start(), m.end()
    if not any(c.isupper() for c in text):
        for m in STREET_TYPED_LOWER_RE.finditer(text):
            if not any(w in _FUNCTION_WORDS for w in m.group(1).split()):
                yield m.start(), m.end()


# Words that never stand inside a street's name in lower-case chat ("10 days and no way", "5 of the court").
_FUNCTION_WORDS = frozenset("""
a an the and or but nor of to in on at by for from with into onto over under about after before than then as is am
are was were be been being it its i my me we our us you your he him his she her they them their this that these those
no not yes so if up out off all any some each every both few more most many much very just only also too again still
days day weeks week months month years year hours hour minutes minute times more less per
""".split())
# Reference codes as people type them in chat, letters and digits in groups ("nma 647814914", "hkm 506", "f 9 wv 26",
# "777 hhn"): only in a message with no capital letters (elsewhere ids have their own patterns and the recogniser).
# A run of such groups is cut at everyday words, units and street types; a piece of two to eight groups with a group of
# two or more digits and a group of letters (two letters at least when the piece has two groups) is a code ("room 12
# b", "5 th ave" and "12 b" are not).
_CODE_STOP = frozenset("""
a an the and or of to in on at by for from with as is am are was be it its i my me we us you your he she his her
they them no not yes so if but up out off all any one two per via vs x pm hr hrs min mins sec secs day days week
weeks yr yrs km kg g mg ml l mb gb tb kb usd eur gbp inr rs ft lb lbs oz mi mph kmh th st nd rd pc pcs qty nr nos
ph tel mob fax ext rm apt ste fl pin otp ssn id ref acc ac bal amt inv ord etc pls plz thx ok call text ring dial
room unit flat door gate seat row line page item size ver step year age aged only just over cost paid pay took got
get have has had were been will can cant dont did do does need want sent send lost more less than then last next
each both few many much very also too now here time hour into onto upto till amp lt gt dr mr mrs ms new old
card bank cash acct loan bill plan fee fees tax rate code zip box lot bus car van tv cell home work visa amex cvv exp
sum net due date dept euro quid cent ends with what when who how why else like same last just even once
""".split()) - {"vs"}
_CODE_GROUP = re.compile(r"[a-z]{1,4}|\d{1,12}")


def _chat_codes(text: str) -> Iterable[tuple[int, int]]:
    if any(c.isupper() for c in text):
        return
    def group(g) -> bool:
        return g is not None and bool(_CODE_GROUP.fullmatch(g.group())) and g.group() not in _CODE_STOP \
            and g.group() not in _LOWER_TYPES

    piece: list[re.Match] = []
    for g in [*re.finditer(r"\S+", text), None]:
        if group(g) and (not piece or g.start() == piece[-1].end() + 1):
            piece.append(g)
            continue
        words = [x.group() for x in piece]
        letters = [w for w in words if w.isalpha()]
        if 2 <= len(words) <= 8 and any(w.isdigit() and len(w) >= 2 for w in words) and letters \
                and (len(words) >= 3 or max(map(len, letters)) >= 2):
            yield piece[0].start(), piece[-1].end()
        piece = [g] if group(g) else []


def _organisations(text: str) -> Iterable[tuple[int, int]]:
    for m in LEGAL_FORM_RE.finditer(text):
        start = m.start()
        for w in re.finditer(r"[^\s,]+,?\s", m.group()):
            if w.group().strip(" ,").lower() not in NOT_NAME_PARTS:
                break
            start = m.start() + w.end()
        if m.end() - start > 2 and text[start:m.end()].split()[0] not in _LEGAL_WORDS:
            yield start, m.end()


_LEGAL_WORDS = frozenset(("GmbH", "AG", "KG", "Ltd", "LLC", "Inc", "BV", "NV", "&", "and", "y", "e"))


def _handles(text: str) -> Iterable[tuple[int, int]]:
    """"@name" always; "@ name" only when the name is no everyday word, no plain capitalised word and not in capitals,
    the shapes "@" takes as "at" ("@ the venue", "@ home", "@ Cactus Club", "10 units @ EUR 5"), so "@ jaketapper" and
    "@ SeanyReidy" are handles."""
    for m in HANDLE_RE.finditer(text):
        name = m.group(2)
        if m.group(1) and (_plain_word(name.lower()) or name.lower() in _function_words()
                           or name[0].isupper() and name[1:].islower() or name.isupper()):
            continue
        yield m.start(), m.end()


def _random_tokens(text: str) -> Iterable[tuple[int, int]]:
    for m in TOKEN_RE.finditer(text):
        value = m.group().rstrip(".,;:!?")
        if "/" in value:
            # A link or path: its pieces are judged one by one, so a key in "?token=…" or a path segment is still
            # found, but "//www.example.org/2016/12/29/some-article-title/" is not taken for a key as a whole.
            for p in URL_PIECE_RE.finditer(value):
                if looks_random(p.group()) and not _words_joined(p.group()):
                    yield m.start() + p.start(), m.start() + p.end()
        elif looks_random(value):
            yield m.start(), m.start() + len(value)
    for m in PASSWORD_SHAPED_RE.finditer(text):
        yield m.start(), m.end()


def _leading_name_words(words: list[str]) -> list[str]:
    """The leading words that are not common words ("Maria Okafor Writing" → "Maria Okafor"); a shouted word ends
    the name, and trailing particles are dropped."""
    kept = []
    for w in words:
        if w.lower() in NOT_NAMES or w.isupper() and len(w) > 1:
            break
        kept.append(w)
    while kept and kept[-1].islower():
        kept.pop()
    return kept


def _names(text: str) -> Iterable[tuple[int, int]]:
    for m in NAME_CUE_RE.finditer(text):
        words = m.group(1).split(" ")
        kept = _leading_name_words(words)
        if kept:
            start = m.start(1)
            yield start, start + len(" ".join(kept))
    # A sign-off: a line holding only a name, right after a closing line ("Thanks,\nMaria Okafor").
    lines = text.split("\n")
    offset = 0
    for i, line in enumerate(lines):
        if i > 0 and CLOSING_RE.search(lines[i - 1].strip()):
            m = SIGNATURE_RE.match(line.strip())
            kept = _leading_name_words(m.group(1).split(" ")) if m else []
            if kept:
                start = offset + line.index(m.group(1))
                yield start, start + len(" ".join(kept))
        offset += len(line) + 1


# No-cue person names. With no NER model, a name mentioned without a cue ("Hannah Brennan from your office rang") is
# found by shape and a gazetteer (`kit.privacy.gazetteer`: the 1990 US Census name files): two or three adjacent capitalised
# words, lower-case particles such as "van der" allowed between them, where the first is a census given name or the
# last a census surname. Census names that are everyday words count as neither ("Grace Period", "Late Fee"), and
# greetings, dates, street, place and company words end a run ("Dear", "Friday", "Street", "Insurance"). The census
# is US-centred: a name from elsewhere is found when one half is in it ("Aisha Okafor" by "Aisha", "Tomasz Brennan"
# by "Brennan") and missed when neither is.
#
# A capitalised word: an upper-case letter, then lower-case ones (or letters beyond Latin-1: "Dvořák"), with an
# optional Mc/Mac/O'/D' prefix and a hyphenated second part; a possessive "'s" may follow. "ACME" and "iPhone" are not.
_LOWER = r"[^\W\d_A-ZÀ-ÖØ-Þ]"
CAPITALISED_RE = re.compile(rf"(?<![\w@'’\-])(?:Mc|Mac|O['’]|D['’])?[A-ZÀ-ÖØ-Þ]{_LOWER}+"
                            rf"(?:-[A-ZÀ-ÖØ-Þ]{_LOWER}+)?(?=['’]s\b|[^\w'’]|$)")
# What may stand between two words of one name: a space, or a space and lower-case particles ("Aisha van der Berg").
NAME_GAP_RE = re.compile(r" (?:(?:van|von|der|den|de|del|della|di|da|du|la|le|dos|das|bin|ibn|al|ter|ten) )*")


def _is_given(word: str) -> bool:  # "Anne-Marie" by "Anne"
    return census_key(word.split("-")[0]) in census_names()["given"]


def _is_surname(word: str) -> bool:  # "Lopez-Garcia" by "Garcia"
    return census_key(word.split("-")[-1]) in census_names()["surname"]


def _census_names(text: str) -> Iterable[tuple[int, int]]:
    """Runs of capitalised words split at words that are never name parts; in each run, a pair of neighbours whose
    first is a census given name or whose second is a census surname is a name (pairs that share a word merge, so a
    middle name stays inside: "Mary Ann Smith")."""
    run: list[re.Match] = []
    for m in [*CAPITALISED_RE.finditer(text), None]:
        name_part = m is not None and m.group().lower() not in NOT_NAME_PARTS
        if name_part and run and NAME_GAP_RE.fullmatch(text, run[-1].end(), m.start()):
            run.append(m)
            continue
        start = end = None
        for a, b in zip(run, run[1:]):
            if _is_given(a.group()) or _is_surname(b.group()):
                if start is not None and a.start() < end:
                    end = b.end()
                else:
                    if start is not None:
                        yield start, end
                    start, end = a.start(), b.end()
        if start is not None:
            yield start, end
        run = [m] if name_part else []


# A census given name standing alone ("ring Jane back", "the way Jessica handled my call"): added after the rules
# and the recogniser, only where neither found anything, as a fallback for the lone first names the recogniser
# misses. Not next to another capitalised word (a run such as "Austin Office Park" is a place or a product, and a
# name pair is the census rule's), not in a text mostly in capitals, and at the start of a sentence not when the name is
# also an everyday word ("Frank", "Drew", "Max").
_EVERYDAY_GIVEN = frozenset("""
else guy frank sue drew max jack pat ray dawn august christian cliff brook glen penny holly ivy daisy gale robin
dee jan al ed lee bob mike rob sol tom son don van dell gene art iris skip buck cash chip dusty rusty sunny
""".split())
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"(“]\s*)$")


def _lone_given_names(text: str) -> Iterable[tuple[int, int]]:
    if sum(c.isupper() for c in text) > sum(c.islower() for c in text):
        return
    words = list(CAPITALISED_RE.finditer(text))
    for i, m in enumerate(words):
        w = m.group()
        if w.lower() in NOT_NAME_PARTS or not _is_given(w):
            continue
        before = words[i - 1] if i else None
        after = words[i + 1] if i + 1 < len(words) else None
        # A word before that is a greeting or other non-name word, or only capitalised as a sentence's first word
        # ("Both Jerry and …", "Dear Jane"), does not make a run; any capitalised word after does ("Austin Office").
        if before is not None and NAME_GAP_RE.fullmatch(text, before.end(), m.start()) \
                and before.group().lower() not in NOT_NAME_PARTS \
                and not _SENTENCE_START.search(text[:before.start()]) \
                or after is not None and NAME_GAP_RE.fullmatch(text, m.end(), after.start()):
            continue
        if w.lower() in _EVERYDAY_GIVEN and _SENTENCE_START.search(text[:m.start()]):
            continue
        yield m.start(), m.end()


@dataclass(frozen=True)
class RedactionResult:
    text: str
    spans: list[Span] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, entity in self.spans:
            out[entity] = out.get(entity, 0) + 1
        return out


PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z_]*_\d+>")


class Redactor:
    """Runs detectors in order; overlapping spans of one type merge, and where spans of different types overlap the
    longest wins, ties to the earlier detector."""

    def __init__(self, detectors: list[Detector], recogniser: "EntityRecogniser | None" = None):
        self.detectors = detectors
        self.recogniser = recogniser

    @property
    def entities(self) -> list[str]:
        ner = set(NER_ENTITIES) if self.recogniser is not None else set()
        return sorted({d.entity for d in self.detectors} | {"PERSON"} | ner)

    def prefetch(self, texts: Iterable[str]) -> None:
        """Run the entity recogniser over many texts at once (batched); later `find` calls on them are lookups."""
        if self.recogniser is not None:
            self.recogniser.prefetch(list(texts))

    @classmethod
    def default(cls, id_patterns: dict[str, str] | None = None, ner: bool = True) -> "Redactor":
        """All built-in detectors; `id_patterns` ({ENTITY: regex}) replaces the default business identifiers.
        `ner=False` leaves out the entity recogniser (rules and gazetteer only: faster, and blind to most names and
        places)."""
        patterns = DEFAULT_ID_PATTERNS if not id_patterns else id_patterns
        id_detectors = []
        for entity, pattern in patterns.items():
            if not re.fullmatch(r"[A-Z][A-Z_]*", entity):
                raise ValueError(f"id pattern name {entity!r} must be UPPER_CASE letters and underscores "
                                 "(it becomes the placeholder, e.g. <INVOICE_NUMBER_1>).")
            id_detectors.append(Detector(f"id_{entity.lower()}", entity, _regex(re.compile(pattern, re.IGNORECASE))))
        detectors = [
            Detector("secret", "SECRET", _secrets),  # provider key formats and "password: …"
            Detector("email", "EMAIL", _regex(EMAIL_RE)),
            Detector("email_fragment", "EMAIL", _regex(AT_GLUED_RE)),  # a whole address is longer, and wins
            Detector("handle", "USERNAME", _handles),
            Detector("iban", "IBAN", _ibans),
            Detector("card_luhn", "CARD_NUMBER", _cards),
            *id_detectors,
            Detector("us_ssn", "US_SSN", _ssns),
            Detector("ip_address", "IP_ADDRESS", _ips),
            Detector("date_of_birth", "DATE_OF_BIRTH", _dates_of_birth),
            Detector("phone", "PHONE", _phones),
            Detector("street_address", "ADDRESS", _regex(STREET_RE)),
            Detector("street_address_first", "ADDRESS", _regex(STREET_FIRST_RE)),
            Detector("street_address_typed", "ADDRESS", _street_lines),
            Detector("organization_legal_form", "ORGANIZATION", _organisations),
            Detector("person_cue", "PERSON", _names),
            Detector("person_census", "PERSON", _census_names),  # no cue: census given name or surname
            # Last, so that a long IBAN or card number keeps its own type when both match the same characters.
            Detector("random_token", "SECRET", _random_tokens),
        ]
        return cls(detectors, EntityRecogniser() if ner else None)

    def find(self, text: str, known: dict[str, list[str]] | None = None) -> list[Span]:
        """Spans to redact: known values first, then each detector; overlaps merged within a type, else resolved to
        the longest span."""
        spans: list[tuple[int, int, str, int]] = []
        for entity, values in (known or {}).items():
            for value in _known_variants(entity, values):
                for m in re.finditer(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.IGNORECASE):
                    spans.append((m.start(), m.end(), entity, -1))
        for rank, det in enumerate(self.detectors):
            spans.extend((s, e, det.entity, rank) for s, e in det.find(text) if e > s)
        # Overlapping spans of one type are one finding: when a sign-off name runs into a census name ("Kenji Petrov
        # Hannah" and "Petrov Hannah Brennan"), the longer span alone would leave "Kenji" behind.
        merged: list[tuple[int, int, str, int]] = []
        for s, e, ent, rank in sorted(spans, key=lambda x: (x[2], x[0], x[1])):
            if merged and merged[-1][2] == ent and s < merged[-1][1]:
                ps, pe, _, prank = merged[-1]
                merged[-1] = (ps, max(pe, e), ent, min(prank, rank))
            else:
                merged.append((s, e, ent, rank))
        kept: list[Span] = []
        # Longest first, then known values and earlier detectors: a card number is not also a phone number.
        for s, e, ent, _ in sorted(merged, key=lambda x: (-(x[1] - x[0]), x[3], x[0])):
            if all(e <= ks or s >= ke for ks, ke, _ in kept):
                kept.append((s, e, ent))
        if self.recogniser is not None:
            kept = _add_recognised(text, kept, self.recogniser.find(text))
        kept = _add_fallbacks(text, kept)
        return _with_address_tails(text, sorted(kept))

    def redact(self, text: str, known: dict[str, list[str]] | None = None) -> RedactionResult:
        return self.redact_many([text], known)[0]


    def redact_many(self, texts: list[str], known: dict[str, list[str]] | None = None) -> list[RedactionResult]:
        """Redact several texts of one record (a ticket and its answer's values) with shared placeholder numbers:
        a name that is `<PERSON_2>` in the ticket is `<PERSON_2>` in the answer too, so the model learns to copy it."""
        self.prefetch(texts)
        found = [self.find(t, known) for t in texts]
        if len(texts) > 1 and any(found):
            # What was found in one text of the record is a known value for the others: a city the recogniser saw
            # in the ticket ("weather in Porto") is redacted in the answer's bare "Porto" too.
            seen = {ent: list(vals) for ent, vals in (known or {}).items()}
            for t, fs in zip(texts, found):
                for s, e, ent in fs:
                    seen.setdefault(ent, []).append(t[s:e])
            found = [self.find(t, seen) for t in texts]
        joined, spans, offset = [], [], 0
        for t, fs in zip(texts, found):
            joined.append(t)
            spans.extend((s + offset, e + offset, ent) for s, e, ent in fs)
            offset += len(t) + 2
        ids = _placeholder_ids("\n\n".join(joined), spans)
        out = []
        for t, fs in zip(texts, found):
            parts, pos = [], 0
            for s, e, ent in fs:
                parts += [t[pos:s], f"<{ent}_{ids[(ent, _norm(t[s:e], ent))]}>"]
                pos = e
            out.append(RedactionResult("".join(parts) + t[pos:], fs))
        return out


_NUMBER_MARKER = re.compile(r"(?<!\w)(?:(?i:no)\.?|#|N[º°]) ?$")


def _with_address_tails(text: str, kept: list[Span]) -> list[Span]:
    """An address line's town and postcode after the street ("Rua das Flores 128" + ", 4050-265 Porto"); a postcode
    another detector took for a phone or an id number inside that tail becomes part of the address."""
    out: list[Span] = []
    i = 0
    while i < len(kept):
        s, e, ent = kept[i]
        i += 1
        if ent == "ADDRESS":
            # "no 4546 gate way", "No. 12 Jalan Mawar", "# 5 ben road": the number's marker belongs to the line.
            marker = _NUMBER_MARKER.search(text, 0, s)
            if marker and text[s:s + 1].isdigit():
                s = marker.start()
            end = address_tail(text, e)
            while i < len(kept) and kept[i][0] < end:
                if kept[i][1] <= end and kept[i][2] in ("PHONE", "ID_NUMBER", "LOCATION", "ADDRESS"):
                    i += 1  # absorbed
                else:
                    end = kept[i][0]
                    break
            e = max(e, end if text[e:end].strip(" ,") else e)
        out.append((s, e, ent))
    return out


def _add_fallbacks(text: str, kept: list[Span]) -> list[Span]:
    """The rules that only add what the rules and the recogniser left: a lone census given name where nothing was
    found, and a chat code, which may take in a phone number or id number it overlaps ("nma" + "647814914") but gives
    way to anything else (a card number keeps its type in "card 5105 9054 2406 8594")."""
    kept = list(kept)
    for s, e in _chat_codes(text):
        over = [k for k in kept if k[0] < e and s < k[1]]
        if all(k[2] in ("PHONE", "ID_NUMBER") for k in over):
            for k in over:
                kept.remove(k)
            kept.append((min([s, *(k[0] for k in over)]), max([e, *(k[1] for k in over)]), "ID_NUMBER"))
    kept += [(s, e, "PERSON") for s, e in _lone_given_names(text) if all(e <= ks or s >= ke for ks, ke, _ in kept)]
    return kept


def _add_recognised(text: str, kept: list[Span], recognised: list[Span]) -> list[Span]:
    """Add the recogniser's spans to the rules' spans. A checksum or pattern detector knows the type better: a
    recognised span mostly covered by a rule's span of another type ("POL-123456 renewal" as ID_NUMBER over
    POLICY_NUMBER) is dropped, and otherwise loses the characters a rule of another type holds (an ID_NUMBER run
    "377 17 6930. Server logs show 2001" keeps its digits, the IPv6 address after it keeps its own type). A recognised
    span overlapping a rule's span of its own type merges with it ("Kenji" after a cue and "Kenji Petrov")."""
    kept = list(kept)
    for s, e, ent in recognised:
        if e <= s or any(ent != k and min(e, ke) - max(s, ks) >= (e - s) / 2 for ks, ke, k in kept):
            continue
        same = [k for k in kept if k[2] == ent and k[0] < e and s < k[1]]
        for k in same:
            kept.remove(k)
            s, e = min(s, k[0]), max(e, k[1])
        pieces, pos = [], s
        for ks, ke, _ in sorted(k for k in kept if k[0] < e and s < k[1]):
            pieces.append((pos, ks))
            pos = max(pos, ke)
        pieces.append((pos, e))
        for ps, pe in pieces:
            while ps < pe and not text[ps].isalnum():
                ps += 1
            while pe > ps and not text[pe - 1].isalnum():
                pe -= 1
            if pe - ps >= 2 and (len(pieces) == 1 or plausible(text[ps:pe], ent)):
                kept.append((ps, pe, ent))
    return kept


def _placeholder_ids(text: str, spans: list[Span]) -> dict[tuple[str, str], int]:
    """Number each distinct value per type in order of appearance; a lone first or last name of a person whose full
    name occurs in the same text gets the full name's number."""
    ids: dict[tuple[str, str], int] = {}
    per_type: dict[str, int] = {}
    full = [_norm(text[s:e], ent) for s, e, ent in spans if ent == "PERSON" and " " in text[s:e].strip()]
    part_of: dict[str, str] = {}
    for name in full:
        for part in name.split():
            part_of.setdefault(part, name)
    for s, e, ent in spans:
        value = key_value = _norm(text[s:e], ent)
        if ent == "PERSON" and key_value in part_of:
            key_value = part_of[key_value]
        if (ent, key_value) not in ids:
            per_type[ent] = per_type.get(ent, 0) + 1
            ids[(ent, key_value)] = per_type[ent]
        ids[(ent, value)] = ids[(ent, key_value)]
    return ids


def _norm(value: str, entity: str) -> str:
    """Key for "same value": case, punctuation and spacing ignored, but a person's name keeps its word breaks."""
    value = re.sub(r"[\-().]", "", value.lower())
    return " ".join(value.split()) if entity == "PERSON" else "".join(value.split())


def _known_variants(entity: str, values: list[str]) -> list[str]:
    """Known values to scrub; for a person also each name part ("Maria Okafor" → "Maria", "Okafor")."""
    out = []
    for v in values:
        v = str(v or "").strip()
        if len(v) < 2:
            continue
        out.append(v)
        if entity == "PERSON":
            out.extend(p for p in v.split() if len(p) >= 3)
    return sorted(set(out), key=len, reverse=True)
