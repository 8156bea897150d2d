"""Whole-process wall time of one deep training job: ``resnet-limits sweep`` against PyTorch.

The job (the project's speed yardstick): depth L = 3000, 5 seeds, 160 updates each, batch 32, width 10,
tanh, shared trainable delta (SP eq. 1), the synthetic task's sizes (1,024 training points).

* ``resnet-limits``: ``python -m resnet_limits.cli sweep tanh-synthetic --depths 3000 ...`` in a
  fresh process with an empty compilation cache (``--no-compile-cache``): interpreter start,
  imports, compilation, training, files, everything; the CLI's defaults otherwise (one XLA host
  device per core, seeds sharded over them).
* PyTorch: the way such networks are usually written (and the authors' code writes them): an
  ``nn.Module`` holding the stacked (L, d, d) weights whose ``forward`` loops over the L layers in
  Python, autograd for the backward pass, ``torch.optim``; the 5 seeds one after the other, as the
  authors run them. Torch keeps its default threads. Also a fresh process.

Both use the same optimiser (``--optimizer``, default sgd) and learning rate; neither early-stops
(epsilon 0). Timings on a shared machine are noisy: compare the rows of one run.

    python benchmarks/vs_pytorch.py                 # L = 3000, 5 seeds, 160 updates
    python benchmarks/vs_pytorch.py --depth 1000 --updates 64
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_TORCH = r'''
import sys, time
import torch
L, S, T, B, d, n, opt_name, lr = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 32, 10, 1024,
                                  sys.argv[4], float(sys.argv[5]))

class ResNet(torch.nn.Module):
    """h_{k+1} = h_k + delta tanh(A_k h_k + b_k) (SP eq. 1), one Python step per layer."""
    def __init__(self, L, d, scale=0.01):
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn(L, d, d) * scale / (L * d))
        self.b = torch.nn.Parameter(torch.randn(L, d) * scale / (L * d ** 0.5))
        self.delta = torch.nn.Parameter(torch.tensor(1.0 / L))
    def forward(self, h):
        for k in range(self.A.shape[0]):
            h = h + self.delta.abs() * torch.tanh(h @ self.A[k].T + self.b[k])
        return h

x, y = torch.randn(n, d), torch.randn(n, d)
for s in range(S):
    torch.manual_seed(s)
    net = ResNet(L, d)
    opt = (torch.optim.SGD if opt_name == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    done = 0
    while done < T:
        perm = torch.randperm(n)
        for i in range(n // B):
            if done == T:
                break
            idx = perm[i * B:(i + 1) * B]
            loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
'''


def _wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr[-3000:]}")
    return wall


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=3000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--updates", type=int, default=160)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--devices", type=int, help="resnet-limits --devices (default: the CLI's, one per core)")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit('this benchmark needs PyTorch: pip install "resnet-limits[torch]"') from None

    env = dict(os.environ)
    n_batches = 1024 // 32
    epochs = -(-args.updates // n_batches)
    with tempfile.TemporaryDirectory() as tmp:
        ours = [sys.executable, "-m", "resnet_limits.cli", "sweep", "tanh-synthetic", "--depths", str(args.depth),
                "--seeds", str(args.seeds), "--max-updates", str(args.updates), "--epochs", str(epochs),
                "--epsilon", "0", "--optimizer", args.optimizer, "--lr", str(args.lr), "--out", f"{tmp}/run",
                "--no-progress", "--no-compile-cache"] + (["--devices", str(args.devices)] if args.devices else [])
        t_ours = _wall(ours, env)
    t_torch = _wall([sys.executable, "-c", _TORCH, str(args.depth), str(args.seeds), str(args.updates),
                     args.optimizer, str(args.lr)], env)
    work = args.depth * args.seeds * args.updates
    print(f"# L={args.depth}, {args.seeds} seeds x {args.updates} {args.optimizer} updates, batch 32, width 10; "
          f"whole processes, {os.cpu_count()} cores")
    print(f"{'':>14} {'wall s':>8} {'us/(layer.update.seed)':>24}")
    print(f"{'resnet-limits':>14} {t_ours:8.1f} {1e6 * t_ours / work:24.2f}")
    print(f"{'pytorch loop':>14} {t_torch:8.1f} {1e6 * t_torch / work:24.2f}")
    print(f"speed-up: {t_torch / t_ours:.1f}x")


if __name__ == "__main__":
    main()
