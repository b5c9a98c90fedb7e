"""Entity recogniser: person names, places, street addresses and postcodes, organisations and typed-in id numbers.

In: texts. Out: for each text, `(start, end, entity)` spans with entity PERSON, LOCATION, ADDRESS, ORGANIZATION or
ID_NUMBER. The model is a small spaCy pipeline (CNN token vectors and a transition-based NER, ~5 MB) trained by
`tools/train_ner.py` on real public NER text (WNUT-17 social-media posts, MultiDoGO customer-service chat) and on
generated customer messages with names and addresses from 35 Faker locales; it ships inside the package
(`kit/ner_model/`, with `provenance.json`), so nothing is downloaded. spaCy's published English models are not on
PyPI and model hubs are out of reach; a model trained here on data whose licences we checked is the one we can vouch
for. `bench/redaction.py` measures it on text and locales it was not trained on.

    from kit.ner import EntityRecogniser
    EntityRecogniser.default().find_many(["Aigerim Nurlanova lives at Rua das Flores 128, 4050-265 Porto"])

Texts go through `nlp.pipe` in batches; results are cached per text, so a record's text can be looked up again by the
redactor after a batch call for the whole file (`prefetch`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "ner_model"
ENTITY = {"PERSON": "PERSON", "LOCATION": "LOCATION", "ADDRESS": "ADDRESS", "ORG": "ORGANIZATION",
          "ID_NUMBER": "ID_NUMBER"}
CACHE_MAX = 50_000  # texts; a stage-02 file of a few thousand tickets fits many times over

Span = tuple[int, int, str]


class NERUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=2)
def _load(path: str):
    import spacy

    p = Path(path)
    if not (p / "meta.json").exists():
        raise NERUnavailable(f"the entity recogniser is missing at {p}: reinstall kit (`make install`), or retrain "
                             "it with `python tools/train_ner.py`.")
    return spacy.load(p)


def provenance(path: Path = MODEL_DIR) -> dict:
    f = Path(path) / "provenance.json"
    return json.loads(f.read_text()) if f.exists() else {}


class EntityRecogniser:
    def __init__(self, path: str | Path = MODEL_DIR, batch_size: int = 128):
        self.path = str(path)
        self.batch_size = batch_size
        self._cache: dict[str, list[Span]] = {}

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> "EntityRecogniser":
        return cls()

    @property
    def nlp(self):
        return _load(self.path)

    def prefetch(self, texts) -> None:
        """Recognise every text not seen yet, in batches (the fast path for a whole file)."""
        todo = list(dict.fromkeys(t for t in texts if t and t not in self._cache))
        if len(self._cache) + len(todo) > CACHE_MAX:
            self._cache.clear()
        for text, doc in zip(todo, self.nlp.pipe(todo, batch_size=self.batch_size)):
            self._cache[text] = [(e.start_char, e.end_char, ENTITY[e.label_]) for e in doc.ents
                                 if e.label_ in ENTITY]

    def find(self, text: str) -> list[Span]:
        if text not in self._cache:
            self.prefetch([text])
        return self._cache.get(text, [])

    def find_many(self, texts: list[str]) -> list[list[Span]]:
        self.prefetch(texts)
        return [self._cache.get(t, []) for t in texts]
