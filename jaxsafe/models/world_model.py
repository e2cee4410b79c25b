"""World model F(s, a) -> (s', r, c) of MB-CGPO (CGPO App. F.4.2, Eq. 85), and an env built on it.

The network is an MLP on the normalised observation and the action; it predicts the change of
the observation, so s' = s + Delta(s, a), and the step's reward and cost. It is trained by the
mean squared error of Eq. 85,

    L = |F_s(s, a) - s'|^2 + (F_r(s, a) - r)^2 + (F_c(s, a) - c)^2,

averaged over a batch; Dyna-CPPO trains the same network with the K-step open-loop loss of its
Eq. 5 (``multi_step_loss``). ``ModelEnv`` wraps trained parameters as a differentiable ``Env`` whose
state is the observation, so gradients can be taken through imagined rollouts exactly as through
a simulator (Algorithm 3). The model has no termination head: imagined episodes run the whole
horizon (the tasks MB-CGPO targets, function-floor and swimmer-velocity, never terminate).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct

from jaxsafe.core import normalize, replay
from jaxsafe.core.experience import Transition
from jaxsafe.core.networks import MLP
from jaxsafe.envs.core import Env, State


class WorldModelNet(nn.Module):
  """(normalised s, a) -> (Delta s, r, c)."""

  obs_size: int
  hidden_sizes: Sequence[int] = (128, 128)
  activation: str = "swish"

  @nn.compact
  def __call__(self, obs_normalized: jax.Array, action: jax.Array):
    out = MLP(self.hidden_sizes, self.obs_size + 2, self.activation, out_scale=1.0)(
        jnp.concatenate([obs_normalized, action], axis=-1))
    return out[..., :self.obs_size], out[..., self.obs_size], out[..., self.obs_size + 1]


class WorldModel:
  """The network, its loss and its Adam update, as pure functions of (params, obs stats)."""

  def __init__(self, obs_size: int, action_size: int, hidden_sizes: Sequence[int] = (128, 128),
               activation: str = "swish"):
    self.obs_size, self.action_size = obs_size, action_size
    self.net = WorldModelNet(obs_size, tuple(hidden_sizes), activation)

  def init(self, key: jax.Array):
    return self.net.init(key, jnp.zeros((self.obs_size,)), jnp.zeros((self.action_size,)))

  def predict(self, params, stats: normalize.RunningStats, obs: jax.Array, action: jax.Array):
    """(s', r, c) predicted for (s, a)."""
    delta, reward, cost = self.net.apply(params, normalize.normalize(stats, obs), action)
    return obs + delta, reward, cost

  def loss(self, params, stats: normalize.RunningStats, batch: Transition) -> jax.Array:
    """Eq. 85 averaged over a batch of transitions [B] (weighted by ``batch.alive``)."""
    next_obs, reward, cost = self.predict(params, stats, batch.obs, batch.action)
    squared = (jnp.sum(jnp.square(next_obs - batch.next_obs), axis=-1)
               + jnp.square(reward - batch.reward) + jnp.square(cost - batch.cost))
    return (batch.alive * squared).sum() / jnp.maximum(batch.alive.sum(), 1.0)

  def multi_step_loss(self, params, stats: normalize.RunningStats, batch: Transition,
                      weights: jax.Array) -> jax.Array:
    """Dyna-CPPO's K-step loss (the Dyna-CPPO specification, Eq. 5), with reward and cost terms.

    From s_t the model is rolled open-loop through a_t .. a_{t+K-1}; at each k = 1..K

        e_k = |(F^k_s - s_{t+k}) / sigma|_2 + (F^k_r - r_{t+k-1})^2 + (F^k_c - c_{t+k-1})^2,

    with sigma the running observation std (so every coordinate counts, whatever its scale),
    and L = sum_k w_k mean_b e_k over the items whose segment is still inside one episode at k.
    ``batch`` holds K-step segments [B, K, ...] (``imagination.sample_segments``); ``alive``
    masks the steps past the episode a segment started in.
    """
    def one_step(obs, action):
      next_obs, reward, cost = self.predict(params, stats, obs, action)
      return next_obs, (next_obs, reward, cost)

    # Time-major scan over the K actions of every item.
    _, (obs_hat, reward_hat, cost_hat) = jax.lax.scan(
        one_step, batch.obs[:, 0], jnp.swapaxes(batch.action, 0, 1))
    obs_hat, reward_hat, cost_hat = (jnp.swapaxes(x, 0, 1) for x in (obs_hat, reward_hat, cost_hat))
    scaled = (obs_hat - batch.next_obs) / jnp.sqrt(stats.var + 1e-8)
    state_error = jnp.sqrt(jnp.sum(jnp.square(scaled), axis=-1) + 1e-12)  # finite gradient at 0
    error = (state_error + jnp.square(reward_hat - batch.reward)
             + jnp.square(cost_hat - batch.cost))  # [B, K]
    per_k = (batch.alive * error).sum(0) / jnp.maximum(batch.alive.sum(0), 1.0)
    return jnp.sum(weights * per_k)

  def sgd_step(self, params, opt_state, tx: optax.GradientTransformation,
               stats: normalize.RunningStats, batch, loss: str = "one_step", weights=None):
    """One Adam step on Eq. 85 (``loss="one_step"``, transitions [B]) or on Eq. 5
    (``loss="multi_step"``, segments [B, K] and the weights w_k)."""
    if loss == "one_step":
      loss_fn = self.loss
    elif loss == "multi_step":
      loss_fn = lambda p, s, b: self.multi_step_loss(p, s, b, weights)
    else:
      raise ValueError(f"loss must be 'one_step' or 'multi_step', got {loss!r}")
    loss, grads = jax.value_and_grad(loss_fn)(params, stats, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


  def train(self, state: ModelState, stats: normalize.RunningStats,
            tx: optax.GradientTransformation, key: jax.Array, num_steps: int, sample,
            loss: str = "one_step", weights=None):
    """``num_steps`` Adam steps, each on ``sample(buffer, key)`` from the state's buffer;
    returns the new ``ModelState`` and the losses [num_steps]."""

    def one_step(carry, k):
      params, opt_state = carry
      params, opt_state, value = self.sgd_step(params, opt_state, tx, stats,
                                               sample(state.buffer, k), loss, weights)
      return (params, opt_state), value

    (params, opt_state), losses = jax.lax.scan(one_step, (state.params, state.opt_state),
                                               jax.random.split(key, num_steps))
    return state.replace(params=params, opt_state=opt_state), losses


class ModelEnv(Env):
  """A differentiable env whose dynamics, reward and cost are a trained ``WorldModel``.

  The state is the observation; ``reset`` is not defined (imagined episodes start from real
  states, see ``from_obs``). Not vmapped: wrap it in ``VmapWrapper`` or call it on batches.
  """

  differentiable = True

  def __init__(self, model: WorldModel, params, stats: normalize.RunningStats,
               episode_length: int, cost_limit: float):
    self.model, self.params, self.stats = model, params, stats
    self.episode_length, self.cost_limit = episode_length, cost_limit

  @property
  def observation_size(self) -> int:
    return self.model.obs_size

  @property
  def action_size(self) -> int:
    return self.model.action_size

  @staticmethod
  def from_obs(obs: jax.Array) -> State:
    """An imagined state at observation ``obs`` (any leading batch shape)."""
    zero = jnp.zeros(obs.shape[:-1])
    return State(sim_state=obs, obs=obs, reward=zero, cost=zero, done=zero, metrics={},
                 info={"truncation": zero})

  def reset(self, key: jax.Array) -> State:
    raise NotImplementedError("imagined episodes start from real observations: use from_obs")

  def step(self, state: State, action: jax.Array) -> State:
    next_obs, reward, cost = self.model.predict(self.params, self.stats, state.obs, action)
    return state.replace(sim_state=next_obs, obs=next_obs, reward=reward, cost=cost,
                         done=jnp.zeros_like(reward))


@struct.dataclass
class ModelState:
  """A world model being trained: its parameters, Adam state and replay buffer of real steps."""

  params: dict
  opt_state: optax.OptState
  buffer: replay.Buffer
