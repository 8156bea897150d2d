"""Strong convergence of deep ResNets to their ODE / Ito SDE limits (SP §4, Thms 4.3, 4.4; SPEC §4).

Two entry points (called by the CLI):

- :func:`reproduce_convergence` ``(out, *, quick=False, n_paths=None, progress=True)``: the
  pathwise study. For each path (vmapped), one fine Brownian path of ``n_fine`` steps (SP Remark
  2.1) and a random smooth trend are drawn; the depth-L network's weights are the path's
  increments over blocks of 1/L (plus the drift ``Abar(t_k)/L``, beta = 1); the limit is solved on
  the *same* fine path; ``E sup_k |h_k - H_{k/L}|^2`` is reported against L with a log-log slope.
  Regime-1 cases use ``A_k = L^{-beta} Abar(k/L)``, ``delta = L^{-alpha}``. Writes
  ``out/convergence.json`` and log-log PNG figures.
- :func:`compare_trained` ``(run_dir, depth, *, seed=0, n_inputs=8, out=None, progress=True)``:
  hidden states of a trained network from a sweep folder against its limit on test inputs
  (tanh: linear ODE SP eq. 14 with the drift L delta (A(t) H + b(t)) on the interpolated weights;
  ReLU: the Ito SDE of the smooth surrogate activation softplus(z) - log 2, see below).

Cases of the study and the rate expected for E sup|h - H|^2 (d = width):

==============================  =====================================================  ========
case                            network -> limit                                       slope
==============================  =====================================================  ========
sde-tanh                        alpha=0, beta=1, tanh -> SDE eq. 15 (sigma''(0)=0)      -1
sde-csoftplus-ito               csoftplus (sigma''(0)=1/2) -> eq. 15, exact Q           -1
sde-csoftplus-ito-estimated-q   same, Q estimated from the path's increments           -1
sde-csoftplus-no-correction     csoftplus -> eq. 15 without the Q term                  0 (stall)
linear-ode-tanh-alpha{a}        alpha=a, beta=1-a (a = 0.5, 0.7), tanh -> eq. 14         -min(2, 4 beta)
linear-ode-csoftplus-alpha{a}   alpha=a, beta=1-a, csoftplus -> eq. 14                   -min(2, 2 beta)
neural-ode-tanh                 alpha=1, beta=0, tanh -> eq. 2                           -2
==============================  =====================================================  ========

(SDE: strong order 1/2 of the nonlinear Euler scheme; linear ODE: the step error
sigma(L^{-beta} m) - L^{-beta} m is L^{-1-beta} sigma''(0)/2 m^2 or L^{-1-2 beta} m^3/3 for tanh,
summed over L steps; neural ODE: Euler, O(1/L).)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits.errors import UsageError
from resnet_limits.limits import (
    BrownianQ,
    FunctionPath,
    PiecewiseLinearPath,
    QuadraticVariation,
    brownian_increments,
    brownian_qv,
    brownian_network,
    estimate_qv,
    solve_linear_ode,
    solve_neural_ode,
    solve_sde,
    uniform_grid,
    weight_paths,
)
from resnet_limits.models import ResNetParams, forward, get_activation, layer
from resnet_limits.scaling import loglog_fit

__all__ = [
    "CASES",
    "StudyConfig",
    "compare_trained",
    "convergence_study",
    "reproduce_convergence",
    "surrogate_forward",
]


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the strong-convergence study.

    width d = 3 (Q's 1/d term keeps the Ito correction visible); ``n_paths`` fine paths of
    ``n_fine`` steps; SDE depths 2^4..2^13 (L_max = n_fine/16: the reference's own Euler-Maruyama
    error, ~ 1/n_fine in E sup^2, is 1/16 of the network's at L_max); ``chunk`` paths per vmapped
    batch (memory). The deterministic Regime-1 cases use ``n_trends`` random smooth trends and
    depths ``ode_depths`` (default: as ``depths``).
    """

    width: int = 3
    n_paths: int = 512
    n_fine: int = 2**17
    depths: tuple = tuple(2**k for k in range(4, 14))
    chunk: int = 64
    seed: int = 0
    qv_blocks: int = 2**9  # blocks for the estimated Q (256 fine increments each)
    n_trends: int = 32  # Regime-1 (deterministic) cases: random smooth trends, vmapped
    ode_depths: tuple = tuple(2**k for k in range(4, 17))  # cheap: the ODE cases go deeper
    linear_alphas: tuple = (0.5, 0.7)  # alpha + beta = 1; 0.7 ~ SP §3's trained tanh networks
    trend_scale: float = 1.0

    @classmethod
    def quick(cls, **kw) -> "StudyConfig":
        base = dict(n_paths=128, n_fine=2**13, depths=tuple(2**k for k in range(4, 11)),
                    chunk=64, qv_blocks=2**5, n_trends=16,
                    ode_depths=tuple(2**k for k in range(4, 13)))
        base.update(kw)
        return cls(**base)


