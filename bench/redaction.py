"""Redaction quality and speed on text kit did not write, side by side with Presidio, in one run.

    python bench/redaction.py [--generated 600] [--seed 11] [--engines kit,rules,presidio] [--out results.json]
                              [--ner-models kit/privacy/ner_model,kit/privacy/ner_model_2]

Sets (each with labelled character spans):
  (a) `../shared/devdata/pii`: WNUT-17 test (real social-media posts; PERSON, LOCATION, CORPORATION are scored) and
      the MultiDoGO identifiers test (real customer-service chat, lower case: names, addresses, numbers);
  (b) generated multi-locale messages: Faker values in templates written here, apart from the recogniser's training
      templates (`tools/train_ner.py`), from 10 locales it was trained on and 12 it never saw, reported apart;
  (c) kit's own corpus (`tools/pii_corpus.py`), a regression line.
Engines: kit's Redactor (rules + the entity recogniser: the models of `kit.privacy.ner.MODEL_DIRS`, spans united, named on the
first line of the output; `--ner-models` runs others), kit's rules alone (no recogniser),
Presidio's AnalyzerEngine (when `presidio-analyzer` is installed; with a blank spaCy English pipeline, as no spaCy
English model is installable here, so its NER-based PERSON/LOCATION are off: its pattern recognisers run).

Leak-view recall: a labelled span counts as masked when >= 90% of its characters fall inside some redacted span, of any
type. Character precision: the share of redacted characters that fall inside some labelled span (of any label,
scored or not: redacting a band name in WNUT is not counted against the engine). texts/s: one process, one core
busy, best of `--repeat` passes over the set. Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from kit.privacy import audit  # noqa: E402
from kit.privacy.redact import Redactor  # noqa: E402
from tools import pii_corpus  # noqa: E402

DEVDATA = ROOT.parent / "shared" / "devdata" / "pii"
MASKED = 0.9
WNUT_SCORED = {"PERSON", "LOCATION", "CORPORATION"}

# Locales for (b). SEEN are in the recogniser's training locales; UNSEEN are not (bench checks this at start).
SEEN = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_PT", "pl_PL", "tr_TR", "vi_VN")
UNSEEN = ("et_EE", "lv_LV", "sl_SI", "es_AR", "es_CO", "es_CL", "fr_CH", "de_CH", "en_NZ", "nl_BE", "az_AZ", "ga_IE")

# Templates for (b): written for this benchmark, not shared with the recogniser's training templates.
BENCH_TEMPLATES = r"""
Good morning, {name} speaking. I need to change the delivery address to {street}, {postcode} {city}.
Could someone from your team ring {first} back before five?
Account holder: {name}. Correspondence address: {address}.
The courier claims {first} {last} signed for it, but nobody by that name lives here.
I am writing on behalf of my mother, {name}, who is in hospital in {city}.
Please note my new home address: {street}, {city}, {postcode}.
Refund request from {name} (member since 2019), {city}.
{first} told me the upgrade was free. It was not.
We are relocating our office to {address} from the first of next month.
The invoice was made out to {company}, but it should say {name}.
Signed: {name}, {street}
Greetings from {city}! The sofa arrived broken, photos attached. - {first}
my friend {first} {last} recommended you, she lives near {city}
Please forward the paperwork to {last} at {street}, {postcode} {city}, {country}.
Is there a pickup point near {postcode}?
I would like to speak to the manager, {name}, about the way {first} handled my call.
Cardholder {name}; billing postcode {postcode}.
Both {first} and her brother {first} were on the booking from {city}.
{company} has been our supplier for years; please contact {name} there.
New tenant: {name}, moving in at {street} on Friday.
""".strip("\n").split("\n")


def _slot(f, slot, rng):
    one_line = lambda s: re.sub(r"\s*\n\s*", ", ", s.strip())  # noqa: E731
    return {"name": lambda: (f"{f.first_name()} {f.last_name()}", "PERSON"),
            "first": lambda: (f.first_name(), "PERSON"), "last": lambda: (f.last_name(), "PERSON"),
            "city": lambda: (f.city(), "LOCATION"), "country": lambda: (f.country(), "LOCATION"),
            "street": lambda: (one_line(f.street_address()), "ADDRESS"),
            "postcode": lambda: (f.postcode(), "POSTCODE"),
            "address": lambda: (one_line(f.address()), "ADDRESS"),
            "company": lambda: (f.company(), "ORGANIZATION")}[slot]()


def generated(n: int, seed: int, locales) -> list[dict]:
    """Messages from BENCH_TEMPLATES with Faker values of `locales` (round robin), spans known by construction."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = []
    for i, loc in enumerate(locales):
        f = Faker(loc)
        f.seed_instance(seed * 7919 + i)
        fakers.append(f)
    out = []
    for i in range(n):
        f, template = fakers[i % len(fakers)], rng.choice(BENCH_TEMPLATES)
        text, spans, pos = "", [], 0
        for m in re.finditer(r"\{(\w+)\}", template):
            text += template[pos:m.start()]
            value, label = _slot(f, m.group(1), rng)
            spans.append({"start": len(text), "end": len(text) + len(value), "label": label})
            text += value
            pos = m.end()
        text += template[pos:]
        if rng.random() < 0.15:
            text = text.lower()
        out.append({"id": f"gen-{locales[i % len(locales)]}-{i}", "text": text, "spans": spans})
    return out


