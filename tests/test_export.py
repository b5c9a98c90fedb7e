import pytest

from kit import export
from kit.chat import GEMMA


def _modelfile(system="Route it."):
    return export.modelfile("model-q8_0.gguf", GEMMA, system, "Gemma Terms of Use — https://ai.google.dev/gemma/terms", 2048)


def test_modelfile_parses_back_to_the_chat_format():
    mf = export.parse_modelfile(_modelfile())
    assert mf["FROM"] == "./model-q8_0.gguf"
    assert mf["TEMPLATE"] == GEMMA.go_template()
    assert mf["PARAMETER"]["stop"] == GEMMA.stop
    assert mf["PARAMETER"]["temperature"] == ["0"] and mf["PARAMETER"]["num_ctx"] == ["2048"]
    assert mf["SYSTEM"] == "Route it."
    assert "Gemma Terms of Use" in mf["LICENSE"]


def test_modelfile_without_system_has_no_system_line():
    assert "SYSTEM" not in export.parse_modelfile(_modelfile(system=""))


def test_go_template_filled_like_ollama_equals_the_training_prompt():
    # Ollama fills .System and .Prompt and leaves .Response empty for generation; the text before the response
    # must be the prompt the adapter was trained on.
    t = GEMMA.go_template()
    filled = (t.replace("{{ if .System }}{{ .System }}\n\n{{ end }}", "Route it.\n\n")
              .replace("{{ .Prompt }}", "Where is my claim?").replace("{{ .Response }}<end_of_turn>", ""))
    assert filled == GEMMA.prompt("Where is my claim?", "Route it.")


@pytest.mark.parametrize("kw, msg", [({"gguf_types": ("f16", "q3")}, "unknown type"),
                                     ({"gguf_types": ("f16",), "modelfile_gguf": "q8_0"}, "not among gguf_types")])
def test_bad_export_settings_are_rejected(kw, msg):
    with pytest.raises(export.ExportError, match=msg):
        export.ExportConfig(run_dir="x", model="m", **kw)
