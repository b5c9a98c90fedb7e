"""Build `kit/privacy/english_words.txt.gz`: lower-case English words (verbs, adjectives, adverbs and every
inflected form) that the redactor uses to tell an everyday word from a name in text typed all in lower case.

    .venv/bin/python tools/build_wordlist.py [--wheel path/to/spacy_lookups_data-1.0.5-py2.py3-none-any.whl]

Source: the English lemma tables of spaCy's `spacy-lookups-data` 1.0.5 (PyPI, MIT; the English tables are derived
from WordNet 3.0, Princeton University's licence, whose notice is written to `english_words.LICENSE` beside the
list). Without `--wheel` the wheel is fetched with `pip download` from the package index. Nouns are left out on
purpose: WordNet's noun index holds proper names ("aaron", "rodgers", "london"), and a name must never count as an
everyday word. The inflection table still brings a few names that are also words ("tom", "mike"); the redactor keeps
any census given name or surname as name evidence whatever this list says (kit/privacy/ner.py).
Writes the list (one word per line, sorted, gzip without a timestamp) and `english_words.json` beside it (source,
wheel sha256, counts), so the shipped file can be checked against its source.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE, VERSION = "spacy-lookups-data", "1.0.5"
OUT = REPO / "kit" / "privacy" / "english_words.txt.gz"


def fetch_wheel() -> Path:
    d = Path(tempfile.mkdtemp(prefix="kit-wordlist-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(d),
                    f"{PACKAGE}=={VERSION}"], check=True)
    return next(d.glob("*.whl"))


def words_from(wheel: Path) -> tuple[set[str], str]:
    def table(z, name):
        return json.load(gzip.open(io.BytesIO(z.read(f"spacy_lookups_data/data/en_{name}.json.gz"))))

    def plain(w: str) -> bool:
        return w.isascii() and w.isalpha() and w.islower() and len(w) > 1

    with zipfile.ZipFile(wheel) as z:
        lookup, index, exc = table(z, "lemma_lookup"), table(z, "lemma_index"), table(z, "lemma_exc")
        licence = z.read("spacy_lookups_data/data/en_license.txt").decode()
    words = {w for pair in lookup.items() for w in pair if plain(w)}
    for pos in ("verb", "adj", "adv"):
        words |= {w for w in index[pos] if plain(w)}
    for forms in exc.values():
        words |= {w for w in forms if plain(w)}
    return words, licence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", default="", help=f"a downloaded {PACKAGE} {VERSION} wheel (default: pip download it)")
    args = ap.parse_args()
    wheel = Path(args.wheel) if args.wheel else fetch_wheel()
    words, licence = words_from(wheel)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write("\n".join(sorted(words)).encode() + b"\n")
    OUT.write_bytes(buf.getvalue())
    OUT.with_name("english_words.LICENSE").write_text(licence)
    OUT.with_name("english_words.json").write_text(json.dumps({
        "what": "lower-case English verbs, adjectives, adverbs and inflected forms (no noun index)",
        "built_by": "tools/build_wordlist.py", "source": f"{PACKAGE} {VERSION} (PyPI, MIT); English tables from "
        "WordNet 3.0 (Princeton University licence: english_words.LICENSE)", "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "words": len(words),
        "sha256": hashlib.sha256(OUT.read_bytes()).hexdigest()}, indent=1) + "\n")
    print(f"{len(words)} words -> {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
