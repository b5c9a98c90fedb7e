"""Synthetic insurance support emails for the course.

In: a seed and a row count. Out: rows (dicts) of fake tickets routed into four lanes, with fake PII planted in
structured columns and in the free text, and realistic mess (typos, slang, shouting, empty subjects, very short and
very long bodies). Every value here is invented; nothing comes from a real customer.

Each email is assembled from parts (greeting, context, the intent sentence that carries the label, detail, a
distractor that mentions another lane's vocabulary, sign-off) in a shuffled order, so a model has to read the
meaning instead of learning a label's cadence. `skeleton_stats` reports how varied those skeletons are.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LABELS = ("claim_status", "document_request", "billing_dispute", "agent_escalation")

FIRST_NAMES = ["Maria", "James", "Aisha", "Tomasz", "Priya", "Liam", "Sofia", "Kenji", "Olu", "Hannah", "Diego",
               "Fatima", "Noah", "Ingrid", "Mateo", "Chloe", "Ravi", "Emeka", "Yara", "Lukas", "Grace", "Omar",
               "Elena", "Samuel", "Mei", "Patrick", "Zanele", "Hugo", "Leila", "Arjun"]
LAST_NAMES = ["Okafor", "Lindqvist", "Moreau", "Kowalski", "Haddad", "Brennan", "Castillo", "Tanaka", "Fischer",
              "Nguyen", "Abara", "Silva", "Oduya", "Petrov", "McAllister", "Rossi", "Dubois", "Khan", "Schmidt",
              "Achterberg", "Delgado", "Ferreira", "Walsh", "Yilmaz", "Novak", "Barros", "Eriksen", "Mensah"]
STREETS = ["Maple Avenue", "Harbour Road", "Linden Strasse", "Rue des Lilas", "Oak Lane", "Station Road",
           "Kingfisher Close", "Elm Street", "Via Roma", "Cedar Drive", "Mill Lane", "Birch Court"]
CITIES = ["Springfield, IL 62704", "Leeds LS6 2AB", "Berlin 10115", "Lyon 69003", "Austin, TX 78701",
          "Dublin D08 XY12", "Toronto, ON M5V 2T6", "Manchester M1 4BT", "Portland, OR 97205"]
MAIL_DOMAINS = ["example.com", "mailbox.test", "inbox.example.org", "post.example.net"]
TENANTS = ["acme-insure", "northwind-mutual", "harbor-life"]
# A tenant whose contract does not allow training on its tickets: its rows carry training_consent=no.
NO_CONSENT_TENANT = "bluefin-assurance"

# Phone numbers in several national formats (fictional ranges where they exist, e.g. US 555-01xx, UK 07700 900xxx).
PHONE_FORMATS = ["(555) 01{a}-{b}", "+1 555 01{a} {b}", "555.01{a}.{b}", "+44 7700 900{c}", "07700 900{c}",
                 "+49 30 {d}", "+33 1 23 45 67 {e}", "+61 491 570 {c}"]

# Sentences that carry the label. Slots: {claim} {policy} {days} {amount} {card4} {doc}.
INTENTS = {
    "claim_status": [
        "any update on claim {claim}?",
        "can you tell me where my claim {claim} stands",
        "I filed claim {claim} {days} days ago and would like to know the status",
        "has the assessment for {claim} been completed yet",
        "is my claim approved or still being reviewed",
        "wondering if there is any progress on the water damage claim",
        "when can I expect a decision on claim {claim}",
        "just checking whether the payout for my claim has been scheduled",
        "what stage is my car accident claim at now",
        "the portal still says 'pending' for {claim}, is that right",
        "could someone let me know if the repair estimate for my claim was accepted",
        "how much longer will the review of my claim take",
        "did the inspection report for {claim} come back",
        "has a settlement amount been decided for my claim yet",
    ],
    "document_request": [
        "please send me a copy of my policy documents for {policy}",
        "I need the proof of loss form for my claim",
        "can you email me the certificate of insurance",
        "my mortgage lender is asking for the declarations page, could you send it",
        "where can I download the {doc}",
        "I need a letter confirming my coverage dates for my landlord",
        "could you resend the claim form, I lost the first one",
        "please forward the signed {doc} so I can file my taxes",
        "I was told to fill in a proof of loss, where do I get it",
        "can I get a copy of the adjuster's report for my records",
        "the {doc} never arrived in the post, can you send it again",
        "I need my no-claims certificate for a new insurer",
        "please provide the renewal schedule for {policy} as a PDF",
    ],
    "billing_dispute": [
        "I was charged {amount} twice this month",
        "why did my premium go up to {amount} without notice",
        "there is a charge of {amount} on my card ending {card4} that I did not authorise",
        "I cancelled the policy but you still took {amount}",
        "the direct debit amount is wrong, it should not be {amount}",
        "please refund the late fee, I paid on time",
        "I was billed for a rider I never added",
        "my statement shows {amount} but my quote was much lower",
        "you charged my card {card} after I switched to bank transfer",
        "I want the overcharge of {amount} reversed",
        "the invoice lists two policies but I only have one",
        "I'm disputing the {amount} cancellation fee",
        "the refund you promised for {policy} never showed up on my statement",
    ],
    "agent_escalation": [
        "my adjuster has ghosted me for {days} days",
        "I want to speak to a supervisor, nobody is helping",
        "this is the fifth time I'm writing and no one answers, escalate this now",
        "the agent hung up on me and I want a manager to call me",
        "I'm going to file a complaint with the regulator if someone senior doesn't contact me",
        "your adjuster was rude and I want a different one assigned",
        "I've been bounced between departments for weeks, put me through to someone in charge",
        "nobody has returned my calls in {days} days, I need a manager today",
        "I demand to speak with your complaints team",
        "the person handling my case stopped replying, I need someone else",
        "I have been promised a callback {days} times and it never happens, escalate please",
        "get me a team lead, the front line staff keep giving me different answers",
        "I'm contacting my lawyer unless a manager gets back to me this week",
    ],
}

SUBJECTS = {
    "claim_status": ["Claim {claim}", "status?", "update on my claim", "Re: claim progress", "CLAIM UPDATE",
                     "where is my claim", "question about {claim}"],
    "document_request": ["documents", "need paperwork", "Copy of policy {policy}", "proof of loss", "request",
                         "certificate needed", "form?"],
    "billing_dispute": ["billing", "wrong charge", "REFUND", "double charged!!", "invoice question",
                        "premium increase", "charge on my card"],
    "agent_escalation": ["complaint", "SUPERVISOR NEEDED", "no response", "escalation", "Unacceptable service",
                         "still waiting", "manager please"],
}

# Subjects that say nothing about the lane, so the subject line alone cannot route a ticket.
GENERIC_SUBJECTS = ["question", "help", "urgent", "Re: your email", "my policy", "Fwd: ", "hello", "???",
                    "following up", "customer query"]

DOCS = ["declarations page", "policy wordings", "certificate of insurance", "renewal notice", "1099 form",
        "claim settlement letter"]

GREETINGS = ["Hi,", "Hello,", "Dear team,", "hey", "Good morning,", "To whom it may concern,", "Hi there,", "",
             "yo", "Hello team,"]
CONTEXTS = [
    "My name is {name} and my policy number is {policy}.",
    "I'm a customer with policy {policy}.",
    "I have home insurance with you under {policy}.",
    "Writing about policy {policy}.",
    "My car is insured with you ({policy}).",
    "I've been with your company for {years} years.",
    "I'm writing on behalf of my mother, {name}.",
    "This is about the storm damage at {address}.",
    "",
]
DETAILS = [
    "You can reach me on {phone}.",
    "My email is {email} if that is easier.",
    "I'm available most afternoons.",
    "Please reply to {email}.",
    "Call me at {phone} after 5pm.",
    "I already tried the online portal.",
    "I live at {address}.",
    "The claim number is {claim}, in case you need it.",
    "For the refund my IBAN is {iban}.",
    "My date of birth is {dob} if you need to verify me.",
    "I was born on {dob}, the portal asked for it.",
    "My SSN is {ssn}, your colleague asked for it.",
    "The portal blocked my login from {ip}.",
    "Our broker integration uses the API key {api_key}, maybe that helps.",
    "I reset my password to {password} but it still fails.",
    "",
]
# Mentions of another lane's vocabulary that do not change this email's lane.
DISTRACTORS = {
    "claim_status": ["I got the documents you sent last week, thanks.", "My bill is fine, that's not the issue."],
    "document_request": ["The claim itself is going fine.", "No complaint about the service so far."],
    "billing_dispute": ["My claim {claim} was settled already, this is only about money.",
                        "I don't need any documents, just the money back."],
    "agent_escalation": ["I already sent the proof of loss twice.", "Billing is not the problem here."],
}
CLOSINGS = ["Thanks,", "Regards,", "Cheers,", "Thank you,", "Best,", "Sincerely,", "", "thx", "Kind regards,"]
FILLERS = [
    "We had a lot going on at home lately with the kids and work.",
    "I have read the FAQ on your website twice.",
    "The weather here has been awful so the damage got worse.",
    "My neighbour is insured with another company and got an answer within a week.",
    "I'm not very good with computers so email is best for me.",
    "I also want to say the first person I spoke to was very kind.",
    "Last year I renewed without any problem.",
    "I am travelling next month so this is a bit urgent.",
]
SLANG = {"you": "u", "are": "r", "please": "pls", "thanks": "thx", "because": "cuz", "about": "abt",
         "tomorrow": "tmrw", "your": "ur"}
ANGRY_TAILS = ["This is ridiculous.", "Absolutely unacceptable!!", "Sort it out.", "I'm fed up.", "Seriously??"]


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str
    address: str


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to a digit string."""
    digits = [int(d) for d in prefix]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:  # positions that get doubled once the check digit is appended
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return prefix + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "37"])  # Visa, Mastercard, Amex-like prefixes
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    number = luhn_complete(body)
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


