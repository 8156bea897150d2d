"""Command line: ``resnet-limits sweep | analyze | limits | reproduce | presets``.

Exit codes and what goes to stderr (always one line per event, never a traceback):

* 0: done (``analyze`` prints ``resnet-limits: warning: ...`` for each depth it left out);
* 2: bad input: ``resnet-limits: error: ...`` (unknown name, value out of range, an ``--out``
  that cannot be a folder, a folder that is not a run, a damaged run file);
* 130 / 143: interrupted by Ctrl-C / SIGTERM (a sweep keeps its finished depths);
* 1: an unexpected internal error: one line saying where the full traceback was written
  (``RUN_DIR/error.log``, or a temporary file when there is no run folder yet).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

from resnet_limits.errors import UsageError

PROG = "resnet-limits"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit code 2."""

    def error(self, message: str):  # noqa: D102
        raise UsageError(message)


def _number(name: str, cast, ok, requirement: str):
    """An argparse type: ``cast`` the text, then require ``ok(value)`` (one-line error)."""

    def parse(s: str):
        try:
            v = cast(s)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{name} must be {requirement}, got {s}")
        return v

    return parse


def _positive_int(name: str):
    return _number(name, int, lambda v: v >= 1, ">= 1")


def _positive_float(name: str):
    return _number(name, float, lambda v: 0 < v < math.inf, "positive")


def _nonneg_float(name: str):
    return _number(name, float, lambda v: v >= 0, ">= 0")


def _seed(name: str, limit: int):
    return _number(name, int, lambda v: 0 <= v < limit, f"in 0..{limit - 1}")


_TYPES = {"int": int, "float": float, "str": str, "Optional[int]": int, "Optional[float]": float,
          "Optional[str]": str}
#: Options of ``sweep`` that are not settings of the sweep (:class:`~resnet_limits.config.SweepConfig`):
#: where it goes and how this process runs it. Every other flag of ``sweep`` is a field.
SWEEP_OPTIONS = ("out", "no_wait", "no_progress", "devices", "no_compile_cache")


def _typed(name: str, cast):
    """An argparse type with a one-line error (argparse names the flag before it)."""

    def parse(s: str):
        try:
            return cast(s)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {s!r}") from None

    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`~resnet_limits.config.SweepConfig` that is a flag (its help,
    choices and kinds from the field); default None: the preset's value."""
    from resnet_limits.config import FC, flag_fields

    for f in flag_fields():
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        only = "" if len(meta["kinds"]) > 1 else (" (fully-connected presets)" if meta["kinds"] == (FC,)
                                                  else " (conv-cifar10)")
        kw = dict(dest=f.name, default=None, help=meta["help"] + only)
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.type == "tuple":
            parser.add_argument(flag, type=int, nargs="+", metavar=meta["metavar"] or "L", **kw)
        else:
            parser.add_argument(flag, type=_typed(f.name, _TYPES[f.type]), choices=meta["choices"],
                                metavar=meta["metavar"], **kw)


