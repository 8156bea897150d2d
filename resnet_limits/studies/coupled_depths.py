"""The limit itself: ladders of depths L0, 2L0, 4L0, ... trained from nested initial weights, and
whether the trained networks converge as the depth doubles, at what rate and to which limit.

SP's Hypotheses 1-2 (SP §2.2) are statements about a limit (L^beta A_{[Lt]} -> A_t smooth, or the
rescaled cumulative sums -> a process with non-zero quadratic variation), but independent sweeps
train every depth from unrelated random weights, so "converges" is never measured. Here every
depth of a ladder starts from weights that refine the previous depth's (:mod:`resnet_limits.nested`:
the same smooth function sampled finer, or a Brownian-bridge refinement of the i.i.d. weights) and
draws the same minibatches (``SweepConfig.nested``), so depths L and 2L can be compared as
approximations of one object.

For each case (parametrisation x initialisation, :data:`CASES`) and each pair (L, 2L), at
initialisation and after training, per seed:

(a) the distance of the weight functions on the common grid in the scaling of Hypothesis 1,
    max_k ||(2L)^beta A^{(2L)}_{2k} - L^beta A^{(L)}_k|| (and with the fine weights averaged in
    pairs), and of the rescaled cumulative-sum paths (Hypothesis 2), beta from the analysis of the
    ladder (SP §2.3);
(b) the distance of the outputs ||f^{(2L)}(x) - f^{(L)}(x)|| on test inputs and of the hidden
    states at the shared times t = k/L;
(c) a rate r of each distance ~ L^{-r}, with a bootstrap interval over seeds
    (:func:`~resnet_limits.nested.rate_fit`), and the verdict: converges at rate L^{-r} / does not
    converge (distance flat or growing) / inconclusive (:func:`~resnet_limits.nested.convergence_verdict`);
(d) a Richardson estimate of the limit from the two deepest depths, (2^r F_{2L} - F_L)/(2^r - 1) of
    the weight functions (Hypothesis 1) or of the paths (Hypothesis 2), and the limiting ODE or Itô
    SDE (:func:`~resnet_limits.limits.regime_limit.limit_on_weights`'s solvers) solved on it,
    beside the deepest network's hidden states;

and the roughness of each trained network's weight path (a Hölder exponent,
:func:`~resnet_limits.scaling.weights_holder_exponent`: 1/2 Brownian, 1 smooth).

``run(out, quick=...)`` writes ``out/coupled_depths.json`` (the returned dict), ``.md`` (the table)
and the figures; the ladders are run folders under ``out/ladders`` and ``out/init`` (resumable).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from resnet_limits import plotting, sweeps
from resnet_limits.config import SweepConfig, sweep_config
from resnet_limits.limits.regime_limit import HYPOTHESIS_LIMITS, own_ode_limit, own_sde_limit
from resnet_limits.models import ResNetParams, forward
from resnet_limits.nested import (
    convergence_verdict,
    path_distance,
    rate_fit,
    richardson_extrapolation,
    weight_function_distance,
    weight_path,
)
from resnet_limits.run import Run
from resnet_limits.scaling import analysed_tensors, finite_or_none, weights_holder_exponent
from resnet_limits.studies._io import cell, output_folder, write_study

__all__ = ["CASES", "DISTANCES", "MODES", "Case", "Mode", "case_config", "coupled_depths_markdown", "distance_rates",
           "format_coupled_depths", "ladder_distances", "limit_beside_deepest", "run", "weight_curves"]

PRESET = "tanh-synthetic"
#: The slowest convergence rate (lower end of its interval) a Richardson estimate is made from:
#: below it 1 / (2^r - 1) > 5 amplifies the distance's own error more than it removes.
MIN_RICHARDSON_RATE = 0.25
#: The distances of (a)-(b): key -> what it measures.
DISTANCES = {
    "weights": "max_k ||(2L)^beta A^(2L)_2k - L^beta A^(L)_k|| (Hypothesis 1 scaling)",
    "weights_pair_mean": "the same with the fine weights averaged in pairs",
    "paths": "max_k of the difference of the rescaled cumulative-sum paths L^(beta-1) sum_{j<k} A_j (Hypothesis 2)",
    "outputs": "||f^(2L)(x) - f^(L)(x)||, mean over test inputs",
    "hidden": "max_k ||h^(2L)_2k - h^(L)_k||, mean over test inputs",
}


class Case(NamedTuple):
    """One parametrisation x initialisation of the study."""

    name: str
    label: str
    branch_exponent: Optional[float]  # None: learned delta (SP)
    init: str

    def overrides(self, base_depth: int) -> dict[str, Any]:
        """Settings of :func:`~resnet_limits.config.sweep_config` beyond the preset."""
        if self.branch_exponent is None:
            return dict(init=self.init)
        return dict(init=self.init, parametrization="fixed", branch_exponent=self.branch_exponent,
                    ref_depth=base_depth)


#: Learned delta (SP; its i.i.d. initialisation is the SP presets' xavier-depth, nested by Brownian
#: bridges in its own law) and the fixed parametrisations delta = L^-1/2 (Depth-muP) and L^-1
#: (CompleteP), each from a smooth and an i.i.d. initialisation.
CASES = (
    Case("learned-smooth", "learned δ, smooth", None, "smooth"),
    Case("learned-iid", "learned δ (SP), i.i.d.", None, "xavier-depth"),
    Case("a0.5-smooth", "δ = L^-1/2, smooth", 0.5, "smooth"),
    Case("a0.5-iid", "δ = L^-1/2, i.i.d.", 0.5, "iid"),
    Case("a1-smooth", "δ = L^-1, smooth", 1.0, "smooth"),
    Case("a1-iid", "δ = L^-1, i.i.d.", 1.0, "iid"),
)


class Mode(NamedTuple):
    """The sizes of one version of the study."""

    depths: tuple[int, ...]
    seeds: int
    n_inputs: int
    max_updates: Optional[int] = None  # None: the preset's 160 (tests shrink it)
    n_boot: int = 1000


MODES = {
    True: Mode((8, 16, 32, 64, 128, 256), 3, 8),
    False: Mode(tuple(16 * 2**j for j in range(9)), 5, 16),  # 16 ... 4,096
}


def case_config(case: Case, mode: Mode) -> SweepConfig:
    """The nested ladder of one case: the ``tanh-synthetic`` preset, the case's settings, the mode's depths."""
    return sweep_config(PRESET, depths=list(mode.depths), seeds=mode.seeds, max_updates=mode.max_updates,
                        nested=True, **case.overrides(mode.depths[0]))


# ------------------------------------------------------------------ one ladder -------

def _tensor(run: Run, L: int) -> dict[str, np.ndarray]:
    """The analysed tensors (A, b: delta absorbed for a homogeneous activation) of depth L."""
    return analysed_tensors(run.params(L), run.config.delta_mode, run.config.activation)


def _forward_all(run: Run, L: int, xs: np.ndarray) -> np.ndarray:
    """Hidden states (S, L+1, B, d) of every seed's network of depth L on the inputs ``xs``."""
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), run.params(L))
    cfg = run.config
    one = lambda q: forward(q, jnp.asarray(xs, jnp.float32), activation=cfg.activation,  # noqa: E731
                            delta_mode=cfg.delta_mode, return_hidden=True)
    return np.asarray(jax.jit(jax.vmap(one))(p))


