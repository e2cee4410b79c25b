"""CPPO and Dyna-CPPO: constrained RL as EM on probability ratios, with and without a model.

CPPO is Xuan et al., "Constrained Proximal Policy Optimization" (2023), as summarised in
Sec. 1 of the Dyna-CPPO specification, jaxsafe's design document for Dyna-CPPO (its Sec. 2 and
Algorithm 1); equation numbers below are that specification's. Our choices where it is silent
are in docs/algorithms.md ("CPPO").

``cppo``: one ``update`` collects a PPO-style batch of N = num_envs x rollout_length steps, takes
GAE advantages A and A_c for reward and cost, then

- E-step (Eq. 4a-4b, ``jaxsafe.solvers.ratio_region.e_step``): the centred ratios v_bar of the batch
  that maximise v_bar.A subject to v_bar.A_c <= N d', |v_bar|_2 <= R, mean(v_bar) = 0 and
  v_bar > -1, where d' = (1 - gamma)(b - J_c) is Eq. 2b's cost budget per step (J_c the batch's
  measured episode cost, b the limit) and R = sqrt(2 N delta) turns the KL bound
  D_KL(q || pi) ~ E[v_bar^2] / 2 <= delta (Eq. 3, second order) into the ball of Eq. 4a.
- Recovery update: while the policy violates the constraint (J_c > b) the E-step drops the reward
  and solves for the most cost-reducing ratios of the same set, v_bar = -R A_c~ / |A_c~| (entries
  that would reach 0 held at the floor): the direction turns to reduce cost first, and the reward
  is pursued again from the first batch whose J_c is within the limit. (Without it, d' < 0 still
  tilts the step against A_c, but by an angle that is small when b - J_c is small against the
  ball; measured in docs/algorithms.md.)
- M-step (Eq. 2a): the ELBO's theta-dependent term is -D_KL(q || pi_theta), so pi_theta is fit to
  q = v pi_old by the weighted likelihood max_theta E_{pi_old}[v log pi_theta(a|s)] over epochs of
  minibatch SGD. Its trust region is v's own ball: the fit stops at q, so no PPO clip is needed.

Dyna-CPPO (``agents/on_policy/dyna_cppo.py``) runs ``cppo_step`` on real and imagined batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.agents.base import Agent, config, hparam, static
from jaxsafe.agents.on_policy.base import (
  ActorCritic,
  OnPolicyConfig,
  OnPolicyState,
  step_metrics,
)
from jaxsafe.core.experience import Transition
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.solvers import ratio_region


@config
class CPPOConfig(OnPolicyConfig):
  """Hyper-parameters of ``cppo``: ``OnPolicyConfig`` (PPO's data collection, critics and
  optimiser defaults) plus the E-step's. The KL bound 0.02 gives a per-sample ratio RMS of
  sqrt(2 delta) = 0.2, the size of PPO's clip; the floor 0.05 is our choice
  (docs/algorithms.md)."""

  kl_bound: float = hparam(0.02, 1e-8, 10.0, doc="delta: E-step KL bound; ratio ball radius "
                           "R = sqrt(2 N delta) (Eq. 3-4a)")
  min_ratio: float = hparam(0.05, 1e-6, 0.99, doc="entries of v that would fall to 0 are held "
                            "at this ratio (the v_bar > -1 bound of Eq. 4b)")
  e_step_iterations: int = static(0, 0, doc="bisection steps of the E-step's cost-multiplier "
                                  "angle; 0: to the dtype's resolution (27 in float32)")


def e_step(adv_r: jax.Array, adv_c: jax.Array, episode_cost: jax.Array, hp,
           iterations: int | None = None) -> tuple[jax.Array, dict]:
  """The E-step's target ratios v = 1 + v_bar of a batch (Eq. 4a-4b), recovering while J_c > b.

  ``episode_cost`` is the batch's measured J_c (NaN when unknown: budget 0). Returns v shaped
  like the advantages and the E-step's metrics.
  """
  d_prime = jnp.where(jnp.isnan(episode_cost), 0.0,
                      (1.0 - hp.gamma) * (hp.cost_limit - episode_cost))  # Eq. 2b per step
  n = adv_r.size
  radius = jnp.sqrt(2.0 * n * hp.kl_bound)
  sol = ratio_region.e_step(adv_r.reshape(-1), adv_c.reshape(-1), n * d_prime, radius,
                            hp.min_ratio, iterations, recover=episode_cost > hp.cost_limit)
  metrics = {"case": sol.case.astype(jnp.float32),
             "cost_multiplier": jnp.minimum(sol.cost_multiplier, 1e6),
             "budget": d_prime,
             "held_fraction": sol.fixed.mean(),
             "e_step_inputs_finite": sol.ok.astype(jnp.float32),
             "ratio_rms": jnp.sqrt(jnp.mean(jnp.square(sol.v_bar)))}
  return 1.0 + sol.v_bar.reshape(adv_r.shape), metrics


def weighted_likelihood_loss(ratio, log_ratio, v, hp):
  """The M-step (Eq. 2a): -E_old[v log pi_theta] up to a constant (log_ratio = log pi_theta -
  log pi_old), and how far the ratios are from their targets."""
  del hp
  return -jnp.mean(v * log_ratio), {"ratio_error": jnp.mean(jnp.abs(ratio - v))}


def cppo_step(ac: ActorCritic, state: OnPolicyState, data: Transition, episode_cost: jax.Array,
              key: jax.Array):
  """Estimate, E-step and M-step on any batch shaped like a rollout (real or imagined);
  ``episode_cost`` is the J_c the budget is measured from. Returns (params, opt_state, metrics)."""
  adv = ac.advantages(state, data)
  v, e_metrics = e_step(adv.reward, adv.cost, episode_cost, state.hparams,
                        ac.config.e_step_iterations or None)
  params, opt_state, sgd_metrics = ac.sgd(state, data, v, adv, weighted_likelihood_loss, key)
  return params, opt_state, {**e_metrics, **step_metrics(data, adv), **sgd_metrics}


def cppo_update(ac: ActorCritic, state: OnPolicyState, name: str):
  """One CPPO iteration on a fresh real batch; returns (state, metrics, batch)."""
  rng, k_collect, k_sgd = jax.random.split(state.rng, 3)

  # --- 1. Collect num_envs x rollout_length steps with the current policy. -----------------
  env_state, data, episode = ac.collect(state, k_collect)

  # --- 2-4. GAE, E-step (Eq. 4, recovery while J_c > b), M-step (Eq. 2a). ------------------
  # J_c of the batch; the latest measured one if no episode ended in it.
  j_c = jnp.where(jnp.isnan(episode[1]), state.last_episode[1], episode[1])
  params, opt_state, step = cppo_step(ac, state, data, j_c, k_sgd)

  # --- 5. Bookkeeping. ---------------------------------------------------------------------
  state, metrics = ac.finish(state, data, episode, params=params, opt_state=opt_state,
                             env_state=env_state, rng=rng)
  return state, {**metrics, **prefixed(name, step)}, data


def e_step_flags(name: str) -> dict[str, str]:
  """The flag on which the runner stops CPPO and Dyna-CPPO: the E-step's inputs were finite."""
  return {f"{name}/e_step_inputs_finite": ratio_region.NOT_FINITE}


def make_cppo(env: Env, config: CPPOConfig, name: str = "cppo") -> Agent:
  """Builds CPPO on ``env`` (vmapped over ``config.num_envs``, auto-resetting)."""
  ac = ActorCritic(env, config)
  return Agent(name=name, config=ac.config, env=env, init=ac.init,
               update=lambda state: cppo_update(ac, state, name)[:2], policy=ac.policy,
               steps_per_update=ac.steps_per_update, stop_flags=e_step_flags(name))
