"""Redaction speed and quality: kit's Redactor against Presidio's default analyzer, side by side in one run.

    python bench/redaction.py [--docs 400] [--seed 11] [--repeat 3]

Both run on the same labeled corpus (`kit.pii_corpus`: spans known by construction, separate from data_samples).
Reported per engine: docs/s and chars/s (best of `--repeat` passes), recall (share of gold spans fully covered,
any type), precision (share of predicted spans overlapping a gold span) and recall per type.

Presidio (`pip install presidio-analyzer`, optional) needs a spaCy pipeline; spaCy's English models are not on
PyPI and model hubs are unreachable here, so it runs on a blank English pipeline: its pattern recognizers (email,
card, IBAN, IP, SSN, phone, URL …) work, its NER-based PERSON/LOCATION do not. kit has no NER model either: it
finds names by cues and, with no cue, by a census name gazetteer (see `kit.redact.NER_NOTE`). Presidio gets no known
values; kit is shown with and without them. The last line is the throughput ratio. Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import pii_corpus  # noqa: E402
from kit.redact import Redactor  # noqa: E402


def timed(fn, docs, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = [fn(d) for d in docs]
        best = min(best, time.perf_counter() - start)
    return best, out


def presidio_analyzer():
    """Presidio's default AnalyzerEngine on a blank spaCy English pipeline, or None when it is not installed."""
    try:
        import spacy
        import tldextract
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError:
        return None
    # Presidio's email check calls tldextract, which would download the public-suffix list; use its bundled copy.
    offline = tldextract.TLDExtract(suffix_list_urls=())
    tldextract.extract = offline
    tldextract.tldextract.TLD_EXTRACTOR = offline
    model_dir = tempfile.mkdtemp(prefix="blank-en-")
    spacy.blank("en").to_disk(model_dir)
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model_dir}])
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    docs = pii_corpus.make(args.docs, args.seed)
    chars = sum(len(d.text) for d in docs)
    gold = sum(len(d.spans) for d in docs)
    print(f"corpus: {len(docs)} docs, {chars} chars, {gold} gold spans "
          f"({sum(len(d.hard) for d in docs)} of them no-cue names), seed {args.seed}")

    kit = Redactor.default()
    kit.find("warm up +44 7700 900123")
    engines = {"kit (known values)": lambda d: kit.find(d.text, d.known),
               "kit (no known values)": lambda d: kit.find(d.text)}
    analyzer = presidio_analyzer()
    if analyzer is not None:
        analyzer.analyze("warm up a@example.com", language="en")
        engines["presidio default (blank spaCy, no NER)"] = \
            lambda d: [(r.start, r.end, r.entity_type) for r in analyzer.analyze(d.text, language="en")]
    else:
        print("presidio-analyzer is not installed: pip install presidio-analyzer to compare.")

    speed = {}
    print(f"{'engine':40} {'docs/s':>9} {'chars/s':>10} {'recall':>7} {'claimed':>7} {'prec.':>6}")
    for name, fn in engines.items():
        seconds, predicted = timed(fn, docs, args.repeat)
        s = pii_corpus.score(docs, predicted)
        speed[name] = len(docs) / seconds
        print(f"{name:40} {len(docs) / seconds:9.1f} {chars / seconds:10.0f} {s['recall']:7.3f} "
              f"{s['recall_claimed']:7.3f} {s['precision']:6.3f}")
        print("    recall by type: " + ", ".join(f"{t} {v:.2f}" for t, v in s["recall_by_type"].items()))
    print("recall = gold spans fully covered by any predicted span; claimed = all but the no-cue names; "
          "prec. = predicted spans overlapping a gold span")
    if analyzer is not None:
        ratio = speed["kit (known values)"] / speed["presidio default (blank spaCy, no NER)"]
        print(f"throughput ratio kit/presidio (docs/s, same corpus, same run): {ratio:.2f}x")
    else:
        print("throughput ratio kit/presidio: n/a (presidio-analyzer not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
