"""SAC-Lag, TD3-Lag and DDPG-Lag: the off-policy Lagrangian baselines of the CVPO paper
(Liu et al. 2022, Sec. 4.2), with the PID multiplier of Stooke, Achiam and Abbeel (2020).

They share the buffer, critics, networks and update loop with ``cvpo`` (``agents/off_policy/base.py``);
only the policy and its update differ. Each gradient step:

1. one Adam step of the reward and cost critics (Eq. 49-50 of the CVPO paper) towards targets at
   the next action a' of the algorithm:
   - ``sac-lag``: a' ~ pi(.|s') from the current tanh-squashed Gaussian, and the soft value
     Q_r(s', a') - alpha log pi(a'|s') (Haarnoja et al. 2018, Eq. 3; fixed alpha);
   - ``td3-lag``: a' = clip(mu_targ(s') + clip(N(0, sigma'^2), -c, c)), the target policy
     smoothed (Fujimoto et al. 2018, Eq. 14-15), the minimum of twin critics;
   - ``ddpg-lag``: a' = mu_targ(s'), one reward critic (Lillicrap et al. 2016);
2. the actor steps on the Lagrangian of the batch,

       L(theta) = mean_s [alpha log pi(a|s) - Q_r(s, a)] + lambda mean_s [Q_c(s, a) - eps_1],

   with a = pi_theta(s) reparameterised (for the deterministic policies the alpha log pi term
   is replaced by a small penalty on the actor's pre-tanh output, ours: docs/algorithms.md; TD3
   steps every ``policy_delay`` gradient steps, and Q_r is its first critic, as in TD3);
3. lambda from the PID controller (``core.lagrange.pid_update``). Its error is the latest measured
   episode cost against the limit, in Q_c's units: (J_C - b) eps_1 / b, eps_1 the episode limit as
   a discounted threshold (``off_policy.cost_threshold``), as OmniSafe's off-policy Lagrangians
   drive lambda with the measured episode cost (issue 39: the default since 2026-12-07, gains
   Kp 0.01, Ki 3e-4, Kd 0 per gradient step). ``multiplier_signal="q_cost"`` gives the CVPO
   authors' signal instead, the batch mean Q_c(s, pi(s)) - eps_1 before the step (their
   ``LagrangianPIDController``, gains 0.1 / 0.003 / 0.001), which holds the replayed states'
   mean Q_c, not J_C, at the limit (docs/algorithms.md);
4. Polyak averaging of the targets (Eq. 59; TD3: only with the actor steps).

Defaults: the CVPO authors' baselines (liuzuxin/cvpo-safe-rl @ aeca790,
``script/config/config_baseline.yaml`` and ``safe_rl/policy/{sac,td3,ddpg}_lag.py``), except the
multiplier's signal and gains (step 3).
"""

from __future__ import annotations

import dataclasses

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
from jaxsafe.core import distributions, lagrange
from jaxsafe.core.experience import ActionSample
from jaxsafe.envs.core import Env

#: the multiplier's error signal (``OffPolicyLagConfig.multiplier_signal``).
MULTIPLIER_SIGNALS = ("q_cost", "episode_cost")


@dataclasses.dataclass(frozen=True)
class MeasuredCostPIDConfig:
  """The gains of the multiplier driven by the measured episode cost (``measured_cost_step``;
  issue 39, docs/algorithms.md), applied once per gradient step: a base of
  ``OffPolicyLagConfig`` and of ``CVPOConfig`` (``threshold_rule="multiplier"``)."""

  pid_kp: float = hparam(0.01, 0.0, None, doc="proportional gain")
  pid_ki: float = hparam(3e-4, 0.0, None, doc="integral gain (per actor step)")
  pid_kd: float = hparam(0.0, 0.0, None, doc="derivative gain")


def measured_cost_step(lag: lagrange.LagrangeState, episode_cost: jax.Array, hp,
                       episode_length: int) -> lagrange.LagrangeState:
  """lambda from the PID on the latest measured episode cost J_C against b, both in Q_c's units
  (eps_1 / b per unit of episode cost, so b may be 0 or negative): OmniSafe's off-policy signal.
  The state is kept while no episode has been measured (J_C NaN)."""
  threshold = cost_threshold(hp.cost_limit, hp.gamma, episode_length)
  signal = episode_cost * cost_threshold(1.0, hp.gamma, episode_length)
  return lagrange.unless_unmeasured(
      lagrange.pid_update(lag, signal, threshold, hp.pid_kp, hp.pid_ki, hp.pid_kd), lag,
      episode_cost)