def read_set(path: Path, scored=None) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r["scored"] = [s for s in r["spans"] if scored is None or s["label"] in scored]
        out.append(r)
    return out


def corpus_set(n: int, seed: int) -> list[dict]:
    return [{"id": f"corpus-{i}", "text": d.text, "spans": [{"start": s, "end": e, "label": t} for s, e, t in d.spans]}
            for i, d in enumerate(pii_corpus.make(n, seed))]


def score(records: list[dict], predicted: list[list[tuple]]) -> dict:
    per_type: dict[str, list[int]] = {}
    red_chars = red_in_gold = 0
    for r, pred in zip(records, predicted):
        mask = bytearray(len(r["text"]))
        for s, e, *_ in pred:
            mask[s:e] = b"\x01" * (e - s)
        gold = bytearray(len(r["text"]))
        for s in r["spans"]:
            gold[s["start"]:s["end"]] = b"\x01" * (s["end"] - s["start"])
        red_chars += sum(mask)
        red_in_gold += sum(m & g for m, g in zip(mask, gold))
        for s in r.get("scored", r["spans"]):
            length = s["end"] - s["start"]
            covered = sum(mask[s["start"]:s["end"]])
            hit = per_type.setdefault(s["label"], [0, 0])
            hit[0] += covered >= MASKED * length
            hit[1] += 1
    masked = sum(h for h, _ in per_type.values())
    leaks = flagged = alarms = 0
    for r, pred in zip(records, predicted):  # what the audit says about the redacted text of each record
        mask = [False] * len(r["text"])
        for s, e, *_ in pred:
            mask[s:e] = [True] * (e - s)
        leaked = any(sum(mask[s["start"]:s["end"]]) < MASKED * (s["end"] - s["start"])
                     for s in r.get("scored", r["spans"]))
        hit = bool(set(audit._pattern_checks(audit.PLACEHOLDER.sub(" ", _redacted(r["text"], pred)))))
        leaks += leaked
        flagged += leaked and hit
        alarms += hit and not leaked
    total = sum(n for _, n in per_type.values())
    return {"recall": masked / total if total else None, "spans": total,
            "char_precision": red_in_gold / red_chars if red_chars else None,
            "by_type": {t: {"recall": h / n, "n": n} for t, (h, n) in sorted(per_type.items())},
            "audit": {"texts_with_a_leak": leaks, "flagged": flagged, "false_alarms": alarms}}


def _redacted(text: str, spans) -> str:
    out, pos = [], 0
    for s, e, *_ in sorted(spans):
        if s >= pos:
            out += [text[pos:s], "<X_1>"]
            pos = e
    return "".join(out) + text[pos:]


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


