"""Strong convergence of deep ResNets to their ODE / Ito SDE limits (SP §4; issue 4).

    python experiments/convergence.py [--quick] [--n-paths N] --out DIR

Thin wrapper around :func:`resnet_limits.studies.convergence.run` (the same as
``resnet-limits reproduce convergence``): writes DIR/convergence.json and log-log PNG figures.
"""

import argparse
import sys

from resnet_limits.studies import convergence
from resnet_limits.errors import UsageError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small study (< 3 min on 2 cores)")
    ap.add_argument("--n-paths", type=int, default=None, help="number of fine Brownian paths")
    ap.add_argument("--out", default="results/convergence", help="output folder")
    args = ap.parse_args(argv)
    try:
        res = convergence.run(args.out, quick=args.quick, n_paths=args.n_paths)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(convergence.format_convergence(res))
    print(f"wrote {args.out}/convergence.json in {res['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
