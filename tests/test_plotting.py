"""The plotting package (``resnet_limits/plotting/``, layer 3 of DESIGN.md): what each figure draws,
read back from its matplotlib objects (lines and their data, labels, legends, titles, line styles,
axes), that every text lies inside its figure and panels do not overlap, and :func:`save`."""

import ast
import math
import os
import stat
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from resnet_limits import plotting
from resnet_limits.plotting import analysis as analysis_figs

# ------------------------------------------------------------------ helpers ----------


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _labelled(ax) -> dict:
    """The lines of ``ax`` that have a legend entry, by label."""
    return {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}


def _readable(fig: Figure) -> Figure:
    """Assert ``fig`` has a fixed layout (no layout engine), every text of it lies inside the
    figure (nothing cut off) and no two visible panels (with their titles, tick labels and axis
    labels) overlap; returns ``fig``."""
    assert fig.get_layout_engine() is None
    r = FigureCanvasAgg(fig).get_renderer()  # the boxes lay out titles and ticks; no need to render
    box, (w, h) = fig.get_tightbbox(r), fig.get_size_inches()
    tol = 0.02  # inches
    assert box.x0 >= -tol and box.y0 >= -tol and box.x1 <= w + tol and box.y1 <= h + tol, (box, w, h)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for i, a in enumerate(axes):
        for b in axes[i + 1:]:
            assert not a.get_tightbbox(r).overlaps(b.get_tightbbox(r)), (a.get_title(), b.get_title())
    return fig


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
            "nu": nu, "nu_b": nu,
            "decomposition": {"A": {"noise_to_trend_used": 0.05, "beta_used": beta},
                              "b": {"noise_to_trend_used": 0.07, "beta_used": beta}},
            "denoised": {"depths": list(depths), "trained_loss": list(0.1 * d ** -0.5),
                         "denoised_loss": list(0.2 * d ** -0.5), "denoised_own_loss": None, "epsilon": 0.01}}


DEPTHS = [3, 5, 10, 20, 50, 101, 203, 406, 812]
SYNTH = _power_law_result(DEPTHS, 0.73, 0.29, 0.5, 0)
MNIST_RUN = _power_law_result(DEPTHS[:7], 0.70, 0.20, 0.5, 1)
SMALL = _power_law_result(DEPTHS[:3], 0.7, 0.3, 0.5, 2)  # for the tests that write files: quick to draw


def _dec(L: int = 400) -> dict:
    s = np.sin(np.linspace(0, 3, L))
    return {"depth": L, "weights": s + 0.1 * np.cos(np.arange(L)), "trend": s, "own_trend": 1.01 * s,
            "noise_path": 0.01 * np.cumsum(np.random.default_rng(0).standard_normal(L))}


def _fig1(depths=(50, 100, 200)) -> dict:
    return {L: {"weights": np.cos(np.arange(L) / L), "cumsum": np.arange(L) / L} for L in depths}


def _figdata() -> dict:
    return {"entry": {"A": (9, 7), "b": (5,)}, "fig1": {"A": _fig1((5, 10)), "b": _fig1((5, 10))},
            "decomposition": {"A": _dec(10), "b": _dec(10)},
            "delta_largest": {"depth": 10, "delta": np.cos(np.arange(10) * 2.0)}}


# ------------------------------------------------------------------ the package ------