def _person(rng: random.Random) -> Person:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    sep = rng.choice([".", "_", ""])
    email = f"{first.lower()}{sep}{last.lower()}{rng.randint(1, 99)}@{rng.choice(MAIL_DOMAINS)}"
    phone = rng.choice(PHONE_FORMATS).format(a=rng.randint(0, 9), b=f"{rng.randint(0, 9999):04d}",
                                             c=f"{rng.randint(0, 999):03d}", d=f"{rng.randint(1000000, 9999999)}",
                                             e=f"{rng.randint(10, 99)}")
    address = f"{rng.randint(1, 299)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    return Person(f"{first} {last}", email, phone, address)


def _iban(rng: random.Random) -> str:
    """A checksum-valid IBAN (German, British or Dutch layout), grouped in fours as people type them."""
    from stdnum import iban

    country, bban = rng.choice([
        ("DE", "".join(str(rng.randint(0, 9)) for _ in range(18))),
        ("GB", "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
         + "".join(str(rng.randint(0, 9)) for _ in range(14))),
        ("NL", "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
         + "".join(str(rng.randint(0, 9)) for _ in range(10))),
    ])
    number = country + iban.calc_check_digits(country + "00" + bban) + bban
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.6 else number


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(["-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def _ip(rng: random.Random) -> str:
    # Documentation ranges (RFC 5737 / RFC 3849): never a real host.
    if rng.random() < 0.8:
        return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randint(1, 254)}"
    return f"2001:db8:{rng.randint(0, 0xffff):x}::{rng.randint(1, 0xffff):x}"


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def _dob(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2004), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d}.{m}.{y}", f"{MONTHS[m - 1]} {d}, {y}",
                       f"{d} {MONTHS[m - 1]} {y}"])


