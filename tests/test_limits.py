"""Tests of resnet_limits.limits: paths, Q, the ODE/SDE limit solvers (SP §4; AA §4)."""

import math
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from resnet_limits.limits import (
    REGIME2_ACTIVATIONS,
    SDE_CASES,
    AffineControlTerm,
    BrownianQ,
    ConstantPath,
    FunctionPath,
    PiecewiseLinearPath,
    brownian_increments,
    brownian_network,
    brownian_qv,
    coarsen_increments,
    error_rate,
    estimate_qv,
    fine_path,
    forward_variants,
    linear_case_name,
    linear_ode_expected_slope,
    linear_ode_rate_terms,
    map_paths,
    moving_average,
    network_and_limit,
    ode_strong_errors,
    regime2_strong_errors,
    sde_strong_errors,
    solve_linear_ode,
    solve_neural_ode,
    solve_sde,
    sup_sq_error,
    surrogate_forward,
    uniform_grid,
    weight_paths,
)
from resnet_limits.models import ResNetParams, forward
from resnet_limits.scaling import loglog_fit


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_piecewise_linear_path_values_increments_derivative():
    vals = np.random.default_rng(0).normal(size=(9, 2, 2))
    p = PiecewiseLinearPath(jnp.asarray(vals))
    assert p.n == 8 and p.shape == (2, 2)

    @jax.jit
    def probe(p):  # every evaluation in one program
        return dict(
            knots=jnp.stack([p.evaluate(k / 8) for k in range(9)]),
            mid=p.evaluate(2.5 / 8),
            increment=p.evaluate(3 / 8, 5 / 8),
            derivative=p.derivative(2.5 / 8),
            left=p.derivative(3 / 8, left=True),  # left/right derivative at a knot
            right=p.derivative(3 / 8, left=False),
            coarse=p.coarsen(4).values,
            from_increments=PiecewiseLinearPath.from_increments(p.increments).values,
        )

    r = {k: np.asarray(v) for k, v in probe(p).items()}
    for k in range(9):
        np.testing.assert_allclose(r["knots"][k], vals[k], atol=1e-15)
    np.testing.assert_allclose(r["mid"], 0.5 * (vals[2] + vals[3]), atol=1e-14)
    np.testing.assert_allclose(r["increment"], vals[5] - vals[3], atol=1e-14)
    np.testing.assert_allclose(r["derivative"], 8 * (vals[3] - vals[2]), atol=1e-12)
    np.testing.assert_allclose(r["left"], 8 * (vals[3] - vals[2]), atol=1e-12)
    np.testing.assert_allclose(r["right"], 8 * (vals[4] - vals[3]), atol=1e-12)
    np.testing.assert_allclose(r["coarse"], vals[::2])
    np.testing.assert_allclose(r["from_increments"], vals - vals[0], atol=1e-14)
    # vector-valued path, jit + vmap over t
    v = PiecewiseLinearPath(jnp.arange(10.0)[:, None] * jnp.ones(3))
    out = jax.jit(jax.vmap(v.evaluate))(jnp.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(out, [[0] * 3, [4.5] * 3, [9] * 3], atol=1e-13)


def test_path_as_diffrax_control_in_controlterm():
    # dy = y dX for a scalar piecewise-linear X: the Riemann-Stieltjes (ODE) solution is exp(X).
    vals = np.random.default_rng(1).normal(size=(17,)) * 0.3

    @jax.jit
    def solve(vals):  # one program
        X = PiecewiseLinearPath(vals)
        term = diffrax.ControlTerm(lambda t, y, args: y, X)
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, 1.0, None, jnp.asarray(1.0),
            stepsize_controller=diffrax.ClipStepSizeController(
                diffrax.PIDController(rtol=1e-10, atol=1e-12), step_ts=X.grid),
            max_steps=10000,
        )
        return sol.ys[-1]

    np.testing.assert_allclose(solve(vals), np.exp(vals[-1] - vals[0]), rtol=1e-8)


