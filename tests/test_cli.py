import subprocess
import sys

import pytest

from resnet_limits.cli import main
from resnet_limits.sweeps import make_config, run_sweep

BAD = [
    (["sweep", "nope", "--out", "{d}"], "unknown preset 'nope'"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--activation", "sin"], "unknown activation 'sin'"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--depths", "0", "3"], "depth must be >= 1"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--min-depth", "0"], "depth must be >= 1"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--lr", "0"], "learning rate must be positive"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--lr", "-0.1"], "learning rate must be positive"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--batch-size", "5000"], "larger than the training set"),
    (["sweep", "tanh-synthetic", "--out", "{d}", "--optimizer", "rmsprop"], "invalid choice"),
    (["sweep", "tanh-synthetic"], "required: --out"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [a.format(d=tmp_path / "run") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("resnet-limits: error: ") and message in err


def test_folder_of_another_configuration_via_cli(tmp_path, capsys):
    run_sweep(make_config("tanh-synthetic", seeds=1, epochs=1, max_updates=2, depths=[2]), tmp_path, progress=False)
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
    assert "2 depths finished" in capsys.readouterr().out
    assert (tmp_path / "depths" / "L00005.npz").exists()
