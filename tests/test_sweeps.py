import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_limits.errors import UsageError
from resnet_limits.sweeps import (
    dataset_for, depth_grid, finished_depths, load_config, load_depth, make_config, run_sweep,
)


def test_depth_grid_matches_the_paper():
    grid = depth_grid(3, 10321)
    assert grid[0] == 3 and grid[-1] == 10321  # floor(2^(40/3)) (SP Figs 3, 5)
    assert grid == sorted(set(grid)) and 2 not in grid
    assert all(L == int(2 ** (n / 3) + 1e-9) for L, n in zip(grid[-5:], range(36, 41)))
    g12 = depth_grid(3, 10000, 1.2)
    assert 6319 in g12 and 9100 in g12  # SP Figs 1, 4
    assert depth_grid(1, 8, 2.0) == [1, 2, 4, 8]
    with pytest.raises(UsageError):
        depth_grid(0, 10)


def test_presets_and_overrides():
    cfg = make_config("tanh-synthetic")
    assert cfg["depths"][-1] == 10321 and cfg["optimizer"] == "adam" and cfg["max_updates"] == 160
    assert cfg["batch_size"] == 32 and cfg["lr"] == 0.01 and cfg["epochs"] == 5 and cfg["n_train"] == 1024
    quick = make_config("relu-synthetic", quick=True)
    assert quick["delta_mode"] == "per-layer" and quick["activation"] == "relu"
    assert 10 <= len(quick["depths"]) and quick["depths"][-1] <= 1000
    cfg = make_config("tanh-synthetic", optimizer="sgd", lr=0.003, depths=[5, 3, 5])
    assert cfg["optimizer"] == "sgd" and cfg["lr"] == 0.003 and cfg["depths"] == [3, 5]
    for bad in (dict(lr=-1.0), dict(batch_size=2048), dict(activation="sin"), dict(depths=[0, 3])):
        with pytest.raises(UsageError):
            make_config("tanh-synthetic", **bad)
    with pytest.raises(UsageError, match="unknown preset"):
        make_config("nope")


def _small(**kw):
    return make_config("tanh-synthetic", seeds=2, epochs=1, max_updates=8, **kw)


def test_sweep_writes_every_depth_and_skips_finished_ones(tmp_path):
    cfg = _small(depths=[2, 3])
    assert run_sweep(cfg, tmp_path, progress=False) == [2, 3]
    assert load_config(tmp_path)["depths"] == [2, 3]
    params, metrics = load_depth(tmp_path, 3)
    assert params.A.shape == (2, 3, 10, 10) and params.b.shape == (2, 3, 10) and params.delta.shape == (2,)
    assert metrics["updates"] == [8, 8] and len(metrics["loss_curve"][0]) == 8
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "depths").iterdir()}
    # a larger grid in the same folder trains only the new depth
    assert run_sweep(_small(depths=[2, 3, 4]), tmp_path, progress=False) == [2, 3, 4]
    for p in (tmp_path / "depths").iterdir():
        if p.name in stamps:
            assert p.stat().st_mtime_ns == stamps[p.name]
    assert sorted(load_config(tmp_path)["depths"]) == [2, 3, 4]
    # an orphan .npz (killed between the two writes) is not a finished depth
    (tmp_path / "depths" / "L00004.json").unlink()
    assert finished_depths(tmp_path) == [2, 3]
    assert run_sweep(_small(depths=[4]), tmp_path, progress=False) == [2, 3, 4]


def test_folder_of_another_configuration_is_refused(tmp_path):
    run_sweep(_small(depths=[2]), tmp_path, progress=False)
    with pytest.raises(UsageError, match="another configuration: lr"):
        run_sweep(_small(depths=[2], lr=0.5), tmp_path, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a sweep folder"):
        run_sweep(_small(depths=[2]), other, progress=False)


def test_dataset_for_is_the_training_data():
    cfg = _small(depths=[2])
    a, b = dataset_for(cfg), dataset_for(cfg)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (1024, 10) and a.x_test.shape == (256, 10)


def test_killed_sweep_resumes_with_the_same_results(tmp_path):
    args = ["sweep", "tanh-synthetic", "--depths", "2", "3", "4000", "--seeds", "2", "--epochs", "1",
            "--max-updates", "32", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "resnet_limits.cli", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "depths" / "L00003.json").exists():
        assert proc.poll() is None and time.time() < deadline, "sweep ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert finished_depths(killed) == [2, 3]  # 4000 was still training
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "depths").glob("L0000[23].*")}
    # rerun the same command; every run is a fresh process, as a user's would be (the CLI sets
    # XLA flags at start-up, which changes float32 results at the last bit)
    cli = lambda out: subprocess.run([sys.executable, "-m", "resnet_limits.cli", *args, "--out", str(out)],
                                     capture_output=True, text=True, timeout=600)
    rerun = cli(killed)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "depths").glob("L0000[23].*")}
    assert before == after  # finished depths untouched
    assert finished_depths(killed) == [2, 3, 4000]
    fresh = tmp_path / "fresh"
    assert cli(fresh).returncode == 0
    for L in (2, 3, 4000):
        (pk, mk), (pf, mf) = load_depth(killed, L), load_depth(fresh, L)
        np.testing.assert_array_equal(pk.A, pf.A)
        np.testing.assert_array_equal(pk.delta, pf.delta)
        assert mk["train_loss"] == mf["train_loss"]
    assert not list(killed.rglob("*.tmp"))
