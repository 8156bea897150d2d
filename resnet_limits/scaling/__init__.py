"""Scaling analysis of trained weights (SP §2.1-2.3, Table 1, eqs. 5-8, Fig. 6).

Pure functions of arrays (layer 1 of DESIGN.md: no files, no printing); the analysis of a whole
sweep folder, which reads the run and writes ``analysis.json`` and figures, is
:func:`resnet_limits.analysis.analyze_run`. One idea per module, every public name importable
from ``resnet_limits.scaling``:

- ``norms``: :func:`table1`, the Table-1 quantities (maximum norm, beta-scaled norm of
  increments, cumulative sum norm, root sum of squares) of a stacked tensor, vectorised over
  leading (seed) axes (:func:`table1_loop` is the plain-loop reference);
  :func:`analysed_tensors`, A and b (or |delta_k| A_k, |delta_k| b_k for ReLU, SP Remark 2.2)
  and |delta| of a :class:`~resnet_limits.models.ResNetParams`; :func:`depth_norms`,
  :func:`valid_seeds` and the (seed x depth) tables :func:`seeds_by_depth`, :func:`pad_seeds`.
- ``fits``: :func:`loglog_fit`; :func:`fit_seeds` / :func:`summarize_exponent` /
  :func:`fit_exponents` / :func:`fit_alpha`: alpha, beta, nu (SP §2.3 steps 1-3) per seed by
  log-log least squares, then mean +- sd over seeds; :func:`nanmean_seeds`, :func:`median_at`.
- ``trend``: :func:`rescaled_cumsum`, :func:`trend_integral`, :func:`pooled_trend`,
  :func:`own_trend`, :func:`denoise`, :func:`split_trend_noise`: the trend/noise split of SP
  eqs. 6-7 and the quadratic variation of the noise (SP eq. 8).
- ``hypotheses``: :func:`hypothesis_test`, SP §2.3 steps 1-5 ending in a verdict per tensor
  (:data:`THRESHOLDS`); :func:`analyze_tensor_family`, steps 2-5 on tensors held in memory;
  :data:`PAPER_VALUES`.
- ``denoised``: :func:`seed_losses` of trained and denoised networks (SP Fig. 6).
- ``conv_norms``: :func:`conv_spectral_norm` / :func:`conv_spectral_norms` (batched): operator
  norms of convolutions by FFT and SVD (Sedghi et al. 2019), in JAX, jit- and vmap-able.
- ``conv_analysis``: :func:`conv_block_norms` (operator norms of every Delta_k, A_k and of their
  increments), :func:`conv_table1`, :func:`conv_exponents` (alpha, beta of SP §3.2, Figs 7-8),
  :data:`PAPER_TABLE5`.

The analysis of weights is numpy float64 (cheap next to training); networks are evaluated,
and convolution norms computed, in JAX.
"""

from resnet_limits.scaling.conv_analysis import (
    CONV_KERNELS,
    PAPER_CONV,
    PAPER_TABLE5,
    conv_block_norms,
    conv_exponents,
    conv_table1,
    kernel_operator_norms,
)
from resnet_limits.scaling.conv_norms import conv_singular_values, conv_spectral_norm, conv_spectral_norms
from resnet_limits.scaling.denoised import denoised_params, pad_depth, seed_losses
from resnet_limits.scaling.fits import (
    finite_or_none,
    LogLogFit,
    fit_alpha,
    fit_exponents,
    fit_seeds,
    loglog_fit,
    median_at,
    nanmean_seeds,
    summarize_exponent,
    usable_beta,
)
from resnet_limits.scaling.hypotheses import (
    PAPER_VALUES,
    THRESHOLDS,
    analyze_tensor_family,
    hypothesis_test,
    noise_summary,
)
from resnet_limits.scaling.norms import (
    ENTRY_NDIM,
    analysed_tensors,
    depth_norms,
    frobenius,
    is_homogeneous,
    pad_seeds,
    seeds_by_depth,
    table1,
    table1_loop,
    valid_seeds,
)
from resnet_limits.scaling.roughness import (
    cumulative_path,
    dyadic_lags,
    holder_exponent,
    seed_holder_exponents,
    variogram,
    weights_holder_exponent,
)
from resnet_limits.scaling.trend import (
    SPLIT_KEYS,
    denoise,
    own_grid,
    own_trend,
    pooled_trend,
    rescaled_cumsum,
    split_common_and_own,
    split_trend_noise,
    trend_depths,
    trend_grid,
    trend_integral,
    trend_path,
    trend_weights,
)

from resnet_limits.scaling import conv_analysis as _conv_analysis

__all__ = [
    "finite_or_none",
    *_conv_analysis.__all__,
    "ENTRY_NDIM",
    "LogLogFit",
    "PAPER_VALUES",
    "SPLIT_KEYS",
    "THRESHOLDS",
    "analysed_tensors",
    "analyze_tensor_family",
    "conv_singular_values",
    "conv_spectral_norm",
    "conv_spectral_norms",
    "cumulative_path",
    "denoise",
    "denoised_params",
    "depth_norms",
    "dyadic_lags",
    "fit_alpha",
    "fit_exponents",
    "fit_seeds",
    "frobenius",
    "holder_exponent",
    "seed_holder_exponents",
    "hypothesis_test",
    "is_homogeneous",
    "loglog_fit",
    "median_at",
    "nanmean_seeds",
    "noise_summary",
    "own_grid",
    "own_trend",
    "pad_depth",
    "pad_seeds",
    "pooled_trend",
    "rescaled_cumsum",
    "seed_losses",
    "seeds_by_depth",
    "split_common_and_own",
    "split_trend_noise",
    "summarize_exponent",
    "table1",
    "table1_loop",
    "trend_depths",
    "trend_grid",
    "trend_integral",
    "trend_path",
    "trend_weights",
    "usable_beta",
    "valid_seeds",
    "variogram",
    "weights_holder_exponent",
]
