"""Figures of the scaling analysis: SP Figures 1-8 and App. B (Figs 9-10), from
:func:`resnet_limits.analysis.analyze_run`'s result (plain lists and dicts) and the arrays it
gathers for them; nothing here computes an analysis.

Every function writes one PNG (matplotlib, Agg backend) and returns its path. Colours follow
the paper: pink for the root sum of squares, orange for the beta-scaled increments, green for
the trend / denoised weights, purple for the noise, black for the trained loss.

The paper draws the synthetic run and the MNIST run in one panel (SP Figs 2, 3, 5, 9, 10: dashed
synthetic, solid MNIST); :data:`TWO_RUN_FIGURES` draws those from two runs' results. Each panel
is drawn by a helper that puts one run on given axes in a given :class:`RunStyle`, so the figures
of one run and of two share their drawing code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "MNIST",
    "ONE_RUN",
    "SYNTHETIC",
    "TWO_RUN_FIGURES",
    "RunStyle",
    "analysis_figures",
    "biases_two_runs",
    "conv_figures",
    "fig7_conv_norms",
    "fig8_conv_hypotheses",
    "fig1_weights",
    "fig2_scaling",
    "fig3_hypothesis",
    "fig4_delta",
    "fig6_denoised",
    "figB_biases",
    "hypothesis_two_runs",
    "loglog_panel",
    "scaling_two_runs",
]

PINK, ORANGE, GREEN, PURPLE, RED, BLUE = "#e7298a", "#ff7f00", "#0D8700", "#7A0087", "#d62728", "#1f77b4"


def _arr(v) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in v], np.float64)


def _arr2(v) -> np.ndarray:
    return np.array([[np.nan if x is None else x for x in row] for row in v], np.float64)


def _loglog_line(x, y) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (log x, log y) over the finite,
    positive points; NaN with fewer than two."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


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
    (thin), SP Figs 2-5, in the line style and markers of ``style``.

    The legend shows ``slope_label`` (e.g. "α = 0.71 ± 0.02") or ``offset + sign * slope``.
    """
    d = np.asarray(depths, np.float64)
    Y = _arr2(per_seed)
    for row in Y:
        ax.loglog(d, row, style.marker, ms=2.5, color=color, alpha=0.25)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a depth without any positive value: NaN
        mean = np.exp(np.nanmean(np.log(np.where(Y > 0, Y, np.nan)), axis=0))
    slope, intercept = _loglog_line(d, mean)
    if slope_label is None and np.isfinite(slope):
        slope_label = f"{offset + sign * slope:.2f}"
    text = f"{label}: {slope_label}" if slope_label else label
    ax.loglog(d, mean, style.line, lw=2, color=color, label=style.label(text))
    if np.isfinite(slope):
        ax.loglog(d, np.exp(intercept) * d ** slope, style.fit, lw=0.8)
    ax.set_xlabel("depth L")


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _exp_label(r: Mapping[str, Any], key: str, sym: str) -> str:
    m, sd = r.get(key), r.get(f"{key}_sd")
    if m is None:
        return f"{sym} = -"
    return f"{sym} = {m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def fig1_weights(result: Mapping[str, Any], fig1: Mapping[str, Any], entry: Sequence[int], name: str,
                 path: Path) -> str:
    """SP Fig. 1: rescaled weights L^beta T_{k,entry} against k/L for several depths (left; a
    continuous limit supports Hypothesis 1) and the rescaled cumulative sum
    L^{beta-1} sum_{j<k} T_{j,entry} (right; the ReLU panel of SP Fig. 1)."""
    beta = result["decomposition"][name]["beta_used"]
    lab = result["labels"][name]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
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
    return _save(fig, path)


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
                 slope_label=_exp_label(result, "alpha", "α"), style=style)
    return True


def _cumsum_lines(ax, result: Mapping[str, Any], names: Sequence[str], style: RunStyle = ONE_RUN) -> None:
    """Cumulative sum norms of the tensors ``names`` against L (slope 1 - beta), legend beta
    (SP Fig. 2 right, Fig. 4 left)."""
    for n in names:
        color, key, sym = _CUMSUM[n]
        loglog_panel(ax, result["depths"], result["table1"][n]["cumsum_norm"]["per_seed"], color=color,
                     label=f"‖Σ {result['labels'][n]}‖", slope_label=_exp_label(result, key, sym), style=style)


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
    L = dec["depth"]
    s = np.arange(L) / L
    lab = result["labels"][name]
    bar = "Ā" if name == "A" else "b̄"
    e = ",".join(str(i) for i in entry)
    ax.plot(s, dec["weights"], ".", ms=1.5, color="0.6", label=f"L^β {lab}_k,({e})")
    ax.plot(s, dec["trend"], "-", lw=2, color=GREEN, label=f"trend {bar} (largest depths, SP eq. 7)")
    if "own_trend" in dec:
        ax.plot(s, dec["own_trend"], "--", lw=1.5, color="#66c2a5", label=f"this network's trend")
    ax.plot(s, dec["noise_path"], "-", lw=1.5, color=PURPLE, label="noise W (L^(β-1) scaled)")
    r = result["decomposition"][name]["noise_to_trend_used"]
    ax.set_title(f"decomposition at L={L}, noise/trend {r:.2g}" if r is not None else f"decomposition at L={L}")
    ax.set_xlabel("k / L")
    ax.legend(fontsize=8)


