"""Backpropagation convergence study (AA §5, Thms 4, 5): discrete Jacobians vs backward ODEs / the Phi SDE.

:func:`run` ``(out, *, quick=False, n_paths=None, progress=True)`` writes ``out/backprop.json``
(the returned dict) and ``out/backprop_*.png``. Cases (width d = 4, float64, errors averaged over
random paths, slopes of log-log fits vs L):

- ``regime1-node-<act>``: beta = 0, alpha = 1, A_k = Abar_{k/L}, delta = 1/L, smooth random
  trends; error sup_k ||J_k - P_{k/L}||_F with P of AA eq. 5.5 (expected slope -1).
- ``regime1-linear-<act>``: alpha = beta = 1/2; P of AA eq. 5.6 (expected slope -2 beta = -1
  for tanh, -beta = -1/2 for sigma''(0) != 0, where the pre-activations O(L^{-beta}) feel sigma'').
- ``regime2-<act>``: SP Remark 2.1 Brownian weights from one fine path (n_fine steps) per
  sample; error E sup_k ||J_k - Phi_1 Phi_{k/L}^{-1}||_F^2 (AA Thm 5; expected slope -1, i.e.
  strong order 1/2). Also Phi itself, the weight gradients, and the Li et al. adjoint.

<act> is ``tanh`` (sigma''(0) = 0) or ``csoftplus`` (sigma''(0) = 1/2). Quick: L = 2^4..2^10,
64 paths, n_fine = 2^14; full: L = 2^4..2^13, 256 paths, n_fine = 2^17 (n_fine = 16 Lmax: the
fine-grid error of the Euler-Maruyama limit, about 1/n_fine in E sup^2, stays below the
network's ~1/L; with n_fine = 4 Lmax the last depth would look about 25% too good). The per-path
mathematics is :func:`resnet_limits.backprop.regime1_path_errors` / ``regime2_path_errors``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np
from tqdm import tqdm

from resnet_limits.backprop import regime1_path_errors, regime2_path_errors
from resnet_limits.errors import UsageError
from resnet_limits.limits import error_rate, map_paths
from resnet_limits.models import get_activation
from resnet_limits import plotting
from resnet_limits.studies._io import output_folder, write_json

__all__ = ["ACTIVATIONS", "LINEAR_ALPHA", "format_backprop", "run"]

ACTIVATIONS = ("tanh", "csoftplus")  # sigma''(0) = 0 and sigma''(0) = 1/2
LINEAR_ALPHA = 0.5  # linear case: alpha = beta = 1/2 (0 < alpha < 1, alpha + beta = 1)
_SEED = 20210705


def _settings(quick: bool, n_paths: Optional[int]) -> dict:
    if n_paths is not None and (not isinstance(n_paths, (int, np.integer)) or n_paths < 2):
        raise UsageError(f"n_paths must be an integer >= 2, got {n_paths!r}")
    if quick:
        s = dict(width=4, depths=[2**j for j in range(4, 11)], n_fine=2**14, paths1=64, paths2=64, chunk1=64, chunk2=32)
    else:
        s = dict(width=4, depths=[2**j for j in range(4, 14)], n_fine=2**17, paths1=256, paths2=256, chunk1=64, chunk2=16)
    if n_paths is not None:
        s["paths1"] = s["paths2"] = int(n_paths)
    return s


def _summary(depths, per_path: np.ndarray) -> dict:
    """Mean over paths, its standard error and the log-log slopes against L (all, larger half)."""
    r = error_rate(depths, per_path)
    return {"values": r.mean.tolist(), "stderr": r.stderr.tolist(), "slope": r.fit.slope,
            "slope_stderr": r.fit.stderr, "slope_large_L": r.tail.slope}


def _regime1_cases(st: dict, bar) -> dict:
    """The four Regime-1 cases (neural-ODE and linear, both activations): AA Thm 4."""
    depths, cases = st["depths"], {}
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(_SEED), 1), st["paths1"])  # same trends for all
    for kind in ("node", "linear"):
        t0 = time.time()
        alpha = 1.0 if kind == "node" else LINEAR_ALPHA
        fn = lambda k, alpha=alpha: regime1_path_errors(  # noqa: E731
            k, depths=tuple(depths), width=st["width"], activations=ACTIVATIONS, alpha=alpha)
        bar.set_postfix_str(f"regime1-{kind}")
        r = map_paths(fn, keys, st["chunk1"], on_chunk=lambda n: bar.update(len(ACTIVATIONS) * n))
        secs = round(time.time() - t0, 2)
        for act in ACTIVATIONS:
            e, g = _summary(depths, r[f"{act}:errors"]), _summary(depths, r[f"{act}:grad_errors"])
            beta = 1.0 - alpha
            if kind == "node":
                expected = -1.0
            else:
                expected = -min(1.0, 2 * beta) if get_activation(act).d2_at_0 == 0 else -min(1.0, beta)
            cases[f"regime1-{kind}-{act}"] = {
                "regime": 1, "case": "neural-ode" if kind == "node" else "linear", "activation": act,
                "alpha": alpha, "beta": beta,
                "metric": "mean over paths of sup_k ||J_k - P_{k/L}||_F",
                "limit": "AA eq. 5.5 (dP = -P diag(sigma'(Abar H + bbar)) Abar dt)" if kind == "node"
                else "AA eq. 5.6 (dP = -P Abar dt)",
                "depths": depths, "errors": e["values"], "errors_stderr": e["stderr"],
                "slope": e["slope"], "slope_stderr": e["slope_stderr"], "slope_large_L": e["slope_large_L"],
                "expected_slope": expected,
                "grad_metric": "mean over paths of sup_k ||L^alpha dl/dA_k - G^A_{k/L}||_F + ||L^alpha dl/db_k - G^b_{k/L}||",
                "grad_errors": g["values"], "grad_slope": g["slope"],
                "n_paths": st["paths1"], "seconds_both_activations": secs,
            }
    return cases


def _li_summary(r: dict, act: str) -> dict:
    lv, nv = r[f"{act}:li_vs_phi"], r[f"{act}:naive_vs_phi"]
    return {
        "metric": "mean over paths of sup_k ||J^adjoint_{k/Lmax} - Phi_1 Phi_{k/Lmax}^{-1}||_F^2",
        "li_vs_phi": float(lv.mean()),
        "li_vs_phi_stderr": float(lv.std(ddof=1) / math.sqrt(len(lv))),
        "naive_vs_phi": float(nv.mean()),
        "naive_vs_phi_stderr": float(nv.std(ddof=1) / math.sqrt(len(nv))),
    }


def _regime2_cases(st: dict, bar) -> tuple[dict, dict]:
    """The Regime-2 cases (both activations, AA Thm 5) and the Li et al. adjoint's summary."""
    depths, cases, li = st["depths"], {}, {}
    t0 = time.time()
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(_SEED), 2), st["paths2"])  # same paths for both
    fn = lambda k: regime2_path_errors(  # noqa: E731
        k, depths=tuple(depths), width=st["width"], n_fine=st["n_fine"], activations=ACTIVATIONS, li=True)
    bar.set_postfix_str("regime2")
    r = map_paths(fn, keys, st["chunk2"], on_chunk=lambda n: bar.update(len(ACTIVATIONS) * n))
    secs = round(time.time() - t0, 2)
    for act in ACTIVATIONS:
        s = {k: _summary(depths, r[f"{act}:{k}"])
             for k in ("errors", "phi_errors", "grad_errors", "li_errors", "naive_errors")}
        cases[f"regime2-{act}"] = {
            "regime": 2, "case": "diffusive (SP Remark 2.1 Brownian weights, alpha = 0)", "activation": act,
            "metric": "mean over paths of sup_k ||J_k - Phi_1 Phi_{k/L}^{-1}||_F^2",
            "limit": "AA eq. 5.10-5.11, Ito, diffrax Euler on the fine path",
            "n_fine": st["n_fine"], "depths": depths,
            "errors": s["errors"]["values"], "errors_stderr": s["errors"]["stderr"],
            "slope": s["errors"]["slope"], "slope_stderr": s["errors"]["slope_stderr"],
            "slope_large_L": s["errors"]["slope_large_L"], "expected_slope": -1.0,
            "phi_errors": s["phi_errors"]["values"], "phi_slope": s["phi_errors"]["slope"],
            "grad_metric": "mean over paths of sup_k ||dl/dA_k - G^A_{k/L}||_F^2 + ||dl/db_k - G^b_{k/L}||^2",
            "grad_errors": s["grad_errors"]["values"], "grad_slope": s["grad_errors"]["slope"],
            "li_errors": s["li_errors"]["values"], "li_slope": s["li_errors"]["slope"],
            "naive_errors": s["naive_errors"]["values"], "naive_slope": s["naive_errors"]["slope"],
            "n_paths": st["paths2"], "seconds_both_activations": secs,
        }
        li[act] = _li_summary(r, act)
    return cases, li