def engines(names):
    out = {}
    if "kit" in names:
        kit = Redactor.default()

        def run_kit(texts):
            kit.prefetch(texts)  # batched recognition, as stage 02 does for a whole file
            return [kit.find(t) for t in texts]
        out["kit"] = run_kit
    if "rules" in names:
        rules = Redactor.default(ner=False)
        out["kit rules only"] = lambda texts: [rules.find(t) for t in texts]
    if "presidio" in names:
        analyzer = presidio_analyzer()
        if analyzer is None:
            print("presidio-analyzer is not installed (pip install presidio-analyzer) : not compared.")
        else:
            out["presidio (blank spaCy)"] = lambda texts: [
                [(r.start, r.end, r.entity_type) for r in analyzer.analyze(t, language="en")] for t in texts]
    return out


def main(argv=None) -> int:
    # The recogniser's bars would break the table. Set here, not at import: a test that imports this module for its
    # locale lists must not switch progress off for the course runs after it.
    os.environ.setdefault("KIT_PROGRESS", "off")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generated", type=int, default=600, help="messages per locale group in (b)")
    ap.add_argument("--corpus", type=int, default=400, help="documents of kit's own corpus in (c)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--engines", default="kit,rules,presidio")
    ap.add_argument("--out", help="write all figures as JSON here")
    ap.add_argument("--ner-models", help="comma-separated model folders for kit's recogniser instead of the shipped "
                                         "ones (kit.privacy.ner.MODEL_DIRS), to compare a retrained model")
    args = ap.parse_args(argv)
    if args.ner_models:
        from kit.privacy import ner

        ner.MODEL_DIRS = tuple(str(Path(p).resolve()) for p in args.ner_models.split(","))
    from kit.privacy import ner

    print("kit's recogniser: " + ", ".join(str(Path(p).relative_to(ROOT)) if Path(p).is_relative_to(ROOT) else str(p)
                                          for p in ner.MODEL_DIRS))

    from train_ner import TRAIN_LOCALES

    assert set(SEEN) <= set(TRAIN_LOCALES) and not set(UNSEEN) & set(TRAIN_LOCALES)
    sets = {
        "(a) WNUT-17 test": read_set(DEVDATA / "test.jsonl", WNUT_SCORED),
        "(a) MultiDoGO identifiers test": read_set(DEVDATA / "identifiers" / "test.jsonl"),
        "(b) generated, 10 trained locales": generated(args.generated, args.seed, SEEN),
        "(b) generated, 12 unseen locales": generated(args.generated, args.seed + 1, UNSEEN),
        "(c) kit corpus": corpus_set(args.corpus, args.seed),
    }
    runners = engines(args.engines.split(","))
    for fn in runners.values():
        fn(["warm up: Maria Okafor, 12 Harbour Road, a@example.com"])
    results = {}
    for set_name, records in sets.items():
        texts = [r["text"] for r in records]
        print(f"\n{set_name}: {len(records)} texts, {sum(len(r.get('scored', r['spans'])) for r in records)} "
              "scored spans")
        print(f"  {'engine':24} {'recall':>7} {'char prec.':>10} {'texts/s':>8}   recall by type (n)")
        for name, fn in runners.items():
            best = float("inf")
            for _ in range(args.repeat):
                if name == "kit":
                    runners[name] = fn = engines(["kit"])["kit"]  # a fresh cache: time the recognition too
                started = time.perf_counter()
                predicted = fn(texts)
                best = min(best, time.perf_counter() - started)
            s = score(records, predicted)
            s["texts_per_s"] = len(texts) / best
            results.setdefault(set_name, {})[name] = s
            types = ", ".join(f"{t} {v['recall']:.2f} ({v['n']})" for t, v in s["by_type"].items())
            a = s["audit"]
            print(f"  {name:24} {s['recall']:7.3f} {s['char_precision'] or 0:10.3f} {s['texts_per_s']:8.0f}   {types}")
            print(f"  {'':24} audit of the redacted texts: flags {a['flagged']} of {a['texts_with_a_leak']} texts "
                  f"with a leak left; {a['false_alarms']} false alarms")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
