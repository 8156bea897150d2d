"""Depth sweeps of the convolutional ResNet of SP eq. 9 on CIFAR-10 (SP §3.2, Figs 7-8, Table 5).

One network per configuration depth L (``resnet_limits.conv.CONFIGS``), trained with the
``conv-cifar10`` recipe (:class:`~resnet_limits.training.conv.ConvTrainConfig`). The folder is
that of every sweep (``folder.py``, ``driver.py``: atomic writes, sha256, claims, resume)::

    RUN_DIR/config.json          the resolved configuration, with "data_info" (source and split)
    RUN_DIR/depths/L00008.npz    the trained parameters, flattened: "stage1/entry_A", "head/bias", ...
    RUN_DIR/depths/L00008.json   per epoch: train_loss, train_accuracy, test_loss, test_accuracy,
                                 epoch_seconds; test_error (final), resumed_from, parameters, sha256
    RUN_DIR/depths/L00008.ckpt/  orbax checkpoint after every epoch while depth 8 trains (removed
                                 once its files are written): a killed run resumes at its last epoch
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from flax import traverse_util

from resnet_limits.config import SweepConfig
from resnet_limits.conv import blocks_per_stage, param_count
from resnet_limits.data import LabelledImages, cifar10_images, mock_cifar10
from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.folder import depth_paths
from resnet_limits.training.conv import train_conv

__all__ = [
    "conv_images",
    "flatten_params",
    "run_conv_sweep",
    "unflatten_params",
]


def conv_images(cfg: SweepConfig) -> LabelledImages:
    """The images of a run: random ones of CIFAR-10's shape (``mock_data``), else CIFAR-10."""
    if cfg.mock_data is not None:
        return mock_cifar10(jax.random.PRNGKey(int(cfg.data_seed)), int(cfg.n_train), int(cfg.n_test))
    return cifar10_images(cfg.data_dir, n_train=int(cfg.n_train), n_test=int(cfg.n_test))


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A nested parameter dict as flat ``{"stage1/entry_A": array, ...}`` (the ``.npz`` keys)."""
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params`."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def _ckpt_dir(out: Path, depth: int) -> Path:
    return depth_paths(out, depth)[0].with_suffix(".ckpt")


def _depth_files(depth: int, res, width: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    curve = lambda a: [float(v) for v in np.asarray(a, np.float64)]  # noqa: E731
    metrics = {
        "depth": int(depth),
        "blocks_per_stage": list(blocks_per_stage(depth)),
        "parameters": int(param_count(depth, width)),
        "epochs": int(len(res.train_loss)),
        "train_loss": curve(res.train_loss),
        "train_accuracy": curve(res.train_accuracy),
        "test_loss": curve(res.test_loss),
        "test_accuracy": curve(res.test_accuracy),
        "test_error": float(1.0 - res.test_accuracy[-1]),
        "epoch_seconds": curve(res.seconds),
        "resumed_from": int(res.resumed_from),
    }
    return flatten_params(res.params), metrics


def run_conv_sweep(
    cfg: SweepConfig, out_dir, *, progress: bool = True, wait: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> SweepReport:
    """Train every unfinished (or damaged) depth of ``cfg.depths`` into ``out_dir``.

    Depth L trains :func:`~resnet_limits.training.conv.train_conv` with key
    ``fold_in(PRNGKey(seed), L)`` and its orbax checkpoints in ``depths/L00008.ckpt`` (a killed
    run resumes after its last epoch); its ``.npz`` and ``.json`` are then written and the
    checkpoint removed. The images are loaded, and ``config.json`` (with ``data_info``) written,
    only if some depth needs training. The deepest depths are taken first (L = 121 is the critical
    path of processes sharing the folder). Resume, checksums and claims as
    :func:`~resnet_limits.sweeps.driver.run_depths`.
    """
    out = Path(out_dir)
    tcfg = cfg.conv_train_config()
    data: dict[str, LabelledImages] = {}

    def setup() -> SweepConfig:
        data["imgs"] = conv_images(cfg)
        return cfg.replace(data_info=data["imgs"].info)

    def train_one(L: int):
        key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), L)
        res = train_conv(key, L, data["imgs"], tcfg, ckpt_dir=_ckpt_dir(out, L), progress=progress)
        arrays, metrics = _depth_files(L, res, tcfg.width)  # one network, its batch over data_parallel devices
        return arrays, dict(metrics, devices=tcfg.data_parallel, platform=jax.default_backend())

    def saved(L: int) -> None:
        shutil.rmtree(_ckpt_dir(out, L), ignore_errors=True)

    return run_depths(out, cfg, cfg.depths, train_one, setup=setup, on_saved=saved, wait=wait, progress=progress,
                      log=log, order="longest-first")
