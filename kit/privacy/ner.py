"""Entity recogniser: person names, places, street addresses and postcodes, organisations and typed-in id numbers.

In: texts. Out: for each text, `(start, end, entity)` spans with entity PERSON, LOCATION, ADDRESS, ORGANIZATION or
ID_NUMBER. Two small spaCy pipelines (CNN token vectors and a transition-based NER, 8.8 MB each) run on every text
and their spans are united (an ensemble: trained apart, they miss different names). Both are trained by
`tools/train_ner.py` on real public NER text (WNUT-17 social-media posts, MultiDoGO customer-service chat) and on
generated customer messages with names and addresses from Faker locales: `kit/privacy/ner_model/` on 114 templates and 35
locales (seed 7), `kit/privacy/ner_model_2/` on 157 templates and 43 locales (seed 8). They ship inside the package, each with
its `provenance.json`, so nothing is downloaded.
spaCy's published English models are not on PyPI and model hubs are out of reach; models trained here on data whose
licences we checked are the ones we can vouch for. `bench/redaction.py` measures them on text and locales they were
not trained on.

    from kit.privacy.ner import EntityRecogniser
    EntityRecogniser().find_many(["Aigerim Nurlanova lives at Rua das Flores 128, 4050-265 Porto"])

Texts go through each model's `nlp.pipe` in batches; results are cached per text, so a record's text can be looked up
again by the redactor after a batch call for the whole file (`prefetch`).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from kit import progress
from kit.privacy.gazetteer import NOT_NAME_PARTS, census_key, census_names

MODEL_DIR = Path(__file__).resolve().parent / "ner_model"
# The models the redactor runs, their spans united; each folder has its own provenance.json. The second was trained on
# another seed and a wider template set and more locales (`tools/train_ner.py --out kit/privacy/ner_model_2 --seed 8`): the
# two miss different names.
MODEL_DIR_2 = Path(__file__).resolve().parent / "ner_model_2"
MODEL_DIRS = (MODEL_DIR, MODEL_DIR_2)
ENTITY = {"PERSON": "PERSON", "LOCATION": "LOCATION", "ADDRESS": "ADDRESS", "ORG": "ORGANIZATION",
          "ID_NUMBER": "ID_NUMBER"}
# Words that are never a whole name, place or organisation, beyond the gazetteer's NOT_NAME_PARTS (greetings,
# weekdays, support vocabulary): acronyms and everyday words the model has been seen to tag in kit's test texts.
NEVER_ALONE = frozenset("""
iban api dob ssn pin id url faq pdf sms otp vat iot usb hdmi gps tv pc app apps wifi wi-fi ok okay lol omg
wrong mine yours ours theirs key keys log logs server servers version box boxes minute minutes hour hours second
seconds item items thing things stuff someone somebody anyone everyone nobody people person guy guys folks
""".split())
PLACE_WORDS = frozenset("""
city town village county state district province region north south east west northern southern eastern western
upper lower central greater great new old san santa los las el fort saint mount mt port puerto porto lake river bay
beach island isle valley springs hills heights falls harbor harbour airport station street st road rd avenue ave lane
drive boulevard close court way place square terrace crescent grove gardens plaza piazza strasse straße weg gasse rue
calle via
""".split())
PROGRESS_FROM = 500  # texts: a bar for a whole file, none for the single texts `find` looks up
CACHE_MAX = 50_000  # texts; a stage-02 file of a few thousand tickets fits many times over

Span = tuple[int, int, str]


class NERUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=2)
def _load(path: str):
    import spacy

    p = Path(path)
    if not (p / "meta.json").exists():
        raise NERUnavailable(f"the entity recogniser is missing at {p}: reinstall kit (`pip install -e .` in the "
                             "repository, which ships kit/privacy/ner_model and kit/privacy/ner_model_2), or retrain it with "
                             "`python tools/train_ner.py` (see its docstring for the second model's settings).")
    return spacy.load(p)


def provenance(path: Path = MODEL_DIR) -> dict:
    f = Path(path) / "provenance.json"
    return json.loads(f.read_text()) if f.exists() else {}


# The rest of an address line after a street the model found: up to five words (town, state) and a postcode, with no
# sentence break in between ("85 light house road" + " bridge town al 45289", "Joostpad 231" + ", 2006 Lobbes").
_TAIL = re.compile(r"(?:,? [^\W\d_][\w'’\-.]*){0,5},? (?:\d{4,8}(?:-\d{3,4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|"
                   r"[A-Z]{2}-?\d{4,5})\b"
                   r"(?:,? [A-ZÀ-Þ][^\W\d_]+(?:(?: (?:and|of|the|de|da|do|del|di|y|e|et|und))? [A-ZÀ-Þ][^\W\d_]+){0,2})?")


# Trained on lower-cased chat too, the model takes everyday lower-case words for names ("Order a kettle for 5", "Be
# brief. my blender was stolen"). In text that is otherwise capitalised as usual, and in bare values such as an answer
# field, a lower-case guess is kept as a person or organisation only after a cue ("my name is mani") or when one of
# its words is a census name, and as a place only after a preposition ("from zug").
_NAME_CUE_BEFORE = re.compile(r"(?:name is|name's|i am|i'm|im|this is|it's|its|it is|call me|dear|hi|hello|hey|thanks|"
                              r"thank you|regards|mr|mrs|ms|miss|dr|with|to|and|by|from|for|ask|tell|my \w+)[\s,.:]*$")
_PLACE_CUE_BEFORE = re.compile(r"(?:in|from|to|near|at|around|city is|destination is|live in|lives in)\s*$")


# In lower-case chat the models also take the words that carry a customer's intent for names ("report lost credit
# card", "my card was stolen", "i want to inquire"). A guess made only of everyday English words
# (kit/privacy/english_words.txt.gz: verbs, adjectives, adverbs and inflected forms from WordNet, no nouns, so no
# names) that are no census name is dropped unless it follows a word that introduces a name or a place; "hi will",
# "my name is hope" and "from reading" stay redacted, and so does a census name such as "aaron" or "smith".
_NAME_INTRO = re.compile(r"\b(?:name is|name's|this is|call me|dear|hi|hello|hey|thanks|thank you|regards|mr|mrs|ms|"
                         r"miss|dr|speak to|talk to|speak with|talk with|ask for)[\s,.:]*$")
_PLACE_INTRO = re.compile(r"\b(?:in|from|near|live in|lives in|living in|city is|town is|destination is)\s*$")
WORDS_FILE = Path(__file__).resolve().parent / "english_words.txt.gz"


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    import gzip

    return frozenset(gzip.decompress(WORDS_FILE.read_bytes()).decode().split())


def _census_name(word: str) -> bool:
    names = census_names()
    return census_key(word) in names["given"] or census_key(word) in names["surname"]


# Chat shorthand and fillers that no dictionary holds ("pls", "hmmm", "gud mrng"), seen taken for names in lower-case
# bank chat (../shared/devdata/routing).
CHAT_WORDS = frozenset("""
pls plz plzz thx thnx tnx hmm hmmm hmmmm mmm umm uhm ya yah yeah yep yup nope gud mrng morng wanna gonna gotta kinda
lemme ok okk ohk
""".split())
# Words people run into the next one when typing fast: a greeting and the next word ("himy", "okneed", "hellocan"),
# or a word and "please" ("lostpls", "accidentplease"). Only those two shapes, with a short list of what follows a
# greeting, count as everyday: "hi"/"ok"/"thank" before any word would take in names (Hisham, Okon, Hiten, Thankam).
# Measured against ~30,000 given names and surnames of Faker's locales that are no census name: see tests/test_ner.py.
_GREETINGS = frozenset("hi hello hey hiya ok okay gud mrng morning".split())
_AFTER_GREETING = frozenset("""
i im my me we u you can could need want would will pls please plz sir madam team there all this is
""".split())
_COURTESY = frozenset("thanks thank thx please pls plz sorry".split())


def _plain_word(word: str) -> bool:
    return (word in english_words() or word in NOT_NAME_PARTS or word in CHAT_WORDS) and not _census_name(word)


@lru_cache(maxsize=4096)
def _typed_word(word: str) -> bool:
    """An everyday word as people type it in chat: a listed word or shorthand, or two words run together, a greeting
    before a word that follows greetings ("himy", "okneed") or a word of four letters or more before a courtesy word
    ("lostpls"). Never a census name. Misspellings ("baalance") are not guessed: one keystroke off some word of an
    82,000-word list is a fifth of the world's given names."""
    if _plain_word(word):
        return True
    if not word.isalpha() or _census_name(word):
        return False
    return any((a in _GREETINGS and b in _AFTER_GREETING) or (b in _COURTESY and len(a) >= 4 and _plain_word(a))
               for a, b in ((word[:i], word[i:]) for i in range(2, len(word) - 1)))


