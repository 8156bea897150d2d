"""One XLA host device per core (``resnet-limits sweep --devices``): flags and same numbers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from helpers import xla_env
from resnet_limits import cli

FLAG = "--xla_force_host_platform_device_count"


def test_bad_devices_is_one_line(capsys):
    assert cli.main(["sweep", "tanh-synthetic", "--out", "/tmp/never", "--devices", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["resnet-limits: error: argument --devices: devices must be >= 1, got 0"]


def _sweep(tmp_path, devices: int):
    out = tmp_path / f"dev{devices}"
    env = xla_env(1)  # the CLI adds its own --devices
    cmd = [sys.executable, "-m", "resnet_limits.cli", "sweep", "tanh-synthetic", "--depths", "3", "7",
           "--seeds", "3", "--max-updates", "12", "--out", str(out), "--devices", str(devices),
           "--no-progress", "--no-compile-cache"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    return {L: np.load(out / "depths" / f"L{L:05d}.npz") for L in (3, 7)}


def test_sweep_on_two_devices_equals_one_device(tmp_path):
    one, two = _sweep(tmp_path, 1), _sweep(tmp_path, 2)
    for L in (3, 7):
        assert sorted(one[L].files) == sorted(two[L].files)
        for name in one[L].files:
            np.testing.assert_allclose(two[L][name], one[L][name], rtol=2e-6, atol=1e-8, err_msg=f"L={L} {name}")
