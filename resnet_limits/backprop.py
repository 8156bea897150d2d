"""Backpropagation limits of deep ResNets (AA §5, SPEC §5).

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

Study: :func:`reproduce_backprop` measures sup_k ||J_k - P_{k/L}|| (Regime 1) and
E sup_k ||J_k - Phi_1 Phi_{k/L}^{-1}||^2 (Regime 2) against L and fits log-log slopes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams, effective_delta, forward, get_activation, mse
from resnet_limits.scaling import loglog_fit

__all__ = [
    "BrownianWeightPath",
    "PhiSolution",
    "TrendPath",
    "backward_ode",
    "brownian_weight_path",
    "coarsen",
    "forward_ode",
    "input_jacobians",
    "jacobians",
    "layer_factors",
    "li_adjoint",
    "limit_weight_gradients",
    "random_trend",
    "regime1_network",
    "remark21_qv",
    "reproduce_backprop",
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
    d = M.shape[-1]
    J_L = jnp.broadcast_to(jnp.eye(d, dtype=M.dtype), M.shape[1:])

    def step(J_next, M_k):
        J_k = J_next @ M_k
        return J_k, J_k

    _, Js = jax.lax.scan(step, J_L, M, reverse=True)
    return jnp.concatenate([Js, J_L[None]], axis=0)


def input_jacobians(
    params: ResNetParams, x: Array, *, activation: str = "tanh", delta_mode: str = "shared"
) -> Array:
    """Phi_k = dh_k/dx for k = 0..L, shape (L+1, *batch, d, d) (AA eq. 5.17).

    Forward recursion Phi_0 = I, Phi_{k+1} = (I + delta_k diag(sigma'(A_k h_k + b_k)) A_k) Phi_k;
    J_k = Phi_L Phi_k^{-1} (AA eq. 5.16).
    """
    M, _, _ = layer_factors(params, x, activation=activation, delta_mode=delta_mode)
    d = M.shape[-1]
    Phi0 = jnp.broadcast_to(jnp.eye(d, dtype=M.dtype), M.shape[1:])

    def step(Phi, M_k):
        Phi_next = M_k @ Phi
        return Phi_next, Phi_next

    _, Phis = jax.lax.scan(step, Phi0, M)
    return jnp.concatenate([Phi0[None], Phis], axis=0)


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
    act = get_activation(activation)
    deltas = effective_delta(params, delta_mode)
    J = jacobians(params, x, activation=activation, delta_mode=delta_mode)
    hs, z = _preactivations(params, x, activation, delta_mode)
    g_L = jax.grad(lambda h: loss(h, y))(hs[-1])  # (*batch, d)
    g = jnp.einsum("...i,k...ij->k...j", g_L, J[1:])  # g_{k+1}, (L, *batch, d)
    nb = z.ndim - 2
    u = deltas.reshape((-1,) + (1,) * (nb + 1)) * g * act.d1(z)
    batch_axes = tuple(range(1, 1 + nb))
    gA = jnp.einsum("k...i,k...j->kij", u, hs[:-1])
    gb = u.sum(axis=batch_axes) if nb else u
    gd_k = jnp.sum(g * act.fn(z), axis=batch_axes + (z.ndim - 1,))  # (L,)
    if delta_mode == "none" or params.delta is None:
        gd = None
    elif delta_mode == "shared":
        gd = jnp.sign(params.delta) * gd_k.sum()
    else:
        gd = gd_k
    return ResNetParams(gA, gb, gd)
