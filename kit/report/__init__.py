"""Reports a person reads: the pilot report (`report.html`), one self-contained page per run, and what the stages
show or write for people.

- `kit.report.pilot` (+ `pilot.html.j2`): the pilot report; `kit.report.tables`: metrics, parity and monitoring
  tables for the notebooks and the report; `kit.report.plots`: the evaluate and monitor plots;
  `kit.report.model_card`: MODEL_CARD.md; `kit.report.review`: the human review panels of 02 and 04 and their records.
Only the pilot report is imported here; the others are imported by name (`from kit.report import tables`).
"""

from kit.report.pilot import SECTIONS, ReportError, build

__all__ = ["SECTIONS", "ReportError", "build"]
