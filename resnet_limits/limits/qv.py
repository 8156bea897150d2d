"""Quadratic variation of the weight noise and the Ito-correction field Q (SP eq. 11, 12)."""

from __future__ import annotations

import math
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from resnet_limits.limits.paths import _EPS_INDEX, moving_average

__all__ = ["BrownianQ", "QuadraticVariation", "brownian_qv", "estimate_qv"]


class QuadraticVariation(eqx.Module):
    """Piecewise-constant QV densities of M = [W^A | W^b] on [t_k, t_{k+1}), k < n.

    ``S``: (n, d, d+1, d+1), ``S[k, i, j, l] = d[M_ij, M_il]_t / dt``.
    """

    S: jax.Array

    @property
    def n(self) -> int:
        return self.S.shape[0]

    def density(self, t) -> jax.Array:
        """S at time t (right-continuous: [t_k, t_{k+1}) -> k), shape (d, d+1, d+1)."""
        k = jnp.clip(jnp.floor(jnp.asarray(t, self.S.dtype) * self.n + _EPS_INDEX), 0, self.n - 1)
        return self.S[k.astype(jnp.int32)]

    def __call__(self, t, x: jax.Array) -> jax.Array:
        """Q_i(t, x) = z^T S_i(t) z, z = (x, 1) (SP eq. 12)."""
        z = jnp.concatenate([x, jnp.ones((1,), x.dtype)])
        return jnp.einsum("ijl,j,l->i", self.density(t), z, z)

    def sigma_A(self) -> jax.Array:
        """Sigma^A_{ijil} on each interval: (n, d, d, d) indexed [k, i, j, l]."""
        d = self.S.shape[1]
        return self.S[:, :, :d, :d]

    def sigma_b(self) -> jax.Array:
        """Sigma^b_{ii} on each interval: (n, d)."""
        d = self.S.shape[1]
        return self.S[:, :, d, d]


class BrownianQ(eqx.Module):
    """Closed-form Q for SP Remark 2.1 weights: Q_i(t, x) = |x|^2/d^2 + 1/d (SP eq. 12)."""

    def __call__(self, t, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        return jnp.full((d,), jnp.dot(x, x) / d**2 + 1.0 / d, x.dtype)


def brownian_qv(n: int, d: int, dtype=None) -> QuadraticVariation:
    """Exact densities of SP Remark 2.1: Sigma^A_{ijil} = 1{j=l}/d^2, Sigma^b_{ii} = 1/d."""
    dtype = dtype or jnp.result_type(float)
    Si = jnp.zeros((d + 1, d + 1), dtype)
    Si = Si.at[:d, :d].set(jnp.eye(d, dtype=dtype) / d**2).at[d, d].set(1.0 / d)
    return QuadraticVariation(jnp.broadcast_to(Si, (n, d, d + 1, d + 1)))


def estimate_qv(
    dW_A: jax.Array,
    dW_b: jax.Array,
    *,
    window: Optional[int] = None,
    weights: Optional[jax.Array] = None,
    blocks: Optional[int] = None,
) -> QuadraticVariation:
    """QV densities from increments (SP eqs. 11-12): S_k = n * mean_{|j-k| <= window} w_j m_j m_j^T.

    ``dW_A``: (n, d, d), ``dW_b``: (n, d); m_j = [dW_A_j | dW_b_j] row by row, so that
    ``Q_i(t_k, x) ~ n * local mean of w_j ((dW_A_j x)_i + (dW_b_j)_i)^2``. ``window`` (half-width,
    default ceil(sqrt(n))) trades time resolution against noise (relative error about
    (2 window + 1)^{-1/2}). ``weights`` w_j (n,): see :class:`WeightPaths` (default 1).
    ``blocks``: instead of a moving window, average over ``blocks`` consecutive blocks of
    n/blocks increments; the result then lives on the coarser grid k/blocks (less memory).
    """
    n = dW_A.shape[0]
    if window is None:
        window = int(math.ceil(math.sqrt(n)))
    M = jnp.concatenate([dW_A, dW_b[..., None]], axis=-1)  # (n, d, d+1)
    w = jnp.ones((n,), M.dtype) if weights is None else jnp.asarray(weights, M.dtype)
    if blocks is not None:
        if n % blocks:
            raise ValueError(f"blocks={blocks} must divide the number of increments {n}")
        m = n // blocks
        Mb = M.reshape((blocks, m) + M.shape[1:])
        S = jnp.einsum("bk,bkij,bkil->bijl", w.reshape(blocks, m), Mb, Mb) * (n / m)
        return QuadraticVariation(S)
    outer = jnp.einsum("k,kij,kil->kijl", w, M, M)
    return QuadraticVariation(n * moving_average(outer, int(window) + 1))
