"""Time of one CPPO update on ``function`` with the old E-step (8 fix-and-re-solve rounds, before
commit 1e34d30) and with the current exact E-step, in one process: the ratio is what matters on a
shared machine.

  git show 97847c0:jaxsafe/core/ratio_region.py > /tmp/old_rr.py
  python benchmarks/e_step_timing.py /tmp/old_rr.py
"""

from __future__ import annotations

import importlib.util
import sys
import time

import jax

from jaxsafe import agents
from jaxsafe.agents.on_policy import cppo
from jaxsafe.solvers import ratio_region


def _time_update(label, calls=20):
  agent = agents.make("cppo", "function")
  state = agent.init(jax.random.PRNGKey(0))
  update = jax.jit(agent.update)
  for _ in range(3):  # compile and warm up
    state, metrics = update(state)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(calls):
    state, metrics = update(state)
  jax.block_until_ready((state, metrics))
  per_call = (time.perf_counter() - start) / calls
  print(f"{label}: {1e3 * per_call:.1f} ms per update (N = {agent.config.num_envs} x "
        f"{agent.config.rollout_length})")
  return per_call


def main(old_path):
  spec = importlib.util.spec_from_file_location("old_ratio_region", old_path)
  old = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(old)

  def old_e_step(adv, cost_adv, budget, radius, min_ratio, num_iterations=None, recover=False):
    sol = old.e_step(adv, cost_adv, budget, radius, min_ratio, 8, recover)
    return ratio_region.Solution(sol.v_bar, sol.case, sol.kappa, sol.fixed, sol.scaled >= 1)

  new_e_step = ratio_region.e_step
  times = {}
  for label, fn in (("old", old_e_step), ("new", new_e_step), ("old again", old_e_step),
                    ("new again", new_e_step)):
    cppo.ratio_region.e_step = fn
    try:
      times[label] = _time_update(label)
    finally:
      cppo.ratio_region.e_step = new_e_step
  ratio = (times["new"] + times["new again"]) / (times["old"] + times["old again"])
  print(f"new / old time per update: {ratio:.3f}")


if __name__ == "__main__":
  main(sys.argv[1])
