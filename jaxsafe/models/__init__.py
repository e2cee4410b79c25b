"""Learned models: world models of (s, a) -> (s', r, c), their losses and imagined rollouts."""

from jaxsafe.models import world_model

__all__ = ["world_model"]
