"""Depth parametrisations (beyond the papers): fixed delta = L^-a, the learning-rate depth rule, the iid and
smooth initialisations, the limit chosen by the regime, and the sweep's CLI flags."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.cli import main
from resnet_limits.data import synthetic
from resnet_limits.errors import UsageError
from resnet_limits.limits import brownian_qv, estimate_qv, weight_paths
from resnet_limits.limits.regime_limit import limit_on_weights
from resnet_limits.models import fourier_modes, init_params, pad_params
from resnet_limits.scaling import loglog_fit, table1
from helpers import load_depth
from resnet_limits.config import sweep_config
from resnet_limits.sweeps import load_config, run_sweep
from resnet_limits.training.fc import (
    TrainConfig,
    _bucket_programs,
    _Graph,
    depth_capacity,
    initial_params,
    seed_keys,
    train_seeds,
)

DATA = synthetic(jax.random.PRNGKey(0), n_train=64, n_test=16)
FIXED = dict(parametrization="fixed", batch_size=16, epochs=2, max_updates=8, epsilon=0.0)
# The fixed-delta Adam runs below (the training tests, the sweep and the CLI's) train 2 seeds of DATA's shapes
# (64 and 16 points of width 10) in batches of 16 with shared delta: one set of compiled programs for them all.
SMALL_SWEEP = dict(n_train=64, n_test=16, batch_size=16, seeds=2)


# ------------------------------------------------------------------ fixed delta, lr rule ---

@pytest.mark.parametrize("engine,delta_mode,optimizer,a", [
    ("bucket", "shared", "adam", 0.5), ("static", "per-layer", "sgd", 1.0)])
def test_fixed_delta_never_changes_in_training(engine, delta_mode, optimizer, a):
    L = 6
    cfg = TrainConfig(**FIXED, branch_exponent=a, delta_mode=delta_mode, optimizer=optimizer, init="iid", lr=0.05,
                      ref_depth=3)
    res = train_seeds(seed_keys(1, L, 2), L, DATA, cfg, engine=engine)
    assert np.all(res.params.delta == np.float32(L ** -a))  # bit for bit, every seed (and every layer)
    assert res.params.delta.shape == ((2,) if delta_mode == "shared" else (2, L))
    start = jax.jit(jax.vmap(lambda k: initial_params(k, L, 10, cfg)))(seed_keys(1, L, 2))  # one program
    assert np.all(res.updates == 8) and np.abs(res.params.A - np.asarray(start.A)).max() > 1e-3  # A did train
    np.testing.assert_allclose(res.lr, cfg.lr_at(L), rtol=1e-6)  # Adam: 0.05 (6/3)^-1/2; SGD: 0.05 (6/3)^1
    assert cfg.lr_at(L) == pytest.approx(0.05 * 2 ** (a - 1 if optimizer == "adam" else 2 * a - 1))


def test_learned_delta_still_trains():
    res = train_seeds(seed_keys(1, 6, 2), 6, DATA, TrainConfig(batch_size=16, epochs=2, max_updates=8, lr=0.05))
    assert np.all(res.params.delta != np.float32(1 / 6)) and np.all(res.lr == np.float32(0.05))


@pytest.mark.parametrize("optimizer,a,exponent,want", [
    ("adam", 0.5, None, 0.01 * (16 / 4) ** -0.5),  # Adam: eta (L/L0)^(a-1)
    ("sgd", 0.5, None, 0.01),  # SGD: eta (L/L0)^(2a-1) = eta when a = 1/2 (Depth-muP)
    ("sgd", 1.0, None, 0.01 * 16 / 4),  # CompleteP: SGD eta ~ L
    ("adam", 1.0, None, 0.01),
    ("adam", 0.5, -2.0, 0.01 * (16 / 4) ** -2.0),  # the override
])
def test_learning_rate_rule(optimizer, a, exponent, want):
    cfg = TrainConfig(**FIXED, branch_exponent=a, optimizer=optimizer, lr=0.01, ref_depth=4,
                      lr_depth_exponent=exponent)
    assert cfg.lr_at(16) == pytest.approx(want, rel=1e-12) and cfg.lr_at(4) == pytest.approx(0.01, rel=1e-12)


def test_learning_rate_rule_is_applied_to_the_training():
    """The rule's rate trains the same networks as that rate given by hand; per-run rates scale alike."""
    cfg = TrainConfig(**FIXED, branch_exponent=0.5, delta_mode="shared", init="iid", lr=0.05, ref_depth=3)
    keys, L = seed_keys(0, 12, 2), 12
    res = train_seeds(keys, L, DATA, cfg)
    by_hand = train_seeds(keys, L, DATA, dataclasses.replace(cfg, lr=cfg.lr_at(L), ref_depth=None,
                                                              adam_eps=cfg.adam_eps_at(L)))  # and eps(L) by hand
    np.testing.assert_allclose(res.lr, 0.05 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(res.params.A, by_hand.params.A, rtol=1e-5, atol=1e-7)
    # per-run rates 0.05 and 0.1 (the program of the 2 seeds above): scaled to 0.025 and 0.05, and trained so
    many = train_seeds(keys, L, DATA, cfg, lrs=[0.05, 0.1])
    np.testing.assert_allclose(many.lr, [0.025, 0.05], rtol=1e-6)
    np.testing.assert_allclose(many.params.A[0], res.params.A[0], rtol=1e-5, atol=1e-7)
    at_005 = train_seeds(keys, L, DATA, dataclasses.replace(cfg, lr=0.05, ref_depth=None, adam_eps=cfg.adam_eps_at(L)))
    np.testing.assert_allclose(many.params.A[1], at_005.params.A[1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(many.params.A[1], res.params.A[1])


def test_no_reference_depth_keeps_the_rate():
    cfg = TrainConfig(**FIXED, branch_exponent=0.5)
    assert cfg.lr_at(1000) == cfg.lr and TrainConfig().lr_at(1000) == 0.01


@pytest.mark.parametrize("kwargs,message", [
    (dict(parametrization="frozen"), "unknown parametrization 'frozen'; choose from learned-delta, fixed"),
    (dict(parametrization="fixed"), "the fixed parametrization needs a branch exponent"),
    (dict(parametrization="fixed", branch_exponent=float("nan")), "branch exponent must be a finite number >= 0"),
    (dict(parametrization="fixed", branch_exponent=float("inf")), "branch exponent must be a finite number >= 0"),
    (dict(parametrization="fixed", branch_exponent=-1.0), "got -1.0"),
    (dict(parametrization="fixed", branch_exponent=1.0, delta_mode="none"), "delta mode 'none' has no delta"),
    (dict(branch_exponent=0.5), "a branch exponent is a setting of the fixed parametrization only"),
    (dict(parametrization="fixed", branch_exponent=1.0, ref_depth=0.5), "reference depth must be >= 1, got 0.5"),
    (dict(parametrization="fixed", branch_exponent=1.0, ref_depth=float("nan")), "reference depth must be >= 1"),
    (dict(parametrization="fixed", branch_exponent=1.0, ref_depth=4, lr_depth_exponent=float("inf")),
     "learning-rate depth exponent must be finite, got inf"),
    (dict(parametrization="fixed", branch_exponent=1.0, lr_depth_exponent=-0.5), "needs a reference depth L0"),
    (dict(ref_depth=8), "learned-delta has no learning-rate depth rule"),
    (dict(init="gaussian"), "unknown init 'gaussian'; choose from xavier-depth, xavier, brownian, iid, smooth"),
])
def test_bad_parametrizations_give_one_line(kwargs, message):
    with pytest.raises(UsageError, match=None) as e:
        TrainConfig(**kwargs).validate()
    assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ initialisations --------

def test_bucket_engine_draws_the_weights_of_init_params():
    """The padded program of a fixed per-layer delta / smooth graph starts from initial_params' weights."""
    cfg = TrainConfig(parametrization="fixed", branch_exponent=0.5, init="smooth", delta_mode="per-layer")
    progs = _bucket_programs(_Graph("tanh", "per-layer", "adam", 32, True, True))
    keys, L = seed_keys(3, 0, 2), 70
    got = progs.init(keys, jnp.int32(L), np.float32(10 ** -0.5), np.float32(10 ** -0.5),
                     np.float32(L ** -0.5), capacity=depth_capacity(L), width=10).params
    want = jax.jit(jax.vmap(lambda k: pad_params(initial_params(k, L, 10, cfg), depth_capacity(L))))(keys)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_fourier_modes_have_unit_power():
    phi = fourier_modes(jnp.linspace(0.0, 1.0, 33), 3)
    assert phi.shape == (33, 7)
    np.testing.assert_allclose((phi ** 2).sum(1), 1.0, rtol=1e-6)


# init_params as one program per depth and initialisation (not one per operation)
_init_params = jax.jit(init_params, static_argnums=(1, 2), static_argnames=("init", "delta_mode", "branch_exponent",
                                                                            "dtype"))


def test_smooth_init_is_smooth_and_iid_is_not():
    """smooth: ||A_{k+1} - A_k|| = O(1/L) (the beta-scaled increments, beta = 0, vanish); iid: O(1)."""
    depths = (64, 256, 1024)
    inc = {init: [float(table1(_init_params(jax.random.PRNGKey(L), L, 8, init=init).A, 2)["increment"])
                  for L in depths] for init in ("smooth", "iid")}
    assert loglog_fit(depths, inc["smooth"]).slope == pytest.approx(-1.0, abs=0.1)
    assert inc["smooth"][-1] < 0.02 * inc["iid"][-1]
    assert abs(loglog_fit(depths, inc["iid"]).slope) < 0.15
    # both have N(0, 1/d) entries
    for init in ("smooth", "iid"):
        A = np.concatenate([np.asarray(_init_params(jax.random.PRNGKey(s), 64, 8, init=init).A).ravel()
                            for s in range(20)])
        assert A.var() == pytest.approx(1 / 8, rel=0.1)


def test_iid_init_with_delta_L_to_minus_half_is_brownian_with_qv_one_over_d():
    """delta_k A_k, delta = L^-1/2, A iid N(0, 1/d): the quadratic variation that limits estimates is
    1/d per entry (SP Remark 2.1 has 1/d^2 for A; b has 1/d in both)."""
    L, d = 4096, 4

    @jax.jit  # one program, not one per operation
    def sigmas(key):
        p = init_params(key, L, d, init="iid", branch_exponent=0.5, dtype=jnp.float64)
        wp = weight_paths(p, "shared")
        qv = estimate_qv(wp.X_A.increments, wp.X_b.increments)
        return qv.sigma_A(), qv.sigma_b()

    with jax.enable_x64(True):
        sA, sb = (np.asarray(s) for s in sigmas(jax.random.PRNGKey(0)))
    diag = np.einsum("kijj->kij", sA)
    assert diag.mean() == pytest.approx(1 / d, rel=0.03)
    assert sb.mean() == pytest.approx(1 / d, rel=0.05)
    off = sA - np.einsum("kij,jl->kijl", diag, np.eye(d))
    assert np.abs(off.mean(0)).max() < 0.1 / d
    remark = np.asarray(brownian_qv(1, d).sigma_A())[0]
    assert np.einsum("ijj->ij", remark).mean() == pytest.approx(1 / d**2)  # Remark 2.1: d times smaller


# ------------------------------------------------------------------ the limit by regime -----

# jitted with the weights' draw (one program per depth instead of one per operation): the depth, width,
# initialisation, activation, hypothesis and branch exponent static
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _limit_on_drawn_weights(xs, L, d, init, activation, hypothesis, a):
    p = init_params(jax.random.PRNGKey(0), L, d, init=init, branch_exponent=a, dtype=jnp.float64)
    return limit_on_weights(p, xs, activation, "shared", hypothesis)


def test_hypothesis_2_limit_is_the_network_for_the_identity():
    """Euler on the knots of the absorbed path is the network itself when sigma is the identity."""
    with jax.enable_x64(True):
        xs = jax.random.normal(jax.random.PRNGKey(1), (3, 4), jnp.float64)
        h, H = _limit_on_drawn_weights(xs, 50, 4, "iid", "identity", 2, 0.5)
    assert h.shape == H.shape == (3, 51, 4)
    np.testing.assert_allclose(h, H, atol=1e-12)


def test_hypothesis_1_limit_is_the_neural_ode_at_rate_one_over_L():
    """delta = 1/L, smooth weights: the network is the Euler scheme of SP eq. 2, error O(1/L)."""
    depths, err = (12, 48), []
    with jax.enable_x64(True):
        xs = jax.random.normal(jax.random.PRNGKey(1), (2, 3), jnp.float64)
        for L in depths:
            h, H = _limit_on_drawn_weights(xs, L, 3, "smooth", "tanh", 1, 1.0)
            err.append(float(jnp.abs(h - H).max()))
    assert loglog_fit(depths, err).slope == pytest.approx(-1.0, abs=0.15)
    with pytest.raises(ValueError, match="hypothesis must be 1 or 2"), jax.enable_x64(True):
        _limit_on_drawn_weights(xs, 12, 3, "smooth", "tanh", 3, 1.0)


# ------------------------------------------------------------------ sweeps and the CLI ------

def test_default_configuration_is_unchanged_and_fixed_is_recorded(tmp_path):
    default = sweep_config("tanh-synthetic")
    assert (default.parametrization, default.branch_exponent, default.ref_depth) == ("learned-delta", None, None)
    assert sweep_config("tanh-synthetic", parametrization="learned-delta") == default
    cfg = sweep_config("tanh-synthetic", **SMALL_SWEEP, epochs=1, max_updates=3, depths=[3, 12],
                      parametrization="fixed", branch_exponent=0.5, ref_depth=3, init="iid")
    run_sweep(cfg, tmp_path, progress=False)
    saved = load_config(tmp_path)
    assert (saved.parametrization, saved.branch_exponent, saved.ref_depth) == ("fixed", 0.5, 3)
    for L in (3, 12):
        params, metrics = load_depth(tmp_path, L)
        np.testing.assert_allclose(metrics["lr"], [0.01 * (L / 3) ** -0.5] * 2, rtol=1e-6)  # Adam, a = 1/2
        assert np.all(params.delta == np.float32(L ** -0.5))


def test_cli_flags_reach_the_configuration(tmp_path, capsys):
    small = [a for k, v in SMALL_SWEEP.items() for a in ("--" + k.replace("_", "-"), str(v))]
    assert main(["sweep", "tanh-synthetic", "--out", str(tmp_path), "--depths", "2", "8", *small,
                 "--epochs", "1", "--max-updates", "2", "--no-progress", "--parametrization", "fixed",
                 "--branch-exponent", "0.5", "--ref-depth", "2", "--lr-depth-exponent", "-1",
                 "--init", "iid"]) == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert {k: cfg[k] for k in ("parametrization", "branch_exponent", "ref_depth", "lr_depth_exponent", "init")} == \
        {"parametrization": "fixed", "branch_exponent": 0.5, "ref_depth": 2.0, "lr_depth_exponent": -1.0,
         "init": "iid"}
    assert {k: cfg[k] for k in SMALL_SWEEP} == SMALL_SWEEP
    np.testing.assert_allclose(load_depth(tmp_path, 8)[1]["lr"], [0.01 * 2 / 8] * 2, rtol=1e-6)
    assert "2 depths finished" in capsys.readouterr().out


SWEEP = ["sweep", "tanh-synthetic", "--out", "{d}", "--depths", "3"]


@pytest.mark.parametrize("argv,message", [
    ([*SWEEP, "--parametrization", "frozen"], "argument --parametrization: invalid choice: 'frozen'"),
    ([*SWEEP, "--parametrization", "fixed", "--branch-exponent", "nan"],
     "branch exponent must be a finite number >= 0, got nan"),
    ([*SWEEP, "--parametrization", "fixed", "--branch-exponent", "inf"],
     "branch exponent must be a finite number >= 0, got inf"),
    ([*SWEEP, "--branch-exponent", "half"], "argument --branch-exponent: must be a number, got 'half'"),
    ([*SWEEP, "--parametrization", "fixed", "--branch-exponent", "1", "--ref-depth", "0"],
     "reference depth must be >= 1, got 0"),
    ([*SWEEP, "--lr-depth-exponent", "inf"], "learning-rate depth exponent must be finite, got inf"),
    ([*SWEEP, "--init", "gaussian"], "argument --init: invalid choice: 'gaussian'"),
    ([*SWEEP, "--parametrization", "fixed"], "the fixed parametrization needs a branch exponent"),
    ([*SWEEP, "--branch-exponent", "0.5"], "a branch exponent is a setting of the fixed parametrization only"),
    ([*SWEEP, "--ref-depth", "8"], "learned-delta has no learning-rate depth rule"),
    ([*SWEEP, "--parametrization", "fixed", "--branch-exponent", "1", "--lr-depth-exponent", "0"],
     "needs a reference depth L0"),
    (["sweep", "conv-cifar10", "--out", "{d}", "--init", "iid"], "--init is not a setting of conv-cifar10"),
    (["sweep", "conv-cifar10", "--out", "{d}", "--parametrization", "fixed"],
     "--parametrization is not a setting of conv-cifar10"),
])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main([a.format(d=tmp_path / "run") for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resnet-limits: error: ") and message in err, err
    assert not (tmp_path / "run").exists()
