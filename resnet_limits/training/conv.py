"""Training the convolutional ResNet of SP eq. 9 on CIFAR-10: the ``conv-cifar10`` recipe.

As the authors' ``cifar_run.py`` (SPEC §6): SGD with momentum 0.9 and weight decay 5e-4 added
to the gradient (PyTorch's ``weight_decay``: ``optax.add_decayed_weights`` before ``sgd``),
learning rate 0.1 with cosine annealing over the configured epochs (per update here; PyTorch's
``CosineAnnealingLR`` stepped once per epoch), batches of 128, cross-entropy; training images
get a random crop (zero padding 4) and a random horizontal flip, then every image the
per-channel normalisation of :data:`resnet_limits.data.CIFAR10_MEAN` / ``CIFAR10_STD``.

The data live on the device; one epoch (shuffle, augment, all updates) is one jitted program
(``lax.scan`` over minibatches; the last incomplete batch is dropped: 390 updates per epoch on
50,000 images) on accelerators, and a loop of jitted steps on the CPU (XLA:CPU computes
convolution gradients inside loops far more slowly; same updates). The test set is evaluated
after every epoch. Randomness: ``key`` splits into an initialisation key and a data key; epoch
e uses ``fold_in(data key, e)`` (shuffle and per-image augmentation keys), so a run resumed
from its checkpoint after epoch e continues exactly as an uninterrupted one. With ``ckpt_dir`` the state and the per-epoch history are saved (orbax)
after every epoch and a rerun resumes from the last one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from resnet_limits.conv import blocks_per_stage, conv_resnet, init_conv_params
from resnet_limits.data import CIFAR10_MEAN, CIFAR10_STD, LabelledImages
from resnet_limits.errors import DamagedRunError, UsageError

__all__ = [
    "ConvResult",
    "ConvTrainConfig",
    "evaluate_conv",
    "make_conv_optimizer",
    "normalize_images",
    "random_crop_flip",
    "train_conv",
]

HISTORY = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")


@dataclasses.dataclass(frozen=True)
class ConvTrainConfig:
    """Hyper-parameters of one ``conv-cifar10`` run (SPEC §6 table, the authors' code)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True  # random crop (pad 4) + horizontal flip of training images
    width: int = 64  # channels of stage 1 (stages: width x 1, 2, 4, 8); the paper's is 64
    eval_batch_size: int = 1000

    def validate(self, n_train: Optional[int] = None) -> None:
        """Raise :class:`UsageError` with one clear line for any bad value."""
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if n_train is not None and self.batch_size > n_train:
            raise UsageError(f"batch size {self.batch_size} is larger than the training set ({n_train} images)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise UsageError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.width < 1 or self.eval_batch_size < 1:
            raise UsageError("width and eval batch size must be >= 1")


class ConvResult(NamedTuple):
    """Outcome of :func:`train_conv`; per-epoch arrays have length ``epochs``."""

    params: Any  # pytree of numpy arrays (see resnet_limits.conv)
    train_loss: np.ndarray  # mean minibatch loss of each epoch (augmented images)
    train_accuracy: np.ndarray  # fraction of its minibatch images classified right, per epoch
    test_loss: np.ndarray  # after each epoch, whole test set
    test_accuracy: np.ndarray
    seconds: np.ndarray  # wall time of each epoch (training + test), excluding checkpoints
    resumed_from: int  # epochs restored from a checkpoint (0: trained from scratch)


class _State(NamedTuple):
    params: Any
    opt_state: optax.OptState


def make_conv_optimizer(cfg: ConvTrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD + momentum, PyTorch weight decay (added to the gradient), cosine-annealed lr per update."""
    schedule = optax.cosine_decay_schedule(cfg.lr, cfg.epochs * steps_per_epoch)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(schedule, momentum=cfg.momentum))


def normalize_images(images: jax.Array) -> jax.Array:
    """Pixels in [0, 1] -> per-channel (x - mean) / std (SPEC §6)."""
    return (images - jnp.asarray(CIFAR10_MEAN)) / jnp.asarray(CIFAR10_STD)


def random_crop_flip(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Per image: zero-pad by ``pad``, crop back to the original size at a uniform offset, and
    flip left-right with probability 1/2 (torchvision's RandomCrop(32, 4) + RandomHorizontalFlip)."""
    _, H, W, C = images.shape

    def one(k, img):
        k_crop, k_flip = jax.random.split(k)
        dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
        padded = jnp.pad(img, ((pad, pad), (pad, pad), (0, 0)))
        crop = jax.lax.dynamic_slice(padded, (dy, dx, 0), (H, W, C))
        return jnp.where(jax.random.bernoulli(k_flip), crop[:, ::-1], crop)

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def _inputs(images_u8: jax.Array, key: Optional[jax.Array]) -> jax.Array:
    x = images_u8.astype(jnp.float32) / 255.0
    if key is not None:
        x = random_crop_flip(key, x)
    return normalize_images(x)


def _cross_entropy(params, model, x, labels):
    """Per-image cross-entropy of the network's logits, and the logits."""
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits


def _loss(params, model, x, labels):
    ce, logits = _cross_entropy(params, model, x, labels)
    return ce.mean(), logits


def _update(state: _State, idx, key, images, labels, depth: int, cfg: ConvTrainConfig, n_batches: int):
    """One SGD step on the minibatch ``images[idx]`` (augmented with ``key``); returns the new
    state and (loss, number classified right)."""
    model = conv_resnet(depth, cfg.width)
    opt = make_conv_optimizer(cfg, n_batches)
    x = _inputs(images[idx], key if cfg.augment else None)
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(state.params, model, x, labels[idx])
    upd, opt_state = opt.update(grads, state.opt_state, state.params)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels[idx])
    return _State(optax.apply_updates(state.params, upd), opt_state), (loss, correct)


@functools.partial(jax.jit, static_argnames=("n", "batch_size"))
def _epoch_batches(key, *, n: int, batch_size: int):
    """Epoch ``key`` -> (minibatch indices (n_batches, B) of a reshuffle, augmentation keys)."""
    n_batches = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, 0), n)
    return perm[: n_batches * batch_size].reshape(n_batches, batch_size), \
        jax.random.split(jax.random.fold_in(key, 1), n_batches)


