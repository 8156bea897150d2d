"""Training throughput: microseconds per (layer x update x seed), and compile time.

Times the library's trainer (one jitted program: scan over depth, vmap over seeds, scan over
the minibatches of an epoch) against a per-layer Python loop of the same network (one
jitted layer call per layer forward, one jitted layer VJP per layer backward, then the same
optax step), both in this run, and prints the ratio.

    python benchmarks/train_throughput.py                 # L in {100, 1000, 10321}, S in {1, 5}
    python benchmarks/train_throughput.py --depths 100 1000 --seeds 1 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from resnet_limits.cli import tune_xla_cpu
from resnet_limits.data import synthetic
from resnet_limits.models import get_activation, init_params, layer
from resnet_limits.training.fc import TrainConfig, _epoch, _init_state, make_optimizer, seed_keys


def time_library(depth: int, n_seeds: int, data, cfg: TrainConfig, repeats: int = 2):
    """Seconds to compile, and seconds per update for S seeds, of the library's epoch program."""
    opt = make_optimizer(cfg.optimizer, cfg.lr)
    keys = seed_keys(0, depth, n_seeds)
    init = jax.jit(jax.vmap(lambda k: _init_state(k, depth, data.dim, cfg, opt)))
    epoch = jax.jit(jax.vmap(lambda st, k, e: _epoch(st, k, e, data, cfg, opt), in_axes=(0, 0, None)))
    state = init(keys)
    t0 = time.perf_counter()
    compiled = epoch.lower(state, keys, jnp.int32(0)).compile()
    t_compile = time.perf_counter() - t0
    state, losses = compiled(state, keys, jnp.int32(0))  # warm-up
    jax.block_until_ready(losses)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        state, losses = compiled(state, keys, jnp.int32(r + 1))
        jax.block_until_ready(losses)
        best = min(best, time.perf_counter() - t0)
    n_updates = data.x_train.shape[0] // cfg.batch_size
    return t_compile, best / n_updates


def time_python_loop(depth: int, data, cfg: TrainConfig, n_updates: int = 3):
    """Seconds per update of one seed with a Python loop over layers (one jitted call per layer)."""
    sigma = get_activation(cfg.activation).fn
    params = init_params(jax.random.PRNGKey(0), depth, data.dim, delta_mode="shared")
    opt = optax.adam(cfg.lr)
    opt_state = opt.init(params)

    @jax.jit
    def layer_fwd(h, A, b, delta):
        return layer(h, A, b, jnp.abs(delta), sigma)

    @jax.jit
    def layer_bwd(h, A, b, delta, g):
        _, vjp = jax.vjp(lambda h, A, b, delta: layer(h, A, b, jnp.abs(delta), sigma), h, A, b, delta)
        return vjp(g)

    @jax.jit
    def step(params, opt_state, gA, gb, gd):
        grads = type(params)(gA, gb, gd)
        upd, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    B = cfg.batch_size

    def one_update(params, opt_state, i):
        x = data.x_train[i * B:(i + 1) * B]
        y = data.y_train[i * B:(i + 1) * B]
        hs = [x]
        for k in range(depth):
            hs.append(layer_fwd(hs[-1], params.A[k], params.b[k], params.delta))
        g = 2.0 * (hs[-1] - y) / y.size
        gA, gb, gd = [None] * depth, [None] * depth, jnp.zeros(())
        for k in reversed(range(depth)):
            g, gA[k], gb[k], dd = layer_bwd(hs[k], params.A[k], params.b[k], params.delta, g)
            gd = gd + dd
        return step(params, opt_state, jnp.stack(gA), jnp.stack(gb), gd)

    params, opt_state = one_update(params, opt_state, 0)  # compile + warm-up
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for i in range(1, n_updates + 1):
        params, opt_state = one_update(params, opt_state, i)
    jax.block_until_ready(params)
    return (time.perf_counter() - t0) / n_updates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[100, 1000, 10321])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 5])
    p.add_argument("--loop-updates", type=int, default=2, help="updates timed for the Python-loop baseline")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--eigen-threads", action="store_true",
                   help="keep XLA:CPU's Eigen thread pool (the CLI turns it off; see cli.tune_xla_cpu)")
    args = p.parse_args(argv)
    if not args.eigen_threads:
        tune_xla_cpu()  # as the CLI does; before the backend starts

    data = synthetic(jax.random.PRNGKey(0))
    cfg = TrainConfig()
    print(f"# {platform.machine()} {os.cpu_count()} cores, jax {jax.__version__}, backend {jax.default_backend()}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'L':>6} {'S':>2} {'compile s':>9} {'us/(layer*upd*seed)':>20} {'loop us/(layer*upd)':>20} {'speed-up':>9}")
    rows = []
    for L in args.depths:
        loop = None if args.no_baseline else time_python_loop(L, data, cfg, args.loop_updates) / L * 1e6
        for S in args.seeds:
            t_compile, per_update = time_library(L, S, data, cfg)
            us = per_update / (L * S) * 1e6
            ratio = loop / us if loop else float("nan")
            rows.append(dict(depth=L, seeds=S, compile_s=t_compile, us_per_layer_update_seed=us,
                             loop_us_per_layer_update=loop, speedup=ratio))
            loop_s = f"{loop:20.2f}" if loop else f"{'-':>20}"
            print(f"{L:6d} {S:2d} {t_compile:9.2f} {us:20.3f} {loop_s} {ratio:9.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
