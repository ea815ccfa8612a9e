# Fresh machine: `make run` runs the main job on the bundled sample, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on disk; pinning it first keeps pip from pulling a CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]" "$(TORCH_PIN)"
	touch $(STAMP)

install: $(STAMP)

# The bundled sample archive (data/sample/archive) through the Prefect flow; ends with recovered vs injected.
run: $(STAMP)
	$(BIN)/soma demo
	$(BIN)/soma run --output runs/archive --actors 2 --pairing stack

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py
	$(BIN)/python benchmarks/pipeline_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
