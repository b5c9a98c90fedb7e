"""The run directory object: every path by name, and the gates a stage's inputs pass."""

import json
import re
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.rundir import WRITERS, RunDir

KIT = Path(__file__).resolve().parents[1] / "kit"


class StageError(KitError):
    pass


def _paths(rd):
    return {name: getattr(rd, name) for name in dir(RunDir) if isinstance(getattr(RunDir, name), property)}


def test_every_named_path_lies_in_the_run_directory_and_says_which_notebook_writes_it(tmp_path):
    rd = RunDir(tmp_path / "run")
    paths = _paths(rd)
    assert len(paths) > 30
    for name, path in paths.items():
        assert path.is_relative_to(rd.root), name
        assert "written by" in getattr(RunDir, name).__doc__ or name in ("report_html",), name
    assert rd.writer(rd.holdout_jsonl) == "02_prepare" and rd.writer(rd.parity_json) == "05_export"
    assert rd.adapter_dir("acme") == rd.root / "adapters" / "acme"
    assert rd.gguf("q8_0") == rd.root / "export" / "model-q8_0.gguf"
    assert set(WRITERS.values()) >= {f"0{i}_{s}" for i, s in enumerate(
        ["scope", "license", "prepare", "train", "evaluate", "export", "monitor"])}


def test_need_names_the_missing_file_and_the_notebook_to_run(tmp_path):
    rd = RunDir(tmp_path)
    with pytest.raises(StageError, match=r"no task at .*task\.json; run 02_prepare for this run first"):
        rd.need(rd.task_json, StageError, "task")
    rd.task_json.parent.mkdir()
    rd.task_json.write_text("{}")
    assert rd.need(rd.task_json) == rd.task_json


def _adapter(rd, sha="abc", task="classify", meta=True):
    d = rd.adapter_dir("default")
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    if meta:
        (d / "kit_adapter.json").write_text(json.dumps({"base_model_sha256": sha, "task": task, "prompt_tokens": 99}))
    rd.data_dir.mkdir(exist_ok=True)
    rd.task_json.write_text(json.dumps({"kind": "classify", "labels": ["a", "b"], "system": "s"}))


@pytest.mark.parametrize("setup, message", [
    (None, r"no adapter at .*default; run 03_train for adapter_name='default' first"),
    ({"meta": False}, r"kit_adapter\.json is missing.*re-run 03_train"),
    ({"sha": "other"}, r"trained on a different base model than 'gemma'"),
    ({"task": "reply"}, r"trained for task 'reply', but data/task\.json now says 'classify'"),
])
def test_the_adapter_gate_refuses_a_missing_foreign_or_stale_adapter(tmp_path, setup, message):
    rd = RunDir(tmp_path)
    if setup is not None:
        _adapter(rd, **setup)
    with pytest.raises(StageError, match=message):
        rd.check_adapter("default", "abc", StageError, "gemma")


def test_the_adapter_gate_returns_the_adapters_metadata(tmp_path):
    rd = RunDir(tmp_path)
    _adapter(rd)
    assert rd.check_adapter("default", "abc")["prompt_tokens"] == 99


def test_no_kit_module_spells_a_run_directory_path_by_hand():
    """Paths inside the run directory are joined in kit/rundir.py only."""
    joined = re.compile(r'/ "(data|eval|export|adapters|train|monitor|scope\.json|license_note\.json|manifest\.json'
                        r'|(train|holdout|quarantine|duplicates|predictions)\.jsonl'
                        r'|(task|audit|provenance|canaries|metrics|parity|probes|review_status)\.json)"')
    elsewhere = {"ner.py": "the recogniser's own provenance.json, in kit/privacy/ner_model",
                 "evaluate.py": "previous_run_dir may name a folder holding metrics.json"}
    found = [f"{p.relative_to(KIT)}:{i}" for p in KIT.rglob("*.py") if p.name != "rundir.py"
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if joined.search(line) and p.name not in elsewhere]
    assert found == [], found
    assert joined.search('x = run_dir / "data" / "train.jsonl"')  # what the check looks for
