"""The registry of the papers' results (layer 4 of DESIGN.md): ``experiments/*.toml`` -> runs -> reports.

Each file ``experiments/NAME.toml`` declares one paper result as data (format in
``experiments/README.md``): a preset to sweep and analyse (``kind = "sweep"``) or a study module
to run (``kind = "study"``), the arguments of its quick and full versions, the figures it
draws, and the paper's numbers with where in our result the matching number lies. This module
chooses what to run, runs it through layers 2-3, and writes beside it

* ``DIR/NAME/report.md``: the paper's numbers beside ours with a computed verdict (:data:`RULE`),
  the figures, the exact command, package versions and hardware;
* ``DIR/NAME/reproduction.json``: the same as data; written last, it marks the reproduction
  finished, and a rerun with the same settings skips it;
* ``DIR/index.md``: every finished reproduction under ``DIR`` with its one-line verdict.

No computation lives here: the numbers come from the studies and the analysis.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from resnet_limits.errors import UsageError
from resnet_limits.sweeps.folder import atomic_write, check_out_dir, write_json

__all__ = [
    "EXPERIMENTS", "OPTIONS", "REPOSITORY", "RULE", "Experiment", "availability", "compare", "environment",
    "index_markdown", "list_lines", "load_experiment", "lookup", "registry", "report_markdown", "reproduce",
    "reproduce_all", "select", "times_text", "verdict", "write_index",
]

#: The repository, and the folder of its declarative files.
REPOSITORY = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPOSITORY / "experiments"
#: Options of ``resnet-limits reproduce`` an experiment may take (``[options]`` of its file), with their flags.
OPTIONS = {"optimizer": "--optimizer", "seeds": "--seeds", "paths": "--paths", "data_dir": "--data-dir"}
#: How a verdict is decided (printed in every report and index).
RULE = ("a number is reproduced when |ours − paper| ≤ max(tolerance, 2·√(sd_paper² + sd_ours²)), the "
        "spreads being those reported beside each number (0 where none is); where the paper's number is a "
        "bound (a rate its proof gives: 'at most', or a limit that is not reached: 'at least') only the side "
        "it bounds counts; a verdict (text) must be equal; a result is reproduced when every number is")
SIDES = ("both", "at most", "at least")
VERSIONS = ("jax", "jaxlib", "flax", "optax", "diffrax", "equinox", "numpy", "resnet-limits")
RECORD, REPORT, INDEX = "reproduction.json", "report.md", "index.md"
_KINDS = ("sweep", "study")


@dataclass(frozen=True)
class Experiment:
    """One file of ``experiments/`` (see ``experiments/README.md`` for each field)."""

    name: str
    path: Path
    order: int
    reproduces: str
    kind: str
    target: str  # the preset (sweep) or the study module
    format: Optional[str]
    modes: Mapping[str, Mapping[str, Any]]  # "quick" / "full" -> args, note, compare, why
    options: Mapping[str, str]
    data_dirs: tuple[str, ...]
    tolerance: float
    needs_gpu: str
    times: Mapping[str, Optional[str]]
    context: Mapping[str, Any]
    figures: tuple[Mapping[str, str], ...]
    links: tuple[Mapping[str, str], ...]
    compare: tuple[Mapping[str, Any], ...]


# ------------------------------------------------------------------ the registry ------

def load_experiment(path) -> Experiment:
    """Read one ``experiments/NAME.toml``; :class:`UsageError` (one line) for a malformed file."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: cannot read the experiment: {e}") from None
    where = f"{path}: "
    if d.get("kind") not in _KINDS:
        raise UsageError(f"{where}kind must be one of {', '.join(_KINDS)}, got {d.get('kind')!r}")
    target = d.get("preset") if d["kind"] == "sweep" else d.get("study")
    if not isinstance(target, str) or (d["kind"] == "study" and not isinstance(d.get("format"), str)):
        raise UsageError(f"{where}a sweep names its preset, a study its module and format function")
    bad = sorted(set(d.get("options", {})) - set(OPTIONS))
    if bad:
        raise UsageError(f"{where}unknown option {bad[0]!r}; options are {', '.join(OPTIONS)}")
    modes = {m: dict(d.get(m, {})) for m in ("quick", "full")}
    for spec in d.get("compare", []):
        if not {"quantity", "paper", "source", "ours"} <= set(spec):
            raise UsageError(f"{where}each [[compare]] needs quantity, paper, source and ours")
        if spec.get("side", "both") not in SIDES:
            raise UsageError(f"{where}side must be one of {', '.join(SIDES)}, got {spec['side']!r}")
    return Experiment(
        name=path.stem, path=path, order=int(d.get("order", 99)), reproduces=str(d.get("reproduces", "")),
        kind=d["kind"], target=target, format=d.get("format"), modes=modes, options=dict(d.get("options", {})),
        data_dirs=tuple(d.get("data", {}).get("dirs", ())), tolerance=float(d.get("tolerance", 0.0)),
        needs_gpu=str(d.get("needs_gpu", "")), times={k: (v or None) for k, v in d.get("times", {}).items()},
        context=dict(d.get("context", {})), figures=tuple(d.get("figures", ())), links=tuple(d.get("links", ())),
        compare=tuple(d.get("compare", ())),
    )