CASES: dict[str, dict[str, Any]] = {
    "sde-tanh": dict(kind="sde", activation="tanh", limit="Ito SDE (SP eq. 15), sigma''(0)=0",
                     alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-ito": dict(kind="sde", activation="csoftplus",
                              limit="Ito SDE (SP eq. 15) with 1/2 sigma''(0) Q, Q closed form",
                              alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-ito-estimated-q": dict(
        kind="sde", activation="csoftplus",
        limit="Ito SDE (SP eq. 15), Q estimated from the fine increments (block averages)",
        alpha=0.0, beta=1.0, expected_slope=-1.0),
    "sde-csoftplus-no-correction": dict(
        kind="sde", activation="csoftplus", limit="SDE (SP eq. 15) WITHOUT the Ito correction",
        alpha=0.0, beta=1.0, expected_slope=0.0),
    "neural-ode-tanh": dict(kind="ode", activation="tanh", limit="neural ODE (SP eq. 2)",
                            alpha=1.0, beta=0.0, expected_slope=-2.0),
}


def _linear_name(act: str, alpha: float) -> str:
    return f"linear-ode-{act}-alpha{alpha:g}"


def _case_table(cfg: StudyConfig) -> dict[str, dict[str, Any]]:
    """CASES plus one linear-ODE pair (tanh, csoftplus) per alpha in ``cfg.linear_alphas``."""
    out = {k: dict(v) for k, v in CASES.items()}
    for a in cfg.linear_alphas:
        b = 1.0 - a
        for act, slope in (("tanh", -min(2.0, 4 * b)), ("csoftplus", -min(2.0, 2 * b))):
            out[_linear_name(act, a)] = dict(
                kind="ode", activation=act, limit="linear ODE (SP eq. 14)", alpha=a, beta=b,
                expected_slope=slope)
    return out


# ------------------------------------------------------------------ random inputs -------


def _trend(key, d: int, scale: float):
    """A random smooth trend: Abar(t) = C0 + sin(2 pi t) C1, bbar(t) = cos(2 pi t) v (N(0, 1/d))."""
    k0, k1, k2 = jax.random.split(key, 3)
    s = scale / math.sqrt(d)
    C0 = s * jax.random.normal(k0, (d, d))
    C1 = s * jax.random.normal(k1, (d, d))
    v = s * jax.random.normal(k2, (d,))
    Afn = lambda t: C0 + jnp.sin(2 * jnp.pi * t) * C1  # noqa: E731
    bfn = lambda t: jnp.cos(2 * jnp.pi * t) * v  # noqa: E731
    return Afn, bfn


def _unit_input(key, d: int):
    x = jax.random.normal(key, (d,))
    return x / jnp.linalg.norm(x)


