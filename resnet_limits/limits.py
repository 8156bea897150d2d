"""Deep-network limits with diffrax: paths from weights, Q, and the limit solvers (SPEC §4, SP §4).

A depth-L ResNet (SP eq. 1) ``h_{k+1} = h_k + delta_k sigma(A_k h_k + b_k)`` defines, through
its weights, paths on the grid ``t_k = k/L`` of [0, 1]; its deep limit is solved with diffrax on
*those same paths*, so that network and limit can be compared pathwise (strong convergence).

Public API (stable; other modules import it)
--------------------------------------------

Paths (all are ``diffrax.AbstractPath`` subclasses on [0, 1], usable as diffrax controls:
``evaluate(t)`` is the value, ``evaluate(t0, t1)`` the increment):

- :class:`PiecewiseLinearPath` ``(values)``: ``values`` has shape ``(n + 1, *shape)`` (the value at
  ``t_k = k/n``), linear in between; any value shape (matrix ``(d, d)``, vector ``(d,)``, scalar
  ``()``). Properties ``n``, ``shape``, ``grid`` (``t_k``), ``increments`` (``(n, *shape)``);
  ``derivative(t)`` (piecewise-constant slope); ``coarsen(m)`` (values at ``k/m``, m | n);
  ``PiecewiseLinearPath.from_increments(dX)`` (cumulative sum with ``X_0 = 0``).
  Plain arrays inside, so these paths can be ``jax.vmap``-ed over (e.g. one path per sample).
- :class:`ConstantPath` ``(value)``: constant in t (increments 0); e.g. a constant trend Abar.
- :class:`FunctionPath` ``(fn)``: ``t -> fn(t)`` for a smooth closed-form trend (static callable).

Weights -> paths (SPEC §2, §4; SP eq. 7, 10):

- :func:`weight_paths` ``(params, delta_mode, *, beta=None, Abar=None, bbar=None, window=1,
  homogeneous=False) -> WeightPaths`` for ONE network (``params`` without a seed axis).
  ``delta_k`` is absorbed into the weights (SPEC §4): the driving paths are
  ``X^A_{t_k} = sum_{j<k} delta_j A_j``, ``X^b_{t_k} = sum_{j<k} delta_j b_j`` (shape (L+1, d, d) /
  (L+1, d)), split as ``X = int Abar dt + W`` (left Riemann sums on the grid, so that
  ``delta_k A_k = Abar_{t_k}/L + W^A_{t_{k+1}} - W^A_{t_k}`` exactly, SP eq. 10): ``Abar``/``bbar``
  are the trend *rates* (the drift of the limit) at ``t_k``, k = 0..L, given or, if None, estimated
  as ``L *`` a centred moving average (half-width ``window - 1``; ``window=1``: the raw weights) of
  ``delta_k A_k``. With ``beta`` given, a given ``Abar`` is in SP's own normalisation
  ``A_k = L^{-beta} Abar_{k/L} + dW`` (rate used: ``L^{1-beta} delta_k Abar_{t_k}``).
  ``WeightPaths`` holds ``X_A, X_b, W_A, W_b, Abar, bbar`` (PiecewiseLinearPath) and
  ``qv_weights`` (L,) for the Ito correction (see :func:`estimate_qv`); method
  ``quadratic_variation(window)`` estimates Q from ``W``'s increments.
- :func:`brownian_increments` ``(key, n_fine, d) -> (dW_A (n_fine, d, d), dW_b (n_fine, d))``:
  SP Remark 2.1 increments on the fine grid (A ~ N(0, 1/(n d^2)), b ~ N(0, 1/(n d))).
- :func:`coarsen_increments` ``(dW, L)``: block sums over blocks of length 1/L (n_fine/L fine steps):
  the weights of the depth-L network that shares the fine path.
- :func:`brownian_network` ``(dW_A, dW_b, L, *, Abar=None, bbar=None) -> ResNetParams``: the depth-L
  Remark 2.1 network on a fine path, with the drift ``Abar(t_k)/L`` added (beta = 1), delta = None.

Quadratic variation and Q (SP eq. 11, 12):

- :class:`QuadraticVariation` ``(S)``: densities on the intervals [t_k, t_{k+1}) of the
  (d, d+1)-matrix process ``M = [W^A | W^b]``: ``S[k, i, j, l] = d[M_ij, M_il]/dt``.
  ``Q(t, x)`` (``__call__``) is SP eq. 12: ``Q_i = z^T S_i z`` with ``z = (x, 1)``, i.e.
  ``sum_jl x_j x_l Sigma^A_{ijil} + 2 sum_j x_j Sigma^{Ab}_{ij,i} + Sigma^b_{ii}`` (the cross term
  is 0 when W^A, W^b are independent, as SP assumes; it is kept since the network's own Ito
  correction, SPEC §4 "from weights", contains it). ``sigma_A()``, ``sigma_b()`` give
  ``Sigma^A_{ijil}`` (n, d, d, d) and ``Sigma^b_{ii}`` (n, d).
- :func:`estimate_qv` ``(dW_A, dW_b, *, window=None, weights=None, blocks=None)``: ``S_k = n *``
  local average over the ``2 window + 1`` nearest intervals of ``w_k m_k m_k^T`` (``m_k`` = rows
  of ``[dW_A_k | dW_b_k]``; ``w_k`` = ``weights``, default 1); or block averages over ``blocks``
  blocks (a coarser piecewise-constant Q).
- :class:`BrownianQ` ``()``: closed form for Remark 2.1 weights, ``Q_i(t, x) = |x|^2/d^2 + 1/d``.
  :func:`brownian_qv` ``(n, d)``: the same as a :class:`QuadraticVariation`.

Limit solvers (all for ONE input ``x`` of shape (d,), returning the solution at the save times
``ts`` as (len(ts), d); ``jax.jit`` / ``jax.vmap`` over inputs and over paths):

- :func:`solve_linear_ode` ``(x, Abar, bbar, ts, ...)``: dH = (Abar_t H + bbar_t) dt (SP eq. 14, 16).
- :func:`solve_neural_ode` ``(x, Abar, bbar, ts, *, activation="tanh", ...)``:
  dH = sigma(Abar_t H + bbar_t) dt (SP eq. 2); ``activation`` a name or a callable.
  Both: Tsit5, adaptive PID steps (rtol 1e-10, atol 1e-12 by default) clipped to step exactly on
  the knots of piecewise-linear coefficients (where the vector field is only Lipschitz in t).
- :func:`solve_sde` ``(x, W_A, W_b, ts, *, d2_at_0=0., Q=None, Abar=None, bbar=None)``:
  Ito SDE dH = dW^A H + dW^b + 1/2 sigma''(0) Q(t, H) dt + (Abar_t H + bbar_t) dt (SP eq. 15;
  pass Abar/bbar only when beta = 1; ``d2_at_0`` may be a traced scalar, e.g. vmapped over
  with/without the correction). ``MultiTerm(ODETerm(drift), AffineControlTerm(W_A, W_b))``,
  solver ``Euler`` with ``StepTo`` the grid of ``W_A`` (t_k = k/n): on a piecewise-linear control,
  Euler steps on the path's own knots evaluate the diffusion at the left point = Euler-Maruyama,
  i.e. the Ito solution. (A midpoint/Heun rule, or steps finer than the knots, would converge to
  the Stratonovich solution instead — SPEC §4.)
- :class:`AffineControlTerm` ``(W_A, W_b=None)``: the diffrax term ``dW^A y + dW^b`` (y a vector
  (d,) or a matrix (d, m), e.g. the input Jacobian Phi with ``W_b=None``).

The network side: ``resnet_limits.models.forward(params, x, activation=..., delta_mode=...,
return_hidden=True)`` gives h_0..h_L to compare with ``H`` saved at ``PiecewiseLinearPath.grid``
of the coarse path (t_k = k/L). Use float64: ``with jax.enable_x64(True): ...``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from resnet_limits.models import ResNetParams, effective_delta, get_activation

__all__ = [
    "AffineControlTerm",
    "BrownianQ",
    "ConstantPath",
    "FunctionPath",
    "PiecewiseLinearPath",
    "QuadraticVariation",
    "WeightPaths",
    "brownian_increments",
    "brownian_network",
    "brownian_qv",
    "coarsen_increments",
    "estimate_qv",
    "moving_average",
    "solve_linear_ode",
    "solve_neural_ode",
    "solve_sde",
    "uniform_grid",
    "weight_paths",
]

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


# --------------------------------------------------------------------------------------
# Weights -> paths
# --------------------------------------------------------------------------------------


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


def _knot_values(rate_k: jax.Array) -> jax.Array:
    """Rates given at t_k for k < L (L values) -> values at k = 0..L (last repeated)."""
    return jnp.concatenate([rate_k, rate_k[-1:]], axis=0)


class WeightPaths(NamedTuple):
    """Paths of one depth-L network on t_k = k/L (SPEC §4), delta absorbed into the weights.

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

    def quadratic_variation(self, window: Optional[int] = None) -> "QuadraticVariation":
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
    """Paths of one network's weights (SPEC §2 unique split SP eq. 7, §4 delta absorbed).

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
        PiecewiseLinearPath(_knot_values(rA)), PiecewiseLinearPath(_knot_values(rb)), w,
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


def brownian_network(dW_A, dW_b, L: int, *, Abar=None, bbar=None) -> ResNetParams:
    """Depth-L network of SP Remark 2.1 on a fine path (+ drift Abar(t_k)/L when beta = 1).

    ``Abar``/``bbar``: None or a path / callable evaluated at t_k = k/L. delta = None (=1).
    """
    A = coarsen_increments(dW_A, L)
    b = coarsen_increments(dW_b, L)
    tk = jnp.arange(L, dtype=A.dtype) / L
    if Abar is not None:
        A = A + jax.vmap(_as_path(Abar).evaluate)(tk) / L
    if bbar is not None:
        b = b + jax.vmap(_as_path(bbar).evaluate)(tk) / L
    return ResNetParams(A, b, None)


# --------------------------------------------------------------------------------------
# Quadratic variation, Q (SP eq. 11, 12)
# --------------------------------------------------------------------------------------


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
    """Closed-form Q for SP Remark 2.1 weights: Q_i(t, x) = |x|^2/d^2 + 1/d (SPEC §4)."""

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
    """QV densities from increments (SPEC §4): S_k = n * mean_{|j-k| <= window} w_j m_j m_j^T.

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


