"""Training loss of trained and denoised networks (SP Fig. 6).

SP Fig. 6 rebuilds each network with its denoised weights ``Atilde_k = L^{-beta} Abar_{k/L}``
(:func:`~resnet_limits.scaling.denoise`) and compares its training loss with the trained
network's. :func:`seed_losses` evaluates any number of networks of one depth (the seeds, and the
trained and denoised versions of each) as one jitted program, in float32 like training: the
weights are stacked in the capacity of the depth's bucket (:func:`~resnet_limits.models.depth_capacity`)
on the host and the layer loop runs exactly L layers (:func:`~resnet_limits.models.forward_to_depth`),
so the depths of a grid stacked in one capacity share one compiled program and pay for no padded
layer.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import jax
import numpy as np

from resnet_limits.models import ResNetParams, depth_capacity, forward_to_depth, mse

__all__ = ["denoised_params", "pad_depth", "seed_losses"]


def pad_depth(params: ResNetParams, capacity: int) -> ResNetParams:
    """``params`` (leading network axis, N x L x ...) as float32 numpy arrays stacked in
    ``capacity`` >= L layers (zeros after layer L; a shared delta (N,) stays as it is)."""
    L = np.shape(params.A)[1]

    def pad(a):
        a = np.asarray(a, np.float32)
        out = np.zeros((a.shape[0], capacity) + a.shape[2:], np.float32)
        out[:, :L] = a
        return out

    delta = params.delta
    if delta is not None:
        delta = pad(delta) if np.ndim(delta) == 2 else np.asarray(delta, np.float32)
    return ResNetParams(pad(params.A), pad(params.b), delta)


@partial(jax.jit, static_argnames=("activation", "delta_mode"))
def _mse_per_network(params: ResNetParams, x, y, depth, activation: str, delta_mode: str) -> jax.Array:
    def one(p):
        return mse(forward_to_depth(p, x, depth, activation=activation, delta_mode=delta_mode), y)

    return jax.vmap(one)(params)


def seed_losses(params: ResNetParams, x, y, *, activation: str, delta_mode: str,
                capacity: Optional[int] = None, wait: bool = True):
    """Training MSE (N,) of each network of SP eq. 1 (``params`` with a leading network axis,
    evaluated in float32) on the inputs ``x`` and targets ``y``.

    The weights are stacked in ``capacity`` layers (default: the depth's bucket): give every depth
    of a grid the capacity of its largest depth and the whole grid runs one compiled program
    (padded layers cost a copy, not arithmetic: the loop stops at L). ``wait=False`` returns the
    device array at once, still computing (JAX's asynchronous dispatch), for the caller to read
    later while it does other work."""
    L = int(np.shape(params.A)[1])
    padded = pad_depth(params, depth_capacity(L) if capacity is None else capacity)
    losses = _mse_per_network(padded, np.asarray(x, np.float32), np.asarray(y, np.float32), L, activation, delta_mode)
    return np.asarray(losses) if wait else losses


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
