"""The training runner: the only place in jaxsafe with I/O.

``run(RunSpec(...))`` builds the agent, stacks one agent state per run (hyper-parameter setting x
seed) and trains them all in one program: a ``jax.jit``-compiled ``lax.scan`` over a chunk of
``update``s, ``jax.vmap``-ed over the runs axis. Between chunks, on the host, it writes
``progress.csv`` and TensorBoard events, checks every metric for NaN/inf, updates the progress bar
and, after every ``checkpoint_every``-th chunk and after the last one, saves an orbax checkpoint.
With several local devices the runs axis is sharded across them (``jax.sharding``), so seeds and
settings train in parallel on all of them.

Checkpoint policy: every checkpoint holds the whole state (parameters, optimisers, normaliser,
multiplier, env states, RNG and any replay buffer), never a part of it, so a resume is always
bit-exact from the checkpoint it starts from. With ``checkpoint_every = K`` a checkpoint is
written after every K-th chunk and always after the last chunk of the run, so a crash loses at
most K chunks of training; a resume re-trains them to the same numbers (the ``progress.csv`` rows
logged after that checkpoint are dropped and written again). A larger K saves the cost of writing
a large state (a replay buffer) after every chunk, at the price of more training redone after a
crash.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe import agents
from jaxsafe.agents.base import Agent, ConfigError, apply_overrides, hparams_of, sweepable
from jaxsafe.core.metrics import STANDARD_FLAGS
from jaxsafe.train.checkpoints import Checkpointer
from jaxsafe.train.logger import RunLogger

#: metrics that are legitimately NaN (no episode has finished yet); all others must be finite.
MAY_BE_NAN = frozenset({"episode_return", "episode_cost"})


class RunDirError(ValueError):
  """A run directory that is missing, not a run, or already used."""


class TrainingDiverged(RuntimeError):
  """A loss, metric or parameter became NaN or inf; the message names iteration and metric."""


@dataclasses.dataclass
class RunSpec:
  """Everything that defines a run; saved in ``config.json`` so a run can resume.

  Attributes:
    algo: algorithm id (``jaxsafe list``).
    env: env id.
    env_options: keyword arguments of the task, ``envs.make(env, **env_options)``, e.g.
      ``{"smooth_cost": True, "fixed_layout": True}`` for a navigation task.
    seeds: number of seeds per setting (seeds ``seed_offset .. seed_offset + seeds - 1``).
    total_steps: env steps per run (rounded up to whole updates).
    overrides: hyper-parameters, ``{name: value or string}``.
    sweep: ``{name: [values]}``; the cartesian product of settings trains as one vmapped program.
    chunk_iters: updates per compiled chunk (between logs); None picks ~20 chunks.
    checkpoint_every: chunks between checkpoints (the last chunk is always saved); more than 1
      for a large state, e.g. a replay buffer, that is costly to write after every chunk.
  """

  algo: str
  env: str
  seeds: int = 1
  total_steps: int = 100_000
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  sweep: dict[str, list] = dataclasses.field(default_factory=dict)
  seed_offset: int = 0
  chunk_iters: int | None = None
  env_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  checkpoint_every: int = 1


@dataclasses.dataclass
class Plan:
  """A validated, built run: the agent, one label and hparams row per run, and its sizes."""

  spec: RunSpec
  agent: Agent
  labels: list[dict]
  keys: jax.Array
  hparams: dict[str, jax.Array]
  num_iterations: int
  chunk_iters: int


def plan(spec: RunSpec) -> Plan:
  """Validates ``spec`` and builds the agent; raises ValueError subclasses on bad input."""
  if spec.seeds < 1:
    raise ConfigError(f"--seeds must be >= 1, got {spec.seeds}")
  if spec.total_steps < 1:
    raise ConfigError(f"--total-steps must be >= 1, got {spec.total_steps}")
  if spec.checkpoint_every < 1:
    raise ConfigError(f"--checkpoint-every must be >= 1, got {spec.checkpoint_every}")
  agents.check_names(spec.algo, agents.spec(spec.algo).config_cls, spec.sweep)
  agent = agents.make(spec.algo, spec.env, env_options=spec.env_options, **spec.overrides)
  names = sweepable(agent.config)
  settings_values = []
  for name, values in spec.sweep.items():
    if name not in names:
      from jaxsafe.envs.registry import suggest
      raise ConfigError(f"--sweep {name}: not a sweepable hyper-parameter of {spec.algo}"
                        f"{suggest(name, names)}; sweepable: {', '.join(names)}")
    if not values:
      raise ConfigError(f"--sweep {name}: no values given")
    parsed = [getattr(apply_overrides(agent.config, {name: v}), name) for v in values]
    settings_values.append([(name, v) for v in parsed])
  settings = [dict(combo) for combo in itertools.product(*settings_values)] or [{}]
  labels, keys, rows = [], [], []
  for s, setting in enumerate(settings):
    hp = hparams_of(dataclasses.replace(agent.config, **setting))
    for k in range(spec.seeds):
      seed = spec.seed_offset + k
      labels.append({"setting": s, "seed": seed, **setting})
      keys.append(jax.random.PRNGKey(seed))
      rows.append(hp)
  hparams = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *rows)
  num_iterations = math.ceil(spec.total_steps / agent.steps_per_update)
  chunk = spec.chunk_iters or max(1, math.ceil(num_iterations / 20))
  if chunk < 1:
    raise ConfigError(f"chunk_iters must be >= 1, got {chunk}")
  return Plan(spec, agent, labels, jnp.stack(keys), hparams, num_iterations, chunk)


def _runs_sharding(num_runs: int):
  """Shards the leading runs axis over all local devices when it divides evenly."""
  devices = jax.local_devices()
  if len(devices) == 1 or num_runs % len(devices):
    return None
  mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))


def init_states(p: Plan):
  """The stacked initial agent states of all runs, sharded over devices where possible."""
  sharding = _runs_sharding(len(p.labels))
  keys, hparams = p.keys, p.hparams
  if sharding is None:
    return jax.jit(jax.vmap(p.agent.init))(keys, hparams)
  keys, hparams = jax.device_put((keys, hparams), sharding)
  return jax.jit(jax.vmap(p.agent.init), out_shardings=sharding)(keys, hparams)


def compile_chunk(agent: Agent, states, length: int):
  """AOT-compiles ``length`` updates of every run: jit(vmap(scan(update))) (no vmap for one run).

  Every leaf of the state and the metrics has the runs axis first; when it is sharded, inputs
  and outputs are pinned to that sharding so the compiled chunk can be called again on its output.
  """

  def chunk(state):
    return jax.lax.scan(lambda s, _: agent.update(s), state, None, length=length)

  def one_run(states):
    # A single run is indexed rather than vmapped: under vmap a lax.cond whose predicate is
    # batched runs both branches, so an env's reset branch would be computed on every step.
    out = chunk(jax.tree_util.tree_map(lambda x: x[0], states))
    return jax.tree_util.tree_map(lambda x: x[None], out)

  runs = jax.tree_util.tree_leaves(states)[0].shape[0]
  sharding = _runs_sharding(runs)
  kw = {} if sharding is None else {"in_shardings": sharding, "out_shardings": sharding}
  program = one_run if runs == 1 else jax.vmap(chunk)
  return jax.jit(program, donate_argnums=0, **kw).lower(states).compile()


def stop_flags(agent: Agent) -> dict[str, str]:
  """The flag metrics (1 good, 0 bad) the runner stops on, with what a 0 means, in order of
  precedence when several fail at once: the agent's own (a solver's inputs) before the
  standard ``params_finite``."""
  return {**agent.stop_flags, **STANDARD_FLAGS}


def _divergence_reason(name: str, value, flags: dict[str, str]) -> str:
  """The end of the divergence message for metric ``name`` at ``value``."""
  return f"metric '{name}' is {value}" + (f" ({flags[name]})" if name in flags else "")


def _first_nonfinite(metrics: dict[str, np.ndarray], may_be_nan=frozenset(), flags=None):
  """(iteration index, run index, metric name, value) of the first bad entry, or None.

  A non-finite value, or a 0 in a flag metric (``flags``, by default the standard ones). At the
  same iteration a flag wins, since it names the cause (the other metrics are then NaN because
  of it)."""
  flags = STANDARD_FLAGS if flags is None else flags
  worst = None
  order = list(flags)
  for name, values in sorted(metrics.items(), key=lambda kv: (
      order.index(kv[0]) if kv[0] in flags else len(order))):
    if name in MAY_BE_NAN or name in may_be_nan:
      continue
    bad = ~np.isfinite(values) if name not in flags else ~(values >= 0.5)
    if bad.any():
      runs, iters = np.nonzero(bad)
      i = int(iters.min())
      r = int(runs[iters == i][0])
      if worst is None or i < worst[0]:
        worst = (i, r, name, values[r, i])
  return worst


def _save_json(path: str, data: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2, default=str)
  os.replace(tmp, path)  # atomic on POSIX


def _default_run_dir(spec: RunSpec) -> str:
  stamp = time.strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", f"{spec.algo}_{spec.env.replace('/', '_')}_{stamp}")


def config_record(p: Plan) -> dict:
  """What ``config.json`` holds: the spec, the task, the resolved agent config and the runs."""
  return {"spec": dataclasses.asdict(p.spec) | {"chunk_iters": p.chunk_iters},
          "task": _task_record(p),
          "agent_config": dataclasses.asdict(p.agent.config),
          "num_iterations": p.num_iterations, "steps_per_update": p.agent.steps_per_update,
          "runs": p.labels, "jax_version": jax.__version__,
          "devices": [str(d) for d in jax.local_devices()]}


def run(spec: RunSpec, run_dir: str | None = None, progress: bool = True) -> dict:
  """Trains a new run in ``run_dir`` (which must not hold a run yet); returns the summary."""
  p = plan(spec)  # all validation happens before anything is written
  run_dir = run_dir or _default_run_dir(spec)
  if os.path.exists(os.path.join(run_dir, "config.json")):
    raise RunDirError(f"run directory '{run_dir}' already holds a run; resume it with --resume "
                      f"{run_dir} or choose another --run-dir")
  os.makedirs(run_dir, exist_ok=True)
  _save_json(os.path.join(run_dir, "config.json"), config_record(p))
  states = init_states(p)
  return _train(p, states, 0, run_dir, progress)


def resume(run_dir: str, total_steps: int | None = None, progress: bool = True) -> dict:
  """Continues the run in ``run_dir`` from its latest checkpoint (to ``total_steps`` if given).

  The result equals an uninterrupted run with the same spec: the whole state (parameters,
  optimiser, normaliser, multiplier, env states, RNG and any replay buffer) is restored. A run
  stopped before its first checkpoint trains from its start.
  """
  p, states, step = load_states(run_dir, total_steps, from_start=True)
  config_path = os.path.join(run_dir, "config.json")
  with open(config_path) as f:
    config = json.load(f)
  config["spec"]["total_steps"] = p.spec.total_steps
  config["num_iterations"] = p.num_iterations
  _save_json(config_path, config)
  return _train(p, states, step, run_dir, progress)


def load_states(run_dir: str, total_steps: int | None = None, from_start: bool = False):
  """(plan, restored stacked states, iteration) of the latest checkpoint of ``run_dir``.

  ``total_steps`` replaces the run's budget in the plan (for a resume that trains further). With
  ``from_start``, a run stopped before its first checkpoint (killed while compiling) gives its
  initial states and iteration 0 instead of an error.
  """
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.isdir(run_dir):
    raise RunDirError(f"run directory '{run_dir}' does not exist")
  if not os.path.exists(config_path):
    raise RunDirError(f"'{run_dir}' is not a jaxsafe run directory (no config.json)")
  with open(config_path) as f:
    config = json.load(f)
  spec = RunSpec(**config["spec"])
  if total_steps is not None:
    spec.total_steps = total_steps
  p = _replan(spec, config, run_dir)
  checkpointer = Checkpointer(run_dir)
  step = checkpointer.latest_step()
  if step is None:
    if from_start:
      checkpointer.close()
      return p, init_states(p), 0
    raise RunDirError(f"run directory '{run_dir}' has no checkpoint yet (it stopped before its "
                      "first one); resume it to train it from its start")
  try:
    states = checkpointer.restore(step, init_states(p))
  except ValueError as err:  # Orbax: another tree structure or shape than this version builds
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    raise RunDirError(f"the checkpoint at iteration {step} of '{run_dir}' does not fit the state "
                      f"that {spec.algo} builds now (written by another version of jaxsafe, or "
                      f"the task changed): {' '.join(lines[:2])}") from err
  finally:
    checkpointer.close()
  return p, states, step


#: what a run directory records of its task, and checks when the run is loaded again.
TASK_FIELDS = ("episode_length", "cost_limit", "observation_size", "action_size")


def _task_record(p: Plan) -> dict:
  """The task's constants and, for a task that is not built in, where it is defined."""
  from jaxsafe.envs import registry
  env = p.agent.env
  return {"source": registry.source(p.spec.env),
          **{name: getattr(env, name) for name in TASK_FIELDS}}


