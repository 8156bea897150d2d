"""The scaling analysis of a sweep folder: ``RUN_DIR`` -> ``analysis.json``, figures and a text
summary (``resnet-limits analyze RUN_DIR``; SP §2.2-2.3 steps 1-5, Table 1, Fig. 6).

Layer 3: reads the run through its :class:`~resnet_limits.run.Run` (each weight file read and
checked once, then cached), computes with the pure functions of :mod:`resnet_limits.scaling`,
draws with :mod:`resnet_limits.plotting`. Three passes over the depths:

1. Table-1 quantities, max |delta| and the recorded metrics of every finished depth; a depth
   whose files are damaged (:class:`~resnet_limits.errors.DamagedRunError`) is left out and
   named in ``result["left_out"]``; then the exponent fits (alpha, beta, nu per seed);
2. the trend integral common to the ``n_trend`` largest depths and all seeds (SP eq. 7);
3. at every depth the trend/noise split (common and each network's own trend, SP eqs. 6, 8)
   and the training loss of the trained and denoised networks (SP Fig. 6; skipped for imported
   weights, which come without training data).

Then the hypothesis tests per tensor, ``analysis.json`` (the returned dict) and the figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np
from tqdm import tqdm

from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.models import ResNetParams, depth_capacity
from resnet_limits.scaling import (
    ENTRY_NDIM,
    PAPER_VALUES,
    SPLIT_KEYS,
    THRESHOLDS,
    analysed_tensors,
    denoised_params,
    depth_norms,
    fit_alpha,
    fit_exponents,
    frobenius,
    hypothesis_test,
    is_homogeneous,
    loglog_fit,
    median_at,
    nanmean_seeds,
    noise_summary,
    pooled_trend,
    seed_holder_exponents,
    seed_losses,
    seeds_by_depth,
    split_common_and_own,
    trend_depths,
    trend_grid,
    trend_path,
    trend_weights,
    usable_beta,
    valid_seeds,
)
from resnet_limits.run import Run
from resnet_limits.sweeps.folder import json_ready

__all__ = ["analyze_run", "format_analysis"]

NAMES = ("A", "b")
#: Per-seed metrics of a depth's JSON carried into the analysis.
RECORDED = ("train_loss", "test_loss", "updates")
MIN_DEPTHS = 3
#: The smallest depth whose weight path gets a Hoelder exponent (lags 1, 2 <= L/16).
MIN_HOLDER_DEPTH = 32
#: Why an imported run has no SP Fig. 6 (``result["denoised"]["skipped"]``).
NO_TRAINING_DATA = "imported weights: no training data"


class _Run(NamedTuple):
    """What every pass needs to know about the run."""

    run: Run
    activation: str
    delta_mode: str
    n_seeds: int
    progress: bool
    capacity: int  # the layers every depth's networks are stacked in for their losses: one program

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def has_delta(self) -> bool:
        return self.delta_mode != "none"

    def bar(self, depths: Sequence[int], desc: str):
        return tqdm(depths, desc=f"analyse: {desc}", unit="depth", disable=not self.progress)

    def load(self, L: int) -> tuple[ResNetParams, dict[str, Any], dict[str, Any]]:
        """Weights, metrics and :func:`~resnet_limits.scaling.analysed_tensors` of depth ``L``
        (the weights from the run's cache after the first pass)."""
        params = self.run.params(L)
        return params, self.run.metrics(L), analysed_tensors(params, self.delta_mode, self.activation)


class _Norms(NamedTuple):
    """Pass 1: (S, n_depths) tables over the intact depths."""

    depths: list[int]
    table1: dict[str, dict[str, np.ndarray]]
    delta_max: np.ndarray
    valid: np.ndarray
    recorded: dict[str, np.ndarray]
    converged: np.ndarray
    diverged: np.ndarray
    holder: dict[str, np.ndarray]
    labels: dict[str, str]


# ------------------------------------------------------------------ the run ----------

def analyze_run(
    run: Run,
    *,
    progress: bool = True,
    n_trend: int = 4,
    max_grid: int = 200,
    max_eval: int = 8192,
    figures: bool = True,
) -> dict:
    """The scaling analysis of a run of the fully-connected ResNet (SP §2.3 steps 1-5, SP Fig. 6).

    Reads every finished depth, computes the Table-1 quantities per depth and seed, fits
    alpha, beta, nu (per seed; diverged seeds left out), splits the weights into trend and
    noise (the trend integral is the mean rescaled cumulative sum of all seeds at the ``n_trend``
    largest depths, on a grid of min(``max_grid``, smallest such depth) points), measures the
    noise's quadratic variation, rebuilds every network with denoised weights and evaluates
    its training loss (on at most ``max_eval`` training points), and runs the hypothesis
    tests. Writes ``RUN_DIR/analysis.json`` (the returned dict) and PNG figures in ``run.figures``.

    A depth whose files are damaged is left out; ``result["left_out"]`` maps it (as a string)
    to a one-line message ({} when nothing is left out). Raises :class:`UsageError` for a
    folder that is not a run or has fewer than 3 intact finished depths, and
    :class:`~resnet_limits.errors.DamagedRunError` for an unreadable ``config.json``.
    """
    t_start = time.perf_counter()
    cfg = run.config
    _need_depths(run.path, run.depths, {str(L): m for L, m in run.damaged.items()})
    ctx = _Run(run, cfg.activation, cfg.delta_mode, int(cfg.seeds), progress, depth_capacity(max(run.depths)))
    run_dir = run.path
    norms, left_out = _read_norms(ctx, run.depths)
    left_out = {**{str(L): " ".join(m.split()) for L, m in run.damaged.items()}, **left_out}
    alpha = fit_alpha(norms.depths, norms.delta_max, norms.valid) if ctx.has_delta else None
    exps = {n: fit_exponents(norms.depths, norms.table1[n], norms.valid) for n in NAMES}
    beta = {n: usable_beta(exps[n]) for n in NAMES}
    td = trend_depths(norms.depths, n_trend)
    G = trend_grid(td, max_grid)
    I = _common_trends(ctx, norms, td, beta, G)
    x = y = None
    if run.has_data:  # imported weights come without their training data
        data = run.dataset()
        x = np.asarray(data.x_train[:max_eval], np.float32)
        y = np.asarray(data.y_train[:max_eval], np.float32)
    seed = _figure_seed(norms)
    entry = {n: _figure_entry(n, cfg.activation, int(cfg.width), trend_weights(I[n][seed], ENTRY_NDIM[n]))
             for n in NAMES}
    split, figdata, losses = _split_and_denoise(ctx, norms, I, beta, x, y, max_grid, seed, entry)
    cols = [norms.depths.index(L) for L in td]
    tests, decomposition = {}, {}
    for n in NAMES:
        noise = noise_summary(split["own"][n], split["common"][n], cols)
        tests[n] = hypothesis_test(exps[n], **noise, alpha=alpha, label=norms.labels[n])
        decomposition[n] = _decomposition(n, norms, split, noise, beta[n], td, G, max_grid, I[n], entry[n])
    result = _header(run_dir, cfg, norms, left_out)
    result.update(_exponent_fields(alpha, exps))
    result.update(verdicts={n: tests[n]["verdict"] for n in NAMES}, verdict=tests["A"]["verdict"],
                  hypothesis_tests=tests, exponents={"alpha": alpha, **exps},
                  table1=_table1_entries(norms, beta, ctx.has_delta), decomposition=decomposition,
                  roughness=_roughness(norms))
    result.update(paper=PAPER_VALUES.get(cfg.preset), thresholds=dict(THRESHOLDS), figures=[])
    result = json_ready(result)
    if figures:  # while the device computes the losses of SP Fig. 6
        from resnet_limits import plotting

        result["figures"] = plotting.analysis_figures(result, figdata, run.figures, denoised=False)
    if x is None:
        result.update(denoised={"skipped": NO_TRAINING_DATA}, denoised_over_trained_largest=None,
                      denoised_own_over_trained_largest=None)
    else:
        result.update(json_ready(_denoised_entries(norms, losses(), cols, int(x.shape[0]), cfg.epsilon)))
        if figures:
            result["figures"].append(plotting.save(plotting.fig6_denoised(result), run.figures / "fig6_denoised.png",
                                                   dpi=plotting.DPI))
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    run.write_json("analysis.json", result)
    return result


def _need_depths(run_dir: Path, depths: Sequence[int], left_out: Mapping[str, str]) -> None:
    if len(depths) >= MIN_DEPTHS:
        return
    if not left_out:
        raise UsageError(f"{run_dir} has {len(depths)} finished depth(s) ({list(depths)}); "
                         f"the analysis needs at least {MIN_DEPTHS}")
    raise UsageError(f"{run_dir} has {len(depths)} intact finished depth(s) ({list(depths)}) and damaged "
                     f"depth(s) {', '.join(left_out)}; the analysis needs at least {MIN_DEPTHS}: rerun the "
                     "sweep to train the damaged depths again")


# ------------------------------------------------------------------ pass 1 -----------

def _read_norms(run: _Run, depths: Sequence[int]) -> tuple[_Norms, dict[str, str]]:
    """Pass 1: per depth the Table-1 quantities, max |delta|, valid seeds and recorded metrics;
    damaged depths left out (second value: depth -> one-line message)."""
    per_depth, left_out = {}, {}
    labels = {"A": "A", "b": "b"}
    for L in run.bar(depths, "norms"):
        try:
            params, m, tens = run.load(L)
        except DamagedRunError as e:
            left_out[str(L)] = " ".join(str(e).split())  # one line
            continue
        labels = tens["labels"]
        per_depth[L] = _depth_columns(params, m, tens)
    kept = sorted(per_depth)
    _need_depths(run.run_dir, kept, left_out)

    def table(get, fill=np.nan):
        return seeds_by_depth([get(per_depth[L]) for L in kept], run.n_seeds, fill)

    norms = _Norms(
        depths=kept,
        table1={n: {k: table(lambda c: c["norms"][n][k]) for k in per_depth[kept[0]]["norms"][n]} for n in NAMES},
        delta_max=table(lambda c: c["norms"]["delta_max"]),
        valid=table(lambda c: c["valid"], False),
        recorded={k: table(lambda c: c[k]) for k in RECORDED},
        converged=table(lambda c: c["converged"], False),
        diverged=table(lambda c: c["diverged"], False),
        holder={n: table(lambda c: c[f"holder_{n}"]) for n in NAMES},
        labels=labels,
    )
    return norms, left_out


def _depth_columns(params: ResNetParams, metrics: Mapping[str, Any], tens: Mapping[str, Any]) -> dict[str, Any]:
    """One depth's per-seed numbers: Table-1 quantities, valid seeds and the recorded metrics."""
    S = np.asarray(params.A).shape[0]
    out: dict[str, Any] = {"norms": depth_norms(tens, params.delta is not None)}
    diverged = np.asarray(metrics.get("diverged", [False] * S), bool)
    out["valid"] = valid_seeds(params, diverged)
    for k in RECORDED:
        out[k] = np.array([np.nan if v is None else v for v in metrics.get(k, [None] * S)], np.float64)
    out["converged"] = np.asarray(metrics.get("converged", [False] * S), bool)
    out["diverged"] = diverged
    L = np.shape(params.A)[1]
    for n in NAMES:  # roughness of each network's weight path (1/2 Brownian, 1 smooth); needs lags 1..L/16
        out[f"holder_{n}"] = seed_holder_exponents(tens[n]) if L >= MIN_HOLDER_DEPTH else np.full(S, np.nan)
    return out


# ------------------------------------------------------------------ pass 2 -----------

def _common_trends(run: _Run, norms: _Norms, td: Sequence[int], beta: Mapping[str, float], G: int,
                   ) -> dict[str, np.ndarray]:
    """Pass 2: the trend integral of A and b common to the depths ``td`` and all valid seeds
    (SP eq. 7, :func:`~resnet_limits.scaling.pooled_trend`), (S, G+1, *entry)."""
    paths: dict[str, list] = {n: [] for n in NAMES}
    for L in run.bar(td, "trend"):
        tens = run.load(L)[2]
        for n in NAMES:
            paths[n].append(trend_path(tens[n], beta[n], G, ENTRY_NDIM[n], run.n_seeds))
    weights = norms.valid[:, [norms.depths.index(L) for L in td]].T.astype(float)
    return {n: pooled_trend(np.stack(paths[n]), weights) for n in NAMES}


# ------------------------------------------------------------------ pass 3 -----------

def _split_and_denoise(run: _Run, norms: _Norms, I, beta, x, y, max_grid: int, seed: int, entry,
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass 3: at every depth the trend/noise split of A and b against the common and the own
    trend, and the training loss of the trained and denoised networks (SP eqs. 6-8, Fig. 6).

    Returns the (S, n_depths) tables ``{"common": {n: {key: ...}}, "own": ...}``, the arrays the
    figures show (network ``seed``, entry ``entry[n]``), and a function that waits for the losses
    (dispatched to the device, one program for every depth) and returns their (S, n_depths)
    tables ``trained_loss``, ``denoised_loss``, ``denoised_own_loss``: the caller draws the figures
    that do not need them meanwhile.
    """
    depths = norms.depths
    fig1_depths = sorted(set(depths[::-1][::3][:4]))
    figdata: dict[str, Any] = {"fig1": {n: {} for n in NAMES}, "entry": entry, "seed": seed}
    columns = []
    for i, L in enumerate(run.bar(depths, "denoise")):
        params, _, tens = run.load(L)
        ok = norms.valid[: min(run.n_seeds, tens["A"].shape[0]), i]
        cols, splits = _denoise_depth(run, params, tens, ok, I, beta, x, y, max_grid)
        columns.append(cols)
        if L in fig1_depths or L == depths[-1]:
            _figure_arrays(figdata, L, L == depths[-1], params, tens, splits, beta, seed, entry)

    def table(get):
        return seeds_by_depth([get(c) for c in columns], run.n_seeds)

    out = {t: {n: {k: table(lambda c: c[t][n][k]) for k in SPLIT_KEYS} for n in NAMES} for t in ("common", "own")}
    pending = [c.pop("losses") for c in columns if "losses" in c]

    def losses() -> dict[str, np.ndarray]:
        """The losses of every depth (dispatched above, computed meanwhile): (S, n_depths) tables."""
        rows = [np.asarray(v).reshape(3, ok.shape[0]) for v, ok in pending]
        return {k: seeds_by_depth([np.where(ok, r[j], np.nan) for r, (_, ok) in zip(rows, pending)], run.n_seeds)
                for j, k in enumerate(("trained_loss", "denoised_loss", "denoised_own_loss"))}

    return out, figdata, losses


def _denoise_depth(run: _Run, params: ResNetParams, tens, ok: np.ndarray, I, beta, x, y, max_grid: int,
                   ) -> tuple[dict[str, Any], dict[str, tuple[dict, dict]]]:
    """One depth of pass 3 for its first ``len(ok)`` seeds (numbers of invalid seeds NaN); the
    losses only when there are training data (``x`` not None)."""
    s = ok.shape[0]
    splits, cols = {}, {"common": {}, "own": {}}
    for n in NAMES:
        T = np.nan_to_num(tens[n][:s])
        splits[n] = split_common_and_own(T, I[n][:s], beta[n], ENTRY_NDIM[n], max_grid, ok)
        for t, sp in zip(("common", "own"), splits[n]):
            cols[t][n] = {k: sp[k] for k in SPLIT_KEYS}
    f32 = lambda a: np.nan_to_num(np.asarray(a[:s], np.float32))  # noqa: E731
    dl = None if params.delta is None else f32(params.delta)
    if run.has_delta and dl is None:
        raise UsageError(f"depth {params.A.shape[1]} of {run.run_dir} has no delta although delta_mode is "
                         f"{run.delta_mode}")

    if x is None:  # no training data (imported weights): the split only
        return cols, splits
    nets = [ResNetParams(f32(params.A), f32(params.b), dl)]  # trained, denoised (common), denoised (own)
    nets += [denoised_params(*[splits[n][t]["denoised"] for n in NAMES], dl, tens["scaled_by_delta"]) for t in (0, 1)]
    stacked = jax.tree.map(lambda *a: np.concatenate([np.asarray(v, np.float32) for v in a]), *nets)
    # dispatched, not awaited: the device computes while the next depths are split on the host
    cols["losses"] = (seed_losses(stacked, x, y, activation=run.activation, delta_mode=run.delta_mode,
                                  capacity=run.capacity, wait=False), ok)
    return cols, splits


# ------------------------------------------------------------------ figures' arrays ---

def _figure_seed(norms: _Norms) -> int:
    """The seed shown in the figures: the first valid one at the largest depth."""
    last = norms.valid[:, -1]
    return int(np.argmax(last)) if last.any() else 0


def _figure_entry(name: str, activation: str, d: int, trend_w: np.ndarray) -> tuple[int, ...]:
    """Entry shown in the decomposition figures: the paper's (SP Figs 3, 5, 9, 10) when d = 10,
    else the one with the largest trend."""
    if d == 10:
        relu = is_homogeneous(activation)
        if name == "A":
            return (7, 7) if relu else (9, 7)
        return (6,) if relu else (5,)
    mag = np.nanmax(np.abs(np.nan_to_num(trend_w)), axis=0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mag)), mag.shape))


def _figure_arrays(figdata: dict[str, Any], L: int, largest: bool, params: ResNetParams, tens, splits, beta,
                   seed: int, entry) -> None:
    """Add depth ``L``'s rescaled weights of one entry (SP Fig. 1) and, at the largest depth,
    its trend/noise decomposition (SP Figs 3, 5, 9, 10) and delta_k (SP Fig. 4) to ``figdata``."""
    for n in NAMES:
        e = (slice(None),) + entry[n]
        T0 = tens[n][seed][e]
        figdata["fig1"][n][L] = {"weights": L ** beta[n] * T0, "cumsum": L ** (beta[n] - 1.0) * np.cumsum(T0)}
        if largest:
            common, own = splits[n]
            figdata.setdefault("decomposition", {})[n] = {
                "depth": L,
                "weights": L ** beta[n] * T0,
                "trend": L ** beta[n] * common["denoised"][seed][e],
                "own_trend": L ** beta[n] * own["denoised"][seed][e],
                "noise_path": L ** (beta[n] - 1.0) * np.cumsum(own["noise"][seed][e]),
            }
    if largest and params.delta is not None:
        figdata["delta_largest"] = {"depth": L, "delta": np.asarray(params.delta[seed], np.float64)}


# ------------------------------------------------------------------ the result -------

def _header(run_dir: Path, cfg, norms: _Norms, left_out: Mapping[str, str]) -> dict[str, Any]:
    imported = cfg.dataset == "imported"
    return {
        "run_dir": str(run_dir),
        "preset": None if imported else cfg.preset,
        "dataset": cfg.dataset,
        "activation": cfg.activation,
        "delta_mode": cfg.delta_mode,
        "optimizer": None if imported else cfg.optimizer,
        "lr": None if imported else cfg.lr,
        "batch_size": None if imported else cfg.batch_size,
        "depths": norms.depths,
        "n_seeds": int(cfg.seeds),
        "valid_seeds_per_depth": norms.valid.sum(axis=0),
        "diverged": int(norms.diverged.sum()),
        "converged_fraction": float(norms.converged.mean()),
        "labels": norms.labels,
        "left_out": dict(left_out),
    }


def _exponent_entries(key: str, summary: Optional[Mapping[str, Any]], points: bool = True) -> dict[str, Any]:
    """``key``, ``key_sd``, ``key_stderr``, ``key_per_seed`` (and ``key_points_per_seed``) of one
    exponent's summary over seeds (None throughout when there is none)."""
    fields = {"": "mean", "_sd": "sd", "_stderr": "stderr", "_per_seed": "per_seed"}
    if points:
        fields["_points_per_seed"] = "points_per_seed"
    return {key + suffix: None if summary is None else summary[f] for suffix, f in fields.items()}


def _exponent_fields(alpha: Optional[Mapping[str, Any]], exps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """alpha (from delta), beta and nu (from A), beta_b and nu_b (from b), and alpha + beta."""
    out = _exponent_entries("alpha", alpha)
    out.update(_exponent_entries("beta", exps["A"]["beta"]))
    out.update(_exponent_entries("beta_b", exps["b"]["beta"]))
    out.update(_exponent_entries("nu", exps["A"]["nu"], points=False))
    out.update(_exponent_entries("nu_b", exps["b"]["nu"], points=False))
    out["alpha_plus_beta"] = (out["alpha"] + out["beta"]) if alpha is not None else None
    return out


def _per_depth(a) -> dict[str, np.ndarray]:
    return {"mean": nanmean_seeds(a), "per_seed": a}


def _table1_entries(norms: _Norms, beta: Mapping[str, float], has_delta: bool) -> dict[str, Any]:
    """Table-1 quantities per depth (seed mean and per seed; invalid seeds NaN), the beta-scaled
    increments with the fitted beta, and max |delta|."""
    valid = norms.valid
    table = {n: {k: _per_depth(np.where(valid, v, np.nan)) for k, v in norms.table1[n].items()} for n in NAMES}
    for n in NAMES:
        table[n]["increment"] = _per_depth(np.where(valid, norms.table1[n]["max_increment"], np.nan)
                                           * np.asarray(norms.depths, float) ** beta[n])
    if has_delta:
        table["delta_max"] = _per_depth(np.where(valid, norms.delta_max, np.nan))
    return table


def _roughness(norms: _Norms) -> dict[str, Any]:
    """The Hoelder exponent of every network's weight path X_k = sum_{j<k} T_j per depth (1/2:
    Brownian, Hypothesis 2; 1: smooth, Hypothesis 1), and its seed mean at the largest depth."""
    out: dict[str, Any] = {"about": "Hoelder exponent of k -> sum_{j<k} T_j from its variogram at lags 1, 2, 4, "
                                    f"... <= L/16 (1/2 Brownian, 1 smooth); depths >= {MIN_HOLDER_DEPTH}"}
    for n in NAMES:
        h = np.where(norms.valid, norms.holder[n], np.nan)
        out[n] = {"label": norms.labels[n], **_per_depth(h), "largest_depth": float(nanmean_seeds(h)[-1])}
    return out


def _decomposition(n: str, norms: _Norms, split, noise: Mapping[str, float], beta: float, td, G: int,
                   max_grid: int, I, entry) -> dict[str, Any]:
    """The trend/noise decomposition of tensor ``n`` (SP eqs. 6-8) as ``analysis.json`` reports it."""
    own, common = split["own"][n], split["common"][n]
    qv_mean = nanmean_seeds(own["quadratic_variation"])
    qv_fit = loglog_fit(norms.depths, qv_mean)
    return {
        "label": norms.labels[n],
        "beta_used": beta,
        "trend_depths": td,
        "n_grid": G,
        "own_trend": f"each network's rescaled cumulative sum on min({max_grid}, L // 8) cells",
        "noise_to_trend_used": noise["noise_to_trend"],
        "noise_lag1_autocorr_used": noise["noise_autocorr"],
        "noise_to_trend": nanmean_seeds(own["noise_to_trend"]),
        "noise_lag1_autocorr": nanmean_seeds(own["noise_lag1_autocorr"]),
        "noise_path_to_trend_path": nanmean_seeds(own["noise_path_to_trend_path"]),
        "quadratic_variation": qv_mean,
        "quadratic_variation_slope": qv_fit.slope,
        "quadratic_variation_slope_stderr": qv_fit.stderr,
        "cross_depth": {
            "about": "noise against the trend common to the largest depths and all seeds (SP eq. 7)",
            "noise_to_trend_largest": noise["cross_depth_noise_to_trend"],
            "noise_to_trend": nanmean_seeds(common["noise_to_trend"]),
            "noise_lag1_autocorr": nanmean_seeds(common["noise_lag1_autocorr"]),
            "quadratic_variation": nanmean_seeds(common["quadratic_variation"]),
        },
        "trend_sup_norm": float(np.nanmax(frobenius(trend_weights(nanmean_seeds(I), ENTRY_NDIM[n]), ENTRY_NDIM[n]))),
        "figure_entry": list(entry),
    }


def _denoised_entries(norms: _Norms, split: Mapping[str, np.ndarray], cols: Sequence[int], n_eval: int, epsilon,
                      ) -> dict[str, Any]:
    """SP Fig. 6: training loss of the trained and denoised networks per depth, and the ratios."""
    trained = nanmean_seeds(split["trained_loss"])
    den = nanmean_seeds(split["denoised_loss"])
    den_own = nanmean_seeds(split["denoised_own_loss"])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio, ratio_own = den / trained, den_own / trained
    return {
        "denoised": {
            "depths": norms.depths,
            "n_eval": n_eval,
            "trained_loss": trained,
            "denoised_loss": den,
            "denoised_own_loss": den_own,
            "about": "denoised: weights L^-beta Abar_{k/L} with Abar common to the largest depths and all seeds "
                     "(SP Fig. 6); denoised_own: each network's own coarse-grained trend",
            "trained_loss_per_seed": split["trained_loss"],
            "denoised_loss_per_seed": split["denoised_loss"],
            "denoised_own_loss_per_seed": split["denoised_own_loss"],
            "recorded_train_loss": nanmean_seeds(np.where(norms.valid, norms.recorded["train_loss"], np.nan)),
            "epsilon": epsilon,
            "ratio": ratio,
            "ratio_own": ratio_own,
        },
        "denoised_over_trained_largest": median_at(ratio[None], cols),
        "denoised_own_over_trained_largest": median_at(ratio_own[None], cols),
    }


# ------------------------------------------------------------------ text -------------

def _pm(m, sd, digits: int = 2) -> str:
    if m is None:
        return "-"
    s = f"{m:.{digits}f}"
    return s + (f" ± {sd:.{digits}f}" if sd is not None else "")


def format_analysis(result: dict) -> str:
    """A readable summary of :func:`analyze_run`'s result (what ``resnet-limits analyze`` prints)."""
    r = result
    d = r.get("depths", [])
    lines = [
        f"run {r.get('run_dir')}: {r.get('preset')} ({r.get('activation')}, delta {r.get('delta_mode')}, "
        f"{r.get('optimizer')} lr={r.get('lr')} B={r.get('batch_size')})",
        f"depths {d[0] if d else '-'}..{d[-1] if d else '-'} ({len(d)}), {r.get('n_seeds')} seeds, "
        f"{r.get('diverged', 0)} diverged (left out), converged fraction {r.get('converged_fraction', 0):.2f}",
        "",
    ]
    lines += _exponent_lines(r)
    lines += [""] + _verdict_lines(r)
    rough = r.get("roughness") or {}
    if rough.get("A", {}).get("largest_depth") is not None:
        lines.append(f"Hoelder exponent of the weight paths at L = {d[-1]}: " + ", ".join(
            f"{rough[n]['label']} {rough[n]['largest_depth']:.2f}" for n in NAMES if rough[n]["largest_depth"] is not None)
            + " (1/2 Brownian, 1 smooth)")
    lines += _loss_lines(r.get("denoised") or {})
    if r.get("figures"):
        lines.append("")
        lines.append(f"figures: {', '.join(Path(p).name for p in r['figures'])} (in {Path(r['run_dir']) / 'figures'})")
    return "\n".join(lines)


def _exponent_lines(r: Mapping[str, Any]) -> list[str]:
    """The exponents table: mean ± sd (se), per seed, and the paper's value."""
    paper = r.get("paper") or {}
    lab = r.get("labels", {"A": "A", "b": "b"})
    lines = [f"{'exponent':<26}{'mean ± sd (se)':<24}{'per seed':<44}{'paper'}"]

    def row(name, key, pkey=None):
        m = r.get(key)
        if m is None:
            lines.append(f"{name:<26}{'-':<24}")
            return
        ps = r.get(f"{key}_per_seed") or []
        pts = r.get(f"{key}_points_per_seed")
        seeds = " ".join("nan" if v is None else f"{v:.2f}" for v in ps)
        if pts:
            seeds += f"  [{min(pts)}-{max(pts)} pts]" if min(pts) != max(pts) else f"  [{pts[0]} pts]"
        se = r.get(f"{key}_stderr")
        cell = _pm(m, r.get(f"{key}_sd")) + (f" ({se:.2f})" if se is not None else "")
        pv = paper.get(pkey) if pkey else None
        psd = paper.get(f"{pkey}_sd") if pkey else None
        lines.append(f"{name:<26}{cell:<24}{seeds:<44}{_pm(pv, psd) if pv is not None else ''}")

    row("alpha  (max|δ| ~ L^-α)", "alpha", "alpha")
    row(f"beta   ({lab['A']}, cumsum)", "beta", "beta")
    row(f"beta_b ({lab['b']}, cumsum)", "beta_b")
    row(f"nu     ({lab['A']}, increments)", "nu", "nu")
    row(f"nu_b   ({lab['b']}, increments)", "nu_b")
    if r.get("alpha_plus_beta") is not None:
        lines.append(f"{'alpha + beta':<26}{r['alpha_plus_beta']:.2f}")
    if paper.get("authors_code"):
        lines.append(f"authors' code: {paper['authors_code']}")
    return lines


def _verdict_lines(r: Mapping[str, Any]) -> list[str]:
    """One line per tensor: verdict, the numbers of SP §2.3 steps 2-5 and the reason."""
    lines = [f"{'tensor':<8}{'verdict':<24}{'β':>6}{'β(max)':>8}{'ν':>7}{'RSS slope':>10}{'κ':>7}"
             f"{'noise/trend':>12}{'ac1':>6}{'QV(Lmax)':>10}{'x-depth':>9}  reason"]
    f = lambda v, w, p=2: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    g = lambda v, w: f"{v:>{w}.2g}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    for t in (r.get("hypothesis_tests") or {}).values():
        st = t["steps"]
        lines.append(f"{t['tensor']:<8}{t['verdict']:<24}{f(st['2_beta']['beta'], 6)}"
                     f"{f(st['2_beta']['beta_from_max_norm'], 8)}{f(st['3_increments']['nu'], 7)}"
                     f"{f(st['5_quadratic_variation']['rss_slope'], 10)}{f(st['sparsity']['kappa'], 7)}"
                     f"{g(st['4_trend_noise']['noise_to_trend'], 12)}"
                     f"{f(st['4_trend_noise'].get('noise_lag1_autocorr'), 6)}"
                     f"{g(st['5_quadratic_variation']['qv_largest_depth'], 10)}"
                     f"{g(st['4_trend_noise'].get('cross_depth_noise_to_trend'), 9)}  {t['reason']}")
    return lines


def _loss_lines(den: Mapping[str, Any]) -> list[str]:
    """SP Fig. 6 as a table: trained and denoised training loss at up to ~10 depths."""
    if den.get("skipped"):
        return ["", f"training loss of trained vs denoised weights (SP Fig. 6): skipped ({den['skipped']})"]
    if not den.get("depths"):
        return []
    lines = ["", f"training loss, trained vs denoised weights (SP Fig. 6; {den.get('n_eval')} training points; "
                 f"denoised: trend common to the largest depths; own trend: each network coarse-grained):",
             f"{'L':>7}{'trained':>12}{'denoised':>12}{'ratio':>9}{'own trend':>12}{'ratio':>9}"]
    idx = list(range(len(den["depths"])))
    if len(idx) > 10:
        idx = sorted(set(idx[:: max(1, len(idx) // 8)] + [len(idx) - 1]))
    fmt = lambda v: f"{v:>12.3g}" if v is not None else f"{'-':>12}"  # noqa: E731
    fr = lambda v: f"{v:>9.2f}" if v is not None else f"{'-':>9}"  # noqa: E731
    for i in idx:
        tl, dl, ra = den["trained_loss"][i], den["denoised_loss"][i], den["ratio"][i]
        do, ro = den.get("denoised_own_loss", [None] * (i + 1))[i], den.get("ratio_own", [None] * (i + 1))[i]
        lines.append(f"{den['depths'][i]:>7}{fmt(tl)}{fmt(dl)}{fr(ra)}{fmt(do)}{fr(ro)}")
    return lines
