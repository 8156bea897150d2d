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


def enable_compile_cache(path=None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default ``$RESNET_LIMITS_CACHE``,
    else ``~/.cache/resnet-limits/jax``); every program is cached. Call before the first compile."""
    import jax

    default = os.environ.get("RESNET_LIMITS_CACHE") or Path.home() / ".cache" / "resnet-limits" / "jax"
    folder = Path(path or default).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


def tune_xla_cpu() -> None:
    """Turn off Eigen's thread pool in XLA:CPU unless the user chose otherwise.

    The per-layer matmuls here are tiny (B x d by d x d, d = 10): splitting them across threads
    costs more than it saves, and training runs ~15 % faster without it (see
    ``benchmarks/train_throughput.py``). Likewise one OpenBLAS thread for the LAPACK calls
    (the batched SVDs of the conv spectral norms): several threads fight over the cores and were
    measured 5-25x slower (``benchmarks/conv_norms.py``); ``OPENBLAS_NUM_THREADS`` set by the user
    wins. Must run before JAX initialises its backend; it only adds to the environment.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_host_devices(runs: int) -> int:
    """The CLI's default number of XLA host devices: one per usable core, at most ``runs``."""
    return max(1, min(usable_cores(), runs))


def use_host_devices(n: Optional[int] = None, *, runs: int = 8) -> int:
    """Split the CPU into ``n`` XLA host devices so that the seed axis is sharded over the cores.

    XLA:CPU runs each program on one thread here (see :func:`tune_xla_cpu`), so one device per
    core is how a sweep uses every core; per-seed results do not change (each seed's randomness
    comes from its own key). ``n`` None: one device per usable core, at most ``runs`` (the seeds
    trained together). Appends ``--xla_force_host_platform_device_count`` to ``XLA_FLAGS`` unless
    the user set it already (then that wins); only the CPU platform is affected, so a GPU run is
    unchanged. Must run before JAX initialises its backend. Returns the count requested.
    """
    if n is not None and n < 1:
        raise UsageError(f"devices must be >= 1, got {n}")
    n = n if n is not None else default_host_devices(runs)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and n > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return n


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


def build_parser() -> argparse.ArgumentParser:
    from resnet_limits.models import ACTIVATIONS, DELTA_MODES, INITS
    from resnet_limits.sweeps import CONV_PRESETS, PRESETS, SEED_LIMIT
    from resnet_limits.training import OPTIMIZERS
    from resnet_limits.training.fc import PARAMETRIZATIONS

    p = _Parser(prog=PROG, description="Deep-depth limits of residual networks (SP, ICML 2021).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("sweep", help="train S seeds at every depth of a grid (resumable)")
    s.add_argument("preset", help=f"one of: {', '.join([*PRESETS, *CONV_PRESETS])}")
    s.add_argument("--out", required=True, type=Path, help="output folder (created; rerun to resume)")
    s.add_argument("--quick", action="store_true",
                   help="shrink the depth grid: L <= 1000 for the synthetic presets, L <= 203 for tanh-mnist "
                        "and L <= 406 for relu-mnist (10 epochs each; under 5 minutes on 2 CPU cores)")
    s.add_argument("--seeds", type=_positive_int("seeds"), help="number of seeds (default 5)")
    s.add_argument("--min-depth", type=_positive_int("depth"), help="smallest depth of the grid")
    s.add_argument("--max-depth", type=_positive_int("depth"), help="largest depth of the grid")
    s.add_argument("--depth-base", type=_number("depth base", float, lambda v: 1 < v < math.inf, "> 1"),
                   help="grid base b: depths floor(b^n) (default 2^(1/3))")
    s.add_argument("--depths", type=int, nargs="+",
                   help="explicit list of depths (overrides the grid); conv-cifar10: some of its 16 "
                        "configurations 8 11 12 14 16 18 20 24 28 33 42 50 65 80 100 121 (default all)")
    s.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (preset default) or sgd")
    s.add_argument("--lr", type=_positive_float("learning rate"), help="constant step size")
    s.add_argument("--batch-size", type=_positive_int("batch size"), help="minibatch size")
    s.add_argument("--epochs", type=_positive_int("epochs"), help="maximum number of epochs")
    s.add_argument("--max-updates", type=_positive_int("max updates"), help="cap T_max on updates")
    s.add_argument("--epsilon", type=_nonneg_float("epsilon"), help="early-stop threshold on an epoch's mean loss")
    s.add_argument("--activation", help=f"override the preset's activation: {', '.join(sorted(ACTIVATIONS))}")
    s.add_argument("--parametrization", choices=PARAMETRIZATIONS,
                   help="learned-delta (default: delta is trained, as in SP) or fixed: delta_k = L^-a in every "
                        "layer, never trained (needs --branch-exponent)")
    s.add_argument("--branch-exponent", type=_number("branch exponent", float, lambda v: 0 <= v < math.inf,
                                                     "a finite number >= 0"), metavar="A",
                   help="fixed parametrization: delta = L^-A (0.5: Depth-muP; 1: neural-ODE / CompleteP scaling)")
    s.add_argument("--ref-depth", type=_number("reference depth", float, lambda v: 1 <= v < math.inf, ">= 1"),
                   metavar="L0", help="scale the learning rate with depth from L0: eta(L) = eta (L/L0)^e, with "
                                      "e = a-1 (adam) or 2a-1 (sgd) under the fixed parametrization "
                                      "(default: the same eta at every depth)")
    s.add_argument("--lr-depth-exponent", type=_number("learning-rate depth exponent", float, math.isfinite,
                                                       "finite"), metavar="E",
                   help="override the exponent e of eta(L) = eta (L/L0)^e (needs --ref-depth)")
    s.add_argument("--init", choices=INITS,
                   help="initialisation: xavier-depth (preset default; N(0, (0.01/(L d))^2) entries), xavier, "
                        "brownian (SP Remark 2.1), iid (N(0, 1/d) entries), smooth (a random smooth function "
                        "of k/L: a few Fourier modes with N(0, 1/d) coefficients)")
    s.add_argument("--seed", type=_seed("seed", SEED_LIMIT), help="base PRNG seed (default 0)")
    s.add_argument("--data-dir", help="MNIST presets: folder with idx .gz files; conv-cifar10: CIFAR-10's binary "
                                      "version (cifar-10-batches-bin); default: tensorflow-datasets")
    s.add_argument("--mock-data", type=_positive_int("mock data"), metavar="N",
                   help="conv-cifar10: train on N random images of CIFAR-10's shape (offline runs, tests)")
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
                                      "../shared/data/mnist beside the repository when present, else "
                                      "tensorflow-datasets)")
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
                 "(default: one per core, at most the number of seeds; 1 = a single device; "
                 "an --xla_force_host_platform_device_count already in XLA_FLAGS wins)",
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


