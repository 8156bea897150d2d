"""Seconds of ``resnet-limits analyze`` on the quick sweep, and how often each weight file is read.

    python benchmarks/analyze_time.py [--run DIR] [--repeats 3] [--pythonpath OTHER_CHECKOUT]

Makes the quick sweep (``sweep tanh-synthetic --quick``) in DIR if it is not there, then runs
``analyze`` in fresh processes (the CLI as a user runs it: compilation cache on, a first run fills
it) and prints each run's wall time; then once in this process with every read of a ``.npz``
counted (``limits --depth`` of the largest depth too). ``--pythonpath`` times another checkout of
the package on the same folder (before/after comparisons in one run; its read count is not taken).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(args: list[str], env: dict) -> float:
    """Seconds of one CLI process, started outside any checkout: ``python -m`` puts its working
    folder first on the path, which would shadow ``PYTHONPATH`` (the other checkout)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnet_limits.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def _count_reads(argv: list[str]) -> dict[str, int]:
    """Run the CLI in this process, counting each .npz opened for reading (by name)."""
    import pathlib

    counts: collections.Counter = collections.Counter()
    real_open, real_read = io.open, pathlib.Path.read_bytes

    def counting_open(file, mode="r", *a, **k):
        if str(file).endswith(".npz") and "r" in mode:
            counts[Path(file).name] += 1
        return real_open(file, mode, *a, **k)

    def counting_read(self):
        if self.suffix == ".npz":
            pass  # read_bytes opens the file through io.open, counted there
        return real_read(self)

    io.open = counting_open
    import builtins

    builtins.open, pathlib.Path.read_bytes = counting_open, counting_read
    try:
        from resnet_limits.cli import main

        main(argv)
    finally:
        io.open, builtins.open, pathlib.Path.read_bytes = real_open, real_open, real_read
    return dict(counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path(tempfile.gettempdir()) / "resnet-limits-bench-quick")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pythonpath", help="time this checkout of the package too (its root folder)")
    a = p.parse_args()
    env = dict(os.environ)
    if not (a.run / "depths" / "L00812.json").exists():
        print(f"making the quick sweep in {a.run} ...", flush=True)
        _cli(["sweep", "tanh-synthetic", "--quick", "--out", str(a.run), "--no-progress"], env)
    sides = [("this checkout", env)]
    if a.pythonpath:
        other = str(Path(a.pythonpath).resolve())
        sides.append((a.pythonpath, dict(env, PYTHONPATH=other)))
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # this checkout, whatever is installed
    for name, e in sides:
        times, inside = [], []
        for _ in range(a.repeats):
            times.append(_cli(["analyze", str(a.run), "--no-progress"], e))
            inside.append(json.loads((a.run / "analysis.json").read_text())["seconds"])
        print(f"{name}: analyze (whole process) " + ", ".join(f"{t:.1f} s" for t in times)
              + " (the first fills the compilation cache); in the process (analysis.json seconds) "
              + ", ".join(f"{t:.2f} s" for t in inside))
    reads = _count_reads(["analyze", str(a.run), "--no-progress"])
    print(f"reads of each .npz by analyze: {sorted(set(reads.values()))} ({len(reads)} files)")
    reads = _count_reads(["limits", str(a.run), "--depth", "812", "--out", str(a.run / "limits-bench")])
    print(f"reads of each .npz by limits --depth 812: {reads}")


if __name__ == "__main__":
    main()
