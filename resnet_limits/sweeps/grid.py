"""Depth grids of the sweeps (SPEC §6): the distinct floor(b^n) between two depths."""

from __future__ import annotations

import math

from resnet_limits.errors import UsageError

__all__ = ["DEFAULT_BASE", "depth_grid"]

DEFAULT_BASE = 2.0 ** (1.0 / 3.0)


def depth_grid(min_depth: int, max_depth: int, base: float = DEFAULT_BASE) -> list[int]:
    """The distinct floor(base^n) with min_depth <= floor(base^n) <= max_depth (SPEC §6)."""
    if min_depth < 1:
        raise UsageError(f"depth must be >= 1, got min depth {min_depth}")
    if max_depth < min_depth:
        raise UsageError(f"max depth {max_depth} is below min depth {min_depth}")
    if not (base > 1 and math.isfinite(base)):
        raise UsageError(f"depth base must be > 1, got {base}")
    out, n = [], 0
    while True:
        L = math.floor(base**n * (1 + 1e-12))  # 2^(3/3) must give 2, not 1.999...
        if L > max_depth:
            break
        if L >= min_depth and (not out or L != out[-1]):
            out.append(L)
        n += 1
    return out
