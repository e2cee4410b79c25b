"""Learning tests: every agent at its defaults (batch aside) meets its claim on 3 seeds.

The claims, their budgets and thresholds live in tests/learning.py; docs/benchmarks.md ("Learning
claims") records the per-seed numbers on 16 seeds that the thresholds come from, and
``JAXSAFE_SEED_OFFSET=100 make test-slow`` runs the same tests at shifted seeds. The full-length
runs are the slow tier; ``test_family_learns_quickly`` (one short run per family of agents) is in
``make test``. The gradient-based agents' claims: tests/test_learning_gradient.py.

Why ``cruise`` (envs/cruise.py): reward (speed) and cost (speed^2) conflict but differ, and every
policy's return is bounded by sqrt(T J_C), so "ends at the limit with a return near the frontier"
is a return claim that does not compare two algorithms. ``function`` (reward = cost) is kept for
what it tests well: recovery from an infeasible start, and precision at the limit.
"""

from __future__ import annotations

import pytest
from learning import CLAIMS, GRADIENT_AGENTS, OFF_POLICY_AGENTS, QUICK_CLAIMS, SEEDS, assert_claim

#: learning runs execute for tens of seconds: compiled optimised even in `make test` (conftest.py).
RUNS_LONG_PROGRAMS = True


@pytest.mark.slow
@pytest.mark.parametrize("claim_id", [c for c, claim in CLAIMS.items()
                                      if claim.algo not in GRADIENT_AGENTS + OFF_POLICY_AGENTS])
def test_claim(claim_id):
  """The on-policy agents (the gradient-based ones: test_learning_gradient.py, the off-policy
  ones: test_learning_off_policy.py, so that the files share the slow tier's two workers)."""
  assert_claim(claim_id)


@pytest.mark.parametrize("claim_id", list(QUICK_CLAIMS))
def test_family_learns_quickly(claim_id):
  """One short run per family (PPO-Lagrangian, CPPO, gradient-based, off-policy), on one seed."""
  assert_claim(claim_id, QUICK_CLAIMS, SEEDS[:1])


def test_learning_runs_compile_optimised():
  """The claims' thresholds were measured on optimised programs: `make test` compiles everything
  else with JAX_DISABLE_MOST_OPTIMIZATIONS=1, this file opts back in (conftest.py)."""
  import jax

  assert not jax.config.read("jax_disable_most_optimizations")
