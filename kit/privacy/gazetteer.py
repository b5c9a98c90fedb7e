"""Person-name gazetteer: census given names and surnames, and the capitalised words that are not name evidence.

In: the 1990 US Census name files (`dist.male.first`, `dist.female.first`, `dist.all.last`; public-domain data)
as shipped in the PyPI package `names` — kit reads the files and never calls that package's random generator.
Out: `census_names()`, the given names and surnames common enough to count as evidence of a person's name, and
`NOT_NAME_PARTS`, the words that end a run of capitalised words ("Dear", "Friday", "Street", "Insurance").

Data only, no matching: `kit.privacy.redact` finds no-cue names with it and `kit.privacy.audit` re-checks the written files with it,
each with its own code, and neither imports the other.

`world_names()` is the audit's own evidence, which the redactor never reads: the given names and surnames of Faker's
person providers for all its locales (MIT; about 30,000 of each, in Latin script), so the audit can recognise a
"Voldemārs Skuja" or a "Noa Araújo" that the redactor's recogniser let through.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib.resources import files

CENSUS_PACKAGE = "names"
CENSUS_FILES = {"given": ("dist.male.first", "dist.female.first"), "surname": ("dist.all.last",)}
# Names held by at least 2 in 100,000 people (about 4,000 given names and 7,500 surnames, before NAME_WORDS). The
# long tail of the surname file is full of everyday words ("Payment", "Portal", "Station", "School"), so it is cut.
CENSUS_MIN_PERCENT = 0.002

# Census names that are also everyday words: no evidence of a name ("Grace Period", "Late Fee", "Will Customer
# Service …"), though still allowed inside one when the other word is evidence ("Will Brennan", "Maria Price").
NAME_WORDS = frozenset("""
will mark bill grant hope faith joy grace mercy merry patience charity melody chance chase crystal cherry diamond
candy star sunny summer winter spring autumn royal prince princess major long rich page paris china india asia
israel jordan georgia virginia florida carolina kenya france germany canada brazil spain poland ireland england
wales monaco sierra valencia santa echo alpha delta omega meta angle manual numbers ivory olive maple jade ruby
violet iris lily rose coral amber ginger honey misty sandy dusty rusty rocky buster tiny lucky lovely love
back ball banks banner bare barrier bash bass battle beam bean bear beer belt best bias bills binder blank blanks
blessing block blood bloom blow blue board bond bonds bone book born boss bottoms bounds box brace branch brand
bridge bridges bright broom brush bull bump bunch burden burger burns butt button cable cage call camp card
carrier case cash castle chestnut child church clay click close cloud coffee coffin cone constant cool cope copper
core corn cover craft crisp cross crow curl curry daily day deal deck dial dollar dove drain driver drum duck duty
eagle early edge fair falls fast fee fell field fields fine fish fix flint flood flower forest frame free freed
friend fudge gates glass gold golden good grass gross grow guess guest hair ham hammer hand handy hang harden
harder hare harness harp hash hatch haven hawk hazard head held her high holder holiday hood hook hooks house hurt
just key keys kite land large lark law laws lay leak lemon light link lock lord low lower luck main marker marks
mask mast masters maze means million minor mix mock money moon more moss mount music neighbors new oh orange pace
pack packer painter palm paradise parent park pass patch peach peak peek peel person pickle pike place plant
player plumb pointer pond pool pope post pounds power powers pray price pride prior quick race range read reader
ready real red register rice ridge ring rock roll roller roof root rounds rule rust sage sale sales salmon sample
samples sand scales seal see self sell sessions settle settles shade sharp sheets shell shine short shorter sides
silver sink sites skipper slack slate small smart snow speaks speed spell spikes stack stamps steel still stock
stocks stone story straight strand strange strong struck styles sun surface swan sweat swift teal thorn tower toy
treat true urban vice wall waits watt weeks wheat wild wing winner wisdom wise wolf word worth worthy
""".split())

# Capitalised words that are never part of a person's name: greetings and sign-offs, dates, street and place words,
# company and support vocabulary (the course's lanes included), titles, function words. They end a run of
# capitalised words, so "Dear Maria Brennan" keeps only "Maria Brennan", and "Customer Service", "Oak Lane" or
# "Next Friday" hold no name at all.
NOT_NAME_PARTS = frozenset("""
dear hi hello hey hiya greetings thanks thank thx regards kind best warm warmest sincerely cheers yours faithfully
truly respectfully cordially many good morning afternoon evening night welcome congratulations happy merry glad
afraid sorry please attn attention re fw fwd subject regarding writing going trying urgent
january february march april may june july august september october november december jan feb mar apr jun jul aug
sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat
sun today tomorrow yesterday tonight weekend week month year christmas easter thanksgiving halloween eve holidays
street st road rd avenue ave lane ln drive boulevard blvd close court ct way place pl square sq terrace crescent
grove gardens parkway highway hwy motorway row mews walk circle trail plaza piazza strasse straße weg gasse rue calle
via city town village county state district province region north south east west northern southern eastern western
upper lower central greater great new old san santa los las el fort saint mount mt port puerto porto lake river bay
beach island isle valley springs hills heights falls harbor harbour airport station building floor suite apartment
apt unit flat estate centre center mall
customer customers client clients service services support team teams department dept office desk care help
helpdesk claim claims billing accounts insurance insurer insure insured assurance mutual life health home motor
auto car travel pet bank banking group holdings company co corp corporation inc ltd llc plc gmbh limited partners
agency bureau authority council ministry government university college school hospital clinic police royal mail
post express airlines airways online portal app website web email mobile phone internet direct debit credit card
visa mastercard amex paypal pay premium gold silver platinum plus pro basic standard business personal family
household contents buildings cover coverage policy policies policyholder holder member members membership plan
scheme fund trust foundation association society union federal national international general regional local
global united copyright technology technologies electronics software systems solutions contributors
american british european english french german spanish italian irish scottish welsh canadian australian indian
chinese japanese
status document documents request dispute escalation complaint complaints refund payment invoice fee charge charges
statement renewal notice letter form certificate declarations schedule wordings proof loss damage storm water flood
fire theft accident repair estimate report review settlement assessment inspection decision appeal reference number
case ticket order delivery quote terms conditions privacy act law data protection manager supervisor agent adjuster
advisor adviser broker lawyer solicitor attorney officer director president representative rep specialist handler
assistant operator engineer technician important action required needed final reminder warning error issue problem
question query feedback information info note details summary update account
mr mrs ms miss mx dr sir madam lord lady dame prof professor rev reverend father mother sister brother uncle aunt
grandma grandpa grandmother grandfather mom mum dad son daughter wife husband partner neighbour neighbor friend
captain judge queen princess duke
a an the this that these those all any some no not yes ok okay oh ah very really so still just also again about
and or but if as at by for from in into of on to with after before then now here there who what when where why how
which whose can could would should shall might must do does did done is are was were be been am has have had get
got i it we you your our my his her their its he she they me us him them
""".split())

_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "Æ": "Ae", "đ": "d",
                             "þ": "th", "’": "", "'": ""})


def census_key(word: str) -> str:
    """A word spelt as in the census files: ASCII capitals only ("O'Neill" → "ONEILL", "Sørensen" → "SORENSEN")."""
    folded = unicodedata.normalize("NFKD", word.translate(_ASCII_FOLD)).encode("ascii", "ignore").decode()
    return folded.upper()


@lru_cache(maxsize=1)
def census_names() -> dict[str, frozenset[str]]:
    """{"given": …, "surname": …}: census names (as `census_key` spells them) held by CENSUS_MIN_PERCENT % of people
    or more, less NAME_WORDS. Each file line is `NAME  percent  cumulative-percent  rank`, most frequent first."""
    everyday = {w.upper() for w in NAME_WORDS}
    out = {}
    for kind, filenames in CENSUS_FILES.items():
        kept = set()
        for filename in filenames:
            for line in files(CENSUS_PACKAGE).joinpath(filename).read_text(encoding="ascii").splitlines():
                name, percent, _, _ = line.split()
                if float(percent) >= CENSUS_MIN_PERCENT:
                    kept.add(name)
        out[kind] = frozenset(kept - everyday)
    return out


@lru_cache(maxsize=1)
def world_names() -> dict[str, frozenset[str]]:
    """{"given": …, "surname": …} from every Faker locale's person provider, Latin-script names only, spelt as
    `census_key` spells them, less NAME_WORDS and NOT_NAME_PARTS (a name list holds "Hope", "Park" and "Best")."""
    import importlib

    from faker.config import AVAILABLE_LOCALES

    found: dict[str, set[str]] = {"given": set(), "surname": set()}
    for locale in AVAILABLE_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except (ImportError, AttributeError):
            continue
        for attr, value in vars(provider).items():
            kind = "given" if attr.startswith("first_names") else "surname" if attr.startswith("last_names") else None
            if kind and isinstance(value, (tuple, list, dict, set, frozenset)):
                found[kind].update(v for v in value if isinstance(v, str) and v.isalpha()
                                   and all(ord(c) < 0x250 for c in v))
    stop = {w.upper() for w in NAME_WORDS | NOT_NAME_PARTS}
    return {k: frozenset({census_key(v) for v in vs if len(v) >= 2} - stop) for k, vs in found.items()}
