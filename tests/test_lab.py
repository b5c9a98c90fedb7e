"""The course in JupyterLab, in headless Chromium, as a learner uses it: open a notebook, Run All, click the widgets.

JupyterLab runs on 127.0.0.1 from the project's venv over a copy of the notebooks whose parameters were set the way
a learner edits them (papermill's prepare-only injection, nothing executed). After Run All the notebook is saved from
the browser and its outputs are read back from disk: an error output anywhere fails the test. Widgets are driven
through the page and their effect is checked in the run directory. Screenshots land in test-output/<test>/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, chromium_path

pytestmark = [pytest.mark.browser]
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over tmp/notebooks (the course's notebooks, parameters injected) and its run directory."""
    if chromium_path() is None:
        pytest.skip("no chromium on PATH: `make browser` installs Debian's chromium package (root, apt)")
    import papermill as pm

    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    run_dir = root / "run"
    common = {"run_dir": str(run_dir)}
    # The demo course at the smallest size that still trains a model worth exporting (a few minutes on 2 cores);
    # the headless course tests (test_notebooks.py) check the figures at larger sizes.
    params = {
        "00_scope": common,
        "01_license": {**common, "approved": False, "approver": ""},
        "02_prepare": {**common, "input_path": str(REPO / "data_samples" / "tickets.csv"), "max_rows": 120,
                       "labels": ["claim_status", "document_request", "billing_dispute", "agent_escalation"],
                       "reviewer": "Lab Tester", "review_fraction": 0.05},
        "03_train": {**common, "max_steps": 30, "validation_fraction": 0.0, "recipe": "default"},
        "04_evaluate": {**common, "max_examples": 16, "few_shot_k": 0, "pii_probes": False,
                        "reviewer": "Lab Tester"},
        "05_export": {**common, "gguf_types": ["q8_0"], "adapter_variant": False, "parity_threshold": 0.5},
        "06_monitor": {**common, "batch_paths": [str(REPO / "data_samples" / "production" / "week1.jsonl")],
                       "review_column": "reviewed_label", "max_batch_rows": 40},
    }
    for stage, p in params.items():
        pm.execute_notebook(str(REPO / "notebooks" / f"{stage}.ipynb"), str(root / "notebooks" / f"{stage}.ipynb"),
                            parameters=p, prepare_only=True, kernel_name="python3")
    shutil.copy(REPO / "tests" / "fixtures" / "broken_widget.ipynb", root / "notebooks" / "broken_widget.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    log = open(root / "lab.log", "w")
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the widgets
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
                             "jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
                             *(["--allow-root"] if os.geteuid() == 0 else [])], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield {"url": base, "token": token, "root": root, "run_dir": run_dir}
    proc.terminate()  # Lab shuts its kernels down first, which can take a while on a busy machine
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def open_and_run_all(browser, lab, name: str, screenshots: Path):
    """Open notebooks/<name>.ipynb in JupyterLab, Run All Cells, wait until every cell ran, save; return the page."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)
    # A workspace of its own, reset: only this notebook is open (Lab otherwise restores the tabs of earlier tests).
    page.goto(f"{lab['url']}/lab/workspaces/{name}/tree/notebooks/{name}.ipynb?reset&token={lab['token']}")
    page.locator(".jp-Notebook").first.wait_for()
    kernel_idle(lab, name)  # the kernel must be up before Run All, or Lab drops the requests
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # Done when a cell has run, none waits or runs ('[*]'), and the kernel is idle again (an error stops Run All).
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        time.sleep(1)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        ran = any(ch.isdigit() for p in prompts for ch in p)
        if ran and not any("*" in p for p in prompts) and kernel_idle(lab, name, wait=False):
            break
    else:
        page.screenshot(path=str(screenshots / f"{name}-timeout.png"), full_page=True)
        pytest.fail(f"{name}: cells still running after {RUN_TIMEOUT_S} s")
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)
    return page


def kernel_idle(lab, name: str, wait: bool = True) -> bool:
    """Whether the notebook's kernel reports 'idle' (the server's sessions API); with `wait`, wait up to 2 min."""
    deadline = time.time() + 120
    while True:
        with urllib.request.urlopen(f"{lab['url']}/api/sessions?token={lab['token']}", timeout=5) as r:
            states = [s["kernel"]["execution_state"] for s in json.load(r) if s["path"].endswith(f"{name}.ipynb")]
        if states and all(st == "idle" for st in states):
            return True
        if not wait or time.time() > deadline:
            return False
        time.sleep(0.5)


def saved_errors(lab, name: str) -> list[str]:
    nb = nbformat.read(lab["root"] / "notebooks" / f"{name}.ipynb", as_version=4)
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def widget_checkbox(page, label: str):
    return page.locator(".widget-checkbox", has_text=label).locator("input[type=checkbox]")


def expect_text(page, text: str, timeout_ms: int = 20_000):
    """Wait for a widget's output to show `text`; fail naming what the page showed instead."""
    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_ms)
    except Exception:
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        raise AssertionError(f"the page never showed {text!r}; outputs at the end: {outputs[-3:]}") from None


