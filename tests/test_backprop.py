"""Tests of resnet_limits.backprop (AA §5, Thms 4, 5)."""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from resnet_limits import backprop as bp
from resnet_limits.models import ResNetParams, effective_delta, forward, init_params, mse


def _net(key, L, d, delta_mode, scale=1.0):
    p = init_params(key, L, d, init="xavier", delta_mode=delta_mode, scale=scale, dtype=jnp.float64)
    if delta_mode == "shared":
        p = p._replace(delta=jnp.asarray(-0.3))  # negative: checks the |delta| convention
    if delta_mode == "per-layer":
        p = p._replace(delta=jax.random.normal(jax.random.PRNGKey(9), (L,), jnp.float64))
    return p


CASES = [("tanh", "shared"), ("csoftplus", "per-layer"), ("relu", "per-layer"), ("identity", "none")]


@pytest.mark.parametrize("activation,delta_mode", CASES)
def test_jacobians_match_jacrev(activation, delta_mode):
    """AA eq. 5.3 (backward) and the forward Phi recursion equal jax.jacrev through the scan.

    Reference: dh_L/dh_k = jacrev of the network whose layers j < k are switched off (delta_j = 0),
    evaluated at h_k; dh_k/dx = jacrev of the network whose layers j >= k are switched off.
    """
    with jax.enable_x64(True):
        L, d = 7, 3
        p = _net(jax.random.PRNGKey(0), L, d, delta_mode)
        x = jax.random.normal(jax.random.PRNGKey(1), (d,), jnp.float64)
        deltas = effective_delta(p, delta_mode)
        ks = jnp.arange(L + 1)

        def masked(h, k, keep_late):
            keep = (jnp.arange(L) >= k) if keep_late else (jnp.arange(L) < k)
            q = ResNetParams(p.A, p.b, jnp.where(keep, deltas, 0.0))
            return forward(q, h, activation=activation, delta_mode="per-layer")

        @jax.jit
        def compute(x):
            J = bp.jacobians(p, x, activation=activation, delta_mode=delta_mode)
            Phi = bp.input_jacobians(p, x, activation=activation, delta_mode=delta_mode)
            hs = forward(p, x, activation=activation, delta_mode=delta_mode, return_hidden=True)
            ref_J = jax.vmap(jax.jacrev(lambda h, k: masked(h, k, True)))(hs, ks)
            ref_Phi = jax.vmap(jax.jacrev(lambda z, k: masked(z, k, False)), in_axes=(None, 0))(x, ks)
            direct = jax.jacrev(lambda z: forward(p, z, activation=activation, delta_mode=delta_mode))(x)
            return J, Phi, ref_J, ref_Phi, direct

        J, Phi, ref_J, ref_Phi, direct = (np.asarray(v) for v in compute(x))
        assert J.shape == (L + 1, d, d) and Phi.shape == (L + 1, d, d)
        np.testing.assert_allclose(J, ref_J, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Phi, ref_Phi, rtol=1e-12, atol=1e-12)
        # J_k = Phi_L Phi_k^{-1} (AA eq. 5.16)
        np.testing.assert_allclose(J @ Phi, np.broadcast_to(Phi[L], J.shape), rtol=1e-10, atol=1e-12)
        # and J_0 = dh_L/dx directly
        np.testing.assert_allclose(J[0], direct, rtol=1e-12, atol=1e-12)


