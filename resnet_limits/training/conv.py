"""Training the convolutional ResNet of SP eq. 9 on CIFAR-10: the ``conv-cifar10`` recipe.

As the authors' ``cifar_run.py`` (SP §3.2): SGD with momentum 0.9 and weight decay 5e-4 added
to the gradient (PyTorch's ``weight_decay``: ``optax.add_decayed_weights`` before ``sgd``),
learning rate 0.1 with cosine annealing over the configured epochs (per update here; PyTorch's
``CosineAnnealingLR`` stepped once per epoch), batches of 128, cross-entropy; training images
get a random crop (zero padding 4) and a random horizontal flip, then every image the
per-channel normalisation of :data:`resnet_limits.data.CIFAR10_MEAN` / ``CIFAR10_STD``.

Input pipeline: the images live on the device as one uint8 array, put there once; an epoch's
reshuffled minibatch indices and augmentation keys are computed on the device too, and every
step gathers its minibatch (``images[idx]``), crops, flips and normalises it inside the jitted
program, so nothing crosses from the host per step. All of it is dispatched asynchronously: the
Python loop queues the next steps while the current one runs, and the next epoch's indices are
queued before the host waits for this epoch's metrics and writes its checkpoint. One epoch
(shuffle, augment, all updates) is one jitted program (``lax.scan`` over minibatches; the last
incomplete batch is dropped: 390 updates per epoch on 50,000 images) on accelerators, and a
loop of jitted steps on the CPU (XLA:CPU computes convolution gradients inside loops far more
slowly; same updates). The test set is evaluated after every epoch. Randomness: ``key`` splits
into an initialisation key and a data key; epoch e uses ``fold_in(data key, e)`` (shuffle and
per-image augmentation keys), so a run resumed from its checkpoint after epoch e continues
exactly as an uninterrupted one. With ``ckpt_dir`` the state and the per-epoch history are
saved (orbax) after every epoch and a rerun resumes from the last one.

Data parallelism (``ConvTrainConfig.data_parallel = N > 1``): one network, its minibatch split
over the first N devices. A :class:`jax.sharding.Mesh` of ``jax.devices()[:N]`` with one axis
``"data"`` (:func:`data_mesh`); parameters, optimiser state, the training images and the
epoch's indices and keys are replicated (``NamedSharding(mesh, P())``), the gathered minibatch
(and every activation) is sharded along ``"data"`` by ``with_sharding_constraint`` inside the
same jitted step. XLA's SPMD partitioner then turns the batch reductions (the mean loss, the
weight gradients' sums over images) into per-device partial sums plus an all-reduce over
``"data"``, and every device applies the same update to its replica. Shuffle and augmentation
keys are drawn for the global minibatch, so the numbers do not depend on N (equal to a
one-device run up to the order of float additions); the test set is evaluated with its batches
sharded the same way. Checkpoints hold the replicated state and restore onto whatever devices
the resuming run uses: a run saved with N devices resumes with any other number.
"""

from __future__ import annotations

import contextlib
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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from resnet_limits.conv import blocks_per_stage, conv_resnet, init_conv_params
from resnet_limits.data import CIFAR10_MEAN, CIFAR10_STD, LabelledImages
from resnet_limits.errors import DamagedRunError, UsageError

__all__ = [
    "ConvResult",
    "ConvTrainConfig",
    "data_mesh",
    "evaluate_conv",
    "make_conv_optimizer",
    "normalize_images",
    "random_crop_flip",
    "train_conv",
]

HISTORY = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")
# Settings a checkpoint may be resumed with another value of: they change no number beyond the
# order of float additions (see _run_meta).
RESUMABLE_ACROSS = ("data_parallel",)
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


