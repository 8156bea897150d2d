"""How long the operator norms of a convolutional network's kernels take (SP §3.2, Figs 7-8).

Times :func:`resnet_limits.scaling.conv_block_norms` (every Delta_k, A_k and their increments,
FFT + batched SVD, Sedghi et al. 2019) on PyTorch-initialised networks of the paper's width (64)
at the given depths, four ways in one process, rounds interleaved so that a change in the
machine's load hits all four alike:

* ``before``:      the full FFT spectrum, stacks zero-padded to 2^j kernels, BLAS threads as
                   they come (the implementation before this benchmark);
* ``half``:        the real FFT's half spectrum and stacks of 2^j kernels without padding;
* ``1 thread``:    ``before`` with the BLAS under LAPACK held to one thread;
* ``after``:       ``half`` with one BLAS thread (what ``resnet-limits analyze`` runs).

Round 1 includes compilation (the variants share no compiled programs except across the
thread setting); the table gives round 1 and the best later round, seconds per depth, the
load average before and after, and the largest relative difference of the norms from
``before``'s.

    python benchmarks/conv_norms.py                 # L = 8, 11; 3 rounds
    python benchmarks/conv_norms.py --depths 8 121 --rounds 2

Timings on a shared machine are noisy: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits.analysis.conv import single_threaded_lapack
from resnet_limits.conv import block_kernels, init_conv_params
from resnet_limits.scaling import conv_analysis, conv_singular_values

_FULL: dict[tuple[int, int], Callable] = {}


def _full_norms(stack: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Norms of a stack on the full FFT spectrum (one jitted program per input size)."""
    if hw not in _FULL:
        _FULL[hw] = jax.jit(jax.vmap(lambda K: jnp.max(conv_singular_values(K, hw))))
    return _FULL[hw](stack)


def _before_kernel_operator_norms(kernels: Sequence[Any], sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """The implementation before: full spectrum, stacks zero-padded up to a power of two."""
    out = np.full(len(kernels), np.nan)
    groups: dict[tuple, list[int]] = {}
    for i, (K, hw) in enumerate(zip(kernels, sizes)):
        groups.setdefault((tuple(np.shape(K)), tuple(hw)), []).append(i)
    for (shape, hw), idx in groups.items():
        pad = (1 << (len(idx) - 1).bit_length()) - len(idx)
        stack = jnp.stack([jnp.asarray(kernels[i], jnp.float32) for i in idx] + [jnp.zeros(shape, jnp.float32)] * pad)
        out[idx] = np.asarray(_full_norms(stack, hw), np.float64)[: len(idx)]
    return out


@contextlib.contextmanager
def _variant(name: str):
    real = conv_analysis.kernel_operator_norms
    if name in ("before", "1 thread"):
        conv_analysis.kernel_operator_norms = _before_kernel_operator_norms
    try:
        with single_threaded_lapack() if name in ("1 thread", "after") else contextlib.nullcontext():
            yield
    finally:
        conv_analysis.kernel_operator_norms = real


VARIANTS = ("before", "half", "1 thread", "after")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 11])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; width {args.width}", flush=True)
    blocks = {L: block_kernels(init_conv_params(jax.random.PRNGKey(L), L, args.width)) for L in args.depths}
    times = {(v, L): [] for v in VARIANTS for L in args.depths}
    norms: dict[tuple[str, int], np.ndarray] = {}
    for r in range(args.rounds):
        for L in args.depths:
            for v in VARIANTS:
                with _variant(v):
                    t0 = time.perf_counter()
                    fam = conv_analysis.conv_block_norms(blocks[L])
                    times[v, L].append(time.perf_counter() - t0)
                norms[v, L] = np.concatenate([fam[k][q] for k in sorted(fam) for q in ("norms", "increments")])
                print(f"round {r + 1} L={L} {v:>8}: {times[v, L][-1]:7.2f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(f"{'variant':>10} {'L':>4} {'round 1 (s)':>12} {'best later (s)':>15} {'max rel diff':>13}")
    for L in args.depths:
        ref = norms["before", L]
        for v in VARIANTS:
            ts = times[v, L]
            diff = np.nanmax(np.abs(norms[v, L] / ref - 1))
            best = f"{min(ts[1:]):15.2f}" if len(ts) > 1 else f"{'-':>15}"
            print(f"{v:>10} {L:>4} {ts[0]:12.2f} {best} {diff:13.1e}")


if __name__ == "__main__":
    main()
