"""The Table-1 quantities of trained weights (SP §2.2, Table 1) and the tensors they are taken of."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

__all__ = [
    "ENTRY_NDIM",
    "analysed_tensors",
    "depth_norms",
    "frobenius",
    "is_homogeneous",
    "pad_seeds",
    "seeds_by_depth",
    "table1",
    "table1_loop",
    "valid_seeds",
]

#: Entry axes of the analysed tensors: A_k is a d x d matrix, b_k a d-vector.
ENTRY_NDIM = {"A": 2, "b": 1}


def frobenius(T, entry_ndim: int) -> np.ndarray:
    """Frobenius norm over the last ``entry_ndim`` axes (absolute value for entry_ndim = 0)."""
    T = np.asarray(T, np.float64)
    if entry_ndim == 0:
        return np.abs(T)
    axes = tuple(range(T.ndim - entry_ndim, T.ndim))
    return np.sqrt(np.sum(T * T, axis=axes))


def table1(T, entry_ndim: int, beta: float = 0.0) -> dict[str, np.ndarray]:
    """Table-1 quantities of SP §2.2 for a stacked tensor, vectorised over leading axes.

    ``T`` has shape (..., L, *entry) with ``entry_ndim`` trailing entry axes (2 for A, 1 for b,
    0 for per-layer delta). Returns arrays of shape (...):

    - ``max_norm``: max_k ||T_k||_F
    - ``max_increment``: max_k ||T_{k+1} - T_k||_F (0 when L = 1)
    - ``increment``: the beta-scaled norm of increments L^beta max_k ||T_{k+1} - T_k||_F
    - ``cumsum_norm``: ||sum_k T_k||_F
    - ``rss``: root sum of squares (sum_k ||T_k||_F^2)^{1/2}
    - ``sq_increments``: sum_k ||T_{k+1} - T_k||_F^2 (the weights' own quadratic variation)
    """
    T = np.asarray(T, np.float64)
    ax = T.ndim - 1 - entry_ndim
    L = T.shape[ax]
    norms = frobenius(T, entry_ndim)  # (..., L)
    if L > 1:
        inc = frobenius(np.diff(T, axis=ax), entry_ndim)
        max_inc, sq_inc = inc.max(axis=-1), np.sum(inc * inc, axis=-1)
    else:
        max_inc = sq_inc = np.zeros(norms.shape[:-1])
    return {
        "max_norm": norms.max(axis=-1),
        "max_increment": max_inc,
        "increment": float(L) ** beta * max_inc,
        "cumsum_norm": frobenius(T.sum(axis=ax), entry_ndim),
        "rss": np.sqrt(np.sum(norms * norms, axis=-1)),
        "sq_increments": sq_inc,
    }


def table1_loop(T_one, beta: float = 0.0) -> dict[str, float]:
    """Plain-loop reference of :func:`table1` for one network: ``T_one`` is (L, *entry)."""
    T_one = np.asarray(T_one, np.float64)
    L = T_one.shape[0]

    def fro(x):
        return math.sqrt(sum(float(v) ** 2 for v in np.ravel(x)))

    max_norm, max_inc, sq_inc, ssq = 0.0, 0.0, 0.0, 0.0
    total = np.zeros(T_one.shape[1:])
    for k in range(L):
        n = fro(T_one[k])
        max_norm = max(max_norm, n)
        ssq += n * n
        total = total + T_one[k]
        if k + 1 < L:
            i = fro(T_one[k + 1] - T_one[k])
            max_inc = max(max_inc, i)
            sq_inc += i * i
    return {
        "max_norm": max_norm, "max_increment": max_inc, "increment": L**beta * max_inc,
        "cumsum_norm": fro(total), "rss": math.sqrt(ssq), "sq_increments": sq_inc,
    }


def is_homogeneous(activation: str) -> bool:
    """Positively 1-homogeneous activations, for which delta moves inside (SP Remark 2.2)."""
    return activation in ("relu", "identity")


def analysed_tensors(params, delta_mode: str, activation: str) -> dict[str, Any]:
    """The tensors whose scaling is analysed, with a leading seed axis (numpy float64).

    Returns ``{"A": (S, L, d, d), "b": (S, L, d), "delta_abs": (S, L), "labels": {...},
    "scaled_by_delta": bool}``. For a positively homogeneous activation (ReLU) with a delta,
    A and b are replaced by |delta_k| A_k and |delta_k| b_k (SP Remark 2.2). ``delta_abs`` is
    |delta_k| broadcast over layers (ones when the network has no delta).
    """
    A = np.asarray(params.A, np.float64)
    b = np.asarray(params.b, np.float64)
    S, L = A.shape[0], A.shape[1]
    if delta_mode == "none" or params.delta is None:
        dabs = np.ones((S, L))
    else:
        d = np.abs(np.asarray(params.delta, np.float64))
        dabs = np.broadcast_to(d.reshape(S, -1), (S, L)).copy()
    scaled = is_homogeneous(activation) and delta_mode != "none" and params.delta is not None
    if scaled:
        A = dabs[:, :, None, None] * A
        b = dabs[:, :, None] * b
    labels = {"A": "|δ|A" if scaled else "A", "b": "|δ|b" if scaled else "b"}
    return {"A": A, "b": b, "delta_abs": dabs, "labels": labels, "scaled_by_delta": scaled}


def depth_norms(tensors: dict[str, Any], has_delta: bool) -> dict[str, Any]:
    """Table-1 quantities of the S networks of one depth (SP §2.3 steps 1-2).

    ``tensors`` is :func:`analysed_tensors`' output. Returns ``{"A": table1 of A, "b": table1
    of b, "delta_max": max_k |delta_k| per seed (S,), or None without a delta}``.
    """
    out: dict[str, Any] = {n: table1(tensors[n], e) for n, e in ENTRY_NDIM.items()}
    out["delta_max"] = tensors["delta_abs"].max(axis=1) if has_delta else None
    return out


def valid_seeds(params, diverged) -> np.ndarray:
    """Seeds (S,) that did not diverge (``diverged``: S bools) and whose weights are all finite."""
    S = np.asarray(params.A).shape[0]
    fin = np.isfinite(np.asarray(params.A)).reshape(S, -1).all(axis=1)
    fin &= np.isfinite(np.asarray(params.b)).reshape(S, -1).all(axis=1)
    if params.delta is not None:
        fin &= np.isfinite(np.asarray(params.delta)).reshape(S, -1).all(axis=1)
    return ~np.asarray(diverged, bool) & fin


def pad_seeds(a, n_seeds: int, fill=0.0) -> np.ndarray:
    """``a`` (S', ...) cut or padded with ``fill`` along its seed axis (0) to ``n_seeds`` rows."""
    a = np.asarray(a)
    if a.shape[0] >= n_seeds:
        return a[:n_seeds]
    return np.concatenate([a, np.full((n_seeds - a.shape[0],) + a.shape[1:], fill, a.dtype)])


def seeds_by_depth(columns: Sequence[Optional[Sequence]], n_seeds: int, fill=np.nan) -> np.ndarray:
    """The (n_seeds, n_depths) table whose column i holds ``columns[i]`` (one value per seed),
    cut to ``n_seeds``; seeds a depth lacks, and columns that are None, hold ``fill``."""
    out = np.full((n_seeds, len(columns)), fill)
    for i, c in enumerate(columns):
        if c is not None:
            c = np.asarray(c)[:n_seeds]
            out[: c.shape[0], i] = c
    return out
