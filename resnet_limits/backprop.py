"""Backpropagation limits of deep ResNets (AA §5, Thms 4, 5).

Discrete side (one network, SP eq. 1):

- :func:`jacobians`: J_k = dh_L/dh_k by the backward recursion AA eq. 5.3,
  J_L = I, J_k = J_{k+1} (I + delta_k diag(sigma'(A_k h_k + b_k)) A_k).
- :func:`input_jacobians`: Phi_k = dh_k/dx by the forward recursion
  Phi_0 = I, Phi_{k+1} = (I + delta_k diag(sigma'(A_k h_k + b_k)) A_k) Phi_k (AA eq. 5.17),
  so that J_k = Phi_L Phi_k^{-1} (AA eq. 5.16).
- :func:`weight_gradients`: dl/dA_k, dl/db_k, dl/ddelta from dl/dh_L J_{k+1} (AA §5.1).

Limit side (diffrax):

- Regime 1 (AA Thm 4): :func:`backward_ode` solves dP/dt = -P diag(sigma'(Abar H + bbar)) Abar
  (neural-ODE case, AA eq. 5.5) or dP/dt = -P Abar (linear case, AA eq. 5.6) from P_1 = I down to
  t = 0 along the forward solution H of :func:`forward_ode`.
- Regime 2 (AA Thm 5): :func:`solve_phi_sde` solves the Ito SDE of (H, Phi[, Phi^{-1}])
  dH = dW^A H + dW^b + 1/2 sigma''(0) Q(H) dt (+ 1{beta=1}(Abar H + bbar) dt)       (SP eq. 15)
  dPhi = dW^A Phi + 1/2 sigma''(0) grad_x Q(H) Phi dt (+ 1{beta=1} Abar Phi dt)       (AA eq. 5.10)
  with diffrax Euler on the fine piecewise-linear weight path (= Euler-Maruyama, Ito); then
  J_t = Phi_1 Phi_t^{-1} (AA eq. 5.11).
- :func:`li_adjoint`: the neural-SDE adjoint of Li et al. (2020), AA eq. 5.13, solved backward in
  time (forward in reversed time s = 1 - t) as a Stratonovich SDE with Heun on the same path.

Per-path errors of the study (pure, vmappable over PRNG keys): :func:`regime1_path_errors`
(sup_k ||J_k - P_{k/L}||, Regime 1) and :func:`regime2_path_errors`
(sup_k ||J_k - Phi_1 Phi_{k/L}^{-1}||^2, Regime 2, and the Li et al. adjoint). The study itself
(averages over paths, log-log slopes, JSON and figures) is ``resnet_limits.studies.backprop``.

Finding on the Li et al. adjoint (AA §5.3.1; AA's formulas are lost, eq. 5.13 is taken from Li et
al. 2020): solved on the same path as a Stratonovich SDE -- with the Stratonovich drift of SP eq. 15,
i.e. its Ito drift minus 1/2 C H -- and H taken from the forward solution, it reproduces
Phi_1 Phi_t^{-1} pathwise up to the fine-grid error (E sup ||.||^2 ~ 1/n_fine), so the backprop
Jacobians converge to it at the same rate. The difference stressed by AA is one of representation
(J_t is not adapted; the adjoint needs H_t, which depends on the whole path) rather than of value.
Applying the adjoint to the Ito drift without the conversion leaves an O(1) gap (about
||J (1-t) C/2||^2, C = I/d^2 for Remark 2.1 weights) that does not shrink with L.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import diffrax
import jax
import jax.numpy as jnp

from resnet_limits.limits import (
    BrownianQ,
    PiecewiseLinearPath,
    brownian_increments,
    brownian_network,
    sup_sq_error,
    uniform_grid,
)
from resnet_limits.models import ResNetParams, effective_delta, forward, get_activation, mse

__all__ = [
    "PhiSolution",
    "TrendPath",
    "backward_ode",
    "forward_ode",
    "input_jacobians",
    "ito_correction",
    "jacobians",
    "layer_factors",
    "li_adjoint",
    "limit_weight_gradients",
    "random_trend",
    "regime1_network",
    "regime1_path_errors",
    "regime2_path_errors",
    "solve_phi_sde",
    "trend_eval",
    "weight_gradients",
]

Array = jax.Array


# --------------------------------------------------------------------------------------------
# Discrete Jacobians (AA eq. 5.3, 5.16, 5.17) and weight gradients
# --------------------------------------------------------------------------------------------


def _bcast_b(b: Array, ndim: int) -> Array:
    """(L, d) -> (L, 1, ..., 1, d) to broadcast against hidden states (L, *batch, d)."""
    return b.reshape(b.shape[:1] + (1,) * (ndim - 2) + b.shape[1:])


def _preactivations(params: ResNetParams, x: Array, activation: str, delta_mode: str):
    """Hidden states h_0..h_L (L+1, *batch, d) and pre-activations z_k = A_k h_k + b_k (L, *batch, d)."""
    hs = forward(params, x, activation=activation, delta_mode=delta_mode, return_hidden=True)
    z = jnp.einsum("k...j,kij->k...i", hs[:-1], params.A) + _bcast_b(params.b, hs.ndim)
    return hs, z


def layer_factors(
    params: ResNetParams, x: Array, *, activation: str = "tanh", delta_mode: str = "shared"
) -> tuple[Array, Array, Array]:
    """M_k = dh_{k+1}/dh_k = I + delta_k diag(sigma'(A_k h_k + b_k)) A_k (AA eq. 5.3).

    Returns ``(M, hs, z)``: M (L, *batch, d, d), hidden states (L+1, *batch, d),
    pre-activations (L, *batch, d).
    """
    act = get_activation(activation)
    deltas = effective_delta(params, delta_mode)
    hs, z = _preactivations(params, x, activation, delta_mode)
    s = act.d1(z)  # (L, *batch, d)
    nb = z.ndim - 2
    A = params.A.reshape(params.A.shape[:1] + (1,) * nb + params.A.shape[1:])
    dl = deltas.reshape((-1,) + (1,) * (nb + 2))
    d = params.A.shape[-1]
    M = jnp.eye(d, dtype=A.dtype) + dl * s[..., :, None] * A
    return M, hs, z


def jacobians(
    params: ResNetParams, x: Array, *, activation: str = "tanh", delta_mode: str = "shared"
) -> Array:
    """J_k = dh_L/dh_k for k = 0..L, shape (L+1, *batch, d, d), by AA eq. 5.3.

    Backward recursion J_L = I, J_k = J_{k+1} (I + delta_k diag(sigma'(A_k h_k + b_k)) A_k),
    a reverse ``lax.scan`` over depth. ``x``: (d,) or (B, d).
    """
    M, _, _ = layer_factors(params, x, activation=activation, delta_mode=delta_mode)
    return _jacobians_from_factors(M)


def _running_products(M: Array, *, reverse: bool) -> Array:
    """Products of the layer factors from I, keeping every partial product; (L+1, *batch, d, d).

    ``reverse``: J_L = I, J_k = J_{k+1} M_k (AA eq. 5.3). Else Phi_0 = I, Phi_{k+1} = M_k Phi_k
    (AA eq. 5.17).
    """
    eye = jnp.broadcast_to(jnp.eye(M.shape[-1], dtype=M.dtype), M.shape[1:])

    def step(P, M_k):
        P = P @ M_k if reverse else M_k @ P
        return P, P

    _, Ps = jax.lax.scan(step, eye, M, reverse=reverse)
    return jnp.concatenate([Ps, eye[None]] if reverse else [eye[None], Ps], axis=0)


def _jacobians_from_factors(M: Array) -> Array:
    """Reverse scan J_k = J_{k+1} M_k from J_L = I (AA eq. 5.3); (L+1, *batch, d, d)."""
    return _running_products(M, reverse=True)


def input_jacobians(
    params: ResNetParams, x: Array, *, activation: str = "tanh", delta_mode: str = "shared"
) -> Array:
    """Phi_k = dh_k/dx for k = 0..L, shape (L+1, *batch, d, d) (AA eq. 5.17).

    Forward recursion Phi_0 = I, Phi_{k+1} = (I + delta_k diag(sigma'(A_k h_k + b_k)) A_k) Phi_k;
    J_k = Phi_L Phi_k^{-1} (AA eq. 5.16).
    """
    M, _, _ = layer_factors(params, x, activation=activation, delta_mode=delta_mode)
    return _input_jacobians_from_factors(M)


def _input_jacobians_from_factors(M: Array) -> Array:
    """Forward scan Phi_{k+1} = M_k Phi_k from Phi_0 = I (AA eq. 5.17); (L+1, *batch, d, d)."""
    return _running_products(M, reverse=False)


def weight_gradients(
    params: ResNetParams,
    x: Array,
    y: Array,
    *,
    activation: str = "tanh",
    delta_mode: str = "shared",
    loss: Callable[[Array, Array], Array] = mse,
) -> ResNetParams:
    """dl/dA_k, dl/db_k, dl/ddelta of l = loss(h_L, y) from the Jacobians (AA §5.1).

    With the row vector g_{k+1} = dl/dh_L J_{k+1} and u_k = delta_k g_{k+1} * sigma'(z_k):
    dl/dA_k = sum_batch u_k^T h_k^T (outer product), dl/db_k = sum_batch u_k,
    dl/ddelta_k = sum_batch g_{k+1} . sigma(z_k) (shared delta: summed over k, times sign(delta)).
    Returned as a :class:`ResNetParams` of gradients (``delta`` is None for delta_mode "none").
    """
    M, hs, z = layer_factors(params, x, activation=activation, delta_mode=delta_mode)
    J = _jacobians_from_factors(M)
    g_L = jax.grad(lambda h: loss(h, y))(hs[-1])  # (*batch, d)
    gA, gb, gd_k = _gradients_from(params, delta_mode, activation, J, hs, z, g_L)
    if delta_mode == "none" or params.delta is None:
        gd = None
    elif delta_mode == "shared":
        gd = jnp.sign(params.delta) * gd_k.sum()
    else:
        gd = gd_k
    return ResNetParams(gA, gb, gd)


def _gradients_from(params, delta_mode, activation, J, hs, z, g_L):
    """dl/dA_k, dl/db_k (batch-summed) and per-layer dl/ddelta_k from J, h, z and dl/dh_L."""
    act = get_activation(activation)
    deltas = effective_delta(params, delta_mode)
    g = jnp.einsum("...i,k...ij->k...j", g_L, J[1:])  # g_{k+1}, (L, *batch, d)
    nb = z.ndim - 2
    u = deltas.reshape((-1,) + (1,) * (nb + 1)) * g * act.d1(z)
    batch_axes = tuple(range(1, 1 + nb))
    gA = jnp.einsum("k...i,k...j->kij", u, hs[:-1])
    gb = u.sum(axis=batch_axes) if nb else u
    gd_k = jnp.sum(g * act.fn(z), axis=batch_axes + (z.ndim - 1,))  # (L,)
    return gA, gb, gd_k


# --------------------------------------------------------------------------------------------
# Regime 1: smooth trend weights and the backward ODEs (AA Thm 4, eqs. 5.5 / 5.6)
# --------------------------------------------------------------------------------------------


class TrendPath(NamedTuple):
    """A smooth random trend (Abar_t, bbar_t) = sum_m (cA_m, cb_m) cos(m pi t), m = 0..M-1.

    ``cA``: (M, d, d), ``cb``: (M, d). Used to build Regime-1 networks
    A_k = L^{-beta} Abar_{k/L}, b_k = L^{-beta} bbar_{k/L} (SP eq. 5).
    """

    cA: Array
    cb: Array


def random_trend(key: Array, width: int, *, n_modes: int = 3, scale: float = 1.0, dtype=jnp.float64) -> TrendPath:
    """Draw a :class:`TrendPath`: mode m has entries N(0, (scale / ((1+m) sqrt d))^2) (A) and
    N(0, (scale / (1+m))^2 / d) (b), so ||Abar_t||_op = O(scale)."""
    kA, kb = jax.random.split(key)
    m = jnp.arange(n_modes, dtype=dtype)
    fall = (scale / (1.0 + m))
    cA = jax.random.normal(kA, (n_modes, width, width), dtype) * fall[:, None, None] / math.sqrt(width)
    cb = jax.random.normal(kb, (n_modes, width), dtype) * fall[:, None] / math.sqrt(width)
    return TrendPath(cA, cb)


def trend_eval(path: TrendPath, t) -> tuple[Array, Array]:
    """(Abar_t, bbar_t) of a :class:`TrendPath` at a scalar time t."""
    n = path.cA.shape[0]
    phi = jnp.cos(jnp.pi * jnp.arange(n, dtype=path.cA.dtype) * t)
    return jnp.tensordot(phi, path.cA, axes=1), jnp.tensordot(phi, path.cb, axes=1)


def regime1_network(path: TrendPath, depth: int, *, alpha: float, beta: float) -> ResNetParams:
    """Depth-L network of Hypothesis 1: A_k = L^{-beta} Abar_{k/L}, b_k = L^{-beta} bbar_{k/L},
    shared delta = L^{-alpha} (SP eq. 5; use with ``delta_mode="shared"``)."""
    L = depth
    ts = jnp.arange(L, dtype=path.cA.dtype) / L
    A, b = jax.vmap(lambda t: trend_eval(path, t))(ts)
    s = L ** (-beta)
    return ResNetParams(s * A, s * b, jnp.asarray(L ** (-alpha), path.cA.dtype))


_ODE_TOL = dict(rtol=1e-10, atol=1e-12)


def forward_ode(
    x: Array,
    trend: Callable[[Array], tuple[Array, Array]],
    *,
    activation: Optional[str],
    rtol: float = _ODE_TOL["rtol"],
    atol: float = _ODE_TOL["atol"],
) -> diffrax.Solution:
    """Dense diffrax solution on [0, 1] of dH/dt = sigma(Abar_t H + bbar_t) (neural ODE, SP eq. 2),
    or of dH/dt = Abar_t H + bbar_t when ``activation`` is None (linear case, SP eq. 14), H_0 = x.

    ``trend(t) -> (Abar_t, bbar_t)``. Tsit5 with a PID controller (smooth vector field, tight
    tolerances so the solver error stays far below the network-to-limit gap); ``sol.evaluate(t)``
    gives H_t.
    """
    sigma = (lambda u: u) if activation is None else get_activation(activation).fn

    def f(t, H, args):
        A, b = trend(t)
        return sigma(A @ H + b)

    return diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Tsit5(), t0=0.0, t1=1.0, dt0=1e-2, y0=x,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(dense=True), max_steps=100_000,
    )


def backward_ode(
    ts: Array,
    trend: Callable[[Array], tuple[Array, Array]],
    *,
    H: Optional[Callable[[Array], Array]] = None,
    activation: Optional[str] = None,
    rtol: float = _ODE_TOL["rtol"],
    atol: float = _ODE_TOL["atol"],
) -> Array:
    """P_t at the increasing times ``ts`` (T, d, d), solving backward from P_1 = I (AA Thm 4).

    - neural-ODE case (``activation`` and ``H`` given): dP/dt = -P diag(sigma'(Abar_t H_t + bbar_t)) Abar_t
      (AA eq. 5.5), with ``H(t)`` the forward solution (e.g. ``forward_ode(...).evaluate``);
    - linear case (``activation=None``): dP/dt = -P Abar_t (AA eq. 5.6); H is not needed.

    Integrated from t = 1 to t = 0 by diffrax (Tsit5, negative dt0, PID controller).
    """
    if activation is not None and H is None:
        raise ValueError("the neural-ODE backward equation needs the forward solution H")
    d1 = None if activation is None else get_activation(activation).d1

    def f(t, P, args):
        A, b = trend(t)
        if d1 is None:
            return -P @ A
        s = d1(A @ H(t) + b)
        return -P @ (s[:, None] * A)

    d = trend(ts[0])[0].shape[-1]
    dtype = trend(ts[0])[0].dtype
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Tsit5(), t0=1.0, t1=0.0, dt0=-1e-2, y0=jnp.eye(d, dtype=dtype),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(ts=ts[::-1]), max_steps=100_000,
    )
    return sol.ys[::-1]


def limit_weight_gradients(J: Array, H: Array, grad_out: Array, slope: Optional[Array] = None) -> tuple[Array, Array]:
    """Limit densities of the weight gradients at the grid times (AA §5.1 with the Jacobian limits).

    With the limit Jacobian J_t (T, d, d) (P_t in Regime 1, Phi_1 Phi_t^{-1} in Regime 2), the
    limit state H_t (T, d), dl/dH_1 = ``grad_out`` (d,) and the activation slope
    s_t = sigma'(Abar_t H_t + bbar_t) (neural-ODE case; ``None`` means s = 1, the linear and
    diffusive cases where the pre-activations vanish):

        G^A_t = (J_t^T dl/dH_1 * s_t) H_t^T,    G^b_t = J_t^T dl/dH_1 * s_t,

    so that L^alpha dl/dA_{[tL]} -> G^A_t and L^alpha dl/db_{[tL]} -> G^b_t (delta = L^{-alpha}).
    """
    u = jnp.einsum("i,tij->tj", grad_out, J)
    if slope is not None:
        u = u * slope
    return jnp.einsum("ti,tj->tij", u, H), u


# --------------------------------------------------------------------------------------------
# Regime 2: the input-Jacobian SDE Phi (AA Thm 5, eqs. 5.10-5.11) and the Li et al. adjoint
# --------------------------------------------------------------------------------------------


class _JointControlTerm(diffrax.AbstractTerm):
    """Noise of the joint Ito system for y = (H, Phi, Psi):
    (dW^A H + dW^b, dW^A Phi, -Psi dW^A) (SP eq. 15, AA eq. 5.10 and its inverse). ``Psi`` may be None."""

    W_A: diffrax.AbstractPath
    W_b: diffrax.AbstractPath

    def vf(self, t, y, args):
        return y

    def contr(self, t0, t1, **kwargs):
        return self.W_A.evaluate(t0, t1), self.W_b.evaluate(t0, t1)

    def prod(self, vf, control):
        H, Phi, Psi = vf
        dA, db = control
        return (dA @ H + db, dA @ Phi, None if Psi is None else -Psi @ dA)


class _RightControlTerm(diffrax.AbstractTerm):
    """The matrix noise J dV (right multiplication), for the adjoint in reversed time (AA eq. 5.13)."""

    V: diffrax.AbstractPath

    def vf(self, t, y, args):
        return y

    def contr(self, t0, t1, **kwargs):
        return self.V.evaluate(t0, t1)

    def prod(self, vf, control):
        return vf @ control


def ito_correction(qv, d: int) -> Callable[[jax.Array], jax.Array]:
    """C(t) (d, d), the Ito correction of Phi^{-1} (and of the Ito -> Stratonovich conversion),
    from a :class:`limits.QuadraticVariation` or ``limits.BrownianQ``.

    C_ij(t) = sum_k d[W^A_ik, W^A_kj]/dt. From the row-wise densities S[i, j, l] = d[M_ij, M_il]/dt
    only the k = i term is known: C_ij = S[i, i, j], exact when distinct rows of W^A are
    uncorrelated (SP Remark 2.1, and the independence SP assumes for Q); I/d^2 for Brownian weights.
    """
    if isinstance(qv, BrownianQ):
        return lambda t: jnp.eye(d) / d**2

    def C(t):
        S = qv.density(t)  # (d, d+1, d+1)
        return jnp.diagonal(S[:, :d, :d], axis1=0, axis2=1).T  # [i, j] = S[i, i, j]

    return C


class PhiSolution(NamedTuple):
    """Joint solution of SP eq. 15 and AA eq. 5.10 at the save times ``ts``.

    ``H`` (T, d), ``Phi`` (T, d, d), ``Psi`` (T, d, d) or None (the SDE solution for Phi^{-1}),
    ``H_fine`` (n+1, d) on every knot of the fine path, or None.
    """

    ts: Array
    H: Array
    Phi: Array
    Psi: Optional[Array]
    H_fine: Optional[Array]

    def jacobian_limit(self) -> Array:
        """J_t = Phi_1 Phi_t^{-1} at ``ts`` (AA eq. 5.11), (T, d, d), by a linear solve
        (ts must end at t = 1)."""
        Phi1 = self.Phi[-1]
        # X Phi_t = Phi_1  <=>  Phi_t^T X^T = Phi_1^T
        return jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(self.Phi, -1, -2), Phi1.T[None]), -1, -2)


def solve_phi_sde(
    x: Array,
    W_A,
    W_b,
    ts: Array,
    *,
    activation: str = "tanh",
    qv=None,
    Abar: Optional[Callable[[Array], Array]] = None,
    bbar: Optional[Callable[[Array], Array]] = None,
    with_inverse: bool = False,
    save_fine_H: bool = False,
    solver: str = "euler",
    d2_at_0=None,
) -> PhiSolution:
    """Solve (H, Phi[, Psi = Phi^{-1}]) jointly on one weight path (SP eq. 15, AA eq. 5.10), Ito:

        dH   = dW^A H + dW^b + [1/2 s2 Q(t, H) + Abar_t H + bbar_t] dt,          H_0 = x
        dPhi = dW^A Phi + B_t Phi dt,   B_t = 1/2 s2 grad_x Q(t, H_t) + Abar_t,   Phi_0 = I
        dPsi = -Psi dW^A + Psi (C_t - B_t) dt,                                    Psi_0 = I

    with s2 = sigma''(0), C_ij = sum_k d[W^A_ik, W^A_kj]/dt (so that d(Psi Phi) = 0 by Ito's
    formula). ``W_A``, ``W_b``: :class:`limits.PiecewiseLinearPath` on a common fine grid k/n
    (values (n+1, d, d), (n+1, d)). ``qv``: Q and its densities (``limits.QuadraticVariation`` or
    ``limits.BrownianQ``; default Remark 2.1). ``Abar``/``bbar``: the beta = 1 drift (callables
    of t, or None). ``ts``: save times, knots of the fine grid, increasing, ending at 1.

    Solver: ``"euler"`` = diffrax Euler with StepTo on the fine knots: on a piecewise-linear control
    this is Euler-Maruyama, which converges to the Ito solution (strong order 1/2). ``"heun"``
    (a Stratonovich solver) is offered only to show the difference (the limit of AA Thm 5 is an Ito SDE).
    ``d2_at_0`` overrides sigma''(0) of ``activation`` (may be a traced value, e.g. to vmap the
    solve over activations).
    """
    d = x.shape[-1]
    n = W_A.n
    s2 = get_activation(activation).d2_at_0 if d2_at_0 is None else d2_at_0
    use_q = d2_at_0 is not None or s2 != 0.0
    Q = BrownianQ() if qv is None else qv
    C = ito_correction(Q, d)
    gradQ = jax.jacfwd(Q, argnums=1)

    def B_and_fH(t, H):
        B = jnp.zeros((d, d), x.dtype)
        fH = jnp.zeros_like(H)
        if use_q:
            B = B + 0.5 * s2 * gradQ(t, H)
            fH = fH + 0.5 * s2 * Q(t, H)
        if Abar is not None:
            A_t = Abar(t)
            B = B + A_t
            fH = fH + A_t @ H
        if bbar is not None:
            fH = fH + bbar(t)
        return B, fH

    def drift(t, y, args):
        H, Phi, Psi = y
        B, fH = B_and_fH(t, H)
        dPsi = None if Psi is None else Psi @ (C(t) - B)
        return (fH, B @ Phi, dPsi)

    eye = jnp.eye(d, dtype=x.dtype)
    y0 = (x, eye, eye if with_inverse else None)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), _JointControlTerm(W_A, W_b))
    ts = jnp.asarray(ts, x.dtype)
    subs = [diffrax.SubSaveAt(ts=ts)]
    if save_fine_H:
        subs.append(diffrax.SubSaveAt(ts=uniform_grid(n, x.dtype), fn=lambda t, y, args: y[0]))
    slv = {"euler": diffrax.Euler(), "heun": diffrax.Heun()}[solver]
    sol = diffrax.diffeqsolve(
        terms, slv, t0=0.0, t1=1.0, dt0=None, y0=y0,
        saveat=diffrax.SaveAt(subs=subs),
        stepsize_controller=diffrax.StepTo(ts=uniform_grid(n, x.dtype)),
        max_steps=n,
    )
    H, Phi, Psi = sol.ys[0]
    return PhiSolution(ts, H, Phi, Psi, sol.ys[1] if save_fine_H else None)


def li_adjoint(
    W_A,
    H_fine: Array,
    ts: Array,
    *,
    activation: str = "tanh",
    qv=None,
    Abar: Optional[Callable[[Array], Array]] = None,
    stratonovich_drift=True,
    solver: str = "heun",
    d2_at_0=None,
) -> Array:
    """The neural-SDE adjoint of Li et al. (2020) (AA eq. 5.13) for SP eq. 15, at the times ``ts``.

    The Jacobian J_t = dH_1/dH_t of the flow solves, in reversed time s = 1 - t with the
    time-reversed path V_s = W^A_1 - W^A_{1-s} (increments of W^A taken backwards) and J^_0 = I,

        dJ^_s = J^_s o dV_s + J^_s D(1 - s) ds,   D(t) = d f_Strat/dH (H_t)
              = 1/2 sigma''(0) grad_x Q(t, H_t) - 1/2 C_t + Abar_t,

    a Stratonovich SDE (Li et al. need the Stratonovich form of the forward SDE: the Ito drift of
    SP eq. 15 minus 1/2 C H). Solved with diffrax Heun (Stratonovich) on the reversed fine path,
    H read from the forward solution on the fine knots (``H_fine``: (n+1, d)).

    ``stratonovich_drift=False`` keeps the Ito drift (omits -1/2 C): the naive use of the adjoint
    on an Ito equation. ``solver="euler"`` integrates the same equation as Ito in reversed time.
    ``stratonovich_drift`` may also be a number in [0, 1] (a traced weight of the -1/2 C term) and
    ``d2_at_0`` overrides sigma''(0), so that the solve can be vmapped over variants.
    Returns J_t at ``ts`` (increasing), (T, d, d).
    """
    d = H_fine.shape[-1]
    n = W_A.n
    s2 = get_activation(activation).d2_at_0 if d2_at_0 is None else d2_at_0
    use_q = d2_at_0 is not None or s2 != 0.0
    if isinstance(stratonovich_drift, bool):
        w_strat, use_strat = (1.0 if stratonovich_drift else 0.0), stratonovich_drift
    else:
        w_strat, use_strat = stratonovich_drift, True
    Q = BrownianQ() if qv is None else qv
    C = ito_correction(Q, d)
    gradQ = jax.jacfwd(Q, argnums=1)
    V = PiecewiseLinearPath(W_A.values[-1] - W_A.values[::-1])
    Hrev = PiecewiseLinearPath(H_fine[::-1])

    def drift(s, J, args):
        t = 1.0 - s
        H = Hrev.evaluate(s)
        D = jnp.zeros((d, d), H.dtype)
        if use_q:
            D = D + 0.5 * s2 * gradQ(t, H)
        if use_strat:
            D = D - 0.5 * w_strat * C(t)
        if Abar is not None:
            D = D + Abar(t)
        return J @ D

    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), _RightControlTerm(V))
    ts = jnp.asarray(ts, H_fine.dtype)
    slv = {"euler": diffrax.Euler(), "heun": diffrax.Heun()}[solver]
    sol = diffrax.diffeqsolve(
        terms, slv, t0=0.0, t1=1.0, dt0=None, y0=jnp.eye(d, dtype=H_fine.dtype),
        saveat=diffrax.SaveAt(ts=(1.0 - ts)[::-1]),
        stepsize_controller=diffrax.StepTo(ts=uniform_grid(n, H_fine.dtype)),
        max_steps=n,
    )
    return sol.ys[::-1]


# --------------------------------------------------------------------------------------------
# Per-path errors of the convergence study (AA §5, Thms 4, 5)
# --------------------------------------------------------------------------------------------


def _unit_inputs(key: Array, d: int, dtype) -> tuple[Array, Array]:
    kx, ky = jax.random.split(key)
    return (jax.random.normal(kx, (d,), dtype) / math.sqrt(d), jax.random.normal(ky, (d,), dtype) / math.sqrt(d))


def regime1_path_errors(
    key: Array, *, depths: Sequence[int], width: int, activations: Sequence[str], alpha: float
) -> dict:
    """One random smooth trend (:func:`random_trend`): sup_k ||J_k - P_{k/L}||_F and the rescaled
    weight-gradient error sup_k (||L^a dl/dA_k - G^A_{k/L}|| + ||L^a dl/db_k - G^b_{k/L}||) for every
    depth and activation (AA Thm 4), for the networks of :func:`regime1_network` with
    beta = 1 - ``alpha``: ``alpha = 1`` is the neural-ODE case (P of AA eq. 5.5), 0 < alpha < 1 the
    linear case (AA eq. 5.6; its limit does not depend on the activation and is solved once).
    Keys ``"<act>:errors"``, ``"<act>:grad_errors"``, each (len(depths),). Pure, vmappable over keys."""
    d, dtype = width, jnp.float64
    kT, kxy = jax.random.split(key)
    tr = random_trend(kT, d, dtype=dtype)
    x, y = _unit_inputs(kxy, d, dtype)
    trend = lambda t: trend_eval(tr, t)  # noqa: E731
    node, beta = alpha == 1.0, 1.0 - alpha
    Lmax = depths[-1]
    ts = jnp.arange(Lmax + 1, dtype=dtype) / Lmax
    out = {}
    limit = None
    for act in activations:
        if node or limit is None:
            Hsol = forward_ode(x, trend, activation=act if node else None)
            H = jax.vmap(Hsol.evaluate)(ts)
            if node:
                P = backward_ode(ts, trend, H=Hsol.evaluate, activation=act)
                A_t, b_t = jax.vmap(trend)(ts)
                slope = get_activation(act).d1(jnp.einsum("tij,tj->ti", A_t, H) + b_t)
            else:
                P = backward_ode(ts, trend)
                slope = None
            limit = (P,) + limit_weight_gradients(P, H, jax.grad(mse)(H[-1], y), slope)
        P, GA, Gb = limit
        errs, gerrs = [], []
        for L in depths:
            s = Lmax // L
            p = regime1_network(tr, L, alpha=alpha, beta=beta)
            M, hs, z = layer_factors(p, x, activation=act, delta_mode="shared")
            J = _jacobians_from_factors(M)
            errs.append(jnp.sqrt(sup_sq_error(J, P[::s])))
            gA, gb, _ = _gradients_from(p, "shared", act, J, hs, z, jax.grad(mse)(hs[-1], y))
            c = L**alpha
            eA = jnp.sqrt(jnp.sum((c * gA - GA[::s][:L]) ** 2, axis=(-2, -1)))
            eb = jnp.sqrt(jnp.sum((c * gb - Gb[::s][:L]) ** 2, axis=-1))
            gerrs.append(jnp.max(eA + eb))
        out[f"{act}:errors"], out[f"{act}:grad_errors"] = jnp.stack(errs), jnp.stack(gerrs)
    return out


def regime2_path_errors(
    key: Array, *, depths: Sequence[int], width: int, n_fine: int, activations: Sequence[str], li: bool
) -> dict:
    """One fine Brownian path (SP Remark 2.1) shared by the depth-L networks (block increments)
    and the limit: squared sup errors of J (against Phi_1 Phi_t^{-1}), Phi and the weight gradients
    (AA Thm 5), and, with ``li``, of J against the Li et al. adjoint (AA eq. 5.13) with and without
    the Ito -> Stratonovich drift on the same path, for every activation (keys ``"<act>:errors"``,
    ``phi_errors``, ``grad_errors``, ``li_errors``, ``naive_errors``, each (len(depths),), and the
    scalars ``"<act>:li_vs_phi"``, ``"<act>:naive_vs_phi"``). The limit solves are vmapped over
    sigma''(0) (one compiled solve). Pure, vmappable over keys."""
    d, dtype = width, jnp.float64
    kW, kxy = jax.random.split(key)
    dWA, dWb = brownian_increments(kW, n_fine, d, dtype)
    x, y = _unit_inputs(kxy, d, dtype)
    WA, Wb = PiecewiseLinearPath.from_increments(dWA), PiecewiseLinearPath.from_increments(dWb)
    Lmax = depths[-1]
    ts = uniform_grid(Lmax, dtype)
    s2 = jnp.asarray([get_activation(a).d2_at_0 for a in activations], dtype)
    sols = jax.vmap(lambda c: solve_phi_sde(x, WA, Wb, ts, save_fine_H=li, d2_at_0=c))(s2)
    Jlims = jax.vmap(PhiSolution.jacobian_limit)(sols)
    n_act = len(activations)
    if li:
        # Li et al. adjoint with (w = 1) and without (w = 0) the Ito -> Stratonovich drift
        w = jnp.asarray([1.0] * n_act + [0.0] * n_act, dtype)
        idx = jnp.asarray(list(range(n_act)) * 2)
        J_adj = jax.vmap(
            lambda c, wi, Hf: li_adjoint(WA, Hf, ts, d2_at_0=c, stratonovich_drift=wi)
        )(s2[idx], w, sols.H_fine[idx])
    out: dict = {}
    for i, act in enumerate(activations):
        Jlim, H_lim, Phi_lim = Jlims[i], sols.H[i], sols.Phi[i]
        GA, Gb = limit_weight_gradients(Jlim, H_lim, jax.grad(mse)(H_lim[-1], y))
        names = ("errors", "phi_errors", "grad_errors") + (("li_errors", "naive_errors") if li else ())
        rows: dict = {k: [] for k in names}
        if li:
            J_li, J_naive = J_adj[i], J_adj[n_act + i]
            out[f"{act}:li_vs_phi"] = sup_sq_error(J_li, Jlim)
            out[f"{act}:naive_vs_phi"] = sup_sq_error(J_naive, Jlim)
        for L in depths:
            s = Lmax // L
            p = brownian_network(dWA, dWb, L)
            M, hs, z = layer_factors(p, x, activation=act, delta_mode="none")
            J = _jacobians_from_factors(M)
            Phi = _input_jacobians_from_factors(M)
            rows["errors"].append(sup_sq_error(J, Jlim[::s]))
            rows["phi_errors"].append(sup_sq_error(Phi, Phi_lim[::s]))
            gA, gb, _ = _gradients_from(p, "none", act, J, hs, z, jax.grad(mse)(hs[-1], y))
            eA = jnp.sum((gA - GA[::s][:L]) ** 2, axis=(-2, -1))
            eb = jnp.sum((gb - Gb[::s][:L]) ** 2, axis=-1)
            rows["grad_errors"].append(jnp.max(eA + eb))
            if li:
                rows["li_errors"].append(sup_sq_error(J, J_li[::s]))
                rows["naive_errors"].append(sup_sq_error(J, J_naive[::s]))
        out.update({f"{act}:{k}": jnp.stack(v) for k, v in rows.items()})
    return out
