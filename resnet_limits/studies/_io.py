"""Where the studies write: the output folder and their JSON (atomic, as every file of a run)."""

from __future__ import annotations

from pathlib import Path

from resnet_limits.sweeps.folder import check_out_dir, write_json

__all__ = ["output_folder", "write_json"]


def output_folder(out) -> Path:
    """``out`` as a folder, created with its parents; :class:`UsageError` (one line) if it is a file
    or cannot be created."""
    out = Path(out)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
