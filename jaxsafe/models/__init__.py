"""Learned models: world models of (s, a) -> (s', r, c) and the replay buffer that feeds them."""

from jaxsafe.models import buffer, world_model

__all__ = ["buffer", "world_model"]
