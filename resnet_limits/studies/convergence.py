"""Strong convergence of deep ResNets to their ODE / Ito SDE limits (SP §4, Thms 4.3, 4.4; AA Thms 1-3).

:func:`run` ``(out, *, quick=False, n_paths=None, progress=True)``: for each path (vmapped), one fine
Brownian path of ``n_fine`` steps (SP Remark 2.1) and a random smooth trend are drawn; the depth-L
network's weights are the path's increments over blocks of 1/L (plus the drift ``Abar(t_k)/L``,
beta = 1); the limit is solved on the *same* fine path; ``E sup_k |h_k - H_{k/L}|^2`` is reported
against L with a log-log slope. Regime-1 cases use ``A_k = L^{-beta} Abar(k/L)``,
``delta = L^{-alpha}``; the Scaling regime 2 linear-ODE cases (AA Thm 2) add the Brownian
increments of the SDE cases' fine path to those weights, ``A_k = L^{-beta} Abar(k/L) + dW^A_k``,
on the same paths, trends, inputs and depths as the SDE cases, against the linear ODE, which has
lost the noise. Writes ``out/convergence.json`` (the returned dict) and log-log PNG figures.
The per-path mathematics, and the table of cases with their expected rates, is
``resnet_limits.limits.strong``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
from tqdm import tqdm

from resnet_limits.errors import UsageError
from resnet_limits.limits import (
    BrownianQ,
    brownian_network,
    error_rate,
    fine_path,
    REGIME2_ACTIVATIONS,
    linear_case_name,
    linear_ode_expected_slope,
    linear_ode_rate_terms,
    map_paths,
    ode_strong_errors,
    regime2_strong_errors,
    sde_strong_errors,
    solve_sde,
    uniform_grid,
)
from resnet_limits.models import forward
from resnet_limits import plotting
from resnet_limits.studies._io import output_folder, write_json

__all__ = ["CASES", "StudyConfig", "convergence_study", "format_convergence", "run"]


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the strong-convergence study.

    width d = 3 (Q's 1/d term keeps the Ito correction visible); ``n_paths`` fine paths of
    ``n_fine`` steps; SDE depths 2^4..2^13 (L_max = n_fine/16: the reference's own Euler-Maruyama
    error, ~ 1/n_fine in E sup^2, is 1/16 of the network's at L_max); ``chunk`` paths per vmapped
    batch (memory). The deterministic Regime-1 cases use ``n_trends`` random smooth trends and
    depths ``ode_depths`` (default: as ``depths``). The Scaling regime 2 linear-ODE cases (AA Thm 2)
    take ``regime2_alphas`` (empty: none) and run on the SDE cases' paths and ``depths``.
    """

    width: int = 3
    n_paths: int = 512
    n_fine: int = 2**17
    depths: tuple = tuple(2**k for k in range(4, 14))
    chunk: int = 64
    seed: int = 0
    qv_blocks: int = 2**9  # blocks for the estimated Q (256 fine increments each)
    n_trends: int = 32  # Regime-1 (deterministic) cases: random smooth trends, vmapped
    ode_depths: tuple = tuple(2**k for k in range(4, 17))  # cheap: the ODE cases go deeper
    linear_alphas: tuple = (0.5, 0.7)  # alpha + beta = 1; 0.7 ~ SP §3's trained tanh networks
    trend_scale: float = 1.0
    regime2_alphas: tuple = (0.5, 0.7)  # AA Thm 2: alpha + beta = 1, weights = trend + Brownian noise

    @classmethod
    def quick(cls, **kw) -> "StudyConfig":
        base = dict(n_paths=128, n_fine=2**13, depths=tuple(2**k for k in range(4, 11)),
                    chunk=64, qv_blocks=2**5, n_trends=16,
                    ode_depths=tuple(2**k for k in range(4, 13)))
        base.update(kw)
        return cls(**base)


CASES: dict[str, dict[str, Any]] = {
    "sde-tanh": dict(kind="sde", activation="tanh", limit="Ito SDE (SP eq. 15), sigma''(0)=0",
                     alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-ito": dict(kind="sde", activation="csoftplus",
                              limit="Ito SDE (SP eq. 15) with 1/2 sigma''(0) Q, Q closed form",
                              alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-ito-estimated-q": dict(
        kind="sde", activation="csoftplus",
        limit="Ito SDE (SP eq. 15), Q estimated from the fine increments (block averages)",
        alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-no-correction": dict(
        kind="sde", activation="csoftplus", limit="SDE (SP eq. 15) WITHOUT the Ito correction",
        alpha=0.0, beta=1.0, expected_slope=0.0),
    "neural-ode-tanh": dict(kind="ode", activation="tanh", limit="neural ODE (SP eq. 2)",
                            alpha=1.0, beta=0.0, expected_slope=-2.0),
}


