"""Roughness of a weight path: its Hoelder (Hurst) exponent from increments at dyadic lags
(SP §2.2, Hypotheses 1-2; SP eq. 8).

The path of a depth-L network's weights is X_k = sum_{i<k} A_i, k = 0..L (SP eq. 7 at beta = 1).
Under Hypothesis 2 (SP eq. 6) it carries a Brownian part W^A: rough, Hoelder exponent 1/2; under
Hypothesis 1 (SP eq. 5) it is the integral of a continuous Abar: C^1, exponent 1. The variogram
estimator (Constantine & Hall 1994; Gneiting, Sevcikova & Percival 2012) reads the exponent H off

    V(m) = mean_k |X_{k+m} - X_k|^2 ~ C m^{2H},   m = 1, 2, 4, ...:

H = (slope of log V(m) against log m) / 2, by least squares over the lags. Brownian motion (i.i.d.
increments) has V(m) = m V(1) exactly in expectation, H = 1/2; a C^1 path has
X_{k+m} - X_k ~ m X', H = 1 at lags short next to the scale on which X' varies. A path with both
(a trend plus noise) gives H between the two, nearer to the part that dominates at the lags used;
the default lags stop at L/16 to stay short next to the depth interval.

V pools the entries of a path with several (an (L+1, d, d) stack): the mean runs over k and entries.
Pure JAX, one network per call; ``jax.vmap`` over seeds (the lags are static).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["cumulative_path", "dyadic_lags", "holder_exponent", "seed_holder_exponents", "variogram",
           "weights_holder_exponent"]


def dyadic_lags(n_steps: int, max_fraction: float = 1.0 / 16) -> tuple[int, ...]:
    """The lags 1, 2, 4, ..., 2^J <= max(2, ``max_fraction`` n_steps) of a path with ``n_steps``
    increments (at least two lags; ``ValueError`` below 3 steps)."""
    if n_steps < 3:
        raise ValueError(f"a path needs at least 3 increments for two lags, got {n_steps}")
    top = min(max(2, int(max_fraction * n_steps)), n_steps - 1)
    return tuple(2 ** j for j in range(int(math.log2(top)) + 1))


@jax.jit
def cumulative_path(T: jax.Array) -> jax.Array:
    """X_k = sum_{i<k} T_i, k = 0..L, with X_0 = 0: (L, ...) -> (L + 1, ...)."""
    return jnp.concatenate([jnp.zeros_like(T[:1]), jnp.cumsum(T, axis=0)], axis=0)


def variogram(path: jax.Array, lags: Sequence[int]) -> jax.Array:
    """V(m) = mean over k and entries of |X_{k+m} - X_k|^2 for each lag m: ``path`` (n + 1, ...) ->
    (len(lags),)."""
    return _variogram(path, tuple(int(m) for m in lags))


def _variogram_of(xp, path, lags: tuple[int, ...], axis: int = 0):
    """V(m) for each lag, the mean over every axis but the leading ones before ``axis`` (the array
    library ``xp``: jax.numpy inside the jitted functions, numpy for many depths at once)."""
    n = path.shape[axis]
    keep = tuple(range(axis))
    out = []
    for m in lags:
        inc = xp.take(path, xp.arange(m, n), axis=axis) - xp.take(path, xp.arange(0, n - m), axis=axis)
        out.append(xp.mean(inc**2, axis=tuple(range(axis, path.ndim))) if keep else xp.mean(inc**2))
    return xp.stack(out, axis=-1)


def _exponent_of(xp, V, lags: tuple[int, ...]):
    """Half the least-squares slope of log V on log m (over the last axis of ``V``)."""
    x = xp.log(xp.asarray(lags, dtype=V.dtype))
    y = xp.log(V)
    xc = x - xp.mean(x)
    return 0.5 * xp.sum(xc * (y - xp.mean(y, axis=-1, keepdims=True)), axis=-1) / xp.sum(xc * xc)


@functools.partial(jax.jit, static_argnames="lags")
def _variogram(path: jax.Array, lags: tuple[int, ...]) -> jax.Array:
    return _variogram_of(jnp, path, lags)


def holder_exponent(path: jax.Array, lags: Optional[Sequence[int]] = None) -> jax.Array:
    """The Hoelder/Hurst exponent H of a path (n + 1, ...): half the least-squares slope of
    log V(m) on log m (module docstring); 1/2 for Brownian motion, 1 for a C^1 path. ``lags``:
    :func:`dyadic_lags` of the path by default. nan for a constant path."""
    lags = dyadic_lags(path.shape[0] - 1) if lags is None else tuple(int(m) for m in lags)
    return _holder_exponent(path, lags)


@functools.partial(jax.jit, static_argnames="lags")
def _holder_exponent(path: jax.Array, lags: tuple[int, ...]) -> jax.Array:
    return _exponent_of(jnp, _variogram_of(jnp, path, lags), lags)


def weights_holder_exponent(T: jax.Array, lags: Optional[Sequence[int]] = None) -> jax.Array:
    """:func:`holder_exponent` of the weights' path X_k = sum_{i<k} T_i (:func:`cumulative_path`)
    of a stack ``T`` (L, ...) of one network: (L,) deltas, (L, d) biases, (L, d, d) matrices."""
    return holder_exponent(cumulative_path(T), lags)


def seed_holder_exponents(T, lags: Optional[Sequence[int]] = None) -> np.ndarray:
    """:func:`weights_holder_exponent` of every network of a stack ``T`` (S, L, ...) (a leading seed
    axis), in NumPy on the host: the same estimator, with no program compiled per depth (the
    analysis of a depth grid calls it once per depth). nan where a path is constant."""
    T = np.asarray(T, np.float64)
    path = np.concatenate([np.zeros_like(T[:, :1]), np.cumsum(T, axis=1)], axis=1)
    lags = dyadic_lags(T.shape[1]) if lags is None else tuple(int(m) for m in lags)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _exponent_of(np, _variogram_of(np, path, lags, axis=1), lags)
