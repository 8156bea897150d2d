"""Tests of resnet_limits.reproduce: the registry of experiments/, the verdicts, the reports."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
import shutil

import pytest

from resnet_limits import plotting
from resnet_limits import reproduce as rp
from resnet_limits.cli import main
from resnet_limits.errors import UsageError
from resnet_limits.limits import linear_case_name, linear_ode_expected_slope
from resnet_limits.reproduce.report import environment, report_markdown
from resnet_limits.studies.convergence import CASES
from resnet_limits.studies.table4 import PAPER_TABLE4
from resnet_limits.config import MNIST_DIR_ENV, PRESETS, sweep_config

REGISTRY = rp.registry()
TINY_SWEEP = "{ depths = [2, 3, 4], seeds = 2, epochs = 1, max_updates = 2 }"
TINY_MNIST = {"depths": [2, 3, 4], "seeds": 2, "epochs": 1, "max_updates": 2, "n_train": 500, "n_test": 100}


# ------------------------------------------------------------------ the files ---------

def test_the_registry_holds_every_paper_result():
    assert {"tanh-synthetic", "relu-synthetic", "tanh-mnist", "relu-mnist", "conv-cifar10", "table4",
            "convergence", "backprop", "parametrizations"} <= set(REGISTRY)
    assert not list(rp.EXPERIMENTS.glob("*.py")), "experiments/ holds data, not scripts"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_experiment_names_an_existing_preset_or_study(name):
    e = REGISTRY[name]
    for mode in ("quick", "full"):
        args = rp.entry_arguments(e, mode, {}, None)
        if e.kind == "sweep":
            assert e.target in PRESETS
            cfg = sweep_config(e.target, **args)  # a bad setting is a UsageError
            assert cfg.preset == e.target
        elif importlib.util.find_spec(e.target) is None:  # a study another issue is still writing
            assert rp.availability(e) == f"{e.target} does not exist yet"
        else:
            assert rp.availability(e) is None
            params = inspect.signature(importlib.import_module(e.target).run).parameters
            assert set(args) | set(e.options.values()) | {"progress"} <= set(params)
    assert e.reproduces and set(e.times) == {"cpu2_quick", "cpu2_full", "gpu_full"}
    for spec in e.compare:
        assert spec["source"] and isinstance(spec["ours"], list)
    assert len({f["file"] for f in e.figures}) == len(e.figures)


def test_table4_file_holds_the_studys_paper_numbers():
    seen = {}
    for spec in REGISTRY["table4"].compare:
        sel, key = spec["ours"][1], spec["ours"][2]
        seen[(sel["lr"], sel["batch_size"], key)] = (spec["paper"], spec["paper_sd"])
    assert len(seen) == 2 * len(PAPER_TABLE4)
    for (lr, B), (a, asd, b, bsd) in PAPER_TABLE4.items():
        assert seen[(lr, B, "alpha")] == (a, asd) and seen[(lr, B, "beta")] == (b, bsd)


def test_convergence_rates_are_the_studys_expected_slopes():
    expected = {n: c["expected_slope"] for n, c in CASES.items()}
    for a in (0.5, 0.7):
        for act in ("tanh", "csoftplus"):
            expected[linear_case_name(act, a)] = linear_ode_expected_slope(act, a)
        for act in ("identity", "tanh", "csoftplus"):
            expected[linear_case_name(act, a, regime=2)] = linear_ode_expected_slope(act, a, noise=True)
    rows = REGISTRY["convergence"].compare
    assert {spec["ours"][1] for spec in rows} == set(expected)
    for spec in rows:
        assert spec["paper"] == pytest.approx(expected[spec["ours"][1]]), spec["quantity"]


def test_a_malformed_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, message in (("kind = 'train'", "kind must be one of"), ("kind = 'sweep'", "names its preset"),
                          ("kind = [", "cannot read"),
                          ("kind = 'sweep'\npreset = 'p'\n[options]\nlr = 'lr'", "unknown option 'lr'"),
                          ("kind = 'sweep'\npreset = 'p'\n[[compare]]\nquantity = 'a'", "needs quantity, paper"),
                          ("kind = 'study'\nstudy = 'm'\nformat = 'f'\ncompanion = 'x'", "only a sweep has one"),
                          ("kind = 'sweep'\npreset = 'p'\n[[figures]]\nfile = 'f.png'\ndraw = 'scaling'",
                           "needs the entry's companion"),
                          ("kind = 'sweep'\npreset = 'p'\ncompanion = 'c'\n[[figures]]\nfile = 'f.png'\ndraw = 'fig2'",
                           "draw must be one of scaling, hypothesis, biases")):
        bad.write_text(text)
        with pytest.raises(UsageError, match=message):
            rp.load_experiment(bad)


def test_mnist_entries_draw_the_papers_figures_with_their_synthetic_companion():
    assert set(rp.DRAWINGS) == set(plotting.TWO_RUN_FIGURES)
    for act in ("tanh", "relu"):
        e = REGISTRY[f"{act}-mnist"]
        assert e.companion == f"{act}-synthetic"
        assert PRESETS[e.target].activation == PRESETS[REGISTRY[e.companion].target].activation
        assert sorted(f["draw"] for f in e.figures if "draw" in f) == sorted(rp.DRAWINGS)
        for f in (f for f in e.figures if "draw" in f):  # drawn into DIR/NAME/figures, captioned by the paper's figure
            assert f["file"].startswith("figures/") and f["shows"].startswith("SP Fig. ")
    assert [n for n, e in REGISTRY.items() if e.companion] == ["tanh-mnist", "relu-mnist"]


def test_a_companion_is_a_sweep_of_the_same_folder(tmp_path):
    (tmp_path / "m.toml").write_text("kind = 'sweep'\npreset = 'tanh-mnist'\ncompanion = 's'\n")
    with pytest.raises(UsageError, match="companion 's' is not a sweep entry of .* without a companion of its own"):
        rp.registry(tmp_path)
    (tmp_path / "s.toml").write_text("kind = 'sweep'\npreset = 'tanh-synthetic'\ncompanion = 'm'\n")
    with pytest.raises(UsageError, match="is not a sweep entry"):  # no chains, no cycles
        rp.registry(tmp_path)
    (tmp_path / "s.toml").write_text("kind = 'sweep'\npreset = 'tanh-synthetic'\n")
    assert rp.registry(tmp_path)["m"].companion == "s"


# ------------------------------------------------------------------ verdicts ----------

def _experiment(tmp_path, compare: str) -> rp.Experiment:
    f = tmp_path / "x.toml"
    f.write_text(f"kind = 'sweep'\npreset = 'tanh-synthetic'\ntolerance = 0.1\n{compare}")
    return rp.load_experiment(f)


def test_lookup_reads_keys_indices_and_selected_elements():
    result = {"cells": [{"lr": 0.01, "B": 8, "a": 1.0}, {"lr": 0.003, "B": 8, "a": 2.0}],
              "per_depth": {"8": {"e": 0.5}}, "xs": [3, 4]}
    assert rp.lookup(result, ["cells", {"lr": 0.003, "B": 8}, "a"]) == 2.0
    assert rp.lookup(result, ["per_depth", 8, "e"]) == 0.5
    assert rp.lookup(result, ["xs", -1]) == 4
    assert rp.lookup(result, ["cells", {"lr": 0.1}, "a"]) is None
    assert rp.lookup(result, ["xs", 5]) is None and rp.lookup(result, ["nope", "a"]) is None


def test_verdict_rule(tmp_path):
    e = _experiment(tmp_path, """