_COLORS = {"tanh": "C0", "csoftplus": "C3"}
_MARKERS = ("o-", "s-")


def _figures(out: Path, cases: dict, st: dict) -> list[str]:
    depths, d = st["depths"], st["width"]
    names = []
    for kind, title in (("node", "Regime 1, neural-ODE case (beta=0, alpha=1)"),
                        ("linear", "Regime 1, linear case (alpha=beta=1/2)")):
        lines = []
        for a, m in zip(ACTIVATIONS, _MARKERS):
            c = cases[f"regime1-{kind}-{a}"]
            lines.append((f"{a}: J vs P", depths, c["errors"], c["slope"], m, _COLORS[a]))
            lines.append((f"{a}: weight grads", depths, c["grad_errors"], c["grad_slope"], m[0] + "--", _COLORS[a]))
        fig = plotting.depth_lines(title + f", d={d}, {st['paths1']} paths",
                                   "mean sup_k ||J_k - P_{k/L}||_F  (grads: L^alpha-rescaled)", lines)
        names.append(Path(plotting.save(fig, out / f"backprop_regime1_{kind}.png", dpi=120)).name)
    lines = []
    for a, m in zip(ACTIVATIONS, _MARKERS):
        c = cases[f"regime2-{a}"]
        lines.append((f"{a}: J vs Phi_1 Phi_t^-1", depths, c["errors"], c["slope"], m, _COLORS[a]))
        lines.append((f"{a}: J vs Li et al. adjoint", depths, c["li_errors"], c["li_slope"], m[0] + "--", _COLORS[a]))
        lines.append((f"{a}: J vs adjoint w/o Strat. drift", depths, c["naive_errors"], c["naive_slope"], m[0] + ":",
                      _COLORS[a]))
    fig = plotting.depth_lines(f"Regime 2, Brownian weights, d={d}, {st['paths2']} paths, {st['n_fine']} fine steps",
                               "E sup_k ||J_k - J_{k/L}||_F^2", lines)
    names.append(Path(plotting.save(fig, out / "backprop_regime2.png", dpi=120)).name)
    return names


