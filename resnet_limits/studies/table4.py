"""SP Table 4: sensitivity of alpha and beta to the learning rate and the batch size.

tanh, shared trainable delta, synthetic data (SP App. A), eta in {.01, .003, .001} x
B in {8, 32, 128}, 5 seeds each; every cell is a resumable sweep folder (the one
``resnet_limits.sweeps.run_sweep`` would make) in its own subfolder of ``out``, analysed with
:func:`resnet_limits.analysis.analyze_run`. The learning rate is data of the trainer, so the three
cells of one batch size train together, one vmapped program of 3 x 5 runs per depth
(:func:`resnet_limits.sweeps.run_lr_grid`; each seed's numbers equal the per-cell sweep's to
float32 round-off). The paper's values are printed beside ours.

Training budget: at least the 5 epochs of SP Table 2 (T_max = ceil(N / B) x epochs, SP Table 3)
and at least its T_max = 160 updates, i.e. 640, 160 and 160 updates (5, 5 and 20 epochs) for
B = 8, 32, 128 with N = 1,024. The paper does not give Table 4's budget; with 5 epochs only
(40 updates at B = 128) most B = 128 networks at eta <= .003 stay above epsilon (measured: 15-54 %
converged) and their beta reflects unfinished training, against the paper's finding that B
does not matter.
``quick`` shrinks only the depth grid (to :data:`QUICK_DEPTHS`), never the seed count.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from resnet_limits import sweeps
from resnet_limits.config import PRESETS, SweepConfig, sweep_config
from resnet_limits.errors import UsageError
from resnet_limits.studies._io import output_folder, write_json, write_text

__all__ = ["BATCH_SIZES", "LEARNING_RATES", "PAPER_TABLE4", "QUICK_DEPTHS", "QUICK_MAX_DEPTH", "cell_config",
           "cell_dir", "format_table4", "run", "table4_markdown"]

LEARNING_RATES = (0.01, 0.003, 0.001)
BATCH_SIZES = (8, 32, 128)

#: SP Table 4: (alpha mean, alpha sd, beta mean, beta sd) over 5 seeds, keyed by (eta, B).
PAPER_TABLE4: dict[tuple[float, int], tuple[float, float, float, float]] = {
    (0.01, 8): (0.69, 0.02, 0.24, 0.02),
    (0.01, 32): (0.73, 0.02, 0.29, 0.05),
    (0.01, 128): (0.67, 0.02, 0.22, 0.02),
    (0.003, 8): (0.59, 0.05, 0.33, 0.01),
    (0.003, 32): (0.60, 0.01, 0.41, 0.06),
    (0.003, 128): (0.58, 0.01, 0.40, 0.02),
    (0.001, 8): (0.58, 0.01, 0.39, 0.02),
    (0.001, 32): (0.55, 0.01, 0.43, 0.02),
    (0.001, 128): (0.53, 0.01, 0.41, 0.01),
}

#: Depth grid of ``--quick``: every other point of the paper's grid floor(2^(n/3)) (i.e. base
#: 2^(2/3)) from 4 to 1,024, 13 depths. With one pass per batch size, ``reproduce table4 --quick``
#: (9 cells x 5 seeds, analysis included) took 2 min 42 s on 2 CPU cores shared with other jobs.
QUICK_DEPTHS = (4, 6, 10, 16, 25, 40, 64, 101, 161, 256, 406, 645, 1024)
QUICK_MAX_DEPTH = max(QUICK_DEPTHS)


def cell_dir(out, lr: float, batch_size: int) -> Path:
    """Subfolder of one (eta, B) cell, e.g. ``out/lr0.01_B32``."""
    return Path(out) / f"lr{lr:g}_B{batch_size}"


def cell_config(lr: float, B: int, *, quick: bool, optimizer: Optional[str], seeds: int) -> SweepConfig:
    """The sweep configuration of one cell: the tanh-synthetic preset with this eta and B and the
    training budget of the module docstring (at least 5 epochs and at least T_max updates)."""
    base = PRESETS["tanh-synthetic"]
    per_epoch = int(base.n_train) // B  # the trainer drops an incomplete last batch
    t_max = max(int(base.max_updates), int(base.epochs) * math.ceil(int(base.n_train) / B))
    epochs = max(int(base.epochs), math.ceil(t_max / per_epoch))
    extra = {"depths": [L for L in QUICK_DEPTHS if L <= QUICK_MAX_DEPTH]} if quick else {}
    return sweep_config("tanh-synthetic", quick=quick, lr=lr, batch_size=B, seeds=seeds,
                              optimizer=optimizer, max_updates=t_max, epochs=epochs, **extra)


def _cell_row(cfg: SweepConfig, sub: Path, res: dict, train_seconds: float) -> dict[str, Any]:
    """One cell of the table from its configuration and its analysis (``analyze_run``'s dict)."""
    lr, B = cfg.lr, cfg.batch_size
    pa, pasd, pb, pbsd = PAPER_TABLE4[(lr, B)]
    return {
        "lr": lr, "batch_size": B, "run_dir": str(sub), "max_updates": cfg.max_updates, "epochs": cfg.epochs,
        "optimizer": cfg.optimizer,
        "depths": res["depths"],
        "alpha": res["alpha"], "alpha_sd": res["alpha_sd"], "alpha_stderr": res["alpha_stderr"],
        "alpha_per_seed": res["alpha_per_seed"],
        "beta": res["beta"], "beta_sd": res["beta_sd"], "beta_stderr": res["beta_stderr"],
        "beta_per_seed": res["beta_per_seed"],
        "beta_b": res["beta_b"], "beta_b_sd": res["beta_b_sd"],
        "alpha_plus_beta": res["alpha_plus_beta"],
        "seeds_used_alpha": sum(1 for v in res["exponents"]["alpha"]["seeds_used"] if v),
        "seeds_used_beta": sum(1 for v in res["exponents"]["A"]["beta"]["seeds_used"] if v),
        "diverged": res["diverged"], "converged_fraction": res["converged_fraction"],
        "verdict_A": res["verdicts"]["A"],
        "paper": {"alpha": pa, "alpha_sd": pasd, "beta": pb, "beta_sd": pbsd},
        "train_seconds": round(train_seconds, 1),
    }


def run(
    out,
    *,
    quick: bool = False,
    optimizer: Optional[str] = None,
    seeds: int = 5,
    progress: bool = True,
) -> dict:
    """Run (or resume) the 9 cells of SP Table 4 under ``out``, analyse each, and write
    ``out/table4.json`` (the returned dict) and ``out/table4.md``. ``optimizer`` None keeps the
    preset's (Adam, as the authors' public code).

    Each batch size trains in one pass (:func:`resnet_limits.sweeps.run_lr_grid`): per depth,
    its 3 eta x ``seeds`` runs are one vmapped program, and each eta's seeds are written to its
    cell folder. A cell's ``train_seconds`` is the wall time of its batch size's pass (shared by
    the three cells of that B)."""
    from resnet_limits.analysis import analyze_run

    if seeds < 1:
        raise UsageError(f"seeds must be >= 1, got {seeds}")
    out = output_folder(out)
    t0 = time.perf_counter()
    grid = {B: [cell_config(lr, B, quick=quick, optimizer=optimizer, seeds=seeds) for lr in LEARNING_RATES]
            for B in BATCH_SIZES}
    n_depths = sum(len(cfgs[0].depths) for cfgs in grid.values())
    rows: dict[tuple[float, int], dict] = {}
    with tqdm(total=n_depths, desc="table 4 (B x depth)", unit="depth", disable=not progress) as bar:
        for B, cfgs in grid.items():
            subs = [cell_dir(out, cfg.lr, B) for cfg in cfgs]
            tb = time.perf_counter()
            sweeps.run_lr_grid(cfgs, subs, progress=progress, bar=bar)
            t_train = time.perf_counter() - tb
            for cfg, sub in zip(cfgs, subs):
                res = analyze_run(sub, progress=False, figures=not quick)
                rows[(cfg.lr, B)] = _cell_row(cfg, sub, res, t_train)
    cells = [rows[(lr, B)] for lr in LEARNING_RATES for B in BATCH_SIZES]
    result = {
        "table": "SP Table 4 (tanh, shared delta, synthetic)",
        "quick": quick, "seeds": seeds,
        "optimizer": cells[0]["optimizer"] if cells else optimizer,
        "max_depth": max(cells[0]["depths"]) if cells else None,
        "learning_rates": list(LEARNING_RATES), "batch_sizes": list(BATCH_SIZES),
        "cells": cells,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "table4.json", result)
    write_text(out / "table4.md", table4_markdown(result) + "\n")
    return result


def _pm(m, sd) -> str:
    if m is None or (isinstance(m, float) and not math.isfinite(m)):
        return "-"
    return f"{m:.2f} ± {sd:.2f}" if sd is not None and math.isfinite(sd) else f"{m:.2f}"


def _cell(result: dict, lr: float, B: int) -> Optional[dict]:
    for c in result.get("cells", []):
        if math.isclose(c["lr"], lr) and c["batch_size"] == B:
            return c
    return None


def _ours_and_paper(result: dict, lr: float, B: int, key: str) -> tuple[str, float, float]:
    """(our mean ± sd of ``key`` ("alpha" or "beta") or "not run", the paper's mean, the paper's sd)."""
    c = _cell(result, lr, B)
    p = PAPER_TABLE4[(lr, B)]
    pm, psd = (p[0], p[1]) if key == "alpha" else (p[2], p[3])
    return (_pm(c.get(key), c.get(f"{key}_sd")) if c else "not run"), pm, psd


def _header(result: dict) -> str:
    return (f"{result.get('optimizer')}, {result.get('seeds')} seeds, depths up to "
            f"{result.get('max_depth')}{', quick' if result.get('quick') else ''}")


def table4_markdown(result: dict) -> str:
    """The paper's layout in Markdown: alpha and beta (mean ± sd over seeds), ours and the paper's."""
    lines = [f"# SP Table 4, reproduced ({_header(result)})", ""]
    for key, sym in (("alpha", "α"), ("beta", "β")):
        lines.append(f"| {sym}: ours (paper) | " + " | ".join(f"B = {B}" for B in BATCH_SIZES) + " |")
        lines.append("|---|" + "---|" * len(BATCH_SIZES))
        for lr in LEARNING_RATES:
            row = []
            for B in BATCH_SIZES:
                ours, pm, psd = _ours_and_paper(result, lr, B, key)
                row.append(f"{ours} ({pm:.2f} ± {psd:.2f})")
            lines.append(f"| η = {lr:g} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append("| α + β: ours (paper) | " + " | ".join(f"B = {B}" for B in BATCH_SIZES) + " |")
    lines.append("|---|" + "---|" * len(BATCH_SIZES))
    for lr in LEARNING_RATES:
        row = []
        for B in BATCH_SIZES:
            c = _cell(result, lr, B)
            p = PAPER_TABLE4[(lr, B)]
            s = c.get("alpha_plus_beta") if c else None
            row.append(f"{s:.2f} ({p[0] + p[2]:.2f})" if s is not None else f"- ({p[0] + p[2]:.2f})")
        lines.append(f"| η = {lr:g} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_table4(result: dict) -> str:
    """Plain-text Table 4 in the paper's layout (alpha left, beta right), paper values beside."""
    w = 26
    lines = [f"SP Table 4 ({_header(result)}); cells: ours [paper]", ""]
    hdr = f"{'α':<10}" + "".join(f"{'B = ' + str(B):<{w}}" for B in BATCH_SIZES)
    hdr += "   " + f"{'β':<10}" + "".join(f"{'B = ' + str(B):<{w}}" for B in BATCH_SIZES)
    lines.append(hdr)
    for lr in LEARNING_RATES:
        parts = []
        for key in ("alpha", "beta"):
            s = f"{'η = ' + format(lr, 'g'):<10}"
            for B in BATCH_SIZES:
                ours, pm, psd = _ours_and_paper(result, lr, B, key)
                s += f"{ours + f' [{pm:.2f}±{psd:.2f}]':<{w}}"
            parts.append(s)
        lines.append("   ".join(parts))
    lines.append("")
    flags = [f"η={c['lr']:g} B={c['batch_size']}: {c['diverged']} diverged" for c in result.get("cells", [])
             if c.get("diverged")]
    if flags:
        lines.append("diverged seeds (left out of the fits): " + "; ".join(flags))
    lines.append("α + β per cell: " + ", ".join(
        f"{c['alpha_plus_beta']:.2f}" if c.get("alpha_plus_beta") is not None else "-" for c in result.get("cells", [])))
    return "\n".join(lines)
