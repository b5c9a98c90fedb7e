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


def test_verify_accepts_untouched_files_and_refuses_tampered_ones(tmp_path):
    import subprocess
    import sys

    (tmp_path / "model-q8_0.gguf").write_bytes(b"GGUF" + bytes(100))
    (tmp_path / "Modelfile").write_text(_modelfile())
    export.write_checksums(tmp_path)
    assert set(export.verify(tmp_path)) == {"model-q8_0.gguf", "Modelfile"}
    ok = subprocess.run([sys.executable, "-m", "kit", "verify", str(tmp_path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "verified 2 files" in ok.stdout

    (tmp_path / "model-q8_0.gguf").write_bytes(b"GGUF" + bytes(99) + b"\x01")
    (tmp_path / "Modelfile").unlink()
    with pytest.raises(export.ExportError, match="do not ship it") as err:
        export.verify(tmp_path)
    assert "model-q8_0.gguf: sha256 differs" in str(err.value) and "Modelfile: missing" in str(err.value)
    bad = subprocess.run([sys.executable, "-m", "kit", "verify", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "do not ship it" in bad.stderr