def test_ito_not_stratonovich_scalar():
    # dH = H dW: Ito solution exp(W - t/2), Stratonovich exp(W); SP eq. 15 is an Ito SDE.
    n = 2**13

    def one(k):
        dW = jax.random.normal(k, (n, 1, 1), jnp.float64) / math.sqrt(n)
        W = PiecewiseLinearPath.from_increments(dW)
        ys = solve_sde(jnp.ones(1), W, None, jnp.array([0.0, 0.5, 1.0]))
        return ys[:, 0], W.values[n // 2, 0, 0], W.values[-1, 0, 0]

    H, Wh, W1 = (np.asarray(v) for v in jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 64)))
    err_ito = np.mean(np.abs(H[:, 2] - np.exp(W1 - 0.5)))
    err_strat = np.mean(np.abs(H[:, 2] - np.exp(W1)))
    assert err_ito < 0.02, err_ito
    assert err_strat > 0.3, err_strat
    assert np.mean(np.abs(H[:, 1] - np.exp(Wh - 0.25))) < 0.02
    np.testing.assert_allclose(H[:, 0], 1.0)


#: dH/dt = A H + b with constant A, b: one compiled program for every test that solves one.
_solve_constant_linear_ode = jax.jit(lambda x, A, b, ts: solve_linear_ode(x, ConstantPath(A), ConstantPath(b), ts))


def test_linear_ode_constant_matrix_exponential():
    rng = np.random.default_rng(2)
    d = 3
    A_np, b_np, x_np = rng.normal(size=(d, d)), rng.normal(size=(d,)), rng.normal(size=(d,))
    A, b, x = jnp.asarray(A_np), jnp.asarray(b_np), jnp.asarray(x_np)
    ts = np.linspace(0, 1, 5)
    H = _solve_constant_linear_ode(x, A, b, ts)
    # augmented exponential: d/dt (H, 1) = [[A, b], [0, 0]] (H, 1)  (reference: scipy, no JAX compile)
    M = np.zeros((d + 1, d + 1))
    M[:d, :d], M[:d, d] = A_np, b_np
    ref = np.stack([(scipy.linalg.expm(t * M) @ np.append(x_np, 1.0))[:d] for t in ts])
    np.testing.assert_allclose(H, ref, rtol=1e-8, atol=1e-9)
    # the same as a piecewise-linear (constant) path on a grid, under vmap over inputs
    Ap = PiecewiseLinearPath(jnp.broadcast_to(A, (9, d, d)))
    xs = jnp.asarray(np.stack([x_np, 2 * x_np]))
    Hs = jax.jit(jax.vmap(lambda x: solve_linear_ode(x, Ap, None, jnp.asarray(ts))))(xs)
    np.testing.assert_allclose(Hs[1, -1], 2 * (scipy.linalg.expm(A_np) @ x_np), rtol=1e-8)


def test_neural_ode_matches_fine_rk4_loop():
    rng = np.random.default_rng(3)
    d = 3
    C0, C1 = (rng.normal(size=(d, d)) for _ in range(2))
    b0 = rng.normal(size=(d,))
    Afn = lambda t: jnp.asarray(C0) + jnp.sin(2 * jnp.pi * t) * jnp.asarray(C1)  # noqa: E731
    bfn = lambda t: jnp.cos(2 * jnp.pi * t) * jnp.asarray(b0)  # noqa: E731
    x = rng.normal(size=(d,))
    H = jax.jit(lambda x: solve_neural_ode(x, FunctionPath(Afn), FunctionPath(bfn), jnp.array([0.0, 1.0])))(x)
    # the reference: classical RK4 with 2000 steps, in numpy
    f = lambda t, y: np.tanh((C0 + np.sin(2 * np.pi * t) * C1) @ y + np.cos(2 * np.pi * t) * b0)  # noqa: E731
    y, n = x, 2000
    h = 1.0 / n
    for k in range(n):
        t = k * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    np.testing.assert_allclose(H[-1], y, rtol=1e-9, atol=1e-10)