def everyday(value: str) -> bool:
    """Every word of `value` is an everyday English word as typed in chat (`_typed_word`) and none is a census given
    name or surname."""
    words = [w.strip(".,;:!?'’\"()[]-") for w in value.lower().split()]
    return bool(words) and all(_typed_word(w) for w in words)


def _lower_case_guess_holds(text: str, start: int, end: int, label: str, strict: bool = False) -> bool:
    """`strict` (the second model's guesses): in a message typed all in lower case a guess needs the same cue or
    census name as in capitalised text, and in a message mostly in capitals a guess in capitals is dropped, where the
    models are seen to take everyday words for names ("this is ridiculous", "PLEASE FILL IN")."""
    value = text[start:end]
    if strict and value.isupper() and sum(c.isupper() for c in text) > sum(c.islower() for c in text) \
            and label in ("PERSON", "ORG", "LOCATION"):
        return False
    if not value.islower() or label not in ("PERSON", "ORG", "LOCATION"):
        return True
    before = text[max(0, start - 24):start].lower()
    if everyday(value):
        return bool((_PLACE_INTRO if label == "LOCATION" else _NAME_INTRO).search(before))
    if text == text.lower() and len(text.split()) >= 4 and not strict:
        # A message typed all in lower case: casing says nothing and the model's guess stands unless it is made of
        # everyday words (above). Privacy first: this keeps "yael zehnder".
        return True
    if label == "LOCATION":
        return bool(_PLACE_CUE_BEFORE.search(before))
    return bool(_NAME_CUE_BEFORE.search(before)) or any(_census_name(w) for w in value.split())


