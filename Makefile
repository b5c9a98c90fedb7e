# Every target creates .venv on first use (and reuses it after). CUDA users: see README "GPU".
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kit-installed
# CPU build of torch (installs from local disk on the course machines). Set TORCH_SPEC= to keep your own torch.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast lab bench notebooks clean-runs browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_SPEC),$(PY) -m pip install --quiet "$(TORCH_SPEC)")
	# llama-cpp-python compiles llama.cpp from source on first install (~5 min); pip caches the wheel afterwards.
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## the previous release, then the whole course 00-06 into papermill_runs/demo/ (~12-30 min on 2 CPU cores)
	$(PY) -m kit run --config papermill_runs/demo-previous.yaml
	$(PY) -m kit run --config papermill_runs/demo.yaml

test: $(STAMP) browser  ## unit tests (tiny model) + the course end to end with smoke.yaml (real model) + browser checks
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the unit tests alone (tiny models, ~10 min on 2 cores): no course run, no browser
	$(PY) -m pytest -q -m "not notebooks and not browser"

# Debian's Chromium for the browser tests (Playwright drives it; no browser download). Needs root and apt; elsewhere
# install your distribution's chromium, or the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
	      || echo "apt could not install chromium: the browser tests will skip"; \
	  else echo "no chromium and no root apt: the browser tests will skip (install Debian's chromium package)"; fi

lab: $(STAMP)  ## open the course in JupyterLab
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)  ## benchmarks (print measured ratios; never gate CI)
	$(PY) bench/cpu_dtype.py
	$(PY) bench/redaction.py
	$(PY) bench/lora_step.py
	$(PY) bench/train.py
	$(PY) bench/eval.py --run-dir papermill_runs/demo

notebooks: $(STAMP)  ## rewrite notebooks/*.ipynb from their text sources notebooks/*.py (jupytext percent format)
	$(PY) tools/sync_notebooks.py

clean-runs:  ## delete run outputs (keeps the committed configs)
	find papermill_runs -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