def _em_loop(x, dWA, dWb, Afn, bfn, d2, Qfn):
    """Euler-Maruyama in numpy, step by step (``Afn``, ``bfn``: numpy callables of t)."""
    n = dWA.shape[0]
    dWA, dWb = np.asarray(dWA), np.asarray(dWb)
    h = np.array(x)
    out = [h.copy()]
    for k in range(n):
        t = k / n
        drift = Afn(t) @ h + bfn(t) + 0.5 * d2 * np.asarray(Qfn(t, h))
        h = h + drift / n + dWA[k] @ h + dWb[k]
        out.append(h.copy())
    return np.stack(out)


def test_sde_equals_plain_euler_maruyama_loop():
    d, n = 3, 256
    rng = np.random.default_rng(4)
    C_np = rng.normal(size=(d, d))
    C = jnp.asarray(C_np)
    Afn = lambda t: jnp.sin(2 * jnp.pi * t) * C  # noqa: E731
    bfn = lambda t: jnp.cos(2 * jnp.pi * t) * jnp.ones(d)  # noqa: E731
    x = rng.normal(size=(d,))
    Q = BrownianQ()

    @jax.jit
    def solves(key, x):  # both solves (closed-form Q, estimated Q) and their inputs in one program
        dWA, dWb = brownian_increments(key, n, d)
        # the trend on the fine grid as a piecewise-linear path (values at knots are exact)
        Ap = PiecewiseLinearPath(jax.vmap(Afn)(uniform_grid(n)))
        bp = PiecewiseLinearPath(jax.vmap(bfn)(uniform_grid(n)))
        WA, Wb = PiecewiseLinearPath.from_increments(dWA), PiecewiseLinearPath.from_increments(dWb)
        qv = estimate_qv(dWA, dWb, window=8)
        H = solve_sde(x, WA, Wb, uniform_grid(n), d2_at_0=0.5, Q=Q, Abar=Ap, bbar=bp)
        H2 = solve_sde(x, WA, Wb, uniform_grid(n), d2_at_0=0.5, Q=qv, Abar=Ap, bbar=bp)
        return dWA, dWb, H, H2, qv

    dWA, dWb, H, H2, qv = solves(jax.random.PRNGKey(4), x)
    # the reference: a plain loop in numpy (trend in numpy, Q one jitted call per step)
    Anp = lambda t: np.sin(2 * np.pi * t) * C_np  # noqa: E731
    bnp = lambda t: np.cos(2 * np.pi * t) * np.ones(d)  # noqa: E731
    ref = _em_loop(x, dWA, dWb, Anp, bnp, 0.5, jax.jit(lambda t, h: Q(t, h)))
    np.testing.assert_allclose(H, ref, rtol=1e-11, atol=1e-12)
    # estimated-Q variant with a QuadraticVariation module also matches the loop
    ref2 = _em_loop(x, dWA, dWb, Anp, bnp, 0.5, jax.jit(lambda t, h: qv(t, h)))
    np.testing.assert_allclose(H2, ref2, rtol=1e-11, atol=1e-12)


def test_affine_control_term_matrix_state():
    d, n = 2, 64

    @jax.jit
    def solve(key):  # one program
        dWA, _ = brownian_increments(key, n, d)
        WA = PiecewiseLinearPath.from_increments(dWA)
        sol = diffrax.diffeqsolve(
            AffineControlTerm(WA), diffrax.Euler(), 0.0, 1.0, None, jnp.eye(d),
            stepsize_controller=diffrax.StepTo(ts=WA.grid), max_steps=n,
        )
        return dWA, sol.ys[-1]

    dWA, Y1 = solve(jax.random.PRNGKey(5))
    ref, dWA = np.eye(d), np.asarray(dWA)
    for k in range(n):
        ref = ref + dWA[k] @ ref
    np.testing.assert_allclose(Y1, ref, rtol=1e-12)


