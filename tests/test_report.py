"""The pilot report on run directories built here: partial runs, broken files, and text that must stay text."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from kit import report
from kit.report import ReportError
from kit.stages import scope


class Sections(HTMLParser):
    """Section ids and their classes, image sources and links of a page (the standard library's parser)."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.scripts = {}, [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "id" in a:
            self.sections[a["id"]] = a.get("class", "")
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "iframe"):
            self.links.append(a)


def parse(path) -> Sections:
    p = Sections()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_a_run_with_only_the_scope_stage_shows_it_and_says_what_is_missing(tmp_path):
    cfg = scope.ScopeConfig(run_dir=str(tmp_path), use_case="Sort supplier invoices into three queues")
    scope.run(cfg)
    scope.cost_plot(cfg, tmp_path / "scope_costs.png")
    page = report.build(tmp_path)
    assert page == tmp_path / "report.html"
    html = page.read_text()
    p = parse(page)
    assert list(p.sections) == ["glance"] + [sid for sid, _, _ in report.SECTIONS]
    assert p.sections["scope"] == "done" and all(p.sections[s] == "pending" for s, _, _ in report.SECTIONS[1:])
    assert "Sort supplier invoices into three queues" in html
    costs = json.loads((tmp_path / "scope.json").read_text())["costs"]
    assert f"${costs['self_hosted_usd']:,.2f}" in html and f"{costs['break_even_requests_per_month']:,}" in html
    assert "Not run yet: run 03_train.ipynb" in html and "--from 03" in html
    # Self-contained: the plot travels inside the page, nothing is fetched, no script runs.
    assert p.images and all(src.startswith("data:image/png;base64,") for src in p.images)
    assert not p.links and p.scripts == 0 and "http://" not in html.replace("http://www.w3.org", "")


def test_text_from_the_run_is_escaped_never_markup(tmp_path):
    cfg = scope.ScopeConfig(run_dir=str(tmp_path), use_case='<script>alert("x")</script> & <b>bold</b>')
    scope.run(cfg)
    html = report.build(tmp_path).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_report_refuses_what_is_not_a_run_and_names_the_broken_file(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        report.build(tmp_path / "nowhere")
    with pytest.raises(ReportError, match="holds no run"):
        report.build(tmp_path)
    scope.run(scope.ScopeConfig(run_dir=str(tmp_path), use_case="x"))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{ not json")
    with pytest.raises(ReportError, match=r"metrics\.json is not valid JSON"):
        report.build(tmp_path)
    (tmp_path / "eval" / "metrics.json").write_text('{"models": {}}')  # valid JSON, not what 04 writes
    with pytest.raises(ReportError, match="stage 04_evaluate cannot be read.*--from 04"):
        report.build(tmp_path)
    assert not (tmp_path / "report.html").exists()  # nothing half-written


def test_cli_rebuilds_the_report(tmp_path, capsys):
    from kit.__main__ import main

    scope.run(scope.ScopeConfig(run_dir=str(tmp_path), use_case="x"))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").exists() and "pilot report:" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_many_labels_get_a_readable_confusion_plot_and_their_errors_by_name(tmp_path):
    """An intent set of 40: the figure grows with the labels, and the table names the largest errors first."""
    import numpy as np
    from PIL import Image

    from kit.report import plots, tables

    labels = [f"intent_{i:02d}" for i in range(40)]
    cm = np.diag(np.full(40, 5))
    cm[3, 7], cm[3, 8], cm[12, 30] = 4, 1, 2
    results = {"tuned": {"confusion": cm.tolist(), "accuracy": 0.9}}
    small = plots.confusion_plot({"tuned": {"confusion": np.eye(4, dtype=int).tolist(), "accuracy": 1.0}},
                                 labels[:4], tmp_path / "small.png")
    big = plots.confusion_plot(results, labels, tmp_path / "big.png")
    assert Image.open(big).size[0] > 1.5 * Image.open(small).size[0]
    top = tables.confused_pairs({"models": results}, labels)
    assert top.values.tolist()[:2] == [["intent_03", "intent_07", 4, 0.4], ["intent_12", "intent_30", 2, 2 / 7]]
    assert len(top) == 3
