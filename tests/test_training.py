import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_limits.data import synthetic
from resnet_limits.errors import UsageError
from resnet_limits.models import forward, init_params, mse
from resnet_limits.training.fc import TrainConfig, _epoch, _init_state, make_optimizer, seed_keys, train_seeds

DATA = synthetic(jax.random.PRNGKey(0), n_train=128, n_test=32)


def test_training_lowers_the_loss():
    cfg = TrainConfig(batch_size=16, epochs=4, max_updates=1000, epsilon=0.0)
    keys = seed_keys(0, 8, 2)
    before = jax.vmap(lambda k: mse(forward(
        init_params(jax.random.fold_in(k, 0), 8, 10), DATA.x_train, activation="tanh"), DATA.y_train))(keys)
    res = train_seeds(keys, 8, DATA, cfg)
    assert np.all(res.train_loss < 0.5 * np.asarray(before))
    assert np.all(res.test_loss < 0.5 * np.asarray(before))
    assert res.loss_curve.shape == (2, 32) and np.all(res.updates == 32)
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
    res = train_seeds(seed_keys(0, 5, 2), 5, DATA, TrainConfig(batch_size=32, epochs=10, epsilon=10.0, max_updates=1000))
    assert np.all(res.updates == 4) and res.converged.all()
    assert np.all(np.isnan(res.loss_curve[:, 4:]))
    # T_max caps the number of updates in the middle of an epoch
    res = train_seeds(seed_keys(0, 5, 2), 5, DATA, TrainConfig(batch_size=32, epochs=10, epsilon=0.0, max_updates=6))
    assert np.all(res.updates == 6) and not res.converged.any()
    assert res.loss_curve.shape == (2, 6) and np.isfinite(res.loss_curve).all()


def test_diverging_seed_is_recorded_and_others_go_on():
    cfg = TrainConfig(batch_size=32, epochs=2, epsilon=0.0, max_updates=100)
    opt = make_optimizer(cfg.optimizer, cfg.lr)
    keys = seed_keys(0, 4, 2)
    state = jax.vmap(lambda k: _init_state(k, 4, 10, cfg, opt))(keys)
    # seed 0 gets a non-finite weight: its loss is NaN from the first update
    state = state._replace(params=state.params._replace(A=state.params.A.at[0, 0, 0, 0].set(jnp.nan)))
    epoch = jax.jit(jax.vmap(lambda st, k, e: _epoch(st, k, e, DATA, cfg, opt), in_axes=(0, 0, None)))
    state, losses = epoch(state, keys, jnp.int32(0))
    assert bool(state.diverged[0]) and not bool(state.diverged[1])
    assert int(state.updates[0]) == 0 and int(state.updates[1]) == 4
    assert not bool(state.active[0]) and bool(state.active[1])
    assert np.isnan(losses[0]).all() and np.isfinite(losses[1]).all()


def test_huge_step_diverges_without_stopping_the_call():
    res = train_seeds(seed_keys(0, 4, 2), 4, DATA, TrainConfig(optimizer="sgd", lr=1e38, batch_size=32, epochs=2, epsilon=0.0))
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
    import json, jax, numpy as np
    from resnet_limits.data import synthetic
    from resnet_limits.training import TrainConfig, seed_keys, train_seeds
    assert jax.device_count() == 2, jax.devices()
    data = synthetic(jax.random.PRNGKey(0), n_train=128, n_test=32)
    res = train_seeds(seed_keys(3, 6, 3), 6, data, TrainConfig(batch_size=32, epochs=2, epsilon=0.0))
    print(json.dumps({"A": np.asarray(res.params.A).tolist(), "loss": np.asarray(res.train_loss).tolist()}))
""")


def test_seed_axis_sharded_over_two_cpu_devices_gives_the_same_results():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    ref = train_seeds(seed_keys(3, 6, 3), 6, DATA, TrainConfig(batch_size=32, epochs=2, epsilon=0.0))
    np.testing.assert_allclose(np.array(got["A"]), ref.params.A, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(got["loss"]), ref.train_loss, rtol=1e-5)
