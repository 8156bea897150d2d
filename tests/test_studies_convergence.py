"""Tests of resnet_limits.studies.convergence: the strong-convergence study (SP §4)."""

import json

import matplotlib.image
import numpy as np
import pytest

from resnet_limits.errors import UsageError
from resnet_limits.limits import REGIME2_ACTIVATIONS, linear_case_name, linear_ode_expected_slope
from resnet_limits.studies import convergence as conv
from resnet_limits.studies.convergence import StudyConfig, convergence_study

# the cost is the compiles of the per-path programs, one depth loop each: three depths, 64x apart
TINY = StudyConfig(width=3, n_paths=24, n_fine=2**11, depths=(8, 64, 512), chunk=24,
                   qv_blocks=2**4, n_trends=4, linear_alphas=(0.5,), ode_depths=None)


@pytest.fixture(scope="module")
def tiny_result():
    return convergence_study(TINY, progress=False)


def test_study_errors_decrease_with_depth_in_each_case(tiny_result):
    cases = tiny_result["cases"]
    for name in ("sde-tanh", "sde-csoftplus-ito", "sde-csoftplus-ito-estimated-q",
                 "neural-ode-tanh", "linear-ode-tanh-alpha0.5", "linear-ode-csoftplus-alpha0.5"):
        e = np.asarray(cases[name]["errors"])
        assert np.all(np.isfinite(e)), name
        assert e[-1] < e[0] / 8, (name, e)
        assert cases[name]["slope"] < -0.6, (name, cases[name]["slope"])
    assert abs(cases["neural-ode-tanh"]["slope"] + 2) < 0.15
    # the corrected SDE converges; without the Ito correction the error stalls at a much larger level
    stall = np.asarray(cases["sde-csoftplus-no-correction"]["errors"])
    good = np.asarray(cases["sde-csoftplus-ito"]["errors"])
    assert stall[-1] > 10 * good[-1], (stall, good)
    assert stall[-1] > stall[0] / 3
    assert cases["sde-csoftplus-no-correction"]["slope"] > -0.4


def test_reproduce_convergence_writes_files(tmp_path, monkeypatch, tiny_result):
    monkeypatch.setattr(conv.StudyConfig, "quick", classmethod(lambda cls, **kw: TINY))
    calls = []

    def cached(cfg, progress=True):  # the study itself is tested above: reuse its result
        calls.append(cfg)
        return json.loads(json.dumps(tiny_result))

    monkeypatch.setattr(conv, "convergence_study", cached)
    res = conv.run(tmp_path / "out", quick=True, progress=False)
    assert calls == [TINY]
    saved = json.loads((tmp_path / "out" / "convergence.json").read_text())
    assert set(saved["cases"]) == set(res["cases"])
    for c in saved["cases"].values():
        assert {"depths", "errors", "slope"} <= set(c)
    for f in saved["figures"]:
        assert (tmp_path / "out" / f).stat().st_size > 1000
    # the JSON is the returned dict
    assert set(saved) == set(res) == {"config", "metric", "cases", "seconds", "solvers", "quick", "figures"}
    assert saved["figures"] == ["convergence_sde.png", "convergence_ode.png", "convergence_paths.png"]
    # Regime 2 (AA Thm 2) in a second panel beside Regime 1
    widths = {f: matplotlib.image.imread(tmp_path / "out" / f).shape[1] for f in saved["figures"][:2]}
    assert widths["convergence_ode.png"] > 1.8 * widths["convergence_sde.png"], widths
    text = conv.format_convergence(res)
    assert all(name in text for name in res["cases"])
    with pytest.raises(UsageError):
        conv.run(tmp_path / "x", n_paths=1, progress=False)


def test_regime2_linear_ode_cases(tiny_result):
    """AA Thm 2 (Scaling regime 2, alpha + beta = 1): on the SDE cases' paths and depths, each
    network converges to the linear ODE that has lost the noise, at the rate stated next to the
    measured one (``expected_rate``: the slope of each error term; ``expected_slope``: the slowest)."""
    cases = tiny_result["cases"]
    names = {n for n, c in cases.items() if c["kind"] == "regime2"}
    assert names == {linear_case_name(act, a, regime=2) for a in TINY.regime2_alphas for act in REGIME2_ACTIVATIONS}
    for name in names:
        c = cases[name]
        assert c["depths"] == list(TINY.depths) and c["n_paths"] == TINY.n_paths and not c["deterministic"]
        assert c["beta"] == pytest.approx(1 - c["alpha"])
        assert c["expected_slope"] == max(c["expected_rate"].values())
        assert c["expected_slope"] == linear_ode_expected_slope(c["activation"], c["alpha"], noise=True)
        e = np.asarray(c["errors"])
        assert np.all(np.isfinite(e)) and e[-1] < e[0] / 4, (name, e)
    for a in TINY.regime2_alphas:  # the linear network: the lost noise alone, E sup^2 ~ L^{-2 alpha}
        c = cases[linear_case_name("identity", a, regime=2)]
        assert abs(c["slope"] - c["expected_slope"]) < 0.25, (a, c["slope"])
    c = cases[linear_case_name("csoftplus", 0.5, regime=2)]  # noise and sigma''(0) terms, both L^-1/2
    assert abs(c["slope"] - c["expected_slope"]) < 0.3, c["slope"]
    text = conv.format_convergence(tiny_result)
    assert "noise lost by the limit L^-alpha -1.40" in text
