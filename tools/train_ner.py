"""Train kit's entity recognisers (`kit/privacy/ner_model/`, `kit/privacy/ner_model_2/`): small spaCy CNN pipelines for PERSON,
LOCATION, ADDRESS, ORG and ID_NUMBER in business text, from real public NER text and generated multi-locale customer
messages.

    .venv/bin/python tools/train_ner.py [--out kit/privacy/ner_model] [--synthetic 24000] [--epochs 10] [--seed 7]
                                        [--embed hash|char]

The redactor unites the spans of both shipped models (`kit.privacy.ner.MODEL_DIRS`). `kit/privacy/ner_model` was trained with the
defaults at an earlier state of this file (35 locales, 114 templates, 15% lower case; its provenance.json says so);
`kit/privacy/ner_model_2` with `--seed 8` and the present templates and locales (157 templates, 43 locales, 20% lower case,
"{first} {last}" labelled as one name; its provenance.json has a note on how it was written). Training is not
bit-for-bit repeatable: a rerun of the same command scored about the same on bench/redaction.py but took everyday
words for names in the course's demo tickets ("this is ridiculous", "my adjuster stopped replying") in 117 of the
4,000 texts, against 12 for the shipped run; a model with `--embed char` (seed 9) found a little more on the bench's
sets and changed 145 (also "fill", "DriveSafe"). So a new model is judged on the bench and on the demo tickets
before it replaces a shipped one.

Training data (nothing from any evaluation split):
- `../shared/devdata/pii/train.jsonl`: WNUT-17 train, real social-media posts (CC BY 4.0); person, location and
  corporation/group spans (products and creative works are not personal data and stay unlabelled).
- `../shared/devdata/pii/identifiers/train.jsonl`: MultiDoGO customer-service turns (CDLA-Permissive-1.0): names,
  street addresses, cities and the identifiers people type (account, booking, claim numbers, SSN digits).
- Generated messages: Faker (MIT) values from TRAIN_LOCALES in the templates below. `bench/redaction.py` measures on
  messages from its own templates, and on locales that are not in TRAIN_LOCALES, so the benchmark does not read back
  what the model was taught.

Writes the pipeline and its `provenance.json` (inputs with sha256, spaCy version, settings, the scores on a held-back
tenth of the training mix). Takes about 11 minutes on 2 idle cores (AMD EPYC; about 20 minutes on a Xeon shared with
a test suite); the result is committed so that no run of the kit trains it. Runs differ with the seed and the mix by a few points of benchmark recall (a
variant with 30,000 messages and more lower-case text scored 0.86 instead of 0.89 on the unseen locales), so a new
model replaces a committed one only after `bench/redaction.py` shows it is better (`--ner-models` compares them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT.parent / "shared" / "devdata" / "pii"
LABELS = ("PERSON", "LOCATION", "ADDRESS", "ORG", "ID_NUMBER")
WNUT_MAP = {"PERSON": "PERSON", "LOCATION": "LOCATION", "CORPORATION": "ORG", "GROUP": "ORG"}
IDENTIFIERS_MAP = {"PERSON": "PERSON", "ADDRESS": "ADDRESS", "LOCATION": "LOCATION", "ACCOUNT_NUMBER": "ID_NUMBER",
                   "BOOKING_CONFIRMATION_NUMBER": "ID_NUMBER", "CLAIM_ID": "ID_NUMBER", "POLICY_ID": "ID_NUMBER",
                   "SSN": "ID_NUMBER", "CARD_NUMBER": "ID_NUMBER", "PHONE_NUMBER": "ID_NUMBER"}

TRAIN_LOCALES = ("en_US", "en_GB", "en_IE", "en_AU", "en_CA", "en_IN", "en_NG", "de_DE", "de_AT", "fr_FR", "fr_BE",
                 "es_ES", "es_MX", "it_IT", "pt_PT", "pt_BR", "nl_NL", "pl_PL", "sv_SE", "tr_TR", "ro_RO", "cs_CZ",
                 "id_ID", "vi_VN", "fil_PH", "zu_ZA", "yo_NG", "da_DK", "no_NO", "fi_FI", "hu_HU", "hr_HR", "sk_SK",
                 "lt_LT", "sw", "fr_CA", "en_MS", "en_TH", "is_IS", "en_KE", "uz_UZ", "en_PH", "es_CA")

# Slots: {name} full name, {first}, {last}, {city}, {country}, {street} street line, {postcode}, {address} a whole
# address on one line, {company}, {idnum}; {phone}, {email}, {date}, {amount}, {product} are context, unlabelled.
TEMPLATES = r"""
Hi, my name is {name} and I am writing about my last invoice.
Hello, this is {first} from {city}. My order never arrived.
Dear support, I moved to {street}, {postcode} {city}. Please update my address.
Please send the replacement card to {address}.
{name} here - the app keeps crashing since the update on {date}.
I spoke with {first} on the phone yesterday but nothing happened.
Your colleague {name} promised a refund of {amount}.
My husband {first} {last} is the account holder, account {idnum}.
Can {first} pick up the parcel at your {city} branch?
Thanks,\n{name}
Best regards,\n{first}\n{company}
Kind regards, {name}, {company}, {city}
Name: {name}\nAddress: {address}\nPhone: {phone}
Customer: {name}; address {street}, {postcode} {city}, {country}
Ship to {name}, {street}, {city} {postcode}
The delivery driver left it at {street} instead of my house.
I live in {city} and your store there is closed.
We are a small team at {company} in {city} and need more seats on the {product} plan.
Ms {last} called twice about claim {idnum}.
Mr. {last} wants to cancel the contract for {company}.
I ordered from {company} but got charged twice ({amount}).
Please call me back, {first}, at {phone}.
Flight from {city} to {city} on {date}, booking ref {idnum}.
My booking number is {idnum} and the name on it is {name}.
Contact person: {name} ({email})
The account is under {first} {last}, postcode {postcode}.
Our office moved from {city} to {street}.
Hey it's {first}, still waiting on the refund lol
hello i am {name} and my card was blocked
{first} and {first} both use this account.
I am {name}, policy {idnum}, and I want to add my daughter {first}.
Invoice address: {company}, {street}, {postcode} {city}
We visited {city} last month and the rental car had a flat tyre.
Please transfer the balance to my account at {company}.
The technician, {first}, did a great job, please thank him.
{company} asked us to forward this to {name}.
Is the {city} warehouse still open on Sunday?
My neighbour {name} at {street} got my package.
Zip code is {postcode}.
I'm {first} {last}, born in {city}, {country}.
Send the documents to {first} at {street}, {city}.
our address is {address}
Re: order {idnum} for {name}
As discussed with {name} from {company}, we would like to upgrade.
Hi {first}, thanks for the quick reply!
{first} {last} - {company} - {phone}
I travel to {country} next week, does my plan cover roaming?
The package was sent to {city} instead of {city}.
Customer {name} reports that the {product} stopped working.
From: {name} <{email}>
my ssn is {idnum} and my name is {name}
{first} rang yesterday about the broken heater in the {city} flat.
{last}, {first}: change of address to {address}
Attn: {name}, Accounts Payable, {company}, {street}, {postcode} {city}
I used to live at {street} but now I'm at {street}.
please deliver to {street} {postcode} {city} thank you
Our client {name} ({company}) disputes the charge.
It was {first} {last} who opened the ticket, not me.
Pick-up address: {street}, {city}. Drop-off: {street}, {city}.
Postal code {postcode}, city {city}, country {country}.
Hi, {name} again - any news on my case {idnum}?
My sister {first} lives in {city}, {country} and wants the same plan.
The parcel for {name}, {address} came back to sender.
{company} in {city} sold me a faulty unit.
Sent from {city}. {name}
Hello {company} team, I am {first}.
I spoke to {first} at your {city} office and to {first} on the phone.
Mr and Mrs {last} have a joint account ({idnum}).
Delivery note: leave with {first} at number {idnum}.
I am travelling from {city} to {country} and need the card unblocked.
Dr {last} from {company} will sign the contract.
address: {street}\n{postcode} {city}\n{country}
{name}\n{street}\n{postcode} {city}
The reference is {idnum}; the holder is {last}, {first}.
When {first} {last} called, she gave {street} as her address.
i moved from {city} to {city} last week
we are {company} and our billing contact is {first} ({email})
{first}'s order was delivered to {street} by mistake.
Tell {first} I said thanks!
Can you confirm {name} is authorised on account {idnum}?
My order was meant to go to {city} but it is stuck somewhere near {city}.
I bought it from the {city} shop and {first} at the till was very rude.
Is there a store near {postcode} or in {city} centre?
My flight lands at {city} airport at 10:45, please have the car ready.
The package is still in {country} according to the tracking page.
{first} {last} and {first} {last} are both on the lease for {street}.
She was born in {city} and now lives in {city}.
Meet {first} at the {company} office on {street} at 9:30.
Billing: {name}, {address}. Shipping: same as billing.
please update my name to {name}, it was misspelt
FAO {name}\n{company}\n{address}
{last} {first} (surname first), customer number {idnum}
We wrote to you from {city} twice already.
I am {first}, the owner of {company}, and we are based in {city}.
Hello, is this the right place to ask about the {city} to {city} train?
Your driver {first} delivered to {street} although I live at {street}.
The form says {city}, {country} but I am actually in {city} now.
Nobody at {company} could tell me where my {product} is.
Ask for {first} or {first} when you call the {city} office.
{first} says the charger is missing from the box.
Could you ask {first} to call me?
Thanks again {first}!
We both, {first} and I, would like to cancel.
My son {first} broke the screen, is that covered?
I think {first} in your billing team made a mistake.
{first} from the night shift helped me, {first} from the day shift did not.
- {first}
Love the service, {first} was brilliant.
i asked {first} twice and {first} never got back to me
The booking is for me and my wife {first}.
Can {first} sign instead of me?
Mrs {last} is away, her daughter {first} will answer.
Give my regards to {first} {last} from {city}.
The case was handled by {last}.
{first} said the parcel would come on Tuesday.
I gave the spare keys to {first} yesterday.
Please let {first} know the invoice is wrong.
Could you put {first} through to billing?
{first} will phone you back tomorrow, she said.
Ask {first} about it, he knows the details.
My colleague {first} handles the payments now.
Last time I was helped by {first}, who was great.
Forward this to {first} please, not to me.
Is {first} still working in that team?
We met {first} {last} at the trade fair in {city}.
Apparently {first} cancelled it without asking me.
Why did {first} close my ticket?
{first} from accounts emailed me twice.
the guy on the phone, {first} i think, hung up on me
Tell {last} the meter reading is wrong.
{first} {last} is no longer authorised on this account.
Policyholder {name}, renewal due next month.
Payee: {name}. Reference attached.
Beneficiary {name}, {address}
Driver's name {name}, address {street}, {city}
I'm at {street} until Monday, then back home.
The van stopped at {street} twice and left again.
Bring it round to {street} after six please.
{street} is my new address from the 1st.
Collect from {street}, {city} on the 3rd.
Moving from {street} to {street} next week.
Unit 4, {street}, {city} {postcode} - please note the unit number
the keys are with my neighbour at {street}
{company} changed its name, the new invoices come from {company}.
Our supplier {company} went bust, can you reroute the order?
We buy everything from {company} in {city}.
I work for {company} and we have {n} licences.
my name's {first}, {first} {last}
{first} here, {first} {last} from {city}.
its {first} again, any news?
hi {first} hi {last}
contact: {first} {last}, {city}, {country}
{first}, {last} and {first} signed the form.
I have been waiting since {first} promised a callback.
She lives in {city} near {postcode}.
Send it to postcode {postcode} please, the street is {street}.
we live in {city}, {country}, address {address}
""".strip("\n").split("\n")
OPENINGS = ("Hi,", "Hello,", "Hi team,", "Dear Sir or Madam,", "Good afternoon,", "Hey,", "To whom it may concern,",
            "Dear {company} team,", "Hello {first},", "Hi there,", "Good morning", "Good morning,", "Dear Support,",
            "Re: my order", "Subject: complaint", "Hello again,")
CLOSINGS = ("Thanks, {first}", "Regards,\n{name}", "Best,\n{first} {last}", "Cheers, {first}", "Thank you.",
            "Kind regards\n{name}\n{company}", "Many thanks,\n{name}\n{phone}", "-- {name}, {city}",
            "Sent from my phone", "Thanks in advance!", "Sincerely,", "Cheers,", "Best,", "Regards,", "Thank you",
            "Kind regards", "Best wishes", "Have a nice day!", "Looking forward to your reply.")
# Text with capitalised words that are not personal data, so the model learns to leave them.
NEGATIVE_TEMPLATES = r"""
The {product} stopped syncing after the update on Monday.
Please cancel my Premium Plan at the end of March.
Customer Support never answered my ticket about the Android App.
I want to upgrade from Basic to Business, what does it cost?
The Terms and Conditions say nothing about a refund.
Your Help Center article on Two-Factor Authentication is out of date.
Why was I charged {amount} on {date}?
The Login page shows Error 500 since Tuesday.
I love the new Dark Mode, thanks to the whole Team!
Order Status says Delivered but nothing arrived.
Can I pay by Credit Card or only by Bank Transfer?
My Wi-Fi Router keeps dropping the connection every Friday evening.
The Christmas Sale price was not applied at checkout.
Please close the account, I no longer need the Family Bundle.
The call was at 10:30:45 and lasted twenty minutes.
URGENT: Order History page is blank, Payment Methods too.
Dear Team, this is Urgent. The Checkout button does nothing.
Settings > Account > Privacy does not save my choice.
I filed it 10 days ago, 14 times, and got Ticket Closed each time.
See Section 4.2 of the User Guide, it contradicts the FAQ.
Version 3.1 broke Offline Mode on my Tablet.
My password reset did not work and the Verify Email link expired.
The Black Friday deal was gone by Saturday morning.
Can I switch from Monthly to Annual billing before the Renewal Date?
I gave the Delivery Instructions twice: Leave At Door.
The Refund Policy page says 30 days but the Returns Portal says 14.
Received 2026-03-05T09:15:00Z, status Pending Review.
Is the Student Discount valid with the Spring Promo?
""".strip("\n").split("\n")
# Everyday nouns in the places where names and cities stand, so that lower-case words are not taken for names. The
# item words of the tests (tests/test_tasks.py ITEMS) are left out on purpose: there they check generalisation.
NOUNS = """
chair table lamp desk phone laptop headset keyboard mouse cable router modem charger battery case cover lens tripod
shirt dress shoes boots coat scarf gloves hat belt wallet handbag suitcase watch ring necklace bracelet earrings
oven microwave dishwasher washer dryer freezer cooker grill pan pot knife spoon fork plate bowl mug glass bottle jar
pillow blanket duvet curtain rug carpet mirror shelf cabinet drawer bed crib cot bench stool ladder hammer saw
tent sleeping-bag kayak helmet skates racket ball bat net treadmill dumbbell yoga-mat ticket voucher coupon gift
subscription membership licence warranty insurance contract invoice receipt refund deposit loan mortgage pension
parcel package box envelope letter card sticker label poster frame painting book magazine newspaper notebook pen
pencil marker stapler paper ink toner cartridge shampoo soap toothbrush razor perfume cream lotion vitamins medicine
bike car van truck tyre wheel engine brake mirror seat window door key lock alarm sensor camera-bag drone console
controller game headphones earbuds television radio clock fan filter pump hose sprinkler mower shovel rake bucket
""".split()
NOUN_TEMPLATES = r"""
I bought a {noun} last week and it already broke.
Do you sell the {noun} in blue?
The {noun} I ordered is the wrong size.
Can I return the {noun} without the box?
please add a {noun} to my order
how much is the {noun} with delivery
My {noun} stopped working after two days.
the {noun} and the {noun} came in one parcel, both damaged
Is the {noun} covered by the warranty?
i need a new {noun} asap
We ordered {n} of the {noun} for the office.
The {noun} was missing from the delivery.
""".strip("\n").split("\n")
PRODUCTS = ("Pro Max", "Smart Hub", "Cloud Backup", "Starter Kit", "Home Plus", "Galaxy Tab", "Office Suite")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fakers(locales, seed):
    from faker import Faker

    out = []
    for i, loc in enumerate(locales):
        f = Faker(loc)
        f.seed_instance(seed * 1000 + i)
        out.append(f)
    return out


def _id_number(rng: random.Random) -> str:
    kind = rng.randrange(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    if kind == 5:  # letters, a space, digits, as typed in chat ("qfr 318062774")
        return f"{''.join(rng.choice(letters) for _ in range(rng.randint(2, 4)))} {rng.randrange(10, 10 ** 9)}"
    if kind == 6:  # letter and digit groups spelt out one by one ("k 4 tz 81")
        parts = [rng.choice(letters), str(rng.randrange(1, 999)),
                 "".join(rng.choice(letters) for _ in range(rng.randint(1, 2))), str(rng.randrange(1, 99))]
        return " ".join(parts[:rng.randint(3, 4)])
    if kind == 0:
        return str(rng.randrange(10 ** 5, 10 ** 10))
    if kind == 1:
        return f"{rng.choice(['AB', 'XK', 'ZT', 'RB', 'QL'])}{rng.randrange(10 ** 4, 10 ** 7)}"
    if kind == 2:
        return f"{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}-{rng.randrange(10, 99)}"
    if kind == 3:
        return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    return str(rng.randrange(1000, 9999))


def _slot(f, slot: str, rng: random.Random):
    """(value, label) for one slot; label None for context slots."""
    one_line = lambda s: re.sub(r"\s*\n\s*", ", ", s.strip())  # noqa: E731
    if slot == "name":
        return f"{f.first_name()} {f.last_name()}", "PERSON"
    if slot == "first":
        return f.first_name(), "PERSON"
    if slot == "last":
        return f.last_name(), "PERSON"
    if slot == "city":
        return f.city(), "LOCATION"
    if slot == "country":
        return f.country(), "LOCATION"
    if slot == "street":
        return one_line(f.street_address()), "ADDRESS"
    if slot == "postcode":
        return f.postcode(), "ADDRESS"
    if slot == "address":
        return one_line(f.address()), "ADDRESS"
    if slot == "company":
        return f.company(), "ORG"
    if slot == "idnum":
        return _id_number(rng), "ID_NUMBER"
    if slot == "phone":
        return f.phone_number(), None
    if slot == "email":
        return f.email(), None
    if slot == "date":
        return f.date(), None
    if slot == "amount":
        return f"{rng.choice(['$', '€', '£'])}{rng.randrange(5, 900)}.{rng.randrange(10, 99)}", None
    if slot == "product":
        return rng.choice(PRODUCTS), None
    if slot == "noun":
        return rng.choice(NOUNS).replace("-", " "), None
    if slot == "n":
        return str(rng.randrange(2, 40)), None
    raise KeyError(slot)


@lru_cache(maxsize=1)
def _english():
    from faker import Faker

    f = Faker("en_US")
    f.seed_instance(0)
    return f


def fill(template: str, f, rng: random.Random) -> dict:
    text, spans, pos = "", [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos:m.start()]
        try:
            value, label = _slot(f, m.group(1), rng)
        except AttributeError:  # a locale without that provider (phone numbers in "sw"): an English value
            value, label = _slot(_english(), m.group(1), rng)
        if m.group(1) == "name" and rng.random() < 0.2:  # a title before the name stays outside the span
            try:
                text += f.prefix() + " "
            except AttributeError:
                pass
        if label and label == "PERSON" and spans and spans[-1]["label"] == "PERSON" \
                and spans[-1]["end"] == len(text) - 1 and text[-1] == " ":
            spans[-1]["end"] = len(text) + len(value)  # "{first} {last}" is one name, as "{name}" is
        elif label:
            spans.append({"start": len(text), "end": len(text) + len(value), "label": label})
        text += value
        pos = m.end()
    text += template[pos:]
    return {"text": text, "spans": spans}


def synthetic(n: int, seed: int, locales=TRAIN_LOCALES) -> list[dict]:
    rng = random.Random(seed)
    fakers = _fakers(locales, seed)
    out = []
    for i in range(n):
        f = rng.choice(fakers)
        roll = rng.random()
        template = rng.choice(NEGATIVE_TEMPLATES) if roll < 0.12 else rng.choice(NOUN_TEMPLATES) if roll < 0.2 \
            else rng.choice(TEMPLATES)
        if rng.random() < 0.4:  # a whole message: opening, body, sign-off
            template = f"{rng.choice(OPENINGS)}{rng.choice([' ', chr(10)])}{template}{chr(10)}{rng.choice(CLOSINGS)}"
        rec = fill(template.replace("\\n", "\n"), f, rng)
        r = rng.random()
        if r < 0.2:  # chat typed in lower case
            rec["text"] = rec["text"].lower()
        elif r < 0.23:  # a shouted message
            rec["text"] = rec["text"].upper()
        out.append(rec)
    return out


def real(path: Path, mapping: dict) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        spans = [{"start": s["start"], "end": s["end"], "label": mapping[s["label"]]}
                 for s in r["spans"] if s["label"] in mapping]
        out.append({"text": r["text"], "spans": spans})
    return out


def to_docs(nlp, records):
    from spacy.tokens import DocBin

    db, dropped = DocBin(), 0
    for r in records:
        doc = nlp.make_doc(r["text"])
        ents = []
        for s in r["spans"]:
            span = doc.char_span(s["start"], s["end"], label=s["label"], alignment_mode="expand")
            if span is None:
                dropped += 1
                continue
            ents.append(span)
        try:
            doc.ents = ents
        except ValueError:  # overlapping after expansion
            dropped += 1
            continue
        db.add(doc)
    return db, dropped




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "kit" / "privacy" / "ner_model"))
    ap.add_argument("--synthetic", type=int, default=24000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--norm-rows", type=int, default=10000)
    ap.add_argument("--real-repeat", type=int, default=3, help="how many times the real rows are repeated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--embed", choices=("hash", "char"), default="hash",
                    help="token features: hashed NORM/PREFIX/SUFFIX/SHAPE (spaCy's default) or each word's first and "
                         "last characters (spaCy's CharacterEmbed): a second model that errs differently")
    args = ap.parse_args(argv)

    import spacy
    from spacy.cli.train import train as spacy_train

    wnut, ident = DEVDATA / "train.jsonl", DEVDATA / "identifiers" / "train.jsonl"
    rows = (real(wnut, WNUT_MAP) + real(ident, IDENTIFIERS_MAP)) * args.real_repeat \
        + synthetic(args.synthetic, args.seed)
    rng = random.Random(args.seed)
    rng.shuffle(rows)
    n_dev = len(rows) // 10
    nlp = spacy.blank("en")
    work = Path(args.out).with_name("ner_model.work")
    work.mkdir(parents=True, exist_ok=True)
    dev, dropped_dev = to_docs(nlp, rows[:n_dev])
    train, dropped = to_docs(nlp, rows[n_dev:])
    train.to_disk(work / "train.spacy")
    dev.to_disk(work / "dev.spacy")
    print(f"training rows {len(rows) - n_dev}, dev rows {n_dev}, spans dropped at token alignment {dropped + dropped_dev}")
    # spaCy's own "efficiency" NER config (CNN tok2vec, transition-based NER), with epochs, seed and width set here.
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False)
    config["system"]["seed"] = args.seed
    config["training"].update({"max_epochs": args.epochs, "max_steps": 0, "patience": 0, "eval_frequency": 500})
    config["components"]["tok2vec"]["model"]["encode"].update({"width": args.width, "depth": args.depth})
    # More rows for NORM than spaCy's default 5000: fewer hash collisions between names and everyday words.
    config["components"]["tok2vec"]["model"]["embed"]["rows"] = [args.norm_rows, 1000, 2500, 2500]
    if args.embed == "char":
        config["components"]["tok2vec"]["model"]["embed"] = {
            "@architectures": "spacy.CharacterEmbed.v2", "width": args.width, "rows": args.norm_rows, "nM": 64,
            "nC": 8, "include_static_vectors": False, "feature": "NORM"}
    config["training"]["logger"]["progress_bar"] = False
    cfg = work / "config.cfg"
    config.to_disk(cfg)
    started = time.time()
    spacy_train(cfg, work / "output", overrides={"paths.train": str(work / "train.spacy"),
                                                  "paths.dev": str(work / "dev.spacy")})
    best = work / "output" / "model-best"
    out = Path(args.out)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    import shutil
    shutil.copytree(best, out)
    meta = json.loads((out / "meta.json").read_text())
    provenance = {
        "what": "kit's entity recogniser: spaCy tok2vec (CNN" + (", character embeddings" if args.embed == "char" else "")
                + ") + transition-based NER",
        "labels": list(LABELS),
        "trained_by": "tools/train_ner.py",
        "args": vars(args) | {"out": str(out.resolve().relative_to(ROOT)) if out.resolve().is_relative_to(ROOT)
                              else out.name},
        "spacy_version": spacy.__version__, "train_seconds": round(time.time() - started),
        "inputs": {"wnut17_train": {"path": "devdata/pii/train.jsonl", "sha256": sha256(wnut),
                                    "licence": "CC BY 4.0 (WNUT-17, Derczynski et al. 2017)"},
                   "multidogo_identifiers_train": {"path": "devdata/pii/identifiers/train.jsonl",
                                                   "sha256": sha256(ident), "licence": "CDLA-Permissive-1.0 (Amazon)"},
                   "generated": {"n": args.synthetic, "faker_locales": list(TRAIN_LOCALES),
                                 "templates": len(TEMPLATES), "negative_templates": len(NEGATIVE_TEMPLATES),
                                 "openings": len(OPENINGS), "closings": len(CLOSINGS),
                                 "noun_templates": len(NOUN_TEMPLATES), "nouns": len(NOUNS)}},
        "dev_scores_on_held_back_tenth": meta.get("performance", {}),
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    shutil.rmtree(work)
    print(json.dumps(provenance["dev_scores_on_held_back_tenth"].get("ents_per_type", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
