"""Paths on the depth interval [0, 1] (SP §4.1, eq. 10; AA §4): the controls and coefficients of the limits.

A depth-L network's weights live on the grid t_k = k/L; its limit is solved by diffrax on paths
built from them. All paths are ``diffrax.AbstractPath`` subclasses on [0, 1], usable as diffrax
controls: ``evaluate(t)`` is the value, ``evaluate(t0, t1)`` the increment. They hold plain arrays,
so they can be ``jax.vmap``-ed over (e.g. one path per sample).
"""

from __future__ import annotations

from typing import Callable, Optional

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["ConstantPath", "FunctionPath", "PiecewiseLinearPath", "moving_average", "uniform_grid"]

# Guard for locating t_k = k/n in float arithmetic (k/n * n may round to k - ulp).
_EPS_INDEX = 1e-9


def uniform_grid(n: int, dtype=None) -> jax.Array:
    """t_k = k/n, k = 0..n (exact for powers of two)."""
    return jnp.arange(n + 1, dtype=dtype or jnp.result_type(float)) / n


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


class _UnitIntervalPath(diffrax.AbstractPath):
    """A path defined on the depth interval [0, 1]."""

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return 1.0


class PiecewiseLinearPath(_UnitIntervalPath):
    """Piecewise-linear path on [0, 1] through ``values[k]`` at ``t_k = k/n`` (k = 0..n).

    ``values``: (n + 1, *shape). As a diffrax control, ``evaluate(t0, t1)`` is the increment
    ``X_{t1} - X_{t0}``; with steps on the knots this is exactly ``values[k+1] - values[k]``.
    """

    values: jax.Array

    @property
    def n(self) -> int:
        return self.values.shape[0] - 1

    @property
    def shape(self) -> tuple:
        return tuple(self.values.shape[1:])

    @property
    def grid(self) -> jax.Array:
        return uniform_grid(self.n, self.values.dtype)

    @property
    def increments(self) -> jax.Array:
        return self.values[1:] - self.values[:-1]

    @classmethod
    def from_increments(cls, increments: jax.Array, x0: Optional[jax.Array] = None):
        """X_{t_k} = x0 + sum_{j<k} increments[j] (x0 = 0 by default)."""
        zero = jnp.zeros_like(increments[:1]) if x0 is None else jnp.asarray(x0)[None]
        return cls(jnp.concatenate([zero, zero + jnp.cumsum(increments, axis=0)], axis=0))

    def _locate(self, t):
        n = self.n
        s = jnp.asarray(t, self.values.dtype) * n
        k = jnp.clip(jnp.floor(s + _EPS_INDEX), 0, n - 1).astype(jnp.int32)
        w = jnp.clip(s - k, 0.0, 1.0)
        return k, w

    def _value(self, t):
        k, w = self._locate(t)
        v0 = self.values[k]
        v1 = self.values[k + 1]
        return (1.0 - w) * v0 + w * v1

    def evaluate(self, t0, t1=None, left: bool = True):
        del left  # continuous path
        if t1 is not None:
            return self._value(t1) - self._value(t0)
        return self._value(t0)

    def derivative(self, t, left: bool = True):
        """Slope n (X_{t_{k+1}} - X_{t_k}) on the interval containing t (left-continuous at knots
        when ``left``)."""
        n = self.n
        s = jnp.asarray(t, self.values.dtype) * n
        # left=True: t in (t_k, t_{k+1}] -> k = ceil(s) - 1; right: t in [t_k, t_{k+1}) -> floor(s).
        k = jnp.ceil(s - _EPS_INDEX) - 1 if left else jnp.floor(s + _EPS_INDEX)
        k = jnp.clip(k, 0, n - 1).astype(jnp.int32)
        return n * (self.values[k + 1] - self.values[k])

    def coarsen(self, m: int) -> "PiecewiseLinearPath":
        """The path through the values at k/m (m must divide n): the depth-m network's path."""
        n = self.n
        if n % m:
            raise ValueError(f"coarse size {m} must divide the fine size {n}")
        return PiecewiseLinearPath(self.values[:: n // m])

    def scale(self, c) -> "PiecewiseLinearPath":
        return PiecewiseLinearPath(c * self.values)


class ConstantPath(_UnitIntervalPath):
    """A constant value on [0, 1] (increments are zero): e.g. a constant trend Abar."""

    value: jax.Array

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            return jnp.zeros_like(self.value)
        return self.value

    def derivative(self, t, left: bool = True):
        return jnp.zeros_like(self.value)


class FunctionPath(_UnitIntervalPath):
    """``t -> fn(t)`` on [0, 1] for a closed-form (smooth) trend; ``fn`` is static."""

    fn: Callable = eqx.field(static=True)

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            return self.fn(t1) - self.fn(t0)
        return self.fn(t0)


def _as_path(p) -> Optional[diffrax.AbstractPath]:
    """None stays None; arrays of shape (n+1, ...) become PiecewiseLinearPath; paths pass."""
    if p is None or isinstance(p, diffrax.AbstractPath):
        return p
    if callable(p):
        return FunctionPath(p)
    return PiecewiseLinearPath(jnp.asarray(p))


def moving_average(x: jax.Array, window: int) -> jax.Array:
    """Centred moving average along axis 0 over ``2 (window - 1) + 1`` points, truncated at the
    ends (window = 1: identity)."""
    h = int(window) - 1
    if h <= 0:
        return x
    n = x.shape[0]
    c = jnp.concatenate([jnp.zeros_like(x[:1]), jnp.cumsum(x, axis=0)], axis=0)
    idx = jnp.arange(n)
    lo = jnp.clip(idx - h, 0, n)
    hi = jnp.clip(idx + h + 1, 0, n)
    cnt = (hi - lo).astype(x.dtype).reshape((n,) + (1,) * (x.ndim - 1))
    return (c[hi] - c[lo]) / cnt