def ladder_distances(run: Run, beta: float, xs: np.ndarray) -> dict[str, Any]:
    """The distances (a)-(b) of every pair (L, 2L) of a ladder's run folder: (S, pairs) per key of
    :data:`DISTANCES`, the coarse depths L of the pairs, and each network's Hölder exponent."""
    depths = run.depths
    pairs = [(L, 2 * L) for L in depths if 2 * L in depths]
    out = {k: [] for k in DISTANCES}
    hidden = {L: _forward_all(run, L, xs) for L in depths}
    tens = {L: _tensor(run, L)["A"] for L in depths}
    for L, L2 in pairs:
        with jax.enable_x64(True):
            T, T2 = jnp.asarray(tens[L], jnp.float64), jnp.asarray(tens[L2], jnp.float64)
            out["weights"].append(np.asarray(jax.vmap(lambda a, c: weight_function_distance(a, c, beta))(T, T2)))
            out["weights_pair_mean"].append(np.asarray(jax.vmap(
                lambda a, c: weight_function_distance(a, c, beta, pairing="mean"))(T, T2)))
            out["paths"].append(np.asarray(jax.vmap(lambda a, c: path_distance(a, c, beta))(T, T2)))
        h, h2 = hidden[L], hidden[L2]  # (S, L+1, B, d)
        out["outputs"].append(np.linalg.norm(h2[:, -1] - h[:, -1], axis=-1).mean(-1))
        out["hidden"].append(np.linalg.norm(h2[:, ::2] - h, axis=-1).max(1).mean(-1))
    result = {k: np.stack([np.asarray(v, np.float64) for v in vals], axis=1) if vals else np.zeros((0, 0))
              for k, vals in out.items()}
    with jax.enable_x64(True):
        holder = {L: np.asarray(jax.vmap(weights_holder_exponent)(jnp.asarray(tens[L], jnp.float64)))
                  for L in depths if L >= 64}
    return {"pair_depths": [L for L, _ in pairs], "distances": result,
            "holder": {str(L): v for L, v in holder.items()}}


