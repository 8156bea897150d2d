"""Depth sweeps of the fully-connected ResNet (SP Figs 1-5): S seeds at every depth of a grid.

Folder layout (``folder.py``; see README)::

    RUN_DIR/config.json          the resolved configuration
    RUN_DIR/depths/L00003.npz    weights of all seeds: A (S,L,d,d), b (S,L,d), delta (S,) or (S,L)
    RUN_DIR/depths/L00003.json   metrics of all seeds (losses, updates, converged, diverged),
                                 sha256 of the .npz, host and pid that trained it

Running the same sweep again skips finished depths without touching them, trains again a
depth whose files are damaged, and may run in several processes at once (``driver.py``). A
folder whose training configuration differs (anything but the depth grid) is refused.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import numpy as np
from tqdm import tqdm

from resnet_limits.data import Dataset, LabelledImages, mnist_dataset, mnist_images, synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.folder import CONFIG, load_config, load_depth_arrays
from resnet_limits.sweeps.grid import DEFAULT_BASE, depth_grid
from resnet_limits.training import TrainConfig, TrainResult, seed_keys, train_seeds
from resnet_limits.training.fc import initial_params

__all__ = [
    "GRID_KEYS",
    "INITIAL_WEIGHTS",
    "PARAMETRIZATION_KEYS",
    "PRESETS",
    "QUICK_MAX_DEPTH",
    "QUICK_MAX_DEPTHS",
    "SEED_LIMIT",
    "data_info",
    "dataset_for",
    "depth_files",
    "keep_data_info",
    "load_depth",
    "make_config",
    "run_initial_weights",
    "run_sweep",
    "run_sweep_report",
    "say_diverged",
    "train_config",
]

# SPEC §6 (SP App. A and the authors' code). Adam is the default: it is what the authors'
# public code trains these runs with, and with it the trained deltas shrink with depth as in
# the paper (alpha ~ 0.7); plain SGD leaves delta near 0.2 (alpha ~ 0), see SPEC §6.
_SYNTHETIC = dict(
    dataset="synthetic", width=10, n_train=1024, n_test=256, batch_size=32, lr=0.01,
    optimizer="adam", epochs=5, max_updates=160, epsilon=0.01, init="xavier-depth",
    init_scale=0.01, seeds=5, seed=0, data_seed=0, min_depth=3, max_depth=10321,
    depth_base=DEFAULT_BASE, data_dir=None,
)
_MNIST = dict(
    _SYNTHETIC, dataset="mnist", width=25, n_train=60000, n_test=10000, batch_size=50,
    epochs=10, max_updates=12000, max_depth=942,
)
PRESETS: dict[str, dict[str, Any]] = {
    "tanh-synthetic": dict(_SYNTHETIC, activation="tanh", delta_mode="shared"),
    "relu-synthetic": dict(_SYNTHETIC, activation="relu", delta_mode="per-layer"),
    "tanh-mnist": dict(_MNIST, activation="tanh", delta_mode="shared"),
    "relu-mnist": dict(_MNIST, activation="relu", delta_mode="per-layer"),
}
QUICK_MAX_DEPTH = 1000
# --quick for MNIST (8,000 training images, 10 epochs): the grid up to 203 (tanh) / 406 (ReLU)
# keeps a sweep under 5 minutes on 2 CPU cores.
QUICK_MAX_DEPTHS = {"tanh-mnist": 203, "relu-mnist": 406}
SEED_LIMIT = 2**32  # jax.random.PRNGKey takes seeds below this; larger ones repeat smaller ones

_TRAIN_KEYS = tuple(f.name for f in TrainConfig.__dataclass_fields__.values())
# Settings of the depth parametrisation (issue 12): in a configuration only when given, so the
# learned-delta default writes the config.json it always wrote (earlier folders still resume).
PARAMETRIZATION_KEYS = ("parametrization", "branch_exponent", "ref_depth", "lr_depth_exponent")
_DEFAULT_PARAMETRIZATION = TrainConfig().parametrization
#: Keys that define the depth grid: they may change between runs in one folder; so may
#: "data_info", where the data came from (the data folder may move).
GRID_KEYS = ("depths", "min_depth", "max_depth", "depth_base", "quick", "data_info")


def make_config(preset: str, *, quick: bool = False, **overrides) -> dict[str, Any]:
    """The resolved configuration of a preset with user overrides (``None`` values ignored).

    ``quick`` caps the depth grid at about 1,000 (MNIST: :data:`QUICK_MAX_DEPTHS`). ``depths`` (an explicit list) wins over the
    grid parameters. The depth parametrisation (:data:`PARAMETRIZATION_KEYS`, see
    :class:`~resnet_limits.training.TrainConfig`) is recorded only when it is not the default
    learned delta. Raises :class:`UsageError` for unknown names or bad values.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = dict(PRESETS[preset], preset=preset, quick=quick)
    for k, v in overrides.items():
        if k not in cfg and k not in ("depths", *PARAMETRIZATION_KEYS):
            raise UsageError(f"unknown setting {k!r}")
        if v is not None:
            cfg[k] = v
    if cfg.get("parametrization") == _DEFAULT_PARAMETRIZATION:
        del cfg["parametrization"]
    if quick and overrides.get("max_depth") is None and overrides.get("depths") is None:
        cfg["max_depth"] = min(cfg["max_depth"], QUICK_MAX_DEPTHS.get(preset, QUICK_MAX_DEPTH))
    if overrides.get("depths") is not None:
        depths = sorted({int(L) for L in overrides["depths"]})
        if not depths or depths[0] < 1:
            raise UsageError(f"depth must be >= 1, got {min(depths) if depths else 'none'}")
        cfg["depths"] = depths
    else:
        cfg["depths"] = depth_grid(int(cfg["min_depth"]), int(cfg["max_depth"]), float(cfg["depth_base"]))
        if not cfg["depths"]:
            raise UsageError(f"the grid floor({cfg['depth_base']:g}^n) has no depth between {cfg['min_depth']} "
                             f"and {cfg['max_depth']}; widen the range or give --depths")
    _validate(cfg)
    return cfg


