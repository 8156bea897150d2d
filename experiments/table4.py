"""SP Table 4: alpha and beta over eta in {.01, .003, .001} x B in {8, 32, 128} (5 seeds each).

    python experiments/table4.py --out runs/table4 [--quick] [--optimizer sgd] [--seeds 5]

Same as ``resnet-limits reproduce table4``; resumable (finished depths are kept).
"""

from __future__ import annotations

import argparse
import sys

from resnet_limits.cli import tune_xla_cpu
from resnet_limits.errors import UsageError
from resnet_limits.studies.table4 import format_table4, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (one subfolder per (eta, B) cell)")
    p.add_argument("--quick", action="store_true", help="smaller depth grid (same seeds); ~30 min on 2 cores")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="default: the preset's (adam)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    tune_xla_cpu()  # as the CLI does: these scripts train too
    try:
        res = run(a.out, quick=a.quick, optimizer=a.optimizer, seeds=a.seeds, progress=not a.no_progress)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table4(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
