"""Command line: ``resnet-limits sweep | analyze | limits | reproduce | presets``.

Bad input prints one line ``resnet-limits: error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from resnet_limits.errors import UsageError

PROG = "resnet-limits"


def tune_xla_cpu() -> None:
    """Turn off Eigen's thread pool in XLA:CPU unless the user chose otherwise.

    The per-layer matmuls here are tiny (B x d by d x d, d = 10): splitting them across threads
    costs more than it saves, and training runs ~15 % faster without it (see
    ``benchmarks/train_throughput.py``). Must run before JAX initialises its backend; it only
    appends to ``XLA_FLAGS``.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()


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
    return _number(name, float, lambda v: 0 < v < float("inf"), "positive")


def _nonneg_float(name: str):
    return _number(name, float, lambda v: v >= 0, ">= 0")


def build_parser() -> argparse.ArgumentParser:
    from resnet_limits.models import ACTIVATIONS
    from resnet_limits.sweeps import PRESETS
    from resnet_limits.training import OPTIMIZERS

    p = _Parser(prog=PROG, description="Deep-depth limits of residual networks (SP, ICML 2021).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("sweep", help="train S seeds at every depth of a grid (resumable)")
    s.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    s.add_argument("--out", required=True, type=Path, help="output folder (created; rerun to resume)")
    s.add_argument("--quick", action="store_true", help="shrink the depth grid to L <= ~1000")
    s.add_argument("--seeds", type=_positive_int("seeds"), help="number of seeds (default 5)")
    s.add_argument("--min-depth", type=_positive_int("depth"), help="smallest depth of the grid")
    s.add_argument("--max-depth", type=_positive_int("depth"), help="largest depth of the grid")
    s.add_argument("--depth-base", type=float, help="grid base b: depths floor(b^n) (default 2^(1/3))")
    s.add_argument("--depths", type=int, nargs="+", help="explicit list of depths (overrides the grid)")
    s.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (preset default) or sgd")
    s.add_argument("--lr", type=_positive_float("learning rate"), help="constant step size")
    s.add_argument("--batch-size", type=_positive_int("batch size"), help="minibatch size")
    s.add_argument("--epochs", type=_positive_int("epochs"), help="maximum number of epochs")
    s.add_argument("--max-updates", type=_positive_int("max updates"), help="cap T_max on updates")
    s.add_argument("--epsilon", type=_nonneg_float("epsilon"), help="early-stop threshold on an epoch's mean loss")
    s.add_argument("--activation", help=f"override the preset's activation: {', '.join(sorted(ACTIVATIONS))}")
    s.add_argument("--seed", type=int, help="base PRNG seed (default 0)")
    s.add_argument("--data-dir", help="MNIST presets: folder with idx .gz files instead of tensorflow-datasets")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")

    a = sub.add_parser("analyze", help="scaling analysis of a sweep folder (SP §2.3, Table 1)")
    a.add_argument("run_dir", type=Path)
    a.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("limits", help="compare a trained network with its deep limit (diffrax)")
    m.add_argument("run_dir", type=Path)
    m.add_argument("--depth", required=True, type=_positive_int("depth"), help="a finished depth of the sweep")
    m.add_argument("--seed", type=int, default=0, help="which trained seed (default 0)")
    m.add_argument("--inputs", type=_positive_int("inputs"), default=8, help="number of test inputs")
    m.add_argument("--out", type=Path, help="output folder (default RUN_DIR/limits)")
    m.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("reproduce", help="reproduce a table or study of the papers")
    r.add_argument("what", choices=("table4", "convergence", "backprop"))
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--quick", action="store_true", help="the small version (minutes on 2 CPU cores)")
    r.add_argument("--optimizer", choices=OPTIMIZERS, help="table4: optimiser (default: the preset's)")
    r.add_argument("--seeds", type=_positive_int("seeds"), default=5, help="table4: seeds per cell")
    r.add_argument("--paths", type=_positive_int("paths"), help="convergence/backprop: Brownian paths")
    r.add_argument("--no-progress", action="store_true")

    sub.add_parser("presets", help="list the presets and their settings")
    return p


def _sweep(args) -> int:
    from resnet_limits.sweeps import make_config, run_sweep

    cfg = make_config(
        args.preset, quick=args.quick, seeds=args.seeds, min_depth=args.min_depth,
        max_depth=args.max_depth, depth_base=args.depth_base, depths=args.depths,
        optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        max_updates=args.max_updates, epsilon=args.epsilon, activation=args.activation,
        seed=args.seed, data_dir=args.data_dir,
    )
    done = run_sweep(cfg, args.out, progress=not args.no_progress)
    print(f"{len(done)} depths finished in {args.out} ({cfg['seeds']} seeds each): {done[0]}..{done[-1]}")
    return 0


def _analyze(args) -> int:
    from resnet_limits.scaling import analyze_run, format_analysis

    result = analyze_run(args.run_dir, progress=not args.no_progress)
    print(format_analysis(result))
    print(f"wrote {args.run_dir / 'analysis.json'} and figures in {args.run_dir / 'figures'}")
    return 0


def _limits(args) -> int:
    from resnet_limits.convergence import compare_trained

    result = compare_trained(
        args.run_dir, args.depth, seed=args.seed, n_inputs=args.inputs, out=args.out,
        progress=not args.no_progress,
    )
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=1))
    return 0


def _reproduce(args) -> int:
    progress = not args.no_progress
    if args.what == "table4":
        from resnet_limits.table4 import format_table4, reproduce_table4

        res = reproduce_table4(args.out, quick=args.quick, optimizer=args.optimizer, seeds=args.seeds, progress=progress)
        print(format_table4(res))
    elif args.what == "convergence":
        from resnet_limits.convergence import reproduce_convergence

        res = reproduce_convergence(args.out, quick=args.quick, n_paths=args.paths, progress=progress)
        _print_slopes(res)
    else:
        from resnet_limits.backprop import reproduce_backprop

        res = reproduce_backprop(args.out, quick=args.quick, n_paths=args.paths, progress=progress)
        _print_slopes(res)
    print(f"results in {args.out}")
    return 0


def _print_slopes(res: dict) -> None:
    cases = res.get("cases", res)
    for name, case in cases.items():
        if isinstance(case, dict) and "slope" in case:
            print(f"{name:40s} slope {case['slope']:+.3f}")


def _presets(args) -> int:
    from resnet_limits.sweeps import PRESETS

    for name, cfg in PRESETS.items():
        keys = ("activation", "delta_mode", "dataset", "optimizer", "lr", "batch_size", "epochs", "max_updates", "max_depth")
        print(f"{name:16s} " + " ".join(f"{k}={cfg[k]}" for k in keys))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``resnet-limits`` console script."""
    tune_xla_cpu()
    try:
        args = build_parser().parse_args(argv)
        return {"sweep": _sweep, "analyze": _analyze, "limits": _limits, "reproduce": _reproduce, "presets": _presets}[
            args.command
        ](args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (finished depths are saved; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