def registry(folder=None) -> dict[str, Experiment]:
    """Every experiment of ``folder`` (default :data:`EXPERIMENTS`), in the order of their ``order`` field."""
    folder = Path(EXPERIMENTS if folder is None else folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} (the experiments) is missing: reproduce runs from a checkout of the repository")
    exps = [load_experiment(p) for p in sorted(folder.glob("*.toml"))]
    return {e.name: e for e in sorted(exps, key=lambda e: (e.order, e.name))}


def availability(exp: Experiment) -> Optional[str]:
    """None when ``exp`` can run here; else one line saying why not (its study does not import)."""
    if exp.kind != "study":
        return None
    try:
        module = importlib.import_module(exp.target)
    except ModuleNotFoundError as e:
        if e.name == exp.target:
            return f"{exp.target} does not exist yet"
        return f"{exp.target} does not import ({type(e).__name__}: {e})"
    except ImportError as e:
        return f"{exp.target} does not import ({type(e).__name__}: {e})"
    missing = [f for f in ("run", exp.format) if not callable(getattr(module, f, None))]
    return f"{exp.target} has no {' or '.join(missing)}" if missing else None


def times_text(exp: Experiment) -> str:
    """The measured wall-clock times of ``exp`` (its ``[times]``), "not measured" where none is."""
    quick = exp.times.get("cpu2_quick") or "not measured"
    if exp.needs_gpu in ("full", "both"):
        return f"2-core CPU: quick {quick}; GPU: full {exp.times.get('gpu_full') or 'not measured'}"
    full = exp.times.get("cpu2_full") or "not measured"
    gpu = f"; GPU: full {exp.times['gpu_full']}" if exp.times.get("gpu_full") else ""
    return f"2-core CPU: quick {quick}, full {full}{gpu}"


def list_lines(experiments: Mapping[str, Experiment]) -> list[str]:
    """``reproduce --list``: one line each, with what it reproduces and its measured times."""
    width = max((len(n) for n in experiments), default=0)
    lines = []
    for name, e in experiments.items():
        why = availability(e)
        tail = f"  (not available: {why})" if why else ""
        lines.append(f"{name:<{width}}  {e.reproduces}  [{times_text(e)}]{tail}")
    return lines


def select(experiments: Mapping[str, Experiment], name: Optional[str], options: Mapping[str, Any]) -> list[Experiment]:
    """The experiments ``name`` asks for (one, or every one for ``all``); one-line :class:`UsageError`
    for an unknown name or an option that none of them takes."""
    names = ", ".join(["all", *experiments])
    if name is None:
        raise UsageError(f"name a reproduction (or --list): {names}")
    if name != "all" and name not in experiments:
        raise UsageError(f"unknown reproduction {name!r}; choose from: {names}")
    chosen = list(experiments.values()) if name == "all" else [experiments[name]]
    for opt, value in options.items():
        if value is not None and not any(opt in e.options for e in chosen):
            takers = ", ".join(e.name for e in experiments.values() if opt in e.options) or "none"
            raise UsageError(f"{OPTIONS[opt]} is not an option of {name} (it is of: {takers})")
    return chosen


