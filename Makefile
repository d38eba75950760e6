# The lab's two commands: `make reproduce` (the main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PRESET ?= cpu
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: reproduce test lab venv data-deps smoke stochasticity benchmark clean-runs

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

# Main job: every notebook headless on the offline default; figures into figures/.
reproduce: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET)

# Tests: unit tests + the smoke-preset notebook suite (papermill), then nbval re-runs the executed copies.
test: venv data-deps
	$(PY) -m pytest tests
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg runs/smoke/notebooks

# Notebook 09 (is overthinking stochastic?) trains 2 × (3K − 2) networks: its own target on the cpu preset.
stochasticity: venv data-deps
	$(PY) -m overthink_lib reproduce --preset $(PRESET) --only 09

smoke: venv data-deps
	$(PY) -m overthink_lib reproduce --preset smoke

benchmark: venv data-deps
	$(PY) benchmarks/speed.py --accuracy
	$(PY) benchmarks/early_exit.py

lab: venv data-deps
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
