"""License stage: the base model's license, the intended use, and an approval, written down before training.

In: a model spec, the intended use and the approver. Out: `license_note.json` and `license_note.md` in the run
directory. `check_note` is the gate the train stage calls: it refuses a missing, unapproved or conflicting note.
The registry of license answers is data (`kit/registry/licenses.yaml`), each answer with its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import yaml

from kit import KitError
from kit.io import read_json, write_json, write_text_atomic

REGISTRY_PATH = Path(__file__).parent / "registry" / "licenses.yaml"
QUESTIONS = ("commercial_use", "hosted_service", "customer_facing_output", "modification",
             "redistribution_of_weights", "use_by_affiliates")


class LicenseError(KitError):
    """The license note is missing, not approved, or does not allow the intended use."""


def registry() -> dict:
    return yaml.safe_load(REGISTRY_PATH.read_text())


@dataclass(frozen=True)
class LicenseConfig:
    run_dir: str
    model: str
    intended_uses: tuple[str, ...] = ("commercial_use", "customer_facing_output")  # any of QUESTIONS
    approved: bool = False  # set True once the named approver has read the note
    approver: str = ""
    license_id: str = ""  # registry key; empty = look it up from the model family

    def __post_init__(self):
        unknown = [u for u in self.intended_uses if u not in QUESTIONS]
        if unknown:
            raise LicenseError(f"intended_uses has unknown item(s) {unknown}; valid: {', '.join(QUESTIONS)}.")
        if self.approved and not self.approver.strip():
            raise LicenseError("approved=True needs an approver name; set `approver` to the person who approved.")


def run(cfg: LicenseConfig, resolved) -> dict:
    """Write the license note for a resolved model (see kit.models.resolve)."""
    reg = registry()
    lic_id = cfg.license_id or resolved.license_id or next(
        (k for k, v in reg.items() if resolved.model_type in v["families"]), None)
    if lic_id is None or lic_id not in reg:
        raise LicenseError(f"no license entry for model type '{resolved.model_type}' ({cfg.model}). Add one to "
                           f"{REGISTRY_PATH} with its answers and sources, or set license_id to an existing entry: "
                           f"{', '.join(reg)}.")
    entry = reg[lic_id]
    conflicts = [u for u in cfg.intended_uses if entry["answers"].get(u) == "no"]
    note = {
        "model": cfg.model, "model_path": resolved.path, "weights_sha256": resolved.sha256,
        "date_obtained": str(date.today()), "license_id": lic_id, "license": entry["license"], "url": entry["url"],
        "answers": entry["answers"], "conditions": entry["conditions"], "notice": entry.get("notice", ""),
        "intended_uses": list(cfg.intended_uses), "conflicts": conflicts,
        "approved": cfg.approved and not conflicts, "approver": cfg.approver,
        "approval_date": str(date.today()) if cfg.approved else None,
    }
    run_dir = Path(cfg.run_dir)
    write_json(run_dir / "license_note.json", note)
    write_text_atomic(run_dir / "license_note.md", render_markdown(note))
    return note


def render_markdown(note: dict) -> str:
    lines = [f"# License note: {note['model']}", "",
             f"- License: [{note['license']}]({note['url']})", f"- Weights sha256: `{note['weights_sha256']}`",
             f"- Obtained: {note['date_obtained']}", f"- Intended uses: {', '.join(note['intended_uses'])}",
             f"- Approved: {note['approved']} by {note['approver'] or '(nobody yet)'} on {note['approval_date']}",
             "", "| question | answer |", "|---|---|"]
    lines += [f"| {q} | {note['answers'].get(q, 'unknown')} |" for q in QUESTIONS]
    lines += ["", "## Conditions", ""] + [f"- {c['text']} ([source]({c['source']}))" for c in note["conditions"]]
    if note["conflicts"]:
        lines += ["", f"**Conflicts:** the license answers 'no' for {', '.join(note['conflicts'])}."]
    return "\n".join(lines) + "\n"


def check_note(run_dir: str | Path, weights_sha256: str | None = None) -> dict:
    """The training gate: raise unless an approved, non-conflicting note exists for these weights."""
    path = Path(run_dir) / "license_note.json"
    if not path.exists():
        raise LicenseError(f"no license note at {path}; run notebook 01_license and have it approved first.")
    note = read_json(path)
    if note["conflicts"]:
        raise LicenseError(f"the license ({note['license']}) does not permit {', '.join(note['conflicts'])}; "
                           "change intended_uses or choose another base model in 01_license.")
    if not note["approved"]:
        raise LicenseError(f"the license note at {path} is not approved; an approver must read it and re-run "
                           "01_license with approved=True and approver='<name>'.")
    if weights_sha256 and note["weights_sha256"] != weights_sha256:
        raise LicenseError("the license note was written for different weights than the model being trained; "
                           "re-run 01_license for this model.")
    return note


def gate_status(run_dir: str | Path, weights_sha256: str | None = None) -> tuple[bool, str]:
    """(True, '') when training may start, else (False, the reason `check_note` would raise)."""
    try:
        check_note(run_dir, weights_sha256)
        return True, ""
    except LicenseError as e:
        return False, str(e)
