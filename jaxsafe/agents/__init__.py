"""Agents by id: ``agents.make(name, env, **overrides)`` and ``agents.list_agents()``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from jaxsafe.agents.base import Agent, ConfigError, apply_overrides
from jaxsafe.envs.core import Env


class AgentSpec(NamedTuple):
  config_cls: type
  build: Callable[[Env, Any], Agent]
  description: str
  #: on-policy PPO-style agents train on auto-resetting envs; the gradient-based ones roll out
  #: whole episodes from fresh resets themselves.
  auto_reset: bool = True


def _ppo_family(constraint: str, name: str) -> AgentSpec:
  from jaxsafe.agents.ppo import PPOConfig, make_ppo
  return AgentSpec(PPOConfig, lambda env, cfg: make_ppo(env, cfg, constraint, name), "")


def _cppo_family(name: str) -> AgentSpec:
  from jaxsafe.agents.cppo import CPPOConfig, DynaCPPOConfig, make_cppo, make_dyna_cppo
  if name == "cppo":
    return AgentSpec(CPPOConfig, lambda env, cfg: make_cppo(env, cfg, name), "")
  return AgentSpec(DynaCPPOConfig, lambda env, cfg: make_dyna_cppo(env, cfg, name), "")


def _gradient_family(name: str) -> AgentSpec:
  from jaxsafe.agents.cgpo import GradientConfig, make_gradient_agent
  return AgentSpec(GradientConfig, lambda env, cfg: make_gradient_agent(env, cfg, name), "",
                   auto_reset=False)


_AGENTS: dict[str, tuple[Callable[[], AgentSpec], str]] = {
    "ppo": (lambda: _ppo_family("none", "ppo"), "PPO-Clip, unconstrained reference (Schulman et al. 2017)"),
    "ppo-lag": (lambda: _ppo_family("lagrangian", "ppo-lag"), "PPO with a gradient-ascent Lagrange multiplier (Ray et al. 2019)"),
    "pid-lag": (lambda: _ppo_family("pid", "pid-lag"), "PPO with the PID Lagrangian (Stooke et al. 2020)"),
    "cppo": (lambda: _cppo_family("cppo"), "EM on probability ratios: geometric E-step, ratio-matching M-step (Xuan et al. 2023)"),
    "dyna-cppo": (lambda: _cppo_family("dyna-cppo"), "CPPO plus a multi-step dynamics model and imagined rollouts (shared/papers/000, Alg. 1)"),
    "cgpo": (lambda: _gradient_family("cgpo"), "gradients through the simulator, closed-form trust region (Dai et al. 2024)"),
    "mb-cgpo": (lambda: _gradient_family("mb-cgpo"), "CGPO with gradients through a learned world model (Dai et al. 2024, App. F.4)"),
    "shac-lag": (lambda: _gradient_family("shac-lag"), "SHAC short-horizon gradients with a Lagrange multiplier (CGPO App. F.1)"),
    "bptt-lag": (lambda: _gradient_family("bptt-lag"), "full-episode BPTT gradients with a Lagrange multiplier (CGPO App. F.1)"),
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


def make(name: str, env: str | Env, config=None, env_options: dict | None = None,
         **overrides) -> Agent:
  """Builds agent ``name`` on ``env`` (an id or an ``Env``), with config overrides.

  The env is wrapped for training: vmapped over ``config.num_envs``, and auto-resetting for the
  agents that need it (an ``Env`` passed in should already carry its ``TimeLimit``).
  ``env_options`` are the task's keyword arguments when ``env`` is an id.
  """
  from jaxsafe import envs

  agent_spec = spec(name)
  config = apply_overrides(config or agent_spec.config_cls(), overrides)
  episode_length = getattr(config, "episode_length", None)
  if isinstance(env, str):
    train_env = envs.make(env, num_envs=config.num_envs, auto_reset=agent_spec.auto_reset,
                          episode_length=episode_length, **(env_options or {}))
  elif env_options:
    raise ValueError("env_options apply to an env id; pass the options to envs.make instead")
  else:
    train_env = envs.training_stack(env, config.num_envs, agent_spec.auto_reset)
  return agent_spec.build(train_env, config)


__all__ = ["Agent", "ConfigError", "UnknownAgentError", "make", "list_agents", "default_config", "spec"]
