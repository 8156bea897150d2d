"""Does the accelerator JAX finds give the CPU's numbers? One script, three checks, each timed.

1. **A short fully-connected sweep** (``tanh-synthetic``, depths 3, 16, 64, 2 seeds, 12 SGD
   updates, through ``sweeps.run_sweep_report`` as ``resnet-limits sweep`` runs it): its weights
   A, b and delta against the same sweep in a CPU process.
2. **One epoch of the convolutional ResNet** (SP eq. 9, ``train_conv`` at L = 8, width 4, 64 mock
   images of CIFAR-10's shape, batches of 32): its losses and parameters.
3. **One SDE solve in float64** (``limits.solve_sde`` under ``jax.enable_x64``: the Ito SDE of
   SP eq. 15 with csoftplus's Ito term, on a fine Brownian path of 64 steps, saved at 16 times):
   its path, and that it is float64.

The CPU reference is computed in a subprocess with ``JAX_PLATFORMS=cpu`` (on an accelerator it
runs while this process computes; on a CPU after it, reusing its compiled programs from the
persistent compilation cache, as ``resnet-limits`` does). Matrix products and convolutions run at full float32
precision here (``jax.default_matmul_precision("float32")``: a GPU's default TF32 would differ
from the CPU by ~1e-3 by design). On a CPU both sides are the CPU and must agree exactly; the
script passes there too (``tests/test_distributed.py`` runs it).

    python benchmarks/check_device.py              # on whatever JAX finds; exit 0: all agree
    python benchmarks/check_device.py --json F     # also write the numbers to F

Prints one line per check: seconds here, seconds of the CPU reference, the largest difference
and the tolerance.
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

ROOT = Path(__file__).resolve().parents[1]
#: (relative, absolute) tolerances of each check against the CPU.
TOLERANCE = {"fc sweep": (1e-4, 1e-6), "conv epoch": (1e-3, 1e-4), "sde float64": (1e-8, 1e-12)}


def fc_sweep() -> dict:
    import jax
    import numpy as np

    from resnet_limits.config import sweep_config
    from resnet_limits.sweeps import run_sweep_report

    cfg = sweep_config("tanh-synthetic", depths=[3, 16, 64], seeds=2, optimizer="sgd", lr=0.05, epochs=1,
                       max_updates=12, n_train=384, n_test=64)  # one program: every depth is in bucket 64
    with tempfile.TemporaryDirectory() as tmp, jax.default_matmul_precision("float32"):
        run_sweep_report(cfg, Path(tmp) / "run", progress=False, log=lambda m: None)
        out = {}
        for L in cfg.depths:
            with np.load(Path(tmp) / "run" / "depths" / f"L{L:05d}.npz") as z:
                out.update({f"L{L}/{k}": z[k] for k in z.files})
    return out


def conv_epoch() -> dict:
    import jax
    import numpy as np

    from resnet_limits.data import mock_cifar10
    from resnet_limits.training.conv import ConvTrainConfig, train_conv

    data = mock_cifar10(jax.random.PRNGKey(1), 64, 16)
    cfg = ConvTrainConfig(epochs=1, batch_size=32, width=4, eval_batch_size=16)
    with jax.default_matmul_precision("float32"):
        res = train_conv(jax.random.PRNGKey(0), 8, data, cfg)
    out = {k: np.asarray(getattr(res, k)) for k in ("train_loss", "test_loss")}
    out.update({f"param{i}": np.asarray(p) for i, p in enumerate(jax.tree.leaves(res.params))})
    return out


def sde_float64() -> dict:
    import jax
    import numpy as np

    from resnet_limits.limits import BrownianQ, solve_sde, uniform_grid
    from resnet_limits.limits.strong import fine_path
    from resnet_limits.models import get_activation

    with jax.enable_x64(True):  # SP eq. 15 with the Ito term of csoftplus, on a fine path of 64 steps
        p = fine_path(jax.random.PRNGKey(0), width=4, n_fine=64, trend_scale=1.0)
        H = solve_sde(p.x, p.W_A, p.W_b, uniform_grid(16), d2_at_0=get_activation("csoftplus").d2_at_0,
                      Q=BrownianQ(), Abar=p.Abar, bbar=p.bbar)
        out = {"H": np.asarray(H)}
    if out["H"].dtype != np.float64:
        raise AssertionError(f"the SDE solve is not float64 ({out['H'].dtype})")
    return out


CHECKS = {"fc sweep": fc_sweep, "conv epoch": conv_epoch, "sde float64": sde_float64}


def run_checks() -> tuple[dict, dict]:
    """Every check on this process's default backend: (arrays by check, seconds by check)."""
    arrays, seconds = {}, {}
    for name, fn in CHECKS.items():
        t0 = time.perf_counter()
        arrays[name] = fn()
        seconds[name] = time.perf_counter() - t0
    return arrays, seconds