def _api_key(rng: random.Random) -> str:
    # A made-up provider prefix: real formats (AWS, Stripe …) would trip secret scanners on the committed samples.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return rng.choice(["kit_live_", "brk_", "key-"]) + "".join(rng.choice(alphabet) for _ in range(28))


def _password(rng: random.Random) -> str:
    return rng.choice(["Sunflower", "Harbour", "Winter", "Bluebird", "Marmalade"]) + rng.choice("#!$@") + \
        str(rng.randint(100, 9999))


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _mess(text: str, rng: random.Random, style: dict) -> str:
    words = text.split(" ")
    out = []
    for w in words:
        if style["typos"] and rng.random() < 0.06:
            w = _typo(w, rng)
        if style["slang"] and w.lower() in SLANG and rng.random() < 0.7:
            w = SLANG[w.lower()]
        out.append(w)
    text = " ".join(out)
    if style["case"] == "lower":
        text = text.lower()
    elif style["case"] == "upper":
        text = text.upper()
    return text


def make_ticket(rng: random.Random, label: str, index: int) -> tuple[dict, str]:
    """One ticket row and its skeleton signature (which parts, in which order)."""
    person = _person(rng)
    policy = f"POL-{rng.randint(100000, 999999)}"
    claim = f"CLM-{rng.randint(2021, 2026)}-{rng.randint(0, 999999):06d}"
    card = _card(rng)
    slots = dict(name=person.name, email=person.email, phone=person.phone, address=person.address, policy=policy,
                 claim=claim, card=card, card4=card.replace(" ", "")[-4:], days=rng.choice([3, 5, 10, 14, 21, 30]),
                 amount=f"${rng.randint(20, 900)}.{rng.randint(0, 99):02d}", doc=rng.choice(DOCS),
                 years=rng.randint(1, 15), iban=_iban(rng), dob=_dob(rng), ssn=_ssn(rng), ip=_ip(rng),
                 api_key=_api_key(rng), password=_password(rng))

    intent_i = rng.randrange(len(INTENTS[label]))
    intent = INTENTS[label][intent_i].format(**slots)
    intent = intent[0].upper() + intent[1:] if rng.random() < 0.6 else intent
    intent += rng.choice([".", ".", "?", "!", ""]) if intent[-1].isalnum() else ""
    parts = {"intent": intent}
    if rng.random() < 0.7:
        parts["context"] = rng.choice(CONTEXTS).format(**slots)
    if rng.random() < 0.6:
        parts["detail"] = rng.choice(DETAILS).format(**slots)
    if rng.random() < 0.25:
        parts["distractor"] = rng.choice(DISTRACTORS[label]).format(**slots)
    if rng.random() < 0.15:  # the long tail: rambling emails
        parts["filler"] = " ".join(rng.sample(FILLERS, rng.randint(2, 4)))
    if rng.random() < 0.2:
        parts["angry"] = rng.choice(ANGRY_TAILS)
    if rng.random() < 0.12:  # very short emails: the intent alone
        parts = {"intent": intent}
    order = list(parts)
    rng.shuffle(order)
    body_parts = [parts[k] for k in order if parts[k]]

    style = {"typos": rng.random() < 0.3, "slang": rng.random() < 0.2,
             "case": rng.choices(["keep", "lower", "upper"], weights=[85, 10, 5])[0]}
    body = " ".join(body_parts)
    greeting = rng.choice(GREETINGS)
    closing = rng.choice(CLOSINGS)
    sign = rng.choice([person.name, person.name.split()[0], f"{person.name}\n{person.phone}", ""])
    lines = [greeting, _mess(body, rng, style), closing, sign] if len(parts) > 1 else [_mess(body, rng, style)]
    body = "\n".join(line for line in lines if line).strip()

    roll = rng.random()
    pool = SUBJECTS[label] if roll < 0.5 else GENERIC_SUBJECTS
    subject = rng.choice(pool).format(**slots) if roll < 0.85 else ""
    row = {
        "ticket_id": f"T{index:05d}",
        "tenant_id": NO_CONSENT_TENANT if rng.random() < 0.04 else rng.choice(TENANTS),
        "received_at": f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 20):02d}:{rng.randint(0, 59):02d}:00Z",
        "customer_name": person.name,
        "customer_email": person.email,
        "policy_number": policy,
        "subject": subject,
        "body": body,
        "label": label,
    }
    row["training_consent"] = "no" if row["tenant_id"] == NO_CONSENT_TENANT else "yes"
    # The skeleton: which parts are present and in which order, ignoring the words themselves.
    skeleton = "|".join(order) + f"/{'g' if greeting else ''}{'c' if closing else ''}{'s' if sign else ''}"
    return row, skeleton


