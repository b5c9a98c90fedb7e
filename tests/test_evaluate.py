import numpy as np
import pytest

from kit import evaluate

LABELS = ["a", "b", "c"]


def test_metrics_match_hand_computed_values():
    y = ["a", "a", "b", "b", "c", "c"]
    p = ["a", "b", "b", "b", "c", "a"]
    m = evaluate.metrics(y, p, LABELS, bootstrap_samples=200)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=1/2 R=1/2; b: P=2/3 R=1; c: P=1 R=1/2
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    f1 = [0.5, 0.8, 2 / 3]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    lo, hi = m["accuracy_ci95"]
    assert lo <= m["accuracy"] <= hi


def test_bootstrap_interval_covers_the_true_accuracy_most_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(60):
        correct = rng.random(200) < 0.8
        y = ["a"] * 200
        p = ["a" if c else "b" for c in correct]
        lo, hi = evaluate.metrics(y, p, ["a", "b"], bootstrap_samples=300, seed=trial)["accuracy_ci95"]
        covered += lo <= 0.8 <= hi
    assert covered / 60 >= 0.85


def test_label_scores_on_tiny_model_are_probabilities(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from kit.chat import GEMMA

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    prompts = [GEMMA.prompt(f"ticket {i}", "route it") for i in range(5)]
    probs = evaluate.score_labels(model, tokenizer, prompts, ["claim_status", "billing_dispute"], batch_size=2,
                                  progress=False)
    assert probs.shape == (5, 2)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_labels_sharing_a_first_token_are_scored_as_whole_sequences(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    labels = ["claim_status", "claim_denied"]
    assert evaluate.label_first_tokens(tokenizer, labels) is None
    probs = evaluate.score_labels(model, tokenizer, ["x", "y"], labels, progress=False)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
