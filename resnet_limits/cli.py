"""Command line: ``resnet-limits sweep | analyze | limits | reproduce | import-weights | presets |
submit``.

Parsing and printing only: a sweep's settings are the fields of
:class:`~resnet_limits.config.SweepConfig` (its flags are made from them), the process set-up is
:mod:`resnet_limits.runtime`, a run folder is read through :class:`~resnet_limits.run.Run`.

Exit codes and what goes to stderr (always one line per event, never a traceback):

* 0: done (``analyze`` prints ``resnet-limits: warning: ...`` for each depth it left out);
* 2: bad input: ``resnet-limits: error: ...`` (unknown name, value out of range, an ``--out``
  that cannot be a folder, a folder that is not a run, a damaged run file), or a file that cannot
  be written (a full disk, a read-only folder: the line names the file and the cause);
* 130 / 143: interrupted by Ctrl-C / SIGTERM (a sweep keeps its finished depths);
* 1: an unexpected internal error: one line saying where the full traceback was written
  (``RUN_DIR/error.log``, or a temporary file when there is no run folder yet);
* 3: ``sweep --workers N``: a worker failed (one line each: how it ended, the depth it held,
  which the others take over); ``sweep --distributed``: this process was ended because another
  one of the run died (one line naming the file with JAX's log); ``submit --wait``: a task failed.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
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


def _number(name: str, cast, ok=None, requirement: str = ""):
    """An argparse type: ``cast`` the text, then require ``ok(value)`` (one-line error; argparse
    names the flag before it, ``name`` says what the number is)."""

    def parse(s: str):
        try:
            v = cast(s)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {s!r}".strip()) from None
        if ok is not None and not ok(v):
            raise argparse.ArgumentTypeError(f"{name} must be {requirement}, got {s}")
        return v

    return parse


def _positive_int(name: str):
    return _number(name, int, lambda v: v >= 1, ">= 1")


def _seed(name: str, limit: int):
    return _number(name, int, lambda v: 0 <= v < limit, f"in 0..{limit - 1}")


_TYPES = {"int": int, "float": float, "str": str, "Optional[int]": int, "Optional[float]": float,
          "Optional[str]": str}
#: Options of ``sweep`` that are not settings of the sweep (:class:`~resnet_limits.config.SweepConfig`):
#: where it goes and how this process runs it. Every other flag of ``sweep`` is a field.
SWEEP_OPTIONS = ("out", "no_wait", "no_progress", "devices", "no_compile_cache", "workers", "distributed",
                 "coordinator", "num_processes", "process_id", "heartbeat_timeout")


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
            parser.add_argument(flag, type=_number("", _TYPES[f.type]), choices=meta["choices"],
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
    s.add_argument("--workers", type=_positive_int("workers"), metavar="N",
                   help="N worker processes on this node share the depths (deepest first for conv-cifar10), each "
                        "on its own GPU (default: conv-cifar10 one per local GPU, else 1)")
    s.add_argument("--distributed", action="store_true",
                   help="join a multi-process JAX run (jax.distributed: Slurm, Open MPI, or --coordinator ...): "
                        "every depth trained by all processes' devices together, only process 0 writes --out")
    s.add_argument("--coordinator", metavar="HOST:PORT", help="--distributed: the address of process 0")
    s.add_argument("--num-processes", type=_positive_int("num processes"), metavar="N",
                   help="--distributed: the number of processes")
    s.add_argument("--process-id", type=_number("process id", int, lambda v: v >= 0, ">= 0"), metavar="I",
                   help="--distributed: this process's index, 0..N-1")
    s.add_argument("--heartbeat-timeout", type=_positive_int("heartbeat timeout"), metavar="S",
                   help="--distributed: seconds without a heartbeat after which a process counts as dead and "
                        "the others stop (default 100)")

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

    b = sub.add_parser("submit", help="send a sweep to a Slurm cluster (submitit): a job array or one "
                                      "multi-node data-parallel job")
    b.add_argument("--array", type=_positive_int("array"), metavar="N",
                   help="a job array of N tasks running the sweep on its (shared) folder, depth-parallel")
    b.add_argument("--nodes", type=_positive_int("nodes"), metavar="K",
                   help="one job of K nodes x --gpus-per-node tasks, one per GPU, running the sweep --distributed")
    b.add_argument("--gpus-per-node", type=_positive_int("gpus per node"), default=1, metavar="G",
                   help="GPUs of each array task, or of each node (default 1)")
    b.add_argument("--partition", help="Slurm partition")
    b.add_argument("--account", help="Slurm account")
    b.add_argument("--time", type=_positive_int("time"), default=1440, metavar="MIN",
                   help="time limit of each task in minutes (default 1440)")
    b.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch parameter (repeatable), e.g. --slurm qos=high")
    b.add_argument("--logs", type=Path, metavar="DIR", help="submitit's folder of logs (default RUN.slurm beside "
                                                             "the run folder)")
    b.add_argument("--local", action="store_true",
                   help="run the same tasks as processes of this machine (submitit's LocalExecutor; a dry run)")
    b.add_argument("--wait", action="store_true", help="wait for the tasks and print what each one trained")
    b.add_argument("sweep", nargs=argparse.REMAINDER, metavar="sweep PRESET --out RUN [settings]",
                   help="the sweep command every task runs")
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
    from resnet_limits.distributed import CHILD_ENV, active_group
    from resnet_limits.sweeps import run_conv_sweep, run_sweep_report

    if args.workers_n > 1:
        return _sweep_workers(args)
    if args.distributed and not os.environ.get(CHILD_ENV):
        return _sweep_supervised(args)
    cfg = args.config
    train = run_conv_sweep if cfg.kind == CONV else run_sweep_report
    rep = train(cfg, args.out, progress=not args.no_progress, wait=not args.no_wait, log=_say)
    done, mine = rep.finished, rep.trained
    group = active_group()
    if group is not None and not group.leader:
        print(f"process {group.index} of {group.count} took part in {len(mine)} depths: {' '.join(map(str, mine))} "
              f"(process 0 wrote them to {args.out})")
        return 0
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


def _sweep_workers(args) -> int:
    """``sweep --workers N``: N worker processes of this same command share the folder."""
    from resnet_limits import distributed, runtime
    from resnet_limits.config import CONV
    from resnet_limits.sweeps.folder import check_folder

    cfg, n = args.config, args.workers_n
    check_folder(args.out, cfg)  # one line here rather than one per worker
    command = [sys.executable, "-m", "resnet_limits.cli", *args.argv, "--workers", "1", "--no-progress"]
    if cfg.kind != CONV and args.devices is None:  # the cores split between the workers' seeds
        command += ["--devices", str(max(1, min(runtime.usable_cores() // n, cfg.seeds)))]
    gpus = distributed.local_gpus()
    dp = cfg.data_parallel if cfg.kind == CONV else 1
    envs = distributed.worker_envs(n, data_parallel=dp, gpus=gpus)
    where = ", ".join(f"{i}: GPU {e['CUDA_VISIBLE_DEVICES']}" for i, e in enumerate(envs)) if gpus else "on the CPU"
    _say(f"{n} workers share the depths of {args.out} ({where})")
    rep = distributed.run_workers(command, n, args.out, envs=envs, say=_say)
    each = "1 network each" if cfg.kind == CONV else f"{cfg.seeds} seeds each"
    span = f": {rep.finished[0]}..{rep.finished[-1]}" if rep.finished else ""
    who = "; ".join(f"worker {i} trained {len(ds)}: {' '.join(map(str, ds))}" for i, ds in rep.trained.items() if ds)
    print(f"{len(rep.finished)} depths finished in {args.out} ({each}){span}" + (f"; {who}" if who else ""))
    missing = sorted(set(cfg.depths) - set(rep.finished))
    if missing and rep.exit_code:
        print(f"not finished: {' '.join(map(str, missing))}; rerun the same command to train them")
    return rep.exit_code


def _sweep_supervised(args) -> int:
    """``sweep --distributed``: this command in a child process, JAX's fatal end made one line."""
    from resnet_limits import distributed

    label = "this process" if args.process_id is None else f"process {args.process_id}"
    return distributed.supervise([sys.executable, "-m", "resnet_limits.cli", *args.argv, "--no-progress"],
                                 say=_say, label=label)