def generate(n_rows: int = 600, seed: int = 7) -> tuple[list[dict], list[str]]:
    """Rows balanced over the four lanes (shuffled), and the skeleton of each."""
    rng = random.Random(seed)
    labels = [LABELS[i % len(LABELS)] for i in range(n_rows)]
    rng.shuffle(labels)
    rows, skeletons = [], []
    for i, label in enumerate(labels):
        row, skel = make_ticket(rng, label, i + 1)
        rows.append(row)
        skeletons.append(skel)
    return rows, skeletons


def skeleton_stats(skeletons: list[str], labels: list[str]) -> dict:
    """How varied the email skeletons are, and how little they say about the label.

    `skeleton_label_nmi` is the normalized mutual information between skeleton and label (0 = the skeleton tells
    nothing about the lane). Many skeletons seen once inflate it a little, so it is reported beside the distinct count.
    """
    from sklearn.metrics import normalized_mutual_info_score

    counts = Counter(skeletons)
    n = len(skeletons)
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    return {
        "rows": n,
        "distinct_skeletons": len(counts),
        "skeleton_entropy_bits": round(entropy, 2),
        "most_common_skeleton_share": round(counts.most_common(1)[0][1] / n, 3),
        "skeleton_label_nmi": round(float(normalized_mutual_info_score(labels, skeletons)), 3),
    }


