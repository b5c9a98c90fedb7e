"""The notebooks as files (fast) and the whole course under papermill on the real model (minutes)."""

import json
import re
import subprocess
import sys

import nbformat
import pytest
from conftest import REPO

from kit import runs
from kit.io import sha256_file


def _sync_tool():
    sys.path.insert(0, str(REPO / "tools"))
    import sync_notebooks

    return sync_notebooks


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def test_every_notebook_holds_the_cells_of_its_text_source():
    """notebooks/NN_stage.py is the source; the paired .ipynb (what papermill runs) must hold the same cells."""
    tool = _sync_tool()
    assert [p.stem for p in tool.sources()] == list(runs.STAGES)
    for py in tool.sources():
        committed = nbformat.read(REPO / "notebooks" / f"{py.stem}.ipynb", as_version=4)
        assert _cells(tool.notebook(py)) == _cells(committed), (
            f"notebooks/{py.stem}.ipynb and {py.name} differ: run `make notebooks` (or save the pair in JupyterLab)")
        assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"  # paired in JupyterLab


def test_sync_writes_what_papermill_needs(tmp_path):
    """A changed source reaches its notebook: parameters tag, stable ids, no outputs (the check above can fail)."""
    tool = _sync_tool()
    src = tmp_path / "src"
    src.mkdir()
    (src / "09_try.py").write_text('# %% [markdown]\n# **Objective** try\n\n# %% tags=["parameters"]\nx: int = 1\n\n'
                                   "# %%\nprint(x)\n")
    out = tmp_path / "out"
    out.mkdir()
    [written] = tool.build(out, src)
    nb = nbformat.read(written, as_version=4)
    assert _cells(nb) == [("markdown", "**Objective** try", []), ("code", "x: int = 1", ["parameters"]),
                          ("code", "print(x)", [])]
    assert [c.id for c in nb.cells] == ["09-00", "09-01", "09-02"]
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")


