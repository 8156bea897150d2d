"""Process set-up (``resnet_limits/runtime.py``): XLA host devices, XLA:CPU flags, the compilation cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resnet_limits import runtime
from resnet_limits.errors import UsageError

FLAG = "--xla_force_host_platform_device_count"


def test_default_is_one_device_per_core_at_most_the_runs(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    assert runtime.use_host_devices(None, runs=5) == 2
    assert os.environ["XLA_FLAGS"] == f"--xla_cpu_multi_thread_eigen=false {FLAG}=2"
    monkeypatch.setattr(runtime, "usable_cores", lambda: 16)
    monkeypatch.delenv("XLA_FLAGS")
    assert runtime.use_host_devices(None, runs=5) == 5
    assert os.environ["XLA_FLAGS"] == f"{FLAG}=5"


def test_one_device_adds_no_flag_and_the_users_flag_wins(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert runtime.use_host_devices(1) == 1
    assert "XLA_FLAGS" not in os.environ or FLAG not in os.environ["XLA_FLAGS"]
    monkeypatch.setenv("XLA_FLAGS", f"{FLAG}=3")
    runtime.use_host_devices(2)
    assert os.environ["XLA_FLAGS"] == f"{FLAG}=3"
    with pytest.raises(UsageError, match="devices must be >= 1"):
        runtime.use_host_devices(0)


def test_tune_xla_cpu_adds_its_flags_unless_set(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    runtime.tune_xla_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"  # the user's choice wins
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.delenv("XLA_FLAGS")
    runtime.tune_xla_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "c"))
    assert runtime.cache_folder() == tmp_path / "c"
    monkeypatch.delenv(runtime.CACHE_ENV)
    assert runtime.cache_folder() == runtime.Path.home() / ".cache" / "resnet-limits" / "jax"


def test_compile_cache_writes_programs(tmp_path):
    """`enable_compile_cache` (on by default in the CLI) stores compiled programs in its folder,
    also when the process compiled before it was called (as in a notebook)."""
    code = (
        "import sys\n"
        "from resnet_limits.runtime import enable_compile_cache\n"
        "import jax, jax.numpy as jnp\n"
        "jax.config.update('jax_compilation_cache_dir', None)\n"
        "jax.jit(lambda x: jnp.cos(x) + 1)(jnp.ones(3)).block_until_ready()  # not kept\n"
        "enable_compile_cache(sys.argv[1])\n"
        "jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "cache")], check=True, timeout=120)
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the program compiled after it
