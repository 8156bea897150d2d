"""Nested initial weights for ladders of depths L0, 2 L0, 4 L0, ..., and distances between the depths
of a ladder (SP eq. 1; SP §2.2, Hypotheses 1-2, eqs. 5-7).

A ladder trains networks of depths L_j = L0 2^j whose initial weights are NESTED: depth 2L's weights
refine depth L's, so that what separates trained networks of consecutive depths is what training
did, not two independent draws of the initialisation. Pure functions of arrays (jit/vmap-able; the
depths, widths and names are static).

**Nesting** (:func:`nested_initial_params`), per initialisation of
:func:`~resnet_limits.models.init_params` (s_L: the entries' standard deviation at depth L,
:func:`~resnet_limits.models.init_scales`):

- ``smooth``: A_k = sum_m phi_m(k/L) C_m with the SAME Fourier coefficients C (drawn from the key,
  independent of L) at every depth, so A^{(2L)}_{2k} = A^{(L)}_k: the same function at the same time
  t = k/L = 2k/(2L). Every depth is exactly ``init_params`` (the same draw), for A and b.
- Gaussian inits (``xavier-depth``, ``xavier``, ``brownian``, ``iid``: entries i.i.d. N(0, s_L^2)
  over layers and entries). Write A^{(L)}_k = c_L (B_{(k+1)/L} - B_{k/L}) for a standard Brownian
  motion B (one per entry). Depth 2L draws B at the midpoints of depth L's cells given its values
  there (Levy's construction: the Brownian bridge over a cell of length 1/L has midpoint law
  N(mean of the endpoints, 1/(4L))). With xi_k = B_{(k+1)/L} - B_{k/L} ~ N(0, 1/L):

      xi'_{2k} = xi_k / 2 + Z_k,   xi'_{2k+1} = xi_k / 2 - Z_k,   Z_k ~ N(0, 1/(4L)) i.i.d.,

  i.e. Z_k ~ N(0, s'^2/2) with s'^2 = 1/(2L) the fine variance. Then Var xi'_{2k} = Var xi'_{2k+1}
  = 1/(4L) + 1/(4L) = 1/(2L) and Cov(xi'_{2k}, xi'_{2k+1}) = 1/(4L) - 1/(4L) = 0; the pair is
  Gaussian, so the fine increments are i.i.d. N(0, 1/(2L)): depth 2L's own law, jointly (not only
  marginally), and xi'_{2k} + xi'_{2k+1} = xi_k. In standard units N = sqrt(L) xi ~ N(0, 1):
  N'_{2k} = (N_k + E_k)/sqrt 2, N'_{2k+1} = (N_k - E_k)/sqrt 2, E_k ~ N(0, 1)
  (:func:`refine_standard_normals`).

  Which scale c_L (``nesting``, :func:`path_scales`):

  * ``"law"`` (default): c_L = sqrt(L) s_L. Every depth has exactly the law of ``init_params``; the
    normalised paths c_L^{-1} sum_{i<k} A^{(L)}_i = B_{k/L} agree exactly (to round-off) at the
    shared times, and the raw cumulative sums scale by c_{2L}/c_L = sqrt 2 s_{2L}/s_L: 1 for
    ``brownian`` (s_L^2 ~ 1/L: raw sums exact AND law exact), 2^{-1/2} for ``xavier-depth``
    (s_L ~ 1/L), sqrt 2 for ``xavier`` and ``iid`` (s_L constant). With delta_L absorbed, the raw
    paths sum_{i<k} delta_L A^{(L)}_i are exactly nested whenever delta_L c_L does not depend on L,
    e.g. ``iid`` or ``xavier`` with delta = L^{-1/2} (Depth-muP).
  * ``"path"``: c_L = sqrt(L0) s_{L0} at every depth (L0 = ``base_depth``). The raw cumulative sums
    sum_{i<k} A^{(L)}_i agree exactly at the shared times; the entries are i.i.d.
    N(0, s_{L0}^2 L0/L), the law of ``init_params`` only for ``brownian`` (and at L = L0).

  For an init whose variance does not scale like 1/L both properties cannot hold at once: exact
  raw sums force Var A^{(2L)} = Var A^{(L)}/2, i.e. s_L^2 ~ 1/L.

Every depth of a ladder is computable on its own: with (kA, kb, kd) = split(key, 3) as in
``init_params``, the level-0 normals are ``init_params``'s draw at depth L0 (so depth L0 IS
``init_params(key, L0, ...)`` for every init and delta mode) and level i refines A's and b's
normals together (one draw of E for both, side by side) with the key ``fold_in(kA, i)``.

**delta**: shared, or any delta with a ``branch_exponent`` a: as ``init_params`` at depth L
(1/L or L^{-a}; deterministic). Per-layer without a branch exponent (``init_params``: delta_k ~
N(0, 1/L^2) i.i.d.): drawn as ``init_params`` at L0, then refined as a step function,
delta^{(2L)}_{2k} = delta^{(2L)}_{2k+1} = delta^{(L)}_k / 2, so L delta^{(L)}_{[Lt]} is the same step
function of t at every depth; the pair sums give back delta^{(L)} exactly (halving is exact in
binary floating point) and the sums sum_{i<k} delta_i agree to round-off. Each delta_k has the
marginal law N(0, 1/L^2) of ``init_params``, but the L/L0 layers of one base cell share one value.

**Distances** between depths L and 2L (one network each; ``jax.vmap`` over seeds):
:func:`weight_function_distance` (Hypothesis 1, SP eq. 5), :func:`path_distance` (Hypothesis 2,
SP eqs. 6-7), :func:`richardson_extrapolation`, and :func:`rate_fit` / :func:`convergence_verdict`
for the rate at which they vanish over a ladder.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from resnet_limits.limits.networks import coarsen_increments
from resnet_limits.models import (
    DELTA_MODES,
    INITS,
    ResNetParams,
    _initial_delta,
    init_scales,
    layer_weights,
)
from resnet_limits.scaling.roughness import cumulative_path

__all__ = [
    "CONVERGENCE_VERDICTS",
    "NESTINGS",
    "RateFit",
    "at_shared_times",
    "coarsen",
    "coarsen_nested",
    "convergence_verdict",
    "ladder_level",
    "nested_initial_params",
    "nested_ladder",
    "pair_means",
    "pair_sums",
    "path_distance",
    "path_scales",
    "rate_fit",
    "refine_standard_normals",
    "richardson_extrapolation",
    "weight_function_distance",
    "weight_path",
]

#: How the Gaussian inits are nested (module docstring): each depth's own law, or exact raw paths.
NESTINGS = ("law", "path")
#: What :func:`convergence_verdict` says.
CONVERGENCE_VERDICTS = ("converges", "does not converge", "inconclusive")

_SQRT_HALF = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------------------
# Nested initial weights
# --------------------------------------------------------------------------------------


def ladder_level(depth: int, base_depth: int) -> int:
    """j with ``depth`` = ``base_depth`` 2^j; ``ValueError`` when there is none."""
    if base_depth < 1:
        raise ValueError(f"base depth must be >= 1, got {base_depth}")
    ratio, rest = divmod(depth, base_depth)
    if depth < base_depth or rest or ratio & (ratio - 1):
        raise ValueError(f"depth {depth} is not base depth {base_depth} times a power of two")
    return ratio.bit_length() - 1


@jax.jit
def refine_standard_normals(key: jax.Array, N: jax.Array) -> jax.Array:
    """One Brownian-bridge refinement (Levy's construction) in standard units: (n, ...) -> (2n, ...).

    N_k = sqrt(L) (B_{(k+1)/L} - B_{k/L}) are i.i.d. N(0, 1); with E_k ~ N(0, 1) from ``key``,
    N'_{2k} = (N_k + E_k)/sqrt 2 and N'_{2k+1} = (N_k - E_k)/sqrt 2 are i.i.d. N(0, 1) (uncorrelated
    Gaussians of variance 1) and N'_{2k} + N'_{2k+1} = sqrt 2 N_k: the increments of the same B on
    the grid 1/(2L), in the units sqrt(2L) (module docstring).
    """
    E = jax.random.normal(key, N.shape, N.dtype)
    fine = jnp.stack([(N + E) * _SQRT_HALF, (N - E) * _SQRT_HALF], axis=1)
    return fine.reshape((2 * N.shape[0],) + N.shape[1:])


def _nested_normals(kA: jax.Array, kb: jax.Array, base_depth: int, width: int, level: int, dtype,
                    ) -> tuple[jax.Array, jax.Array]:
    """Standard normals (L, d, d), (L, d) of A and b at ``level`` j: level 0 is ``init_params``'s
    draw at L0 from ``kA``, ``kb``; level i refines A's and b's side by side (flattened, one draw)
    with the key fold_in(kA, i)."""
    L0, d = base_depth, width
    N = jnp.concatenate([jax.random.normal(kA, (L0, d, d), dtype).reshape(L0, d * d),
                         jax.random.normal(kb, (L0, d), dtype)], axis=1)
    for i in range(1, level + 1):
        N = refine_standard_normals(jax.random.fold_in(kA, i), N)
    return N[:, : d * d].reshape(-1, d, d), N[:, d * d:]


def _check_nesting(init: str, nesting: str) -> None:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    if nesting not in NESTINGS:
        raise ValueError(f"unknown nesting {nesting!r}; choose from {', '.join(NESTINGS)}")


def _entry_scales(depth: int, width: int, init: str, init_scale: float, base_depth: int,
                  nesting: str) -> tuple[float, float]:
    """Standard deviations of A's and b's entries at ``depth`` in a Gaussian ladder: s_L (``law``),
    s_{L0} sqrt(L0/L) (``path``)."""
    if nesting == "law":
        return init_scales(depth, width, init, init_scale)
    sA, sb = init_scales(base_depth, width, init, init_scale)
    r = math.sqrt(base_depth / depth)
    return sA * r, sb * r


def path_scales(depth: int, width: int, *, init: str = "xavier-depth", init_scale: float = 0.01,
                base_depth: Optional[int] = None, nesting: str = "law") -> tuple[float, float]:
    """(c_A, c_b): the scales c_L with A^{(L)}_k = c_L (B_{(k+1)/L} - B_{k/L}) in a Gaussian ladder
    (module docstring): sqrt(L) s_L (``law``) or sqrt(L0) s_{L0} (``path``, which needs
    ``base_depth`` L0). c_L^{-1} sum_{i<k} A_i is the same standard Brownian motion at every depth."""
    _check_nesting(init, nesting)
    if init == "smooth":
        raise ValueError("the smooth init is nested as a function of t, not as a Brownian path")
    if nesting == "path" and base_depth is None:
        raise ValueError("the path nesting needs the base depth L0")
    sA, sb = _entry_scales(depth, width, init, init_scale, base_depth, nesting)
    return math.sqrt(depth) * sA, math.sqrt(depth) * sb


def _nested_delta(kd: jax.Array, depth: int, base_depth: int, delta_mode: str,
                  branch_exponent: Optional[float], dtype) -> Optional[jax.Array]:
    """delta of the ladder (module docstring): ``init_params``'s at depth L when deterministic, else
    the base depth's draw refined as a step function (each value halved 2^j-fold, repeated)."""
    if delta_mode == "per-layer" and branch_exponent is None:
        repeats = depth // base_depth
        base = _initial_delta(kd, base_depth, delta_mode, branch_exponent, dtype)
        return jnp.repeat(base, repeats) / repeats
    return _initial_delta(kd, depth, delta_mode, branch_exponent, dtype)


def nested_initial_params(
    key: jax.Array,
    depth: int,
    width: int,
    *,
    base_depth: int,
    init: str = "xavier-depth",
    init_scale: float = 0.01,
    delta_mode: str = "shared",
    branch_exponent: Optional[float] = None,
    nesting: str = "law",
    dtype=jnp.float32,
) -> ResNetParams:
    """Initial weights of depth L = L0 2^j (L0 = ``base_depth``) in a nested ladder (SP eq. 1).

    Module docstring for the construction and the exact property of each init: ``smooth`` samples
    the same smooth function of t = k/L; the Gaussian inits refine depth L0's draw j times by
    Brownian bridges (``nesting``: each depth's own law, or exact raw cumulative sums; unused by
    ``smooth``); delta as ``init_params`` or a refined step function. Deterministic in (``key``, L0, j); depth L0 equals
    ``init_params(key, L0, ...)``, so ``fold_in(key, 0)`` gives the base depth of
    :func:`~resnet_limits.training.initial_params`. Arguments as ``init_params`` (``init_scale`` is
    its ``scale``).
    """
    _check_nesting(init, nesting)
    if delta_mode not in DELTA_MODES:
        raise ValueError(f"unknown delta mode {delta_mode!r}; choose from {DELTA_MODES}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    level = ladder_level(depth, base_depth)
    L, L0, d = depth, base_depth, width
    kA, kb, kd = jax.random.split(key, 3)  # as init_params
    delta = _nested_delta(kd, L, L0, delta_mode, branch_exponent, dtype)
    if init == "smooth":
        sA, sb = init_scales(L, d, init, init_scale)
        A, b = layer_weights(kA, kb, jnp.arange(L, dtype=dtype) / L, d, sA, sb, smooth=True, dtype=dtype)
        return ResNetParams(A, b, delta)
    sA, sb = _entry_scales(L, d, init, init_scale, L0, nesting)
    NA, Nb = _nested_normals(kA, kb, L0, d, level, dtype)
    return ResNetParams(sA * NA, sb * Nb, delta)


def nested_ladder(key: jax.Array, base_depth: int, n_depths: int, width: int, **kwargs) -> list[ResNetParams]:
    """The initial weights of depths L0, 2 L0, ..., L0 2^{n-1} of one ladder (``kwargs`` as
    :func:`nested_initial_params`); element j equals ``nested_initial_params(key, L0 2^j, ...)``."""
    return [nested_initial_params(key, base_depth * 2 ** j, width, base_depth=base_depth, **kwargs)
            for j in range(n_depths)]


# --------------------------------------------------------------------------------------
# From depth 2L to depth L
# --------------------------------------------------------------------------------------


def pair_sums(T: jax.Array) -> jax.Array:
    """T_{2k} + T_{2k+1}: (2L, ...) -> (L, ...), the fine layers of each coarse cell summed."""
    if T.shape[0] % 2:
        raise ValueError(f"an even number of layers is needed, got {T.shape[0]}")
    return coarsen_increments(T, T.shape[0] // 2)


def pair_means(T: jax.Array) -> jax.Array:
    """(T_{2k} + T_{2k+1}) / 2: (2L, ...) -> (L, ...)."""
    return 0.5 * pair_sums(T)


def at_shared_times(fine: jax.Array, coarse: jax.Array) -> jax.Array:
    """The values of a depth-2L quantity at the times of depth L's grid, shaped like ``coarse``.

    Layer grids (2L values at j/(2L) against L at k/L) and knot grids (2L + 1 against L + 1, e.g.
    paths) pair the fine index 2k with the coarse index k (the time k/L); a quantity with as many
    values as ``coarse`` (an output, a scalar) is returned as is.
    """
    if fine.shape == coarse.shape:
        return fine
    n = coarse.shape[0] if coarse.ndim else 0
    if coarse.ndim and fine.shape[1:] == coarse.shape[1:] and fine.shape[0] in (2 * n, 2 * n - 1):
        return fine[::2]
    raise ValueError(f"shapes {fine.shape} (depth 2L) and {coarse.shape} (depth L) share no grid")


def coarsen(params: ResNetParams, how: str = "sum", factor: float = 1.0) -> ResNetParams:
    """A depth-L network from a depth-2L one: A_k, b_k = ``factor`` times the pair sums
    (``"sum"``), pair means (``"mean"``) or the fine layer 2k at the shared time k/L (``"sample"``).

    delta: per-layer deltas summed in pairs, a shared delta doubled, so that the depth-time
    sum_k delta_k is kept (the exact inverse of a ladder's per-layer refinement and of delta = 1/L);
    set another with ``._replace(delta=...)``.
    """
    pick = {"sum": pair_sums, "mean": pair_means, "sample": lambda T: T[::2]}
    if how not in pick:
        raise ValueError(f"unknown coarsening {how!r}; choose from {', '.join(pick)}")
    delta = params.delta
    if delta is not None:
        delta = pair_sums(delta) if delta.ndim else 2.0 * delta
    return ResNetParams(factor * pick[how](params.A), factor * pick[how](params.b), delta)


def coarsen_nested(
    params: ResNetParams,
    *,
    init: str = "xavier-depth",
    init_scale: float = 0.01,
    delta_mode: str = "shared",
    branch_exponent: Optional[float] = None,
    nesting: str = "law",
) -> ResNetParams:
    """Depth L's initial weights of a ladder from depth 2L's (the settings of
    :func:`nested_initial_params`), exactly up to round-off: the Gaussian inits' pair sums times
    c_L/c_{2L} (:func:`path_scales`), the smooth init's layers 2k, delta summed in pairs (refined
    per-layer) or recomputed (deterministic). The base depth is not needed."""
    _check_nesting(init, nesting)
    L, d = params.A.shape[0] // 2, params.A.shape[-1]
    if init == "smooth":
        A, b = params.A[::2], params.b[::2]
    else:
        rA = rb = 1.0  # path: c_L does not depend on L
        if nesting == "law":
            (cA, cb), (fA, fb) = (path_scales(n, d, init=init, init_scale=init_scale) for n in (L, 2 * L))
            rA, rb = cA / fA, cb / fb
        A, b = rA * pair_sums(params.A), rb * pair_sums(params.b)
    if delta_mode == "per-layer" and branch_exponent is None:
        delta = pair_sums(params.delta)
    else:
        delta = _initial_delta(None, L, delta_mode, branch_exponent, params.A.dtype)
    return ResNetParams(A, b, delta)


# --------------------------------------------------------------------------------------
# Distances between depths L and 2L
# --------------------------------------------------------------------------------------


def _entry_norms(T: jax.Array) -> jax.Array:
    """Frobenius norm of every T_k over the entry axes (all but the first): (n, ...) -> (n,)."""
    return jnp.sqrt(jnp.sum(T * T, axis=tuple(range(1, T.ndim))))


def _check_pair(T_L: jax.Array, T_2L: jax.Array) -> None:
    if T_2L.shape != (2 * T_L.shape[0],) + T_L.shape[1:]:
        raise ValueError(f"depth-2L weights {T_2L.shape} do not refine depth-L weights {T_L.shape}")


@jax.jit
def weight_path(T: jax.Array, beta: float = 1.0) -> jax.Array:
    """The weights' path P_{k/L} = L^{beta-1} sum_{i<k} T_i, k = 0..L: (L, ...) -> (L + 1, ...)
    (SP eq. 7; beta = 1: the raw cumulative sums, Hypothesis 2's W^A plus the trend's integral)."""
    L = T.shape[0]
    return float(L) ** (beta - 1.0) * cumulative_path(T)


@functools.partial(jax.jit, static_argnames="pairing")
def weight_function_distance(T_L: jax.Array, T_2L: jax.Array, beta: float = 0.0, *,
                             pairing: str = "sample") -> jax.Array:
    """max_k ||(2L)^beta F_k - L^beta T^{(L)}_k||_F over the shared times t = k/L (k = 0..L-1),
    F_k = T^{(2L)}_{2k} (or the pair mean, below), each depth scaled by its own L^beta as in
    Hypothesis 1 (SP eq. 5: L^beta A_{[Ls]} -> Abar_s).

    ``pairing``: ``"sample"`` takes the fine layer 2k (it sits at 2k/(2L) = k/L, as layer k at k/L);
    ``"mean"`` the mean of the fine layers 2k and 2k + 1 (the two layers of the coarse cell
    [k/L, (k+1)/L)). ``T_L``: (L, ...), ``T_2L``: (2L, ...), one network (vmap over seeds).
    """
    _check_pair(T_L, T_2L)
    if pairing not in ("sample", "mean"):
        raise ValueError(f"unknown pairing {pairing!r}; choose from sample, mean")
    L = T_L.shape[0]
    fine = T_2L[::2] if pairing == "sample" else pair_means(T_2L)
    return jnp.max(_entry_norms(float(2 * L) ** beta * fine - float(L) ** beta * T_L))


@jax.jit
def path_distance(T_L: jax.Array, T_2L: jax.Array, beta: float = 1.0) -> jax.Array:
    """max_k ||P^{(2L)}_{2k/(2L)} - P^{(L)}_{k/L}||_F over k = 0..L of the paths of
    :func:`weight_path` (Hypothesis 2, SP eqs. 6-7: beta = 1, the raw cumulative sums; beta < 1, the
    rescaled sums of SP eq. 7). ``T_L``: (L, ...), ``T_2L``: (2L, ...), one network."""
    _check_pair(T_L, T_2L)
    return jnp.max(_entry_norms(weight_path(T_2L, beta)[::2] - weight_path(T_L, beta)))


def richardson_extrapolation(f_L: jax.Array, f_2L: jax.Array, rate: float) -> jax.Array:
    """(2^r f_{2L} - f_L) / (2^r - 1) on the common grid (:func:`at_shared_times`): the limit f
    when f_L = f + c L^{-r}, exactly; an estimate of the limiting weights or outputs otherwise."""
    if isinstance(rate, (int, float)) and not rate > 0:
        raise ValueError(f"the rate must be > 0, got {rate}")
    g = 2.0 ** rate
    return (g * at_shared_times(f_2L, f_L) - f_L) / (g - 1.0)


# --------------------------------------------------------------------------------------
# The rate of convergence over a ladder
# --------------------------------------------------------------------------------------


class RateFit(NamedTuple):
    """distance ~ C_s L^{-rate}: the least-squares rate and its bootstrap interval over seeds
    (:func:`rate_fit`); ``n_points``: the finite, positive distances used."""

    rate: jax.Array
    low: jax.Array
    high: jax.Array
    n_points: jax.Array


def _within_seed_slope(x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    """Least-squares common slope of y (S, P) on x (P,) with one intercept per seed (row), weights
    w (S, P): sum w (x - xbar_s)(y - ybar_s) / sum w (x - xbar_s)^2 with the seeds' weighted means;
    nan when x does not vary within any seed."""
    sw = jnp.sum(w, axis=1, keepdims=True)
    safe = jnp.where(sw > 0, sw, 1.0)
    xc = x - jnp.sum(w * x, axis=1, keepdims=True) / safe
    yc = y - jnp.sum(w * y, axis=1, keepdims=True) / safe
    sxx = jnp.sum(w * xc * xc)
    return jnp.where(sxx > 0, jnp.sum(w * xc * yc) / jnp.where(sxx > 0, sxx, 1.0), jnp.nan)


@functools.partial(jax.jit, static_argnames="n_boot")
def rate_fit(depths: jax.Array, distances: jax.Array, key: jax.Array, *, n_boot: int = 1000,
             level: float = 0.95) -> RateFit:
    """The rate r of distance ~ C L^{-r} over a ladder, with a bootstrap interval over seeds.

    ``depths``: (P,) the depth L of each pair (L, 2L); ``distances``: (S, P), one row per seed (e.g.
    :func:`path_distance`). r = -slope of log distance on log L by least squares over all seeds with
    one intercept per seed (log C_s: seeds may differ by a constant factor) and a common slope;
    non-finite or non-positive distances (e.g. diverged seeds) are left out. The interval: the
    (1 - level)/2 and (1 + level)/2 quantiles (2.5%, 97.5% by default) of r over ``n_boot`` resamples
    of the seeds with replacement, drawn from ``key``. jit-able with ``n_boot`` static.
    """
    distances = jnp.asarray(distances)
    x = jnp.log(jnp.asarray(depths, distances.dtype))
    ok = jnp.isfinite(distances) & (distances > 0)
    y = jnp.where(ok, jnp.log(jnp.where(ok, distances, 1.0)), 0.0)
    valid = ok.astype(distances.dtype)
    S = distances.shape[0]
    counts = jax.vmap(lambda i: jnp.bincount(i, length=S))(jax.random.randint(key, (n_boot, S), 0, S))
    boots = -jax.vmap(lambda c: _within_seed_slope(x, y, c[:, None].astype(y.dtype) * valid))(counts)
    low, high = jnp.nanquantile(boots, jnp.array([(1.0 - level) / 2, (1.0 + level) / 2]))
    return RateFit(-_within_seed_slope(x, y, valid), low, high, jnp.sum(ok))


def convergence_verdict(fit: RateFit, threshold: float = 0.1) -> str:
    """The rule read off a :class:`RateFit`: ``"converges"`` (at rate L^{-r}) when the whole interval
    lies above ``threshold`` (low > threshold), ``"does not converge"`` (the distance is flat, or
    grows) when the whole interval lies below it (high < threshold), ``"inconclusive"`` otherwise
    (or when the interval is nan). The default 0.1: over a ladder of 6 depths (a factor 32) a rate
    below 0.1 shrinks the distance by less than 2^{-1/2}, too little to call convergence."""
    low, high = float(fit.low), float(fit.high)
    if low > threshold:
        return "converges"
    if high < threshold:
        return "does not converge"
    return "inconclusive"