# ------------------------------------------------------------------ running -----------

def _data_dir(exp: Experiment, given: Optional[str]) -> Optional[str]:
    """``--data-dir`` if given, else the first of the file's ``[data] dirs`` that exists
    (relative to the repository), else None (tensorflow-datasets)."""
    if given is not None:
        return str(given)
    for d in exp.data_dirs:
        p = (REPOSITORY / d).resolve()
        if p.is_dir():
            return str(p)
    return None


def _arguments(exp: Experiment, mode: str, options: Mapping[str, Any], extra: Optional[Mapping[str, Any]]) -> dict:
    """The keyword arguments of the preset or the study: the mode's ``args``, the options the
    experiment takes, and (tests) ``extra``."""
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

    run_dir = folder / "run"
    if exp.target in sweeps.CONV_PRESETS:
        sweeps.run_conv_sweep(sweeps.make_conv_config(exp.target, **args), run_dir, progress=progress, log=log)
    else:
        sweeps.run_sweep_report(sweeps.make_config(exp.target, **args), run_dir, progress=progress, log=log)
    result = analyze_run(run_dir, progress=progress)
    return {**result, "config": sweeps.load_config(run_dir)}, format_analysis(result)


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


# ------------------------------------------------------------------ comparing ---------

def lookup(result: Any, path: Sequence[Any]) -> Any:
    """The element of ``result`` at ``path``: a string is a key, an integer an index, a table the
    element of a list whose fields equal all of its own (e.g. ``{lr = 0.01, batch_size = 32}``).
    None where nothing is there."""
    node = result
    for step in path:
        if isinstance(step, Mapping):
            node = next((x for x in node or [] if isinstance(x, Mapping) and all(
                _same(x.get(k), v) for k, v in step.items())), None)
        elif isinstance(step, int) and isinstance(node, list):
            node = node[step] if -len(node) <= step < len(node) else None
        elif isinstance(node, Mapping):
            node = node.get(str(step))
        else:
            return None
        if node is None:
            return None
    return node


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _number(x) -> Optional[float]:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _judge(spec: Mapping[str, Any], result: Any, default_tol: float) -> dict[str, Any]:
    """One row of the comparison: our number (and spread) at ``spec['ours']`` against the paper's."""
    paper = spec["paper"]
    row = {k: spec.get(k) for k in ("quantity", "source", "paper", "paper_sd")}
    row["side"] = spec.get("side", "both")
    raw = lookup(result, spec["ours"])
    if isinstance(paper, str):
        return {**row, "ours": raw, "ok": raw == paper, "missing": raw is None}
    scale = float(spec.get("ours_scale", 1.0))
    ours, sd = _number(raw), _number(lookup(result, spec["ours_sd"])) if "ours_sd" in spec else None
    seeds = lookup(result, spec["ours_seeds"]) if "ours_seeds" in spec else None
    if ours is not None:
        ours, sd = ours * scale, (sd * scale if sd is not None else None)
    if spec.get("log10"):
        ours, sd = (math.log10(ours) if ours and ours > 0 else None), None
    tol = max(float(spec.get("tolerance", default_tol)), 2 * math.hypot(spec.get("paper_sd") or 0.0, sd or 0.0))
    row.update(ours=ours, ours_sd=sd, tolerance=tol, log10=bool(spec.get("log10")), sd_is=spec.get("sd_is"),
               ours_seeds=[None if _number(v) is None else _number(v) * scale for v in seeds] if seeds else None,
               missing=ours is None)
    diff = row["difference"] = None if ours is None else ours - float(paper)
    beyond = None if diff is None else {"both": abs(diff), "at most": diff, "at least": -diff}[row["side"]]
    row["ok"] = beyond is not None and beyond <= tol
    return row


