import re

from stdnum import luhn

from kit.privacy import canaries
from kit.privacy.redact import Redactor


def test_canaries_are_well_formed_reproducible_and_caught_by_the_redactor():
    planted = canaries.make(seed=3, per_kind=2)
    assert planted == canaries.make(seed=3, per_kind=2)
    assert sorted({c.kind for c in planted}) == sorted(canaries.KINDS) and len(planted) == 6
    for c in planted:
        assert c.sentence.startswith(c.prefix) and c.value in c.sentence
        if c.kind == "card":
            assert luhn.is_valid(re.sub(r"\D", "", c.value))
    redactor = Redactor.default()
    for c in planted:
        if c.kind in ("card", "policy"):
            assert c.value not in redactor.redact(c.sentence).text


def test_candidates_share_the_format_and_exclude_the_canary():
    c = canaries.make(seed=1)[0]
    cands = canaries.candidates(c, 50, seed=1)
    assert len(cands) == 50 and c.value not in cands
    assert all(len(x) == len(c.value) for x in cands)
    assert all(luhn.is_valid(x.replace(" ", "")) for x in cands)