def _case_table(cfg: StudyConfig) -> dict[str, dict[str, Any]]:
    """CASES plus one linear-ODE pair (tanh, csoftplus) per alpha in ``cfg.linear_alphas``, and
    the Scaling regime 2 cases (identity, tanh, csoftplus) per alpha in ``cfg.regime2_alphas``
    with ``expected_rate``: the slope of each error term (the slowest is ``expected_slope``)."""
    out = {k: dict(v) for k, v in CASES.items()}
    for a in cfg.linear_alphas:
        for act in ("tanh", "csoftplus"):
            out[linear_case_name(act, a)] = dict(
                kind="ode", activation=act, limit="linear ODE (SP eq. 14)", alpha=a, beta=1.0 - a,
                expected_slope=linear_ode_expected_slope(act, a))
    for a in cfg.regime2_alphas:
        for act in REGIME2_ACTIVATIONS:
            out[linear_case_name(act, a, regime=2)] = dict(
                kind="regime2", activation=act,
                limit="linear ODE (SP eq. 16, AA Thm 2): the Brownian part of the weights is lost",
                alpha=a, beta=1.0 - a, expected_slope=linear_ode_expected_slope(act, a, noise=True),
                expected_rate=linear_ode_rate_terms(act, a, noise=True))
    return out


def _ode_depths(cfg: StudyConfig) -> tuple:
    return tuple(cfg.ode_depths) if cfg.ode_depths else tuple(cfg.depths)


