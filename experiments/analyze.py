"""Scaling analysis of a sweep folder (SP §2.3, Figs 1-6, App. B).

    python experiments/analyze.py --out RUN_DIR          (RUN_DIR: made by `resnet-limits sweep`)
    python experiments/analyze.py --quick --out RUN_DIR  (runs a small tanh sweep into RUN_DIR first)

Same as ``resnet-limits analyze RUN_DIR``: prints the table, writes RUN_DIR/analysis.json and
RUN_DIR/figures/*.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_limits.cli import tune_xla_cpu
from resnet_limits.errors import UsageError
from resnet_limits.analysis import analyze_run, format_analysis


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="sweep folder to analyse")
    p.add_argument("--quick", action="store_true",
                   help="if the folder has no sweep yet, first train a quick tanh-synthetic sweep (depths up to 101)")
    p.add_argument("--preset", default="tanh-synthetic", help="preset of the --quick sweep")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    tune_xla_cpu()  # as the CLI does: these scripts train too
    try:
        if a.quick and not (Path(a.out) / "config.json").exists():
            from resnet_limits import sweeps

            cfg = sweeps.make_config(a.preset, quick=True, max_depth=101)
            sweeps.run_sweep(cfg, a.out, progress=not a.no_progress)
        res = analyze_run(a.out, progress=not a.no_progress)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_analysis(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
