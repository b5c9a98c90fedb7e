import math

import pytest

from kit.io import write_json
from kit.models.chat import GEMMA
from kit.privacy import canaries, probes


@pytest.fixture()
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_exposure_is_log2_of_candidates_plus_one_minus_log2_of_rank(tiny, tokenizer):
    c = canaries.make(seed=5)[1]
    r = probes.exposure(tiny, tokenizer, c, n_candidates=30, seed=0)
    assert 1 <= r["rank"] <= 31 and r["n_candidates"] == 30
    assert r["exposure"] == pytest.approx(math.log2(31) - math.log2(r["rank"]))
    assert c.value not in str(r)  # the secret itself is not written to the report


def test_candidates_are_scored_like_whole_texts_up_to_their_shared_opening(tiny, tokenizer):
    import torch

    texts = ["My policy number is POL-12345678", "My policy number is POL-99", "My policy number is unknown to me"]
    fast = probes.candidate_logprobs(tiny, tokenizer, texts, batch_size=2)
    whole = []
    for t in texts:  # reference: every token after BOS, one text at a time
        ids = tokenizer(t, return_tensors="pt", add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(tiny(input_ids=ids).logits[0, :-1].float(), -1)
        whole.append(float(logp.gather(-1, ids[0, 1:, None]).sum()))
    # the shared opening adds the same amount to each; differences (and so ranks) are those of the whole texts
    assert [f - fast[0] for f in fast] == pytest.approx([w - whole[0] for w in whole], abs=1e-3)
    assert fast[0] > whole[0]  # and it is not scored at all


def test_control_training_on_a_canary_makes_the_probe_fire_for_it_and_not_for_an_unseen_one(tiny, tokenizer):
    planted, unseen = canaries.make(seed=11, per_kind=2, kinds=("card",))
    r = probes.memorization_control(tiny, tokenizer, planted, unseen, steps=40, learning_rate=1e-2, n_candidates=50)
    assert r["planted_rank_after"] == 1 and r["planted_after"] == pytest.approx(math.log2(51))
    assert r["planted_before"] < r["planted_after"] - 2  # the random model had not memorised it
    assert r["unseen_after"] < r["planted_after"] - 1 and r["detected"]
    assert r["last_loss"] < r["first_loss"]


def test_canaries_come_from_the_run_when_planted_and_from_the_seed_otherwise(tmp_path):
    found, source = probes.load_canaries(tmp_path, seed=3)
    assert found == canaries.make(3) and "none planted" in source
    planted = canaries.make(9, per_kind=2)
    write_json(tmp_path / "data" / "canaries.json", [c.to_dict() for c in planted])
    assert probes.load_canaries(tmp_path, seed=3) == (planted, "data/canaries.json")
    write_json(tmp_path / "data" / "canaries.json", {"canaries": [c.to_dict() for c in planted[:1]]})
    assert probes.load_canaries(tmp_path, seed=3)[0] == planted[:1]
    write_json(tmp_path / "data" / "canaries.json", [{"kind": "card"}])
    with pytest.raises(probes.ProbeError, match="re-run 02_prepare"):
        probes.load_canaries(tmp_path, seed=3)


def test_pii_echo_flags_personal_data_and_canaries_and_keeps_only_redacted_text():
    secret = canaries.make(2, kinds=("card",))[0]
    answers = iter([f"Sure: {secret.value}", "billing_dispute", "write to jo.bloggs@example.com", "no"]
                   + ["+44 20 7946 0958 after 5pm"] + ["POL-12345678"] + [""] * 4)

    def generate(prompts, stop, max_new_tokens):  # stands in for a model: fixed answers, one per probe
        return [next(answers) for _ in prompts]

    rows = probes.pii_echo(generate, GEMMA, secrets=[secret.value])
    assert len(rows) == len(probes.CHAT_PROBES) + len(probes.CONTINUATION_PROBES)
    assert rows[0]["canary_echoed"] and rows[0]["findings"] == {"CARD_NUMBER": 1}
    assert secret.value not in rows[0]["output_redacted"] and "<CARD_NUMBER_1>" in rows[0]["output_redacted"]
    assert rows[1]["findings"] == {} and not rows[1]["canary_echoed"]
    assert rows[2]["findings"] == {"EMAIL": 1} and rows[4]["findings"] == {"PHONE": 1}
    assert rows[5]["findings"] == {"POLICY_NUMBER": 1}


@pytest.mark.parametrize("rank, tuned, base, flagged", [(1, 6.66, 1.2, True), (1, 6.66, 6.66, False),
                                                        (1, 6.66, 4.9, False), (2, 5.66, 0.5, False)])
def test_a_canary_counts_as_memorised_only_when_training_lifted_it_to_first_place(rank, tuned, base, flagged):
    assert probes.memorized(rank, tuned, base) is flagged
