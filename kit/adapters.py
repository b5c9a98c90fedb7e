"""The adapter registry: which adapter version is live for each tenant, since when, from which run, and why.

Versions are kept like schema migrations: `<registry>/<tenant>/v1`, `v2`, … each a copy of a trained adapter (PEFT
files + `kit_adapter.json`) with `release.json` (the run it came from, its metrics, the exported GGUF it was verified
in and that file's sha256). `<registry>/<tenant>/registry.json` names the live version and keeps every change
(promote, roll back, erase) with its time and reason; nothing changes the live version silently.
`<registry>/<tenant>/Modelfile` is a copy of the live version's Modelfile (FROM: that version's GGUF), so
`ollama create <name> -f <registry>/<tenant>/Modelfile` always serves what the registry says is live.

Tenants are separate directories: one tenant's rollback or erasure never touches another's.
The registry's default place is `registry/` beside the run directories (`papermill_runs/registry/`).
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from kit.errors import KitError
from kit.io import read_json, sha256_file, write_json, write_text_atomic
from kit.rundir import RunDir

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "kit_adapter.json")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RegistryError(KitError):
    """The registry cannot do what was asked (no such tenant or version, nothing to roll back to, bad files)."""


def location(run_dir: str | Path, registry_dir: str | Path = "") -> Path:
    """`registry_dir` when given, else registry/ beside the run directories."""
    return Path(registry_dir) if registry_dir else Path(run_dir).resolve().parent / "registry"


def modelfile_gguf(export_dir: Path) -> Path | None:
    """The GGUF an export's Modelfile serves (its FROM, beside it), or None when it names none."""
    from kit.models.modelfile import parse_modelfile

    src = parse_modelfile((export_dir / "Modelfile").read_text(encoding="utf-8")).get("FROM", "")
    return export_dir / src[2:] if src.startswith("./") else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _tenant_dir(registry_dir: str | Path, tenant: str) -> Path:
    if not TENANT.fullmatch(tenant or ""):
        raise RegistryError(f"tenant name {tenant!r} is not usable as a registry entry; use letters, digits, '-', '_' "
                            "or '.' (up to 64, starting with a letter or digit), e.g. 'acme-insure'.")
    return Path(registry_dir) / tenant


def load(registry_dir: str | Path, tenant: str) -> dict:
    """The tenant's registry (an empty one if the tenant has none yet)."""
    path = _tenant_dir(registry_dir, tenant) / "registry.json"
    if not path.exists():
        return {"tenant": tenant, "live": None, "versions": [], "history": []}
    return read_json(path)


def _save(registry_dir: str | Path, reg: dict) -> None:
    tdir = _tenant_dir(registry_dir, reg["tenant"])
    write_json(tdir / "registry.json", reg)
    mf = tdir / "Modelfile"
    source = tdir / reg["live"] / "Modelfile" if reg["live"] else None
    if source is not None and source.exists():
        write_text_atomic(mf, source.read_text(encoding="utf-8"))
    else:
        mf.unlink(missing_ok=True)


def version(reg: dict, name: str) -> dict:
    for v in reg["versions"]:
        if v["version"] == name:
            return v
    raise RegistryError(f"tenant '{reg['tenant']}' has no adapter version '{name}'; it has "
                        f"{', '.join(v['version'] for v in reg['versions']) or 'none'}.")


def live(registry_dir: str | Path, tenant: str) -> dict | None:
    """The live version's record, or None when the tenant has no live adapter."""
    reg = load(registry_dir, tenant)
    return version(reg, reg["live"]) if reg["live"] else None


def adapter_sha256(adapter_dir: Path) -> str:
    return sha256_file(adapter_dir / "adapter_model.safetensors")


def _served_modelfile(export_dir: Path, gguf: Path) -> str:
    """The run's Modelfile with FROM pointing at the GGUF by absolute path, so it works from the registry."""
    text = (export_dir / "Modelfile").read_text(encoding="utf-8")
    return re.sub(r"(?m)^FROM \./(\S+)$", lambda m: f"FROM {(export_dir / m.group(1)).resolve()}", text)


