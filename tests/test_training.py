import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import finished, xla_env
from resnet_limits.data import synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import forward, forward_to_depth, init_params, init_scales, mse, pad_params
from resnet_limits.training.fc import (
    TrainConfig,
    _bucket_engine,
    _bucket_programs,
    _Graph,
    depth_capacity,
    initial_params,
    seed_keys,
    train_seeds,
)

DATA = synthetic(jax.random.PRNGKey(0), n_train=128, n_test=32)
# The tests train few graphs (activation, delta mode, optimiser, batch size) and seed counts, so that the
# bucket engine's programs are compiled once for the file: Adam / shared / tanh and SGD / per-layer / relu,
# each with 3 seeds and 1 seed (batches of 32, capacity 64, DATA's shapes).


def test_training_lowers_the_loss():
    # 32 updates in batches of 32: the graph (and seed count) of the tests below, compiled once
    cfg = TrainConfig(batch_size=32, epochs=8, max_updates=1000, epsilon=0.0)
    keys = seed_keys(0, 8, 3)
    before = jax.jit(jax.vmap(lambda k: mse(forward(  # one program, not one per operation
        init_params(jax.random.fold_in(k, 0), 8, 10), DATA.x_train, activation="tanh"), DATA.y_train)))(keys)
    res = train_seeds(keys, 8, DATA, cfg)
    assert np.all(res.train_loss < 0.5 * np.asarray(before))
    assert np.all(res.test_loss < 0.5 * np.asarray(before))
    assert res.loss_curve.shape == (3, 32) and np.all(res.updates == 32)
    assert np.all(res.loss_curve[:, -8:].mean(1) < res.loss_curve[:, :8].mean(1))
    assert not res.converged.any() and not res.diverged.any()


