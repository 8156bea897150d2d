"""The entries of ``experiments/``: one declarative file per paper result, read and checked.

``experiments/NAME.toml`` (format in ``experiments/README.md``) becomes an :class:`Experiment`;
:func:`read_registry` reads a folder of them, :func:`select` picks the ones a command names,
:func:`list_lines` is ``reproduce --list``. A malformed file is a one-line :class:`UsageError`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from resnet_limits.errors import UsageError

__all__ = ["DRAWINGS", "EXPERIMENTS", "OPTIONS", "REPOSITORY", "SIDES", "Experiment", "availability",
           "list_lines", "load_experiment", "read_registry", "select", "times_text"]

#: The repository, and the folder of its declarative files.
REPOSITORY = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPOSITORY / "experiments"
#: Options of ``resnet-limits reproduce`` an experiment may take (``[options]`` of its file), with their flags.
OPTIONS = {"optimizer": "--optimizer", "seeds": "--seeds", "paths": "--paths", "data_dir": "--data-dir",
           "cifar_dir": "--cifar-dir"}
SIDES = ("both", "at most", "at least")
#: The figures of two runs a ``[[figures]]`` entry may ``draw`` (``plotting.TWO_RUN_FIGURES``).
DRAWINGS = ("scaling", "hypothesis", "biases")
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
    reads_mnist: bool
    tolerance: float
    needs_gpu: str
    times: Mapping[str, Optional[str]]
    context: Mapping[str, Any]
    figures: tuple[Mapping[str, str], ...]
    links: tuple[Mapping[str, str], ...]
    compare: tuple[Mapping[str, Any], ...]
    companion: Optional[str] = None  # the sweep drawn dashed beside this one in the `draw` figures
    why: Any = None  # why ours differs, for every [[compare]] without a why of its own


def _check(d: Mapping[str, Any], where: str) -> None:
    """One-line :class:`UsageError` for a malformed entry (its fields, read on their own)."""
    if d.get("kind") not in _KINDS:
        raise UsageError(f"{where}kind must be one of {', '.join(_KINDS)}, got {d.get('kind')!r}")
    target = d.get("preset") if d["kind"] == "sweep" else d.get("study")
    if not isinstance(target, str) or (d["kind"] == "study" and not isinstance(d.get("format"), str)):
        raise UsageError(f"{where}a sweep names its preset, a study its module and format function")
    bad = sorted(set(d.get("options", {})) - set(OPTIONS))
    if bad:
        raise UsageError(f"{where}unknown option {bad[0]!r}; options are {', '.join(OPTIONS)}")
    for spec in [d, *d.get("compare", [])]:
        why = spec.get("why")
        by_mode = isinstance(why, Mapping) and set(why) <= {"quick", "full"} and all(
            isinstance(v, str) for v in why.values())
        if why is not None and not (isinstance(why, str) or by_mode):
            raise UsageError(f"{where}why is a text, or a table of texts by mode (quick, full)")
    for spec in d.get("compare", []):
        if not {"quantity", "paper", "source", "ours"} <= set(spec):
            raise UsageError(f"{where}each [[compare]] needs quantity, paper, source and ours")
        if spec.get("side", "both") not in SIDES:
            raise UsageError(f"{where}side must be one of {', '.join(SIDES)}, got {spec['side']!r}")
    if "companion" in d and (d["kind"] != "sweep" or not isinstance(d["companion"], str)):
        raise UsageError(f"{where}companion names another sweep entry, and only a sweep has one")
    for fig in d.get("figures", []):
        if "draw" in fig and fig["draw"] not in DRAWINGS:
            raise UsageError(f"{where}draw must be one of {', '.join(DRAWINGS)}, got {fig['draw']!r}")
        if "draw" in fig and "companion" not in d:
            raise UsageError(f"{where}a figure to draw ({fig['draw']}) needs the entry's companion")


def load_experiment(path) -> Experiment:
    """Read one ``experiments/NAME.toml``; :class:`UsageError` (one line) for a malformed file."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: cannot read the experiment: {e}") from None
    _check(d, f"{path}: ")
    return Experiment(
        name=path.stem, path=path, order=int(d.get("order", 99)), reproduces=str(d.get("reproduces", "")),
        kind=d["kind"], target=d["preset"] if d["kind"] == "sweep" else d["study"], format=d.get("format"),
        modes={m: dict(d.get(m, {})) for m in ("quick", "full")}, options=dict(d.get("options", {})),
        reads_mnist=bool(d.get("data", {}).get("mnist", False)), tolerance=float(d.get("tolerance", 0.0)),
        needs_gpu=str(d.get("needs_gpu", "")), times={k: (v or None) for k, v in d.get("times", {}).items()},
        context=dict(d.get("context", {})), figures=tuple(d.get("figures", ())), links=tuple(d.get("links", ())),
        compare=tuple(d.get("compare", ())), companion=d.get("companion"), why=d.get("why"),
    )


def read_registry(folder) -> dict[str, Experiment]:
    """Every experiment of ``folder``, in the order of their ``order`` field; a companion must be
    a sweep of the same folder that has none itself (one-line :class:`UsageError` otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} (the experiments) is missing: reproduce runs from a checkout of the repository")
    exps = {e.name: e for e in sorted((load_experiment(p) for p in sorted(folder.glob("*.toml"))),
                                      key=lambda e: (e.order, e.name))}
    for e in exps.values():
        other = exps.get(e.companion) if e.companion else None
        if e.companion and (other is None or other.kind != "sweep" or other.companion):
            raise UsageError(f"{e.path}: companion {e.companion!r} is not a sweep entry of {folder} "
                             f"without a companion of its own")
    return exps


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
        cpu_full = f", full {exp.times['cpu2_full']}" if exp.times.get("cpu2_full") else ""
        return f"2-core CPU: quick {quick}{cpu_full}; GPU: full {exp.times.get('gpu_full') or 'not measured'}"
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
