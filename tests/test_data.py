import gzip
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits import data as data_mod
from resnet_limits.data import (
    HOLDOUT_EVERY,
    MNIST_FILES,
    cifar10_images,
    load_cifar10_bin,
    load_mnist_idx,
    mnist_dataset,
    mnist_embedding,
    mnist_images,
    mock_cifar10,
    synthetic,
)
from resnet_limits.errors import UsageError


def test_synthetic_shapes_norms_and_determinism():
    ds = synthetic(jax.random.PRNGKey(0))
    assert ds.x_train.shape == (1024, 10) and ds.y_train.shape == (1024, 10)
    assert ds.x_test.shape == (256, 10) and ds.y_test.shape == (256, 10)
    for a in ds:
        np.testing.assert_allclose(jnp.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    again = synthetic(jax.random.PRNGKey(0))
    for a, b in zip(ds, again):
        np.testing.assert_array_equal(a, b)
    other = synthetic(jax.random.PRNGKey(1))
    assert not np.allclose(ds.x_train, other.x_train)


def test_synthetic_target_is_the_discretised_ode():
    key = jax.random.PRNGKey(3)
    ds = synthetic(key, n_train=5, n_test=1, dim=4, K=7)
    x = np.asarray(jax.random.uniform(key, (6, 4), minval=-1.0, maxval=1.0), np.float64)
    K = 7
    for i in range(6):
        z = x[i].copy()
        for k in range(1, K + 1):
            z = z + np.tanh(np.sin(5 * k * np.pi / K) * z + np.cos(5 * k * np.pi / K)) / np.sqrt(K)
        y = z / np.linalg.norm(z)
        got = ds.y_train[i] if i < 5 else ds.y_test[0]
        np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-6)
        gx = ds.x_train[i] if i < 5 else ds.x_test[0]
        np.testing.assert_allclose(gx, x[i] / np.linalg.norm(x[i]), rtol=1e-5, atol=1e-6)
    # the inputs were uniform in [-1, 1]^d before normalisation: the statistic of a big draw
    big = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (20000,), minval=-1.0, maxval=1.0))
    assert abs(big.mean()) < 0.02 and abs(big.var() - 1 / 3) < 0.01


def test_mnist_embedding_from_idx_files(mnist_dir):
    images, labels = load_mnist_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    # a test-only folder: every 5th image tests (2,000), the other 8,000 train; n_test keeps
    # the first 1,000 of the held-out images
    ds = mnist_embedding(jax.random.PRNGKey(0), data_dir=str(mnist_dir), n_test=1000)
    assert ds.x_train.shape == (8000, 25) and ds.x_test.shape == (1000, 25)
    np.testing.assert_allclose(jnp.linalg.norm(ds.x_train, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(jnp.argmax(ds.y_test, axis=1), labels[4::5][:1000])


# ------------------------------------------------------------------ MNIST ---------------

def _write_idx(path, array, magic):
    head = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array, np.uint8).tobytes())


