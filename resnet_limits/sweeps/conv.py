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

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from flax import traverse_util

from resnet_limits.conv import CONFIGS, blocks_per_stage, param_count
from resnet_limits.data import LabelledImages, cifar10_images, mock_cifar10
from resnet_limits.errors import UsageError
from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.folder import depth_paths, load_depth_arrays
from resnet_limits.training.conv import ConvTrainConfig, train_conv

__all__ = [
    "CONV_PRESETS",
    "conv_images",
    "conv_train_config",
    "flatten_params",
    "load_conv_depth",
    "make_conv_config",
    "run_conv_sweep",
    "unflatten_params",
]

_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(ConvTrainConfig))
CONV_PRESETS: dict[str, dict[str, Any]] = {
    "conv-cifar10": dict(dataclasses.asdict(ConvTrainConfig()), dataset="cifar10", n_train=50000, n_test=10000,
                         seed=0, data_seed=0, data_dir=None, mock_data=None),
}
_FREE_KEYS = ("depths", "data_info")
SEED_LIMIT = 2**32


def make_conv_config(preset: str = "conv-cifar10", *, depths=None, **overrides) -> dict[str, Any]:
    """The resolved configuration of a convolutional preset (``None`` overrides ignored).

    ``depths`` defaults to all 16 configurations; each must be one of them. ``mock_data=N``
    trains on N random images of CIFAR-10's shape (and N // 5 test images). One-line
    :class:`UsageError` for anything else.
    """
    if preset not in CONV_PRESETS:
        raise UsageError(f"unknown convolutional preset {preset!r}; choose from {', '.join(CONV_PRESETS)}")
    cfg = dict(CONV_PRESETS[preset], preset=preset)
    for k, v in overrides.items():
        if k not in cfg:
            raise UsageError(f"unknown setting {k!r} for {preset}")
        if v is not None:
            cfg[k] = v
    cfg["depths"] = sorted({int(L) for L in (list(CONFIGS) if depths is None else depths)})
    if not cfg["depths"]:
        raise UsageError("give at least one depth")
    for L in cfg["depths"]:
        blocks_per_stage(L)
    if cfg["mock_data"] is not None:
        if cfg["data_dir"] is not None:
            raise UsageError("--mock-data and --data-dir exclude each other")
        if cfg["mock_data"] < 2:
            raise UsageError(f"mock data needs at least 2 images, got {cfg['mock_data']}")
        cfg.update(n_train=int(cfg["mock_data"]), n_test=max(1, int(cfg["mock_data"]) // 5))
    for k in ("seed", "data_seed"):
        if not 0 <= cfg[k] < SEED_LIMIT:
            raise UsageError(f"{k.replace('_', ' ')} must be in 0..{SEED_LIMIT - 1}, got {cfg[k]}")
    if cfg["n_train"] < 1 or cfg["n_test"] < 1:
        raise UsageError("n_train and n_test must be >= 1")
    conv_train_config(cfg).validate(cfg["n_train"])
    return cfg


def conv_train_config(cfg: Mapping[str, Any]) -> ConvTrainConfig:
    """The :class:`ConvTrainConfig` part of a run configuration."""
    return ConvTrainConfig(**{k: cfg[k] for k in _TRAIN_KEYS})


def conv_images(cfg: Mapping[str, Any]) -> LabelledImages:
    """The images of a run: random ones of CIFAR-10's shape (``mock_data``), else CIFAR-10."""
    if cfg.get("mock_data") is not None:
        return mock_cifar10(jax.random.PRNGKey(int(cfg["data_seed"])), int(cfg["n_train"]), int(cfg["n_test"]))
    return cifar10_images(cfg.get("data_dir"), n_train=int(cfg["n_train"]), n_test=int(cfg["n_test"]))


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A nested parameter dict as flat ``{"stage1/entry_A": array, ...}`` (the ``.npz`` keys)."""
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params`."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def load_conv_depth(run_dir, depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters (nested dict of numpy arrays, as :func:`resnet_limits.conv.init_conv_params`)
    and metrics of one finished depth (checksum checked, as :func:`folder.load_depth_arrays`)."""
    flat, metrics = load_depth_arrays(run_dir, depth)
    return unflatten_params(flat), metrics


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
    cfg: dict[str, Any], out_dir, *, progress: bool = True, wait: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> SweepReport:
    """Train every unfinished (or damaged) depth of ``cfg['depths']`` into ``out_dir``.

    Depth L trains :func:`~resnet_limits.training.conv.train_conv` with key
    ``fold_in(PRNGKey(seed), L)`` and its orbax checkpoints in ``depths/L00008.ckpt`` (a killed
    run resumes after its last epoch); its ``.npz`` and ``.json`` are then written and the
    checkpoint removed. The images are loaded, and ``config.json`` (with ``data_info``) written,
    only if some depth needs training. Resume, checksums and claims as
    :func:`~resnet_limits.sweeps.driver.run_depths`.
    """
    out = Path(out_dir)
    tcfg = conv_train_config(cfg)
    data: dict[str, LabelledImages] = {}

    def setup() -> None:
        data["imgs"] = conv_images(cfg)
        cfg["data_info"] = data["imgs"].info

    def train_one(L: int):
        key = jax.random.fold_in(jax.random.PRNGKey(int(cfg["seed"])), L)
        res = train_conv(key, L, data["imgs"], tcfg, ckpt_dir=_ckpt_dir(out, L), progress=progress)
        return _depth_files(L, res, tcfg.width)

    def saved(L: int) -> None:
        shutil.rmtree(_ckpt_dir(out, L), ignore_errors=True)

    return run_depths(out, cfg, cfg["depths"], train_one, setup=setup, on_saved=saved, free_keys=_FREE_KEYS,
                      wait=wait, progress=progress, log=log)
