"""Where the studies write: the output folder, their JSON and Markdown (atomic, as every file of a run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from resnet_limits.errors import UsageError
from resnet_limits.sweeps.folder import check_out_dir, write_json, write_text

__all__ = ["cell", "output_folder", "write_json", "write_study", "write_text"]


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


def cell(v, fmt: str = ".2f") -> str:
    """A number of a study's Markdown table, ``-`` where there is none."""
    return "-" if v is None else format(v, fmt)


def write_study(out: Path, name: str, result: dict[str, Any], figures: Sequence[tuple[Any, str]],
                markdown: Callable[[dict], str], t0: float, dpi: int = 120) -> dict[str, Any]:
    """The end of a study: save ``figures`` (Figure, file name) into ``out`` and list their names
    under ``result["figures"]``, add ``seconds`` since ``t0``, write ``out/NAME.json`` (the
    returned ``result``) and ``out/NAME.md`` (``markdown(result)``)."""
    from resnet_limits import plotting

    result["figures"] = [Path(plotting.save(fig, out / file, dpi=dpi)).name for fig, file in figures]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / f"{name}.json", result)
    write_text(out / f"{name}.md", markdown(result) + "\n")
    return result
