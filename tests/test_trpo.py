"""The natural-gradient policy step of ``trpo``/``cpo`` (``agents.on_policy.trpo.policy_step``) on a small
policy (issue 15, acceptance 2): CPO's proposed step keeps its linearised cost constraint and its
KL bound within 5%, and takes the recovery branch exactly when the linearised problem is
infeasible (c > 0 and c^2 / (b^T H^-1 b) > 2 delta, checked with the dense Fisher matrix)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxsafe import envs
from jaxsafe.agents.base import hparams_of
from jaxsafe.agents.on_policy.base import ActorCritic
from jaxsafe.agents.on_policy.cpo import CPOConfig
from jaxsafe.agents.on_policy.trpo import policy_step
from jaxsafe.core import distributions
from jaxsafe.solvers import trust_region

#: c / c*, c* = sqrt(2 delta s) the boundary of the infeasible case: both sides, near and far.
C_FRACTIONS = np.array([-2.0, -0.5, 0.0, 0.5, 0.9, 1.1, 2.0])


@pytest.fixture(scope="module")
def setup():
  env = envs.make("function")
  config = CPOConfig(hidden_sizes=(8,), normalize_observations=False, cost_limit=1.0,
                     distribution="normal")
  ac = ActorCritic(env, config)
  k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.PRNGKey(0), 4)
  actor = ac.actor.init(k_init, jnp.zeros(env.observation_size))
  n_params = ravel_pytree(actor)[0].size
  # CG as many iterations as parameters: the test measures the sub-problem, not CG's truncation.
  config = CPOConfig(hidden_sizes=(8,), normalize_observations=False, cost_limit=1.0,
                     distribution="normal", cg_iterations=n_params)
  ac = ActorCritic(env, config)
  obs = jax.random.normal(k_obs, (512, env.observation_size))
  dist = ac.dist(actor, None, obs)
  sample = distributions.sample(dist, k_act)
  adv_r, noise = jax.random.normal(k_adv, (2, 512))
  adv_c = 0.6 * adv_r + 0.8 * noise  # correlated with the reward's: g and b are not orthogonal
  batch = {"obs": obs, "raw_action": sample.raw_action, "log_prob": sample.log_prob,
           "adv_r": (adv_r - adv_r.mean()) / adv_r.std(), "adv_c": adv_c - adv_c.mean()}
  hp = hparams_of(config)

  flat, unravel = ravel_pytree(actor)
  old = jax.tree.map(jax.lax.stop_gradient, dist)

  def kl(x):
    return distributions.kl_divergence(old, ac.dist(unravel(x), None, obs)).mean()

  def cost_surrogate(x):
    new = ac.dist(unravel(x), None, obs)
    return (jnp.exp(distributions.log_prob(new, batch["raw_action"]) - batch["log_prob"])
            * batch["adv_c"]).mean()

  hess = np.asarray(jax.jit(jax.hessian(kl))(flat), np.float64) + float(hp.cg_damping) * np.eye(n_params)
  b = np.asarray(jax.grad(cost_surrogate)(flat), np.float64)
  s = b @ np.linalg.solve(hess, b)
  boundary = np.sqrt(2 * float(hp.target_kl) * s)
  step = jax.jit(jax.vmap(lambda c: policy_step(ac, actor, None, batch, c, hp)))
  return {"ac": ac, "actor": actor, "batch": batch, "flat": flat, "hp": hp, "kl": kl,
          "hess": hess, "b": b, "cost_surrogate": cost_surrogate, "boundary": boundary,
          "steps": step(jnp.asarray(C_FRACTIONS * boundary, jnp.float32))}


def _flat_row(tree, i: int) -> np.ndarray:
  """Member ``i`` of a vmapped parameter pytree, as one flat float64 vector."""
  return np.asarray(ravel_pytree(jax.tree.map(lambda leaf: leaf[i], tree))[0], np.float64)


def test_cpo_recovers_exactly_when_the_linearised_problem_is_infeasible(setup):
  cases = np.asarray(setup["steps"].case)
  infeasible = C_FRACTIONS > 1.0
  np.testing.assert_array_equal(cases == trust_region.RECOVERY, infeasible)
  assert set(cases[~infeasible]) == {trust_region.FEASIBLE, trust_region.PARTIAL}, cases


def test_cpo_proposal_keeps_the_linearised_constraint_and_the_kl_bound(setup):
  delta = float(setup["hp"].target_kl)
  for i, fraction in enumerate(C_FRACTIONS):
    c = fraction * setup["boundary"]
    x = _flat_row(setup["steps"].proposal, i)
    model_kl = 0.5 * x @ setup["hess"] @ x
    actual_kl = float(setup["kl"](setup["flat"] + x))
    assert model_kl <= 1.05 * delta, (fraction, model_kl)
    assert actual_kl <= 1.05 * delta, (fraction, actual_kl)
    linearised = c + setup["b"] @ x
    if fraction > 1.0:  # recovery: the steepest decrease of the cost, the whole KL budget
      assert setup["b"] @ x < 0 and model_kl == pytest.approx(delta, rel=0.05)
    else:
      assert linearised <= 0.05 * abs(c) + 1e-7, (fraction, linearised)


def test_cpo_accepted_step_passes_its_line_search_tests(setup):
  """What the line search accepted: KL within 1.5 delta, the cost surrogate up by at most
  max(-c, 0); where it takes a step (fraction > 0) the step is along the proposal."""
  hp, steps = setup["hp"], setup["steps"]
  fractions = np.asarray(steps.metrics["step_fraction"])
  assert (fractions > 0).sum() >= 5, fractions
  for i, fraction in enumerate(C_FRACTIONS):
    c = fraction * setup["boundary"]
    new, proposal = _flat_row(steps.actor, i), _flat_row(steps.proposal, i)
    np.testing.assert_allclose(new - np.asarray(setup["flat"]), fractions[i] * proposal,
                               atol=1e-6)
    new = jnp.asarray(new, jnp.float32)
    assert float(setup["kl"](new)) <= float(hp.kl_tolerance * hp.target_kl)
    change = float(setup["cost_surrogate"](new) - setup["cost_surrogate"](setup["flat"]))
    assert change <= max(-c, 0.0) + 1e-6


def test_trpo_step_improves_the_surrogate_within_the_kl_bound(setup):
  """Without a constraint (violation None) the step is TRPO's: the whole KL budget along
  F^-1 g, accepted with a surrogate gain >= 0 and KL <= 1.5 delta."""
  result = jax.jit(lambda: policy_step(setup["ac"], setup["actor"], None, setup["batch"], None,
                                       setup["hp"]))()
  x = np.asarray(ravel_pytree(result.proposal)[0], np.float64)
  assert 0.5 * x @ setup["hess"] @ x == pytest.approx(float(setup["hp"].target_kl), rel=0.05)
  assert float(result.metrics["step_fraction"]) > 0
  assert float(result.metrics["surrogate_gain"]) >= 0
  assert float(result.metrics["kl"]) <= 1.5 * float(setup["hp"].target_kl)


def test_cpo_violation_integral_adds_the_summed_excess():
  """``violation_integral`` k_I: CPO's c is (J_C - b + k_I I) / T with I = max(0, leak I + J_C - b)
  over the measured updates; k_I = 0 is the paper's c. Read from three updates on ``function``
  (one whole episode per env and update), b lowered to 2 so that the excess is large, and a
  leak of 0.5 so that a missing or misplaced leak fails."""
  from conftest import AGENT_SMALL

  from jaxsafe import agents

  whole_episodes = {**AGENT_SMALL["cpo"], "rollout_length": envs.make("function").episode_length}
  agent = agents.make("cpo", "function", violation_integral=0.5, violation_leak=0.5,
                      cost_limit=2.0, **whole_episodes)
  update, horizon = jax.jit(agent.update), agent.env.episode_length
  state = agent.init(jax.random.PRNGKey(0))
  integral = 0.0
  for _ in range(3):
    state, metrics = update(state)
    excess = float(state.last_episode[1]) - 2.0
    assert not np.isnan(excess)  # every rollout is one whole episode per env
    integral = max(0.0, 0.5 * integral + excess)
    assert float(metrics["cpo/violation_integral"]) == pytest.approx(integral, rel=1e-5)
    assert float(metrics["cpo/violation_rate"]) == pytest.approx(
        (excess + 0.5 * integral) / horizon, rel=1e-5)
  assert integral > 0
