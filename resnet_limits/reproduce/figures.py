"""The figures of a reproduction: those its entry declares (with the paper's figure each one
shows), those its result names, and the figures of two runs it draws with its companion (SP Figs
2, 3, 5, 9, 10: the synthetic run dashed, the MNIST run solid, in the same panels)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from resnet_limits.errors import DamagedRunError
from resnet_limits.reproduce.entries import Experiment

__all__ = ["draw_two_run_figures", "figure_rows", "link_rows", "read_analysis"]


def read_analysis(run_dir: Path) -> dict[str, Any]:
    """``run_dir/analysis.json`` (what ``resnet-limits analyze`` wrote); :class:`DamagedRunError`
    (one line) where it cannot be read."""
    path = Path(run_dir) / "analysis.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DamagedRunError(f"{path} cannot be read ({type(e).__name__}); rewrite it with "
                              f"resnet-limits analyze {run_dir}") from None


def draw_two_run_figures(exp: Experiment, synthetic: Mapping[str, Any], mnist: Mapping[str, Any],
                         folder: Path) -> list[str]:
    """Every ``[[figures]]`` of ``exp`` with a ``draw``, into ``folder/file``: the companion's
    analysis ``synthetic`` dashed and ``exp``'s own ``mnist`` solid
    (``plotting.TWO_RUN_FIGURES[draw]``); returns the paths."""
    from resnet_limits import plotting  # matplotlib only when there is something to draw

    return [plotting.TWO_RUN_FIGURES[f["draw"]](synthetic, mnist, Path(folder) / f["file"])
            for f in exp.figures if "draw" in f]


def _result_figures(result: Any, folder: Path) -> list[Path]:
    """The figures a result names (absolute, relative to ``folder``, or to the working folder)."""
    paths = []
    for f in (result.get("figures") or []) if isinstance(result, Mapping) else []:
        p = Path(f)
        paths.append(folder / p if not p.is_absolute() and (folder / p).exists() else p)
    return [p.resolve() for p in paths]


def figure_rows(exp: Experiment, result: Any, folder: Path) -> list[dict[str, Any]]:
    """The declared figures (with what they show), then any other figure the result names;
    ``file`` relative to ``folder``, ``drawn`` False where the file is missing."""
    rows = [{"file": f["file"], "shows": f.get("shows", ""), "drawn": (folder / f["file"]).is_file()}
            for f in exp.figures]
    declared = {(folder / r["file"]).resolve() for r in rows}
    for p in _result_figures(result, folder):
        if p not in declared and p.is_file():
            rows.append({"file": os.path.relpath(p, folder.resolve()), "shows": "", "drawn": True})
    return rows


def link_rows(exp: Experiment, folder: Path) -> list[dict[str, Any]]:
    """The other files of the run the report links (``[[links]]``), ``present`` where written."""
    return [{"file": f["file"], "shows": f.get("shows", ""), "present": (folder / f["file"]).is_file()}
            for f in exp.links]