def compare(exp: Experiment, result: Any) -> list[dict[str, Any]]:
    """Every ``[[compare]]`` of ``exp`` judged on ``result`` (:data:`RULE`)."""
    return [_judge(spec, result, exp.tolerance) for spec in exp.compare]


def verdict(rows: Sequence[Mapping[str, Any]], mode: Mapping[str, Any]) -> str:
    """The one-line verdict of a reproduction from its compared rows (:data:`RULE`)."""
    if mode.get("compare") is False:
        return f"not compared: {mode.get('why', 'this mode is not comparable with the paper')}"
    if not rows:
        return "no paper numbers to compare with"
    bad = [r for r in rows if not r["ok"]]
    if not bad:
        return f"reproduced: all {len(rows)} numbers within tolerance"
    text = f"differs: {len(bad)} of {len(rows)} numbers outside tolerance"
    off = [r for r in bad if not r["missing"] and not isinstance(r["paper"], str)]
    if off:
        worst = max(off, key=lambda r: abs(r["difference"]) / r["tolerance"] if r["tolerance"] else math.inf)
        text += (f"; furthest {worst['quantity']}: ours {_f(worst['ours'])} vs paper {_f(float(worst['paper']))} "
                 f"(off by {worst['difference']:+.2f}, tolerance {worst['tolerance']:.2f})")
    for r in bad:
        if isinstance(r["paper"], str) and not r["missing"]:
            text += f"; {r['quantity']}: {r['ours']} (paper: {r['paper']})"
    missing = [r["quantity"] for r in bad if r["missing"]]
    if missing:
        text += f"; not in our result: {', '.join(missing)}"
    return text


# ------------------------------------------------------------------ one reproduction --

def _finished(folder: Path, settings: Mapping[str, Any]) -> Optional[dict]:
    """The record of a finished reproduction in ``folder`` made with ``settings``, else None."""
    record = _read_record(folder)
    return record if record is not None and record.get("settings") == settings else None


