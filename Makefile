# Two entry points for a fresh machine: `make demo` and `make test`. Both install everything
# into .venv first: torch 2.13.0 (CPU build) BEFORE anything that depends on torch, so that no
# unpinned torch pulls a multi-GB CUDA build, then the core and every plugin (editable).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := plugins/rechub_plugins_dssm rechub_plugins_seq rechub_plugins_multiinterest plugins/rechub_plugins_annoy
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: install demo test lint unit bench bench-standard clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rechub demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)  # -rs: print why each skipped test was skipped

test: lint unit

bench: install
	$(BIN)/python -m benchmarks.quality --data movielens-100k --models all --jobs 2 --threads 1 --out benchmarks/results

# issue #15: 12 models x {MovieLens-100K, Sports, Toys, Yelp} + MostPop, 1 thread, resumable
# (trains only the cells benchmarks/results/standard.json lacks); see benchmarks/README.md
bench-standard: install
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.standard --resume --threads 1 --jobs 2

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
