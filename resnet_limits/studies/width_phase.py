"""A width axis beyond the papers: the scaling regime of trained weights (SP §2.3) against the width d
and the depth range, as a phase diagram.

The papers train the synthetic task (SP §3.1) at d = 10 only. Here the same task and generator
(:func:`resnet_limits.data.synthetic` with ``dim = d``; the ``width`` setting of the
``tanh-synthetic`` preset: tanh, shared learned delta, Adam, xavier-depth initialisation) is
trained at every width of :data:`WIDTHS` (10, 32, 100), with the learning rate scaled in d by the
muP rule of the hidden weights from d0 = :data:`REF_WIDTH`: eta(d) = 0.01 d0 / d for Adam
(:class:`~resnet_limits.training.TrainConfig`, ``ref_width``; SGD would keep eta, which this study
does not train). The loss is the mean over the d coordinates of unit-norm targets (SP §3.1), so the
same per-example error |h_L - y|^2 is a loss d0/d times smaller at width d (the network at
initialisation, h_L ~ x, has loss 0.14, 0.043, 0.014 at d = 10, 32, 100): the early stop's threshold
is scaled alike, epsilon(d) = 0.01 d0 / d (the preset's 0.01 at d = 10), so that every width stops
at the same per-example error 0.1 rather than the widest stopping before it trains. For each d:

1. a depth sweep (``sweeps.run_sweep``, resumable) in ``out/d<d>``;
2. the scaling analysis (:func:`resnet_limits.analysis.analyze_run`: alpha from delta, beta and nu
   from A, the hypothesis test's verdict, SP §2.3 steps 1-5) over each depth range
   ``min depth .. L_max`` for L_max in the mode's ``ranges`` (the folder's own ``analysis.json`` is
   that of the widest range, analysed last).

The (d, L_max) grid of alpha, beta, nu and the verdict is the phase diagram: does the regime the
papers found at d = 10 (tanh-synthetic: Hypothesis 1, alpha ~ 0.7, beta ~ 0.2; SP Fig. 2) hold at
other widths, and does it settle as the depth range grows?

Writes ``out/width_phase.json`` (the returned dict), ``out/width_phase.md`` (the table) and the figure
``out/width_phase.png`` (:func:`resnet_limits.plotting.width_phase_diagram`).

``quick`` (under 10 minutes on 2 CPU cores, measured in ``experiments/width-phase.toml``): 13
depths 4..256 (:data:`QUICK_DEPTHS`), 3 seeds, ranges up to 64, 128 and 256, and the preset's 160
updates (a cap of 80 cut the d = 100 runs short of their early stop while the narrower ones stopped
at 64 updates by it: a difference between the widths that is the budget's, not the width's).
Full: the ``tanh-synthetic`` grid floor(2^(n/3)) from 3 to 2,048, 5 seeds, the preset's 160
updates, ranges up to 256, 512, 1,024 and 2,048 (the per-folder analysis figures of the widest
range drawn too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
from tqdm import tqdm

from resnet_limits import plotting, sweeps
from resnet_limits.config import PRESETS, SweepConfig, depth_grid, sweep_config
from resnet_limits.run import Run
from resnet_limits.scaling import finite_or_none
from resnet_limits.studies._io import cell, output_folder, write_study

__all__ = ["FULL_DEPTHS", "MODES", "QUICK_DEPTHS", "REF_WIDTH", "WIDTHS", "Mode", "format_width_phase", "run",
           "width_config", "width_phase_markdown"]

PRESET = "tanh-synthetic"
#: The widths d of the synthetic task, and d0 of the learning rate's width rule eta d0 / d.
WIDTHS = (10, 32, 100)
REF_WIDTH = 10
#: An analysis needs at least this many depths (:func:`resnet_limits.analysis.analyze_run`).
MIN_DEPTHS = 3
QUICK_DEPTHS = (4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)
FULL_DEPTHS = tuple(depth_grid(3, 2048))


class Mode(NamedTuple):
    """The sizes of one version of the study (module docstring)."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    ranges: tuple[int, ...]  # L_max of the depth ranges min(depths)..L_max analysed
    seeds: int
    max_updates: Optional[int] = None  # None: the preset's 160
    figures: bool = False  # the per-folder analysis figures (widest range only)