@functools.partial(jax.jit, static_argnames=("depth", "cfg"))
def _scan_epoch(state: _State, key, images, labels, *, depth: int, cfg: ConvTrainConfig):
    """One epoch as one program: ``lax.scan`` of :func:`_update` over the minibatches."""
    batches, keys = _epoch_batches(key, n=images.shape[0], batch_size=cfg.batch_size)
    step = lambda st, b: _update(st, *b, images, labels, depth, cfg, batches.shape[0])
    return jax.lax.scan(step, state, (batches, keys))


_jit_update = jax.jit(_update, static_argnums=(5, 6, 7))


def _loop_epoch(state: _State, key, images, labels, *, depth: int, cfg: ConvTrainConfig):
    """The same epoch as a Python loop of jitted steps, for XLA:CPU: there, convolution
    gradients inside a loop (``lax.scan``) run about 100 times slower than outside one (their
    dimension order is not canonicalised); see ``resnet_limits.conv.ConvResNet``."""
    batches, keys = _epoch_batches(key, n=images.shape[0], batch_size=cfg.batch_size)
    out = []
    for idx, k in zip(batches, keys):
        state, o = _jit_update(state, idx, k, images, labels, depth, cfg, batches.shape[0])
        out.append(o)
    return state, tuple(jnp.stack(v) for v in zip(*out))


def _train_epoch(state: _State, key, images, labels, depth: int, cfg: ConvTrainConfig,
                one_program: Optional[bool] = None):
    """One epoch (reshuffle, augment, one update per minibatch; the last incomplete batch is
    dropped). Returns the new state, the mean minibatch loss and the training accuracy.

    ``one_program`` (default: on every backend but the CPU) runs the epoch as one jitted
    ``lax.scan``, else as a loop of jitted steps; both make the same updates.
    """
    if one_program is None:
        one_program = jax.default_backend() != "cpu"
    run = _scan_epoch if one_program else _loop_epoch
    state, (losses, correct) = run(state, key, images, labels, depth=depth, cfg=cfg)
    return state, losses.mean(), correct.sum() / (losses.shape[0] * cfg.batch_size)


@functools.partial(jax.jit, static_argnames=("depth", "width", "batch"))
def _evaluate(params, images, labels, *, depth: int, width: int, batch: int):
    """Mean cross-entropy and accuracy on (images, labels), ``batch`` images at a time."""
    model = conv_resnet(depth, width)
    n = images.shape[0]
    pad = (-n) % batch
    xs = jnp.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0))).reshape(-1, batch, *images.shape[1:])
    ys = jnp.pad(labels, (0, pad)).reshape(-1, batch)
    mask = (jnp.arange(n + pad) < n).reshape(-1, batch)

    def one(b):
        x, y, m = b
        ce, logits = _cross_entropy(params, model, _inputs(x, None), y)
        return jnp.sum(jnp.where(m, ce, 0.0)), jnp.sum(m & (jnp.argmax(logits, -1) == y))

    loss_sum, correct = jax.lax.map(one, (xs, ys, mask))
    return loss_sum.sum() / n, correct.sum() / n