# Options of ``sweep`` that only the fully-connected presets take.
_FC_ONLY = ("quick", "seeds", "min_depth", "max_depth", "depth_base", "optimizer", "max_updates", "epsilon",
            "activation")


def _is_conv(args) -> bool:
    """A convolutional sweep (one network at a time: nothing to shard over host devices)."""
    from resnet_limits.sweeps import CONV_PRESETS

    return args.command == "sweep" and args.preset in CONV_PRESETS


def _conv_sweep(args) -> int:
    from resnet_limits.sweeps import make_conv_config, run_conv_sweep

    given = [k for k in _FC_ONLY if getattr(args, k) not in (None, False)]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} is not a setting of {args.preset}")
    cfg = make_conv_config(args.preset, depths=args.depths, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir,
                           mock_data=args.mock_data)
    rep = run_conv_sweep(cfg, args.out, progress=not args.no_progress, wait=not args.no_wait, log=_say)
    _print_sweep(args, cfg, rep, "1 network each")
    return 0


def _print_sweep(args, cfg, rep, each: str) -> None:
    done, mine = rep.finished, rep.trained
    span = f": {done[0]}..{done[-1]}" if done else ""
    here = f"; this process trained {len(mine)}: {' '.join(map(str, mine))}" if mine else ""
    print(f"{len(done)} depths finished in {args.out} ({each}){span}{here}")
    if cfg.get("data_info"):
        print(f"data: {cfg['data_info']['source']}; {cfg['data_info']['split']}")
    if rep.elsewhere:
        print("still being trained by other processes: "
              + ", ".join(f"L={L} ({who})" for L, who in rep.elsewhere.items())
              + "; rerun the same command to wait for them")