@config
class OffPolicyLagConfig(OffPolicyConfig, MeasuredCostPIDConfig):
  """What the three baselines add to ``OffPolicyConfig``: the actor's step size, the PID gains
  (applied once per actor step) and the multiplier's signal. The gains are measured for the
  measured-episode-cost signal (issue 39, docs/algorithms.md); the CVPO authors' setting is
  ``multiplier_signal=q_cost, pid_kp=0.1, pid_ki=0.003, pid_kd=0.001``."""

  actor_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the actor")
  multiplier_signal: str = static("episode_cost", choices=MULTIPLIER_SIGNALS,
                                  doc="what the PID compares with the limit: 'episode_cost', "
                                  "the latest measured episode cost J_C against b, in Q_c's "
                                  "units (OmniSafe's signal; issue 39), or 'q_cost', the "
                                  "batch's mean Q_c(s, pi(s)) against eps_1 (the CVPO authors')")


@config
class SACLagConfig(OffPolicyLagConfig):
  """``sac-lag``: the CVPO authors' SAC-Lag (fixed entropy coefficient 0.0085)."""

  entropy_coef: float = hparam(0.0085, 0.0, None, doc="alpha: weight of -log pi in the "
                               "reward target and the actor loss")


@config
class DDPGLagConfig(OffPolicyLagConfig):
  """``ddpg-lag``: the CVPO authors' DDPG-Lag (actor Adam 3e-4, Gaussian exploration 0.1, one
  reward critic)."""

  actor_learning_rate: float = hparam(3e-4, 0.0, 1.0, doc="Adam step size of the actor")
  exploration_noise: float = hparam(0.1, 0.0, None, doc="std of the Gaussian noise added to "
                                    "the action while collecting")
  preactivation_penalty: float = hparam(1e-3, 0.0, None, doc="weight of mean(u^2), u the "
                                        "actor's output before its tanh: keeps the tanh out of "
                                        "saturation (ours; docs/algorithms.md)")


@config
class TD3LagConfig(DDPGLagConfig):
  """``td3-lag``: the CVPO authors' TD3-Lag (actor Adam 1e-3, exploration 0.1, target noise 0.2
  clipped at 0.5, policy delay 2, twin reward critics)."""

  actor_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of the actor")
  target_noise: float = hparam(0.2, 0.0, None, doc="sigma': std of the target policy smoothing")
  target_noise_clip: float = hparam(0.5, 0.0, None, doc="c: bound on the smoothing noise")
  policy_delay: int = static(2, 1, doc="gradient steps per actor (and target) step")


class SquashedGaussian(OffPolicy):
  """SAC's policy: a tanh-squashed Gaussian (the actor's mean unbounded before the tanh)."""

  def dist(self, actor_params, obs):
    return distributions.make_distribution("tanh_normal", *self.actor.apply(actor_params, obs))

  def sample(self, actor_params, obs, key, hp) -> ActionSample:
    del hp
    return distributions.sample(self.dist(actor_params, obs), key)

  def mode(self, actor_params, obs):
    return jnp.tanh(self.actor.apply(actor_params, obs)[0])

  def next_action(self, params, target_params, next_obs, key, hp):
    sample = self.sample(params["actor"], next_obs, key, hp)
    return sample.action, -hp.entropy_coef * sample.log_prob

  def actor_action(self, actor_params, obs, key, hp):
    """(a, alpha log pi(a|s)) with a reparameterised: the action and the term the actor's loss
    adds to -Q_r."""
    sample = self.sample(actor_params, obs, key, hp)
    return sample.action, hp.entropy_coef * sample.log_prob


class Deterministic(OffPolicy):
  """DDPG's and TD3's policy: mu(s) = tanh(actor mean) (the actor's log-std head is unused),
  with Gaussian exploration noise while collecting and a target actor."""

  target_actor = True

  def __init__(self, env: Env, config: DDPGLagConfig, reward_critics: int, smoothing: bool):
    super().__init__(env, config)
    self.reward_critics, self.smoothing = reward_critics, smoothing

  def actor_value(self, critic_params, obs, action):
    """Q_r of the actor's loss: the first critic (TD3 and DDPG)."""
    first = jax.tree_util.tree_map(lambda p: p[0], critic_params)
    return self.critic.apply(first, obs, action)

  def sample(self, actor_params, obs, key, hp) -> ActionSample:
    mean = self.mode(actor_params, obs)
    action = jnp.clip(mean + hp.exploration_noise * jax.random.normal(key, mean.shape), -1, 1)
    return ActionSample(action, action, jnp.zeros(mean.shape[:-1]))

  def mode(self, actor_params, obs):
    return jnp.tanh(self.actor.apply(actor_params, obs)[0])

  def next_action(self, params, target_params, next_obs, key, hp):
    action = self.mode(target_params["actor"], next_obs)
    if self.smoothing:
      noise = jnp.clip(hp.target_noise * jax.random.normal(key, action.shape),
                       -hp.target_noise_clip, hp.target_noise_clip)
      action = jnp.clip(action + noise, -1.0, 1.0)
    return action, 0.0

  def actor_action(self, actor_params, obs, key, hp):
    """(mu(s), the pre-activation penalty) for the actor's loss."""
    del key
    u = self.actor.apply(actor_params, obs)[0]
    return jnp.tanh(u), hp.preactivation_penalty * jnp.sum(jnp.square(u), axis=-1)


