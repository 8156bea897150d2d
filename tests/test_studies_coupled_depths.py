"""Nested ladders in a sweep (``SweepConfig.nested``) and the coupled-depths study
(``resnet_limits/studies/coupled_depths.py``)."""

import json

import jax
import numpy as np
import pytest

from helpers import load_depth
from resnet_limits.config import sweep_config
from resnet_limits.errors import UsageError
from resnet_limits.nested import path_scales
from resnet_limits.studies import coupled_depths as cd
from resnet_limits.sweeps import run_initial_weights, run_keys, run_sweep


def _ladder(**kw):
    return sweep_config("tanh-synthetic", depths=[4, 8, 16], seeds=2, epochs=1, max_updates=4, nested=True, **kw)


def test_a_ladder_is_l0_times_powers_of_two():
    assert _ladder().base_depth == 4
    with pytest.raises(UsageError, match="12 is not"):
        sweep_config("tanh-synthetic", depths=[4, 8, 12], nested=True)
    with pytest.raises(UsageError, match="L0 = 3; 4 is not"):
        sweep_config("tanh-synthetic", depths=[4, 8], nested=True, base_depth=3)
    cfg = _ladder()
    np.testing.assert_array_equal(np.asarray(run_keys(cfg, 16)), np.asarray(run_keys(cfg, 4)))  # one data order
    plain = sweep_config("tanh-synthetic", depths=[4, 8, 16], seeds=2)
    assert not np.array_equal(np.asarray(run_keys(plain, 16)), np.asarray(run_keys(plain, 4)))


def test_nested_initial_weights_refine_the_coarse_path_exactly(tmp_path):
    cfg = _ladder()
    run_initial_weights(cfg, tmp_path / "init", progress=False)
    paths = {}
    for L in (4, 8, 16):
        p, m = load_depth(tmp_path / "init", L)
        c_A, _ = path_scales(L, 10, init="xavier-depth", init_scale=0.01)
        paths[L] = np.cumsum(np.asarray(p.A, np.float64), axis=1) / c_A  # the same Brownian path at every depth
    for L in (4, 8):
        np.testing.assert_allclose(paths[2 * L][:, 1::2], paths[L], rtol=1e-5, atol=1e-6)


def test_the_base_depth_of_a_ladder_is_the_ordinary_sweep(tmp_path):
    ladder = sweep_config("tanh-synthetic", depths=[4, 8], seeds=2, epochs=1, max_updates=4, nested=True)
    run_sweep(ladder, tmp_path / "ladder", progress=False)  # (deeper rungs would not change its base depth)
    run_sweep(sweep_config("tanh-synthetic", depths=[4], seeds=2, epochs=1, max_updates=4), tmp_path / "plain",
              progress=False)
    (a, ma), (b, mb) = load_depth(tmp_path / "ladder", 4), load_depth(tmp_path / "plain", 4)
    # the same network and minibatches; its initial weights come from another program (float32 round-off)
    np.testing.assert_allclose(a.A, b.A, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ma["train_loss"], mb["train_loss"], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("cd")
    # three depths, the fewest the analysis takes; from L0 = 8 the rates are past the shallowest depths'
    # transient (outputs: rate 1.08, relative sup error of the limit 0.04; from L0 = 4: 1.33 and 0.06)
    mode = cd.Mode((8, 16, 32), 2, 4, max_updates=20, n_boot=200)
    return out, cd.run(out, mode=mode, cases=["a1-smooth"], progress=False)


def test_tiny_study_writes_its_result_table_and_figures(tiny_study):
    out, res = tiny_study
    saved = json.loads((out / "coupled_depths.json").read_text())
    assert set(saved) == set(res) and [c["name"] for c in saved["cases"]] == ["a1-smooth"]
    for f in res["figures"]:
        assert (out / f).is_file()
    md = (out / "coupled_depths.md").read_text()
    assert md.count("| δ = L^-1, smooth |") == 1
    c = res["cases"][0]
    assert c["trained"]["pair_depths"] == [8, 16]
    assert np.shape(c["trained"]["distances"]["weights"]) == (2, 2)


def test_a_smooth_ladder_with_delta_one_over_l_converges_to_its_ode(tiny_study):
    _, res = tiny_study
    c = next(c for c in res["cases"] if c["name"] == "a1-smooth")
    rates = c["trained"]["rates"]
    assert rates["outputs"]["verdict"] == "converges" and 0.7 < rates["outputs"]["rate"] < 1.6
    assert c["limit"].get("sup_error") is not None and c["limit"]["relative_sup_error"] < 0.2


def test_output_distance_of_a_fixed_smooth_network_falls_like_one_over_l():
    """No training: the weights of every depth sample one smooth function, delta = 1/L (the Euler
    scheme of an ODE): ||f^(2L) - f^(L)|| ~ 1/L."""
    from resnet_limits.models import ResNetParams, forward

    t = lambda L: (np.arange(L) / L)[:, None, None]  # noqa: E731
    M = np.random.default_rng(0).normal(size=(10, 10)) / np.sqrt(10)
    x = np.random.default_rng(1).normal(size=(4, 10))

    def f(L):
        A, b = np.cos(3 * t(L)) * M, np.sin(2 * t(L))[:, :, 0] * np.ones((L, 10))
        return np.asarray(forward(ResNetParams(A, b, np.float64(1.0 / L)), x, activation="tanh"))

    with jax.enable_x64(True):
        Ls = [16, 32, 64, 128, 256]
        d = [np.linalg.norm(f(2 * L) - f(L), axis=-1).mean() for L in Ls]
    slope = np.polyfit(np.log(Ls), np.log(d), 1)[0]
    assert abs(slope + 1.0) < 0.1
