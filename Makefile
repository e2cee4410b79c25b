# jaxsafe developer commands. Each target installs what it needs first, so a fresh clone with
# only Python 3.11 and pip can run `make demo` or `make test` directly.
# Another Python gets its own environment: `make install PYTHON=python3.12` uses .venv-3.12
# (python3.13: .venv-3.13); VENV=... overrides the directory.
PYTHON ?= python3.11
VENV   ?= $(if $(filter python3.11,$(notdir $(PYTHON))),.venv,.venv-$(patsubst python%,%,$(notdir $(PYTHON))))
BIN    := $(VENV)/bin
# The interpreter that creates the environment: $(PYTHON) if it runs, else pyenv's newest
# installation of it (non-interactive shells, e.g. CI, do not load pyenv's shims).
PYENV_ROOT ?= $(HOME)/.pyenv
FIND_PYTHON = $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	ls -d $(PYENV_ROOT)/versions/*/bin/$(notdir $(PYTHON)) 2>/dev/null | sort -V | tail -n 1)
UV_VERSION := 0.13.8
# uv must never fetch an interpreter, and must install exactly what uv.lock says.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test test-slow smoke bench lint clean

install: $(VENV)/.installed

# Re-run only when the lock or the project metadata change (idempotent).
$(VENV)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || { py="$(FIND_PYTHON)"; test -n "$$py" || \
		{ echo "$(PYTHON) not found (on PATH or under $(PYENV_ROOT)/versions)" >&2; exit 1; }; \
		echo "$$py -m venv $(VENV)"; "$$py" -m venv $(VENV); }
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --inexact --extra dev --extra safety-gymnasium --python $(BIN)/python
	@touch $@

demo: install
	$(BIN)/python -m jaxsafe.demo

# Two pytest workers, one test file each at a time (module fixtures are built once): XLA
# compiles run on one core, so two files compiling side by side use both cores.
TEST_WORKERS ?= 2

# Most of make test's programs run for milliseconds after compiling for seconds, so they are
# compiled with XLA's optimisations off (25-40% shorter compiles); files of learning runs opt back
# in (RUNS_LONG_PROGRAMS in tests/conftest.py). The slow tier compiles as users do.
test: install
	JAX_DISABLE_MOST_OPTIMIZATIONS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" --durations=15 tests

# The slow tier: learning runs to the limit, notebooks, benchmark-backed claims (one file per
# worker as above). JAXSAFE_SEED_OFFSET=100 shifts the learning tests' seeds.
test-slow: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow --durations=15 tests

# A quick check of an installation (every env, every agent's update, a checkpoint round trip;
# 3-4 min of CPU on 2 cores), e.g. on the newest JAX: `make smoke PYTHON=python3.12`.
smoke: install
	$(BIN)/python -m pytest -q -p no:xdist -m smoke tests/test_smoke.py

# Navigation (JAX point-goal at 4096 envs vs Safety-Gymnasium through the bridge), then the
# Brax tasks (PPO-Lag vs raw stepping vs Brax's PPO); results go in docs/benchmarks.md.
bench: install
	$(BIN)/python benchmarks/navigation_throughput.py
	$(BIN)/python benchmarks/throughput.py

lint: install
	$(BIN)/ruff check jaxsafe envs tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
