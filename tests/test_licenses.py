import pytest

from kit import licenses
from kit.models import ResolvedModel

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


def test_gate_refuses_intended_use_the_license_forbids(tmp_path, monkeypatch):
    reg = licenses.registry()
    reg["gemma"]["answers"]["hosted_service"] = "no"
    monkeypatch.setattr(licenses, "registry", lambda: reg)
    _note(tmp_path, approved=True, approver="Dana", intended_uses=("hosted_service",))
    with pytest.raises(licenses.LicenseError, match="does not permit hosted_service"):
        licenses.check_note(tmp_path, "abc123")


def test_gate_passes_approved_note_and_markdown_is_written(tmp_path):
    note = _note(tmp_path, approved=True, approver="Dana")
    assert licenses.check_note(tmp_path, "abc123")["approver"] == "Dana"
    assert "Gemma Terms of Use" in (tmp_path / "license_note.md").read_text()
    assert note["weights_sha256"] == "abc123"


def test_approval_without_approver_is_rejected(tmp_path):
    with pytest.raises(licenses.LicenseError, match="needs an approver"):
        licenses.LicenseConfig(run_dir=str(tmp_path), model="m", approved=True)


def test_every_registry_condition_has_a_source():
    for key, entry in licenses.registry().items():
        assert entry["url"].startswith("https://")
        assert set(entry["answers"]) == set(licenses.QUESTIONS), key
        assert all(c["source"].startswith("https://") for c in entry["conditions"])
