"""Shared test settings: small, fast agents; CPU only; one XLA compilation cache per session.

Compile time dominates these tests, and many of them build the same program (a run and its
resume, a sweep setting and the equivalent single run). JAX's persistent compilation cache turns
those repeats into cache hits; it lives in a fresh temporary directory, so every session (and CI)
starts cold and no stale executable can leak between versions.
"""

import atexit
import contextlib
import ctypes
import glob
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_CACHE = tempfile.mkdtemp(prefix="jaxsafe-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # ~5 MB a session otherwise left in /tmp
os.environ["JAXSAFE_TEST_XLA_CACHE"] = _CACHE  # subprocesses of the tests share it

import jax
import pytest

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(autouse=True, scope="module")
def _optimised_compiles_for_long_runs(request):
  """Compiles a test file's programs with XLA's optimisations on where the file sets
  ``RUNS_LONG_PROGRAMS = True``.

  `make test` sets JAX_DISABLE_MOST_OPTIMIZATIONS=1: most of its programs run for milliseconds
  after compiling for seconds, and unoptimised compiles take 25-40% less time. Files of learning
  runs (which execute for tens of seconds, and whose claims were measured on optimised
  programs) opt back in; the slow tier and users always compile optimised. Autouse fixtures
  are set up before the module's other fixtures, so those compile under this setting too.
  """
  if not getattr(request.module, "RUNS_LONG_PROGRAMS", False):
    yield
    return
  before = jax.config.read("jax_disable_most_optimizations")
  # The in-memory jit caches do not key on this flag: without clearing them, a program compiled
  # unoptimised by an earlier file on the same worker would be reused here, so the learning
  # runs' numbers would depend on which files that worker ran before.
  jax.clear_caches()
  jax.config.update("jax_disable_most_optimizations", False)
  try:
    yield
  finally:
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", before)


#: Added to every seed of the learning tests (``JAXSAFE_SEED_OFFSET=100 make test-slow``). A learning
#: run is chaotic: another CPU that rounds differently changes its trajectory as another seed
#: would, so each learning claim must also hold at shifted seeds (docs/benchmarks.md records the
#: per-seed distributions its thresholds come from).
SEED_OFFSET = int(os.environ.get("JAXSAFE_SEED_OFFSET", "0"))


def learning_seeds(*seeds: int) -> tuple[int, ...]:
  """``seeds`` shifted by ``SEED_OFFSET``."""
  return tuple(seed + SEED_OFFSET for seed in seeds)


#: tiny settings per agent family (the smoke check, the compile-once test); every agent trains on
#: ``function`` (differentiable, so the gradient-based agents accept it; they roll out whole
#: episodes, here of 20 steps).
_PPO = {"num_envs": 4, "rollout_length": 16, "update_epochs": 1, "num_minibatches": 2,
        "hidden_sizes": (8,)}
_GRADIENT = {"num_envs": 4, "episode_length": 20, "hidden_sizes": (8,)}
_CRITICS = {"short_horizon": 5, "critic_epochs": 1, "critic_minibatches": 2}
_MODEL = {"model_hidden_sizes": (8,), "model_updates": 2, "model_batch_size": 16,
          "buffer_capacity": 1000}
_DYNA = {"model_hidden_sizes": (8,), "model_updates": 2, "model_batch_size": 8,
         "buffer_capacity": 256, "imagined_horizon": 3, "imagined_starts": 8}
_OFF_LAG = {"num_envs": 4, "rollout_length": 4, "gradient_steps": 2, "batch_size": 8,
            "buffer_capacity": 64, "warmup_steps": 0, "hidden_sizes": (8,)}
_OFF = {**_OFF_LAG, "num_action_samples": 4}
_TRPO = {**_PPO, "cg_iterations": 3, "line_search_steps": 3}
AGENT_SMALL = {"cup": _PPO, "pdo": _PPO, "appo": _PPO, "trpo": _TRPO, "trpo-lag": _TRPO,
               "cpo": _TRPO, "cvpo": _OFF, "sac-lag": _OFF_LAG, "td3-lag": _OFF_LAG,
               "ddpg-lag": _OFF_LAG, "ppo": _PPO, "ppo-lag": _PPO, "pid-lag": _PPO, "cppo": _PPO,
               "dyna-cppo": {**_PPO, **_DYNA}, "cgpo": {**_GRADIENT, **_CRITICS},
               "mb-cgpo": {**_GRADIENT, **_CRITICS, **_MODEL},
               "shac-lag": {**_GRADIENT, **_CRITICS}, "bptt-lag": _GRADIENT}


#: a tiny PPO-family configuration for tests of the runner and the CLI (not of learning).
TINY = {"num_envs": 8, "rollout_length": 100, "update_epochs": 2, "num_minibatches": 2,
        "hidden_sizes": "16,16"}


@contextlib.contextmanager
def one_blas_thread():
  """Limits scipy's bundled OpenBLAS to one thread, restoring it afterwards.

  SLSQP makes many tiny BLAS calls; on a busy two-core machine each threaded call waits for a
  descheduled worker, which made the SLSQP loop ~30x slower (48 s instead of 1.7 s). Best
  effort: a no-op where scipy does not bundle OpenBLAS (then only speed is at stake).
  """
  import scipy

  libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "*openblas*.so*"))
  lib = ctypes.CDLL(libs[0]) if len(libs) == 1 else None  # the already loaded library
  get = getattr(lib, "scipy_openblas_get_num_threads", None)
  set_ = getattr(lib, "scipy_openblas_set_num_threads", None)
  if get is None or set_ is None:
    yield
    return
  before = get()
  set_(1)
  try:
    yield
  finally:
    set_(before)


def safety_gymnasium_or_none():
  """Safety-Gymnasium through the bridge's compatibility layer, or None without the extra (the
  tests that compare with it skip then)."""
  from jaxsafe.envs.safety_gymnasium import MissingExtraError, import_safety_gymnasium

  try:
    return import_safety_gymnasium()
  except MissingExtraError:
    return None