# ------------------------------------------------------------ figures of one or two runs ---
# ``runs``: (result, style) pairs drawn into the same panels; a decomposition (``dec``) belongs
# to the first run (SP Figs 3, 5, 9, 10 show the synthetic one).

def _scaling_figure(runs: Runs, names: Sequence[str], titles: Sequence[str], path: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if any([_delta_max_lines(axes[0], result, style) for result, style in runs]):
        _finish(axes[0], titles[0])
    else:
        axes[0].set_visible(False)
    for result, style in runs:
        _cumsum_lines(axes[1], result, names, style)
    _finish(axes[1], titles[1])
    return _save(fig, path)


def _hypothesis_figure(runs: Runs, dec: Optional[Mapping[str, Any]], entry, name: str, path: Path) -> str:
    fig, axes = plt.subplots(1, 1 if dec is None else 2, figsize=(5.5 if dec is None else 11, 4), squeeze=False)
    _hyp_panel(axes[0, 0], runs, name)
    if dec is not None:
        _decomp_panel(axes[0, 1], runs[0][0], dec, entry, name)
    return _save(fig, path)


def _biases_figure(runs: Runs, dec: Optional[Mapping[str, Any]], entry, path: Path) -> str:
    n = 2 if dec is None else 3
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4))
    for result, style in runs:
        _bias_max_lines(axes[0], result, style)
    _finish(axes[0], f"maximum norm of {runs[-1][0]['labels']['b']} (legend: -slope)")
    _hyp_panel(axes[1], runs, "b")
    if dec is not None:
        _decomp_panel(axes[2], runs[0][0], dec, entry, "b")
    return _save(fig, path)


