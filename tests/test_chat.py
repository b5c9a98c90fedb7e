import pytest

from kit.chat import GEMMA, ChatFormatError, for_model_type


def test_gemma_prompt_renders_turns_with_system_in_first_user_turn():
    assert GEMMA.prompt("Hi", system="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n")
    assert GEMMA.prompt("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_completion_ends_with_turn_marker():
    assert GEMMA.completion("billing_dispute") == "billing_dispute<end_of_turn>"


@pytest.mark.parametrize("system", ["", "Route the email."])
def test_tokenizer_chat_template_matches_python_rendering(tokenizer, system):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Where is my claim?"}]
    rendered = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == tokenizer.bos_token + GEMMA.prompt("Where is my claim?", system)


def test_tokenizer_chat_template_renders_assistant_turn_like_training_text(tokenizer):
    msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "claim_status"}]
    rendered = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert rendered == tokenizer.bos_token + GEMMA.prompt("x") + GEMMA.completion("claim_status") + "\n"


def test_go_template_has_prompt_system_and_response_slots():
    t = GEMMA.go_template()
    assert "{{ .Prompt }}" in t and "{{ if .System }}{{ .System }}" in t and t.endswith("{{ .Response }}<end_of_turn>")


def test_rendered_text_has_no_bos_so_the_tokenizer_adds_exactly_one(tokenizer):
    ids = tokenizer(GEMMA.prompt("hello", "sys"), add_special_tokens=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id


def test_unknown_model_family_names_known_ones():
    with pytest.raises(ChatFormatError, match="No chat format is defined for model type 'llama'.*gemma"):
        for_model_type("llama")
