"""Operator norms of convolution layers by FFT and batched SVD (Sedghi, Gupta & Long, ICLR 2019;
SP §3.2, Table 1).

The circular 2-D convolution with a kernel K (kh x kw, c_in -> c_out) on an n1 x n2 input is
block-diagonalised by the 2-D Fourier transform: at each of the n1 n2 frequencies (u, v) it acts
as the c_out x c_in matrix ``F(u, v) = sum_{p,q} K[p, q] exp(-2 pi i (u p / n1 + v q / n2))``
(Sedghi et al., Thm 6). Its singular values are those of the n1 n2 matrices F(u, v), and its
operator norm is the largest of them.

For a real kernel F(-u, -v) is the complex conjugate of F(u, v) (indices mod n1, n2), so the
two have the same singular values: the norm needs one frequency of each conjugate pair
(:func:`half_spectrum_frequencies`, (n1 n2 + s) / 2 of them, s <= 4 the self-conjugate ones),
taken from the real FFT (``rfft2``): about half the SVDs.

Every function is JAX, follows the dtype of its input (float64 under ``jax.enable_x64(True)``)
and can be jitted and vmapped; the input size and layout are static (Python ints / strings).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["conv_singular_values", "conv_spectral_norm", "conv_spectral_norms", "half_spectrum_frequencies"]

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


def half_spectrum_frequencies(input_hw: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One frequency (u, v) of each conjugate pair {(u, v), (-u mod n1, -v mod n2)} of an
    n1 x n2 grid, all with v <= n2 // 2 (the real FFT's columns): every (u, v) with
    0 < v < n2 / 2, and u <= n1 // 2 in the columns v = 0 and v = n2 / 2 (n2 even), which pair
    with themselves. Returns the index arrays (u, v), (n1 n2 + s) / 2 long, s the number of
    self-conjugate frequencies (u, v in {0, n / 2})."""
    n1, n2 = _input_hw(input_hw)
    uu, vv = np.meshgrid(np.arange(n1), np.arange(n2 // 2 + 1), indexing="ij")
    self_paired_column = (vv == 0) | (2 * vv == n2)
    keep = ~self_paired_column | (uu <= n1 // 2)
    return uu[keep], vv[keep]


def _fourier_blocks(kernel, input_hw: tuple[int, int], layout: str, half_spectrum: bool) -> jax.Array:
    """The c_out x c_in matrices F(u, v) of Sedghi et al. Thm 6: (n1, n2, c_out, c_in), or with
    ``half_spectrum`` those of :func:`half_spectrum_frequencies`, (m, c_out, c_in)."""
    K = _hwio(kernel, layout)
    n1, n2 = input_hw
    if K.shape[0] > n1 or K.shape[1] > n2:
        raise ValueError(f"kernel {K.shape[:2]} larger than the input {n1}x{n2}")
    if half_spectrum:
        F = jnp.fft.rfft2(K, s=(n1, n2), axes=(0, 1))[half_spectrum_frequencies(input_hw)]  # (m, c_in, c_out)
    else:
        F = jnp.fft.fft2(K, s=(n1, n2), axes=(0, 1))  # (n1, n2, c_in, c_out)
    return jnp.swapaxes(F, -1, -2)


@partial(jax.jit, static_argnames=("input_hw", "layout", "half_spectrum"))
def _singular_values(kernel, input_hw: tuple[int, int], layout: str, half_spectrum: bool) -> jax.Array:
    return jnp.linalg.svd(_fourier_blocks(kernel, input_hw, layout, half_spectrum), compute_uv=False)


def conv_singular_values(kernel, input_hw: Sequence[int], layout: str = "HWIO", half_spectrum: bool = False) -> jax.Array:
    """All singular values of the circular 2-D convolution with ``kernel`` on an
    ``input_hw`` = (n1, n2) input (Sedghi et al. 2019, Thm 6).

    The 2-D FFT of the kernel zero-padded to n1 x n2 gives, at each of the n1 n2 frequencies,
    a c_out x c_in matrix; the operator's singular values are theirs (one batched SVD). ``layout``
    is "HWIO" (kh, kw, c_in, c_out) or "OIHW" (c_out, c_in, kh, kw). Returns (n1, n2, min(c)),
    or with ``half_spectrum`` those of one frequency of each conjugate pair only, (m, min(c))
    in the order of :func:`half_spectrum_frequencies`: for a real kernel the others repeat them
    (frequency (-u, -v) has the singular values of (u, v)). Jitted once per kernel shape,
    input size, layout and ``half_spectrum``.
    """
    return _singular_values(kernel, _input_hw(input_hw), layout, bool(half_spectrum))


def conv_spectral_norm(kernel, input_hw: Sequence[int], layout: str = "HWIO") -> jax.Array:
    """Operator (spectral) norm of a convolution layer on an ``input_hw`` input: the largest of
    :func:`conv_singular_values` (SP §3.2, Sedghi et al. 2019), taken over the half spectrum
    (a real kernel's conjugate frequencies repeat it). A scalar array; jitted."""
    return jnp.max(conv_singular_values(kernel, input_hw, layout, half_spectrum=True))


@partial(jax.jit, static_argnames=("input_hw", "layout"))
def _spectral_norms(kernels, input_hw: tuple[int, int], layout: str) -> jax.Array:
    F = jax.vmap(lambda K: _fourier_blocks(K, input_hw, layout, True))(kernels)  # (n, m, c_out, c_in)
    return jnp.max(jnp.linalg.svd(F, compute_uv=False), axis=(1, 2))


def conv_spectral_norms(kernels, input_hw: Sequence[int], layout: str = "HWIO") -> jax.Array:
    """Operator norms (n,) of a stack of n convolution kernels of one shape acting on inputs of
    one size, e.g. the stacked blocks of a stage (SP §3.3): ``kernels`` is (n, kh, kw, c_in,
    c_out) ("HWIO") or (n, c_out, c_in, kh, kw) ("OIHW"). One jitted program (real FFT of the
    stack + one SVD batched over the kernels and :func:`half_spectrum_frequencies`) per shape,
    input size and layout.

    On CPU the SVDs are LAPACK's (``gesdd``, no singular vectors); the BLAS under it may run
    threads of its own, which on a busy machine slow it many-fold (see ``benchmarks/conv_norms.py``).
    """
    return _spectral_norms(kernels, _input_hw(input_hw), layout)