[[compare]]
quantity = "a"
paper = 0.73
paper_sd = 0.02
source = "s"
ours = ["a"]
ours_sd = ["a_sd"]
ours_seeds = ["a_seeds"]
[[compare]]
quantity = "slope"
paper = -1.0
side = "at most"
source = "s"
ours = ["slope"]
[[compare]]
quantity = "ratio"
paper = 1.0
log10 = true
tolerance = 0.5
source = "s"
ours = ["ratio"]
[[compare]]
quantity = "verdict"
paper = "Hypothesis 1"
source = "s"
ours = ["v"]
""")
    good = {"a": 0.70, "a_sd": 0.03, "a_seeds": [0.68, 0.72], "slope": -1.4, "ratio": 12.0, "v": "Hypothesis 1"}
    rows = rp.compare(e, good)
    # 2 sqrt(0.02^2 + 0.03^2) = 0.072 < 0.1: the file's tolerance decides
    assert rows[0]["tolerance"] == pytest.approx(0.1) and rows[0]["ok"]
    assert rows[1]["ok"], "a rate faster than the proof's bound is consistent with it"
    assert rows[2]["ours"] == pytest.approx(math.log10(12.0)) and rows[2]["ok"]
    assert rp.verdict(rows, {}) == "reproduced: all 4 numbers within tolerance"
    bad = dict(good, a=0.95, a_sd=0.10, slope=-0.7, v="Hypothesis 2")
    rows = rp.compare(e, bad)
    assert rows[0]["tolerance"] == pytest.approx(2 * (0.02**2 + 0.10**2) ** 0.5) and not rows[0]["ok"]
    assert not rows[1]["ok"] and not rows[3]["ok"]
    text = rp.verdict(rows, {})
    assert text.startswith("differs: 3 of 4 numbers outside tolerance; furthest slope: ours -0.70 vs paper -1.00 "
                           "(off by +0.30, tolerance 0.10)")
    assert "verdict: Hypothesis 2 (paper: Hypothesis 1)" in text
    rows = rp.compare(e, {k: v for k, v in good.items() if k != "slope"})
    assert rows[1]["missing"] and "not in our result: slope" in rp.verdict(rows, {})
    assert rp.verdict(rows, {"compare": False, "why": "random images"}) == "not compared: random images"
    assert rp.verdict([], {}) == "no paper numbers to compare with"


def _record(comparisons, **kw) -> dict:
    """The fields of a reproduction record that report.md is written from."""
    return dict(name="x", reproduces="r", verdict="v", mode="full", seconds=1.0, finished="now", rule="rule",
                comparisons=comparisons, context={}, figures=[], links=[], command="c", settings={},
                environment=environment(), **kw)


def test_why_follows_the_verdict_and_the_report_table_by_mode(tmp_path):
    e = _experiment(tmp_path, """