def _mnist_folder(folder, n, train_n=0, seed=0):
    """idx files of n random test images (label = index % 10) and train_n training images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    parts = [("test", n)] + ([("train", train_n)] if train_n else [])
    out = {}
    for split, m in parts:
        images = rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)
        labels = (np.arange(m) % 10).astype(np.uint8)
        _write_idx(folder / MNIST_FILES[split][0], images, 2051)
        _write_idx(folder / MNIST_FILES[split][1], labels, 2049)
        out[split] = (images, labels)
    return out


def test_idx_parsing_round_trips(tmp_path):
    arrays = _mnist_folder(tmp_path, 7)
    images, labels = load_mnist_idx(*(tmp_path / f for f in MNIST_FILES["test"]))
    np.testing.assert_array_equal(images, arrays["test"][0])
    np.testing.assert_array_equal(labels, arrays["test"][1])
    assert images.dtype == np.uint8 and labels.dtype == np.int32


def test_test_only_folder_is_split_every_fifth_image(tmp_path):
    arrays = _mnist_folder(tmp_path, 20)
    got = mnist_images(tmp_path)
    held = np.arange(20) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1  # indices 4, 9, 14, 19
    np.testing.assert_array_equal(got.test_images, arrays["test"][0][held])
    np.testing.assert_array_equal(got.train_images, arrays["test"][0][~held])
    np.testing.assert_array_equal(got.test_labels, [4, 9, 4, 9])
    assert got.info["n_train"] == 16 and got.info["n_test"] == 4
    assert got.info["split"].startswith("test-only folder") and "index % 5 == 4" in got.info["split"]
    assert str(tmp_path) in got.info["source"]
    # n_train / n_test keep the first images of each part; the split itself does not move
    capped = mnist_images(tmp_path, n_train=3, n_test=60000)
    np.testing.assert_array_equal(capped.train_images, got.train_images[:3])
    np.testing.assert_array_equal(capped.test_images, got.test_images)
    assert (capped.info["n_train"], capped.info["n_test"]) == (3, 4)


def test_folder_with_training_files_uses_the_official_split(tmp_path):
    arrays = _mnist_folder(tmp_path, 6, train_n=9)
    got = mnist_images(tmp_path)
    np.testing.assert_array_equal(got.train_images, arrays["train"][0])
    np.testing.assert_array_equal(got.test_images, arrays["test"][0])
    assert "official" in got.info["split"]


def test_missing_or_damaged_mnist_files_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist.*t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"):
        mnist_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="lacks t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz; download"):
        mnist_images(tmp_path / "empty")
    _mnist_folder(tmp_path / "half", 5, train_n=5)
    (tmp_path / "half" / MNIST_FILES["train"][1]).unlink()
    with pytest.raises(UsageError, match="lacks train-labels-idx1-ubyte.gz"):
        mnist_images(tmp_path / "half")
    _mnist_folder(tmp_path / "bad", 5)
    _write_idx(tmp_path / "bad" / MNIST_FILES["test"][0], np.zeros((5, 28, 28)), 2049)
    with pytest.raises(UsageError, match="not an MNIST idx file"):
        mnist_images(tmp_path / "bad")
    (tmp_path / "bad" / MNIST_FILES["test"][0]).write_bytes(b"not gzip")
    with pytest.raises(UsageError, match="cannot read"):
        mnist_images(tmp_path / "bad")
    with pytest.raises(UsageError, match="n_train must be >= 1"):
        mnist_images(tmp_path / "bad", n_train=0)


def test_shared_test_split_gives_8000_train_2000_test(mnist_dir):
    got = mnist_images(mnist_dir, n_train=60000, n_test=10000)  # the preset's sizes
    assert got.train_images.shape == (8000, 28, 28) and got.test_images.shape == (2000, 28, 28)
    _, labels = load_mnist_idx(*(mnist_dir / f for f in MNIST_FILES["test"]))
    np.testing.assert_array_equal(got.test_labels, labels[4::5])
    assert set(np.unique(got.test_labels)) == set(range(10))


def test_tfds_mnist_on_mock_data_embeds_into_unit_vectors_of_r25():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        got = mnist_images(n_train=10)
    assert got.train_images.shape == (10, 28, 28) and got.test_images.shape == (12, 28, 28)
    assert got.train_images.dtype == np.uint8 and got.info["source"] == "tensorflow-datasets mnist"
    ds = mnist_dataset(jax.random.PRNGKey(0), got)
    assert ds.x_train.shape == (10, 25) and ds.y_train.shape == (10, 25) and ds.x_test.shape == (12, 25)
    np.testing.assert_allclose(jnp.linalg.norm(ds.x_test, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(jnp.argmax(ds.y_train, axis=1), got.train_labels)


class _FakeTfds:
    """Stands in for tensorflow_datasets: nothing prepared; a download raises ``error``."""

    def __init__(self, error):
        self.error, self.downloads = error, 0

    def data_source(self, name, split, download=True):
        if not download:
            raise NotImplementedError("Random access data source for file format TFRECORD is not supported")
        self.downloads += 1
        raise self.error


def test_missing_dataset_without_network_is_one_line(monkeypatch):
    fake = _FakeTfds(OSError("should not be reached"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    monkeypatch.setattr(data_mod, "_online", lambda host, timeout=5.0: False)
    with pytest.raises(UsageError, match=r"no network: download t10k-images-idx3-ubyte.gz .* pass --data-dir"):
        mnist_images()
    with pytest.raises(UsageError, match=r"no network: download .*cifar-10-binary.tar.gz.*--mock-data N"):
        cifar10_images()
    assert fake.downloads == 0
    # with a network, a failed download (missing extras, connection lost) is one line too
    monkeypatch.setattr(data_mod, "_online", lambda host, timeout=5.0: True)
    for error in (ModuleNotFoundError("No module named 'importlib_resources'"), ConnectionError("reset")):
        monkeypatch.setitem(sys.modules, "tensorflow_datasets", _FakeTfds(error))
        with pytest.raises(UsageError, match="could not download mnist") as info:
            mnist_images()
        assert "\n" not in str(info.value) and "--data-dir" in str(info.value)


# --------------------------------------------------------------- CIFAR-10 ---------------

def _cifar_file(path, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    rec = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
    path.write_bytes(rec.tobytes())
    return images, labels


def test_cifar10_binary_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    parts = [_cifar_file(folder / f"data_batch_{i}.bin", 3, i) for i in range(1, 6)]
    test = _cifar_file(folder / "test_batch.bin", 4, 9)
    images, labels = load_cifar10_bin(folder / "test_batch.bin")
    np.testing.assert_array_equal(images, test[0])  # channel-major records -> HWC
    np.testing.assert_array_equal(labels, test[1])
    got = cifar10_images(tmp_path, n_test=2)  # the parent folder works too
    np.testing.assert_array_equal(got.train_images, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(got.test_labels, test[1][:2])
    assert (got.info["n_train"], got.info["n_test"]) == (15, 2) and got.info["dataset"] == "cifar10"
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(UsageError, match="lacks data_batch_3.bin"):
        cifar10_images(folder)
    (folder / "data_batch_3.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UsageError, match="not a CIFAR-10 binary batch"):
        cifar10_images(folder)


def test_tfds_cifar10_on_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        got = cifar10_images()
    assert got.train_images.shape == (5, 32, 32, 3) and got.train_images.dtype == np.uint8
    assert got.test_labels.shape == (5,) and got.info["source"] == "tensorflow-datasets cifar10"


def test_mock_cifar10_is_deterministic_and_shaped_like_cifar10():
    a = mock_cifar10(jax.random.PRNGKey(0), 50)
    b = mock_cifar10(jax.random.PRNGKey(0), 50)
    assert a.train_images.shape == (50, 32, 32, 3) and a.test_images.shape == (10, 32, 32, 3)
    assert a.train_images.dtype == np.uint8 and a.train_labels.dtype == np.int32
    assert a.train_labels.min() >= 0 and a.train_labels.max() <= 9
    for x, y in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(x, y)
    c = mock_cifar10(jax.random.PRNGKey(1), 50, 3)
    assert c.test_images.shape[0] == 3 and not np.array_equal(a.train_images, c.train_images)
    assert a.info["dataset"] == "cifar10-mock" and a.info["n_train"] == 50