def distance_rates(pair_depths: Sequence[int], distances: dict[str, np.ndarray], key: jax.Array, n_boot: int,
           ) -> dict[str, dict[str, Any]]:
    """(c): the rate of each distance with its bootstrap interval over seeds, and the verdict."""
    out = {}
    for i, (name, d) in enumerate(distances.items()):
        if len(pair_depths) < 2:
            out[name] = {"rate": None, "low": None, "high": None, "verdict": "inconclusive (fewer than 2 pairs)"}
            continue
        with jax.enable_x64(True):
            fit = rate_fit(jnp.asarray(pair_depths, jnp.float64), jnp.asarray(d, jnp.float64),
                           jax.random.fold_in(key, i), n_boot=n_boot)
        out[name] = {"rate": finite_or_none(fit.rate), "low": finite_or_none(fit.low),
                     "high": finite_or_none(fit.high), "verdict": convergence_verdict(fit)}
    return out


def _limit_network(run: Run, L: int, beta: float, rate: float, hypothesis: int, seed: int) -> ResNetParams:
    """(d): the Richardson estimate of the limit from depths L and 2L of one seed, as a network of
    depth L (float64): the weight functions L^beta A_k extrapolated (Hypothesis 1) or the rescaled
    paths (Hypothesis 2), turned back into weights at depth L; L delta likewise."""
    lo, hi = run.params(L), run.params(2 * L)
    f64 = lambda a: jnp.asarray(np.asarray(a)[seed], jnp.float64)  # noqa: E731
    A, A2, b, b2 = f64(lo.A), f64(hi.A), f64(lo.b), f64(hi.b)

    def extrapolate(w, w2):
        if hypothesis == 1:
            lim = richardson_extrapolation(float(L) ** beta * w, float(2 * L) ** beta * w2[::2], rate)
            return lim / float(L) ** beta
        P = richardson_extrapolation(weight_path(w, beta), weight_path(w2, beta)[::2], rate)
        return jnp.diff(P, axis=0) * float(L) ** (1.0 - beta)

    delta = lo.delta
    if delta is not None:  # L delta (shared or per layer) -> its extrapolation, then back to depth L
        d, d2 = f64(delta), f64(hi.delta)
        d2 = d2[::2] if d2.ndim else d2
        delta = richardson_extrapolation(L * d, 2 * L * d2, rate) / L
    return ResNetParams(extrapolate(A, A2), extrapolate(b, b2), delta)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _deep_and_limit(deep: ResNetParams, nets: ResNetParams, xs: jax.Array, activation: str, delta_mode: str,
                    hypothesis: int) -> tuple[jax.Array, jax.Array]:
    """Per seed (the leading axis of both): the hidden states of the deep network (depth 2L) at
    the times k/L it shares with the limit, and the limit (ODE or Itô SDE) solved on the depth-L
    network ``nets``; both (S, B, L+1, d). One program for all seeds and inputs."""
    solve = own_ode_limit if hypothesis == 1 else own_sde_limit

    def one(d: ResNetParams, n: ResNetParams) -> tuple[jax.Array, jax.Array]:
        h = jax.vmap(lambda x: forward(d, x, activation=activation, delta_mode=delta_mode, return_hidden=True))(xs)
        return h[:, ::2], jax.vmap(lambda x: solve(n, x, activation, delta_mode))(xs)

    return jax.vmap(one)(deep, nets)


