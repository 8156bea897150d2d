"""Depth parametrisations beyond the papers: the regime of the weights at initialisation
and after training, the network-vs-limit error against depth, and learning-rate transfer.

The cases (:data:`CASES`), all on the synthetic task of the ``tanh-synthetic`` preset (SP §3.1,
tanh, d = 10, Adam, 160 updates):

- ``learned-delta``: the papers' baseline, a shared delta trained from 1/L, ``xavier-depth`` weights;
- ``fixed`` delta = L^{-a}, never trained, a in {1/2 (Depth-muP), 1 (neural ODE / CompleteP)} x
  initialisation in {``iid`` (N(0, 1/d) entries), ``smooth`` (a random smooth function of k/L)},
  with the learning rate of the depth-transfer rule eta(L) = eta (L/L0)^{a-1} (Adam) from
  L0 = :data:`REF_DEPTH` (:class:`~resnet_limits.training.TrainConfig`).

For each case:

1. a depth sweep of 5 seeds (``sweeps.run_sweep``, resumable) in ``out/sweeps/<case>``, and the
   same networks before training (``sweeps.fc.run_initial_weights``: every seed's initial weights
   drawn again from its key) in ``out/init/<case>``;
2. the scaling analysis of both folders (:func:`resnet_limits.analysis.analyze_run`: alpha, beta,
   nu, noise/trend, quadratic variation, verdict, SP §2.3): the regime at initialisation and after
   training;
3. the network-vs-limit error on the trained weights against depth (the ODE where the trained
   verdict is Hypothesis 1, the Ito SDE where it is Hypothesis 2, both on the weights' own path:
   :func:`resnet_limits.limits.regime_limit.limit_on_weights`): E over seeds and test inputs of
   sup_k |h_k - H_{k/L}|, with its log-log slope; no limit is solved for "neither";
4. learning-rate transfer: the final training loss against the base learning rate eta (the rate
   at L0; the depth rule scales it) on a log grid at several depths, with every eta x seed of a
   depth one vmapped program (``sweeps.run_lr_grid``, i.e. ``train_seeds(..., lrs=...)``), no early
   stop (epsilon = 0: every run has the same 160 updates), and the measured optimal eta per depth.
   The fixed cases train it twice: with Adam's epsilon following the per-layer gradient,
   eps(L) = 1e-8 (L/L0)^{-a} (the trainer's default, as CompleteP, Dey et al. 2025), in
   ``out/lr_transfer/<case>``, and with the constant eps = 1e-8 in
   ``out/lr_transfer_const_eps/<case>`` (:class:`~resnet_limits.training.TrainConfig`).

Writes ``out/parametrizations.json`` (the returned dict), ``out/parametrizations.md`` (the tables)
and the figures ``out/limit_errors.png`` and ``out/lr_transfer_<case>.png`` (fixed cases: solid with
the epsilon rule, dashed with a constant epsilon).

``quick`` (under 10 minutes on 2 CPU cores: 3 min 7 s and 3 min 57 s measured, cold, while other
jobs shared the cores; with the constant-epsilon transfer of the fixed cases, which adds about 45 s,
9 min 18 s on cores other jobs loaded three times over):
8 depths 4..400 (:data:`QUICK_DEPTHS`) instead of the 19 depths 4..2048 of :data:`FULL_DEPTHS`;
the limit on 2 seeds x 4 test inputs instead of 5 x 8; learning-rate transfer at 4 depths 8..400
with 8 rates (:data:`QUICK_LRS`) and 2 seeds instead of 5 depths 8..2048, 10 rates
(:data:`FULL_LRS`) and 3 seeds; no per-folder analysis figures. The 5 seeds and the 160 updates
of the sweeps are never reduced.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from resnet_limits import plotting, sweeps
from resnet_limits.config import SweepConfig, sweep_config
from resnet_limits.limits import sup_sq_error
from resnet_limits.limits.regime_limit import HYPOTHESIS_LIMITS, limit_on_weights
from resnet_limits.models import ResNetParams
from resnet_limits.scaling import finite_or_none, loglog_fit
from resnet_limits.studies._io import cell, output_folder, write_study
from resnet_limits.run import Run
from resnet_limits.sweeps.fc import run_initial_weights

__all__ = ["CASES", "FULL_DEPTHS", "QUICK_DEPTHS", "REF_DEPTH", "Case", "case_config", "format_parametrizations",
           "parametrizations_markdown", "run"]

PRESET = "tanh-synthetic"
#: Reference depth L0 of the learning-rate rule of the fixed parametrisations.
REF_DEPTH = 16
SEEDS = 5
QUICK_DEPTHS = (4, 8, 16, 32, 64, 128, 256, 400)
FULL_DEPTHS = (4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024, 1448, 2048)


class Mode(NamedTuple):
    """The sizes of one version of the study (module docstring)."""

    depths: tuple[int, ...]
    limit_seeds: int
    limit_inputs: int
    lr_depths: tuple[int, ...]
    lrs: tuple[float, ...]
    lr_seeds: int
    seeds: int = SEEDS
    max_updates: Optional[int] = None  # None: the preset's 160 (tests shrink it)


#: Base learning rates: half decades (rounded), 10^-3.5..1 (quick) and 10^-4..10^0.5.
QUICK_LRS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FULL_LRS = (0.0001,) + QUICK_LRS + (3.0,)
MODES = {
    True: Mode(QUICK_DEPTHS, 2, 4, (8, 32, 128, 400), QUICK_LRS, 2),
    False: Mode(FULL_DEPTHS, SEEDS, 8, (8, 32, 128, 512, 2048), FULL_LRS, 3),
}


class Case(NamedTuple):
    """One parametrisation x initialisation."""

    name: str  # folder name
    label: str
    branch_exponent: Optional[float]  # None: learned delta
    init: Optional[str]  # None: the preset's

    def overrides(self) -> dict[str, Any]:
        """Settings of :func:`resnet_limits.config.sweep_config` beyond the preset."""
        if self.branch_exponent is None:
            return {}
        return dict(parametrization="fixed", branch_exponent=self.branch_exponent, init=self.init,
                    ref_depth=REF_DEPTH)


CASES = (
    Case("learned-delta", "learned δ (SP)", None, None),
    Case("fixed-a0.5-iid", "δ = L^-1/2, iid", 0.5, "iid"),
    Case("fixed-a0.5-smooth", "δ = L^-1/2, smooth", 0.5, "smooth"),
    Case("fixed-a1-iid", "δ = L^-1, iid", 1.0, "iid"),
    Case("fixed-a1-smooth", "δ = L^-1, smooth", 1.0, "smooth"),
)


def case_config(case: Case, depths: Sequence[int], *, seeds: int = SEEDS, max_updates: Optional[int] = None,
                **settings) -> SweepConfig:
    """The sweep configuration of one case (the ``tanh-synthetic`` preset with the case's settings)."""
    return sweep_config(PRESET, depths=list(depths), seeds=seeds, max_updates=max_updates, **case.overrides(),
                        **settings)


# ------------------------------------------------------------------ regimes ----------

def _regime(res: dict) -> dict[str, Any]:
    """The regime of one analysed folder (``analyze_run``'s dict): exponents, step-4/5 numbers, verdicts."""
    steps = res["hypothesis_tests"]["A"]["steps"]
    return {
        "verdict": res["verdicts"]["A"], "verdict_b": res["verdicts"]["b"],
        "reason": res["hypothesis_tests"]["A"]["reason"],
        "alpha": res["alpha"], "beta": res["beta"], "beta_sd": res["beta_sd"], "beta_b": res["beta_b"],
        "nu": res["nu"], "nu_b": res["nu_b"],
        "noise_to_trend": steps["4_trend_noise"]["noise_to_trend"],
        "quadratic_variation": steps["5_quadratic_variation"]["qv_largest_depth"],
        "finite_quadratic_variation": res["hypothesis_tests"]["A"]["finite_quadratic_variation"],
    }


def _hypothesis(verdict: str) -> Optional[int]:
    return {"Hypothesis 1": 1, "Hypothesis 2": 2}.get(verdict)


# ------------------------------------------------------------------ limits -----------

def _sup_errors(run: Run, L: int, xs: jax.Array, hypothesis: int, n_seeds: int) -> np.ndarray:
    """sup_k |h_k - H_{k/L}| of the first ``n_seeds`` non-diverged networks of depth ``L``, mean
    over the inputs: (seeds,)."""
    params, metrics = run.params(L), run.metrics(L)
    ok = [s for s, d in enumerate(metrics.get("diverged", [False] * params.A.shape[0])) if not d][:n_seeds]
    if not ok:
        return np.zeros((0,))
    f64 = lambda a: None if a is None else jnp.asarray(np.asarray(a)[ok], jnp.float64)  # noqa: E731
    p = ResNetParams(f64(params.A), f64(params.b), f64(params.delta))
    act, dm = run.config.activation, run.config.delta_mode

    def one(q: ResNetParams) -> jax.Array:
        h, H = limit_on_weights(q, xs, act, dm, hypothesis)
        return jnp.sqrt(jax.vmap(sup_sq_error)(h, H)).mean()

    return np.asarray(jax.jit(jax.vmap(one))(p))


def limit_errors(run: Run, hypothesis: int, *, n_seeds: int, n_inputs: int) -> dict[str, Any]:
    """The network-vs-limit error of a run's trained networks against depth under
    ``hypothesis`` (1: ODE, 2: Ito SDE; module docstring), on the first ``n_inputs`` test inputs,
    with its log-log slope."""
    depths = run.depths
    per_seed = []
    x_test = np.asarray(run.dataset().x_test)[:n_inputs]  # float32, as trained on (not under x64)
    with jax.enable_x64(True):
        xs = jnp.asarray(x_test, jnp.float64)
        for L in depths:
            per_seed.append(_sup_errors(run, L, xs, hypothesis, n_seeds))
    mean = [float(np.mean(e)) if e.size else float("nan") for e in per_seed]
    fit = loglog_fit(depths, mean)
    return {"hypothesis": hypothesis, "limit": HYPOTHESIS_LIMITS[hypothesis], "depths": depths,
            "error_mean": [finite_or_none(v) for v in mean], "error_per_seed": [[float(v) for v in e] for e in per_seed],
            "slope": finite_or_none(fit.slope), "slope_stderr": finite_or_none(fit.stderr), "intercept": finite_or_none(fit.intercept),
            "n_inputs": int(n_inputs)}


# ------------------------------------------------------------------ learning rates ---

def _final_losses(run_dir: Path, depths: Sequence[int]
                  ) -> tuple[list[float], list[Optional[float]], list[Optional[float]]]:
    """Mean final training loss over seeds per depth (inf if a seed diverged), the rate and
    Adam's epsilon used (None where not recorded)."""
    losses, used, eps, run = [], [], [], Run.open(run_dir)
    for L in depths:
        m = run.metrics(L)
        tl = [math.inf if v is None else float(v) for v in m["train_loss"]]
        losses.append(float(np.mean(tl)) if all(math.isfinite(v) for v in tl) else math.inf)
        used.append(finite_or_none(m["lr"][0]) if m.get("lr") else None)
        eps.append(finite_or_none(m["adam_eps"][0]) if m.get("adam_eps") else None)
    return losses, used, eps


def lr_transfer(case: Case, out: Path, mode: Mode, *, progress: bool = True,
                adam_eps_depth: bool = True) -> dict[str, Any]:
    """Final training loss against the base learning rate at ``mode.lr_depths`` (module docstring, 4.),
    with Adam's epsilon rule (``adam_eps_depth``) or a constant epsilon."""
    cfgs = [case_config(case, mode.lr_depths, seeds=mode.lr_seeds, max_updates=mode.max_updates, lr=lr, epsilon=0.0,
                        adam_eps_depth=adam_eps_depth) for lr in mode.lrs]
    dirs = [out / f"lr{lr:g}" for lr in mode.lrs]
    sweeps.run_lr_grid(cfgs, dirs, progress=progress)
    cols = [_final_losses(d, mode.lr_depths) for d in dirs]
    loss = np.array([c[0] for c in cols]).T  # (depths, lrs)
    best = [int(np.argmin(row)) if np.isfinite(row).any() else None for row in loss]
    opt = [None if i is None else mode.lrs[i] for i in best]
    fit = loglog_fit([L for L, o in zip(mode.lr_depths, opt) if o], [o for o in opt if o])
    tcfg = cfgs[0].train_config()
    return {
        "depths": list(mode.lr_depths), "lrs": list(mode.lrs), "seeds": mode.lr_seeds,
        "updates": int(cfgs[0].max_updates),
        "lr_rule": _lr_rule(tcfg), "eps_rule": _eps_rule(tcfg), "adam_eps_depth": tcfg.adam_eps_scaled,
        "final_train_loss": [[finite_or_none(v) for v in row] for row in loss],
        "lr_used": [[c[1][i] for c in cols] for i in range(len(mode.lr_depths))],
        "adam_eps_used": [cols[0][2][i] for i in range(len(mode.lr_depths))],
        "optimal_lr": opt,
        "optimal_lr_used": [None if i is None else cols[i][1][j] for j, i in enumerate(best)],
        "optimal_lr_at_grid_edge": [i is not None and i in (0, len(mode.lrs) - 1) for i in best],
        "optimal_lr_slope": finite_or_none(fit.slope),
        "optimum_moves": len({o for o in opt if o is not None}) > 1,
        "dirs": [str(d) for d in dirs],
    }


def _lr_rule(tcfg) -> str:
    e = tcfg.depth_exponent()
    return "η at every depth" if tcfg.ref_depth is None or e == 0 else f"η (L/{tcfg.ref_depth:g})^{e:+g}"


def _eps_rule(tcfg) -> str:
    """Adam's epsilon against depth, in words (:meth:`~resnet_limits.training.TrainConfig.adam_eps_at`)."""
    if tcfg.optimizer != "adam":
        return "no ε (SGD)"
    if not tcfg.adam_eps_scaled:
        return f"ε = {tcfg.adam_eps:g} at every depth"
    return f"ε = {tcfg.adam_eps:g} (L/{tcfg.ref_depth:g})^{-float(tcfg.branch_exponent):+g}"


# ------------------------------------------------------------------ the study --------

def _run_case(case: Case, out: Path, mode: Mode, quick: bool, progress: bool) -> dict[str, Any]:
    """Sweep, initial weights, both analyses and the limit errors of one case."""
    from resnet_limits.analysis import analyze_run

    cfg = case_config(case, mode.depths, seeds=mode.seeds, max_updates=mode.max_updates)
    trained_dir, init_dir = out / "sweeps" / case.name, out / "init" / case.name
    sweeps.run_sweep(cfg, trained_dir, progress=progress)
    run_initial_weights(cfg, init_dir, progress=False)
    trained_run = Run.open(trained_dir)
    trained = _regime(analyze_run(trained_run, progress=False, figures=not quick))
    at_init = _regime(analyze_run(Run.open(init_dir), progress=False, figures=not quick))
    hyp = _hypothesis(trained["verdict"])
    limit = (limit_errors(trained_run, hyp, n_seeds=mode.limit_seeds, n_inputs=mode.limit_inputs)
             if hyp is not None else {"hypothesis": None, "limit": f"none: the verdict is {trained['verdict']}"})
    tcfg = cfg.train_config()
    return {
        "name": case.name, "label": case.label, "parametrization": tcfg.parametrization,
        "branch_exponent": case.branch_exponent, "init": tcfg.init, "lr": tcfg.lr, "lr_rule": _lr_rule(tcfg),
        "sweep_dir": str(trained_dir), "init_dir": str(init_dir),
        "regime_at_init": at_init, "regime_trained": trained, "limit": limit,
        "lr_transfer": lr_transfer(case, out / "lr_transfer" / case.name, mode, progress=progress),
        "lr_transfer_const_eps": None if not tcfg.adam_eps_scaled else
        lr_transfer(case, out / "lr_transfer_const_eps" / case.name, mode, progress=progress, adam_eps_depth=False),
    }


def run(out, *, quick: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the study of the module docstring under ``out``; returns the dict written
    to ``out/parametrizations.json``."""
    out = output_folder(out)
    mode = MODES[bool(quick)]
    t0 = time.perf_counter()
    cases = []
    for case in tqdm(CASES, desc="parametrizations", unit="case", disable=not progress):
        cases.append(_run_case(case, out, mode, bool(quick), progress))
    result: dict[str, Any] = {
        "study": "depth parametrisations", "preset": PRESET, "quick": bool(quick),
        "seeds": mode.seeds, "depths": list(mode.depths), "ref_depth": REF_DEPTH, "cases": cases,
    }
    figs = [(plotting.parametrization_limit_errors(result), "limit_errors.png")]
    figs += [(plotting.parametrization_lr_transfer(c), f"lr_transfer_{c['name']}.png") for c in cases]
    return write_study(out, "parametrizations", result, figs, parametrizations_markdown, t0)


# ------------------------------------------------------------------ tables -----------

def _regime_cell(r: dict) -> str:
    return (f"{r['verdict']} (α {cell(r['alpha'])}, β {cell(r['beta'])}, ν {cell(r['nu'])}, "
            f"noise/trend {cell(r['noise_to_trend'], '.2g')}, QV {cell(r['quadratic_variation'], '.2g')})")


def _limit_cell(lim: dict) -> str:
    if lim.get("hypothesis") is None:
        return f"- ({lim['limit']})"
    kind = "ODE" if lim["hypothesis"] == 1 else "Itô SDE"
    se = f" ± {lim['slope_stderr']:.2f}" if lim.get("slope_stderr") is not None else ""
    return f"{kind}: {cell(lim['slope'])}{se}"


def _edge(t: dict, j: int) -> str:
    """"≤" / "≥" when depth j's optimum is the smallest / largest rate of the grid (not bracketed)."""
    if not t["optimal_lr_at_grid_edge"][j]:
        return ""
    return "≤" if t["optimal_lr"][j] == t["lrs"][0] else "≥"


def parametrizations_markdown(result: dict) -> str:
    """The study's two tables in Markdown: regimes and limit slopes; optimal learning rate per depth."""
    q = ", quick" if result.get("quick") else ""
    lines = [f"# Depth parametrisations ({result['preset']}, {result['seeds']} seeds, depths "
             f"{result['depths'][0]}..{result['depths'][-1]}{q})", "",
             "| parametrisation × init | regime at init | regime after training | limit error slope |",
             "|---|---|---|---|"]
    for c in result["cases"]:
        lines.append(f"| {c['label']} | {_regime_cell(c['regime_at_init'])} | {_regime_cell(c['regime_trained'])} "
                     f"| {_limit_cell(c['limit'])} |")
    t0 = result["cases"][0]["lr_transfer"]
    lines += ["", f"Learning-rate transfer: the base η with the lowest final training loss (mean over "
                  f"{t0['seeds']} seeds, {t0['updates']} updates, no early stop, η grid "
                  f"{', '.join(format(v, 'g') for v in t0['lrs'])}; ≤/≥: at the grid's edge); the fixed "
                  f"cases with Adam's ε following the per-layer gradient and, on a second row, with a constant ε",
              "", "| parametrisation × init | η rule | Adam's ε | " + " | ".join(f"L = {L}" for L in t0["depths"])
              + " | slope of η* in L |", "|---|---|---|" + "---|" * (len(t0["depths"]) + 1)]
    for c in result["cases"]:
        rows = [(c["label"], c["lr_transfer"])]
        if c.get("lr_transfer_const_eps"):
            rows.append((f"{c['label']}, constant ε", c["lr_transfer_const_eps"]))
        for label, t in rows:
            cells = [f"{_edge(t, j)}{cell(o, 'g')} ({cell(t['final_train_loss'][j][t['lrs'].index(o)], '.2g')})"
                     if o else "-" for j, o in enumerate(t["optimal_lr"])]
            lines.append(f"| {label} | {t['lr_rule']} | {t.get('eps_rule', '-')} | " + " | ".join(cells)
                         + f" | {cell(t['optimal_lr_slope'])} |")
    return "\n".join(lines)


def format_parametrizations(result: dict) -> str:
    """The tables of :func:`parametrizations_markdown` (what ``reproduce parametrizations`` prints)."""
    return parametrizations_markdown(result)
