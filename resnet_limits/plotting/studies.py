"""Figures of the studies (:mod:`resnet_limits.studies`), from plain arrays and the studies' dicts:
the strong convergence of networks to their ODE / Itô SDE limits (SP §4, Thms 4.3, 4.4), the
backpropagation Jacobians against their limits (AA §5), a trained network against its limit
(SP §4, eq. 14), the depth parametrisations study (regimes of SP §2.3; its limit errors and
learning-rate transfer are no figure of the papers) and the width phase diagram (the regimes of SP
§2.3 against the width; beyond the papers). Each function returns a
:class:`matplotlib.figure.Figure`; the study saves it with :func:`resnet_limits.plotting.save`.
"""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .panels import loglog_line, new_figure

__all__ = ["depth_lines", "network_vs_limit", "parametrization_limit_errors", "parametrization_lr_transfer",
           "paths_vs_limit", "strong_errors", "strong_errors_panels", "width_phase_diagram"]


_CHAR_WIDTH = 0.07  # inches per character of a 10-point title, a little more than DejaVu Sans' mean
_TITLE_LINE = 0.18  # inches per line of a 10-point title
_TOP = 0.35  # inches above the axes for a one-line title


def _title(ax, title: str, fontsize: float = 10) -> int:
    """Set ``title``, wrapped onto lines no wider than the axes; returns the number of lines."""
    width = ax.get_position().width * ax.figure.get_figwidth()
    text = textwrap.fill(title, max(20, int(width / (_CHAR_WIDTH * fontsize / 10))))
    ax.set_title(text, fontsize=fontsize)
    return text.count("\n") + 1


def _room_for_titles(fig: Figure, lines: int) -> Figure:
    """Lower the top of the axes of ``fig`` for titles of ``lines`` lines; returns ``fig``."""
    if lines > 1:
        fig.subplots_adjust(top=1 - (_TOP + _TITLE_LINE * (lines - 1)) / fig.get_figheight())
    return fig


