"""A quick check of an installation (`make smoke`, marker ``smoke``), e.g. on a newer JAX.

Every registered env id resets and steps, every registered agent makes one ``update`` on a tiny
configuration, and an agent state survives a checkpoint round trip. It checks that the code runs
and gives finite numbers on the installed versions, not what it learns: that is the rest of the
suite, which skips this file (it runs only under `-m smoke`). Each env and agent is compiled once
(about 3-4 min of CPU on 2 cores).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import AGENT_SMALL

import jaxsafe
from jaxsafe import agents, envs
from jaxsafe.train.checkpoints import Checkpointer

pytestmark = pytest.mark.smoke


@pytest.fixture(autouse=True)
def _only_when_selected(request):
  """Runs only under ``-m smoke`` (``make smoke``): ``make test`` covers all of it more deeply."""
  markexpr = request.config.option.markexpr or ""
  if "smoke" not in markexpr or "not smoke" in markexpr:
    pytest.skip("installation smoke check: run with -m smoke (make smoke)")

def _nonfinite(tree) -> list[str]:
  """Paths of float leaves with a NaN or inf, except episode statistics (NaN until one ends)."""
  bad = []
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    x, name = np.asarray(x), jax.tree_util.keystr(path)
    if (np.issubdtype(x.dtype, np.inexact) and "episode" not in name
        and not np.all(np.isfinite(x))):
      bad.append(name)
  return bad


def test_import():
  assert jaxsafe.__name__ == "jaxsafe"
  assert set(AGENT_SMALL) == set(agents.list_agents()), "a new agent needs a tiny config here"


FAITHFUL = {"dynamics": "safety-gymnasium"}
ENV_CASES = [pytest.param(i, {}, id=i) for i in envs.list_envs() if not i.startswith("sg/")] + [
    pytest.param(i, FAITHFUL, id=f"{i}-faithful")
    for i in ("point-goal", "point-circle", "car-goal")]


@pytest.mark.parametrize("env_id,options", ENV_CASES)
def test_env_resets_and_steps(env_id, options):
  env = envs.make(env_id, num_envs=2, **options)  # auto_reset would compile reset twice

  @jax.jit
  def run(key):
    state = env.reset(key)
    actions = jax.random.uniform(key, (3, 2, env.action_size), minval=-1.0, maxval=1.0)
    return jax.lax.scan(lambda s, a: (env.step(s, a), None), state, actions)[0]

  state = run(jax.random.PRNGKey(0))
  assert state.obs.shape == (2, env.observation_size)
  assert state.reward.shape == state.cost.shape == state.done.shape == (2,)
  assert not _nonfinite((state.obs, state.reward, state.cost))


@pytest.fixture(scope="module")
def updated():
  """Each agent after one update: {name: (agent, state, metrics)}."""
  return {}


@pytest.mark.parametrize("name", list(agents.list_agents()))
def test_agent_update(name, updated):
  agent = agents.make(name, "function", **AGENT_SMALL[name])
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  state, metrics = jax.jit(agent.update)(state)
  metrics = jax.device_get(metrics)
  assert int(metrics["env_steps"]) == agent.steps_per_update
  for key, value in metrics.items():
    if key not in agent.nan_metrics and not key.startswith("episode_"):  # no episode may end
      assert np.all(np.isfinite(value)), key
  assert not _nonfinite(state)
  updated[name] = (agent, state, metrics)


def test_checkpoint_round_trip(updated, tmp_path):
  if "ppo-lag" not in updated:
    pytest.skip("test_agent_update[ppo-lag] did not run")
  agent, state, _ = updated["ppo-lag"]
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(1, state)
  assert ckpt.latest_step() == 1
  like = jax.tree_util.tree_map(jnp.zeros_like, state)
  restored = ckpt.restore(1, like)
  ckpt.close()
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The restored state trains on exactly like the original.
  step = jax.jit(agent.update)
  m1, m2 = jax.device_get(step(state)[1]), jax.device_get(step(restored)[1])
  for key in m1:
    np.testing.assert_array_equal(m1[key], m2[key], err_msg=key)
