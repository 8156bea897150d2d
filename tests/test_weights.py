"""Import of weights trained elsewhere (``resnet_limits/weights.py``, ``resnet-limits import-weights``)."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from resnet_limits.cli import main
from resnet_limits.errors import UsageError
from resnet_limits.models import forward
from helpers import load_depth
from resnet_limits.config import sweep_config
from resnet_limits.sweeps import finished_depths, load_config, run_sweep
from resnet_limits.weights import TORCH_HINT, find_sources, from_arrays, import_weights, probe_inputs, write_run

DEPTHS = [3, 4, 6, 8]
EXPONENTS = ("alpha", "beta", "nu", "beta_b", "nu_b")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A tiny sweep of ours: 2 seeds at 4 depths, 4 updates each."""
    run = tmp_path_factory.mktemp("ours") / "run"
    run_sweep(sweep_config("tanh-synthetic", depths=DEPTHS, seeds=2, max_updates=4), run, progress=False)
    return run


def _export_npz(run, folder, *, row_convention: bool):
    """Every network of ``run`` as its own .npz (A transposed for the row convention)."""
    folder.mkdir()
    for L in finished_depths(run):
        p, _ = load_depth(run, L)
        for s in range(p.A.shape[0]):
            A = np.swapaxes(p.A[s], -1, -2) if row_convention else p.A[s]
            np.savez(folder / f"L{L:03d}_s{s}.npz", A=A, b=p.b[s], delta=p.delta[s])
    return folder


def _export_authors(run, folder):
    """Every network of ``run`` in the authors' layout: DEPTH/weights/{A,b,C}.p, lists of
    nn.Parameter saved by torch.save, used as h @ A + b; C.p one Parameter of shape (1,)."""
    torch = pytest.importorskip("torch")
    P = torch.nn.Parameter
    for L in finished_depths(run):
        p, _ = load_depth(run, L)
        for s in range(p.A.shape[0]):
            w = folder / f"depth_{L:03d}_seed{s}" / "weights"
            w.mkdir(parents=True)
            torch.save([P(torch.tensor(np.array(a.T))) for a in p.A[s]], w / "A.p")
            torch.save([P(torch.tensor(np.array(v))) for v in p.b[s]], w / "b.p")
            torch.save(P(torch.tensor([float(p.delta[s])])), w / "C.p")
    return folder


def _same_weights(ours_run, imported):
    assert finished_depths(imported) == finished_depths(ours_run) == DEPTHS
    for L in DEPTHS:
        a, _ = load_depth(ours_run, L)
        b, m = load_depth(imported, L)
        assert m["imported"] and m["seeds"] == 2 and len(m["source"]) == 2
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _exponents(run) -> dict:
    from resnet_limits.analysis import analyze_run

    res = analyze_run(run, progress=False, figures=False)
    assert json.loads((run / "analysis.json").read_text())["beta"] == pytest.approx(res["beta"], nan_ok=True)
    return {k: res[k] for k in EXPONENTS}


@pytest.mark.parametrize("row_convention", [False, True])
def test_npz_round_trip_gives_the_same_run(ours, tmp_path, row_convention):
    src = _export_npz(ours, tmp_path / "npz", row_convention=row_convention)
    argv = ["import-weights", str(src), "--out", str(tmp_path / "imp")] + ["--row-convention"] * row_convention
    assert main(argv) == 0
    _same_weights(ours, tmp_path / "imp")
    cfg, mine = load_config(tmp_path / "imp"), load_config(ours)
    assert cfg.dataset == "imported" and cfg.seeds == 2 and list(cfg.depths) == list(DEPTHS)
    assert (cfg.activation, cfg.delta_mode, cfg.width) == (mine.activation, mine.delta_mode, mine.width)
    assert cfg.source == (str(src.absolute()),)
    # importing the same sources again into the same folder is allowed and changes nothing
    assert main(argv) == 0
    _same_weights(ours, tmp_path / "imp")


def test_npz_import_keeps_the_analysis_exponents(ours, tmp_path):
    pytest.importorskip("resnet_limits.analysis")
    imp = import_weights([_export_npz(ours, tmp_path / "npz", row_convention=True)], tmp_path / "imp",
                         row_convention=True)
    assert _exponents(imp) == pytest.approx(_exponents(ours), nan_ok=True)


def test_authors_torch_layout_round_trip(ours, tmp_path, capsys):
    src = _export_authors(ours, tmp_path / "authors")
    assert main(["import-weights", str(src), "--out", str(tmp_path / "imp")]) == 0
    assert "imported 4 depths" in capsys.readouterr().out
    _same_weights(ours, tmp_path / "imp")
    assert load_config(tmp_path / "imp").delta_mode == "shared"
    if importlib.util.find_spec("resnet_limits.analysis") is not None:
        assert _exponents(tmp_path / "imp") == pytest.approx(_exponents(ours), nan_ok=True)