def _depth_axes(ax, *, ylabel: str, title: str, legend_size: float) -> int:
    """Log-2 depth axis, labels, grid and legend of a figure against L; returns the number of
    lines of the (wrapped) title."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth L")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)
    return _title(ax, title)


def _strong_errors_axes(ax, cases: Mapping[str, Mapping[str, Any]], names: Sequence[str], title: str) -> int:
    """One panel of :func:`strong_errors_panels`; returns the number of lines of its title."""
    for i, name in enumerate(names):
        c = cases[name]
        L = np.asarray(c["depths"], float)
        e = np.asarray(c["errors"], float)
        se = np.asarray(c["stderr"], float)
        color = f"C{i}"
        label = (f"{name}: slope {c['slope']:.2f}, tail {c['tail_slope']:.2f}"
                 + (f" (theory {c['expected_slope']:g})" if c["expected_slope"] is not None else ""))
        if c["kind"] != "ode":  # random paths: +-2 standard errors of the mean (clipped for log axes)
            yerr = np.stack([np.minimum(2 * se, 0.9 * e), 2 * se])
            ax.errorbar(L, e, yerr=yerr, fmt="o-", ms=3.5, color=color, capsize=2, label=label)
        else:  # deterministic networks: mean over random smooth trends, no sampling error bars
            ax.plot(L, e, "o-", ms=3.5, color=color, label=label)
        ax.plot(L, np.exp(c["intercept"]) * L ** c["slope"], "--", color=color, lw=0.8)
    ax.set_yscale("log")
    return _depth_axes(ax, ylabel=r"$E\,\sup_k \|h_k - H_{k/L}\|^2$", title=title, legend_size=7)


def strong_errors_panels(cases: Mapping[str, Mapping[str, Any]],
                         panels: Sequence[tuple[Sequence[str], str]]) -> Figure:
    """Strong convergence (SP §4, Thms 4.3, 4.4; AA Thm 2 for Scaling regime 2):
    E sup_k |h_k - H_{k/L}|^2 against L, one panel per ``(names, title)`` of ``panels``, for the
    convergence study's ``cases`` (keys ``depths``, ``errors``, ``stderr``, ``slope``,
    ``tail_slope``, ``intercept``, ``expected_slope``, ``kind``), with the fitted power laws (dashed);
    +-2 standard errors for the cases on random paths (kind other than ``ode``)."""
    fig, axes = new_figure(len(panels), width=6.2 * len(panels), height=4.4, left=0.95, wspace=1.0,
                           squeeze=False)
    lines = [_strong_errors_axes(ax, cases, names, title) for ax, (names, title) in zip(axes[0], panels)]
    return _room_for_titles(fig, max(lines))


def strong_errors(cases: Mapping[str, Mapping[str, Any]], names: Sequence[str], title: str) -> Figure:
    """:func:`strong_errors_panels` with one panel (SP §4, Thm 4.4: the Itô SDE limit)."""
    return strong_errors_panels(cases, [(names, title)])


def paths_vs_limit(ts, H_ito, H_no_correction, hidden: Mapping[int, np.ndarray]) -> Figure:
    """SP §4, Thm 4.4 on one path: coordinates 0 (left) and 1 (right) of the hidden states
    ``hidden[L]`` (L+1, d) of networks of a few depths on one fine path (SP Remark 2.1 weights)
    against the Itô SDE with (``H_ito``, black) and without (``H_no_correction``, red dotted)
    the correction, at times ``ts``."""
    fig, axes = new_figure(2, width=10.0, height=3.8, left=0.75, wspace=0.75, top=0.45)
    for j, ax in enumerate(axes):
        ax.plot(ts, H_ito[:, j], "k-", lw=1.2, label="Ito SDE (with correction)")
        ax.plot(ts, H_no_correction[:, j], "r:", lw=1.2, label="SDE without correction")
        for i, (L, h) in enumerate(hidden.items()):
            ax.plot(np.arange(L + 1) / L, h[:, j], "-", color=f"C{i}", lw=0.8, alpha=0.8,
                    label=f"network L={L}")
        ax.set_xlabel("t")
        ax.set_ylabel(f"coordinate {j}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("csoftplus ResNet (alpha=0, beta=1) on one fine Brownian path vs its limit",
                 fontsize=10)
    return fig


def depth_lines(title: str, ylabel: str, lines: Sequence[tuple]) -> Figure:
    """Log-log lines against L, each ``(label, depths, values, slope, style, color)`` (the legend
    shows ``slope``), with a dotted least-squares power law per line: the backpropagation study's
    Jacobian errors (AA §5, Thms 3-5) and the parametrisations study's limit errors."""
    fig, ax = new_figure(width=6.4, height=4.8, left=0.95)
    for label, depths, vals, slope, style, color in lines:
        ax.loglog(depths, vals, style, color=color, label=f"{label} (slope {slope:+.2f})")
        fit_slope, fit_intercept = loglog_line(depths, vals)
        L = np.asarray(depths, float)
        ax.loglog(L, np.exp(fit_intercept) * L**fit_slope, ":", color=color, lw=0.8)
    return _room_for_titles(fig, _depth_axes(ax, ylabel=ylabel, title=title, legend_size=8))


def network_vs_limit(h, H, surrogate, result: Mapping[str, Any]) -> Figure:
    """A trained network against its limit (SP §4; the linear ODE of SP eq. 14 for tanh): a few
    coordinates of its hidden states h (B, L+1, d, points) and of its limit H (lines) against
    t = k/L for the first inputs (and the surrogate network's, dotted, if ``surrogate`` is not
    None); titles from the trained-limits ``result`` (``sup_error``, ``activation``, ``seed``,
    ``limit``)."""
    L = h.shape[1] - 1
    t = np.arange(L + 1) / L
    n_in = min(2, h.shape[0])
    n_co = min(3, h.shape[2])
    fig, axes = new_figure(n_in, width=5.2 * n_in, height=3.8, left=0.6, wspace=0.6, top=0.6, squeeze=False)
    for i in range(n_in):
        ax = axes[0, i]
        for j in range(n_co):
            ax.plot(t, h[i, :, j], "o", ms=2.5 if L <= 200 else 0.8, color=f"C{j}",
                    label=f"network $h_k$, coord {j}" if i == 0 else None)
            ax.plot(t, H[i, :, j], "-", lw=1.2, color=f"C{j}",
                    label=f"limit $H_t$, coord {j}" if i == 0 else None)
            if surrogate is not None:
                ax.plot(t, surrogate[i, :, j], ":", lw=1.0, color=f"C{j}",
                        label=f"surrogate network, coord {j}" if i == 0 else None)
        ax.set_xlabel("t = k/L")
        ax.set_title(f"test input {i}: sup error {result['sup_error'][i]:.3g}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{result['activation']} network, L={L}, seed {result['seed']}: "
                 f"{result['limit'].split(':')[0]}", fontsize=9)
    return fig


