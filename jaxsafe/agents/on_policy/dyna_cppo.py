"""Dyna-CPPO: CPPO plus a multi-step dynamics model and imagined rollouts.

The specification is Sec. 2 and Algorithm 1 of the Dyna-CPPO specification (docs/algorithms.md). One ``update``: the CPPO
update on a real batch (lines 2-3, ``agents.on_policy.cppo.cppo_update``); the batch goes into a replay
buffer (line 4); the dynamics model F_phi, with reward and cost heads, takes ``model_updates``
Adam steps on the K-step loss of Eq. 5 (lines 5-6); imagined rollouts of H steps start from
states of the real batch, with actions from the current policy (lines 7-11); and the agent takes
the same CPPO step (``cppo_step``) on each imagined batch (line 12), ``imagined_updates`` times
per real update. Our choices where the specification is silent are in docs/algorithms.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsafe.agents.base import Agent, ConfigError, config, hparam, hparams_of, static
from jaxsafe.agents.on_policy.base import ActorCritic, OnPolicyState
from jaxsafe.agents.on_policy.cppo import CPPOConfig, cppo_step, cppo_update, e_step_flags
from jaxsafe.core import replay
from jaxsafe.core.metrics import prefixed
from jaxsafe.envs.core import Env
from jaxsafe.models import imagination
from jaxsafe.models.world_model import ModelState, WorldModel


@config
class DynaCPPOConfig(CPPOConfig):
  """Hyper-parameters of ``dyna-cppo``: ``CPPOConfig`` plus the model and imagination of
  Algorithm 1. The specification gives no values; ours are small and documented in
  docs/algorithms.md."""

  model_horizon: int = static(5, 1, doc="K: open-loop steps of the multi-step model loss (Eq. 5)")
  model_weight_decay: float = hparam(0.8, 0.0, 1.0, doc="w_k proportional to decay^(k-1), "
                                     "normalised to sum 1 (Eq. 5)")
  model_hidden_sizes: tuple[int, ...] = static((128, 128), doc="hidden layers of F_phi")
  model_learning_rate: float = hparam(1e-3, 0.0, 1.0, doc="Adam step size of F_phi")
  model_updates: int = static(50, 0, doc="Adam steps on Eq. 5 per real update")
  model_batch_size: int = static(256, 1, doc="segments per model step")
  buffer_capacity: int = static(64_000, 1, doc="real transitions kept for the model (FIFO)")
  imagined_horizon: int = static(10, 1, doc="H: steps of each imagined rollout")
  imagined_starts: int = static(640, 1, doc="imagined rollouts per imagined batch (start "
                                "states drawn from the real batch)")
  imagined_updates: int = static(1, 0, doc="CPPO updates on imagined batches per real update")


@struct.dataclass
class DynaState:
  agent: OnPolicyState
  model: ModelState
  rng: jax.Array


def make_dyna_cppo(env: Env, config: DynaCPPOConfig, name: str = "dyna-cppo") -> Agent:
  ac = ActorCritic(env, config)
  K, H, M = config.model_horizon, config.imagined_horizon, config.imagined_starts
  if K > config.rollout_length:
    raise ConfigError(f"model_horizon = {K} must be <= rollout_length = {config.rollout_length}")
  if (H * M) % config.num_minibatches:
    raise ConfigError(f"imagined_horizon * imagined_starts = {H * M} is not divisible by "
                      f"num_minibatches = {config.num_minibatches}")
  capacity = max(1, config.buffer_capacity // config.rollout_length)  # items of rollout_length
  model = WorldModel(env.observation_size, env.action_size, config.model_hidden_sizes)

  def init(key: jax.Array, hparams=None) -> DynaState:
    hp = hparams_of(config) if hparams is None else hparams
    k_agent, k_model, rng = jax.random.split(key, 3)
    params = model.init(k_model)
    example = imagination.empty_item(env.observation_size, env.action_size, config.rollout_length)
    return DynaState(agent=ac.init(k_agent, hp), rng=rng, model=ModelState(
        params=params, opt_state=optax.adam(hp.model_learning_rate).init(params),
        buffer=replay.init(example, capacity)))

  def imagined_update(agent: OnPolicyState, model_params, real_obs, keys):
    """Lines 7-12: H imagined steps from M real states, then the CPPO step on them (J_c stays
    the real batch's measured episode cost)."""
    k_starts, k_imagine, k_learn = keys
    starts = real_obs[jax.random.randint(k_starts, (M,), 0, real_obs.shape[0])]
    imagined = imagination.imagine(model, model_params, agent.obs_stats, ac.act(agent), starts,
                                   k_imagine, H)
    params, opt_state, step = cppo_step(ac, agent, imagined, agent.last_episode[1], k_learn)
    return agent.replace(params=params, opt_state=opt_state), {
        "imagined_step_reward": imagined.reward.mean(),
        "imagined_step_cost": imagined.cost.mean(), "imagined_case": step["case"]}

  def update(state: DynaState):
    # --- Lines 2-3: a real batch and the CPPO update on it. --------------------------------
    agent, metrics, data = cppo_update(ac, state.agent, name)
    hp = agent.hparams
    rng, k_model, k_starts, k_imagine, k_learn = jax.random.split(state.rng, 5)

    # --- Line 4: store the real transitions. -----------------------------------------------
    model_state = state.model.replace(
        buffer=replay.add(state.model.buffer, imagination.trajectory_items(data)))

    # --- Lines 5-6: Adam steps of F_phi on Eq. 5 (normalised by the agent's obs stats). ----
    w = hp.model_weight_decay ** jnp.arange(K)
    model_state, model_losses = model.train(
        model_state, agent.obs_stats, optax.adam(hp.model_learning_rate), k_model,
        config.model_updates,
        lambda buffer, k: imagination.sample_segments(buffer, k, config.model_batch_size, K),
        loss="multi_step", weights=w / w.sum())

    # --- Lines 7-12: imagined rollouts and CPPO steps on them. -----------------------------
    real_obs = data.obs.reshape((-1, env.observation_size))
    keys = jnp.stack([jax.random.split(k, config.imagined_updates)
                      for k in (k_starts, k_imagine, k_learn)], axis=1)
    agent, imagined = jax.lax.scan(
        lambda a, k: imagined_update(a, model_state.params, real_obs, k), agent, keys)

    model_metrics = {"model_loss": model_losses[-1] if config.model_updates else jnp.nan,
                     **{k: v.mean() for k, v in imagined.items()}}
    return (DynaState(agent=agent, model=model_state, rng=rng),
            {**metrics, **prefixed(name, model_metrics)})

  nan_metrics = ()
  if config.model_updates == 0 or config.imagined_updates == 0:
    nan_metrics = tuple(f"{name}/{k}" for k in ("model_loss", "imagined_step_reward",
                                                  "imagined_step_cost", "imagined_case"))
  return Agent(name=name, config=config, env=env, init=init, update=update,
               policy=lambda state, *args, **kw: ac.policy(state.agent, *args, **kw),
               steps_per_update=ac.steps_per_update, nan_metrics=nan_metrics,
               stop_flags=e_step_flags(name))
