"""The width-phase study (beyond the papers) on a tiny grid, and the learning rate's width rule (muP-style)."""

import json

import jax
import numpy as np
import pytest

from resnet_limits import plotting
from resnet_limits.config import sweep_config
from resnet_limits.data import synthetic
from resnet_limits.errors import UsageError
from resnet_limits.run import Run
from resnet_limits.studies import width_phase as wp
from resnet_limits.training import TrainConfig, seed_keys, train_seeds

TINY = wp.Mode(widths=(4, 8), depths=(3, 4, 6), ranges=(6,), seeds=2, max_updates=4)
KEYS = {"study", "preset", "quick", "ref_width", "width_rule", "seeds", "depths", "ranges", "widths", "grid",
        "figures", "seconds"}
WIDTH_KEYS = {"width", "lr", "lr_used", "lr_factor", "epsilon", "sweep_dir", "depths", "updates", "seeds", "cells"}
CELL_KEYS = {"min_depth", "max_depth", "depths", "verdict", "verdict_b", "reason", "alpha", "alpha_sd", "beta",
             "beta_sd", "nu", "nu_sd", "beta_b", "nu_b", "noise_to_trend", "converged_fraction", "diverged",
             "train_loss_largest", "updates_largest"}
GRID_KEYS = {"widths", "max_depths", "alpha", "alpha_sd", "beta", "beta_sd", "nu", "nu_sd", "verdict"}


# ------------------------------------------------------------------ the width rule --------

@pytest.mark.parametrize("kwargs,depth,width,want", [
    (dict(ref_width=10), 50, 100, 0.01 * 10 / 100),  # Adam: eta d0/d
    (dict(ref_width=10), 50, 10, 0.01),
    (dict(ref_width=32, lr=0.003), 7, 8, 0.003 * 4),  # narrower than d0: a larger rate
    (dict(ref_width=10, optimizer="sgd"), 50, 100, 0.01),  # SGD: constant in the width (class docstring)
    (dict(), 50, 100, 0.01),  # no reference width: no rule
    (dict(parametrization="fixed", branch_exponent=0.5, ref_depth=4, ref_width=10), 16, 40,
     0.01 * (16 / 4) ** -0.5 * 10 / 40),  # the depth rule times the width rule
    (dict(parametrization="fixed", branch_exponent=1.0, ref_depth=4, ref_width=10, optimizer="sgd"), 16, 40,
     0.01 * 16 / 4),
])
def test_width_rule(kwargs, depth, width, want):
    cfg = TrainConfig(**kwargs)
    cfg.validate()
    assert cfg.lr_at(depth, width) == pytest.approx(want, rel=1e-12)


def test_width_rule_needs_the_width_and_a_good_reference():
    assert TrainConfig(ref_width=10, optimizer="sgd").lr_at(8) == 0.01  # SGD never needs it
    with pytest.raises(ValueError, match="needs the width d"):
        TrainConfig(ref_width=10).lr_at(8)
    for bad in (0, -3, 2.5):
        with pytest.raises(UsageError, match="reference width must be an integer >= 1"):
            sweep_config("tanh-synthetic", ref_width=bad)


def test_the_trainer_and_the_study_use_the_width_rule():
    # the shapes, batch size and seed count of the tiny study's width 4 below: one set of compiled programs
    data = synthetic(jax.random.PRNGKey(0), n_train=1024, n_test=256, dim=4)
    cfg = TrainConfig(batch_size=32, epochs=1, max_updates=2, ref_width=10)
    res = train_seeds(seed_keys(0, 4, 2), 4, data, cfg)
    np.testing.assert_allclose(res.lr, 0.01 * 10 / 4, rtol=1e-6)
    many = train_seeds(seed_keys(0, 4, 2), 4, data, cfg, lrs=[0.01, 0.002])  # per-run rates scale alike
    np.testing.assert_allclose(many.lr, [0.025, 0.005], rtol=1e-6)
    for d in wp.WIDTHS:
        c = wp.width_config(d, [4, 8], seeds=1)
        assert (c.width, c.ref_width, c.preset, c.optimizer) == (d, wp.REF_WIDTH, "tanh-synthetic", "adam")
        assert c.train_config().lr_at(8, d) == pytest.approx(0.01 * 10 / d)
        assert c.epsilon == pytest.approx(0.01 * 10 / d)  # the early stop at the same per-example error
    quick, full = wp.MODES[True], wp.MODES[False]
    assert quick.widths == full.widths == (10, 32, 100) and max(quick.depths) <= 256 and quick.seeds == 3
    assert full.depths[0] == 3 and full.depths[-1] == 2048 and full.seeds == 5 and full.max_updates is None


