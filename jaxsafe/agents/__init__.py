"""Agents by id: ``agents.make(name, env, **overrides)`` and ``agents.list_agents()``."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxsafe.agents.base import Agent, ConfigError, apply_overrides, with_task_cost_limit
from jaxsafe.envs.core import Env


class AgentSpec(NamedTuple):
  config_cls: type
  build: Callable[[Env, Any], Agent]
  description: str
  #: on-policy PPO-style agents train on auto-resetting envs; the first-order ones roll out
  #: whole episodes from fresh resets themselves.
  auto_reset: bool = True


class _Entry(NamedTuple):
  module: str  # under jaxsafe.agents
  config: str  # the config class in that module
  builder: str  # builder(env, config, name) -> Agent in that module
  description: str
  auto_reset: bool = True


#: One line per algorithm (modules are imported when the algorithm is first asked for).
_AGENTS: dict[str, _Entry] = {
    "ppo": _Entry("on_policy.ppo", "PPOConfig", "make_ppo", "PPO-Clip, unconstrained reference (Schulman et al. 2017)"),
    "ppo-lag": _Entry("on_policy.ppo", "PPOLagConfig", "make_ppo_lag", "PPO with a gradient-ascent Lagrange multiplier (Ray et al. 2019)"),
    "pid-lag": _Entry("on_policy.ppo", "PIDLagConfig", "make_pid_lag", "PPO with the PID Lagrangian (Stooke et al. 2020)"),
    "pdo": _Entry("on_policy.pdo", "PDOConfig", "make_pdo", "primal-dual optimisation: unclipped surrogate, KL early stop, gradient-ascent multiplier (Chow et al. 2018)"),
    "appo": _Entry("on_policy.appo", "APPOConfig", "make_appo", "augmented PPO: the Lagrangian plus a quadratic penalty term (Dai et al. 2023)"),
    "cup": _Entry("on_policy.cup", "CUPConfig", "make_cup", "constrained update projection: PPO improvement, then a KL-held cost projection (Yang et al. 2022)"),
    "trpo": _Entry("on_policy.trpo", "TRPOConfig", "make_trpo", "TRPO: natural gradient in a KL trust region, unconstrained reference (Schulman et al. 2015)"),
    "trpo-lag": _Entry("on_policy.trpo", "TRPOLagConfig", "make_trpo_lag", "TRPO with a gradient-ascent Lagrange multiplier (Ray et al. 2019)"),
    "cpo": _Entry("on_policy.cpo", "CPOConfig", "make_cpo", "Constrained Policy Optimization: the trust-region step with a linearised cost constraint (Achiam et al. 2017)"),
    "cppo": _Entry("on_policy.cppo", "CPPOConfig", "make_cppo", "EM on probability ratios: geometric E-step, ratio-matching M-step (Xuan et al. 2023)"),
    "dyna-cppo": _Entry("on_policy.dyna_cppo", "DynaCPPOConfig", "make_dyna_cppo", "CPPO plus a multi-step dynamics model and imagined rollouts (the Dyna-CPPO specification, Alg. 1)"),
    "cgpo": _Entry("first_order.cgpo", "CGPOConfig", "make_cgpo", "gradients through the simulator, closed-form trust region (Dai et al. 2024)", False),
    "mb-cgpo": _Entry("first_order.mb_cgpo", "MBCGPOConfig", "make_mb_cgpo", "CGPO with gradients through a learned world model (Dai et al. 2024, App. F.4)", False),
    "shac-lag": _Entry("first_order.shac_lag", "SHACLagConfig", "make_shac_lag", "SHAC short-horizon gradients with a Lagrange multiplier (CGPO App. F.1)", False),
    "cvpo": _Entry("off_policy.cvpo", "CVPOConfig", "make_cvpo", "off-policy EM: convex dual E-step over sampled actions, KL-bounded M-step (Liu et al. 2022)"),
    "sac-lag": _Entry("off_policy.lagrangian", "SACLagConfig", "make_sac_lag", "SAC with the PID Lagrangian on Q_c (the CVPO paper's baseline)"),
    "td3-lag": _Entry("off_policy.lagrangian", "TD3LagConfig", "make_td3_lag", "TD3 with the PID Lagrangian on Q_c (the CVPO paper's baseline)"),
    "ddpg-lag": _Entry("off_policy.lagrangian", "DDPGLagConfig", "make_ddpg_lag", "DDPG with the PID Lagrangian on Q_c (the CVPO paper's baseline)"),
    "bptt-lag": _Entry("first_order.shac_lag", "BPTTLagConfig", "make_bptt_lag", "full-episode BPTT gradients with a Lagrange multiplier (CGPO App. F.1)", False),
}


class UnknownAgentError(ValueError):
  """An algorithm id that is not registered; the message suggests close ids."""


def list_agents() -> dict[str, str]:
  return {name: entry.description for name, entry in _AGENTS.items()}


def spec(name: str) -> AgentSpec:
  from jaxsafe.envs.registry import suggest
  if name not in _AGENTS:
    raise UnknownAgentError(f"unknown algorithm '{name}'{suggest(name, _AGENTS)}; "
                            f"valid: {', '.join(_AGENTS)}")
  entry = _AGENTS[name]
  module = importlib.import_module(f"jaxsafe.agents.{entry.module}")
  builder = getattr(module, entry.builder)
  return AgentSpec(getattr(module, entry.config),
                   lambda env, cfg: builder(env, with_task_cost_limit(cfg, env), name),
                   entry.description, entry.auto_reset)


def check_names(name: str, config_cls: type, names) -> None:
  """Raises ``ConfigError`` (one line) for a name that is not a field of the algorithm's config,
  saying which algorithms do use it: a field ``name`` does not read is never accepted silently."""
  fields = {f.name for f in dataclasses.fields(config_cls)}
  for key in names:
    if key in fields:
      continue
    users = [a for a, e in _AGENTS.items()
             if any(f.name == key for f in dataclasses.fields(spec(a).config_cls))]
    if users:
      raise ConfigError(f"'{key}' is not a hyper-parameter of {name} (it belongs to "
                        f"{', '.join(users)})")


def default_config(name: str):
  return spec(name).config_cls()


def make(name: str, env: str | Env, config=None, env_options: dict | None = None,
         **overrides) -> Agent:
  """Builds agent ``name`` on ``env`` (an id or an ``Env``), with config overrides.

  The env is wrapped for training: vmapped over ``config.num_envs``, and auto-resetting for the
  agents that need it (an ``Env`` passed in should already carry its ``TimeLimit``).
  ``env_options`` are the task's keyword arguments when ``env`` is an id; ``episode_length``
  among them is the horizon T, as in ``envs.make`` (``envs.registry.make_arguments``).
  """
  from jaxsafe import envs

  agent_spec = spec(name)
  check_names(name, agent_spec.config_cls, overrides)
  config = apply_overrides(config or agent_spec.config_cls(), overrides)
  if isinstance(env, str):
    try:
      arguments = envs.registry.make_arguments(
          env_options, num_envs=config.num_envs, auto_reset=agent_spec.auto_reset,
          episode_length=getattr(config, "episode_length", None))
    except ValueError as err:
      raise ConfigError(str(err)) from None
    train_env = envs.make(env, **arguments)
  elif env_options:
    raise ValueError("env_options apply to an env id; pass the options to envs.make instead")
  else:
    train_env = envs.training_stack(env, config.num_envs, agent_spec.auto_reset)
  return agent_spec.build(train_env, config)


__all__ = ["Agent", "ConfigError", "UnknownAgentError", "default_config", "list_agents", "make", "spec"]