def test_q_closed_form_and_estimate_for_remark_2_1():
    d, n = 3, 2**15
    x = jnp.array([0.3, -1.0, 2.0])

    @jax.jit
    def qs(key):  # every Q below in one program
        dWA, dWb = brownian_increments(key, n, d)
        qv = estimate_qv(dWA, dWb, window=n)  # global average: the whole path
        qloc = estimate_qv(dWA, dWb)  # local window (default ceil(sqrt n))
        return dict(closed=BrownianQ()(0.3, x), exact=brownian_qv(n, d)(0.3, x), global_=qv(0.3, x),
                    sigma_b=qv.sigma_b()[100], sigma_A=qv.sigma_A()[100, 0],
                    local=jax.vmap(lambda t: qloc(t, x))(uniform_grid(n)[:-1]))

    q = qs(jax.random.PRNGKey(6))
    q_closed = q["closed"]
    np.testing.assert_allclose(q_closed, (x @ x) / d**2 + 1 / d)
    np.testing.assert_allclose(q["exact"], q_closed, rtol=1e-14)
    # the diffrax-side estimator from the increments: relative error ~ (2/n)^{1/2}·few
    np.testing.assert_allclose(q["global_"], q_closed, rtol=0.03)
    np.testing.assert_allclose(q["sigma_b"], np.full(d, 1 / d), rtol=0.03)
    np.testing.assert_allclose(q["sigma_A"], np.eye(d) / d**2, atol=0.03 / d**2)
    # local window: noisier but unbiased on average over time
    np.testing.assert_allclose(q["local"].mean(axis=0), q_closed, rtol=0.03)


def test_moving_average_and_coarsen():
    x = np.arange(10.0)
    dW = jnp.arange(16.0).reshape(8, 2)
    ma1, ma, coarse = jax.jit(lambda x, dW: (moving_average(x, 1), moving_average(x, 2), coarsen_increments(dW, 2)))(
        x, dW)
    np.testing.assert_allclose(ma1, x)
    np.testing.assert_allclose(ma[0], 0.5)
    np.testing.assert_allclose(ma[5], 5.0)
    np.testing.assert_allclose(coarse, [[0 + 2 + 4 + 6, 1 + 3 + 5 + 7],
                                        [8 + 10 + 12 + 14, 9 + 11 + 13 + 15]])
    with pytest.raises(ValueError):
        coarsen_increments(dW, 3)


def test_weight_paths_absorb_delta_and_split():
    rng = np.random.default_rng(7)
    L, d = 6, 3
    A, b, dl = rng.normal(size=(L, d, d)), rng.normal(size=(L, d)), rng.normal(size=(L,))
    Ab = rng.normal(size=(L + 1, d, d))

    @jax.jit
    def paths(A, b, dl, Ab):  # every weight_paths call in one program, read back in numpy
        p = ResNetParams(A, b, dl)
        return (weight_paths(p, "per-layer", window=2),
                # given trend in SP normalisation with beta: rate L^{1-beta} delta_k Abar_k
                weight_paths(p, "per-layer", Abar=Ab, bbar=jnp.zeros((L, d)), beta=0.3),
                weight_paths(p, "per-layer", homogeneous=True),
                # shared delta: |delta| absorbed
                weight_paths(ResNetParams(A, b, jnp.asarray(-0.5)), "shared"),
                moving_average(dl[:, None, None] * A, 2))

    wp, wp2, wp3, wps, ma = jax.tree_util.tree_map(np.asarray, paths(A, b, dl, Ab))
    np.testing.assert_allclose(wp.X_A.increments, dl[:, None, None] * A, atol=1e-14)
    np.testing.assert_allclose(wp.X_b.increments, dl[:, None] * b, atol=1e-14)
    # X = int Abar (left sums) + W exactly on the grid
    np.testing.assert_allclose(
        wp.W_A.increments + wp.Abar.values[:-1] / L, wp.X_A.increments, atol=1e-13)
    np.testing.assert_allclose(wp.Abar.values[:-1], L * ma)
    np.testing.assert_allclose(wp.qv_weights, 1 / dl)
    assert np.all(wp.W_A.values[0] == 0)
    np.testing.assert_allclose(wp2.Abar.values[:-1], L**0.7 * dl[:, None, None] * Ab[:L])
    np.testing.assert_allclose(wp3.qv_weights, np.sign(dl))
    np.testing.assert_allclose(wps.X_A.increments, 0.5 * A)