def limit_beside_deepest(run: Run, beta: float, rates: dict, hypothesis: Optional[int], xs: np.ndarray,
                         ) -> dict[str, Any]:
    """(d) for the two deepest depths: the limit (ODE or Itô SDE) solved on the Richardson estimate
    (with the rate of the regime's distance, ``rates``; only where that distance converges), and its
    sup distance to the deepest network's hidden states at the shared times."""
    if hypothesis is None:
        return {"skipped": "no regime (neither hypothesis): nothing to extrapolate"}
    if rates["verdict"] != "converges":
        return {"skipped": f"the weights do not converge ({rates['verdict']}): no limit to extrapolate"}
    if rates["low"] < MIN_RICHARDSON_RATE:
        return {"skipped": f"rate {rates['rate']:.2f} too slow to extrapolate (Richardson divides by 2^r - 1; "
                           f"needs r >= {MIN_RICHARDSON_RATE} at the interval's lower end)"}
    rate = rates["rate"]
    L2 = run.depths[-1]
    L = L2 // 2
    cfg = run.config
    with jax.enable_x64(True):
        seeds = range(int(np.shape(run.params(L2).A)[0]))
        nets = jax.tree.map(lambda *a: jnp.stack(a), *[_limit_network(run, L, beta, float(rate), hypothesis, s)
                                                        for s in seeds])
        deep = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), run.params(L2))
        h, H = _deep_and_limit(deep, nets, jnp.asarray(xs, jnp.float64), cfg.activation, cfg.delta_mode, hypothesis)
        h, H = np.asarray(h), np.asarray(H)  # (S, B, L+1, d)
    errors = [float(e) for e in np.linalg.norm(h - H, axis=-1).max(-1).mean(-1)]
    sup_move = np.linalg.norm(h - h[:, :, :1], axis=-1).max(-1).mean(-1)
    return {"limit": HYPOTHESIS_LIMITS[hypothesis], "from_depths": [L, L2], "rate": rate,
            "sup_error_per_seed": errors, "sup_error": float(np.mean(errors)),
            "relative_sup_error": float(np.mean(errors) / max(float(np.mean(sup_move)), 1e-300))}


# ------------------------------------------------------------------ one case ---------

def _hypothesis(verdict: str) -> Optional[int]:
    return 1 if verdict.startswith("Hypothesis 1") else 2 if verdict.startswith("Hypothesis 2") else None


def _regime_distance(hypothesis: Optional[int]) -> str:
    """The distance that tests the regime's own limit: weight functions (1), paths (2), else outputs."""
    return {1: "weights", 2: "paths"}.get(hypothesis, "outputs")


def _stage(run: Run, xs: np.ndarray, key: jax.Array, mode: Mode) -> dict[str, Any]:
    """Analysis, distances, rates (and for trained weights the limit) of one ladder folder."""
    from resnet_limits.analysis import analyze_run

    res = analyze_run(run, progress=False, figures=False)
    beta = res["decomposition"]["A"]["beta_used"]
    hyp = _hypothesis(res["verdict"])
    dist = ladder_distances(run, beta, xs)
    rates = distance_rates(dist["pair_depths"], dist["distances"], key, mode.n_boot)
    return {"verdict": res["verdict"], "hypothesis": hyp, "alpha": res["alpha"], "beta": res["beta"],
            "beta_used": beta, "nu": res["nu"], "regime_distance": _regime_distance(hyp), **dist, "rates": rates}


def weight_curves(run: Run, beta: float, seed: int = 0) -> dict[str, Any]:
    """SP Fig. 1 for a ladder: L^beta A_k at one entry (the largest in mean) against k/L per depth."""
    T = {L: np.asarray(_tensor(run, L)["A"][seed], np.float64) for L in run.depths}
    deepest = T[run.depths[-1]]
    entry = np.unravel_index(int(np.argmax(np.abs(deepest).mean(0))), deepest.shape[1:])
    return {"entry": [int(i) for i in entry], "beta": beta,
            "curves": {str(L): (float(L) ** beta * t[(slice(None),) + entry]).tolist() for L, t in T.items()}}


def _run_case(case: Case, out: Path, mode: Mode, key: jax.Array, progress: bool) -> dict[str, Any]:
    cfg = case_config(case, mode)
    trained_dir, init_dir = out / "ladders" / case.name, out / "init" / case.name
    sweeps.run_sweep(cfg, trained_dir, progress=progress)
    sweeps.run_initial_weights(cfg, init_dir, progress=False)
    trained_run, init_run = Run.open(trained_dir), Run.open(init_dir)
    xs = np.asarray(trained_run.dataset().x_test)[: mode.n_inputs]
    at_init = _stage(init_run, xs, jax.random.fold_in(key, 0), mode)
    trained = _stage(trained_run, xs, jax.random.fold_in(key, 1), mode)
    main = trained["rates"][trained["regime_distance"]]
    limit = limit_beside_deepest(trained_run, trained["beta_used"], main, trained["hypothesis"], xs)
    deepest = str(trained_run.depths[-1])
    holder = trained["holder"].get(deepest)
    return {
        "name": case.name, "label": case.label, "init": cfg.init, "parametrization": cfg.parametrization,
        "branch_exponent": case.branch_exponent, "depths": trained_run.depths, "seeds": cfg.seeds,
        "ladder_dir": str(trained_dir), "init_dir": str(init_dir),
        "at_init": at_init, "trained": trained, "limit": limit,
        "converges": main["verdict"], "rate": main["rate"], "rate_interval": [main["low"], main["high"]],
        "holder_deepest": None if holder is None else float(np.nanmean(holder)),
        "weight_curves": weight_curves(trained_run, trained["beta_used"]),
    }


