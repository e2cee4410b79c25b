"""The FSRL half of ``benchmarks/off_policy_throughput.py``: run in FSRL's own environment (torch,
numpy<2, no JAX), it times FSRL's CVPO or SAC-Lag agent training on a stand-in for ``point-goal``.

The stand-in has point-goal's shapes (55 observations, 2 actions in [-1, 1], 1000-step episodes,
a cost in ``info["cost"]``) and costs nothing to step: random observations, zero reward and cost.
So the number printed is FSRL's own cost per env step (collector, buffer, updates) at the given
batch, networks and update-to-data ratio, without any simulator; a real task can only be slower.

    python benchmarks/fsrl_side.py --algo cvpo --env-steps 3000 --threads 2

Prints one JSON line: {"algo", "env_steps", "seconds", "steps_per_second", "versions", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def make_env(obs_size: int, act_size: int, horizon: int):
  import gymnasium as gym
  import numpy as np

  class StandIn(gym.Env):
    """Point-goal's spaces, free to step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (act_size,), np.float32)

    def __init__(self):
      self._rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
      if seed is not None:
        self._rng = np.random.default_rng(seed)
      return self._rng.standard_normal(obs_size, dtype=np.float32), {}

    def step(self, action):
      obs = self._rng.standard_normal(obs_size, dtype=np.float32)
      return obs, 0.0, False, False, {"cost": 0.0}

  gym.register("StandInPointGoal-v0", entry_point=StandIn, max_episode_steps=horizon)
  return gym.make("StandInPointGoal-v0")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--algo", choices=("cvpo", "sac-lag"), required=True)
  p.add_argument("--env-steps", type=int, default=3000)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
  p.add_argument("--batch-size", type=int, default=256)
  p.add_argument("--update-per-step", type=float, default=0.125)
  p.add_argument("--action-samples", type=int, default=32, help="CVPO's K")
  p.add_argument("--m-step-iterations", type=int, default=6, help="CVPO's M")
  p.add_argument("--obs-size", type=int, default=55)
  p.add_argument("--horizon", type=int, default=1000)
  args = p.parse_args()

  import fsrl
  import torch
  from fsrl.agent import CVPOAgent, SACLagAgent
  from fsrl.utils import BaseLogger

  env = make_env(args.obs_size, 2, args.horizon)
  common = {"logger": BaseLogger(), "cost_limit": 25.0, "device": "cpu", "thread": args.threads,
            "seed": 0, "hidden_sizes": tuple(args.hidden)}
  if args.algo == "cvpo":
    agent = CVPOAgent(env, sample_act_num=args.action_samples,
                      mstep_iter_num=args.m_step_iterations, **common)
  else:
    agent = SACLagAgent(env, **common)

  # One episode per collect; update_per_step * 1000 gradient steps after each; no test episodes.
  t0 = time.perf_counter()
  agent.learn(make_env(args.obs_size, 2, args.horizon), None, epoch=1,
              episode_per_collect=1, step_per_epoch=args.env_steps,
              update_per_step=args.update_per_step, batch_size=args.batch_size,
              save_ckpt=False, verbose=False, show_progress=False)
  seconds = time.perf_counter() - t0
  print(json.dumps({
      "algo": args.algo, "env_steps": args.env_steps, "seconds": round(seconds, 2),
      "steps_per_second": round(args.env_steps / seconds, 1),
      "gradient_steps": round(args.env_steps * args.update_per_step),
      "threads": args.threads, "hidden": args.hidden, "batch_size": args.batch_size,
      "versions": {"fsrl": getattr(fsrl, "__version__", "?"), "torch": torch.__version__,
                   "python": sys.version.split()[0]},
  }))


if __name__ == "__main__":
  main()
