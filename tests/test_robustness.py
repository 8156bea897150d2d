"""Run folders that survive damage, shared work between processes, SIGTERM, internal errors,
all through the command line: exit code, one line on stderr, no
traceback, and nothing finished lost."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnet_limits import sweeps
from resnet_limits.cli import main
from resnet_limits.errors import UsageError
from helpers import load_depth
from resnet_limits.sweeps import finished_depths
from resnet_limits.sweeps.folder import depth_problem

HOST = socket.gethostname()
TINY = ["--seeds", "1", "--epochs", "1", "--max-updates", "4", "--no-progress"]


def _sweep(out, *depths, extra=()):
    return ["sweep", "tanh-synthetic", "--out", str(out), "--depths", *map(str, depths), *TINY, *extra]


def _cli(*argv, timeout=300):
    """The console command in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "resnet_limits.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _stamps(run: Path, depths) -> dict:
    """Bytes and mtime of the files of ``depths``."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for L in depths for p in (run / "depths").glob(f"L{L:05d}.*")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished sweep of depths 3, 4, 5, 6 (each test works on a copy)."""
    run = tmp_path_factory.mktemp("pristine") / "run"
    assert main(_sweep(run, 3, 4, 5, 6)) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)  # copy2: mtimes kept
    return copy


def _one_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and err.startswith(prefix) and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ damage ------------

