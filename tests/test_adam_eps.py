"""Adam's epsilon against depth under the fixed parametrisation (beyond the papers; CompleteP, Dey et al.
2025): eps(L) = eps (L/L0)^-a, threaded through the bucket engine as an argument, recorded per depth, and
the parametrisations study's learning-rate transfer figure with and without it."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest
from matplotlib.lines import Line2D

from resnet_limits import plotting
from resnet_limits.config import SweepConfig, sweep_config
from resnet_limits.data import synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.sweeps import run_sweep
from resnet_limits.training import fc
from resnet_limits.training.fc import TrainConfig, _bucket_programs, _Graph, seed_keys, train_seeds

from helpers import load_depth

DATA = synthetic(jax.random.PRNGKey(0), n_train=64, n_test=16)
FIXED = dict(parametrization="fixed", batch_size=16, epochs=2, max_updates=8, epsilon=0.0, init="iid")
# The fixed-delta Adam runs (training and the sweep) train 2 seeds of DATA's shapes in batches of 16 with
# shared delta: one set of compiled programs for them all.
SMALL_SWEEP = dict(n_train=64, n_test=16, batch_size=16, seeds=2)


# ------------------------------------------------------------------ eps(L) ----------------

@pytest.mark.parametrize("kwargs,want", [
    (dict(**FIXED, branch_exponent=1.0, ref_depth=4), lambda L: 1e-8 * 4 / L),  # CompleteP: eps ~ 1/L
    (dict(**FIXED, branch_exponent=0.5, ref_depth=4, adam_eps=1e-6), lambda L: 1e-6 * (L / 4) ** -0.5),
    (dict(**FIXED, branch_exponent=0.5, ref_depth=4, adam_eps_depth=False), lambda L: 1e-8),  # rule off
    (dict(**FIXED, branch_exponent=1.0), lambda L: 1e-8),  # no reference depth: no depth rule at all
    (dict(ref_depth=4, lr_depth_exponent=-1.0), lambda L: 1e-8),  # learned delta: no epsilon rule
    (dict(), lambda L: 1e-8),  # the papers' defaults
    (dict(adam_eps=1e-3), lambda L: 1e-3),
    (dict(**FIXED, branch_exponent=1.0, ref_depth=4, optimizer="sgd"), lambda L: None),  # SGD has no epsilon
])
def test_epsilon_against_depth(kwargs, want):
    cfg = TrainConfig(**kwargs)
    cfg.validate()
    for L in (1, 4, 16, 1000):
        got, expected = cfg.adam_eps_at(L), want(L)
        assert got is None if expected is None else got == pytest.approx(expected, rel=1e-12)


def test_epsilon_fields_match_the_sweep_configuration_and_are_checked():
    cfg = sweep_config("tanh-synthetic", parametrization="fixed", branch_exponent=1.0, ref_depth=8, adam_eps=1e-7,
                       adam_eps_depth=False)
    t = cfg.train_config()
    assert (t.adam_eps, t.adam_eps_depth, t.ref_width) == (1e-7, False, None)
    assert TrainConfig().adam_eps == SweepConfig().adam_eps
    assert TrainConfig().adam_eps_depth is SweepConfig().adam_eps_depth
    for bad in (0.0, -1e-8, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="Adam's epsilon must be a positive number"):
            sweep_config("tanh-synthetic", adam_eps=bad)


def test_a_folder_written_before_the_rule_reads_as_a_constant_epsilon():
    """config.json without ``adam_eps_depth`` was trained with a constant epsilon: a fixed run with a
    reference depth reads as ``adam_eps_depth=False`` (so resuming it with the rule is refused); others
    keep the default, which changes nothing for them."""
    fixed = sweep_config("tanh-synthetic", depths=[3, 6], parametrization="fixed", branch_exponent=1.0, ref_depth=3)
    old = {k: v for k, v in fixed.to_json().items() if k not in ("adam_eps", "adam_eps_depth", "ref_width")}
    assert SweepConfig.from_json(old).adam_eps_depth is False
    assert SweepConfig.from_json(fixed.to_json()).adam_eps_depth is True
    learned = {k: v for k, v in sweep_config("tanh-synthetic", depths=[3, 6]).to_json().items()
               if k != "adam_eps_depth"}
    assert SweepConfig.from_json(learned).adam_eps_depth is True


# ------------------------------------------------------------------ training --------------

def _old_make_optimizer(name, lr, *, fixed_delta=False, eps=None):
    """make_optimizer as it was before Adam's epsilon was an argument: optax.adam(lr), eps 1e-8."""
    opt = optax.adam(lr) if name == "adam" else optax.sgd(lr)
    if not fixed_delta:
        return opt
    labels = lambda p: ResNetParams("train", "train", None if p.delta is None else "fixed")  # noqa: E731
    return optax.multi_transform({"train": opt, "fixed": optax.set_to_zero()}, labels)


