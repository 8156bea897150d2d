"""JAX's distributed runtime (``sweep --distributed``, ``resnet_limits.distributed``), on one
machine: two CPU processes on 127.0.0.1 (gloo collectives) train one sweep together.

* a fully-connected sweep sharded over both processes' devices gives one process's weights;
  only process 0 writes the folder;
* when one process dies the other ends within the heartbeat timeout with one line (no
  traceback, no native log), and so does the one killed (process 1 dying: slow);
* the conv sweep (each minibatch split over both processes, orbax checkpoints written by both)
  gives the one-process network;
* ``benchmarks/check_device.py`` passes on the CPU.

Only loopback addresses; every wait is bounded and every subprocess is killed if a test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_limits import distributed
from resnet_limits.cli import main
from resnet_limits.sweeps import finished_depths

FC = ["tanh-synthetic", "--seeds", "3", "--epochs", "1", "--max-updates", "4", "--devices", "1"]
#: A sweep whose depth 2000 trains for seconds: long enough to kill a process in it.
LONG = ["tanh-synthetic", "--seeds", "2", "--epochs", "5", "--max-updates", "160", "--devices", "1"]


class _Group:
    """N ``resnet-limits sweep --distributed`` processes on a free loopback port; their stderr is
    read as it comes (``err[i]``); all are killed when the test ends."""

    def __init__(self, argv, n: int = 2, heartbeat: int = 10):
        port = distributed.free_port()
        common = [sys.executable, "-m", "resnet_limits.cli", "sweep", *argv, "--distributed", "--coordinator",
                  f"127.0.0.1:{port}", "--num-processes", str(n), "--heartbeat-timeout", str(heartbeat)]
        self.procs = [subprocess.Popen(common + ["--process-id", str(i)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True) for i in range(n)]
        self.err: list[list[str]] = [[] for _ in range(n)]
        self._threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _read(self, i):
        for line in self.procs[i].stderr:
            self.err[i].append(line.rstrip("\n"))

    def wait(self, timeout: float = 240):
        outs = []
        for p in self.procs:
            outs.append(p.stdout.read())
            p.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return outs

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def group():
    made: list[_Group] = []
    yield lambda *a, **k: made.append(_Group(*a, **k)) or made[-1]
    for g in made:
        g.kill()


def _joined_pid(lines) -> int:
    """The pid in a process's ``... (host:pid) joined the distributed run`` line."""
    return int(next(m for ln in lines if (m := re.search(r":(\d+)\) joined", ln)))[1])


def _clean(lines) -> bool:
    """No traceback and no native log (absl, gloo) among a process's stderr lines."""
    return not any("Traceback" in ln or distributed.NATIVE_LINE.match(ln) for ln in lines)


def _weights(run, depths):
    return {L: dict(np.load(run / "depths" / f"L{L:05d}.npz")) for L in depths}


def _assert_one_line_ends(g, victim: int) -> None:
    """Process ``victim`` was SIGKILLed: both end with exit code 3 and one line each, the other's
    naming JAX's distributed service and its log (read, then removed, as the victim's)."""
    other = 1 - victim
    assert [p.returncode for p in g.procs] == [distributed.EXIT_FAILED] * 2, g.err
    last = g.err[other][-1]
    assert last.startswith(f"resnet-limits: error: process {other} was stopped by JAX's distributed service: ")
    assert "another process of the run died or cannot be reached" in last and "JAX's log in" in last
    assert g.err[victim][-1].startswith(f"resnet-limits: error: process {victim} was killed by SIGKILL")
    for lines in g.err:
        assert _clean(lines), lines
        assert sum("error" in ln for ln in lines) == 1, lines
    log = re.search(r"JAX's log in (\S+)\)$", last)[1]
    assert "distributed service" in open(log).read()
    os.unlink(log)
    os.unlink(re.search(r"its log in (\S+)\)$", g.err[victim][-1])[1])


def _kill_while_training(g, out, depth: int, victim: int) -> float:
    """SIGKILL process ``victim`` once it has joined and ``depth`` is being trained; the time."""
    deadline = time.time() + 240
    while not (out / "depths" / f"L{depth:05d}.claim").exists() or not any("joined" in ln for ln in g.err[victim]):
        assert all(p.poll() is None for p in g.procs) and time.time() < deadline, g.err
        time.sleep(0.05)
    os.kill(_joined_pid(g.err[victim]), signal.SIGKILL)
    return time.time()