@struct.dataclass
class OffPolicyLagState(OffPolicyState):
  """The state of SAC-Lag, TD3-Lag and DDPG-Lag: the family's and the PID multiplier on Q_c."""

  lagrange: lagrange.LagrangeState


def _make(env: Env, config: OffPolicyLagConfig, name: str, off: OffPolicy,
          policy_delay: int = 1) -> Agent:
  actor_tx = lambda hp: optax.adam(hp.actor_learning_rate)

  def init(key: jax.Array, hparams=None) -> OffPolicyLagState:
    hp = hparams_of(config) if hparams is None else hparams
    return extend(off.init(key, hp, actor_tx(hp)), OffPolicyLagState,
                  lagrange=lagrange.init(0.0))

  def actor_step(params, target, actor_opt, lag, hp, obs, key, episode_cost):
    threshold = cost_threshold(hp.cost_limit, hp.gamma, off.episode_length)

    def loss(actor):
      action, regulariser = off.actor_action(actor, obs, key, hp)
      q_r = off.actor_value(params["reward_critic"], obs, action)
      q_c = off.q_cost(params["cost_critic"], obs, action)
      if config.multiplier_signal == "q_cost":
        new_lag = lagrange.pid_update(lag, jax.lax.stop_gradient(q_c.mean()), threshold,
                                      hp.pid_kp, hp.pid_ki, hp.pid_kd)
      else:
        new_lag = measured_cost_step(lag, episode_cost, hp, off.episode_length)
      actor_loss = jnp.mean(regulariser - q_r)
      penalty = new_lag.multiplier * jnp.mean(q_c - threshold)
      return actor_loss + penalty, (new_lag, {
          "actor_loss": actor_loss, "multiplier": new_lag.multiplier, "q_cost_policy": q_c.mean(),
          "threshold": threshold, "actor_regulariser": jnp.mean(regulariser)})

    grads, (lag, metrics) = jax.grad(loss, has_aux=True)(params["actor"])
    updates, actor_opt = actor_tx(hp).update(grads, actor_opt, params["actor"])
    params = {**params, "actor": optax.apply_updates(params["actor"], updates)}
    target = polyak(target, {k: params[k] for k in target}, hp.polyak)
    return params, target, actor_opt, lag, metrics

  def gradient_step(state: OffPolicyLagState, carry, step):
    index, key = step
    params, target, critic_opt, actor_opt, lag = carry
    hp = state.hparams
    k_batch, k_next, k_actor = jax.random.split(key, 3)
    params, critic_opt, batch, critic_metrics = off.critic_update(state, params, target,
                                                                  critic_opt, k_batch, k_next)
    stepped = actor_step(params, target, actor_opt, lag, hp, batch.obs, k_actor,
                         state.last_episode[1])
    if policy_delay > 1:  # TD3: the actor and the targets move every `policy_delay` steps
      moves = index % policy_delay == policy_delay - 1
      kept = (params, target, actor_opt, lag)
      stepped = jax.tree_util.tree_map(lambda new, old: jnp.where(moves, new, old),
                                       stepped, (*kept, jax.tree_util.tree_map(
                                           lambda m: jnp.full_like(m, jnp.nan), stepped[4])))
    params, target, actor_opt, lag, actor_metrics = stepped
    return (params, target, critic_opt, actor_opt, lag), {**critic_metrics, **actor_metrics}

  def update(state: OffPolicyLagState):
    return off.update(state, gradient_step, name, "lagrange")

  return Agent(name=name, config=config, env=env, init=init, update=update, policy=off.policy,
               steps_per_update=off.steps_per_update,
               nan_metrics=tuple(f"{name}/{k}" for k in (
                   "reward_critic_loss", "cost_critic_loss", "q_cost", "actor_loss",
                   "multiplier", "q_cost_policy", "threshold", "actor_regulariser")))


def make_sac_lag(env: Env, config: SACLagConfig, name: str = "sac-lag") -> Agent:
  return _make(env, config, name, SquashedGaussian(env, config))


def make_td3_lag(env: Env, config: TD3LagConfig, name: str = "td3-lag") -> Agent:
  return _make(env, config, name, Deterministic(env, config, reward_critics=2, smoothing=True),
               config.policy_delay)


def make_ddpg_lag(env: Env, config: DDPGLagConfig, name: str = "ddpg-lag") -> Agent:
  return _make(env, config, name, Deterministic(env, config, reward_critics=1, smoothing=False))
