"""Tests of resnet_limits.convergence: the strong-convergence study and trained-network comparison."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.convergence import (
    StudyConfig,
    compare_trained,
    convergence_study,
    reproduce_convergence,
    surrogate_forward,
)
from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams, forward

TINY = StudyConfig(width=3, n_paths=24, n_fine=2**10, depths=(8, 16, 32, 64, 128, 256), chunk=24,
                   qv_blocks=2**4, n_trends=4, linear_alphas=(0.5,), ode_depths=None)


@pytest.fixture(scope="module")
def tiny_result():
    return convergence_study(TINY, progress=False)


def test_study_errors_decrease_with_depth_in_each_case(tiny_result):
    cases = tiny_result["cases"]
    for name in ("sde-tanh", "sde-csoftplus-ito", "sde-csoftplus-ito-estimated-q",
                 "neural-ode-tanh", "linear-ode-tanh-alpha0.5", "linear-ode-csoftplus-alpha0.5"):
        e = np.asarray(cases[name]["errors"])
        assert np.all(np.isfinite(e)), name
        assert e[-1] < e[0] / 8, (name, e)
        assert cases[name]["slope"] < -0.6, (name, cases[name]["slope"])
    assert abs(cases["neural-ode-tanh"]["slope"] + 2) < 0.15
    # the corrected SDE converges; without the Ito correction the error stalls at a much larger level
    stall = np.asarray(cases["sde-csoftplus-no-correction"]["errors"])
    good = np.asarray(cases["sde-csoftplus-ito"]["errors"])
    assert stall[-1] > 10 * good[-1], (stall, good)
    assert stall[-1] > stall[0] / 3
    assert cases["sde-csoftplus-no-correction"]["slope"] > -0.4


def test_reproduce_convergence_writes_files(tmp_path, monkeypatch, tiny_result):
    import resnet_limits.convergence as conv

    monkeypatch.setattr(conv.StudyConfig, "quick", classmethod(lambda cls, **kw: TINY))
    calls = []

    def cached(cfg, progress=True):  # the study itself is tested above: reuse its result
        calls.append(cfg)
        return json.loads(json.dumps(tiny_result))

    monkeypatch.setattr(conv, "convergence_study", cached)
    res = reproduce_convergence(tmp_path / "out", quick=True, progress=False)
    assert calls == [TINY]
    saved = json.loads((tmp_path / "out" / "convergence.json").read_text())
    assert set(saved["cases"]) == set(res["cases"])
    for c in saved["cases"].values():
        assert {"depths", "errors", "slope"} <= set(c)
    for f in saved["figures"]:
        assert (tmp_path / "out" / f).stat().st_size > 1000
    with pytest.raises(UsageError):
        reproduce_convergence(tmp_path / "x", n_paths=1, progress=False)


# ------------------------------------------------------------------ trained networks ----


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
    with pytest.raises(UsageError):
        compare_trained(run, 32)
    with pytest.raises(UsageError):
        compare_trained(tmp_path / "nothing", 16)
    with pytest.raises(UsageError):
        compare_trained(run, 16, seed=3)


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


def test_surrogate_forward_homogeneous_form():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        L, d = 5, 3
        p = ResNetParams(jnp.asarray(rng.normal(size=(L, d, d))), jnp.asarray(rng.normal(size=(L, d))),
                         jnp.asarray(rng.normal(size=L)))
        x = jnp.asarray(rng.normal(size=d))
        h = surrogate_forward(p, x, "per-layer")
        ref = [np.asarray(x)]
        for k in range(L):
            z = np.abs(float(p.delta[k])) * (np.asarray(p.A[k]) @ ref[-1] + np.asarray(p.b[k]))
            ref.append(ref[-1] + np.sign(float(p.delta[k])) * (np.logaddexp(0, z) - math.log(2)))
        np.testing.assert_allclose(h, np.stack(ref), rtol=1e-12)
        # the ReLU network itself is unchanged by the homogeneous rewriting (SP Remark 2.2)
        hr = forward(p, x, activation="relu", delta_mode="per-layer", return_hidden=True)
        ref = [np.asarray(x)]
        for k in range(L):
            z = np.abs(float(p.delta[k])) * (np.asarray(p.A[k]) @ ref[-1] + np.asarray(p.b[k]))
            ref.append(ref[-1] + np.sign(float(p.delta[k])) * np.maximum(z, 0))
        np.testing.assert_allclose(hr, np.stack(ref), rtol=1e-12)