def test_scope_scorecard_renders_and_recomputes_on_a_click(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "00_scope", screenshots)
    assert saved_errors(lab, "00_scope") == []
    scope_json = lab["run_dir"] / "scope.json"
    assert json.loads(scope_json.read_text())["recommendation"] == "fine-tune"
    box = widget_checkbox(page, "facts change often")
    box.scroll_into_view_if_needed()
    assert box.is_visible() and not box.is_checked()
    box.check()
    expect_text(page, "Recommendation: fine-tune + retrieval")
    assert json.loads(scope_json.read_text())["recommendation"] == "fine-tune + retrieval"
    page.screenshot(path=str(screenshots / "00_scope.png"), full_page=True)


def test_license_approval_widget_writes_the_note(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "01_license", screenshots)
    assert saved_errors(lab, "01_license") == []
    note = lab["run_dir"] / "license_note.json"
    assert json.loads(note.read_text())["approved"] is False
    page.locator(".widget-text", has_text="approver").locator("input").fill("Lab Tester")
    widget_checkbox(page, "I have read this note").check()
    page.get_by_role("button", name="Write license note").click()
    expect_text(page, "Note written. Training may start.")
    written = json.loads(note.read_text())
    assert written["approved"] is True and written["approver"] == "Lab Tester"
    page.screenshot(path=str(screenshots / "01_license.png"), full_page=True)


def test_prepare_review_panel_records_a_judgement(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "02_prepare", screenshots)
    assert saved_errors(lab, "02_prepare") == []
    reviews = lab["run_dir"] / "data" / "reviews.jsonl"
    header = page.locator(".widget-html", has_text="1/").first
    header.scroll_into_view_if_needed()
    first = header.inner_text()
    first_id, total = first.split("id ", 1)[1].split(" ", 1)[0], first.split("/", 1)[1].split(" ", 1)[0]
    page.get_by_role("button", name="flag PII").click()  # needs a reason: refused, nothing written
    expect_text(page, f"decision needs a one-line reason (row {first_id})")
    assert not reviews.exists() or reviews.read_text().strip() == ""
    page.get_by_role("button", name="accept").click()
    expect_text(page, f"2/{total} ·")
    rows = [json.loads(x) for x in reviews.read_text().splitlines()]
    assert rows[-1]["id"] == first_id and rows[-1]["decision"] == "accept" and rows[-1]["reviewer"] == "Lab Tester"
    page.screenshot(path=str(screenshots / "02_prepare.png"), full_page=True)


def test_the_check_fails_on_a_broken_widget(browser, lab, screenshots):
    """The fixture's checkbox handler raises: the same check that passes on 00_scope must fail here."""
    page = open_and_run_all(browser, lab, "broken_widget", screenshots)
    assert saved_errors(lab, "broken_widget") == [
        "cell 2: ValueError: an error output the saved-notebook check must report"]
    box = widget_checkbox(page, "facts change often")
    box.check()
    with pytest.raises(AssertionError, match="never showed 'Recommendation: fine-tune \\+ retrieval'"):
        expect_text(page, "Recommendation: fine-tune + retrieval", timeout_ms=5_000)
    page.screenshot(path=str(screenshots / "broken_widget.png"), full_page=True)