def _submit(args) -> int:
    from resnet_limits import distributed
    from resnet_limits.sweeps.folder import check_folder

    words = list(args.sweep)
    if not words or words[0] != "sweep":
        raise UsageError("submit runs a sweep: resnet-limits submit (--array N | --nodes K) sweep PRESET --out RUN "
                         "[settings]")
    sweep = build_parser().parse_args(words)
    sweep.config = _sweep_config(sweep)
    for flag, given in (("--distributed", sweep.distributed), ("--coordinator", sweep.coordinator),
                        ("--num-processes", sweep.num_processes), ("--process-id", sweep.process_id)):
        if given:
            raise UsageError(f"submit sets {flag} itself (--nodes); leave it out of the sweep command")
    check_folder(sweep.out, sweep.config)  # one line now rather than in every task
    out = sweep.out.absolute()  # the tasks may start elsewhere
    at = [i for i, w in enumerate(words) if w == "--out" or w.startswith("--out=")]
    words = [f"--out={out}" if i in at and "=" in w else str(out) if i - 1 in at and "=" not in words[i - 1] else w
             for i, w in enumerate(words)]
    command = [sys.executable, "-m", "resnet_limits.cli", *words, "--no-progress"]
    logs = args.logs or out.with_name(out.name + ".slurm")
    sent = distributed.submit(command, array=args.array, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                              partition=args.partition, time_min=args.time, account=args.account,
                              slurm=args.slurm, logs=logs, local=args.local)
    what = (f"a job array of {args.array} tasks" if args.array else
            f"one job of {args.nodes} node(s) x {args.gpus_per_node} tasks (--distributed)")
    print(f"submitted {what}{' (local processes)' if args.local else ''}: job ids {' '.join(sent.job_ids)}; "
          f"logs in {sent.logs}; each task runs: {' '.join(sent.command)}")
    if not args.wait:
        return 0
    failed = 0
    for job in sent.jobs:
        try:
            results = job.results()
        except Exception as e:  # noqa: BLE001 (submitit's FailedJobError: the task's stderr)
            failed += 1
            lines = [ln for ln in str(e).splitlines() if ln.startswith("resnet-limits:")] or \
                    (str(e).splitlines() or ["?"])
            _say(f"task {job.job_id} failed: {lines[-1][:300]}")
            continue
        for text in results:
            print(f"task {job.job_id}: {' '.join(str(text).splitlines()[:1])}")
    return distributed.EXIT_FAILED if failed else 0


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
    "import-weights": _import_weights, "submit": _submit,
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
    from resnet_limits.distributed import active_group

    if active_group() is not None and not active_group().leader:
        return None  # a distributed run's folder is written by its process 0 only
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
        from resnet_limits.distributed import CHILD_ENV

        args.config = _sweep_config(args)  # one line (exit 2) for a bad setting, before any work
        args.workers_n = _run_options(args)
        joins = args.distributed and os.environ.get(CHILD_ENV)
        if args.workers_n == 1 and (joins or not args.distributed):  # this process trains
            runs = args.config.data_parallel if args.config.kind == CONV else args.config.seeds
            runtime.use_host_devices(args.devices, runs=runs)
        if joins:
            _join(args)
    elif args.command == "reproduce":
        runtime.use_host_devices(args.devices, runs=16)
    if not args.no_compile_cache:
        runtime.enable_compile_cache()


