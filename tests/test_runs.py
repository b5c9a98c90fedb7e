import dataclasses
from pathlib import Path

import pytest

from conftest import REPO
from kit import data, evaluate, export, licenses, monitor, runs, scope, train

CONFIGS = {"00_scope": scope.ScopeConfig, "01_license": licenses.LicenseConfig, "02_prepare": data.PrepareConfig,
           "03_train": train.TrainConfig, "04_evaluate": evaluate.EvalConfig, "05_export": export.ExportConfig,
           "06_monitor": monitor.StageConfig}


@pytest.mark.parametrize("stage", runs.STAGES)
def test_notebook_parameters_are_config_fields_and_documented(stage):
    params = runs.notebook_parameters(stage)
    fields = {f.name for f in dataclasses.fields(CONFIGS[stage])}
    assert set(params) <= fields, f"{stage}: parameters not in {CONFIGS[stage].__name__}: {set(params) - fields}"
    assert "run_dir" in params
    for name, p in params.items():
        assert p["help"].strip(), f"{stage}: parameter '{name}' has no help comment"


def test_unknown_parameter_is_an_error_listing_valid_names(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run_name: x\nparameters:\n  learning_rte: 0.1\n")
    with pytest.raises(runs.RunError, match=r"unknown parameter\(s\) \['learning_rte'\].*\(did you mean 'learning_rate'\?\)"
                                           r".*Valid names: .*learning_rate"):
        runs.plan(cfg)


def test_a_file_parameter_in_a_config_is_relative_to_the_repository(tmp_path):
    """license_file is a path like input_path: read from the repository root, not from notebooks/ where papermill runs."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run_name: x\nparameters:\n  license_file: docs/LICENSE-of-my-model.txt\n  input_path: data_samples/tickets.csv\n")
    p = runs.plan(cfg)
    assert p.parameters["license_file"] == str(REPO / "docs" / "LICENSE-of-my-model.txt")
    assert p.parameters["input_path"] == str(REPO / "data_samples" / "tickets.csv")


def test_set_overrides_config_and_parses_values():
    p = runs.plan(REPO / "papermill_runs" / "smoke.yaml", runs.parse_set(["max_steps=3", "gguf_types=[f16]"]))
    assert p.parameters["max_steps"] == 3 and p.parameters["gguf_types"] == ["f16"]
    assert p.parameters["input_path"] == str(REPO / "data_samples" / "tickets.csv")
    assert p.run_dir.name == "smoke"


def test_bad_set_syntax_says_the_form():
    with pytest.raises(runs.RunError, match="key=value"):
        runs.parse_set(["max_steps"])


@pytest.mark.parametrize("start, first", [("03", "03_train"), ("05_export", "05_export"), ("evaluate", "04_evaluate")])
def test_from_selects_the_remaining_stages(start, first):
    p = runs.plan(REPO / "papermill_runs" / "smoke.yaml", start=start)
    assert p.stages[0] == first and p.stages[-1] == "06_monitor"


def test_from_unknown_stage_lists_stages():
    with pytest.raises(runs.RunError, match="matches no stage.*00_scope"):
        runs.plan(REPO / "papermill_runs" / "smoke.yaml", start="07")


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "papermill_runs").glob("*.yaml")))
def test_every_committed_run_config_names_only_real_parameters(config):
    p = runs.plan(REPO / "papermill_runs" / config)
    assert p.run_name == config.removesuffix(".yaml") and p.stages == runs.STAGES
    assert (Path(p.parameters["input_path"]).exists() or "../shared/devdata" in
            (REPO / "papermill_runs" / config).read_text()), "input_path does not exist"
