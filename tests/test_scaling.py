"""Tests of the scaling analysis (SP §2.3, Table 1, eqs. 5-8) on constructed weights with known
answers, plus one small end-to-end analysis of a real (tiny) sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.scaling import (
    analysed_tensors,
    analyze_tensor_family,
    conv_singular_values,
    conv_spectral_norm,
    denoise,
    fit_exponents,
    fit_seeds,
    format_analysis,
    hypothesis_test,
    rescaled_cumsum,
    split_trend_noise,
    summarize_exponent,
    table1,
    table1_loop,
    trend_integral,
    trend_weights,
)

D = 4
S = 3
DEPTHS = [64, 101, 161, 256, 406, 645, 1024]
BETA = 0.3


def abar(s: np.ndarray) -> np.ndarray:
    """A smooth d x d trend with a non-zero integral over [0, 1], shape (len(s), D, D)."""
    i = np.arange(D)[:, None]
    j = np.arange(D)[None, :]
    s = np.asarray(s, np.float64)[:, None, None]
    return 0.5 + 0.1 * i - 0.2 * j + np.sin(2 * np.pi * s * (1 + i) + j) + 0.5 * np.cos(np.pi * s * (j + 1))


def smooth_family(beta=BETA, noise=0.0, seed=0):
    """A_k = L^-beta Abar(k/L) (+ i.i.d. N(0, noise^2/L) increments), S copies per depth."""
    rng = np.random.default_rng(seed)
    out = {}
    for L in DEPTHS:
        A = np.broadcast_to(L ** -beta * abar(np.arange(L) / L), (S, L, D, D)).copy()
        if noise:
            A += rng.normal(0.0, noise / math.sqrt(L), A.shape)
        out[L] = A
    return out


# ------------------------------------------------------------------- Table 1 -----------

@pytest.mark.parametrize("shape,entry_ndim", [((2, 3, 7, 4, 4), 2), ((3, 9, 5), 1), ((4, 11), 0), ((1, 1, 3), 1)])
def test_table1_equals_plain_loop(shape, entry_ndim):
    rng = np.random.default_rng(1)
    T = rng.normal(size=shape)
    got = table1(T, entry_ndim, beta=0.37)
    lead = shape[: len(shape) - 1 - entry_ndim]
    for idx in np.ndindex(*lead):
        ref = table1_loop(T[idx], beta=0.37)
        for k, v in ref.items():
            assert got[k][idx] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_relu_tensors_are_delta_scaled_like_a_loop():
    rng = np.random.default_rng(2)
    A, b, dl = rng.normal(size=(2, 6, 3, 3)), rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 6))
    t = analysed_tensors(ResNetParams(A, b, dl), "per-layer", "relu")
    assert t["scaled_by_delta"] and t["labels"]["A"] == "|δ|A"
    for s in range(2):
        for k in range(6):
            np.testing.assert_allclose(t["A"][s, k], abs(dl[s, k]) * A[s, k])
            np.testing.assert_allclose(t["b"][s, k], abs(dl[s, k]) * b[s, k])
    q = table1(t["A"], 2)
    ref = table1_loop(np.stack([abs(dl[1, k]) * A[1, k] for k in range(6)]))
    assert q["cumsum_norm"][1] == pytest.approx(ref["cumsum_norm"])
    assert q["rss"][1] == pytest.approx(ref["rss"])
    # tanh with a shared delta: weights analysed as they are, |delta| broadcast over layers
    t2 = analysed_tensors(ResNetParams(A, b, np.array([-0.5, 0.25])), "shared", "tanh")
    assert not t2["scaled_by_delta"]
    np.testing.assert_array_equal(t2["A"], A)
    np.testing.assert_allclose(t2["delta_abs"], [[0.5] * 6, [0.25] * 6])


def _circular_conv_matrix(K_hwio, n):
    """Explicit matrix of the circular cross-correlation y[o,i,j] = sum K[p,q,c,o] x[c,i+p,j+q]."""
    kh, kw, cin, cout = K_hwio.shape
    M = np.zeros((cout * n * n, cin * n * n))
    for o in range(cout):
        for i in range(n):
            for j in range(n):
                for c in range(cin):
                    for p in range(kh):
                        for q in range(kw):
                            M[(o * n + i) * n + j, (c * n + (i + p) % n) * n + (j + q) % n] += K_hwio[p, q, c, o]
    return M


def test_conv_spectral_norm_matches_explicit_operator():
    rng = np.random.default_rng(3)
    K = rng.normal(size=(3, 3, 2, 3))
    n = 5
    M = _circular_conv_matrix(K, n)
    sv = np.linalg.svd(M, compute_uv=False)
    assert conv_spectral_norm(K, (n, n)) == pytest.approx(sv.max(), rel=1e-10)
    np.testing.assert_allclose(np.sort(conv_singular_values(K, (n, n)).ravel()), np.sort(sv)[-n * n * 2:], rtol=1e-9)
    assert conv_spectral_norm(K.transpose(3, 2, 0, 1), (n, n), layout="OIHW") == pytest.approx(sv.max(), rel=1e-10)
    with pytest.raises(ValueError):
        conv_spectral_norm(K, (2, 2))


# ------------------------------------------------------------------ fits ------------------

def test_fits_ignore_invalid_points_and_count_them():
    depths = np.array([4, 8, 16, 32, 64])
    y = np.stack([depths ** -0.7, 2 * depths ** -0.5, depths ** -0.6])
    y[0, 2] = 1e6  # a diverged seed's garbage
    valid = np.ones_like(y, bool)
    valid[0, 2] = False
    fs = fit_seeds(depths, y, valid)
    assert [f.n for f in fs] == [4, 5, 5]
    assert [-f.slope for f in fs] == pytest.approx([0.7, 0.5, 0.6])
    summ = summarize_exponent([-f.slope for f in fs], [f.stderr for f in fs], [f.n for f in fs])
    assert summ["mean"] == pytest.approx(0.6)
    assert summ["sd"] == pytest.approx(0.1)
    assert summ["stderr"] == pytest.approx(0.1 / math.sqrt(3))
    assert summ["points_per_seed"] == [4, 5, 5]
    # a seed left with too few points is left out of the mean and flagged
    valid[2, 1:] = False
    fs = fit_seeds(depths, y, valid)
    summ = summarize_exponent([-f.slope for f in fs], [f.stderr for f in fs], [f.n for f in fs])
    assert summ["n_seeds"] == 2 and summ["seeds_used"] == [True, True, False]
    assert summ["mean"] == pytest.approx(0.6)


# ------------------------------------------------------------- hypotheses -----------------

def test_smooth_trend_gives_hypothesis_1_with_nu_one():
    r = analyze_tensor_family(smooth_family(), 2)
    e = r["exponents"]
    assert abs(e["beta"]["mean"] - BETA) < 0.02
    assert e["beta"]["points_per_seed"] == [len(DEPTHS)] * S
    assert abs(e["beta_max"]["mean"] - BETA) < 0.05  # max norm also ~ L^-beta under Hypothesis 1
    assert e["nu"]["mean"] == pytest.approx(1.0, abs=0.1)
    assert r["noise_to_trend"] < 0.05
    assert r["verdict"] == "Hypothesis 1"
    assert r["test"]["steps"]["3_increments"]["vanish"]


def test_brownian_increments_give_hypothesis_2_with_bounded_rss():
    """SP Remark 2.1: A_k,mn ~ N(0, 1/(L d^2)) i.i.d., independent networks per depth."""
    rng = np.random.default_rng(4)
    fam = {L: rng.normal(0.0, 1.0 / (math.sqrt(L) * D), (S, L, D, D)) for L in DEPTHS}
    r = analyze_tensor_family(fam, 2)
    e = r["exponents"]
    assert r["verdict"] == "Hypothesis 2"
    assert abs(e["rss_slope"]["mean"]) < 0.05  # root sum of squares bounded (about 1)
    rss = r["table1"]["rss"]
    assert np.all((rss > 0.8) & (rss < 1.2))
    assert e["beta"]["mean"] > 0.8  # cumulative sum O(1): beta about 1
    assert e["nu"]["mean"] < 0  # beta-scaled increments grow
    assert r["noise_to_trend"] > 1
    assert abs(r["noise_autocorr"]) < 0.2  # diffusive: uncorrelated increments
    assert r["test"]["finite_quadratic_variation"] is True
    qv = r["splits"][DEPTHS[-1]]["quadratic_variation"]
    assert np.all(np.abs(qv - 1.0) < 0.3)  # [W]_1 of d^-1 W with W a d x d Brownian motion


def test_smooth_depth_drift_is_not_counted_as_diffusive_noise():
    """Smooth weights whose profile changes with L (finite-depth drift): large against the trend
    common to all depths, but smooth, so each network's own trend absorbs it; the increments
    still vanish: Hypothesis 1."""
    fam = {}
    for L in DEPTHS:
        s = np.arange(L) / L
        drift = 1.5 * np.sin(np.pi * s + np.log(L))[:, None, None] * np.ones((D, D))
        fam[L] = np.broadcast_to(L ** -BETA * (abar(s) + drift), (S, L, D, D)).copy()
    r = analyze_tensor_family(fam, 2)
    assert r["cross_depth_noise_to_trend"] > 0.3
    x = r["splits"][DEPTHS[-1]]
    lag1 = x["noise_lag1_autocorr"]
    assert np.all(lag1 > 0.9)  # against the common trend the residual is smooth in k
    assert r["noise_to_trend"] < 0.05  # each network's own trend takes the drift
    assert r["verdict"] == "Hypothesis 1"
    st = r["test"]["steps"]["4_trend_noise"]
    assert st["cross_depth_noise_to_trend"] == pytest.approx(r["cross_depth_noise_to_trend"])


def test_few_large_weights_among_zeros_give_neither():
    rng = np.random.default_rng(5)
    fam = {}
    for L in DEPTHS:
        A = np.zeros((S, L, D, D))
        A[:, 0] = rng.normal(size=(S, D, D))
        A[:, L // 3] = rng.normal(size=(S, D, D))
        A[:, L - 1] = 1.0
        fam[L] = A
    r = analyze_tensor_family(fam, 2)
    assert r["verdict"] == "neither (sparse)"
    assert r["test"]["steps"]["sparsity"]["sparse"]


def test_trend_noise_split_returns_planted_trend_and_noise():
    sigma = 0.02
    fam = smooth_family(noise=sigma, seed=6)
    r = analyze_tensor_family(fam, 2)
    G = r["n_grid"]
    mid = (np.arange(G) + 0.5) / G
    est = trend_weights(r["trend_integral"], 2)  # (S, G, D, D)
    ref = abar(mid)
    assert np.max(np.abs(est - ref)) < 0.03 * np.max(np.abs(ref))
    L = DEPTHS[-1]
    sp = r["splits"][L]
    planted = fam[L] - L ** -BETA * abar(np.arange(L) / L)
    qv_planted = np.sum(planted ** 2, axis=(1, 2, 3))
    assert np.all(np.abs(sp["quadratic_variation"] / qv_planted - 1) < 0.5)
    corr = np.corrcoef(sp["noise"].ravel(), planted.ravel())[0, 1]
    assert corr > 0.8
    assert r["verdict"] == "Hypothesis 1"  # the noise is small next to the trend here


def test_rescaled_cumsum_denoise_and_split_consistency():
    rng = np.random.default_rng(7)
    L, G = 50, 25
    T = rng.normal(size=(2, L, 3))
    P = rescaled_cumsum(T, 0.4, G, 1)
    assert P.shape == (2, G + 1, 3)
    # the path at s = 1 (half a layer past the end, weights continued linearly)
    np.testing.assert_allclose(P[:, -1], L ** (0.4 - 1) * (T.sum(axis=1) + T[:, -1] - 0.5 * T[:, -2]))
    # a plain-loop reference of one grid point
    s = 0.33
    x = L * s + 0.5
    k = int(math.floor(x))
    ref = sum(T[0, j] for j in range(k)) + (x - k) * T[0, k]
    Pp = rescaled_cumsum(T, 0.4, 100, 1)
    np.testing.assert_allclose(Pp[0, 33], L ** (0.4 - 1) * ref)
    # a linear trend is reproduced exactly: A_k = L^-beta (c0 + c1 k/L)
    c0, c1 = rng.normal(size=3), rng.normal(size=3)
    lin = L ** -0.4 * (c0 + c1 * (np.arange(L) / L)[:, None])
    I = trend_integral(rescaled_cumsum(lin[None], 0.4, G, 1)[None])
    np.testing.assert_allclose(denoise(I, L, 0.4, 1)[0], lin, rtol=1e-10, atol=1e-12)
    sp = split_trend_noise(lin[None], I, 0.4, 1)
    assert sp["quadratic_variation"][0] < 1e-3 * np.sum(lin ** 2)
    # weights leave out networks with weight 0 in the trend
    P2 = np.stack([np.ones((1, 3, 2)), 5 * np.ones((1, 3, 2))])
    np.testing.assert_allclose(trend_integral(P2, np.array([[1.0], [0.0]])), np.ones((1, 3, 2)))


def test_pooled_trend_averages_valid_networks_over_depths_and_seeds():
    from resnet_limits.scaling import pooled_trend

    P = np.random.default_rng(8).normal(size=(3, 2, 5, 4))  # (depths, seeds, G+1, entry)
    w = np.array([[1, 1], [1, 0], [0, 1]], float)
    ref = sum(P[i, s] for i in range(3) for s in range(2) if w[i, s]) / w.sum()
    I = pooled_trend(P, w)
    assert I.shape == (2, 5, 4)
    np.testing.assert_allclose(I[0], ref)
    np.testing.assert_allclose(I[1], ref)


def test_own_trend_keeps_slow_variation_and_drops_fast_noise():
    from resnet_limits.scaling import own_grid, own_trend

    assert own_grid(10321) == 200 and own_grid(800) == 100 and own_grid(10) == 1
    rng = np.random.default_rng(9)
    L = 2048
    s = np.arange(L) / L
    slow = (1.0 + 0.5 * np.sin(2 * np.pi * s))[None, :, None]
    fast = rng.normal(0.0, 1.0, (2, L, 1))
    T = L ** -0.5 * slow + L ** -0.5 * fast
    sp = split_trend_noise(T, own_trend(T, 0.5, 1), 0.5, 1)
    corr = np.corrcoef(sp["noise"].ravel(), (L ** -0.5 * fast).ravel())[0, 1]
    assert corr > 0.9
    trend_err = np.sqrt(np.mean((sp["denoised"] - L ** -0.5 * slow) ** 2)) / (L ** -0.5)
    assert trend_err < 0.45  # a cell of 10 layers averages the unit noise down to ~1/sqrt(10)


def test_hypothesis_test_reports_the_deciding_numbers():
    def s(m, se=0.01):
        return {"mean": m, "sd": se, "stderr": se}

    exps = {"beta": s(0.8), "nu": s(-0.3), "rss_slope": s(0.0), "kappa": s(-0.5), "beta_max": s(0.5)}
    t = hypothesis_test(exps, 0.9, label="|δ|A")
    assert t["verdict"] == "Hypothesis 2" and t["finite_quadratic_variation"] is True
    assert t["steps"]["4_trend_noise"]["noise_to_trend"] == 0.9
    assert "0.9" in t["reason"]
    exps["nu"] = s(0.5)
    assert hypothesis_test(exps, 0.05)["verdict"] == "Hypothesis 1"
    assert hypothesis_test(exps, 0.9)["verdict"] == "Hypothesis 2"


def test_fit_exponents_on_exact_power_laws():
    depths = np.array([10, 20, 40, 80, 160])
    q = {
        "cumsum_norm": np.stack([3 * depths ** 0.7] * 2),
        "max_increment": np.stack([depths ** -1.3] * 2),
        "max_norm": np.stack([depths ** -0.3] * 2),
        "rss": np.stack([depths ** 0.2] * 2),
    }
    e = fit_exponents(depths, q, np.ones((2, 5), bool))
    assert e["beta"]["mean"] == pytest.approx(0.3)
    assert e["nu"]["mean"] == pytest.approx(1.0)
    assert e["beta_max"]["mean"] == pytest.approx(0.3)
    assert e["rss_slope"]["mean"] == pytest.approx(0.2)
    assert e["kappa"]["mean"] == pytest.approx(-0.5)


# ------------------------------------------------------------- a real run ------------------

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


def test_analyze_run_on_constructed_weights(tmp_path):
    from resnet_limits.scaling import analyze_run

    run = tmp_path / "run"
    _write_constructed_run(run, [8, 16, 32, 64, 128])
    r = analyze_run(run, progress=False)
    assert r["alpha"] == pytest.approx(0.7, abs=1e-4)
    assert r["alpha_points_per_seed"] == [5, 4]  # the diverged (seed 1, L=16) point is left out
    assert r["beta"] == pytest.approx(0.3, abs=0.03)
    assert r["verdicts"]["A"] == "Hypothesis 1"
    saved = json.loads((run / "analysis.json").read_text())
    assert saved["beta"] == r["beta"] and isinstance(saved["alpha"], float)
    for p in saved["figures"]:
        assert p.endswith(".png") and (run / "figures").joinpath(p.split("/")[-1]).stat().st_size > 1000
    assert "alpha" in format_analysis(saved)


def test_analyze_run_refuses_bad_folders(tmp_path):
    from resnet_limits.scaling import analyze_run

    with pytest.raises(UsageError):
        analyze_run(tmp_path / "nothing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        analyze_run(tmp_path / "empty", progress=False)
    run = tmp_path / "two"
    _write_constructed_run(run, [4, 8])
    with pytest.raises(UsageError, match="at least 3"):
        analyze_run(run, progress=False)


def test_analyze_run_end_to_end_on_a_tiny_sweep(tmp_path):
    from resnet_limits import sweeps
    from resnet_limits.scaling import analyze_run

    cfg = sweeps.make_config("relu-synthetic", depths=[3, 5, 8], seeds=2, max_updates=3, epochs=1,
                             n_train=64, n_test=16)
    run = tmp_path / "tiny"
    sweeps.run_sweep(cfg, run, progress=False)
    r = analyze_run(run, progress=False)
    assert r["labels"]["A"] == "|δ|A"
    assert len(r["alpha_per_seed"]) == 2 and r["alpha_points_per_seed"] == [3, 3]
    assert math.isfinite(r["beta"]) and math.isfinite(r["alpha"])
    assert set(r["verdicts"]) == {"A", "b"}
    _, m = sweeps.load_depth(run, 8)
    np.testing.assert_allclose(r["denoised"]["trained_loss"][-1], np.mean(m["train_loss"]), rtol=1e-4)
    assert (run / "analysis.json").is_file() and (run / "figures" / "fig6_denoised.png").is_file()
