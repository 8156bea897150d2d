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


def _power_law_result(depths, alpha: float, beta: float, nu: float, seed: int) -> dict:
    """An analysis result (the keys the figures read) whose norms follow the paper's power laws,
    three seeds with multiplicative noise."""
    rng = np.random.default_rng(seed)
    d = np.asarray(depths, float)

    def per_seed(scale, slope):
        return (scale * d ** slope * np.exp(0.1 * rng.standard_normal((3, d.size)))).tolist()

    def tensor(scale):
        return {"cumsum_norm": {"per_seed": per_seed(scale, 1 - beta)},
                "rss": {"per_seed": per_seed(scale, 0.5 - beta)},
                "increment": {"per_seed": per_seed(scale / 3, -nu)},
                "max_norm": {"per_seed": per_seed(scale / 2, -beta)}}

    return {"depths": list(depths), "labels": {"A": "A", "b": "b"},
            "table1": {"delta_max": {"per_seed": per_seed(1.0, -alpha)}, "A": tensor(2.0), "b": tensor(1.0)},
            "alpha": alpha, "alpha_sd": 0.02, "beta": beta, "beta_sd": 0.03, "beta_b": beta, "beta_b_sd": 0.04,
            "nu": nu, "nu_b": nu, "decomposition": {"A": {"noise_to_trend_used": 0.05},
                                                    "b": {"noise_to_trend_used": 0.07}}}


DEPTHS = [3, 5, 10, 20, 50, 101, 203, 406, 812]
SYNTH = _power_law_result(DEPTHS, 0.73, 0.29, 0.5, 0)
MNIST_RUN = _power_law_result(DEPTHS[:7], 0.70, 0.20, 0.5, 1)


def test_scaling_two_runs_draws_synthetic_dashed_and_mnist_solid_with_their_slopes(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []  # the figure, kept open instead of saved
    monkeypatch.setattr(plotting, "_save", lambda fig, path: drawn.append(fig) or str(path))
    plotting.scaling_two_runs(SYNTH, MNIST_RUN, tmp_path / "x.png")
    left, right = drawn[0].axes
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == ["synthetic, max |δ|: α = 0.73 ± 0.02", "MNIST, max |δ|: α = 0.70 ± 0.02"]
    mean_lines = {ln.get_label(): ln for ln in right.lines if not ln.get_label().startswith("_")}
    assert set(mean_lines) == {"synthetic, ‖Σ A‖: β = 0.29 ± 0.03", "MNIST, ‖Σ A‖: β = 0.20 ± 0.03"}
    assert mean_lines["synthetic, ‖Σ A‖: β = 0.29 ± 0.03"].get_linestyle() == "--"
    assert mean_lines["MNIST, ‖Σ A‖: β = 0.20 ± 0.03"].get_linestyle() == "-"
    assert len(mean_lines["MNIST, ‖Σ A‖: β = 0.20 ± 0.03"].get_xdata()) == 7  # each run on its own depths
    plt.close(drawn[0])


def test_two_run_figures_write_pngs(tmp_path):
    dec = {"depth": 812, "weights": np.sin(np.linspace(0, 3, 812)), "trend": np.sin(np.linspace(0, 3, 812)),
           "noise_path": 0.01 * np.cumsum(np.random.default_rng(0).standard_normal(812))}
    paths = [f(SYNTH, MNIST_RUN, tmp_path / f"{k}.png") for k, f in plotting.TWO_RUN_FIGURES.items()]
    paths.append(plotting.hypothesis_two_runs(SYNTH, MNIST_RUN, tmp_path / "fig3_with_dec.png", dec=dec,
                                              entry=(9, 7)))
    paths.append(plotting.biases_two_runs(SYNTH, MNIST_RUN, tmp_path / "fig9_with_dec.png", dec=dec, entry=(5,)))
    for p in paths:
        assert Path(p).stat().st_size > 10_000


def test_one_run_figures_share_the_panels_without_a_run_name(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plotting, "_save", lambda fig, path: drawn.append(fig) or str(path))
    plotting.fig2_scaling(SYNTH, tmp_path / "fig2.png")
    plotting.figB_biases(SYNTH, None, (5,), tmp_path / "figB.png")  # no decomposition: two panels
    (left, right), biases = drawn[0].axes, drawn[1].axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["max |δ|: α = 0.73 ± 0.02"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["‖Σ A‖: β = 0.29 ± 0.03",
                                                                      "‖Σ b‖: β_b = 0.29 ± 0.04"]
    assert {ln.get_linestyle() for ln in right.get_legend().get_lines()} == {"-"}
    assert len(biases) == 2 and biases[1].get_title() == "b: Table-1 norms"
    for fig in drawn:
        plt.close(fig)
