"""Train the depths of a sweep into a run folder, shared with other processes (layer 2).

:func:`run_depths` is the same for every kind of sweep: the caller gives the configuration,
the depths and ``train_one(L) -> (arrays, metrics)``; this module does the folder, the checks
of finished depths, the claims and the waiting.

Several processes may run the same sweep on one folder (cluster jobs writing to a shared
disk): each depth is trained by the process that claims it (``claims.py``). A process that
has nothing left to claim **waits** for the depths that others are training (polling their
files; it takes over a depth whose process died), so that when it returns the whole grid is
finished; with ``wait=False`` it returns at once and reports those depths in
:attr:`SweepReport.elsewhere` (a rerun finishes or waits for them).

The depths are taken in the order given, or longest first (``order="longest-first"``: the
convolutional sweep, whose deepest network is the critical path of a depth-parallel run).

In a multi-process JAX run (``resnet_limits.distributed``: ``jax.distributed`` over several
hosts), the processes train every depth together and only process 0 touches the folder: it
claims, checks and saves as above and tells the others which depth comes next; the others
never claim or write anything there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np
from tqdm import tqdm

from resnet_limits.config import SweepConfig
from resnet_limits.distributed import active_group
from resnet_limits.errors import UsageError
from resnet_limits.sweeps.claims import REFRESH_EVERY_S, STALE_AFTER_S, ClaimBook, Owner
from resnet_limits.sweeps.folder import (
    check_folder, depth_paths, depth_problem, finished_depths, record_config, save_depth, set_aside,
)

__all__ = ["ORDERS", "SweepReport", "TrainOne", "order_depths", "pending_depths", "run_depths"]

TrainOne = Callable[[int], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]
POLL_S = 1.0
#: The orders in which a process takes the depths it trains: as given, or the deepest first.
ORDERS = ("given", "longest-first")


class SweepReport(NamedTuple):
    """What :func:`run_depths` did: the folder's ``finished`` depths, those ``trained`` by this
    process, those it found ``damaged`` (and trained again), and those still being trained by
    other processes when it returned (``elsewhere``: depth -> "host:pid"; empty when waiting)."""

    finished: list[int]
    trained: list[int]
    damaged: list[int]
    elsewhere: dict[int, str]


def _stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def order_depths(depths: Sequence[int], order: str = "given") -> list[int]:
    """``depths`` in the order a process takes them (:data:`ORDERS`)."""
    if order not in ORDERS:
        raise UsageError(f"unknown order of depths {order!r}; choose from {', '.join(ORDERS)}")
    return sorted(depths, reverse=True) if order == "longest-first" else list(depths)


def pending_depths(out: Path, depths: Sequence[int]) -> list[int]:
    """Depths not finished, or finished but damaged."""
    return [L for L in depths if not depth_paths(out, L)[1].exists() or depth_problem(out, L)]


class _Run:
    """One process's part of a sweep: claim, check, train and save depths."""

    def __init__(self, out: Path, train_one: TrainOne, book: ClaimBook, log, bar,
                 on_saved: Optional[Callable[[int], None]] = None):
        self.out, self.train_one, self.book, self.log, self.bar = out, train_one, book, log, bar
        self.on_saved = on_saved
        self.trained: list[int] = []
        self.damaged: list[int] = []

    def pass_over(self, depths: Sequence[int]) -> dict[int, Owner]:
        """Train every depth of ``depths`` that no live process holds; returns the others."""
        elsewhere = {}
        for L in depths:
            claim = self.book.claim(f"L{L:05d}")
            if not claim.held:
                elsewhere[L] = claim.owner
                continue
            try:
                if claim.taken_from is not None:
                    self.log(f"depth {L}: taking over from {claim.taken_from} (its process is gone)")
                self._train_if_needed(L)
            finally:
                self.book.release(f"L{L:05d}")
        return elsewhere

    def _train_if_needed(self, L: int) -> None:
        if depth_paths(self.out, L)[1].exists():
            problem = depth_problem(self.out, L)
            if problem is None:
                return  # finished by another process meanwhile
            set_aside(self.out, L)
            self.damaged.append(L)
            self.log(f"warning: {problem}; moved the files of depth {L} aside (*.damaged) and training it again")
        self.bar.set_postfix(L=L)
        t0 = time.perf_counter()
        arrays, metrics = self.train_one(L)
        metrics = dict(metrics, seconds=round(time.perf_counter() - t0, 3))
        save_depth(self.out, L, arrays, metrics)
        if self.on_saved is not None:
            self.on_saved(L)
        self.trained.append(L)
        self.bar.update()


