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
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from tqdm import tqdm

from resnet_limits.config import SweepConfig
from resnet_limits.data import Dataset, LabelledImages, mnist_dataset, mnist_images, synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.sweeps.driver import SweepReport, run_depths
from resnet_limits.sweeps.folder import CONFIG, load_config
from resnet_limits.training import TrainResult, seed_keys, train_seeds
from resnet_limits.training.fc import initial_params

__all__ = [
    "INITIAL_WEIGHTS",
    "data_info",
    "dataset_for",
    "depth_files",
    "keep_data_info",
    "nested_weights",
    "params_of",
    "run_initial_weights",
    "run_keys",
    "run_sweep",
    "run_sweep_report",
    "say_diverged",
]


@functools.lru_cache(maxsize=1)
def _mnist_images(data_dir: Optional[str], n_train: int, n_test: int) -> LabelledImages:
    """The MNIST images of a run, read once per process (:func:`dataset_for` and :func:`data_info`)."""
    return mnist_images(data_dir, n_train=n_train, n_test=n_test)


def _mnist_of(cfg: SweepConfig) -> LabelledImages:
    return _mnist_images(cfg.data_dir, int(cfg.n_train), int(cfg.n_test))


def dataset_for(cfg: SweepConfig) -> Dataset:
    """The exact training and test data of a run (deterministic from ``data_seed``)."""
    key = jax.random.PRNGKey(int(cfg.data_seed))
    if cfg.dataset == "synthetic":
        return synthetic(key, cfg.n_train, cfg.n_test, cfg.width)
    if cfg.dataset == "mnist":
        return mnist_dataset(key, _mnist_of(cfg))
    raise UsageError(f"{cfg.preset} has no data set of its own (dataset {cfg.dataset!r})")


def data_info(cfg: SweepConfig) -> Optional[dict[str, Any]]:
    """Where an image data set came from and how it was split (``LabelledImages.info``: dataset,
    source, split, n_train, n_test); None for the generated synthetic task."""
    return _mnist_of(cfg).info if cfg.dataset == "mnist" else None


def run_keys(cfg: SweepConfig, depth: int) -> jax.Array:
    """The PRNG keys of the seeds of one depth: :func:`~resnet_limits.training.seed_keys` of the
    depth, or of a nested ladder's base depth L0 for every depth of the ladder (so the depths of a
    ladder draw the same minibatches, and depth L0 is the ordinary sweep's)."""
    return seed_keys(int(cfg.seed), int(cfg.base_depth) if cfg.nested else depth, int(cfg.seeds))


def nested_weights(cfg: SweepConfig, depth: int, keys: jax.Array) -> Optional[ResNetParams]:
    """The initial weights of depth ``depth`` of a nested ladder (:mod:`resnet_limits.nested`;
    depth L0's are :func:`~resnet_limits.training.initial_params`'s), one per key; None for a
    sweep that is not nested (the trainer draws its own)."""
    if not cfg.nested:
        return None
    t = cfg.train_config()
    draw = _nested_draw(depth, int(cfg.width), int(cfg.base_depth), t.init, float(t.init_scale), t.delta_mode,
                        t.delta_exponent, cfg.nesting)
    return jax.tree.map(np.asarray, draw(keys))


@functools.lru_cache(maxsize=64)
def _nested_draw(depth: int, width: int, base_depth: int, init: str, init_scale: float, delta_mode: str,
                 branch_exponent: Optional[float], nesting: str) -> Callable[[jax.Array], ResNetParams]:
    """:func:`nested_weights`' draw for keys (S, 2): one program per depth and setting."""
    from resnet_limits.nested import nested_initial_params  # (diffrax: imported by nested sweeps only)

    draw = functools.partial(nested_initial_params, depth=depth, width=width, base_depth=base_depth, init=init,
                             init_scale=init_scale, delta_mode=delta_mode, branch_exponent=branch_exponent,
                             nesting=nesting)
    return jax.jit(jax.vmap(lambda k: draw(jax.random.fold_in(k, 0))))


def params_of(arrays: Mapping[str, np.ndarray]) -> ResNetParams:
    """The networks of one depth file (leading seed axis): ``A``, ``b`` and ``delta`` if present."""
    return ResNetParams(arrays["A"], arrays["b"], arrays.get("delta"))