def test_authors_per_layer_and_no_delta(tmp_path):
    """C.p a list of L tensors -> per-layer deltas (signed); no C.p -> no delta."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    A, b, c = rng.normal(size=(5, 3, 3)), rng.normal(size=(5, 1, 3)), rng.normal(size=(5, 1))
    for name, with_c in (("multi", True), ("none", False)):
        w = tmp_path / name / "weights"
        w.mkdir(parents=True)
        torch.save([torch.tensor(a) for a in A], w / "A.p")
        torch.save([torch.tensor(v) for v in b], w / "b.p")  # (1, d) per layer
        if with_c:
            torch.save([torch.tensor(v) for v in c], w / "C.p")
        run = import_weights([w.parent], tmp_path / f"run_{name}", activation="relu")
        p, _ = load_depth(run, 5)
        np.testing.assert_array_equal(p.A[0], np.swapaxes(A, 1, 2))
        np.testing.assert_array_equal(p.b[0], b[:, 0])
        if with_c:
            assert load_config(run).delta_mode == "per-layer"
            np.testing.assert_array_equal(p.delta[0], c[:, 0])
        else:
            assert load_config(run).delta_mode == "none" and p.delta is None


def _reference_forward(x, A, b, delta, *, row_convention, sigma=np.tanh):
    """SP eq. 1 written out in numpy: x + delta_k sigma(A_k x + b_k), or x @ A_k for the row convention."""
    for k in range(A.shape[0]):
        pre = x @ A[k] if row_convention else x @ A[k].T
        x = x + delta[k] * sigma(pre + b[k])
    return x


@pytest.mark.parametrize("row_convention", [False, True])
@pytest.mark.parametrize("delta_mode", ["shared", "per-layer"])
def test_imported_network_computes_the_same_output(row_convention, delta_mode):
    rng = np.random.default_rng(2)
    L, d = 7, 4
    A, b = rng.normal(size=(L, d, d)).astype(np.float32) / d, rng.normal(size=(L, d)).astype(np.float32)
    delta = np.float32(-0.4) if delta_mode == "shared" else rng.normal(size=L).astype(np.float32)
    net = from_arrays(list(A), list(b), delta if delta_mode == "shared" else list(delta), row_convention=row_convention)
    x = rng.normal(size=(5, d)).astype(np.float32)
    want = _reference_forward(x, A, b, np.abs(delta) * np.ones(L) if delta_mode == "shared" else delta,
                              row_convention=row_convention)
    got = forward(net, x, activation="tanh", delta_mode=delta_mode)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_write_run_from_python_and_probe_inputs(tmp_path):
    rng = np.random.default_rng(3)
    nets = {L: from_arrays(rng.normal(size=(L, 3, 3)), rng.normal(size=(L, 3)), list(rng.normal(size=L)))
            for L in (2, 9)}
    run = write_run(tmp_path / "run", nets, activation="relu", delta_mode="per-layer", source="my-trainer")
    cfg = load_config(run)
    assert cfg.source == ("my-trainer",) and cfg.depths == (2, 9) and cfg.width == 3 and cfg.seeds == 1
    np.testing.assert_array_equal(load_depth(run, 9)[0].delta[0], nets[9].delta)
    x = probe_inputs(cfg, 6)
    assert x.shape == (6, 3) and np.allclose(np.linalg.norm(x, axis=1), 1.0)
    np.testing.assert_array_equal(x, probe_inputs(cfg, 6))

def test_shared_delta_imported_per_layer_is_the_same_network(tmp_path):
    """--delta-mode per-layer on a shared delta: |delta| at every layer (SP eq. 1 uses |delta|)."""
    rng = np.random.default_rng(4)
    shared = from_arrays(rng.normal(size=(4, 3, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32),
                         np.float32(-0.3))
    np.savez(tmp_path / "s.npz", A=shared.A, b=shared.b, delta=shared.delta)
    run = import_weights([tmp_path / "s.npz"], tmp_path / "run", delta_mode="per-layer")
    stacked, _ = load_depth(run, 4)
    one = type(stacked)(stacked.A[0], stacked.b[0], stacked.delta[0])
    x = probe_inputs(load_config(run), 4)
    np.testing.assert_allclose(np.asarray(forward(one, x, delta_mode="per-layer")),
                               np.asarray(forward(shared, x, delta_mode="shared")), rtol=1e-6)


def test_sources_are_found_in_folders(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.npz", "a.npz"):
        np.savez(tmp_path / "d" / name, A=np.zeros((2, 3, 3)), b=np.zeros((2, 3)))
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    assert [p.name for p in find_sources([tmp_path / "d"])] == ["a.npz", "b.npz"]
    with pytest.raises(UsageError, match="no source given"):
        find_sources([])


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_sources(t):
    """(argv, the part of the one error line) for every kind of bad input; ``t`` is tmp_path."""
    z = np.zeros
    ok = _npz(t / "ok.npz", A=z((3, 4, 4)), b=z((3, 4)))
    narrow = _npz(t / "narrow.npz", A=z((3, 2, 2)), b=z((3, 2)))
    narrow5 = _npz(t / "narrow5.npz", A=z((5, 2, 2)), b=z((5, 2)))
    shared = _npz(t / "shared.npz", A=z((3, 4, 4)), b=z((3, 4)), delta=np.float32(0.1))
    per_layer = _npz(t / "per_layer.npz", A=z((3, 4, 4)), b=z((3, 4)), delta=z(3))
    (t / "junk").mkdir()
    (t / "junk" / "x.txt").write_text("mine")
    (t / "empty").mkdir()
    (t / "text.npz").write_text("not a zip")
    out = ["--out", str(t / "run")]
    return [
        ([str(t / "missing.npz"), *out], "missing.npz does not exist"),
        ([str(t / "junk" / "x.txt"), *out], "is neither a .npz file nor a folder of the authors'"),
        ([str(t / "empty"), *out], "holds no .npz file and no folder with weights/A.p"),
        ([str(t / "text.npz"), *out], "cannot read"),
        ([str(_npz(t / "noB.npz", A=z((3, 4, 4)))), *out], "has no array b"),
        ([str(_npz(t / "rect.npz", A=z((3, 4, 5)), b=z((3, 4)))), *out], "A must have shape (L, d, d), got (3, 4, 5)"),
        ([str(_npz(t / "flat.npz", A=z((4, 4)), b=z(4))), *out], "A must have shape (L, d, d), got (4, 4)"),
        ([str(_npz(t / "bshape.npz", A=z((3, 4, 4)), b=z((2, 4)))), *out], "b must have shape (L, d) = (3, 4)"),
        ([str(_npz(t / "dshape.npz", A=z((3, 4, 4)), b=z((3, 4)), delta=z(2))), *out],
         "delta must be one value or one per layer (L=3), got shape (2,)"),
        ([str(_npz(t / "ints.npz", A=np.full((3, 4, 4), "a"), b=z((3, 4)))), *out], "must hold real numbers"),
        ([str(ok), str(narrow5), *out], "different widths [2, 4]"),
        ([str(ok), str(narrow), *out], "the networks of depth 3 differ in shape"),
        ([str(shared), str(per_layer), *out], "mix delta kinds (per-layer, shared)"),
        ([str(shared), "--delta-mode", "none", *out], "has a shared delta, which delta mode 'none' cannot use"),
        ([str(ok), "--delta-mode", "shared", *out], "has no delta, which delta mode 'shared' cannot use"),
        ([str(per_layer), "--delta-mode", "shared", *out], "has per-layer deltas, which delta mode 'shared'"),
        ([str(ok), "--activation", "sin", *out], "unknown activation 'sin'"),
        ([str(ok), "--delta-mode", "multi", *out], "argument --delta-mode: invalid choice"),
        ([str(ok)], "required: --out"),
        ([str(ok), "--out", str(t / "junk")], "is not empty and is not a sweep folder"),
        ([str(ok), "--out", str(t / "ok.npz")], "exists and is not a folder"),
    ]


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    for argv, message in _bad_sources(tmp_path):
        assert main(["import-weights", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("resnet-limits: error: "), (argv, err)
        assert message in err, (argv, err)
        assert not (tmp_path / "run").exists(), argv


def test_damaged_torch_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    w = tmp_path / "depth_003" / "weights"
    w.mkdir(parents=True)
    for name in ("A.p", "b.p"):
        (w / name).write_text("not a pickle")
    assert main(["import-weights", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read {w / 'A.p'} with torch.load" in err
    assert not (tmp_path / "run").exists()


def test_torch_missing_is_one_line(tmp_path, capsys, monkeypatch):
    w = tmp_path / "depth_003" / "weights"
    w.mkdir(parents=True)
    for name in ("A.p", "b.p"):
        (w / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main(["import-weights", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"resnet-limits: error: {TORCH_HINT}\n" and "pip install \"resnet-limits[torch]\"" in err


def test_importing_into_our_sweep_is_refused(ours, tmp_path, capsys):
    src = _npz(tmp_path / "ok.npz", A=np.zeros((3, 10, 10)), b=np.zeros((3, 10)), delta=np.float32(0.1))
    assert main(["import-weights", str(src), "--out", str(ours)]) == 2
    assert "was made by another configuration" in capsys.readouterr().err