def evaluate_conv(params, depth: int, images, labels, cfg: ConvTrainConfig = ConvTrainConfig()) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a trained network on uint8 images and integer labels."""
    batch = min(cfg.eval_batch_size, len(labels))
    loss, acc = _evaluate(params, jnp.asarray(images), jnp.asarray(labels, jnp.int32),
                          depth=depth, width=cfg.width, batch=batch)
    return float(loss), float(acc)


# ------------------------------------------------------------------ checkpoints ---------

def _run_meta(depth: int, cfg: ConvTrainConfig, data: LabelledImages) -> dict[str, Any]:
    """What must be equal for a checkpoint to be resumed (the data's folder may move)."""
    return {"depth": depth, "config": dataclasses.asdict(cfg),
            "data": {k: v for k, v in data.info.items() if k != "source"}}


def _restore(mngr: ocp.CheckpointManager, state: _State, meta: dict, path: Path):
    """(state, history, epochs done) from the last checkpoint, or the fresh state if there is none."""
    step = mngr.latest_step()
    if step is None:
        return state, {k: [] for k in HISTORY}, 0
    try:
        got = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(state._asdict()), meta=ocp.args.JsonRestore()))
        history = {k: [float(v) for v in got.meta["history"][k]] for k in HISTORY}
    except (ValueError, OSError, KeyError, TypeError) as e:  # unreadable files, missing entries
        raise DamagedRunError(f"the checkpoint of epoch {step} in {path} is damaged ({type(e).__name__}); "
                              f"delete {path} to train this depth from scratch") from None
    old = {k: got.meta.get(k) for k in meta}
    if old != meta:
        diff = ", ".join(f"{k}={old[k]!r} (now {meta[k]!r})" for k in meta if old[k] != meta[k])
        raise UsageError(f"{path} holds a checkpoint of another run: {diff}; remove it or choose another folder")
    return _State(**got.state), history, int(step)


def _save(mngr: ocp.CheckpointManager, epoch_done: int, state: _State, meta: dict, history: dict) -> None:
    mngr.save(epoch_done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state._asdict()), meta=ocp.args.JsonSave(dict(meta, history=history))))


# ------------------------------------------------------------------ training -----------

def train_conv(
    key: jax.Array,
    depth: int,
    data: LabelledImages,
    cfg: ConvTrainConfig = ConvTrainConfig(),
    *,
    ckpt_dir: Optional[str | Path] = None,
    progress: bool = False,
    on_epoch: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> ConvResult:
    """Train the SP eq. 9 network of depth L on ``data`` (uint8 N x 32 x 32 x 3 images).

    ``ckpt_dir``: orbax checkpoints of the state and history after every epoch (only the last
    is kept); a run finding one there resumes after its epoch (a checkpoint of another depth,
    configuration or data set is refused). ``on_epoch(epoch, metrics)`` is called after each
    epoch once its checkpoint is saved.
    """
    blocks_per_stage(depth)
    cfg.validate(len(data.train_labels))
    x_train, y_train = jnp.asarray(data.train_images), jnp.asarray(data.train_labels, jnp.int32)
    x_test, y_test = jnp.asarray(data.test_images), jnp.asarray(data.test_labels, jnp.int32)
    init_key, data_key = jax.random.split(key)
    params = init_conv_params(init_key, depth, cfg.width)
    state = _State(params, make_conv_optimizer(cfg, len(data.train_labels) // cfg.batch_size).init(params))
    meta = _run_meta(depth, cfg, data)

    mngr = None
    history, start = {k: [] for k in HISTORY}, 0
    if ckpt_dir is not None:
        path = Path(ckpt_dir).absolute()
        mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
        state, history, start = _restore(mngr, state, meta, path)
    bar = tqdm(total=cfg.epochs, initial=start, desc=f"L={depth}", unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            state, loss, acc = _train_epoch(state, jax.random.fold_in(data_key, epoch), x_train, y_train,
                                           depth, cfg)
            test_loss, test_acc = evaluate_conv(state.params, depth, x_test, y_test, cfg)
            metrics = {"train_loss": float(loss), "train_accuracy": float(acc), "test_loss": test_loss,
                       "test_accuracy": test_acc, "seconds": time.perf_counter() - t0}
            for k in HISTORY:
                history[k].append(metrics[k])
            if mngr is not None:
                _save(mngr, epoch + 1, state, meta, history)
                mngr.wait_until_finished()
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", test_acc=f"{test_acc:.3f}")
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    finally:
        bar.close()
        if mngr is not None:
            mngr.close()
    return ConvResult(jax.tree.map(np.asarray, state.params), *(np.asarray(history[k]) for k in HISTORY),
                      resumed_from=start)