def test_two_processes_train_a_sweep_as_one_and_end_in_one_line_when_one_dies(tmp_path, group):
    """Depths 3 and 5 trained by two processes equal one process's networks (written by process
    0 only); then process 0 (the coordinator) is SIGKILLed while depth 2000 trains: the other is
    ended by JAX's distributed service and says so in one line, exit code 3; 3 and 5 are kept."""
    one, two = tmp_path / "one", tmp_path / "two"
    g = group([*LONG, "--out", str(two), "--depths", "3", "5", "2000"], heartbeat=5)
    assert main(["sweep", *LONG, "--out", str(one), "--depths", "3", "5", "--no-progress"]) == 0
    killed = _kill_while_training(g, two, 2000, victim=0)
    g.wait(timeout=120)
    assert time.time() - killed < 60
    _assert_one_line_ends(g, victim=0)
    assert any("process 1 of 2" in ln and "joined the distributed run: 2 cpu devices in all" in ln for ln in g.err[1]), g.err
    assert finished_depths(two) == [3, 5]
    ref, got = _weights(one, (3, 5)), _weights(two, (3, 5))
    for L in (3, 5):
        assert ref[L].keys() == got[L].keys()
        for k in ref[L]:
            np.testing.assert_allclose(got[L][k], ref[L][k], rtol=1e-6, atol=1e-7)
    meta = json.loads((two / "depths" / "L00003.json").read_text())
    assert meta["pid"] == _joined_pid(g.err[0]) and meta["devices"] == 2  # written by process 0
    assert not (two / "error.log").exists()


@pytest.mark.slow  # the other victim is in the test above; + the heartbeat timeout (5 s)
def test_when_process_1_dies_process_0_ends_with_one_line(tmp_path, group):
    """SIGKILL process 1 while depth 2000 trains: process 0 stops hearing its heartbeats and is
    ended by JAX's distributed service within the heartbeat timeout (5 s), in one line."""
    out = tmp_path / "run"
    g = group([*LONG, "--out", str(out), "--depths", "2000"], heartbeat=5)
    killed = _kill_while_training(g, out, 2000, victim=1)
    g.wait(timeout=120)
    assert time.time() - killed < 60
    _assert_one_line_ends(g, victim=1)
    assert finished_depths(out) == []


# A stand-in for the supervised child (``supervise``'s command): its own lines, native log lines
# of gloo and absl among them, and (argv[1] == "fatal") the end JAX's distributed service gives
# a process whose peer is gone: the fatal log line, then SIGABRT.
NATIVE_CHILD = textwrap.dedent("""
    import os, signal, sys
    say = lambda line: print(line, file=sys.stderr, flush=True)
    say("resnet-limits: process 1 of 2 (host:1) joined the distributed run: 2 cpu devices in all, 1 here")
    say("[external/gloo/gloo/transport/tcp/debug_logger.cc:25] ERROR failed to connect, willRetry=1, retry=1")
    say("[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1")
    print("process 1 of 2 took part in 0 depths", flush=True)
    if sys.argv[1] == "fatal":
        say("E1206 04:38:40.734521 25920 client.cc:12] Terminating process because the JAX distributed service "
            "detected fatal errors. This most likely indicates that another task died; the first error is:")
        say("    heartbeat timeout: task /job:jax_worker/replica:0/task:0 is unhealthy")
        say("*** SIGABRT received by PID 25920 (TID 25920) on cpu 1 from PID 25920; stack trace: ***")
        say("    @     0x7f0e1c04251f  (unknown)")
        os.kill(os.getpid(), signal.SIGABRT)
""")


@pytest.mark.parametrize("end", ["clean", "fatal"])
def test_the_supervisor_passes_its_childs_lines_and_keeps_native_logs(end, capsys):
    said: list[str] = []
    code = distributed.supervise([sys.executable, "-c", NATIVE_CHILD, end], say=said.append, label="process 1")
    out, err = capsys.readouterr()
    assert out == "process 1 of 2 took part in 0 depths\n"
    assert err.splitlines() == ["resnet-limits: process 1 of 2 (host:1) joined the distributed run: 2 cpu devices "
                                "in all, 1 here"]  # gloo's and absl's lines are kept, not shown
    if end == "clean":
        assert code == 0 and said == []
        return
    assert code == distributed.EXIT_FAILED and len(said) == 1
    assert said[0].startswith("error: process 1 was stopped by JAX's distributed service: a process stopped sending "
                              "heartbeats (another process of the run died or cannot be reached); ")
    log = re.search(r"JAX's log in (\S+)\)$", said[0])[1]
    text = open(log).read()
    os.unlink(log)
    assert "debug_logger.cc:25] ERROR failed to connect" in text and "is unhealthy" in text