def depth_files(depth: int, result: TrainResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metrics saved for one depth, trained in this process (``folder.save_depth``
    adds checksum, host, pid)."""
    arrays = {"A": result.params.A, "b": result.params.b}
    if result.params.delta is not None:
        arrays["delta"] = result.params.delta
    curves = [np.asarray(c[: int(n)], np.float64) for c, n in zip(result.loss_curve, result.updates)]
    metrics = {  # written by folder.write_json: NaN/Inf (a diverged seed) become null
        "depth": int(depth),
        "seeds": int(len(result.updates)),
        "train_loss": np.asarray(result.train_loss, np.float64),
        "test_loss": np.asarray(result.test_loss, np.float64),
        "updates": [int(u) for u in result.updates],
        "converged": [bool(c) for c in result.converged],
        "diverged": [bool(c) for c in result.diverged],
        "lr": [float(v) for v in result.lr],
        "adam_eps": None if result.adam_eps is None else [float(v) for v in result.adam_eps],  # null: SGD
        "loss_curve": curves,
        "devices": jax.device_count(),  # the seed axis is sharded over every device
        "platform": jax.default_backend(),
    }
    return arrays, metrics


def say_diverged(result: TrainResult, where: str, say: Callable[[str], None]) -> None:
    """One line naming how many seeds of ``result`` diverged, if any (they are recorded, the sweep
    goes on); ``where`` says which run, e.g. ``"L=64"``."""
    n_div = int(np.sum(result.diverged))
    if n_div:
        say(f"{where}: {n_div} of {len(result.diverged)} seeds diverged (recorded, sweep goes on)")


def run_sweep_report(
    cfg: SweepConfig, out_dir, *, progress: bool = True, wait: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> SweepReport:
    """Train every unfinished (or damaged) depth of ``cfg.depths`` into ``out_dir``.

    Resumable and shareable between processes (:func:`~resnet_limits.sweeps.driver.run_depths`);
    the data set is loaded, and ``config.json`` written, only if some depth needs training.
    An image data set's :func:`data_info` is recorded in ``config.json`` once it has loaded.
    """
    data: dict[str, Dataset] = {}
    tcfg = cfg.train_config()
    say = log or (lambda m: tqdm.write(m))

    def train_one(L: int):
        keys = run_keys(cfg, L)
        result = train_seeds(keys, L, data["d"], tcfg, initial=nested_weights(cfg, L, keys), progress=progress)
        if progress:
            say_diverged(result, f"L={L}", say)
        return depth_files(L, result)

    def setup() -> SweepConfig:
        data["d"] = dataset_for(cfg)
        return cfg.replace(data_info=data_info(cfg))

    return run_depths(Path(out_dir), keep_data_info(cfg, Path(out_dir)), cfg.depths, train_one, setup=setup,
                      wait=wait, progress=progress, log=log)


def keep_data_info(cfg: SweepConfig, out: Path) -> SweepConfig:
    """``cfg`` with the folder's recorded ``data_info`` (a rerun that loads no data keeps it)."""
    if cfg.data_info is None and (out / CONFIG).is_file():
        try:
            old = load_config(out)
        except UsageError:
            return cfg  # a damaged or foreign folder: run_depths says so in one line
        return cfg.replace(data_info=old.data_info)
    return cfg


#: ``config.json["weights"]`` of a folder made by :func:`run_initial_weights`.
INITIAL_WEIGHTS = "initial"


def run_initial_weights(cfg: SweepConfig, out_dir, *, progress: bool = True,
                        log: Optional[Callable[[str], None]] = None) -> SweepReport:
    """A run folder holding the networks of the sweep ``cfg`` *before* training (the parametrisation study).

    Every seed's initial weights are drawn again from its key exactly as the trainer draws them
    (:func:`~resnet_limits.training.fc.initial_params` of ``seed_keys(seed, L, seeds)``), and
    written in the layout of a sweep (``config.json`` is ``cfg`` with ``"weights": "initial"``;
    per depth the weights and ``{"depth", "seeds", "weights"}``), so that
    :func:`resnet_limits.analysis.analyze_run` measures the statistics of the initialisation
    as those of trained weights. Resumable like :func:`run_sweep_report`; nothing is trained.
    """
    tcfg, width, n = cfg.train_config(), int(cfg.width), int(cfg.seeds)

    def draw(L: int):
        keys = run_keys(cfg, L)
        p = nested_weights(cfg, L, keys) if cfg.nested else \
            jax.jit(jax.vmap(lambda k: initial_params(k, L, width, tcfg)))(keys)
        arrays = {"A": np.asarray(p.A), "b": np.asarray(p.b)}
        if p.delta is not None:
            arrays["delta"] = np.asarray(p.delta)
        return arrays, {"depth": int(L), "seeds": n, "weights": INITIAL_WEIGHTS}

    return run_depths(Path(out_dir), cfg.replace(weights=INITIAL_WEIGHTS), cfg.depths, draw, progress=progress,
                      log=log)


def run_sweep(cfg: SweepConfig, out_dir, *, progress: bool = True) -> list[int]:
    """Train every unfinished depth of ``cfg.depths`` into ``out_dir`` (resumable).

    Returns the finished depths of the folder. Nothing finished is recomputed or rewritten.
    The folder's ``config.json`` records the union of all depth grids asked of it.
    """
    return run_sweep_report(cfg, out_dir, progress=progress).finished