# ------------------------------------------------------------------ the study -------------

def test_tiny_study(tmp_path, monkeypatch):
    monkeypatch.setitem(wp.MODES, True, TINY)
    result = wp.run(tmp_path, quick=True, progress=False)
    assert set(result) == KEYS and result["quick"] is True and result["depths"] == [3, 4, 6]
    assert json.loads((tmp_path / "width_phase.json").read_text()) == json.loads(json.dumps(result))
    assert [w["width"] for w in result["widths"]] == [4, 8]
    for w in result["widths"]:
        d = w["width"]
        assert set(w) == WIDTH_KEYS and w["depths"] == [3, 4, 6] and len(w["cells"]) == 1
        assert w["lr_used"] == pytest.approx(0.01 * 10 / d, rel=1e-6) and w["lr_factor"] == pytest.approx(10 / d)
        run = Run.open(tmp_path / f"d{d}")
        assert run.config.width == d and run.config.ref_width == 10 and w["epsilon"] == pytest.approx(0.1 / d)
        assert run.dataset().x_train.shape[1] == d  # the synthetic task at width d
        assert run.metrics(6)["lr"] == pytest.approx([0.01 * 10 / d] * 2, rel=1e-6)
        cell = w["cells"][0]
        assert set(cell) == CELL_KEYS and cell["depths"] == [3, 4, 6]
        assert (cell["min_depth"], cell["max_depth"]) == (3, 6)
        assert cell["verdict"] in ("Hypothesis 1", "Hypothesis 2") or cell["verdict"].startswith("neither")
        assert cell["alpha"] is not None and cell["beta"] is not None
    g = result["grid"]
    assert set(g) == GRID_KEYS and g["widths"] == [4, 8] and g["max_depths"] == [6]
    assert g["alpha"] == [[w["cells"][0]["alpha"]] for w in result["widths"]]
    md = (tmp_path / "width_phase.md").read_text()
    assert md.strip() == wp.format_width_phase(result)
    assert md.count("| 4 | 0.025 | 0.025 | 3..6 |") == 1 and md.count("| 8 | 0.0125 | 0.0125 | 3..6 |") == 1
    assert result["figures"] == ["width_phase.png"] and (tmp_path / "width_phase.png").stat().st_size > 1000


def test_the_phase_diagram_draws_one_line_per_depth_range():
    grid = {"widths": [10, 32, 100], "max_depths": [64, 256],
            "alpha": [[0.7, 0.75], [0.6, 0.65], [0.5, None]], "alpha_sd": [[0.1, 0.1], [0.1, 0.1], [0.1, None]],
            "beta": [[0.2, 0.2], [0.3, 0.3], [0.4, None]], "beta_sd": [[0.0] * 2] * 3,
            "nu": [[0.5, 0.5], [0.6, 0.6], [0.7, None]], "nu_sd": [[0.0] * 2] * 3,
            "verdict": [["Hypothesis 1", "Hypothesis 1"], ["Hypothesis 2", "neither (sparse)"], ["Hypothesis 1", None]]}
    fig = plotting.width_phase_diagram({"grid": grid, "preset": "tanh-synthetic", "width_rule": "η 10/d"})
    assert len(fig.axes) >= 4
    for ax, key in zip(fig.axes[:3], ("alpha", "beta", "nu")):
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]  # one line per range, over the widths
        assert len(lines) == 2
        for j, ln in enumerate(lines):
            np.testing.assert_allclose(ln.get_xdata(), [10, 32, 100])
            np.testing.assert_allclose(ln.get_ydata(), [np.nan if r[j] is None else r[j] for r in grid[key]])
        markers = [ln.get_marker() for ln in ax.get_lines() if len(ln.get_xdata()) == 1]
        assert markers == ["o", "s", "o", "o", "^", "x"]  # by range, then width: the verdict's marker
    texts = [t.get_text() for t in fig.axes[3].texts]
    assert "H1\nα 0.70\nβ 0.20" in texts and "-\nα -\nβ -" in texts and "neither\nα 0.65\nβ 0.30" in texts
