"""Tests of the analysis of a run folder (``resnet_limits/analysis.py``): planted weights with
known exponents, bad and damaged folders, and one small end-to-end analysis of a real (tiny) sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import load_depth
from resnet_limits import sweeps
from resnet_limits.config import sweep_config
from resnet_limits.analysis import analyze_run, format_analysis
from resnet_limits.errors import DamagedRunError, UsageError

DEPTHS = [8, 16, 32, 64, 128]


def _write_constructed_run(run_dir, depths, seeds=2, d=3):
    """A sweep folder in the run format (run_format.md) with planted smooth weights, no training."""
    cfg = dict(preset="tanh-synthetic", dataset="synthetic", activation="tanh", delta_mode="shared", width=d,
               n_train=64, n_test=16, batch_size=32, lr=0.01, optimizer="adam", epochs=1, max_updates=1,
               epsilon=0.01, seeds=seeds, init="xavier-depth", init_scale=0.01, seed=0, data_seed=0,
               depths=list(depths))
    (run_dir / "depths").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    for L in depths:
        s = np.arange(L) / L
        A = np.stack([L ** -0.3 * (0.3 + (1 + 0.5 * np.cos(np.pi * s))[:, None, None] * np.eye(d))] * seeds)
        b = np.stack([L ** -0.3 * (0.2 + np.sin(np.pi * s)[:, None] * np.ones(d))] * seeds)
        delta = np.full(seeds, 1.0 / L ** 0.7)
        np.savez(run_dir / "depths" / f"L{L:05d}.npz", A=A.astype(np.float32), b=b.astype(np.float32), delta=delta)
        m = dict(depth=L, seeds=seeds, train_loss=[0.1] * seeds, test_loss=[0.1] * seeds, updates=[1] * seeds,
                 converged=[False] * seeds, diverged=[False] * (seeds - 1) + [L == depths[1]],
                 loss_curve=[[0.1]] * seeds, seconds=0.0)
        (run_dir / "depths" / f"L{L:05d}.json").write_text(json.dumps(m))


@pytest.fixture
def constructed(tmp_path):
    run = tmp_path / "run"
    _write_constructed_run(run, DEPTHS)
    return run


def test_analyze_run_on_constructed_weights(constructed):
    run = constructed
    r = analyze_run(run, progress=False)
    assert r["alpha"] == pytest.approx(0.7, abs=1e-4)
    assert r["alpha_points_per_seed"] == [5, 4]  # the diverged (seed 1, L=16) point is left out
    assert r["beta"] == pytest.approx(0.3, abs=0.03)
    assert r["verdicts"]["A"] == "Hypothesis 1"
    assert r["left_out"] == {}
    saved = json.loads((run / "analysis.json").read_text())
    assert saved["beta"] == r["beta"] and isinstance(saved["alpha"], float)
    for p in saved["figures"]:
        assert p.endswith(".png") and (run / "figures").joinpath(p.split("/")[-1]).stat().st_size > 1000
    assert "alpha" in format_analysis(saved)


def test_analyze_run_refuses_bad_folders(tmp_path):
    with pytest.raises(UsageError):
        analyze_run(tmp_path / "nothing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        analyze_run(tmp_path / "empty", progress=False)
    run = tmp_path / "two"
    _write_constructed_run(run, [4, 8])
    with pytest.raises(UsageError, match="at least 3"):
        analyze_run(run, progress=False)
    (run / "config.json").write_text("{not json")
    with pytest.raises(DamagedRunError, match="config.json"):
        analyze_run(run, progress=False)


def test_a_damaged_depth_is_left_out_and_named(constructed):
    (constructed / "depths" / "L00032.npz").unlink()
    r = analyze_run(constructed, progress=False, figures=False)
    assert r["depths"] == [8, 16, 64, 128] and r["denoised"]["depths"] == r["depths"]
    assert list(r["left_out"]) == ["32"] and "L00032.npz is missing" in r["left_out"]["32"]
    assert r["alpha_points_per_seed"] == [4, 3]  # seed 1 also diverged at L=16
    assert r["alpha"] == pytest.approx(0.7, abs=1e-4)
    assert json.loads((constructed / "analysis.json").read_text())["left_out"] == r["left_out"]


def test_a_damaged_weight_file_is_left_out(constructed):
    (constructed / "depths" / "L00064.npz").write_bytes(b"garbage")
    r = analyze_run(constructed, progress=False, figures=False)
    assert 64 not in r["depths"] and "L00064.npz" in r["left_out"]["64"] and "\n" not in r["left_out"]["64"]
    for L in (8, 16, 32):
        (constructed / "depths" / f"L{L:05d}.npz").unlink()
    with pytest.raises(UsageError, match="at least 3"):
        analyze_run(constructed, progress=False, figures=False)


def test_analyze_run_end_to_end_on_a_tiny_sweep(tmp_path):
    cfg = sweep_config("relu-synthetic", depths=[3, 5, 8], seeds=2, max_updates=3, epochs=1,
                             n_train=64, n_test=16)
    run = tmp_path / "tiny"
    sweeps.run_sweep(cfg, run, progress=False)
    r = analyze_run(run, progress=False)
    assert r["labels"]["A"] == "|δ|A"
    assert len(r["alpha_per_seed"]) == 2 and r["alpha_points_per_seed"] == [3, 3]
    assert math.isfinite(r["beta"]) and math.isfinite(r["alpha"])
    assert set(r["verdicts"]) == {"A", "b"}
    _, m = load_depth(run, 8)
    np.testing.assert_allclose(r["denoised"]["trained_loss"][-1], np.mean(m["train_loss"]), rtol=1e-4)
    assert (run / "analysis.json").is_file() and (run / "figures" / "fig6_denoised.png").is_file()


def test_imported_run_skips_the_denoised_loss_and_figure_6(constructed, capsys):
    """An imported run has no training data: no SP Fig. 6, everything else as for a sweep."""
    cfg = json.loads((constructed / "config.json").read_text())
    (constructed / "config.json").write_text(json.dumps(dict(cfg, dataset="imported")))
    r = analyze_run(constructed, progress=False)
    assert r["denoised"] == {"skipped": "imported weights: no training data"}
    assert r["alpha"] == pytest.approx(0.7, abs=1e-4) and r["verdicts"]["A"] == "Hypothesis 1"
    assert r["decomposition"]["A"]["quadratic_variation"]
    names = [p.split("/")[-1] for p in r["figures"]]
    assert "fig6_denoised.png" not in names and "fig2_scaling.png" in names
    assert "skipped (imported weights: no training data)" in format_analysis(r)
