"""A trained network of a sweep folder against its deep limit on test inputs (SP §4).

:func:`run` ``(run_dir, depth, *, seed=0, n_inputs=8, out=None, progress=True)``: hidden states of
the trained network of one depth and seed against its limit (tanh: the linear ODE SP eq. 14 with
the drift L delta (A(t) H + b(t)) on the interpolated weights; ReLU: the Ito SDE of the smooth
surrogate activation softplus(z) - log 2, see :mod:`resnet_limits.limits.network_limit`). Writes
``RUN_DIR/limits/L{depth:05d}.json`` (the returned dict) and ``.png`` (or into ``out``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from resnet_limits import weights
from resnet_limits.errors import UsageError
from resnet_limits.limits import SURROGATE, SURROGATE_EPS, network_and_limit
from resnet_limits.run import Run
from resnet_limits import plotting
from resnet_limits.studies._io import output_folder, write_json

__all__ = ["format_trained_limits", "run"]


def _limit_name(activation: str) -> str:
    if activation == "relu":
        return (f"Ito SDE (SP eq. 15) of the smooth surrogate {SURROGATE['name']}: "
                "dH = 1/2 (dX^A H + dX^b) + 1/8 Q(t,H) dt, X = cumulative delta-absorbed weights "
                "(trend included), Q estimated from sign(delta)-weighted squared absorbed increments "
                "(local average, half-width ceil(sqrt L))")
    return ("linear ODE (SP eq. 14): dH/dt = L delta (A(t) H + b(t)), A(t), b(t) the trained "
            "weights linearly interpolated between t_k = k/L")


def _pick(v, seed: int) -> Optional[float]:
    if v is None:
        return None
    try:
        return float(v[seed])
    except (TypeError, IndexError, ValueError):
        return None


def _sup(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sup_k |a_k - b_k| per input: (B, L+1, d) -> (B,)."""
    return np.sqrt(((a - b) ** 2).sum(-1)).max(-1)


def _surrogate_errors(h: np.ndarray, H: np.ndarray, extra: dict) -> dict[str, Any]:
    """ReLU: the surrogate network against the limit and the ReLU network, and the eps scan."""
    hs, H0 = extra["surrogate_network"], extra["limit_without_correction"]
    return {
        "surrogate": SURROGATE["name"],
        "surrogate_network_sup_error": _sup(hs, H).tolist(),
        "relu_vs_surrogate_network_sup_error": _sup(h, hs).tolist(),
        "surrogate_network_vs_limit_without_correction": _sup(hs, H0).tolist(),
        "surrogate_eps_scan": [
            dict(eps=e, relu_network_vs_limit=float(_sup(h, He).mean()),
                 surrogate_network_vs_limit=float(_sup(hse, He).mean()),
                 relu_vs_surrogate_network=float(_sup(h, hse).mean()))
            for e, He, hse in zip(SURROGATE_EPS, extra["limits_eps"], extra["surrogate_networks_eps"])],
    }


def _test_inputs(run: Run, n: int) -> np.ndarray:
    """The first ``n`` test inputs of the run; an imported run has none, so synthetic probes."""
    if not run.has_data:
        return weights.probe_inputs(run.config, n)
    return np.asarray(run.dataset().x_test)[:n]


def run(run: Run, depth: int, *, seed: int = 0, n_inputs: int = 8, out=None, progress: bool = True) -> dict:
    """Trained network of a run (a :class:`~resnet_limits.run.Run`, or a folder to open as one)
    vs its deep limit on the first ``n_inputs`` test inputs.

    Writes ``RUN_DIR/limits/L{depth:05d}.json`` (the returned dict) and ``.png`` (or into ``out``).
    ``progress`` is accepted for symmetry with the other studies (one jitted solve, no bar).
    One-line :class:`UsageError` for a depth that is not finished, a seed not in the run or
    ``n_inputs`` < 1; :class:`DamagedRunError` for a damaged depth.
    """
    run = run if isinstance(run, Run) else Run.open(run)
    if n_inputs < 1:
        raise UsageError(f"n_inputs must be >= 1, got {n_inputs}")
    network = run.network(depth, seed)
    metrics = run.metrics(depth)
    run_dir = run.path
    out_dir = output_folder(out if out is not None else run_dir / "limits")
    activation, delta_mode = run.config.activation, run.config.delta_mode
    t0 = time.time()
    x_test = _test_inputs(run, n_inputs)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), network)
        xs = jnp.asarray(x_test, jnp.float64)
        h, H, extra = jax.jit(lambda p, x: network_and_limit(p, x, activation, delta_mode))(params, xs)
        h, H = np.asarray(h), np.asarray(H)
        extra = {k: np.asarray(v) for k, v in extra.items()}
    err = _sup(h, H)
    move = _sup(h, h[:, :1])  # sup_k |h_k - x|
    res: dict[str, Any] = dict(
        run_dir=str(run_dir), depth=int(depth), seed=int(seed), activation=activation,
        delta_mode=delta_mode, limit=_limit_name(activation), n_inputs=int(xs.shape[0]),
        sup_error=err.tolist(), sup_error_mean=float(err.mean()), sup_error_max=float(err.max()),
        sup_displacement=move.tolist(),
        relative_sup_error=(err / np.maximum(move, 1e-300)).tolist(),
        output_error=np.sqrt(((h[:, -1] - H[:, -1]) ** 2).sum(-1)).tolist(),
        train_loss=_pick(metrics.get("train_loss"), seed), test_loss=_pick(metrics.get("test_loss"), seed),
    )
    if "surrogate_network" in extra:
        res.update(_surrogate_errors(h, H, extra))
    stem = out_dir / f"L{depth:05d}"
    fig = plotting.network_vs_limit(h, H, extra.get("surrogate_network"), res)
    res["figure"] = Path(plotting.save(fig, stem.with_suffix(".png"), dpi=130)).name
    res["seconds"] = time.time() - t0
    write_json(stem.with_suffix(".json"), res)
    return res


def format_trained_limits(result: dict) -> str:
    """The scalar entries of the result as indented JSON (what ``resnet-limits limits`` prints)."""
    return json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=1)
