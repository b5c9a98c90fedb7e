import pytest

from kit.models.chat import GEMMA
from kit.models.modelfile import parse_modelfile
from kit.stages import export


def _modelfile(system="Route it."):
    return export.modelfile("model-q8_0.gguf", GEMMA, system, "Gemma Terms of Use — https://ai.google.dev/gemma/terms", 2048)


def test_modelfile_parses_back_to_the_chat_format():
    mf = parse_modelfile(_modelfile())
    assert mf["FROM"] == "./model-q8_0.gguf"
    assert mf["TEMPLATE"] == GEMMA.go_template()
    assert mf["PARAMETER"]["stop"] == GEMMA.stop
    assert mf["PARAMETER"]["temperature"] == ["0"] and mf["PARAMETER"]["num_ctx"] == ["2048"]
    assert mf["SYSTEM"] == "Route it."
    assert "Gemma Terms of Use" in mf["LICENSE"]


def test_modelfile_without_system_has_no_system_line():
    assert "SYSTEM" not in parse_modelfile(_modelfile(system=""))


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


def test_adapter_only_modelfile_names_base_and_adapter_and_says_where_ollama_accepts_it():
    text = export.modelfile("base-q8_0.gguf", GEMMA, "Route it.", "license", 2048, adapter_name="adapter-a-f16.gguf")
    mf = parse_modelfile(text)
    assert mf["FROM"] == "./base-q8_0.gguf" and mf["ADAPTER"] == "./adapter-a-f16.gguf"
    assert mf["TEMPLATE"] == GEMMA.go_template() and mf["PARAMETER"]["stop"] == GEMMA.stop
    assert "0.34.1" in text and text.startswith("# Adapter-only variant")


def test_license_text_of_the_embedded_model_is_the_full_gemma_terms(embedded):
    text = export.license_text(embedded, {"license": "Gemma Terms of Use", "url": "https://ai.google.dev/gemma/terms"})
    assert text.startswith("Gemma Terms of Use") and len(text) > 5000
    assert "Section 1: DEFINITIONS" in text and "<div" not in text


def test_missing_license_text_is_an_error_that_says_how_to_fix(tmp_path):
    from kit.models import ResolvedModel

    resolved = ResolvedModel(spec=str(tmp_path), path=str(tmp_path), sha256="0" * 64, model_type="gemma3_text",
                             license_id=None)
    with pytest.raises(export.ExportError, match="set license_file"):
        export.license_text(resolved, {"license": "Some License", "url": "https://example.org"})
    (tmp_path / "terms.txt").write_text("Custom terms\n")
    assert export.license_text(resolved, {}, str(tmp_path / "terms.txt")) == "Custom terms"


def test_release_notes_compare_with_a_previous_run(tmp_path):
    import json

    def metrics(acc):
        return {"models": {"tuned": {"n": 100, "accuracy": acc, "accuracy_ci95": [acc - 0.05, acc + 0.03],
                                     "macro_f1": acc}}}

    prev = tmp_path / "prev"
    (prev / "eval").mkdir(parents=True)
    (prev / "eval" / "metrics.json").write_text(json.dumps(metrics(0.90)))
    parity = {"types": {"q8_0": {"label_agreement": 1.0}}}
    notes = export.release_notes(tmp_path / "now", str(prev), metrics(0.95), parity)
    assert "| tuned | 90.0% (85.0%–93.0%) | 95.0% (90.0%–98.0%) | +5.0 points |" in notes
    same = export.release_notes(tmp_path / "now", str(prev / "eval" / "metrics.json"), metrics(0.95), parity)
    assert same == notes  # a metrics.json path (accepted by 04) names the same run
    assert "First release" in export.release_notes(tmp_path / "now", "", metrics(0.95), parity)
    with pytest.raises(export.ExportError, match="no eval/metrics.json"):
        export.release_notes(tmp_path / "now", str(tmp_path / "missing"), metrics(0.95), parity)


def test_a_flip_between_two_labels_the_adapter_found_almost_equally_likely_is_a_near_tie_and_nothing_else_is():
    row = {"prediction": "billing_dispute", "probs": {"billing_dispute": 0.56, "claim_status": 0.41,
                                                      "agent_escalation": 0.03}}
    assert export.near_tie(row, "claim_status")  # 0.15 apart: rounding decides
    assert not export.near_tie(row, "agent_escalation")  # 0.53 apart: a real disagreement
    decisive = {"prediction": "claim_status", "probs": {"claim_status": 0.97, "billing_dispute": 0.03}}
    assert not export.near_tie(decisive, "billing_dispute")
    assert not export.near_tie({"prediction": "claim_status", "probs": {}}, "billing_dispute")
