"""Training S seeds of one depth at once (SPEC §6): one jitted, vmapped program.

Constant-step optax SGD or Adam on the mean-squared error, minibatches reshuffled every
epoch, early stop once an epoch's mean training loss is below epsilon, at most T_max
updates. Each seed has its own initialisation and shuffles; a seed that has stopped
(converged, capped or diverged) keeps its weights while the others go on. A non-finite
loss marks the seed diverged; its last finite weights are kept.

With several devices the seed axis is sharded across them (``jax.sharding``); results are
the same as on one device because every seed's randomness comes from its own key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from resnet_limits.data import Dataset
from resnet_limits.errors import UsageError
from resnet_limits.models import DELTA_MODES, INITS, ResNetParams, forward, get_activation, init_params, mse

__all__ = [
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "make_optimizer",
    "seed_keys",
    "train_seeds",
]

OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (SPEC §6 table)."""

    activation: str = "tanh"
    delta_mode: str = "shared"
    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 32
    epochs: int = 5
    max_updates: int = 160
    epsilon: float = 0.01
    init: str = "xavier-depth"
    init_scale: float = 0.01

    def validate(self, n_train: Optional[int] = None) -> None:
        """Raise :class:`UsageError` with one clear line for any bad value."""
        try:
            get_activation(self.activation)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.delta_mode not in DELTA_MODES:
            raise UsageError(f"unknown delta mode {self.delta_mode!r}; choose from {', '.join(DELTA_MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if n_train is not None and self.batch_size > n_train:
            raise UsageError(f"batch size {self.batch_size} is larger than the training set ({n_train} points)")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_updates < 1:
            raise UsageError(f"max updates must be >= 1, got {self.max_updates}")
        if not self.epsilon >= 0:
            raise UsageError(f"epsilon must be >= 0, got {self.epsilon}")


class TrainResult(NamedTuple):
    """Per-seed outcome of :func:`train_seeds` (leading axis: seeds), as numpy arrays."""

    params: ResNetParams
    loss_curve: np.ndarray  # (S, T): loss before each update; NaN where the seed did not update
    updates: np.ndarray  # (S,) updates performed
    converged: np.ndarray  # (S,) an epoch's mean loss fell below epsilon
    diverged: np.ndarray  # (S,) a non-finite loss was met
    train_loss: np.ndarray  # (S,) final loss on the whole training set
    test_loss: np.ndarray  # (S,) final loss on the test set


class _State(NamedTuple):
    params: ResNetParams
    opt_state: optax.OptState
    active: jax.Array  # bool: still training
    converged: jax.Array
    diverged: jax.Array
    updates: jax.Array  # int32


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """Constant-step optax optimiser: ``adam`` (the authors' code default) or ``sgd`` (SP §3.1)."""
    if name == "adam":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    raise UsageError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def seed_keys(base_seed: int, depth: int, n_seeds: int) -> jax.Array:
    """Key of seed s at depth L: fold_in(fold_in(PRNGKey(base), L), s), independent of n_seeds."""
    root = jax.random.fold_in(jax.random.PRNGKey(base_seed), depth)
    return jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(n_seeds))


def _loss(params: ResNetParams, x, y, cfg: TrainConfig):
    return mse(forward(params, x, activation=cfg.activation, delta_mode=cfg.delta_mode), y)


def _init_state(key, depth: int, width: int, cfg: TrainConfig, opt) -> _State:
    params = init_params(
        jax.random.fold_in(key, 0), depth, width, init=cfg.init,
        delta_mode=cfg.delta_mode, scale=cfg.init_scale,
    )
    false = jnp.zeros((), bool)
    return _State(params, opt.init(params), jnp.ones((), bool), false, false, jnp.zeros((), jnp.int32))


