"""Small helpers shared by the tests (import with ``from helpers import ...``)."""

import os
import subprocess

from resnet_limits.run import Run

#: XLA flags of the test run (``conftest.py`` sets them before JAX starts; subprocesses inherit
#: them). The tests compile several hundred small programs and run each for milliseconds, so
#: XLA:CPU's backend optimisation passes cost more than they save: at optimisation level 0 the
#: suite compiles about twice as fast (measured on the backprop tests: 82 s -> 47 s on 2 cores)
#: and every assertion is the same (a level set here also replaces the fc trainer's own level 1,
#: ``training.fc._LIGHT``, so its programs still draw the per-depth programs' weights bit for bit).
#: Users' runs keep their levels. Eigen's thread pool is off as the CLI turns it off
#: (``runtime.tune_xla_cpu``), so that a network trained in a test process and the same network
#: trained by a CLI child compile alike and agree to the last bit.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                  "--xla_cpu_multi_thread_eigen=false")


def xla_env(devices: int = 1, **extra) -> dict:
    """The environment of a child process on the CPU with ``devices`` XLA host devices and the test
    run's XLA flags (no other XLA flag of this process, so children compile alike)."""
    flags = TEST_XLA_FLAGS + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", **extra)


def finished(child: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """(stdout, stderr) of a child started with pipes, once it has exited with code 0; killed if
    it has not ended within ``timeout`` seconds or the wait fails."""
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr[-2000:]
    return stdout, stderr


def load_depth(run_dir, depth: int):
    """(networks with a leading seed axis, metrics) of one finished depth of a run folder."""
    run = Run.open(run_dir)
    return run.params(depth), run.metrics(depth)