def test_the_rule_changes_the_update_and_without_it_training_is_unchanged_bit_for_bit(monkeypatch):
    L, keys = 24, seed_keys(0, 24, 2)
    cfg = TrainConfig(**FIXED, branch_exponent=1.0, lr=0.01, ref_depth=4, adam_eps=1e-4)
    ruled = train_seeds(keys, L, DATA, cfg)
    const = train_seeds(keys, L, DATA, dataclasses.replace(cfg, adam_eps_depth=False))
    np.testing.assert_allclose(ruled.adam_eps, 1e-4 * 4 / 24, rtol=1e-6)
    np.testing.assert_allclose(const.adam_eps, 1e-4, rtol=1e-6)
    assert np.abs(ruled.params.A - const.params.A).max() > 1e-4  # a smaller eps: larger Adam steps
    np.testing.assert_array_equal(ruled.lr, const.lr)  # the learning rate is not touched
    static = train_seeds(keys, L, DATA, cfg, engine="static")  # the engines agree on eps(L) too
    np.testing.assert_allclose(static.params.A, ruled.params.A, rtol=1e-5, atol=1e-6)

    # adam_eps_depth=False with the default eps is the trainer before the rule, bit for bit
    plain = dataclasses.replace(cfg, adam_eps=1e-8, adam_eps_depth=False)
    now = train_seeds(keys, L, DATA, plain)
    graph = _Graph("tanh", "shared", "adam", 16, True, False)
    programs = _bucket_programs(graph)
    monkeypatch.setattr(fc, "make_optimizer", _old_make_optimizer)
    # the programs that make the optimiser (init, epoch) traced again with the old one, in a fresh copy (the
    # cached programs are kept for the other tests); the shuffle and the evaluation make none
    old = _bucket_programs.__wrapped__(graph)._replace(shuffle=programs.shuffle, evaluate=programs.evaluate)

    def old_programs(g):
        assert g == graph, g
        return old

    monkeypatch.setattr(fc, "_bucket_programs", old_programs)
    try:
        before = train_seeds(keys, L, DATA, plain)
    finally:
        monkeypatch.undo()
    for a, b in zip(jax.tree.leaves(now.params) + [now.loss_curve, now.train_loss],
                    jax.tree.leaves(before.params) + [before.loss_curve, before.train_loss]):
        np.testing.assert_array_equal(a, b)


def test_one_program_serves_every_depth_of_a_capacity_with_the_rule():
    # a graph no other test uses (relu, per-layer, batch 8), so its programs start with empty caches
    cfg = TrainConfig(**{**FIXED, "batch_size": 8}, activation="relu", delta_mode="per-layer", branch_exponent=0.5,
                      ref_depth=4)
    progs = _bucket_programs(_Graph(cfg.activation, cfg.delta_mode, cfg.optimizer, cfg.batch_size, True, False))
    eps = [train_seeds(seed_keys(0, L, 1), L, DATA, cfg).adam_eps[0] for L in (4, 9, 36)]
    train_seeds(seed_keys(0, 9, 1), 9, DATA, dataclasses.replace(cfg, adam_eps_depth=False))
    assert progs.epoch._cache_size() == 1
    np.testing.assert_allclose(eps, [1e-8, 1e-8 * (9 / 4) ** -0.5, 1e-8 / 3], rtol=1e-6)


def test_a_sweep_records_the_epsilon_next_to_the_learning_rate(tmp_path):
    common = dict(**SMALL_SWEEP, depths=[3, 12], epochs=1, max_updates=2, parametrization="fixed",
                  branch_exponent=1.0, ref_depth=3, init="iid")
    run_sweep(sweep_config("tanh-synthetic", **common), tmp_path / "adam", progress=False)
    run_sweep(sweep_config("tanh-synthetic", optimizer="sgd", **common), tmp_path / "sgd", progress=False)
    for L in (3, 12):
        m = load_depth(tmp_path / "adam", L)[1]
        np.testing.assert_allclose(m["adam_eps"], [1e-8 * 3 / L] * 2, rtol=1e-6)
        assert list(m)[list(m).index("lr") + 1] == "adam_eps"
        m = load_depth(tmp_path / "sgd", L)[1]
        assert m["adam_eps"] is None
        np.testing.assert_allclose(m["lr"], [0.01 * L / 3] * 2, rtol=1e-6)  # SGD, a = 1: eta L/L0
    assert json.loads((tmp_path / "adam" / "config.json").read_text())["adam_eps_depth"] is True


# ------------------------------------------------------------------ the figure ------------

def _transfer(losses, rule):
    return {"depths": [8, 64], "lrs": [0.001, 0.01, 0.1], "final_train_loss": losses,
            "optimal_lr": [0.01, 0.1], "lr_rule": "η at every depth", "eps_rule": rule}


def _data_lines(fig):
    return [ln for ln in fig.axes[0].get_lines() if isinstance(ln, Line2D) and len(ln.get_xdata())]


def test_the_transfer_figure_draws_the_rule_solid_and_the_constant_epsilon_dashed():
    ruled = _transfer([[0.3, 0.1, 0.2], [0.3, 0.2, 0.1]], "ε = 1e-08 (L/16)^-1")
    const = _transfer([[0.4, 0.2, None], [0.5, 0.3, 0.25]], "ε = 1e-08 at every depth")
    fig = plotting.parametrization_lr_transfer({"label": "δ = L^-1, iid", "lr_transfer": ruled,
                                                "lr_transfer_const_eps": const})
    lines = _data_lines(fig)
    solid = [ln for ln in lines if ln.get_linestyle() == "-"]
    dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(solid) == len(dashed) == 2
    for j in range(2):
        np.testing.assert_allclose(solid[j].get_ydata(), ruled["final_train_loss"][j])
        np.testing.assert_allclose(dashed[j].get_ydata(), np.array(const["final_train_loss"][j], float))
        assert solid[j].get_color() == dashed[j].get_color()  # one colour per depth
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "ε = 1e-08 (L/16)^-1" in labels and "ε = 1e-08 at every depth" in labels
    assert "L = 8, best η = 0.01 (solid), 0.01 (dashed)" in labels

    alone = plotting.parametrization_lr_transfer({"label": "learned δ (SP)", "lr_transfer": ruled,
                                                  "lr_transfer_const_eps": None})
    assert [ln.get_linestyle() for ln in _data_lines(alone)] == ["-", "-"]