def test_notebook_sources_lint_clean():
    """pyflakes' rules (ruff F) and syntax errors over the notebooks' text sources: an unused import, a name used
    before any cell defines it."""
    import shutil
    from pathlib import Path

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (a test dependency: pip install -e '.[test]')")
    sources = [str(p) for p in _sync_tool().sources()]
    done = subprocess.run([ruff, "check", "--no-cache", "--select", "F,E9", "--output-format", "concise", *sources],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("stage", runs.STAGES)
def test_notebook_has_one_parameters_cell_no_outputs_and_no_pip(stage):
    nb = nbformat.read(REPO / "notebooks" / f"{stage}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown" and "Objective" in nb.cells[0].source
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and "pip install" not in c.source and "def " not in c.source


@pytest.mark.parametrize("stage", runs.STAGES)
def test_papermill_reads_every_parameter_line(stage):
    """papermill skips (with a log line only) a parameter whose comment it cannot parse, e.g. one holding '='; such a
    parameter would silently ignore what a run config sets."""
    import re

    nb = nbformat.read(REPO / "notebooks" / f"{stage}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = [m.group(1) for m in re.finditer(r"(?m)^(\w+)\s*:", cell.source)]
    assert sorted(runs.notebook_parameters(stage)) == sorted(declared)


def _course(tmp_path_factory, config: str):
    runs_dir = tmp_path_factory.mktemp("runs")
    proc = subprocess.run([sys.executable, "-m", "kit", "run", "--config", str(REPO / "papermill_runs" / config),
                           "--runs-dir", str(runs_dir)], capture_output=True, text=True)
    (runs_dir / "kit-run.log").write_text(proc.stdout)  # what a user of `python -m kit run` saw in the terminal
    return runs_dir / config.removesuffix(".yaml"), proc


@pytest.fixture(scope="module")
def courses(tmp_path_factory):
    """The three smoke courses (classify, extract, reply), side by side: much of each course is single-threaded
    (kernels starting, imports, llama.cpp loading, Python between the batches), so together they take far less than
    one after the other on 2 cores. Each test checks its own course's exit."""
    from concurrent.futures import ThreadPoolExecutor

    from kit import models

    models.resolve("embedded:gemma3-270m")  # a cold cache is filled once, not by the courses at the same moment
    kinds = {"classify": "smoke.yaml", "extract": "smoke-extract.yaml", "reply": "smoke-reply.yaml"}
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        return dict(zip(kinds, pool.map(lambda config: _course(tmp_path_factory, config), kinds.values())))


@pytest.fixture(scope="module")
def smoke_run(courses):
    run, proc = courses["classify"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.mark.notebooks
def test_smoke_course_runs_end_to_end_and_writes_real_artifacts(smoke_run):
    run = smoke_run
    for stage in runs.STAGES:
        assert (run / f"{stage}.ipynb").exists()
    # Headless, each long step showed up in the terminal as lines with elapsed and remaining time.
    said = (run.parent / "kit-run.log").read_text()
    for what in ("training", "scoring tuned", "scoring base zero-shot", "scoring base few-shot", "privacy probes",
                 "memorisation control", "export", "parity q8_0", "parity adapter", "answering the batch"):
        shown = [ln for ln in said.splitlines() if ln.startswith(f"  » {what} ")]
        assert shown, f"no progress line for {what!r} in:\n{said[-3000:]}"
        assert "done in" in shown[-1], shown
        if what == "training":  # long enough for lines between the first and the last, each with an estimate
            assert any(re.search(r"elapsed, ~\d+:\d\d left", ln) for ln in shown[1:-1]), shown

    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    for name in ("tuned", "base_zero_shot"):
        acc = metrics["models"][name]["accuracy"]
        assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert metrics["models"]["tuned"]["n"] == 24
    log = json.loads((run / "train" / "log.json").read_text())
    # The machine chose the dtype (bf16 where the CPU computes it fastest), training honoured it, evaluation agreed.
    assert log["dtype"] == log["dtype_choice"]["dtype"] in ("float32", "bfloat16") and log["dtype_choice"]["reason"]
    assert metrics["dtype"]["dtype"] == log["dtype"]
    plan = log["recipe"]  # validated on rows of train.jsonl, never the holdout; the best evaluation was saved
    assert plan["validation_metric"] == "accuracy" and len(plan["evaluations"]) >= 2 and plan["best"] in plan["evaluations"]
    holdout_ids = {json.loads(x)["id"] for x in (run / "data" / "holdout.jsonl").read_text().splitlines()}
    meta = json.loads((run / "adapters" / "default" / "kit_adapter.json").read_text())
    assert meta["validation_ids"] and holdout_ids.isdisjoint(meta["validation_ids"])
    assert metrics["verdict"]["baseline"] == metrics["best_baseline"] and metrics["verdict"]["sentence"]
    assert {"base_few_shot", "tfidf_logreg", "majority_class"} <= set(metrics["models"])
    # 40 steps on the real model learn the lanes: far above always answering the most common one
    assert metrics["models"]["tuned"]["accuracy"] > metrics["models"]["majority_class"]["accuracy"] + 0.2
    holdout_labels = [json.loads(x)["label"] for x in (run / "data" / "holdout.jsonl").read_text().splitlines()[:24]]
    assert 0.0 <= metrics["models"]["tuned"]["ece"] <= 1.0
    assert metrics["models"]["tuned"]["escalation"]["positives"] == holdout_labels.count("agent_escalation")
    assert metrics["probes"]["canaries"] and all(1 <= c["rank"] <= 21 for c in metrics["probes"]["canaries"])
    assert metrics["probes"]["memorized_canaries"] == 0
    control = metrics["probes"]["control"]  # the real model learns a planted canary: the probe must see it
    assert control["detected"] and control["planted_rank_after"] == 1 and control["unseen_rank_after"] > 1
    assert control["last_loss"] < control["first_loss"] / 10
    assert metrics["review"]["done"] is False
    for png in ("models.png", "confusion.png", "calibration.png", "probes.png"):
        assert (run / "eval" / png).stat().st_size > 0, png

    adapter = run / "adapters" / "default"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    meta = json.loads((adapter / "kit_adapter.json").read_text())
    assert meta["chat_format"] == "gemma" and len(meta["labels"]) == 4

    gguf = run / "export" / "model-q8_0.gguf"
    from kit.models import llamacpp

    llm = llamacpp.load(gguf, n_ctx=256)  # the buffer settings that are safe on this CPU (AMX: no repacking)
    assert llm.n_vocab() > 200_000
    assert "<start_of_turn>" in llm.metadata.get("tokenizer.chat_template", "")

    from kit.models.chat import GEMMA
    from kit.models.modelfile import parse_modelfile

    modelfile = parse_modelfile((run / "export" / "Modelfile").read_text())
    assert modelfile["TEMPLATE"] == GEMMA.go_template() and modelfile["PARAMETER"]["stop"] == GEMMA.stop
    assert "Section 1: DEFINITIONS" in modelfile["LICENSE"]  # the full Gemma Terms of Use, not only a link
    adapter_mf = parse_modelfile((run / "export" / "Modelfile.adapter").read_text())
    assert (run / "export" / adapter_mf["ADAPTER"]).exists() and (run / "export" / adapter_mf["FROM"]).exists()
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["n"] == 24 and set(parity["types"]) == {"q8_0", "adapter"}
    for row in parity["types"].values():
        assert row["label_agreement"] == row["agreement"] >= parity["threshold"], row
    assert parity["verified"] is True
    card = (run / "export" / "MODEL_CARD.md").read_text()
    for heading in ("## Intended use", "## Evaluation", "## NIST AI RMF mapping", "## Release notes"):
        assert heading in card
    assert metrics["verdict"]["sentence"] in card

    from kit.stages.export import verify

    assert {"Modelfile", "model-q8_0.gguf", "parity.json", "MODEL_CARD.md"} <= set(verify(run / "export"))

    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["notebooks"]) == set(runs.STAGES)
    assert manifest["artifacts"], "manifest lists no artifacts"
    for rel, digest in manifest["artifacts"].items():
        assert sha256_file(run / rel) == digest, rel
    assert manifest["versions"]["transformers"]


@pytest.mark.notebooks
def test_pilot_report_of_the_smoke_run_shows_every_section_in_a_browser(smoke_run, browser, screenshots):
    """report.html as a client opens it: every section there with this run's own figures, plots drawn, nothing
    fetched, no sideways scrolling on a phone, and a PDF when printed."""
    from kit import report
    from kit.report.tables import models_table

    run = smoke_run
    page_path = run / "report.html"
    assert page_path.exists(), "kit run did not write the pilot report"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    parity = json.loads((run / "export" / "parity.json").read_text())
    prov = json.loads((run / "data" / "provenance.json").read_text())
    log = json.loads((run / "train" / "log.json").read_text())
    monitor = json.loads((run / "monitor" / "report.json").read_text())
    expected = {  # section -> figures it must show, read from the stages' own files
        "scope": [json.loads((run / "scope.json").read_text())["recommendation"]],
        "model": ["Gemma Terms of Use", "approved", "test suite"],
        "data": [f"{prov['counts']['read']}", "Passed", "no_consent", "PERSON"],
        "training": [f"{log['wall_s']:.0f} s" if log["wall_s"] < 120 else f"{log['wall_s'] / 60:.1f} min",
                     log["dtype"]],
        "results": [metrics["verdict"]["sentence"], f"{models_table(metrics).loc['tuned', 'accuracy']:.3f}",
                    "hand-off to a person", "escalations to agent_escalation"],
        "probes": ["none memorised", "the probe fires on memorised text"],
        "export": ["Verified", f"{parity['types']['q8_0']['agreement']:.1%}", parity["types"]["q8_0"]["sha256"],
                   "ollama create kit-ticket-router -f Modelfile"],
        "release": ["First release"],
        "monitor": [monitor["decision"], "week2_launch", *([] if not (rb := monitor["rollback"]) else
                    [f"rolled back from {rb['from']} to {rb['to']}"] if rb["done"] else [f"Roll back not done: {rb['why']}"])],
    }
    assert set(expected) == {sid for sid, _, _ in report.SECTIONS}
    requests = []
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    for sid, figures in expected.items():
        section = page.locator(f"section#{sid}")
        assert section.is_visible() and section.get_attribute("class") == "done", sid
        text = section.inner_text()
        for figure in figures:
            assert str(figure) in text, (sid, figure)
    drawn = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    plots = ["scope_costs.png", "train/loss.png", "eval/models.png", "eval/calibration.png", "eval/confusion.png",
             "eval/probes.png", "monitor/drift.png"]
    assert all((run / p).exists() for p in plots) and len(drawn) == len(plots) and all(drawn), drawn
    assert requests == [page_path.as_uri()], requests  # one file: nothing else was fetched
    page.screenshot(path=str(screenshots / "report.png"), full_page=True)
    pdf = page.pdf(path=str(screenshots / "report.pdf"))
    assert pdf[:4] == b"%PDF" and len(pdf) > 50_000
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(page_path.as_uri())
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll in their own box
    phone.screenshot(path=str(screenshots / "report-phone.png"))


@pytest.mark.notebooks
def test_monitor_keeps_on_quiet_traffic_and_rolls_back_after_the_launch(smoke_run, tmp_path):
    """Stage 06 of the smoke course: the batch like the training data gives no alert and `keep`; the batch after the
    DriveSafe launch shows the new term, the moved texts and the quality drop on reviewed rows, and `roll back`."""
    run = smoke_run
    quiet = json.loads((run / "monitor" / "week1" / "report.json").read_text())
    launch = json.loads((run / "monitor" / "week2_launch" / "report.json").read_text())
    assert quiet["decision"] == "keep" and quiet["alerts"] == [], quiet["alerts"]
    assert quiet["rows"]["monitored"] == 120 and quiet["reviewed"]["n"] >= 20
    assert launch["decision"] == "roll back", launch["alerts"]
    verdicts = {c["check"]: c["verdict"] for c in launch["checks"]}
    assert verdicts["quality"] == verdicts["new_terms"] == verdicts["oov_rate"] == verdicts["overrides"] == "alert"
    stat = lambda report, name: next(c["statistic"] for c in report["checks"] if c["check"] == name)  # noqa: E731
    assert stat(launch, "population") > stat(quiet, "population") + 0.1
    assert "drivesafe" in [t["term"] for t in next(c for c in launch["checks"] if c["check"] == "new_terms")["terms"]]
    # one version in the smoke registry: the decision stands, the rollback says why it could not be done
    assert launch["rollback"]["done"] is False and "no version before" in launch["rollback"]["why"]
    assert launch["served"]["version"] == "v1" and launch["served"]["gguf"].endswith("model-q8_0.gguf")
    # production text is written redacted: no customer name of the batch reaches the monitor's files
    names = {json.loads(x)["customer_name"] for x in (REPO / "data_samples" / "production" / "week2_launch.jsonl")
             .read_text().splitlines()[:120]}
    written = (run / "monitor" / "week2_launch" / "batch.jsonl").read_text()
    written += (run / "monitor" / "week2_launch" / "feedback.jsonl").read_text()
    assert not [n for n in names if n in written]
    feedback = [json.loads(x) for x in (run / "monitor" / "week2_launch" / "feedback.jsonl").read_text().splitlines()]
    assert feedback and all(f["kit_feedback"]["outcome"] == "overridden" and
                            f["label"] != f["kit_feedback"]["served_prediction"] for f in feedback)
    withheld = launch["privacy"]["audit"]["n_withheld"]  # rows the audit flagged stay out of every file
    assert launch["outcomes"]["overridden"] - withheld <= len(feedback) <= launch["outcomes"]["overridden"]
    history = [json.loads(x) for x in (run / "monitor" / "history.jsonl").read_text().splitlines()]
    assert [h["decision"] for h in history] == ["keep", "roll back"]
    assert (run / "monitor" / "drift.png").stat().st_size > 0

    # The feedback rows go through stage 02 with the next export as they are: same settings, every row accounted for.
    from kit.io import read_jsonl
    from kit.stages import prepare

    settings = json.loads((run / "data" / "provenance.json").read_text())["parameters"]
    tickets = read_jsonl(REPO / "data_samples" / "tickets.jsonl")[:200]
    next_export = tmp_path / "next_export.jsonl"
    next_export.write_text("".join(json.dumps(r) + "\n" for r in tickets + feedback))
    prepared = prepare.run(prepare.PrepareConfig(**{**settings, "run_dir": str(tmp_path / "next"),
                                              "input_path": str(next_export), "max_rows": 0}))
    assert prepared.invariant_holds() and prepared.audit["passed"] and prepared.counts["read"] == 200 + len(feedback)
    out = tmp_path / "next" / "data"
    landed = [r["id"] for name in ("train.jsonl", "holdout.jsonl", "quarantine.jsonl", "duplicates.jsonl")
              for r in read_jsonl(out / name) if str(r.get("id")).startswith("week2_launch:")]
    assert sorted(landed) == sorted(f["ticket_id"] for f in feedback)


@pytest.mark.notebooks
def test_monitor_rolls_the_registry_back_to_the_version_before(smoke_run, tmp_path):
    """The smoke run's export live as v2 over an earlier release (files laid out as 05 leaves them): monitoring the
    launch batch through the real GGUF rolls the registry back to v1 and re-points its Modelfile."""
    from test_monitor import fake_release

    from kit import adapters
    from kit.stages import monitor

    registry = tmp_path / "registry"
    earlier = fake_release(tmp_path, "earlier", b"an earlier adapter")
    adapters.promote(registry, "acme", earlier, "default", "the earlier release")
    adapters.promote(registry, "acme", smoke_run, "default", "the smoke release")
    report = monitor.run_batch(monitor.MonitorConfig(
        run_dir=str(smoke_run), batch_path=str(REPO / "data_samples" / "production" / "week2_launch.jsonl"),
        batch_name="launch-acme", review_column="reviewed_label", registry_dir=str(registry), tenant="acme",
        max_rows=120))
    assert report["decision"] == "roll back" and report["served"]["version"] == "v2"
    assert report["rollback"]["done"] and (report["rollback"]["from"], report["rollback"]["to"]) == ("v2", "v1")
    assert adapters.live(registry, "acme")["version"] == "v1"
    assert (registry / "acme" / "Modelfile").read_text().startswith(f"FROM {earlier / 'export' / 'model-q8_0.gguf'}")
    last = adapters.load(registry, "acme")["history"][-1]
    assert last["action"] == "roll back" and "quality" in last["reason"]


def tenant_predictions(run, tenants: dict, order: list[str]) -> dict:
    """Holdout labels from one kit.scoring.tenants server (base GGUF + a LoRA per tenant), asked tenant by tenant in `order`."""
    from kit import models
    from kit.io import read_jsonl
    from kit.scoring import EndpointError, EndpointScorer, serve
    from kit.tasks.base import Task

    task = Task.load(run)
    resolved = models.resolve("embedded:gemma3-270m")
    tok = models.load_tokenizer(resolved)
    holdout = {r["id"]: r for r in read_jsonl(run / "data" / "holdout.jsonl")}
    tuned = [p for p in read_jsonl(run / "eval" / "predictions.jsonl") if p["model"] == "tuned"]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    budget = metrics.get("prompt_tokens") or metrics["max_length"] - 8
    prompts = [task.prompt(resolved.chat_format, holdout[p["id"]]["text"], tok, budget) for p in tuned]
    out = {"tuned": [p["prediction"] for p in tuned]}
    with serve.serve_tenants(run / "export" / "base-q8_0.gguf", tenants) as url:
        for i, tenant in enumerate(order):
            scorer = EndpointScorer.for_tokenizer(url, tok, task.labels, model=tenant)
            probs = scorer.score(prompts, task.labels)
            out[f"{i}:{tenant}"] = [task.labels[k] for k in probs.argmax(axis=1)]
        with pytest.raises(EndpointError, match="unknown tenant 'nobody'"):
            EndpointScorer.for_tokenizer(url, tok, task.labels, model="nobody").score(prompts[:1], task.labels)
    return out


@pytest.mark.notebooks
def test_one_server_serves_each_tenants_adapter_over_one_base(smoke_run):
    """Multi-tenant serving: the smoke adapter as tenant 'acme' and the bare base as 'plain', one server, the tenant
    named per request. acme answers like the evaluated adapter; plain like the base; switching back and forth
    changes nothing (the cache is dropped with the adapter)."""
    got = tenant_predictions(smoke_run, {"acme": smoke_run / "export" / "adapter-default-f16.gguf", "plain": None},
                             ["acme", "plain", "acme"])
    agree = lambda a, b: sum(x == y for x, y in zip(a, b)) / len(a)  # noqa: E731
    assert agree(got["0:acme"], got["tuned"]) >= 0.9
    assert got["2:acme"] == got["0:acme"]
    assert agree(got["1:plain"], got["tuned"]) < agree(got["0:acme"], got["tuned"])


@pytest.mark.notebooks
@pytest.mark.parametrize("kind", ["extract", "reply"])
def test_extract_and_reply_courses_run_end_to_end_on_the_real_model(kind, courses):
    run, proc = courses[kind]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    for stage in runs.STAGES:
        assert (run / f"{stage}.ipynb").exists()
    task = json.loads((run / "data" / "task.json").read_text())
    assert task["kind"] == kind and not task["labels"]
    rows = [json.loads(x) for x in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert all("answer" in r and "label" not in r for r in rows)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["task"] == kind and set(metrics["models"]) == {"tuned", "base_zero_shot", "base_few_shot",
                                                                  "retrieval"}
    tuned, base = metrics["models"]["tuned"], metrics["models"]["base_zero_shot"]
    assert tuned["n"] == 16
    if kind == "extract":
        assert task["schema"]["properties"]["lane"] and '"lane"' in rows[0]["answer"]
        # 30 steps on the real model already write valid field updates; the untuned base does not
        assert tuned["validity_rate"] >= 0.9 and tuned["field_accuracy"] > base["field_accuracy"]
        assert 0 <= tuned["ece"] <= 1 and (run / "eval" / "calibration.png").stat().st_size > 0
        assert json.loads((run / "export" / "schema.json").read_text()) == task["schema"]
    else:
        assert tuned["rouge_l"] > base["rouge_l"] and tuned["empty_rate"] < 0.2
    meta = json.loads((run / "adapters" / "default" / "kit_adapter.json").read_text())
    assert meta["task"] == kind and metrics["prompt_tokens"] == meta["prompt_tokens"]
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["task"] == kind and parity["verified"] is True and parity["n"] == 16
    assert parity["types"]["q8_0"]["agreement"] >= parity["threshold"]
    from kit.models.modelfile import parse_modelfile

    modelfile = parse_modelfile((run / "export" / "Modelfile").read_text())
    assert modelfile["SYSTEM"] == task["system"]
    card = (run / "export" / "MODEL_CARD.md").read_text()
    assert ("field accuracy" if kind == "extract" else "ROUGE-L") in card and task["system"] in card
    assert ("exact match" if kind == "extract" else "ROUGE-L") in stdout
    page = (run / "report.html").read_text()
    from markupsafe import (
        escape,  # the page is autoescaped: quotes in the sentence are entities there
    )

    assert f"Pilot report: {run / 'report.html'}" in stdout and str(escape(metrics["verdict"]["sentence"])) in page
    assert 'id="results" class="done"' in page and 'id="export" class="done"' in page


@pytest.mark.notebooks
def test_ollama_serves_the_export_like_the_adapter(smoke_run):
    import shutil

    if shutil.which("ollama") is None:
        pytest.skip("ollama is not on PATH (not installable on this machine); the export is checked in llama.cpp")
    from kit.stages.export import ollama_check

    result = ollama_check(smoke_run, "kit-smoke-test", n=5)
    assert result["ran"] and result["agreement"] >= 0.8, result