def reproduce(exp: Experiment, out, *, quick: bool = False, options: Optional[Mapping[str, Any]] = None,
              progress: bool = True, log: Callable[[str], None] = print,
              extra: Optional[Mapping[str, Any]] = None) -> dict:
    """Run (or resume) one reproduction into ``out/NAME``: writes ``report.md``, then
    ``reproduction.json`` (returned); a finished one with the same settings is skipped
    (``record['skipped']``). ``extra`` adds arguments of the preset or study (tests shrink runs
    with it). One-line :class:`UsageError` where it cannot run."""
    options = {k: v for k, v in (options or {}).items() if v is not None and k in exp.options}
    mode = "quick" if quick else "full"
    settings = {"quick": quick, "options": {k: str(v) for k, v in options.items()}, "extra": dict(extra or {})}
    folder = Path(out) / exp.name
    check_out_dir(Path(out))
    check_out_dir(folder)
    done = _finished(folder, settings)
    if done is not None:
        log(f"{exp.name}: finished earlier ({folder / REPORT}); delete that file to run it again")
        return {**done, "skipped": True}
    why = availability(exp)
    if why:
        raise UsageError(f"{exp.name}: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).unlink(missing_ok=True)  # a report of other settings is not finished for these
    args = _arguments(exp, mode, options, extra)
    log(f"{exp.name}: {exp.reproduces} ({mode})")
    t0 = time.perf_counter()
    if exp.kind == "sweep":
        result, text = _run_sweep(exp, folder, args, progress, log)
    else:
        result, text = _run_study(exp, folder, args, progress)
    rows = compare(exp, result)
    record = {
        "name": exp.name, "reproduces": exp.reproduces, "mode": mode, "settings": settings,
        "note": exp.modes[mode].get("note", ""), "verdict": verdict(rows, exp.modes[mode]), "rule": RULE,
        "compared": exp.modes[mode].get("compare", True) is not False,
        "comparisons": rows, "context": {k: _context(v, result) for k, v in exp.context.items()},
        "arguments": args, "command": command_line(exp.name, out, quick, options),
        "equivalent": _sweep_command(exp, str(folder / "run"), args) if exp.kind == "sweep" else None,
        "figures": _figures(exp, result, folder), "links": _links(exp, folder),
        "seconds": round(time.perf_counter() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment(),
    }
    atomic_write(folder / REPORT, lambda f: f.write(report_markdown(record, text).encode()))
    write_json(folder / RECORD, _plain(record))
    return {**record, "text": text, "skipped": False}


def _context(value, result) -> Any:
    return lookup(result, value) if isinstance(value, list) else value


def _figure_paths(result: Any, folder: Path) -> list[Path]:
    """The figures a result names (absolute, relative to ``folder``, or to the working folder)."""
    paths = []
    for f in (result.get("figures") or []) if isinstance(result, Mapping) else []:
        p = Path(f)
        paths.append(folder / p if not p.is_absolute() and (folder / p).exists() else p)
    return [p.resolve() for p in paths]


def _figures(exp: Experiment, result: Any, folder: Path) -> list[dict[str, Any]]:
    """The declared figures (with what they show), then any other figure the result names;
    ``file`` relative to ``folder``, ``drawn`` False where the file is missing."""
    rows = [{"file": f["file"], "shows": f.get("shows", ""), "drawn": (folder / f["file"]).is_file()}
            for f in exp.figures]
    declared = {(folder / r["file"]).resolve() for r in rows}
    for p in _figure_paths(result, folder):
        if p not in declared and p.is_file():
            rows.append({"file": os.path.relpath(p, folder.resolve()), "shows": "", "drawn": True})
    return rows


def _links(exp: Experiment, folder: Path) -> list[dict[str, Any]]:
    return [{"file": f["file"], "shows": f.get("shows", ""), "present": (folder / f["file"]).is_file()}
            for f in exp.links]


def _plain(obj):
    """``obj`` as JSON-safe data (paths and other objects as text)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def environment() -> dict[str, Any]:
    """Package versions and hardware: what made the numbers."""
    import jax

    versions = {}
    for pkg in VERSIONS:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    devices = jax.devices()
    return {
        "versions": versions, "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "usable_cores": cores,
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.id} ({getattr(d, 'device_kind', '')})" for d in devices],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# ------------------------------------------------------------------ the report --------

def _f(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _sd(x: float) -> str:
    """A spread: two decimals, or one significant digit below 0.01 (0.004, not 0.00)."""
    return f"{x:.1g}" if 0 < abs(x) < 0.005 else _f(x)


def _ours_cell(r: Mapping[str, Any]) -> str:
    if isinstance(r["paper"], str) or r["ours"] is None:
        return "not in our result" if r["ours"] is None else str(r["ours"])
    cell = _f(r["ours"]) + (f" ± {_sd(r['ours_sd'])}" if r.get("ours_sd") is not None else "")
    seeds = [s for s in (r.get("ours_seeds") or []) if s is not None]
    if seeds:
        cell += f" (sd over {len(seeds)} seeds: {', '.join(_f(s) for s in seeds)})"
    elif r.get("sd_is") and r.get("ours_sd") is not None:
        cell += f" ({r['sd_is']})"
    return cell


def _cell(x) -> str:
    """``x`` as the text of a Markdown table cell (a ``|`` inside would end the cell)."""
    return " ".join(str(x).split()).replace("|", "\\|")


def _comparison_table(rows: Sequence[Mapping[str, Any]], compared: bool = True) -> list[str]:
    lines = ["| quantity | paper | ours | difference | tolerance | reproduced | paper's source |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = str(r["paper"]) if isinstance(r["paper"], str) else (
            _f(float(r["paper"])) + (f" ± {_f(r['paper_sd'])}" if r.get("paper_sd") is not None else ""))
        diff = "-" if r.get("difference") is None else f"{r['difference']:+.2f}"
        tol = "equal" if isinstance(r["paper"], str) else {
            "both": "± ", "at most": "at most paper + ", "at least": "at least paper − "}[r.get("side", "both")] + \
            f"{r['tolerance']:.2f}"
        judged = ("yes" if r["ok"] else "no") if compared else "not compared"
        cells = (r["quantity"], paper, _ours_cell(r), diff, tol, judged, r["source"])
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return lines


def report_markdown(record: Mapping[str, Any], text: str) -> str:
    """``report.md`` of one reproduction from its record and the study's printed summary."""
    lines = [f"# {record['name']}: {record['reproduces']}", "",
             f"**Verdict: {record['verdict']}.**", "",
             f"Mode: {record['mode']}" + (f": {record['note']}" if record.get("note") else "") + ". "
             f"Wall-clock {record['seconds']:.0f} s, finished {record['finished']}.", "",
             f"Rule: {record['rule']}.", ""]
    if record["comparisons"]:
        compared = record.get("compared", True)
        lines += ["## The paper's numbers beside ours", "", *_comparison_table(record["comparisons"], compared), ""]
    if record["context"]:
        lines += ["## Made with", ""]
        lines += [f"- {k}: {_context_text(v)}" for k, v in record["context"].items()]
        lines.append("")
    if record["figures"]:
        lines += ["## Figures", ""]
        for fig in record["figures"]:
            caption = fig["shows"] or Path(fig["file"]).name
            lines += [f"### {caption}", "",
                      f"![{Path(fig['file']).name}]({fig['file']})" if fig["drawn"] else
                      f"({fig['file']} was not drawn in this run)", ""]
    if record["links"]:
        lines += ["## Files", ""]
        lines += [f"- [{lk['file']}]({lk['file']}): {lk['shows']}" + ("" if lk["present"] else " (not written)")
                  for lk in record["links"]]
        lines.append("")
    lines += ["## Summary printed by the run", "", "```text", text.rstrip(), "```", "",
              "## Command", "", "```bash", record["command"], "```", ""]
    if record["settings"].get("extra"):
        lines += [f"(with test-only arguments {record['settings']['extra']})", ""]
    if record.get("equivalent"):
        lines += ["The same run folder, step by step:", "", "```bash", record["equivalent"], "```", ""]
    lines += _environment_lines(record["environment"])
    return "\n".join(lines) + "\n"


def _context_text(v) -> str:
    if isinstance(v, list) and len(v) > 6 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]} … {v[-1]} ({len(v)} values)"
    if isinstance(v, float):
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def _environment_lines(env: Mapping[str, Any]) -> list[str]:
    lines = ["## Environment", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env["versions"].items()]
    lines += ["", f"- Python {env['python']} on {env['platform']} ({env['machine']})",
              f"- CPU: {env['cpu_count']} cores ({env['usable_cores']} usable by this process)",
              f"- JAX backend {env['jax_backend']}; devices: {', '.join(env['jax_devices'])}",
              f"- XLA_FLAGS: `{env['xla_flags'] or '(none)'}`", ""]
    return lines