def parametrization_limit_errors(result: Mapping[str, Any]) -> Figure:
    """The parametrisations study (beyond the papers; limits of SP §4): trained network vs its
    limit on its own weights, E sup_k |h_k - H_{k/L}| against L, one line per case of
    ``result["cases"]`` with a limit (ODE under Hypothesis 1, Itô SDE under Hypothesis 2)."""
    lines = []
    for i, c in enumerate(result["cases"]):
        lim = c["limit"]
        if lim.get("hypothesis") is None:
            continue
        kind = "ODE" if lim["hypothesis"] == 1 else "SDE"
        depths = [L for L, e in zip(lim["depths"], lim["error_mean"]) if e]
        vals = [e for e in lim["error_mean"] if e]
        lines.append((f"{c['label']} ({kind})", depths, vals, lim["slope"] or float("nan"), "o-", f"C{i}"))
    return depth_lines("trained network vs its limit on its own weights", r"$E\,\sup_k \|h_k - H_{k/L}\|$", lines)


def _losses(row) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in row], float)


def parametrization_lr_transfer(case: Mapping[str, Any]) -> Figure:
    """The parametrisations study (beyond the papers): final training loss against the base
    learning rate, one line per depth (learning-rate transfer across depth), from one case's
    ``lr_transfer`` dict (``depths``, ``lrs``, ``final_train_loss``, ``optimal_lr``, ``lr_rule``).

    A fixed case's ``lr_transfer`` trained with Adam's epsilon following the per-layer gradient
    (solid) and its ``lr_transfer_const_eps`` with a constant epsilon (dashed, same colour per
    depth, hollow markers); a case without the latter (None or absent) has the solid lines only."""
    t, const = case["lr_transfer"], case.get("lr_transfer_const_eps")
    fig, ax = new_figure(width=6.0, height=4.4, left=0.9)
    cmap = matplotlib.colormaps["viridis"]
    for j, L in enumerate(t["depths"]):
        color = cmap(j / max(1, len(t["depths"]) - 1))
        if const:
            best = [f"{o[j]:g}" if o[j] else "-" for o in (t["optimal_lr"], const["optimal_lr"])]
            label = f"L = {L}, best η = {best[0]} (solid), {best[1]} (dashed)"
        else:
            label = f"L = {L}" + (f", best η = {t['optimal_lr'][j]:g}" if t["optimal_lr"][j] else "")
        ax.plot(t["lrs"], _losses(t["final_train_loss"][j]), "o-", ms=3.5, color=color, label=label)
        if const:
            ax.plot(const["lrs"], _losses(const["final_train_loss"][j]), "o--", ms=3.5, mfc="none", lw=1.0,
                    color=color, label="_nolegend_")
    if const:  # the two styles, once
        ax.plot([], [], "k-", label=t.get("eps_rule", "ε rule"))
        ax.plot([], [], "k--", label=const.get("eps_rule", "constant ε"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"base learning rate η (rule: {t['lr_rule']})")
    ax.set_ylabel("final training loss (mean over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _room_for_titles(fig, _title(ax, f"learning-rate transfer: {case['label']}"))


#: Verdicts of SP §2.3 as the width-phase diagram draws them: (marker, colour, category of the heat map).
_VERDICT_STYLE = {"Hypothesis 1": ("o", "#1f77b4", 1), "Hypothesis 2": ("s", "#d62728", 2)}
_NEITHER_STYLE = ("^", "#7f7f7f", 0)


def _verdict_style(verdict) -> tuple[str, str, float]:
    """(marker, colour, heat-map category) of a verdict; None (no analysis): category NaN."""
    if verdict is None:
        return "x", "#bbbbbb", float("nan")
    return _VERDICT_STYLE.get(verdict, _NEITHER_STYLE)


def width_phase_diagram(result: Mapping[str, Any]) -> Figure:
    """The width-phase study (beyond the papers; the regimes of SP §2.3): alpha, beta and nu against
    the width d, one line per depth range (colour: its largest depth L_max; error bars: sd over
    seeds; marker: the verdict on A, circle Hypothesis 1, square Hypothesis 2, triangle neither),
    and a heat map of the verdict over (d, L_max) annotated with alpha / beta, from the study's
    ``result["grid"]`` (``widths``, ``max_depths`` and (widths, ranges) tables ``alpha``,
    ``alpha_sd``, ``beta``, ``beta_sd``, ``nu``, ``nu_sd``, ``verdict``)."""
    g = result["grid"]
    widths, ranges = np.asarray(g["widths"], float), list(g["max_depths"])
    fig, axes = new_figure(4, width=18.0, height=4.4, left=0.75, wspace=0.8, top=0.75)
    cmap = matplotlib.colormaps["viridis"]
    table = lambda k: np.array([[np.nan if v is None else v for v in row] for row in g[k]], float)  # noqa: E731
    for ax, (key, name) in zip(axes[:3], (("alpha", "α (δ)"), ("beta", "β (A)"), ("nu", "ν (A)"))):
        vals, sds = table(key), table(f"{key}_sd")
        for j, Lmax in enumerate(ranges):
            color = cmap(j / max(1, len(ranges) - 1))
            ax.errorbar(widths, vals[:, j], yerr=np.nan_to_num(sds[:, j]), fmt="-", color=color, lw=1.0, capsize=2,
                        label=f"L ≤ {Lmax}")
            for i in range(len(widths)):
                marker, _, _ = _verdict_style(g["verdict"][i][j])
                ax.plot(widths[i], vals[i, j], marker, ms=6, color=color, mec="k", mew=0.5)
        ax.set_xscale("log")
        ax.set_xticks(widths, [f"{w:g}" for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("width d")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{name} against the width", fontsize=10)
    for verdict, (marker, _, _) in [*_VERDICT_STYLE.items(), ("neither", _NEITHER_STYLE)]:
        axes[0].plot([], [], marker, color="w", mec="k", label=verdict)
    axes[0].legend(fontsize=7)
    ax = axes[3]
    cat = np.array([[_verdict_style(v)[2] for v in row] for row in g["verdict"]], float).T  # (ranges, widths)
    colors = ListedColormap([_NEITHER_STYLE[1], *(s[1] for s in _VERDICT_STYLE.values())])
    ax.imshow(np.ma.masked_invalid(cat), cmap=colors, vmin=-0.5, vmax=2.5, origin="lower", aspect="auto", alpha=0.6)
    alpha, beta = table("alpha"), table("beta")
    for i in range(len(widths)):
        for j in range(len(ranges)):
            v = g["verdict"][i][j]
            short = "-" if v is None else {"Hypothesis 1": "H1", "Hypothesis 2": "H2"}.get(v, "neither")
            num = lambda x: f"{x:.2f}" if np.isfinite(x) else "-"  # noqa: E731
            ax.text(i, j, f"{short}\nα {num(alpha[i, j])}\nβ {num(beta[i, j])}", ha="center", va="center",
                    fontsize=7)
    ax.set_xticks(range(len(widths)), [f"{w:g}" for w in widths])
    ax.set_yticks(range(len(ranges)), [str(L) for L in ranges])
    ax.set_xlabel("width d")
    ax.set_ylabel("largest depth L_max of the range")
    ax.set_title("verdict on A over (d, L_max)", fontsize=10)
    q = ", quick" if result.get("quick") else ""
    fig.suptitle(f"width phase diagram ({result.get('preset', '')}, {result.get('width_rule', '')}{q})", fontsize=10)
    return fig
