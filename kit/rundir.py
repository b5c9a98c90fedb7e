"""The run directory: where every file of a run lives, and the checks a stage's inputs pass before it starts.

In: a run directory (`papermill_runs/<run-name>/`). Out: a `RunDir` whose attributes name each file the stages read
or write (the one place their paths are spelled, with the notebook that writes each), and the gates a stage calls
before minutes of work: the license note is approved for these weights (`check_license`), the privacy audit passed
for the files there now (`check_audit`), the adapter exists, belongs to this base model and was trained for the
task the data holds (`check_adapter`). Each gate raises the calling stage's own error type (`error=`) with what is
wrong and which notebook to run.

    rd = RunDir("papermill_runs/demo")
    rd.holdout_jsonl                     # papermill_runs/demo/data/holdout.jsonl
    meta = rd.check_adapter("default", resolved.sha256, error=EvalError)
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from kit.errors import KitError
from kit.io import read_json, sha256_file


class LicenseError(KitError):
    """The license note is missing, not approved, or does not allow the intended use."""


class PrivacyAuditError(KitError):
    """Personal data was found in a file that is about to be used for training or evaluation."""


WRITERS = {  # first part of a path inside the run directory: the notebook that writes it
    "scope.json": "00_scope", "scope_costs.png": "00_scope", "license_note.json": "01_license",
    "license_note.md": "01_license", "data": "02_prepare", "adapters": "03_train", "train": "03_train",
    "eval": "04_evaluate", "export": "05_export", "monitor": "06_monitor",
}


def _file(rel: str):
    return property(lambda self: self.root / rel, doc=f"`{rel}`, written by {WRITERS[rel.split('/')[0]]}")


class RunDir:
    """One run's directory: file paths by name, and the gates between stages."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # 00 scope, 01 license
    scope_json = _file("scope.json")
    scope_plot = _file("scope_costs.png")
    license_note_json = _file("license_note.json")
    license_note_md = _file("license_note.md")
    # 02 prepare
    data_dir = _file("data")
    train_jsonl = _file("data/train.jsonl")
    holdout_jsonl = _file("data/holdout.jsonl")
    quarantine_jsonl = _file("data/quarantine.jsonl")
    duplicates_jsonl = _file("data/duplicates.jsonl")
    task_json = _file("data/task.json")
    audit_json = _file("data/audit.json")
    provenance_json = _file("data/provenance.json")
    canaries_json = _file("data/canaries.json")
    data_reviews_jsonl = _file("data/reviews.jsonl")
    review_status_json = _file("data/review_status.json")
    # 03 train
    adapters_dir = _file("adapters")
    train_dir = _file("train")
    train_log_json = _file("train/log.json")
    loss_plot = _file("train/loss.png")
    # 04 evaluate
    eval_dir = _file("eval")
    metrics_json = _file("eval/metrics.json")
    predictions_jsonl = _file("eval/predictions.jsonl")
    probes_json = _file("eval/probes.json")
    eval_reviews_jsonl = _file("eval/reviews.jsonl")
    # 05 export
    export_dir = _file("export")
    parity_json = _file("export/parity.json")
    modelfile = _file("export/Modelfile")
    model_card = _file("export/MODEL_CARD.md")
    release_notes = _file("export/RELEASE_NOTES.md")
    # 06 monitor
    monitor_dir = _file("monitor")
    monitor_report_json = _file("monitor/report.json")
    monitor_history_jsonl = _file("monitor/history.jsonl")
    drift_plot = _file("monitor/drift.png")
    # the run as a whole (kit run)
    manifest_json = property(lambda self: self.root / "manifest.json", doc="`manifest.json`, written by kit run")
    report_html = property(lambda self: self.root / "report.html", doc="`report.html`, the pilot report")

    def adapter_dir(self, name: str) -> Path:
        return self.root / "adapters" / name

    def gguf(self, gguf_type: str) -> Path:
        """The merged model exported as GGUF of this type (05)."""
        return self.root / "export" / f"model-{gguf_type}.gguf"

    def writer(self, path: Path) -> str:
        """The notebook that writes `path` (a path inside this run directory)."""
        return WRITERS.get(Path(path).relative_to(self.root).parts[0], "kit run")

    def need(self, path: Path, error: type[KitError] = KitError, what: str = "") -> Path:
        """`path`, or `error` naming the file and the notebook that writes it."""
        if not path.exists():
            raise error(f"no {what or path.name} at {path}; run {self.writer(path)} for this run first.")
        return path

    # --- gates ------------------------------------------------------------------------------------------------------

    def check_license(self, weights_sha256: str | None = None) -> dict:
        """The gate of training and export: an approved, non-conflicting license note for these weights."""
        path = self.license_note_json
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

    def check_audit(self) -> dict:
        """The privacy gate of training: the audit passed for the train and holdout files that are there now, and
        the prepared snapshot has not passed its retention date."""
        audit_path = self.audit_json
        if not audit_path.exists():
            raise PrivacyAuditError(f"no privacy audit at {audit_path}; run notebook 02_prepare for this run first.")
        audit = read_json(audit_path)
        if not audit["passed"]:
            raise PrivacyAuditError(audit_failure_message(audit))
        if audit["data_sha256"] != sha256_file(self.train_jsonl):
            raise PrivacyAuditError(f"{self.train_jsonl} changed after its privacy audit; re-run 02_prepare.")
        if "holdout_sha256" in audit and audit["holdout_sha256"] != sha256_file(self.holdout_jsonl):
            raise PrivacyAuditError(f"{self.holdout_jsonl} changed after its privacy audit; re-run 02_prepare.")
        if self.provenance_json.exists():
            expires = read_json(self.provenance_json).get("expires_on")
            if expires and datetime.now(timezone.utc).date().isoformat() > expires:
                raise PrivacyAuditError(
                    f"the prepared data in {self.data_dir} expired on {expires} (retention_days); delete it and "
                    "re-run 02_prepare on a current export, or prepare with a longer retention_days if the purpose "
                    "allows.")
        return audit

    def check_adapter(self, name: str, weights_sha256: str, error: type[KitError] = KitError,
                      model: str = "") -> dict:
        """The gate of evaluation and export: adapter `name` exists, was trained on these base weights and for the
        task kind data/task.json holds now. Returns its kit_adapter.json (task, prompt budget, recipe, ...)."""
        adapter_dir = self.adapter_dir(name)
        if not (adapter_dir / "adapter_config.json").exists():
            raise error(f"no adapter at {adapter_dir}; run 03_train for adapter_name='{name}' first.")
        meta_path = adapter_dir / "kit_adapter.json"
        if not meta_path.exists():
            raise error(f"{meta_path} is missing, so nothing says which base model the adapter was trained on; "
                        "re-run 03_train to write the adapter again.")
        meta = read_json(meta_path)
        if meta.get("base_model_sha256") != weights_sha256:
            raise error(f"adapter '{name}' was trained on a different base model than '{model or 'this one'}' (its "
                        "kit_adapter.json names other weights); use the model it was trained on.")
        kind = read_json(self.need(self.task_json, error, "task")).get("kind", "classify")
        if meta.get("task", "classify") != kind:
            raise error(f"adapter '{name}' was trained for task '{meta.get('task', 'classify')}', but "
                        f"data/task.json now says '{kind}'; re-run 03_train on the prepared data.")
        return meta


