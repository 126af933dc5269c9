# One-command entry points. `make demo` and `make test` each run `setup` first, so each works on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
# vega, vega-lite, vega-embed for `make plots`: third-party code, fetched by `npm pack`, kept in the git-ignored venv
VEGA   := $(VENV)/vega

# No telemetry, analytics or update checks: nothing here may reach the network.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo ablation plots metrics lint format test test-fast viz viz-snapshot bench clean-data

setup: $(STAMP) $(VEGA)/versions.json

# Re-runs only when the dependency pins change; a second `make setup` is a no-op.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install -q --no-deps -e . 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -c "import vlmo_pipeline, torch, kedro, lightning, pyarrow, tokenizers"
	@command -v chromium >/dev/null || ./scripts/install_chromium.sh || echo "warning: no Chromium; the Kedro-Viz browser test will be skipped"
	@touch $(STAMP)

# Only when the files are missing; without npm (or offline) it warns and `make plots` falls back to DVC's CDN page.
$(VEGA)/versions.json: | $(STAMP)
	@$(PY) -m vlmo_pipeline.tools.dvc_plots fetch --vega-dir $(VEGA) || echo "warning: vega not fetched; make plots will use DVC's default page, which needs a network"
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m vlmo_pipeline.tools.dvc_plots configure --vega-dir $(VEGA) || echo "warning: plain \`dvc plots show\` will load vega from a CDN; \`make plots\` still renders offline"

# The whole chain through DVC (demo world -> ingest -> vocab -> 3 pretraining stages -> 4 fine-tunes -> evaluate);
# a second `make demo` re-runs only stages whose code, parameters or inputs changed.
# Then a Kedro-Viz screenshot (skipped with a warning without Chromium) and the DVC plots page.
demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	$(PY) -m vlmo_pipeline.commands.vlmo summary
	@$(PY) -m vlmo_pipeline.tools.viz_snapshot --out data/08_reporting/kedro_viz.png || echo "warning: no Kedro-Viz screenshot (it needs Chromium: scripts/install_chromium.sh)"
	@$(MAKE) --no-print-directory plots

# The stage-wise pretraining ablation (not part of `make demo`): `dvc repro` first (a no-op when the demo is up to
# date), then the demo chain without stage 1, without stage 2 and without both, from the same seeds and parameters
# (models, logs, metrics under data/09_ablation/<variant>/), next to the demo's own metrics ->
# data/08_reporting/ablation.md + ablation.json. ABLATION_ARGS="--variants no_stage2" runs one variant.
ablation: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	$(PY) -m vlmo_pipeline.ablation $(ABLATION_ARGS)

# `dvc plots show` (loss per stage, recall@K) as a page that renders offline -> data/08_reporting/dvc_plots/index.html
plots: setup
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m vlmo_pipeline.tools.dvc_plots configure --vega-dir $(VEGA) >/dev/null 2>&1 || true
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m vlmo_pipeline.tools.dvc_plots show --vega-dir $(VEGA) --out data/08_reporting/dvc_plots

# The evaluation numbers as one Markdown table per task (dvc metrics show, regrouped), chance beside each number.
# METRICS_ARGS="--diff" compares with HEAD, "--all" adds timings and the per-stage training table.
metrics: setup
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m vlmo_pipeline.tools.metrics_view $(METRICS_ARGS)

# ruff: lint rules and formatting from pyproject.toml ([tool.ruff]); `make format` rewrites the files.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest exits 5 when a selection collects no test; that is not a failure.
test: setup
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests selected"; rc=0; fi; exit $$rc

test-fast: PYTEST_ARGS = -m "not slow"
test-fast: test

viz: setup
	$(VENV)/bin/kedro viz run --no-browser --host 127.0.0.1 --port 4141

# Screenshot of the pipeline graph in headless Chromium -> data/08_reporting/kedro_viz.png
viz-snapshot: setup
	$(PY) -m vlmo_pipeline.tools.viz_snapshot --out data/08_reporting/kedro_viz.png

bench: setup
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/model_forward.py --config vlmo_tiny

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete 2>/dev/null || true
