"""Run folders and depth sweeps (layer 2).

* ``folder``: the on-disk format of a run (atomic writes, per-depth files with sha256, checks);
* ``claims``: claim files, so several processes share the depths of one folder;
* ``driver``: :func:`run_depths`, the resumable, shareable loop over depths of any sweep;
* ``grid``: the depth grid floor(b^n);
* ``fc``: the sweeps of the fully-connected ResNet (presets, configuration, data, weights);
* ``conv``: the sweeps of the convolutional ResNet on CIFAR-10 (``conv-cifar10``);
* ``lr_grid``: several learning rates of one sweep trained in one pass, each into its own run
  folder (SP Table 4).

The public names of ``fc``, ``grid`` and the folder functions are re-exported here, so
``from resnet_limits.sweeps import make_config, run_sweep, load_depth`` keeps working.
"""

from resnet_limits.sweeps.conv import (
    CONV_PRESETS,
    conv_images,
    conv_train_config,
    load_conv_depth,
    make_conv_config,
    run_conv_sweep,
)
from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.fc import (
    INITIAL_WEIGHTS,
    PARAMETRIZATION_KEYS,
    PRESETS,
    QUICK_MAX_DEPTH,
    QUICK_MAX_DEPTHS,
    SEED_LIMIT,
    data_info,
    dataset_for,
    load_depth,
    make_config,
    run_sweep,
    run_initial_weights,
    run_sweep_report,
    train_config,
)
from resnet_limits.sweeps.folder import check_depth, check_out_dir, depth_problem, finished_depths, load_config
from resnet_limits.sweeps.grid import DEFAULT_BASE, depth_grid
from resnet_limits.sweeps.lr_grid import check_lr_grid, run_lr_grid, train_learning_rates

__all__ = [
    "INITIAL_WEIGHTS",
    "PARAMETRIZATION_KEYS",
    "run_initial_weights",
    "check_lr_grid",
    "run_lr_grid",
    "train_learning_rates",
    "CONV_PRESETS",
    "conv_images",
    "conv_train_config",
    "load_conv_depth",
    "make_conv_config",
    "run_conv_sweep",
    "DEFAULT_BASE",
    "PRESETS",
    "QUICK_MAX_DEPTH",
    "QUICK_MAX_DEPTHS",
    "SEED_LIMIT",
    "SweepReport",
    "check_depth",
    "check_out_dir",
    "data_info",
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
