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

.PHONY: install run test test-slow test-all bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,launchers]"
	touch $@

run: install  ## train the default configuration: cnn1d on MNIST-1D, generated locally
	$(VENV)/bin/regbench run

test: install  ## the suite, without the slow end-to-end checks (those run in `make test-slow` and in CI)
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q || [ $$? -eq 5 ]  # 5: no test is marked slow

test-all: install
	$(PY) -m pytest -q

bench: install  ## regbench's loop against a bare PyTorch loop, same process
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info
