"""Run folders and depth sweeps (layer 2).

* ``folder``: the on-disk format of a run (atomic writes, per-depth files with sha256, the one
  JSON writer, checks);
* ``claims``: claim files, so several processes share the depths of one folder;
* ``driver``: :func:`run_depths`, the resumable, shareable loop over depths of any sweep;
* ``fc``: the sweeps of the fully-connected ResNet (data, weights, initial weights);
* ``conv``: the sweeps of the convolutional ResNet on CIFAR-10 (``conv-cifar10``);
* ``lr_grid``: several learning rates of one sweep trained in one pass, each into its own run
  folder (SP Table 4).

The configuration of a sweep is :class:`resnet_limits.config.SweepConfig`; a finished folder is
read through :class:`resnet_limits.run.Run`.
"""

from resnet_limits.sweeps.conv import conv_images, flatten_params, run_conv_sweep, unflatten_params
from resnet_limits.sweeps.driver import SweepReport, pending_depths, run_depths
from resnet_limits.sweeps.fc import (
    INITIAL_WEIGHTS,
    data_info,
    dataset_for,
    depth_files,
    nested_weights,
    params_of,
    run_initial_weights,
    run_keys,
    run_sweep,
    run_sweep_report,
)
from resnet_limits.sweeps.folder import check_out_dir, finished_depths, json_ready, load_config, write_json
from resnet_limits.sweeps.lr_grid import check_lr_grid, run_lr_grid, train_learning_rates

__all__ = [
    "INITIAL_WEIGHTS",
    "SweepReport",
    "check_lr_grid",
    "check_out_dir",
    "conv_images",
    "data_info",
    "dataset_for",
    "depth_files",
    "finished_depths",
    "flatten_params",
    "json_ready",
    "load_config",
    "nested_weights",
    "params_of",
    "pending_depths",
    "run_conv_sweep",
    "run_depths",
    "run_initial_weights",
    "run_keys",
    "run_lr_grid",
    "run_sweep",
    "run_sweep_report",
    "train_learning_rates",
    "unflatten_params",
    "write_json",
]
