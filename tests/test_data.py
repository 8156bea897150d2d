import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits.data import load_mnist_idx, mnist_embedding, synthetic


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
    ds = mnist_embedding(jax.random.PRNGKey(0), data_dir=str(mnist_dir), n_test=1000)
    assert ds.x_train.shape == (9000, 25) and ds.x_test.shape == (1000, 25)
    np.testing.assert_allclose(jnp.linalg.norm(ds.x_train, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(jnp.argmax(ds.y_test, axis=1), labels[9000:])
