"""A network's weights as paths, and networks built from a fine Brownian path (SP §2.1, §4.1; eqs. 7,
10, Remark 2.1)."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from resnet_limits.limits.paths import PiecewiseLinearPath, _as_path, moving_average
from resnet_limits.limits.qv import QuadraticVariation, estimate_qv
from resnet_limits.models import ResNetParams, effective_delta

__all__ = ["WeightPaths", "brownian_increments", "brownian_network", "coarsen_increments", "knot_values",
           "weight_paths"]


def knot_values(rate_k: jax.Array) -> jax.Array:
    """Rates given at t_k for k < L (L values) -> values at k = 0..L (last repeated)."""
    return jnp.concatenate([rate_k, rate_k[-1:]], axis=0)


class WeightPaths(NamedTuple):
    """Paths of one depth-L network on t_k = k/L (SP §4.1), delta absorbed into the weights.

    ``X_A``/``X_b``: cumulative absorbed weights; ``W_A``/``W_b``: noise part (SP eq. 10);
    ``Abar``/``bbar``: trend rates at t_k (drift of the limit ODE / beta = 1 SDE);
    ``qv_weights``: per-layer weight w_k of the Ito correction (1/delta_k when delta multiplies
    sigma, sign(delta_k) for the homogeneous form sign(delta) sigma(|delta| z)).
    """

    X_A: PiecewiseLinearPath
    X_b: PiecewiseLinearPath
    W_A: PiecewiseLinearPath
    W_b: PiecewiseLinearPath
    Abar: PiecewiseLinearPath
    bbar: PiecewiseLinearPath
    qv_weights: jax.Array

    @property
    def depth(self) -> int:
        return self.X_A.n

    def quadratic_variation(self, window: Optional[int] = None) -> QuadraticVariation:
        """Q of SP eq. 12 estimated from the noise increments (see :func:`estimate_qv`)."""
        return estimate_qv(
            self.W_A.increments, self.W_b.increments, window=window, weights=self.qv_weights
        )


def weight_paths(
    params: ResNetParams,
    delta_mode: str,
    *,
    beta: Optional[float] = None,
    Abar=None,
    bbar=None,
    window: int = 1,
    homogeneous: bool = False,
) -> WeightPaths:
    """Paths of one network's weights (unique split SP eq. 7; delta absorbed as in SP eq. 10).

    ``params``: A (L, d, d), b (L, d), delta per ``delta_mode``. ``Abar``/``bbar``: trend, as
    arrays with L or L+1 values at t_k (or None: estimated by an L-scaled moving average of the
    absorbed weights with half-width ``window - 1``). ``beta``: if given, a given trend is in SP's
    normalisation A_k = L^{-beta} Abar_{k/L} + dW^A_k (rate L^{1-beta} delta_k Abar_{t_k}).
    ``homogeneous``: the network is read as sign(delta_k) sigma(|delta_k| z) (ReLU, SP Remark 2.2),
    which changes only the Ito-correction weights.
    """
    A, b = jnp.asarray(params.A), jnp.asarray(params.b)
    L = A.shape[0]
    delta = effective_delta(ResNetParams(A, b, params.delta), delta_mode).astype(A.dtype)
    aA = delta[:, None, None] * A
    ab = delta[:, None] * b

    def trend_rate(given, absorbed, dshape):
        if given is None:
            return L * moving_average(absorbed, window)
        g = jnp.asarray(given, A.dtype)
        if g.shape[0] == L + 1:
            g = g[:L]
        if g.shape[0] != L:
            raise ValueError(f"trend must have L={L} or L+1 values, got shape {g.shape}")
        if beta is not None:
            g = (L ** (1.0 - beta)) * delta.reshape((L,) + (1,) * len(dshape)) * g
        return g

    rA = trend_rate(Abar, aA, A.shape[1:])
    rb = trend_rate(bbar, ab, b.shape[1:])
    X_A = PiecewiseLinearPath.from_increments(aA)
    X_b = PiecewiseLinearPath.from_increments(ab)
    W_A = PiecewiseLinearPath.from_increments(aA - rA / L)
    W_b = PiecewiseLinearPath.from_increments(ab - rb / L)
    if homogeneous:
        w = jnp.sign(delta)
    else:
        w = jnp.where(delta != 0, 1.0 / jnp.where(delta != 0, delta, 1.0), 0.0)
    return WeightPaths(
        X_A, X_b, W_A, W_b,
        PiecewiseLinearPath(knot_values(rA)), PiecewiseLinearPath(knot_values(rb)), w,
    )


def brownian_increments(key: jax.Array, n_fine: int, d: int, dtype=None):
    """Increments of the fine Brownian paths of SP Remark 2.1 on t_k = k/n_fine:
    dW^A ~ N(0, 1/(n d^2)) (n, d, d), dW^b ~ N(0, 1/(n d)) (n, d)."""
    dtype = dtype or jnp.result_type(float)
    kA, kb = jax.random.split(key)
    dWA = jax.random.normal(kA, (n_fine, d, d), dtype) / (math.sqrt(n_fine) * d)
    dWb = jax.random.normal(kb, (n_fine, d), dtype) / math.sqrt(n_fine * d)
    return dWA, dWb


def coarsen_increments(dW: jax.Array, L: int) -> jax.Array:
    """Block sums of fine increments over blocks of length 1/L: (n, ...) -> (L, ...)."""
    n = dW.shape[0]
    if n % L:
        raise ValueError(f"depth {L} must divide the number of fine steps {n}")
    return dW.reshape((L, n // L) + dW.shape[1:]).sum(axis=1)


def brownian_network(dW_A, dW_b, L: int, *, Abar=None, bbar=None, beta: float = 1.0) -> ResNetParams:
    """Depth-L network of SP Remark 2.1 on a fine path, plus the trend (SP eq. 10 / AA eq. 4.5):
    ``A_k = L^{-beta} Abar(t_k) + W^A_{t_{k+1}} - W^A_{t_k}``, and the same for ``b``.

    ``Abar``/``bbar``: None or a path / callable evaluated at t_k = k/L. ``beta = 1`` (default): the
    diffusive regime's drift ``Abar(t_k)/L``; ``0 < beta < 1`` with ``delta = L^{-(1 - beta)}`` (the
    caller's): AA Thm 2's linear-ODE case of Scaling regime 2. delta = None (=1) in the result.
    """
    A = coarsen_increments(dW_A, L)
    b = coarsen_increments(dW_b, L)
    tk = jnp.arange(L, dtype=A.dtype) / L
    c = float(L) ** (1.0 - beta)  # L^{-beta} = c / L; c = 1 exactly when beta = 1
    if Abar is not None:
        A = A + c * jax.vmap(_as_path(Abar).evaluate)(tk) / L
    if bbar is not None:
        b = b + c * jax.vmap(_as_path(bbar).evaluate)(tk) / L
    return ResNetParams(A, b, None)
