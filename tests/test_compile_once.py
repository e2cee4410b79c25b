"""Every agent's ``update`` compiles once: traced at most once (``chex.assert_max_traces``) while
it trains two seeds (vmapped) for three iterations, each call on the state the last one returned.
A state leaf whose dtype, shape or weak type changes across an update would make ``jit`` trace
again, and that silent recompilation (a full compile per iteration in a user's loop) fails here.
The agents run at the smoke check's tiny sizes (``conftest.AGENT_SMALL``) on ``function``."""

from __future__ import annotations

import chex
import jax
import pytest
from conftest import AGENT_SMALL

from jaxsafe import agents

SEEDS, ITERATIONS = 2, 3


@pytest.mark.parametrize("name", list(agents.list_agents()))
def test_update_compiles_once_over_iterations_and_seeds(name):
  chex.clear_trace_counter()  # counts are per code object, which boxes share (ppo, ppo-lag, ...)
  agent = agents.make(name, "function", **AGENT_SMALL[name])
  keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
  first = jax.jit(jax.vmap(agent.init))(keys)
  update = jax.jit(jax.vmap(chex.assert_max_traces(agent.update, n=1)))
  states = first
  for _ in range(ITERATIONS):
    states, metrics = update(states)  # a second trace raises AssertionError
  chex.assert_trees_all_equal_shapes_and_dtypes(states, first)
  chex.assert_shape(metrics["iteration"], (SEEDS,))
  assert int(metrics["iteration"][0]) == ITERATIONS


@pytest.mark.parametrize("name", ["ppo", "cgpo", "sac-lag"])  # one agent per family
def test_a_policy_asked_with_observations_of_another_size_fails_at_trace(name):
  agent = agents.make(name, "function", **AGENT_SMALL[name])
  state = agent.init(jax.random.PRNGKey(0))
  wrong = jax.numpy.zeros((3, agent.env.observation_size + 1))
  with pytest.raises(AssertionError, match="assert_axis_dimension"):
    agent.policy(state, wrong, None, deterministic=True)
