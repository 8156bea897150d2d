"""SP §2.3 steps 1-5: from exponents and the trend/noise split to a verdict per tensor.

:func:`hypothesis_test` decides between Hypothesis 1 (a smooth limit), Hypothesis 2 (a
diffusive limit) and neither, with the thresholds :data:`THRESHOLDS`; :func:`noise_summary`
gives it the step-4 numbers at the largest depths; :func:`analyze_tensor_family` runs the
whole of steps 2-5 on one family of tensors held in memory. :data:`PAPER_VALUES` are the
paper's numbers to set beside ours.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from resnet_limits.scaling.fits import finite_or_none, fit_exponents, median_at, nanmean_seeds, usable_beta
from resnet_limits.scaling.norms import seeds_by_depth, table1
from resnet_limits.scaling.trend import (
    SPLIT_KEYS,
    pooled_trend,
    split_common_and_own,
    trend_depths,
    trend_grid,
    trend_path,
)

__all__ = ["PAPER_VALUES", "THRESHOLDS", "analyze_tensor_family", "hypothesis_test", "noise_summary"]

#: Values to compare with (SP §3.1, Table 4, App. B; our runs of the authors' public code).
PAPER_VALUES: dict[str, dict[str, Any]] = {
    "tanh-synthetic": {
        "alpha": 0.73, "alpha_sd": 0.02, "beta": 0.29, "beta_sd": 0.05,
        "verdict_A": "Hypothesis 1", "nu": 0.5,
        "source": "SP Table 4 (eta=.01, B=32, 5 seeds); SP Figs 2-3",
        "authors_code": "Adam, seed 0: L 3-2116 alpha .69+-.01, beta .23 (A) / .28 (b); "
                        "L 3-7583 alpha .61+-.03, beta .18 / .28; "
                        "SGD L 3-9100 alpha -.05+-.02, beta .19 / .49",
    },
    "relu-synthetic": {
        "alpha": None, "beta": 0.8, "verdict_A": "Hypothesis 2",
        "source": "SP Fig. 4 (beta = 0.8 from the cumulative sum norm of |delta|A)",
        "authors_code": "Adam L 3-2116: beta .71 (|delta|A) / .90 (|delta|b)",
    },
    "tanh-mnist": {"alpha": 0.7, "beta": 0.2, "verdict_A": "Hypothesis 1", "source": "SP Fig. 2"},
    "relu-mnist": {"alpha": None, "beta": 0.9, "verdict_A": "Hypothesis 2", "source": "SP Fig. 4"},
}

#: Decision thresholds of :func:`hypothesis_test` (our choices; the paper decides by eye).
THRESHOLDS: dict[str, float] = {
    # step 3: the beta-scaled increments vanish if nu > this and nu - 2 stderr > 0
    "nu_vanish": 0.1,
    # step 4: noise is negligible if the per-layer noise/trend ratio sqrt(QV)/RSS(trend) < this
    "noise_negligible": 0.3,
    # step 4: a residual whose increments have lag-1 autocorrelation above this is smooth in k
    # (the trend drifting between finite depths), not diffusive noise
    "noise_smooth_autocorr": 0.5,
    # step 5: the root sum of squares is bounded if its log-log slope is below this
    "rss_bounded_slope": 0.1,
    # sparse regime: the share of the largest layer in the RSS does not vanish with L
    # (slope kappa of max_norm/rss above this; smooth or diffusive weights give -1/2) and the
    # maximum norm does not decay (its decay exponent below the next threshold)
    "sparse_kappa": -0.25,
    "sparse_max_decay": 0.15,
}


def hypothesis_test(
    exps: Mapping[str, Mapping[str, Any]],
    noise_to_trend: float,
    *,
    noise_autocorr: float = float("nan"),
    cross_depth_noise_to_trend: float = float("nan"),
    alpha: Optional[Mapping[str, Any]] = None,
    qv_largest: float = float("nan"),
    label: str = "A",
    thresholds: Mapping[str, float] = THRESHOLDS,
) -> dict[str, Any]:
    """SP §2.3 steps 1-5 for one tensor, ending in a verdict with the numbers that decided it.

    ``exps`` is :func:`~resnet_limits.scaling.fit_exponents`' output, ``noise_to_trend`` the
    per-layer noise/trend ratio and ``noise_autocorr`` the lag-1 autocorrelation of the noise
    increments of :func:`~resnet_limits.scaling.split_trend_noise` at the largest depths (with
    each network's own coarse-grained trend, :func:`~resnet_limits.scaling.own_trend`; see
    :func:`noise_summary`), ``cross_depth_noise_to_trend`` the same ratio against the trend
    common to the largest depths (reported, not used: it also counts differences between
    independently trained networks), ``alpha`` the delta fit. Verdicts:
    "Hypothesis 1" (beta-scaled increments vanish and the residual is negligible or smooth in
    k), "Hypothesis 2" (non-negligible diffusive noise W, or increments that do not vanish),
    "neither (sparse)" (the maximum norm does not decay and a few layers carry the root sum of
    squares), "neither (inconclusive)" otherwise. Thresholds: :data:`THRESHOLDS`.
    """
    th = dict(thresholds)
    beta, nu = exps["beta"], exps["nu"]
    rss, kappa, bmax = exps["rss_slope"], exps["kappa"], exps["beta_max"]
    nu_se = nu["stderr"] if math.isfinite(nu["stderr"]) else 0.0
    vanish = bool(nu["mean"] > th["nu_vanish"] and nu["mean"] - 2 * nu_se > 0)
    negligible = bool(math.isfinite(noise_to_trend) and noise_to_trend < th["noise_negligible"])
    smooth = bool(math.isfinite(noise_autocorr) and noise_autocorr > th["noise_smooth_autocorr"])
    rss_bounded = bool(rss["mean"] < th["rss_bounded_slope"])
    beta_half = bool(beta["mean"] >= 0.5)
    sparse = bool(kappa["mean"] > th["sparse_kappa"] and bmax["mean"] < th["sparse_max_decay"])
    steps = {
        "1_alpha": None if alpha is None else {"alpha": finite_or_none(alpha["mean"]), "sd": finite_or_none(alpha["sd"])},
        "2_beta": {"beta": finite_or_none(beta["mean"]), "sd": finite_or_none(beta["sd"]), "beta_from_max_norm": finite_or_none(bmax["mean"])},
        "3_increments": {"nu": finite_or_none(nu["mean"]), "stderr": finite_or_none(nu["stderr"]), "vanish": vanish,
                         "rule": f"nu > {th['nu_vanish']} and nu - 2 stderr > 0"},
        "4_trend_noise": {"noise_to_trend": finite_or_none(noise_to_trend), "negligible": negligible,
                          "noise_lag1_autocorr": finite_or_none(noise_autocorr), "smooth_residual": smooth,
                          "cross_depth_noise_to_trend": finite_or_none(cross_depth_noise_to_trend),
                          "rule": f"negligible: sqrt(QV)/RSS(trend) < {th['noise_negligible']}; smooth "
                                  f"(not diffusive): lag-1 autocorrelation > {th['noise_smooth_autocorr']}"},
        "5_quadratic_variation": {"beta_ge_half": beta_half, "rss_slope": finite_or_none(rss["mean"]),
                                  "rss_bounded": rss_bounded, "qv_largest_depth": finite_or_none(qv_largest)},
        "sparsity": {"kappa": finite_or_none(kappa["mean"]), "max_norm_decay": finite_or_none(bmax["mean"]), "sparse": sparse,
                     "rule": f"kappa > {th['sparse_kappa']} and max-norm decay < {th['sparse_max_decay']}"},
    }
    verdict, reason, finite_qv = _verdict(exps, noise_to_trend, noise_autocorr, steps)
    return {"tensor": label, "verdict": verdict, "reason": reason,
            "finite_quadratic_variation": finite_qv, "steps": steps}


def _verdict(exps: Mapping[str, Mapping[str, Any]], noise_to_trend: float, noise_autocorr: float,
             steps: Mapping[str, Any]) -> tuple[str, str, Optional[bool]]:
    """The verdict of :func:`hypothesis_test` from its decided ``steps``, the reason in words, and
    (under Hypothesis 2) whether W has finite quadratic variation."""
    nu, kappa, bmax = exps["nu"]["mean"], exps["kappa"]["mean"], exps["beta_max"]["mean"]
    vanish = steps["3_increments"]["vanish"]
    negligible, smooth = steps["4_trend_noise"]["negligible"], steps["4_trend_noise"]["smooth_residual"]
    if steps["sparsity"]["sparse"]:
        return "neither (sparse)", (f"max norm does not decay (exponent {bmax:.2f}) and the largest layer keeps "
                                    f"its share of the RSS (kappa {kappa:.2f})"), None
    if vanish and (negligible or smooth):
        if negligible:
            return "Hypothesis 1", (f"beta-scaled increments vanish like L^-{nu:.2f} and the noise is negligible "
                                    f"(noise/trend {noise_to_trend:.2g})"), None
        return "Hypothesis 1", (f"beta-scaled increments vanish like L^-{nu:.2f}; the residual (noise/trend "
                                f"{noise_to_trend:.2g}) is smooth in k (lag-1 autocorrelation {noise_autocorr:.2f}), "
                                f"a finite-depth drift of the trend, not diffusive noise"), None
    if (not negligible and math.isfinite(noise_to_trend)) or not vanish:
        qv = steps["5_quadratic_variation"]
        finite_qv = bool(qv["beta_ge_half"] and qv["rss_bounded"])
        why = []
        if not negligible:
            rough = f", lag-1 autocorrelation {noise_autocorr:.2f}" if math.isfinite(noise_autocorr) else ""
            why.append(f"noise/trend {noise_to_trend:.2g} is not negligible{rough}")
        if not vanish:
            why.append(f"beta-scaled increments do not vanish (nu = {nu:.2f})")
        return "Hypothesis 2", "; ".join(why) + (
            "; beta >= 1/2 and bounded RSS: W has finite quadratic variation" if finite_qv else ""), finite_qv
    return "neither (inconclusive)", "noise/trend ratio unavailable", None


def noise_summary(own: Mapping[str, np.ndarray], common: Mapping[str, np.ndarray], columns: Sequence[int],
                  ) -> dict[str, float]:
    """The step-4 and step-5 numbers of :func:`hypothesis_test` (its keyword arguments).

    ``own`` and ``common`` hold the :data:`~resnet_limits.scaling.SPLIT_KEYS` numbers (S, n_depths)
    of :func:`~resnet_limits.scaling.split_common_and_own` (own and common trend); ``columns``
    are the largest depths'. The ratios and autocorrelation are medians over those depths and
    all seeds; ``qv_largest`` is the seed mean of the quadratic variation at the largest depth.
    """
    return {
        "noise_to_trend": median_at(own["noise_to_trend"], columns),
        "noise_autocorr": median_at(own["noise_lag1_autocorr"], columns),
        "cross_depth_noise_to_trend": median_at(common["noise_to_trend"], columns),
        "qv_largest": float(nanmean_seeds(own["quadratic_variation"])[-1]),
    }


def analyze_tensor_family(
    tensors: Mapping[int, np.ndarray],
    entry_ndim: int,
    *,
    valid: Optional[Mapping[int, np.ndarray]] = None,
    alpha: Optional[Mapping[str, Any]] = None,
    n_trend: int = 4,
    max_grid: int = 200,
    label: str = "A",
) -> dict[str, Any]:
    """SP §2.3 steps 2-5 for one family of stacked tensors given as arrays, one per depth.

    ``tensors[L]``: (S, L, *entry) weights of S networks of depth L (independent networks per
    depth, as trained networks are); ``valid[L]``: (S,) bool, False for diverged networks.
    Returns the Table-1 quantities (S, n_depths), the exponent fits, the trend integral
    (S, G+1, *entry; pooled over seeds, see :func:`~resnet_limits.scaling.pooled_trend`) from
    the ``n_trend`` largest depths, the split at every depth, and the hypothesis-test verdict.
    :func:`resnet_limits.analysis.analyze_run` does the same on a sweep folder, reading one
    depth at a time.
    """
    depths = sorted(int(L) for L in tensors)
    S = np.asarray(tensors[depths[0]]).shape[0]
    ok = seeds_by_depth([None if valid is None else valid[L] for L in depths], S, True)
    per_depth = [table1(tensors[L], entry_ndim) for L in depths]
    q = {k: seeds_by_depth([t[k] for t in per_depth], S) for k in per_depth[0]}
    exps = fit_exponents(depths, q, ok)
    beta = usable_beta(exps)
    td = trend_depths(depths, n_trend)
    G = trend_grid(td, max_grid)
    cols = [depths.index(L) for L in td]
    paths = np.stack([trend_path(tensors[L], beta, G, entry_ndim, S) for L in td])
    I = pooled_trend(paths, ok[:, cols].T.astype(float))
    splits, own = {}, {}
    for i, L in enumerate(depths):
        T = np.nan_to_num(np.asarray(tensors[L], np.float64))
        splits[L], own[L] = split_common_and_own(T, I, beta, entry_ndim, max_grid, ok[:, i])

    def by_depth(sp):
        return {k: np.stack([sp[L][k] for L in depths], axis=1) for k in SPLIT_KEYS}

    noise = noise_summary(by_depth(own), by_depth(splits), cols)
    test = hypothesis_test(exps, **noise, alpha=alpha, label=label)
    return {"depths": depths, "table1": q, "valid": ok, "exponents": exps, "beta_used": beta,
            "trend_depths": td, "n_grid": G, "trend_integral": I, "splits": splits, "own_splits": own,
            "noise_to_trend": noise["noise_to_trend"], "noise_autocorr": noise["noise_autocorr"],
            "cross_depth_noise_to_trend": noise["cross_depth_noise_to_trend"],
            "test": test, "verdict": test["verdict"]}
