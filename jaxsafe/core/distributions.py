"""Gaussian and tanh-Gaussian action distributions (distrax).

Agents keep the *pre-squash* sample ``raw`` of a tanh-Gaussian and evaluate log-probabilities at
it: log pi(a) = log N(raw; mu, sigma) - sum log(1 - tanh(raw)^2), where the Jacobian term comes
from distrax's numerically stable ``Tanh.forward_log_det_jacobian``. Evaluating at ``raw`` avoids
``atanh`` of actions that float32 has rounded to exactly +-1.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

from jaxsafe.core.experience import ActionSample

KINDS = ("normal", "tanh_normal")


def make_distribution(kind: str, mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
  """A diagonal Gaussian (``normal``) or its tanh squashing (``tanh_normal``)."""
  base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
  if kind == "normal":
    return distrax.Independent(distrax.Normal(mean, jnp.exp(log_std)), 1)  # not a Transformed
  if kind == "tanh_normal":
    return distrax.Transformed(base, distrax.Block(distrax.Tanh(), 1))
  raise ValueError(f"unknown distribution '{kind}'; valid: {', '.join(KINDS)}")


def _base(dist: distrax.Distribution) -> distrax.Distribution:
  return dist.distribution if isinstance(dist, distrax.Transformed) else dist


def postprocess(dist: distrax.Distribution, raw: jax.Array) -> jax.Array:
  """Maps a pre-squash sample to the action the env receives."""
  return dist.bijector.forward(raw) if isinstance(dist, distrax.Transformed) else raw


def sample(dist: distrax.Distribution, key: jax.Array) -> ActionSample:
  """Returns ``(action, raw_action, log_prob)`` with ``log_prob`` evaluated stably at ``raw``."""
  raw = _base(dist).sample(seed=key)
  return ActionSample(postprocess(dist, raw), raw, log_prob(dist, raw))


def log_prob(dist: distrax.Distribution, raw: jax.Array) -> jax.Array:
  """log pi(action) for the action ``postprocess(dist, raw)``."""
  lp = _base(dist).log_prob(raw)
  if isinstance(dist, distrax.Transformed):
    lp = lp - dist.bijector.forward_log_det_jacobian(raw)
  return lp


def mode(dist: distrax.Distribution) -> jax.Array:
  """Deterministic action: the squashed mean of the Gaussian."""
  return postprocess(dist, _base(dist).mean())


def act(dist: distrax.Distribution, key: jax.Array | None, deterministic: bool) -> jax.Array:
  """A policy's action: the ``mode`` when ``deterministic``, else a sample drawn with ``key``."""
  return mode(dist) if deterministic else sample(dist, key).action


def entropy(dist: distrax.Distribution) -> jax.Array:
  """Entropy of the pre-squash Gaussian (the tanh term has no closed form; as Brax's PPO)."""
  return _base(dist).entropy()


def kl_divergence(p: distrax.Distribution, q: distrax.Distribution) -> jax.Array:
  """KL(p || q) of two distributions of the same ``KINDS``: the KL of their Gaussians, which is
  exact for the tanh-squashed pair too (a shared bijection leaves the KL unchanged)."""
  return _base(p).kl_divergence(_base(q))
