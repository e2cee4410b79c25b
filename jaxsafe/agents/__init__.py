"""Agents by id: ``agents.make(name, env, **overrides)`` and ``agents.list_agents()``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from jaxsafe.agents.base import Agent, ConfigError, apply_overrides
from jaxsafe.envs.core import Env


class AgentSpec(NamedTuple):
  config_cls: type
  build: Callable[[Env, Any], Agent]
  description: str


def _ppo_family(constraint: str, name: str) -> AgentSpec:
  from jaxsafe.agents.ppo import PPOConfig, make_ppo
  return AgentSpec(PPOConfig, lambda env, cfg: make_ppo(env, cfg, constraint, name), "")


_AGENTS: dict[str, tuple[Callable[[], AgentSpec], str]] = {
    "ppo": (lambda: _ppo_family("none", "ppo"), "PPO-Clip, unconstrained reference (Schulman et al. 2017)"),
    "ppo-lag": (lambda: _ppo_family("lagrangian", "ppo-lag"), "PPO with a gradient-ascent Lagrange multiplier (Ray et al. 2019)"),
    "pid-lag": (lambda: _ppo_family("pid", "pid-lag"), "PPO with the PID Lagrangian (Stooke et al. 2020)"),
}


class UnknownAgentError(ValueError):
  """An algorithm id that is not registered; the message suggests close ids."""


def list_agents() -> dict[str, str]:
  return {name: desc for name, (_, desc) in _AGENTS.items()}


def spec(name: str) -> AgentSpec:
  from jaxsafe.envs.registry import suggest
  if name not in _AGENTS:
    raise UnknownAgentError(f"unknown algorithm '{name}'{suggest(name, _AGENTS)}; "
                            f"valid: {', '.join(_AGENTS)}")
  return _AGENTS[name][0]()


def default_config(name: str):
  return spec(name).config_cls()


def make(name: str, env: str | Env, config=None, **overrides) -> Agent:
  """Builds agent ``name`` on ``env`` (an id or an ``Env``), with config overrides.

  The env is wrapped for training: vmapped over ``config.num_envs`` and auto-resetting.
  """
  from jaxsafe import envs

  agent_spec = spec(name)
  config = apply_overrides(config or agent_spec.config_cls(), overrides)
  if isinstance(env, str):
    train_env = envs.make(env, num_envs=config.num_envs, auto_reset=True)
  else:
    train_env = envs.VmapWrapper(envs.EpisodeStats(envs.AutoReset(env)), config.num_envs)
  return agent_spec.build(train_env, config)


__all__ = ["Agent", "ConfigError", "UnknownAgentError", "make", "list_agents", "default_config", "spec"]
