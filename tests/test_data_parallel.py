"""Data parallelism of one convolutional network (``ConvTrainConfig.data_parallel``): the
minibatch split over two XLA host devices gives the one-device losses and parameters, a
checkpoint resumes on another number of devices, and bad settings are one-line errors.

Two host devices need ``XLA_FLAGS`` before JAX starts, so those runs go to a subprocess
(:data:`CHILD`), which writes its numbers to an ``.npz`` compared here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from helpers import xla_env
from resnet_limits.data import mock_cifar10
from resnet_limits.errors import UsageError
from resnet_limits.training.conv import ConvTrainConfig, train_conv

FLAG = "--xla_force_host_platform_device_count"

# The child: depth 8, width 4, 64 mock training images (40 test: the evaluation pads its
# sharded batches), batches of 16 (4 updates per epoch), 2 epochs, augmentation on.
# argv: mode ("all": the one-device run, the two-device run and the resumed runs, in one process
# (one JAX start-up, one one-device run for both tests); or "scan"), output .npz, scratch folder.
CHILD = textwrap.dedent("""
    import os, sys
    import jax, numpy as np
    from resnet_limits.data import mock_cifar10
    from resnet_limits.training.conv import ConvTrainConfig, train_conv

    mode, out, scratch = sys.argv[1:4]
    if os.environ.get("RESNET_LIMITS_CACHE"):  # the test run's compilation cache (conftest.py): the
        jax.config.update("jax_compilation_cache_dir", os.environ["RESNET_LIMITS_CACHE"])  # children
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # share their programs
    assert len(jax.devices()) == 2, jax.devices()
    data = mock_cifar10(jax.random.PRNGKey(1), 64, 40)
    cfg = lambda n: ConvTrainConfig(epochs=2, batch_size=16, width=4, eval_batch_size=15, data_parallel=n)
    key = jax.random.PRNGKey(0)
    arrays = {}

    def keep(name, res):
        for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            arrays[f"{name}/{k}"] = getattr(res, k)
        for i, leaf in enumerate(jax.tree.leaves(res.params)):
            arrays[f"{name}/param{i}"] = leaf
        arrays[f"{name}/resumed_from"] = np.asarray(res.resumed_from)

    class Killed(Exception):
        pass

    def kill(epoch, metrics):
        raise Killed

    if mode == "scan":  # one epoch as one lax.scan program (accelerators' path) on 2 devices, against
        one = lambda n: ConvTrainConfig(epochs=1, batch_size=16, width=4, eval_batch_size=15, data_parallel=n)
        keep("dp1", train_conv(key, 8, data, one(1), one_program=False))  # the CPU's loop of steps on one
        keep("dp2", train_conv(key, 8, data, one(2), one_program=True))
        np.savez(out, **arrays)
        sys.exit()
    keep("dp1", train_conv(key, 8, data, cfg(1)))
    keep("dp2", train_conv(key, 8, data, cfg(2)))
    for saved, resumed in ((2, 1), (1, 2)):  # killed after epoch 1 on one device count, resumed on the other
        folder = f"{scratch}/ckpt{saved}{resumed}"
        try:
            train_conv(key, 8, data, cfg(saved), ckpt_dir=folder, on_epoch=kill)
        except Killed:
            pass
        keep(f"dp{saved}to{resumed}", train_conv(key, 8, data, cfg(resumed), ckpt_dir=folder))
    np.savez(out, **arrays)
""")


def _run_child(tmp_path, mode: str) -> dict[str, np.ndarray]:
    env = xla_env(2)
    out = tmp_path / f"{mode}.npz"
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(out), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return dict(f)


def _assert_same_run(got: dict, a: str, b: str) -> None:
    """Runs ``a`` and ``b`` made the same updates, up to the order of float additions."""
    for k in ("train_loss", "test_loss"):
        if f"{a}/{k}" in got:
            np.testing.assert_allclose(got[f"{b}/{k}"], got[f"{a}/{k}"], rtol=1e-5, err_msg=f"{b} {k}")
    for k in ("train_accuracy", "test_accuracy"):
        if f"{a}/{k}" in got:
            np.testing.assert_array_equal(got[f"{b}/{k}"], got[f"{a}/{k}"], err_msg=f"{b} {k}")
    params = sorted(k.split("/")[1] for k in got if k.startswith(f"{a}/param"))
    assert len(params) > 10
    for p in params:
        ref = got[f"{a}/{p}"]
        np.testing.assert_allclose(got[f"{b}/{p}"], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(),
                                   err_msg=f"{b} {p}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, np.ndarray]:
    """The child's "all" runs, shared by the two tests below."""
    return _run_child(tmp_path_factory.mktemp("data-parallel"), "all")


def test_two_devices_train_the_one_device_network(runs):
    got = runs
    assert got["dp1/train_loss"].shape == (2,)
    _assert_same_run(got, "dp1", "dp2")


def test_checkpoint_resumes_on_another_number_of_devices(runs):
    got = runs
    for name in ("dp2to1", "dp1to2"):
        assert int(got[f"{name}/resumed_from"]) == 1, name
        _assert_same_run(got, "dp1", name)


@pytest.mark.slow
def test_one_program_epoch_on_two_devices_makes_the_one_device_updates(tmp_path):
    # the accelerators' path (the epoch as one lax.scan) sharded over 2 devices, against the
    # CPU's (a loop of jitted steps) on one
    got = _run_child(tmp_path, "scan")
    _assert_same_run(got, "dp1", "dp2")


def test_bad_data_parallel_settings_are_one_line_errors():
    with pytest.raises(UsageError, match=r"^batch size 30 does not split over 4 data-parallel devices: "
                                         r"it must be a multiple of 4$"):
        ConvTrainConfig(batch_size=30, data_parallel=4).validate()
    with pytest.raises(UsageError, match="data parallel must be >= 1"):
        ConvTrainConfig(data_parallel=0).validate()
    n = len(jax.devices()) + 1
    data = mock_cifar10(jax.random.PRNGKey(1), 8 * n, 4)
    with pytest.raises(UsageError) as err:
        train_conv(jax.random.PRNGKey(0), 8, data, ConvTrainConfig(epochs=1, batch_size=8 * n, width=4,
                                                                  data_parallel=n))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"data parallel over {n} devices, but there ") and f"{FLAG}={n}" in msg
