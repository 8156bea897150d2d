"""Tests of resnet_limits.studies.backprop (AA §5, Thms 4, 5): the study's files and its dict."""

from __future__ import annotations

import inspect
import json

import jax
import jax.numpy as jnp
import pytest

from resnet_limits import backprop as bp
from resnet_limits.errors import UsageError
from resnet_limits.studies import backprop as study

TINY = dict(width=2, depths=[2, 4], n_fine=8, paths1=2, paths2=2, chunk1=2, chunk2=2)


def _stand_in(real, metrics, scalars=()):
    """A stand-in for the per-path function ``real`` (bp.regime1_path_errors or regime2_path_errors)
    of the study: called as the real one (its signature is checked and the keyword arguments are
    recorded), it returns the real one's keys (pinned by tests/test_backprop.py), per key an error
    c/L with a random c > 1. The mathematics is tested in tests/test_backprop.py; compiling the
    diffrax solves here would cost three programs of seconds each for a test of the study's files."""
    sig, calls = inspect.signature(real), []

    def fake(key, **kw):
        sig.bind(key, **kw)
        calls.append(kw)
        c = 1.0 + jax.random.uniform(key, dtype=jnp.float64)
        per_depth = c / jnp.asarray(kw["depths"], jnp.float64)
        out = {f"{a}:{m}": per_depth for a in kw["activations"] for m in metrics}
        out.update({f"{a}:{m}": c / 100 for a in kw["activations"] for m in scalars})
        return out

    return fake, calls


@pytest.mark.slow
def test_reproduce_backprop_quick(tmp_path):
    """The CLI entry point writes backprop.json with per-case depths, errors, slope and the PNGs."""
    res = study.run(tmp_path / "out", quick=True, n_paths=8, progress=False)
    data = json.loads((tmp_path / "out" / "backprop.json").read_text())
    assert set(data["cases"]) == {
        "regime1-node-tanh", "regime1-node-csoftplus", "regime1-linear-tanh", "regime1-linear-csoftplus",
        "regime2-tanh", "regime2-csoftplus",
    }
    for name, c in data["cases"].items():
        assert len(c["depths"]) == len(c["errors"]) == 7
        assert c["slope"] < -0.3, (name, c["slope"])
    for f in data["figures"]:
        assert (tmp_path / "out" / f).stat().st_size > 1000
    assert res["cases"]["regime2-tanh"]["slope"] == data["cases"]["regime2-tanh"]["slope"]


def test_bad_n_paths_is_usage_error(tmp_path):
    with pytest.raises(UsageError):
        study.run(tmp_path, quick=True, n_paths=1, progress=False)


def test_run_writes_the_returned_dict(tmp_path, monkeypatch):
    """backprop.json has the keys of the returned dict (tiny sizes); the summary names each case."""
    monkeypatch.setattr(study, "_settings", lambda quick, n_paths: dict(TINY))
    monkeypatch.setattr(study, "ACTIVATIONS", ("tanh",))
    r1, calls1 = _stand_in(bp.regime1_path_errors, ("errors", "grad_errors"))
    r2, calls2 = _stand_in(bp.regime2_path_errors, ("errors", "phi_errors", "grad_errors", "li_errors", "naive_errors"),
                           ("li_vs_phi", "naive_vs_phi"))
    monkeypatch.setattr(study, "regime1_path_errors", r1)
    monkeypatch.setattr(study, "regime2_path_errors", r2)
    res = study.run(tmp_path / "out", progress=False)
    # the study's settings reach the per-path functions: both Regime-1 cases, then Regime 2 with the adjoint
    common = dict(depths=tuple(TINY["depths"]), width=TINY["width"], activations=("tanh",))
    assert calls1 == [dict(common, alpha=1.0), dict(common, alpha=study.LINEAR_ALPHA)]
    assert calls2 == [dict(common, n_fine=TINY["n_fine"], li=True)]
    saved = json.loads((tmp_path / "out" / "backprop.json").read_text())
    assert set(saved) == set(res) == {"settings", "cases", "li_adjoint", "figures", "seconds"}
    assert set(saved["cases"]) == set(res["cases"]) == {"regime1-node-tanh", "regime1-linear-tanh", "regime2-tanh"}
    assert saved["figures"] == ["backprop_regime1_node.png", "backprop_regime1_linear.png", "backprop_regime2.png"]
    text = study.format_backprop(res)
    assert all(name in text for name in res["cases"]) and "Li et al. adjoint (tanh)" in text