MODES = {
    True: Mode(WIDTHS, QUICK_DEPTHS, (64, 128, 256), 3),
    False: Mode(WIDTHS, FULL_DEPTHS, (256, 512, 1024, 2048), 5, figures=True),
}


def width_config(width: int, depths: Sequence[int], *, seeds: int, max_updates: Optional[int] = None,
                 **settings) -> SweepConfig:
    """The sweep of one width: the ``tanh-synthetic`` preset at d = ``width`` with the learning
    rate's width rule from d0 = :data:`REF_WIDTH` and the early stop at epsilon d0 / d (module docstring)."""
    settings.setdefault("epsilon", PRESETS[PRESET].epsilon * REF_WIDTH / int(width))
    return sweep_config(PRESET, width=int(width), ref_width=REF_WIDTH, depths=list(depths), seeds=seeds,
                        max_updates=max_updates, **settings)


# ------------------------------------------------------------------ one cell -------------

def _mean_of(run: Run, L: int, key: str) -> Optional[float]:
    """Mean over the seeds of depth ``L`` of a recorded metric (``train_loss``, ``updates``), the
    non-finite values (diverged seeds) left out."""
    vals = [v for v in run.metrics(L)[key] if v is not None and np.isfinite(v)]
    return finite_or_none(float(np.mean(vals))) if vals else None


def _cell(run: Run, grid: Sequence[int], max_depth: int, *, figures: bool) -> dict[str, Any]:
    """The regime over the finished depths of ``grid`` up to ``max_depth``: alpha, beta, nu (mean and
    sd over seeds), the verdicts and why, and the training it rests on. The analysis sees a view of
    the folder holding those depths only (it writes the folder's ``analysis.json``)."""
    from resnet_limits.analysis import analyze_run

    depths = [L for L in run.depths if L in grid and L <= max_depth]
    cell: dict[str, Any] = {"min_depth": depths[0] if depths else None, "max_depth": int(max_depth),
                            "depths": depths}
    if len(depths) < MIN_DEPTHS:
        return {**cell, "verdict": None, "reason": f"{len(depths)} depth(s) up to {max_depth}; the analysis needs "
                                                   f"{MIN_DEPTHS}"}
    part = Run(run.path, run.config, {L: run.metrics(L) for L in depths}, {}, {})
    res = analyze_run(part, progress=False, figures=figures)
    test = res["hypothesis_tests"]["A"]
    return {
        **cell, "verdict": res["verdicts"]["A"], "verdict_b": res["verdicts"]["b"], "reason": test["reason"],
        **{k: res[k] for k in ("alpha", "alpha_sd", "beta", "beta_sd", "nu", "nu_sd", "beta_b", "nu_b")},
        "noise_to_trend": test["steps"]["4_trend_noise"]["noise_to_trend"],
        "converged_fraction": res["converged_fraction"], "diverged": res["diverged"],
        "train_loss_largest": _mean_of(run, depths[-1], "train_loss"),
        "updates_largest": _mean_of(run, depths[-1], "updates"),
    }


def _width(d: int, out: Path, mode: Mode, progress: bool) -> dict[str, Any]:
    """Sweep and analyse one width over every depth range of ``mode``."""
    cfg = width_config(d, mode.depths, seeds=mode.seeds, max_updates=mode.max_updates)
    folder = out / f"d{d}"
    sweeps.run_sweep(cfg, folder, progress=progress)
    run = Run.open(folder)
    tcfg = cfg.train_config()
    last = len(mode.ranges) - 1
    used = run.metrics(run.depths[0]).get("lr") if run.depths else None  # learned delta: the same at every depth
    return {
        "width": int(d), "lr": tcfg.lr, "lr_used": finite_or_none(used[0]) if used else None,
        "lr_factor": tcfg.width_factor(d), "epsilon": tcfg.epsilon, "sweep_dir": str(folder), "depths": run.depths,
        "updates": int(cfg.max_updates), "seeds": int(cfg.seeds),
        "cells": [_cell(run, mode.depths, Lmax, figures=mode.figures and i == last)
                  for i, Lmax in enumerate(mode.ranges)],
    }


