"""PDO: primal-dual optimisation (Chow et al. 2018) as OmniSafe runs it, on the PPO box.

The unclipped importance-weighted surrogate -E[rho A] on the Lagrangian advantage
(A^R - lambda A^C) / (1 + lambda) of ``ppo-lag``, SGD epochs stopped early once the KL to the old
policy passes ``target_kl``, lambda by gradient ascent on the measured episode cost plus a
proportional term (``cost_rules.proportional_integral_step``, docs/algorithms.md). It differs
from the PPO box (``ppo.make_ppo``) only by the rules passed in: the loss and the KL stop.
"""

from __future__ import annotations

from jaxsafe.agents.base import Agent, config, hparam
from jaxsafe.agents.on_policy.base import OnPolicyConfig
from jaxsafe.agents.on_policy.cost_rules import (
  ProportionalTermConfig,
  lagrangian,
  proportional_integral_step,
)
from jaxsafe.agents.on_policy.ppo import make_ppo
from jaxsafe.envs.core import Env


@config
class PDOConfig(OnPolicyConfig, ProportionalTermConfig):
  """Hyper-parameters of ``pdo``: ``OnPolicyConfig`` plus OmniSafe's ``PDO.yaml``: KL early
  stopping at 0.02, multiplier step 0.035 from 0.001 (no PPO clip: PDO's surrogate is
  unclipped), and trpo-lag's proportional term (ours, issue 39; ``multiplier_kp=0`` gives
  OmniSafe's rule)."""

  target_kl: float = hparam(0.02, 1e-8, None, doc="KL early stopping of the SGD epochs")
  multiplier_learning_rate: float = hparam(0.035, 0.0, None, doc="multiplier step size")
  multiplier_init: float = hparam(0.001, 0.0, None, doc="initial multiplier")


def importance_surrogate_loss(ratio, log_ratio, advantage, hp):
  """-E[rho A]: the unclipped importance-weighted surrogate (PDO), and the mean ratio."""
  del log_ratio, hp
  return -(ratio * advantage).mean(), {"mean_ratio": ratio.mean()}


def make_pdo(env: Env, config: PDOConfig, name: str = "pdo") -> Agent:
  return make_ppo(env, config, name, lagrangian(proportional_integral_step), importance_surrogate_loss,
                  kl_stop=lambda hp: hp.target_kl)
