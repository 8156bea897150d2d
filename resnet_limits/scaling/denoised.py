"""Training loss of trained and denoised networks (SP Fig. 6).

SP Fig. 6 rebuilds each network with its denoised weights ``Atilde_k = L^{-beta} Abar_{k/L}``
(:func:`~resnet_limits.scaling.denoise`) and compares its training loss with the trained
network's. :func:`seed_losses` evaluates the networks of all seeds of one depth in one jitted
program (float32, like training); :func:`pad_layers` pads the depth to a power of two with
identity layers, so that one compiled program serves many depths.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import jax
import numpy as np

from resnet_limits.models import ResNetParams, forward, get_activation, mse, pad_params

__all__ = ["denoised_params", "pad_layers", "seed_losses"]


def pad_layers(params: ResNetParams, activation: str) -> ResNetParams:
    """``params`` (leading seed axis, S x L x ...) padded along the depth axis with identity
    layers (A = 0, b = 0, per-layer delta = 0) up to the next power of two (at least 8).

    Exact because sigma(0) = 0, so h + delta sigma(0 h + 0) = h (SP eq. 1); for an activation
    with sigma(0) != 0 the parameters are returned as they are.
    """
    L = np.shape(params.A)[1]
    Lp = max(8, 1 << (L - 1).bit_length())
    if Lp == L or float(np.asarray(get_activation(activation).fn(np.zeros(1, np.float32)))[0]) != 0.0:
        return params
    return jax.vmap(partial(pad_params, capacity=Lp))(params)


@partial(jax.jit, static_argnames=("activation", "delta_mode"))
def _mse_per_seed(params: ResNetParams, x, y, activation: str, delta_mode: str) -> jax.Array:
    return jax.vmap(lambda p: mse(forward(p, x, activation=activation, delta_mode=delta_mode), y))(params)


def seed_losses(params: ResNetParams, x, y, *, activation: str, delta_mode: str) -> np.ndarray:
    """Training MSE (S,) of each seed's network of SP eq. 1 on the inputs ``x`` and targets
    ``y``; ``params`` has a leading seed axis and is evaluated in float32 after :func:`pad_layers`."""
    f32 = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    with np.errstate(all="ignore"):
        return np.asarray(_mse_per_seed(pad_layers(f32, activation), x, y, activation, delta_mode))


def denoised_params(A, b, delta: Optional[np.ndarray], scaled_by_delta: bool) -> ResNetParams:
    """The networks with denoised weights ``A``, ``b`` (S, L, ...) of SP Fig. 6.

    Where the analysed tensors are |delta_k| A_k and |delta_k| b_k (a homogeneous activation,
    SP Remark 2.2), delta sigma(A h + b) = sign(delta) sigma(|delta| A h + |delta| b), so the
    denoised network keeps only the sign of the trained ``delta`` (+1 where delta is 0);
    otherwise it keeps the trained ``delta`` itself.
    """
    if scaled_by_delta and delta is not None:
        sign = np.sign(np.asarray(delta, np.float32))
        delta = np.where(sign == 0, 1.0, sign).astype(np.float32)
    return ResNetParams(A, b, delta)
