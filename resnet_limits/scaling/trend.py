"""The trend/noise split of trained weights (SP eqs. 5-8, Fig. 6).

Layer k of a depth-L network sits at k/L; SP eq. 6 reads the weights as
``T_k = L^{-beta} Abar_{k/L} + (W_{(k+1)/L} - W_{k/L})``: a trend Abar and the increments of a
noise W. The trend integral ``I(s) = int_0^s Abar_r dr`` is estimated from rescaled cumulative
sums (SP eq. 7), either common to the largest depths and all seeds (:func:`pooled_trend`) or per
network on a coarse grid (:func:`own_trend`); :func:`denoise` reads Abar off it, and
:func:`split_trend_noise` returns the noise and its quadratic variation (SP eq. 8).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from resnet_limits.scaling.norms import frobenius, pad_seeds

__all__ = [
    "SPLIT_KEYS",
    "denoise",
    "own_grid",
    "own_trend",
    "pooled_trend",
    "rescaled_cumsum",
    "split_common_and_own",
    "split_trend_noise",
    "trend_depths",
    "trend_grid",
    "trend_integral",
    "trend_path",
    "trend_weights",
]

#: The per-network numbers of :func:`split_trend_noise` (the rest are per-layer arrays).
SPLIT_KEYS = ("quadratic_variation", "noise_to_trend", "noise_path_to_trend_path", "noise_lag1_autocorr")


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
    a = trend_weights(I, entry_ndim)  # (..., G, *entry): Abar at midpoints (i + 1/2)/G
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


def trend_depths(depths: Sequence[int], n_trend: int) -> list[int]:
    """The ``n_trend`` largest of the (sorted) ``depths``: those the common trend is taken from."""
    return list(depths[-min(n_trend, len(depths)):])


def trend_grid(depths: Sequence[int], max_grid: int = 200) -> int:
    """Grid size G of the trend common to ``depths`` (those of :func:`trend_depths`):
    min(``max_grid``, the smallest of them), at least 1."""
    return int(max(1, min(max_grid, min(depths))))


def trend_path(T, beta: float, n_grid: int, entry_ndim: int, n_seeds: int) -> np.ndarray:
    """:func:`rescaled_cumsum` of the first ``n_seeds`` networks of ``T`` (S, L, *entry), non-finite
    weights read as 0 and missing seeds as zero paths: (n_seeds, n_grid + 1, *entry)."""
    T = np.nan_to_num(np.asarray(T, np.float64)[:n_seeds])
    return pad_seeds(rescaled_cumsum(T, beta, n_grid, entry_ndim), n_seeds)


def split_common_and_own(
    T, I, beta: float, entry_ndim: int, max_grid: int = 200, valid: Optional[np.ndarray] = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`split_trend_noise` of ``T`` (S, L, *entry) twice: against the common trend integral
    ``I`` (S, G+1, *entry) and against each network's own trend (:func:`own_trend`). The
    :data:`SPLIT_KEYS` numbers of networks with ``valid`` (S,) False are NaN."""
    common = split_trend_noise(T, I, beta, entry_ndim)
    own = split_trend_noise(T, own_trend(T, beta, entry_ndim, max_grid), beta, entry_ndim)
    if valid is not None:
        for sp in (common, own):
            for k in SPLIT_KEYS:
                sp[k] = np.where(valid, sp[k], np.nan)
    return common, own