DAMAGE = {
    "flipped byte": (lambda npz, js: npz.write_bytes(npz.read_bytes()[:-9] + b"X" + npz.read_bytes()[-8:]),
                     "L00004.npz does not match the sha256 recorded in L00004.json"),
    "missing weights": (lambda npz, js: npz.unlink(), "L00004.npz is missing"),
    "truncated json": (lambda npz, js: js.write_bytes(js.read_bytes()[:40]), "L00004.json is unreadable"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_rerun_retrains_a_damaged_depth_and_keeps_the_others(run, capsys, kind):
    damage, what = DAMAGE[kind]
    damage(*sweeps.folder.depth_paths(run, 4))
    before = _stamps(run, (3, 5, 6))
    assert main(_sweep(run, 3, 4, 5, 6)) == 0
    err = _one_line(capsys, "resnet-limits: warning: ")
    assert what in err and "training it again" in err
    assert _stamps(run, (3, 5, 6)) == before  # the other depths: same bytes, same mtimes
    assert depth_problem(run, 4) is None and finished_depths(run) == [3, 4, 5, 6]
    params, metrics = load_depth(run, 4)
    assert params.A.shape == (1, 4, 10, 10) and metrics["pid"] == os.getpid()
    assert list((run / "depths").glob("L00004.*.damaged"))


def test_analyze_names_and_leaves_out_a_damaged_depth(run, capsys):
    """Needs the resnet_limits.analysis package with result["left_out"]."""
    (run / "depths" / "L00005.npz").write_bytes(b"garbage")
    assert main(["analyze", str(run), "--no-progress"]) == 0
    err = _one_line(capsys, "resnet-limits: warning: ")
    assert "L00005.npz" in err
    assert 5 not in json.loads((run / "analysis.json").read_text())["depths"]


def test_limits_stops_on_a_damaged_depth(run, capsys):
    (run / "depths" / "L00005.npz").write_bytes(b"garbage")
    assert main(["limits", str(run), "--depth", "5"]) == 2
    err = _one_line(capsys, "resnet-limits: error: ")
    assert "L00005.npz does not match the sha256" in err and "depth 5 is damaged" in err


@pytest.mark.parametrize("command", ["sweep", "analyze", "limits"])
def test_a_damaged_config_is_one_line(run, capsys, command):
    argv = {"sweep": _sweep(run, 3), "analyze": ["analyze", str(run)], "limits": ["limits", str(run), "--depth", "3"]}
    (run / "config.json").write_text('{"preset": "tanh-synth')
    assert main(argv[command]) == 2
    err = _one_line(capsys, "resnet-limits: error: ")
    assert f"{run / 'config.json'} is damaged (not JSON" in err and "delete the folder" in err


# ------------------------------------------------------------ failing before training --

def test_a_sweep_failing_before_its_first_depth_leaves_no_folder(tmp_path, capsys, monkeypatch):
    def no_data(cfg):
        raise UsageError("cannot read the data")

    monkeypatch.setattr(sweeps.fc, "dataset_for", no_data)
    out = tmp_path / "run"
    assert main(_sweep(out, 3)) == 2
    assert "cannot read the data" in _one_line(capsys, "resnet-limits: error: ")
    assert not out.exists()
    monkeypatch.undo()
    assert main(_sweep(out, 3, extra=["--lr", "0.02"])) == 0  # the corrected command is accepted
    assert finished_depths(out) == [3]


def test_a_missing_mnist_folder_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["sweep", "tanh-mnist", "--out", str(out), "--data-dir", str(tmp_path / "nope"), "--depths", "3",
                 *TINY])
    assert code != 0 and len(_lines(capsys.readouterr().err)) == 1
    assert not out.exists()


def test_an_internal_error_says_where_the_traceback_is(tmp_path, capsys, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("solver exploded\nwith details")

    monkeypatch.setattr(sweeps.fc, "train_seeds", broken)
    out = tmp_path / "run"
    assert main(_sweep(out, 3)) == 1
    err = _one_line(capsys, "resnet-limits: internal error: RuntimeError: solver exploded ")
    assert err.rstrip().endswith(f"(full traceback in {out / 'error.log'})")
    log = (out / "error.log").read_text()
    assert "Traceback" in log and "with details" in log and "sweep tanh-synthetic" in log
    assert not list(out.rglob("*.claim"))
    # no run folder yet: the traceback goes to a temporary file, and no folder is made
    monkeypatch.setattr(sweeps.fc, "dataset_for", broken)
    assert main(_sweep(tmp_path / "new", 3)) == 1
    where = re.search(r"full traceback in (.+)\)$", _one_line(capsys, "resnet-limits: internal error:").strip())[1]
    assert "Traceback" in Path(where).read_text() and not (tmp_path / "new").exists()
    os.unlink(where)


# ------------------------------------------------------------------ claims ------------

def _claim(run, L, host, pid, age_s=0.0):
    path = run / "depths" / f"L{L:05d}.claim"
    path.write_text(json.dumps({"host": host, "pid": pid, "time": time.time() - age_s}))
    os.utime(path, (time.time() - age_s,) * 2)
    return path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_claims_of_dead_processes_are_taken_over(run, capsys):
    for L in (4, 5):
        for p in sweeps.folder.depth_paths(run, L):
            p.unlink()
    _claim(run, 4, HOST, _dead_pid())  # killed on this host
    _claim(run, 5, "node-17", 4242, age_s=3600)  # another host, silent for an hour
    assert main(_sweep(run, 3, 4, 5, 6)) == 0
    assert "this process trained 2: 4 5" in capsys.readouterr().out
    assert not list(run.rglob("*.claim")) and finished_depths(run) == [3, 4, 5, 6]


def test_a_depth_claimed_by_a_live_process_elsewhere_is_left_to_it(run, capsys):
    for p in sweeps.folder.depth_paths(run, 5):
        p.unlink()
    claim = _claim(run, 5, "node-17", 4242)  # another host, refreshed just now
    assert main(_sweep(run, 3, 4, 5, 6, extra=["--no-wait"])) == 0
    out = capsys.readouterr().out
    assert "still being trained by other processes: L=5 (node-17:4242)" in out
    assert claim.exists() and finished_depths(run) == [3, 4, 6]


@pytest.mark.slow  # the default run shares a folder between processes in test_workers.py and test_submit.py
def test_two_processes_share_one_grid(tmp_path, capsys, finished_run):
    """The console command in a fresh process and main() in this one, on one folder: this one
    starts once the other holds its first depth (with the programs of this sweep compiled here
    by ``finished_run``, so that it takes the next depths before the other can), so both train
    some."""
    out, depths = tmp_path / "run", [3, 4, 5, 6, 7, 8]
    other = subprocess.Popen([sys.executable, "-m", "resnet_limits.cli", *_sweep(out, *depths)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "depths" / "L00003.claim").exists() and not (out / "depths" / "L00003.json").exists():
            assert other.poll() is None and time.time() < deadline, \
                other.communicate()[1][-2000:] if other.poll() is not None else "it held no depth in 4 minutes"
            time.sleep(0.01)
        assert main(_sweep(out, *depths)) == 0
        results = [other.communicate(timeout=300), (capsys.readouterr().out, "")]
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert other.returncode == 0, results
    mine = [set(map(int, re.search(r"this process trained \d+: ([\d ]+)", o)[1].split())) for o, _ in results]
    assert mine[0] and mine[1] and not mine[0] & mine[1] and mine[0] | mine[1] == set(depths)
    pids = {L: json.loads((out / "depths" / f"L{L:05d}.json").read_text())["pid"] for L in depths}
    for pid, trained in zip((other.pid, os.getpid()), mine):
        assert {L for L, p in pids.items() if p == pid} == trained
    assert not list(out.rglob("*.claim")) and not list(out.rglob("*.tmp"))


@pytest.mark.slow  # timing-sensitive: under load the sweep finished before the signal (CI-like run, load 5)
def test_sigterm_keeps_finished_depths(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "resnet_limits.cli", *_sweep(out, 3, 10321, extra=("--max-updates", "160", "--epochs", "5"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "depths" / "L00003.json").exists():
        assert proc.poll() is None and time.time() < deadline, "sweep ended before it could be stopped"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM
    assert _lines(err) == [f"resnet-limits: terminated (SIGTERM); finished depths are kept in {out}, "
                           "rerun the same command to resume"]
    assert finished_depths(out) == [3] and depth_problem(out, 3) is None
    assert not list(out.rglob("*.claim")) and not list(out.rglob("*.tmp"))
