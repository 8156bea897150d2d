import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.models import (
    ACTIVATIONS, ResNet, ResNetParams, effective_delta, forward, get_activation, init_params,
)


def loop_forward(params, x, activation, delta_mode):
    """Plain reference of SP eq. 1 with one column vector at a time."""
    sigma = get_activation(activation).fn
    A, b = np.asarray(params.A, np.float64), np.asarray(params.b, np.float64)
    L = A.shape[0]
    if delta_mode == "none":
        deltas = np.ones(L)
    elif delta_mode == "shared":
        deltas = np.full(L, abs(float(params.delta)))
    else:
        deltas = np.asarray(params.delta, np.float64)
    out = []
    for xi in np.asarray(x, np.float64):
        h = xi.copy()
        hs = [h]
        for k in range(L):
            h = h + deltas[k] * np.asarray(sigma(jnp.asarray(A[k] @ h + b[k])))
            hs.append(h)
        out.append(np.stack(hs))
    return np.stack(out, axis=1)  # (L+1, B, d)


@pytest.mark.parametrize("activation", ["tanh", "relu", "identity", "csoftplus"])
@pytest.mark.parametrize("delta_mode", ["none", "shared", "per-layer"])
def test_scan_forward_matches_loop(activation, delta_mode):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.PRNGKey(1))
        params = init_params(k1, 7, 4, init="xavier", delta_mode=delta_mode, scale=1.0, dtype=jnp.float64)
        if delta_mode == "per-layer":
            params = params._replace(delta=params.delta * 7)  # O(1) deltas: a non-trivial network
        x = jax.random.normal(k2, (3, 4), jnp.float64)
        hs = forward(params, x, activation=activation, delta_mode=delta_mode, return_hidden=True)
        ref = loop_forward(params, x, activation, delta_mode)
        assert hs.shape == (8, 3, 4)
        np.testing.assert_allclose(np.asarray(hs), ref, rtol=1e-12, atol=1e-12)
        out = forward(params, x, activation=activation, delta_mode=delta_mode)
        np.testing.assert_allclose(np.asarray(out), ref[-1], rtol=1e-12, atol=1e-12)
        # a single unbatched input works too
        single = forward(params, x[0], activation=activation, delta_mode=delta_mode)
        np.testing.assert_allclose(np.asarray(single), ref[-1, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,delta_mode", [("tanh", "shared"), ("csoftplus", "per-layer"), ("tanh", "none")])
def test_gradients_match_finite_differences(activation, delta_mode):
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
        params = init_params(k1, 5, 3, init="xavier", delta_mode=delta_mode, scale=1.0, dtype=jnp.float64)
        x = jax.random.normal(k2, (4, 3), jnp.float64)
        y = jax.random.normal(k3, (4, 3), jnp.float64)
        loss = lambda p: jnp.mean((forward(p, x, activation=activation, delta_mode=delta_mode) - y) ** 2)
        grads = jax.jit(jax.grad(loss))(params)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        g_flat, _ = jax.flatten_util.ravel_pytree(grads)
        eps = 1e-6
        # central differences along each chosen coordinate, one compiled program for all of them
        fd = jax.jit(jax.vmap(lambda e: (loss(unravel(flat + e)) - loss(unravel(flat - e))) / (2 * eps)))
        rng = np.random.default_rng(0)
        chosen = rng.choice(flat.size, size=25, replace=False)
        fds = fd(eps * jnp.eye(flat.size, dtype=flat.dtype)[chosen])
        for i, f in zip(chosen, np.asarray(fds)):
            np.testing.assert_allclose(float(g_flat[i]), float(f), rtol=1e-6, atol=1e-9)


def test_activation_properties():
    x = jnp.float32(0.0)
    for name in ("tanh", "identity", "csoftplus"):
        act = get_activation(name)
        assert abs(float(act.fn(x))) < 1e-7
        assert abs(float(jax.grad(act.fn)(x)) - 1.0) < 1e-6
        assert abs(float(jax.grad(jax.grad(act.fn))(x)) - act.d2_at_0) < 1e-6
        z = jnp.linspace(-3, 3, 13)
        np.testing.assert_allclose(act.d1(z), jax.vmap(jax.grad(act.fn))(z), rtol=1e-5, atol=1e-6)
    assert get_activation("csoftplus").d2_at_0 == 0.5
    with pytest.raises(ValueError, match="unknown activation 'sin'"):
        get_activation("sin")


def test_softplus_is_the_true_softplus_with_its_own_derivatives():
    act = get_activation("softplus")
    assert act.name == "softplus" and act.fn is not get_activation("csoftplus").fn
    x = np.linspace(-20.0, 20.0, 81)
    np.testing.assert_allclose(act.fn(jnp.asarray(x, jnp.float32)), np.log1p(np.exp(x)), rtol=1e-6, atol=1e-7)
    # the recorded derivatives against central differences of log(1 + e^x) in float64
    f = lambda z: np.logaddexp(0.0, z)  # noqa: E731
    z, h = np.linspace(-3.0, 3.0, 13), 1e-5
    np.testing.assert_allclose(act.d1(jnp.asarray(z, jnp.float32)), (f(z + h) - f(z - h)) / (2 * h), rtol=1e-5)
    h = 1e-3
    assert act.d2_at_0 == pytest.approx((f(h) - 2 * f(0.0) + f(-h)) / h**2, rel=1e-5)
    assert act.d2_at_0 == 0.25 and not act.smooth  # sigma(0) = log 2, sigma'(0) = 1/2: not centred


def test_init_statistics():
    L, d = 400, 10
    p = init_params(jax.random.PRNGKey(0), L, d, init="brownian", delta_mode="none")
    # SP Remark 2.1: A_{k,mn} ~ N(0, 1/(L d^2)), b_{k,n} ~ N(0, 1/(L d))
    assert abs(float(jnp.var(p.A)) * L * d * d - 1) < 0.05
    assert abs(float(jnp.var(p.b)) * L * d - 1) < 0.1
    assert p.delta is None
    p = init_params(jax.random.PRNGKey(0), L, d, init="xavier-depth", delta_mode="shared")
    assert abs(float(jnp.std(p.A)) / (0.01 / (L * d)) - 1) < 0.05
    assert float(p.delta) == pytest.approx(1 / L)
    p = init_params(jax.random.PRNGKey(0), L, d, delta_mode="per-layer")
    assert p.delta.shape == (L,) and abs(float(jnp.std(p.delta)) * L - 1) < 0.1
    with pytest.raises(ValueError, match="depth must be >= 1"):
        init_params(jax.random.PRNGKey(0), 0, d)


def test_effective_delta_and_relu_homogeneity():
    p = init_params(jax.random.PRNGKey(3), 6, 3, init="xavier", delta_mode="per-layer", scale=1.0)
    d = effective_delta(p, "per-layer")
    np.testing.assert_array_equal(d, p.delta)
    # SP Remark 2.2: delta relu(Ah+b) = sign(delta) relu(|delta|A h + |delta| b)
    x = jax.random.normal(jax.random.PRNGKey(4), (5, 3))
    scaled = ResNetParams(jnp.abs(p.delta)[:, None, None] * p.A, jnp.abs(p.delta)[:, None] * p.b, jnp.sign(p.delta))
    np.testing.assert_allclose(
        forward(p, x, activation="relu", delta_mode="per-layer"),
        forward(scaled, x, activation="relu", delta_mode="per-layer"), rtol=1e-5, atol=1e-6,
    )


def test_flax_module_matches_functional_forward():
    model = ResNet(depth=6, width=4, activation="tanh", delta_mode="per-layer")
    x = jax.random.normal(jax.random.PRNGKey(5), (3, 4))
    variables = model.init(jax.random.PRNGKey(6), x)
    params = ResNet.to_params(variables)
    assert params.A.shape == (6, 4, 4) and params.b.shape == (6, 4) and params.delta.shape == (6,)
    np.testing.assert_allclose(
        model.apply(variables, x), forward(params, x, activation="tanh", delta_mode="per-layer"), rtol=1e-6
    )
    hs = model.apply(variables, x, return_hidden=True)
    assert hs.shape == (7, 3, 4)


def test_registry_has_required_activations():
    assert {"tanh", "relu", "identity", "csoftplus"} <= set(ACTIVATIONS)
