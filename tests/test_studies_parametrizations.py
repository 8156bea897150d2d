"""The depth-parametrisation study on a tiny grid: its JSON, tables and figures."""

import json

import pytest

from resnet_limits.studies import parametrizations as par

TINY = par.Mode(depths=(3, 4, 6), limit_seeds=1, limit_inputs=2, lr_depths=(3, 6), lrs=(0.01, 0.1), lr_seeds=1,
                seeds=2, max_updates=4)
KEYS = {"study", "preset", "quick", "seeds", "depths", "ref_depth", "cases", "figures", "seconds"}
CASE_KEYS = {"name", "label", "parametrization", "branch_exponent", "init", "lr", "lr_rule", "sweep_dir", "init_dir",
             "regime_at_init", "regime_trained", "limit", "lr_transfer", "lr_transfer_const_eps"}
REGIME_KEYS = {"verdict", "verdict_b", "reason", "alpha", "beta", "beta_sd", "beta_b", "nu", "nu_b", "noise_to_trend",
               "quadratic_variation", "finite_quadratic_variation"}


def _tiny(monkeypatch, names):
    monkeypatch.setitem(par.MODES, True, TINY)
    monkeypatch.setattr(par, "CASES", tuple(c for c in par.CASES if c.name in names))


def _check(result, out, names):
    assert set(result) == KEYS and result["quick"] is True and result["depths"] == [3, 4, 6]
    assert json.loads((out / "parametrizations.json").read_text()) == json.loads(json.dumps(result))
    assert [c["name"] for c in result["cases"]] == list(names)
    for c in result["cases"]:
        assert set(c) == CASE_KEYS
        assert set(c["regime_at_init"]) == REGIME_KEYS and set(c["regime_trained"]) == REGIME_KEYS
        lim = c["limit"]
        if lim["hypothesis"] is not None:
            assert lim["depths"] == [3, 4, 6] and len(lim["error_mean"]) == 3 and lim["slope"] is not None
        t = c["lr_transfer"]
        assert t["depths"] == [3, 6] and t["lrs"] == [0.01, 0.1] and len(t["final_train_loss"]) == 2
        assert all(o in t["lrs"] for o in t["optimal_lr"])
        const = c["lr_transfer_const_eps"]
        if c["branch_exponent"] is None:  # learned delta: no epsilon rule, one transfer
            assert const is None and t["eps_rule"] == "ε = 1e-08 at every depth"
        else:  # fixed: with eps(L) = 1e-8 (L/16)^-a, and with the constant 1e-8
            a = c["branch_exponent"]
            assert t["adam_eps_depth"] and not const["adam_eps_depth"] and const["lrs"] == t["lrs"]
            assert t["adam_eps_used"] == pytest.approx([1e-8 * (L / par.REF_DEPTH) ** -a for L in t["depths"]],
                                                       rel=1e-6)
            assert const["adam_eps_used"] == pytest.approx([1e-8] * len(t["depths"]), rel=1e-6)
            assert "/lr_transfer_const_eps/" in const["dirs"][0]
    md = (out / "parametrizations.md").read_text()
    assert md.strip() == par.format_parametrizations(result)
    assert "| parametrisation × init | regime at init | regime after training | limit error slope |" in md
    for c in result["cases"]:
        assert md.count(f"| {c['label']} |") == 2  # one row in each table
        assert md.count(f"| {c['label']}, constant ε |") == (c["lr_transfer_const_eps"] is not None)
    assert result["figures"] == ["limit_errors.png"] + [f"lr_transfer_{n}.png" for n in names]
    for f in result["figures"]:
        assert (out / f).stat().st_size > 1000


def test_case_configurations():
    cfgs = {c.name: par.case_config(c, [4, 8]) for c in par.CASES}
    learned = cfgs["learned-delta"]
    assert learned.parametrization == "learned-delta" and learned.init == "xavier-depth"
    fixed = cfgs["fixed-a0.5-smooth"]
    assert (fixed.parametrization, fixed.branch_exponent, fixed.init, fixed.ref_depth) == \
        ("fixed", 0.5, "smooth", par.REF_DEPTH)
    assert all(c.seeds == 5 and c.max_updates == 160 for c in cfgs.values())
    assert len(par.QUICK_DEPTHS) <= 8 and max(par.QUICK_DEPTHS) <= 400 and len(par.MODES[True].lrs) >= 5
    assert len(par.MODES[True].lr_depths) >= 4


def test_tiny_study(tmp_path, monkeypatch):
    names = ("fixed-a1-smooth",)
    _tiny(monkeypatch, names)
    result = par.run(tmp_path, quick=True, progress=False)
    _check(result, tmp_path, names)
    c = result["cases"][0]
    assert c["regime_at_init"]["alpha"] == pytest.approx(1.0)  # delta = 1/L exactly, untrained
    assert c["regime_trained"]["alpha"] == pytest.approx(1.0)
    assert c["lr_rule"] == "η at every depth"  # Adam, a = 1: exponent 0


@pytest.mark.slow
def test_tiny_study_with_the_baseline_resumes(tmp_path, monkeypatch):
    names = ("learned-delta", "fixed-a0.5-iid")
    _tiny(monkeypatch, names)
    first = par.run(tmp_path, quick=True, progress=False)
    _check(first, tmp_path, names)
    assert first["cases"][1]["lr_rule"] == "η (L/16)^-0.5"
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("depths/L*.npz")}
    again = par.run(tmp_path, quick=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("depths/L*.npz")} == files  # nothing trained again
    assert [c["limit"] for c in again["cases"]] == [c["limit"] for c in first["cases"]]