def build_parser() -> argparse.ArgumentParser:
    from resnet_limits.config import MNIST_DIR_ENV, PRESETS, SEED_LIMIT
    from resnet_limits.models import ACTIVATIONS, DELTA_MODES
    from resnet_limits.training import OPTIMIZERS

    p = _Parser(prog=PROG, description="Deep-depth limits of residual networks (SP, ICML 2021).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("sweep", help="train S seeds at every depth of a grid (resumable)")
    s.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    s.add_argument("--out", required=True, type=Path, help="output folder (created; rerun to resume)")
    _add_config_flags(s)
    s.add_argument("--no-wait", action="store_true",
                   help="do not wait for depths that other processes sharing --out are training")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")

    a = sub.add_parser("analyze", help="scaling analysis of a sweep folder (SP §2.3, Table 1)")
    a.add_argument("run_dir", type=Path)
    a.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("limits", help="compare a trained network with its deep limit (diffrax)")
    m.add_argument("run_dir", type=Path)
    m.add_argument("--depth", required=True, type=_positive_int("depth"), help="a finished depth of the sweep")
    m.add_argument("--seed", type=_seed("seed", SEED_LIMIT), default=0, help="which trained seed (default 0)")
    m.add_argument("--inputs", type=_positive_int("inputs"), default=8, help="number of test inputs")
    m.add_argument("--out", type=Path, help="output folder (default RUN_DIR/limits)")
    m.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("reproduce", help="reproduce a figure, table or study of the papers (see --list)",
                       description="Runs the entries of experiments/ (one file per paper result) and writes "
                                   "DIR/NAME/report.md (the paper's numbers beside ours, the figures, the command, "
                                   "versions and hardware) and DIR/index.md. Resumable: finished parts are kept and "
                                   "a finished reproduction with the same settings is skipped.")
    r.add_argument("name", nargs="?", metavar="NAME", help="a reproduction (see --list), or all")
    r.add_argument("--list", action="store_true", help="list the reproductions, what each reproduces and its time")
    r.add_argument("--out", type=Path, help="output folder: DIR/NAME/ per reproduction, DIR/index.md")
    r.add_argument("--quick", action="store_true", help="the small version (minutes on 2 CPU cores; see --list)")
    r.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="table4 and the fully-connected sweeps: optimiser (default: the preset's, adam)")
    r.add_argument("--seeds", type=_positive_int("seeds"),
                   help="table4 and the fully-connected sweeps: seeds (default 5)")
    r.add_argument("--paths", type=_positive_int("paths"), help="convergence, backprop: Brownian paths")
    r.add_argument("--data-dir", help="tanh-mnist, relu-mnist: folder with MNIST's idx .gz files (default: "
                                      f"${MNIST_DIR_ENV} when set, else tensorflow-datasets)")
    r.add_argument("--cifar-dir", help="conv-cifar10: folder with CIFAR-10's binary batches "
                                       "(cifar-10-batches-bin; default: tensorflow-datasets)")
    r.add_argument("--no-progress", action="store_true")

    w = sub.add_parser("import-weights",
                       help="make a run folder of networks trained elsewhere (.npz or the authors' .p)")
    w.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                   help=".npz files (A (L,d,d), b (L,d), optional delta), the authors' depth folders "
                        "(weights/A.p, b.p, C.p) or folders holding either")
    w.add_argument("--out", required=True, type=Path, help="the run folder to write (empty, new, or an earlier import)")
    w.add_argument("--activation", default="tanh", help=f"the networks' activation (default tanh): "
                                                        f"{', '.join(sorted(ACTIVATIONS))}")
    w.add_argument("--delta-mode", choices=DELTA_MODES,
                   help="default: none without delta, shared for one value, per-layer for one per layer")
    w.add_argument("--row-convention", action="store_true",
                   help=".npz networks compute h @ A_k (A is transposed); the authors' .p files always do")

    sub.add_parser("presets", help="list the presets and their settings")
    for name in ("sweep", "reproduce"):
        sub.choices[name].add_argument(
            "--devices", type=_positive_int("devices"), metavar="N",
            help="CPU only: split the CPU into N XLA host devices and shard the seeds over them "
                 "(default: one per core, at most the number of seeds, or --data-parallel's N; 1 = a "
                 "single device; an --xla_force_host_platform_device_count already in XLA_FLAGS wins)",
        )
    for command in sub.choices.values():
        command.add_argument(
            "--no-compile-cache", action="store_true",
            help="do not use JAX's persistent compilation cache (default: on, in $RESNET_LIMITS_CACHE "
                 "or ~/.cache/resnet-limits/jax, so a rerun does not compile again)",
        )
    return p


def _say(line: str) -> None:
    """One line on stderr: ``resnet-limits: <line>`` (newlines inside folded)."""
    print(f"{PROG}: {' '.join(line.splitlines())}", file=sys.stderr, flush=True)


def _sweep_config(args):
    """The sweep's :class:`~resnet_limits.config.SweepConfig`: the preset with the flags given."""
    from resnet_limits.config import flag_fields, sweep_config

    return sweep_config(args.preset, **{f.name: getattr(args, f.name) for f in flag_fields()})


def _sweep(args) -> int:
    from resnet_limits.config import CONV
    from resnet_limits.sweeps import run_conv_sweep, run_sweep_report

    cfg = args.config
    train = run_conv_sweep if cfg.kind == CONV else run_sweep_report
    rep = train(cfg, args.out, progress=not args.no_progress, wait=not args.no_wait, log=_say)
    done, mine = rep.finished, rep.trained
    span = f": {done[0]}..{done[-1]}" if done else ""
    here = f"; this process trained {len(mine)}: {' '.join(map(str, mine))}" if mine else ""
    each = "1 network each" if cfg.kind == CONV else f"{cfg.seeds} seeds each"
    print(f"{len(done)} depths finished in {args.out} ({each}){span}{here}")
    from resnet_limits.sweeps import load_config

    info = load_config(args.out).data_info if done else None
    if info:
        print(f"data: {info['source']}; {info['split']}")
    if rep.elsewhere:
        print("still being trained by other processes: "
              + ", ".join(f"L={L} ({who})" for L, who in rep.elsewhere.items())
              + "; rerun the same command to wait for them")
    return 0


