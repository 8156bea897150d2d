"""The analysis of a convolutional sweep folder (SP §3.2, Figs 7-8, App. C Table 5):
``RUN_DIR`` -> ``analysis.json``, ``table5.md`` and ``figures/fig7_conv_norms.png``,
``figures/fig8_conv_hypotheses.png``.

Per depth: the operator norm of every Delta_k and A_k on its input's size, and of the
increments between consecutive blocks of equal shape (:func:`resnet_limits.scaling.conv_block_norms`);
then alpha and beta from the maximum norms against L (SP Fig. 7), the root sum of squares and
the alpha- / beta-scaled norm of increments (SP Fig. 8), and the final test error (Table 5).

The norms' SVDs run in LAPACK with its BLAS held to one thread (:func:`single_threaded_lapack`):
on a machine whose cores are busy, OpenBLAS's own threads made them 10-50 times slower
(``benchmarks/conv_norms.py``), and even on an idle 2-core machine one thread was no slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from tqdm import tqdm

from resnet_limits.conv import block_kernels
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.run import Run
from resnet_limits.scaling import CONV_KERNELS, PAPER_CONV, PAPER_TABLE5, conv_block_norms, conv_exponents, conv_table1
from resnet_limits.sweeps.folder import json_ready, write_text

__all__ = ["analyze_conv_run", "format_conv_analysis", "single_threaded_lapack", "table5_markdown"]

#: The exponent that scales each kernel family's increments (SP Fig. 8).
SCALED_BY = {"Delta": "alpha", "A": "beta"}


def analyze_conv_run(run: Run, *, progress: bool = True, figures: bool = True) -> dict:
    """SP §3.2 on a ``conv-cifar10`` run folder; writes and returns ``analysis.json``'s dict.

    A damaged depth is left out (``result["left_out"]``: depth -> one line); a folder with no
    intact finished depth is a :class:`UsageError`. alpha and beta need two depths (else None).
    """
    t0 = time.perf_counter()
    run_dir, cfg = run.path, run.config
    per_depth, left_out = _read_depths(run, progress)
    if not per_depth:
        extra = f" (damaged: {', '.join(left_out)})" if left_out else ""
        raise UsageError(f"{run_dir} has no intact finished depth{extra}; run the sweep first")
    depths = sorted(per_depth)
    exps = conv_exponents(depths, [per_depth[L]["Delta"]["norms"].max() for L in depths],
                          [per_depth[L]["A"]["norms"].max() for L in depths])
    for L in depths:
        for name, key in SCALED_BY.items():
            e = per_depth[L][name]
            e.update(conv_table1(e["norms"], e["increments"], exps[key]))
    result = {
        "kind": "conv", "run_dir": str(run_dir), "preset": cfg.preset, "dataset": cfg.dataset,
        "data_info": cfg.data_info, "epochs": cfg.epochs, "width": cfg.width,
        "depths": depths, "left_out": left_out, **exps, "paper": dict(PAPER_CONV),
        "norms_on": {name: f"the block's {where.replace('_hw', '')} size" for name, where in CONV_KERNELS.items()},
        "per_depth": {str(L): per_depth[L] for L in depths},
        "table5": _table5(per_depth, depths), "figures": [],
    }
    result = json_ready(result)
    write_text(run_dir / "table5.md", table5_markdown(result))
    if figures:
        from resnet_limits import plotting

        result["figures"] = plotting.conv_figures(result, run.figures)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    run.write_json("analysis.json", result)
    return result


def _read_depths(run: Run, progress: bool) -> tuple[dict[int, dict], dict[str, str]]:
    """Per intact depth its kernels' norms and increments, test error and parameter count."""
    per_depth = {}
    left_out = {str(L): " ".join(m.split()) for L, m in run.damaged.items()}
    for L in tqdm(run.depths, desc="analyse: conv norms", unit="depth", disable=not progress):
        try:
            params, metrics = run.params(L), run.metrics(L)
        except DamagedRunError as e:
            left_out[str(L)] = " ".join(str(e).split())
            continue
        with single_threaded_lapack():
            fam = conv_block_norms(block_kernels(params))
        per_depth[L] = {**fam, "test_error": metrics.get("test_error"), "parameters": metrics.get("parameters"),
                        "epochs": metrics.get("epochs")}
    return per_depth, left_out