# --------------------------------------------------------------------------------------
# Terms and solvers
# --------------------------------------------------------------------------------------


class AffineControlTerm(diffrax.AbstractTerm):
    """The diffrax term dW^A_t y + dW^b_t (SP eq. 15's noise), driven by paths W_A (d, d) and
    W_b (d,) (or None). ``y`` may be a vector (d,) or a matrix (d, m) (e.g. Phi with W_b=None).

    Solved with :class:`diffrax.Euler` stepping on the paths' knots this is Ito integration."""

    W_A: diffrax.AbstractPath
    W_b: Optional[diffrax.AbstractPath] = None

    def vf(self, t, y, args):
        return y

    def contr(self, t0, t1, **kwargs):
        dA = self.W_A.evaluate(t0, t1)
        db = None if self.W_b is None else self.W_b.evaluate(t0, t1)
        return (dA, db)

    def prod(self, vf, control):
        dA, db = control
        out = dA @ vf
        if db is not None:
            out = out + (db if vf.ndim == 1 else db[:, None])
        return out


def _trend_value(p, t, like):
    return jnp.zeros_like(like) if p is None else p.evaluate(t)


def _affine(Abar, bbar, t, y):
    out = jnp.zeros_like(y)
    if Abar is not None:
        out = out + Abar.evaluate(t) @ y
    if bbar is not None:
        out = out + bbar.evaluate(t)
    return out


