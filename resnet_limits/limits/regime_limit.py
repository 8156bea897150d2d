"""The deep limit of one given network chosen by its regime, on the network's own weights (SP §4,
AA §4; used by the depth-parametrisation study).

Under Hypothesis 1 (SP eq. 5: weights smooth in k) the limit is an ODE; the one solved here is the
ODE whose Euler scheme the network is,

    dH/dt = L delta(t) sigma(A(t) H + b(t)),   H_0 = x,

with A(t), b(t), delta(t) the weights linearly interpolated between t_k = k/L. With delta = 1/L
(alpha = 1, beta = 0) it is the neural ODE SP eq. 2 with Abar = A; with delta = L^{-alpha},
A_k ~ L^{-beta} Abar_{k/L}, alpha + beta = 1 and beta > 0 it tends to the linear ODE SP eq. 14,
since L^beta sigma(L^{-beta} z) -> sigma'(0) z = z.

Under Hypothesis 2 (SP eq. 6: a diffusive part) the limit is the Ito SDE SP eq. 15 driven by the
delta-absorbed weight paths X^A_{t_k} = sum_{j<k} delta_j A_j, X^b likewise (trend and noise in one
control, so the beta = 1 drift is included),

    dH = dX^A_t H + dX^b_t + 1/2 sigma''(0) Q(t, H) dt,

with Q (SP eq. 12) estimated from the absorbed increments with the weights 1/delta_k of
:class:`~resnet_limits.limits.WeightPaths` (solved only when sigma''(0) != 0; tanh has 0). The
network differs from its Euler-Maruyama scheme by sigma's higher-order terms (SP App. E.3), so with
delta = L^{-1/2} and O(1) weights (Depth-muP) the cubic term of tanh need not vanish with L.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from resnet_limits.limits.networks import knot_values, weight_paths
from resnet_limits.limits.paths import PiecewiseLinearPath, uniform_grid
from resnet_limits.limits.qv import estimate_qv
from resnet_limits.limits.solvers import path_knots, solve_ode, solve_sde
from resnet_limits.models import ResNetParams, effective_delta, forward, get_activation

__all__ = ["HYPOTHESIS_LIMITS", "limit_on_weights", "own_ode_limit", "own_sde_limit"]

#: The limit solved under each hypothesis (names for reports).
HYPOTHESIS_LIMITS = {
    1: "ODE dH/dt = L delta(t) sigma(A(t) H + b(t)) on the interpolated weights (SP eq. 2; -> SP eq. 14 "
       "when alpha + beta = 1, beta > 0)",
    2: "Ito SDE dH = dX^A H + dX^b + 1/2 sigma''(0) Q dt on the delta-absorbed weight paths (SP eq. 15)",
}


def own_ode_limit(params: ResNetParams, x: jax.Array, activation: str, delta_mode: str, *,
                  rtol: float = 1e-10, atol: float = 1e-12) -> jax.Array:
    """dH/dt = L delta(t) sigma(A(t) H + b(t)), H_0 = x (module docstring), for ONE input x (d,) and
    one network (no seed axis), saved at t_k = k/L: (L+1, d). Tsit5, steps clipped to the knots."""
    sigma = get_activation(activation).fn
    L = params.A.shape[0]
    path = lambda w: PiecewiseLinearPath(knot_values(jnp.asarray(w, x.dtype)))  # noqa: E731
    A, b, rate = path(params.A), path(params.b), path(L * effective_delta(params, delta_mode))
    vf = lambda t, y, args: rate.evaluate(t) * sigma(A.evaluate(t) @ y + b.evaluate(t))  # noqa: E731
    return solve_ode(vf, x, uniform_grid(L, x.dtype), path_knots(A), rtol=rtol, atol=atol, max_steps=None)


def own_sde_limit(params: ResNetParams, x: jax.Array, activation: str, delta_mode: str) -> jax.Array:
    """The Ito SDE of the module docstring on the network's absorbed weight paths, for ONE input x
    (d,) and one network, saved at t_k = k/L: (L+1, d). Euler on the knots (Ito)."""
    d2 = get_activation(activation).d2_at_0
    wp = weight_paths(params, delta_mode)
    Q = estimate_qv(wp.X_A.increments, wp.X_b.increments, weights=wp.qv_weights) if d2 else None
    return solve_sde(x, wp.X_A, wp.X_b, uniform_grid(params.A.shape[0], x.dtype), d2_at_0=d2, Q=Q)


def limit_on_weights(params: ResNetParams, xs: jax.Array, activation: str, delta_mode: str, hypothesis: int,
                     ) -> tuple[jax.Array, jax.Array]:
    """Hidden states h (B, L+1, d) of one network on the inputs ``xs`` (B, d) and its limit H
    (B, L+1, d) at t_k = k/L under ``hypothesis`` 1 (:func:`own_ode_limit`) or 2
    (:func:`own_sde_limit`). jit-able (``activation``, ``delta_mode``, ``hypothesis`` static); use
    float64."""
    if hypothesis not in HYPOTHESIS_LIMITS:
        raise ValueError(f"hypothesis must be 1 or 2, got {hypothesis!r}")
    solve = own_ode_limit if hypothesis == 1 else own_sde_limit
    h = jax.vmap(lambda x: forward(params, x, activation=activation, delta_mode=delta_mode, return_hidden=True))(xs)
    H = jax.vmap(lambda x: solve(params, x, activation, delta_mode))(xs)
    return h, H