@pytest.mark.parametrize("optimizer,delta_mode,activation", [("adam", "shared", "tanh"), ("sgd", "per-layer", "relu")])
def test_vmapped_seeds_equal_seeds_trained_one_by_one(optimizer, delta_mode, activation):
    cfg = TrainConfig(optimizer=optimizer, delta_mode=delta_mode, activation=activation,
                      batch_size=32, epochs=2, max_updates=1000, epsilon=0.0)
    keys = seed_keys(7, 6, 3)
    together = train_seeds(keys, 6, DATA, cfg)
    for s in range(3):
        alone = train_seeds(keys[s:s + 1], 6, DATA, cfg)
        np.testing.assert_allclose(together.params.A[s], alone.params.A[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(together.params.delta[s], alone.params.delta[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(together.loss_curve[s], alone.loss_curve[0], rtol=1e-5)
    # seeds are really different
    assert not np.allclose(together.params.A[0], together.params.A[1])


def test_early_stopping_and_update_cap():
    # epsilon above any loss: every seed stops after its first epoch (4 updates)
    res = train_seeds(seed_keys(0, 5, 3), 5, DATA, TrainConfig(batch_size=32, epochs=10, epsilon=10.0, max_updates=1000))
    assert np.all(res.updates == 4) and res.converged.all()
    assert np.all(np.isnan(res.loss_curve[:, 4:]))
    # T_max caps the number of updates in the middle of an epoch
    res = train_seeds(seed_keys(0, 5, 3), 5, DATA, TrainConfig(batch_size=32, epochs=10, epsilon=0.0, max_updates=6))
    assert np.all(res.updates == 6) and not res.converged.any()
    assert res.loss_curve.shape == (3, 6) and np.isfinite(res.loss_curve).all()


def test_diverging_seed_is_recorded_and_others_go_on():
    # one epoch of the default (bucket) engine's programs, compiled above (Adam / shared / tanh, 3 seeds)
    cfg = TrainConfig(batch_size=32, epochs=2, epsilon=0.0, max_updates=100)
    keys = seed_keys(0, 4, 3)
    run = _bucket_engine(4, DATA, cfg, np.full((3,), cfg.lr, np.float32), None)
    state = run.init(keys)
    # seed 0 gets a non-finite weight: its loss is NaN from the first update
    A = np.array(state.params.A)
    A[0, 0, 0, 0] = np.nan
    state = state._replace(params=state.params._replace(A=jnp.asarray(A)))
    state, losses = run.epoch(state, keys, jnp.int32(0))
    assert bool(state.diverged[0]) and not np.any(state.diverged[1:])
    assert int(state.updates[0]) == 0 and np.all(state.updates[1:] == 4)
    assert not bool(state.active[0]) and np.all(state.active[1:])
    assert np.isnan(losses[0]).all() and np.isfinite(losses[1:]).all()


def test_huge_step_diverges_without_stopping_the_call():
    # SGD / per-layer / relu with 3 seeds: the programs of test_vmapped_seeds_equal_seeds_trained_one_by_one
    cfg = TrainConfig(optimizer="sgd", delta_mode="per-layer", activation="relu", lr=1e38, batch_size=32, epochs=2,
                      epsilon=0.0)
    res = train_seeds(seed_keys(0, 4, 3), 4, DATA, cfg)
    assert res.diverged.all()
    assert np.isfinite(res.params.A).all()  # last finite weights are kept


def test_bad_config_is_a_usage_error():
    with pytest.raises(UsageError, match="larger than the training set"):
        train_seeds(seed_keys(0, 4, 1), 4, DATA, TrainConfig(batch_size=1000))
    with pytest.raises(UsageError, match="learning rate must be positive"):
        train_seeds(seed_keys(0, 4, 1), 4, DATA, TrainConfig(lr=0.0))
    with pytest.raises(UsageError, match="depth must be >= 1"):
        train_seeds(seed_keys(0, 4, 1), 0, DATA, TrainConfig())


_SHARDED = textwrap.dedent("""
    import json, sys, jax, numpy as np
    from resnet_limits.data import synthetic
    from resnet_limits.training import TrainConfig, seed_keys, train_seeds
    assert jax.device_count() == int(sys.argv[1]), jax.devices()
    data = synthetic(jax.random.PRNGKey(0), n_train=128, n_test=32)
    res = train_seeds(seed_keys(3, 6, 3), 6, data, TrainConfig(batch_size=32, epochs=2, epsilon=0.0))
    lrs = train_seeds(seed_keys(3, 6, 3), 6, data, TrainConfig(batch_size=32, epochs=2, epsilon=0.0),
                      lrs=[0.01, 0.03, 0.001])
    print(json.dumps({"A": np.asarray(res.params.A).tolist(), "loss": np.asarray(res.train_loss).tolist(),
                      "lrs_A": np.asarray(lrs.params.A).tolist(), "lrs_curve": np.asarray(lrs.loss_curve).tolist()}))
""")


def _sharded_run(devices: int) -> subprocess.Popen:
    """The script above, started in a fresh process with ``devices`` XLA host devices (and the test run's XLA
    flags only, so runs compile alike whatever this process was started with)."""
    return subprocess.Popen([sys.executable, "-c", _SHARDED, str(devices)], env=xla_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(child: subprocess.Popen) -> dict:
    return json.loads(finished(child)[0].strip().splitlines()[-1])


def test_seed_axis_sharded_over_two_cpu_devices_gives_the_same_results():
    child = _sharded_run(2)
    try:
        if jax.default_backend() == "cpu" and jax.device_count() == 1:
            # meanwhile the one-device reference in this process (the 3-seed programs of the tests above)
            cfg = TrainConfig(batch_size=32, epochs=2, epsilon=0.0)
            res = train_seeds(seed_keys(3, 6, 3), 6, DATA, cfg)
            lrs = train_seeds(seed_keys(3, 6, 3), 6, DATA, cfg, lrs=[0.01, 0.03, 0.001])
            ref = {"A": res.params.A, "loss": res.train_loss, "lrs_A": lrs.params.A, "lrs_curve": lrs.loss_curve}
        else:  # this process is not one CPU device: the reference in a child too
            ref = _result(_sharded_run(1))
    except BaseException:
        child.kill()
        child.communicate()
        raise
    got = _result(child)
    np.testing.assert_allclose(np.array(got["A"]), np.array(ref["A"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(got["loss"]), np.array(ref["loss"]), rtol=1e-5)
    # several learning rates, 3 runs padded to 4 over the 2 devices
    np.testing.assert_allclose(np.array(got["lrs_A"]), np.array(ref["lrs_A"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(got["lrs_curve"]), np.array(ref["lrs_curve"]), rtol=1e-5)


def _assert_same_runs(a, b, rtol=2e-5, wtol=0.0):
    """Two TrainResults equal to float32 round-off (weights, curves, flags, final losses).

    ``wtol``: weights may differ by ``wtol`` times the largest weight: Adam's step g/sqrt(v)
    has size ~lr however small g is, so round-off in a near-zero gradient component moves a
    weight by far more than round-off (up to ~2e-6 of the weights' scale here).
    """
    for name in ("A", "b", "delta"):
        x, y = getattr(a.params, name), getattr(b.params, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.shape == y.shape
            scale = float(np.abs(y).max())
            np.testing.assert_allclose(x, y, rtol=rtol, atol=max(1e-7 * max(1.0, scale), wtol * scale))
    np.testing.assert_allclose(a.loss_curve, b.loss_curve, rtol=rtol)
    np.testing.assert_array_equal(a.updates, b.updates)
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=rtol)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=rtol)


@pytest.mark.parametrize("activation,delta_mode", [("tanh", "shared"), ("relu", "per-layer"), ("csoftplus", "none")])
def test_forward_to_depth_and_its_aa53_gradient_equal_the_scan_on_the_first_layers(activation, delta_mode):
    L, x = 7, DATA.x_train[:16]
    p = init_params(jax.random.PRNGKey(1), L, 10, init="brownian", delta_mode=delta_mode)
    padded = pad_params(p, 64)
    ref_loss, ref = jax.value_and_grad(
        lambda p: mse(forward(p, x, activation=activation, delta_mode=delta_mode), DATA.y_train[:16]))(p)
    loss, got = jax.jit(jax.value_and_grad(
        lambda p, L: mse(forward_to_depth(p, x, L, activation=activation, delta_mode=delta_mode), DATA.y_train[:16])))(
        padded, jnp.int32(L))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(got.A[:L], ref.A, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got.b[:L], ref.b, rtol=1e-5, atol=1e-9)
    assert not np.any(got.A[L:]) and not np.any(got.b[L:])  # padded layers: zero gradient
    if delta_mode == "per-layer":
        np.testing.assert_allclose(got.delta[:L], ref.delta, rtol=1e-5, atol=1e-9)
        assert not np.any(got.delta[L:])
    elif delta_mode == "shared":
        np.testing.assert_allclose(got.delta, ref.delta, rtol=1e-5)
    np.testing.assert_array_equal(  # a single input (d,) too
        forward_to_depth(padded, x[0], L, activation=activation, delta_mode=delta_mode),
        forward(p, x[0], activation=activation, delta_mode=delta_mode))


@pytest.mark.parametrize("delta_mode,init", [("shared", "xavier-depth"), ("per-layer", "brownian")])
def test_bucket_init_draws_bit_for_bit_the_weights_of_the_per_depth_program(delta_mode, init):
    # today's weights: init_params inside the jitted per-depth init (eager init_params rounds differently)
    cfg = TrainConfig(delta_mode=delta_mode, init=init)
    progs = _bucket_programs(_Graph("tanh", delta_mode, "adam", 32))
    keys = seed_keys(5, 0, 3)
    for L in (3,) if delta_mode == "shared" else (70,):
        sA, sb = init_scales(L, 10, init, 0.01)
        got = progs.init(keys, jnp.int32(L), np.float32(sA), np.float32(sb), np.float32(1 / L),
                         capacity=depth_capacity(L), width=10).params
        want = jax.jit(jax.vmap(lambda k: initial_params(k, L, 10, cfg)))(keys)
        want = jax.vmap(lambda p: pad_params(p, depth_capacity(L)))(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


# graphs and seed counts of the tests above, so the bucket programs are compiled already
@pytest.mark.parametrize("optimizer,delta_mode,activation,depth,n_seeds", [
    ("adam", "shared", "tanh", 40, 3), ("sgd", "per-layer", "relu", 5, 3)])
def test_bucket_engine_equals_the_per_depth_program(optimizer, delta_mode, activation, depth, n_seeds):
    cfg = TrainConfig(optimizer=optimizer, delta_mode=delta_mode, activation=activation, lr=0.05,
                      batch_size=32, epochs=3, max_updates=10, epsilon=0.0)
    keys = seed_keys(2, depth, n_seeds)
    bucket, static = train_seeds(keys, depth, DATA, cfg), train_seeds(keys, depth, DATA, cfg, engine="static")
    _assert_same_runs(bucket, static, wtol=1e-5 if optimizer == "adam" else 0.0)
    assert bucket.params.A.shape == (n_seeds, depth, 10, 10) and depth < depth_capacity(depth)


def test_several_learning_rates_in_one_program_equal_separate_runs():
    cfg = TrainConfig(batch_size=32, epochs=2, epsilon=0.0)
    key, lrs = seed_keys(1, 9, 1), (0.003, 0.05, 0.02)
    runs = train_seeds(jnp.concatenate([key] * 3), 9, DATA, cfg, lrs=list(lrs))
    for s, lr in enumerate(lrs):
        alone = train_seeds(key, 9, DATA, TrainConfig(batch_size=32, epochs=2, epsilon=0.0, lr=lr))
        _assert_same_runs(jax.tree.map(lambda a: a[s:s + 1], runs), alone, rtol=1e-6)
    assert not np.allclose(runs.params.A[0], runs.params.A[1])
    with pytest.raises(UsageError, match="one learning rate per key"):
        train_seeds(key, 9, DATA, cfg, lrs=[0.1, 0.2])
    with pytest.raises(UsageError, match="learning rates must be positive"):
        train_seeds(key, 9, DATA, cfg, lrs=[-1.0])


def test_a_grid_of_depths_compiles_one_program_per_capacity():
    # a graph no other test uses, so its programs start with empty caches
    cfg = TrainConfig(activation="csoftplus", optimizer="sgd", batch_size=64, epochs=1, epsilon=0.0)
    progs = _bucket_programs(_Graph(cfg.activation, cfg.delta_mode, cfg.optimizer, cfg.batch_size))
    for L in (3, 10, 40):  # one capacity (64)
        train_seeds(seed_keys(0, L, 2), L, DATA, cfg)
    assert progs.epoch._cache_size() == 1
    assert progs.init._cache_size() == 1 and progs.evaluate._cache_size() == 1
    train_seeds(seed_keys(0, 100, 2), 100, DATA, cfg)  # the next capacity (256)
    assert progs.epoch._cache_size() == 2
    assert [depth_capacity(L) for L in (1, 64, 65, 256, 257, 1024, 1025, 10321)] == [
        64, 64, 256, 256, 1024, 1024, 2048, 16384]
