"""Tests of resnet_limits.backprop (AA §5, SPEC §5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from resnet_limits import backprop as bp
from resnet_limits.models import ResNetParams, forward, init_params, mse


def _net(key, L, d, delta_mode, scale=1.0):
    p = init_params(key, L, d, init="xavier", delta_mode=delta_mode, scale=scale, dtype=jnp.float64)
    if delta_mode == "shared":
        p = p._replace(delta=jnp.asarray(-0.3))  # negative: checks the |delta| convention
    if delta_mode == "per-layer":
        p = p._replace(delta=jax.random.normal(jax.random.PRNGKey(9), (L,), jnp.float64))
    return p


CASES = [("tanh", "shared"), ("csoftplus", "per-layer"), ("relu", "per-layer"), ("identity", "none")]


@pytest.mark.parametrize("activation,delta_mode", CASES)
def test_jacobians_match_jacrev(activation, delta_mode):
    """AA eq. 5.3 (backward) and the forward Phi recursion equal jax.jacrev through the scan."""
    with jax.enable_x64(True):
        L, d = 7, 3
        p = _net(jax.random.PRNGKey(0), L, d, delta_mode)
        x = jax.random.normal(jax.random.PRNGKey(1), (d,), jnp.float64)
        J = bp.jacobians(p, x, activation=activation, delta_mode=delta_mode)
        Phi = bp.input_jacobians(p, x, activation=activation, delta_mode=delta_mode)
        hs = forward(p, x, activation=activation, delta_mode=delta_mode, return_hidden=True)
        assert J.shape == (L + 1, d, d) and Phi.shape == (L + 1, d, d)
        for k in range(L + 1):
            tail = jax.tree_util.tree_map(lambda a: a[k:] if a.ndim and a.shape[0] == L else a, p)
            ref = jax.jacrev(lambda h: forward(tail, h, activation=activation, delta_mode=delta_mode))(hs[k])
            np.testing.assert_allclose(J[k], ref, rtol=1e-12, atol=1e-12)
            head = jax.tree_util.tree_map(lambda a: a[:k] if a.ndim and a.shape[0] == L else a, p)
            ref_phi = (
                jnp.eye(d)
                if k == 0
                else jax.jacrev(lambda z: forward(head, z, activation=activation, delta_mode=delta_mode))(x)
            )
            np.testing.assert_allclose(Phi[k], ref_phi, rtol=1e-12, atol=1e-12)
            # J_k = Phi_L Phi_k^{-1} (AA eq. 5.16)
            np.testing.assert_allclose(J[k] @ Phi[k], Phi[L], rtol=1e-10, atol=1e-12)


def test_jacobians_batched():
    with jax.enable_x64(True):
        L, d, B = 5, 4, 3
        p = _net(jax.random.PRNGKey(2), L, d, "shared")
        x = jax.random.normal(jax.random.PRNGKey(3), (B, d), jnp.float64)
        J = bp.jacobians(p, x)
        assert J.shape == (L + 1, B, d, d)
        for b in range(B):
            np.testing.assert_allclose(J[:, b], bp.jacobians(p, x[b]), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("activation,delta_mode", CASES)
def test_weight_gradients_match_grad(activation, delta_mode):
    with jax.enable_x64(True):
        L, d, B = 6, 3, 5
        p = _net(jax.random.PRNGKey(4), L, d, delta_mode)
        x = jax.random.normal(jax.random.PRNGKey(5), (B, d), jnp.float64)
        y = jax.random.normal(jax.random.PRNGKey(6), (B, d), jnp.float64)
        g = bp.weight_gradients(p, x, y, activation=activation, delta_mode=delta_mode)
        ref = jax.grad(lambda q: mse(forward(q, x, activation=activation, delta_mode=delta_mode), y))(p)
        np.testing.assert_allclose(g.A, ref.A, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g.b, ref.b, rtol=1e-10, atol=1e-13)
        if delta_mode == "none":
            assert g.delta is None
        else:
            np.testing.assert_allclose(g.delta, ref.delta, rtol=1e-10, atol=1e-13)
