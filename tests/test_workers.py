"""Worker processes on one node (``sweep --workers N``, ``resnet_limits.distributed.run_workers``):
the depths of one folder shared through the claims, deepest first for the conv sweep, each
worker's progress said as ``worker i: ...``, a killed worker's depth taken over by the others
at once (not after the 5 minutes a silent host is given), and the exit code saying so.

Every subprocess is killed when a test fails (``_procs``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from resnet_limits import distributed
from resnet_limits.cli import main
from resnet_limits.config import SweepConfig
from resnet_limits.errors import UsageError
from resnet_limits.sweeps import finished_depths
from resnet_limits.sweeps.driver import run_depths


@pytest.fixture
def procs():
    """Subprocesses of a test: killed (and reaped) however the test ends."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def _fake_train(log: list):
    def train_one(L):
        log.append(L)
        return {"w": np.arange(L, dtype=np.float32)}, {"depth": L}

    return train_one


def test_longest_first_takes_the_deepest_depth_first(tmp_path):
    trained: list[int] = []
    cfg = SweepConfig(preset="fake", depths=(3, 121, 8, 50))
    rep = run_depths(tmp_path / "run", cfg, cfg.depths, _fake_train(trained), order="longest-first")
    assert trained == rep.trained == [121, 50, 8, 3] and rep.finished == [3, 8, 50, 121]
    with pytest.raises(UsageError, match="unknown order of depths 'shortest'"):
        run_depths(tmp_path / "other", cfg, cfg.depths, _fake_train([]), order="shortest")


