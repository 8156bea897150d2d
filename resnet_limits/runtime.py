"""Runtime setup of a process (layer 2): XLA and OpenBLAS settings, host devices, compilation cache.

Everything here changes process-wide state, so it is one module that the command line,
benchmarks and notebooks call explicitly, before the first JAX computation; the library itself
never calls it. :func:`setup` does all of it the way ``resnet-limits`` does:

* :func:`tune_xla_cpu`: XLA:CPU without Eigen's thread pool, OpenBLAS on one thread
  (``XLA_FLAGS``, ``OPENBLAS_NUM_THREADS``; a value the user set wins);
* :func:`use_host_devices`: the CPU split into N XLA host devices, so the seeds of a sweep are
  sharded over the cores (``--xla_force_host_platform_device_count``; GPUs are unaffected);
* :func:`enable_compile_cache`: JAX's persistent compilation cache in ``$RESNET_LIMITS_CACHE`` or
  ``~/.cache/resnet-limits/jax``: every compiled program is kept, so a rerun does not compile
  again (a quick sweep's programs take about 20 MB; the folder is never pruned by us: delete it
  to reclaim the space, or turn the cache off with ``--no-compile-cache``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from resnet_limits.errors import UsageError

__all__ = [
    "CACHE_ENV",
    "cache_folder",
    "default_host_devices",
    "enable_compile_cache",
    "quiet_library_logs",
    "setup",
    "tune_xla_cpu",
    "usable_cores",
    "use_host_devices",
    "xla_flag_given",
]

#: The environment variable naming the compilation cache's folder.
CACHE_ENV = "RESNET_LIMITS_CACHE"


def xla_flag_given(name: str) -> bool:
    """Whether ``XLA_FLAGS`` sets the XLA flag ``name`` (the user's choice, which wins)."""
    return name in os.environ.get("XLA_FLAGS", "")


def _add_xla_flag(name: str, value) -> None:
    """Append ``--name=value`` to ``XLA_FLAGS`` unless the user set that flag already."""
    if not xla_flag_given(name):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{name}={value}".strip()


def tune_xla_cpu() -> None:
    """Turn off Eigen's thread pool in XLA:CPU and keep OpenBLAS on one thread, unless the user
    chose otherwise.

    The per-layer matmuls here are tiny (B x d by d x d, d = 10): splitting them across threads
    costs more than it saves, and training runs ~15 % faster without it
    (``benchmarks/train_throughput.py``). Several OpenBLAS threads fight over the cores in the
    batched SVDs of the conv spectral norms and were measured 5-25x slower
    (``benchmarks/conv_norms.py``). Must run before JAX initialises its backend.
    """
    _add_xla_flag("xla_cpu_multi_thread_eigen", "false")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_host_devices(runs: int) -> int:
    """The default number of XLA host devices: one per usable core, at most ``runs``."""
    return max(1, min(usable_cores(), runs))


def use_host_devices(n: Optional[int] = None, *, runs: int = 8) -> int:
    """Split the CPU into ``n`` XLA host devices so that the seed axis is sharded over the cores.

    XLA:CPU runs each program on one thread here (:func:`tune_xla_cpu`), so one device per core
    is how a sweep uses every core; per-seed results do not change (each seed's randomness comes
    from its own key). ``n`` None: one device per usable core, at most ``runs`` (the runs trained
    together). An ``--xla_force_host_platform_device_count`` already in ``XLA_FLAGS`` wins; only
    the CPU platform is affected. Must run before JAX initialises its backend. Returns ``n``.
    """
    if n is not None and n < 1:
        raise UsageError(f"devices must be >= 1, got {n}")
    n = n if n is not None else default_host_devices(runs)
    if n > 1:
        _add_xla_flag("xla_force_host_platform_device_count", n)
    return n


def cache_folder(path=None) -> Path:
    """The compilation cache's folder: ``path``, else ``$RESNET_LIMITS_CACHE``, else
    ``~/.cache/resnet-limits/jax``."""
    return Path(path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "resnet-limits" / "jax").expanduser()


def enable_compile_cache(path=None) -> Optional[Path]:
    """Turn on JAX's persistent compilation cache in :func:`cache_folder` (every program is
    cached, however quick its compile). Returns the folder, or None where it cannot be made
    (an unwritable home: the process runs without the cache)."""
    import jax

    folder = cache_folder(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


def quiet_library_logs() -> None:
    """Keep absl's log (orbax's checkpointing writes through it) to errors that end the run: a
    failed save otherwise prints hundreds of lines of retries before the one line that says why."""
    import logging

    logging.getLogger("absl").setLevel(logging.CRITICAL)


def setup(*, devices: Optional[int] = None, runs: Optional[int] = None, compile_cache: bool = True) -> None:
    """The process set-up of ``resnet-limits``: :func:`tune_xla_cpu`, then (``runs`` given) one
    XLA host device per core up to ``runs`` or ``devices``, then the compilation cache."""
    tune_xla_cpu()
    quiet_library_logs()
    if runs is not None or devices is not None:
        use_host_devices(devices, runs=runs or 8)
    if compile_cache:
        enable_compile_cache()
