"""Figures of the coupled-depths study (nested ladders L0 2^j): the distance between depths L and
2L against L, and the weight functions of a ladder overlaid (SP Fig. 1 for one ladder)."""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .panels import arr, new_figure

__all__ = ["coupled_distances", "ladder_weight_functions"]

#: The panels of :func:`coupled_distances`: distance key -> title.
PANELS = {"weights": "weight functions (Hypothesis 1 scaling)", "paths": "rescaled paths (Hypothesis 2)",
          "outputs": "outputs f(x)"}


def coupled_distances(result: Mapping[str, Any]) -> Figure:
    """Distance between depths L and 2L against L (log axes), mean over seeds, one line per case:
    solid after training, dashed at initialisation; the legend gives the trained rate r of
    distance ~ L^-r with its 95% interval. ``result``: the study's dict (``cases`` with
    ``trained``/``at_init`` -> ``pair_depths``, ``distances``, ``rates``)."""
    fig, axes = new_figure(len(PANELS), width=5.2 * len(PANELS), height=4.4, left=0.8, top=0.45)
    axes = np.atleast_1d(axes)
    for ax, (key, title) in zip(axes, PANELS.items()):
        for i, c in enumerate(result["cases"]):
            color = f"C{i}"
            for stage, style in (("trained", "o-"), ("at_init", "^--")):
                s = c[stage]
                d = np.asarray(s["distances"][key], float)
                if d.size == 0:
                    continue
                mean = np.nanmean(np.where(d > 0, d, np.nan), axis=0)
                label = None
                if stage == "trained":
                    r = s["rates"][key]
                    rate = "-" if r["rate"] is None else f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                    label = f"{c['label']}: r = {rate}"
                ax.loglog(s["pair_depths"], mean, style, color=color, ms=3.5, lw=1.4 if stage == "trained" else 0.9,
                          label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth L (pair L, 2L)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    axes[0].set_ylabel("distance between depths L and 2L")
    fig.suptitle("nested ladders: solid trained, dashed at initialisation", fontsize=10)
    return fig


def ladder_weight_functions(case: Mapping[str, Any]) -> Figure:
    """The trained weight functions L^beta A_k (one entry, seed 0) of every depth of a ladder
    against k/L, overlaid (a limit shows as curves that settle); ``case``: one case of the study
    (``weight_curves``: ``curves`` depth -> values, ``entry``, ``beta``; ``label``)."""
    w = case["weight_curves"]
    fig, ax = new_figure(width=6.4, height=4.4, left=0.9)
    depths = sorted(w["curves"], key=int)
    cmap = matplotlib.colormaps["viridis"]
    for j, L in enumerate(depths):
        v = arr(w["curves"][L])
        ax.plot(np.arange(v.size) / v.size, v, lw=0.9, color=cmap(j / max(1, len(depths) - 1)), label=f"L = {L}")
    e = ",".join(str(i) for i in w["entry"])
    ax.set_xlabel("t = k / L")
    ax.set_ylabel(f"L^β A_k,({e}), β = {w['beta']:.2f}")
    ax.set_title(f"{case['label']}: trained weight functions of the ladder", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig
