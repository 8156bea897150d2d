"""Where the studies write: the output folder, their JSON and Markdown (atomic, as every file of a run)."""

from __future__ import annotations

from pathlib import Path

from resnet_limits.errors import UsageError
from resnet_limits.sweeps.folder import check_out_dir, write_json, write_text

__all__ = ["output_folder", "write_json", "write_text"]


def output_folder(out) -> Path:
    """``out`` as a folder, created with its parents; :class:`UsageError` (one line) if it is a file
    or cannot be created."""
    out = Path(out)
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {e.strerror or e}; choose another --out") from None
    return out
