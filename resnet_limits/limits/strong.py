"""Strong convergence of deep ResNets to their limits, one random path at a time (SP §4, Thms 4.3, 4.4).

For one PRNG key, :func:`sde_strong_errors` draws a fine Brownian path (SP Remark 2.1) and a random
smooth trend, builds the depth-L networks on that path (weights = the path's increments over blocks
of 1/L, plus the drift ``Abar(t_k)/L``: alpha = 0, beta = 1) and returns the squared sup error
``sup_k |h_k - H_{k/L}|^2`` against the Ito SDE (SP eq. 15) solved on the *same* path, for every
depth. :func:`ode_strong_errors` does the same for the deterministic Regime-1 networks
``A_k = L^{-beta} Abar(k/L)``, ``delta = L^{-alpha}`` against the linear ODE (SP eq. 14) and the
neural ODE (SP eq. 2). :func:`regime2_strong_errors` adds the one remaining limit, AA Thm 2 (SP
Thm 4.4, second case): on the *same* fine path and trend as :func:`sde_strong_errors`, the Scaling
regime 2 networks ``A_k = L^{-beta} Abar(k/L) + W^A_{(k+1)/L} - W^A_{k/L}``, ``delta = L^{-alpha}``,
``0 < alpha < 1``, ``beta = 1 - alpha``, against the linear ODE (SP eq. 16), which has lost the
noise. All are pure and ``jax.vmap``-able over keys; :func:`map_paths` runs them over many keys in
chunks and :func:`error_rate` summarises the per-path errors (mean, standard error, log-log slope
against L).

Case names and the rate expected for ``E sup|h - H|^2``:

==============================  =====================================================  ========
case                            network -> limit                                       slope
==============================  =====================================================  ========
sde-tanh                        alpha=0, beta=1, tanh -> SDE eq. 15 (sigma''(0)=0)      -1
sde-csoftplus-ito               csoftplus (sigma''(0)=1/2) -> eq. 15, exact Q           -1
sde-csoftplus-ito-estimated-q   same, Q estimated from the path's increments           -1
sde-csoftplus-no-correction     csoftplus -> eq. 15 without the Q term                  0 (stall)
linear-ode-tanh-alpha{a}        alpha=a, beta=1-a, tanh -> eq. 14                       -min(2, 4 beta)
linear-ode-csoftplus-alpha{a}   alpha=a, beta=1-a, csoftplus -> eq. 14                  -min(2, 2 beta)
neural-ode-tanh                 alpha=1, beta=0, tanh -> eq. 2                           -2
regime2-linear-ode-             alpha=a, beta=1-a, weights + Brownian increments,       -min(2, 2 alpha)
identity-alpha{a}               identity (the linear network) -> eq. 16
regime2-linear-ode-tanh-        same, tanh -> eq. 16                                    -min(2, 2 alpha,
alpha{a}                                                                                4 beta)
regime2-linear-ode-csoftplus-   same, csoftplus -> eq. 16 (no Ito correction)           -min(2, 2 alpha,
alpha{a}                                                                                2 beta)
==============================  =====================================================  ========

(SDE: strong order 1/2 of the nonlinear Euler scheme; linear ODE: the step error
sigma(L^{-beta} m) - L^{-beta} m is L^{-1-beta} sigma''(0)/2 m^2 or L^{-1-2 beta} m^3/3 for tanh,
summed over L steps; neural ODE: Euler, O(1/L). Regime 2 adds the noise that the limit loses,
O(L^{-alpha}) in the sup norm: see :func:`linear_ode_rate_terms`.)
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits.limits.networks import brownian_increments, brownian_network
from resnet_limits.limits.paths import FunctionPath, PiecewiseLinearPath, uniform_grid
from resnet_limits.limits.qv import QuadraticVariation, brownian_qv, estimate_qv
from resnet_limits.limits.solvers import solve_linear_ode, solve_neural_ode, solve_sde
from resnet_limits.models import ResNetParams, get_activation, layer
from resnet_limits.scaling import LogLogFit, loglog_fit

__all__ = [
    "REGIME2_ACTIVATIONS",
    "SDE_CASES",
    "ErrorRate",
    "FinePath",
    "error_rate",
    "fine_path",
    "forward_variants",
    "linear_case_name",
    "linear_ode_expected_slope",
    "linear_ode_rate_terms",
    "map_paths",
    "ode_strong_errors",
    "random_smooth_trend",
    "random_unit_vector",
    "regime2_strong_errors",
    "sde_strong_errors",
    "sup_sq_error",
]

#: The four SDE cases of :func:`sde_strong_errors`, in the order of its result.
SDE_CASES = ("sde-tanh", "sde-csoftplus-ito", "sde-csoftplus-ito-estimated-q", "sde-csoftplus-no-correction")

#: Activations of the Regime-2 linear-ODE cases of :func:`regime2_strong_errors`: the linear
#: network itself, sigma''(0) = 0 (tanh), sigma''(0) = 1/2 (csoftplus).
REGIME2_ACTIVATIONS = ("identity", "tanh", "csoftplus")

# Order in beta (sup norm) of the Taylor remainder sigma(L^{-beta} m) - L^{-beta} m summed over the
# L layers: L^{-beta} if sigma''(0) != 0, L^{-2 beta} for tanh (sigma''(0) = 0), none for the identity.
_TAYLOR_ORDER = {"identity": None, "tanh": 2.0, "csoftplus": 1.0}


def sup_sq_error(a: jax.Array, b: jax.Array) -> jax.Array:
    """sup_k ||a_k - b_k||^2 over the leading axis (squared Euclidean / Frobenius norm of the rest)."""
    return jnp.max(jnp.sum((a - b) ** 2, axis=tuple(range(1, a.ndim))))


def random_smooth_trend(key: jax.Array, d: int, scale: float) -> tuple[Callable, Callable]:
    """A random smooth trend: Abar(t) = C0 + sin(2 pi t) C1, bbar(t) = cos(2 pi t) v, entries
    N(0, scale^2/d); returned as the callables ``(Abar, bbar)`` of t."""
    k0, k1, k2 = jax.random.split(key, 3)
    s = scale / math.sqrt(d)
    C0 = s * jax.random.normal(k0, (d, d))
    C1 = s * jax.random.normal(k1, (d, d))
    v = s * jax.random.normal(k2, (d,))
    Afn = lambda t: C0 + jnp.sin(2 * jnp.pi * t) * C1  # noqa: E731
    bfn = lambda t: jnp.cos(2 * jnp.pi * t) * v  # noqa: E731
    return Afn, bfn


def random_unit_vector(key: jax.Array, d: int) -> jax.Array:
    """A uniformly random point of the unit sphere of R^d (the network input)."""
    x = jax.random.normal(key, (d,))
    return x / jnp.linalg.norm(x)


class FinePath(NamedTuple):
    """One sample of the SDE study: input ``x``, trend paths ``Abar``/``bbar`` (FunctionPath), the
    fine increments ``dW_A`` (n, d, d), ``dW_b`` (n, d) of SP Remark 2.1 and their paths."""

    x: jax.Array
    Abar: FunctionPath
    bbar: FunctionPath
    dW_A: jax.Array
    dW_b: jax.Array
    W_A: PiecewiseLinearPath
    W_b: PiecewiseLinearPath


def fine_path(key: jax.Array, *, width: int, n_fine: int, trend_scale: float) -> FinePath:
    """Draw the input, the smooth trend and the fine Brownian path of one SDE sample."""
    kx, kw, kt = jax.random.split(key, 3)
    x = random_unit_vector(kx, width)
    Afn, bfn = random_smooth_trend(kt, width, trend_scale)
    dWA, dWb = brownian_increments(kw, n_fine, width)
    return FinePath(x, FunctionPath(Afn), FunctionPath(bfn), dWA, dWb,
                    PiecewiseLinearPath.from_increments(dWA), PiecewiseLinearPath.from_increments(dWb))


def forward_variants(nets: Sequence[ResNetParams], deltas: jax.Array, x: jax.Array,
                     flags: jax.Array, identity: Optional[jax.Array] = None) -> jax.Array:
    """Hidden states of several same-depth networks in one vmapped scan (SP eq. 1).

    ``flags`` 1 -> tanh, 0 -> csoftplus (one compiled scan instead of one per activation);
    ``identity`` (optional, one per network): 1 -> the identity instead, i.e. the linear network
    ``h + delta (A h + b)``; ``deltas`` shared delta of each network. Returns (V, L+1, d).
    """
    A = jnp.stack([n.A for n in nets])
    b = jnp.stack([n.b for n in nets])
    tanh, csp = get_activation("tanh").fn, get_activation("csoftplus").fn

    def run(A, b, delta, f, lin):
        def sigma(z):
            s = f * tanh(z) + (1.0 - f) * csp(z)
            return s if lin is None else lin * z + (1.0 - lin) * s

        def step(h, p):
            h = layer(h, p[0], p[1], delta, sigma)
            return h, h

        _, hs = jax.lax.scan(step, x, (A, b))
        return jnp.concatenate([x[None], hs])

    return jax.vmap(run)(A, b, deltas, flags, identity)


def sde_strong_errors(key: jax.Array, *, width: int, n_fine: int, depths: Sequence[int], qv_blocks: int,
                      trend_scale: float = 1.0) -> dict[str, jax.Array]:
    """sup_k |h_k - H_{k/L}|^2 for each depth L and each case of :data:`SDE_CASES` on one fine path.

    The networks are SP Remark 2.1's on the path (alpha = 0, beta = 1, drift ``Abar(t_k)/L``); the
    limits (SP eq. 15) are solved on the same path in one vmapped solve: without the Q term (the tanh
    limit, and csoftplus without the correction), with Q in closed form (SP Remark 2.1:
    Q_i = |x|^2/d^2 + 1/d), and with Q estimated from the increments (``qv_blocks`` block averages).
    The largest depth must divide ``n_fine``. Returns ``{case: (len(depths),)}``.
    """
    p = fine_path(key, width=width, n_fine=n_fine, trend_scale=trend_scale)
    L_max = max(depths)
    ts = uniform_grid(L_max)
    d2 = get_activation("csoftplus").d2_at_0
    exact = brownian_qv(qv_blocks, width)
    est = estimate_qv(p.dW_A, p.dW_b, blocks=qv_blocks)
    S = jnp.stack([exact.S, exact.S, est.S])
    d2s = jnp.asarray([0.0, d2, d2])
    H0, Hq, Hqe = jax.vmap(
        lambda c, S: solve_sde(p.x, p.W_A, p.W_b, ts, d2_at_0=c, Q=QuadraticVariation(S), Abar=p.Abar, bbar=p.bbar)
    )(d2s, S)
    errs: dict[str, list] = {k: [] for k in SDE_CASES}
    for L in depths:
        net = brownian_network(p.dW_A, p.dW_b, L, Abar=p.Abar, bbar=p.bbar)
        ht, hs = forward_variants([net, net], jnp.ones(2), p.x, jnp.asarray([1.0, 0.0]))  # tanh, csoftplus
        on_grid = slice(None, None, L_max // L)
        errs["sde-tanh"].append(sup_sq_error(ht, H0[on_grid]))
        errs["sde-csoftplus-ito"].append(sup_sq_error(hs, Hq[on_grid]))
        errs["sde-csoftplus-ito-estimated-q"].append(sup_sq_error(hs, Hqe[on_grid]))
        errs["sde-csoftplus-no-correction"].append(sup_sq_error(hs, H0[on_grid]))
    return {k: jnp.stack(v) for k, v in errs.items()}


def linear_case_name(activation: str, alpha: float, *, regime: int = 1) -> str:
    """Name of a linear-ODE case: ``linear-ode-tanh-alpha0.5`` (Scaling regime 1),
    ``regime2-linear-ode-tanh-alpha0.5`` (regime 2)."""
    return ("" if regime == 1 else f"regime{regime}-") + f"linear-ode-{activation}-alpha{alpha:g}"


def linear_ode_rate_terms(activation: str, alpha: float, *, noise: bool = False) -> dict[str, float]:
    """The slope in L of ``E sup_k |h_k - H_{k/L}|^2`` due to each error term of the network with
    ``delta = L^{-alpha}``, ``beta = 1 - alpha``, ``0 < alpha < 1``, against the linear ODE
    dH/dt = Abar_t H + bbar_t (SP eq. 14 / 16; AA Thms 1, 2). The papers prove convergence without
    a rate; these are the orders of the terms of their expansion (SP eq. 13, App. E; sup norm,
    doubled for the squared error):

    - the Euler step of the ODE (D_3): O(1/L) -> -2;
    - the Taylor remainder of sigma at the pre-activation L^{-beta} m: O(L^{-beta}) when
      sigma''(0) != 0 (csoftplus), O(L^{-2 beta}) for tanh (sigma''(0) = 0), none for the identity;
    - ``noise`` (Scaling regime 2, AA Thm 2): the Brownian part of the weights. Every layer adds
      L^{-alpha} (dW^A_k h_k + dW^b_k) (D_1), martingale increments whose sum is O(L^{-alpha})
      uniformly in k (Doob), and, when sigma''(0) != 0, the Ito drift
      D_2 = 1/2 L^{-alpha} sigma''(0) Q(t_k, h_k) / L, which sums to O(L^{-alpha}). Both vanish
      because alpha > 0: that is how the limit loses the noise, and why it has no Ito correction
      (alpha = 0 keeps both: the SDE, SP eq. 15). -> -2 alpha.

    Returns ``{term: slope}``.
    """
    terms = {"Euler step 1/L": -2.0}
    order = _TAYLOR_ORDER[activation]
    if order is not None:
        power = "beta" if order == 1 else f"{order:g}beta"
        terms[f"{activation} Taylor remainder L^-{power}"] = -2 * order * (1.0 - alpha)
    if noise:
        terms["noise lost by the limit L^-alpha"] = -2 * alpha
    return terms


def linear_ode_expected_slope(activation: str, alpha: float, *, noise: bool = False) -> float:
    """The slope in L of ``E sup_k |h_k - H_{k/L}|^2`` expected for a linear-ODE case: the slowest
    of :func:`linear_ode_rate_terms`, e.g. ``-min(2, 4 beta)`` for tanh in Scaling regime 1 and
    ``-2 min(alpha, beta)`` for csoftplus in regime 2."""
    return max(linear_ode_rate_terms(activation, alpha, noise=noise).values())


def _regime1_networks(Ak: jax.Array, bk: jax.Array, L: int, linear_alphas: Sequence[float]):
    """The depth-L Regime-1 networks of one trend: per alpha a tanh and a csoftplus network with
    A_k = L^{-beta} Abar(k/L), delta = L^{-alpha} (beta = 1 - alpha), then the neural-ODE network
    (alpha = 1). Returns (networks, deltas, activation flags (1 = tanh), case names)."""
    nets, deltas, flags, names = [], [], [], []
    for a in linear_alphas:
        b = 1.0 - a
        for act, f in (("tanh", 1.0), ("csoftplus", 0.0)):
            nets.append(ResNetParams(L**-b * Ak, L**-b * bk, None))
            deltas.append(float(L) ** -a)
            flags.append(f)
            names.append(linear_case_name(act, a))
    nets.append(ResNetParams(Ak, bk, None))
    deltas.append(1.0 / L)
    flags.append(1.0)
    names.append("neural-ode-tanh")
    return nets, jnp.asarray(deltas), jnp.asarray(flags), names


def ode_strong_errors(key: jax.Array, *, width: int, depths: Sequence[int], linear_alphas: Sequence[float],
                      trend_scale: float = 1.0) -> dict[str, jax.Array]:
    """sup_k |h_k - H_{k/L}|^2 of the deterministic Regime-1 networks of one random smooth trend.

    Cases ``linear-ode-<act>-alpha<a>`` (alpha = a, beta = 1 - a, limit: the linear ODE SP eq. 14)
    and ``neural-ode-tanh`` (alpha = 1, beta = 0, limit: the neural ODE SP eq. 2); both limits in one
    vmapped solve (the linear ODE is the "neural ODE with the identity"). Returns
    ``{case: (len(depths),)}``.
    """
    L_max = max(depths)
    kx, kt = jax.random.split(key)
    x = random_unit_vector(kx, width)
    Afn, bfn = random_smooth_trend(kt, width, trend_scale)
    ts = uniform_grid(L_max)
    H_lin, H_neu = jax.vmap(lambda c: solve_neural_ode(
        x, FunctionPath(Afn), FunctionPath(bfn), ts,
        activation=lambda z: c * jnp.tanh(z) + (1.0 - c) * z))(jnp.asarray([0.0, 1.0]))
    errs: dict[str, list] = {}
    for L in depths:
        tk = jnp.arange(L) / L
        nets, deltas, flags, names = _regime1_networks(jax.vmap(Afn)(tk), jax.vmap(bfn)(tk), L, linear_alphas)
        hs = forward_variants(nets, deltas, x, flags)
        for name, h in zip(names, hs):
            H = H_neu if name == "neural-ode-tanh" else H_lin
            errs.setdefault(name, []).append(sup_sq_error(h, H[:: L_max // L]))
    return {k: jnp.stack(v) for k, v in errs.items()}


def regime2_strong_errors(key: jax.Array, *, width: int, n_fine: int, depths: Sequence[int],
                          alphas: Sequence[float], trend_scale: float = 1.0) -> dict[str, jax.Array]:
    """sup_k |h_k - H_{k/L}|^2 of the Scaling regime 2 networks of AA Thm 2 (SP Thm 4.4, ODE case).

    On the fine path of :func:`fine_path` (a key gives the same input, trend and Brownian path as in
    :func:`sde_strong_errors`), for each depth L and each ``alpha`` of ``alphas`` (0 < alpha < 1,
    beta = 1 - alpha): the networks ``h_{k+1} = h_k + L^{-alpha} sigma(A_k h_k + b_k)`` with
    ``A_k = L^{-beta} Abar(t_k) + W^A_{t_{k+1}} - W^A_{t_k}`` and the same for b (SP eq. 10), sigma
    in :data:`REGIME2_ACTIVATIONS`, against the linear ODE ``dH/dt = Abar_t H + bbar_t``, ``H_0 = x``
    (SP eq. 16), which has neither the noise nor an Ito correction (rates:
    :func:`linear_ode_rate_terms` with ``noise=True``). The largest depth must divide
    ``n_fine``. Returns ``{linear_case_name(act, alpha, regime=2): (len(depths),)}``.
    """
    p = fine_path(key, width=width, n_fine=n_fine, trend_scale=trend_scale)
    L_max = max(depths)
    H = solve_linear_ode(p.x, p.Abar, p.bbar, uniform_grid(L_max))
    acts = REGIME2_ACTIVATIONS * len(alphas)
    tanh = jnp.asarray([a == "tanh" for a in acts], H.dtype)
    identity = jnp.asarray([a == "identity" for a in acts], H.dtype)
    names = [linear_case_name(act, a, regime=2) for a in alphas for act in REGIME2_ACTIVATIONS]
    errs: dict[str, list] = {name: [] for name in names}
    for L in depths:
        nets = [brownian_network(p.dW_A, p.dW_b, L, Abar=p.Abar, bbar=p.bbar, beta=1.0 - a) for a in alphas]
        deltas = jnp.repeat(jnp.asarray([float(L) ** -a for a in alphas]), len(REGIME2_ACTIVATIONS))
        hs = forward_variants([n for n in nets for _ in REGIME2_ACTIVATIONS], deltas, p.x, tanh, identity)
        for name, h in zip(names, hs):
            errs[name].append(sup_sq_error(h, H[:: L_max // L]))
    return {k: jnp.stack(v) for k, v in errs.items()}


def map_paths(fn: Callable[[jax.Array], dict], keys: jax.Array, chunk: int,
              on_chunk: Optional[Callable[[int], None]] = None) -> dict[str, np.ndarray]:
    """``jit(vmap(fn))`` over ``keys`` in chunks of ``chunk`` keys (bounded memory); the per-key
    results concatenated as numpy arrays. ``on_chunk(n)`` is called after each chunk of n keys."""
    f = jax.jit(jax.vmap(fn))
    parts = []
    for i in range(0, keys.shape[0], chunk):
        ck = keys[i : i + chunk]
        parts.append(jax.tree_util.tree_map(np.asarray, jax.device_get(f(ck))))
        if on_chunk is not None:
            on_chunk(int(ck.shape[0]))
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


class ErrorRate(NamedTuple):
    """Mean over paths of a per-path error against the depth, and its log-log rate.

    ``mean``/``stderr`` (len(depths),) (standard error of the mean, 0 with a single path);
    ``fit``: log(mean) against log(L) over all depths; ``tail``: the same over the larger half of
    the depths, ``tail_depths``.
    """

    mean: np.ndarray
    stderr: np.ndarray
    fit: LogLogFit
    tail: LogLogFit
    tail_depths: list


def error_rate(depths: Sequence[int], per_path: np.ndarray) -> ErrorRate:
    """:class:`ErrorRate` of per-path errors ``per_path`` (paths, len(depths))."""
    depths = list(depths)
    per_path = np.asarray(per_path)
    m = per_path.mean(axis=0)
    n = per_path.shape[0]
    se = per_path.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(m)
    half = len(depths) // 2
    return ErrorRate(m, se, loglog_fit(depths, m), loglog_fit(depths[half:], m[half:]), depths[half:])