def fig2_scaling(result: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 2 (tanh) / Fig. 4 left (ReLU): max |delta| against L with slope -alpha (left) and
    the cumulative sum norms of A and b against L with slope 1 - beta (right)."""
    return _scaling_figure([(result, ONE_RUN)], ("A", "b"),
                           ("maximum norm of δ (SP Fig. 2 left)", "cumulative sum norm, slope 1-β"), path)


def fig3_hypothesis(result: Mapping[str, Any], dec: Mapping[str, Any], entry, name: str, path: Path) -> str:
    """SP Fig. 3 (tanh) / Fig. 5 (ReLU): root sum of squares and beta-scaled increments against L
    (left) and the trend/noise decomposition of one entry at the largest depth (right)."""
    return _hypothesis_figure([(result, ONE_RUN)], dec, entry, name, path)


def fig4_delta(result: Mapping[str, Any], delta_largest: Optional[Mapping[str, Any]], path: Path) -> str:
    """SP Fig. 4: cumulative sum norm of |delta|A (or A) against L (left) and the trained
    delta_k against k at the largest depth (right; its sign changes for ReLU)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
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
    return _save(fig, path)


def fig6_denoised(result: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 6: training loss against L for the trained weights (black) and the denoised
    weights Atilde_k = L^-beta Abar_{k/L} (green dashed: Abar common to the largest depths;
    green dotted: each network's own coarse-grained trend); shaded: below epsilon."""
    den = result["denoised"]
    d = np.asarray(den["depths"], float)
    fig, ax = plt.subplots(figsize=(6, 4))
    tl, dl = _arr(den["trained_loss"]), _arr(den["denoised_loss"])
    eps = den.get("epsilon")
    if eps:
        ax.axhspan(min(np.nanmin(np.r_[tl, dl, eps]) * 0.5, eps), eps, color="#fefef2", ec="0.85", zorder=0)
    ax.loglog(d, tl, "k--", lw=2.5, label="trained weights")
    ax.loglog(d, dl, "--", color=GREEN, lw=2.5, label="denoised weights (common trend)")
    if den.get("denoised_own_loss") is not None:
        ax.loglog(d, _arr(den["denoised_own_loss"]), ":", color=GREEN, lw=2.0, label="denoised (own trend)")
    ax.set_xlabel("depth L")
    ax.set_ylabel("training loss")
    ax.set_title("loss with denoised weights (SP Fig. 6)")
    ax.legend()
    return _save(fig, path)


def figB_biases(result: Mapping[str, Any], dec: Optional[Mapping[str, Any]], entry, path: Path) -> str:
    """SP App. B, Figs 9 (tanh) / 10 (ReLU): maximum norm of b (or |delta|b) against L (left),
    its root sum of squares and beta-scaled increments (middle), its decomposition (right)."""
    return _biases_figure([(result, ONE_RUN)], dec, entry, path)


def analysis_figures(result: Mapping[str, Any], figdata: Mapping[str, Any], out_dir) -> list[str]:
    """All figures of one analysed run into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    paths = []
    ent = figdata["entry"]
    for n in ("A", "b"):
        if figdata["fig1"].get(n):
            paths.append(fig1_weights(result, figdata["fig1"][n], ent[n], n, out / f"fig1_weights_{n}.png"))
    paths.append(fig2_scaling(result, out / "fig2_scaling.png"))
    decs = figdata.get("decomposition", {})
    if "A" in decs:
        paths.append(fig3_hypothesis(result, decs["A"], ent["A"], "A", out / "fig3_5_hypothesis_A.png"))
    paths.append(fig4_delta(result, figdata.get("delta_largest"), out / "fig4_delta.png"))
    if not (result.get("denoised") or {}).get("skipped"):  # imported weights: no training data
        paths.append(fig6_denoised(result, out / "fig6_denoised.png"))
    paths.append(figB_biases(result, decs.get("b"), ent["b"], out / "figB_9_10_biases.png"))
    return paths


# ------------------------------------------------------------ two runs in one panel ----

def _two(synthetic: Mapping[str, Any], mnist: Mapping[str, Any]) -> Runs:
    return [(synthetic, SYNTHETIC), (mnist, MNIST)]


def scaling_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 2 (tanh): max |delta| against L, slope -alpha (left), and the cumulative sum norm
    of A against L, slope 1 - beta (right), for the synthetic run (dashed) and the MNIST run
    (solid), each one's fitted exponents in the legend. For ReLU the right panel is SP Fig. 4
    (left), the cumulative sum norm of |delta|A."""
    lab = mnist["labels"]["A"]
    return _scaling_figure(_two(synthetic, mnist), ("A",),
                           ("maximum norm of δ", f"cumulative sum norm of {lab}, slope 1-β"), path)


def hypothesis_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], path: Path, *,
                        dec: Optional[Mapping[str, Any]] = None, entry: Sequence[int] = ()) -> str:
    """SP Fig. 3 (tanh) / Fig. 5 (ReLU), left: root sum of squares (pink) and beta-scaled
    increments (orange, legend -nu) of A (|delta|A) against L, synthetic dashed, MNIST solid;
    with ``dec`` (the synthetic run's decomposition arrays at its largest depth, entry
    ``entry``) also the right panel, its trend/noise decomposition."""
    return _hypothesis_figure(_two(synthetic, mnist), dec, entry, "A", path)


def biases_two_runs(synthetic: Mapping[str, Any], mnist: Mapping[str, Any], path: Path, *,
                    dec: Optional[Mapping[str, Any]] = None, entry: Sequence[int] = ()) -> str:
    """SP App. B, Fig. 9 (tanh) / Fig. 10 (ReLU): maximum norm of b (|delta|b) against L (left)
    and its root sum of squares and beta-scaled increments (middle), synthetic dashed, MNIST
    solid; with ``dec`` also the synthetic run's decomposition of b (right)."""
    return _biases_figure(_two(synthetic, mnist), dec, entry, path)


#: The figures of two runs (synthetic, MNIST) by name: ``TWO_RUN_FIGURES[kind](synthetic, mnist, path)``.
TWO_RUN_FIGURES = {"scaling": scaling_two_runs, "hypothesis": hypothesis_two_runs, "biases": biases_two_runs}


# ------------------------------------------------------------ convolutional runs -------

_CONV_TITLES = {"Delta": "Δ_k", "A": "A_k"}


def fig7_conv_norms(result: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 7: operator norm of every kernel Delta_k (left) and A_k (right) against L (blue
    points) and their maximum over k (red line, legend -slope = alpha resp. beta); log-log."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    d = result["depths"]
    for ax, (name, key) in zip(axes, (("Delta", "alpha"), ("A", "beta"))):
        per = [result["per_depth"][str(L)][name] for L in d]
        for L, e in zip(d, per):
            ax.loglog([L] * len(e["norms"]), _arr(e["norms"]), "o", ms=2.5, color=BLUE, alpha=0.4)
        sym = "α" if key == "alpha" else "β"
        loglog_panel(ax, d, [[e["max_norm"] for e in per]], color=RED, label=f"max_k ‖{_CONV_TITLES[name]}‖",
                     slope_label=_exp_label(result, key, sym))
        ax.set_title(f"operator norms of {_CONV_TITLES[name]} (SP Fig. 7)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def fig8_conv_hypotheses(result: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 8: root sum of squares (pink) and the alpha-scaled (Delta_k, left) resp.
    beta-scaled (A_k, right) norm of increments (orange) against L; log-log."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    d = result["depths"]
    for ax, (name, sym) in zip(axes, (("Delta", "α"), ("A", "β"))):
        per = [result["per_depth"][str(L)][name] for L in d]
        loglog_panel(ax, d, [[e["rss"] for e in per]], color=PINK, label="root sum of squares")
        loglog_panel(ax, d, [[e.get("scaled_increment") for e in per]], color=ORANGE,
                     label=f"{sym}-scaled increments")
        ax.set_title(f"{_CONV_TITLES[name]}: Table-1 norms (SP Fig. 8)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def conv_figures(result: Mapping[str, Any], out_dir) -> list[str]:
    """SP Figs 7 and 8 of an analysed convolutional run into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    return [fig7_conv_norms(result, out / "fig7_conv_norms.png"),
            fig8_conv_hypotheses(result, out / "fig8_conv_hypotheses.png")]
