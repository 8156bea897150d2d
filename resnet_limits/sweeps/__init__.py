"""Run folders and depth sweeps (layer 2).

* ``folder``: the on-disk format of a run (atomic writes, per-depth files with sha256, checks);
* ``claims``: claim files, so several processes share the depths of one folder;
* ``driver``: :func:`run_depths`, the resumable, shareable loop over depths of any sweep;
* ``grid``: the depth grid floor(b^n);
* ``fc``: the sweeps of the fully-connected ResNet (presets, configuration, data, weights).

The public names of ``fc``, ``grid`` and the folder functions are re-exported here, so
``from resnet_limits.sweeps import make_config, run_sweep, load_depth`` keeps working.
"""

from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.fc import (
    PRESETS,
    QUICK_MAX_DEPTH,
    SEED_LIMIT,
    dataset_for,
    load_depth,
    make_config,
    run_sweep,
    run_sweep_report,
    train_config,
)
from resnet_limits.sweeps.folder import check_depth, check_out_dir, depth_problem, finished_depths, load_config
from resnet_limits.sweeps.grid import DEFAULT_BASE, depth_grid

__all__ = [
    "DEFAULT_BASE",
    "PRESETS",
    "QUICK_MAX_DEPTH",
    "SEED_LIMIT",
    "SweepReport",
    "check_depth",
    "check_out_dir",
    "dataset_for",
    "depth_grid",
    "depth_problem",
    "finished_depths",
    "load_config",
    "load_depth",
    "make_config",
    "run_depths",
    "run_sweep",
    "run_sweep_report",
    "train_config",
]
