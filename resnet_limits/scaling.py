"""Scaling analysis of trained weights (SP §2.3, Table 1, eqs. 5-8, Fig. 6; SPEC §2-§3).

Pieces, from arrays up to a whole sweep folder:

- :func:`table1`: the Table-1 quantities (maximum norm, beta-scaled norm of increments,
  cumulative sum norm, root sum of squares) of a stacked tensor, vectorised over any leading
  (seed) axes; :func:`table1_loop` is the plain-loop reference.
- :func:`analysed_tensors`: A, b (or |delta_k| A_k, |delta_k| b_k for ReLU, SP Remark 2.2)
  and |delta| of a :class:`~resnet_limits.models.ResNetParams`.
- :func:`conv_spectral_norm`: operator norm of a (circular) convolution, Sedghi et al. 2019.
- :func:`fit_seeds` / :func:`summarize_exponent` / :func:`fit_exponents`: alpha, beta, nu
  (SP §2.3 steps 1-3) per seed by log-log least squares, then mean +- sd over seeds.
- :func:`rescaled_cumsum`, :func:`trend_integral`, :func:`denoise`, :func:`split_trend_noise`:
  the trend/noise split of SP eqs. 6-7 and the quadratic variation of the noise (SP eq. 8).
- :func:`hypothesis_test`: SP §2.3 steps 1-5 ending in a verdict per tensor.
- :func:`analyze_run` / :func:`format_analysis`: the whole analysis of a sweep folder
  (``resnet-limits analyze RUN_DIR``), writing ``analysis.json`` and figures.

All array work is numpy float64 (the analysis is cheap next to training); the denoised
networks of SP Fig. 6 are evaluated with :func:`resnet_limits.models.forward` in JAX.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from resnet_limits.errors import UsageError

__all__ = [
    "LogLogFit",
    "PAPER_VALUES",
    "THRESHOLDS",
    "analysed_tensors",
    "analyze_run",
    "analyze_tensor_family",
    "conv_singular_values",
    "conv_spectral_norm",
    "denoise",
    "fit_exponents",
    "fit_seeds",
    "format_analysis",
    "frobenius",
    "hypothesis_test",
    "loglog_fit",
    "rescaled_cumsum",
    "split_trend_noise",
    "summarize_exponent",
    "table1",
    "table1_loop",
    "own_grid",
    "own_trend",
    "pooled_trend",
    "trend_integral",
]


class LogLogFit(NamedTuple):
    """Least-squares line log y = slope * log x + intercept, with the slope's standard error."""

    slope: float
    intercept: float
    stderr: float
    n: int