def write_samples(out_dir: Path, n_rows: int = 600, seed: int = 7) -> dict:
    """Write tickets.csv and tickets.jsonl plus skeleton stats into out_dir; return the stats."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, skeletons = generate(n_rows, seed)
    with open(out_dir / "tickets.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out_dir / "tickets.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    stats = skeleton_stats(skeletons, [r["label"] for r in rows]) | {"seed": seed}
    (out_dir / "skeleton_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def field_update(row: dict) -> dict:
    """The extract target of a ticket: the field update an agent would apply (lane always; the claim number, the
    document asked for and the amount only when the email states them)."""
    text = f"{row['subject']}\n{row['body']}"
    update = {"lane": row["label"]}
    claim = re.search(r"CLM-\d{4}-\d{6}", text)
    if claim:
        update["claim_number"] = claim.group()
    doc = next((d for d in DOCS if d.lower() in text.lower()), None)
    if doc:
        update["document"] = doc
    amount = re.search(r"\$\d+\.\d\d", text)
    if amount:
        update["amount"] = amount.group()
    return update


# House-tone replies per lane: {first} the customer's first name, {ref} " about <claim>" when the email names one.
REPLY_OPENERS = ["Hi {first}, thank you for getting in touch.", "Hello {first}, thanks for your message.",
                 "Dear {first}, thank you for writing to us.", "Hi {first}, thanks for reaching out."]
REPLY_BODIES = {
    "claim_status": ["I have checked your claim{ref} and it is with our assessors; you will hear from us within "
                     "five working days.", "Your claim{ref} is being reviewed, and I have asked the handler to send "
                     "you an update by Friday."],
    "document_request": ["I have sent the {doc} to the email address on your policy; it should arrive within the "
                         "hour.", "You can download the {doc} from your online account under Documents, and I have "
                         "also emailed you a copy."],
    "billing_dispute": ["I am sorry about the charge; I have opened a billing review and we will refund anything taken "
                        "in error within seven days.", "I have passed the payment{ref} to our billing team, who will "
                        "confirm the correct amount to you by email."],
    "agent_escalation": ["I am sorry this has not been resolved; a senior adviser will call you today.",
                         "I understand your frustration, and I have escalated your case{ref} to a team leader, who "
                         "will contact you personally."],
}
REPLY_CLOSINGS = ["Kind regards, the Customer Care team", "Warm wishes, Customer Care", "Best regards, Customer Care"]


def house_reply(row: dict, rng: random.Random) -> str:
    """The reply target of a ticket, in one house tone: greeting by first name, the answer for its lane, a sign-off."""
    update = field_update(row)
    first = row["customer_name"].split()[0]
    ref = f" {update['claim_number']}" if "claim_number" in update else ""
    body = rng.choice(REPLY_BODIES[row["label"]]).format(ref=ref, doc=update.get("document", "document you asked for"))
    return " ".join([rng.choice(REPLY_OPENERS).format(first=first), body, rng.choice(REPLY_CLOSINGS)])


def write_task_samples(out_dir: Path, n_rows: int = 400, seed: int = 11) -> dict:
    """field_updates.jsonl (extract: ticket → `update` object) and replies.jsonl (reply: ticket → `reply`), from
    tickets generated with their own seed, so neither set repeats the routing demo's tickets."""
    out_dir = Path(out_dir)
    rows, _ = generate(n_rows, seed)
    rng = random.Random(seed)
    counts = {}
    for name, column, make in (("field_updates.jsonl", "update", lambda r: field_update(r)),
                               ("replies.jsonl", "reply", lambda r: house_reply(r, rng))):
        with open(out_dir / name, "w", encoding="utf-8") as f:
            for row in rows:
                out = {k: v for k, v in row.items() if k != "label"} | {column: make(row)}
                f.write(json.dumps(out, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def write_bad_inputs(path: Path) -> None:
    """A small CSV of broken rows for tests: bad quoting, empty text, unknown label, bytes that are not UTF-8,
    over-long text, a tenant without training consent, a consent value nobody can read. Two rows are good."""
    header = (b"ticket_id,tenant_id,received_at,customer_name,customer_email,policy_number,subject,body,label,"
              b"training_consent\n")
    long_body = b"My roof leaked again. " * 250  # 5,500 characters: over the default max_chars of 4,000
    lines = [
        b'B001,acme-insure,2026-03-01T10:00:00Z,Ann Lee,ann@example.com,POL-111111,status?,"Any update on claim CLM-2025-000001?",claim_status,yes\n',
        b'B002,acme-insure,2026-03-01T10:05:00Z,Bo Chen,bo@example.com,POL-222222,hello,"",document_request,yes\n',
        b'B003,acme-insure,2026-03-01T10:10:00Z,Cy Diaz,cy@example.com,POL-333333,refund,"I was charged twice",refund_request,yes\n',
        b'B004,acme-insure,2026-03-01T10:15:00Z,Di Evans,di@example.com,POL-444444,caf\xe9,"Caf\xe9 bill \xff\xfe wrong",billing_dispute,yes\n',
        b'B005,acme-insure,2026-03-01T10:20:00Z,Ed Fox,ed@example.com,POL-555555,help,"I want a manager "now" please,agent_escalation,yes\n',
        b'B006,acme-insure,2026-03-01T10:25:00Z,Flo Gray,flo@example.com,POL-666666,docs,"Please send the declarations page",document_request,yes\n',
        b'B007,acme-insure,2026-03-01T10:30:00Z,Gus Hill,gus@example.com,POL-777777,roof,"' + long_body + b'",claim_status,yes\n',
        b'B008,bluefin-assurance,2026-03-01T10:35:00Z,Hal Ito,hal@example.com,POL-888888,bill,"Why was I billed twice?",billing_dispute,no\n',
        b'B009,acme-insure,2026-03-01T10:40:00Z,Ida Jung,ida@example.com,POL-999999,help,"I need a manager",agent_escalation,maybe\n',
        b'B010,acme-insure,yesterday,Jo King,jo@example.com,POL-101010,docs,"Please resend the claim form",document_request,yes\n',
    ]
    Path(path).write_bytes(header + b"".join(lines))


def write_bad_jsonl(path: Path) -> None:
    """A small JSONL of broken lines for tests: invalid JSON, a line that is not an object, a missing field,
    bytes that are not UTF-8, a label of the wrong type. Two lines are good."""
    good = {"ticket_id": "J001", "tenant_id": "acme-insure", "received_at": "2026-03-02T09:00:00Z",
            "customer_name": "Kim Lo", "customer_email": "kim@example.com", "policy_number": "POL-121212",
            "subject": "status", "body": "Any news on my claim?", "label": "claim_status", "training_consent": "yes"}
    lines = [
        json.dumps(good).encode(),
        b'{"ticket_id": "J002", "body": "unterminated',
        b'["J003", "not an object"]',
        json.dumps({k: v for k, v in good.items() if k != "body"} | {"ticket_id": "J004"}).encode(),
        json.dumps(good | {"ticket_id": "J005"}).encode().replace(b"Any news", b"Any n\xffws"),
        json.dumps(good | {"ticket_id": "J006", "label": 3}).encode(),
        json.dumps(good | {"ticket_id": "J007", "body": "Please send my policy documents",
                           "label": "document_request"}).encode(),
    ]
    Path(path).write_bytes(b"\n".join(lines) + b"\n")


# Stage 06's demo: production traffic after the course. A product launch ("DriveSafe", a telematics box with an
# app) brings tickets the training data never saw, and a new routing rule with it: every DriveSafe ticket goes to the
# specialist team behind `agent_escalation`, whatever it asks for. The model still routes them by what they ask.
LAUNCH_PRODUCT = "DriveSafe"
LAUNCH_SENTENCES = [
    "This is about the DriveSafe box you fitted in my car last week.",
    "Since I joined DriveSafe the app keeps logging me out.",
    "My DriveSafe tracker light has been blinking red for days.",
    "The DriveSafe app says my trip score is zero although I drive every day.",
    "I signed up for the DriveSafe discount when I renewed.",
    "After the DriveSafe installation the dashboard unit beeps on every trip.",
    "The DriveSafe telematics report shows trips I never made.",
    "Re the DriveSafe programme: the app has not synced since Monday.",
]


def production_batch(n_rows: int, seed: int, launch: bool = False, review_share: float = 0.3,
                     launch_share: float = 0.45) -> list[dict]:
    """Tickets as the service receives them (no `label` column), a seeded share reviewed by agents
    (`reviewed_label`: the lane they confirmed or corrected to; empty = not reviewed).

    `launch=True`: `launch_share` of the tickets open with a DriveSafe sentence and belong to `agent_escalation` by
    the new rule; the other lanes keep their mix.
    """
    rng = random.Random(f"production-{seed}-{launch}")
    rows = []
    for i in range(n_rows):
        label = rng.choice(LABELS)
        row, _ = make_ticket(rng, label, i + 1)
        row["ticket_id"] = f"P{seed:02d}-{i + 1:05d}"
        day = rng.randint(1, 7) + (7 if launch else 0)
        row["received_at"] = f"2026-11-{day:02d}T{rng.randint(7, 20):02d}:{rng.randint(0, 59):02d}:00Z"
        if launch and rng.random() < launch_share:
            lines = row["body"].split("\n")
            at = 1 if len(lines) > 1 and lines[0] in GREETINGS else 0  # after the greeting, if there is one
            lines.insert(at, rng.choice(LAUNCH_SENTENCES))
            row["body"] = "\n".join(lines)
            label = "agent_escalation"
        row.pop("label")
        row["reviewed_label"] = label if rng.random() < review_share else ""
        rows.append(row)
    return rows


def write_production_batches(out_dir: Path, n_rows: int = 400) -> dict:
    """production/week1.jsonl (traffic like the training data) and production/week2_launch.jsonl (after the launch)."""
    out_dir = Path(out_dir) / "production"
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, seed, launch in (("week1.jsonl", 21, False), ("week2_launch.jsonl", 22, True)):
        rows = production_batch(n_rows, seed, launch)
        with open(out_dir / name, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts
