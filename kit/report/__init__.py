"""Reports a person reads: the pilot report (`report.html`), one self-contained page per run."""

from kit.report.pilot import SECTIONS, ReportError, build

__all__ = ["SECTIONS", "ReportError", "build"]
