"""Several learning rates of one sweep trained in one pass, each into its own run folder (layer 2).

The learning rate is data of the bucket trainer (``train_seeds(..., lrs=...)``), so R learning
rates x S seeds of one depth train as ONE vmapped program of R*S runs (SP Table 4: 3 eta x 5
seeds per batch size). Run ``r*S + s`` has the key ``seed_keys(seed, L, S)[s]`` and the rate of
folder ``r``, exactly as in a per-folder :func:`~resnet_limits.sweeps.fc.run_sweep`, so every
seed's weights and losses equal that sweep's to float32 round-off.

Each learning rate keeps a normal sweep folder (``fc.py``: same ``config.json``, same per-depth
files and sha256 checks), written through :func:`~resnet_limits.sweeps.driver.run_depths` one
depth at a time: a depth intact in every folder is not trained again; a depth missing (or
damaged) in some folders is trained for those folders' rates only, and written only there
(finished files are never rewritten). Ctrl-C or SIGTERM leaves every depth written so far.
A depth's ``seconds`` (added by ``run_depths``) is the one-pass training time in the first
folder written and the (near-zero) writing time in the others, so they sum to the wall time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from resnet_limits.data import Dataset
from resnet_limits.errors import UsageError
from resnet_limits.sweeps.driver import pending_depths, run_depths
from resnet_limits.config import SweepConfig
from resnet_limits.sweeps.fc import data_info, dataset_for, depth_files, keep_data_info, say_diverged
from resnet_limits.sweeps.folder import check_folder, finished_depths, record_config
from resnet_limits.training import TrainResult, seed_keys, train_seeds

__all__ = ["check_lr_grid", "run_lr_grid", "train_learning_rates"]

Log = Optional[Callable[[str], None]]


def check_lr_grid(cfgs: Sequence[SweepConfig], out_dirs: Sequence) -> None:
    """Raise :class:`UsageError` unless there is one folder per configuration, no two alike,
    and the configurations differ in ``lr`` only (the grid keys of a sweep aside)."""
    if not cfgs:
        raise UsageError("no learning rates to train")
    if len(out_dirs) != len(cfgs):
        raise UsageError(f"{len(cfgs)} configurations need {len(cfgs)} run folders, got {len(out_dirs)}")
    if len({Path(o).resolve() for o in out_dirs}) < len(out_dirs):
        raise UsageError("two learning rates of one grid cannot share a run folder")
    for c in cfgs[1:]:
        diff = cfgs[0].differences(c, free=("lr", "data_info"))
        if diff:
            raise UsageError(f"the configurations of one learning-rate grid differ in {', '.join(diff)}, not only lr")


def train_learning_rates(cfg: SweepConfig, lrs: Sequence[float], depth: int, data: Dataset, *,
                         progress: bool = False) -> list[TrainResult]:
    """The ``cfg['seeds']`` seeds of ``cfg`` at each learning rate of ``lrs``, trained as one
    vmapped program of ``len(lrs) * seeds`` runs (SP Table 4); one :class:`TrainResult` per rate,
    equal to ``train_seeds(seed_keys(cfg.seed, depth, seeds), depth, data, cfg with lr)``."""
    n = int(cfg.seeds)
    keys = seed_keys(int(cfg.seed), depth, n)
    res = train_seeds(jnp.concatenate([keys] * len(lrs)), depth, data, cfg.train_config(),
                      lrs=np.repeat(np.asarray(lrs, np.float64), n), progress=progress,
                      desc=f"B={cfg.batch_size} L={depth}")
    return [jax.tree.map(lambda a, r=r: a[r * n:(r + 1) * n], res) for r in range(len(lrs))]


def _write_depth(cfgs: list[SweepConfig], outs: list[Path], depth: int, load: Callable[[], Dataset], progress: bool,
                 log: Log) -> None:
    """Train ``depth`` once for every folder that lacks it (or holds it damaged) and write it there."""
    need = [i for i, o in enumerate(outs) if pending_depths(o, [depth])]
    done: dict[int, TrainResult] = {}

    def train_one(i: int):
        if i not in done:  # the first folder written trains all the others still lacking the depth
            todo = [i] + [j for j in need if j != i and j not in done]
            done.update(zip(todo, train_learning_rates(cfgs[i], [cfgs[j].lr for j in todo], depth, load(),
                                                       progress=progress)))
        res = done.pop(i)
        if progress:
            say_diverged(res, f"lr={cfgs[i].lr:g} L={depth}", log or tqdm.write)
        return depth_files(depth, res)

    def setup(i: int) -> SweepConfig:
        load()
        return cfgs[i].replace(data_info=data_info(cfgs[i]))

    for i in need:
        run_depths(outs[i], cfgs[i], [depth], lambda _L, i=i: train_one(i), setup=lambda i=i: setup(i), log=log)


def run_lr_grid(
    cfgs: Sequence[SweepConfig],
    out_dirs: Sequence,
    *,
    progress: bool = True,
    bar: Optional[tqdm] = None,
    log: Log = None,
) -> list[list[int]]:
    """Train every depth of ``cfgs[0].depths`` that some folder of ``out_dirs`` lacks, all
    learning rates in one pass per depth (module docstring); returns each folder's finished depths.

    ``cfgs``: sweep configurations (:func:`~resnet_limits.config.sweep_config`) that differ in ``lr`` only; folder ``i``
    holds ``cfgs[i]`` and afterwards is what ``run_sweep(cfgs[i], out_dirs[i])`` makes. Every
    folder is checked before anything trains (:class:`UsageError` for one of another
    configuration). ``bar``: a tqdm bar to advance by one per depth (else one of its own).
    """
    outs = [Path(o) for o in out_dirs]
    cfgs = [keep_data_info(c, o) for c, o in zip(cfgs, outs)]
    check_lr_grid(cfgs, outs)
    for c, o in zip(cfgs, outs):
        check_folder(o, c)
    data: dict[str, Dataset] = {}

    def load() -> Dataset:
        if "d" not in data:
            data["d"] = dataset_for(cfgs[0])
        return data["d"]

    own = bar is None
    if own:
        bar = tqdm(total=len(cfgs[0].depths), desc="depths", unit="depth", disable=not progress)
    try:
        for L in cfgs[0].depths:
            bar.set_postfix(L=L)
            _write_depth(cfgs, outs, L, load, progress, log)
            bar.update()
    finally:
        if own:
            bar.close()
    for c, o in zip(cfgs, outs):  # as run_sweep: config.json records the union of the grids asked
        record_config(o, keep_data_info(c, o))
    return [finished_depths(o) for o in outs]
