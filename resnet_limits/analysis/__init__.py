"""The analysis of a run folder (layer 3): ``RUN_DIR`` -> ``analysis.json``, figures, text.

* ``fc``: sweeps of the fully-connected ResNet (SP §2.3 steps 1-5, Table 1, Figs 1-6);
* ``conv``: sweeps of the convolutional ResNet on CIFAR-10 (SP §3.2, Figs 7-8, Table 5).

:func:`analyze_run` and :func:`format_analysis` choose by the run's data set.
"""

from __future__ import annotations

from pathlib import Path

from resnet_limits import sweeps
from resnet_limits.analysis import conv, fc
from resnet_limits.errors import UsageError

__all__ = ["analyze_run", "format_analysis"]


def analyze_run(run_dir, *, progress: bool = True, figures: bool = True, **options) -> dict:
    """The scaling analysis of a run folder: :func:`.conv.analyze_conv_run` for a CIFAR-10
    run, else :func:`.fc.analyze_run` (``options`` are its keyword arguments)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder")
    if sweeps.load_config(run_dir).get("dataset") == "cifar10":
        return conv.analyze_conv_run(run_dir, progress=progress, figures=figures)
    return fc.analyze_run(run_dir, progress=progress, figures=figures, **options)


def format_analysis(result: dict) -> str:
    """The printed summary of :func:`analyze_run`'s result."""
    if result.get("kind") == "conv":
        return conv.format_conv_analysis(result)
    return fc.format_analysis(result)
