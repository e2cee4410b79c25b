"""Time of the first three calls of ``jax.jit(agent.update)`` in a user's loop, on ``cruise`` at
the agent's defaults, and how many programs the jit compiled (1 when the update's output state has
its input's types; docs/benchmarks.md, "Compiled once").

    python benchmarks/loop_compile.py ppo-lag
"""

import sys
import time

import jax

from jaxsafe import agents

name = sys.argv[1] if len(sys.argv) > 1 else "ppo-lag"
agent = agents.make(name, "cruise")
state = agent.init(jax.random.PRNGKey(0))
update = jax.jit(agent.update)
times = []
for i in range(3):
  t0 = time.perf_counter()
  state, metrics = update(state)
  jax.block_until_ready(metrics)
  times.append(time.perf_counter() - t0)
print(name, " ".join(f"{t:.2f}" for t in times), "cache size", update._cache_size())