@dataclasses.dataclass(frozen=True)
class ConvTrainConfig:
    """Hyper-parameters of one ``conv-cifar10`` run (SP §3.2, the authors' code).

    ``data_parallel``: number of devices (the first N of ``jax.devices()``) the minibatch of
    the one network is split over; ``batch_size`` is the global minibatch and must be a
    multiple of it. It changes no result beyond float rounding, and a checkpoint resumes with
    any value.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True  # random crop (pad 4) + horizontal flip of training images
    width: int = 64  # channels of stage 1 (stages: width x 1, 2, 4, 8); the paper's is 64
    eval_batch_size: int = 1000
    data_parallel: int = 1  # devices the global minibatch of one network is sharded over

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
        if self.data_parallel < 1:
            raise UsageError(f"data parallel must be >= 1 device, got {self.data_parallel}")
        if self.batch_size % self.data_parallel:
            raise UsageError(f"batch size {self.batch_size} does not split over {self.data_parallel} data-parallel "
                             f"devices: it must be a multiple of {self.data_parallel}")


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
    """Pixels in [0, 1] -> per-channel (x - mean) / std (the authors' code)."""
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


# ------------------------------------------------------------------ devices -------------

@functools.cache
def data_mesh(n: int) -> Mesh:
    """The mesh of data parallelism over ``n`` devices: ``jax.devices()[:n]``, one axis ``"data"``.

    One-line :class:`UsageError` if there are fewer devices (on the CPU, XLA makes more host
    devices when ``XLA_FLAGS`` holds ``--xla_force_host_platform_device_count=n`` before JAX
    starts).
    """
    devices = jax.devices()
    if n > len(devices):
        have = f"there {'is' if len(devices) == 1 else 'are'} {len(devices)} ({devices[0].platform})"
        raise UsageError(f"data parallel over {n} devices, but {have}; on the CPU, start Python with "
                         f"XLA_FLAGS={DEVICE_COUNT_FLAG}={n} for {n} host devices")
    return Mesh(np.asarray(devices[:n]), ("data",))


def _replicated(n: int) -> Optional[NamedSharding]:
    """Every device of the data mesh holds the whole array (None: one device, no mesh)."""
    return None if n == 1 else NamedSharding(data_mesh(n), P())


def _place(tree, n: int):
    """Arrays of ``tree`` (host or device) replicated on the data mesh; on one device, committed
    to the default one, as an orbax restore places them: a resumed run's state then has the
    placement of a fresh one and reuses its compiled programs."""
    return jax.device_put(tree, jax.local_devices()[0] if n == 1 else _replicated(n))


def _split_batch(x: jax.Array, n: int, axis: int = 0) -> jax.Array:
    """Inside a jitted program: ``x`` sharded along ``"data"`` on ``axis`` (its batch axis)."""
    if n == 1:
        return x
    spec = P(*(None,) * axis, "data")
    return jax.lax.with_sharding_constraint(x, NamedSharding(data_mesh(n), spec))


def _replicate(tree, n: int):
    """Inside a jitted program: every array of ``tree`` replicated on the data mesh."""
    return tree if n == 1 else jax.lax.with_sharding_constraint(tree, _replicated(n))


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
    state and (loss, number classified right).

    With ``cfg.data_parallel`` N > 1 the minibatch is sharded along the mesh axis ``"data"``
    (each device gathers and augments its B/N images from its replica of ``images``) and the
    state is replicated: the partitioner makes the gradient (a sum over the minibatch) an
    all-reduce over ``"data"``. The augmentation keys are those of the global minibatch.
    """
    n = cfg.data_parallel
    model = conv_resnet(depth, cfg.width)
    opt = make_conv_optimizer(cfg, n_batches)
    idx = _split_batch(idx, n)
    y = _split_batch(labels[idx], n)
    x = _split_batch(_inputs(_split_batch(images[idx], n), key if cfg.augment else None), n)
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(state.params, model, x, y)
    upd, opt_state = opt.update(grads, state.opt_state, state.params)
    correct = jnp.sum(jnp.argmax(logits, -1) == y)
    return _replicate((_State(optax.apply_updates(state.params, upd), opt_state), (loss, correct)), n)


@functools.partial(jax.jit, static_argnames=("n", "batch_size", "data_parallel"))
def _epoch_batches(key, *, n: int, batch_size: int, data_parallel: int = 1):
    """Epoch ``key`` -> (minibatch indices (n_batches, B) of a reshuffle, augmentation keys),
    replicated on the data mesh. They depend on the global batch size only, not on the devices."""
    n_batches = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, 0), n)
    out = (perm[: n_batches * batch_size].reshape(n_batches, batch_size),
           jax.random.split(jax.random.fold_in(key, 1), n_batches))
    return _replicate(out, data_parallel)


def _batches_of(key, n: int, cfg: ConvTrainConfig):
    return _epoch_batches(key, n=n, batch_size=cfg.batch_size, data_parallel=cfg.data_parallel)


@functools.partial(jax.jit, static_argnames=("depth", "cfg"))
def _scan_epoch(state: _State, batches, keys, images, labels, *, depth: int, cfg: ConvTrainConfig):
    """One epoch as one program: ``lax.scan`` of :func:`_update` over the minibatches."""
    step = lambda st, b: _update(st, *b, images, labels, depth, cfg, batches.shape[0])
    return jax.lax.scan(step, state, (batches, keys))


_jit_update = jax.jit(_update, static_argnums=(5, 6, 7))


def _loop_epoch(state: _State, batches, keys, images, labels, *, depth: int, cfg: ConvTrainConfig):
    """The same epoch as a Python loop of jitted steps, for XLA:CPU: there, convolution
    gradients inside a loop (``lax.scan``) run about 100 times slower than outside one (their
    dimension order is not canonicalised); see ``resnet_limits.conv.ConvResNet``.

    Nothing here waits for the device: each step is dispatched asynchronously, so the loop
    slices the next step's indices and key (device arrays, replicated: iterating a sharded
    array would go through the host) and queues it while the current step runs."""
    out = []
    for idx, k in zip(batches, keys):
        state, o = _jit_update(state, idx, k, images, labels, depth, cfg, batches.shape[0])
        out.append(o)
    return state, tuple(jnp.stack(v) for v in zip(*out))


def _train_epoch(state: _State, key, images, labels, depth: int, cfg: ConvTrainConfig,
                one_program: Optional[bool] = None, batches=None):
    """One epoch (reshuffle, augment, one update per minibatch; the last incomplete batch is
    dropped). Returns the new state, the mean minibatch loss and the training accuracy, as
    device arrays (nothing waits for them).

    ``one_program`` (default: on every backend but the CPU) runs the epoch as one jitted
    ``lax.scan``, else as a loop of jitted steps; both make the same updates. ``batches``: the
    epoch's ``_batches_of(key, ...)`` if already dispatched (the trainer queues the next
    epoch's early), else they are made from ``key``.
    """
    if one_program is None:
        one_program = jax.default_backend() != "cpu"
    if batches is None:
        batches = _batches_of(key, images.shape[0], cfg)
    run = _scan_epoch if one_program else _loop_epoch
    state, (losses, correct) = run(state, *batches, images, labels, depth=depth, cfg=cfg)
    return state, losses.mean(), correct.sum() / (losses.shape[0] * cfg.batch_size)


@functools.partial(jax.jit, static_argnames=("depth", "width", "batch", "data_parallel"))
def _evaluate(params, images, labels, *, depth: int, width: int, batch: int, data_parallel: int = 1):
    """Mean cross-entropy and accuracy on (images, labels), ``batch`` images at a time (each
    batch sharded along ``"data"`` over ``data_parallel`` devices; padding is masked out)."""
    model = conv_resnet(depth, width)
    n = images.shape[0]
    pad = (-n) % batch
    split = functools.partial(_split_batch, n=data_parallel, axis=1)
    xs = split(jnp.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0))).reshape(-1, batch, *images.shape[1:]))
    ys = split(jnp.pad(labels, (0, pad)).reshape(-1, batch))
    mask = split((jnp.arange(n + pad) < n).reshape(-1, batch))

    def one(b):
        x, y, m = (_split_batch(v, data_parallel) for v in b)
        ce, logits = _cross_entropy(params, model, _inputs(x, None), y)
        return jnp.sum(jnp.where(m, ce, 0.0)), jnp.sum(m & (jnp.argmax(logits, -1) == y))

    loss_sum, correct = jax.lax.map(one, (xs, ys, mask))
    return loss_sum.sum() / n, correct.sum() / n


def _eval_batch(cfg: ConvTrainConfig, n: int) -> int:
    """Images per evaluation batch: at most ``eval_batch_size`` and ``n``, rounded up to a
    multiple of the data-parallel devices (the padding is masked out)."""
    per = -(-min(cfg.eval_batch_size, n) // cfg.data_parallel)
    return per * cfg.data_parallel


def _evaluate_async(params, depth: int, images, labels, cfg: ConvTrainConfig):
    """:func:`evaluate_conv` as device scalars (dispatched, not awaited)."""
    params, images, labels = _place((params, images, labels), cfg.data_parallel)
    return _evaluate(params, images, labels.astype(jnp.int32), depth=depth, width=cfg.width,
                     batch=_eval_batch(cfg, len(labels)), data_parallel=cfg.data_parallel)


def evaluate_conv(params, depth: int, images, labels, cfg: ConvTrainConfig = ConvTrainConfig()) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a trained network on uint8 images and integer labels,
    on ``cfg.data_parallel`` devices."""
    loss, acc = _evaluate_async(params, depth, images, labels, cfg)
    return float(loss), float(acc)


