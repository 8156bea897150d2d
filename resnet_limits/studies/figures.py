"""Figures of the studies (matplotlib, Agg backend). Each function takes plain arrays or the study's
dict, writes one PNG and returns its file name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_limits.scaling import loglog_fit  # noqa: E402

__all__ = ["depth_lines", "network_vs_limit", "paths_vs_limit", "strong_errors", "strong_errors_panels"]


def _depth_axes(ax, *, ylabel: str, title: str, legend_size: float) -> None:
    """Log-2 depth axis, labels, grid and legend of a figure against L."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth L")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)


def _save(fig, path: Path, dpi: int) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path).name


def _strong_errors_axes(ax, cases: Mapping[str, Mapping[str, Any]], names: Sequence[str], title: str) -> None:
    """One panel of :func:`strong_errors_panels`."""
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
    _depth_axes(ax, ylabel=r"$E\,\sup_k \|h_k - H_{k/L}\|^2$", title=title, legend_size=7)


def strong_errors_panels(cases: Mapping[str, Mapping[str, Any]], panels: Sequence[tuple[Sequence[str], str]],
                         path: Path) -> str:
    """E sup_k |h_k - H_{k/L}|^2 against L, one panel per ``(names, title)`` of ``panels``, for the
    convergence study's ``cases`` (keys ``depths``, ``errors``, ``stderr``, ``slope``,
    ``tail_slope``, ``intercept``, ``expected_slope``, ``kind``), with the fitted power laws;
    +-2 standard errors for the cases on random paths (kind other than ``ode``)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (names, title) in zip(axes[0], panels):
        _strong_errors_axes(ax, cases, names, title)
    return _save(fig, path, 130)


def strong_errors(cases: Mapping[str, Mapping[str, Any]], names: Sequence[str], path: Path, title: str) -> str:
    """:func:`strong_errors_panels` with one panel."""
    return strong_errors_panels(cases, [(names, title)], path)


def paths_vs_limit(ts, H_ito, H_no_correction, hidden: Mapping[int, np.ndarray], path: Path) -> str:
    """Coordinates 0 and 1 of the hidden states ``hidden[L]`` (L+1, d) of networks of a few depths
    on one fine path against the Ito SDE with (``H_ito``) and without the correction, at ``ts``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
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
    return _save(fig, path, 130)


def depth_lines(path: Path, title: str, ylabel: str, lines: Sequence[tuple]) -> str:
    """Log-log lines against L, each ``(label, depths, values, slope, style, color)``, with a dotted
    least-squares power law per line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for label, depths, vals, slope, style, color in lines:
        ax.loglog(depths, vals, style, color=color, label=f"{label} (slope {slope:+.2f})")
        fit = loglog_fit(depths, vals)
        L = np.asarray(depths, float)
        ax.loglog(L, np.exp(fit.intercept) * L**fit.slope, ":", color=color, lw=0.8)
    _depth_axes(ax, ylabel=ylabel, title=title, legend_size=8)
    return _save(fig, path, 120)


def network_vs_limit(h, H, surrogate, result: Mapping[str, Any], path: Path) -> str:
    """A few coordinates of a network's hidden states h (B, L+1, d) and of its limit H against
    t = k/L for the first inputs (and the surrogate network's, if ``surrogate`` is not None);
    titles from the trained-limits ``result`` (``sup_error``, ``activation``, ``seed``, ``limit``)."""
    L = h.shape[1] - 1
    t = np.arange(L + 1) / L
    n_in = min(2, h.shape[0])
    n_co = min(3, h.shape[2])
    fig, axes = plt.subplots(1, n_in, figsize=(5.2 * n_in, 3.8), squeeze=False)
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
    return _save(fig, path, 130)
