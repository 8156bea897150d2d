import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from resnet_limits.config import SweepConfig, depth_grid, sweep_config
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.run import Run
from resnet_limits.sweeps import dataset_for, finished_depths, folder, load_config, run_depths, run_sweep
from resnet_limits.sweeps.claims import ClaimBook


def test_depth_grid_matches_the_paper():
    grid = depth_grid(3, 10321)
    assert grid[0] == 3 and grid[-1] == 10321  # floor(2^(40/3)) (SP Figs 3, 5)
    assert grid == sorted(set(grid)) and 2 not in grid
    assert all(L == int(2 ** (n / 3) + 1e-9) for L, n in zip(grid[-5:], range(36, 41)))
    g12 = depth_grid(3, 10000, 1.2)
    assert 6319 in g12 and 9100 in g12  # SP Figs 1, 4
    assert depth_grid(1, 8, 2.0) == [1, 2, 4, 8]
    with pytest.raises(UsageError):
        depth_grid(0, 10)


def test_presets_and_overrides():
    cfg = sweep_config("tanh-synthetic")
    assert cfg.depths[-1] == 10321 and cfg.optimizer == "adam" and cfg.max_updates == 160
    assert cfg.batch_size == 32 and cfg.lr == 0.01 and cfg.epochs == 5 and cfg.n_train == 1024
    quick = sweep_config("relu-synthetic", quick=True)
    assert quick.delta_mode == "per-layer" and quick.activation == "relu"
    assert 10 <= len(quick.depths) and quick.depths[-1] <= 1000
    cfg = sweep_config("tanh-synthetic", optimizer="sgd", lr=0.003, depths=[5, 3, 5])
    assert cfg.optimizer == "sgd" and cfg.lr == 0.003 and cfg.depths == (3, 5)
    for bad in (dict(lr=-1.0), dict(batch_size=2048), dict(activation="sin"), dict(depths=[0, 3])):
        with pytest.raises(UsageError):
            sweep_config("tanh-synthetic", **bad)
    with pytest.raises(UsageError, match="unknown preset"):
        sweep_config("nope")


def load_depth(run_dir, depth):
    run = Run.open(run_dir)
    return run.params(depth), run.metrics(depth)


def _fake_config(*depths) -> SweepConfig:
    """The configuration of a sweep without JAX (the driver's tests)."""
    return SweepConfig(preset="fake", depths=tuple(depths))


def _load(run_dir, depth):
    """A depth of a folder made by ``folder.save_depth`` alone, read through a Run."""
    if not (run_dir / "config.json").exists():
        folder.write_json(run_dir / "config.json", _fake_config(depth).to_json())
    return Run.open(run_dir).load(depth)


def _small(**kw):
    return sweep_config("tanh-synthetic", seeds=2, epochs=1, max_updates=8, **kw)


def test_sweep_writes_every_depth_and_skips_finished_ones(tmp_path):
    cfg = _small(depths=[2, 3])
    assert run_sweep(cfg, tmp_path, progress=False) == [2, 3]
    assert load_config(tmp_path).depths == (2, 3)
    params, metrics = load_depth(tmp_path, 3)
    assert params.A.shape == (2, 3, 10, 10) and params.b.shape == (2, 3, 10) and params.delta.shape == (2,)
    assert metrics["updates"] == [8, 8] and len(metrics["loss_curve"][0]) == 8
    assert (metrics["devices"], metrics["platform"]) == (jax.device_count(), jax.default_backend())
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "depths").iterdir()}
    # a larger grid in the same folder trains only the new depth
    assert run_sweep(_small(depths=[2, 3, 4]), tmp_path, progress=False) == [2, 3, 4]
    for p in (tmp_path / "depths").iterdir():
        if p.name in stamps:
            assert p.stat().st_mtime_ns == stamps[p.name]
    assert sorted(load_config(tmp_path).depths) == [2, 3, 4]
    # an orphan .npz (killed between the two writes) is not a finished depth
    (tmp_path / "depths" / "L00004.json").unlink()
    assert finished_depths(tmp_path) == [2, 3]
    assert run_sweep(_small(depths=[4]), tmp_path, progress=False) == [2, 3, 4]