def _validate(cfg: dict[str, Any]) -> None:
    if cfg["seeds"] < 1:
        raise UsageError(f"seeds must be >= 1, got {cfg['seeds']}")
    for k in ("seed", "data_seed"):
        if not 0 <= cfg[k] < SEED_LIMIT:
            raise UsageError(f"{k.replace('_', ' ')} must be in 0..{SEED_LIMIT - 1}, got {cfg[k]}")
    if cfg["n_train"] < 1 or cfg["n_test"] < 1:
        raise UsageError("n_train and n_test must be >= 1")
    if cfg["dataset"] == "synthetic" and cfg["data_dir"] is not None:
        raise UsageError(f"a data folder is only read by the MNIST presets ({cfg['preset']} makes its own data)")
    train_config(cfg).validate(cfg["n_train"])


def train_config(cfg: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` part of a run configuration (absent parametrisation keys: defaults)."""
    return TrainConfig(**{k: cfg[k] for k in _TRAIN_KEYS if k in cfg or k not in PARAMETRIZATION_KEYS})


@functools.lru_cache(maxsize=1)
def _mnist_images(data_dir: Optional[str], n_train: int, n_test: int) -> LabelledImages:
    """The MNIST images of a run, read once per process (:func:`dataset_for` and :func:`data_info`)."""
    return mnist_images(data_dir, n_train=n_train, n_test=n_test)


def _mnist_of(cfg: dict[str, Any]) -> LabelledImages:
    return _mnist_images(cfg.get("data_dir"), int(cfg["n_train"]), int(cfg["n_test"]))


def dataset_for(cfg: dict[str, Any]) -> Dataset:
    """The exact training and test data of a run (deterministic from ``data_seed``)."""
    key = jax.random.PRNGKey(int(cfg["data_seed"]))
    if cfg["dataset"] == "synthetic":
        return synthetic(key, cfg["n_train"], cfg["n_test"], cfg["width"])
    if cfg["dataset"] == "mnist":
        return mnist_dataset(key, _mnist_of(cfg))
    raise UsageError(f"unknown dataset {cfg['dataset']!r}")


def data_info(cfg: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Where an image data set came from and how it was split (``LabelledImages.info``: dataset,
    source, split, n_train, n_test); None for the generated synthetic task."""
    return _mnist_of(cfg).info if cfg["dataset"] == "mnist" else None


def load_depth(run_dir, depth: int) -> tuple[ResNetParams, dict[str, Any]]:
    """Weights (leading seed axis, numpy) and metrics of one finished depth.

    :class:`UsageError` if the depth is not finished, :class:`DamagedRunError` (naming the
    file) if its weight file is missing, unreadable or fails its sha256.
    """
    z, metrics = load_depth_arrays(run_dir, depth)
    return ResNetParams(z["A"], z["b"], z.get("delta")), metrics


def depth_files(depth: int, result: TrainResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metrics saved for one depth (``folder.save_depth`` adds checksum, host, pid)."""
    arrays = {"A": result.params.A, "b": result.params.b}
    if result.params.delta is not None:
        arrays["delta"] = result.params.delta
    curves = [[float(v) for v in c[: int(n)]] for c, n in zip(result.loss_curve, result.updates)]
    to_list = lambda a: [float(v) if np.isfinite(v) else None for v in np.asarray(a, np.float64)]  # noqa: E731
    metrics = {
        "depth": int(depth),
        "seeds": int(len(result.updates)),
        "train_loss": to_list(result.train_loss),
        "test_loss": to_list(result.test_loss),
        "updates": [int(u) for u in result.updates],
        "converged": [bool(c) for c in result.converged],
        "diverged": [bool(c) for c in result.diverged],
        "lr": [float(v) for v in result.lr],
        "loss_curve": curves,
    }
    return arrays, metrics


def say_diverged(result: TrainResult, where: str, say: Callable[[str], None]) -> None:
    """One line naming how many seeds of ``result`` diverged, if any (they are recorded, the sweep
    goes on); ``where`` says which run, e.g. ``"L=64"``."""
    n_div = int(np.sum(result.diverged))
    if n_div:
        say(f"{where}: {n_div} of {len(result.diverged)} seeds diverged (recorded, sweep goes on)")


def run_sweep_report(
    cfg: dict[str, Any], out_dir, *, progress: bool = True, wait: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> SweepReport:
    """Train every unfinished (or damaged) depth of ``cfg['depths']`` into ``out_dir``.

    Resumable and shareable between processes (:func:`~resnet_limits.sweeps.driver.run_depths`);
    the data set is loaded, and ``config.json`` written, only if some depth needs training.
    An image data set's :func:`data_info` is added to ``cfg`` (and so to ``config.json``) as
    ``cfg["data_info"]`` once it has loaded (or taken from the folder's ``config.json``).
    """
    data: dict[str, Dataset] = {}
    keep_data_info(cfg, Path(out_dir))
    tcfg = train_config(cfg)
    say = log or (lambda m: tqdm.write(m))

    def train_one(L: int):
        keys = seed_keys(int(cfg["seed"]), L, int(cfg["seeds"]))
        result = train_seeds(keys, L, data["d"], tcfg, progress=progress)
        if progress:
            say_diverged(result, f"L={L}", say)
        return depth_files(L, result)

    def setup() -> None:
        data["d"] = dataset_for(cfg)
        info = data_info(cfg)
        if info is not None:
            cfg["data_info"] = info

    return run_depths(Path(out_dir), cfg, cfg["depths"], train_one, setup=setup, free_keys=GRID_KEYS, wait=wait,
                      progress=progress, log=log)


def keep_data_info(cfg: dict[str, Any], out: Path) -> None:
    """Carry the folder's recorded ``data_info`` into ``cfg`` (a rerun that loads no data keeps it)."""
    if "data_info" not in cfg and (out / CONFIG).is_file():
        try:
            old = load_config(out)
        except UsageError:
            return  # a damaged or foreign folder: run_depths says so in one line
        if old.get("data_info") is not None:
            cfg["data_info"] = old["data_info"]


#: ``config.json["weights"]`` of a folder made by :func:`run_initial_weights`.
INITIAL_WEIGHTS = "initial"


def run_initial_weights(cfg: dict[str, Any], out_dir, *, progress: bool = True,
                        log: Optional[Callable[[str], None]] = None) -> SweepReport:
    """A run folder holding the networks of the sweep ``cfg`` *before* training (issue 12).

    Every seed's initial weights are drawn again from its key exactly as the trainer draws them
    (:func:`~resnet_limits.training.fc.initial_params` of ``seed_keys(seed, L, seeds)``), and
    written in the layout of a sweep (``config.json`` is ``cfg`` with ``"weights": "initial"``;
    per depth the weights and ``{"depth", "seeds", "weights"}``), so that
    :func:`resnet_limits.analysis.analyze_run` measures the statistics of the initialisation
    as those of trained weights. Resumable like :func:`run_sweep_report`; nothing is trained.
    """
    tcfg, width, n = train_config(cfg), int(cfg["width"]), int(cfg["seeds"])

    def draw(L: int):
        keys = seed_keys(int(cfg["seed"]), L, n)
        p = jax.jit(jax.vmap(lambda k: initial_params(k, L, width, tcfg)))(keys)
        arrays = {"A": np.asarray(p.A), "b": np.asarray(p.b)}
        if p.delta is not None:
            arrays["delta"] = np.asarray(p.delta)
        return arrays, {"depth": int(L), "seeds": n, "weights": INITIAL_WEIGHTS}

    return run_depths(Path(out_dir), dict(cfg, weights=INITIAL_WEIGHTS), cfg["depths"], draw,
                      free_keys=GRID_KEYS, progress=progress, log=log)


def run_sweep(cfg: dict[str, Any], out_dir, *, progress: bool = True) -> list[int]:
    """Train every unfinished depth of ``cfg['depths']`` into ``out_dir`` (resumable).

    Returns the finished depths of the folder. Nothing finished is recomputed or rewritten.
    The folder's ``config.json`` records the union of all depth grids asked of it.
    """
    return run_sweep_report(cfg, out_dir, progress=progress).finished
