import numpy as np
import pytest

from kit.models.chat import GEMMA
from kit.tasks import baselines
from kit.tasks.base import Task

LABELS = ("claim_status", "document_request", "billing_dispute", "agent_escalation")
TASK = Task(LABELS, "Route this email to one lane.")


def _rows(n_per_lane=5):
    words = {"claim_status": "when will my claim be decided", "document_request": "please send the certificate form",
             "billing_dispute": "you charged me twice refund", "agent_escalation": "your adjuster was rude manager"}
    return [{"id": f"{lab}-{i}", "text": f"{words[lab]} number {i}", "label": lab}
            for lab in LABELS for i in range(n_per_lane)]


def test_majority_predicts_the_most_common_training_lane_with_its_frequency():
    train = _rows(2) + [{"text": "x", "label": "billing_dispute"}] * 2
    probs = baselines.majority(train, 3, LABELS)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(1), 1)
    assert LABELS[int(probs[0].argmax())] == "billing_dispute" and probs[0, 2] == pytest.approx(4 / 10)


def test_tfidf_logreg_learns_words_that_separate_the_lanes():
    train, test = _rows(6), [{"text": "my adjuster was rude", "label": "agent_escalation"},
                             {"text": "charged twice, refund please", "label": "billing_dispute"}]
    probs = baselines.tfidf_logreg(train, test, LABELS)
    assert [LABELS[k] for k in probs.argmax(1)] == ["agent_escalation", "billing_dispute"]
    assert np.allclose(probs.sum(1), 1)


def test_tfidf_logreg_gives_zero_to_a_lane_missing_from_training():
    train = [r for r in _rows(4) if r["label"] != "document_request"]
    probs = baselines.tfidf_logreg(train, _rows(1), LABELS)
    assert np.all(probs[:, 1] == 0)


def test_few_shot_examples_cover_every_lane_before_repeating_one():
    picked = baselines.pick_examples(_rows(5), LABELS, 6, seed=1)
    lanes = [r["label"] for r in picked]
    assert len(picked) == 6 and set(lanes) == set(LABELS)
    assert picked == baselines.pick_examples(_rows(5), LABELS, 6, seed=1)


def test_few_shot_prompt_is_the_conversation_the_chat_template_renders(tokenizer):
    shots = baselines.pick_examples(_rows(2), LABELS, 2, seed=0)
    text = "Where is my claim?"
    prompt = baselines.few_shot_prompt(TASK, GEMMA, tokenizer, shots, text, example_tokens=48, max_ticket_tokens=184)
    messages = [{"role": "system", "content": TASK.system}]
    for ex in shots:
        messages += [{"role": "user", "content": ex["text"]}, {"role": "assistant", "content": ex["label"]}]
    messages.append({"role": "user", "content": text})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer.bos_token + prompt == rendered


def test_few_shot_examples_and_ticket_are_cut_to_their_budgets(tokenizer):
    long = [{"text": "word " * 300, "label": "claim_status"}]
    prompt = baselines.few_shot_prompt(TASK, GEMMA, tokenizer, long, "ticket " * 400, example_tokens=20,
                                       max_ticket_tokens=100)
    n = len(tokenizer(prompt)["input_ids"])
    assert n < 20 + 100 + 40, n
