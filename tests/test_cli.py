import subprocess
import sys

import pytest

from resnet_limits.cli import main
from resnet_limits.config import sweep_config
from resnet_limits.sweeps import run_sweep

SWEEP = ["sweep", "tanh-synthetic", "--out", "{d}"]
# every bad input of the CLI: (argv, the part of the one line it must print)
BAD = [
    (["sweep", "nope", "--out", "{d}"], "unknown preset 'nope'; choose from tanh-synthetic"),
    ([*SWEEP, "--activation", "sin"], "argument --activation: invalid choice: 'sin'"),
    ([*SWEEP, "--depths", "0", "3"], "depth must be >= 1, got 0"),
    ([*SWEEP, "--depths", "-3", "4"], "depth must be >= 1, got -3"),
    ([*SWEEP, "--depths", "abc"], "argument --depths: invalid int value: 'abc'"),
    ([*SWEEP, "--min-depth", "0"], "depth must be >= 1"),
    ([*SWEEP, "--max-depth", "-5"], "max depth -5 is below min depth 3"),
    ([*SWEEP, "--min-depth", "9", "--max-depth", "7"], "max depth 7 is below min depth 9"),
    ([*SWEEP, "--min-depth", "7", "--max-depth", "7"], "has no depth between 7 and 7"),
    ([*SWEEP, "--depth-base", "1"], "depth base must be > 1, got 1.0"),
    ([*SWEEP, "--depth-base", "0.5"], "depth base must be > 1, got 0.5"),
    ([*SWEEP, "--depth-base", "nan"], "depth base must be > 1, got nan"),
    ([*SWEEP, "--seeds", "0"], "seeds must be >= 1, got 0"),
    ([*SWEEP, "--seed", "-1"], "seed must be in 0..4294967295, got -1"),
    ([*SWEEP, "--seed", "4294967296"], "seed must be in 0..4294967295"),
    ([*SWEEP, "--lr", "0"], "learning rate must be positive"),
    ([*SWEEP, "--lr", "-0.1"], "learning rate must be positive"),
    ([*SWEEP, "--lr", "inf"], "learning rate must be positive, got inf"),
    ([*SWEEP, "--lr", "nan"], "learning rate must be positive, got nan"),
    ([*SWEEP, "--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
    ([*SWEEP, "--batch-size", "0"], "batch size must be >= 1, got 0"),
    ([*SWEEP, "--batch-size", "5000"], "larger than the training set"),
    ([*SWEEP, "--epochs", "0"], "epochs must be >= 1, got 0"),
    ([*SWEEP, "--max-updates", "0"], "max updates must be >= 1, got 0"),
    ([*SWEEP, "--epsilon", "-1"], "epsilon must be >= 0, got -1"),
    ([*SWEEP, "--epsilon", "nan"], "epsilon must be >= 0, got nan"),
    ([*SWEEP, "--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
    ([*SWEEP, "--data-dir", "{d}"], "a data folder is only read by the MNIST presets"),
    (["sweep", "tanh-synthetic"], "required: --out"),
    (["sweep", "tanh-synthetic", "--out", "{f}", "--depths", "3"], "exists and is not a folder; choose another --out"),
    (["sweep", "tanh-synthetic", "--out", "{f}/run", "--depths", "3"], "cannot create"),
    (["sweep", "tanh-synthetic", "--out", "{t}", "--depths", "3"], "is not empty and is not a sweep folder"),
    (["analyze", "{d}"], "does not exist"),
    (["analyze", "{f}"], "is not a folder"),
    (["analyze", "{t}"], "is not a sweep folder (no config.json)"),
    (["limits", "{d}", "--depth", "3"], "does not exist"),
    (["limits", "{t}", "--depth", "3"], "is not a sweep folder (no config.json)"),
    (["limits", "{t}", "--depth", "0"], "argument --depth: depth must be >= 1, got 0"),
    (["limits", "{t}", "--depth", "3", "--seed", "-2"], "argument --seed: seed must be in 0..4294967295"),
    (["limits", "{t}", "--depth", "3", "--inputs", "0"], "argument --inputs: inputs must be >= 1, got 0"),
    (["limits", "{t}"], "required: --depth"),
    (["reproduce", "tabel4", "--out", "{d}"], "unknown reproduction 'tabel4'; choose from: all, "),
    (["reproduce", "table4", "--out", "{f}"], "exists and is not a folder"),
    (["reproduce", "table4", "--out", "{d}", "--seeds", "0"], "argument --seeds: seeds must be >= 1, got 0"),
    (["reproduce", "table4", "--out", "{d}", "--optimizer", "rmsprop"], "invalid choice"),
    (["reproduce", "convergence", "--out", "{d}", "--paths", "0"], "argument --paths: paths must be >= 1, got 0"),
    (["reproduce", "backprop", "--out", "{d}", "--paths", "-4"], "paths must be >= 1, got -4"),
    (["frobnicate"], "invalid choice"),
    ([], "required: COMMAND"),
]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resnet-limits: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "things").mkdir()
    (tmp_path / "things" / "notes.txt").write_text("mine")
    argv = [a.format(d=tmp_path / "run", f=tmp_path / "afile", t=tmp_path / "things") for a in argv]
    assert main(argv) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "run"
    run_sweep(sweep_config("tanh-synthetic", seeds=2, epochs=1, max_updates=2, depths=[2]), run, progress=False)
    return run


@pytest.mark.parametrize("argv,message", [
    (["--depth", "3"], "depth 3 is not finished in"),
    (["--depth", "2", "--seed", "2"], "seed must be in 0..1 (the run has 2 seeds), got 2"),
    (["--depth", "2", "--inputs", "257"], "inputs must be <= 256 (the run's test set), got 257"),
    (["--depth", "2", "--out", "{run}/config.json"], "exists and is not a folder"),
])
def test_limits_checks_its_numbers_against_the_run(tiny_run, capsys, argv, message):
    assert main(["limits", str(tiny_run), *[a.format(run=tiny_run) for a in argv]]) == 2
    assert message in _one_error_line(capsys)


def test_folder_of_another_configuration_via_cli(tmp_path, capsys):
    run_sweep(sweep_config("tanh-synthetic", seeds=1, epochs=1, max_updates=2, depths=[2]), tmp_path, progress=False)
    code = main(["sweep", "relu-synthetic", "--out", str(tmp_path), "--depths", "2", "--seeds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "made by another configuration" in err and err.count("\n") == 1


def test_console_script_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "resnet_limits.cli", "sweep", "tanh-synthetic", "--out",
                          str(tmp_path), "--depths", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "resnet-limits: error: depth must be >= 1, got 0"


def test_help_everywhere(capsys):
    for argv in (["--help"], ["sweep", "--help"], ["analyze", "--help"], ["limits", "--help"], ["reproduce", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_sweep_command_end_to_end(tmp_path, capsys):
    assert main(["sweep", "relu-synthetic", "--out", str(tmp_path), "--depths", "2", "5", "--seeds", "2",
                 "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 depths finished" in out and "this process trained 2: 2 5" in out
    assert (tmp_path / "depths" / "L00005.npz").exists()