def _save(path: str, arrays: dict, seconds: dict) -> None:
    import numpy as np

    flat = {f"{name}::{k}": v for name, d in arrays.items() for k, v in d.items()}
    np.savez(path, **flat, **{f"seconds::{k}": np.asarray(v) for k, v in seconds.items()})


def _load(path: str) -> tuple[dict, dict]:
    import numpy as np

    arrays: dict = {name: {} for name in CHECKS}
    seconds = {}
    with np.load(path) as z:
        for key in z.files:
            name, k = key.split("::", 1)
            if name == "seconds":
                seconds[k] = float(z[key])
            else:
                arrays[name][k] = z[key]
    return arrays, seconds


def compare(here: dict, ref: dict, name: str) -> tuple[float, bool]:
    """The largest |here - ref| over the check's arrays, and whether all are within tolerance."""
    import numpy as np

    rtol, atol = TOLERANCE[name]
    if here.keys() != ref.keys():
        return float("inf"), False
    worst, ok = 0.0, True
    for k in here:
        a, b = np.asarray(here[k], np.float64), np.asarray(ref[k], np.float64)
        if a.shape != b.shape:
            return float("inf"), False
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)))
        ok &= bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    return worst, ok


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    from resnet_limits import runtime

    runtime.tune_xla_cpu()
    runtime.quiet_library_logs()
    runtime.enable_compile_cache()  # as resnet-limits does: on a CPU the reference reuses these programs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", metavar="NPZ", help=argparse.SUPPRESS)  # the CPU subprocess: write and exit
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--timeout", type=float, default=600, help="seconds the CPU reference may take (default 600)")
    a = p.parse_args(argv)
    _setup()
    if a.reference:
        arrays, seconds = run_checks()
        _save(a.reference, arrays, seconds)
        return 0

    import jax

    fd, ref_path = tempfile.mkstemp(suffix=".npz", prefix="check-device-cpu-")
    os.close(fd)
    command = [sys.executable, str(Path(__file__).resolve()), "--reference", ref_path]
    start = lambda: subprocess.Popen(command, env=dict(os.environ, JAX_PLATFORMS="cpu"))  # noqa: E731
    dev = jax.devices()[0]
    on_cpu = dev.platform == "cpu"
    ref = None if on_cpu else start()  # an accelerator: the CPU works at the same time
    try:
        print(f"device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), jax {jax.__version__}; "
              f"the CPU reference {'after these checks' if on_cpu else f'in pid {ref.pid}'}", flush=True)
        arrays, seconds = run_checks()
        ref = ref or start()  # the CPU: after, with this process's programs in the compilation cache
        code = ref.wait(timeout=a.timeout)
        if code != 0:
            print(f"check_device: the CPU reference failed (exit code {code})", file=sys.stderr)
            return 2
        ref_arrays, ref_seconds = _load(ref_path)
    finally:
        if ref is not None and ref.poll() is None:
            ref.kill()
            ref.wait()
        os.unlink(ref_path)

    rows, all_ok = [], True
    print("\n| check | seconds here | seconds CPU | max abs difference | tolerance (rel, abs) | agrees |\n"
          "|---|---|---|---|---|---|")
    for name in CHECKS:
        worst, ok = compare(arrays[name], ref_arrays[name], name)
        all_ok &= ok
        rows.append({"check": name, "seconds": seconds[name], "cpu_seconds": ref_seconds[name],
                     "max_abs_difference": worst, "tolerance": TOLERANCE[name], "agrees": ok})
        print(f"| {name} | {seconds[name]:.2f} | {ref_seconds[name]:.2f} | {worst:.3g} | {TOLERANCE[name]} | "
              f"{'yes' if ok else 'NO'} |")
    print(f"\n{'all checks agree with the CPU' if all_ok else 'some checks differ from the CPU'} "
          f"({dev.platform}, {dev.device_kind})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": f"{dev.platform} {dev.device_kind}", "rows": rows, "agrees": all_ok}, f, indent=1)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