def test_jacobians_batched():
    with jax.enable_x64(True):
        L, d, B = 5, 4, 3
        p = _net(jax.random.PRNGKey(2), L, d, "shared")
        x = jax.random.normal(jax.random.PRNGKey(3), (B, d), jnp.float64)
        J, per_input = jax.jit(lambda x: (bp.jacobians(p, x), jax.vmap(lambda xi: bp.jacobians(p, xi), out_axes=1)(x)))(x)
        assert J.shape == (L + 1, B, d, d)
        np.testing.assert_allclose(J, per_input, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("activation,delta_mode", CASES)
def test_weight_gradients_match_grad(activation, delta_mode):
    with jax.enable_x64(True):
        L, d, B = 6, 3, 5
        p = _net(jax.random.PRNGKey(4), L, d, delta_mode)
        x = jax.random.normal(jax.random.PRNGKey(5), (B, d), jnp.float64)
        y = jax.random.normal(jax.random.PRNGKey(6), (B, d), jnp.float64)
        g, ref = jax.jit(lambda p: (
            bp.weight_gradients(p, x, y, activation=activation, delta_mode=delta_mode),
            jax.grad(lambda q: mse(forward(q, x, activation=activation, delta_mode=delta_mode), y))(p),
        ))(p)
        np.testing.assert_allclose(g.A, ref.A, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g.b, ref.b, rtol=1e-10, atol=1e-13)
        if delta_mode == "none":
            assert g.delta is None
        else:
            np.testing.assert_allclose(g.delta, ref.delta, rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_linear_case_constant_abar_is_expm():
    """AA eq. 5.6 with constant Abar: P_t = expm(Abar (1 - t))."""
    with jax.enable_x64(True):
        d = 3
        Abar = jax.random.normal(jax.random.PRNGKey(0), (d, d), jnp.float64)
        ts = np.linspace(0.0, 1.0, 11)
        P = jax.jit(lambda A: bp.backward_ode(jnp.asarray(ts), lambda t: (A, jnp.zeros(d))))(Abar)  # one program
        for t, Pt in zip(ts, np.asarray(P)):
            np.testing.assert_allclose(Pt, scipy.linalg.expm(np.asarray(Abar) * (1.0 - t)), rtol=1e-8, atol=1e-9)


def test_neural_ode_backward_is_flow_jacobian():
    """AA eq. 5.5: P_0 = dH_1/dx, the derivative of the forward neural-ODE flow (central
    finite differences of the diffrax solve)."""
    with jax.enable_x64(True):
        d, eps = 3, 1e-4
        tr = bp.random_trend(jax.random.PRNGKey(1), d)
        trend = lambda t: bp.trend_eval(tr, t)  # noqa: E731
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (d,), jnp.float64))

        @jax.jit
        def solve(x):  # one program for x and its 2d perturbations (unbatched: compiles faster than a vmapped solve)
            sol = bp.forward_ode(x, trend, activation="csoftplus")
            P = bp.backward_ode(jnp.array([0.0, 0.5, 1.0]), trend, H=sol.evaluate, activation="csoftplus")
            return P, sol.evaluate(1.0)

        P = np.asarray(solve(x)[0])
        H1 = lambda z: np.asarray(solve(z)[1])  # noqa: E731
        E = eps * np.eye(d)
        flow = np.stack([(H1(x + E[j]) - H1(x - E[j])) / (2 * eps) for j in range(d)], axis=1)  # column j = dH_1/dx_j
        np.testing.assert_allclose(P[0], flow, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(P[-1], np.eye(d), atol=1e-14)
        assert np.max(np.abs(P[0] - np.eye(d))) > 0.1  # non-trivial instance


# One compiled program per Regime-1 case (AA Thm 4), shared by the rate and the per-path tests:
# regime1_path_errors on two smooth random trends (one key each), depths 8, 32, 128. The program is
# for one key, called once per key: a vmapped diffrax solve (batched adaptive while loop) compiles
# about 1.5x slower than the unbatched one, and the two calls take milliseconds.
REGIME1_DEPTHS = (8, 32, 128)


def _per_key(fn, keys):
    """{name: (keys, ...)}: the jitted per-key ``fn`` called on each key, results stacked."""
    f = jax.jit(fn)
    rs = [f(k) for k in np.asarray(keys)]  # (numpy rows: iterating a jax array compiles an unstack)
    return {name: np.stack([np.asarray(r[name]) for r in rs]) for name in rs[0]}


@pytest.fixture(scope="module")
def regime1():
    """{alpha: per-path errors}: alpha = 1 the neural-ODE case (tanh), alpha = 1/2 the linear case
    (tanh and csoftplus, one limit solve for both)."""
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    with jax.enable_x64(True):
        return {alpha: _per_key(partial(bp.regime1_path_errors, depths=REGIME1_DEPTHS, width=3, activations=acts,
                                        alpha=alpha), keys)
                for alpha, acts in ((1.0, ("tanh",)), (0.5, ("tanh", "csoftplus")))}


@pytest.mark.parametrize("node,activation,rate", [(True, "tanh", 1.0), (False, "tanh", 1.0), (False, "csoftplus", 0.5)])
def test_regime1_error_decreases_with_depth(regime1, node, activation, rate):
    """sup_k ||J_k - P_{k/L}|| -> 0 at the predicted rate (AA Thm 4): on each small instance the
    error falls with L; the rate is that of the mean over the instances (L = 32 -> 128)."""
    per_path = regime1[1.0 if node else 0.5][f"{activation}:errors"]
    assert np.all(np.diff(per_path, axis=1) < 0), per_path
    errs = per_path.mean(0)
    slope = np.log(errs[-1] / errs[-2]) / np.log(4.0)
    assert abs(slope + rate) < 0.15, (errs, slope)


def _brownian(key, n, d):
    from resnet_limits.limits import PiecewiseLinearPath, brownian_increments

    dWA, dWb = brownian_increments(key, n, d, jnp.float64)
    return dWA, dWb, PiecewiseLinearPath.from_increments(dWA), PiecewiseLinearPath.from_increments(dWb)


PHI_N_COARSE, PHI_N_FINE = 2**7, 2**11


def _phi_sde_runs(activation, n_paths=16, d=3):
    """Per fine path (one key each), the joint Ito solve of (H, Phi, Psi = Phi^{-1}) on a coarse
    (2^7 steps) and a fine (2^11) grid, and a Stratonovich (Heun) solve on the fine grid:
    ``{(n, solver): {"defect": Phi_t Psi_t - I at t = k/16}}``; the fine Euler solve adds
    ``li``: sup_k ||J^euler - Phi_1 Phi_{k/16}^{-1}||^2 of the Li et al. adjoint solved by Euler
    (backward Ito) with the Ito drift, and ``dH``: max |H - H^ref| over the fine knots, H of the
    joint solve, H^ref the forward SDE of resnet_limits.limits (SP eq. 15). One program per
    (n, solver), for one path at a time (smaller than the vmapped solve), shared by the tests."""
    from resnet_limits.limits import BrownianQ, solve_sde, uniform_grid
    from resnet_limits.models import get_activation

    x = np.ones(d) / np.sqrt(d)
    sup_sq = lambda A, B: jnp.max(jnp.sum((A - B) ** 2, axis=(-2, -1)))  # noqa: E731

    def one(n, solver, key):
        _, _, WA, Wb = _brownian(key, n, d)
        extras = solver == "euler" and n == PHI_N_FINE
        ts = uniform_grid(16)
        sol = bp.solve_phi_sde(x, WA, Wb, ts, activation=activation, with_inverse=True, solver=solver,
                               save_fine_H=extras)
        out = {"defect": sol.Phi @ sol.Psi - jnp.eye(d)}
        if extras:
            li_euler = bp.li_adjoint(WA, sol.H_fine, ts, activation=activation, stratonovich_drift=False, solver="euler")
            H_ref = solve_sde(x, WA, Wb, uniform_grid(n), d2_at_0=get_activation(activation).d2_at_0, Q=BrownianQ())
            out.update(li=sup_sq(li_euler, sol.jacobian_limit()), dH=jnp.max(jnp.abs(H_ref - sol.H_fine)))
        return out

    keys = jax.random.split(jax.random.PRNGKey(5), n_paths)
    with jax.enable_x64(True):
        return {(n, solver): _per_key(partial(one, n, solver), keys)
                for n, solver in ((PHI_N_COARSE, "euler"), (PHI_N_FINE, "euler"), (PHI_N_FINE, "heun"))}


@pytest.fixture(scope="module")
def phi_sde():
    """``phi_sde(activation)``: :func:`_phi_sde_runs`, computed once per activation."""
    return functools.cache(_phi_sde_runs)


def test_phi_times_inverse_is_identity(phi_sde):
    """Phi_t Psi_t = I along the Ito solve, Psi the SDE solution for Phi^{-1} (with its Ito
    correction C = I/d^2); the defect vanishes as the fine grid refines. A Stratonovich solver
    (Heun) on the same equations drifts to Psi Phi ~ exp(t C), as Ito's formula predicts."""
    d = 3
    runs = phi_sde("csoftplus")  # sigma''(0) != 0: the Ito drift of Phi and of Psi are both active
    coarse, fine = runs[PHI_N_COARSE, "euler"]["defect"], runs[PHI_N_FINE, "euler"]["defect"]
    e_c = float(np.mean(np.max(np.sum(coarse**2, axis=(-2, -1)), axis=1)))
    e_f = float(np.mean(np.max(np.sum(fine**2, axis=(-2, -1)), axis=1)))
    assert e_f < 2e-3 and e_f < e_c / 4, (e_c, e_f)
    heun = runs[PHI_N_FINE, "heun"]["defect"]
    # Stratonovich: Psi Phi - I ~ t C = t I/d^2 at t = 1, mean over paths
    np.testing.assert_allclose(np.mean(heun[:, -1], axis=0), np.eye(d) / d**2, atol=0.03)


# One compiled program for Regime 2 (AA Thm 5), shared by the rate test and the per-path test:
# regime2_path_errors (Li et al. adjoint included) on 32 fine paths of 2^9 steps, depths 4, 16, 64
# (one key per call, as for Regime 1).
REGIME2_DEPTHS = (4, 16, 64)


@pytest.fixture(scope="module")
def regime2():
    keys = jax.random.split(jax.random.PRNGKey(6), 32)
    with jax.enable_x64(True):
        return _per_key(partial(bp.regime2_path_errors, depths=REGIME2_DEPTHS, width=3, n_fine=2**9,
                                activations=("tanh", "csoftplus"), li=True), keys)


@pytest.mark.parametrize("activation", ["csoftplus"])
def test_regime2_error_decreases_with_depth_and_li_adjoint(regime2, phi_sde, activation):
    """E sup_k ||J_k - Phi_1 Phi_{k/L}^{-1}||^2 decreases with L (AA Thm 5, rate ~ 1/L); the Li
    et al. adjoint in Stratonovich form agrees with Phi_1 Phi_t^{-1} up to the fine-grid error, an
    Euler (backward Ito) version with the Ito drift agrees to round-off for tanh, and the naive one
    (Ito drift, Stratonovich solver) stays O(1/d^2) away."""
    errs = regime2[f"{activation}:errors"].mean(0)
    li, naive = float(regime2[f"{activation}:li_vs_phi"].mean()), float(regime2[f"{activation}:naive_vs_phi"].mean())
    assert np.all(np.diff(errs) < 0), errs
    slope = np.polyfit(np.log(REGIME2_DEPTHS), np.log(errs), 1)[0]
    assert -1.4 < slope < -0.7, (errs, slope)
    assert li < 1e-3 and li < errs[-1], (li, errs)
    assert naive > 10 * li, (naive, li)
    fine_euler = phi_sde(activation)[PHI_N_FINE, "euler"]  # 16 fine paths of 2^11 steps
    li_euler, dH = float(fine_euler["li"].mean()), float(fine_euler["dH"].max())
    assert dH < 1e-12  # the H of the joint solve is the forward SDE of resnet_limits.limits (SP eq. 15)
    # csoftplus: ~ 1/n^2 (3.5e-6 at n = 2^7, 8.8e-8 at 2^9, 1.0e-8 at 2^11): the bound scales with the grid
    assert li_euler < (1e-20 if activation == "tanh" else 1e-7), li_euler


def test_phi_sde_trend_term_and_qv_object():
    """beta = 1 drift with no noise: Phi_t = expm(Abar t), Psi_t = Phi_t^{-1}, and the Li adjoint
    gives expm(Abar (1 - t)); C from a limits.QuadraticVariation (Remark 2.1) is I/d^2."""
    from resnet_limits.limits import PiecewiseLinearPath, QuadraticVariation, brownian_qv, uniform_grid

    with jax.enable_x64(True):
        d, n = 3, 2**10
        A = 0.7 * np.asarray(jax.random.normal(jax.random.PRNGKey(7), (d, d), jnp.float64))
        ts = uniform_grid(8)

        @jax.jit
        def run(x):  # everything in one program (no eager op-by-op compiles)
            C = bp.ito_correction(brownian_qv(4, d), d)
            zero_qv = QuadraticVariation(jnp.zeros((n, d, d + 1, d + 1)))
            WA = PiecewiseLinearPath(jnp.zeros((n + 1, d, d)))
            Wb = PiecewiseLinearPath(jnp.zeros((n + 1, d)))
            sol = bp.solve_phi_sde(x, WA, Wb, ts, activation="csoftplus", qv=zero_qv, Abar=lambda t: A,
                                   with_inverse=True, save_fine_H=True)
            J_li = bp.li_adjoint(WA, sol.H_fine, ts, activation="csoftplus", qv=zero_qv, Abar=lambda t: A)
            return C(0.3), sol.Phi, sol.Psi, J_li, sol.jacobian_limit()

        C, Phi, Psi, J_li, J_lim = (np.asarray(v) for v in run(jnp.ones(d)))
        np.testing.assert_allclose(C, np.eye(d) / d**2, atol=1e-15)
        for k, t in enumerate(np.asarray(ts)):
            m = int(round(t * n))
            # Euler on the fine grid, exactly: Phi = (I + A/n)^m, Psi = (I - A/n)^m
            np.testing.assert_allclose(Phi[k], np.linalg.matrix_power(np.eye(d) + A / n, m), atol=1e-12)
            np.testing.assert_allclose(Psi[k], np.linalg.matrix_power(np.eye(d) - A / n, m), atol=1e-12)
            np.testing.assert_allclose(Phi[k], scipy.linalg.expm(A * t), atol=1e-2)
            np.testing.assert_allclose(J_li[k], scipy.linalg.expm(A * (1 - t)), atol=5e-6)  # Heun: O(1/n^2)
            np.testing.assert_allclose(J_lim[k], scipy.linalg.expm(A * (1 - t)), atol=1e-2)


def test_regime1_path_errors_shrink_with_depth(regime1):
    """The per-path errors of the study (AA Thm 4): one key per path; both cases."""
    for alpha, acts in ((1.0, ("tanh",)), (0.5, ("tanh", "csoftplus"))):
        r = regime1[alpha]
        assert set(r) == {f"{a}:{m}" for a in acts for m in ("errors", "grad_errors")}
        for v in r.values():
            assert v.shape == (2, len(REGIME1_DEPTHS)) and np.all(np.isfinite(v))
            assert np.all(np.diff(v, axis=1) < 0), (alpha, v)


def test_regime2_path_errors_keys_and_decrease(regime2):
    """Regime 2 per path (AA Thm 5): J, Phi and gradient errors, the Li et al. adjoint's."""
    for act in ("tanh", "csoftplus"):
        for m in ("errors", "phi_errors", "grad_errors", "li_errors", "naive_errors"):
            v = regime2[f"{act}:{m}"]
            assert v.shape == (32, len(REGIME2_DEPTHS)) and np.all(np.isfinite(v)), (act, m)
        e = regime2[f"{act}:errors"].mean(0)
        assert e[-1] < e[0] / 4, (act, e)
        assert regime2[f"{act}:li_vs_phi"].shape == (32,)
