"""Backpropagation limits (AA §5, SPEC §5): discrete Jacobians vs backward ODEs / the Phi SDE.

    python experiments/backprop.py --quick --out out/   (L = 2^4..2^10, 64 paths, ~1.5 min)
    python experiments/backprop.py --out out/           (L = 2^4..2^13, 256 paths, ~10 min)

Same as ``resnet-limits reproduce backprop [--quick] --out DIR``: writes DIR/backprop.json and
DIR/backprop_*.png, prints the fitted slopes.
"""

from __future__ import annotations

import argparse
import sys

from resnet_limits.errors import UsageError
from resnet_limits.studies import backprop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="small run (< 3 minutes)")
    p.add_argument("--paths", type=int, default=None, help="number of random paths per case")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        res = backprop.run(a.out, quick=a.quick, n_paths=a.paths, progress=not a.no_progress)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(backprop.format_backprop(res))
    print(f"results in {a.out} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
