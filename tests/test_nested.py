"""Tests of nested ladders of initial weights and of the distances between depths (resnet_limits.nested;
SP eq. 1, SP §2.2 Hypotheses 1-2).

Tolerances: exact nesting to 1e-12 (float64, relative to the largest value compared) and 1e-6
(float32, relative); the variance of refined increments to 5% with 16384 entries (about 4.5
standard errors) and the correlation of the two halves of a cell below 0.05 (4.5 standard errors);
the output distance of a fixed smooth network with delta = 1/L falls with slope -1 +- 0.1 over
L = 16..1024; bootstrap intervals cover the true rate in at least 85% of 100 synthetic ladders.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.models import INITS, ResNetParams, forward, init_params, init_scales
from resnet_limits.nested import (
    RateFit,
    at_shared_times,
    coarsen,
    coarsen_nested,
    convergence_verdict,
    ladder_level,
    nested_initial_params,
    nested_ladder,
    pair_means,
    pair_sums,
    path_distance,
    path_scales,
    rate_fit,
    richardson_extrapolation,
    weight_function_distance,
    weight_path,
)
from resnet_limits.scaling import loglog_fit

GAUSSIAN = ("xavier-depth", "xavier", "brownian", "iid")
KEY = jax.random.key(20240)
RNG = np.random.default_rng(20240)  # test data that need no JAX key (no compiled draws)
# One ladder shape (and float64) for nearly every test, so that the compiled draws are shared:
# depths 4 .. 32.
L0, D, LEVELS = 4, 3, 4


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _path(T) -> np.ndarray:
    """sum_{i<k} T_i, k = 0..L, in numpy float64 (the reference for :func:`weight_path`)."""
    T = np.asarray(T, np.float64)
    return np.concatenate([np.zeros_like(T[:1]), np.cumsum(T, axis=0)])


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------------------
# The nested initialisation
# --------------------------------------------------------------------------------------


def test_ladder_level():
    assert ladder_level(12, 3) == 2 and ladder_level(3, 3) == 0
    assert ladder_level(16, 8) == 1
    for depth, base in [(12, 5), (24, 4), (2, 4), (4, 0)]:
        with pytest.raises(ValueError):
            ladder_level(depth, base)
    with pytest.raises(ValueError, match="power of two"):
        nested_initial_params(KEY, 12, 3, base_depth=4)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("delta_mode", ["shared", "per-layer", "none"])
def test_base_depth_is_init_params(x64, init, delta_mode):
    f64 = jnp.float64
    p = nested_initial_params(KEY, L0, D, base_depth=L0, init=init, delta_mode=delta_mode, init_scale=0.3, dtype=f64)
    q = init_params(KEY, L0, D, init=init, delta_mode=delta_mode, scale=0.3, dtype=f64)
    assert np.array_equal(p.A, q.A) and np.array_equal(p.b, q.b)
    assert (p.delta is None and q.delta is None) or np.array_equal(p.delta, q.delta)


def test_deterministic_ladder(x64):
    kw = dict(init="iid", dtype=jnp.float64)
    ladder = nested_ladder(KEY, L0, LEVELS, D, **kw)
    for j, p in enumerate(ladder):
        q = nested_initial_params(KEY, L0 * 2 ** j, D, base_depth=L0, **kw)
        assert p.A.shape == (L0 * 2 ** j, D, D)
        assert all(np.array_equal(u, v) for u, v in zip(p, q))
    other = nested_initial_params(jax.random.key(1), 4 * L0, D, base_depth=L0, **kw)
    assert not np.allclose(other.A, ladder[2].A)


def _normalised_paths(init, nesting, dtype, n_levels=LEVELS, L0=L0, d=D):
    """c_L^{-1} sum_{i<k} A_i and the same for b, at the base grid's times, for every depth."""
    out = []
    for p in nested_ladder(KEY, L0, n_levels, d, init=init, nesting=nesting, dtype=dtype):
        L = p.A.shape[0]
        cA, cb = path_scales(L, d, init=init, base_depth=L0, nesting=nesting)
        out.append((_path(p.A)[:: L // L0] / cA, _path(p.b)[:: L // L0] / cb))
    return out


@pytest.mark.parametrize("init", GAUSSIAN)
@pytest.mark.parametrize("nesting", ["law", "path"])
def test_gaussian_paths_are_nested_float64(x64, init, nesting):
    paths = _normalised_paths(init, nesting, jnp.float64)
    for PA, Pb in paths[1:]:
        assert _max_rel(PA, paths[0][0]) < 1e-12
        assert _max_rel(Pb, paths[0][1]) < 1e-12


@pytest.mark.parametrize("init", GAUSSIAN)
def test_gaussian_paths_are_nested_float32(init):
    paths = _normalised_paths(init, "law", jnp.float32, n_levels=3)
    for PA, Pb in paths[1:]:
        assert _max_rel(PA, paths[0][0]) < 1e-6
        assert _max_rel(Pb, paths[0][1]) < 1e-6


@pytest.mark.parametrize("init", GAUSSIAN)
def test_raw_cumulative_sums(x64, init):
    """``path``: the raw sums agree; ``law``: they scale by c_{2L}/c_L = sqrt 2 s_{2L}/s_L (1 for brownian)."""
    d = D
    for nesting in ("law", "path"):
        p, q = nested_ladder(KEY, L0, 2, d, init=init, nesting=nesting, dtype=jnp.float64)
        ratio = 1.0
        if nesting == "law":
            ratio = math.sqrt(2.0) * init_scales(2 * L0, d, init)[0] / init_scales(L0, d, init)[0]
            assert ratio == pytest.approx({"xavier-depth": 2 ** -0.5, "brownian": 1.0}.get(init, 2 ** 0.5))
        assert _max_rel(_path(q.A)[::2], ratio * _path(p.A)) < 1e-12
        if ratio == 1.0:
            assert float(path_distance(p.A, q.A)) < 1e-12


@pytest.mark.parametrize("init", GAUSSIAN)
@pytest.mark.parametrize("nesting", ["law", "path"])
def test_refined_increments_have_the_init_variance(x64, init, nesting):
    """3 refinements of depth 4 for 64 keys: 32 layers x 9 entries x 64 = 18432 draws of A (6144 of
    b); Var / target within 5% for A (about 4.5 standard errors) and 10% for b (5.5), the two halves
    of each cell uncorrelated (|corr| < 0.05, 4.8 standard errors)."""
    L = L0 * 2 ** (LEVELS - 1)
    ps = [nested_initial_params(jax.random.fold_in(KEY, i), L, D, base_depth=L0, init=init, nesting=nesting,
                                init_scale=0.5, dtype=jnp.float64) for i in range(64)]
    sA, sb = init_scales(L, D, init, 0.5)
    if nesting == "path":
        sA, sb = (s * math.sqrt(L0 / L) for s in init_scales(L0, D, init, 0.5))
    A = np.stack([p.A for p in ps], axis=1) / sA
    b = np.stack([p.b for p in ps], axis=1) / sb
    assert np.var(A) == pytest.approx(1.0, abs=0.05) and abs(np.mean(A)) < 0.05
    assert abs(np.corrcoef(A[0::2].ravel(), A[1::2].ravel())[0, 1]) < 0.05
    assert np.var(b) == pytest.approx(1.0, abs=0.1)


def _smooth_closed_form(C, L):
    """sum_m phi_m(k/L) C_m with the 2F + 1 = 5 Fourier modes of the smooth init, in numpy."""
    t = np.arange(L) / L
    modes = [np.ones_like(t)]
    for f in (1, 2):
        modes += [math.sqrt(2) * np.cos(2 * math.pi * f * t), math.sqrt(2) * np.sin(2 * math.pi * f * t)]
    return np.tensordot(np.stack(modes, 1) / math.sqrt(5), C, axes=1)


def test_smooth_init_is_the_same_function(x64):
    """A_k = sum_m phi_m(k/L) C_m in closed form at L = 16, 32, 2048; depth 2L at the shared times
    equals depth L."""
    kA, kb, _ = jax.random.split(KEY, 3)
    s = 1.0 / math.sqrt(D)
    CA = s * np.asarray(jax.random.normal(kA, (5, D, D), jnp.float64))
    Cb = s * np.asarray(jax.random.normal(kb, (5, D), jnp.float64))
    ladder = [nested_initial_params(KEY, L, D, base_depth=16, init="smooth", dtype=jnp.float64)
              for L in (16, 32, 2048)]
    for p in ladder:
        L = p.A.shape[0]
        assert _max_rel(p.A, _smooth_closed_form(CA, L)) < 1e-12
        assert _max_rel(p.b, _smooth_closed_form(Cb, L)) < 1e-12
        assert float(p.delta) == 1.0 / L
    for p, q in zip(ladder, ladder[1:]):
        step = q.A.shape[0] // p.A.shape[0]
        qA, qb = np.asarray(q.A), np.asarray(q.b)
        assert _max_rel(qA[::step], p.A) < 1e-12 and _max_rel(qb[::step], p.b) < 1e-12
    assert float(weight_function_distance(ladder[0].A, ladder[1].A)) < 1e-12


def test_per_layer_delta_is_a_refined_step_function(x64):
    ladder = nested_ladder(KEY, L0, 3, D, init="brownian", delta_mode="per-layer", dtype=jnp.float64)
    base = np.asarray(ladder[0].delta)
    for p in ladder:
        L = p.delta.shape[0]
        assert np.array_equal(L * np.asarray(p.delta), np.repeat(L0 * base, L // L0))  # exact
        assert np.array_equal(pair_sums(p.delta), ladder[0].delta) if L == 2 * L0 else True
        assert _max_rel(_path(p.delta)[:: L // L0], _path(ladder[0].delta)) < 1e-12
    fixed = nested_initial_params(KEY, 4 * L0, D, base_depth=L0, delta_mode="per-layer", branch_exponent=0.5,
                                  dtype=jnp.float64)
    assert np.allclose(fixed.delta, 1.0 / math.sqrt(4 * L0))


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("nesting", ["law", "path"])
def test_coarsen_nested_inverts_a_refinement(x64, init, nesting):
    for delta_mode, a in [("shared", None), ("per-layer", None), ("per-layer", 0.5), ("none", None)]:
        kw = dict(init=init, init_scale=0.2, delta_mode=delta_mode, branch_exponent=a, nesting=nesting)
        ladder = nested_ladder(KEY, L0, 3, D, dtype=jnp.float64, **kw)
        for p, q in zip(ladder, ladder[1:]):
            c = coarsen_nested(q, **kw)
            assert _max_rel(c.A, p.A) < 1e-12 and _max_rel(c.b, p.b) < 1e-12
            assert (c.delta is None and p.delta is None) or _max_rel(c.delta, p.delta) < 1e-12


def test_coarsen_helpers(x64):
    T = jnp.arange(24.0).reshape(6, 2, 2)
    assert np.array_equal(pair_sums(T), T[0::2] + T[1::2])
    assert np.array_equal(pair_means(T), (T[0::2] + T[1::2]) / 2)
    p = nested_initial_params(KEY, 2 * L0, D, base_depth=L0, delta_mode="per-layer", dtype=jnp.float64)
    for how, ref in [("sum", pair_sums), ("mean", pair_means), ("sample", lambda x: x[::2])]:
        c = coarsen(p, how, factor=3.0)
        assert np.allclose(c.A, 3.0 * ref(p.A)) and np.allclose(c.b, 3.0 * ref(p.b))
        assert np.allclose(c.delta, pair_sums(p.delta))
    shared = nested_initial_params(KEY, 2 * L0, D, base_depth=L0, dtype=jnp.float64)
    assert float(coarsen(shared).delta) == pytest.approx(1 / L0)
    with pytest.raises(ValueError):
        pair_sums(jnp.ones((3, 2)))


# --------------------------------------------------------------------------------------
# Convergence of a fixed smooth network, and the distances
# --------------------------------------------------------------------------------------


def test_fixed_smooth_network_output_converges_like_1_over_L(x64):
    """Fixed smooth weights, delta = 1/L, no training: SP eq. 1 is the Euler scheme of
    dh/dt = sigma(Abar(t) h + bbar(t)), so ||f^{(2L)}(x) - f^{(L)}(x)|| ~ C/L; Richardson with r = 1
    removes that term (differences then fall like L^{-2}).

    Depth L's weights are the depth-2048 ladder member's layers at k/L, i.e. depth L of the ladder
    (the nesting tested above)."""
    C, x = 2048, jnp.asarray(RNG.standard_normal((8, D)))
    fine = nested_initial_params(KEY, C, D, base_depth=16, init="smooth", dtype=jnp.float64)
    depths = [16 * 2 ** j for j in range(8)]  # pairs (16, 32) .. (1024, 2048)
    A, b = np.asarray(fine.A), np.asarray(fine.b)
    outs = [jax.jit(forward)(ResNetParams(A[:: C // L], b[:: C // L], jnp.asarray(1.0 / L)), x) for L in depths]
    dist = [float(jnp.max(jnp.linalg.norm(g - f, axis=-1))) for f, g in zip(outs, outs[1:])]
    assert loglog_fit(depths[:-1], dist).slope == pytest.approx(-1.0, abs=0.1)
    rich = [richardson_extrapolation(f, g, 1.0) for f, g in zip(outs, outs[1:])]
    rdist = [float(jnp.max(jnp.abs(g - f))) for f, g in zip(rich, rich[1:])]  # at L = 16 .. 512
    assert loglog_fit(depths[1:-2], rdist[1:]).slope == pytest.approx(-2.0, abs=0.2)


def _loop_distances(TL, T2L, beta):
    TL, T2L = np.asarray(TL, np.float64), np.asarray(T2L, np.float64)
    L = TL.shape[0]
    fro = lambda x: math.sqrt(float(np.sum(np.square(x))))  # noqa: E731
    sample = max(fro((2 * L) ** beta * T2L[2 * k] - L ** beta * TL[k]) for k in range(L))
    mean = max(fro((2 * L) ** beta * (T2L[2 * k] + T2L[2 * k + 1]) / 2 - L ** beta * TL[k]) for k in range(L))
    path = 0.0
    for k in range(L + 1):
        coarse = sum((TL[i] for i in range(k)), np.zeros(TL.shape[1:])) * L ** (beta - 1)
        fine = sum((T2L[i] for i in range(2 * k)), np.zeros(TL.shape[1:])) * (2 * L) ** (beta - 1)
        path = max(path, fro(fine - coarse))
    return sample, mean, path


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_distances_against_loops(x64, shape):
    TL = jnp.asarray(RNG.standard_normal((7,) + shape))
    T2L = jnp.asarray(RNG.standard_normal((14,) + shape))
    for beta in (0.0, 0.3, 1.0):
        assert np.allclose(weight_path(TL, beta), 7.0 ** (beta - 1) * _path(TL), rtol=1e-12)
        sample, mean, path = _loop_distances(TL, T2L, beta)
        assert float(weight_function_distance(TL, T2L, beta)) == pytest.approx(sample, rel=1e-12)
        assert float(weight_function_distance(TL, T2L, beta, pairing="mean")) == pytest.approx(mean, rel=1e-12)
        assert float(path_distance(TL, T2L, beta)) == pytest.approx(path, rel=1e-12)
    if shape == (2, 3):  # one network per call, vmap over seeds
        seeds = jax.vmap(path_distance)(jnp.stack([TL, -TL]), jnp.stack([T2L, -T2L]))
        assert np.allclose(seeds, path_distance(TL, T2L), rtol=1e-12)
    with pytest.raises(ValueError):
        path_distance(TL, T2L[:-2])


def test_brownian_ladder_distances(x64):
    """Nested brownian weights: the paths agree (distance 0, Hypothesis 2), the weights do not
    converge as functions of t (Hypothesis 1 fails: the distance does not fall with L)."""
    ladder = nested_ladder(KEY, L0, LEVELS, D, init="brownian", dtype=jnp.float64)
    wf = [float(weight_function_distance(p.A, q.A, 0.5)) for p, q in zip(ladder, ladder[1:])]
    assert all(float(path_distance(p.A, q.A)) < 1e-12 for p, q in zip(ladder, ladder[1:]))
    assert min(wf) > 0.5


def test_richardson_extrapolation_is_exact(x64):
    for r in (0.5, 1.0, 2.0):
        for n in (8, 9):  # a layer grid (L values) and a knot grid (L + 1 values)
            L = n if n % 2 == 0 else n - 1
            t_c, t_f = np.arange(n) / L, np.arange(2 * n - (n % 2)) / (2 * L)
            f, c = (lambda t: np.sin(3 * t)), (lambda t: 1.0 + t ** 2)
            fL, f2L = f(t_c) + c(t_c) * L ** -r, f(t_f) + c(t_f) * (2 * L) ** -r
            assert np.allclose(richardson_extrapolation(fL, f2L, r), f(t_c), rtol=0, atol=1e-12)
        out = RNG.standard_normal((4, 3))  # an output: the same shape at both depths
        noise = RNG.standard_normal((4, 3))
        got = richardson_extrapolation(out + noise * 16.0 ** -r, out + noise * 32.0 ** -r, r)
        assert np.allclose(got, out, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        richardson_extrapolation(np.ones(3), np.ones(5), 0.0)
    with pytest.raises(ValueError):
        at_shared_times(np.ones(7), np.ones(3))
    assert np.allclose(richardson_extrapolation(jnp.ones(3), jnp.ones(5), 1.0), 1.0)  # JAX arrays


# --------------------------------------------------------------------------------------
# The rate over a ladder
# --------------------------------------------------------------------------------------


def _synthetic(seed, rate, n_seeds=16, depths=(16, 32, 64, 128, 256, 512), noise=0.2):
    """distance[s, p] = C_s L_p^{-rate} exp(noise eps): per-seed constants and log-normal noise."""
    rng = np.random.default_rng(seed)
    L = np.asarray(depths, np.float32)
    C = np.exp(0.5 * rng.standard_normal((n_seeds, 1)))
    dist = C * L ** -rate * np.exp(noise * rng.standard_normal((n_seeds, L.size)))
    return jnp.asarray(L), jnp.asarray(dist, jnp.float32)


def test_rate_fit_interval_covers_the_true_rate():
    """Coverage of the 95% seed bootstrap (400 resamples) over 100 synthetic ladders of 16 seeds
    and 6 depths with rate 1/2: >= 85%; the rates' mean within 0.02 of 1/2."""
    fits = [rate_fit(*_synthetic(seed, 0.5), jax.random.key(seed), n_boot=400) for seed in range(100)]
    rate, low, high = (np.array([float(getattr(f, k)) for f in fits]) for k in ("rate", "low", "high"))
    assert np.mean((low <= 0.5) & (0.5 <= high)) >= 0.85
    assert abs(np.mean(rate) - 0.5) < 0.02
    assert np.all(low < rate) and np.all(rate < high)


def test_convergence_verdicts():
    """Rate 0.5 -> converges; flat (rate 0) -> does not converge; rate 0.1 with log-noise 1 (the 95%
    interval about +-0.17 wide) -> inconclusive. Same shapes throughout: one compiled program."""
    verdict = lambda rate, noise: convergence_verdict(  # noqa: E731
        rate_fit(*_synthetic(3, rate, noise=noise), jax.random.key(4), n_boot=400))
    assert verdict(0.5, 0.2) == "converges"
    assert verdict(0.0, 0.2) == "does not converge"
    assert verdict(-0.3, 0.2) == "does not converge"  # growing distances
    assert verdict(0.1, 1.0) == "inconclusive"
    fit = RateFit(*(jnp.asarray(v) for v in (0.3, jnp.nan, jnp.nan, 0)))
    assert convergence_verdict(fit) == "inconclusive"


def test_rate_fit_leaves_out_diverged_points():
    L, dist = _synthetic(6, 1.0, noise=0.0)
    dist = dist.at[0, 2].set(jnp.nan).at[1, 3].set(0.0).at[2, 1].set(jnp.inf)
    fit = rate_fit(L, dist, jax.random.key(7), n_boot=400)
    assert float(fit.rate) == pytest.approx(1.0, abs=1e-4)  # float32 logs
    assert int(fit.n_points) == dist.size - 3
    # with noise 0 every seed has the same slope: the interval is the point
    assert float(fit.high) - float(fit.low) < 1e-4