[[compare]]
quantity = "a"
paper = 0.73
source = "s"
ours = ["a"]
why = { quick = "the quick grid stops at L = 1,000", full = "the authors' code gives 0.61 too" }
[[compare]]
quantity = "b"
paper = 0.3
source = "s"
ours = ["b"]
why = "only the second"
""")
    rows = rp.compare(e, {"a": 0.5, "b": 0.3}, "quick")
    text = rp.verdict(rows, {})
    assert text.endswith(". Why we think so: the quick grid stops at L = 1,000")
    assert "only the second" not in text, "a number within tolerance needs no explanation"
    full = rp.verdict(rp.compare(e, {"a": 0.5, "b": 0.9}, "full"), {})
    assert full.endswith("Why we think so: (1) the authors' code gives 0.61 too; (2) only the second")
    # the report lists why under its table, for the numbers outside their tolerance only
    report = report_markdown(_record(rp.compare(e, {"a": 0.5, "b": 0.3}, "full")), "")
    assert "\nWhy we think these differ:\n\n- a: the authors' code gives 0.61 too\n\n## " in report
    assert "Why we think" not in report_markdown(_record(rows, compared=False), ""), \
        "a mode not compared explains nothing"
    f = tmp_path / "bad.toml"
    f.write_text("kind = 'sweep'\npreset = 'p'\n[[compare]]\nquantity = 'a'\npaper = 1\nsource = 's'\n"
                 "ours = ['a']\nwhy = { slow = 'x' }\n")
    with pytest.raises(UsageError, match="why is a text"):
        rp.load_experiment(f)
    # an entry's own why explains every number without one
    g = tmp_path / "entry.toml"
    text = f.read_text().replace("why = { slow = 'x' }", "")
    g.write_text(text.replace("kind =", "why = 'the entry says so'\nkind ="))
    assert rp.verdict(rp.compare(rp.load_experiment(g), {"a": 3.0}), {}).endswith("Why we think so: the entry says so")


# ------------------------------------------------------------------ end to end --------

@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """`reproduce all --quick` through the CLI on a registry of two entries: the tanh-synthetic
    file with a tiny sweep, and a study whose module does not exist; then the same again."""
    root = tmp_path_factory.mktemp("reproduce")
    folder = root / "experiments"
    folder.mkdir()
    text = (rp.EXPERIMENTS / "tanh-synthetic.toml").read_text()
    assert "args = { quick = true }" in text
    (folder / "tiny-tanh.toml").write_text(text.replace("args = { quick = true }", f"args = {TINY_SWEEP}"))
    (folder / "missing-study.toml").write_text(
        "order = 50\nreproduces = 'nothing yet'\nkind = 'study'\nstudy = 'resnet_limits.studies.no_such_study'\n"
        "format = 'format_nothing'\n")
    out = root / "out"
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rp, "EXPERIMENTS", folder)
        for _ in range(2):
            code = main(["reproduce", "all", "--quick", "--out", str(out), "--no-progress"])
            runs.append((code, (out / "tiny-tanh" / "report.md").stat().st_mtime_ns))
        # the entry changes (a paper number, a why): a third run, on a copy of the output, judges
        # the kept result again
        again = root / "again"
        shutil.copytree(out, again)
        before = json.loads((again / "tiny-tanh" / "reproduction.json").read_text())
        analysis = (again / "tiny-tanh" / "run" / "analysis.json").stat().st_mtime_ns
        entry = folder / "tiny-tanh.toml"
        text = "".join(line for line in entry.read_text().splitlines(True) if not line.startswith("why = "))
        assert 'ours = ["alpha"]\n' in text and "paper = 0.73\n" in text
        entry.write_text(text.replace("paper = 0.73\n", "paper = 9.5\n", 1).replace(
            'ours = ["alpha"]\n', 'ours = ["alpha"]\nwhy = "the paper number was changed by the test"\n', 1))
        code = main(["reproduce", "tiny-tanh", "--quick", "--out", str(again), "--no-progress"])
        after = json.loads((again / "tiny-tanh" / "reproduction.json").read_text())
        kept = analysis == (again / "tiny-tanh" / "run" / "analysis.json").stat().st_mtime_ns
        runs.append((again, code, before, after, kept))
    return out, runs


def test_reproduction_writes_a_report_with_paper_numbers_figures_and_command(reproduced):
    out, _ = reproduced
    report = (out / "tiny-tanh" / "report.md").read_text()
    assert "**Verdict: " in report and "Rule: a number is reproduced when" in report
    assert "| α (max\\|δ\\| ~ L^−α) | 0.73 ± 0.02 | " in report  # paper beside ours, pipes escaped
    assert re.search(r"\(sd over 2 seeds: [-0-9.]+, [-0-9.]+\)", report)
    assert "- optimizer: adam" in report and "- seeds: 2" in report
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert "run/figures/fig2_scaling.png" in links and len(links) >= 6
    for link in links:
        assert (out / "tiny-tanh" / link).stat().st_size > 1000
    assert f"resnet-limits reproduce tiny-tanh --quick --out {out}" in report
    assert "resnet-limits sweep tanh-synthetic --out" in report and "--depths 2 3 4" in report
    assert "| jax | " in report and "| diffrax | " in report and "JAX backend cpu" in report
    record = json.loads((out / "tiny-tanh" / "reproduction.json").read_text())
    assert record["verdict"] in report and len(record["comparisons"]) == 7


def test_reproduce_all_resumes_and_indexes(reproduced):
    out, runs = reproduced
    (code1, mtime1), (code2, mtime2) = runs[:2]
    assert code1 == code2 == 0  # a study that does not exist yet is named, not a failure
    assert mtime1 == mtime2, "the finished reproduction was skipped the second time"
    index = (out / "index.md").read_text()
    record = json.loads((out / "tiny-tanh" / "reproduction.json").read_text())
    assert "| [tiny-tanh](tiny-tanh/report.md) | " in index and record["verdict"] in index
    assert "| missing-study | nothing yet | - | not available: resnet_limits.studies.no_such_study does not exist yet" \
        in index


def test_a_changed_entry_is_judged_again_on_the_kept_result(reproduced):
    _, runs = reproduced
    out, code, before, after, analysis_kept = runs[2]
    assert code == 0 and analysis_kept, "nothing was run again"
    assert (out / "tiny-tanh" / "result.json").is_file()
    assert after["seconds"] == before["seconds"] and after["finished"] == before["finished"]
    assert after["entry"] != before["entry"]
    alpha = after["comparisons"][0]
    assert alpha["paper"] == 9.5 and not alpha["ok"] and alpha["ours"] == before["comparisons"][0]["ours"]
    assert after["verdict"].startswith("differs") and after["verdict"].endswith(
        "Why we think so: the paper number was changed by the test")
    report = (out / "tiny-tanh" / "report.md").read_text()
    assert "| α (max\\|δ\\| ~ L^−α) | 9.50 ± 0.02 | " in report
    assert "- α (max|δ| ~ L^−α): the paper number was changed by the test" in report
    assert before["summary"] and before["summary"] in report, "the run's printed summary is kept"
    assert before["sweep"] == {"depths": 3, "trained_now": 3}
    resumed = report_markdown(dict(after, sweep={"depths": 36, "trained_now": 0}), "")
    assert " s (0 of 36 depths trained in this run, the others kept from an earlier one), finished " in resumed
    assert " s, finished " in report  # this run trained all 3 of its depths


def test_list_names_every_entry(capsys):
    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(REGISTRY)
    for line, e in zip(lines, REGISTRY.values()):
        assert e.reproduces in line and "2-core CPU: quick " in line
        assert ("not available" in line) == (rp.availability(e) is not None)


@pytest.mark.parametrize("argv,message", [
    (["reproduce", "nope", "--out", "{d}"], "unknown reproduction 'nope'; choose from: all, tanh-synthetic, "),
    (["reproduce", "--out", "{d}"], "name a reproduction (or --list): all, "),
    (["reproduce", "convergence"], "reproduce convergence needs --out DIR"),
    (["reproduce", "tanh-synthetic", "--paths", "8", "--out", "{d}"],
     "--paths is not an option of tanh-synthetic (it is of: convergence, backprop)"),
    (["reproduce", "convergence", "--data-dir", "{d}", "--out", "{d}"], "--data-dir is not an option of convergence"),
    (["reproduce", "tanh-mnist", "--cifar-dir", "{d}", "--out", "{d}"],
     "--cifar-dir is not an option of tanh-mnist (it is of: conv-cifar10)"),
])
def test_bad_reproduce_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [a.format(d=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_options_reach_the_arguments(tmp_path, monkeypatch):
    e = REGISTRY["tanh-mnist"]
    args = rp.entry_arguments(e, "quick", {"optimizer": "sgd", "seeds": 3, "paths": None, "data_dir": str(tmp_path)}, None)
    assert args == {"quick": True, "optimizer": "sgd", "seeds": 3, "data_dir": str(tmp_path)}
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    assert rp.entry_arguments(e, "full", {}, None).get("data_dir") is None  # tensorflow-datasets
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path))
    assert rp.entry_arguments(e, "full", {}, None)["data_dir"] == str(tmp_path)
    assert "data_dir" not in rp.entry_arguments(REGISTRY["tanh-synthetic"], "full", {}, None)
    assert rp.entry_arguments(REGISTRY["convergence"], "quick", {"paths": 8}, None) == {"quick": True, "n_paths": 8}
    # conv-cifar10 reads CIFAR-10's binary batches from --cifar-dir (MNIST's --data-dir is not its option)
    assert rp.entry_arguments(REGISTRY["conv-cifar10"], "full", {"cifar_dir": str(tmp_path), "data_dir": "m"}, None) == \
        {"data_dir": str(tmp_path)}


def test_only_a_finished_reproduction_of_the_same_settings_is_skipped(tmp_path):
    settings = {"quick": True, "options": {}, "extra": {}}
    (tmp_path / "reproduction.json").write_text(json.dumps({"settings": settings, "verdict": "v"}))
    assert rp.finished_record(tmp_path, settings) is None, "no report: not finished"
    (tmp_path / "report.md").write_text("# r")
    assert rp.finished_record(tmp_path, settings)["verdict"] == "v"
    assert rp.finished_record(tmp_path, dict(settings, quick=False)) is None
    assert rp.finished_record(tmp_path, dict(settings, options={"seeds": "3"})) is None
    (tmp_path / "reproduction.json").write_text("{damaged")
    assert rp.finished_record(tmp_path, settings) is None


def test_an_mnist_reproduction_runs_its_companion_and_embeds_the_figures_of_both(tmp_path, mnist_dir):
    """tanh-mnist (tiny): tanh-synthetic is reproduced first into the same folder with the same
    settings, the figures of two runs are drawn and embedded under the paper's figure each shows;
    a rerun keeps the finished companion."""
    out, exp, logs = tmp_path / "out", REGISTRY["tanh-mnist"], []
    run = dict(quick=True, options={"data_dir": str(mnist_dir)}, progress=False, log=logs.append, extra=TINY_MNIST)
    record = rp.reproduce(exp, out, **run)
    companion = json.loads((out / "tanh-synthetic" / "reproduction.json").read_text())
    assert companion["settings"] == {"quick": True, "options": {}, "extra": TINY_MNIST}
    assert record["companion"] == {"name": "tanh-synthetic", "verdict": companion["verdict"],
                                   "report": "../tanh-synthetic/report.md"}
    report = (out / "tanh-mnist" / "report.md").read_text()
    assert "[tanh-synthetic](../tanh-synthetic/report.md) dashed" in report
    embedded = dict(re.findall(r"### (.*)\n\n!\[[^]]*\]\(([^)]+)\)", report))
    for paper_figure in ("SP Fig. 2 (dashed: synthetic, solid: MNIST)", "SP Fig. 3 (left) (dashed",
                         "SP Fig. 3 (right), from the companion", "SP Fig. 9 (left, middle) (dashed"):
        (caption,) = [c for c in embedded if c.startswith(paper_figure)]
        assert (out / "tanh-mnist" / embedded[caption]).stat().st_size > 10_000
    drawn = [f["file"] for f in exp.figures if "draw" in f]
    assert sorted(embedded[c] for c in embedded if embedded[c] in drawn) == sorted(drawn)

    mtime = (out / "tanh-synthetic" / "report.md").stat().st_mtime_ns
    (out / "tanh-mnist" / "report.md").unlink()  # killed before its report: resumed, the companion kept
    logs.clear()
    assert not rp.reproduce(exp, out, **run)["skipped"]
    assert (out / "tanh-synthetic" / "report.md").stat().st_mtime_ns == mtime
    assert any(line.startswith("tanh-synthetic: finished earlier") for line in logs)
    assert rp.reproduce(exp, out, **run)["skipped"]
