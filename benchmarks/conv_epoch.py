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

    python benchmarks/conv_epoch.py                               # CPU: 1,280 images, L = 8, 121
    python benchmarks/conv_epoch.py --images 50000 --epochs 3     # GPU: the real epoch size

Prints a Markdown table and, with ``--json F``, writes the numbers to F.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import jax
import numpy as np

from resnet_limits.conv import CONFIGS
from resnet_limits.sweeps.conv import conv_images, conv_train_config, make_conv_config
from resnet_limits.training.conv import train_conv

CIFAR10_TRAIN = 50_000
FULL_EPOCHS = 200


def time_depth(depth: int, images: int, epochs: int) -> dict:
    """Per-epoch seconds of one depth on ``images`` random images (epoch 1 = compile + run)."""
    cfg = make_conv_config("conv-cifar10", depths=[depth], mock_data=images, epochs=epochs)
    data = conv_images(cfg)
    t0 = time.perf_counter()
    res = train_conv(jax.random.PRNGKey(0), depth, data, conv_train_config(cfg))
    total = time.perf_counter() - t0
    seconds = [float(s) for s in res.seconds]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    updates = images // cfg["batch_size"]
    return {
        "depth": depth, "images": images, "updates_per_epoch": updates, "epoch_seconds": seconds,
        "first_epoch_seconds": seconds[0], "steady_epoch_seconds": steady, "total_seconds": total,
        "seconds_per_50k_epoch": steady * (CIFAR10_TRAIN // cfg["batch_size"]) / updates,
    }


def full_estimate(rows: list[dict]) -> float | None:
    """Seconds of the full reproduction from a line through (L, seconds per 50k epoch)."""
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[8, 121], help="depths (of CONFIGS)")
    p.add_argument("--images", type=int, default=1280, help="random training images (multiple of 128)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per depth (>= 2: the first compiles)")
    p.add_argument("--json", help="write the numbers to this file")
    a = p.parse_args(argv)
    bad = [L for L in a.depths if L not in CONFIGS]
    if bad or a.images < 128 or a.epochs < 1:
        print(f"conv_epoch: depths must be among {list(CONFIGS)}, images >= 128, epochs >= 1", file=sys.stderr)
        return 2
    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}), {platform.processor() or platform.machine()}, "
          f"jax {jax.__version__}")
    rows = [time_depth(L, a.images, a.epochs) for L in a.depths]
    print(f"\n| L | images | first epoch (compile) | epoch after | per 50,000-image epoch |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['depth']} | {r['images']:,} | {r['first_epoch_seconds']:.1f} s | "
              f"{r['steady_epoch_seconds']:.2f} s | {_hms(r['seconds_per_50k_epoch'])} |")
    full = full_estimate(rows)
    if full is not None:
        print(f"\nfull reproduction (16 depths x {FULL_EPOCHS} epochs, line through the depths): ~{_hms(full)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": f"{dev.platform} {dev.device_kind}", "rows": rows, "full_estimate_seconds": full},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