# ------------------------------------------------------------------ checkpoints ---------

def _run_meta(depth: int, cfg: ConvTrainConfig, data: LabelledImages) -> dict[str, Any]:
    """What must be equal for a checkpoint to be resumed (the data's folder may move; the
    settings of :data:`RESUMABLE_ACROSS`, such as the number of data-parallel devices, may
    change: they are not recorded, so checkpoints written before they existed resume too)."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_ACROSS}
    return {"depth": depth, "config": config, "data": {k: v for k, v in data.info.items() if k != "source"}}


def _restore(mngr: ocp.CheckpointManager, state: _State, meta: dict, path: Path):
    """(state, history, epochs done) from the last checkpoint, or the fresh state if there is none.

    The arrays are restored onto the shardings of ``state`` (replicated on this run's data
    mesh, or on the default device), whatever devices wrote them."""
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
    one_program: Optional[bool] = None,
) -> ConvResult:
    """Train the SP eq. 9 network of depth L on ``data`` (uint8 N x 32 x 32 x 3 images).

    ``ckpt_dir``: orbax checkpoints of the state and history after every epoch (only the last
    is kept); a run finding one there resumes after its epoch (a checkpoint of another depth,
    configuration or data set is refused; one written with another ``data_parallel`` resumes).
    ``on_epoch(epoch, metrics)`` is called after each epoch once its checkpoint is saved.
    ``cfg.data_parallel`` N > 1 splits every minibatch over ``jax.devices()[:N]`` (module
    docstring); the results equal a one-device run's up to float rounding. ``one_program``: each
    epoch as one jitted ``lax.scan`` (default on accelerators) or as a loop of jitted steps
    (default on the CPU, where convolution gradients inside a loop are slow); the same updates.
    """
    blocks_per_stage(depth)
    cfg.validate(len(data.train_labels))
    dp = cfg.data_parallel
    if dp > 1:
        data_mesh(dp)  # enough devices, else a one-line error before any work
    # the images go to the device(s) once; batches are gathered from them inside the steps
    x_train, y_train, x_test, y_test = _place(
        (data.train_images, np.asarray(data.train_labels, np.int32), data.test_images,
         np.asarray(data.test_labels, np.int32)), dp)
    n_train = x_train.shape[0]
    init_key, data_key = jax.random.split(key)
    params = init_conv_params(init_key, depth, cfg.width)
    state = _State(params, make_conv_optimizer(cfg, n_train // cfg.batch_size).init(params))
    state = _place(state, dp)
    meta = _run_meta(depth, cfg, data)

    mngr = None
    history, start = {k: [] for k in HISTORY}, 0
    if ckpt_dir is not None:
        path = Path(ckpt_dir).absolute()
        mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
        state, history, start = _restore(mngr, state, meta, path)
    bar = tqdm(total=cfg.epochs, initial=start, desc=f"L={depth}", unit="epoch", disable=not progress, leave=False)
    epoch_key = lambda e: jax.random.fold_in(data_key, e)  # noqa: E731
    batches = _batches_of(epoch_key(start), n_train, cfg) if start < cfg.epochs else None
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            state, loss, acc = _train_epoch(state, epoch_key(epoch), x_train, y_train, depth, cfg,
                                            one_program=one_program, batches=batches)
            test = _evaluate_async(state.params, depth, x_test, y_test, cfg)
            if epoch + 1 < cfg.epochs:  # queued behind this epoch: ready when the next one starts
                batches = _batches_of(epoch_key(epoch + 1), n_train, cfg)
            test_loss, test_acc = (float(v) for v in test)  # the first wait for the device
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
    except BaseException:
        if mngr is not None:  # closing waits for a failed save, which raises again: keep the first error
            with contextlib.suppress(Exception):
                mngr.close()
            mngr = None
        raise
    finally:
        bar.close()
        if mngr is not None:
            mngr.close()
    return ConvResult(jax.tree.map(np.asarray, state.params), *(np.asarray(history[k]) for k in HISTORY),
                      resumed_from=start)
