"""Resumable depth sweeps (SP Figs 1-5): S seeds at every depth of a grid, one folder per run.

Folder layout (see README)::

    RUN_DIR/config.json          the resolved configuration
    RUN_DIR/depths/L00003.npz    weights of all seeds: A (S,L,d,d), b (S,L,d), delta (S,) or (S,L)
    RUN_DIR/depths/L00003.json   metrics of all seeds (losses, updates, converged, diverged)

Each finished depth is written atomically (temporary file + ``os.replace``), the ``.npz``
before the ``.json``: a depth is finished iff its ``.json`` exists. Running the same sweep
again skips finished depths without touching them. A folder whose training configuration
differs (anything but the depth grid) is refused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from resnet_limits.data import Dataset, mnist_embedding, synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.training import TrainConfig, seed_keys, train_seeds

__all__ = [
    "PRESETS",
    "dataset_for",
    "depth_grid",
    "finished_depths",
    "load_config",
    "load_depth",
    "make_config",
    "run_sweep",
    "train_config",
]

DEFAULT_BASE = 2.0 ** (1.0 / 3.0)

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

_TRAIN_KEYS = tuple(f.name for f in TrainConfig.__dataclass_fields__.values())
# Keys that define the depth grid: they may change between runs in one folder.
_GRID_KEYS = ("depths", "min_depth", "max_depth", "depth_base", "quick")


def depth_grid(min_depth: int, max_depth: int, base: float = DEFAULT_BASE) -> list[int]:
    """The distinct floor(base^n) with min_depth <= floor(base^n) <= max_depth (SPEC §6)."""
    if min_depth < 1:
        raise UsageError(f"depth must be >= 1, got min depth {min_depth}")
    if max_depth < min_depth:
        raise UsageError(f"max depth {max_depth} is below min depth {min_depth}")
    if not base > 1:
        raise UsageError(f"depth base must be > 1, got {base}")
    out, n = [], 0
    while True:
        L = math.floor(base**n * (1 + 1e-12))  # 2^(3/3) must give 2, not 1.999...
        if L > max_depth:
            break
        if L >= min_depth and (not out or L != out[-1]):
            out.append(L)
        n += 1
    return out


def make_config(preset: str, *, quick: bool = False, **overrides) -> dict[str, Any]:
    """The resolved configuration of a preset with user overrides (``None`` values ignored).

    ``quick`` caps the depth grid at about 1,000. ``depths`` (an explicit list) wins over the
    grid parameters. Raises :class:`UsageError` for unknown names or bad values.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = dict(PRESETS[preset], preset=preset, quick=quick)
    for k, v in overrides.items():
        if k not in cfg and k != "depths":
            raise UsageError(f"unknown setting {k!r}")
        if v is not None:
            cfg[k] = v
    if quick and overrides.get("max_depth") is None and overrides.get("depths") is None:
        cfg["max_depth"] = min(cfg["max_depth"], QUICK_MAX_DEPTH)
    if overrides.get("depths") is not None:
        depths = sorted({int(L) for L in overrides["depths"]})
        if not depths or depths[0] < 1:
            raise UsageError(f"depth must be >= 1, got {min(depths) if depths else 'none'}")
        cfg["depths"] = depths
    else:
        cfg["depths"] = depth_grid(int(cfg["min_depth"]), int(cfg["max_depth"]), float(cfg["depth_base"]))
    if cfg["seeds"] < 1:
        raise UsageError(f"seeds must be >= 1, got {cfg['seeds']}")
    if cfg["n_train"] < 1 or cfg["n_test"] < 1:
        raise UsageError("n_train and n_test must be >= 1")
    train_config(cfg).validate(cfg["n_train"])
    return cfg


