# The lab's two commands: `make reproduce` (the main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PRESET ?= cpu
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: reproduce test lab venv data-deps browser-deps smoke stochasticity benchmark stress reference clean-runs

venv: $(VENV)/.installed

# pip takes torch==2.14.1 / torchvision==0.29.1 from this machine's local disk (see README).
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

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

# Main job: every notebook headless on the offline default; figures into figures/.
reproduce: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET)

# Tests: unit tests + the smoke-preset notebook suite (papermill) and its numbers against tests/reference/smoke.json,
# then nbval re-runs the executed copies, then JupyterLab in a real browser (tests/browser).
test: venv data-deps browser-deps
	$(PY) -m pytest tests --ignore=tests/browser
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg runs/smoke/notebooks
	$(PY) -m pytest -p no:cacheprovider tests/browser

# Notebook 09 (is overthinking stochastic?) trains 2 × (3K − 2) networks: its own target on the cpu preset.
stochasticity: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET) --only 09

smoke: venv data-deps
	$(PY) -m overthink_lib reproduce --preset smoke

benchmark: venv data-deps
	$(PY) benchmarks/speed.py --accuracy
	$(PY) benchmarks/early_exit.py

# The widget notebooks headless with their widgets built, many seeds: counts hangs (CI runs 2 rounds of it).
stress: venv data-deps
	$(PY) tests/test_widget_stress.py --rounds 20

# After a deliberate change of the smoke numbers: make the new smoke run CI's regression reference.
reference: venv data-deps
	$(PY) -m overthink_lib reproduce --preset smoke --quiet --no-html
	$(PY) -m overthink_lib reference --preset smoke

lab: venv data-deps
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
