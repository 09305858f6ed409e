# `make run` and `make test` do all the set-up on a fresh machine: they create .venv,
# install graphc into it (with the test extra for `make test`) and then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-fast test-gpu lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python examples/lenet.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# `make test` runs everything: lint, tests/ (all tiers) and the >>> examples in graphc/,
# one pytest worker per core (pytest-xdist): the suite is mostly Numba compiling, which
# holds the GIL, so only processes use a second core. A test file stays on one worker
# (loadfile), so its kernels compile once; workers share the disk caches, which are safe
# for concurrent processes (tests/test_cache.py).
test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile

# `make test-fast` runs the unit tier of tests/ only, in seconds: the IR, passes, the NumPy
# reference, data, metrics and errors raised before any kernel compiles (no Numba compile;
# tests/conftest.py fails a unit test that compiles). The doctests in graphc/ are left out:
# they cannot carry markers, and some of them compile kernels. Other tiers: -m "cpu and not
# slow" (compiles CPU kernels), -m slow (whole models trained or compiled cold).
test-fast: install
	$(BIN)/python -m pytest -m unit tests

# `make test-gpu` runs the CUDA tier on the GPU instead of Numba's simulator: the tests
# `make test` runs under the simulator at tiny shapes, plus tests/test_cuda_gpu.py (large
# shapes, the seed models trained for hundreds of steps against the CPU backend). Where no
# GPU (or no NVIDIA driver) is usable, every test is skipped with the reason.
test-gpu: install
	$(BIN)/python -m pip install -q -e '.[test,cuda]'
	NUMBA_ENABLE_CUDASIM=0 $(BIN)/python -m pytest -m cuda -rs tests

clean:
	rm -rf $(VENV) build *.egg-info
