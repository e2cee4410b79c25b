"""Networks shared by the agents: MLPs, Gaussian actors and value critics (Flax linen)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "swish": nn.swish,
}


class MLP(nn.Module):
  """Fully connected network; orthogonal init (gain sqrt 2 hidden, ``out_scale`` output)."""

  hidden_sizes: Sequence[int]
  out_size: int
  activation: str = "tanh"
  out_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    for size in self.hidden_sizes:
      x = act(nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x))
    return nn.Dense(self.out_size, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


class GaussianActor(nn.Module):
  """Diagonal Gaussian policy head: state-dependent mean, state-independent log std.

  Returns ``(mean, log_std)`` of the pre-squash Gaussian (see ``distributions.py``). The small
  output scale of the mean follows the PPO implementation study of Andrychowicz et al. (2021).
  """

  action_size: int
  hidden_sizes: Sequence[int] = (64, 64)
  activation: str = "tanh"
  log_std_init: float = -0.5

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = MLP(self.hidden_sizes, self.action_size, self.activation, out_scale=0.01)(obs)
    log_std = self.param("log_std", nn.initializers.constant(self.log_std_init),
                         (self.action_size,))
    return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
  """State-value critic V(s) -> scalar."""

  hidden_sizes: Sequence[int] = (64, 64)
  activation: str = "tanh"
  out_scale: float = 1.0  # of the output layer's initial weights

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(self.hidden_sizes, 1, self.activation, out_scale=self.out_scale)(obs)[..., 0]


class StateGaussianActor(nn.Module):
  """Diagonal Gaussian policy head with a state-dependent log std (the off-policy agents').

  Returns ``(mean, log_std)``, log std clipped to [-20, 2] as in SAC implementations
  (``agents.off_policy.base`` bounds the mean to the action box with a tanh)."""

  action_size: int
  hidden_sizes: Sequence[int] = (256, 256)
  activation: str = "relu"

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    out = MLP(self.hidden_sizes, 2 * self.action_size, self.activation, out_scale=0.01)(obs)
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, -20.0, 2.0)


class QCritic(nn.Module):
  """Action-value critic Q(s, a) -> scalar on the concatenated observation and action."""

  hidden_sizes: Sequence[int] = (256, 256)
  activation: str = "relu"

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, action], axis=-1)
    return MLP(self.hidden_sizes, 1, self.activation, out_scale=1.0)(x)[..., 0]


class TwoHeadCritic(nn.Module):
  """Reward and cost values (V_R(s), V_C(s)) from one shared torso with two linear heads."""

  hidden_sizes: Sequence[int] = (64, 64)
  activation: str = "tanh"

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    values = MLP(self.hidden_sizes, 2, self.activation, out_scale=1.0)(obs)
    return values[..., 0], values[..., 1]


class TimeCritic(nn.Module):
  """Time-conditioned critic V(s, t) for finite horizons (CGPO App. A.5): input [s, t / T].

  Its output layer starts near zero (``out_scale`` 0.01): the short-horizon gradient uses
  grad_s V, and an untrained critic's input gradient is noise, so a fresh critic should add
  little to the gradient rather than a random direction."""

  horizon: int
  hidden_sizes: Sequence[int] = (64, 64)
  activation: str = "tanh"
  out_scale: float = 0.01

  @nn.compact
  def __call__(self, obs: jax.Array, t: jax.Array) -> jax.Array:
    tau = jnp.asarray(t, obs.dtype)[..., None] / self.horizon
    tau = jnp.broadcast_to(tau, obs.shape[:-1] + (1,))
    return Critic(self.hidden_sizes, self.activation, self.out_scale)(
        jnp.concatenate([obs, tau], axis=-1))
