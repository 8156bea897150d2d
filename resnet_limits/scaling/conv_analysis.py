"""Scaling of the kernels of the convolutional ResNet (SP eq. 9, §3.2, Table 1, Figs 7-8).

For a trained network of depth L, with blocks as :func:`resnet_limits.conv.block_kernels`
lists them, the Table-1 quantities with the Frobenius norm replaced by the operator norm of
the convolution on the kernel's input size (Sedghi et al. 2019, :func:`conv_spectral_norms`):

* per block k the norms ||Delta_k|| (on the block's output size, which Delta_k acts on) and
  ||A_k|| (on its input size), SP Fig. 7's blue points; their maximum over k (red line);
* increments ||Delta_{k+1} - Delta_k||, ||A_{k+1} - A_k|| between consecutive blocks whose
  kernels have the same shape and act on the same size (inside a stage: the entry block of a
  stage, with its different width or stride, starts a new run of increments);
* the root sum of squares (sum_k ||T_k||^2)^{1/2} and the scaled norm of increments
  L^gamma max_k ||T_{k+1} - T_k|| (SP Fig. 8, gamma = alpha for Delta, beta for A).

Alpha is the slope of -log max_k ||Delta_k|| against log L and beta that of
-log max_k ||A_k|| (SP §3.2: "Delta_k ~ L^-alpha and A_k ~ L^-beta", read off Fig. 7).
Pure functions (JAX for the norms, numpy for the small tables); no files.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from resnet_limits.scaling.conv_norms import conv_spectral_norms
from resnet_limits.scaling.fits import loglog_fit

__all__ = [
    "CONV_KERNELS",
    "PAPER_CONV",
    "PAPER_TABLE5",
    "conv_block_norms",
    "conv_exponents",
    "conv_table1",
    "kernel_operator_norms",
]

#: The kernels of a block whose scaling SP §3.2 studies, and the size each acts on.
CONV_KERNELS = {"Delta": "output_hw", "A": "input_hw"}
#: SP §3.2: alpha ~ 0.1, beta ~ 0 (the sparse regime).
PAPER_CONV = {"alpha": 0.1, "beta": 0.0}
#: SP App. C, Table 5: test error (%) on CIFAR-10 per depth (the paper lists no L = 18).
PAPER_TABLE5 = {8: 6.64, 11: 6.37, 12: 6.32, 14: 5.98, 16: 6.25, 20: 5.98, 24: 6.24, 28: 7.03,
                33: 6.13, 42: 6.21, 50: 6.32, 65: 6.19, 80: 6.30, 100: 6.20, 121: 6.37}


def kernel_operator_norms(kernels: Sequence[Any], sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Operator norms (n,) of n HWIO kernels, kernel i acting on inputs of ``sizes[i]``.

    Kernels of one shape and size go through batched :func:`conv_spectral_norms` calls (real
    FFT + batched SVD, Sedghi et al. 2019) on stacks of 2^j kernels, the binary digits of their
    number (7 = 4 + 2 + 1): networks of every depth reuse the few compiled programs, and no
    SVD is spent on padding."""
    out = np.full(len(kernels), np.nan)
    groups: dict[tuple, list[int]] = {}
    for i, (K, hw) in enumerate(zip(kernels, sizes)):
        groups.setdefault((tuple(np.shape(K)), tuple(hw)), []).append(i)
    for (_, hw), idx in groups.items():
        for chunk in _power_of_two_chunks(idx):
            stack = jnp.stack([jnp.asarray(kernels[i], jnp.float32) for i in chunk])
            out[chunk] = np.asarray(conv_spectral_norms(stack, hw), np.float64)
    return out


def _power_of_two_chunks(items: Sequence[int]) -> list[list[int]]:
    """``items`` cut into consecutive runs of 2^j elements, largest first (the binary digits of
    their number)."""
    chunks, start = [], 0
    for bit in reversed(range(len(items).bit_length())):
        if len(items) >> bit & 1:
            chunks.append(list(items[start:start + (1 << bit)]))
            start += 1 << bit
    return chunks


def conv_block_norms(blocks: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Per kernel name of :data:`CONV_KERNELS`: ``norms`` (L,), the operator norm of each block's
    kernel, and ``increments`` (L-1,), that of T_{k+1} - T_k where blocks k and k+1 have kernels
    of one shape acting on one size, NaN where they do not (SP Figs 7-8)."""
    out = {}
    for name, where in CONV_KERNELS.items():
        Ks = [b[name] for b in blocks]
        hw = [tuple(b[where]) for b in blocks]
        same = [np.shape(Ks[k]) == np.shape(Ks[k + 1]) and hw[k] == hw[k + 1] for k in range(len(Ks) - 1)]
        pairs = [k for k, ok in enumerate(same) if ok]
        inc = np.full(max(len(Ks) - 1, 0), np.nan)
        if pairs:
            diffs = [jnp.asarray(Ks[k + 1], jnp.float32) - jnp.asarray(Ks[k], jnp.float32) for k in pairs]
            inc[pairs] = kernel_operator_norms(diffs, [hw[k] for k in pairs])
        out[name] = {"norms": kernel_operator_norms(Ks, hw), "increments": inc}
    return out


def conv_table1(norms: np.ndarray, increments: np.ndarray, exponent: Optional[float] = None) -> dict[str, float]:
    """Table-1 quantities of one kernel family of a depth-L network from its operator norms:
    maximum norm max_k ||T_k||, root sum of squares (sum_k ||T_k||^2)^{1/2}, max increment
    max_k ||T_{k+1} - T_k|| and, given ``exponent`` gamma, the scaled norm of increments
    L^gamma max_k ||T_{k+1} - T_k|| (SP Table 1 with operator norms, as in SP §3.2)."""
    norms, increments = np.asarray(norms, np.float64), np.asarray(increments, np.float64)
    L = norms.shape[0]
    max_inc = float(np.nanmax(increments)) if np.isfinite(increments).any() else float("nan")
    out = {"max_norm": float(norms.max()), "rss": float(np.sqrt(np.sum(norms**2))), "max_increment": max_inc}
    if exponent is not None:
        out["scaled_increment"] = float(L ** exponent * max_inc)
    return out


def conv_exponents(depths: Sequence[int], max_delta: Sequence[float], max_A: Sequence[float]) -> dict[str, Any]:
    """alpha and beta of SP §3.2: max_k ||Delta_k|| ~ L^-alpha, max_k ||A_k|| ~ L^-beta (log-log
    least squares over the depths; ``None`` with fewer than two usable depths)."""
    out: dict[str, Any] = {}
    for key, y in (("alpha", max_delta), ("beta", max_A)):
        fit = loglog_fit(depths, y)
        out[key] = -fit.slope if np.isfinite(fit.slope) else None
        out[f"{key}_stderr"] = fit.stderr if np.isfinite(fit.stderr) else None
    return out