def _open_run(path):
    from resnet_limits.run import Run

    return Run.open(path)


def _analyze(args) -> int:
    from resnet_limits.analysis import analyze_run, format_analysis

    run = _open_run(args.run_dir)
    if run.in_progress:
        _say("warning: depths " + ", ".join(f"{L} ({who})" for L, who in run.in_progress.items())
             + f" are being trained now; analysing the {len(run.depths)} finished")
    result = analyze_run(run, progress=not args.no_progress)
    for message in result.get("left_out", {}).values():
        _say(f"warning: {message}")
    print(format_analysis(result))
    print(f"wrote {run.path / 'analysis.json'} and figures in {run.figures}")
    return 0


def _limits(args) -> int:
    from resnet_limits.sweeps import check_out_dir

    run = _open_run(args.run_dir)
    cfg = run.config
    if run.is_conv:
        raise UsageError(f"{args.run_dir} is a run of the convolutional ResNet; limits compares fully-connected "
                         "networks with their deep limit")
    run.metrics(args.depth)  # one line if the depth is not finished or known to be damaged
    if args.seed >= int(cfg.seeds):
        raise UsageError(f"seed must be in 0..{int(cfg.seeds) - 1} (the run has {cfg.seeds} seeds), got {args.seed}")
    if args.inputs > int(cfg.n_test):
        raise UsageError(f"inputs must be <= {cfg.n_test} (the run's test set), got {args.inputs}")
    if args.out is not None:
        check_out_dir(args.out)
    from resnet_limits.studies import trained_limits

    result = trained_limits.run(run, args.depth, seed=args.seed, n_inputs=args.inputs, out=args.out,
                                progress=not args.no_progress)
    print(trained_limits.format_trained_limits(result))
    return 0


def _reproduce(args) -> int:
    from resnet_limits import reproduce as rp
    from resnet_limits.sweeps import check_out_dir

    experiments = rp.registry()
    if args.list:
        print("\n".join(rp.list_lines(experiments)))
        return 0
    options = {k: getattr(args, k) for k in rp.OPTIONS}
    chosen = rp.select(experiments, args.name, options)
    if args.out is None:
        raise UsageError(f"reproduce {args.name} needs --out DIR")
    check_out_dir(args.out)
    run = dict(quick=args.quick, options=options, progress=not args.no_progress, log=print)
    if args.name == "all":
        done = rp.reproduce_all(args.out, experiments=experiments, **run)
        for name, rec in done["records"].items():
            print(f"{name}: {rec['verdict']}")
        print(f"index: {done['index']}")
        return 2 if done["failed"] else 0
    record = rp.reproduce(chosen[0], args.out, **run)
    rp.write_index(args.out, experiments)
    if not record["skipped"]:
        print(record["text"])
    print(f"{record['name']}: {record['verdict']}")
    print(f"report: {Path(args.out) / record['name'] / rp.REPORT}")
    return 0


def _import_weights(args) -> int:
    from resnet_limits.sweeps import load_config
    from resnet_limits.weights import import_weights

    out = import_weights(args.sources, args.out, activation=args.activation, delta_mode=args.delta_mode,
                         row_convention=args.row_convention)
    cfg = load_config(out)
    print(f"imported {len(cfg.depths)} depths into {out} (width {cfg.width}, up to {cfg.seeds} networks per depth, "
          f"{cfg.activation}, delta {cfg.delta_mode}): {' '.join(map(str, cfg.depths))}")
    return 0


def _presets(args) -> int:
    from resnet_limits.config import CONV, PRESETS

    for name, cfg in PRESETS.items():
        if cfg.kind == CONV:
            keys = ("dataset", "lr", "momentum", "weight_decay", "batch_size", "epochs", "width")
            print(f"{name:16s} optimizer=sgd " + " ".join(f"{k}={getattr(cfg, k)}" for k in keys)
                  + f" depths={cfg.depths[0]}..{cfg.depths[-1]} ({len(cfg.depths)})")
        else:
            keys = ("activation", "delta_mode", "dataset", "optimizer", "lr", "batch_size", "epochs", "max_updates",
                    "max_depth")
            print(f"{name:16s} " + " ".join(f"{k}={getattr(cfg, k)}" for k in keys))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sweep": _sweep, "analyze": _analyze, "limits": _limits, "reproduce": _reproduce, "presets": _presets,
    "import-weights": _import_weights,
}


