"""Seconds per epoch of the convolutional ResNet (SP eq. 9, the ``conv-cifar10`` recipe), and what
the full reproduction (16 depths x 200 epochs of 50,000 CIFAR-10 images) would take here.

Trains :func:`resnet_limits.training.conv.train_conv` with the preset's settings (SGD + momentum,
batches of 128, augmentation, width 64) on ``--images`` random images of CIFAR-10's shape
(``mock_cifar10``; the cost does not depend on the pixels) for ``--epochs`` epochs at each depth of
``--depths``. The first epoch holds the compilation; the epochs after it are timed and their median
is scaled to 50,000 images (the per-image cost is constant once a batch is full: 390 updates of
128 images per CIFAR-10 epoch). With two or more depths, a line ``t(L) = a + b L`` through the
measured seconds per 50,000-image epoch gives the estimate of the full run,
``200 x sum over the 16 depths of t(L)`` (plus the test-set evaluations, included in the epochs).

Besides seconds per epoch it prints training images per second (the trained images of an epoch
over its wall time, which includes the epoch's test-set evaluation). ``--data-parallel N`` splits
every minibatch of the one network over N devices (``ConvTrainConfig.data_parallel``); on the CPU
it first makes N XLA host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set
before JAX starts; a count the user put in ``XLA_FLAGS`` wins). ``--width`` shrinks the network
(the preset's is 64) for quick measurements.

``--workers N`` runs N copies of the measurement at once, as ``resnet-limits sweep --workers N``
runs N networks at once: N processes, each on its own GPU (``CUDA_VISIBLE_DEVICES``; on the CPU
just separate processes), each timing the same depths; it prints every worker's rows and the
images per second of all of them together (the sum of their steady rates: the throughput of a
depth-parallel sweep on this node).

    python benchmarks/conv_epoch.py                               # CPU: 1,280 images, L = 8, 121
    python benchmarks/conv_epoch.py --images 50000 --epochs 3     # GPU: the real epoch size
    python benchmarks/conv_epoch.py --depths 8 --width 8 --images 512 --epochs 3 --data-parallel 2
    python benchmarks/conv_epoch.py --images 50000 --epochs 3 --workers 8   # a node of 8 GPUs

Prints a Markdown table and, with ``--json F``, writes the numbers to F.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# JAX and the package are imported in main(), after _before_jax(): host-device settings must be
# in the environment before JAX initialises its backend.

CIFAR10_TRAIN = 50_000
FULL_EPOCHS = 200
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
DATA_SEED = 0  # the conv-cifar10 preset's: its mock images are mock_cifar10(PRNGKey(0), n, n // 5)


def _before_jax(a: argparse.Namespace) -> None:
    """Settings of the host that must precede JAX's initialisation (the place for other such
    options, e.g. input workers). ``--data-parallel N`` > 1: N XLA host devices, unless the
    user's ``XLA_FLAGS`` already sets a count (it only adds CPU devices; a GPU run is unchanged)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if a.data_parallel > 1 and DEVICE_COUNT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={a.data_parallel}".strip()


