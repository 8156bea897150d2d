"""Tests of resnet_limits.studies.table4, the SP Table-4 driver: the grid, folders, JSON/Markdown output and the paper values.

The default tests replace the trainer by planted weights with known exponents (fast), and check
on a shrunken grid that the one-pass training of a batch size writes what per-cell sweeps write;
the slow test runs the real trainer on one shrunken cell and resumes it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import load_depth
from resnet_limits import sweeps
from resnet_limits.studies import table4


def _fake_run_sweep(cfg, out_dir, *, progress=True):
    """Write planted weights in the run format: |delta| = L^-a, A_k = L^-b (smooth) with a, b
    depending on the cell (a = 0.6 + lr * 10, b = 0.3 + B / 1000), so each cell is recognisable."""
    from pathlib import Path

    out = Path(out_dir)
    (out / "depths").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_json()))
    a = 0.6 + cfg.lr * 10
    b = 0.3 + cfg.batch_size / 1000
    d, S = cfg.width, cfg.seeds
    rng = np.random.default_rng(0)
    for L in cfg.depths:
        s = np.arange(L) / L
        base = (1.0 + 0.5 * np.cos(np.pi * s))[:, None, None] * np.eye(d) + 0.1
        A = L ** -b * np.broadcast_to(base, (S, L, d, d)) * (1 + 0.01 * rng.normal(size=(S, 1, 1, 1)))
        bb = L ** -b * np.broadcast_to((0.2 + np.sin(np.pi * s))[:, None] * np.ones(d), (S, L, d))
        delta = L ** -a * (1 + 0.01 * rng.normal(size=S))
        np.savez(out / "depths" / f"L{L:05d}.npz", A=A.astype(np.float32), b=bb.astype(np.float32), delta=delta)
        m = dict(depth=L, seeds=S, train_loss=[0.005] * S, test_loss=[0.006] * S, updates=[10] * S,
                 converged=[True] * S, diverged=[False] * S, loss_curve=[[0.1]] * S, seconds=0.0)
        (out / "depths" / f"L{L:05d}.json").write_text(json.dumps(m))
    return cfg.depths


def _fake_run_lr_grid(cfgs, out_dirs, *, progress=True, bar=None, log=None, seen=None):
    """``sweeps.run_lr_grid`` with planted weights: each folder as :func:`_fake_run_sweep` writes it."""
    if seen is not None:
        seen.append(([c.lr for c in cfgs], [c.batch_size for c in cfgs], [str(o) for o in out_dirs]))
    done = [_fake_run_sweep(cfg, out, progress=progress) for cfg, out in zip(cfgs, out_dirs)]
    if bar is not None:
        bar.update(len(cfgs[0].depths))
    return done


def test_paper_table4_values():
    assert len(table4.PAPER_TABLE4) == 9
    assert table4.PAPER_TABLE4[(0.01, 32)] == (0.73, 0.02, 0.29, 0.05)
    assert table4.PAPER_TABLE4[(0.001, 128)] == (0.53, 0.01, 0.41, 0.01)


def test_reproduce_table4_plumbing(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sweeps, "run_lr_grid", lambda *a, **k: _fake_run_lr_grid(*a, **k, seen=seen))
    monkeypatch.setattr(table4, "QUICK_MAX_DEPTH", 40)
    res = table4.run(tmp_path / "t4", quick=True, seeds=2, progress=False)
    # one pass per batch size, its three learning rates together, each into its cell folder
    assert [(lrs, Bs) for lrs, Bs, _ in seen] == [(list(table4.LEARNING_RATES), [B] * 3) for B in table4.BATCH_SIZES]
    assert seen[0][2] == [str(table4.cell_dir(tmp_path / "t4", lr, 8)) for lr in table4.LEARNING_RATES]
    assert [(c["lr"], c["batch_size"]) for c in res["cells"]] == [
        (lr, B) for lr in table4.LEARNING_RATES for B in table4.BATCH_SIZES]
    assert len(res["cells"]) == 9 and res["seeds"] == 2 and res["optimizer"] == "adam"
    for c in res["cells"]:
        assert c["alpha"] == pytest.approx(0.6 + c["lr"] * 10, abs=0.01)
        assert c["beta"] == pytest.approx(0.3 + c["batch_size"] / 1000, abs=0.05)
        assert max(c["depths"]) <= 40
        # at least 5 epochs (SP Table 3) and at least T_max = 160 updates (SP Table 2)
        assert c["max_updates"] == {8: 640, 32: 160, 128: 160}[c["batch_size"]]
        assert c["epochs"] == {8: 5, 32: 5, 128: 20}[c["batch_size"]]
        cfg = json.loads((table4.cell_dir(tmp_path / "t4", c["lr"], c["batch_size"]) / "config.json").read_text())
        assert cfg["lr"] == c["lr"] and cfg["batch_size"] == c["batch_size"] and cfg["seeds"] == 2
    saved = json.loads((tmp_path / "t4" / "table4.json").read_text())
    assert set(saved) == set(res) and saved["cells"] == res["cells"]  # the JSON is the returned dict
    assert saved["cells"][0]["paper"]["alpha"] == 0.69
    md = (tmp_path / "t4" / "table4.md").read_text()
    assert "(0.73 ± 0.02)" in md and "η = 0.003" in md and "B = 128" in md
    txt = table4.format_table4(saved)
    assert "[0.73±0.02]" in txt and "0.70 ± 0.00" in txt


def test_reproduce_table4_passes_the_optimizer(tmp_path, monkeypatch):
    seen = []

    def fake(cfgs, out_dirs, **kw):
        seen.extend(cfg.optimizer for cfg in cfgs)
        return _fake_run_lr_grid(cfgs, out_dirs, **kw)

    monkeypatch.setattr(sweeps, "run_lr_grid", fake)
    monkeypatch.setattr(table4, "QUICK_MAX_DEPTH", 20)
    monkeypatch.setattr(table4, "LEARNING_RATES", (0.01,))
    monkeypatch.setattr(table4, "BATCH_SIZES", (32,))
    res = table4.run(tmp_path / "t4", quick=True, optimizer="sgd", seeds=2, progress=False)
    assert seen == ["sgd"] and res["optimizer"] == "sgd"
    monkeypatch.undo()  # the full 3 x 3 grid again: the other cells were not run
    assert "not run" in table4.format_table4(res)
    assert "not run" in table4.table4_markdown(res)


@pytest.mark.slow  # the one-pass engine equals per-folder sweeps in test_sweeps_lr_grid.py (default run)
def test_one_pass_cells_are_the_per_cell_sweeps(tmp_path, monkeypatch):
    """Real training, shrunken grid (2 eta x 1 B, depths 4, 6, 10, 2 seeds): each cell folder is the
    folder a per-cell ``run_sweep`` makes (same config.json, same per-seed numbers)."""
    monkeypatch.setattr(table4, "QUICK_MAX_DEPTH", 10)
    monkeypatch.setattr(table4, "LEARNING_RATES", (0.01, 0.003))
    monkeypatch.setattr(table4, "BATCH_SIZES", (128,))
    table4.run(tmp_path / "t4", quick=True, seeds=2, progress=False)
    for lr in (0.01, 0.003):
        cfg = table4.cell_config(lr, 128, quick=True, optimizer=None, seeds=2)
        cell, ref = table4.cell_dir(tmp_path / "t4", lr, 128), tmp_path / f"ref{lr:g}"
        sweeps.run_sweep(cfg, ref, progress=False)
        assert sweeps.load_config(cell) == sweeps.load_config(ref)
        for L in (4, 6, 10):
            (pc, mc), (pr, mr) = load_depth(cell, L), load_depth(ref, L)
            np.testing.assert_allclose(pc.A, pr.A, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(pc.delta, pr.delta, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(mc["train_loss"], mr["train_loss"], rtol=1e-5)
            assert mc["updates"] == mr["updates"] and set(mc) == set(mr)


@pytest.mark.slow
def test_reproduce_table4_one_real_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(table4, "QUICK_MAX_DEPTH", 10)
    monkeypatch.setattr(table4, "LEARNING_RATES", (0.01,))
    monkeypatch.setattr(table4, "BATCH_SIZES", (128,))
    res = table4.run(tmp_path / "t4", quick=True, seeds=2, progress=False)
    c = res["cells"][0]
    assert c["depths"] == [4, 6, 10] and math.isfinite(c["alpha"]) and math.isfinite(c["beta"])
    # resumable: a second call trains nothing and gives the same numbers
    res2 = table4.run(tmp_path / "t4", quick=True, seeds=2, progress=False)
    assert res2["cells"][0]["alpha"] == c["alpha"]