def _per_path_errors(cfg: StudyConfig, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-path errors of every case (paths, depths) and the seconds spent on the ODE / SDE cases."""
    key = jax.random.PRNGKey(cfg.seed)
    k_sde, k_ode = jax.random.split(key)
    sde = lambda k: sde_strong_errors(  # noqa: E731
        k, width=cfg.width, n_fine=cfg.n_fine, depths=tuple(cfg.depths), qv_blocks=cfg.qv_blocks,
        trend_scale=cfg.trend_scale)
    ode = lambda k: ode_strong_errors(  # noqa: E731
        k, width=cfg.width, depths=_ode_depths(cfg), linear_alphas=tuple(cfg.linear_alphas),
        trend_scale=cfg.trend_scale)
    regime2 = lambda k: regime2_strong_errors(  # noqa: E731  (k_sde: the SDE cases' paths)
        k, width=cfg.width, n_fine=cfg.n_fine, depths=tuple(cfg.depths), alphas=tuple(cfg.regime2_alphas),
        trend_scale=cfg.trend_scale)
    plan = [("ode", ode, k_ode, cfg.n_trends), ("sde", sde, k_sde, cfg.n_paths)]
    if cfg.regime2_alphas:
        plan.append(("regime2", regime2, k_sde, cfg.n_paths))
    bar = tqdm(total=sum(max(1, math.ceil(n / cfg.chunk)) for *_, n in plan), desc="convergence",
               disable=not progress)
    raw: dict[str, np.ndarray] = {}
    timings = {kind: 0.0 for kind, *_ in plan}
    for kind, fn, kk, n in plan:
        t0 = time.time()
        chunk = min(cfg.chunk, n)
        keys = jax.random.split(kk, max(1, math.ceil(n / cfg.chunk)) * chunk)  # the last chunk is padded
        out = map_paths(fn, keys, chunk, on_chunk=lambda _: bar.update(1))
        raw.update({name: v[:n] for name, v in out.items()})
        timings[kind] += time.time() - t0
    bar.close()
    return raw, timings


def convergence_study(cfg: StudyConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run every case of :data:`CASES` (plus the linear-ODE cases of both regimes); returns the
    JSON-ready result (float64 inside)."""
    if cfg.n_fine % max(cfg.depths):
        raise UsageError(f"the largest depth {max(cfg.depths)} must divide n_fine={cfg.n_fine}")
    t_start = time.time()
    with jax.enable_x64(True):
        raw, timings = _per_path_errors(cfg, progress)
    cases = {}
    for name, spec in _case_table(cfg).items():
        depths = _ode_depths(cfg) if spec["kind"] == "ode" else tuple(cfg.depths)
        r = error_rate(depths, raw[name])
        cases[name] = dict(
            spec, depths=list(depths), errors=r.mean.tolist(), stderr=r.stderr.tolist(),
            slope=r.fit.slope, slope_stderr=r.fit.stderr, intercept=r.fit.intercept,
            tail_slope=r.tail.slope, tail_depths=list(r.tail_depths),
            n_paths=int(raw[name].shape[0]),
            deterministic=spec["kind"] == "ode",
        )
    return dict(
        config=dict(asdict(cfg), depths=list(cfg.depths), ode_depths=list(_ode_depths(cfg))),
        metric="E sup_k |h_k - H_{k/L}|^2 over paths (inputs: one random unit vector per path)",
        cases=cases,
        seconds=dict(total=time.time() - t_start, **timings),
        solvers=dict(
            sde="diffrax Euler, StepTo on the fine grid k/n_fine (= Euler-Maruyama: Ito); "
                "MultiTerm(ODETerm(drift), AffineControlTerm(W^A, W^b))",
            ode="diffrax Tsit5, PIDController(rtol=1e-10, atol=1e-12) (clipped to knots for "
                "piecewise-linear coefficients)",
        ),
    )


@functools.partial(jax.jit, static_argnames=("width", "n_fine", "trend_scale", "shown"))
def _trajectories(key: jax.Array, *, width: int, n_fine: int, trend_scale: float, shown: tuple[int, ...]):
    """One fine path (SP §4): the times k/L_max, the Ito SDE with and without the correction on
    them, and the hidden states h_k of the csoftplus network at each depth of ``shown``; one program."""
    p = fine_path(key, width=width, n_fine=n_fine, trend_scale=trend_scale)
    ts = uniform_grid(max(shown))
    Hq = solve_sde(p.x, p.W_A, p.W_b, ts, d2_at_0=0.5, Q=BrownianQ(), Abar=p.Abar, bbar=p.bbar)
    H0 = solve_sde(p.x, p.W_A, p.W_b, ts, Abar=p.Abar, bbar=p.bbar)
    hs = tuple(forward(brownian_network(p.dW_A, p.dW_b, L, Abar=p.Abar, bbar=p.bbar), p.x, activation="csoftplus",
                       delta_mode="none", return_hidden=True) for L in shown)
    return ts, Hq, H0, hs


def _trajectory_figure(cfg: StudyConfig, path: Path) -> str:
    """One fine path: coordinates of h_k (csoftplus network, a few depths) vs the Ito SDE with
    and without the correction."""
    shown = (cfg.depths[0], cfg.depths[len(cfg.depths) // 2], max(cfg.depths))
    with jax.enable_x64(True):
        key = jax.random.split(jax.random.split(jax.random.PRNGKey(cfg.seed))[0], 1)[0]
        ts, Hq, H0, hs = jax.tree.map(np.asarray, _trajectories(key, width=cfg.width, n_fine=cfg.n_fine,
                                                                trend_scale=float(cfg.trend_scale), shown=shown))
    return Path(plotting.save(plotting.paths_vs_limit(ts, Hq, H0, dict(zip(shown, hs))), path, dpi=130)).name


def _ode_figure(cfg: StudyConfig, cases: dict, path: Path) -> str:
    """The Regime-1 ODE cases; beside them, when there are any, the Scaling regime 2 cases."""
    panels = [([n for n, c in cases.items() if c["kind"] == "ode"],
               f"Regime 1 (A_k = L^-beta Abar(k/L), delta = L^-alpha), d={cfg.width}")]
    regime2 = [n for n, c in cases.items() if c["kind"] == "regime2"]
    if regime2:
        panels.append((regime2, f"Regime 2 (A_k = L^-beta Abar(k/L) + dW^A_k, delta = L^-alpha), "
                                f"{cfg.n_paths} paths"))
    return Path(plotting.save(plotting.strong_errors_panels(cases, panels), path, dpi=130)).name


def run(out, *, quick: bool = False, n_paths: Optional[int] = None, progress: bool = True) -> dict:
    """The strong-convergence study: writes ``out/convergence.json`` (the returned dict) and
    ``out/convergence_sde.png``, ``out/convergence_ode.png`` (Regime 1 beside Regime 2),
    ``out/convergence_paths.png``."""
    if n_paths is not None and n_paths < 2:
        raise UsageError("--n-paths must be at least 2")
    out = output_folder(out)
    kw = {} if n_paths is None else {"n_paths": int(n_paths)}
    cfg = StudyConfig.quick(**kw) if quick else StudyConfig(**kw)
    result = convergence_study(cfg, progress=progress)
    result["quick"] = bool(quick)
    cases = result["cases"]
    sde = [n for n, c in cases.items() if c["kind"] == "sde"]
    title = (f"Remark 2.1 weights + drift (alpha=0, beta=1), d={cfg.width}, {cfg.n_paths} paths, "
             f"n_fine={cfg.n_fine}")
    result["figures"] = [
        Path(plotting.save(plotting.strong_errors(cases, sde, title), out / "convergence_sde.png", dpi=130)).name,
        _ode_figure(cfg, cases, out / "convergence_ode.png"),
        _trajectory_figure(cfg, out / "convergence_paths.png"),
    ]
    write_json(out / "convergence.json", result)
    return result


def format_convergence(result: dict) -> str:
    """One line per case: fitted slope, slope over the larger depths, and the theory's slope (for
    the Scaling regime 2 cases also the slope of each error term, ``expected_rate``)."""
    lines = []
    width = max([32] + [len(name) for name in result["cases"]])
    for name, c in result["cases"].items():
        exp = c["expected_slope"]
        terms = c.get("expected_rate")
        lines.append(f"{name:{width}s} slope {c['slope']:+.3f} (tail {c['tail_slope']:+.3f}; theory "
                     f"{'n/a' if exp is None else f'{exp:+.2f}'}"
                     + ("" if not terms else " = slowest of " + ", ".join(f"{k} {v:+.2f}" for k, v in terms.items()))
                     + ")")
    return "\n".join(lines)
