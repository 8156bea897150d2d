"""Scaling analysis of trained weights (SP §2.3, Table 1)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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
