"""CPPO and Dyna-CPPO: constrained RL as EM on probability ratios, with and without a model.

The specification is ``shared/papers/000`` (its Sec. 1 summarises CPPO, Xuan et al. 2023; its
Sec. 2 and Algorithm 1 define Dyna-CPPO). Our choices where it is silent are in
docs/algorithms.md ("CPPO").

``cppo``: one ``update`` collects a PPO-style batch of N = num_envs x rollout_length steps, takes
GAE advantages A and A_c for reward and cost, then

- E-step (Eq. 4a-4b, ``jaxsafe.core.ratio_region.e_step``): the centred ratios v_bar of the batch
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

``dyna-cppo`` (Algorithm 1): after the CPPO update on the real batch (line 3), the batch goes
into a replay buffer (line 4); the dynamics model F_phi, with reward and cost heads, takes
``model_updates`` Adam steps on the K-step loss of Eq. 5 (lines 5-6); imagined rollouts of H steps
start from states of the real batch, with actions from the current policy (lines 7-11); and the
agent is updated on each imagined batch by the same CPPO rule (line 12), ``imagined_updates``
times per real update.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, ConfigError, hparam, hparams_of, static
from jaxsafe.agents.ppo import OnPolicyConfig, PolicyObjective, PPOState, make_learner
from jaxsafe.core import ratio_region, replay
from jaxsafe.envs.core import Env
from jaxsafe.models import imagination
from jaxsafe.models.world_model import WorldModel


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
class DynaCPPOConfig(CPPOConfig):
  """Hyper-parameters of ``dyna-cppo``: ``CPPOConfig`` plus the model and imagination of
  Algorithm 1. The specification gives no values; ours are small and documented in
  docs/algorithms.md."""

  model_horizon: int = static(5, 1, doc="K: open-loop steps of the multi-step model loss (Eq. 5)")
  model_weight_decay: float = hparam(0.8, 0.0, 1.0, doc="w_k proportional to decay^(k-1), "
                                     "normalised to sum 1 (Eq. 5)")
  model_hidden_sizes: tuple[int, ...] = static((128, 128), doc="hidden layers of F_phi")
  model_lr: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of F_phi")
  model_updates: int = static(50, 0, doc="Adam steps on Eq. 5 per real update")
  model_batch_size: int = static(256, 1, doc="segments per model step")
  buffer_size: int = static(64_000, 1, doc="real transitions kept for the model (FIFO)")
  imagined_horizon: int = static(10, 1, doc="H: steps of each imagined rollout")
  imagined_starts: int = static(640, 1, doc="imagined rollouts per imagined batch (start "
                                "states drawn from the real batch)")
  imagined_updates: int = static(1, 0, doc="CPPO updates on imagined batches per real update")


def cppo_objective(config: CPPOConfig) -> PolicyObjective:
  """E-step targets v = 1 + v_bar (Eq. 4, recovery while J_c > b) and the weighted-likelihood
  M-step loss (Eq. 2a)."""

  def targets(adv_r, adv_c, episode_cost, state, hp):
    # J_c of the batch; the latest measured one if no episode ended in it; unknown: budget 0.
    j_c = jnp.where(jnp.isnan(episode_cost), state.last_episode[1], episode_cost)
    d_prime = jnp.where(jnp.isnan(j_c), 0.0, (1.0 - hp["gamma"]) * (hp["cost_limit"] - j_c))
    n = adv_r.size
    radius = jnp.sqrt(2.0 * n * hp["kl_bound"])
    sol = ratio_region.e_step(adv_r.reshape(-1), adv_c.reshape(-1), n * d_prime, radius,
                              hp["min_ratio"], config.e_step_iterations or None,
                              recover=j_c > hp["cost_limit"])
    v = 1.0 + sol.v_bar.reshape(adv_r.shape)
    metrics = {"case": sol.case.astype(jnp.float32),
               "cost_multiplier": jnp.minimum(sol.cost_multiplier, 1e6),
               "budget": d_prime,
               "held_fraction": sol.fixed.mean(),
               "e_step_inputs_finite": sol.ok.astype(jnp.float32),
               "ratio_rms": jnp.sqrt(jnp.mean(jnp.square(sol.v_bar)))}
    return v, state.lagrange, metrics

  def loss(ratio, log_ratio, v, hp):
    # -E_old[v log pi_theta] up to a constant: log_ratio = log pi_theta - log pi_old.
    return -jnp.mean(v * log_ratio), {"ratio_error": jnp.mean(jnp.abs(ratio - v))}

  return PolicyObjective(targets, loss)


def make_cppo(env: Env, config: CPPOConfig, name: str = "cppo") -> Agent:
  return make_learner(env, config, cppo_objective(config), name).agent


@struct.dataclass
class DynaState:
  agent: PPOState
  model_params: dict
  model_opt_state: optax.OptState
  buffer: replay.Buffer
  rng: jax.Array


def make_dyna_cppo(env: Env, config: DynaCPPOConfig, name: str = "dyna-cppo") -> Agent:
  learner = make_learner(env, config, cppo_objective(config), name)
  base = learner.agent
  config = base.config  # with the task's cost limit filled in
  K, H, M = config.model_horizon, config.imagined_horizon, config.imagined_starts
  if K > config.rollout_length:
    raise ConfigError(f"model_horizon = {K} must be <= rollout_length = {config.rollout_length}")
  if (H * M) % config.num_minibatches:
    raise ConfigError(f"imagined_horizon * imagined_starts = {H * M} is not divisible by "
                      f"num_minibatches = {config.num_minibatches}")
  capacity = max(1, config.buffer_size // config.rollout_length)  # items of rollout_length steps
  model = WorldModel(env.observation_size, env.action_size, config.model_hidden_sizes)

  def model_tx(hp):
    return optax.adam(hp["model_lr"])

  def init(key: jax.Array, hparams: dict | None = None) -> DynaState:
    hp = hparams_of(config) if hparams is None else hparams
    k_agent, k_model, rng = jax.random.split(key, 3)
    agent_state = base.init(k_agent, hp)
    model_params = model.init(k_model)
    example = imagination.empty_item(env.observation_size, env.action_size, config.rollout_length)
    return DynaState(agent=agent_state, model_params=model_params,
                     model_opt_state=model_tx(hp).init(model_params),
                     buffer=replay.init(example, capacity), rng=rng)

  def update(state: DynaState):
    # Line 2-3: a real batch and the CPPO update on it.
    agent_state, metrics, data = learner.update_with_data(state.agent)
    hp = agent_state.hparams
    rng, k_model, k_starts, k_imagine, k_learn = jax.random.split(state.rng, 5)

    # Line 4: store the real transitions.
    buffer = replay.add(state.buffer, imagination.trajectory_items(data))

    # Lines 5-6: Adam steps of F_phi on Eq. 5 (normalised by the agent's observation stats).
    w = hp["model_weight_decay"] ** jnp.arange(K)
    w = w / w.sum()
    tx = model_tx(hp)

    def model_step(carry, key):
      params, opt_state = carry
      segments = imagination.sample_segments(buffer, key, config.model_batch_size, K)
      params, opt_state, loss = model.sgd_step(params, opt_state, tx, agent_state.obs_stats,
                                               segments, loss="multi_step", weights=w)
      return (params, opt_state), loss

    (model_params, model_opt_state), model_losses = jax.lax.scan(
        model_step, (state.model_params, state.model_opt_state),
        jax.random.split(k_model, config.model_updates))

    # Lines 7-12: imagined rollouts from real states under the current policy, then the same
    # CPPO update on each imagined batch (J_c stays the real batch's measured episode cost).
    real_obs = data.obs.reshape((-1, env.observation_size))
    j_c = agent_state.last_episode[1]

    def imagined_update(agent_state, keys):
      k_starts, k_imagine, k_learn = keys
      starts = real_obs[jax.random.randint(k_starts, (M,), 0, real_obs.shape[0])]
      act = learner.act(agent_state.params, agent_state.obs_stats, agent_state.hparams)
      imagined = imagination.imagine(model, model_params, agent_state.obs_stats, act, starts,
                                     k_imagine, H)
      agent_state, learn_metrics = learner.learn(agent_state, imagined, j_c, k_learn)
      return agent_state, {"imagined_step_reward": imagined.reward.mean(),
                           "imagined_step_cost": imagined.cost.mean(),
                           "imagined_case": learn_metrics["case"]}

    keys = jnp.stack([jax.random.split(k, config.imagined_updates)
                      for k in (k_starts, k_imagine, k_learn)], axis=1)
    agent_state, imagined_metrics = jax.lax.scan(imagined_update, agent_state, keys)

    model_metrics = {"model_loss": model_losses[-1] if config.model_updates else jnp.nan,
                     **{k: v.mean() for k, v in imagined_metrics.items()}}
    metrics = {**metrics, **{f"{name}/{k}": v for k, v in model_metrics.items()}}
    return DynaState(agent=agent_state, model_params=model_params,
                     model_opt_state=model_opt_state, buffer=buffer, rng=rng), metrics

  def policy(state: DynaState, obs, key=None, deterministic=False):
    return base.policy(state.agent, obs, key, deterministic)

  nan_metrics = ()
  if config.model_updates == 0 or config.imagined_updates == 0:
    nan_metrics = tuple(f"{name}/{k}" for k in ("model_loss", "imagined_step_reward",
                                                  "imagined_step_cost", "imagined_case"))
  return Agent(name=name, config=config, env=env, init=init, update=update, policy=policy,
               nan_metrics=nan_metrics)