def train_config(cfg: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` part of a run configuration."""
    return TrainConfig(**{k: cfg[k] for k in _TRAIN_KEYS})


def dataset_for(cfg: dict[str, Any]) -> Dataset:
    """The exact training and test data of a run (deterministic from ``data_seed``)."""
    key = jax.random.PRNGKey(int(cfg["data_seed"]))
    if cfg["dataset"] == "synthetic":
        return synthetic(key, cfg["n_train"], cfg["n_test"], cfg["width"])
    if cfg["dataset"] == "mnist":
        return mnist_embedding(key, data_dir=cfg.get("data_dir"), n_train=cfg["n_train"], n_test=cfg["n_test"])
    raise UsageError(f"unknown dataset {cfg['dataset']!r}")


# ------------------------------------------------------------------ files ------------

def _depth_stem(run_dir: Path, depth: int) -> Path:
    return Path(run_dir) / "depths" / f"L{depth:05d}"


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def load_config(run_dir) -> dict[str, Any]:
    """The configuration of a run folder; :class:`UsageError` if it is not one."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a sweep folder (no config.json)")
    return json.loads(path.read_text())


def finished_depths(run_dir) -> list[int]:
    """Depths whose results are complete (their ``.json`` exists), sorted."""
    folder = Path(run_dir) / "depths"
    if not folder.is_dir():
        return []
    out = []
    for p in folder.glob("L*.json"):
        try:
            out.append(int(p.stem[1:]))
        except ValueError:
            continue
    return sorted(out)


def load_depth(run_dir, depth: int) -> tuple[ResNetParams, dict[str, Any]]:
    """Weights (leading seed axis, numpy) and metrics of one finished depth."""
    stem = _depth_stem(Path(run_dir), depth)
    if not stem.with_suffix(".json").is_file():
        raise UsageError(f"depth {depth} is not finished in {run_dir} (finished: {finished_depths(run_dir)})")
    metrics = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as z:
        params = ResNetParams(z["A"], z["b"], z["delta"] if "delta" in z.files else None)
    return params, metrics


def _check_folder(out: Path, cfg: dict[str, Any]) -> None:
    """Refuse a folder made by a different configuration (the depth grid may differ)."""
    path = out / "config.json"
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} exists, is not empty and is not a sweep folder; choose another --out")
        return
    old = load_config(out)
    keys = (set(old) | set(cfg)) - set(_GRID_KEYS)
    diff = sorted(k for k in keys if old.get(k) != cfg.get(k))
    if diff:
        what = ", ".join(f"{k}={old.get(k)!r} (now {cfg.get(k)!r})" for k in diff)
        raise UsageError(f"{out} was made by another configuration: {what}; choose another --out")


def _save_depth(out: Path, depth: int, result, seconds: float) -> None:
    stem = _depth_stem(out, depth)
    arrays = {"A": result.params.A, "b": result.params.b}
    if result.params.delta is not None:
        arrays["delta"] = result.params.delta
    _atomic_write(stem.with_suffix(".npz"), lambda f: np.savez(f, **arrays))
    curves = [[float(v) for v in c[: int(n)]] for c, n in zip(result.loss_curve, result.updates)]
    to_list = lambda a: [float(v) if np.isfinite(v) else None for v in np.asarray(a, np.float64)]
    metrics = {
        "depth": depth,
        "seeds": int(len(result.updates)),
        "train_loss": to_list(result.train_loss),
        "test_loss": to_list(result.test_loss),
        "updates": [int(u) for u in result.updates],
        "converged": [bool(c) for c in result.converged],
        "diverged": [bool(c) for c in result.diverged],
        "loss_curve": curves,
        "seconds": round(seconds, 3),
    }
    _write_json(stem.with_suffix(".json"), metrics)


def run_sweep(cfg: dict[str, Any], out_dir, *, progress: bool = True) -> list[int]:
    """Train every unfinished depth of ``cfg['depths']`` into ``out_dir`` (resumable).

    Returns the finished depths of the folder. Nothing finished is recomputed or rewritten.
    The folder's ``config.json`` records the union of all depth grids asked of it.
    """
    out = Path(out_dir)
    _check_folder(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    done = set(finished_depths(out))
    todo = [L for L in cfg["depths"] if L not in done]
    if (out / "config.json").exists():
        old = load_config(out)
        cfg = dict(cfg, depths=sorted(set(old["depths"]) | set(cfg["depths"])))
    _write_json(out / "config.json", cfg)
    if not todo:
        return sorted(done)
    data = dataset_for(cfg)
    tcfg = train_config(cfg)
    bar = tqdm(todo, desc=f"{cfg['preset']} depths", unit="depth", disable=not progress)
    for L in bar:
        bar.set_postfix(L=L)
        t0 = time.perf_counter()
        result = train_seeds(seed_keys(int(cfg["seed"]), L, int(cfg["seeds"])), L, data, tcfg, progress=progress)
        _save_depth(out, L, result, time.perf_counter() - t0)
        done.add(L)
        n_div = int(np.sum(result.diverged))
        if n_div and progress:
            tqdm.write(f"L={L}: {n_div} of {cfg['seeds']} seeds diverged (recorded, sweep goes on)")
    return sorted(done)