def _knots(*paths) -> Optional[jax.Array]:
    """Union of the knots of the piecewise-linear coefficients (for step clipping)."""
    ns = sorted({p.n for p in paths if isinstance(p, PiecewiseLinearPath)})
    if not ns:
        return None
    grids = [uniform_grid(n) for n in ns]
    if len(grids) == 1:
        return grids[0]
    return jnp.unique(jnp.concatenate(grids))


def _ode_solve(vf, x, ts, knots, *, rtol, atol, max_steps):
    ts = jnp.asarray(ts, x.dtype)
    pid = diffrax.PIDController(rtol=rtol, atol=atol)
    controller = pid if knots is None else diffrax.ClipStepSizeController(pid, step_ts=knots)
    if max_steps is None:
        max_steps = 4096 + (0 if knots is None else 8 * int(knots.shape[0]))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), diffrax.Tsit5(), t0=0.0, t1=1.0, dt0=None, y0=x,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=controller, max_steps=max_steps,
    )
    return sol.ys


def solve_linear_ode(
    x: jax.Array,
    Abar,
    bbar,
    ts: jax.Array,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: Optional[int] = None,
) -> jax.Array:
    """dH/dt = Abar_t H + bbar_t, H_0 = x (SP eq. 14 / 16), saved at ``ts``: (len(ts), d).

    ``Abar``: path with values (d, d) (PiecewiseLinearPath, ConstantPath, FunctionPath; an array
    (n+1, d, d) or a callable is converted), ``bbar`` likewise (d,) or None. Tsit5 with adaptive
    PID steps, clipped to the knots of piecewise-linear coefficients.
    """
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    vf = lambda t, y, args: _affine(Abar, bbar, t, y)  # noqa: E731
    return _ode_solve(vf, x, ts, _knots(Abar, bbar), rtol=rtol, atol=atol, max_steps=max_steps)