def audit_failure_message(audit: dict) -> str:
    """Where the audit found what (file, row, id, field, check; never the text) and what to change."""
    findings = audit["findings"]
    check = [h.get("check", h.get("entity", "?")) for h in findings]
    where = ", ".join(f"{h['file']} row {h['row']} id {h.get('id')} field '{h.get('field', 'text')}' ({c})"
                      for h, c in zip(findings[:10], check))
    more = f" and {audit['hits'] - 10} more" if audit["hits"] > 10 else ""
    hint = ""
    if any(c.startswith("canary:") for c in check):
        hint = (" A planted canary survived redaction: the redactor does not cover that format (a policy canary "
                "needs a POLICY_NUMBER-like pattern in id_patterns).")
    if any(c.startswith("holdout_leak") for c in check):
        hint += " A holdout text is also in training: lower near_duplicate_threshold or fix holdout_path."
    # Per-row findings can also be set aside; a canary or a split leak is every row's problem (prepare still stops).
    aside = "" if hint else (" Or, to go on without those rows, set audit_findings: quarantine (they are listed in "
                             "data/quarantine.jsonl and neither trained on nor evaluated).")
    return (f"the privacy audit found {audit['hits']} unredacted item(s): {where}{more}.{hint} Add a redaction or "
            "id pattern (id_patterns) or a known-value column for them, or drop the field from field_allowlist, "
            f"and re-run 02_prepare.{aside} data/audit.json lists the findings.")