def run_depths(
    out,
    cfg: SweepConfig,
    todo: Sequence[int],
    train_one: TrainOne,
    *,
    setup: Optional[Callable[[], Optional[SweepConfig]]] = None,
    on_saved: Optional[Callable[[int], None]] = None,
    wait: bool = True,
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
    order: str = "given",
    poll: float = POLL_S,
    refresh_every: float = REFRESH_EVERY_S,
    stale_after: float = STALE_AFTER_S,
) -> SweepReport:
    """Train every depth of ``todo`` that ``out`` lacks (resumable, shareable by processes).

    1. Refuses (:class:`UsageError`) an ``out`` that is a file, cannot be created, is a folder
       of something else, or a run of a configuration differing from ``cfg`` in anything but
       :data:`~resnet_limits.config.FREE_FIELDS`; a damaged ``config.json`` is a
       :class:`DamagedRunError`.
    2. If some depth needs training, calls ``setup()`` (load the data; it may return ``cfg``
       completed, e.g. with ``data_info``), and only then writes ``config.json`` (``cfg`` with the
       union of all depth grids asked of the folder), so a failing setup leaves no folder behind.
    3. For each depth it claims: a finished depth whose files fail their checksum is moved
       aside (one ``log`` line) and trained again; ``train_one(L)`` gives the arrays and metrics
       that are saved (``seconds``, ``sha256``, ``host`` and ``pid`` added). Finished intact
       depths are never rewritten. ``on_saved(L)`` runs once depth L's files are written
       (e.g. to remove its training checkpoints).
    4. Waits (``wait``) for depths other processes hold, polling every ``poll`` seconds.

    Depths are taken in ``order`` (:data:`ORDERS`). Claims of this process are released on any
    exit, Ctrl-C included. In a multi-process JAX run (:func:`resnet_limits.distributed.active_group`)
    process 0 does all of the above, without waiting for depths other jobs hold (as ``wait=False``),
    and the other processes only train the depths it names (their report: those depths, as
    ``trained``; nothing else).
    """
    group = active_group()
    if group is not None and not group.leader:
        return SweepReport([], group.follow(train_one, setup), [], {})
    order_depths((), order)  # one line for an unknown order, before any work
    run = dict(setup=setup, on_saved=on_saved, progress=progress, log=log or _stderr, order=order, poll=poll,
               refresh_every=refresh_every, stale_after=stale_after)
    if group is None:
        return _run_depths(Path(out), cfg, todo, train_one, wait=wait, **run)
    with group.lead(train_one) as announced:  # the other processes stop too if this one fails here
        return _run_depths(Path(out), cfg, todo, announced, wait=False, **run)


def _run_depths(out: Path, cfg: SweepConfig, todo: Sequence[int], train_one: TrainOne, *, setup, on_saved,
                wait: bool, progress: bool, log, order: str, poll: float, refresh_every: float,
                stale_after: float) -> SweepReport:
    """:func:`run_depths` in one process."""
    check_folder(out, cfg)
    pending = order_depths(pending_depths(out, todo), order)
    if pending and setup is not None:
        cfg = setup() or cfg
    record_config(out, cfg)
    with ClaimBook(out / "depths", refresh_every=refresh_every, stale_after=stale_after) as book, tqdm(
        total=len(pending), desc=f"{cfg.preset} depths", unit="depth", disable=not progress
    ) as bar:
        run = _Run(out, train_one, book, log, bar, on_saved)
        elsewhere, waited = run.pass_over(pending), False
        while True:
            still = set(pending_depths(out, list(elsewhere)))
            elsewhere = {L: o for L, o in elsewhere.items() if L in still}
            if not (elsewhere and wait):
                break
            if not waited:
                log(f"waiting for depths {', '.join(map(str, elsewhere))} being trained by "
                    f"{', '.join(sorted({str(o) for o in elsewhere.values()}))}")
                waited = True
            time.sleep(poll)
            elsewhere = run.pass_over(list(elsewhere))
    return SweepReport(finished_depths(out), run.trained, run.damaged, {L: str(o) for L, o in elsewhere.items()})