def test_plotting_imports_nothing_from_the_library():
    """No file of the package imports ``resnet_limits`` (so nothing of the analysis, the studies,
    the CLI or reproduce); its own modules it reaches by relative imports."""
    folder = Path(plotting.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "analysis.py", "conv.py", "save.py", "studies.py"}
    for f in files:
        tree = ast.parse(f.read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        assert not [m for m in imported if m.startswith("resnet_limits")], (f.name, imported)


def test_the_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


# ------------------------------------------------------------------ loglog_panel -----


def test_loglog_panel_draws_the_seed_mean_and_its_power_law():
    d = np.array([4.0, 8.0, 16.0, 32.0])
    per_seed = [list(2.0 * d ** -0.5), list(8.0 * d ** -0.5), [None] * 4]  # a seed without values is ignored
    ax = Figure().subplots()
    plotting.loglog_panel(ax, d, per_seed, color="red", label="x")
    assert len(ax.lines) == 5  # three seeds' points, the mean, the fit
    points, mean_line, fit_line = ax.lines[0], ax.lines[-2], ax.lines[-1]
    assert points.get_marker() == "o" and points.get_linestyle() == "None"
    np.testing.assert_allclose(points.get_ydata(), 2.0 * d ** -0.5)
    np.testing.assert_allclose(mean_line.get_xdata(), d)
    np.testing.assert_allclose(mean_line.get_ydata(), 4.0 * d ** -0.5)  # geometric mean over seeds
    np.testing.assert_allclose(fit_line.get_ydata(), 4.0 * d ** -0.5, rtol=1e-12)
    assert mean_line.get_linestyle() == "-" and fit_line.get_linestyle() == "--"
    assert ax.get_legend_handles_labels()[1] == ["x: -0.50"]
    assert ax.get_xscale() == ax.get_yscale() == "log" and ax.get_xlabel() == "depth L"


def test_loglog_panel_legend_from_slope_label_sign_offset_and_style():
    d = np.array([4.0, 8.0, 16.0])
    ax = Figure().subplots()
    plotting.loglog_panel(ax, d, [list(d ** -0.25)], color="k", label="a", sign=-1.0, offset=1.0)
    plotting.loglog_panel(ax, d, [list(d)], color="k", label="b", slope_label="β = 1", style=plotting.SYNTHETIC)
    assert ax.get_legend_handles_labels()[1] == ["a: 1.25", "synthetic, b: β = 1"]
    synth_points, synth_mean, synth_fit = ax.lines[-3:]
    assert synth_points.get_marker() == "^"
    assert synth_mean.get_linestyle() == "--" and synth_fit.get_linestyle() == ":"


def test_loglog_panel_with_one_point_draws_no_fit():
    ax = Figure().subplots()
    plotting.loglog_panel(ax, [4.0, 8.0], [[1.0, None]], color="k", label="y")
    assert len(ax.lines) == 2  # the seed's points and the mean, no dashed fit
    assert ax.get_legend_handles_labels()[1] == ["y"]


# ------------------------------------------------------------------ SP Figs 1-6, 9-10 -


def test_fig1_weights_draws_each_depth_against_k_over_L():
    fig = _readable(plotting.fig1_weights(SYNTH, _fig1(), (9, 7), "A"))
    left, right = fig.axes
    assert left.get_title() == "L^β A_k,(9,7), β=0.29"
    assert right.get_title() == "L^(β-1) Σ_(j<k) A_j,(9,7)"
    assert _legend(left) == _legend(right) == ["L=50", "L=100", "L=200"]
    for ax, key in ((left, "weights"), (right, "cumsum")):
        for ln, L in zip(ax.lines, (50, 100, 200)):
            np.testing.assert_allclose(ln.get_xdata(), np.arange(L) / L)
            np.testing.assert_allclose(ln.get_ydata(), _fig1()[L][key])
        assert ax.get_xlabel() == "k / L"


def test_fig2_scaling_one_run_has_no_run_name_in_its_legends():
    fig = _readable(plotting.fig2_scaling(SYNTH))
    left, right = fig.axes
    assert left.get_title() == "maximum norm of δ (SP Fig. 2 left)"
    assert _legend(left) == ["max |δ|: α = 0.73 ± 0.02"]
    assert _legend(right) == ["‖Σ A‖: β = 0.29 ± 0.03", "‖Σ b‖: β_b = 0.29 ± 0.04"]
    assert {ln.get_linestyle() for ln in _labelled(right).values()} == {"-"}
    assert right.get_title() == "cumulative sum norm, slope 1-β"


def test_fig2_scaling_without_delta_hides_the_left_panel():
    no_delta = {**SYNTH, "table1": {k: v for k, v in SYNTH["table1"].items() if k != "delta_max"}}
    left, right = _readable(plotting.fig2_scaling(no_delta)).axes
    assert not left.get_visible() and not left.lines
    assert len(_legend(right)) == 2


def test_fig3_hypothesis_draws_the_table1_norms_and_the_decomposition():
    dec = _dec()
    left, right = _readable(plotting.fig3_hypothesis(SYNTH, dec, (9, 7), "A")).axes
    assert left.get_title() == "A: Table-1 norms"
    labels = _legend(left)
    assert labels[0].startswith("root sum of squares: ")
    assert labels[1] == "β-scaled increments: slope -0.50 (ν = 0.50)"
    assert right.get_title() == "decomposition at L=400, noise/trend 0.05"
    lines = _labelled(right)
    assert list(lines) == ["L^β A_k,(9,7)", "trend Ā (largest depths, SP eq. 7)", "this network's trend",
                           "noise W (L^(β-1) scaled)"]
    np.testing.assert_allclose(lines["trend Ā (largest depths, SP eq. 7)"].get_ydata(), dec["trend"])
    np.testing.assert_allclose(lines["noise W (L^(β-1) scaled)"].get_xdata(), np.arange(400) / 400)
    assert lines["this network's trend"].get_linestyle() == "--"


def test_fig4_delta_draws_delta_k_and_counts_its_sign_changes():
    delta = np.array([1.0, -1.0, -1.0, 2.0, 3.0])  # 2 sign changes out of 4 neighbours
    left, right = _readable(plotting.fig4_delta(SYNTH, {"depth": 5, "delta": delta})).axes
    assert left.get_title() == "cumulative sum norm of A" and _legend(left) == ["‖Σ A‖: β = 0.29 ± 0.03"]
    (line,) = right.lines
    np.testing.assert_allclose(line.get_xdata(), np.arange(5))
    np.testing.assert_allclose(line.get_ydata(), delta)
    assert right.get_title() == "δ_k at L=5 (sign changes between neighbours: 50%)"
    assert right.get_xlabel() == "layer k"


def test_fig4_delta_with_one_shared_delta_and_without_delta():
    _, right = plotting.fig4_delta(SYNTH, {"depth": 6, "delta": 0.3}).axes
    np.testing.assert_allclose(right.lines[0].get_ydata(), np.full(6, 0.3))
    assert "0%" in right.get_title()
    _, hidden = plotting.fig4_delta(SYNTH, None).axes
    assert not hidden.get_visible()


def test_fig6_denoised_from_a_plain_dict():
    den = {"depths": [4, 8, 16], "trained_loss": [0.1, 0.05, None], "denoised_loss": [0.2, 0.1, 0.05],
           "denoised_own_loss": [0.15, 0.07, 0.04], "epsilon": 0.01}
    (ax,) = _readable(plotting.fig6_denoised({"denoised": den})).axes
    lines = _labelled(ax)
    assert list(lines) == ["trained weights", "denoised weights (common trend)", "denoised (own trend)"]
    np.testing.assert_allclose(lines["trained weights"].get_ydata(), [0.1, 0.05, np.nan])
    np.testing.assert_allclose(lines["denoised (own trend)"].get_xdata(), [4, 8, 16])
    assert lines["trained weights"].get_color() == "k" and lines["trained weights"].get_linestyle() == "--"
    assert lines["denoised (own trend)"].get_linestyle() == ":"
    assert len(ax.patches) == 1  # the shaded band below epsilon
    assert ax.patches[0].get_extents().transformed(ax.transData.inverted()).y1 == pytest.approx(0.01)
    assert ax.get_title() == "loss with denoised weights (SP Fig. 6)" and ax.get_ylabel() == "training loss"
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_fig6_without_own_trend_or_epsilon():
    den = {"depths": [4, 8], "trained_loss": [0.1, 0.05], "denoised_loss": [0.2, 0.1]}
    (ax,) = plotting.fig6_denoised({"denoised": den}).axes
    assert list(_labelled(ax)) == ["trained weights", "denoised weights (common trend)"] and not ax.patches


def test_figB_biases_two_panels_without_and_three_with_a_decomposition():
    two = _readable(plotting.figB_biases(SYNTH, None, (5,)))
    three = _readable(plotting.figB_biases(SYNTH, _dec(), (5,)))
    assert len(two.axes) == 2 and len(three.axes) == 3
    left, middle, right = three.axes
    assert left.get_title() == "maximum norm of b (legend: -slope)"
    (label,) = _legend(left)
    assert label.startswith("max ‖b_k‖: ")
    assert float(label.split(": ")[1]) == pytest.approx(0.29, abs=0.1)  # -slope of max ||b_k|| ~ L^-beta
    assert middle.get_title() == "b: Table-1 norms"
    assert right.get_title() == "decomposition at L=400, noise/trend 0.07"
    assert "trend b̄ (largest depths, SP eq. 7)" in _legend(right) and "L^β b_k,(5)" in _legend(right)


def test_analysis_figures_saves_the_figures_of_a_run(tmp_path):
    paths = plotting.analysis_figures(SMALL, _figdata(), tmp_path / "figures")
    names = ["fig1_weights_A.png", "fig1_weights_b.png", "fig2_scaling.png", "fig3_5_hypothesis_A.png",
             "fig4_delta.png", "fig6_denoised.png", "figB_9_10_biases.png"]
    assert paths == [str(tmp_path / "figures" / n) for n in names]
    assert sorted(os.listdir(tmp_path / "figures")) == sorted(names)  # no temporary files left
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_analysis_figures_of_imported_weights_leave_out_fig6_and_what_is_missing(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(analysis_figs, "save", lambda fig, path, dpi: drawn.setdefault(Path(path).name, fig) and str(path))
    figdata = {"entry": {"A": (0, 0), "b": (0,)}, "fig1": {"A": {}, "b": _fig1()}}  # no decomposition, no delta
    plotting.analysis_figures({**SYNTH, "denoised": {"skipped": "no training data"}}, figdata, tmp_path)
    assert list(drawn) == ["fig1_weights_b.png", "fig2_scaling.png", "fig4_delta.png", "figB_9_10_biases.png"]
    assert not drawn["fig4_delta.png"].axes[1].get_visible() and len(drawn["figB_9_10_biases.png"].axes) == 2


# ------------------------------------------------------------------ two runs ---------


def test_scaling_two_runs_draws_synthetic_dashed_and_mnist_solid_with_their_slopes():
    left, right = _readable(plotting.scaling_two_runs(SYNTH, MNIST_RUN)).axes
    assert _legend(left) == ["synthetic, max |δ|: α = 0.73 ± 0.02", "MNIST, max |δ|: α = 0.70 ± 0.02"]
    lines = _labelled(right)
    assert set(lines) == {"synthetic, ‖Σ A‖: β = 0.29 ± 0.03", "MNIST, ‖Σ A‖: β = 0.20 ± 0.03"}
    assert lines["synthetic, ‖Σ A‖: β = 0.29 ± 0.03"].get_linestyle() == "--"
    assert lines["MNIST, ‖Σ A‖: β = 0.20 ± 0.03"].get_linestyle() == "-"
    np.testing.assert_allclose(lines["MNIST, ‖Σ A‖: β = 0.20 ± 0.03"].get_xdata(), DEPTHS[:7])  # its own depths
    np.testing.assert_allclose(lines["synthetic, ‖Σ A‖: β = 0.29 ± 0.03"].get_xdata(), DEPTHS)
    assert right.get_title() == "cumulative sum norm of A, slope 1-β"


def test_hypothesis_two_runs_with_the_synthetic_decomposition():
    one = _readable(plotting.hypothesis_two_runs(SYNTH, MNIST_RUN))
    assert len(one.axes) == 1
    left, right = _readable(plotting.hypothesis_two_runs(SYNTH, MNIST_RUN, dec=_dec(), entry=(9, 7))).axes
    styles = {label: ln.get_linestyle() for label, ln in _labelled(left).items()}
    assert styles["synthetic, β-scaled increments: slope -0.50 (ν = 0.50)"] == "--"
    assert styles["MNIST, β-scaled increments: slope -0.50 (ν = 0.50)"] == "-"
    assert len(styles) == 4  # root sum of squares and increments of each run
    assert right.get_title() == "decomposition at L=400, noise/trend 0.05"  # the synthetic run's


def test_biases_two_runs_draws_both_runs_in_each_panel():
    left, middle, right = _readable(plotting.biases_two_runs(SYNTH, MNIST_RUN, dec=_dec(), entry=(5,))).axes
    names = [label.split(",")[0] for label in _legend(left)]
    assert names == ["synthetic", "MNIST"]
    assert [label.split(",")[0] for label in _legend(middle)] == ["synthetic", "synthetic", "MNIST", "MNIST"]
    assert right.get_title() == "decomposition at L=400, noise/trend 0.07"


def test_two_run_figures_draw_and_save(tmp_path):
    assert set(plotting.TWO_RUN_FIGURES) == {"scaling", "hypothesis", "biases"}
    for kind, save_two in plotting.TWO_RUN_FIGURES.items():
        path = tmp_path / "deep" / f"{kind}.png"
        assert save_two(SMALL, SMALL, path) == str(path)
        assert path.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ SP Figs 7-8 -------


def _conv_result() -> dict:
    depths = [4, 8, 16, 32]
    per_depth = {}
    for L in depths:
        e = {}
        for name, a in (("Delta", 0.5), ("A", 0.25)):
            norms = (L ** -a * (1 + np.arange(L) / L)).tolist()
            e[name] = {"norms": norms, "max_norm": max(norms), "rss": 2.0 * L ** -0.1,
                       "scaled_increment": None if L == 4 else 0.5 * L ** 0.2}
        per_depth[str(L)] = e
    return {"depths": depths, "alpha": 0.5, "alpha_sd": 0.05, "beta": 0.25, "beta_sd": None, "per_depth": per_depth}


def test_fig7_conv_norms_draws_every_kernel_norm_and_their_maximum():
    r = _conv_result()
    left, right = _readable(plotting.fig7_conv_norms(r)).axes
    assert left.get_title() == "operator norms of Δ_k (SP Fig. 7)"
    assert right.get_title() == "operator norms of A_k (SP Fig. 7)"
    assert _legend(left) == ["max_k ‖Δ_k‖: α = 0.50 ± 0.05"] and _legend(right) == ["max_k ‖A_k‖: β = 0.25"]
    for ax, name in ((left, "Delta"), (right, "A")):
        points = ax.lines[:4]  # one blue line of points per depth, L of them at x = L
        for ln, L in zip(points, r["depths"]):
            assert ln.get_linestyle() == "None" and list(ln.get_xdata()) == [L] * L
            np.testing.assert_allclose(ln.get_ydata(), r["per_depth"][str(L)][name]["norms"])
        (mean,) = _labelled(ax).values()
        np.testing.assert_allclose(mean.get_ydata(), [r["per_depth"][str(L)][name]["max_norm"] for L in r["depths"]])


def test_fig8_conv_hypotheses_draws_rss_and_scaled_increments():
    r = _conv_result()
    left, right = _readable(plotting.fig8_conv_hypotheses(r)).axes
    assert left.get_title() == "Δ_k: Table-1 norms (SP Fig. 8)" and right.get_title() == "A_k: Table-1 norms (SP Fig. 8)"
    assert _legend(left) == ["root sum of squares: -0.10", "α-scaled increments: 0.20"]
    assert _legend(right)[1] == "β-scaled increments: 0.20"
    inc = _labelled(left)["α-scaled increments: 0.20"]
    assert math.isnan(inc.get_ydata()[0])  # no increment at the smallest depth


def test_conv_figures_saves_figs_7_and_8(tmp_path):
    paths = plotting.conv_figures(_conv_result(), tmp_path)
    assert [Path(p).name for p in paths] == ["fig7_conv_norms.png", "fig8_conv_hypotheses.png"]
    assert all(Path(p).is_file() for p in paths)


# ------------------------------------------------------------------ the studies ------


def _case(kind: str, scale: float, slope: float, expected, stderr_ratio: float) -> dict:
    L = np.array([16.0, 32.0, 64.0, 128.0])
    e = scale * L ** slope
    return {"depths": L.tolist(), "errors": e.tolist(), "stderr": (stderr_ratio * e).tolist(), "slope": slope,
            "tail_slope": slope - 0.02, "intercept": math.log(scale), "expected_slope": expected, "kind": kind}


CASES = {"sde-x": _case("sde", 0.5, -1.0, -1, 1.0), "ode-y": _case("ode", 2.0, -2.0, None, 0.0)}


def test_strong_errors_panels_draw_error_bars_for_random_paths_only():
    left, right = _readable(plotting.strong_errors_panels(CASES, [(["sde-x"], "SDE cases"), (["ode-y"], "ODE")])).axes
    assert left.get_title() == "SDE cases" and right.get_title() == "ODE"
    assert _legend(left) == ["sde-x: slope -1.00, tail -1.02 (theory -1)"]
    assert _legend(right) == ["ode-y: slope -2.00, tail -2.02"]
    (bars,) = left.containers
    assert isinstance(bars, ErrorbarContainer) and not right.containers
    e = np.asarray(CASES["sde-x"]["errors"])
    lows = np.array([seg[0][1] for seg in bars.lines[2][0].get_segments()])
    np.testing.assert_allclose(lows, 0.1 * e)  # 2 standard errors below, clipped at 0.9 e for the log axis
    fit = right.lines[-1]
    assert fit.get_linestyle() == "--"
    np.testing.assert_allclose(fit.get_ydata(), CASES["ode-y"]["errors"])
    for ax in (left, right):
        assert ax.get_yscale() == "log" and ax.xaxis.get_transform().base == 2 and ax.get_xlabel() == "depth L"


def test_strong_errors_is_one_panel():
    fig = _readable(plotting.strong_errors(CASES, ["sde-x", "ode-y"], "all"))
    (ax,) = fig.axes
    assert ax.get_title() == "all" and len(_legend(ax)) == 2


def test_a_title_wider_than_its_panel_is_wrapped_inside_the_figure():
    title = "Remark 2.1 weights + drift (alpha=0, beta=1), d=3, 256 paths, n_fine=131072, and more words"
    (ax,) = _readable(plotting.strong_errors(CASES, ["sde-x"], title)).axes
    assert ax.get_title().count("\n") == 1 and ax.get_title().replace("\n", " ") == title


def test_depth_lines_draw_each_line_with_its_dotted_power_law():
    L = np.array([4.0, 8.0, 16.0, 32.0])
    lines = [("a", L, 3 / L, -1.0, "o-", "C0"), ("b", L, 2 * L ** -0.5, -0.5, "s--", "C1")]
    (ax,) = _readable(plotting.depth_lines("title", "error", lines)).axes
    assert _legend(ax) == ["a (slope -1.00)", "b (slope -0.50)"]
    a, a_fit, b, b_fit = ax.lines
    assert a.get_marker() == "o" and b.get_linestyle() == "--" and a_fit.get_linestyle() == ":"
    np.testing.assert_allclose(a_fit.get_ydata(), 3 / L, rtol=1e-10)
    np.testing.assert_allclose(b_fit.get_ydata(), 2 * L ** -0.5, rtol=1e-10)
    assert ax.get_title() == "title" and ax.get_ylabel() == "error" and ax.xaxis.get_transform().base == 2


def test_paths_vs_limit_draws_both_sdes_and_each_network():
    ts = np.linspace(0, 1, 17)
    H_ito, H0 = np.stack([ts, ts ** 2], 1), np.stack([-ts, ts], 1)
    hidden = {4: np.ones((5, 2)), 16: np.zeros((17, 2))}
    fig = _readable(plotting.paths_vs_limit(ts, H_ito, H0, hidden))
    assert fig.get_suptitle().startswith("csoftplus ResNet")
    for j, ax in enumerate(fig.axes):
        ito, no_corr, net4, net16 = ax.lines
        np.testing.assert_allclose(ito.get_ydata(), H_ito[:, j])
        assert ito.get_color() == "k" and no_corr.get_linestyle() == ":"
        np.testing.assert_allclose(net4.get_xdata(), np.arange(5) / 4)
        assert ax.get_ylabel() == f"coordinate {j}"
    assert _legend(fig.axes[0]) == ["Ito SDE (with correction)", "SDE without correction", "network L=4",
                                    "network L=16"]
    assert fig.axes[1].get_legend() is None


def test_network_vs_limit_draws_points_limits_and_surrogate():
    B, L, d = 3, 10, 4
    h = np.random.default_rng(0).standard_normal((B, L + 1, d))
    res = {"sup_error": [0.125, 0.25, 0.5], "activation": "tanh", "seed": 3, "limit": "linear ODE: SP eq. 14"}
    fig = _readable(plotting.network_vs_limit(h, 2 * h, 3 * h, res))
    assert len(fig.axes) == 2  # the first two inputs
    first, second = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["test input 0: sup error 0.125", "test input 1: sup error 0.25"]
    assert fig.get_suptitle() == "tanh network, L=10, seed 3: linear ODE"
    assert len(first.lines) == 9  # 3 coordinates x (network, limit, surrogate)
    net, lim, sur = second.lines[3:6]  # coordinate 1 of input 1
    assert net.get_linestyle() == "None" and lim.get_linestyle() == "-" and sur.get_linestyle() == ":"
    np.testing.assert_allclose(net.get_xdata(), np.arange(L + 1) / L)
    np.testing.assert_allclose(lim.get_ydata(), 2 * h[1, :, 1])
    assert len(_legend(first)) == 9 and second.get_legend() is None
    assert len(plotting.network_vs_limit(h[:1], h[:1], None, res).axes[0].lines) == 6


def test_parametrization_limit_errors_one_line_per_case_with_a_limit():
    result = {"cases": [
        {"label": "P", "limit": {"hypothesis": 1, "depths": [4, 8, 16], "error_mean": [0.1, None, 0.025],
                                 "slope": -1.0}},
        {"label": "Q", "limit": {"hypothesis": None, "limit": "none: the verdict is neither"}},
        {"label": "R", "limit": {"hypothesis": 2, "depths": [4, 8], "error_mean": [0.2, 0.1], "slope": None}},
    ]}
    (ax,) = _readable(plotting.parametrization_limit_errors(result)).axes
    assert _legend(ax) == ["P (ODE) (slope -1.00)", "R (SDE) (slope +nan)"]
    p = _labelled(ax)["P (ODE) (slope -1.00)"]
    np.testing.assert_allclose(p.get_xdata(), [4, 16])  # depths without an error left out
    np.testing.assert_allclose(p.get_ydata(), [0.1, 0.025])
    assert matplotlib.colors.same_color(_labelled(ax)["R (SDE) (slope +nan)"].get_color(), "C2")  # the case's colour
    assert ax.get_title() == "trained network vs its limit on its own weights"


def test_parametrization_lr_transfer_one_line_per_depth():
    case = {"label": "δ = L^-1, iid", "lr_transfer": {
        "depths": [8, 32], "lrs": [0.001, 0.01, 0.1], "final_train_loss": [[0.5, 0.1, None], [0.4, 0.2, 0.3]],
        "optimal_lr": [0.01, None], "lr_rule": "η (L/16)^+0"}}
    (ax,) = _readable(plotting.parametrization_lr_transfer(case)).axes
    assert _legend(ax) == ["L = 8, best η = 0.01", "L = 32"]
    first = ax.lines[0]
    np.testing.assert_allclose(first.get_xdata(), [0.001, 0.01, 0.1])
    np.testing.assert_allclose(first.get_ydata(), [0.5, 0.1, np.nan])
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "base learning rate η (rule: η (L/16)^+0)"
    assert ax.get_title() == "learning-rate transfer: δ = L^-1, iid"


# ------------------------------------------------------------------ save -------------


def _small_figure() -> Figure:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [0, 1])
    return fig


def test_save_creates_the_folders_and_returns_the_path(tmp_path):
    path = tmp_path / "a" / "b" / "x.png"
    assert plotting.save(_small_figure(), path, dpi=50) == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (100, 50)  # 2 x 1 in at 50 dpi
    assert os.listdir(path.parent) == ["x.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not the temporary file's 0600


def test_save_takes_the_format_from_the_suffix_and_closes_pyplot_figures(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    plotting.save(fig, tmp_path / "x.svg")
    assert "<svg" in (tmp_path / "x.svg").read_text()
    assert not plt.fignum_exists(fig.number)


def test_a_failing_save_leaves_the_old_file_and_no_temporary_file(tmp_path):
    def broken(f, **kw):
        f.write(b"half a PNG")
        raise RuntimeError("disk full")

    old = tmp_path / "x.png"
    old.write_bytes(b"the old figure")
    for path in (old, tmp_path / "new.png"):
        fig = _small_figure()
        fig.savefig = broken
        with pytest.raises(RuntimeError, match="disk full"):
            plotting.save(fig, path)
    assert old.read_bytes() == b"the old figure"
    assert os.listdir(tmp_path) == ["x.png"]  # no new.png, no temporary file


def test_width_phase_diagram_is_readable():
    grid = {"widths": [10, 32, 100], "max_depths": [64, 128, 256],
            "alpha": [[0.62, 0.62, 0.63], [0.61, 0.59, 0.57], [0.56, 0.54, 0.54]], "alpha_sd": [[0.02] * 3] * 3,
            "beta": [[0.26, 0.27, 0.27], [0.24, 0.24, 0.25], [0.07, 0.11, 0.14]], "beta_sd": [[0.01] * 3] * 3,
            "nu": [[0.7, 0.6, 0.6], [1.1, 1.0, 0.9], [1.4, 1.3, 1.2]], "nu_sd": [[0.03] * 3] * 3,
            "verdict": [["Hypothesis 1"] * 3, ["Hypothesis 2", "neither (sparse)", "Hypothesis 1"],
                        [None, "Hypothesis 1", "Hypothesis 1"]]}
    fig = _readable(plotting.width_phase_diagram({"grid": grid, "preset": "tanh-synthetic", "quick": True,
                                                  "width_rule": "Adam: η(d) = η 10/d (μP, hidden weights)"}))
    assert [ax.get_xlabel() for ax in fig.axes] == ["width d"] * 4
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:3] == ["Hypothesis 1", "Hypothesis 2",
                                                                                "neither"]