# ------------------------------------------------------------- signals and errors ----

class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break the clean-up
    raise Terminated()


def _sigterm_like_ctrl_c() -> Callable[[], None]:
    """Install the SIGTERM handler (main thread only); returns the function that restores the old one."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    return lambda: signal.signal(signal.SIGTERM, old)


def _interrupted(args, e: KeyboardInterrupt) -> int:
    how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    if args is not None and args.command == "sweep":
        _say(f"{how}; finished depths are kept in {args.out}, rerun the same command to resume")
    else:
        _say(how)
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def _exit_now(code: int) -> None:
    """End the process at once. Interrupted while XLA compiles, the interpreter can crash in
    its own shutdown (a segfault after the one line); claims and files are already settled."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _log_folder(args) -> Optional[Path]:
    """The folder an internal error's traceback goes to: the run or study folder, if it exists."""
    if args is None:
        return None
    folder = getattr(args, "run_dir", None) or getattr(args, "out", None)
    if folder is None or not Path(folder).is_dir():
        return None
    if args.command in ("sweep", "analyze", "limits", "import-weights") and not (Path(folder) / "config.json").is_file():
        return None  # not a run yet: writing there would make a folder the next sweep refuses
    return Path(folder)


def _write_traceback(args, argv: Optional[Sequence[str]]) -> str:
    """Append the current exception's traceback to ``error.log``; returns where it went."""
    words = list(sys.argv[1:] if argv is None else argv)
    text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {PROG} {' '.join(words)}\n{traceback.format_exc()}\n"
    folder = _log_folder(args)
    if folder is not None:
        try:
            with open(folder / "error.log", "a") as f:
                f.write(text)
            return str(folder / "error.log")
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix=f"{PROG}-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError:  # nowhere to write (a full disk): the traceback goes to stderr after the line
        print(text, file=sys.stderr)
        return "stderr, below"
    return name


def _runtime(args) -> None:
    """Host devices and the compilation cache for this command (:func:`resnet_limits.runtime.setup`)."""
    from resnet_limits import runtime
    from resnet_limits.config import CONV

    if args.command == "sweep":
        args.config = _sweep_config(args)  # one line (exit 2) for a bad setting, before any work
        runs = args.config.data_parallel if args.config.kind == CONV else args.config.seeds
        runtime.use_host_devices(args.devices, runs=runs)
    elif args.command == "reproduce":
        runtime.use_host_devices(args.devices, runs=16)
    if not args.no_compile_cache:
        runtime.enable_compile_cache()


def _write_failed(e: OSError, args) -> str:
    """One line for a file that could not be written (a full disk, a read-only or unwritable folder)."""
    where = e.filename or "a file"
    keep = "; finished depths are kept, rerun the same command to go on" if getattr(args, "command", "") == "sweep" \
        else ""
    return f"error: cannot write {where}: {e.strerror or e}{keep}"


#: errno values of a file that cannot be written for a reason outside this program.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``resnet-limits`` console script (exit codes in the module docstring)."""
    from resnet_limits import runtime

    runtime.tune_xla_cpu()
    runtime.quiet_library_logs()
    restore = _sigterm_like_ctrl_c()
    args = None
    try:
        args = build_parser().parse_args(argv)
        _runtime(args)
        return COMMANDS[args.command](args)
    except UsageError as e:  # DamagedRunError included
        _say(f"error: {e}")
        return 2
    except KeyboardInterrupt as e:
        code = _interrupted(args, e)
        if argv is None:  # the process is ours (console script): leave without finalisation
            _exit_now(code)
        return code
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            return _internal_error(args, argv, e)
        _say(_write_failed(e, args))
        return 2
    except Exception as e:  # noqa: BLE001 (the one place that turns any failure into one line)
        return _internal_error(args, argv, e)
    finally:
        restore()


def _internal_error(args, argv, e: BaseException) -> int:
    where = _write_traceback(args, argv)
    first = (str(e).splitlines() or [""])[0][:300]
    _say(f"internal error: {type(e).__name__}: {first} (full traceback in {where})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