def run(out, *, quick: bool = False, n_paths: Optional[int] = None, progress: bool = True) -> dict:
    """The backpropagation study (module docstring); writes ``out/backprop.json`` (the returned
    dict: ``settings``, ``cases`` -> per case ``depths``, ``errors``, ``slope``, ..., ``li_adjoint``,
    ``figures``, ``seconds``) and the PNGs. ``n_paths`` overrides the number of paths of every case."""
    st = _settings(quick, n_paths)
    out = output_folder(out)
    t_start = time.time()
    total = len(ACTIVATIONS) * (2 * st["paths1"] + st["paths2"])
    with jax.enable_x64(True):
        bar = tqdm(total=total, desc="backprop paths", disable=not progress, unit="path")
        cases = _regime1_cases(st, bar)
        regime2, li_summary = _regime2_cases(st, bar)
        cases.update(regime2)
        bar.close()
    result = {
        "settings": {
            "width": st["width"], "depths": st["depths"], "n_fine": st["n_fine"], "paths_regime1": st["paths1"],
            "paths_regime2": st["paths2"], "dtype": "float64", "quick": bool(quick),
            "linear_case_alpha_beta": [LINEAR_ALPHA, 1 - LINEAR_ALPHA],
            "regime1_solver": "diffrax Tsit5, PID rtol 1e-10 atol 1e-12; forward H dense, P backward from t=1",
            "regime2_solver": "diffrax Euler (= Euler-Maruyama, Ito) with StepTo on the fine knots",
            "li_solver": "diffrax Heun (Stratonovich) in reversed time on the same fine path",
        },
        "cases": cases,
        "li_adjoint": li_summary,
        "figures": _figures(out, cases, st),
        "seconds": round(time.time() - t_start, 1),
    }
    write_json(out / "backprop.json", result)
    return result


def format_backprop(result: dict) -> str:
    """One line per case (fitted slope, expected, large-L slope, metric) and the Li et al. adjoint."""
    lines = [f"{name:28s} slope {c['slope']:+.3f} (expected {c['expected_slope']:+.2f}, "
             f"large-L {c['slope_large_L']:+.3f})  {c['metric']}" for name, c in result["cases"].items()]
    for act, li in result["li_adjoint"].items():
        lines.append(f"Li et al. adjoint ({act}): E sup ||J_Li - Phi_1 Phi^-1||^2 = {li['li_vs_phi']:.2e}; "
                     f"without the Ito->Stratonovich drift: {li['naive_vs_phi']:.2e}")
    return "\n".join(lines)
