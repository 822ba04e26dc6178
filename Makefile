# regbench: `make run` sets up .venv and runs the default study; `make test` runs the test suite.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
# The known-good torch pair (the ranges in pyproject.toml admit others; override with `make TORCH="torch==X torchvision==Y"`).
ifeq ($(shell uname -m),aarch64)
TORCH  ?= torch==2.9.1 torchvision==0.24.1
else
TORCH  ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install help lint run test test-slow test-slurm test-all bench device-wheels clean

install: $(VENV)/.installed  ## set up .venv: torch, then regbench editable with its test, launcher and tracker extras (what `make` alone does)

$(VENV)/.installed: pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,launchers,trackers]"
	touch $@

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 12

lint: install  ## ruff check (rules in pyproject.toml)
	$(VENV)/bin/ruff check regbench hydra_plugins tests benchmarks

run: install  ## train the default configuration: cnn1d on MNIST-1D, generated locally
	$(VENV)/bin/regbench run

# On every core (pytest-xdist); a test file, or the tests sharing a session's trained sweeps, stay on one worker.
PYTEST  = $(PY) -m pytest -q -n auto --dist loadgroup

test: install  ## the suite, without the slow end-to-end checks and the SLURM ones (`make test-slow`, `make test-slurm`, CI)
	$(PYTEST) -m "not slow and not slurm"

test-slow: install  ## only the slow end-to-end checks
	$(PYTEST) -m "slow and not slurm" || [ $$? -eq 5 ]  # 5: no test is marked slow

# One test at a time: the jobs of a test share the local cluster's two cores. A missing cluster fails, not skips.
test-slurm: install  ## the tests on a real SLURM cluster: run `tests/slurm/cluster.sh up` first (CI does)
	REGBENCH_SLURM_REQUIRED=1 $(PY) -m pytest -q -p no:xdist -m slurm tests/slurm

test-all: install  ## the whole suite, slow checks included
	$(PYTEST)

bench: install  ## regbench's loop against a bare PyTorch loop, same process
	$(PY) benchmarks/overhead.py

# A lent GPU machine has PyTorch but not Hydra and reaches no registry: benchmarks/device.sh installs these there.
device-wheels: install  ## the pure-Python wheels a lent GPU machine lacks (hydra-core, omegaconf, antlr4) into .whl/
	rm -rf .whl
	$(PY) -m pip wheel -q --no-deps -w .whl $$($(PY) -c "from importlib.metadata import version; \
	  print(*(f'{n}=={version(n)}' for n in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime')))")

clean:  ## remove .venv and build artifacts
	rm -rf $(VENV) build dist *.egg-info .whl device-out