def promote(registry_dir: str | Path, tenant: str, run_dir: str | Path, adapter_name: str, reason: str,
            require_verified: bool = True) -> dict:
    """Make a run's adapter the tenant's live version: a new version, or the existing one with the same weights.

    The adapter must have passed export parity (`export/parity.json` verified) unless `require_verified` is False.
    Returns the version record.
    """
    run_dir = Path(run_dir).resolve()
    rd = RunDir(run_dir)
    adapter_dir = rd.adapter_dir(adapter_name)
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).exists()]
    if missing:
        raise RegistryError(f"{adapter_dir} lacks {', '.join(missing)}; run 03_train for adapter_name="
                            f"'{adapter_name}' before promoting it.")
    export_dir = rd.export_dir
    parity_path = rd.parity_json
    if not parity_path.exists() or not rd.modelfile.exists():
        raise RegistryError(f"no export in {export_dir}; run 05_export first: only an exported, parity-checked "
                            "adapter can go live.")
    parity = read_json(parity_path)
    if require_verified and not parity.get("verified"):
        raise RegistryError(f"the export in {export_dir} failed its parity check (export/parity.json); fix it before "
                            "promoting, or promote with require_verified=False and say why in the reason.")
    if not reason.strip():
        raise RegistryError("a promotion needs a reason (it is recorded in the registry's history).")
    gguf = modelfile_gguf(export_dir)
    if gguf is None or not gguf.exists():
        raise RegistryError(f"the Modelfile in {export_dir} names no GGUF beside it; re-run 05_export.")

    reg = load(registry_dir, tenant)
    sha = adapter_sha256(adapter_dir)
    record = next((v for v in reg["versions"] if v["adapter_sha256"] == sha and not v.get("erased")), None)
    if record is None:
        name = f"v{len(reg['versions']) + 1}"
        vdir = _tenant_dir(registry_dir, tenant) / name
        vdir.mkdir(parents=True, exist_ok=True)
        for f in ADAPTER_FILES:
            shutil.copy2(adapter_dir / f, vdir / f)
        metrics_path = rd.metrics_json
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        tuned = metrics.get("models", {}).get("tuned", {})
        record = {"version": name, "run": run_dir.name, "run_dir": str(run_dir), "adapter_name": adapter_name,
                  "adapter_sha256": sha, "created_at": _now(), "task": metrics.get("task", "classify"),
                  "holdout": {k: tuned[k] for k in ("accuracy", "accuracy_ci95", "field_accuracy") if k in tuned},
                  "gguf": str(gguf), "gguf_sha256": parity.get("types", {}).get(_gguf_type(gguf), {}).get("sha256")
                  or sha256_file(gguf), "parity_verified": bool(parity.get("verified"))}
        write_text_atomic(vdir / "Modelfile", _served_modelfile(export_dir, gguf))
        write_json(vdir / "release.json", record)
        reg["versions"].append(record)
    record.pop("rolled_back_at", None)  # promoted again on purpose: a candidate for later rollbacks again
    previous = reg["live"]
    if previous != record["version"]:
        reg["history"].append({"at": _now(), "action": "promote", "version": record["version"], "from": previous,
                               "reason": reason})
        reg["live"] = record["version"]
    _save(registry_dir, reg)
    return record


def _gguf_type(path: Path) -> str:
    m = re.fullmatch(r"model-(.+)\.gguf", path.name)
    return m.group(1) if m else ""


def rollback(registry_dir: str | Path, tenant: str, reason: str) -> dict:
    """Make the version that was live before the current one live again; returns its record.

    "Before" follows the history (the version the live one was promoted over), skipping erased versions, so two
    rollbacks in a row walk back two releases.
    """
    if not reason.strip():
        raise RegistryError("a rollback needs a reason (it is recorded in the registry's history).")
    reg = load(registry_dir, tenant)
    current = reg["live"]
    if not current:
        raise RegistryError(f"tenant '{tenant}' has no live adapter to roll back.")
    target = _previous(reg, current)
    if target is None:
        raise RegistryError(f"tenant '{tenant}' has no version before {current} to roll back to; retrain instead "
                            "(the monitor's feedback file holds the corrected rows).")
    version(reg, current)["rolled_back_at"] = _now()
    reg["history"].append({"at": _now(), "action": "roll back", "version": target, "from": current,
                           "reason": reason})
    reg["live"] = target
    _save(registry_dir, reg)
    return version(reg, target)


def _previous(reg: dict, current: str) -> str | None:
    usable = {v["version"] for v in reg["versions"] if not v.get("erased") and not v.get("rolled_back_at")}
    for event in reversed(reg["history"]):
        if event["action"] == "promote" and event["version"] == current and event["from"] in usable:
            return event["from"]
    older = [v["version"] for v in reg["versions"] if v["version"] in usable and v["version"] != current
             and int(v["version"][1:]) < int(current[1:])]
    return older[-1] if older else None


def erase(registry_dir: str | Path, tenant: str, reason: str) -> dict:
    """Delete every adapter file of one tenant (a data-subject or contract request) and record it.

    The registry keeps the versions' metadata (what existed, when, from which run) with `erased` set and no live
    version; the tenant's Modelfile is removed. Other tenants are not touched.
    """
    if not reason.strip():
        raise RegistryError("an erasure needs a reason (it is recorded in the registry's history).")
    reg = load(registry_dir, tenant)
    if not reg["versions"]:
        raise RegistryError(f"tenant '{tenant}' has nothing in the registry at {registry_dir}.")
    tdir = _tenant_dir(registry_dir, tenant)
    for v in reg["versions"]:
        shutil.rmtree(tdir / v["version"], ignore_errors=True)
        v["erased"] = True
    reg["history"].append({"at": _now(), "action": "erase", "version": None, "from": reg["live"], "reason": reason})
    reg["live"] = None
    _save(registry_dir, reg)
    return reg


def table(registry_dir: str | Path, tenant: str):
    """The tenant's versions as a table for notebooks: live marker, run, holdout score, status."""
    import pandas as pd

    reg = load(registry_dir, tenant)
    rows = []
    for v in reg["versions"]:
        status = "erased" if v.get("erased") else "rolled back" if v.get("rolled_back_at") else ""
        rows.append({"version": v["version"], "live": "●" if v["version"] == reg["live"] else "",
                     "run": v["run"], "created": v["created_at"],
                     "holdout": v["holdout"].get("accuracy"), "status": status})
    return pd.DataFrame(rows)
