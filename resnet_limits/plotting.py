"""Figures of the scaling analysis: SP Figures 1-8 and App. B (Figs 9-10), from
:func:`resnet_limits.analysis.analyze_run`'s result (plain lists and dicts) and the arrays it
gathers for them; nothing here computes an analysis.

Every function writes one PNG (matplotlib, Agg backend) and returns its path. Colours follow
the paper: pink for the root sum of squares, orange for the beta-scaled increments, green for
the trend / denoised weights, purple for the noise, black for the trained loss.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "analysis_figures",
    "conv_figures",
    "fig7_conv_norms",
    "fig8_conv_hypotheses",
    "fig1_weights",
    "fig2_scaling",
    "fig3_hypothesis",
    "fig4_delta",
    "fig6_denoised",
    "figB_biases",
    "loglog_panel",
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


def loglog_panel(ax, depths, per_seed, *, color: str, label: str, slope_label: Optional[str] = None,
                 sign: float = 1.0, offset: float = 0.0) -> None:
    """Per-seed points (faint), their geometric mean over seeds (line) and its log-log fit
    (dashed), SP Figs 2-5.

    The legend shows ``slope_label`` (e.g. "α = 0.71 ± 0.02") or ``offset + sign * slope``.
    """
    d = np.asarray(depths, np.float64)
    Y = _arr2(per_seed)
    for row in Y:
        ax.loglog(d, row, "o", ms=2.5, color=color, alpha=0.25)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a depth without any positive value: NaN
        mean = np.exp(np.nanmean(np.log(np.where(Y > 0, Y, np.nan)), axis=0))
    slope, intercept = _loglog_line(d, mean)
    if slope_label is None and np.isfinite(slope):
        slope_label = f"{offset + sign * slope:.2f}"
    ax.loglog(d, mean, "-", lw=2, color=color, label=f"{label}: {slope_label}" if slope_label else label)
    if np.isfinite(slope):
        ax.loglog(d, np.exp(intercept) * d ** slope, "k--", lw=0.8)
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


def fig2_scaling(result: Mapping[str, Any], path: Path) -> str:
    """SP Fig. 2 (tanh) / Fig. 4 left (ReLU): max |delta| against L with slope -alpha (left) and
    the cumulative sum norms of A and b against L with slope 1 - beta (right)."""
    d = result["depths"]
    t = result["table1"]
    lab = result["labels"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "delta_max" in t:
        loglog_panel(axes[0], d, t["delta_max"]["per_seed"], color=BLUE, label="max |δ|",
                     slope_label=_exp_label(result, "alpha", "α"))
        axes[0].set_title("maximum norm of δ (SP Fig. 2 left)")
        axes[0].legend()
    else:
        axes[0].set_visible(False)
    loglog_panel(axes[1], d, t["A"]["cumsum_norm"]["per_seed"], color=RED, label=f"‖Σ {lab['A']}‖",
                 slope_label=_exp_label(result, "beta", "β"))
    loglog_panel(axes[1], d, t["b"]["cumsum_norm"]["per_seed"], color=PURPLE, label=f"‖Σ {lab['b']}‖",
                 slope_label=_exp_label(result, "beta_b", "β_b"))
    axes[1].set_title("cumulative sum norm, slope 1-β")
    axes[1].legend()
    return _save(fig, path)


def _hyp_panel(ax, result, name: str) -> None:
    d = result["depths"]
    t = result["table1"][name]
    lab = result["labels"][name]
    loglog_panel(ax, d, t["rss"]["per_seed"], color=PINK, label="root sum of squares")
    nu_key = "nu" if name == "A" else "nu_b"
    nu = result.get(nu_key)
    loglog_panel(ax, d, t["increment"]["per_seed"], color=ORANGE, label="β-scaled increments",
                 slope_label=f"slope {-nu:.2f} (ν = {nu:.2f})" if nu is not None else None)
    ax.set_title(f"{lab}: Table-1 norms")
    ax.legend(fontsize=8)


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


def fig3_hypothesis(result: Mapping[str, Any], dec: Mapping[str, Any], entry, name: str, path: Path) -> str:
    """SP Fig. 3 (tanh) / Fig. 5 (ReLU): root sum of squares and beta-scaled increments against L
    (left) and the trend/noise decomposition of one entry at the largest depth (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _hyp_panel(axes[0], result, name)
    _decomp_panel(axes[1], result, dec, entry, name)
    return _save(fig, path)


def fig4_delta(result: Mapping[str, Any], delta_largest: Optional[Mapping[str, Any]], path: Path) -> str:
    """SP Fig. 4: cumulative sum norm of |delta|A (or A) against L (left) and the trained
    delta_k against k at the largest depth (right; its sign changes for ReLU)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lab = result["labels"]["A"]
    loglog_panel(axes[0], result["depths"], result["table1"]["A"]["cumsum_norm"]["per_seed"], color=RED,
                 label=f"‖Σ {lab}‖", slope_label=_exp_label(result, "beta", "β"))
    axes[0].legend()
    axes[0].set_title(f"cumulative sum norm of {lab}")
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
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    lab = result["labels"]["b"]
    loglog_panel(axes[0], result["depths"], result["table1"]["b"]["max_norm"]["per_seed"], color=RED,
                 label=f"max ‖{lab}_k‖", sign=-1.0)
    axes[0].set_title(f"maximum norm of {lab} (legend: -slope)")
    axes[0].legend()
    _hyp_panel(axes[1], result, "b")
    if dec is not None:
        _decomp_panel(axes[2], result, dec, entry, "b")
    else:
        axes[2].set_visible(False)
    return _save(fig, path)


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
