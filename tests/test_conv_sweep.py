"""Tests of the convolutional sweep (``sweeps/conv.py``), its analysis (``analysis/conv.py``,
``scaling/conv_analysis.py``) and SP Figs 7-8 / Table 5 (``plotting.conv_figures``), on tiny
networks (width 8, a few random images)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from helpers import load_depth
from resnet_limits import sweeps
from resnet_limits.config import sweep_config
from resnet_limits.analysis import analyze_run, format_analysis
from resnet_limits.cli import main
from resnet_limits.conv import CONFIGS, block_kernels, init_conv_params
from resnet_limits.errors import UsageError
from resnet_limits.scaling import conv_block_norms, conv_exponents, conv_spectral_norm, conv_spectral_norms, conv_table1
from resnet_limits.sweeps.conv import flatten_params, unflatten_params

TINY = dict(mock_data=48, width=8, epochs=1, batch_size=16)


def test_config_defaults_and_bad_input():
    cfg = sweep_config("conv-cifar10")
    assert cfg.depths == tuple(CONFIGS) and cfg.dataset == "cifar10"
    assert (cfg.n_train, cfg.n_test, cfg.epochs, cfg.lr, cfg.batch_size) == (50000, 10000, 200, 0.1, 128)
    mock = sweep_config("conv-cifar10", mock_data=512, depths=[11, 8])
    assert (mock.n_train, mock.n_test, mock.depths) == (512, 102, (8, 11))
    for bad in (dict(depths=[9]), dict(mock_data=64), dict(seeds=3), dict(mock_data=64, batch_size=16, data_dir="x")):
        with pytest.raises(UsageError) as e:
            sweep_config("conv-cifar10", **bad)
        assert "\n" not in str(e.value)


def test_cli_refuses_bad_conv_input_in_one_line(tmp_path, capsys):
    for extra in (["--depths", "9"], ["--seeds", "2"], ["--quick"]):
        assert main(["sweep", "conv-cifar10", "--mock-data", "64", "--out", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("resnet-limits: error:")
    assert main(["sweep", "tanh-synthetic", "--mock-data", "64", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_params_flatten_round_trip():
    p = init_conv_params(jax.random.PRNGKey(0), 11, 4)
    flat = flatten_params(p)
    assert "stage2/entry_F" in flat and "head/bias" in flat
    back = unflatten_params(flat)
    assert jax.tree.structure(back) == jax.tree.structure(p)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(p)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_block_norms_and_increments_on_known_kernels():
    """A kernel that is c times the identity (centre tap) has operator norm |c| on any size;
    increments are NaN where shape or size changes (stage entries)."""
    p = init_conv_params(jax.random.PRNGKey(1), 8, 4)
    blocks = block_kernels(p)
    for k, b in enumerate(blocks):
        for name in ("A", "Delta"):
            K = np.zeros(np.shape(b[name]), np.float32)
            K[1, 1] = (k + 1) * np.eye(K.shape[2], K.shape[3])
            b[name] = K
    fam = conv_block_norms(blocks)
    for name in ("A", "Delta"):
        np.testing.assert_allclose(fam[name]["norms"], np.arange(1, 9), rtol=1e-5)
        # kernels of one shape on one size: within a stage, and for A not from a stride-2 entry
        # (its A maps c/2 -> c channels on the larger input)
        same = np.array([b1["stage"] == b2["stage"] and (name == "Delta" or b1["stride"] == 1)
                         for b1, b2 in zip(blocks, blocks[1:])])
        inc = fam[name]["increments"]
        assert same.sum() == (4 if name == "Delta" else 1)
        np.testing.assert_allclose(inc[same], 1.0, rtol=1e-5)
        assert np.isnan(inc[~same]).all()
    t = conv_table1(fam["A"]["norms"], fam["A"]["increments"], 0.5)
    assert t["max_norm"] == pytest.approx(8) and t["rss"] == pytest.approx(np.sqrt(np.sum(np.arange(1, 9) ** 2)))
    assert t["scaled_increment"] == pytest.approx(8 ** 0.5)
    # and a random kernel's norm is the one conv_spectral_norm gives
    K = np.asarray(p["stage3"]["entry_A"])
    assert conv_block_norms(block_kernels(p))["A"]["norms"][4] == pytest.approx(float(conv_spectral_norm(K, (8, 8))), rel=1e-5)


def test_conv_exponents_recover_planted_powers():
    L = np.array([8, 16, 33, 65, 121])
    e = conv_exponents(L, 2.0 * L ** -0.1, 3.0 * L ** 0.0)
    assert e["alpha"] == pytest.approx(0.1, abs=1e-9) and e["beta"] == pytest.approx(0.0, abs=1e-9)
    assert conv_exponents([8], [1.0], [1.0])["alpha"] is None


@pytest.mark.slow
def test_analysis_of_an_untrained_conv_folder(tmp_path):
    """The analysis on a folder of initial weights written through the run-folder mechanics."""
    from resnet_limits.sweeps.folder import record_config, save_depth

    out = tmp_path / "run"
    cfg = sweep_config("conv-cifar10", depths=[8, 11], **TINY)
    record_config(out, dict(cfg, data_info={"dataset": "cifar10-mock", "split": "none"}))
    for L in cfg.depths:
        p = init_conv_params(jax.random.PRNGKey(L), L, 8)
        save_depth(out, L, flatten_params(p), {"depth": L, "epochs": 0, "test_error": 0.9, "parameters": 1})
    r = analyze_run(out, progress=False, figures=False)
    assert r["depths"] == [8, 11] and r["table5"]["test_error_percent"] == pytest.approx([90.0] * 2)
    assert len(r["per_depth"]["11"]["A"]["norms"]) == 11 and r["figures"] == []
    with open(out / "depths" / "L00011.npz", "ab") as f:
        f.write(b"x")
    r = analyze_run(out, progress=False, figures=False)
    assert r["depths"] == [8] and r["alpha"] is None and "L00011.npz" in r["left_out"]["11"]


@pytest.mark.slow
def test_tiny_conv_sweep_and_analysis_end_to_end(tmp_path):
    out = tmp_path / "run"
    cfg = sweep_config("conv-cifar10", depths=[8, 11], **TINY)
    rep = sweeps.run_conv_sweep(cfg, out, progress=False)
    assert rep.finished == [8, 11] and not list((out / "depths").glob("*.ckpt"))
    saved = json.loads((out / "config.json").read_text())
    assert saved["data_info"]["dataset"] == "cifar10-mock" and saved["n_train"] == 48
    params, m = load_depth(out, 8)
    assert m["epochs"] == 1 and len(m["test_accuracy"]) == 1 and m["resumed_from"] == 0
    assert m["test_error"] == pytest.approx(1 - m["test_accuracy"][-1]) and "sha256" in m
    assert params["stage1"]["rest_A"].shape == (1, 3, 3, 8, 8)
    r = analyze_run(out, progress=False)
    assert r["kind"] == "conv" and r["depths"] == [8, 11] and r["alpha"] is not None and r["beta"] is not None
    d8 = r["per_depth"]["8"]
    assert len(d8["Delta"]["norms"]) == 8 and len(d8["A"]["increments"]) == 7
    assert d8["A"]["max_norm"] == pytest.approx(max(d8["A"]["norms"]))
    assert r["table5"]["test_error_percent"][0] == pytest.approx(100 * m["test_error"])
    assert "| 8 |" in (out / "table5.md").read_text() and "6.64" in (out / "table5.md").read_text()
    assert sorted(p.split("/")[-1] for p in r["figures"]) == ["fig7_conv_norms.png", "fig8_conv_hypotheses.png"]
    assert all((out / "figures" / n).stat().st_size > 1000 for n in ("fig7_conv_norms.png", "fig8_conv_hypotheses.png"))
    assert json.loads((out / "analysis.json").read_text())["alpha"] == pytest.approx(r["alpha"])
    assert "alpha" in format_analysis(r)
    # a rerun trains nothing
    assert sweeps.run_conv_sweep(sweep_config("conv-cifar10", depths=[8, 11], **TINY), out, progress=False).trained == []


@pytest.mark.slow
def test_killed_conv_depth_resumes_at_its_last_checkpoint(tmp_path, monkeypatch):
    """Interrupted after epoch 1 of 2, the rerun resumes from the checkpoint and ends with the
    weights of an uninterrupted run."""
    from resnet_limits.training import conv as tconv

    cfg = dict(TINY, epochs=2, mock_data=32)
    ref = tmp_path / "ref"
    sweeps.run_conv_sweep(sweep_config("conv-cifar10", depths=[8], **cfg), ref, progress=False)
    real = tconv.train_conv

    def killed(*a, **k):
        def stop(epoch, metrics):
            if epoch == 0:
                raise KeyboardInterrupt

        return real(*a, **k, on_epoch=stop)

    monkeypatch.setattr(sweeps.conv, "train_conv", killed)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_conv_sweep(sweep_config("conv-cifar10", depths=[8], **cfg), out, progress=False)
    assert (out / "depths" / "L00008.ckpt").is_dir() and sweeps.finished_depths(out) == []
    monkeypatch.setattr(sweeps.conv, "train_conv", real)
    sweeps.run_conv_sweep(sweep_config("conv-cifar10", depths=[8], **cfg), out, progress=False)
    (a, ma), (b, mb) = load_depth(out, 8), load_depth(ref, 8)
    assert ma["resumed_from"] == 1 and mb["resumed_from"] == 0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert ma["test_accuracy"] == pytest.approx(mb["test_accuracy"])


def test_kernel_operator_norms_in_power_of_two_stacks(monkeypatch):
    """Kernels grouped by shape and size, each group in stacks of 2^j (7 = 4 + 2 + 1, no padding):
    the norms are those of one kernel at a time, in the input's order."""
    from resnet_limits.scaling import conv_analysis
    from resnet_limits.scaling.conv_analysis import kernel_operator_norms

    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(3, 3, 4, 4)).astype(np.float32) for _ in range(7)]
    kernels += [rng.normal(size=(3, 3, 2, 4)).astype(np.float32) for _ in range(2)]
    sizes = [(8, 8)] * 5 + [(4, 4)] * 2 + [(8, 8)] * 2
    order = rng.permutation(len(kernels))
    kernels, sizes = [kernels[i] for i in order], [sizes[i] for i in order]
    stacks = []
    real = conv_analysis.conv_spectral_norms
    monkeypatch.setattr(conv_analysis, "conv_spectral_norms", lambda Ks, hw: stacks.append(len(Ks)) or real(Ks, hw))
    got = kernel_operator_norms(kernels, sizes)
    want = [float(conv_spectral_norm(K, hw)) for K, hw in zip(kernels, sizes)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert sorted(stacks) == [1, 2, 2, 4]  # 5 = 4 + 1 of (4,4,8x8), 2 of (4,4,4x4), 2 of (2,4,8x8)
    stacks.clear()
    same = [k for k in kernels if k.shape[2] == 4][:7]
    np.testing.assert_allclose(kernel_operator_norms(same, [(8, 8)] * 7),
                               [float(conv_spectral_norm(K, (8, 8))) for K in same], rtol=1e-6)
    assert stacks == [4, 2, 1]  # 7 = 4 + 2 + 1, largest first
    assert len(kernel_operator_norms([], [])) == 0 and stacks == [4, 2, 1]


def test_single_threaded_lapack_holds_and_restores_the_blas_threads():
    import ctypes

    from scipy.linalg import cython_lapack

    from resnet_limits.analysis.conv import single_threaded_lapack

    lib = ctypes.CDLL(cython_lapack.__file__)
    get = getattr(lib, "scipy_openblas_get_num_threads", None) or getattr(lib, "openblas_get_num_threads", None)
    if get is None:
        pytest.skip("SciPy's LAPACK is not OpenBLAS here")
    before = get()
    K = np.random.default_rng(1).normal(size=(2, 3, 3, 8, 8)).astype(np.float32)
    outside = np.asarray(conv_spectral_norms(K, (4, 4)))
    with single_threaded_lapack() as held:
        assert held and get() == 1
        inside = np.asarray(conv_spectral_norms(K, (4, 4)))
    assert get() == before
    np.testing.assert_allclose(inside, outside, rtol=1e-6)
    with pytest.raises(KeyboardInterrupt), single_threaded_lapack():
        raise KeyboardInterrupt
    assert get() == before
