import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist not present")
    return MNIST_DIR



def pytest_configure(config):
    """The CLI's persistent compilation cache (on by default) goes to a fresh temporary folder for
    the test run, never into the user's ``~/.cache``; xdist workers inherit the controller's."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has set it up
        return
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="resnet-limits-tests-jax-cache-")
    os.environ.setdefault("RESNET_LIMITS_CACHE", cache)
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
