import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from resnet_limits.conv import init_conv_params
from resnet_limits.data import CIFAR10_MEAN, CIFAR10_STD, mock_cifar10
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.training.conv import (
    HISTORY,
    ConvTrainConfig,
    evaluate_conv,
    make_conv_optimizer,
    normalize_images,
    random_crop_flip,
    train_conv,
)

# Tiny but the same architecture: depth 8, 8 channels in stage 1, 64 mock images in one batch
# (one update per epoch, two in all). The tests share this configuration and equal train and
# test sizes, so the epoch and evaluation programs compile once.
DATA = mock_cifar10(jax.random.PRNGKey(1), 64, 64)
CFG = ConvTrainConfig(epochs=2, batch_size=64, width=8)


def test_optimizer_is_pytorch_sgd_with_weight_decay_and_cosine_lr():
    cfg = ConvTrainConfig(epochs=2, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt = make_conv_optimizer(cfg, steps_per_epoch=2)  # cosine over 4 updates
    p = {"w": jnp.array([1.0, -2.0])}
    grads = [jnp.array([0.5, 0.25]), jnp.array([-1.0, 0.5]), jnp.array([0.1, 0.1])]
    state = opt.init(p)
    ref, buf = np.array([1.0, -2.0]), np.zeros(2)
    for t, g in enumerate(grads):
        upd, state = opt.update({"w": g}, state, p)
        p = optax.apply_updates(p, upd)
        # torch.optim.SGD: buf = momentum buf + (g + wd p); p -= lr_t buf (CosineAnnealingLR per update)
        buf = 0.9 * buf + (np.asarray(g) + 0.01 * ref)
        ref = ref - 0.1 * 0.5 * (1 + np.cos(np.pi * t / 4)) * buf
        np.testing.assert_allclose(p["w"], ref, rtol=1e-6)


def test_random_crop_flip_is_a_shifted_possibly_mirrored_window_per_image():
    imgs = jax.random.uniform(jax.random.PRNGKey(0), (6, 8, 8, 2), minval=0.1, maxval=1.0)
    out = np.asarray(random_crop_flip(jax.random.PRNGKey(5), imgs, pad=4))
    seen = set()
    for img, o in zip(np.asarray(imgs), out):
        padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                if np.array_equal(o, padded[dy:dy + 8, dx:dx + 8][:, ::-1] if f else padded[dy:dy + 8, dx:dx + 8])]
        assert hits, "not a crop of the zero-padded image"
        seen.add(hits[0])
    assert len(seen) > 1  # every image draws its own offset and flip
    x = jnp.ones((1, 2, 2, 3)) * jnp.asarray(CIFAR10_MEAN)
    np.testing.assert_allclose(normalize_images(x), 0.0, atol=1e-7)
    np.testing.assert_allclose(normalize_images(x + jnp.asarray(CIFAR10_STD)), 1.0, rtol=1e-6)


def test_two_training_steps_lower_the_loss():
    key = jax.random.PRNGKey(0)
    init = init_conv_params(jax.random.split(key)[0], 8, 8)  # what train_conv starts from
    before, _ = evaluate_conv(init, 8, DATA.train_images, DATA.train_labels, CFG)
    res = train_conv(key, 8, DATA, CFG)
    after, _ = evaluate_conv(res.params, 8, DATA.train_images, DATA.train_labels, CFG)
    assert after < before - 1e-4  # random labels: the first steps fit their marginals
    assert res.train_loss.shape == (2,) and np.isfinite(res.train_loss).all()
    assert np.all((0 <= res.test_accuracy) & (res.test_accuracy <= 1)) and res.resumed_from == 0


class _Killed(Exception):
    pass


def test_killed_run_resumes_at_its_last_checkpoint_with_the_same_result(tmp_path):
    key = jax.random.PRNGKey(3)
    whole = train_conv(key, 8, DATA, CFG, ckpt_dir=tmp_path / "a")

    def kill(epoch, metrics):
        if epoch == 0:
            raise _Killed

    with pytest.raises(_Killed):
        train_conv(key, 8, DATA, CFG, ckpt_dir=tmp_path / "b", on_epoch=kill)
    seen = []
    resumed = train_conv(key, 8, DATA, CFG, ckpt_dir=tmp_path / "b", on_epoch=lambda e, m: seen.append(e))
    assert resumed.resumed_from == 1 and seen == [1]
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    for name in HISTORY[:-1]:  # all but the wall times
        np.testing.assert_array_equal(getattr(whole, name), getattr(resumed, name))
    assert whole.train_loss.shape == (2,) and resumed.seconds.shape == (2,)
    # a finished run is not trained again
    again = train_conv(key, 8, DATA, CFG, ckpt_dir=tmp_path / "b", on_epoch=lambda e, m: seen.append(e))
    assert again.resumed_from == 2 and seen == [1]
    np.testing.assert_array_equal(again.test_accuracy, whole.test_accuracy)
    # a checkpoint of another configuration is refused in one line
    with pytest.raises(UsageError, match=r"holds a checkpoint of another run: config=.*remove it"):
        train_conv(key, 8, DATA, ConvTrainConfig(epochs=2, batch_size=64, width=8, lr=0.05), ckpt_dir=tmp_path / "b")
    # a damaged one names itself and what to do
    (tmp_path / "b" / "2" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(DamagedRunError, match=r"checkpoint of epoch 2 in .* is damaged .*delete"):
        train_conv(key, 8, DATA, CFG, ckpt_dir=tmp_path / "b")


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UsageError, match="depth 9 is not a convolutional configuration"):
        train_conv(jax.random.PRNGKey(0), 9, DATA, CFG)
    with pytest.raises(UsageError, match="batch size 128 is larger than the training set"):
        train_conv(jax.random.PRNGKey(0), 8, DATA, ConvTrainConfig(width=8))
    for bad in (dict(epochs=0), dict(lr=-1.0), dict(momentum=1.0), dict(weight_decay=-1e-4), dict(width=0)):
        with pytest.raises(UsageError):
            ConvTrainConfig(**bad).validate()


def test_epoch_as_one_program_makes_the_same_updates_as_a_loop_of_steps():
    # the accelerator path (one lax.scan per epoch) against the CPU path (a loop of jitted
    # steps), two epochs each; 16 images in batches of 8 (two updates an epoch: the scan carries
    # the state from one to the next), 4 channels: on XLA:CPU a convolution gradient inside
    # lax.scan is the slow path this test has to run
    cfg = ConvTrainConfig(epochs=2, batch_size=8, width=4, eval_batch_size=16)
    data = mock_cifar10(jax.random.PRNGKey(1), 16, 16)
    scan, loop = (train_conv(jax.random.PRNGKey(0), 8, data, cfg, one_program=flag) for flag in (True, False))
    np.testing.assert_allclose(scan.train_loss, loop.train_loss, rtol=1e-5)
    np.testing.assert_array_equal(scan.train_accuracy, loop.train_accuracy)
    np.testing.assert_allclose(scan.test_loss, loop.test_loss, rtol=2e-4)
    for a, b in zip(jax.tree.leaves(scan.params), jax.tree.leaves(loop.params)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
