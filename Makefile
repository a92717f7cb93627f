# One-command set-up on a fresh machine: everything goes into ./.venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this disk; install it explicitly before the project so that
# the bare `torch>=2.3` requirement does not pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: test demo install lint typecheck bench clean browser fluidsynth

$(BIN)/mp3net: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,demo,ui-test]"
	touch $@

install: $(BIN)/mp3net

# the browser test of `mp3net serve` drives the system Chromium (Debian's package, never a download)
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# the slow pretraining test plays piano phrases on a sampled piano
fluidsynth:
	@{ command -v fluidsynth >/dev/null && [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; } || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq fluidsynth fluid-soundfont-gm >/dev/null; }

test: install browser fluidsynth
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/mp3net demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy src

bench: install
	$(BIN)/python benchmarks/bench_dsp.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build src/*.egg-info
