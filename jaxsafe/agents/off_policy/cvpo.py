"""CVPO: constrained variational policy optimisation, off-policy EM (Liu et al., "Constrained
Variational Policy Optimization for Safe Reinforcement Learning", ICML 2022; Algorithm 2 of
App. B.1).

One ``update``:

1. collect ``num_envs x rollout_length`` env steps into the replay buffer (line 3);
2. ``gradient_steps`` times, once the warm-up is over (lines 4-20):
   - a batch of B transitions; one Adam step of the reward and cost critics on Eq. 49-52;
   - E-step: K actions per state sampled from the current policy pi_i, scored by the target
     critics; the convex dual of Eq. 9 solved for (eta*, lambda*) (``solvers.action_weights``, warm
     started from the last step's answer) and q* of Eq. 8 as weights over the K actions; with
     ``action_penalization`` (ours, MO-MPO's), a second solve of the same dual on
     Q_penalty = -|a - clip(a)|^2 with its own KL bound, and q* replaced by the mixture of the two;
   - M-step: the policy fitted to q* by weighted maximum likelihood under the decoupled mean and
     covariance KL bounds of Eq. 53-58 (``solvers.weighted_fit``), M inner steps;
   - Polyak averaging of the critics' targets (Eq. 59).

The cost threshold of the E-step is the episode limit b as a bound on the discounted Q_c
(``off_policy.cost_threshold``); ``threshold_rule="measured"`` (an option of ours) moves the
batch's Q_c by the measured J_C's relative excess instead (``measured_threshold``), and
``threshold_rule="multiplier"`` (ours) drops the threshold: the E-step maximises Q_r - lambda Q_c
within its KL bound, lambda from the Lagrangian baselines' PID on the measured episode cost
(``lagrangian.measured_cost_step``). The policy is a Gaussian in action space with an unbounded
mean and a std floor ``min_std``; its samples are clipped to the action box. Choices where the
paper is silent, and the departures (the policy's parameterisation and the action penalisation, with the
runs that motivated them), are in docs/algorithms.md ("CVPO").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, config, extend, hparam, hparams_of, static
from jaxsafe.agents.off_policy.base import (
  OffPolicy,
  OffPolicyConfig,
  OffPolicyState,
  cost_threshold,
  polyak,
)
from jaxsafe.agents.off_policy.lagrangian import MeasuredCostPIDConfig, measured_cost_step
from jaxsafe.core import lagrange
from jaxsafe.envs.core import Env
from jaxsafe.solvers import action_weights, weighted_fit

#: how the E-step treats the cost (``CVPOConfig.threshold_rule``).
THRESHOLD_RULES = ("paper", "measured", "multiplier")


@config
class CVPOConfig(OffPolicyConfig, MeasuredCostPIDConfig):
  """Hyper-parameters of ``cvpo``: ``OffPolicyConfig`` plus the E-step and M-step. Defaults from
  the authors' code (liuzuxin/cvpo-safe-rl @ aeca790: ``script/config/config_cvpo.yaml``, K 32,
  E-step KL 0.1, M = 6, actor Adam 2e-3, KL bounds 1e-3 / 1e-3; ``safe_rl/policy/cvpo.py``: dual
  step sizes 1 and 100, maxima 0.1 and 10)."""

  num_action_samples: int = static(32, 2, doc="K: actions sampled per state in the E-step")
  e_step_iterations: int = static(10, 1, doc="Newton iterations of the E-step dual (warm "
                                  "started; the authors' SLSQP takes at most 10)")
  m_step_iterations: int = static(6, 1, doc="M: policy steps per M-step")
  min_std: float = static(0.01, 0.0, doc="floor added to the policy's std (the authors' "
                          "COV_MIN, 1e-2 in their last experiments)")
  e_step_kl_bound: float = hparam(0.1, 1e-6, None, doc="eps_2: KL(q || pi_i) bound (Eq. 7)")
  actor_learning_rate: float = hparam(2e-3, 0.0, 1.0, doc="Adam step size of the M-step")
  kl_mean_bound: float = hparam(1e-3, 1e-8, None, doc="eps_mu: M-step bound on C_mu (Eq. 54)")
  kl_cov_bound: float = hparam(1e-3, 1e-8, None, doc="eps_Sigma: M-step bound on C_Sigma")
  mean_dual_lr: float = hparam(1.0, 0.0, None, doc="alpha_mu (Eq. 56)")
  cov_dual_lr: float = hparam(100.0, 0.0, None, doc="alpha_Sigma (Eq. 57)")
  mean_dual_max: float = hparam(0.1, 0.0, None, doc="upper clip of beta_mu")
  cov_dual_max: float = hparam(10.0, 0.0, None, doc="upper clip of beta_Sigma")
  action_penalization: bool = static(True, doc="MO-MPO's action penalisation: a second E-step "
                                     "pulls the samples back into the action box (ours, from "
                                     "Acme's MPO; docs/algorithms.md)")
  action_penalty_kl: float = hparam(1e-3, 1e-8, None, doc="eps_penalty: KL bound of the "
                                    "penalty's E-step (Acme's MPO default)")
  threshold_rule: str = static("paper", choices=THRESHOLD_RULES, doc="the E-step's "
                               "cost threshold: 'paper' eps_1; 'measured' the batch's Q_c moved "
                               "by the measured episode cost's relative excess (ours, issue "
                               "39; threshold_gain is then not read); 'multiplier' none: the "
                               "E-step maximises Q_r - lambda Q_c, lambda from the Lagrangian "
                               "baselines' PID on the measured episode cost (ours, issue 39; "
                               "pid_* are read only here)")
  threshold_gain: float = hparam(0.0, 0.0, None, doc="k: the E-step's threshold is eps_1 - k S, "
                                 "S the sum over gradient steps of the measured episode cost's "
                                 "excess (J_C - b) eps_1 / b, capped so that the threshold stays "
                                 ">= 0 (ours, issue 39; 0: the paper's eps_1)")


@struct.dataclass
class CVPODuals:
  """The duals CVPO carries from one gradient step to the next (each one's warm start)."""

  eta: jax.Array  # the E-step's last (eta*, lambda*)
  lam: jax.Array
  eta_penalty: jax.Array  # the action penalty's temperature
  kl: weighted_fit.KLDuals  # the M-step's beta_mu, beta_Sigma
  threshold_shift: jax.Array  # S of ``threshold_gain`` (0 while the gain is 0)
  multiplier: lagrange.LagrangeState  # lambda of ``threshold_rule="multiplier"`` (else 0)


@struct.dataclass
class CVPOState(OffPolicyState):
  """CVPO's state: the family's and the duals."""

  duals: CVPODuals


def action_penalty_weights(raw_actions, kl_bound, eta_init, iterations: int):
  """MO-MPO's action penalisation (Abdolmaleki, Huang et al. 2020; Acme's MPO): the E-step's
  weights for the objective Q_penalty = -|a - clip(a, -1, 1)|^2 over the K samples [B, K, A] of
  each state, within KL ``kl_bound`` of pi_i (Eq. 8-9 with no cost constraint)."""
  penalty = -jnp.sum(jnp.square(raw_actions - jnp.clip(raw_actions, -1.0, 1.0)), axis=-1)
  return action_weights.solve(penalty, jnp.zeros_like(penalty), 1.0, kl_bound,
                              init=(eta_init, jnp.zeros_like(eta_init)), iterations=iterations)


def measured_threshold_shift(shift, episode_cost, eps_1, hp, episode_length: int):
  """S <- min(S + (J_C - b) eps_1 / b, eps_1 / k): the E-step threshold's integral on the measured
  episode cost, in Q_c's units (as the Lagrangian baselines' multiplier signal), capped so that
  eps_1 - k S >= 0; kept where no episode has been measured (J_C NaN) or k = 0."""
  excess = (episode_cost - hp.cost_limit) * cost_threshold(1.0, hp.gamma, episode_length)
  cap = eps_1 / jnp.maximum(hp.threshold_gain, 1e-30)
  stepped = jnp.minimum(shift + excess, cap)
  return jnp.where(jnp.isnan(episode_cost) | (hp.threshold_gain == 0), shift, stepped)


def measured_threshold(q_cost_mean, episode_cost, cost_limit, eps_1):
  """The E-step's threshold from the measured episode cost (``threshold_rule="measured"``):
  Q + |Q| r with Q the batch's mean Q_c under pi_i and r = (b - J_C) / |J_C| clipped to [-1, 1],
  the share by which J_C must change to reach b. Q_c of replayed states is J_C times a factor set
  by where in the episode the cost falls (and by the critic's bias); the relative step asks for
  the same share whatever that factor. eps_1 while no episode has been measured (J_C NaN)."""
  relative = jnp.clip((cost_limit - episode_cost)
                      / jnp.maximum(jnp.abs(episode_cost), 1e-6), -1.0, 1.0)
  stepped = q_cost_mean + jnp.abs(q_cost_mean) * relative
  return jnp.where(jnp.isnan(episode_cost), eps_1, stepped)


def make_cvpo(env: Env, config: CVPOConfig, name: str = "cvpo") -> Agent:
  off = OffPolicy(env, config, config.min_std)
  K, M = config.num_action_samples, config.m_step_iterations
  actor_tx = lambda hp: optax.adam(hp.actor_learning_rate)

  def init(key: jax.Array, hparams=None) -> CVPOState:
    hp = hparams_of(config) if hparams is None else hparams
    duals = CVPODuals(eta=jnp.ones(()), lam=jnp.zeros(()), eta_penalty=jnp.ones(()),
                      kl=weighted_fit.init_duals(), threshold_shift=jnp.zeros(()),
                      multiplier=lagrange.init(0.0))
    return extend(off.init(key, hp, actor_tx(hp)), CVPOState, duals=duals)

  def gradient_step(state: CVPOState, carry, step):
    _, key = step
    params, target, critic_opt, actor_opt, duals = carry
    hp = state.hparams
    k_batch, k_next, k_actions = jax.random.split(key, 3)
    params, critic_opt, batch, critic_metrics = off.critic_update(state, params, target,
                                                                  critic_opt, k_batch, k_next)
    # E-step: K actions per state from pi_i, scored by the target critics.
    mean, log_std = off.gaussian(params["actor"], batch.obs)
    raw = mean[:, None] + jnp.exp(log_std)[:, None] * jax.random.normal(
        k_actions, (config.batch_size, K, env.action_size))
    obs = jnp.broadcast_to(batch.obs[:, None], (config.batch_size, K, batch.obs.shape[-1]))
    actions = jnp.clip(raw, -1.0, 1.0)
    q_r = off.q_reward(target["reward_critic"], obs, actions)
    q_c = off.q_cost(target["cost_critic"], obs, actions)
    eps_1 = cost_threshold(hp.cost_limit, hp.gamma, off.episode_length)
    shift = measured_threshold_shift(duals.threshold_shift, state.last_episode[1], eps_1, hp,
                                     off.episode_length)
    threshold = eps_1 - hp.threshold_gain * shift
    if config.threshold_rule == "measured":
      threshold = measured_threshold(q_c.mean(), state.last_episode[1], hp.cost_limit, eps_1)
    objective, constrained, multiplier = q_r, q_c, duals.multiplier
    if config.threshold_rule == "multiplier":
      # Eq. 8-9 with no cost constraint on the Lagrangian Q_r - lambda Q_c (a zero cost under a
      # threshold of 1 never binds, so the E-step's own lambda stays 0).
      multiplier = measured_cost_step(multiplier, state.last_episode[1], hp, off.episode_length)
      objective = q_r - multiplier.multiplier * q_c
      constrained, threshold = jnp.zeros_like(q_c), jnp.ones_like(threshold)
    e_step = action_weights.solve(objective, constrained, threshold, hp.e_step_kl_bound,
                                  init=(duals.eta, duals.lam),
                                  iterations=config.e_step_iterations)
    weights, eta_penalty, penalty_metrics = e_step.weights, duals.eta_penalty, {}
    if config.action_penalization:
      # MO-MPO: q_penalty = -|a - clip(a)|^2 as a second objective with its own KL bound; the
      # M-step fits the mixture of the two non-parametric policies.
      penalised = action_penalty_weights(raw, hp.action_penalty_kl, duals.eta_penalty,
                                         config.e_step_iterations)
      weights, eta_penalty = 0.5 * (weights + penalised.weights), penalised.eta
      penalty_metrics = {"eta_penalty": eta_penalty,
                         "outside_box": jnp.mean(jnp.abs(raw) > 1.0)}
    # M-step on the same states.
    actor, actor_opt, kl_duals, m_metrics = weighted_fit.m_step(
        off.gaussian, params["actor"], actor_opt, actor_tx(hp), duals.kl,
        jax.lax.stop_gradient(batch.obs), jax.lax.stop_gradient(raw), weights, hp, M)
    params = {**params, "actor": actor}
    target = polyak(target, {k: params[k] for k in target}, hp.polyak)
    duals = CVPODuals(eta=e_step.eta, lam=e_step.lam, eta_penalty=eta_penalty, kl=kl_duals,
                      threshold_shift=shift, multiplier=multiplier)
    metrics = {**critic_metrics, **m_metrics, "eta": e_step.eta, "lambda": e_step.lam,
               "e_step_feasible": e_step.feasible.astype(jnp.float32), "threshold": threshold,
               "q_reward_samples": q_r.mean(), "q_cost_samples": q_c.mean(),
               "policy_std": jnp.exp(log_std).mean(), "multiplier": multiplier.multiplier,
               **penalty_metrics}
    return (params, target, critic_opt, actor_opt, duals), metrics

  def update(state: CVPOState):
    return off.update(state, gradient_step, name, "duals")

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=off.policy,
               steps_per_update=off.steps_per_update,
               nan_metrics=tuple(f"{name}/{k}" for k in (
                   "reward_critic_loss", "cost_critic_loss", "q_cost", "kl_mean", "kl_cov",
                   "fit_before", "fit_after", "step_length", "beta_mean", "beta_cov", "eta",
                   "lambda", "e_step_feasible", "threshold", "q_reward_samples",
                   "q_cost_samples", "policy_std", "eta_penalty", "outside_box",
                   "multiplier")))
