"""Figures from plain arrays and dicts (``resnet_limits/plotting.py``, layer 3 of DESIGN.md)."""

import ast
from pathlib import Path

import numpy as np

from resnet_limits import plotting


def test_plotting_imports_no_analysis():
    tree = ast.parse(Path(plotting.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith("resnet_limits")], imported


def test_loglog_panel_draws_the_seed_mean_and_its_power_law():
    import matplotlib.pyplot as plt

    d = np.array([4.0, 8.0, 16.0, 32.0])
    per_seed = [list(2.0 * d ** -0.5), list(8.0 * d ** -0.5), [None] * 4]  # a seed without values is ignored
    fig, ax = plt.subplots()
    plotting.loglog_panel(ax, d, per_seed, color="red", label="x")
    mean_line, fit_line = ax.lines[-2], ax.lines[-1]
    np.testing.assert_allclose(mean_line.get_ydata(), 4.0 * d ** -0.5)  # geometric mean over seeds
    np.testing.assert_allclose(fit_line.get_ydata(), 4.0 * d ** -0.5, rtol=1e-12)
    assert ax.get_legend_handles_labels()[1] == ["x: -0.50"]
    plt.close(fig)


def test_fig6_from_a_plain_dict(tmp_path):
    den = {"depths": [4, 8, 16], "trained_loss": [0.1, 0.05, None], "denoised_loss": [0.2, 0.1, 0.05],
           "denoised_own_loss": [0.15, 0.07, 0.04], "epsilon": 0.01}
    path = plotting.fig6_denoised({"denoised": den}, tmp_path / "f" / "fig6.png")
    assert Path(path).stat().st_size > 1000


def test_loglog_panel_with_one_point_draws_no_fit():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plotting.loglog_panel(ax, [4.0, 8.0], [[1.0, None]], color="k", label="y")
    assert len(ax.lines) == 2  # the seed's points and the mean, no dashed fit
    assert ax.get_legend_handles_labels()[1] == ["y"]
    plt.close(fig)
