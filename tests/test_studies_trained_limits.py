"""Tests of resnet_limits.studies.trained_limits: a trained network of a run folder vs its limit."""

import json
import math

import numpy as np
import pytest

from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.studies import trained_limits
from resnet_limits.studies.trained_limits import run as compare_trained


def _write_run(run_dir, activation, delta_mode, depths, make_params, width=10):
    cfg = dict(
        preset=f"{activation}-synthetic", dataset="synthetic", activation=activation,
        delta_mode=delta_mode, width=width, n_train=64, n_test=16, batch_size=32, lr=0.01,
        optimizer="adam", epochs=1, max_updates=1, epsilon=0.01, seeds=1, init="xavier-depth",
        init_scale=0.01, seed=0, data_seed=0, depths=list(depths), min_depth=min(depths),
        max_depth=max(depths), depth_base=2 ** (1 / 3), data_dir=None,
    )
    (run_dir / "depths").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    for L in depths:
        p = make_params(L)
        arrays = dict(A=np.asarray(p.A)[None], b=np.asarray(p.b)[None])
        if p.delta is not None:
            arrays["delta"] = np.asarray(p.delta)[None]
        np.savez(run_dir / "depths" / f"L{L:05d}.npz", **arrays)
        (run_dir / "depths" / f"L{L:05d}.json").write_text(json.dumps(dict(
            depth=L, seeds=1, train_loss=[0.1], test_loss=[0.2], updates=[1], converged=[False],
            diverged=[False], loss_curve=[[0.1]], seconds=0.0)))


def _regime1(L, d=10, alpha=0.7, seed=0):
    rng = np.random.default_rng(seed)
    C0, C1 = rng.normal(size=(2, d, d)) / math.sqrt(d)
    v = rng.normal(size=d) / math.sqrt(d)
    t = np.arange(L) / L
    A = L ** (alpha - 1) * (C0[None] + np.sin(2 * np.pi * t)[:, None, None] * C1[None])
    b = L ** (alpha - 1) * np.cos(2 * np.pi * t)[:, None] * v[None]
    return ResNetParams(A.astype(np.float32), b.astype(np.float32), np.float32(L ** -alpha))


@pytest.mark.slow  # two adaptive ODE compiles; the default run compares on the ReLU run below
def test_compare_trained_tanh_linear_ode(tmp_path):
    run = tmp_path / "run"
    _write_run(run, "tanh", "shared", (16, 256), _regime1)
    r16 = compare_trained(run, 16, n_inputs=3, progress=False)
    r256 = compare_trained(run, 256, n_inputs=3, progress=False)
    assert (run / "limits" / "L00256.json").is_file()
    assert (run / "limits" / "L00256.png").stat().st_size > 1000
    assert len(r256["sup_error"]) == 3
    assert "linear ODE" in r256["limit"]
    # a Regime-1 network approaches its linear ODE limit (piecewise-linear coefficients)
    assert r256["sup_error_mean"] < r16["sup_error_mean"] / 2, (r16["sup_error"], r256["sup_error"])
    # the JSON is the returned dict; the summary is its scalars
    saved = json.loads((run / "limits" / "L00256.json").read_text())
    assert set(saved) == set(r256) and saved["sup_error"] == r256["sup_error"]
    assert json.loads(trained_limits.format_trained_limits(r256))["depth"] == 256


def test_compare_trained_relu_surrogate_sde(tmp_path):
    run = tmp_path / "run"
    L, d = 64, 10

    def brownian(L):
        rng = np.random.default_rng(1)
        A = rng.normal(size=(L, d, d)) / (math.sqrt(L) * d)
        b = rng.normal(size=(L, d)) / math.sqrt(L * d)
        delta = rng.choice([-1.0, 1.0], size=L) * rng.uniform(0.5, 1.5, size=L)
        return ResNetParams(A, b, delta)

    _write_run(run, "relu", "per-layer", (L,), brownian)
    res = compare_trained(run, L, n_inputs=2, out=tmp_path / "o", progress=False)
    assert (tmp_path / "o" / f"L{L:05d}.png").is_file()
    assert "surrogate" in res and np.all(np.isfinite(res["sup_error"]))
    assert np.all(np.isfinite(res["surrogate_network_sup_error"]))
    saved = json.loads((tmp_path / "o" / f"L{L:05d}.json").read_text())
    assert set(saved) == set(res) and len(saved["surrogate_eps_scan"]) == 3
    assert json.loads(trained_limits.format_trained_limits(res))["depth"] == L
    with pytest.raises(UsageError, match="not finished"):
        compare_trained(run, 32)
    with pytest.raises(UsageError):
        compare_trained(tmp_path / "nothing", L)
    with pytest.raises(UsageError, match="seed"):
        compare_trained(run, L, seed=3)
    with pytest.raises(UsageError, match="n_inputs"):
        compare_trained(run, L, n_inputs=0)
