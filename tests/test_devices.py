"""One XLA host device per core (``resnet-limits sweep --devices``): flags and same numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import finished, xla_env
from resnet_limits import cli

FLAG = "--xla_force_host_platform_device_count"


def test_bad_devices_is_one_line(capsys):
    assert cli.main(["sweep", "tanh-synthetic", "--out", "/tmp/never", "--devices", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["resnet-limits: error: argument --devices: devices must be >= 1, got 0"]


ARGS = ["sweep", "tanh-synthetic", "--depths", "3", "7", "--seeds", "3", "--max-updates", "12", "--no-progress"]


def _weights(out):
    return {L: np.load(out / "depths" / f"L{L:05d}.npz") for L in (3, 7)}


@pytest.mark.slow  # the seed axis sharded over two devices: test_training.py (default run)
def test_sweep_on_two_devices_equals_one_device(tmp_path):
    """The sweep on two host devices (a fresh process: the devices are made when JAX starts)
    against the same sweep on this process's one device, run meanwhile."""
    two_dir, one_dir = tmp_path / "dev2", tmp_path / "dev1"
    child = subprocess.Popen([sys.executable, "-m", "resnet_limits.cli", *ARGS, "--out", str(two_dir), "--devices", "2"],
                             env=xla_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # the CLI
    try:  # adds its own device count
        assert cli.main([*ARGS, "--out", str(one_dir), "--devices", "1"]) == 0
    except BaseException:
        child.kill()
        child.communicate()
        raise
    finished(child)
    for folder, n in ((one_dir, 1), (two_dir, 2)):
        meta = json.loads((folder / "depths" / "L00007.json").read_text())
        assert (meta["devices"], meta["platform"]) == (n, "cpu")
    one, two = _weights(one_dir), _weights(two_dir)
    for L in (3, 7):
        assert sorted(one[L].files) == sorted(two[L].files)
        for name in one[L].files:
            np.testing.assert_allclose(two[L][name], one[L][name], rtol=2e-6, atol=1e-8, err_msg=f"L={L} {name}")
