"""What the figures of this package share: the paper's colours, the run styles of SP Figs 2, 3, 5,
9, 10 (synthetic dashed, MNIST solid), the log-log panel of per-seed values against depth
(SP Figs 2-5, 7-10), a least-squares power law, and a new figure with a fixed layout.

A figure here is a :class:`matplotlib.figure.Figure` made without pyplot (no global figure list,
nothing to close); its margins are fixed in inches (:func:`new_figure`), so no layout engine runs
when it is drawn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = ["BLUE", "GREEN", "MNIST", "ONE_RUN", "ORANGE", "PINK", "PURPLE", "RED", "SYNTHETIC", "RunStyle",
           "loglog_line", "loglog_panel", "new_figure"]

#: The paper's colours: pink for the root sum of squares, orange for the beta-scaled increments,
#: green for the trend / denoised weights, purple for the noise; red and blue for maximum norms.
PINK, ORANGE, GREEN, PURPLE, RED, BLUE = "#e7298a", "#ff7f00", "#0D8700", "#7A0087", "#d62728", "#1f77b4"


def arr(v) -> np.ndarray:
    """A list (None for a missing value) as a float array with NaN."""
    return np.array([np.nan if x is None else x for x in v], np.float64)


def arr2(v) -> np.ndarray:
    """A list of lists (None for a missing value) as a 2-d float array with NaN."""
    return np.array([[np.nan if x is None else x for x in row] for row in v], np.float64)


def loglog_line(x, y) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (log x, log y) over the finite,
    positive points; NaN with fewer than two."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float, height: float, left: float = 0.6,
               right: float = 0.15, bottom: float = 0.5, top: float = 0.35, wspace: float = 0.55,
               squeeze: bool = True):
    """A ``width`` x ``height`` inch figure and its ``nrows`` x ``ncols`` axes (as
    ``Figure.subplots``), with margins and the gap between columns fixed in inches: ``left``
    holds the y tick labels (and a y label where there is one), ``bottom`` the x tick labels and
    x label, ``top`` the titles (a suptitle needs more).

    Titles sit at a fixed height (``axes.titley`` = 1): matplotlib's automatic title position
    measures every tick label of the axes at each draw to dodge top-side labels, which these
    figures do not have; it was a third of the drawing time of ``analyze``'s figures."""
    fig = Figure(figsize=(width, height))
    with matplotlib.rc_context({"axes.titley": 1.0}):
        axes = fig.subplots(nrows, ncols, squeeze=squeeze)
    ax_width = (width - left - right - wspace * (ncols - 1)) / ncols
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace / ax_width)
    return fig, axes


@dataclass(frozen=True)
class RunStyle:
    """How one run is drawn in a panel: the line of its seed mean, the marker of its per-seed
    points, the name that prefixes its legend entries ("" for a figure of one run) and the style
    of its fitted power law."""

    line: str = "-"
    marker: str = "o"
    name: str = ""
    fit: str = "k--"

    def label(self, text: str) -> str:
        return f"{self.name}, {text}" if self.name else text


#: One run alone (SP Figs 1-10 of one data set).
ONE_RUN = RunStyle()
#: The two runs of one panel, as SP Figs 2, 3, 5, 9, 10 draw them: synthetic dashed, MNIST solid.
SYNTHETIC = RunStyle(line="--", marker="^", name="synthetic", fit="k:")
MNIST = RunStyle(line="-", marker="o", name="MNIST", fit="k:")


def loglog_panel(ax, depths, per_seed, *, color: str, label: str, slope_label: Optional[str] = None,
                 sign: float = 1.0, offset: float = 0.0, style: RunStyle = ONE_RUN) -> None:
    """Per-seed points (faint), their geometric mean over seeds (line) and its log-log fit
    (thin), SP Figs 2-5 and 7-10, in the line style and markers of ``style``.

    The legend shows ``slope_label`` (e.g. "α = 0.71 ± 0.02") or ``offset + sign * slope``.
    """
    d = np.asarray(depths, np.float64)
    Y = arr2(per_seed)
    for row in Y:
        ax.loglog(d, row, style.marker, ms=2.5, color=color, alpha=0.25)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a depth without any positive value: NaN
        mean = np.exp(np.nanmean(np.log(np.where(Y > 0, Y, np.nan)), axis=0))
    slope, intercept = loglog_line(d, mean)
    if slope_label is None and np.isfinite(slope):
        slope_label = f"{offset + sign * slope:.2f}"
    text = f"{label}: {slope_label}" if slope_label else label
    ax.loglog(d, mean, style.line, lw=2, color=color, label=style.label(text))
    if np.isfinite(slope):
        ax.loglog(d, np.exp(intercept) * d ** slope, style.fit, lw=0.8)
    ax.set_xlabel("depth L")


def exp_label(r: Mapping[str, Any], key: str, sym: str) -> str:
    """"α = 0.71 ± 0.02" from ``r[key]`` and ``r[key + '_sd']`` ("α = -" without a value)."""
    m, sd = r.get(key), r.get(f"{key}_sd")
    if m is None:
        return f"{sym} = -"
    return f"{sym} = {m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
