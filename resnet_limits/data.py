"""Datasets of SP §3.1 / SPEC §6: the synthetic ODE task and the MNIST embedding."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Dataset", "synthetic", "mnist_embedding", "load_mnist_idx"]


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
    """The synthetic task of SP §3.1 (SPEC §6), deterministic given ``key``.

    x ~ U[-1, 1]^d, target y = z_K / ||z_K|| from the discretised ODE above started at x;
    each x is then scaled to unit norm (as in the authors' code). The last ``n_test``
    points are held out.
    """
    n = n_train + n_test
    x = jax.random.uniform(key, (n, dim), dtype, minval=-1.0, maxval=1.0)
    y = _synthetic_targets(x, K)
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


# ---------------------------------------------------------------- MNIST ---------------

def load_mnist_idx(images_gz: str | os.PathLike, labels_gz: str | os.PathLike):
    """Read canonical MNIST idx ``.gz`` files into (uint8 images N x 28 x 28, int labels N)."""
    with gzip.open(images_gz, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    with gzip.open(labels_gz, "rb") as f:
        raw = f.read()
    labels = np.frombuffer(raw, np.uint8, offset=8).astype(np.int32)
    return images, labels


def _mnist_arrays(split: str, data_dir: Optional[str]):
    """MNIST images and labels from idx files in ``data_dir`` if given, else tensorflow-datasets."""
    if data_dir is not None:
        prefix = "t10k" if split == "test" else "train"
        d = Path(data_dir)
        return load_mnist_idx(d / f"{prefix}-images-idx3-ubyte.gz", d / f"{prefix}-labels-idx1-ubyte.gz")
    import tensorflow_datasets as tfds  # downloads on first use; needs no TensorFlow

    source = tfds.data_source("mnist", split=split)
    images = np.stack([np.asarray(ex["image"])[..., 0] for ex in source])
    labels = np.asarray([int(ex["label"]) for ex in source], np.int32)
    return images, labels


def embed_mnist(key: jax.Array, images: np.ndarray) -> jax.Array:
    """Untrained random convolutional embedding of SP §3.1 into R^25 (SPEC §6).

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


def mnist_embedding(
    key: jax.Array, *, data_dir: Optional[str] = None, n_train: Optional[int] = None,
    n_test: Optional[int] = None,
) -> Dataset:
    """The d = 25 MNIST embedding with one-hot targets in R^25 (SP §3.1).

    With ``data_dir`` (folder of idx ``.gz`` files) reads those files; a folder holding
    only the test split is split into train/test itself. Otherwise uses tensorflow-datasets.
    """
    if data_dir is not None and not (Path(data_dir) / "train-images-idx3-ubyte.gz").exists():
        images, labels = _mnist_arrays("test", data_dir)
        cut = len(images) - (n_test or 2000)
        tr, te = (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
    else:
        tr, te = _mnist_arrays("train", data_dir), _mnist_arrays("test", data_dir)
    tr = (tr[0][:n_train], tr[1][:n_train]) if n_train else tr
    te = (te[0][:n_test], te[1][:n_test]) if n_test else te
    onehot = lambda c: jax.nn.one_hot(c, 25, dtype=jnp.float32)
    return Dataset(embed_mnist(key, tr[0]), onehot(tr[1]), embed_mnist(key, te[0]), onehot(te[1]))