def run(out, *, quick: bool = False, progress: bool = True, cases: Optional[Sequence[str]] = None,
        mode: Optional[Mode] = None, seed: int = 0) -> dict:
    """Run (or resume) the study of the module docstring under ``out``; returns the dict written to
    ``out/coupled_depths.json``. ``cases`` (names of :data:`CASES`) and ``mode`` shrink it (tests)."""
    out = output_folder(out)
    mode = mode or MODES[bool(quick)]
    chosen = [c for c in CASES if cases is None or c.name in cases]
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    results = []
    for i, case in enumerate(tqdm(chosen, desc="coupled depths", unit="case", disable=not progress)):
        results.append(_run_case(case, out, mode, jax.random.fold_in(key, i), progress))
    result: dict[str, Any] = {
        "study": "coupled depths: nested ladders L0 2^j", "preset": PRESET, "quick": bool(quick),
        "depths": list(mode.depths), "seeds": mode.seeds, "n_inputs": mode.n_inputs, "distances": DISTANCES,
        "rule": "converges: the 95% bootstrap interval of the rate r (distance ~ L^-r) lies above 0.1; "
                "does not converge: it lies below 0.1 (flat or growing); else inconclusive",
        "cases": results,
    }
    figs = [(plotting.coupled_distances(result), "distances.png")]
    figs += [(plotting.ladder_weight_functions(c), f"weights_{c['name']}.png") for c in results]
    return write_study(out, "coupled_depths", result, figs, coupled_depths_markdown, t0)


# ------------------------------------------------------------------ tables -----------

def _rate_cell(r: dict) -> str:
    if r.get("rate") is None:
        return r.get("verdict", "-")
    ci = f"[{cell(r['low'])}, {cell(r['high'])}]"
    if r["verdict"] == "converges":
        return f"converges, L^-{cell(r['rate'])} {ci}"
    if r["verdict"].startswith("does not"):
        return f"does not converge (r = {cell(r['rate'])} {ci})"
    return f"inconclusive (r = {cell(r['rate'])} {ci})"


def coupled_depths_markdown(result: dict) -> str:
    """The table: parametrisation x init -> converges at rate L^-r (95% interval) / does not converge."""
    lines = [
        f"Nested ladders {result['depths'][0]} … {result['depths'][-1]} (x2), {result['seeds']} seeds, "
        f"{'quick' if result['quick'] else 'full'}. {result['rule']}.",
        "",
        "| case | regime at init → trained | regime distance, trained | weights (H1) | paths (H2) | outputs | "
        "at init: outputs | Hölder (deepest) | limit vs deepest network |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        t, i = c["trained"], c["at_init"]
        lim = c["limit"]
        lim_cell = lim.get("skipped") or (f"sup error {cell(lim['sup_error'], '.3g')} "
                                          f"(relative {cell(lim['relative_sup_error'], '.2g')})")
        rates = t["rates"]
        lines.append(
            f"| {c['label']} | {i['verdict']} → {t['verdict']} | {t['regime_distance']}: "
            f"{_rate_cell(rates[t['regime_distance']])} | {_rate_cell(rates['weights'])} | {_rate_cell(rates['paths'])} "
            f"| {_rate_cell(rates['outputs'])} | {_rate_cell(i['rates']['outputs'])} | {cell(c['holder_deepest'])} "
            f"| {lim_cell} |")
    return "\n".join(lines)


def format_coupled_depths(result: dict) -> str:
    """What ``resnet-limits reproduce coupled-depths`` prints."""
    lines = [f"coupled depths ({'quick' if result['quick'] else 'full'}): depths {result['depths']}, "
             f"{result['seeds']} seeds, {result.get('seconds', '-')} s"]
    for c in result["cases"]:
        t = c["trained"]
        lines.append(f"  {c['label']:<24} {t['verdict']:<22} {t['regime_distance']}: "
                     f"{_rate_cell(t['rates'][t['regime_distance']])}; Hölder {cell(c['holder_deepest'])}")
    return "\n".join(lines)
