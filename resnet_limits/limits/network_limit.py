"""The deep limit of one given (e.g. trained) network on its own weights (SP §4; AA §4).

tanh (and other smooth activations): the linear ODE SP eq. 14, dH/dt = L delta (A(t) H + b(t)) with
A(t), b(t) the weights linearly interpolated between t_k = k/L. ReLU: the Ito SDE of a smooth
surrogate activation. With s_eps(z) = eps (softplus(z/eps) - log 2) (s(0) = 0, s'(0) = 1/2,
s''(0) = 1/(4 eps); s_eps -> relu as eps -> 0), a ReLU step delta relu(z) = sign(delta) relu(|delta| z)
(SP Remark 2.2) is replaced by sign(delta) s(|delta| z) = s'(0) delta z + 1/2 s''(0) sign(delta)
delta^2 z^2 + ..., whose limit is dH = s'(0) (dX^A H + dX^b) + 1/2 s''(0) Q(t, H) dt with X the
delta-absorbed weight paths and Q from the sign-weighted squared increments. The main comparison
uses eps = 1; eps = 0.1, 0.01 are solved too (the ReLU case is the eps -> 0 limit, SP §4.5).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from resnet_limits.limits.networks import weight_paths
from resnet_limits.limits.paths import uniform_grid
from resnet_limits.limits.qv import estimate_qv
from resnet_limits.limits.solvers import solve_linear_ode, solve_sde
from resnet_limits.models import ResNetParams, effective_delta, forward

__all__ = ["SURROGATE", "SURROGATE_EPS", "network_and_limit", "surrogate_forward"]

#: The surrogate of ReLU (eps = 1) and its derivatives at 0.
SURROGATE = dict(name="softplus(z) - log 2", d1_at_0=0.5, d2_at_0=0.25, eps=1.0)
#: The eps of the surrogates s_eps solved besides the main one.
SURROGATE_EPS = (1.0, 0.1, 0.01)


def _surrogate(z, eps=1.0):
    return eps * (jax.nn.softplus(z / eps) - math.log(2.0))


def surrogate_forward(params: ResNetParams, x, delta_mode: str, *, eps=1.0,
                      return_hidden: bool = True):
    """The ReLU network with ReLU replaced by its smooth surrogate in homogeneous form (SP Remark 2.2):
    h_{k+1} = h_k + sign(delta_k) s(|delta_k| (A_k h_k + b_k)), s(z) = eps (softplus(z/eps) - log 2)."""
    dl = effective_delta(params, delta_mode)

    def step(h, p):
        A, b, de = p
        hn = h + jnp.sign(de) * _surrogate(jnp.abs(de) * (h @ A.T + b), eps)
        return hn, hn

    hL, hs = jax.lax.scan(step, x, (params.A, params.b, dl))
    return jnp.concatenate([x[None], hs]) if return_hidden else hL


def _relu_limits(params: ResNetParams, xs, delta_mode: str, ts) -> tuple[jax.Array, dict]:
    """Ito SDE limits of the ReLU network's surrogates (module docstring), one vmapped solve over
    s''(0) = 0 (no correction) and 1/(4 eps) for eps in :data:`SURROGATE_EPS`; and the surrogate
    networks themselves."""
    wp = weight_paths(params, delta_mode, homogeneous=True)
    c = SURROGATE["d1_at_0"]
    # Q from the sign-weighted squares of the whole absorbed increments (trend included: the
    # network's own second-order term), local average of half-width ceil(sqrt(L))
    qv = estimate_qv(wp.X_A.increments, wp.X_b.increments, weights=wp.qv_weights)
    # noise + trend in one control (X = int Abar + W): dH = c dX^A H + c dX^b + 1/2 s''(0) Q dt
    d2s = jnp.asarray([0.0] + [0.25 / e for e in SURROGATE_EPS])
    Hs = jax.vmap(lambda d2: jax.vmap(lambda x: solve_sde(
        x, wp.X_A.scale(c), wp.X_b.scale(c), ts, d2_at_0=d2, Q=qv))(xs))(d2s)
    extra = {"limit_without_correction": Hs[0], "limits_eps": Hs[1:]}
    extra["surrogate_networks_eps"] = jnp.stack([jax.vmap(
        lambda x: surrogate_forward(params, x, delta_mode, eps=e))(xs) for e in SURROGATE_EPS])
    extra["surrogate_network"] = extra["surrogate_networks_eps"][0]
    return Hs[1], extra


def network_and_limit(params: ResNetParams, xs, activation: str, delta_mode: str):
    """Hidden states h (B, L+1, d) of one network (no seed axis) on the inputs ``xs`` (B, d), its
    limit H (B, L+1, d) at t_k = k/L (module docstring), and a dict of extra arrays: for ReLU the
    limit without the Ito correction, the limits and surrogate networks for every eps of
    :data:`SURROGATE_EPS` and the main surrogate network; empty otherwise. jit-able."""
    L = params.A.shape[0]
    ts = uniform_grid(L)
    h = jax.vmap(lambda x: forward(params, x, activation=activation, delta_mode=delta_mode,
                                   return_hidden=True))(xs)
    if activation == "relu":
        H, extra = _relu_limits(params, xs, delta_mode, ts)
        return h, H, extra
    wp = weight_paths(params, delta_mode)  # window=1: trend = L delta A_k interpolated
    H = jax.vmap(lambda x: solve_linear_ode(x, wp.Abar, wp.bbar, ts))(xs)
    return h, H, {}
