"""Datasets of SP §3.1-3.2 and App. A: the synthetic ODE task, the MNIST embedding, CIFAR-10.

Image data sets come as :class:`LabelledImages`: uint8 images, integer labels and an ``info``
dict saying where they came from and how train and test were split. Each is read from a
folder of the original files (``data_dir``), else through tensorflow-datasets'
``data_source`` (no TensorFlow needed). A data set that is neither here nor downloadable
raises a one-line :class:`UsageError` saying what to download or which flag to pass; so
does a damaged prepared copy of tensorflow-datasets (naming its folder, to delete).
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import socket
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits.errors import UsageError

__all__ = [
    "CIFAR10_FILES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Dataset",
    "HOLDOUT_EVERY",
    "LabelledImages",
    "MNIST_FILES",
    "cifar10_images",
    "embed_mnist",
    "load_cifar10_bin",
    "load_mnist_idx",
    "mnist_dataset",
    "mnist_embedding",
    "mnist_images",
    "mock_cifar10",
    "synthetic",
]


class Dataset(NamedTuple):
    x_train: jax.Array  # (N, d)
    y_train: jax.Array  # (N, d)
    x_test: jax.Array  # (N_test, d)
    y_test: jax.Array  # (N_test, d)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]


def _synthetic_targets(x: jax.Array, K: int) -> jax.Array:
    """z_k = z_{k-1} + K^{-1/2} tanh(sin(5 k pi / K) z_{k-1} + cos(5 k pi / K) 1_d), z_0 = x."""
    ks = jnp.arange(1, K + 1, dtype=x.dtype)

    def step(z, k):
        z = z + jnp.tanh(jnp.sin(5 * k * jnp.pi / K) * z + jnp.cos(5 * k * jnp.pi / K)) / math.sqrt(K)
        return z, None

    z, _ = jax.lax.scan(step, x, ks)
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def synthetic(
    key: jax.Array, n_train: int = 1024, n_test: int = 256, dim: int = 10, K: int = 100,
    dtype=jnp.float32,
) -> Dataset:
    """The synthetic task of SP §3.1 (as the authors' public code builds it), deterministic given ``key``.

    x ~ U[-1, 1]^d, target y = z_K / ||z_K|| from the discretised ODE above started at x;
    each x is then scaled to unit norm (as in the authors' code). The last ``n_test``
    points are held out.
    """
    x, y = _synthetic_arrays(key, n_train + n_test, dim, K, jnp.dtype(dtype))
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _synthetic_arrays(key: jax.Array, n: int, dim: int, K: int, dtype) -> tuple[jax.Array, jax.Array]:
    """The inputs (scaled to unit norm) and targets of :func:`synthetic`, one compiled program."""
    x = jax.random.uniform(key, (n, dim), dtype, minval=-1.0, maxval=1.0)
    y = _synthetic_targets(x, K)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True), y


# ------------------------------------------------------------ image data sets ------------

class LabelledImages(NamedTuple):
    """Images (uint8) and integer labels of a train/test split, and where they came from.

    ``info`` is JSON-ready: ``dataset``, ``source``, ``split`` (one line saying how train and
    test were made; a sweep records it in its config.json and prints it), ``n_train``, ``n_test``.
    """

    train_images: np.ndarray  # (N, H, W) or (N, H, W, C), uint8
    train_labels: np.ndarray  # (N,) int32
    test_images: np.ndarray
    test_labels: np.ndarray
    info: dict


def _check_sizes(n_train: Optional[int], n_test: Optional[int]) -> None:
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and n < 1:
            raise UsageError(f"{name} must be >= 1, got {n}")


def _labelled(train, test, n_train, n_test, **info) -> LabelledImages:
    """Cap each split at its first ``n_train`` / ``n_test`` examples and record the sizes."""
    (xtr, ytr), (xte, yte) = train, test
    xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]
    info = dict(info, n_train=int(len(xtr)), n_test=int(len(xte)))
    return LabelledImages(xtr, ytr.astype(np.int32), xte, yte.astype(np.int32), info)


# tensorflow-datasets (``data_source`` needs no TensorFlow). Hosts its builders download from.
_TFDS_HOSTS = {"mnist": "storage.googleapis.com", "cifar10": "www.cs.toronto.edu"}


def _online(host: str, timeout: float = 5.0) -> bool:
    """Whether ``host`` answers on port 443 (tfds retries a dead network for minutes)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds_source(name: str, split: str, offline_hint: str):
    """``tfds.data_source(name, split)``: the prepared copy, else a download; one-line errors."""
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, download=False)
    except Exception as e:  # noqa: BLE001 (not prepared here: tfds raises several kinds; a download may fix it)
        prepared = _prepared_copy(tfds, name)
        if prepared is not None:  # prepared, yet unusable (a damaged dataset_info.json, another file format)
            raise _unusable(name, prepared, "cannot be read", e, offline_hint) from None
    if not _online(_TFDS_HOSTS[name]):
        raise UsageError(f"{name} is not in the tensorflow-datasets folder and there is no network: {offline_hint}")
    try:
        return tfds.data_source(name, split=split)
    except (ImportError, OSError) as e:  # missing download extras, connection errors
        raise UsageError(
            f"tensorflow-datasets could not download {name} ({type(e).__name__}: {e}); {offline_hint}"
        ) from None


def _prepared_copy(tfds, name: str) -> Optional[str]:
    """The folder of a prepared copy of ``name`` in tensorflow-datasets' data folder
    (``~/tensorflow_datasets/mnist/3.0.1``, ``$TFDS_DATA_DIR/...``), if there is one."""
    try:
        root = Path(tfds.core.constants.DATA_DIR).expanduser()  # where data_source looks
    except AttributeError:  # a stand-in module without tfds' internals
        return None
    found = sorted(p.parent for p in root.glob(f"{name}/*/dataset_info.json")
                   if not p.parent.name.startswith("incomplete."))
    return str(found[-1]) if found else None


def _unusable(name: str, folder, what: str, e: Exception, offline_hint: str, split: str = "") -> UsageError:
    why = (str(e).splitlines() or [""])[0][:200]
    where = f"{split} split: " if split else ""
    return UsageError(f"the tensorflow-datasets copy of {name} in {folder} {what} ({where}{type(e).__name__}: {why}); "
                      f"delete that folder to download it again, or {offline_hint}")


def _tfds_arrays(name: str, split: str, offline_hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split. ``data_source`` opens nothing: a damaged prepared copy
    (a truncated or corrupted ArrayRecord shard, a missing one) fails only here, at the first
    read (array_record raises ``RuntimeError``; a truncated shard gives empty examples)."""
    import tensorflow_datasets as tfds

    source = _tfds_source(name, split, offline_hint)
    try:
        examples = [source[i] for i in range(len(source))]
        images, labels = [ex["image"] for ex in examples], [ex["label"] for ex in examples]
        if not examples or any(v is None for v in images + labels):
            raise ValueError("it holds no examples" if not examples else "it holds empty examples")
        images = np.stack([np.asarray(im, np.uint8) for im in images])
        labels = np.asarray([int(c) for c in labels], np.int32)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (array_record, riegeli, protobuf and numpy all raise their own)
        folder = (getattr(getattr(source, "dataset_info", None), "data_dir", None) or _prepared_copy(tfds, name)
                  or f"the tensorflow-datasets folder ({name}/)")
        raise _unusable(name, folder, "is damaged", e, offline_hint, split) from None
    return images, labels


# ------------------------------------------------------------------ MNIST ---------------

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# A folder with only the 10,000 t10k images: every HOLDOUT_EVERY-th image (index % 5 == 4) is
# held out for testing, the others train. Interleaving keeps both halves of the file (its
# first 5,000 images come from other writers than its last 5,000) in both parts; no RNG, so
# the split is the same with every version of every library.
HOLDOUT_EVERY = 5
_MNIST_OFFLINE = (
    f"download {' and '.join(MNIST_FILES['test'])} (and {' and '.join(MNIST_FILES['train'])} for the "
    f"60,000 training images) from {MNIST_URL} into a folder and pass --data-dir FOLDER"
)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An idx file (``.gz``) of unsigned bytes: big-endian magic number, ``ndim`` sizes, data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    head = 4 + 4 * ndim
    if len(raw) < head or int.from_bytes(raw[:4], "big") != magic:
        raise UsageError(f"{path} is not an MNIST idx file (its magic number should be {magic})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != head + math.prod(dims):
        raise UsageError(f"{path} is truncated or too long for {' x '.join(map(str, dims))} bytes")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


def load_mnist_idx(images_gz: str | os.PathLike, labels_gz: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read canonical MNIST idx ``.gz`` files into (uint8 images N x 28 x 28, int32 labels N)."""
    images = _read_idx(Path(images_gz), 2051, 3)
    labels = _read_idx(Path(labels_gz), 2049, 1).astype(np.int32)
    if len(images) != len(labels):
        raise UsageError(f"{images_gz} holds {len(images)} images but {labels_gz} {len(labels)} labels")
    return images, labels


def _mnist_folder(data_dir: str | os.PathLike) -> tuple[Path, bool]:
    """The folder and whether it holds the training files; one-line errors for what is missing."""
    d = Path(data_dir)
    need = " and ".join(MNIST_FILES["test"])
    if not d.is_dir():
        raise UsageError(f"MNIST folder {d} does not exist; it must hold {need} (from {MNIST_URL})")
    lacking = [f for f in MNIST_FILES["test"] if not (d / f).is_file()]
    if lacking:
        raise UsageError(f"MNIST folder {d} lacks {' and '.join(lacking)}; download from {MNIST_URL}")
    train = [(d / f).is_file() for f in MNIST_FILES["train"]]
    if any(train) and not all(train):
        missing = MNIST_FILES["train"][train.index(False)]
        raise UsageError(f"MNIST folder {d} lacks {missing} (it has the other training file); download from {MNIST_URL}")
    return d, all(train)


def mnist_images(
    data_dir: str | os.PathLike | None = None, *, n_train: Optional[int] = None, n_test: Optional[int] = None,
) -> LabelledImages:
    """MNIST (uint8 28 x 28 images, labels) from idx files in ``data_dir``, else tensorflow-datasets.

    A folder with only the test files is split itself: of its 10,000 images, those with index
    % 5 == 4 (2,000) test and the other 8,000 train. ``n_train`` / ``n_test`` keep the first
    examples of each part. ``info['split']`` says which split was used.
    """
    _check_sizes(n_train, n_test)
    if data_dir is None:
        train = _tfds_arrays("mnist", "train", _MNIST_OFFLINE)
        test = _tfds_arrays("mnist", "test", _MNIST_OFFLINE)
        train, test = (train[0][..., 0], train[1]), (test[0][..., 0], test[1])
        return _labelled(train, test, n_train, n_test, dataset="mnist", source="tensorflow-datasets mnist",
                         split="the official split (60,000 train, 10,000 test)")
    d, has_train = _mnist_folder(data_dir)
    test = load_mnist_idx(*(d / f for f in MNIST_FILES["test"]))
    source = f"idx files in {d}"
    if has_train:
        train = load_mnist_idx(*(d / f for f in MNIST_FILES["train"]))
        return _labelled(train, test, n_train, n_test, dataset="mnist", source=source,
                         split="the official split (train-* files train, t10k-* files test)")
    held = np.arange(len(test[0])) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    split = (f"test-only folder: of the {len(held):,} t10k images, every {HOLDOUT_EVERY}th (index % "
             f"{HOLDOUT_EVERY} == {HOLDOUT_EVERY - 1}: {held.sum():,}) tests, the other {(~held).sum():,} train")
    return _labelled((test[0][~held], test[1][~held]), (test[0][held], test[1][held]), n_train, n_test,
                     dataset="mnist", source=source, split=split)


def embed_mnist(key: jax.Array, images: np.ndarray) -> jax.Array:
    """Untrained random convolutional embedding of SP §3.1 into R^25 (sizes from the authors' public code).

    Two randomly initialised one-channel convolutions (5x5 stride 2, then 3x3 stride 2,
    28 -> 12 -> 5, no padding, no nonlinearity), flattened and scaled to unit norm.
    """
    k1, k2 = jax.random.split(key)
    w1 = jax.random.normal(k1, (1, 1, 5, 5)) / 5.0
    w2 = jax.random.normal(k2, (1, 1, 3, 3)) / 3.0
    x = jnp.asarray(images, jnp.float32)[:, None] / 255.0
    dn = ("NCHW", "OIHW", "NCHW")
    x = jax.lax.conv_general_dilated(x, w1, (2, 2), "VALID", dimension_numbers=dn)
    x = jax.lax.conv_general_dilated(x, w2, (2, 2), "VALID", dimension_numbers=dn)
    x = x.reshape(x.shape[0], -1)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def mnist_dataset(key: jax.Array, images: LabelledImages) -> Dataset:
    """The d = 25 embedding of MNIST images with one-hot targets in R^25 (SP §3.1)."""
    onehot = lambda c: jax.nn.one_hot(c, 25, dtype=jnp.float32)
    return Dataset(embed_mnist(key, images.train_images), onehot(images.train_labels),
                   embed_mnist(key, images.test_images), onehot(images.test_labels))


def mnist_embedding(
    key: jax.Array, *, data_dir: str | os.PathLike | None = None, n_train: Optional[int] = None,
    n_test: Optional[int] = None,
) -> Dataset:
    """:func:`mnist_dataset` of :func:`mnist_images` (see there for sources and the split)."""
    return mnist_dataset(key, mnist_images(data_dir, n_train=n_train, n_test=n_test))


# --------------------------------------------------------------- CIFAR-10 ---------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
# Per-channel normalisation of the authors' public code, applied to pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
_CIFAR10_OFFLINE = (
    f"download {CIFAR10_URL}, unpack it and pass --data-dir cifar-10-batches-bin (reproduce: --cifar-dir), "
    "or train on random images of CIFAR-10's shape with --mock-data N"
)


def load_cifar10_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One file of CIFAR-10's binary version: records of 1 label byte + 3 x 32 x 32 pixel bytes
    (channel-major); returns (uint8 images N x 32 x 32 x 3, int32 labels N)."""
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise UsageError(f"{path} is not a CIFAR-10 binary batch (its size is not a multiple of 3,073 bytes)")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0].astype(np.int32)


def _cifar10_folder(data_dir: str | os.PathLike) -> Path:
    d = Path(data_dir)
    if (d / "cifar-10-batches-bin").is_dir():
        d = d / "cifar-10-batches-bin"
    names = CIFAR10_FILES["train"] + CIFAR10_FILES["test"]
    if not d.is_dir():
        raise UsageError(f"CIFAR-10 folder {d} does not exist; it must hold {', '.join(names)} (from {CIFAR10_URL})")
    lacking = [f for f in names if not (d / f).is_file()]
    if lacking:
        raise UsageError(f"CIFAR-10 folder {d} lacks {', '.join(lacking)}; unpack {CIFAR10_URL} there")
    return d


def cifar10_images(
    data_dir: str | os.PathLike | None = None, *, n_train: Optional[int] = None, n_test: Optional[int] = None,
) -> LabelledImages:
    """CIFAR-10 (uint8 32 x 32 x 3 images, labels): the binary version in ``data_dir``
    (``cifar-10-batches-bin`` or its parent), else ``tfds.data_source("cifar10")``; the
    official 50,000 / 10,000 split, each part cut to its first ``n_train`` / ``n_test``."""
    _check_sizes(n_train, n_test)
    split = "the official split (50,000 train, 10,000 test)"
    if data_dir is None:
        train = _tfds_arrays("cifar10", "train", _CIFAR10_OFFLINE)
        test = _tfds_arrays("cifar10", "test", _CIFAR10_OFFLINE)
        return _labelled(train, test, n_train, n_test, dataset="cifar10",
                         source="tensorflow-datasets cifar10", split=split)
    d = _cifar10_folder(data_dir)
    parts = [load_cifar10_bin(d / f) for f in CIFAR10_FILES["train"]]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = load_cifar10_bin(d / CIFAR10_FILES["test"][0])
    return _labelled(train, test, n_train, n_test, dataset="cifar10", source=f"binary files in {d}", split=split)


def mock_cifar10(key: jax.Array, n_train: int, n_test: Optional[int] = None) -> LabelledImages:
    """Random data of CIFAR-10's shape for offline runs and tests: uniform uint8 32 x 32 x 3
    images and uniform labels 0..9, deterministic given ``key``. ``n_test`` defaults to
    ``max(1, n_train // 5)`` (CIFAR-10's ratio). Labels are noise: test accuracy is chance."""
    n_test = max(1, n_train // 5) if n_test is None else n_test
    _check_sizes(n_train, n_test)
    n = n_train + n_test
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())  # numpy: no compile per size
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,)).astype(np.int32)
    split = f"{n_train:,} random images train, {n_test:,} others test"
    return _labelled((images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:]), None, None,
                     dataset="cifar10-mock", source="random uint8 images of CIFAR-10's shape, random labels",
                     split=split)
