"""How Safety-Gymnasium's Car moves and what its sensors read: data for a faithful Car (issue 16).

Steps ``SafetyCarGoal0-v0`` (no hazards, no vases: nothing to touch but the floor) through the
bridge's compatibility layer under random actions held for 1-29 steps (amplitudes 0.01, 0.03 and
1; the wheel torques saturate at |a| = 0.02). It then fits one-step linear models of the forward
speed v, the yaw rate w and the sideways speed l in the car's frame, and compares each sensor with
what the planar state predicts. The car's forward is its body's -y axis; its LiDAR bins start from
the body's x axis.

    .venv/bin/python benchmarks/car_identification.py --episodes 40    # ~1 min
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

warnings.filterwarnings("ignore")

DT = 0.04        # the Car's env step: 10 MuJoCo steps of 4 ms
TORQUE_LIMIT = 0.02


def collect(episodes: int, steps: int = 250, seed: int = 0) -> dict[str, np.ndarray]:
  from jaxsafe.envs.safety_gymnasium_compat import import_safety_gymnasium

  sg = import_safety_gymnasium()
  env = sg.make("SafetyCarGoal0-v0")
  task = env.unwrapped.task
  rng = np.random.default_rng(seed)

  def planar():  # x, y, heading of the body x axis, world velocity, yaw rate
    mat = task.agent.mat
    return [*task.agent.pos[:2], np.arctan2(mat[1, 0], mat[0, 0]), *task.agent.vel[:2],
            task.data.qvel[5]]

  rows: dict[str, list] = {"state": [], "action": [], "next": [], "obs": []}
  for episode in range(episodes):
    env.reset(seed=episode)
    state, hold, action = planar(), 0, np.zeros(2)
    for _ in range(steps):
      if hold == 0:
        amp = rng.choice([0.01, 0.03, 1.0])
        random = rng.uniform(-amp, amp, 2)
        action = random if rng.random() < 0.7 else np.sign(random) * amp
        hold = rng.integers(1, 30)
      hold -= 1
      obs, *_ = env.step(action)
      rows["state"].append(state)
      state = planar()
      rows["action"].append(action)
      rows["next"].append(state)
      rows["obs"].append(obs[:24])
  env.close()
  return {k: np.array(v) for k, v in rows.items()}


def car_frame(state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(forward speed v, sideways speed l along the body x axis, yaw rate w)."""
  heading, velocity = state[:, 2], state[:, 3:5]
  forward = np.stack([np.sin(heading), -np.cos(heading)], 1)   # the body's -y axis
  side = np.stack([np.cos(heading), np.sin(heading)], 1)
  return (velocity * forward).sum(1), (velocity * side).sum(1), state[:, 5]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--episodes", type=int, default=40)
  args = parser.parse_args()
  data = collect(args.episodes)
  v, l, w = car_frame(data["state"])
  v2, l2, w2 = car_frame(data["next"])
  drive = np.clip(data["action"] / TORQUE_LIMIT, -1, 1)
  features = np.stack([v, w, l, drive.sum(1), drive[:, 1] - drive[:, 0], np.ones_like(v)], 1)
  names = ["v", "w", "l", "sL+sR", "sR-sL", "1"]
  print(f"{len(v)} transitions; one-step linear fits (next = sum of coef x feature):\n")
  print("| next | " + " | ".join(names) + " | R^2 | rmse | std |\n|---|" + "---:|" * 9)
  for name, target in (("v", v2), ("w", w2), ("l", l2)):
    coef, *_ = np.linalg.lstsq(features, target, rcond=None)
    residual = target - features @ coef
    print(f"| {name} | " + " | ".join(f"{c:.4f}" for c in coef)
          + f" | {1 - residual.var() / target.var():.3f} | {np.sqrt(np.mean(residual**2)):.3f}"
          f" | {target.std():.3f} |")

  obs, heading = data["obs"], data["next"][:, 2]
  side = np.stack([np.cos(heading), np.sin(heading)], 1)
  back = np.stack([-np.sin(heading), np.cos(heading)], 1)
  accel = (data["next"][:, 3:5] - data["state"][:, 3:5]) / DT
  predicted = {
      "accelerometer x": ((accel * side).sum(1), obs[:, 0]),
      "accelerometer y": ((accel * back).sum(1), obs[:, 1]),
      "velocimeter x": ((data["next"][:, 3:5] * side).sum(1), obs[:, 3]),
      "velocimeter y": ((data["next"][:, 3:5] * back).sum(1), obs[:, 4]),
      "gyro z": (data["next"][:, 5], obs[:, 8]),
      "magnetometer x": (-0.5 * np.sin(heading), obs[:, 9]),
      "magnetometer y": (-0.5 * np.cos(heading), obs[:, 10]),
  }
  print("\n| sensor | std | correlation with the planar prediction | rmse |\n|---|---:|---:|---:|")
  for name, (pred, seen) in predicted.items():
    print(f"| {name} | {seen.std():.3f} | {np.corrcoef(pred, seen)[0, 1]:.3f} | "
          f"{np.sqrt(np.mean((pred - seen) ** 2)):.3f} |")
  for name, part in (("accelerometer z", obs[:, 2]), ("|gyro x|, |gyro y|", np.abs(obs[:, 6:8])),
                     ("ballangvel_rear", obs[:, 12:15])):
    print(f"{name}: 5/50/95th percentiles {np.round(np.percentile(part, [5, 50, 95]), 3).tolist()}")


if __name__ == "__main__":
  main()
