"""Operator norms of convolution layers by FFT and batched SVD (Sedghi, Gupta & Long, ICLR 2019;
SP §3.3, SPEC §3).

The circular 2-D convolution with a kernel K (kh x kw, c_in -> c_out) on an n1 x n2 input is
block-diagonalised by the 2-D Fourier transform: at each of the n1 n2 frequencies (u, v) it acts
as the c_out x c_in matrix ``F(u, v) = sum_{p,q} K[p, q] exp(-2 pi i (u p / n1 + v q / n2))``
(Sedghi et al., Thm 6). Its singular values are those of the n1 n2 matrices F(u, v), and its
operator norm is the largest of them.

Every function is JAX, follows the dtype of its input (float64 under ``jax.enable_x64(True)``)
and can be jitted and vmapped; the input size and layout are static (Python ints / strings).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = ["conv_singular_values", "conv_spectral_norm", "conv_spectral_norms"]

LAYOUTS = ("HWIO", "OIHW")


def _hwio(kernel, layout: str) -> jax.Array:
    """``kernel`` as (kh, kw, c_in, c_out) from the "HWIO" (flax) or "OIHW" (PyTorch) layout."""
    K = jnp.asarray(kernel)
    if layout == "OIHW":
        return jnp.transpose(K, (2, 3, 1, 0))
    if layout != "HWIO":
        raise ValueError(f"unknown layout {layout!r}; use 'HWIO' or 'OIHW'")
    return K


def _input_hw(input_hw: Sequence[int]) -> tuple[int, int]:
    return int(input_hw[0]), int(input_hw[1])


@partial(jax.jit, static_argnames=("input_hw", "layout"))
def _singular_values(kernel, input_hw: tuple[int, int], layout: str) -> jax.Array:
    K = _hwio(kernel, layout)
    n1, n2 = input_hw
    if K.shape[0] > n1 or K.shape[1] > n2:
        raise ValueError(f"kernel {K.shape[:2]} larger than the input {n1}x{n2}")
    F = jnp.fft.fft2(K, s=(n1, n2), axes=(0, 1))  # (n1, n2, c_in, c_out)
    return jnp.linalg.svd(jnp.swapaxes(F, -1, -2), compute_uv=False)


def conv_singular_values(kernel, input_hw: Sequence[int], layout: str = "HWIO") -> jax.Array:
    """All singular values of the circular 2-D convolution with ``kernel`` on an
    ``input_hw`` = (n1, n2) input (Sedghi et al. 2019, Thm 6).

    The 2-D FFT of the kernel zero-padded to n1 x n2 gives, at each of the n1 n2 frequencies,
    a c_out x c_in matrix; the operator's singular values are theirs (one batched SVD). ``layout``
    is "HWIO" (kh, kw, c_in, c_out) or "OIHW" (c_out, c_in, kh, kw). Returns (n1, n2, min(c)).
    Jitted once per kernel shape, input size and layout.
    """
    return _singular_values(kernel, _input_hw(input_hw), layout)


def conv_spectral_norm(kernel, input_hw: Sequence[int], layout: str = "HWIO") -> jax.Array:
    """Operator (spectral) norm of a convolution layer on an ``input_hw`` input: the largest of
    :func:`conv_singular_values` (SPEC §3, Sedghi et al. 2019). A scalar array; jitted."""
    return jnp.max(conv_singular_values(kernel, input_hw, layout))


@partial(jax.jit, static_argnames=("input_hw", "layout"))
def _spectral_norms(kernels, input_hw: tuple[int, int], layout: str) -> jax.Array:
    return jax.vmap(lambda K: conv_spectral_norm(K, input_hw, layout))(kernels)


def conv_spectral_norms(kernels, input_hw: Sequence[int], layout: str = "HWIO") -> jax.Array:
    """Operator norms (n,) of a stack of n convolution kernels of one shape acting on inputs of
    one size, e.g. the stacked blocks of a stage (SP §3.3): ``kernels`` is (n, kh, kw, c_in,
    c_out) ("HWIO") or (n, c_out, c_in, kh, kw) ("OIHW"). One jitted program (FFT + batched
    SVD, vmapped over the stack) per shape, input size and layout."""
    return _spectral_norms(kernels, _input_hw(input_hw), layout)