def _run_options(args) -> int:
    """Check ``sweep``'s options of processes (one line each); the number of workers to start."""
    from resnet_limits.config import CONV
    from resnet_limits.distributed import WORKER_ENV, default_workers

    given = [flag for flag, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                                  ("--process-id", args.process_id), ("--heartbeat-timeout", args.heartbeat_timeout))
             if v is not None]
    if given and not args.distributed:
        raise UsageError(f"{given[0]} is an option of --distributed")
    if args.num_processes is not None and args.process_id is not None and args.process_id >= args.num_processes:
        raise UsageError(f"process id must be in 0..{args.num_processes - 1}, got {args.process_id}")
    if args.coordinator is not None and not re.fullmatch(r"\S+:\d+", args.coordinator):
        raise UsageError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.distributed and (args.workers or 1) > 1:
        raise UsageError("--workers and --distributed exclude each other: a distributed run has one process per GPU")
    if os.environ.get(WORKER_ENV) is not None or args.distributed:
        return 1
    if args.workers is not None:
        return args.workers
    cfg = args.config
    return default_workers(cfg.kind == CONV, cfg.data_parallel)


def _join(args) -> None:
    """``sweep --distributed``, in the supervised child: join the JAX run before any computation;
    the conv sweep then splits each minibatch over all its devices."""
    import socket

    import jax

    from resnet_limits import distributed
    from resnet_limits.config import CONV

    group = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   heartbeat_timeout=args.heartbeat_timeout or distributed.DEFAULT_HEARTBEAT_S,
                                   log=_say)
    n = jax.device_count()
    _say(f"process {group.index} of {group.count} ({socket.gethostname()}:{os.getpid()}) joined the distributed "
         f"run: {n} {jax.devices()[0].platform} devices in all, {jax.local_device_count()} here")
    if args.config.kind == CONV:
        if args.data_parallel not in (None, n):
            raise UsageError(f"--distributed splits each minibatch over all {n} devices of the run: leave "
                             f"--data-parallel out or give {n}")
        args.data_parallel = n
        args.config = _sweep_config(args)


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
        args.argv = list(sys.argv[1:] if argv is None else argv)
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