def test_brownian_network_shares_the_fine_path():
    d, n, L = 2, 64, 8
    C = np.array([[0.0, 1.0], [-1.0, 0.0]])

    @jax.jit
    def build(key):  # one program
        dWA, dWb = brownian_increments(key, n, d)
        net = brownian_network(dWA, dWb, L, Abar=ConstantPath(jnp.asarray(C)))
        return dWA, net.A, PiecewiseLinearPath.from_increments(dWA).coarsen(L).increments

    dWA, A, coarse = (np.asarray(v) for v in build(jax.random.PRNGKey(8)))
    np.testing.assert_allclose(A[3], dWA[24:32].sum(0) + C / L, atol=1e-14)
    np.testing.assert_allclose(coarse + C / L, A, atol=1e-14)


def test_brownian_network_trend_scaled_by_L_to_the_minus_beta():
    """SP eq. 10 with beta < 1 (Scaling regime 2, AA Thm 2): A_k = L^{-beta} Abar(t_k) + dW^A_k;
    beta = 1 (default) is the diffusive drift Abar(t_k)/L."""
    d, n, L = 2, 64, 8
    Abar = lambda t: jnp.array([[1.0, t], [-t, 2.0]])  # noqa: E731
    b_np = np.array([0.5, -1.0])

    @jax.jit
    def build(key):  # one program
        dWA, dWb = brownian_increments(key, n, d)
        bbar = ConstantPath(jnp.asarray(b_np))
        return dict(dWA=dWA, dWb_coarse=coarsen_increments(dWb, L),
                    net=brownian_network(dWA, dWb, L, Abar=Abar, bbar=bbar, beta=0.3),
                    default=brownian_network(dWA, dWb, L, Abar=Abar, bbar=bbar),
                    beta1=brownian_network(dWA, dWb, L, Abar=Abar, bbar=bbar, beta=1.0))

    r = jax.tree_util.tree_map(np.asarray, build(jax.random.PRNGKey(8)))
    dWA, net, default = r["dWA"], r["net"], r["default"]
    Abar3 = np.array([[1.0, 3 / L], [-3 / L, 2.0]])
    np.testing.assert_allclose(net.A[3], dWA[24:32].sum(0) + L**-0.3 * Abar3, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(net.b, r["dWb_coarse"] + L**-0.3 * b_np, rtol=1e-13, atol=1e-15)
    assert np.array_equal(default.A, r["beta1"].A)
    np.testing.assert_allclose(default.A[3], dWA[24:32].sum(0) + Abar3 / L, atol=1e-15)


def _regime2_linear_sup_sq(keys, depths, alpha, Abar, x, n_fine, noise=1.0):
    """sup_k |h_k - expm(t_k Abar) x|^2 (keys, depths) of the linear networks
    h_{k+1} = h_k + L^{-alpha} (A_k h_k + b_k), A_k = L^{-beta} Abar + noise dW^A_k, b_k = noise dW^b_k
    (AA Thm 2 with a constant trend and bbar = 0); the closed form in numpy: H_{k/L_max} =
    expm(Abar / L_max)^k x (one scipy expm; the product's rounding, ~1e-14, is far below the errors)."""
    Lmax = max(depths)
    E, H = scipy.linalg.expm(np.asarray(Abar) / Lmax), [np.asarray(x)]
    for _ in range(Lmax):
        H.append(E @ H[-1])
    Hs = tuple(np.stack(H[:: Lmax // L]) for L in depths)  # t_k = k/L are knots of the finest grid
    return _networks_vs_closed_form(keys, depths, alpha, Abar, x, n_fine, noise, Hs)


@partial(jax.jit, static_argnums=(1, 5))
def _networks_vs_closed_form(keys, depths, alpha, Abar, x, n_fine, noise, Hs):
    """alpha, noise and the closed form are traced: one compiled program for both alphas, with and
    without the noise."""

    def one(key):
        dWA, dWb = brownian_increments(key, n_fine, x.shape[0])
        out = []
        for L, H in zip(depths, Hs):
            net = brownian_network(noise * dWA, noise * dWb, L, Abar=ConstantPath(Abar), beta=1.0 - alpha)
            h = forward(ResNetParams(net.A, net.b, jnp.asarray(float(L) ** -alpha)), x, activation="identity",
                        delta_mode="shared", return_hidden=True)
            out.append(sup_sq_error(h, H))
        return jnp.stack(out)

    return jax.vmap(one)(keys)


@pytest.mark.parametrize("alpha", [0.5, 0.7])
def test_regime2_linear_network_converges_to_the_closed_form_at_rate_alpha(alpha):
    """AA Thm 2 with a constant trend: the limit is H_t = expm(t Abar) x (the linear ODE SP eq. 16,
    solved here by diffrax too); the noise is lost at the rate L^{-alpha}: E sup^2 ~ L^{-2 alpha}
    (:func:`linear_ode_rate_terms`; the Euler term L^{-2} is far smaller, as the run without the
    noise shows)."""
    d, n_fine, depths = 3, 256, (16, 64, 256)
    A_np, x_np = np.random.default_rng(4).normal(size=(d, d)) / math.sqrt(d), np.ones(d) / math.sqrt(d)
    Abar, x = jnp.asarray(A_np), jnp.asarray(x_np)
    ts = np.linspace(0.0, 1.0, 5)  # (bbar = 0; the program of test_linear_ode_constant_matrix_exponential)
    np.testing.assert_allclose(_solve_constant_linear_ode(x, Abar, np.zeros(d), ts),
                               np.stack([scipy.linalg.expm(t * A_np) @ x_np for t in ts]), rtol=1e-8, atol=1e-10)
    keys = jax.random.split(jax.random.PRNGKey(5), 64)
    mean = np.asarray(_regime2_linear_sup_sq(keys, depths, alpha, Abar, x, n_fine)).mean(axis=0)
    slope = loglog_fit(depths, mean).slope
    expected = linear_ode_expected_slope("identity", alpha, noise=True)
    assert expected == pytest.approx(-2 * alpha)
    assert abs(slope - expected) < 0.2, (slope, expected, mean)
    # the same program without the noise (every key alike): key 0, L = 16
    quiet = float(np.asarray(_regime2_linear_sup_sq(keys, depths, alpha, Abar, x, n_fine, 0.0))[0, 0])
    assert quiet < mean[0] / 20, (quiet, mean[0])  # what remains without the noise: Euler, O(L^-2)


def test_linear_ode_rates_of_both_regimes():
    """Regime 1 (AA Thm 1): -min(2, 4 beta) for tanh, -min(2, 2 beta) for csoftplus; regime 2
    (AA Thm 2) adds the noise term -2 alpha."""
    for a in (0.3, 0.5, 0.7):
        b = 1.0 - a
        assert linear_ode_expected_slope("tanh", a) == -min(2.0, 4 * b)
        assert linear_ode_expected_slope("csoftplus", a) == -min(2.0, 2 * b)
        assert linear_ode_expected_slope("identity", a) == -2.0
        for act in REGIME2_ACTIVATIONS:
            assert linear_ode_expected_slope(act, a, noise=True) == max(-2 * a, linear_ode_expected_slope(act, a))
    assert linear_ode_rate_terms("tanh", 0.7, noise=True) == pytest.approx(
        {"Euler step 1/L": -2.0, "tanh Taylor remainder L^-2beta": -1.2, "noise lost by the limit L^-alpha": -1.4})
    assert linear_ode_expected_slope("csoftplus", 0.7, noise=True) == pytest.approx(-0.6)
    assert linear_ode_expected_slope("csoftplus", 0.3, noise=True) == pytest.approx(-0.6)
    assert linear_case_name("tanh", 0.5) == "linear-ode-tanh-alpha0.5"
    assert linear_case_name("tanh", 0.5, regime=2) == "regime2-linear-ode-tanh-alpha0.5"


def test_forward_variants_identity_flag():
    d, L = 3, 5
    rng = np.random.default_rng(6)
    net = ResNetParams(jnp.asarray(rng.normal(size=(L, d, d))), jnp.asarray(rng.normal(size=(L, d))), None)
    x = jnp.asarray(rng.normal(size=d))
    acts = ("identity", "tanh", "csoftplus")

    @jax.jit
    def variants_and_refs(x):  # one program
        hs = forward_variants([net] * 3, jnp.asarray([0.3, 0.3, 0.3]), x, jnp.asarray([0.0, 1.0, 0.0]),
                              identity=jnp.asarray([1.0, 0.0, 0.0]))
        return hs, [forward(ResNetParams(net.A, net.b, jnp.asarray(0.3)), x, activation=act, delta_mode="shared",
                            return_hidden=True) for act in acts]

    hs, refs = jax.tree_util.tree_map(np.asarray, variants_and_refs(x))
    for h, ref in zip(hs, refs):
        np.testing.assert_allclose(h, ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(forward_variants([net], jnp.asarray([0.3]), x, jnp.asarray([1.0]))[0], hs[1])


def test_regime2_strong_errors_on_the_sde_cases_path():
    """AA Thm 2 on the fine path of :func:`sde_strong_errors` (same key, same path): every case
    converges to the noise-free linear ODE; the identity network's error is the noise's alone."""
    depths, n_fine, L = (8, 512), 512, 512

    @jax.jit
    def one(key):  # one key per call: an unbatched diffrax solve compiles faster than a vmapped one
        errs = regime2_strong_errors(key, width=3, n_fine=n_fine, depths=depths, alphas=(0.5,))
        # by hand: the identity network of the key, built from the SDE cases' fine path
        p = fine_path(key, width=3, n_fine=n_fine, trend_scale=1.0)
        net = brownian_network(p.dW_A, p.dW_b, L, Abar=p.Abar, bbar=p.bbar, beta=0.5)
        h = forward(ResNetParams(net.A, net.b, jnp.asarray(L**-0.5)), p.x, activation="identity",
                    delta_mode="shared", return_hidden=True)
        return errs, sup_sq_error(h, solve_linear_ode(p.x, p.Abar, p.bbar, uniform_grid(L)))

    rs = [one(k) for k in np.asarray(jax.random.split(jax.random.PRNGKey(2), 16))]
    out = {name: np.stack([np.asarray(r[0][name]) for r in rs]) for name in rs[0][0]}
    by_hand = np.asarray([float(r[1]) for r in rs])
    assert set(out) == {linear_case_name(act, 0.5, regime=2) for act in REGIME2_ACTIVATIONS}
    for name, e in out.items():
        assert e.shape == (16, 2) and np.all(np.isfinite(e))
        assert e[:, 1].mean() < e[:, 0].mean() / 16, (name, e.mean(0))  # ~ L^-1: 64x
    np.testing.assert_allclose(out[linear_case_name("identity", 0.5, regime=2)][:, 1], by_hand, rtol=1e-9)


def test_scalar_network_converges_to_stochastic_exponential():
    # d = 1, tanh (sigma''(0) = 0), b = 0: h_{k+1} = h_k + tanh(dW_k h_k) -> exp(W_t - t/2).
    n = 2**12

    def err(key, L):
        dW = jax.random.normal(key, (n, 1, 1), jnp.float64) / math.sqrt(n)
        W = PiecewiseLinearPath.from_increments(dW).coarsen(L)
        net = ResNetParams(W.increments, jnp.zeros((L, 1)), None)
        h = forward(net, jnp.ones((1,)), activation="tanh", delta_mode="none", return_hidden=True)
        H = jnp.exp(W.values[:, 0, 0] - W.grid / 2)
        return jnp.max((h[:, 0] - H) ** 2)

    keys = jax.random.split(jax.random.PRNGKey(9), 128)
    mean_errs = jax.jit(lambda keys: [jnp.mean(jax.vmap(lambda k: err(k, L))(keys)) for L in (16, 64, 256)])
    errs = [float(e) for e in mean_errs(keys)]  # one program for the three depths
    assert errs[0] > 2 * errs[1] > 4 * errs[2], errs


# ------------------------------------------------------------------ strong errors (strong.py) ----


def test_sup_sq_error_is_the_sup_of_squared_norms():
    a = np.zeros((3, 2, 2))
    b = np.zeros((3, 2, 2))
    b[1], b[2, 0, 1] = np.eye(2), 3.0
    f = jax.jit(sup_sq_error)
    assert float(f(a, b)) == 9.0
    assert float(f(np.ones((4, 3)), np.zeros((4, 3)))) == 3.0


def test_error_rate_mean_stderr_and_slopes():
    depths = [4, 8, 16, 32]
    per_path = np.stack([3.0 / np.asarray(depths, float), 5.0 / np.asarray(depths, float)])  # mean 4/L
    r = error_rate(depths, per_path)
    np.testing.assert_allclose(r.mean, 4.0 / np.asarray(depths))
    np.testing.assert_allclose(r.stderr, np.std(per_path, axis=0, ddof=1) / math.sqrt(2))
    assert r.fit.slope == pytest.approx(-1.0) and r.tail.slope == pytest.approx(-1.0)
    assert r.tail_depths == [16, 32]
    assert np.all(error_rate(depths, per_path[:1]).stderr == 0)  # one path: no spread


def test_map_paths_chunks_equal_one_vmap():
    keys = jax.random.split(jax.random.PRNGKey(0), 7)
    fn = lambda k: {"u": jax.random.normal(k, (2,)), "s": jax.random.uniform(k)}  # noqa: E731
    seen = []
    out = map_paths(fn, keys, 3, on_chunk=seen.append)
    ref = jax.jit(jax.vmap(fn))(keys)
    assert seen == [3, 3, 1]
    np.testing.assert_allclose(out["u"], ref["u"], rtol=1e-6)
    np.testing.assert_allclose(out["s"], ref["s"], rtol=1e-6)


# slow: the default run covers it with tests/test_studies_convergence.py::test_study_errors_decrease_with_depth_in_each_case
# (sde_strong_errors and ode_strong_errors on every path: each case's error falls with L, the neural-ODE slope is -2)
@pytest.mark.slow
def test_strong_errors_of_one_path():
    """sup_k |h_k - H_{k/L}|^2 per depth for every case on one path and trend: the neural-ODE error
    falls like L^-2, the Ito-corrected csoftplus error shrinks with L."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(1)
        sde = jax.jit(lambda k: sde_strong_errors(k, width=3, n_fine=2**9, depths=(4, 32), qv_blocks=8))(key)
        ode = jax.jit(lambda k: ode_strong_errors(k, width=3, depths=(8, 64), linear_alphas=(0.5,)))(key)
    assert set(sde) == set(SDE_CASES) and all(v.shape == (2,) for v in sde.values())
    assert set(ode) == {"linear-ode-tanh-alpha0.5", "linear-ode-csoftplus-alpha0.5", "neural-ode-tanh"}
    assert float(ode["neural-ode-tanh"][1]) < float(ode["neural-ode-tanh"][0]) / 16  # Euler, O(1/L^2) squared
    assert float(sde["sde-csoftplus-ito"][1]) < float(sde["sde-csoftplus-ito"][0])


# ------------------------------------------------------------------ one network's limit --------


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


def test_network_and_limit_of_a_tanh_network():
    """tanh, constant weights A_k = R/L, delta = 1: the limit is the linear ODE dH/dt = L delta A(t) H
    (SP eq. 14), H_t = expm(R t) x; the network is within O(1/L) of it."""
    with jax.enable_x64(True):
        L, d = 64, 2
        R = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        p = ResNetParams(jnp.broadcast_to(R / L, (L, d, d)), jnp.zeros((L, d)), None)
        xs = jnp.eye(d)
        h, H, extra = jax.jit(partial(network_and_limit, activation="tanh", delta_mode="none"))(p, xs)
        t = np.arange(L + 1) / L  # expm(R t) = [[cos t, sin t], [-sin t, cos t]]; column i: H for x = e_i
        ref = np.stack([np.stack([np.cos(t), np.sin(t)], -1), np.stack([-np.sin(t), np.cos(t)], -1)], -2)
    assert extra == {} and h.shape == H.shape == (d, L + 1, d)
    np.testing.assert_allclose(H, np.transpose(np.asarray(ref), (2, 0, 1)), atol=1e-8)
    assert float(jnp.max(jnp.abs(h - H))) < 0.05