def test_workers_get_their_own_gpus_and_the_default_is_one_per_gpu():
    assert distributed.local_gpus({"CUDA_VISIBLE_DEVICES": "3,5, 7"}) == ["3", "5", "7"]
    assert distributed.local_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert distributed.local_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    gpus = [str(i) for i in range(8)]
    assert distributed.default_workers(True, gpus=gpus) == 8
    assert distributed.default_workers(True, data_parallel=2, gpus=gpus) == 4
    assert distributed.default_workers(False, gpus=gpus) == 1  # fc: the seeds are sharded over the GPUs
    assert distributed.default_workers(True, gpus=[]) == 1  # the CPU
    envs = distributed.worker_envs(3, data_parallel=2, gpus=gpus, env={"PATH": "/bin"})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3", "4,5"]
    assert [e[distributed.WORKER_ENV] for e in envs] == ["0", "1", "2"] and envs[0]["PATH"] == "/bin"
    assert "CUDA_VISIBLE_DEVICES" not in distributed.worker_envs(2, gpus=[], env={})[1]
    with pytest.raises(UsageError, match="5 workers of 2 GPUs each need 10 GPUs; this node has 8"):
        distributed.worker_envs(5, data_parallel=2, gpus=gpus)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2", "--distributed"], "--workers and --distributed exclude each other"),
    (["--coordinator", "127.0.0.1:1234"], "--coordinator is an option of --distributed"),
    (["--distributed", "--num-processes", "2", "--process-id", "2"], "process id must be in 0..1, got 2"),
    (["--distributed", "--coordinator", "nowhere"], "--coordinator must be HOST:PORT"),
    (["--workers", "0"], "workers must be >= 1"),
])
def test_bad_process_options_are_one_line(tmp_path, capsys, argv, message):
    assert main(["sweep", "tanh-synthetic", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


# A worker without JAX: writes its claim and its depth's JSON as a sweep does; ``die`` kills
# itself holding its claim, the other takes the dead one's depth over once its pid is gone.
FAKE = textwrap.dedent("""
    import json, os, signal, socket, sys, time
    from pathlib import Path
    depths, me = Path(sys.argv[1]) / "depths", int(os.environ["RESNET_LIMITS_WORKER"])
    depths.mkdir(parents=True, exist_ok=True)
    claim = lambda L: depths / f"L{L:05d}.claim"
    def hold(L):
        claim(L).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}))
    def save(L):
        (depths / f"L{L:05d}.json").write_text(json.dumps({"depth": L, "pid": os.getpid(), "seconds": 0.25}))
        claim(L).unlink()
    if me == 1:
        hold(7)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    hold(5)
    time.sleep(0.3)
    save(5)
    while True:  # wait for worker 1's claim to be abandoned (its pid gone: reaped by the parent)
        pid = json.loads(claim(7).read_text())["pid"]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    print(f"resnet-limits: depth 7: taking over from {socket.gethostname()}:{pid} (its process is gone)",
          file=sys.stderr, flush=True)
    hold(7)
    save(7)
""")


@pytest.mark.slow  # timing-sensitive on a loaded 2-core machine (failed in CI beside other jobs); passes alone
def test_the_parent_reaps_a_dead_worker_and_says_what_it_held(tmp_path):
    said: list[str] = []
    t0 = time.monotonic()
    rep = distributed.run_workers([sys.executable, "-c", FAKE, str(tmp_path)], 2, tmp_path,
                                  envs=distributed.worker_envs(2, gpus=[]), say=said.append, poll=0.05)
    assert time.monotonic() - t0 < 30
    assert rep.codes == [0, -signal.SIGKILL] and rep.exit_code == distributed.EXIT_FAILED
    assert rep.trained == {0: [5, 7], 1: []}
    text = "\n".join(said)
    assert f"worker 1 (pid {rep.pids[1]}) was killed by SIGKILL while training L=7; the other workers take it " \
           "over" in text
    assert "worker 0: depth 7: taking over from" in text and "worker 0: finished L=7 in 0.2 s" in text


TINY = ["--seeds", "1", "--epochs", "1", "--max-updates", "16", "--devices", "1"]

# sitecustomize.py of the workers of the test below (on their PYTHONPATH; imported when Python
# starts, before the CLI's main): the first worker to train depth $TEST_HANG_DEPTH writes its pid
# to $TEST_HANG_MARK and stops there, holding its claim (as in a long training), until it is
# killed; the one that takes the depth over trains it. JAX is imported here, its backend not yet
# started: the CLI still sets it up.
HANG = textwrap.dedent("""
    import os

    if os.environ.get("RESNET_LIMITS_WORKER") is not None:
        import time

        from resnet_limits.sweeps import fc

        train_seeds = fc.train_seeds

        def train_seeds_or_hang(keys, depth, *args, **kwargs):
            if depth == int(os.environ["TEST_HANG_DEPTH"]):
                try:
                    fd = os.open(os.environ["TEST_HANG_MARK"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass  # taking it over from the killed one
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    time.sleep(300)
            return train_seeds(keys, depth, *args, **kwargs)

        fc.train_seeds = train_seeds_or_hang
""")


def test_two_workers_share_a_sweep_and_take_over_a_killed_ones_depth(tmp_path, procs):
    """Two workers on depths 3 and 5; the one training 5 (held there by HANG) is killed: the other
    trains it within seconds (its pid is reaped at once), every depth once, exit code 3 and one line."""
    out, deep, hung = tmp_path / "run", 5, tmp_path / "hung"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HANG)
    env = dict(os.environ, TEST_HANG_DEPTH=str(deep), TEST_HANG_MARK=str(hung),
               PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "resnet_limits.cli", "sweep", "tanh-synthetic", "--out", str(out), "--depths", "3",
         str(deep), "--workers", "2", *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    deadline = time.time() + 240
    while True:
        assert procs[0].poll() is None and time.time() < deadline, "the sweep ended before a worker could be killed"
        try:
            victim = int(hung.read_text())
            holder = json.loads((out / "depths" / f"L{deep:05d}.claim").read_text())["pid"]
            break
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    assert holder == victim  # it holds the depth it is training
    os.kill(victim, signal.SIGKILL)
    killed = time.time()
    stdout, stderr = procs[0].communicate(timeout=240)
    assert procs[0].returncode == distributed.EXIT_FAILED, stderr
    lines = stderr.strip().splitlines()
    dead = [ln for ln in lines if f"(pid {victim}) was killed by SIGKILL while training L={deep}" in ln]
    assert len(dead) == 1 and "the other workers take it over" in dead[0], stderr
    assert any(re.search(rf"worker \d: depth {deep}: taking over from \S+:{victim}", ln) for ln in lines), stderr
    assert all(ln.startswith("resnet-limits: ") for ln in lines) and "Traceback" not in stderr
    assert finished_depths(out) == [3, deep]
    meta = {L: json.loads((out / "depths" / f"L{L:05d}.json").read_text()) for L in (3, deep)}
    assert meta[deep]["pid"] != victim and time.time() - killed < 120  # not the 5 minutes of a silent host
    assert "2 depths finished" in stdout and not list(out.rglob("*.claim"))
    assert not list(out.rglob("*.tmp"))
