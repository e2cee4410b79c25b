"""The off-policy stages (``agents/off_policy.py``) and ``cvpo`` end to end on small settings:
the cost threshold, Polyak averaging, warm-up, the replay buffer in the state, vmapped seeds, and
a resume (buffer included) equal to an uninterrupted run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import agents, train
from jaxsafe.agents import off_policy
from jaxsafe.train.logger import read_progress

#: 4 envs x 4 steps per update, 2 gradient steps of 8 transitions; learning starts at update 3.
TINY_OFF = {"num_envs": 4, "rollout_length": 4, "gradient_steps": 2, "batch_size": 8,
            "buffer_capacity": 40, "warmup_steps": 32, "hidden_sizes": (8,),
            "num_action_samples": 4, "e_step_iterations": 3, "m_step_iterations": 2}


def test_cost_threshold_spreads_the_episode_limit_over_the_discounted_steps():
  # b = 25 over T = 100 steps: 0.25 per step, discounted sum 0.25 (1 - 0.99^100) / 0.01.
  assert off_policy.cost_threshold(25.0, 0.99, 100) == pytest.approx(15.8496, rel=1e-4)
  assert off_policy.cost_threshold(25.0, 1.0 - 1e-9, 100) == pytest.approx(25.0, rel=1e-5)


def test_polyak_moves_targets_by_one_minus_rho():
  target, online = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  np.testing.assert_allclose(off_policy.polyak(target, online, 0.9)["w"], 0.1, rtol=1e-6)


@pytest.fixture(scope="module")
def cvpo_states():
  """Four updates of 2 seeds of cvpo on cruise, one vmapped program; the states after each."""
  agent = agents.make("cvpo", "cruise", **TINY_OFF)
  init, update = jax.jit(jax.vmap(agent.init)), jax.jit(jax.vmap(agent.update))
  state = init(jax.random.split(jax.random.PRNGKey(0), 2))
  history = []
  for _ in range(4):
    state, metrics = update(state)
    history.append((state, jax.device_get(metrics)))
  return agent, history


def test_warm_up_then_learning_with_the_buffer_in_the_state(cvpo_states):
  agent, history = cvpo_states
  sizes = [np.asarray(s.buffer.size) for s, _ in history]
  np.testing.assert_array_equal(sizes, [[16, 16], [32, 32], [40, 40], [40, 40]])  # FIFO at 40
  learning = [m["cvpo/learning"] for _, m in history]
  np.testing.assert_array_equal(learning, [[0, 0], [0, 0], [1, 1], [1, 1]])
  # No gradient step during the warm-up: the actor is untouched; then it moves.
  first, second, third = (h[0].params["actor"] for h in history[:3])
  same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), first, second)
  assert all(jax.tree_util.tree_leaves(same))
  moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), second, third)
  assert any(jax.tree_util.tree_leaves(moved))
  for _, metrics in history[2:]:
    for key in ("cvpo/kl_mean", "cvpo/kl_cov", "cvpo/eta", "cvpo/reward_critic_loss"):
      assert np.all(np.isfinite(metrics[key])), key
    assert np.all(metrics["cvpo/kl_mean"] <= agent.config.kl_mean_bound * 1.0001)
    assert np.all(metrics["cvpo/kl_cov"] <= agent.config.kl_cov_bound * 1.0001)
  seeds_differ = history[-1][0].params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"]
  assert not np.allclose(seeds_differ[0], seeds_differ[1])


def test_cvpo_resume_equals_uninterrupted(tmp_path):
  """Checkpoint and resume with the replay buffer and the E-/M-step duals in the state."""
  spec = lambda steps: train.RunSpec(algo="cvpo", env="cruise", seeds=2, total_steps=steps,
                                     overrides={k: str(v) if not isinstance(v, tuple) else
                                                ",".join(map(str, v)) for k, v in TINY_OFF.items()},
                                     chunk_iters=2)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  train.run(spec(6 * 16), straight, progress=False)
  train.run(spec(2 * 16), resumed, progress=False)
  train.resume(resumed, total_steps=6 * 16, progress=False)
  a, b = read_progress(straight), read_progress(resumed)
  assert sorted(a) == sorted(b)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
