"""Figures of the scaling analysis of fully-connected runs: SP Figs 1-6 and App. B (Figs 9-10),
from :func:`resnet_limits.analysis.analyze_run`'s result (plain lists and dicts) and the arrays
it gathers for them; nothing here computes an analysis.

Each ``fig*`` function and each ``*_two_runs`` function returns a
:class:`matplotlib.figure.Figure`; :func:`analysis_figures` and :data:`TWO_RUN_FIGURES` draw and
save them (:func:`resnet_limits.plotting.save`).

The paper draws the synthetic run and the MNIST run in one panel (SP Figs 2, 3, 5, 9, 10: dashed
synthetic, solid MNIST); the ``*_two_runs`` functions draw those from two runs' results. Each
panel is drawn by a helper that puts one run on given axes in a given
:class:`~resnet_limits.plotting.panels.RunStyle`, so the figures of one run and of two share
their drawing code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .panels import (BLUE, GREEN, MNIST, ONE_RUN, ORANGE, PINK, PURPLE, RED, SYNTHETIC, RunStyle, arr,
                     exp_label, loglog_panel, new_figure)
from .save import save

__all__ = ["TWO_RUN_FIGURES", "analysis_figures", "biases_two_runs", "fig1_weights", "fig2_scaling",
           "fig3_hypothesis", "fig4_delta", "fig6_denoised", "figB_biases", "hypothesis_two_runs",
           "scaling_two_runs"]

DPI = 110  # of the saved analysis figures


def _row(n: int, width: float) -> tuple[Figure, Any]:
    """One row of ``n`` panels, 4 in high, room for log tick labels and titles (no y labels)."""
    return new_figure(n, width=width, height=4.0, left=0.7, wspace=0.8, squeeze=False)


def fig1_weights(result: Mapping[str, Any], fig1: Mapping[str, Any], entry: Sequence[int], name: str) -> Figure:
    """SP Fig. 1: rescaled weights L^beta T_{k,entry} against k/L for several depths (left; a
    continuous limit supports Hypothesis 1) and the rescaled cumulative sum
    L^{beta-1} sum_{j<k} T_{j,entry} (right; the ReLU panel of SP Fig. 1); ``fig1`` maps each
    depth to its ``weights`` and ``cumsum`` arrays."""
    beta = result["decomposition"][name]["beta_used"]
    lab = result["labels"][name]
    fig, axes = _row(2, 11.0)
    axes = axes[0]
    cmap = matplotlib.colormaps["viridis"]
    Ls = sorted(int(L) for L in fig1)
    for j, L in enumerate(Ls):
        c = cmap(j / max(1, len(Ls) - 1))
        s = np.arange(L) / L
        axes[0].plot(s, fig1[L]["weights"], lw=0.8, color=c, label=f"L={L}")
        axes[1].plot(s, fig1[L]["cumsum"], lw=1.0, color=c, label=f"L={L}")
    e = ",".join(str(i) for i in entry)
    axes[0].set_title(f"L^β {lab}_k,({e}), β={beta:.2f}")
    axes[1].set_title(f"L^(β-1) Σ_(j<k) {lab}_j,({e})")
    for ax in axes:
        ax.set_xlabel("k / L")
        ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------ one run on given axes ----
# Each helper draws one run's lines of a panel in a given style; a figure calls it once (one
# run) or once per run (the synthetic and the MNIST run of SP Figs 2, 3, 5, 9, 10).

Runs = Sequence[tuple[Mapping[str, Any], RunStyle]]
_CUMSUM = {"A": (RED, "beta", "β"), "b": (PURPLE, "beta_b", "β_b")}


def _delta_max_lines(ax, result: Mapping[str, Any], style: RunStyle = ONE_RUN) -> bool:
    """max |delta| against L, legend alpha (SP Fig. 2 left); False (nothing drawn) for a run
    without delta."""
    t = result["table1"]
    if "delta_max" not in t:
        return False
    loglog_panel(ax, result["depths"], t["delta_max"]["per_seed"], color=BLUE, label="max |δ|",
                 slope_label=exp_label(result, "alpha", "α"), style=style)
    return True


def _cumsum_lines(ax, result: Mapping[str, Any], names: Sequence[str], style: RunStyle = ONE_RUN) -> None:
    """Cumulative sum norms of the tensors ``names`` against L (slope 1 - beta), legend beta
    (SP Fig. 2 right, Fig. 4 left)."""
    for n in names:
        color, key, sym = _CUMSUM[n]
        loglog_panel(ax, result["depths"], result["table1"][n]["cumsum_norm"]["per_seed"], color=color,
                     label=f"‖Σ {result['labels'][n]}‖", slope_label=exp_label(result, key, sym), style=style)


def _hyp_lines(ax, result: Mapping[str, Any], name: str, style: RunStyle = ONE_RUN) -> None:
    """Root sum of squares (pink) and beta-scaled increments (orange, legend -nu) of tensor
    ``name`` against L (SP Figs 3, 5 left; Figs 9, 10 middle)."""
    d = result["depths"]
    t = result["table1"][name]
    loglog_panel(ax, d, t["rss"]["per_seed"], color=PINK, label="root sum of squares", style=style)
    nu = result.get("nu" if name == "A" else "nu_b")
    loglog_panel(ax, d, t["increment"]["per_seed"], color=ORANGE, label="β-scaled increments",
                 slope_label=f"slope {-nu:.2f} (ν = {nu:.2f})" if nu is not None else None, style=style)


def _bias_max_lines(ax, result: Mapping[str, Any], style: RunStyle = ONE_RUN) -> None:
    """max ||b_k|| (or |delta|b) against L, legend -slope (SP Figs 9, 10 left)."""
    loglog_panel(ax, result["depths"], result["table1"]["b"]["max_norm"]["per_seed"], color=RED,
                 label=f"max ‖{result['labels']['b']}_k‖", sign=-1.0, style=style)


def _finish(ax, title: str, fontsize: Optional[float] = None) -> None:
    ax.set_title(title)
    ax.legend(fontsize=fontsize)


def _hyp_panel(ax, runs: Runs, name: str) -> None:
    for result, style in runs:
        _hyp_lines(ax, result, name, style)
    _finish(ax, f"{runs[-1][0]['labels'][name]}: Table-1 norms", 8)


def _decomp_panel(ax, result, dec: Mapping[str, Any], entry, name: str) -> None:
    """The trend/noise decomposition of one entry at the largest depth (SP Figs 3, 5, 9, 10 right)."""
    L = dec["depth"]
    s = np.arange(L) / L
    lab = result["labels"][name]
    bar = "Ā" if name == "A" else "b̄"
    e = ",".join(str(i) for i in entry)
    ax.plot(s, dec["weights"], ".", ms=1.5, color="0.6", label=f"L^β {lab}_k,({e})")
    ax.plot(s, dec["trend"], "-", lw=2, color=GREEN, label=f"trend {bar} (largest depths, SP eq. 7)")
    if "own_trend" in dec:
        ax.plot(s, dec["own_trend"], "--", lw=1.5, color="#66c2a5", label="this network's trend")
    ax.plot(s, dec["noise_path"], "-", lw=1.5, color=PURPLE, label="noise W (L^(β-1) scaled)")
    r = result["decomposition"][name]["noise_to_trend_used"]
    ax.set_title(f"decomposition at L={L}, noise/trend {r:.2g}" if r is not None else f"decomposition at L={L}")
    ax.set_xlabel("k / L")
    ax.legend(fontsize=8)


# ------------------------------------------------------------ figures of one or two runs ---
# ``runs``: (result, style) pairs drawn into the same panels; a decomposition (``dec``) belongs
# to the first run (SP Figs 3, 5, 9, 10 show the synthetic one).

def _scaling_figure(runs: Runs, names: Sequence[str], titles: Sequence[str]) -> Figure:
    fig, axes = _row(2, 11.0)
    axes = axes[0]
    if any([_delta_max_lines(axes[0], result, style) for result, style in runs]):
        _finish(axes[0], titles[0])
    else:
        axes[0].set_visible(False)
    for result, style in runs:
        _cumsum_lines(axes[1], result, names, style)
    _finish(axes[1], titles[1])
    return fig


def _hypothesis_figure(runs: Runs, dec: Optional[Mapping[str, Any]], entry, name: str) -> Figure:
    fig, axes = _row(1, 5.5) if dec is None else _row(2, 11.0)
    _hyp_panel(axes[0, 0], runs, name)
    if dec is not None:
        _decomp_panel(axes[0, 1], runs[0][0], dec, entry, name)
    return fig


def _biases_figure(runs: Runs, dec: Optional[Mapping[str, Any]], entry) -> Figure:
    n = 2 if dec is None else 3
    fig, axes = _row(n, 5.0 * n)
    axes = axes[0]
    for result, style in runs:
        _bias_max_lines(axes[0], result, style)
    _finish(axes[0], f"maximum norm of {runs[-1][0]['labels']['b']} (legend: -slope)")
    _hyp_panel(axes[1], runs, "b")
    if dec is not None:
        _decomp_panel(axes[2], runs[0][0], dec, entry, "b")
    return fig


def fig2_scaling(result: Mapping[str, Any]) -> Figure:
    """SP Fig. 2 (tanh) / Fig. 4 left (ReLU): max |delta| against L with slope -alpha (left) and
    the cumulative sum norms of A and b against L with slope 1 - beta (right)."""
    return _scaling_figure([(result, ONE_RUN)], ("A", "b"),
                           ("maximum norm of δ (SP Fig. 2 left)", "cumulative sum norm, slope 1-β"))


def fig3_hypothesis(result: Mapping[str, Any], dec: Mapping[str, Any], entry, name: str) -> Figure:
    """SP Fig. 3 (tanh) / Fig. 5 (ReLU): root sum of squares and beta-scaled increments against L
    (left) and the trend/noise decomposition of one entry at the largest depth (right)."""
    return _hypothesis_figure([(result, ONE_RUN)], dec, entry, name)


def fig4_delta(result: Mapping[str, Any], delta_largest: Optional[Mapping[str, Any]]) -> Figure:
    """SP Fig. 4: cumulative sum norm of |delta|A (or A) against L (left) and the trained
    delta_k against k at the largest depth (right, hidden without ``delta_largest``; its sign
    changes for ReLU)."""
    fig, axes = _row(2, 11.0)
    axes = axes[0]
    _cumsum_lines(axes[0], result, ("A",))
    _finish(axes[0], f"cumulative sum norm of {result['labels']['A']}")
    if delta_largest is not None:
        dl = np.atleast_1d(np.asarray(delta_largest["delta"], np.float64))
        L = int(delta_largest["depth"])
        if dl.size == 1:
            dl = np.full(L, dl[0])
        axes[1].plot(np.arange(L), dl, lw=0.3 if L > 500 else 1.0, color=BLUE)
        flips = float(np.mean(np.sign(dl[1:]) != np.sign(dl[:-1]))) if L > 1 else 0.0
        axes[1].set_title(f"δ_k at L={L} (sign changes between neighbours: {flips:.0%})")
        axes[1].set_xlabel("layer k")
    else:
        axes[1].set_visible(False)
    return fig


def fig6_denoised(result: Mapping[str, Any]) -> Figure:
    """SP Fig. 6: training loss against L for the trained weights (black) and the denoised
    weights Atilde_k = L^-beta Abar_{k/L} (green dashed: Abar common to the largest depths;
    green dotted: each network's own coarse-grained trend); shaded: below epsilon."""
    den = result["denoised"]
    d = np.asarray(den["depths"], float)
    fig, ax = new_figure(width=6.0, height=4.0, left=0.9)
    tl, dl = arr(den["trained_loss"]), arr(den["denoised_loss"])
    eps = den.get("epsilon")
    if eps:
        ax.axhspan(min(np.nanmin(np.r_[tl, dl, eps]) * 0.5, eps), eps, color="#fefef2", ec="0.85", zorder=0)
    ax.loglog(d, tl, "k--", lw=2.5, label="trained weights")
    ax.loglog(d, dl, "--", color=GREEN, lw=2.5, label="denoised weights (common trend)")
    if den.get("denoised_own_loss") is not None:
        ax.loglog(d, arr(den["denoised_own_loss"]), ":", color=GREEN, lw=2.0, label="denoised (own trend)")
    ax.set_xlabel("depth L")
    ax.set_ylabel("training loss")
    ax.set_title("loss with denoised weights (SP Fig. 6)")
    ax.legend()
    return fig


def figB_biases(result: Mapping[str, Any], dec: Optional[Mapping[str, Any]], entry) -> Figure:
    """SP App. B, Figs 9 (tanh) / 10 (ReLU): maximum norm of b (or |delta|b) against L (left),
    its root sum of squares and beta-scaled increments (middle), its decomposition (right; left
    out without ``dec``)."""
    return _biases_figure([(result, ONE_RUN)], dec, entry)


def analysis_figures(result: Mapping[str, Any], figdata: Mapping[str, Any], out_dir, *,
                     denoised: bool = True) -> list[str]:
    """Draw and save all figures of one analysed run into ``out_dir`` (SP Figs 1 (A and b), 2,
    3/5, 4, 6 and 9/10); returns their paths. ``denoised=False`` leaves out SP Fig. 6 (the
    analysis draws it last, once the denoised losses are in)."""
    out = Path(out_dir)
    paths: list[str] = []

    def put(fig: Figure, name: str) -> None:
        paths.append(save(fig, out / name, dpi=DPI))

    ent = figdata["entry"]
    for n in ("A", "b"):
        if figdata["fig1"].get(n):
            put(fig1_weights(result, figdata["fig1"][n], ent[n], n), f"fig1_weights_{n}.png")
    put(fig2_scaling(result), "fig2_scaling.png")
    decs = figdata.get("decomposition", {})
    if "A" in decs:
        put(fig3_hypothesis(result, decs["A"], ent["A"], "A"), "fig3_5_hypothesis_A.png")
    put(fig4_delta(result, figdata.get("delta_largest")), "fig4_delta.png")
    if denoised and not (result.get("denoised") or {}).get("skipped"):  # imported weights: no training data
        put(fig6_denoised(result), "fig6_denoised.png")
    put(figB_biases(result, decs.get("b"), ent["b"]), "figB_9_10_biases.png")
    return paths


# ------------------------------------------------------------ two runs in one panel ----

def _two(synthetic: Mapping[str, Any], mnist: Mapping[str, Any]) -> Runs:
    return [(synthetic, SYNTHETIC), (mnist, MNIST)]


def scaling_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any]) -> Figure:
    """SP Fig. 2 (tanh): max |delta| against L, slope -alpha (left), and the cumulative sum norm
    of A against L, slope 1 - beta (right), for the synthetic run (dashed) and the MNIST run
    (solid), each one's fitted exponents in the legend. For ReLU the right panel is SP Fig. 4
    (left), the cumulative sum norm of |delta|A."""
    lab = mnist["labels"]["A"]
    return _scaling_figure(_two(synthetic, mnist), ("A",),
                           ("maximum norm of δ", f"cumulative sum norm of {lab}, slope 1-β"))


