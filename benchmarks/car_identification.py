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
BALL_RADIUS = 0.05  # the rear caster ball (car.xml's default sphere)


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


def ball_spin_prediction(state: np.ndarray, ball: np.ndarray) -> np.ndarray:
  """The rear ball's angular velocity in its own frame if it rolled without slipping, (n, 3).

  ``state`` after the step (planar), ``ball`` the ball's rotation in the car (n, 3, 3).
  """
  heading, velocity, yaw_rate = state[:, 2], state[:, 3:5], state[:, 5]
  arm = 0.1 * np.stack([np.sin(heading), -np.cos(heading)], 1)      # the ball 0.1 ahead
  centre = velocity + yaw_rate[:, None] * np.stack([-arm[:, 1], arm[:, 0]], 1)
  rolling = np.stack([-centre[:, 1], centre[:, 0], -yaw_rate], 1) / np.array([BALL_RADIUS,
                                                                              BALL_RADIUS, 1.0])
  c, s = np.cos(heading), np.sin(heading)
  car = np.zeros((len(heading), 3, 3))
  car[:, 0, 0], car[:, 0, 1], car[:, 1, 0], car[:, 1, 1], car[:, 2, 2] = c, -s, s, c, 1.0
  return np.einsum("nji,nj->ni", car @ ball, rolling)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--episodes", type=int, default=40)
  args = parser.parse_args()
  data = collect(args.episodes)
  v, l, w = car_frame(data["state"])
  v2, l2, w2 = car_frame(data["next"])
  drive = np.clip(data["action"] / TORQUE_LIMIT, -1, 1)
  # The car is mirror-symmetric: under left <-> right, (v, sL + sR) stay and (w, l, sR - sL)
  # change sign, so v' depends on the first pair only and w', l' on the second triple only.
  even = np.stack([v, drive.sum(1)], 1)
  odd = np.stack([w, l, drive[:, 1] - drive[:, 0]], 1)
  print(f"{len(v)} transitions; one-step linear fits (next = sum of coef x feature):\n")
  print("| next | v | sL+sR | w | l | sR-sL | R^2 | rmse | std |\n|---|" + "---:|" * 8)
  rows = {}
  for name, target, features in (("v", v2, even), ("w", w2, odd), ("l", l2, odd)):
    coef, *_ = np.linalg.lstsq(features, target, rcond=None)
    residual = target - features @ coef
    rows[name] = coef
    cells = [*coef, "", "", ""] if name == "v" else ["", "", *coef]
    print(f"| {name} | " + " | ".join(c if c == "" else f"{c:.4f}" for c in cells)
          + f" | {1 - residual.var() / target.var():.3f} | {np.sqrt(np.mean(residual**2)):.3f}"
          f" | {target.std():.3f} |")

  obs = data["obs"]
  predicted = ball_spin_prediction(data["next"], obs[:, 15:24].reshape(-1, 3, 3))
  seen = obs[:, 12:15]
  scale = float((predicted * seen).sum() / (predicted**2).sum())
  spin_residual = float(np.sqrt(np.mean((scale * predicted - seen) ** 2)))
  print(f"\nballangvel_rear = {scale:.3f} x the rolling prediction; residual rmse "
        f"{spin_residual:.3f} (std {seen.std():.3f})")
  unmodelled = {"accelerometer": obs[:, 0:3], "velocimeter z": obs[:, 5:6],
                "gyro x, y": obs[:, 6:8], "magnetometer z": obs[:, 11:12]}
  print("\n| unmodelled reading | mean | std |\n|---|---|---|")
  for name, part in unmodelled.items():
    print(f"| {name} | {np.round(part.mean(0), 3).tolist()} | {np.round(part.std(0), 3).tolist()} |")
  print("\nfor envs/navigation/calibrated_car.py:")
  print(f"SPEED = {tuple(np.round(rows['v'], 4).tolist())}")
  print(f"YAW_RATE = {tuple(np.round(rows['w'], 4).tolist())}")
  print(f"SIDE_SPEED = {tuple(np.round(rows['l'], 4).tolist())}")
  print(f"BALL_ROLLING = {scale:.3f}, BALL_SPIN_NOISE = {spin_residual:.3f}")
  noise = np.concatenate([obs[:, 0:3].std(0), obs[:, 5:8].std(0), obs[:, 11:12].std(0)])
  print(f"noise std (acc x y z, vel z, gyro x y, mag z) = {tuple(np.round(noise, 4).tolist())}")


if __name__ == "__main__":
  main()
