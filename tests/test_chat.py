import pytest

from kit.models.chat import GEMMA, ChatFormat, ChatFormatError, detect, from_tokenizer
from kit.models.families import FAMILIES, FamilyError


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
    assert "{{ .Prompt }}" in t and "{{ if .System }}" in t and "{{ .System }}\n\n{{ .Prompt }}" in t
    assert t.endswith("{{ .Response }}<end_of_turn>")


def test_rendered_text_has_no_bos_so_the_tokenizer_adds_exactly_one(tokenizer):
    ids = tokenizer(GEMMA.prompt("hello", "sys"), add_special_tokens=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id


def test_unknown_template_names_the_known_families_and_where_to_add_one():
    with pytest.raises(FamilyError, match="No family in kit/models/families.py matches.*gemma, llama3.*Another model family"):
        detect("{% for m in messages %}<<{{ m.content }}>>{% endfor %}", "falcon")


def test_a_model_without_a_template_is_refused_with_the_explicit_choice(tokenizer):
    with pytest.raises(ChatFormatError, match="ships no chat template.*kit chat-template <model> --family chatml"):
        from_tokenizer(tokenizer, "gemma3_text", template="")


def test_a_template_whose_prompt_changes_once_an_answer_follows_is_refused():
    """A generation prompt that is not the start of the rendered conversation would make kit mask the wrong tokens."""
    drifting = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n<think>{% endif %}")
    with pytest.raises(ChatFormatError, match="renders the prompt differently when an answer follows"):
        ChatFormat(FAMILIES["chatml"], drifting)


def test_an_answer_without_the_family_end_of_turn_is_refused():
    no_stop = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    with pytest.raises(ChatFormatError, match="holds none of the family's stop strings"):
        ChatFormat(FAMILIES["chatml"], "<|im_start|>" + no_stop)