# ------------------------------------------------------------------ all of them -------

def index_markdown(out, experiments: Mapping[str, Experiment], problems: Mapping[str, str]) -> str:
    """``DIR/index.md``: each experiment with its verdict (finished ones under ``out``), or why
    it has none (``problems``: name -> one line), linking the reports."""
    out = Path(out)
    lines = [f"# Reproductions in {out}", "", f"Rule: {RULE}.", "",
             "| reproduction | what it reproduces | mode | verdict | wall-clock |", "|---|---|---|---|---|"]
    for name, e in experiments.items():
        rec = _read_record(out / name)
        if rec is not None:
            mode = rec["mode"] + (f": {rec['note']}" if rec.get("note") else "")
            cells = (f"[{name}]({name}/{REPORT})", e.reproduces, mode, rec["verdict"], f"{rec['seconds']:.0f} s")
        else:
            why = problems.get(name) or (f"not available: {availability(e)}" if availability(e) else "not run")
            cells = (name, e.reproduces, "-", why, "-")
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def _read_record(folder: Path) -> Optional[dict]:
    try:
        rec = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if (folder / REPORT).is_file() else None


def write_index(out, experiments: Mapping[str, Experiment], problems: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``out/index.md`` (:func:`index_markdown`); returns its path."""
    path = Path(out) / INDEX
    atomic_write(path, lambda f: f.write(index_markdown(out, experiments, problems or {}).encode()))
    return path


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
