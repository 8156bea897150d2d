"""Tests of the Hoelder (Hurst) exponent of weight paths (resnet_limits.scaling.roughness; SP §2.2
Hypotheses 1-2, SP eq. 8).

Tolerances: exact cases (a linear path, scale invariance, the plain-loop variogram) to 1e-12 in
float64; 1/2 +- 0.05 for every one of 8 Brownian weight stacks (4096, 4, 4) and for the mean of 16
scalar Brownian paths of 4096 steps; 1 +- 0.05 for smooth stacks and paths of 4096 steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.scaling import (
    cumulative_path,
    dyadic_lags,
    holder_exponent,
    variogram,
    weights_holder_exponent,
)

L, D = 4096, 4
RNG = np.random.default_rng(7)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _smooth_weights(n_networks: int, n_frequencies: int = 2) -> np.ndarray:
    """Weights A_k = Abar(k/L), Abar a random trigonometric polynomial (a C^infinity function of t):
    (n_networks, L, D, D)."""
    t = np.arange(L) / L
    f = np.arange(1, n_frequencies + 1)
    modes = np.concatenate([np.ones((L, 1)), np.cos(2 * math.pi * t[:, None] * f),
                            np.sin(2 * math.pi * t[:, None] * f)], axis=1)
    C = RNG.standard_normal((n_networks, modes.shape[1], D, D))
    return np.einsum("km,smij->skij", modes, C)


def test_dyadic_lags():
    assert dyadic_lags(4096) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert dyadic_lags(64) == (1, 2, 4)
    assert dyadic_lags(3) == (1, 2)
    assert dyadic_lags(1000, max_fraction=0.5) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    with pytest.raises(ValueError):
        dyadic_lags(2)


def test_variogram_against_a_loop(x64):
    path = RNG.standard_normal((40, 2, 3))
    lags = (1, 2, 4, 8)
    ref = [np.mean([np.mean((path[k + m] - path[k]) ** 2) for k in range(40 - m)]) for m in lags]
    assert np.allclose(variogram(jnp.asarray(path), lags), ref, rtol=1e-12)
    T = RNG.standard_normal((10, 3))
    X = np.asarray(cumulative_path(jnp.asarray(T)))
    assert X.shape == (11, 3) and np.all(X[0] == 0) and np.allclose(X[1:], np.cumsum(T, axis=0), rtol=1e-12)


def test_exact_cases(x64):
    """A straight line is C^1 with V(m) = m^2 |v|^2: H = 1 exactly; H does not change with the scale."""
    line = jnp.arange(100.0)[:, None] * jnp.asarray([1.0, -2.0])
    assert float(holder_exponent(line)) == pytest.approx(1.0, abs=1e-12)
    assert float(weights_holder_exponent(jnp.full((99,), 0.3))) == pytest.approx(1.0, abs=1e-12)
    X = jnp.asarray(RNG.standard_normal((257, 3)).cumsum(axis=0))
    assert float(holder_exponent(1e-3 * X)) == pytest.approx(float(holder_exponent(X)), abs=1e-12)
    assert float(holder_exponent(X, lags=(1, 4))) == pytest.approx(
        0.5 * math.log(float(variogram(X, (4,))[0]) / float(variogram(X, (1,))[0])) / math.log(4), abs=1e-12)


def test_brownian_weights_have_exponent_one_half(x64):
    """i.i.d. weights N(0, 1/(L d^2)) (SP Remark 2.1): the path is a Brownian motion, H = 1/2."""
    stacks = jnp.asarray(RNG.standard_normal((8, L, D, D)) / (math.sqrt(L) * D))
    H = np.asarray(jax.vmap(weights_holder_exponent)(stacks))
    assert np.all(np.abs(H - 0.5) < 0.05), H
    assert float(weights_holder_exponent(stacks[3])) == pytest.approx(H[3], abs=1e-12)  # vmap = one by one
    scalar = jnp.asarray(RNG.standard_normal((16, L)))
    assert abs(float(jnp.mean(jax.vmap(weights_holder_exponent)(scalar))) - 0.5) < 0.05


def test_smooth_weights_have_exponent_one(x64):
    """Weights sampled from a smooth function of t (SP eq. 5 with beta = 0): the path is C^1, H = 1."""
    stacks = jnp.asarray(_smooth_weights(8))
    H = np.asarray(jax.vmap(weights_holder_exponent)(stacks))
    assert np.all(np.abs(H - 1.0) < 0.05), H
    t = jnp.arange(L + 1) / L
    assert float(holder_exponent(jnp.sin(2 * math.pi * t) + t ** 2)) == pytest.approx(1.0, abs=0.05)


def test_trend_plus_noise_lies_between(x64):
    """A Brownian part and a smooth trend of the same size over about 16 layers (SP eq. 6 with
    beta = 1/2): 1/2 < H < 1."""
    noise = RNG.standard_normal((L, D, D)) / (math.sqrt(L) * D)
    smooth = _smooth_weights(1)[0] / (4 * math.sqrt(L) * D)
    H = float(weights_holder_exponent(jnp.asarray(noise + smooth)))
    assert 0.55 < H < 0.95
