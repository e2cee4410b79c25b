"""SHAC-Lag / BPTT-Lag with another rule for the multiplier (issue 17, acceptance 2): does a
different dual step hold the limit where the default ascent step oscillates?

The ablation swaps ``agents.first_order.shac_lag.lagrangian_gradient_step`` for one of:

- ``pid``: lambda from ``lagrange.pid_update`` with pid-lag's gains (Stooke et al. 2020) on J_C - b;
- ``unit``: Adam descent on -(g / |g| - lambda q / |q|), with ascent lambda += lr (J_C / b - 1):
  the multiplier's target is lambda = 1 (g parallel to q) on every task, whatever its units;
- ``unit-pid``: the same unit gradients, lambda from a PID on the relative violation J_C / |b| - 1
  (gains without units, ``--gains Kp,Ki,Kd``: Kp 1 weighs q as much as g at a 100% violation;
  default 1, 0.05, 0.5; EMA 0.5),
  to damp the integral-only cycle without gains in the task's cost units;
- ``adam``: OmniSafe's multiplier (issue 39): Adam (betas 0.9, 0.999, eps 1e-8) descending the
  loss -lambda (J_C - b) with step ``--adam-learning-rate`` (0.035, OmniSafe's ``lambda_lr``),
  lambda clipped at 0; its steps have the size of the learning rate whatever the cost's units.
  Adam's moments and count are kept in the multiplier state's PID fields (integral: m,
  smoothed_delta: v, prev_cost: t), which this rule does not otherwise use.

then trains like ``generalisation.py run`` (defaults otherwise; finished runs are skipped) and
prints its table. Results: docs/benchmarks.md, "SHAC-Lag's multiplier on the four tasks". These
are the ablations measured against the ascent step (issue 17); the library's own rules, the
predictive multiplier (the default since issue 39) and the ascent step, are chosen with
``generalisation.py run --set multiplier_rule=predictive|ascent``.

    .venv/bin/python benchmarks/first_order_dual.py pid --out /tmp/dual_pid
    .venv/bin/python benchmarks/first_order_dual.py unit --out /tmp/dual_unit
    .venv/bin/python benchmarks/first_order_dual.py unit-pid --out /tmp/dual_unit_pid
    .venv/bin/python benchmarks/first_order_dual.py adam --out /tmp/dual_adam --task reach-around \
        swing-up push-wall balance function
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generalisation


def adam_multiplier(lag, episode_cost, cost_limit, learning_rate, b1=0.9, b2=0.999, eps=1e-8):
  """One Adam step of lambda on the loss -lambda (J_C - b), then lambda >= 0 (OmniSafe's
  ``Lagrange.update_lagrange_multiplier``)."""
  import jax.numpy as jnp

  grad = -(episode_cost - cost_limit)
  m = b1 * lag.integral + (1.0 - b1) * grad
  v = b2 * lag.smoothed_delta + (1.0 - b2) * grad ** 2
  t = lag.prev_cost + 1.0
  step = learning_rate * (m / (1.0 - b1 ** t)) / (jnp.sqrt(v / (1.0 - b2 ** t)) + eps)
  return lag.replace(multiplier=jnp.maximum(0.0, lag.multiplier - step), integral=m,
                     smoothed_delta=v, prev_cost=t)


def dual_step(rule: str, unit_learning_rate: float, unit_pid_gains=(1.0, 0.05, 0.5),
              adam_learning_rate: float = 0.035):
  """A drop-in for ``shac_lag.lagrangian_gradient_step`` with the multiplier rule ``rule``."""
  import jax
  import optax

  from jaxsafe.agents.first_order.base import adam
  from jaxsafe.core import lagrange

  def step(actor, g, q, opt_state, lag, episode_cost, hp, recovery_weight=None):
    if rule == "pid":  # pid-lag's defaults
      lag = lagrange.pid_update(lag, episode_cost, hp.cost_limit, 0.1, 0.01, 0.01, 0.95, 0.95)
    elif rule == "adam":
      lag = adam_multiplier(lag, episode_cost, hp.cost_limit, adam_learning_rate)
    else:
      if rule == "unit":
        lag = lagrange.gradient_ascent_update(lag, episode_cost / hp.cost_limit, 1.0,
                                              unit_learning_rate)
      else:  # unit-pid: the PID on J_C / |b| against b / |b|
        scale = abs(hp.cost_limit)
        kp, ki, kd = unit_pid_gains
        lag = lagrange.pid_update(lag, episode_cost / scale, hp.cost_limit / scale, kp, ki, kd,
                                  0.5, 0.5)
      g_norm, q_norm = optax.global_norm(g) + 1e-12, optax.global_norm(q) + 1e-12
      g = jax.tree_util.tree_map(lambda x: x / g_norm, g)
      q = jax.tree_util.tree_map(lambda x: x / q_norm, q)
    direction = jax.tree_util.tree_map(lambda gr, qr: -(gr - lag.multiplier * qr), g, q)
    updates, opt_state = adam(hp.actor_learning_rate, hp.max_grad_norm).update(
        direction, opt_state, actor)
    return optax.apply_updates(actor, updates), opt_state, lag

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("rule", choices=("pid", "unit", "unit-pid", "adam"))
  parser.add_argument("--out", required=True)
  parser.add_argument("--task", nargs="+", default=list(generalisation.TASKS))
  parser.add_argument("--algos", default="shac-lag")
  parser.add_argument("--unit-learning-rate", type=float, default=0.05)
  parser.add_argument("--gains", default="1,0.05,0.5", help="unit-pid's Kp,Ki,Kd")
  parser.add_argument("--adam-learning-rate", type=float, default=0.035)
  parser.add_argument("--evaluate", type=int, default=0, metavar="EPISODES",
                      help="also evaluate each seed's mode policy (generalisation.py report)")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--seed-offset", type=int, default=0)
  parser.add_argument("--steps", type=int, default=1_500_000)
  args = parser.parse_args()

  from jaxsafe.agents.first_order import shac_lag

  shac_lag.lagrangian_gradient_step = dual_step(args.rule, args.unit_learning_rate,
                                              tuple(float(g) for g in args.gains.split(",")),
                                              args.adam_learning_rate)
  generalisation.run(args)
  generalisation.report(args)


if __name__ == "__main__":
  main()
