"""Where a depth sweep's wall time goes: import, compile, train, write.

Runs ``resnet_limits.sweeps.run_sweep(sweep_config(PRESET, quick=...), out)`` in a fresh Python
process (as ``resnet-limits sweep`` would, with the CLI's XLA:CPU setting) into a temporary
folder, and splits the whole-process wall time (measured from outside) into

* import:  interpreter start and ``import resnet_limits`` (everything before the sweep starts);
* compile: JAX tracing, lowering and backend compilation (``jax.monitoring`` events), and
  loading programs from the persistent compilation cache when one is on;
* train:   the depths' ``seconds`` (in their JSON files) minus the compile time inside them;
* write:   the rest of the sweep: data set, files, checksums, locks.

    python benchmarks/sweep_wallclock.py                      # quick grid (25 depths 3..812 x 5 seeds)
    python benchmarks/sweep_wallclock.py --full               # and the full grid (36 depths 3..10,321)
    python benchmarks/sweep_wallclock.py --engines static bucket   # old (one program per depth) vs new
    python benchmarks/sweep_wallclock.py --cache              # cold, then warm persistent compilation cache
    python benchmarks/sweep_wallclock.py --devices 1          # one XLA host device (default: one per core)

Timings on a shared machine are noisy: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnet_limits.runtime import default_host_devices, usable_cores

_CHILD = r'''
import time
t_start = time.perf_counter()
import json, sys, functools
from pathlib import Path
from resnet_limits.runtime import tune_xla_cpu
tune_xla_cpu()
import jax
events = {"compile": 0.0, "cache_load": 0.0, "backend_compiles": 0, "cache_hits": 0}
def on_event(name, seconds, **kw):
    if name.endswith(("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")):
        events["compile"] += seconds
    if name.endswith("backend_compile_duration"):
        events["backend_compiles"] += 1
    if name.startswith("/jax/compilation_cache/") and name.endswith("retrieval_time_sec"):
        events["cache_load"] += seconds
        events["cache_hits"] += 1
jax.monitoring.register_event_duration_secs_listener(on_event)
import resnet_limits.sweeps.fc as sweeps_fc
from resnet_limits.config import sweep_config
from resnet_limits.sweeps import run_sweep
preset, quick, out, engine = sys.argv[1], sys.argv[2] == "quick", Path(sys.argv[3]), sys.argv[4]
if engine == "static":  # the old trainer: one program per depth
    sweeps_fc.train_seeds = functools.partial(sweeps_fc.train_seeds, engine="static")
t_import = time.perf_counter() - t_start
t0 = time.perf_counter()
run_sweep(sweep_config(preset, quick=quick), out, progress=False)
t_sweep = time.perf_counter() - t0
depth_s = sum(json.loads(p.read_text())["seconds"] for p in (out / "depths").glob("L*.json"))
print(json.dumps(dict(events, import_s=t_import, in_process_s=time.perf_counter() - t_start,
                      sweep_s=t_sweep, depth_seconds=depth_s, devices=jax.device_count())))
'''


def run_once(preset: str, quick: bool, engine: str, env: dict) -> dict:
    """One sweep in a fresh process; its wall time split into import / compile / train / write."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD, preset, "quick" if quick else "full",
                              str(Path(tmp) / "run"), engine], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    compile_s = r["compile"] + r["cache_load"]
    return dict(
        wall_s=wall,
        import_s=wall - r["in_process_s"] + r["import_s"],
        compile_s=compile_s,
        train_s=r["depth_seconds"] - compile_s,
        write_s=r["sweep_s"] - r["depth_seconds"],
        backend_compiles=r["backend_compiles"],
        cache_hits=r["cache_hits"],
        devices=r["devices"],
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tanh-synthetic")
    p.add_argument("--full", action="store_true", help="also time the full grid (36 depths up to 10,321)")
    p.add_argument("--engines", nargs="+", default=["bucket"], choices=["static", "bucket"],
                   help="bucket: programs shared across depths (new); static: one program per depth (old)")
    p.add_argument("--cache", action="store_true",
                   help="persistent compilation cache in a fresh folder: one cold run, then one warm run")
    p.add_argument("--devices", type=int, default=None,
                   help="XLA host devices, the seed axis sharded over them (default: the CLI's, one per "
                        "core at most the 5 seeds; 1 = the single-device trainer)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    env = dict(os.environ)
    devices = args.devices or default_host_devices(runs=5)  # the preset's 5 seeds
    if devices > 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    grids = [True] + ([False] if args.full else [])
    print(f"# {args.preset}, {usable_cores()} cores, {devices} host devices, XLA_FLAGS={env.get('XLA_FLAGS', '')!r}; seconds")
    print(f"{'grid':>5} {'engine':>7} {'cache':>5} {'wall':>7} {'import':>7} {'compile':>7} {'train':>7} "
          f"{'write':>7} {'compiles':>8} {'hits':>5}")
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for quick in grids:
            for engine in args.engines:
                runs = [("off", env)]
                if args.cache:
                    cached = dict(env, JAX_COMPILATION_CACHE_DIR=str(Path(cache_dir) / f"{engine}-{quick}"),
                                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                                  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
                    runs = [("cold", cached), ("warm", cached)]
                for cache, run_env in runs:
                    r = dict(run_once(args.preset, quick, engine, run_env), grid="quick" if quick else "full",
                             engine=engine, cache=cache)
                    rows.append(r)
                    print(f"{r['grid']:>5} {engine:>7} {cache:>5} {r['wall_s']:7.1f} {r['import_s']:7.1f} "
                          f"{r['compile_s']:7.1f} {r['train_s']:7.1f} {r['write_s']:7.1f} "
                          f"{r['backend_compiles']:8d} {r['cache_hits']:5d}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