def loglog_fit(x, y) -> LogLogFit:
    """Fit log(y) = slope log(x) + c by least squares; non-finite or non-positive points are dropped.

    ``stderr`` is the usual OLS standard error of the slope (nan with fewer than 3 points).
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    if n < 2:
        return LogLogFit(float("nan"), float("nan"), float("nan"), n)
    X = np.stack([lx, np.ones_like(lx)], axis=1)
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    slope, intercept = float(coef[0]), float(coef[1])
    if n < 3:
        return LogLogFit(slope, intercept, float("nan"), n)
    resid = ly - X @ coef
    s2 = float(resid @ resid) / (n - 2)
    sxx = float(((lx - lx.mean()) ** 2).sum())
    stderr = float(np.sqrt(s2 / sxx)) if sxx > 0 else float("nan")
    return LogLogFit(slope, intercept, stderr, n)


# --------------------------------------------------------------------- paper values ----

#: Values to compare with (SP §3.1, Table 4, App. B; SPEC §6 for the authors' code).
PAPER_VALUES: dict[str, dict[str, Any]] = {
    "tanh-synthetic": {
        "alpha": 0.73, "alpha_sd": 0.02, "beta": 0.29, "beta_sd": 0.05,
        "verdict_A": "Hypothesis 1", "nu": 0.5,
        "source": "SP Table 4 (eta=.01, B=32, 5 seeds); SP Figs 2-3",
        "authors_code": "Adam, seed 0: L 3-2116 alpha .69+-.01, beta .23 (A) / .28 (b); "
                        "L 3-7583 alpha .61+-.03, beta .18 / .28; "
                        "SGD L 3-9100 alpha -.05+-.02, beta .19 / .49 (SPEC §6)",
    },
    "relu-synthetic": {
        "alpha": None, "beta": 0.8, "verdict_A": "Hypothesis 2",
        "source": "SP Fig. 4 (beta = 0.8 from the cumulative sum norm of |delta|A)",
        "authors_code": "Adam L 3-2116: beta .71 (|delta|A) / .90 (|delta|b) (SPEC §6)",
    },
    "tanh-mnist": {"alpha": 0.7, "beta": 0.2, "verdict_A": "Hypothesis 1", "source": "SP Fig. 2"},
    "relu-mnist": {"alpha": None, "beta": 0.9, "verdict_A": "Hypothesis 2", "source": "SP Fig. 4"},
}

#: Decision thresholds of :func:`hypothesis_test` (our choices; the paper decides by eye).
THRESHOLDS: dict[str, float] = {
    # step 3: the beta-scaled increments vanish if nu > this and nu - 2 stderr > 0
    "nu_vanish": 0.1,
    # step 4: noise is negligible if the per-layer noise/trend ratio sqrt(QV)/RSS(trend) < this
    "noise_negligible": 0.3,
    # step 4: a residual whose increments have lag-1 autocorrelation above this is smooth in k
    # (the trend drifting between finite depths), not diffusive noise
    "noise_smooth_autocorr": 0.5,
    # step 5: the root sum of squares is bounded if its log-log slope is below this
    "rss_bounded_slope": 0.1,
    # sparse regime: the share of the largest layer in the RSS does not vanish with L
    # (slope kappa of max_norm/rss above this; smooth or diffusive weights give -1/2) and the
    # maximum norm does not decay (its decay exponent below the next threshold)
    "sparse_kappa": -0.25,
    "sparse_max_decay": 0.15,
}


# ------------------------------------------------------------------ Table 1 ------------

def frobenius(T, entry_ndim: int) -> np.ndarray:
    """Frobenius norm over the last ``entry_ndim`` axes (absolute value for entry_ndim = 0)."""
    T = np.asarray(T, np.float64)
    if entry_ndim == 0:
        return np.abs(T)
    axes = tuple(range(T.ndim - entry_ndim, T.ndim))
    return np.sqrt(np.sum(T * T, axis=axes))


def table1(T, entry_ndim: int, beta: float = 0.0) -> dict[str, np.ndarray]:
    """Table-1 quantities of SP §2.2 for a stacked tensor, vectorised over leading axes.

    ``T`` has shape (..., L, *entry) with ``entry_ndim`` trailing entry axes (2 for A, 1 for b,
    0 for per-layer delta). Returns arrays of shape (...):

    - ``max_norm``: max_k ||T_k||_F
    - ``max_increment``: max_k ||T_{k+1} - T_k||_F (0 when L = 1)
    - ``increment``: the beta-scaled norm of increments L^beta max_k ||T_{k+1} - T_k||_F
    - ``cumsum_norm``: ||sum_k T_k||_F
    - ``rss``: root sum of squares (sum_k ||T_k||_F^2)^{1/2}
    - ``sq_increments``: sum_k ||T_{k+1} - T_k||_F^2 (the weights' own quadratic variation)
    """
    T = np.asarray(T, np.float64)
    ax = T.ndim - 1 - entry_ndim
    L = T.shape[ax]
    norms = frobenius(T, entry_ndim)  # (..., L)
    if L > 1:
        inc = frobenius(np.diff(T, axis=ax), entry_ndim)
        max_inc, sq_inc = inc.max(axis=-1), np.sum(inc * inc, axis=-1)
    else:
        max_inc = sq_inc = np.zeros(norms.shape[:-1])
    return {
        "max_norm": norms.max(axis=-1),
        "max_increment": max_inc,
        "increment": float(L) ** beta * max_inc,
        "cumsum_norm": frobenius(T.sum(axis=ax), entry_ndim),
        "rss": np.sqrt(np.sum(norms * norms, axis=-1)),
        "sq_increments": sq_inc,
    }


def table1_loop(T_one, beta: float = 0.0) -> dict[str, float]:
    """Plain-loop reference of :func:`table1` for one network: ``T_one`` is (L, *entry)."""
    T_one = np.asarray(T_one, np.float64)
    L = T_one.shape[0]

    def fro(x):
        return math.sqrt(sum(float(v) ** 2 for v in np.ravel(x)))

    max_norm, max_inc, sq_inc, ssq = 0.0, 0.0, 0.0, 0.0
    total = np.zeros(T_one.shape[1:])
    for k in range(L):
        n = fro(T_one[k])
        max_norm = max(max_norm, n)
        ssq += n * n
        total = total + T_one[k]
        if k + 1 < L:
            i = fro(T_one[k + 1] - T_one[k])
            max_inc = max(max_inc, i)
            sq_inc += i * i
    return {
        "max_norm": max_norm, "max_increment": max_inc, "increment": L**beta * max_inc,
        "cumsum_norm": fro(total), "rss": math.sqrt(ssq), "sq_increments": sq_inc,
    }


def is_homogeneous(activation: str) -> bool:
    """Positively 1-homogeneous activations, for which delta moves inside (SP Remark 2.2)."""
    return activation in ("relu", "identity")


def analysed_tensors(params, delta_mode: str, activation: str) -> dict[str, Any]:
    """The tensors whose scaling is analysed, with a leading seed axis (numpy float64).

    Returns ``{"A": (S, L, d, d), "b": (S, L, d), "delta_abs": (S, L), "labels": {...},
    "scaled_by_delta": bool}``. For a positively homogeneous activation (ReLU) with a delta,
    A and b are replaced by |delta_k| A_k and |delta_k| b_k (SP Remark 2.2). ``delta_abs`` is
    |delta_k| broadcast over layers (ones when the network has no delta).
    """
    A = np.asarray(params.A, np.float64)
    b = np.asarray(params.b, np.float64)
    S, L = A.shape[0], A.shape[1]
    if delta_mode == "none" or params.delta is None:
        dabs = np.ones((S, L))
    else:
        d = np.abs(np.asarray(params.delta, np.float64))
        dabs = np.broadcast_to(d.reshape(S, -1), (S, L)).copy()
    scaled = is_homogeneous(activation) and delta_mode != "none" and params.delta is not None
    if scaled:
        A = dabs[:, :, None, None] * A
        b = dabs[:, :, None] * b
    labels = {"A": "|δ|A" if scaled else "A", "b": "|δ|b" if scaled else "b"}
    return {"A": A, "b": b, "delta_abs": dabs, "labels": labels, "scaled_by_delta": scaled}


ENTRY_NDIM = {"A": 2, "b": 1}


# ----------------------------------------------------------- convolution norm ----------

def conv_singular_values(kernel, input_hw: Sequence[int], layout: str = "HWIO") -> np.ndarray:
    """All singular values of the circular 2-D convolution with ``kernel`` on an
    ``input_hw`` = (n1, n2) input (Sedghi, Gupta & Long, ICLR 2019, Thm 6).

    The 2-D FFT of the kernel zero-padded to n1 x n2 gives, at each of the n1 n2 frequencies,
    a c_out x c_in matrix; the operator's singular values are theirs. ``layout`` is
    "HWIO" (kh, kw, c_in, c_out) or "OIHW" (c_out, c_in, kh, kw). Returns (n1, n2, min(c)).
    """
    K = np.asarray(kernel, np.float64)
    if layout == "OIHW":
        K = K.transpose(2, 3, 1, 0)
    elif layout != "HWIO":
        raise ValueError(f"unknown layout {layout!r}; use 'HWIO' or 'OIHW'")
    n1, n2 = int(input_hw[0]), int(input_hw[1])
    if K.shape[0] > n1 or K.shape[1] > n2:
        raise ValueError(f"kernel {K.shape[:2]} larger than the input {n1}x{n2}")
    F = np.fft.fft2(K, s=(n1, n2), axes=(0, 1))  # (n1, n2, c_in, c_out)
    return np.linalg.svd(np.swapaxes(F, -1, -2), compute_uv=False)


def conv_spectral_norm(kernel, input_hw: Sequence[int], layout: str = "HWIO") -> float:
    """Operator (spectral) norm of a convolution layer, SPEC §3 (Sedghi et al. 2019)."""
    return float(conv_singular_values(kernel, input_hw, layout).max())


# ---------------------------------------------------------------- exponent fits --------

def fit_seeds(depths, y, valid=None) -> list[LogLogFit]:
    """One log-log fit of ``y[s, :]`` against ``depths`` per seed s (SP §2.3 steps 1-3).

    ``y``: (S, n_depths); ``valid``: (S, n_depths) bool, False for points to ignore (diverged
    seeds). Non-finite and non-positive values are dropped too; each fit reports its ``n``.
    """
    depths = np.asarray(depths, np.float64)
    y = np.asarray(y, np.float64)
    if valid is None:
        valid = np.ones(y.shape, bool)
    out = []
    for s in range(y.shape[0]):
        ok = np.asarray(valid[s], bool)
        out.append(loglog_fit(depths[ok], y[s, ok]))
    return out


def summarize_exponent(values, stderrs, points, min_points: int = 3) -> dict[str, Any]:
    """Mean +- sd over seeds of per-seed exponents; seeds whose fit used fewer than
    ``min_points`` points (or failed) are left out and counted.

    ``stderr`` is the standard error of the mean (sd / sqrt(n)) with two or more seeds, the
    regression standard error of the only fit with one seed.
    """
    values = np.asarray(values, np.float64)
    stderrs = np.asarray(stderrs, np.float64)
    points = np.asarray(points, int)
    used = np.isfinite(values) & (points >= min_points)
    n = int(used.sum())
    v = values[used]
    mean = float(v.mean()) if n else float("nan")
    sd = float(v.std(ddof=1)) if n >= 2 else float("nan")
    if n >= 2:
        se = sd / math.sqrt(n)
    elif n == 1:
        se = float(stderrs[used][0])
    else:
        se = float("nan")
    return {
        "mean": mean, "sd": sd, "stderr": se, "n_seeds": n,
        "per_seed": [float(x) for x in values],
        "fit_stderr_per_seed": [float(x) for x in stderrs],
        "points_per_seed": [int(p) for p in points],
        "seeds_used": [bool(u) for u in used],
    }


def fit_exponents(depths, quantities: Mapping[str, np.ndarray], valid, *, beta=None) -> dict[str, dict]:
    """Exponents of one tensor from its Table-1 quantities over depths (SP §2.3 steps 2-3).

    ``quantities``: arrays (S, n_depths) named as in :func:`table1`. ``beta`` (per seed, or
    None to use each seed's own fit) scales the increments. Returns summaries (see
    :func:`summarize_exponent`) of

    - ``beta`` = 1 - slope of the cumulative sum norm (SP eq. 7 at s = 1),
    - ``nu`` = -slope of the beta-scaled increments L^beta max ||dA|| (Hypothesis 1 with a
      nu-Hoelder limit when nu > 0),
    - ``beta_max`` = -slope of the maximum norm (Hypothesis 1 predicts beta_max = beta),
    - ``rss_slope`` = slope of the root sum of squares (SP eq. 8: bounded => finite QV),
    - ``kappa`` = slope of max_norm / rss (about -1/2 for smooth or diffusive weights,
      about 0 when a few layers carry the norm: the sparse regime).
    """
    def fits(y):
        return fit_seeds(depths, y, valid)

    def summ(vals, fs):
        return summarize_exponent(vals, [f.stderr for f in fs], [f.n for f in fs])

    f_cum = fits(quantities["cumsum_norm"])
    beta_seed = np.array([1.0 - f.slope for f in f_cum])
    out = {"beta": summ(beta_seed, f_cum)}
    b_for_nu = beta_seed if beta is None else np.broadcast_to(np.asarray(beta, np.float64), beta_seed.shape)
    f_inc = fits(quantities["max_increment"])
    out["nu"] = summ(np.array([-(f.slope + bb) for f, bb in zip(f_inc, b_for_nu)]), f_inc)
    f_max = fits(quantities["max_norm"])
    out["beta_max"] = summ(np.array([-f.slope for f in f_max]), f_max)
    f_rss = fits(quantities["rss"])
    out["rss_slope"] = summ(np.array([f.slope for f in f_rss]), f_rss)
    with np.errstate(divide="ignore", invalid="ignore"):
        conc = np.asarray(quantities["max_norm"]) / np.asarray(quantities["rss"])
    f_k = fits(conc)
    out["kappa"] = summ(np.array([f.slope for f in f_k]), f_k)
    return out


def fit_alpha(depths, delta_max, valid) -> dict[str, Any]:
    """alpha = -slope of max_k |delta_k| against L, per seed (SP §2.3 step 1)."""
    fs = fit_seeds(depths, delta_max, valid)
    return summarize_exponent([-f.slope for f in fs], [f.stderr for f in fs], [f.n for f in fs])


# ------------------------------------------------------------ trend / noise ------------

def _interp_layers(S, x, ax: int, entry_ndim: int, extrapolate: bool = False) -> np.ndarray:
    """Piecewise-linear interpolation of ``S`` (values at integer positions 0..n along ``ax``)
    at real positions ``x`` (P,), clipped to [0, n] (or continued linearly with ``extrapolate``)."""
    n = S.shape[ax] - 1
    x = np.asarray(x, np.float64)
    if not extrapolate:
        x = np.clip(x, 0.0, float(n))
    lo = np.clip(np.floor(x).astype(int), 0, max(n - 1, 0))
    frac = (x - lo).reshape((-1,) + (1,) * entry_ndim)
    s_lo = np.take(S, lo, axis=ax)
    if n == 0:
        return s_lo
    s_hi = np.take(S, lo + 1, axis=ax)
    return s_lo + frac * (s_hi - s_lo)


def rescaled_cumsum(T, beta: float, n_grid: int, entry_ndim: int) -> np.ndarray:
    """P_L(s) = L^{beta-1} sum_{k < Ls} T_k on the grid s_i = i / n_grid (SP eq. 7).

    Layer k is taken to sit at k/L, as A_k = L^{-beta} Abar_{k/L} in SP eq. 6: the path is
    int L^beta T_{[Lr]} dr shifted by half a layer, P_L(s) = L^{beta-1} S(Ls + 1/2) with S the
    partial sums interpolated linearly (S(k) = sum_{j<k} T_j, continued linearly past L).
    This removes the O(1/L) lag of a left Riemann sum, so depths average to the same trend.
    ``T``: (..., L, *entry); returns (..., n_grid + 1, *entry).
    """
    T = np.asarray(T, np.float64)
    ax = T.ndim - 1 - entry_ndim
    L = T.shape[ax]
    zero = np.zeros_like(np.take(T, [0], axis=ax))
    last = np.take(T, [L - 1], axis=ax)
    if L > 1:  # continue the weights linearly for the last half layer
        last = 2.0 * last - np.take(T, [L - 2], axis=ax)
    ext = np.concatenate([zero, T, last], axis=ax)
    partial = np.cumsum(ext, axis=ax)  # (..., L+2, *entry): S(0..L+1)
    s = np.arange(n_grid + 1) / n_grid
    return float(L) ** (beta - 1.0) * _interp_layers(partial, L * s + 0.5, ax, entry_ndim)


def trend_integral(paths, weights=None) -> np.ndarray:
    """The trend integral I(s) = int_0^s Abar_r dr as the (weighted) mean of rescaled cumulative
    sums over depths (SP eq. 7): ``paths`` (n_depths, ..., G+1, *entry), ``weights``
    (n_depths, ...) with 0 for networks to leave out (diverged). Where every weight is 0 the
    result is NaN."""
    P = np.asarray(paths, np.float64)
    if weights is None:
        return P.mean(axis=0)
    w = np.asarray(weights, np.float64)
    w = w.reshape(w.shape + (1,) * (P.ndim - w.ndim))
    num = np.sum(np.where(w > 0, P, 0.0) * w, axis=0)
    den = np.sum(w, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def pooled_trend(paths, weights) -> np.ndarray:
    """One trend integral for all seeds: the weighted mean of ``paths`` (n_depths, S, G+1, *entry)
    over depths *and* seeds, broadcast back to (S, G+1, *entry).

    Seed s at depth L and seed s at depth L' are independent trainings (their keys differ), so
    pairing them by index would be arbitrary; pooling estimates the common limit Abar of SP
    eq. 5-7 from every network at the largest depths."""
    P = np.asarray(paths, np.float64)
    w = np.asarray(weights, np.float64)
    S = P.shape[1]
    flat = P.reshape((1, P.shape[0] * S) + P.shape[2:])
    I = trend_integral(np.moveaxis(flat, 1, 0), w.reshape(-1, 1)[:, 0:1])  # (1, G+1, *entry)
    return np.broadcast_to(I, (S,) + I.shape[1:]).copy()


def own_grid(L: int, max_grid: int = 200, min_layers: int = 8) -> int:
    """Grid size of a network's own (per-network) trend: at most ``max_grid`` cells and at least
    ``min_layers`` layers per cell (1 cell for L < 2 min_layers)."""
    return int(max(1, min(max_grid, L // min_layers)))


def own_trend(T, beta: float, entry_ndim: int, max_grid: int = 200, min_layers: int = 8) -> np.ndarray:
    """The per-network trend integral: each network's own rescaled cumulative sum (SP eq. 7 at
    its own depth) on a coarse grid of :func:`own_grid` cells, so the trend keeps what varies
    on scales longer than L / G layers and the noise what varies faster. ``T``: (S, L, *entry);
    returns (S, G+1, *entry) for :func:`denoise` / :func:`split_trend_noise`."""
    T = np.asarray(T, np.float64)
    L = T.shape[T.ndim - 1 - entry_ndim]
    return rescaled_cumsum(T, beta, own_grid(L, max_grid, min_layers), entry_ndim)


def trend_weights(I, entry_ndim: int) -> np.ndarray:
    """Abar on the grid cells: n_grid (I(s_{i+1}) - I(s_i)), shape (..., n_grid, *entry)."""
    I = np.asarray(I, np.float64)
    ax = I.ndim - 1 - entry_ndim
    G = I.shape[ax] - 1
    return G * np.diff(I, axis=ax)


def denoise(I, L: int, beta: float, entry_ndim: int) -> np.ndarray:
    """Denoised weights Atilde_k = L^{-beta} Abar_{k/L} of SP Fig. 6 (SP eq. 6 without W).

    Abar is read off the trend integral ``I`` (..., G+1, *entry) of :func:`trend_integral` on
    the grid s_i = i/G as the cell slopes G (I_{i+1} - I_i) (second-order accurate at the cell
    midpoints), interpolated linearly between midpoints and continued linearly in the outer half
    cells.
    Returns (..., L, *entry).
    """
    I = np.asarray(I, np.float64)
    ax = I.ndim - 1 - entry_ndim
    G = I.shape[ax] - 1
    a = G * np.diff(I, axis=ax)  # (..., G, *entry): Abar at midpoints (i + 1/2)/G
    pos = G * np.arange(L) / L - 0.5
    return float(L) ** (-beta) * _interp_layers(a, pos, ax, entry_ndim, extrapolate=G > 1)


def split_trend_noise(T, I, beta: float, entry_ndim: int) -> dict[str, Any]:
    """Split trained weights T (..., L, *entry) into trend and noise (SP eq. 6):
    T_k = L^{-beta} Abar_{k/L} + (W_{(k+1)/L} - W_{k/L}).

    Returns ``denoised`` (the trend weights), ``noise`` (the increments dW_k = T_k - Atilde_k),
    and per network (...):

    - ``quadratic_variation`` = sum_k ||dW_k||_F^2, the estimate of ||[W]_1|| (SP eq. 8),
    - ``noise_to_trend`` = sqrt(QV) / (sum_k ||Atilde_k||_F^2)^{1/2}: per-layer relative size,
    - ``noise_path_to_trend_path`` = max_k ||W_{k/L}||_F / max_k ||sum_{j<k} Atilde_j||_F,
    - ``noise_lag1_autocorr`` = sum_k <dW_k, dW_{k+1}> / sum_k ||dW_k||^2: about 0 for diffusive
      noise (SP Remark 2.1), near 1 when the residual is smooth in k (finite-depth trend drift).
    """
    T = np.asarray(T, np.float64)
    ax = T.ndim - 1 - entry_ndim
    L = T.shape[ax]
    den = denoise(I, L, beta, entry_ndim)
    noise = T - den
    nn2 = frobenius(noise, entry_ndim) ** 2
    dn2 = frobenius(den, entry_ndim) ** 2
    qv = nn2.sum(axis=-1)
    # lag-1 autocorrelation of the noise increments: about 0 for diffusive (Brownian-like) noise,
    # near 1 for a smooth residual (a trend that differs between depths at finite L)
    lead = noise.shape[:ax]
    flat = noise.reshape(lead + (L, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        lag1 = np.sum(flat[..., 1:, :] * flat[..., :-1, :], axis=(-2, -1)) / np.sum(flat * flat, axis=(-2, -1))
        ratio = np.sqrt(qv) / np.sqrt(dn2.sum(axis=-1))
        path_ratio = (frobenius(np.cumsum(noise, axis=ax), entry_ndim).max(axis=-1)
                      / frobenius(np.cumsum(den, axis=ax), entry_ndim).max(axis=-1))
    return {
        "denoised": den, "noise": noise, "quadratic_variation": qv,
        "noise_to_trend": ratio, "noise_path_to_trend_path": path_ratio, "noise_lag1_autocorr": lag1,
    }


# ------------------------------------------------------------- hypothesis test ---------

def _f(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def hypothesis_test(
    exps: Mapping[str, Mapping[str, Any]],
    noise_to_trend: float,
    *,
    noise_autocorr: float = float("nan"),
    cross_depth_noise_to_trend: float = float("nan"),
    alpha: Optional[Mapping[str, Any]] = None,
    qv_largest: float = float("nan"),
    label: str = "A",
    thresholds: Mapping[str, float] = THRESHOLDS,
) -> dict[str, Any]:
    """SP §2.3 steps 1-5 for one tensor, ending in a verdict with the numbers that decided it.

    ``exps`` is :func:`fit_exponents`' output, ``noise_to_trend`` the per-layer noise/trend
    ratio and ``noise_autocorr`` the lag-1 autocorrelation of the noise increments of
    :func:`split_trend_noise` at the largest depths (with each network's own coarse-grained
    trend, :func:`own_trend`), ``cross_depth_noise_to_trend`` the same ratio against the trend
    common to the largest depths (reported, not used: it also counts differences between
    independently trained networks), ``alpha`` the delta fit. Verdicts:
    "Hypothesis 1" (beta-scaled increments vanish and the residual is negligible or smooth in
    k), "Hypothesis 2" (non-negligible diffusive noise W, or increments that do not vanish),
    "neither (sparse)" (the maximum norm does not decay and a few layers carry the root sum of
    squares), "neither (inconclusive)" otherwise. Thresholds: :data:`THRESHOLDS`.
    """
    th = dict(thresholds)
    beta, nu = exps["beta"], exps["nu"]
    rss, kappa, bmax = exps["rss_slope"], exps["kappa"], exps["beta_max"]
    nu_se = nu["stderr"] if math.isfinite(nu["stderr"]) else 0.0
    vanish = bool(nu["mean"] > th["nu_vanish"] and nu["mean"] - 2 * nu_se > 0)
    negligible = bool(math.isfinite(noise_to_trend) and noise_to_trend < th["noise_negligible"])
    smooth = bool(math.isfinite(noise_autocorr) and noise_autocorr > th["noise_smooth_autocorr"])
    rss_bounded = bool(rss["mean"] < th["rss_bounded_slope"])
    beta_half = bool(beta["mean"] >= 0.5)
    sparse = bool(kappa["mean"] > th["sparse_kappa"] and bmax["mean"] < th["sparse_max_decay"])
    steps = {
        "1_alpha": None if alpha is None else {"alpha": _f(alpha["mean"]), "sd": _f(alpha["sd"])},
        "2_beta": {"beta": _f(beta["mean"]), "sd": _f(beta["sd"]), "beta_from_max_norm": _f(bmax["mean"])},
        "3_increments": {"nu": _f(nu["mean"]), "stderr": _f(nu["stderr"]), "vanish": vanish,
                         "rule": f"nu > {th['nu_vanish']} and nu - 2 stderr > 0"},
        "4_trend_noise": {"noise_to_trend": _f(noise_to_trend), "negligible": negligible,
                          "noise_lag1_autocorr": _f(noise_autocorr), "smooth_residual": smooth,
                          "cross_depth_noise_to_trend": _f(cross_depth_noise_to_trend),
                          "rule": f"negligible: sqrt(QV)/RSS(trend) < {th['noise_negligible']}; smooth "
                                  f"(not diffusive): lag-1 autocorrelation > {th['noise_smooth_autocorr']}"},
        "5_quadratic_variation": {"beta_ge_half": beta_half, "rss_slope": _f(rss["mean"]),
                                  "rss_bounded": rss_bounded, "qv_largest_depth": _f(qv_largest)},
        "sparsity": {"kappa": _f(kappa["mean"]), "max_norm_decay": _f(bmax["mean"]), "sparse": sparse,
                     "rule": f"kappa > {th['sparse_kappa']} and max-norm decay < {th['sparse_max_decay']}"},
    }
    finite_qv = None
    if sparse:
        verdict = "neither (sparse)"
        reason = (f"max norm does not decay (exponent {bmax['mean']:.2f}) and the largest layer keeps "
                  f"its share of the RSS (kappa {kappa['mean']:.2f})")
    elif vanish and (negligible or smooth):
        verdict = "Hypothesis 1"
        reason = (f"beta-scaled increments vanish like L^-{nu['mean']:.2f} and the noise is negligible "
                  f"(noise/trend {noise_to_trend:.2g})")
        if not negligible:
            reason = (f"beta-scaled increments vanish like L^-{nu['mean']:.2f}; the residual (noise/trend "
                      f"{noise_to_trend:.2g}) is smooth in k (lag-1 autocorrelation {noise_autocorr:.2f}), "
                      f"a finite-depth drift of the trend, not diffusive noise")
    elif (not negligible and math.isfinite(noise_to_trend)) or not vanish:
        verdict = "Hypothesis 2"
        finite_qv = bool(beta_half and rss_bounded)
        why = []
        if not negligible:
            rough = f", lag-1 autocorrelation {noise_autocorr:.2f}" if math.isfinite(noise_autocorr) else ""
            why.append(f"noise/trend {noise_to_trend:.2g} is not negligible{rough}")
        if not vanish:
            why.append(f"beta-scaled increments do not vanish (nu = {nu['mean']:.2f})")
        reason = "; ".join(why) + (
            "; beta >= 1/2 and bounded RSS: W has finite quadratic variation" if finite_qv else "")
    else:
        verdict = "neither (inconclusive)"
        reason = "noise/trend ratio unavailable"
    return {"tensor": label, "verdict": verdict, "reason": reason,
            "finite_quadratic_variation": finite_qv, "steps": steps}


def analyze_tensor_family(
    tensors: Mapping[int, np.ndarray],
    entry_ndim: int,
    *,
    valid: Optional[Mapping[int, np.ndarray]] = None,
    alpha: Optional[Mapping[str, Any]] = None,
    n_trend: int = 4,
    max_grid: int = 200,
    label: str = "A",
) -> dict[str, Any]:
    """SP §2.3 steps 2-5 for one family of stacked tensors given as arrays, one per depth.

    ``tensors[L]``: (S, L, *entry) weights of S networks of depth L (independent networks per
    depth, as trained networks are); ``valid[L]``: (S,) bool, False for diverged networks.
    Returns the Table-1 quantities (S, n_depths), the exponent fits, the trend integral
    (S, G+1, *entry; pooled over seeds, see :func:`pooled_trend`) from the ``n_trend`` largest
    depths, the split at every depth, and the
    hypothesis-test verdict. :func:`analyze_run` does the same on a sweep folder, reading one
    depth at a time.
    """
    depths = sorted(int(L) for L in tensors)
    S = np.asarray(tensors[depths[0]]).shape[0]
    ok = np.ones((S, len(depths)), bool)
    if valid is not None:
        for i, L in enumerate(depths):
            ok[:, i] = np.asarray(valid[L], bool)
    q: dict[str, np.ndarray] = {}
    for i, L in enumerate(depths):
        for k, v in table1(tensors[L], entry_ndim).items():
            q.setdefault(k, np.full((S, len(depths)), np.nan))[:, i] = v
    exps = fit_exponents(depths, q, ok)
    beta = exps["beta"]["mean"] if math.isfinite(exps["beta"]["mean"]) else 0.0
    td = depths[-min(n_trend, len(depths)):]
    G = int(max(1, min(max_grid, min(td))))
    paths = np.stack([rescaled_cumsum(np.nan_to_num(np.asarray(tensors[L], np.float64)), beta, G, entry_ndim)
                      for L in td])
    I = pooled_trend(paths, np.stack([ok[:, depths.index(L)] for L in td]).astype(float))
    keys = ("quadratic_variation", "noise_to_trend", "noise_path_to_trend_path", "noise_lag1_autocorr")
    splits, own = {}, {}
    for i, L in enumerate(depths):
        T = np.nan_to_num(np.asarray(tensors[L], np.float64))
        sp = split_trend_noise(T, I, beta, entry_ndim)
        so = split_trend_noise(T, own_trend(T, beta, entry_ndim, max_grid), beta, entry_ndim)
        for k in keys:
            sp[k] = np.where(ok[:, i], sp[k], np.nan)
            so[k] = np.where(ok[:, i], so[k], np.nan)
        splits[L], own[L] = sp, so

    def med(d, k):
        a = np.stack([d[L][k] for L in td])
        return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")

    r, c = med(own, "noise_to_trend"), med(own, "noise_lag1_autocorr")
    qv_last = float(np.nanmean(own[depths[-1]]["quadratic_variation"]))
    test = hypothesis_test(exps, r, noise_autocorr=c, alpha=alpha, qv_largest=qv_last, label=label,
                           cross_depth_noise_to_trend=med(splits, "noise_to_trend"))
    return {"depths": depths, "table1": q, "valid": ok, "exponents": exps, "beta_used": beta,
            "trend_depths": td, "n_grid": G, "trend_integral": I, "splits": splits, "own_splits": own,
            "noise_to_trend": r, "noise_autocorr": c,
            "cross_depth_noise_to_trend": med(splits, "noise_to_trend"),
            "test": test, "verdict": test["verdict"]}


# ------------------------------------------------------------------- a whole run -------

def _json_clean(obj):
    """Make ``obj`` JSON-safe: numpy to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def _nanmean0(a) -> np.ndarray:
    """Mean over the seed axis (0) ignoring NaN; NaN where every seed is NaN."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def _valid_seeds(params, metrics, S: int) -> np.ndarray:
    """Seeds that did not diverge and whose weights are all finite."""
    div = np.asarray(metrics.get("diverged", [False] * S), bool)
    fin = np.isfinite(np.asarray(params.A)).reshape(S, -1).all(axis=1)
    fin &= np.isfinite(np.asarray(params.b)).reshape(S, -1).all(axis=1)
    if params.delta is not None:
        fin &= np.isfinite(np.asarray(params.delta)).reshape(S, -1).all(axis=1)
    return ~div & fin


def _figure_entry(name: str, activation: str, d: int, trend_w: np.ndarray):
    """Entry shown in the decomposition figures: the paper's (SP Figs 3, 5, 9, 10) when d = 10,
    else the one with the largest trend."""
    if d == 10:
        relu = is_homogeneous(activation)
        if name == "A":
            return (7, 7) if relu else (9, 7)
        return (6,) if relu else (5,)
    mag = np.nanmax(np.abs(np.nan_to_num(trend_w)), axis=0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mag)), mag.shape))


def _loss_fn(activation: str, delta_mode: str, has_delta: bool):
    """jit(vmap over seeds) of the training MSE of SP eq. 1 networks (float32, like training)."""
    import jax

    from resnet_limits.models import ResNetParams, forward, mse

    def one(A, b, delta, x, y):
        p = ResNetParams(A, b, delta if has_delta else None)
        return mse(forward(p, x, activation=activation, delta_mode=delta_mode), y)

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0 if has_delta else None, None, None)))


def _pad_layers(A, b, delta, delta_mode: str, activation: str):
    """Pad the depth axis (1) with identity layers (A = 0, b = 0, per-layer delta = 0) up to the
    next power of two, so one compiled forward pass serves many depths. Exact because
    sigma(0) = 0 for every activation here (checked), so h + delta sigma(0) = h."""
    from resnet_limits.models import get_activation

    L = A.shape[1]
    Lp = max(8, 1 << (L - 1).bit_length())
    if Lp == L or float(np.asarray(get_activation(activation).fn(np.zeros(1, np.float32)))[0]) != 0.0:
        return A, b, delta
    pad = lambda a: np.concatenate([a, np.zeros((a.shape[0], Lp - L) + a.shape[2:], a.dtype)], axis=1)
    if delta is not None and delta_mode == "per-layer":
        delta = pad(delta)
    return pad(A), pad(b), delta


def analyze_run(
    run_dir,
    *,
    progress: bool = True,
    n_trend: int = 4,
    max_grid: int = 200,
    max_eval: int = 8192,
    figures: bool = True,
) -> dict:
    """The scaling analysis of a sweep folder (SP §2.3 steps 1-5, SP Fig. 6; SPEC §2-§3).

    Reads every finished depth, computes the Table-1 quantities per depth and seed, fits
    alpha, beta, nu (per seed; diverged seeds left out), splits the weights into trend and
    noise (the trend integral is the mean rescaled cumulative sum of all seeds at the ``n_trend``
    largest depths, on a grid of min(``max_grid``, smallest such depth) points), measures the
    noise's quadratic variation, rebuilds every network with denoised weights and evaluates
    its training loss (on at most ``max_eval`` training points), and runs the hypothesis
    tests. Writes ``RUN_DIR/analysis.json`` and PNG figures under ``RUN_DIR/figures/``.

    Raises :class:`UsageError` for a folder that is not a run or has fewer than 3 finished
    depths.
    """
    from tqdm.auto import tqdm

    from resnet_limits import sweeps

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder")
    cfg = sweeps.load_config(run_dir)
    depths = sweeps.finished_depths(run_dir)
    if len(depths) < 3:
        raise UsageError(
            f"{run_dir} has {len(depths)} finished depth(s) ({depths}); the analysis needs at least 3")
    activation, delta_mode = cfg["activation"], cfg["delta_mode"]
    S = int(cfg["seeds"])
    nD = len(depths)
    names = ("A", "b")

    # ---- pass 1: Table-1 quantities, deltas, metrics -------------------------------------
    q = {n: {} for n in names}
    delta_max = np.full((S, nD), np.nan)
    valid = np.zeros((S, nD), bool)
    rec = {k: np.full((S, nD), np.nan) for k in ("train_loss", "test_loss", "updates")}
    conv = np.zeros((S, nD), bool)
    div = np.zeros((S, nD), bool)
    has_delta = delta_mode != "none"
    labels, scaled = {"A": "A", "b": "b"}, False
    bar = tqdm(depths, desc="analyse: norms", unit="depth", disable=not progress)
    for i, L in enumerate(bar):
        params, m = sweeps.load_depth(run_dir, L)
        s_here = min(S, np.asarray(params.A).shape[0])
        ok = _valid_seeds(params, m, np.asarray(params.A).shape[0])[:S]
        valid[:s_here, i] = ok
        tens = analysed_tensors(params, delta_mode, activation)
        labels, scaled = tens["labels"], tens["scaled_by_delta"]
        for n in names:
            for key, v in table1(tens[n], ENTRY_NDIM[n]).items():
                q[n].setdefault(key, np.full((S, nD), np.nan))[:s_here, i] = v[:S]
        if params.delta is not None:
            delta_max[:s_here, i] = tens["delta_abs"].max(axis=1)[:S]
        for k in rec:
            vals = np.array([np.nan if v is None else v for v in m.get(k, [None] * s_here)], np.float64)
            rec[k][:s_here, i] = vals[:S]
        conv[:s_here, i] = np.asarray(m.get("converged", [False] * s_here), bool)[:S]
        div[:s_here, i] = np.asarray(m.get("diverged", [False] * s_here), bool)[:S]

    # ---- fits ------------------------------------------------------------------------------
    alpha = fit_alpha(depths, delta_max, valid) if has_delta else None
    exps = {n: fit_exponents(depths, q[n], valid) for n in names}
    beta_used = {}
    for n in names:
        b = exps[n]["beta"]["mean"]
        beta_used[n] = float(b) if math.isfinite(b) else 0.0

    # ---- pass 2: trend integral from the largest depths ---------------------------------
    td = depths[-min(n_trend, nD):]
    G = int(max(1, min(max_grid, min(td))))
    paths = {n: [] for n in names}
    tw = []
    for L in tqdm(td, desc="analyse: trend", unit="depth", disable=not progress):
        params, m = sweeps.load_depth(run_dir, L)
        tens = analysed_tensors(params, delta_mode, activation)
        ok = np.zeros(S, bool)
        ok[: min(S, tens["A"].shape[0])] = _valid_seeds(params, m, tens["A"].shape[0])[:S]
        tw.append(ok.astype(float))
        for n in names:
            P = rescaled_cumsum(np.nan_to_num(tens[n][:S]), beta_used[n], G, ENTRY_NDIM[n])
            if P.shape[0] < S:
                P = np.concatenate([P, np.zeros((S - P.shape[0],) + P.shape[1:])])
            paths[n].append(P)
    I = {n: pooled_trend(np.stack(paths[n]), np.stack(tw)) for n in names}
    del paths

    # ---- pass 3: split, quadratic variation, denoised networks -------------------------
    data = sweeps.dataset_for(cfg)
    x = np.asarray(data.x_train[:max_eval], np.float32)
    y = np.asarray(data.y_train[:max_eval], np.float32)
    loss_fn = _loss_fn(activation, delta_mode, has_delta)
    keys = ("quadratic_variation", "noise_to_trend", "noise_path_to_trend_path", "noise_lag1_autocorr")
    dec = {n: {k: np.full((S, nD), np.nan) for k in keys} for n in names}  # common (cross-depth) trend
    dec_own = {n: {k: np.full((S, nD), np.nan) for k in keys} for n in names}  # each network's own trend
    trained_loss = np.full((S, nD), np.nan)
    denoised_loss = np.full((S, nD), np.nan)
    denoised_own_loss = np.full((S, nD), np.nan)
    fig1_depths = sorted(set(depths[::-1][::3][:4]))
    seed0 = int(np.argmax(valid[:, -1])) if valid[:, -1].any() else 0
    fig_entry = {n: _figure_entry(n, activation, int(cfg["width"]), trend_weights(I[n][seed0], ENTRY_NDIM[n]))
                 for n in names}
    figdata: dict[str, Any] = {"fig1": {n: {} for n in names}, "entry": fig_entry, "seed": seed0}
    for i, L in enumerate(tqdm(depths, desc="analyse: denoise", unit="depth", disable=not progress)):
        params, m = sweeps.load_depth(run_dir, L)
        tens = analysed_tensors(params, delta_mode, activation)
        s_here = min(S, tens["A"].shape[0])
        ok = valid[:s_here, i]
        den, den_own = {}, {}
        for n in names:
            T = np.nan_to_num(tens[n][:s_here])
            sp = split_trend_noise(T, I[n][:s_here], beta_used[n], ENTRY_NDIM[n])
            so = split_trend_noise(T, own_trend(T, beta_used[n], ENTRY_NDIM[n], max_grid), beta_used[n],
                                   ENTRY_NDIM[n])
            for k in keys:
                dec[n][k][:s_here, i] = np.where(ok, sp[k], np.nan)
                dec_own[n][k][:s_here, i] = np.where(ok, so[k], np.nan)
            den[n], den_own[n] = sp["denoised"], so["denoised"]
            if L in fig1_depths or L == depths[-1]:
                e = (slice(None),) + fig_entry[n]
                T0 = tens[n][seed0]
                figdata["fig1"][n][L] = {
                    "weights": L ** beta_used[n] * T0[e],
                    "cumsum": L ** (beta_used[n] - 1.0) * np.cumsum(T0[e]),
                }
                if L == depths[-1]:
                    figdata.setdefault("decomposition", {})[n] = {
                        "depth": L,
                        "weights": L ** beta_used[n] * T0[e],
                        "trend": L ** beta_used[n] * sp["denoised"][seed0][e],
                        "own_trend": L ** beta_used[n] * so["denoised"][seed0][e],
                        "noise_path": L ** (beta_used[n] - 1.0) * np.cumsum(so["noise"][seed0][e]),
                    }
        if L == depths[-1] and params.delta is not None:
            figdata["delta_largest"] = {"depth": L, "delta": np.asarray(params.delta[seed0], np.float64)}
        # trained and denoised networks (SP Fig. 6)
        A = np.nan_to_num(np.asarray(params.A[:s_here], np.float32))
        b = np.nan_to_num(np.asarray(params.b[:s_here], np.float32))
        dl = None if params.delta is None else np.nan_to_num(np.asarray(params.delta[:s_here], np.float32))
        if has_delta and dl is None:
            raise UsageError(f"depth {L} of {run_dir} has no delta although delta_mode is {delta_mode}")
        trained_loss[:s_here, i] = np.where(ok, np.asarray(loss_fn(*_pad_layers(A, b, dl, delta_mode, activation),
                                                                   x, y)), np.nan)
        if scaled:  # delta sigma(Ah + b) = sign(delta) sigma(|delta|A h + |delta| b), SP Remark 2.2
            dl_den = None if dl is None else np.sign(dl).astype(np.float32)
            if dl_den is not None:
                dl_den = np.where(dl_den == 0, 1.0, dl_den).astype(np.float32)
        else:
            dl_den = dl
        for d_, out_ in ((den, denoised_loss), (den_own, denoised_own_loss)):
            with np.errstate(all="ignore"):
                dloss = np.asarray(loss_fn(*_pad_layers(d_["A"].astype(np.float32), d_["b"].astype(np.float32),
                                                        dl_den, delta_mode, activation), x, y))
            out_[:s_here, i] = np.where(ok, dloss, np.nan)

    # ---- hypothesis tests ------------------------------------------------------------------
    tests, decomposition = {}, {}
    cols = [depths.index(L) for L in td]

    def med(a):
        a = a[:, cols]
        return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")

    for n in names:
        r, c = med(dec_own[n]["noise_to_trend"]), med(dec_own[n]["noise_lag1_autocorr"])
        r_x = med(dec[n]["noise_to_trend"])
        qv_mean = _nanmean0(dec_own[n]["quadratic_variation"])
        tests[n] = hypothesis_test(exps[n], r, noise_autocorr=c, cross_depth_noise_to_trend=r_x, alpha=alpha,
                                   qv_largest=float(qv_mean[-1]), label=labels[n])
        qv_fit = loglog_fit(depths, qv_mean)
        decomposition[n] = {
            "label": labels[n],
            "beta_used": beta_used[n],
            "trend_depths": td,
            "n_grid": G,
            "own_trend": f"each network's rescaled cumulative sum on min({max_grid}, L // 8) cells",
            "noise_to_trend_used": r,
            "noise_lag1_autocorr_used": c,
            "noise_to_trend": _nanmean0(dec_own[n]["noise_to_trend"]),
            "noise_lag1_autocorr": _nanmean0(dec_own[n]["noise_lag1_autocorr"]),
            "noise_path_to_trend_path": _nanmean0(dec_own[n]["noise_path_to_trend_path"]),
            "quadratic_variation": qv_mean,
            "quadratic_variation_slope": qv_fit.slope,
            "quadratic_variation_slope_stderr": qv_fit.stderr,
            "cross_depth": {
                "about": "noise against the trend common to the largest depths and all seeds (SP eq. 7)",
                "noise_to_trend_largest": r_x,
                "noise_to_trend": _nanmean0(dec[n]["noise_to_trend"]),
                "noise_lag1_autocorr": _nanmean0(dec[n]["noise_lag1_autocorr"]),
                "quadratic_variation": _nanmean0(dec[n]["quadratic_variation"]),
            },
            "trend_sup_norm": float(np.nanmax(frobenius(trend_weights(_nanmean0(I[n]), ENTRY_NDIM[n]),
                                                        ENTRY_NDIM[n]))),
            "figure_entry": list(fig_entry[n]),
        }

    def per_depth(a):
        return {"mean": _nanmean0(a), "per_seed": a}

    table = {n: {k: per_depth(np.where(valid, v, np.nan)) for k, v in q[n].items()} for n in names}
    for n in names:  # beta-scaled increments with the fitted beta (Table 1)
        table[n]["increment"] = per_depth(np.where(valid, q[n]["max_increment"], np.nan)
                                          * np.asarray(depths, float) ** beta_used[n])
    if has_delta:
        table["delta_max"] = per_depth(np.where(valid, delta_max, np.nan))

    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "preset": cfg.get("preset"),
        "dataset": cfg.get("dataset"),
        "activation": activation,
        "delta_mode": delta_mode,
        "optimizer": cfg.get("optimizer"),
        "lr": cfg.get("lr"),
        "batch_size": cfg.get("batch_size"),
        "depths": depths,
        "n_seeds": S,
        "valid_seeds_per_depth": valid.sum(axis=0),
        "diverged": int(div.sum()),
        "converged_fraction": float(conv.mean()),
        "labels": labels,
    }
    if alpha is not None:
        result.update(alpha=alpha["mean"], alpha_sd=alpha["sd"], alpha_stderr=alpha["stderr"],
                      alpha_per_seed=alpha["per_seed"], alpha_points_per_seed=alpha["points_per_seed"])
    else:
        result.update(alpha=None, alpha_sd=None, alpha_stderr=None, alpha_per_seed=None, alpha_points_per_seed=None)
    for n, key in (("A", "beta"), ("b", "beta_b")):
        e = exps[n]["beta"]
        result.update({key: e["mean"], f"{key}_sd": e["sd"], f"{key}_stderr": e["stderr"],
                       f"{key}_per_seed": e["per_seed"], f"{key}_points_per_seed": e["points_per_seed"]})
    for n, key in (("A", "nu"), ("b", "nu_b")):
        e = exps[n]["nu"]
        result.update({key: e["mean"], f"{key}_sd": e["sd"], f"{key}_stderr": e["stderr"],
                       f"{key}_per_seed": e["per_seed"]})
    result["alpha_plus_beta"] = (result["alpha"] + result["beta"]) if alpha is not None else None
    result["verdicts"] = {n: tests[n]["verdict"] for n in names}
    result["verdict"] = tests["A"]["verdict"]
    result["hypothesis_tests"] = tests
    result["exponents"] = {"alpha": alpha, **exps}
    result["table1"] = table
    result["decomposition"] = decomposition
    result["denoised"] = {
        "depths": depths,
        "n_eval": int(x.shape[0]),
        "trained_loss": _nanmean0(trained_loss),
        "denoised_loss": _nanmean0(denoised_loss),
        "denoised_own_loss": _nanmean0(denoised_own_loss),
        "about": "denoised: weights L^-beta Abar_{k/L} with Abar common to the largest depths and all seeds "
                 "(SP Fig. 6); denoised_own: each network's own coarse-grained trend",
        "trained_loss_per_seed": trained_loss,
        "denoised_loss_per_seed": denoised_loss,
        "denoised_own_loss_per_seed": denoised_own_loss,
        "recorded_train_loss": _nanmean0(np.where(valid, rec["train_loss"], np.nan)),
        "epsilon": cfg.get("epsilon"),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = _nanmean0(denoised_loss) / _nanmean0(trained_loss)
        ratio_own = _nanmean0(denoised_own_loss) / _nanmean0(trained_loss)
    result["denoised"]["ratio"] = ratio
    result["denoised"]["ratio_own"] = ratio_own
    result["denoised_over_trained_largest"] = (float(np.nanmedian(ratio[cols])) if np.isfinite(ratio[cols]).any()
                                               else None)
    result["denoised_own_over_trained_largest"] = (float(np.nanmedian(ratio_own[cols]))
                                                   if np.isfinite(ratio_own[cols]).any() else None)
    result["paper"] = PAPER_VALUES.get(str(cfg.get("preset")))
    result["thresholds"] = dict(THRESHOLDS)
    result["figures"] = []
    result = _json_clean(result)
    if figures:
        from resnet_limits import plotting

        result["figures"] = plotting.analysis_figures(result, figdata, run_dir / "figures")
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    (run_dir / "analysis.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _pm(m, sd, digits: int = 2) -> str:
    if m is None:
        return "-"
    s = f"{m:.{digits}f}"
    return s + (f" ± {sd:.{digits}f}" if sd is not None else "")


def format_analysis(result: dict) -> str:
    """A readable summary of :func:`analyze_run`'s result (what ``resnet-limits analyze`` prints)."""
    r = result
    lines = []
    lines.append(f"run {r.get('run_dir')}: {r.get('preset')} ({r.get('activation')}, delta {r.get('delta_mode')}, "
                 f"{r.get('optimizer')} lr={r.get('lr')} B={r.get('batch_size')})")
    d = r.get("depths", [])
    lines.append(f"depths {d[0] if d else '-'}..{d[-1] if d else '-'} ({len(d)}), {r.get('n_seeds')} seeds, "
                 f"{r.get('diverged', 0)} diverged (left out), converged fraction {r.get('converged_fraction', 0):.2f}")
    paper = r.get("paper") or {}
    lab = r.get("labels", {"A": "A", "b": "b"})
    lines.append("")
    lines.append(f"{'exponent':<26}{'mean ± sd (se)':<24}{'per seed':<44}{'paper'}")

    def row(name, key, pkey=None):
        m = r.get(key)
        if m is None:
            lines.append(f"{name:<26}{'-':<24}")
            return
        ps = r.get(f"{key}_per_seed") or []
        pts = r.get(f"{key}_points_per_seed")
        seeds = " ".join("nan" if v is None else f"{v:.2f}" for v in ps)
        if pts:
            seeds += f"  [{min(pts)}-{max(pts)} pts]" if min(pts) != max(pts) else f"  [{pts[0]} pts]"
        se = r.get(f"{key}_stderr")
        cell = _pm(m, r.get(f"{key}_sd")) + (f" ({se:.2f})" if se is not None else "")
        pv = paper.get(pkey) if pkey else None
        psd = paper.get(f"{pkey}_sd") if pkey else None
        lines.append(f"{name:<26}{cell:<24}{seeds:<44}{_pm(pv, psd) if pv is not None else ''}")

    row("alpha  (max|δ| ~ L^-α)", "alpha", "alpha")
    row(f"beta   ({lab['A']}, cumsum)", "beta", "beta")
    row(f"beta_b ({lab['b']}, cumsum)", "beta_b")
    row(f"nu     ({lab['A']}, increments)", "nu", "nu")
    row(f"nu_b   ({lab['b']}, increments)", "nu_b")
    if r.get("alpha_plus_beta") is not None:
        lines.append(f"{'alpha + beta':<26}{r['alpha_plus_beta']:.2f}")
    if paper.get("authors_code"):
        lines.append(f"authors' code: {paper['authors_code']}")
    lines.append("")
    lines.append(f"{'tensor':<8}{'verdict':<24}{'β':>6}{'β(max)':>8}{'ν':>7}{'RSS slope':>10}{'κ':>7}"
                 f"{'noise/trend':>12}{'ac1':>6}{'QV(Lmax)':>10}{'x-depth':>9}  reason")
    for n, t in (r.get("hypothesis_tests") or {}).items():
        st = t["steps"]
        f = lambda v, w, p=2: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"
        g = lambda v, w: f"{v:>{w}.2g}" if v is not None else f"{'-':>{w}}"
        lines.append(f"{t['tensor']:<8}{t['verdict']:<24}{f(st['2_beta']['beta'], 6)}"
                     f"{f(st['2_beta']['beta_from_max_norm'], 8)}{f(st['3_increments']['nu'], 7)}"
                     f"{f(st['5_quadratic_variation']['rss_slope'], 10)}{f(st['sparsity']['kappa'], 7)}"
                     f"{g(st['4_trend_noise']['noise_to_trend'], 12)}"
                     f"{f(st['4_trend_noise'].get('noise_lag1_autocorr'), 6)}"
                     f"{g(st['5_quadratic_variation']['qv_largest_depth'], 10)}"
                     f"{g(st['4_trend_noise'].get('cross_depth_noise_to_trend'), 9)}  {t['reason']}")
    den = r.get("denoised") or {}
    if den.get("depths"):
        lines.append("")
        lines.append(f"training loss, trained vs denoised weights (SP Fig. 6; {den.get('n_eval')} training points; "
                     f"denoised: trend common to the largest depths; own trend: each network coarse-grained):")
        lines.append(f"{'L':>7}{'trained':>12}{'denoised':>12}{'ratio':>9}{'own trend':>12}{'ratio':>9}")
        idx = list(range(len(den["depths"])))
        if len(idx) > 10:
            idx = sorted(set(idx[:: max(1, len(idx) // 8)] + [len(idx) - 1]))
        for i in idx:
            tl, dl, ra = den["trained_loss"][i], den["denoised_loss"][i], den["ratio"][i]
            do, ro = den.get("denoised_own_loss", [None] * (i + 1))[i], den.get("ratio_own", [None] * (i + 1))[i]
            fmt = lambda v: f"{v:>12.3g}" if v is not None else f"{'-':>12}"
            fr = lambda v: f"{v:>9.2f}" if v is not None else f"{'-':>9}"
            lines.append(f"{den['depths'][i]:>7}{fmt(tl)}{fmt(dl)}{fr(ra)}{fmt(do)}{fr(ro)}")
    if r.get("figures"):
        lines.append("")
        lines.append(f"figures: {', '.join(Path(p).name for p in r['figures'])} (in {Path(r['run_dir']) / 'figures'})")
    return "\n".join(lines)