def test_distributed_without_a_cluster_is_one_line(tmp_path):
    """The supervised child's line (the supervisor passes its lines on: the test above)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORD"))}
    env[distributed.CHILD_ENV] = "1"
    proc = subprocess.run([sys.executable, "-m", "resnet_limits.cli", "sweep", *FC, "--out", str(tmp_path / "run"),
                           "--depths", "3", "--distributed"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("resnet-limits: error: --distributed found no cluster to join (Slurm or Open "
                                   "MPI); give --coordinator HOST:PORT --num-processes N --process-id I")
    assert not (tmp_path / "run").exists()


def test_two_processes_train_a_conv_sweep_with_one_data_mesh(tmp_path, group):
    """conv-cifar10 at depth 8 on 64 mock images, width 4, 1 epoch: each minibatch split over both
    processes' devices (data_parallel = 2, set by --distributed), orbax checkpoints written by
    both; the network equals one process's to float rounding."""
    conv = ["conv-cifar10", "--depths", "8", "--mock-data", "64", "--width", "4", "--epochs", "1",
            "--batch-size", "16", "--eval-batch-size", "16"]
    one, two = tmp_path / "one", tmp_path / "two"
    g = group([*conv, "--out", str(two)])
    assert main(["sweep", *conv, "--out", str(one), "--no-progress"]) == 0
    outs = g.wait(timeout=400)
    assert [p.returncode for p in g.procs] == [0, 0], g.err
    assert "this process trained 1: 8" in outs[0]
    assert outs[1].strip() == f"process 1 of 2 took part in 1 depths: 8 (process 0 wrote them to {two})"
    assert json.loads((two / "config.json").read_text())["data_parallel"] == 2
    ref, got = _weights(one, (8,))[8], _weights(two, (8,))[8]
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5)
    assert not list(two.rglob("*.ckpt"))


def _check_device_module():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_device.py"
    spec = importlib.util.spec_from_file_location("check_device", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_device_compares_within_each_checks_tolerance_and_round_trips_its_numbers(tmp_path):
    """The comparison and the file of ``benchmarks/check_device.py`` (the whole script, two
    processes, is the slow test below)."""
    cd = _check_device_module()
    rtol, atol = cd.TOLERANCE["conv epoch"]
    ref = {"w": np.array([1.0, -2.0]), "loss": np.array(0.5)}
    assert cd.compare(ref, ref, "conv epoch") == (0.0, True)
    worst, ok = cd.compare({"w": ref["w"] * (1 + rtol / 2), "loss": ref["loss"]}, ref, "conv epoch")
    assert ok and 0 < worst <= 2 * rtol / 2
    worst, ok = cd.compare({"w": ref["w"] + 10 * (atol + 2 * rtol), "loss": ref["loss"]}, ref, "conv epoch")
    assert not ok and worst > atol
    assert cd.compare({"w": ref["w"]}, ref, "conv epoch") == (float("inf"), False)  # a missing array
    assert cd.compare({"w": ref["w"][:1], "loss": ref["loss"]}, ref, "conv epoch") == (float("inf"), False)
    arrays = {name: {"x": np.arange(3.0) + i} for i, name in enumerate(cd.CHECKS)}
    seconds = {name: 0.5 + i for i, name in enumerate(cd.CHECKS)}
    cd._save(str(tmp_path / "ref.npz"), arrays, seconds)
    back, back_seconds = cd._load(str(tmp_path / "ref.npz"))
    assert back_seconds == seconds
    assert {n: {k: v.tolist() for k, v in d.items()} for n, d in back.items()} == \
        {n: {k: v.tolist() for k, v in d.items()} for n, d in arrays.items()}


@pytest.mark.slow  # two processes, ~20 s on 2 cores; on an accelerator it is the check to run first
def test_check_device_passes_on_the_cpu(tmp_path):
    """``benchmarks/check_device.py``: the fc sweep, the conv epoch and the float64 SDE solve on
    the default device (here the CPU) agree with a CPU subprocess; each is timed."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_device.py"
    proc = subprocess.run([sys.executable, str(script), "--json", str(tmp_path / "check.json")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks agree with the CPU (cpu, cpu)" in proc.stdout
    rows = json.loads((tmp_path / "check.json").read_text())["rows"]
    assert [r["check"] for r in rows] == ["fc sweep", "conv epoch", "sde float64"]
    assert all(r["agrees"] and r["max_abs_difference"] == 0.0 and r["seconds"] > 0 for r in rows)