def solve_neural_ode(
    x: jax.Array,
    Abar,
    bbar,
    ts: jax.Array,
    *,
    activation="tanh",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: Optional[int] = None,
) -> jax.Array:
    """Neural ODE dH/dt = sigma(Abar_t H + bbar_t), H_0 = x (SP eq. 2), saved at ``ts``.

    ``activation``: a name of ``resnet_limits.models.ACTIVATIONS`` or a callable.
    Same solver and step as :func:`solve_linear_ode`.
    """
    sigma = activation if callable(activation) else get_activation(activation).fn
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    vf = lambda t, y, args: sigma(_affine(Abar, bbar, t, y))  # noqa: E731
    return _ode_solve(vf, x, ts, _knots(Abar, bbar), rtol=rtol, atol=atol, max_steps=max_steps)


def solve_sde(
    x: jax.Array,
    W_A,
    W_b,
    ts: jax.Array,
    *,
    d2_at_0: float = 0.0,
    Q=None,
    Abar=None,
    bbar=None,
) -> jax.Array:
    """Ito SDE of SP eq. 15 on the given paths, saved at ``ts``: (len(ts), d).

        dH = dW^A_t H + dW^b_t + 1/2 sigma''(0) Q(t, H) dt + (Abar_t H + bbar_t) dt,  H_0 = x

    ``W_A``: PiecewiseLinearPath (n+1, d, d); ``W_b``: PiecewiseLinearPath (n+1, d) or None.
    ``Q``: callable (t, x) -> (d,) (:class:`QuadraticVariation`, :class:`BrownianQ`), used when
    ``d2_at_0 != 0``. ``Abar``/``bbar``: the beta = 1 drift (None otherwise). Euler with StepTo on
    the knots t_k = k/n of ``W_A`` = Euler-Maruyama on the fine path, i.e. Ito. ``ts`` should be
    knots (e.g. a coarse grid k/L with L | n): the dense output between knots is linear.
    """
    W_A, W_b = _as_path(W_A), _as_path(W_b)
    Abar, bbar = _as_path(Abar), _as_path(bbar)
    n = W_A.n
    if W_b is not None and isinstance(W_b, PiecewiseLinearPath) and W_b.n != n:
        raise ValueError(f"W_A and W_b must share the grid ({n} vs {W_b.n} steps)")
    # d2_at_0 may be a traced scalar (e.g. vmapped over with/without the correction)
    use_q = Q is not None and not (isinstance(d2_at_0, (int, float)) and d2_at_0 == 0.0)

    def drift(t, y, args):
        out = _affine(Abar, bbar, t, y)
        if use_q:
            out = out + 0.5 * d2_at_0 * Q(t, y)
        return out

    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), AffineControlTerm(W_A, W_b))
    sol = diffrax.diffeqsolve(
        terms, diffrax.Euler(), t0=0.0, t1=1.0, dt0=None, y0=x,
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts, x.dtype)),
        stepsize_controller=diffrax.StepTo(ts=uniform_grid(n, x.dtype)),
        max_steps=n,
    )
    return sol.ys
