"""Tests of the pure scaling analysis (SP §2.3, Table 1, eqs. 5-8, Fig. 6) on constructed weights
with known answers. The analysis of a run folder is tested in test_analysis.py."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from resnet_limits.models import ResNetParams, forward, init_params, mse
from resnet_limits.scaling import (
    analysed_tensors,
    analyze_tensor_family,
    conv_singular_values,
    conv_spectral_norm,
    conv_spectral_norms,
    denoise,
    denoised_params,
    fit_exponents,
    fit_seeds,
    hypothesis_test,
    noise_summary,
    own_trend,
    pad_depth,
    pad_seeds,
    seed_losses,
    seeds_by_depth,
    split_common_and_own,
    rescaled_cumsum,
    split_trend_noise,
    summarize_exponent,
    table1,
    table1_loop,
    trend_integral,
    trend_weights,
    valid_seeds,
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
    with jax.enable_x64(True):
        assert float(conv_spectral_norm(K, (n, n))) == pytest.approx(sv.max(), rel=1e-10)
        np.testing.assert_allclose(np.sort(np.ravel(conv_singular_values(K, (n, n)))), np.sort(sv)[-n * n * 2:],
                                   rtol=1e-9)
        assert float(conv_spectral_norm(K.transpose(3, 2, 0, 1), (n, n), layout="OIHW")) == pytest.approx(
            sv.max(), rel=1e-10)
    # float32 (JAX's default) to float32 accuracy
    assert float(conv_spectral_norm(K.astype(np.float32), (n, n))) == pytest.approx(sv.max(), rel=1e-5)
    with pytest.raises(ValueError):
        conv_spectral_norm(K, (2, 2))
    with pytest.raises(ValueError, match="layout"):
        conv_spectral_norm(K, (n, n), layout="NCHW")


def test_conv_spectral_norms_of_a_stack_jitted_and_vmapped():
    """The batched norms of a stack of kernels (e.g. the blocks of a stage) equal the explicit
    operators' and the one-kernel function's under jit and vmap."""
    rng = np.random.default_rng(10)
    Ks = rng.normal(size=(4, 3, 3, 2, 2))
    n = 4
    ref = [np.linalg.svd(_circular_conv_matrix(K, n), compute_uv=False).max() for K in Ks]
    with jax.enable_x64(True):
        got = conv_spectral_norms(Ks, (n, n))
        assert got.shape == (4,)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(conv_spectral_norms(Ks.transpose(0, 4, 3, 1, 2), [n, n], "OIHW")),
                                   ref, rtol=1e-10)
        one = jax.jit(conv_spectral_norm, static_argnums=(1,))
        vm = jax.vmap(lambda K: conv_spectral_norm(K, (n, n)))
        np.testing.assert_allclose([float(one(K, (n, n))) for K in Ks], ref, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(vm(Ks)), ref, rtol=1e-10)


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


# ------------------------------------------------------------- seed x depth tables --------

def test_seed_depth_tables_cut_pad_and_fill():
    t = seeds_by_depth([[1.0, 2.0, 3.0], None, [4.0]], 2)
    np.testing.assert_array_equal(t, [[1.0, np.nan, 4.0], [2.0, np.nan, np.nan]])
    assert seeds_by_depth([[True], [False, True]], 2, False).tolist() == [[True, False], [False, True]]
    np.testing.assert_array_equal(pad_seeds(np.ones((1, 2)), 3), [[1, 1], [0, 0], [0, 0]])
    assert pad_seeds(np.arange(5), 2).tolist() == [0, 1]


def test_valid_seeds_leave_out_diverged_and_non_finite_networks():
    A, b = np.zeros((4, 3, 2, 2)), np.zeros((4, 3, 2))
    A[1, 2, 0, 0] = np.nan
    delta = np.array([0.1, 0.1, np.inf, 0.1])
    got = valid_seeds(ResNetParams(A, b, delta), [False, False, False, True])
    assert got.tolist() == [True, False, False, False]


# ------------------------------------------------------------- the two trends -------------

def test_split_against_common_and_own_trend_masks_invalid_networks():
    fam = smooth_family(noise=0.05, seed=11)
    L = DEPTHS[-1]
    T = fam[L]
    I = trend_integral(rescaled_cumsum(T, BETA, 64, 2)[None])
    ok = np.array([True, False, True])
    common, own = split_common_and_own(T, I, BETA, 2, valid=ok)
    ref_c, ref_o = split_trend_noise(T, I, BETA, 2), split_trend_noise(T, own_trend(T, BETA, 2), BETA, 2)
    for got, ref in ((common, ref_c), (own, ref_o)):
        np.testing.assert_array_equal(got["denoised"], ref["denoised"])
        assert np.isnan(got["quadratic_variation"][1]) and np.isnan(got["noise_to_trend"][1])
        np.testing.assert_array_equal(got["quadratic_variation"][ok], ref["quadratic_variation"][ok])
    # the step-4 numbers: medians over the chosen depths and seeds, QV of the largest depth
    own_t = {"noise_to_trend": np.array([[9.0, 1.0, 3.0], [9.0, 2.0, np.nan]]),
             "noise_lag1_autocorr": np.array([[0.0, 0.5, 0.7], [0.0, 0.9, 0.1]]),
             "quadratic_variation": np.array([[1.0, 1.0, 2.0], [1.0, 1.0, np.nan]])}
    common_t = dict(own_t, noise_to_trend=np.full((2, 3), 4.0))
    s = noise_summary(own_t, common_t, [1, 2])
    assert s == {"noise_to_trend": 2.0, "noise_autocorr": 0.6, "cross_depth_noise_to_trend": 4.0,
                 "qv_largest": 2.0}


# ------------------------------------------------------------- denoised networks ----------

def test_seed_losses_are_the_networks_training_loss_padded_or_not():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = jax.vmap(lambda k: init_params(k, 5, 4, delta_mode="per-layer", scale=0.5))(keys)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (16, 4)), np.float32)
    y = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (16, 4)), np.float32)
    ref = [float(mse(forward(jax.tree.map(lambda a: a[s], params), x, activation="tanh", delta_mode="per-layer"), y))
           for s in range(3)]
    padded = pad_depth(params, 64)
    assert padded.A.shape[1] == 64 and padded.delta.shape == (3, 64) and padded.A.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(padded.A[:, 5:]), 0.0)
    got = seed_losses(params, x, y, activation="tanh", delta_mode="per-layer")
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # |delta| moved into the weights (ReLU, SP Remark 2.2): the network with |delta| A, |delta| b and
    # sign(delta) is the trained network
    p = jax.tree.map(np.asarray, params)
    dabs = np.abs(p.delta)
    den = denoised_params(dabs[..., None, None] * p.A, dabs[..., None] * p.b, p.delta, True)
    assert set(np.unique(den.delta)) <= {-1.0, 1.0}
    np.testing.assert_allclose(seed_losses(den, x, y, activation="relu", delta_mode="per-layer"),
                               seed_losses(params, x, y, activation="relu", delta_mode="per-layer"), rtol=1e-5)
    assert denoised_params(p.A, p.b, p.delta, False).delta is p.delta