def _grid(widths: Sequence[dict], ranges: Sequence[int]) -> dict[str, Any]:
    """The phase diagram's arrays: (widths, ranges) tables of alpha, beta, nu and the verdict."""
    table = lambda k: [[c.get(k) for c in w["cells"]] for w in widths]  # noqa: E731
    return {"widths": [w["width"] for w in widths], "max_depths": list(ranges),
            **{k: table(k) for k in ("alpha", "alpha_sd", "beta", "beta_sd", "nu", "nu_sd", "verdict")}}


# ------------------------------------------------------------------ the study ------------

def run(out, *, quick: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the study of the module docstring under ``out``; returns the dict written
    to ``out/width_phase.json``."""
    out = output_folder(out)
    mode = MODES[bool(quick)]
    t0 = time.perf_counter()
    widths = [_width(d, out, mode, progress) for d in tqdm(mode.widths, desc="width phase", unit="width",
                                                             disable=not progress)]
    result: dict[str, Any] = {
        "study": "width phase diagram", "preset": PRESET, "quick": bool(quick), "ref_width": REF_WIDTH,
        "width_rule": f"Adam: η(d) = η {REF_WIDTH}/d (μP, hidden weights)", "seeds": mode.seeds,
        "depths": list(mode.depths), "ranges": list(mode.ranges), "widths": widths,
        "grid": _grid(widths, mode.ranges),
    }
    return write_study(out, "width_phase", result, [(plotting.width_phase_diagram(result), "width_phase.png")],
                       width_phase_markdown, t0)


# ------------------------------------------------------------------ the table ------------

def _pm(c: dict, k: str) -> str:
    sd = c.get(f"{k}_sd")
    return cell(c.get(k)) + (f" ± {sd:.2f}" if sd is not None and c.get(k) is not None else "")


def width_phase_markdown(result: dict) -> str:
    """The study's table in Markdown: one row per width and depth range."""
    q = ", quick" if result.get("quick") else ""
    w0 = result["widths"][0] if result["widths"] else {"updates": "-"}
    lines = [f"# Width phase diagram ({result['preset']}, {result['seeds']} seeds, {w0['updates']} updates, "
             f"depths {result['depths'][0]}..{result['depths'][-1]}{q})", "",
             f"Learning rate against width: {result['width_rule']}; early stop below ε(d) = 0.01 · "
             f"{result['ref_width']}/d (the same per-example error); α from δ, β and ν from A (mean ± sd over "
             "seeds), the verdict of SP §2.3 on A.", "",
             "| d | η(d) | ε(d) | depths | α | β | ν | verdict | noise/trend | final loss (largest L) "
             "| updates (largest L) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in result["widths"]:
        for c in w["cells"]:
            span = f"{c['min_depth']}..{c['max_depth']}" if c.get("min_depth") is not None else f"..{c['max_depth']}"
            lines.append(f"| {w['width']} | {cell(w['lr_used'], 'g')} | {cell(w['epsilon'], 'g')} | {span} "
                         f"| {_pm(c, 'alpha')} | {_pm(c, 'beta')} | {_pm(c, 'nu')} | {c['verdict'] or '-'} "
                         f"| {cell(c.get('noise_to_trend'), '.2g')} | {cell(c.get('train_loss_largest'), '.3g')} "
                         f"| {cell(c.get('updates_largest'), '.0f')} |")
    return "\n".join(lines)


def format_width_phase(result: dict) -> str:
    """The table of :func:`width_phase_markdown` (what ``reproduce width-phase`` prints)."""
    return width_phase_markdown(result)