def _replan(spec: RunSpec, config: dict, run_dir: str) -> Plan:
  """The plan of a saved run, self-contained: the task is imported from where it was defined,
  the cost limit is the recorded one (not the task's current default), and a task whose sizes
  or horizon changed since is refused."""
  from jaxsafe.envs import registry
  task = config.get("task", {})  # run directories before this record: none of it
  registry.import_source(spec.env, task.get("source"))
  limit = config.get("agent_config", {}).get("cost_limit")
  if limit is not None and "cost_limit" not in spec.overrides:
    spec.overrides = {**spec.overrides, "cost_limit": limit}
  p = plan(spec)
  changed = [f"{name} {task[name]} then, {getattr(p.agent.env, name)} now"
             for name in TASK_FIELDS if name != "cost_limit" and name in task
             and task[name] != getattr(p.agent.env, name)]
  if changed:
    raise RunDirError(f"the task '{spec.env}' of '{run_dir}' has changed since the run was made "
                      f"({'; '.join(changed)}); restore the task's definition to load this run")
  return p


def _train(p: Plan, states, start: int, run_dir: str, progress: bool) -> dict:
  from tqdm import tqdm

  logger = RunLogger(run_dir, p.labels)
  logger.truncate(start)
  checkpointer = Checkpointer(run_dir)
  runs, per_update = len(p.labels), p.agent.steps_per_update
  compiled: dict[int, Any] = {}
  flags = stop_flags(p.agent)
  compile_s = train_s = 0.0
  history: dict[str, list[np.ndarray]] = {}
  bar = tqdm(total=p.num_iterations, initial=start, disable=not progress, unit="it",
             desc=f"{p.spec.algo} {p.spec.env}", dynamic_ncols=True, mininterval=1.0)
  iteration = start
  saved = checkpointer.latest_step()  # the checkpoint a divergence falls back to
  unsaved = 0  # chunks trained since the last checkpoint
  try:
    while iteration < p.num_iterations:
      length = min(p.chunk_iters, p.num_iterations - iteration)
      if length not in compiled:
        t0 = time.perf_counter()
        compiled[length] = compile_chunk(p.agent, states, length)
        compile_s += time.perf_counter() - t0
      t0 = time.perf_counter()
      new_states, metrics = compiled[length](states)
      metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
      elapsed = time.perf_counter() - t0
      bad = _first_nonfinite(metrics, frozenset(p.agent.nan_metrics), flags)
      if bad is not None:
        i, r, name, value = bad
        if i:
          logger.write({k: v[:, :i] for k, v in metrics.items()})
        kept = (f"the last good checkpoint (iteration {saved}) in {run_dir}/checkpoints is intact"
                if saved is not None else f"no checkpoint was written yet in {run_dir}")
        raise TrainingDiverged(
            f"training diverged at iteration {iteration + i + 1} (seed {p.labels[r]['seed']}, "
            f"setting {p.labels[r]['setting']}): {_divergence_reason(name, value, flags)}; "
            f"{kept}")
      states = new_states
      iteration += length
      train_s += elapsed
      sps = length * per_update * runs / elapsed
      logger.write(metrics)
      unsaved += 1
      if unsaved == p.spec.checkpoint_every or iteration == p.num_iterations:
        checkpointer.save(iteration, states)
        saved, unsaved = iteration, 0
      for k, v in metrics.items():
        history.setdefault(k, []).append(v)
      bar.set_postfix(ret=f"{_latest_mean(history['episode_return']):.3g}",
                      cost=f"{_latest_mean(history['episode_cost']):.3g}",
                      sps=f"{sps:,.0f}", refresh=False)
      bar.update(length)
  finally:
    bar.close()
    logger.close()
    checkpointer.close()
  summary = _summary(p, history, iteration, start, compile_s, train_s)
  _save_json(os.path.join(run_dir, "summary.json"), summary)
  return summary