_PARTICLES = frozenset("de del della di da do dos das du la le van von der den ten ter bin ibn al el".split())


def _merge_adjacent(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Join pieces the model split one value into: "Blv" + ". San " + "Ferando del Valle", "Backer" + ", " +
    "Janssens en De Wilde BV". Two spans merge when only punctuation and spaces, one particle or one capitalised word
    stand between them, or "and"/"en"/"y"/"&" between two organisations; an address absorbs what it touches."""
    out: list[tuple[int, int, str]] = []
    for s, e, lab in spans:
        if out and s < out[-1][1] and lab != out[-1][2]:  # two models' guesses of different labels overlap
            out.append((s, e, lab))
            continue
        if out:
            ps, pe, plab = out[-1]
            gap = text[pe:s]
            word = gap.strip(" ,.-/#&")
            joins = len(gap) <= 3 and not word or word.lower() in _PARTICLES \
                or (word[:1].isupper() and word.isalpha() and " " not in word and len(gap) <= len(word) + 3) \
                or (plab == lab == "ORG" and word.lower() in ("and", "en", "y", "und", "et", "e"))
            if joins and "\n" not in gap:
                longer = plab if pe - ps >= e - s else lab
                out[-1] = (ps, max(pe, e), "ADDRESS" if "ADDRESS" in (plab, lab) else longer)
                continue
        out.append((s, e, lab))
    return out


def address_tail(text: str, end: int) -> int:
    """Where an address line that ends at `end` really ends: its town, state and postcode (`_TAIL`), unless what
    follows is lower-case everyday words, which is the rest of the sentence ("1000" + " money from account ending in
    9234"), not a town."""
    m = _TAIL.match(text, end)
    if not m or (m.group() == m.group().lower() and _plain_words(m.group())):
        return end
    return m.end()


def plausible(value: str, label: str) -> bool:
    """Cheap checks on what the model tagged, where its guesses are known to go wrong: a name, place or organisation
    has no digits ("version 2.4.1", "3 boxes") and is not made only of everyday words ("Urgent", "IBAN", "Customer
    Service"); an id number has at least three digits ("lasted 14 minutes" is not one; "hkm 506" is); an address in
    lower case has a digit or a street or place word."""
    digits = sum(c.isdigit() for c in value)
    if label == "ID_NUMBER":
        return digits >= 3
    if label in ("PERSON", "LOCATION", "ORG", "ORGANIZATION") and digits:
        return False
    words = [w.strip(".,;:!?'’\"()[]-").lower() for w in value.split()]
    if label == "ADDRESS" and not digits and value.islower() and not PLACE_WORDS & set(words):
        return False  # a street line typed in lower case has a number or a street word; "never showed up" has neither
    # Place words end a person's name in the gazetteer, but they are places: "Porto", "New York", "Lake Como".
    everyday = NOT_NAME_PARTS - PLACE_WORDS if label in ("LOCATION", "ADDRESS") else NOT_NAME_PARTS
    return not all(not w or w in everyday or w in NEVER_ALONE for w in words)


# Words of a street line beyond PLACE_WORDS (abbreviations, units, Indian and other address words): an "address" with
# one of these is kept whole by `_address`.
STREET_WORDS = PLACE_WORDS | frozenset("""
dr blvd walk row mews apt apts flat flats apartment apartments sector block blk ct ln pl pkwy hwy highway house plot
unit suite ste floor fl building bldg phase colony nagar marg chowk lane po box
""".split())


def _plain_words(value: str) -> bool:
    """Every word without digits is a function word or an everyday word, none a street word; at least one such."""
    words = [w.strip(".,;:!?#'’\"()[]-").lower() for w in value.split() if not any(c.isdigit() for c in w)]
    words = [w for w in words if w]
    return bool(words) and not STREET_WORDS & set(words) and all(w in _function_words() or everyday(w) for w in words)


def _numbers(text: str, start: int, end: int) -> list[Span]:
    return [(start + m.start(), start + m.end(), "ID_NUMBER") for m in re.finditer(r"\d[\d.,/-]*\d", text[start:end])
            if sum(c.isdigit() for c in m.group()) >= 3]


def _address(text: str, start: int, end: int) -> list[Span]:
    """An address guess with the rest of its line (`address_tail`, which takes no tail of everyday words). In bank
    chat the model calls amounts and account numbers addresses ("500 wanna transfer"): a lower-case guess of numbers
    and everyday words only, with a number of three digits or more, is no street line and keeps only those numbers,
    as id numbers. Street lines ("12 elm dr", "flat 402 rose apartments", "4 the mews") and anything capitalised
    ("2020 Kaggevinne, Sri Lanka") stay whole."""
    guess, numbers = text[start:end], _numbers(text, start, end)
    if numbers and guess == guess.lower() and _plain_words(guess):
        return numbers
    return [(start, address_tail(text, end), "ADDRESS")]


@lru_cache(maxsize=1)
def _function_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def _union(spans: list[tuple[int, int, str, int]]) -> list[tuple[int, int, str]]:
    """Spans of several models (start, end, label, model number) as one list: overlapping spans of one label become
    one; spans of different labels stay apart, the first model's first where they start together, and the redactor
    settles them as it settles rules and recogniser (the first one it takes wins: "Patrick" stays a person when the
    second model calls it a place; a name is not lost inside a neighbour's wrong guess)."""
    out: list[list] = []
    for s, e, lab, n in sorted(spans, key=lambda x: (x[2], x[0], -x[1])):
        if out and out[-1][2] == lab and s < out[-1][1]:
            out[-1][1], out[-1][3] = max(out[-1][1], e), min(out[-1][3], n)
        else:
            out.append([s, e, lab, n])
    return [(s, e, lab) for s, e, lab, _ in sorted(out, key=lambda x: (x[0], x[3], -x[1]))]


class EntityRecogniser:
    """The shipped models run one after the other on each batch and their spans are united (an ensemble: two models
    trained apart miss different names, so the union misses fewer); `path` picks one model instead."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 128):
        self.paths = [str(path)] if path is not None else [str(p) for p in MODEL_DIRS]
        self.path = self.paths[0]
        self.batch_size = batch_size
        self._cache: dict[str, list[Span]] = {}

    @property
    def nlp(self):
        return _load(self.path)

    def prefetch(self, texts) -> None:
        """Recognise every text not seen yet, in batches (the fast path for a whole file)."""
        todo = list(dict.fromkeys(t for t in texts if t and t not in self._cache))
        if len(self._cache) + len(todo) > CACHE_MAX:
            self._cache.clear()
        found: list[list[tuple[int, int, str]]] = [[] for _ in todo]
        for n, path in enumerate(self.paths):
            docs = enumerate(_load(path).pipe(todo, batch_size=self.batch_size))
            desc = "finding names and places" + (f" ({n + 1}/{len(self.paths)})" if len(self.paths) > 1 else "")
            for i, doc in progress.bar(docs, total=len(todo), desc=desc, unit="texts",
                                       disable=len(todo) < PROGRESS_FROM):
                text = todo[i]
                found[i] += [(e.start_char, e.end_char, e.label_, n) for e in doc.ents
                             if e.label_ in ENTITY and plausible(e.text, e.label_)
                             and _lower_case_guess_holds(text, e.start_char, e.end_char, e.label_, strict=n > 0)]
        for text, spans in zip(todo, found):
            spans = _union(spans) if len(self.paths) > 1 else [x[:3] for x in spans]
            self._cache[text] = list(dict.fromkeys(  # an address cut to its numbers may repeat a number found alone
                x for s, e, lab in _merge_adjacent(text, spans)
                for x in (_address(text, s, e) if lab == "ADDRESS" else [(s, e, ENTITY[lab])])))

    def find(self, text: str) -> list[Span]:
        if text not in self._cache:
            self.prefetch([text])
        return self._cache.get(text, [])

    def find_many(self, texts: list[str]) -> list[list[Span]]:
        self.prefetch(texts)
        return [self._cache.get(t, []) for t in texts]
