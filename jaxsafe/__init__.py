"""jaxsafe: JAX-native safe reinforcement learning.

``jaxsafe.envs`` (tasks), ``jaxsafe.agents`` (algorithms), ``jaxsafe.train`` (runner, logging,
checkpoints, evaluation, plots).
"""

__version__ = "0.1.0"