def test_folder_of_another_configuration_is_refused(tmp_path):
    run_sweep(_small(depths=[2]), tmp_path, progress=False)
    with pytest.raises(UsageError, match="another configuration: lr"):
        run_sweep(_small(depths=[2], lr=0.5), tmp_path, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a sweep folder"):
        run_sweep(_small(depths=[2]), other, progress=False)


def test_dataset_for_is_the_training_data():
    cfg = _small(depths=[2])
    a, b = dataset_for(cfg), dataset_for(cfg)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (1024, 10) and a.x_test.shape == (256, 10)


# The process of the killed sweep, set up by main() as the command line's is: first the whole sweep
# into FRESH (the reference, made under the CLI's XLA flags, which change float32 results at the
# last bit), then the same sweep into KILLED, SIGKILLed once depth DEEP is trained but before it is
# written: it holds DEEP's claim, and the folder is what a kill at any moment of DEEP's training
# leaves (nothing of a depth is written before its training ends). A fixed point rather than a
# race with a long training, so every depth can be small (one compiled program serves them all).
KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys
    from resnet_limits.cli import main

    fresh, killed, deep, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    assert main([*argv, "--out", fresh]) == 0
    from resnet_limits.sweeps import fc

    train_seeds = fc.train_seeds

    def train_then_die(keys, depth, *args, **kwargs):
        result = train_seeds(keys, depth, *args, **kwargs)
        if depth == deep:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    fc.train_seeds = train_then_die
    main([*argv, "--out", killed])
    sys.exit("the sweep was not killed")
""")


def test_killed_sweep_resumes_with_the_same_results(tmp_path):
    deep = 5
    args = ["sweep", "tanh-synthetic", "--depths", "2", "3", str(deep), "--seeds", "1", "--epochs", "1",
            "--max-updates", "32", "--no-progress"]
    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(fresh), str(killed), str(deep), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert finished_depths(fresh) == [2, 3, deep]
    assert finished_depths(killed) == [2, 3]  # deep was not written
    assert (killed / "depths" / f"L{deep:05d}.claim").exists()  # held by the killed process
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "depths").glob("L0000[23].*")}
    # rerun the same command, in a fresh process as a user's would be
    rerun = subprocess.run([sys.executable, "-m", "resnet_limits.cli", *args, "--out", str(killed)],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"depth {deep}: taking over from " in rerun.stderr  # the dead process's claim
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "depths").glob("L0000[23].*")}
    assert before == after  # finished depths untouched
    assert finished_depths(killed) == [2, 3, deep]
    for L in (2, 3, deep):
        (pk, mk), (pf, mf) = load_depth(killed, L), load_depth(fresh, L)
        np.testing.assert_array_equal(pk.A, pf.A)
        np.testing.assert_array_equal(pk.delta, pf.delta)
        assert mk["train_loss"] == mf["train_loss"]
    assert not list(killed.rglob("*.tmp")) and not list(killed.rglob("*.claim"))


# ------------------------------------------------ run folders of any sweep (folder, claims, driver)

HOST = socket.gethostname()


def _fake_train(log: list):
    """A train_one without JAX: depth L gives w = arange(L), so files are tiny and instant."""

    def train_one(L):
        log.append(L)
        return {"w": np.arange(L, dtype=np.float32)}, {"depth": L}

    return train_one


def _stamps(run):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (run / "depths").glob("L*.*")}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _claim_file(claims_dir, L, host, pid, age_s=0.0):
    """A claim on depth L as another process would leave it in ``claims_dir`` (RUN/depths)."""
    path = claims_dir / f"L{L:05d}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "time": time.time() - age_s}))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_depth_files_record_checksum_host_and_pid(tmp_path):
    folder.save_depth(tmp_path, 7, {"w": np.ones(3)}, {"depth": 7, "seconds": 1.5})
    arrays, metrics = _load(tmp_path, 7)
    np.testing.assert_array_equal(arrays["w"], np.ones(3))
    npz, js = folder.depth_paths(tmp_path, 7)
    assert metrics["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert metrics["host"] == HOST and metrics["pid"] == os.getpid() and metrics["seconds"] == 1.5
    assert list(metrics)[:2] == ["depth", "seconds"]  # the existing keys first, unchanged
    assert folder.depth_problem(tmp_path, 7) is None and folder.depth_problem(tmp_path, 8) is None
    with pytest.raises(UsageError, match="depth 8 is not finished"):
        _load(tmp_path, 8)


@pytest.mark.parametrize("damage,what", [
    (lambda npz, js: npz.write_bytes(npz.read_bytes()[:-1] + b"!"), "does not match the sha256 recorded in L00007.json"),
    (lambda npz, js: npz.unlink(), "L00007.npz is missing"),
    (lambda npz, js: js.write_text('{"depth": 7,'), "L00007.json is unreadable (not JSON"),
])
def test_a_damaged_depth_is_a_damaged_run_error_naming_the_file(tmp_path, damage, what):
    folder.save_depth(tmp_path, 7, {"w": np.ones(3)}, {"depth": 7})
    damage(*folder.depth_paths(tmp_path, 7))
    with pytest.raises(DamagedRunError, match="depth 7 is damaged") as e:
        _load(tmp_path, 7)
    assert what in str(e.value) and "\n" not in str(e.value)
    assert what in folder.depth_problem(tmp_path, 7)


def test_depth_written_before_checksums_loads_unless_unreadable(tmp_path):
    folder.save_depth(tmp_path, 4, {"w": np.ones(2)}, {"depth": 4})
    npz, js = folder.depth_paths(tmp_path, 4)
    js.write_text(json.dumps({"depth": 4}))  # an older run: no sha256 recorded
    assert folder.depth_problem(tmp_path, 4) is None
    np.testing.assert_array_equal(_load(tmp_path, 4)[0]["w"], np.ones(2))
    npz.write_bytes(b"not a zip")
    with pytest.raises(DamagedRunError, match="L00004.npz is unreadable"):
        _load(tmp_path, 4)


def test_load_config_says_what_is_wrong(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        load_config(tmp_path / "f")
    with pytest.raises(UsageError, match=r"not a sweep folder \(no config.json\)"):
        load_config(tmp_path)
    for text, why in (("{", "not JSON"), ("[1]", "not a run configuration"), ("\udcff", "not UTF-8")):
        (tmp_path / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(DamagedRunError, match=f"config.json is damaged \\({why}.*delete the folder"):
            load_config(tmp_path)


def test_run_depths_trains_skips_and_retrains_damaged(tmp_path):
    run, trained, said = tmp_path / "run", [], []
    cfg = _fake_config(2, 3, 5)
    rep = run_depths(run, cfg, [2, 3, 5], _fake_train(trained), log=said.append)
    assert rep.finished == rep.trained == trained == [2, 3, 5] and not said and not rep.elsewhere
    before = _stamps(run)
    (run / "depths" / "L00003.npz").write_bytes(b"garbage")
    setups = []
    rep = run_depths(run, cfg.replace(depths=(3, 5, 8)), [3, 5, 8], _fake_train(trained), log=said.append,
                     setup=lambda: setups.append(1))
    assert rep.trained == [3, 8] and rep.damaged == [3] and setups == [1]
    assert len(said) == 1 and "L00003.npz does not match the sha256" in said[0] and "training it again" in said[0]
    after = _stamps(run)
    for name in ("L00002.npz", "L00002.json", "L00005.npz", "L00005.json"):
        assert after[name] == before[name]  # same bytes, same mtime
    assert (run / "depths" / "L00003.npz.damaged").read_bytes() == b"garbage"
    assert folder.depth_problem(run, 3) is None
    assert load_config(run).depths == (2, 3, 5, 8)  # the union of the grids
    # all finished: no setup, nothing rewritten
    stamp = (run / "config.json").stat().st_mtime_ns
    rep = run_depths(run, cfg, [2, 3, 5], _fake_train(trained), setup=lambda: setups.append(2))
    assert rep.trained == [] and setups == [1] and (run / "config.json").stat().st_mtime_ns == stamp


def test_config_is_written_only_after_setup(tmp_path):
    run = tmp_path / "run"

    def fail():
        raise UsageError("no data")

    with pytest.raises(UsageError, match="no data"):
        run_depths(run, _fake_config(2), [2], _fake_train([]), setup=fail)
    assert not run.exists()


def test_run_depths_refuses_other_configurations_and_foreign_folders(tmp_path):
    run_depths(tmp_path / "run", _fake_config(2).replace(lr=1), [2], _fake_train([]))
    with pytest.raises(UsageError, match="another configuration: lr=1 \\(now 2\\)"):
        run_depths(tmp_path / "run", _fake_config(2).replace(lr=2), [2], _fake_train([]))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        run_depths(tmp_path / "afile", _fake_config(2), [2], _fake_train([]))
    with pytest.raises(UsageError, match="cannot create .*afile is not a folder"):
        run_depths(tmp_path / "afile" / "run", _fake_config(2), [2], _fake_train([]))


def test_claims_are_exclusive_and_abandoned_ones_are_taken_over(tmp_path):
    with ClaimBook(tmp_path) as book:
        assert book.claim("a").held and book.claim("a").held  # ours already
        assert json.loads((tmp_path / "a.claim").read_text())["pid"] == os.getpid()
        _claim_file(tmp_path, 1, HOST, os.getppid())  # a live process of this host
        c = book.claim("L00001")
        assert not c.held and c.owner == (HOST, os.getppid())
        _claim_file(tmp_path, 2, "other-node", 12345)  # another host, refreshed just now
        assert not book.claim("L00002").held
        _claim_file(tmp_path, 3, HOST, _dead_pid())  # killed process of this host
        c = book.claim("L00003")
        assert c.held and c.taken_from.host == HOST
        _claim_file(tmp_path, 4, "other-node", 12345, age_s=3600)  # not refreshed for an hour
        assert book.claim("L00004").taken_from == ("other-node", 12345)
        book.release("L00001")  # not ours: left alone
        assert (tmp_path / "L00001.claim").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L00001.claim", "L00002.claim"]


def test_held_claims_are_refreshed(tmp_path):
    with ClaimBook(tmp_path, refresh_every=0.05) as book:
        book.claim("a")
        old = time.time() - 1000
        os.utime(tmp_path / "a.claim", (old, old))
        time.sleep(0.3)
        assert time.time() - (tmp_path / "a.claim").stat().st_mtime < 10


def test_run_depths_waits_for_depths_of_other_processes(tmp_path):
    run, trained, said = tmp_path / "run", [], []
    run_depths(run, _fake_config(2), [2], _fake_train(trained))
    live = _claim_file(run / "depths", 3, HOST, os.getppid())  # a live process trains depth 3
    rep = run_depths(run, _fake_config(2, 3), [2, 3], _fake_train(trained), wait=False)
    assert rep.trained == [] and rep.elsewhere == {3: f"{HOST}:{os.getppid()}"} and live.exists()
    threading.Timer(0.3, live.unlink).start()  # the other process gives up its claim
    rep = run_depths(run, _fake_config(2, 3), [2, 3], _fake_train(trained), poll=0.05, log=said.append)
    assert rep.trained == [3] and rep.finished == [2, 3] and not rep.elsewhere
    assert said == [f"waiting for depths 3 being trained by {HOST}:{os.getppid()}"]


def test_run_depths_releases_its_claims_when_interrupted(tmp_path):
    run, trained = tmp_path / "run", []

    def train_one(L):
        if L == 3:
            raise KeyboardInterrupt
        return _fake_train(trained)(L)

    with pytest.raises(KeyboardInterrupt):
        run_depths(run, _fake_config(2, 3), [2, 3], train_one)
    assert finished_depths(run) == [2] and not list(run.rglob("*.claim")) and not list(run.rglob("*.tmp"))


def test_mnist_quick_caps_and_data_info(mnist_dir, tmp_path, capsys):
    from resnet_limits.cli import main

    assert max(sweep_config("tanh-mnist", quick=True).depths) == 203
    assert max(sweep_config("relu-mnist", quick=True).depths) == 406
    assert sweep_config("tanh-mnist", quick=True).epochs == 10
    out = tmp_path / "m"
    argv = ["sweep", "tanh-mnist", "--quick", "--data-dir", str(mnist_dir), "--out", str(out), "--depths", "3",
            "--seeds", "1", "--max-updates", "4", "--no-progress"]
    assert main(argv) == 0
    info = load_config(out).data_info
    assert (info["n_train"], info["n_test"]) == (8000, 2000) and "test-only folder" in info["split"]
    assert info["split"] in capsys.readouterr().out
    assert main(argv) == 0  # a rerun that loads no data keeps the record
    assert load_config(out).data_info == info


def test_say_diverged_names_the_diverged_seeds_only_when_there_are_some():
    from types import SimpleNamespace

    from resnet_limits.sweeps.fc import say_diverged

    said = []
    say_diverged(SimpleNamespace(diverged=np.array([False, True, True])), "lr=0.01 L=64", said.append)
    say_diverged(SimpleNamespace(diverged=np.array([False, False])), "L=8", said.append)
    assert said == ["lr=0.01 L=64: 2 of 3 seeds diverged (recorded, sweep goes on)"]