def _sweep(args) -> int:
    from resnet_limits.sweeps import CONV_PRESETS, PARAMETRIZATION_KEYS, make_config, run_sweep_report

    fc_settings = (*PARAMETRIZATION_KEYS, "init")
    if args.preset in CONV_PRESETS:
        given = [k for k in fc_settings if getattr(args, k) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} is not a setting of {args.preset}")
        return _conv_sweep(args)
    if args.mock_data is not None:
        raise UsageError(f"--mock-data is a setting of {', '.join(CONV_PRESETS)} only")
    cfg = make_config(
        args.preset, quick=args.quick, seeds=args.seeds, min_depth=args.min_depth,
        max_depth=args.max_depth, depth_base=args.depth_base, depths=args.depths,
        optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        max_updates=args.max_updates, epsilon=args.epsilon, activation=args.activation,
        seed=args.seed, data_dir=args.data_dir, **{k: getattr(args, k) for k in fc_settings},
    )
    rep = run_sweep_report(cfg, args.out, progress=not args.no_progress, wait=not args.no_wait, log=_say)
    _print_sweep(args, cfg, rep, f"{cfg['seeds']} seeds each")
    return 0


def _analyze(args) -> int:
    from resnet_limits.sweeps import load_config

    load_config(args.run_dir)  # one line (exit 2) if missing, not a run, or damaged
    from resnet_limits.analysis import analyze_run, format_analysis

    result = analyze_run(args.run_dir, progress=not args.no_progress)
    for message in result.get("left_out", {}).values():
        _say(f"warning: {message}")
    print(format_analysis(result))
    print(f"wrote {args.run_dir / 'analysis.json'} and figures in {args.run_dir / 'figures'}")
    return 0


def _limits(args) -> int:
    from resnet_limits.sweeps import check_depth, check_out_dir, load_config

    cfg = load_config(args.run_dir)
    if "seeds" not in cfg:
        raise UsageError(f"{args.run_dir} is a run of the convolutional ResNet; limits compares fully-connected "
                         "networks with their deep limit")
    check_depth(args.run_dir, args.depth)
    if args.seed >= int(cfg["seeds"]):
        raise UsageError(f"seed must be in 0..{int(cfg['seeds']) - 1} (the run has {cfg['seeds']} seeds), "
                         f"got {args.seed}")
    if args.inputs > int(cfg["n_test"]):
        raise UsageError(f"inputs must be <= {cfg['n_test']} (the run's test set), got {args.inputs}")
    if args.out is not None:
        check_out_dir(args.out)
    from resnet_limits.studies import trained_limits

    result = trained_limits.run(
        args.run_dir, args.depth, seed=args.seed, n_inputs=args.inputs, out=args.out,
        progress=not args.no_progress,
    )
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
    from resnet_limits.sweeps import finished_depths, load_config
    from resnet_limits.weights import import_weights

    out = import_weights(args.sources, args.out, activation=args.activation, delta_mode=args.delta_mode,
                         row_convention=args.row_convention)
    cfg = load_config(out)
    print(f"imported {len(finished_depths(out))} depths into {out} (width {cfg['width']}, up to {cfg['seeds']} "
          f"networks per depth, {cfg['activation']}, delta {cfg['delta_mode']}): {' '.join(map(str, cfg['depths']))}")
    return 0


def _presets(args) -> int:
    from resnet_limits.sweeps import CONV_PRESETS, PRESETS

    for name, cfg in PRESETS.items():
        keys = ("activation", "delta_mode", "dataset", "optimizer", "lr", "batch_size", "epochs", "max_updates", "max_depth")
        print(f"{name:16s} " + " ".join(f"{k}={cfg[k]}" for k in keys))
    for name, cfg in CONV_PRESETS.items():
        keys = ("dataset", "lr", "momentum", "weight_decay", "batch_size", "epochs", "width")
        print(f"{name:16s} optimizer=sgd " + " ".join(f"{k}={cfg[k]}" for k in keys) + " depths=8..121 (16)")
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
    fd, name = tempfile.mkstemp(prefix=f"{PROG}-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return name


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``resnet-limits`` console script (exit codes in the module docstring)."""
    tune_xla_cpu()
    restore = _sigterm_like_ctrl_c()
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("sweep", "reproduce") and not _is_conv(args):
            use_host_devices(args.devices, runs=(args.seeds or 5) if args.command == "sweep" else 16)
        if not getattr(args, "no_compile_cache", True):
            try:
                enable_compile_cache()
            except OSError:  # an unwritable home: run without the cache
                pass
        return COMMANDS[args.command](args)
    except UsageError as e:  # DamagedRunError included
        _say(f"error: {e}")
        return 2
    except KeyboardInterrupt as e:
        code = _interrupted(args, e)
        if argv is None:  # the process is ours (console script): leave without finalisation
            _exit_now(code)
        return code
    except Exception as e:  # noqa: BLE001 (the one place that turns any failure into one line)
        where = _write_traceback(args, argv)
        first = (str(e).splitlines() or [""])[0][:300]
        _say(f"internal error: {type(e).__name__}: {first} (full traceback in {where})")
        return 1
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
