"""A run folder opened once (``resnet_limits/run.py``): config, depths, weights read once, JSON, damage."""

import json
import math
import os
import socket

import numpy as np
import pytest

from resnet_limits.config import sweep_config
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.run import Run
from resnet_limits.sweeps import run_sweep
from resnet_limits.sweeps.folder import depth_paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    run_sweep(sweep_config("tanh-synthetic", depths=[2, 3, 5], seeds=2, epochs=1, max_updates=2), out,
              progress=False)
    return out


def test_open_serves_the_config_depths_and_weights(tiny):
    run = Run.open(tiny)
    assert run.config == sweep_config("tanh-synthetic", depths=[2, 3, 5], seeds=2, epochs=1, max_updates=2)
    assert run.depths == [2, 3, 5] and run.damaged == {} and run.in_progress == {}
    p = run.params(3)
    assert p.A.shape == (2, 3, 10, 10) and p.delta.shape == (2,)
    assert run.metrics(3)["updates"] == [2, 2]
    net = run.network(5, 1)
    np.testing.assert_array_equal(net.A, run.params(5).A[1])
    assert run.figures == tiny / "figures" and run.has_data


def test_each_weight_file_is_read_once_then_served_from_the_cache(tiny):
    run = Run.open(tiny)
    for _ in range(3):  # the analysis makes three passes
        for L in run.depths:
            run.load(L)
    assert dict(run.reads) == {2: 1, 3: 1, 5: 1}


def test_a_run_larger_than_the_cache_is_streamed(tiny):
    run = Run.open(tiny, cache_bytes=1)  # room for one depth at a time
    for _ in range(2):
        for L in run.depths:
            run.load(L)
    assert dict(run.reads) == {2: 2, 3: 2, 5: 2}


def test_the_data_set_is_made_once(tiny):
    run = Run.open(tiny)
    assert run.dataset() is run.dataset()


def test_bad_requests_are_one_line(tiny):
    run = Run.open(tiny)
    with pytest.raises(UsageError, match=r"depth 4 is not finished in .* \(finished: \[2, 3, 5\]\)"):
        run.load(4)
    with pytest.raises(UsageError, match=r"seed must be in 0..1 \(the run has 2 networks at depth 3\), got 2"):
        run.network(3, 2)
    with pytest.raises(UsageError, match="is not a sweep folder"):
        Run.open(tiny / "depths")


def test_damage_found_at_open_or_at_load_names_the_file(tmp_path, tiny):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny, run_dir)
    npz2, _ = depth_paths(run_dir, 2)
    npz3, js3 = depth_paths(run_dir, 3)
    npz2.unlink()
    npz3.write_bytes(npz3.read_bytes()[:-1] + b"!")
    run = Run.open(run_dir)
    assert run.depths == [3, 5] and "L00002.npz is missing" in run.damaged[2]
    with pytest.raises(DamagedRunError, match="L00003.npz does not match the sha256 recorded in L00003.json"):
        run.load(3)
    assert run.depths == [5] and 3 in run.damaged
    js3.write_text("{")
    assert "L00003.json is unreadable" in Run.open(run_dir).damaged[3]


def test_write_json_is_atomic_and_writes_null_for_nan(tmp_path, tiny):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny, run_dir)
    run = Run.open(run_dir)
    path = run.write_json("x.json", {"a": np.array([1.0, np.nan, np.inf]), "b": np.float32(2), "c": (1, 2),
                                     "d": math.nan})
    assert json.loads(path.read_text()) == {"a": [1.0, None, None], "b": 2.0, "c": [1, 2], "d": None}
    assert "NaN" not in path.read_text() and not list(run_dir.glob(".*.tmp"))


def test_depths_being_trained_are_named(tmp_path, tiny):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny, run_dir)
    claim = run_dir / "depths" / "L00008.claim"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": 0}))
    assert Run.open(run_dir).in_progress == {8: f"{socket.gethostname()}:{os.getpid()}"}