def _sup_sq(h, H, L: int, L_max: int):
    """max_k |h_k - H_{k/L}|^2 with H saved on the grid k/L_max."""
    Hs = H[:: L_max // L]
    return jnp.max(jnp.sum((h - Hs) ** 2, axis=-1))


# ------------------------------------------------------------------ the study -----------


def _sde_one(key, cfg: StudyConfig):
    d, n, depths = cfg.width, cfg.n_fine, cfg.depths
    L_max = max(depths)
    kx, kw, kt = jax.random.split(key, 3)
    x = _unit_input(kx, d)
    Afn, bfn = _trend(kt, d, cfg.trend_scale)
    Ap, bp = FunctionPath(Afn), FunctionPath(bfn)
    dWA, dWb = brownian_increments(kw, n, d)
    WA = PiecewiseLinearPath.from_increments(dWA)
    Wb = PiecewiseLinearPath.from_increments(dWb)
    ts = uniform_grid(L_max)
    d2 = get_activation("csoftplus").d2_at_0
    # Three limits in one vmapped solve: no Q term (tanh limit; csoftplus without correction),
    # Q closed form (SP Remark 2.1: Q_i = |x|^2/d^2 + 1/d), Q estimated from the increments.
    exact = brownian_qv(cfg.qv_blocks, d)
    est = estimate_qv(dWA, dWb, blocks=cfg.qv_blocks)
    S = jnp.stack([exact.S, exact.S, est.S])
    d2s = jnp.asarray([0.0, d2, d2])
    H0, Hq, Hqe = jax.vmap(
        lambda c, S: solve_sde(x, WA, Wb, ts, d2_at_0=c, Q=QuadraticVariation(S), Abar=Ap, bbar=bp)
    )(d2s, S)
    errs: dict[str, list] = {k: [] for k in (
        "sde-tanh", "sde-csoftplus-ito", "sde-csoftplus-ito-estimated-q",
        "sde-csoftplus-no-correction")}
    for L in depths:
        net = brownian_network(dWA, dWb, L, Abar=Ap, bbar=bp)
        ht, hs = _forward_variants(
            [net, net], jnp.ones(2), x, jnp.asarray([1.0, 0.0]))  # tanh, csoftplus
        errs["sde-tanh"].append(_sup_sq(ht, H0, L, L_max))
        errs["sde-csoftplus-ito"].append(_sup_sq(hs, Hq, L, L_max))
        errs["sde-csoftplus-ito-estimated-q"].append(_sup_sq(hs, Hqe, L, L_max))
        errs["sde-csoftplus-no-correction"].append(_sup_sq(hs, H0, L, L_max))
    return {k: jnp.stack(v) for k, v in errs.items()}


def _ode_depths(cfg: StudyConfig) -> tuple:
    return tuple(cfg.ode_depths) if cfg.ode_depths else tuple(cfg.depths)


def _ode_one(key, cfg: StudyConfig):
    d, depths = cfg.width, _ode_depths(cfg)
    L_max = max(depths)
    kx, kt = jax.random.split(key)
    x = _unit_input(kx, d)
    Afn, bfn = _trend(kt, d, cfg.trend_scale)
    ts = uniform_grid(L_max)
    # linear ODE (SP eq. 14) = "neural ODE with the identity"; both limits in one vmapped solve
    H_lin, H_neu = jax.vmap(lambda c: solve_neural_ode(
        x, FunctionPath(Afn), FunctionPath(bfn), ts,
        activation=lambda z: c * jnp.tanh(z) + (1.0 - c) * z))(jnp.asarray([0.0, 1.0]))
    errs: dict[str, list] = {}
    for L in depths:
        tk = jnp.arange(L) / L
        Ak, bk = jax.vmap(Afn)(tk), jax.vmap(bfn)(tk)
        nets, deltas, flags, names = [], [], [], []
        for a in cfg.linear_alphas:
            b = 1.0 - a
            for act, f in (("tanh", 1.0), ("csoftplus", 0.0)):
                nets.append(ResNetParams(L**-b * Ak, L**-b * bk, None))
                deltas.append(float(L) ** -a)
                flags.append(f)
                names.append(_linear_name(act, a))
        nets.append(ResNetParams(Ak, bk, None))
        deltas.append(1.0 / L)
        flags.append(1.0)
        names.append("neural-ode-tanh")
        hs = _forward_variants(nets, jnp.asarray(deltas), x, jnp.asarray(flags))
        for name, h in zip(names, hs):
            H = H_neu if name == "neural-ode-tanh" else H_lin
            errs.setdefault(name, []).append(_sup_sq(h, H, L, L_max))
    return {k: jnp.stack(v) for k, v in errs.items()}


def _forward_variants(nets, deltas, x, flags):
    """Hidden states of several same-depth networks in one vmapped scan (SP eq. 1).

    ``flags`` 1 -> tanh, 0 -> csoftplus (one compiled scan instead of one per activation);
    ``deltas`` shared delta of each network. Returns (V, L+1, d).
    """
    A = jnp.stack([n.A for n in nets])
    b = jnp.stack([n.b for n in nets])
    tanh, csp = get_activation("tanh").fn, get_activation("csoftplus").fn

    def run(A, b, delta, f):
        sigma = lambda z: f * tanh(z) + (1.0 - f) * csp(z)  # noqa: E731

        def step(h, p):
            h = layer(h, p[0], p[1], delta, sigma)
            return h, h

        _, hs = jax.lax.scan(step, x, (A, b))
        return jnp.concatenate([x[None], hs])

    return jax.vmap(run)(A, b, deltas, flags)


def convergence_study(cfg: StudyConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run every case of :data:`CASES`; returns the JSON-ready result (float64 inside)."""
    from tqdm.auto import tqdm

    if cfg.n_fine % max(cfg.depths):
        raise UsageError(f"the largest depth {max(cfg.depths)} must divide n_fine={cfg.n_fine}")
    t_start = time.time()
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(cfg.seed)
        k_sde, k_ode = jax.random.split(key)
        sde_fn = jax.jit(jax.vmap(lambda k: _sde_one(k, cfg)))
        ode_fn = jax.jit(jax.vmap(lambda k: _ode_one(k, cfg)))
        raw: dict[str, list[np.ndarray]] = {}
        timings = {"sde": 0.0, "ode": 0.0}
        plan = [("ode", ode_fn, k_ode, cfg.n_trends), ("sde", sde_fn, k_sde, cfg.n_paths)]
        total = sum(max(1, math.ceil(n / cfg.chunk)) for *_, n in plan)
        bar = tqdm(total=total, desc="convergence", disable=not progress)
        for kind, fn, kk, n_paths in plan:
            n_chunks = max(1, math.ceil(n_paths / cfg.chunk))
            chunk = min(cfg.chunk, n_paths)
            keys = jax.random.split(kk, n_chunks * chunk)
            for c in range(n_chunks):
                t0 = time.time()
                ck = keys[c * chunk:(c + 1) * chunk]  # the last chunk is padded with extra keys
                keep = min(chunk, n_paths - c * chunk)
                out = jax.device_get(fn(ck))
                for name, v in out.items():
                    raw.setdefault(name, []).append(np.asarray(v)[:keep])
                timings[kind] += time.time() - t0
                bar.update(1)
        bar.close()
    table = _case_table(cfg)
    cases = {}
    for name, spec in table.items():
        e = np.concatenate(raw[name], axis=0)  # (paths, depths)
        depths = _ode_depths(cfg) if spec["kind"] == "ode" else tuple(cfg.depths)
        mean = e.mean(axis=0)
        se = e.std(axis=0, ddof=1) / math.sqrt(e.shape[0]) if e.shape[0] > 1 else np.zeros_like(mean)
        fit = loglog_fit(depths, mean)
        half = len(depths) // 2
        tail = loglog_fit(depths[half:], mean[half:])
        cases[name] = dict(
            spec, depths=list(depths), errors=mean.tolist(), stderr=se.tolist(),
            slope=fit.slope, slope_stderr=fit.stderr, intercept=fit.intercept,
            tail_slope=tail.slope, tail_depths=list(depths[half:]),
            n_paths=int(e.shape[0]),
            deterministic=spec["kind"] == "ode",
        )
    return dict(
        config=dict(asdict(cfg), depths=list(cfg.depths), ode_depths=list(_ode_depths(cfg))),
        metric="E sup_k |h_k - H_{k/L}|^2 over paths (inputs: one random unit vector per path)",
        cases=cases,
        seconds=dict(total=time.time() - t_start, **timings),
        solvers=dict(
            sde="diffrax Euler, StepTo on the fine grid k/n_fine (= Euler-Maruyama: Ito); "
                "MultiTerm(ODETerm(drift), AffineControlTerm(W^A, W^b))",
            ode="diffrax Tsit5, PIDController(rtol=1e-10, atol=1e-12) (clipped to knots for "
                "piecewise-linear coefficients)",
        ),
    )


# ------------------------------------------------------------------ figures -------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_cases(result: dict, names: list[str], path: Path, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    for i, name in enumerate(names):
        c = result["cases"][name]
        L = np.asarray(c["depths"], float)
        e = np.asarray(c["errors"], float)
        se = np.asarray(c["stderr"], float)
        color = f"C{i}"
        label = (f"{name}: slope {c['slope']:.2f}, tail {c['tail_slope']:.2f}"
                 + (f" (theory {c['expected_slope']:g})" if c["expected_slope"] is not None else ""))
        if c["kind"] == "sde":  # +-2 standard errors of the mean over paths (clipped for log axes)
            yerr = np.stack([np.minimum(2 * se, 0.9 * e), 2 * se])
            ax.errorbar(L, e, yerr=yerr, fmt="o-", ms=3.5, color=color, capsize=2, label=label)
        else:  # deterministic networks: mean over random smooth trends, no sampling error bars
            ax.plot(L, e, "o-", ms=3.5, color=color, label=label)
        ax.plot(L, np.exp(c["intercept"]) * L ** c["slope"], "--", color=color, lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"$E\,\sup_k \|h_k - H_{k/L}\|^2$")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return str(path)


def _trajectory_figure(cfg: StudyConfig, path: Path) -> str:
    """One fine path: coordinate 0 of h_k (csoftplus network, a few depths) vs the Ito SDE with
    and without the correction."""
    with jax.enable_x64(True):
        key = jax.random.split(jax.random.split(jax.random.PRNGKey(cfg.seed))[0], 1)[0]
        d, n = cfg.width, cfg.n_fine
        L_max = max(cfg.depths)
        kx, kw, kt = jax.random.split(key, 3)
        x = _unit_input(kx, d)
        Afn, bfn = _trend(kt, d, cfg.trend_scale)
        Ap, bp = FunctionPath(Afn), FunctionPath(bfn)
        dWA, dWb = brownian_increments(kw, n, d)
        WA, Wb = PiecewiseLinearPath.from_increments(dWA), PiecewiseLinearPath.from_increments(dWb)
        ts = uniform_grid(L_max)
        Hq = np.asarray(solve_sde(x, WA, Wb, ts, d2_at_0=0.5, Q=BrownianQ(), Abar=Ap, bbar=bp))
        H0 = np.asarray(solve_sde(x, WA, Wb, ts, Abar=Ap, bbar=bp))
        shown = [cfg.depths[0], cfg.depths[len(cfg.depths) // 2], L_max]
        hs = {L: np.asarray(forward(brownian_network(dWA, dWb, L, Abar=Ap, bbar=bp), x,
                                    activation="csoftplus", delta_mode="none", return_hidden=True))
              for L in shown}
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for j, ax in enumerate(axes):
        ax.plot(np.asarray(ts), Hq[:, j], "k-", lw=1.2, label="Ito SDE (with correction)")
        ax.plot(np.asarray(ts), H0[:, j], "r:", lw=1.2, label="SDE without correction")
        for i, L in enumerate(shown):
            ax.plot(np.arange(L + 1) / L, hs[L][:, j], "-", color=f"C{i}", lw=0.8, alpha=0.8,
                    label=f"network L={L}")
        ax.set_xlabel("t")
        ax.set_ylabel(f"coordinate {j}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("csoftplus ResNet (alpha=0, beta=1) on one fine Brownian path vs its limit",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return str(path)


def reproduce_convergence(out, *, quick: bool = False, n_paths: Optional[int] = None,
                          progress: bool = True) -> dict:
    """The strong-convergence study (issue item 3, 5): writes ``out/convergence.json`` and
    ``out/convergence_sde.png``, ``out/convergence_ode.png``, ``out/convergence_paths.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {} if n_paths is None else {"n_paths": int(n_paths)}
    if n_paths is not None and n_paths < 2:
        raise UsageError("--n-paths must be at least 2")
    cfg = StudyConfig.quick(**kw) if quick else StudyConfig(**kw)
    result = convergence_study(cfg, progress=progress)
    result["quick"] = bool(quick)
    figs = [
        _plot_cases(result, [n for n, c in result["cases"].items() if c["kind"] == "sde"],
                    out / "convergence_sde.png",
                    f"Remark 2.1 weights + drift (alpha=0, beta=1), d={cfg.width}, "
                    f"{cfg.n_paths} paths, n_fine={cfg.n_fine}"),
        _plot_cases(result, [n for n, c in result["cases"].items() if c["kind"] == "ode"],
                    out / "convergence_ode.png",
                    f"Regime 1 (A_k = L^-beta Abar(k/L), delta = L^-alpha), d={cfg.width}"),
        _trajectory_figure(cfg, out / "convergence_paths.png"),
    ]
    result["figures"] = [Path(f).name for f in figs]
    (out / "convergence.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# ------------------------------------------------------------------ trained networks ----

# Smooth surrogates of ReLU for the SDE limit: s_eps(z) = eps (softplus(z/eps) - log 2), s(0)=0,
# s'(0)=1/2, s''(0)=1/(4 eps); s_eps -> relu as eps -> 0. A ReLU step delta relu(z) =
# sign(delta) relu(|delta| z) (SP Remark 2.2) is replaced by sign(delta) s(|delta| z) =
# s'(0) delta z + 1/2 s''(0) sign(delta) delta^2 z^2 + ..., whose limit is
# dH = s'(0) (dX^A H + dX^b) + 1/2 s''(0) Q(t, H) dt with X the delta-absorbed weight paths and Q
# from the sign-weighted squared increments. The main comparison uses eps = 1; eps = 0.1, 0.01
# are reported as a scan (the ReLU case is the eps -> 0 limit, SP §4.5).
SURROGATE = dict(name="softplus(z) - log 2", d1_at_0=0.5, d2_at_0=0.25, eps=1.0)
SURROGATE_EPS = (1.0, 0.1, 0.01)


def _surrogate(z, eps=1.0):
    return eps * (jax.nn.softplus(z / eps) - math.log(2.0))


def surrogate_forward(params: ResNetParams, x, delta_mode: str, *, eps=1.0,
                      return_hidden: bool = True):
    """The ReLU network with ReLU replaced by its smooth surrogate in homogeneous form:
    h_{k+1} = h_k + sign(delta_k) s(|delta_k| (A_k h_k + b_k)), s(z) = eps (softplus(z/eps) - log 2)."""
    from resnet_limits.models import effective_delta

    dl = effective_delta(params, delta_mode)

    def step(h, p):
        A, b, de = p
        hn = h + jnp.sign(de) * _surrogate(jnp.abs(de) * (h @ A.T + b), eps)
        return hn, hn

    hL, hs = jax.lax.scan(step, x, (params.A, params.b, dl))
    return jnp.concatenate([x[None], hs]) if return_hidden else hL


def _one_seed(params, seed: int) -> ResNetParams:
    d = params.delta
    return ResNetParams(
        jnp.asarray(params.A[seed], jnp.float64), jnp.asarray(params.b[seed], jnp.float64),
        None if d is None else jnp.asarray(d[seed], jnp.float64),
    )


def _limit_name(activation: str) -> str:
    if activation == "relu":
        return (f"Ito SDE (SP eq. 15) of the smooth surrogate {SURROGATE['name']}: "
                "dH = 1/2 (dX^A H + dX^b) + 1/8 Q(t,H) dt, X = cumulative delta-absorbed weights "
                "(trend included), Q estimated from sign(delta)-weighted squared absorbed increments "
                "(local average, half-width ceil(sqrt L))")
    return ("linear ODE (SP eq. 14): dH/dt = L delta (A(t) H + b(t)), A(t), b(t) the trained "
            "weights linearly interpolated between t_k = k/L")


def _pick(v, seed: int):
    if v is None:
        return None
    try:
        return float(v[seed])
    except (TypeError, IndexError, ValueError):
        return None


def _trained_figure(h, H, extra, res, path: Path) -> str:
    """A few coordinates of h_k and H_t against t, for the first inputs."""
    plt = _plt()
    L = h.shape[1] - 1
    t = np.arange(L + 1) / L
    n_in = min(2, h.shape[0])
    n_co = min(3, h.shape[2])
    fig, axes = plt.subplots(1, n_in, figsize=(5.2 * n_in, 3.8), squeeze=False)
    for i in range(n_in):
        ax = axes[0, i]
        for j in range(n_co):
            ax.plot(t, h[i, :, j], "o", ms=2.5 if L <= 200 else 0.8, color=f"C{j}",
                    label=f"network $h_k$, coord {j}" if i == 0 else None)
            ax.plot(t, H[i, :, j], "-", lw=1.2, color=f"C{j}",
                    label=f"limit $H_t$, coord {j}" if i == 0 else None)
            if "surrogate_network" in extra:
                ax.plot(t, extra["surrogate_network"][i, :, j], ":", lw=1.0, color=f"C{j}",
                        label=f"surrogate network, coord {j}" if i == 0 else None)
        ax.set_xlabel("t = k/L")
        ax.set_title(f"test input {i}: sup error {res['sup_error'][i]:.3g}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{res['activation']} network, L={L}, seed {res['seed']}: "
                 f"{res['limit'].split(':')[0]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path.name


def _trained_limits(params: ResNetParams, xs, activation: str, delta_mode: str):
    """(network h (B, L+1, d), limit H (B, L+1, d), extra dict) for one trained network."""
    L = params.A.shape[0]
    ts = uniform_grid(L)
    h = jax.vmap(lambda x: forward(params, x, activation=activation, delta_mode=delta_mode,
                                   return_hidden=True))(xs)
    extra = {}
    if activation == "relu":
        wp = weight_paths(params, delta_mode, homogeneous=True)
        c = SURROGATE["d1_at_0"]
        # Q from the sign-weighted squares of the whole absorbed increments (trend included: the
        # network's own second-order term), local average of half-width ceil(sqrt(L))
        qv = estimate_qv(wp.X_A.increments, wp.X_b.increments, weights=wp.qv_weights)
        # noise + trend in one control (X = int Abar + W): dH = c dX^A H + c dX^b + 1/2 s''(0) Q dt
        # one vmapped solve over s''(0) = 0 (no correction), 1/(4 eps) for eps in SURROGATE_EPS
        d2s = jnp.asarray([0.0] + [0.25 / e for e in SURROGATE_EPS])
        Hs = jax.vmap(lambda d2: jax.vmap(lambda x: solve_sde(
            x, wp.X_A.scale(c), wp.X_b.scale(c), ts, d2_at_0=d2, Q=qv))(xs))(d2s)
        H = Hs[1]
        extra["limit_without_correction"] = Hs[0]
        extra["limits_eps"] = Hs[1:]
        extra["surrogate_networks_eps"] = jnp.stack([jax.vmap(
            lambda x: surrogate_forward(params, x, delta_mode, eps=e))(xs) for e in SURROGATE_EPS])
        extra["surrogate_network"] = extra["surrogate_networks_eps"][0]
    else:
        wp = weight_paths(params, delta_mode)  # window=1: trend = L delta A_k interpolated
        H = jax.vmap(lambda x: solve_linear_ode(x, wp.Abar, wp.bbar, ts))(xs)
    return h, H, extra


def compare_trained(run_dir, depth: int, *, seed: int = 0, n_inputs: int = 8, out=None,
                    progress: bool = True) -> dict:
    """Trained network of a sweep vs its deep limit on test inputs (issue item 4).

    Writes ``RUN_DIR/limits/L{depth:05d}.json`` and ``.png`` (or into ``out``). tanh (and other
    smooth activations): linear ODE; ReLU: Ito SDE of the surrogate ``softplus(z) - log 2``.
    """
    from resnet_limits.sweeps import dataset_for, finished_depths, load_config, load_depth

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)  # UsageError if not a run folder
    done = finished_depths(run_dir)
    if depth not in done:
        raise UsageError(f"depth {depth} was not trained in {run_dir} (finished depths: {done})")
    params_all, metrics = load_depth(run_dir, depth)
    n_seeds = params_all.A.shape[0]
    if not 0 <= seed < n_seeds:
        raise UsageError(f"seed must be in 0..{n_seeds - 1}, got {seed}")
    if n_inputs < 1:
        raise UsageError(f"n_inputs must be >= 1, got {n_inputs}")
    activation, delta_mode = cfg["activation"], cfg["delta_mode"]
    t0 = time.time()
    data = dataset_for(cfg)
    with jax.enable_x64(True):
        params = _one_seed(params_all, seed)
        xs = jnp.asarray(np.asarray(data.x_test)[:n_inputs], jnp.float64)
        h, H, extra = jax.jit(
            lambda p, x: _trained_limits(p, x, activation, delta_mode))(params, xs)
        limit = _limit_name(activation)
        h, H = np.asarray(h), np.asarray(H)
        extra = {k: np.asarray(v) for k, v in extra.items()}
    err = np.sqrt(((h - H) ** 2).sum(-1)).max(-1)  # sup_k |h_k - H_{t_k}| per input
    move = np.sqrt(((h - h[:, :1]) ** 2).sum(-1)).max(-1)  # sup_k |h_k - x|
    res: dict[str, Any] = dict(
        run_dir=str(run_dir), depth=int(depth), seed=int(seed), activation=activation,
        delta_mode=delta_mode, limit=limit, n_inputs=int(xs.shape[0]),
        sup_error=err.tolist(), sup_error_mean=float(err.mean()), sup_error_max=float(err.max()),
        sup_displacement=move.tolist(),
        relative_sup_error=(err / np.maximum(move, 1e-300)).tolist(),
        output_error=np.sqrt(((h[:, -1] - H[:, -1]) ** 2).sum(-1)).tolist(),
        train_loss=_pick(metrics.get("train_loss"), seed), test_loss=_pick(metrics.get("test_loss"), seed),
    )
    if "surrogate_network" in extra:
        hs = extra["surrogate_network"]
        H0 = extra["limit_without_correction"]
        res["surrogate"] = SURROGATE["name"]
        res["surrogate_network_sup_error"] = np.sqrt(((hs - H) ** 2).sum(-1)).max(-1).tolist()
        res["relu_vs_surrogate_network_sup_error"] = np.sqrt(((h - hs) ** 2).sum(-1)).max(-1).tolist()
        res["surrogate_network_vs_limit_without_correction"] = (
            np.sqrt(((hs - H0) ** 2).sum(-1)).max(-1).tolist())
        sup = lambda a, b: float(np.sqrt(((a - b) ** 2).sum(-1)).max(-1).mean())  # noqa: E731
        res["surrogate_eps_scan"] = [
            dict(eps=e, relu_network_vs_limit=sup(h, He), surrogate_network_vs_limit=sup(hse, He),
                 relu_vs_surrogate_network=sup(h, hse))
            for e, He, hse in zip(SURROGATE_EPS, extra["limits_eps"],
                                  extra["surrogate_networks_eps"])]
    out_dir = Path(out) if out is not None else run_dir / "limits"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"L{depth:05d}"
    res["figure"] = _trained_figure(h, H, extra, res, stem.with_suffix(".png"))
    res["seconds"] = time.time() - t0
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    return res