def time_depth(depth: int, images: int, epochs: int, *, width: int = 64, data_parallel: int = 1) -> dict:
    """Per-epoch seconds of one depth on ``images`` random images (epoch 1 = compile + run)."""
    import jax

    from resnet_limits.data import mock_cifar10
    from resnet_limits.training.conv import ConvTrainConfig, train_conv

    # the conv-cifar10 preset's training settings (ConvTrainConfig's defaults) and mock images
    cfg = ConvTrainConfig(epochs=epochs, width=width, data_parallel=data_parallel)
    data = mock_cifar10(jax.random.PRNGKey(DATA_SEED), images, max(1, images // 5))
    t0 = time.perf_counter()
    res = train_conv(jax.random.PRNGKey(0), depth, data, cfg)
    total = time.perf_counter() - t0
    seconds = [float(s) for s in res.seconds]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    updates = images // cfg.batch_size
    return {
        "depth": depth, "images": images, "width": width, "data_parallel": data_parallel,
        "updates_per_epoch": updates, "epoch_seconds": seconds,
        "first_epoch_seconds": seconds[0], "steady_epoch_seconds": steady, "total_seconds": total,
        "images_per_second": updates * cfg.batch_size / steady,
        "seconds_per_50k_epoch": steady * (CIFAR10_TRAIN // cfg.batch_size) / updates,
    }


def full_estimate(rows: list[dict]) -> float | None:
    """Seconds of the full reproduction from a line through (L, seconds per 50k epoch)."""
    import numpy as np

    from resnet_limits.conv import CONFIGS

    if len({r["depth"] for r in rows}) < 2:
        return None
    b, a = np.polyfit([r["depth"] for r in rows], [r["seconds_per_50k_epoch"] for r in rows], 1)
    return float(FULL_EPOCHS * sum(a + b * L for L in CONFIGS))


def _hms(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _workers(a: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N``: N copies of this measurement at once, one per GPU (``resnet_limits.distributed``
    gives each its ``CUDA_VISIBLE_DEVICES``, as ``sweep --workers N`` does); their rows and the
    images per second of all together. JAX is never started here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resnet_limits.distributed import local_gpus, worker_envs
    from resnet_limits.errors import UsageError

    gpus = local_gpus()
    try:
        envs = worker_envs(a.workers, data_parallel=a.data_parallel, gpus=gpus)
    except UsageError as e:
        print(f"conv_epoch: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"worker{i}.json" for i in range(a.workers)]
        t0 = time.perf_counter()
        me = [sys.executable, str(Path(__file__).resolve()), *argv, "--workers", "1"]
        procs = [subprocess.Popen(me + ["--json", str(f)], env=env, stdout=subprocess.DEVNULL)
                 for f, env in zip(files, envs)]
        try:
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        wall = time.perf_counter() - t0
        if any(codes):
            print(f"conv_epoch: workers failed with exit codes {codes}", file=sys.stderr)
            return 1
        results = [json.loads(f.read_text()) for f in files]
    where = f"GPUs {', '.join(e['CUDA_VISIBLE_DEVICES'] for e in envs)}" if gpus else "the CPU"
    print(f"{a.workers} workers at once on {where} ({results[0]['device']}); all done in {wall:.1f} s")
    print("\n| worker | L | width | images | epoch after | images/s |\n|---|---|---|---|---|---|")
    for i, res in enumerate(results):
        for r in res["rows"]:
            print(f"| {i} | {r['depth']} | {r['width']} | {r['images']:,} | {r['steady_epoch_seconds']:.2f} s | "
                  f"{r['images_per_second']:,.0f} |")
    total = {L: sum(r["images_per_second"] for res in results for r in res["rows"] if r["depth"] == L)
             for L in a.depths}
    for L, ips in total.items():
        print(f"\nL = {L}: {ips:,.0f} images/s with {a.workers} workers together")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"workers": a.workers, "wall_seconds": wall, "per_worker": results,
                       "images_per_second_together": {str(k): v for k, v in total.items()}}, f, indent=1)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[8, 121], help="depths (of CONFIGS)")
    p.add_argument("--images", type=int, default=1280, help="random training images (multiple of 128)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per depth (>= 2: the first compiles)")
    p.add_argument("--width", type=int, default=64, help="channels of stage 1 (the preset's: 64)")
    p.add_argument("--data-parallel", type=int, default=1, metavar="N",
                   help="split each minibatch of the network over N devices (CPU: N XLA host devices)")
    # host-side options that act before JAX starts (input workers, ...) go here and in _before_jax
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N processes measure at once, each on its own GPU (as sweep --workers N)")
    p.add_argument("--json", help="write the numbers to this file")
    a = p.parse_args(argv)
    if a.images < 128 or a.epochs < 1 or a.width < 1 or a.data_parallel < 1 or a.workers < 1:
        print("conv_epoch: images >= 128, epochs, width, data parallel and workers >= 1", file=sys.stderr)
        return 2
    if a.workers > 1:
        return _workers(a, list(sys.argv[1:] if argv is None else argv))
    _before_jax(a)

    import jax

    from resnet_limits.conv import CONFIGS
    from resnet_limits.errors import UsageError

    bad = [L for L in a.depths if L not in CONFIGS]
    if bad:
        print(f"conv_epoch: depths must be among {list(CONFIGS)}", file=sys.stderr)
        return 2
    devs = jax.devices()
    dev = devs[0]
    print(f"device: {dev.platform} ({dev.device_kind}) x {a.data_parallel} of {len(devs)}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}")
    try:
        rows = [time_depth(L, a.images, a.epochs, width=a.width, data_parallel=a.data_parallel) for L in a.depths]
    except UsageError as e:
        print(f"conv_epoch: {e}", file=sys.stderr)
        return 2
    print(f"\n| L | width | devices | images | first epoch (compile) | epoch after | images/s "
          f"| per 50,000-image epoch |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['depth']} | {r['width']} | {r['data_parallel']} | {r['images']:,} | "
              f"{r['first_epoch_seconds']:.1f} s | {r['steady_epoch_seconds']:.2f} s | "
              f"{r['images_per_second']:,.0f} | {_hms(r['seconds_per_50k_epoch'])} |")
    full = full_estimate(rows)
    if full is not None:
        print(f"\nfull reproduction (16 depths x {FULL_EPOCHS} epochs, line through the depths): ~{_hms(full)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": f"{dev.platform} {dev.device_kind}", "data_parallel": a.data_parallel,
                       "rows": rows, "full_estimate_seconds": full}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