#: (get, set) thread-count functions of the OpenBLAS builds that SciPy ships or links, whose
#: LAPACK jaxlib calls on CPU.
_OPENBLAS_THREADS = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                     ("openblas_get_num_threads", "openblas_set_num_threads"))


@contextlib.contextmanager
def single_threaded_lapack() -> Iterator[bool]:
    """Hold the BLAS under jaxlib's CPU LAPACK (SciPy's OpenBLAS) to one thread inside the block,
    then restore its thread count; yields whether it found one to hold (else changes nothing).

    jaxlib calls the LAPACK that ``scipy.linalg.cython_lapack`` exports; its OpenBLAS starts a
    thread per core for each call. For the small batched SVDs of the spectral norms those
    threads only contend, with each other and with other processes.
    """
    try:
        from scipy.linalg import cython_lapack

        lib = ctypes.CDLL(cython_lapack.__file__)  # symbol look-ups also search its OpenBLAS
    except (ImportError, OSError):
        yield False
        return
    for get_name, set_name in _OPENBLAS_THREADS:
        get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if get is not None and put is not None:
            break
    else:
        yield False
        return
    before = int(get())
    put(1)
    try:
        yield True
    finally:
        put(before)


def _table5(per_depth: Mapping[int, Mapping[str, Any]], depths: Sequence[int]) -> dict[str, Any]:
    """SP Table 5: final test error (%) per depth, beside the paper's."""
    err = [per_depth[L]["test_error"] for L in depths]
    return {"depths": list(depths), "test_error_percent": [None if e is None else 100.0 * e for e in err],
            "paper_percent": [PAPER_TABLE5.get(L) for L in depths]}


def table5_markdown(result: Mapping[str, Any]) -> str:
    """``table5.md``: one row per depth, ours beside the paper's (SP App. C, Table 5)."""
    t = result["table5"]
    info = result.get("data_info") or {}
    lines = [f"Test error in % on {info.get('dataset', result.get('dataset'))} per depth L after "
             f"{result.get('epochs')} epochs (SP Table 5; data: {info.get('split', '-')})", "",
             "| L | test error (%) | paper (%) |", "|---:|---:|---:|"]
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for L, e, p in zip(t["depths"], t["test_error_percent"], t["paper_percent"]):
        lines.append(f"| {L} | {f(e)} | {f(p)} |")
    return "\n".join(lines) + "\n"


def format_conv_analysis(result: Mapping[str, Any]) -> str:
    """What ``resnet-limits analyze`` prints for a convolutional run."""
    r = result
    f = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    pm = lambda k: f(r.get(k)) + (f" ± {r[k + '_stderr']:.2g}" if r.get(k + "_stderr") is not None else "")  # noqa: E731
    lines = [f"run {r['run_dir']}: {r.get('preset')} ({(r.get('data_info') or {}).get('split', r.get('dataset'))})",
             f"alpha (max_k ||Delta_k|| ~ L^-alpha) = {pm('alpha')}   paper {r['paper']['alpha']}",
             f"beta  (max_k ||A_k|| ~ L^-beta)      = {pm('beta')}   paper {r['paper']['beta']}", "",
             f"{'L':>5}{'max|Δ|':>9}{'rss Δ':>9}{'α-incr Δ':>10}{'max|A|':>9}{'rss A':>9}{'β-incr A':>10}"
             f"{'test err %':>12}"]
    for L, e in zip(r["depths"], r["table5"]["test_error_percent"]):
        d = r["per_depth"][str(L)]
        D, A = d["Delta"], d["A"]
        lines.append(f"{L:>5}{f(D['max_norm']):>9}{f(D['rss']):>9}{f(D.get('scaled_increment')):>10}"
                     f"{f(A['max_norm']):>9}{f(A['rss']):>9}{f(A.get('scaled_increment')):>10}{f(e):>12}")
    if r.get("figures"):
        lines += ["", f"figures: {', '.join(Path(p).name for p in r['figures'])}; table: table5.md"]
    return "\n".join(lines)
