"""SP Figures 1-6 (and App. B): sweep a preset over the depth grid, then analyse it.

    python experiments/scaling_figures.py --out runs/figs [--quick] [--preset tanh-synthetic relu-synthetic]
        [--optimizer adam|sgd]

For each preset this is ``resnet-limits sweep PRESET --out OUT/PRESET`` followed by
``resnet-limits analyze OUT/PRESET``: figures land in ``OUT/PRESET/figures/``, numbers in
``OUT/PRESET/analysis.json``. Resumable: rerun after an interruption.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_limits.cli import main as cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quick", action="store_true", help="depths up to ~1000 (minutes on 2 cores)")
    p.add_argument("--preset", nargs="+", default=["tanh-synthetic", "relu-synthetic"])
    p.add_argument("--optimizer", choices=("adam", "sgd"))
    a = p.parse_args(argv)
    for preset in a.preset:
        run = a.out / (preset + (f"-{a.optimizer}" if a.optimizer else ""))
        sweep = ["sweep", preset, "--out", str(run)] + (["--quick"] if a.quick else [])
        sweep += ["--optimizer", a.optimizer] if a.optimizer else []
        for argv_ in (sweep, ["analyze", str(run)]):
            code = cli(argv_)
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
