"""Figures of convolutional runs: SP Figs 7 and 8, from the result of
:func:`resnet_limits.analysis.conv.analyze_conv_run` (plain lists and dicts: ``depths``, ``alpha``,
``beta``, ``per_depth[str(L)][kernel]`` with ``norms``, ``max_norm``, ``rss``,
``scaled_increment``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matplotlib.figure import Figure

from .panels import BLUE, ORANGE, PINK, RED, arr, exp_label, loglog_panel, new_figure
from .save import save

__all__ = ["conv_figures", "fig7_conv_norms", "fig8_conv_hypotheses"]

_CONV_TITLES = {"Delta": "Δ_k", "A": "A_k"}
DPI = 110


def _two_panels() -> tuple[Figure, Any]:
    return new_figure(2, width=11.0, height=4.0, left=0.7, wspace=0.8)


def fig7_conv_norms(result: Mapping[str, Any]) -> Figure:
    """SP Fig. 7: operator norm of every kernel Delta_k (left) and A_k (right) against L (blue
    points) and their maximum over k (red line, legend -slope = alpha resp. beta); log-log."""
    fig, axes = _two_panels()
    d = result["depths"]
    for ax, (name, key) in zip(axes, (("Delta", "alpha"), ("A", "beta"))):
        per = [result["per_depth"][str(L)][name] for L in d]
        for L, e in zip(d, per):
            ax.loglog([L] * len(e["norms"]), arr(e["norms"]), "o", ms=2.5, color=BLUE, alpha=0.4)
        sym = "α" if key == "alpha" else "β"
        loglog_panel(ax, d, [[e["max_norm"] for e in per]], color=RED, label=f"max_k ‖{_CONV_TITLES[name]}‖",
                     slope_label=exp_label(result, key, sym))
        ax.set_title(f"operator norms of {_CONV_TITLES[name]} (SP Fig. 7)")
        ax.legend(fontsize=8)
    return fig


def fig8_conv_hypotheses(result: Mapping[str, Any]) -> Figure:
    """SP Fig. 8: root sum of squares (pink) and the alpha-scaled (Delta_k, left) resp.
    beta-scaled (A_k, right) norm of increments (orange) against L; log-log."""
    fig, axes = _two_panels()
    d = result["depths"]
    for ax, (name, sym) in zip(axes, (("Delta", "α"), ("A", "β"))):
        per = [result["per_depth"][str(L)][name] for L in d]
        loglog_panel(ax, d, [[e["rss"] for e in per]], color=PINK, label="root sum of squares")
        loglog_panel(ax, d, [[e.get("scaled_increment") for e in per]], color=ORANGE,
                     label=f"{sym}-scaled increments")
        ax.set_title(f"{_CONV_TITLES[name]}: Table-1 norms (SP Fig. 8)")
        ax.legend(fontsize=8)
    return fig


def conv_figures(result: Mapping[str, Any], out_dir) -> list[str]:
    """Draw and save SP Figs 7 and 8 of an analysed convolutional run into ``out_dir``; returns
    their paths."""
    out = Path(out_dir)
    return [save(fig7_conv_norms(result), out / "fig7_conv_norms.png", dpi=DPI),
            save(fig8_conv_hypotheses(result), out / "fig8_conv_hypotheses.png", dpi=DPI)]
