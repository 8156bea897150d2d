"""Training throughput: microseconds per (layer x update x seed), and compile time, old vs new.

Times, in this run, the two engines of ``resnet_limits.training.fc.train_seeds``:

* ``static`` (old): one program per depth, depth and data baked in (scan over L layers);
* ``bucket`` (new): one program per capacity bucket (64, 256, 1024, then powers of two) with
  the depth, data and learning rates as arguments (a loop of exactly L layers, AA eq. 5.3
  backward pass);

and a per-layer Python loop of the same network (one jitted layer call per layer forward, one
jitted layer VJP per layer backward, then the same optax step) as a baseline. "compile s" is
the backend compile time of the run's programs (init + epoch), from ``jax.monitoring``.

    python benchmarks/train_throughput.py                 # L in {100, 1000, 10321}, S in {1, 5}
    python benchmarks/train_throughput.py --depths 100 1000 --seeds 1 5 --devices 2 --json out.json

Timings on a shared machine are noisy: compare the old/new ratio of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import optax

from resnet_limits.runtime import tune_xla_cpu
from resnet_limits.data import synthetic
from resnet_limits.models import get_activation, init_params, layer
from resnet_limits.training.fc import TrainConfig, _start, seed_keys

_COMPILE_S: list[float] = []


def _on_event(name: str, seconds: float, **kwargs) -> None:
    if name.endswith("backend_compile_duration"):
        _COMPILE_S.append(seconds)


def time_engine(engine: str, depth: int, n_seeds: int, data, cfg: TrainConfig, repeats: int = 2):
    """(compile seconds, seconds per update for S seeds) of one engine of ``train_seeds``."""
    run, keys = _start(seed_keys(0, depth, n_seeds), depth, data, cfg, None, engine)
    _COMPILE_S.clear()
    state = run.init(keys)
    state, losses = run.epoch(state, keys, jnp.int32(0))  # compile + warm-up
    jax.block_until_ready(losses)
    t_compile = sum(_COMPILE_S)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        state, losses = run.epoch(state, keys, jnp.int32(r + 1))
        jax.block_until_ready(losses)
        best = min(best, time.perf_counter() - t0)
    return t_compile, best / (data.x_train.shape[0] // cfg.batch_size)


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
    p.add_argument("--engines", nargs="+", default=["static", "bucket"], choices=["static", "bucket"])
    p.add_argument("--devices", type=int, default=None,
                   help="XLA host devices (the seed axis is sharded over them); default: XLA's (1)")
    p.add_argument("--loop-updates", type=int, default=2, help="updates timed for the Python-loop baseline")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--eigen-threads", action="store_true",
                   help="keep XLA:CPU's Eigen thread pool (the CLI turns it off; see runtime.tune_xla_cpu)")
    args = p.parse_args(argv)
    # both before the backend starts
    if not args.eigen_threads:
        tune_xla_cpu()
    if args.devices:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}").strip()
    jax.monitoring.register_event_duration_secs_listener(_on_event)

    data = synthetic(jax.random.PRNGKey(0))
    cfg = TrainConfig(epsilon=0.0, max_updates=10**9)  # every epoch trains: steady timings
    print(f"# {platform.machine()} {os.cpu_count()} cores, jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'L':>6} {'S':>2} {'engine':>7} {'compile s':>9} {'us/(layer*upd*seed)':>20} "
          f"{'old/new':>8} {'loop us/(layer*upd)':>20} {'vs loop':>8}")
    rows = []
    for L in args.depths:
        loop = None if args.no_baseline else time_python_loop(L, data, cfg, args.loop_updates) / L * 1e6
        for S in args.seeds:
            old = None
            for engine in args.engines:
                t_compile, per_update = time_engine(engine, L, S, data, cfg)
                us = per_update / (L * S) * 1e6
                old = us if engine == "static" else old
                ratio = old / us if (old and engine == "bucket") else float("nan")
                vs_loop = loop / us if loop else float("nan")
                rows.append(dict(depth=L, seeds=S, engine=engine, devices=jax.device_count(), compile_s=t_compile,
                                 us_per_layer_update_seed=us, old_over_new=ratio,
                                 loop_us_per_layer_update=loop, speedup_vs_loop=vs_loop))
                loop_s = f"{loop:20.2f}" if loop else f"{'-':>20}"
                print(f"{L:6d} {S:2d} {engine:>7} {t_compile:9.2f} {us:20.3f} {ratio:8.2f} {loop_s} {vs_loop:8.1f}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
