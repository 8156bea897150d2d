import os
from pathlib import Path

import pytest

from resnet_limits.config import MNIST_DIR_ENV


@pytest.fixture(scope="session")
def mnist_dir():
    """A folder of MNIST's idx ``.gz`` files, from ``$RESNET_LIMITS_MNIST_DIR``; the test is skipped
    (saying why) without one. ``.ci/run`` sets it when a data folder lies beside the clone."""
    folder = os.environ.get(MNIST_DIR_ENV)
    if not folder:
        pytest.skip(f"MNIST not given: set {MNIST_DIR_ENV} to a folder of MNIST's idx .gz files")
    if not (Path(folder) / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{MNIST_DIR_ENV}={folder} holds no t10k-images-idx3-ubyte.gz")
    return Path(folder)


@pytest.fixture(autouse=True)
def _same_environment():
    """Every test starts from the environment the run started with: the CLI called in a test
    process sets XLA flags (host devices, Eigen) in ``os.environ`` for its own children, and a
    later test's subprocess must not inherit them."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


def pytest_configure(config):
    """The persistent compilation cache goes to a fresh temporary folder for the test run, never
    into the user's ``~/.cache``, and every test process and child uses it; XLA compiles at the
    test run's optimisation level (``helpers.TEST_XLA_FLAGS``, unless ``XLA_FLAGS`` already sets
    one); xdist workers and subprocesses inherit both."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has set it up
        _share_compiled_programs()
        return
    from helpers import TEST_XLA_FLAGS

    from resnet_limits.runtime import xla_flag_given

    # as the CLI does (runtime.tune_xla_cpu): several OpenBLAS threads make the tests' small
    # scipy/numpy LAPACK calls hundreds of times slower right after XLA work in the same process
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not xla_flag_given("xla_backend_optimization_level"):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="resnet-limits-tests-jax-cache-")
    os.environ.setdefault("RESNET_LIMITS_CACHE", cache)
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    _share_compiled_programs()


def _share_compiled_programs():
    """This test process uses the run's compilation cache from its first compile on, as its
    children do: the programs the workers, the CLI's children and the notebooks' kernels have
    in common compile once."""
    from resnet_limits.runtime import enable_compile_cache

    enable_compile_cache()
