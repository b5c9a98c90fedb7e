from stdnum import luhn

from tools import synth


def test_generator_is_deterministic_and_balanced():
    a, _ = synth.generate(200, seed=3)
    b, _ = synth.generate(200, seed=3)
    assert a == b
    labels = [r["label"] for r in a]
    assert {labels.count(lab) for lab in synth.LABELS} == {50}


def test_card_numbers_pass_luhn():
    import random

    rng = random.Random(0)
    for _ in range(50):
        assert luhn.is_valid(synth._card(rng).replace(" ", ""))


def test_skeletons_are_varied_and_say_little_about_the_label():
    rows, skels = synth.generate(600, seed=7)
    stats = synth.skeleton_stats(skels, [r["label"] for r in rows])
    assert stats["distinct_skeletons"] >= 150
    assert stats["most_common_skeleton_share"] < 0.15
    assert stats["skeleton_label_nmi"] < 0.3


def test_committed_samples_match_the_generator(tmp_path):
    from conftest import REPO

    synth.write_samples(tmp_path, 600, 7)
    assert (tmp_path / "tickets.jsonl").read_text() == (REPO / "data_samples" / "tickets.jsonl").read_text()


def test_committed_task_samples_are_what_the_generator_writes(tmp_path):
    import json

    from conftest import REPO

    synth.write_task_samples(tmp_path, n_rows=400, seed=11)
    for name in ("field_updates.jsonl", "replies.jsonl"):
        assert (tmp_path / name).read_text() == (REPO / "data_samples" / name).read_text(), name
    rows = [json.loads(x) for x in (tmp_path / "field_updates.jsonl").read_text().splitlines()]
    # a field is in the update only when the email states it
    for r in rows:
        for key in ("claim_number", "amount"):
            if key in r["update"]:
                assert r["update"][key] in r["subject"] + "\n" + r["body"]
