"""Tests of resnet_limits.sweeps.lr_grid: several learning rates trained in one pass, each
written to its own sweep folder, equal to per-folder sweeps and resumable like them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from resnet_limits.errors import UsageError
from helpers import load_depth
from resnet_limits.config import sweep_config
from resnet_limits.sweeps import (
    check_lr_grid, finished_depths, load_config, run_lr_grid, run_sweep,
)
from resnet_limits.sweeps import lr_grid
from resnet_limits.sweeps.folder import depth_paths, depth_problem

LRS = (0.01, 0.003)
DEPTHS = (2, 5)


def _cfgs(**kw):
    return [sweep_config("tanh-synthetic", lr=lr, seeds=2, epochs=1, max_updates=8, depths=DEPTHS, **kw)
            for lr in LRS]


@pytest.fixture(scope="module")
def one_pass(tmp_path_factory):
    """The two learning rates trained in one pass, and each by its own ``run_sweep``."""
    root = tmp_path_factory.mktemp("lr_grid")
    grid = [root / f"grid{i}" for i in range(len(LRS))]
    assert run_lr_grid(_cfgs(), grid, progress=False) == [list(DEPTHS)] * len(LRS)
    single = [root / f"single{i}" for i in range(len(LRS))]
    for cfg, out in zip(_cfgs(), single):
        run_sweep(cfg, out, progress=False)
    return grid, single


def _copy(folders, dest):
    outs = [dest / f.name for f in folders]
    for f, o in zip(folders, outs):
        shutil.copytree(f, o)
    return outs


def _stamps(out):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "depths").glob("L*.*")}


def _spy(monkeypatch):
    """Record (depth, learning rates) of every one-pass training, then train for real."""
    calls, real = [], lr_grid.train_learning_rates

    def spy(cfg, lrs, depth, data, **kw):
        calls.append((depth, list(lrs)))
        return real(cfg, lrs, depth, data, **kw)

    monkeypatch.setattr(lr_grid, "train_learning_rates", spy)
    return calls


def test_one_pass_equals_per_folder_sweeps(one_pass):
    grid, single = one_pass
    for g, s in zip(grid, single):
        assert json.loads((g / "config.json").read_text()) == json.loads((s / "config.json").read_text())
        for L in DEPTHS:
            assert depth_problem(g, L) is None
            (pg, mg), (ps, ms) = load_depth(g, L), load_depth(s, L)
            for a, b in ((pg.A, ps.A), (pg.b, ps.b), (pg.delta, ps.delta)):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            assert set(mg) == set(ms)
            for k in ("depth", "seeds", "updates", "converged", "diverged"):
                assert mg[k] == ms[k], k
            for k in ("train_loss", "test_loss"):
                np.testing.assert_allclose(mg[k], ms[k], rtol=1e-5)
            for cg, cs in zip(mg["loss_curve"], ms["loss_curve"]):
                np.testing.assert_allclose(cg, cs, rtol=1e-5)
    # the learning rates really differ: the two folders hold different networks
    assert not np.allclose(load_depth(grid[0], 5)[0].A, load_depth(grid[1], 5)[0].A)


def test_finished_grid_trains_nothing_and_rewrites_nothing(one_pass, tmp_path, monkeypatch):
    outs = _copy(one_pass[0], tmp_path)
    before = [_stamps(o) for o in outs]
    calls = _spy(monkeypatch)
    assert run_lr_grid(_cfgs(), outs, progress=False) == [list(DEPTHS)] * len(LRS)
    assert calls == [] and [_stamps(o) for o in outs] == before


def test_a_depth_missing_in_one_folder_is_trained_for_that_folder_only(one_pass, tmp_path, monkeypatch):
    outs = _copy(one_pass[0], tmp_path)
    for p in depth_paths(outs[1], 5):
        p.unlink()
    depth_paths(outs[0], 2)[0].write_bytes(b"damaged")  # fails its sha256: trained again
    before = [_stamps(o) for o in outs]
    calls = _spy(monkeypatch)
    assert run_lr_grid(_cfgs(), outs, progress=False) == [list(DEPTHS)] * len(LRS)
    assert calls == [(2, [0.01]), (5, [0.003])]
    assert {k: v for k, v in _stamps(outs[1]).items() if k.startswith("L00002")} == \
        {k: v for k, v in before[1].items() if k.startswith("L00002")}  # untouched
    assert {k: v for k, v in _stamps(outs[0]).items() if k.startswith("L00005")} == \
        {k: v for k, v in before[0].items() if k.startswith("L00005")}
    assert (outs[0] / "depths" / "L00002.npz.damaged").exists()
    for o, ref in zip(outs, one_pass[0]):  # the retrained depths are the same networks
        for L in DEPTHS:
            np.testing.assert_allclose(load_depth(o, L)[0].A, load_depth(ref, L)[0].A, rtol=1e-5, atol=1e-6)


def test_interrupted_grid_keeps_finished_depths_and_resumes(tmp_path, monkeypatch):
    outs = [tmp_path / "a", tmp_path / "b"]
    real = lr_grid.train_learning_rates

    def stop_at_5(cfg, lrs, depth, data, **kw):
        if depth == 5:
            raise KeyboardInterrupt
        return real(cfg, lrs, depth, data, **kw)

    monkeypatch.setattr(lr_grid, "train_learning_rates", stop_at_5)
    with pytest.raises(KeyboardInterrupt):
        run_lr_grid(_cfgs(), outs, progress=False)
    assert [finished_depths(o) for o in outs] == [[2], [2]]
    assert not list(tmp_path.rglob("*.claim")) and not list(tmp_path.rglob("*.tmp"))
    assert load_config(outs[0]).depths == DEPTHS  # config.json: the whole grid, as a sweep's
    before = [_stamps(o) for o in outs]
    monkeypatch.setattr(lr_grid, "train_learning_rates", real)
    calls = _spy(monkeypatch)
    assert run_lr_grid(_cfgs(), outs, progress=False) == [list(DEPTHS)] * len(LRS)
    assert calls == [(5, list(LRS))]
    for o, b in zip(outs, before):
        assert {k: v for k, v in _stamps(o).items() if k in b} == b


def test_folders_are_checked_before_anything_trains(tmp_path, monkeypatch):
    outs = [tmp_path / "a", tmp_path / "b"]
    outs[1].mkdir()
    (outs[1] / "notes.txt").write_text("mine")
    calls = _spy(monkeypatch)
    with pytest.raises(UsageError, match="not a sweep folder"):
        run_lr_grid(_cfgs(), outs, progress=False)
    assert calls == [] and not outs[0].exists()


def test_check_lr_grid_refuses_bad_grids(tmp_path):
    a, b = _cfgs()
    with pytest.raises(UsageError, match="no learning rates"):
        check_lr_grid([], [])
    with pytest.raises(UsageError, match="need 2 run folders"):
        check_lr_grid([a, b], [tmp_path / "a"])
    with pytest.raises(UsageError, match="share a run folder"):
        check_lr_grid([a, b], [tmp_path / "a", tmp_path / "x" / ".." / "a"])
    other_b = sweep_config("tanh-synthetic", lr=0.003, batch_size=8, seeds=2, epochs=1, max_updates=8, depths=DEPTHS)
    with pytest.raises(UsageError, match=r"differ in batch_size=32 \(now 8\), not only lr"):
        check_lr_grid([a, other_b], [tmp_path / "a", tmp_path / "b"])
    check_lr_grid([a, b], [tmp_path / "a", tmp_path / "b"])  # a valid grid passes