def _epoch(state: _State, key, epoch, data: Dataset, cfg: TrainConfig, opt):
    """One epoch of one seed: reshuffle, scan over minibatches, then the early-stop test."""
    n, B = data.x_train.shape[0], cfg.batch_size
    n_batches = n // B  # the last incomplete batch is dropped (fixed shapes)
    perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), epoch), n)
    batches = perm[: n_batches * B].reshape(n_batches, B)
    grad_fn = jax.value_and_grad(_loss)

    def update(st: _State, idx):
        loss, grads = grad_fn(st.params, data.x_train[idx], data.y_train[idx], cfg)
        finite = jnp.isfinite(loss)
        do = st.active & finite & (st.updates < cfg.max_updates)
        upd, new_opt = opt.update(grads, st.opt_state, st.params)
        new_params = optax.apply_updates(st.params, upd)
        keep = lambda new, old: jnp.where(do, new, old)
        st = _State(
            jax.tree.map(keep, new_params, st.params),
            jax.tree.map(keep, new_opt, st.opt_state),
            st.active & finite & (st.updates + do < cfg.max_updates),
            st.converged,
            st.diverged | (st.active & ~finite),
            st.updates + do.astype(jnp.int32),
        )
        return st, jnp.where(do, loss, jnp.nan)

    was_active = state.active
    state, losses = jax.lax.scan(update, state, batches)
    done = ~jnp.isnan(losses)
    mean = jnp.sum(jnp.where(done, losses, 0.0)) / jnp.maximum(done.sum(), 1)
    conv = was_active & ~state.diverged & (done.sum() > 0) & (mean < cfg.epsilon)
    state = state._replace(active=state.active & ~conv, converged=state.converged | conv)
    return state, losses


def _eval(params: ResNetParams, data: Dataset, cfg: TrainConfig):
    return _loss(params, data.x_train, data.y_train, cfg), _loss(params, data.x_test, data.y_test, cfg)


def _seed_sharding(n_seeds: int):
    """A NamedSharding of the seed axis over all devices, or None on one device."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    mesh = Mesh(np.array(devices), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))


def train_seeds(
    keys: jax.Array,
    depth: int,
    data: Dataset,
    cfg: TrainConfig,
    *,
    progress: bool = False,
    desc: Optional[str] = None,
) -> TrainResult:
    """Train one network per key (SPEC §6) in one vmapped program; returns per-seed results.

    ``keys``: (S,) PRNG keys (see :func:`seed_keys`). The loop over epochs is in Python
    (progress bar, early exit once every seed stopped); each epoch is one jitted call.
    """
    if depth < 1:
        raise UsageError(f"depth must be >= 1, got {depth}")
    cfg.validate(data.x_train.shape[0])
    n_seeds = keys.shape[0]
    opt = make_optimizer(cfg.optimizer, cfg.lr)
    width = data.x_train.shape[1]
    n_batches = data.x_train.shape[0] // cfg.batch_size
    total = min(cfg.max_updates, cfg.epochs * n_batches)

    sharding = _seed_sharding(n_seeds)
    n_dev = jax.device_count() if sharding is not None else 1
    pad = (-n_seeds) % n_dev
    if pad:  # pad the seed axis to a multiple of the devices; padded seeds are dropped
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])

    init = jax.jit(jax.vmap(lambda k: _init_state(k, depth, width, cfg, opt)))
    epoch_fn = jax.jit(
        jax.vmap(lambda st, k, e: _epoch(st, k, e, data, cfg, opt), in_axes=(0, 0, None)),
        donate_argnums=0,
    )
    if sharding is not None:
        keys = jax.device_put(keys, sharding)
    state = init(keys)

    curves = []
    bar = tqdm(total=total, desc=desc or f"L={depth}", unit="upd", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        state, losses = epoch_fn(state, keys, jnp.int32(epoch))
        curves.append(np.asarray(losses))
        bar.update(min(n_batches, total - bar.n))
        if not bool(jnp.any(state.active)):
            break
    bar.close()

    train_loss, test_loss = jax.jit(jax.vmap(lambda p: _eval(p, data, cfg)))(state.params)
    curve = np.concatenate(curves, axis=1)[:, :total] if curves else np.zeros((n_seeds, 0))
    take = lambda a: np.asarray(a)[:n_seeds]
    return TrainResult(
        params=jax.tree.map(take, state.params),
        loss_curve=curve[:n_seeds],
        updates=take(state.updates),
        converged=take(state.converged),
        diverged=take(state.diverged),
        train_loss=take(train_loss),
        test_loss=take(test_loss),
    )
