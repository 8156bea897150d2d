"""The analysis of a run folder (layer 3): ``RUN_DIR`` -> ``analysis.json``, figures, text.

* ``fc``: sweeps of the fully-connected ResNet (SP §2.3 steps 1-5, Table 1, Figs 1-6);
* ``conv``: sweeps of the convolutional ResNet on CIFAR-10 (SP §3.2, Figs 7-8, Table 5).

:func:`analyze_run` and :func:`format_analysis` choose by the run's data set.
"""

from __future__ import annotations

from resnet_limits.analysis import conv, fc
from resnet_limits.run import Run

__all__ = ["analyze_run", "format_analysis"]


def analyze_run(run, *, progress: bool = True, figures: bool = True, **options) -> dict:
    """The scaling analysis of a run (a :class:`~resnet_limits.run.Run`, or a folder to open as
    one): :func:`.conv.analyze_conv_run` for a convolutional run, else :func:`.fc.analyze_run`
    (``options`` are its keyword arguments)."""
    run = run if isinstance(run, Run) else Run.open(run)
    if run.is_conv:
        return conv.analyze_conv_run(run, progress=progress, figures=figures)
    return fc.analyze_run(run, progress=progress, figures=figures, **options)


def format_analysis(result: dict) -> str:
    """The printed summary of :func:`analyze_run`'s result."""
    if result.get("kind") == "conv":
        return conv.format_conv_analysis(result)
    return fc.format_analysis(result)
