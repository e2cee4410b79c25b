"""The short-horizon gradient against BPTT's on the small tasks of envs/control.py (issue 17).

For a fixed policy (30 Adam steps of unconstrained BPTT from the initial one, so that costs are
paid and episodes are not all cut short), with the critics fitted on 120 iterations of its own
episodes, the SHAC estimate (h = 10, the default) of grad J_R and grad J_C must point where BPTT's
does on the same episodes (cosine >= 0.9), and with h = T the two must be the same computation.
What was measured on these tasks, and what fails without the critic fixes, is in
docs/benchmarks.md ("Short-horizon gradient against BPTT").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import learning_seeds

from jaxsafe import envs
from jaxsafe.agents import estimator_check as ec
from jaxsafe.agents.first_order import FirstOrder, ValueStats, _rescale_output
from jaxsafe.agents.shac_lag import SHACLagConfig
from jaxsafe.envs.control import TASKS

NUM_ENVS = 256
PRETRAIN, FITS = 30, 120


def checker(task: str, num_envs: int = NUM_ENVS) -> FirstOrder:
  return FirstOrder(envs.make(task, num_envs=num_envs), SHACLagConfig(num_envs=num_envs),
                    "check")


def test_value_rescaling_keeps_the_critics_state_dependence():
  """PopArt: after the statistics move and the output layer is rescaled, V(s, t) changes by the
  same amount at every state of step t (the move of m_t), so grad_s V is unchanged."""
  fo = checker("reach-around", 8)
  state = fo.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (64, fo.env.observation_size))
  t = jnp.full((64,), 7)
  stats = {k: ValueStats(jnp.linspace(-5.0, 0.0, fo.horizon), jnp.asarray(4.0), jnp.asarray(3.0))
           for k in ("reward_critic", "cost_critic")}
  state = state.replace(value_stats=stats)
  new = stats["reward_critic"].update(jnp.full((fo.horizon, 8), -20.0) + jnp.arange(8.0),
                                      jnp.ones((fo.horizon, 8)))
  assert float(new.scale) != pytest.approx(float(stats["reward_critic"].scale))
  moved = state.replace(
      params={**state.params, "reward_critic": _rescale_output(
          state.params["reward_critic"], stats["reward_critic"].scale / new.scale)},
      value_stats={**stats, "reward_critic": new})
  before, after = fo.value(state, "reward_critic", obs, t), fo.value(moved, "reward_critic", obs, t)
  shift = new.mean[7] - stats["reward_critic"].mean[7]
  np.testing.assert_allclose(after - before, jnp.full((64,), shift), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_short_horizon_gradient_points_where_bptt_does(task):
  fo = checker(task)
  (seed,) = learning_seeds(0)
  k_init, k_pre, k_fit, k_check = jax.random.split(jax.random.PRNGKey(seed), 4)
  state = fo.init(k_init)
  state, returns = jax.jit(lambda s, k: ec.pretrain_actor(fo, s, k, PRETRAIN))(state, k_pre)
  assert float(returns[-1]) > float(returns[0])  # the policy the check runs at is not random
  state, _ = jax.jit(lambda s, k: ec.fit_critics(fo, s, k, FITS))(state, k_fit)
  out = jax.jit(lambda s, k: ec.agreement(fo, s, k))(state, k_check)
  print(task, {k: round(float(v), 4) for k, v in out.items()})
  for name in ("return", "cost"):
    assert float(out[f"{name}_bptt_norm"]) > 0, f"{task}: BPTT's {name} gradient is zero"
    assert float(out[f"{name}_cosine"]) >= 0.9, (task, name, out)
  full = jax.jit(lambda s, k: ec.agreement(fo, s, k, window=fo.horizon))(state, k_check)
  for name in ("return", "cost"):
    assert float(full[f"{name}_relative_error"]) <= 1e-5, (task, name, full)