def expect_progress_bar(page, desc: str):
    """tqdm's notebook widget for `desc` is on the page: its label and a filled progress bar beside it."""
    bar = page.locator(".widget-hbox").filter(has_text=desc).filter(has=page.locator(".widget-hprogress")).first
    try:
        bar.wait_for(timeout=10_000)
    except Exception:
        raise AssertionError(f"no progress bar labelled {desc!r} on the page") from None
    bar.scroll_into_view_if_needed()
    text = bar.text_content()
    assert "100%" in text, text  # it ran to the end


def test_training_shows_its_progress_and_writes_the_adapter(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "03_train", screenshots)
    assert saved_errors(lab, "03_train") == []
    assert (lab["run_dir"] / "adapters" / "default" / "adapter_model.safetensors").stat().st_size > 0
    # transformers' notebook progress for training: a <progress> element with the step count beside it
    bars = page.locator("progress")
    assert bars.count() >= 1 and bars.first.get_attribute("max") == "30"
    page.screenshot(path=str(screenshots / "03_train.png"), full_page=True)


def test_evaluation_review_panel_refuses_an_empty_verdict_then_records_one(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "04_evaluate", screenshots)
    assert saved_errors(lab, "04_evaluate") == []
    expect_progress_bar(page, "scoring tuned")
    reviews = lab["run_dir"] / "eval" / "reviews.jsonl"
    header = page.locator(".widget-html", has_text="answered").first
    header.scroll_into_view_if_needed()
    shown = page.locator(".widget-textarea textarea").last.input_value()  # the ticket under review
    page.get_by_role("button", name="Save", exact=True).click()  # no verdict chosen: refused, nothing written
    expect_text(page, "Choose pass, needs edit or fail.")
    assert not reviews.exists()
    page.get_by_role("button", name="fail", exact=True).click()
    page.get_by_placeholder("one line: why").fill("wrong lane for a billing question")
    page.get_by_role("button", name="Save", exact=True).click()
    expect_text(page, f"to {reviews}")
    rows = [json.loads(x) for x in reviews.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["reviewer"] == "Lab Tester" and rows[0]["verdict"] == "fail"
    assert rows[0]["reason"] == "wrong lane for a billing question" and rows[0]["model"] == "tuned"
    holdout = {r["id"]: r["text"] for r in map(json.loads, (lab["run_dir"] / "data" / "holdout.jsonl").open())}
    assert holdout[rows[0]["id"]] == shown  # the ticket the panel showed is the one judged
    page.screenshot(path=str(screenshots / "04_evaluate.png"), full_page=True)


def test_export_shows_its_steps_and_verifies_the_gguf(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "05_export", screenshots)
    assert saved_errors(lab, "05_export") == []
    expect_progress_bar(page, "export")
    parity = json.loads((lab["run_dir"] / "export" / "parity.json").read_text())
    assert set(parity["types"]) == {"q8_0"} and parity["n"] == 16
    assert (lab["run_dir"] / "export" / "model-q8_0.gguf").stat().st_size > 0
    page.screenshot(path=str(screenshots / "05_export.png"), full_page=True)


def test_monitoring_ends_with_the_pilot_report(browser, lab, screenshots):
    page = open_and_run_all(browser, lab, "06_monitor", screenshots)
    assert saved_errors(lab, "06_monitor") == []
    report = json.loads((lab["run_dir"] / "monitor" / "report.json").read_text())
    assert report["batch"] == "week1" and report["rows"]["monitored"] == 40
    link = page.get_by_role("link", name="open the pilot report")
    link.scroll_into_view_if_needed()
    href = link.get_attribute("href")  # Lab turns the relative link into its own /files/ URL
    assert "/files/run/report.html" in href, href
    page.screenshot(path=str(screenshots / "06_monitor.png"), full_page=True)
    assert page.goto(href).ok  # the learner's click, in the same session: the page Lab serves
    for section in ("scope", "model", "data", "training", "results", "probes", "export", "monitor"):
        assert page.locator(f"section#{section}.done").count() == 1, section
    page.screenshot(path=str(screenshots / "06_report.png"))
