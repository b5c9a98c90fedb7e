import dataclasses
from pathlib import Path

import pytest
from conftest import REPO

from kit import runs, settings
from kit.stages import evaluate, export, licenses, monitor, prepare, scope, train

CONFIGS = {"00_scope": scope.ScopeConfig, "01_license": licenses.LicenseConfig, "02_prepare": prepare.PrepareConfig,
           "03_train": train.TrainConfig, "04_evaluate": evaluate.EvalConfig, "05_export": export.ExportConfig,
           "06_monitor": monitor.StageConfig}


@pytest.mark.parametrize("stage", runs.STAGES)
def test_every_config_field_is_a_notebook_parameter_or_an_advanced_setting(stage):
    """One configuration surface: the notebook's parameters and the config's advanced fields together are exactly the
    config's fields, so whatever a YAML or --set can name, the stage's config takes, and nothing else."""
    params = runs.notebook_parameters(stage)
    config = runs.stage_config(stage)
    assert config is CONFIGS[stage]
    fields = {f.name for f in dataclasses.fields(config)}
    advanced = set(settings.advanced_fields(config))
    assert set(params) - {"advanced"} == fields - advanced, f"{stage}: notebook and {config.__name__} differ"
    assert ("advanced" in params) == bool(advanced), f"{stage}: an `advanced` parameter exactly when there are some"
    assert "run_dir" in params
    for name, p in params.items():
        assert p["help"].strip(), f"{stage}: parameter '{name}' has no help comment"


def test_advanced_settings_reach_their_stage_flat_or_nested(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run_name: x\nparameters:\n  threads: 1\n  seed: 3\n  advanced:\n    bootstrap_samples: 200\n"
                   "    num_ctx: 4096\n")
    p = runs.plan(cfg)
    assert runs.stage_parameters(p, "03_train")["advanced"] == {"threads": 1}
    assert runs.stage_parameters(p, "03_train")["seed"] == 3  # a notebook parameter of 03 ...
    assert runs.stage_parameters(p, "04_evaluate")["advanced"] == {"bootstrap_samples": 200, "seed": 3}  # ... advanced in 04
    assert runs.stage_parameters(p, "05_export")["advanced"] == {"num_ctx": 4096}
    assert "advanced" not in runs.stage_parameters(p, "02_prepare")
    cfg.write_text("run_name: x\nparameters:\n  advanced: [threads]\n")
    with pytest.raises(settings.SettingsError, match="mapping of setting names"):
        runs.plan(cfg)
    cfg.write_text("run_name: x\nparameters:\n  advanced:\n    thread: 1\n")
    with pytest.raises(runs.RunError, match="'thread' \\(did you mean 'threads'\\?\\)"):
        runs.plan(cfg)


def test_an_advanced_setting_a_stage_does_not_have_is_refused_by_name():
    assert settings.checked(train.TrainConfig, {"warmup_ratio": 0.1}) == {"warmup_ratio": 0.1}
    assert settings.checked(train.TrainConfig, None) == {}
    with pytest.raises(settings.SettingsError, match=r"'warmup' \(did you mean 'warmup_ratio'\?\).*TrainConfig.*"
                                                     r"threads"):
        settings.checked(train.TrainConfig, {"warmup": 0.1})
    with pytest.raises(settings.SettingsError, match="learning_rate"):  # a notebook parameter, not an advanced one
        settings.checked(train.TrainConfig, {"learning_rate": 0.1})


@pytest.mark.notebooks
def test_an_advanced_setting_in_a_run_config_changes_what_the_stage_computes(tmp_path):
    """End to end through papermill: the scope notebook's cost figures follow an advanced input from the YAML."""
    from kit.io import read_json

    cfg = tmp_path / "c.yaml"
    cfg.write_text("run_name: adv\nparameters:\n  labeling_hours: 99\n")
    p = runs.plan(cfg, start=None, runs_dir=tmp_path)
    runs.execute(runs.RunPlan(p.run_name, p.run_dir, p.parameters, ("00_scope",)), log=lambda *a: None)
    assert read_json(p.run_dir / "scope.json")["parameters"]["labeling_hours"] == 99


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
