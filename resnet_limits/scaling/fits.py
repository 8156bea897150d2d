"""Exponents by log-log least squares, per seed, then summarised over seeds (SP §2.3 steps 1-3)."""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "LogLogFit",
    "fit_alpha",
    "fit_exponents",
    "fit_seeds",
    "finite_or_none",
    "loglog_fit",
    "median_at",
    "nanmean_seeds",
    "summarize_exponent",
    "usable_beta",
]


def finite_or_none(x) -> Optional[float]:
    """``x`` as a float if it is a finite number, else None (a NaN or +-Inf fit, a missing value;
    JSON's null)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


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


def _summarize_fits(values, fits: Sequence[LogLogFit]) -> dict[str, Any]:
    return summarize_exponent(values, [f.stderr for f in fits], [f.n for f in fits])


def fit_exponents(depths, quantities: Mapping[str, np.ndarray], valid, *, beta=None) -> dict[str, dict]:
    """Exponents of one tensor from its Table-1 quantities over depths (SP §2.3 steps 2-3).

    ``quantities``: arrays (S, n_depths) named as in :func:`~resnet_limits.scaling.table1`.
    ``beta`` (per seed, or None to use each seed's own fit) scales the increments. Returns
    summaries (see :func:`summarize_exponent`) of

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

    f_cum = fits(quantities["cumsum_norm"])
    beta_seed = np.array([1.0 - f.slope for f in f_cum])
    out = {"beta": _summarize_fits(beta_seed, f_cum)}
    b_for_nu = beta_seed if beta is None else np.broadcast_to(np.asarray(beta, np.float64), beta_seed.shape)
    f_inc = fits(quantities["max_increment"])
    out["nu"] = _summarize_fits(np.array([-(f.slope + bb) for f, bb in zip(f_inc, b_for_nu)]), f_inc)
    f_max = fits(quantities["max_norm"])
    out["beta_max"] = _summarize_fits(np.array([-f.slope for f in f_max]), f_max)
    f_rss = fits(quantities["rss"])
    out["rss_slope"] = _summarize_fits(np.array([f.slope for f in f_rss]), f_rss)
    with np.errstate(divide="ignore", invalid="ignore"):
        conc = np.asarray(quantities["max_norm"]) / np.asarray(quantities["rss"])
    f_k = fits(conc)
    out["kappa"] = _summarize_fits(np.array([f.slope for f in f_k]), f_k)
    return out


def fit_alpha(depths, delta_max, valid) -> dict[str, Any]:
    """alpha = -slope of max_k |delta_k| against L, per seed (SP §2.3 step 1)."""
    fs = fit_seeds(depths, delta_max, valid)
    return _summarize_fits([-f.slope for f in fs], fs)


def usable_beta(exponents: Mapping[str, Mapping[str, Any]]) -> float:
    """The fitted mean beta of :func:`fit_exponents`, or 0 where the fit failed: the beta that
    rescales the weights in the trend/noise split (SP eqs. 6-7)."""
    b = float(exponents["beta"]["mean"])
    return b if math.isfinite(b) else 0.0


def nanmean_seeds(a) -> np.ndarray:
    """Mean over the seed axis (0) of the finite entries; NaN where no seed is finite."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def median_at(a, columns: Sequence[int]) -> float:
    """Median of the finite entries of ``a[:, columns]`` (seeds x chosen depths); NaN if none."""
    a = np.asarray(a, np.float64)[:, list(columns)]
    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")