def hypothesis_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], *,
                        dec: Optional[Mapping[str, Any]] = None, entry: Sequence[int] = ()) -> Figure:
    """SP Fig. 3 (tanh) / Fig. 5 (ReLU), left: root sum of squares (pink) and beta-scaled
    increments (orange, legend -nu) of A (|delta|A) against L, synthetic dashed, MNIST solid;
    with ``dec`` (the synthetic run's decomposition arrays at its largest depth, entry
    ``entry``) also the right panel, its trend/noise decomposition."""
    return _hypothesis_figure(_two(synthetic, mnist), dec, entry, "A")


def biases_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], *,
                    dec: Optional[Mapping[str, Any]] = None, entry: Sequence[int] = ()) -> Figure:
    """SP App. B, Fig. 9 (tanh) / Fig. 10 (ReLU): maximum norm of b (|delta|b) against L (left)
    and its root sum of squares and beta-scaled increments (middle), synthetic dashed, MNIST
    solid; with ``dec`` also the synthetic run's decomposition of b (right)."""
    return _biases_figure(_two(synthetic, mnist), dec, entry)


def _saving(draw: Callable[..., Figure]) -> Callable[..., str]:
    def draw_and_save(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], path) -> str:
        return save(draw(synthetic, mnist), path, dpi=DPI)

    draw_and_save.__name__ = draw_and_save.__qualname__ = f"save_{draw.__name__}"
    draw_and_save.__doc__ = f"Save :func:`{draw.__name__}` of ``synthetic`` and ``mnist`` to ``path``; returns it."
    return draw_and_save


#: The figures of two runs (synthetic dashed, MNIST solid) by name, each drawn and saved:
#: ``TWO_RUN_FIGURES[kind](synthetic, mnist, path) -> str`` (SP Fig. 2 "scaling", Figs 3/5
#: "hypothesis", Figs 9/10 "biases").
TWO_RUN_FIGURES = {"scaling": _saving(scaling_two_runs), "hypothesis": _saving(hypothesis_two_runs),
                   "biases": _saving(biases_two_runs)}
