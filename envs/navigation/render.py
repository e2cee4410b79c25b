"""Top-down pictures of navigation episodes: robot, heading, trail, goal, hazards, ... as a GIF.

Drawn with Pillow (a dependency of matplotlib), on the host, from the stacked ``NavState`` of an
episode; nothing here is traced by JAX. ``save_gif`` is what ``jaxsafe eval RUN_DIR --video``
calls.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxsafe.envs.navigation import tasks

#: RGB colours of the pictures (Safety-Gym's palette, roughly).
COLORS = {
    "floor": (245, 245, 240), "grid": (225, 225, 220), "hazard": (70, 110, 230),
    "vase": (60, 190, 190), "button": (240, 150, 40), "gremlin": (150, 60, 200),
    "goal": (60, 200, 80), "robot": (220, 40, 40), "trail": (240, 140, 140),
    "wall": (230, 190, 0), "circle": (160, 160, 160), "text": (20, 20, 20),
}


class Canvas:
  """Maps world metres to pixels: the square [-half, half]^2 onto a size x size image."""

  def __init__(self, half: float, size: int):
    self.half, self.size = half, size
    self.scale = size / (2 * half)

  def px(self, x: float, y: float) -> tuple[float, float]:
    return ((x + self.half) * self.scale, (self.half - y) * self.scale)

  def disc(self, draw: ImageDraw.ImageDraw, center, radius: float, fill=None, outline=None,
           width: int = 1) -> None:
    cx, cy = self.px(*center)
    r = radius * self.scale
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)


def _frame(task: tasks.NavigationEnv, nav, trail: np.ndarray, canvas: Canvas, caption: str):
  image = Image.new("RGB", (canvas.size, canvas.size), COLORS["floor"])
  draw = ImageDraw.Draw(image)
  for tick in np.arange(-np.floor(canvas.half), canvas.half + 1e-9, 0.5):
    draw.line([canvas.px(tick, -canvas.half), canvas.px(tick, canvas.half)], fill=COLORS["grid"])
    draw.line([canvas.px(-canvas.half, tick), canvas.px(canvas.half, tick)], fill=COLORS["grid"])
  if task.task == "circle":
    canvas.disc(draw, (0.0, 0.0), tasks.CIRCLE_RADIUS, outline=COLORS["circle"], width=2)
    for x in (-tasks.CIRCLE_LIMIT, tasks.CIRCLE_LIMIT):
      draw.line([canvas.px(x, -canvas.half), canvas.px(x, canvas.half)], fill=COLORS["wall"],
                width=3)
  for p in nav["hazards"]:
    canvas.disc(draw, p, tasks.HAZARD_SIZE, fill=COLORS["hazard"])
  for p in nav["vases"]:
    canvas.disc(draw, p, tasks.VASE_SIZE, fill=COLORS["vase"])
  for i, p in enumerate(nav["buttons"]):
    goal = i == int(nav["goal_index"])
    canvas.disc(draw, p, tasks.BUTTON_SIZE, fill=COLORS["goal" if goal else "button"])
  for p in nav["gremlins"]:
    canvas.disc(draw, p, tasks.GREMLIN_SIZE, fill=COLORS["gremlin"])
  if task.task == "goal":
    canvas.disc(draw, nav["goal"], tasks.GOAL_SIZE, outline=COLORS["goal"], width=3)
  if len(trail) > 1:
    draw.line([canvas.px(*p) for p in trail], fill=COLORS["trail"], width=2)
  pos, radius = nav["pos"], task.robot.radius
  heading = float(nav["heading"]) + task.robot.forward_angle
  canvas.disc(draw, pos, radius, fill=COLORS["robot"])
  tip = pos + 1.8 * radius * np.array([np.cos(heading), np.sin(heading)])
  draw.line([canvas.px(*pos), canvas.px(*tip)], fill=COLORS["text"], width=2)
  draw.text((6, 4), caption, fill=COLORS["text"])
  return image


def save_gif(task: tasks.NavigationEnv, navs: tasks.NavState, rewards, costs, path: str,
             every: int = 4, size: int = 320, fps: int = 25) -> int:
  """Writes the episode ``navs`` (NavState stacked over T steps) as an animated GIF.

  Args:
    task: the unwrapped navigation task that produced the episode.
    rewards, costs: the per-step reward and cost, (T,), for the caption's running sums.
    every: draw every ``every``-th step (the trail keeps all steps).
    size: image side in pixels.
    fps: frames per second of the GIF (the default shows 4 steps of 0.02 s per 0.04 s: 2x speed).
  Returns:
    the number of frames written.
  """
  if every < 1 or size < 32:
    raise ValueError(f"need every >= 1 and size >= 32, got every={every}, size={size}")
  states = {name: np.asarray(getattr(navs, name)) for name in
            ("hazards", "vases", "buttons", "goal", "goal_index")}
  states["gremlins"] = np.asarray(navs.gremlins)
  states["pos"], states["heading"] = np.asarray(navs.pose.pos), np.asarray(navs.pose.heading)
  rewards, costs = np.cumsum(np.asarray(rewards)), np.cumsum(np.asarray(costs))
  steps = len(states["pos"])
  half = max(task.arena + 0.5, float(np.abs(states["pos"]).max()) + 0.3)
  canvas = Canvas(half, size)
  frames = []
  for t in range(0, steps, every):
    nav = {name: value[t] for name, value in states.items()}
    caption = (f"{task.robot.name}-{task.task}  step {t + 1}  return {rewards[t]:.1f}  "
               f"cost {costs[t]:.0f}")
    frames.append(_frame(task, nav, states["pos"][max(0, t - 300):t + 1], canvas, caption))
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                 loop=0, optimize=True)
  return len(frames)
