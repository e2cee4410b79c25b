# jaxsafe developer commands. Each target installs what it needs first, so a fresh clone with
# only Python 3.11 and pip can run `make demo` or `make test` directly.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
# uv must never fetch an interpreter, and must install exactly what uv.lock says.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test test-slow bench lint clean

install: $(VENV)/.installed

# Re-run only when the lock or the project metadata change (idempotent).
$(VENV)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --inexact --extra dev --extra safety-gymnasium --python $(BIN)/python
	@touch $@

demo: install
	$(BIN)/python -m jaxsafe.demo

# Two pytest workers, one test file each at a time (module fixtures are built once): XLA
# compiles run on one core, so two files compiling side by side use both cores.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

# The slow tier: learning runs to the limit, notebooks, benchmark-backed claims (one file per
# worker as above). JAXSAFE_SEED_OFFSET=100 shifts the learning tests' seeds.
test-slow: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow tests

# Navigation (JAX point-goal at 4096 envs vs Safety-Gymnasium through the bridge), then the
# Brax tasks (PPO-Lag vs raw stepping vs Brax's PPO); results go in docs/benchmarks.md.
bench: install
	$(BIN)/python benchmarks/navigation_throughput.py
	$(BIN)/python benchmarks/throughput.py

lint: install
	$(BIN)/ruff check jaxsafe envs tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
