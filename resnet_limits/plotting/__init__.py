"""Every figure of the library (layer 3 of DESIGN.md), from plain arrays and dicts; nothing here
computes an analysis and nothing imports the rest of ``resnet_limits``.

Each drawing function returns a :class:`matplotlib.figure.Figure` (fixed layout, Agg backend);
:func:`save` writes one (atomically) and closes it::

    plotting.save(plotting.fig6_denoised(result), out / "fig6_denoised.png")

- :mod:`~resnet_limits.plotting.analysis`: SP Figs 1-6 and App. B (Figs 9-10) of a run, and the
  figures of two runs in one panel (SP Figs 2, 3, 5, 9, 10: synthetic dashed, MNIST solid);
- :mod:`~resnet_limits.plotting.conv`: SP Figs 7-8 of a convolutional run;
- :mod:`~resnet_limits.plotting.studies`: the studies' figures (strong convergence, SP §4;
  backpropagation, AA §5; a trained network against its limit; depth parametrisations; the width
  phase diagram);
- :mod:`~resnet_limits.plotting.coupled`: the coupled-depths study (nested ladders);
- :mod:`~resnet_limits.plotting.panels`: colours, run styles and the log-log panel they share.

:func:`analysis_figures`, :func:`conv_figures` and :data:`TWO_RUN_FIGURES` draw and save.

SP: Cohen, Cont, Rossier, Xu, *Scaling Properties of Deep Residual Networks*, ICML 2021.
AA: Cont, Rossier, Xu, *Asymptotic Analysis of Deep Residual Networks*.
"""

import matplotlib

matplotlib.use("Agg")  # the one place the backend is set: files only, no display

from .analysis import (  # noqa: E402
    DPI,
    TWO_RUN_FIGURES,
    analysis_figures,
    biases_two_runs,
    fig1_weights,
    fig2_scaling,
    fig3_hypothesis,
    fig4_delta,
    fig6_denoised,
    figB_biases,
    hypothesis_two_runs,
    scaling_two_runs,
)
from .conv import conv_figures, fig7_conv_norms, fig8_conv_hypotheses  # noqa: E402
from .coupled import coupled_distances, ladder_weight_functions  # noqa: E402
from .panels import MNIST, ONE_RUN, SYNTHETIC, RunStyle, loglog_panel  # noqa: E402
from .save import save  # noqa: E402
from .studies import (  # noqa: E402
    depth_lines,
    network_vs_limit,
    parametrization_limit_errors,
    parametrization_lr_transfer,
    paths_vs_limit,
    strong_errors,
    strong_errors_panels,
    width_phase_diagram,
)

__all__ = [
    "DPI",
    "ladder_weight_functions",
    "MNIST",
    "ONE_RUN",
    "SYNTHETIC",
    "TWO_RUN_FIGURES",
    "RunStyle",
    "analysis_figures",
    "biases_two_runs",
    "conv_figures",
    "coupled_distances",
    "depth_lines",
    "fig1_weights",
    "fig2_scaling",
    "fig3_hypothesis",
    "fig4_delta",
    "fig6_denoised",
    "fig7_conv_norms",
    "fig8_conv_hypotheses",
    "figB_biases",
    "hypothesis_two_runs",
    "loglog_panel",
    "network_vs_limit",
    "parametrization_limit_errors",
    "parametrization_lr_transfer",
    "paths_vs_limit",
    "save",
    "scaling_two_runs",
    "strong_errors",
    "strong_errors_panels",
    "width_phase_diagram",
]