def _nanmean(values: np.ndarray) -> float:
  """Mean of the finite entries; NaN (without numpy's warning) when there are none, as when no
  episode has finished yet (1000-step navigation episodes and short runs)."""
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float("nan")


def _latest_mean(chunks: list[np.ndarray]) -> float:
  """Mean over runs of each run's latest finite value (runs x iterations chunks), for the bar."""
  full = np.concatenate(chunks, axis=1)
  latest = [row[np.isfinite(row)][-1] for row in full if np.isfinite(row).any()]
  return float(np.mean(latest)) if latest else float("nan")


def _summary(p: Plan, history, iteration, start, compile_s, train_s) -> dict:
  trained = iteration - start
  runs = []
  if history:
    full = {k: np.concatenate(v, axis=1) for k, v in history.items()}
    tail = max(1, full["episode_cost"].shape[1] // 10)
    for r, label in enumerate(p.labels):
      runs.append({**label,
                   "final_episode_return": float(full["episode_return"][r, -1]),
                   "final_episode_cost": float(full["episode_cost"][r, -1]),
                   "last10pct_episode_return": _nanmean(full["episode_return"][r, -tail:]),
                   "last10pct_episode_cost": _nanmean(full["episode_cost"][r, -tail:]),
                   "cost_limit": float(np.asarray(p.hparams.cost_limit)[r])})
  env_steps = trained * p.agent.steps_per_update * len(p.labels)
  return {"algo": p.spec.algo, "env": p.spec.env, "iterations": iteration,
          "env_steps_per_run": iteration * p.agent.steps_per_update,
          "num_envs": int(getattr(p.agent.env, "num_envs", 1)),
          "episode_length": int(p.agent.env.episode_length),
          "compile_s": round(compile_s, 3), "train_s": round(train_s, 3),
          "steps_per_second": env_steps / train_s if train_s else None,
          "devices": len(jax.local_devices()), "runs": runs}
