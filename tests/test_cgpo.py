"""The gradient-based agents: cgpo, mb-cgpo, shac-lag, bptt-lag (small settings)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import agents
from jaxsafe.agents.base import ConfigError
from jaxsafe.solvers import trust_region

SMALL = {"num_envs": 8, "hidden_sizes": (16, 16), "critic_epochs": 1, "critic_minibatches": 4}


def _train(agent, iterations: int, seed: int = 0):
  state = jax.jit(agent.init)(jax.random.PRNGKey(seed))
  step = jax.jit(agent.update)
  history = []
  for _ in range(iterations):
    state, metrics = step(state)
    history.append(jax.device_get(metrics))
  return state, history


@pytest.fixture(scope="module")
def cgpo_run():
  agent = agents.make("cgpo", "function", **SMALL)
  return agent, *_train(agent, 6)


def test_cgpo_update_is_one_jitted_iteration(cgpo_run):
  agent, _, history = cgpo_run
  assert agent.steps_per_update == 8 * 100
  first, last = history[0], history[-1]
  assert int(last["iteration"]) == 6 and int(last["env_steps"]) == 6 * 800
  for metrics in history:
    for name, value in metrics.items():
      if name not in agent.nan_metrics:
        assert np.isfinite(value), name
    assert int(metrics["cgpo/case"]) in (trust_region.RECOVERY, trust_region.FEASIBLE,
                                         trust_region.PARTIAL)
    # The step never leaves the trust region.
    assert float(metrics["cgpo/step_norm"]) <= np.sqrt(float(metrics["cgpo/radius"])) * (1 + 1e-4)
  # At the first iteration nothing has been measured against a previous one.
  assert np.isnan(first["cgpo/measured_return_change"])
  # Later, the measured change is J(theta_k) - J(theta_{k-1}) of the logged returns.
  np.testing.assert_allclose(history[3]["cgpo/measured_return_change"],
                             history[3]["episode_return"] - history[2]["episode_return"], rtol=1e-5)
  np.testing.assert_allclose(history[3]["cgpo/previous_predicted_return_change"],
                             history[2]["cgpo/predicted_return_change"], rtol=1e-6)


@pytest.mark.slow  # 28 s of compile; the step and the weight rule are unit-tested in test_agents
def test_elastic_recovery_runs_and_adapts_its_weight():
  """``recovery=elastic`` (the default) carries mu in the state and logs it: on ``function`` (J_C > b
  at the start) the first steps are recoveries, mu starts at 1 and moves by factors of 2 only."""
  agent = agents.make("cgpo", "function", recovery="elastic", **SMALL)
  state, history = _train(agent, 4)
  weights = np.array([m["cgpo/recovery_weight"] for m in history])
  assert float(state.recovery_weight) == weights[-1] and weights[0] == 1.0
  np.testing.assert_allclose(np.log2(weights), np.round(np.log2(weights)), atol=1e-6)
  assert int(history[0]["cgpo/case"]) == trust_region.RECOVERY
  assert all(np.isfinite(m["episode_return"]) for m in history)


def test_same_seed_same_numbers(cgpo_run):
  agent, _, history = cgpo_run
  assert "cgpo/recovery_weight" in history[0]  # the elastic recovery (default) logs its mu
  _, again = _train(agent, 2)
  for name in ("episode_return", "episode_cost", "cgpo/step_norm"):
    assert again[1][name] == history[1][name]


# One update rule serves both Lagrangian variants. The rule itself is checked by hand in make test
# (tests/test_agents.py::test_lagrangian_gradient_step_by_hand); these end-to-end runs compile
# for ~20 s each, so they run in the slow tier.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["shac-lag", "bptt-lag"])
def test_lagrangian_variants_take_the_dual_step_of_the_measured_cost(name):
  """With ``multiplier_rule="ascent"`` the multiplier follows
  lambda_k = max(0, lambda_{k-1} + lr (J_C(theta_k) - b)) of the costs
  the iterations measured (a wrong sign or a stale cost fails), starting from a multiplier high
  enough that the projection at 0 can act. Learning itself: tests/test_learning.py."""
  lr, start = 0.5, 1.0
  small = SMALL if name == "shac-lag" else {"num_envs": 8, "hidden_sizes": (16, 16)}  # no critics
  agent = agents.make(name, "function", **small, multiplier_rule="ascent",
                      multiplier_learning_rate=lr, multiplier_init=start)
  _, history = _train(agent, 3)
  multiplier = start
  for h in history:
    multiplier = max(0.0, multiplier + lr * (float(h["episode_cost"]) - 8.0))
    assert float(h[f"{name}/multiplier"]) == pytest.approx(multiplier, rel=1e-5, abs=1e-6)
    assert np.isfinite(h[f"{name}/step_norm"]) and h[f"{name}/step_norm"] > 0.0


@pytest.mark.slow  # ~40 s of compiles; `make smoke` updates mb-cgpo once, test_learning trains it
def test_mb_cgpo_runs_on_a_non_differentiable_task():
  agent = agents.make("mb-cgpo", "function-floor", **SMALL, model_updates=20, model_batch_size=64,
                      buffer_capacity=4000)
  _, history = _train(agent, 3)
  assert all(np.isfinite(h["mb-cgpo/model_loss"]) for h in history)
  # A smoke test: the gradients come from the world model and are finite (the task is
  # piecewise constant in x). That MB-CGPO learns is tests/test_learning.py's mb-cgpo/cruise.
  assert all(np.isfinite(h["mb-cgpo/g_norm"]) and np.isfinite(h["mb-cgpo/q_norm"]) for h in history)
  assert np.isfinite(history[-1]["mb-cgpo/step_norm"])


def test_gradient_agents_refuse_non_differentiable_tasks():
  for name in ("cgpo", "shac-lag", "bptt-lag"):
    with pytest.raises(ConfigError, match="mb-cgpo"):
      agents.make(name, "function-floor")


def test_config_errors_are_one_line():
  with pytest.raises(ConfigError, match="short_horizon"):
    agents.make("cgpo", "function", short_horizon=200)
  with pytest.raises(ConfigError, match="critic_minibatches"):
    agents.make("cgpo", "function", num_envs=3, critic_minibatches=7)


def test_non_finite_gradient_stops_the_runner(cgpo_run):
  """A NaN in the observation statistics makes g and q NaN with finite actor weights: the
  sub-problem takes no step, flags it, and the runner's check names that flag (ahead of the
  critics' weights, which the same NaN spoils)."""
  from jaxsafe.train import runner

  agent, state, _ = cgpo_run
  state = state.replace(obs_stats=state.obs_stats.replace(mean=state.obs_stats.mean * jnp.nan))
  new_state, metrics = jax.jit(agent.update)(state)
  metrics = jax.device_get(metrics)
  assert float(metrics["cgpo/trust_region_inputs_finite"]) == 0.0
  assert float(metrics["cgpo/step_norm"]) == 0.0
  chex.assert_trees_all_equal(new_state.params["actor"], state.params["actor"])
  batched = {k: np.asarray(v, np.float64)[None, None] for k, v in metrics.items()}
  flags = runner.stop_flags(agent)
  bad = runner._first_nonfinite(batched, frozenset(agent.nan_metrics), flags)
  assert bad is not None and bad[2] == "cgpo/trust_region_inputs_finite", bad
  assert "trust-region sub-problem's inputs" in runner._divergence_reason(bad[2], bad[3], flags)
