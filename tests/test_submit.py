"""``resnet-limits submit``: a sweep sent to Slurm through submitit, tried here with submitit's
LocalExecutor (``--local``: the same tasks as processes of this machine). Two array tasks finish
one sweep together on one folder, each depth trained once; bad commands and a missing submitit
or Slurm are one line. The tests that run tasks are skipped, saying why, without submitit
(``pip install "resnet-limits[cluster]"``)."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from resnet_limits.cli import main
from resnet_limits.sweeps import finished_depths

try:  # imported here, outside any test's captured output: its logger keeps the stderr it finds
    import submitit  # noqa: F401
except ImportError:
    pass

TINY = ["--seeds", "1", "--epochs", "1", "--max-updates", "4", "--devices", "1"]


def _submitit():
    return pytest.importorskip("submitit", reason='submitit is not installed (pip install "resnet-limits[cluster]")')


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_submit_without_submitit_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    argv = ["submit", "--array", "2", "sweep", "tanh-synthetic", "--out", str(tmp_path / "run"), *TINY]
    assert main(argv) == 2
    assert _one_line(capsys) == ('resnet-limits: error: submit needs submitit: pip install '
                                 '"resnet-limits[cluster]"\n')


@pytest.mark.parametrize("argv, message", [
    (["--array", "2"], "submit runs a sweep: resnet-limits submit (--array N | --nodes K) sweep PRESET"),
    (["--array", "2", "analyze", "x"], "submit runs a sweep"),
    (["--array", "2", "sweep", "nope", "--out", "{out}"], "unknown preset 'nope'"),
    (["--array", "2", "sweep", "tanh-synthetic", "--out", "{out}", "--distributed"],
     "submit sets --distributed itself (--nodes); leave it out of the sweep command"),
    (["--array", "2", "--nodes", "1", "sweep", "tanh-synthetic", "--out", "{out}"],
     "submit needs one of --array N (depth-parallel tasks) or --nodes K"),
    (["--nodes", "2", "--local", "sweep", "tanh-synthetic", "--out", "{out}"], "--nodes must be 1"),
    (["--array", "1", "--local", "--slurm", "qos", "sweep", "tanh-synthetic", "--out", "{out}"],
     "--slurm takes KEY=VALUE"),
])
def test_bad_submit_commands_are_one_line(tmp_path, capsys, argv, message):
    if "unknown preset" not in message and "runs a sweep" not in message:
        _submitit()
    out = str(tmp_path / "run")
    assert main(["submit", *[a.replace("{out}", out) for a in argv]]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.slurm").exists()


def test_submit_without_slurm_says_so(tmp_path, capsys):
    _submitit()
    if shutil.which("sbatch"):
        pytest.skip("this machine has Slurm")
    assert main(["submit", "--array", "2", "sweep", "tanh-synthetic", "--out", str(tmp_path / "run")]) == 2
    assert "submit found no Slurm here (no sbatch)" in _one_line(capsys)


def test_two_local_array_tasks_finish_one_sweep_together(tmp_path, capsys):
    _submitit()
    out, depths = tmp_path / "run", [3, 4, 5, 6]
    argv = ["submit", "--array", "2", "--local", "--wait", "--time", "10", "sweep", "tanh-synthetic",
            "--out", str(out), "--depths", *map(str, depths), *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "submitted a job array of 2 tasks (local processes)" in printed
    tasks = re.findall(r"^task (\S+): 4 depths finished in \S+ \(1 seeds each\): 3\.\.6(?:; this process trained "
                       r"\d+: ([\d ]+))?$", printed, re.M)
    assert len(tasks) == 2, printed
    mine = [set(map(int, t[1].split())) for t in tasks]
    assert not mine[0] & mine[1] and mine[0] | mine[1] == set(depths)  # each depth trained once
    pids = {json.loads((out / "depths" / f"L{L:05d}.json").read_text())["pid"] for L in depths}
    assert len(pids) == len([m for m in mine if m])  # one trainer per task that trained
    assert finished_depths(out) == depths and not list(out.rglob("*.claim"))
    assert (tmp_path / "run.slurm").is_dir()  # submitit's logs, beside the run folder


@pytest.mark.slow
def test_a_local_distributed_job_trains_the_sweep(tmp_path, capsys):
    """--nodes 1 --gpus-per-node 2 --local: two tasks of one job join a distributed run on a
    coordinator of this machine; process 0 writes the folder."""
    _submitit()
    out = tmp_path / "run"
    argv = ["submit", "--nodes", "1", "--gpus-per-node", "2", "--local", "--wait", "--time", "10", "sweep",
            "tanh-synthetic", "--out", str(out), "--depths", "3", "4", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "one job of 1 node(s) x 2 tasks (--distributed)" in printed
    assert "this process trained 2: 3 4" in printed and "process 1 of 2 took part in 2 depths: 3 4" in printed
    assert finished_depths(out) == [3, 4]
