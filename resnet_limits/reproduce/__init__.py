"""The registry of the papers' results (layer 4 of DESIGN.md): ``experiments/*.toml`` -> runs -> reports.

Each file ``experiments/NAME.toml`` declares one paper result as data (format in
``experiments/README.md``): a preset to sweep and analyse (``kind = "sweep"``) or a study module
to run (``kind = "study"``), the arguments of its quick and full versions, the figures it
draws, and the paper's numbers with where in our result the matching number lies. This package
chooses what to run, runs it through layers 2-3, and writes beside it

* ``DIR/NAME/report.md``: the paper's numbers beside ours with a computed verdict (:data:`RULE`),
  the figures, the exact command, package versions and hardware;
* ``DIR/NAME/result.json``: the result the verdict was computed on (the analysis, or the study's
  returned dict);
* ``DIR/NAME/reproduction.json``: the same as data; written last, it marks the reproduction
  finished, and a rerun with the same settings skips it, or, when ``experiments/NAME.toml`` has
  changed since (a number of the paper, a tolerance, a ``why``), judges ``result.json`` again by
  it and rewrites the report without running anything;
* ``DIR/index.md``: every finished reproduction under ``DIR`` with its one-line verdict.

An MNIST sweep names a ``companion`` (the synthetic sweep of the same activation): it reproduces
the companion into ``DIR`` first (skipped when finished there; its time is not counted in the
MNIST reproduction's), then runs itself and draws the figures the paper draws from both runs (SP
Figs 2, 3, 5, 9, 10: synthetic dashed, MNIST solid).

One idea a module: :mod:`.entries` reads and checks the files, :mod:`.verdicts` compares the
numbers, :mod:`.figures` gathers and draws the figures, :mod:`.report` writes the Markdown; this
module runs them. No computation lives here: the numbers come from the studies and the analysis.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import json
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional


from resnet_limits.config import MNIST_DIR_ENV
from resnet_limits.errors import UsageError
from resnet_limits.reproduce.entries import (
    DRAWINGS, EXPERIMENTS, OPTIONS, REPOSITORY, SIDES, Experiment, availability, list_lines, load_experiment,
    read_registry, select, times_text,
)
from resnet_limits.reproduce.figures import draw_two_run_figures, figure_rows, link_rows, read_analysis
from resnet_limits.reproduce.report import (
    INDEX, RECORD, REPORT, RESULT, environment, index_markdown, read_record, report_markdown, write_index,
)
from resnet_limits.reproduce.verdicts import RULE, compare, lookup, verdict
from resnet_limits.sweeps.folder import check_out_dir, write_json, write_text

__all__ = [
    "DRAWINGS", "EXPERIMENTS", "INDEX", "OPTIONS", "RECORD", "REPORT", "REPOSITORY", "RESULT", "RULE", "SIDES",
    "Experiment", "availability", "command_line", "compare", "entry_arguments", "entry_digest", "environment",
    "finished_record", "index_markdown", "list_lines", "load_experiment", "lookup", "read_registry", "registry",
    "report_markdown", "reproduce", "reproduce_all", "select", "times_text", "verdict", "write_index",
]


def registry(folder=None) -> dict[str, Experiment]:
    """Every experiment of ``folder`` (default :data:`EXPERIMENTS`), in the order of their ``order``
    field (:func:`.entries.read_registry`)."""
    return read_registry(EXPERIMENTS if folder is None else folder)


# ------------------------------------------------------------------ running -----------

def _data_dir(exp: Experiment, given: Optional[str]) -> Optional[str]:
    """``--data-dir`` if given, else ``$RESNET_LIMITS_MNIST_DIR`` for an entry that reads MNIST
    (``[data] mnist = true``), else None (tensorflow-datasets)."""
    if given is not None:
        return str(given)
    return os.environ.get(MNIST_DIR_ENV) or None if exp.reads_mnist else None


def entry_arguments(exp: Experiment, mode: str, options: Mapping[str, Any],
                    extra: Optional[Mapping[str, Any]] = None) -> dict:
    """The keyword arguments an entry passes to its preset (:func:`~resnet_limits.config.sweep_config`)
    or its study in ``mode`` ("quick" or "full"): the mode's ``args``, then the ``options`` the
    entry takes (command-line options by name; ``data_dir`` resolved as :func:`reproduce` does),
    then ``extra``."""
    args = dict(exp.modes[mode].get("args", {}))
    for opt, key in exp.options.items():
        value = _data_dir(exp, options.get(opt)) if opt == "data_dir" else options.get(opt)
        if value is not None:
            args[key] = value
    args.update(extra or {})
    return args


def _run_sweep(exp: Experiment, folder: Path, args: dict, progress: bool, log) -> tuple[dict, str]:
    """Sweep the preset into ``folder/run`` (resumable), analyse it; the analysis with the run's
    configuration under ``config``, and its printed summary."""
    from resnet_limits import sweeps
    from resnet_limits.analysis import analyze_run, format_analysis
    from resnet_limits.config import CONV, sweep_config
    from resnet_limits.run import Run

    run_dir = folder / "run"
    cfg = sweep_config(exp.target, **args)
    train = sweeps.run_conv_sweep if cfg.kind == CONV else sweeps.run_sweep_report
    done = train(cfg, run_dir, progress=progress, log=log)
    run = Run.open(run_dir)
    result = analyze_run(run, progress=progress)
    trained = {"depths": len(done.finished), "trained_now": len(done.trained)}
    return {**result, "config": run.config.to_json(), "sweep": trained}, format_analysis(result)


def _run_study(exp: Experiment, folder: Path, args: dict, progress: bool) -> tuple[dict, str]:
    module = importlib.import_module(exp.target)
    result = module.run(folder, progress=progress, **args)
    return result, getattr(module, exp.format)(result)


def _sweep_command(exp: Experiment, run_dir: str, args: Mapping[str, Any]) -> str:
    """The ``resnet-limits sweep`` + ``analyze`` commands that make the same run folder."""
    words = ["resnet-limits", "sweep", exp.target, "--out", run_dir]
    for k, v in args.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            words.append(flag)
        elif v not in (None, False):
            words += [flag, *map(str, v if isinstance(v, (list, tuple)) else [v])]
    return f"{shlex.join(words)} && resnet-limits analyze {shlex.quote(run_dir)}"


def command_line(name: str, out, quick: bool, options: Mapping[str, Any]) -> str:
    """The ``resnet-limits reproduce`` command that makes (or resumes) this reproduction."""
    words = ["resnet-limits", "reproduce", name, *(["--quick"] if quick else []), "--out", str(out)]
    for opt, flag in OPTIONS.items():
        if options.get(opt) is not None:
            words += [flag, str(options[opt])]
    return shlex.join(words)


# ------------------------------------------------------------------ one reproduction --

def finished_record(folder: Path, settings: Mapping[str, Any]) -> Optional[dict]:
    """The record (``reproduction.json``) of a reproduction finished in ``folder`` with
    ``settings``, else None: :func:`reproduce` skips an entry that has one."""
    record = read_record(folder)
    return record if record is not None and record.get("settings") == settings else None


def reproduce(exp: Experiment, out, *, quick: bool = False, options: Optional[Mapping[str, Any]] = None,
              progress: bool = True, log: Callable[[str], None] = print,
              extra: Optional[Mapping[str, Any]] = None) -> dict:
    """Run (or resume) one reproduction into ``out/NAME``: writes ``report.md``, then
    ``reproduction.json`` (returned); a finished one with the same settings is skipped
    (``record['skipped']``). ``extra`` adds arguments of the preset or study (tests shrink runs
    with it). An entry with a ``companion`` first reproduces that one into ``out`` with the same
    settings (skipped when finished), then draws its figures of two runs (``[[figures]]`` with
    ``draw``). One-line :class:`UsageError` where it cannot run."""
    options = {k: v for k, v in (options or {}).items() if v is not None and k in exp.options}
    mode = "quick" if quick else "full"
    settings = {"quick": quick, "options": {k: str(v) for k, v in options.items()}, "extra": dict(extra or {})}
    folder = Path(out) / exp.name
    check_out_dir(Path(out))
    check_out_dir(folder)
    done = finished_record(folder, settings)
    if done is not None:
        if done.get("entry") != entry_digest(exp) and (folder / RESULT).is_file():
            done = _rejudge(exp, folder, done)
            log(f"{exp.name}: finished earlier; judged again by the changed {exp.path.name} ({folder / REPORT})")
        else:
            log(f"{exp.name}: finished earlier ({folder / REPORT}); delete that file to run it again")
        return {**done, "skipped": True}
    why = availability(exp)
    if why:
        raise UsageError(f"{exp.name}: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).unlink(missing_ok=True)  # a report of other settings is not finished for these
    args = entry_arguments(exp, mode, options, extra)
    companion = _companion(exp, out, quick=quick, options=options, progress=progress, log=log, extra=extra)
    log(f"{exp.name}: {exp.reproduces} ({mode})")
    t0 = time.perf_counter()
    if exp.kind == "sweep":
        result, text = _run_sweep(exp, folder, args, progress, log)
    else:
        result, text = _run_study(exp, folder, args, progress)
    if companion is not None:
        draw_two_run_figures(exp, read_analysis(Path(out) / exp.companion / "run"), result, folder)
    record = {
        "name": exp.name, "reproduces": exp.reproduces, "mode": mode, "settings": settings,
        "arguments": args, "command": command_line(exp.name, out, quick, options),
        "equivalent": _sweep_command(exp, str(folder / "run"), args) if exp.kind == "sweep" else None,
        "seconds": round(time.perf_counter() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment(), "companion": companion, "summary": text, "sweep": result.get("sweep"),
    }
    write_json(folder / RESULT, result)
    return {**_write_judged(exp, folder, record, result), "text": text, "skipped": False}


def entry_digest(exp: Experiment) -> str:
    """A fingerprint of ``experiments/NAME.toml`` as it is now (a changed entry is judged again)."""
    return hashlib.sha256(exp.path.read_bytes()).hexdigest()[:16]


def _write_judged(exp: Experiment, folder: Path, record: dict, result: Any) -> dict:
    """``record`` with the verdict of ``exp`` on ``result`` (its ``[[compare]]``, context, figures):
    writes ``report.md`` and then ``reproduction.json``; returns the record."""
    mode = record["mode"]
    rows = compare(exp, result, mode)
    record = {
        **record, "reproduces": exp.reproduces, "note": exp.modes[mode].get("note", ""),
        "verdict": verdict(rows, exp.modes[mode]), "rule": RULE,
        "compared": exp.modes[mode].get("compare", True) is not False, "comparisons": rows,
        "context": {k: _context(v, result) for k, v in exp.context.items()},
        "figures": figure_rows(exp, result, folder), "links": link_rows(exp, folder), "entry": entry_digest(exp),
    }
    write_text(folder / REPORT, report_markdown(record, record["summary"]))
    write_json(folder / RECORD, record)
    return record


def _rejudge(exp: Experiment, folder: Path, record: dict) -> dict:
    """A finished reproduction judged again by its changed entry, on the result it kept
    (``result.json``): nothing is run; the wall-clock and finish time stay those of the run."""
    try:
        result = json.loads((folder / RESULT).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder / RESULT} cannot be read ({e}); delete {folder / REPORT} to run it again") from None
    comp = record.get("companion")
    if comp:
        other = read_record(folder.parent / comp["name"])
        if other is not None:
            record = {**record, "companion": {**comp, "verdict": other["verdict"]}}
    return _write_judged(exp, folder, {**record, "summary": record.get("summary", "")}, result)


def _companion(exp: Experiment, out, **run) -> Optional[dict[str, str]]:
    """Reproduce ``exp``'s companion (an entry of the same folder) into ``out`` with the same
    settings ``run`` (skipped when finished there); its name, verdict and report (relative to
    ``out/NAME``). None for an entry without a companion."""
    if exp.companion is None:
        return None
    other = read_registry(exp.path.parent)[exp.companion]
    run["log"](f"{exp.name}: first its companion {other.name}, the dashed lines of its figures of two runs")
    record = reproduce(other, out, **run)
    return {"name": other.name, "verdict": record["verdict"], "report": f"../{other.name}/{REPORT}"}


def _context(value, result) -> Any:
    return lookup(result, value) if isinstance(value, list) else value


# ------------------------------------------------------------------ all of them -------

def reproduce_all(out, *, quick: bool = False, options: Optional[Mapping[str, Any]] = None,
                  progress: bool = True, log: Callable[[str], None] = print,
                  experiments: Optional[Mapping[str, Experiment]] = None,
                  extra: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, Any]:
    """Every experiment into ``out`` (finished ones skipped), ``out/index.md`` rewritten after each.

    One whose study is not available here is named and passed over; one that cannot run (a
    one-line :class:`UsageError`, e.g. a missing data set) is named and the others go on. Returns
    ``{"records": {name: record}, "unavailable": {name: line}, "failed": {name: line}, "index":
    path}``; ``extra`` maps a name to :func:`reproduce`'s ``extra``.
    """
    experiments = registry() if experiments is None else experiments
    check_out_dir(Path(out))
    records, unavailable, failed = {}, {}, {}
    for name, e in experiments.items():
        why = availability(e)
        if why:
            unavailable[name] = f"not available: {why}"
            log(f"{name}: {unavailable[name]}")
        else:
            try:
                records[name] = reproduce(e, out, quick=quick, options=options, progress=progress, log=log,
                                          extra=(extra or {}).get(name))
            except UsageError as err:
                failed[name] = f"not run: {' '.join(str(err).split())}"
                log(f"{name}: {failed[name]}")
        write_index(out, experiments, {**unavailable, **failed})
    return {"records": records, "unavailable": unavailable, "failed": failed, "index": Path(out) / INDEX}
