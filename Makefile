# The lab's two commands: `make reproduce` (the main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PRESET ?= cpu
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: reproduce test lab lint lock venv data-deps browser-deps slurm-deps smoke rehearsal stochasticity benchmark stress reference analysis-reference clean-runs

venv: $(VENV)/.installed

# Exactly the versions of requirements.lock (every package, transitive ones too), then the lab itself without
# resolving anything again. pip takes torch==2.14.1 / torchvision==0.29.1 from this machine's local disk (README).
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# Re-resolve pyproject.toml's dependencies on purpose (newest versions the index offers) into requirements.lock.
lock:
	PYTHON=$(PYTHON) bash .ci/lock.sh

# ruff over the library, tests, benchmarks, examples and the notebooks' code (settings in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

# The offline default dataset: Debian's Fashion-MNIST (skipped when it, or our copy in data/, is present).
data-deps:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && \
	    [ ! -f data/FashionMNIST/raw/train-images-idx3-ubyte ]; then \
	  echo "installing Debian's dataset-fashion-mnist (the offline default dataset)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

# The browser test drives Debian's chromium with Playwright (its own browser download is not reachable here).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium (for the JupyterLab browser test)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	fi

# The SLURM tests start a one-node SLURM here (scripts/slurm-local.sh, as root) from Debian's slurm-wlm and munge.
slurm-deps:
	@bash scripts/slurm-local.sh install

# Main job: every notebook headless on the offline default; figures into figures/.
reproduce: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET)

# Tests: unit tests (the SLURM ones on a one-node cluster they start; the analysis regression on frozen records; the
# learning check; the smoke-preset notebook suite and its numbers against tests/reference/smoke.json), then nbval
# re-runs the executed copies whose outputs it checks, then JupyterLab in a real browser (tests/browser). Each part runs whatever the others
# did; one line per part at the end (scripts/test.sh).
test: venv data-deps browser-deps slurm-deps
	bash scripts/test.sh $(PY)

# Notebook 09 (is overthinking stochastic?) trains 2 × (3K − 2) networks: its own target on the cpu preset.
stochasticity: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET) --only 09

smoke: venv data-deps
	$(PY) -m overthink_lib reproduce --preset smoke

# `paper` rehearsed on made-up files in the official formats (every notebook, every dataset, sizes shrunk):
# what a cluster run would hit, found in minutes. The made-up data lives in runs/, never in data/.
rehearsal: venv
	rm -rf runs/paper-rehearsal
	$(PY) -c "from overthink_lib.data.madeup import write_made_up; write_made_up('$(CURDIR)/runs/paper-rehearsal-data')"
	OVERTHINK_DATA=$(CURDIR)/runs/paper-rehearsal-data $(PY) -m overthink_lib reproduce --preset paper-rehearsal

benchmark: venv data-deps
	$(PY) benchmarks/speed.py --accuracy
	$(PY) benchmarks/early_exit.py

# The widget notebooks headless with their widgets built, many seeds: counts hangs (CI runs 2 rounds of it).
stress: venv data-deps
	$(PY) tests/test_widget_stress.py --rounds 20

# After a deliberate change of the smoke numbers: make the new smoke run CI's regression reference (exact on this
# machine's kernel kind; other kinds' entries are dropped: `python -m overthink_lib reference --add-kind` there).
reference: venv data-deps
	$(PY) -m overthink_lib reproduce --preset smoke --quiet --no-html
	$(PY) -m overthink_lib reference --preset smoke

# After a deliberate change of a statistic, verdict or rule: the analysis regression's numbers on the frozen records
# (tests/reference/analysis.json; the same on every machine). The diff shows what moved.
analysis-reference: venv data-deps
	$(PY) tests/analysis_regression.py --write

# JupyterLab on the notebooks, without the "would you like Jupyter news?" prompt or update checks: a default of
# this venv's JupyterLab (its settings overrides), so a user's own choice in Settings still wins.
lab: venv data-deps
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab --LabApp.news_url= --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate notebooks/

clean-runs:
	rm -rf runs/
