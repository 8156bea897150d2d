"""A finished (or growing) run folder, opened once: :class:`Run` (layer 2).

Every command and study that reads a run folder takes a :class:`Run`; none opens the folder
again. ``Run.open(path)`` reads ``config.json`` once (a :class:`~resnet_limits.config.SweepConfig`)
and the metrics (``depths/L*.json``) of every finished depth once; ``run.load(L)`` reads a depth's
weight file, checks it against its recorded sha256 and decodes it, once.

Loaded depths are **cached** (least recently used first out, up to ``cache_bytes``, 1 GiB by
default): the analysis makes three passes over the depths (norms, trend, denoising), and with
the cache each weight file is read and hashed once per command. A fully-connected sweep to
L = 10,321 with 5 seeds holds about 100 MB of weights, so it is read once; a run larger than the
budget (the convolutional ResNet: up to ~170 MB a depth) is **streamed**: a depth that fell out
of the cache is read and checked again when asked for, which costs a second read instead of
holding every depth in memory.

``run.write_json(name, obj)`` is the package's one JSON writer for a run (atomic, NaN/Inf ->
null, :func:`~resnet_limits.sweeps.folder.write_json`); ``run.figures`` is where figures go.
"""

from __future__ import annotations

import collections
import io
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from resnet_limits.config import CONV, SweepConfig
from resnet_limits.data import Dataset
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.models import ResNetParams
from resnet_limits.sweeps.claims import live_claims
from resnet_limits.sweeps.conv import unflatten_params
from resnet_limits.sweeps.fc import dataset_for, params_of
from resnet_limits.sweeps.folder import check_bytes, depth_paths, finished_depths, load_config, read_metrics, write_json

__all__ = ["DEFAULT_CACHE_BYTES", "Depth", "Run"]

DEFAULT_CACHE_BYTES = 1 << 30


class Depth(NamedTuple):
    """One finished depth: its arrays (all seeds) and its recorded metrics."""

    arrays: dict[str, np.ndarray]
    metrics: dict[str, Any]


class Run:
    """A run folder: its configuration, finished depths, weights, JSON and figures (module docstring).

    Attributes: ``path``; ``config`` (:class:`SweepConfig`); ``depths`` (finished depths whose
    metrics could be read, sorted; their weights are checked when loaded); ``damaged`` (depth ->
    one line, depths whose files were found damaged, at open or by :meth:`load`); ``in_progress``
    (depth -> ``host:pid`` of a live process training it now); ``reads`` (depth -> how many
    times its weight file was read, for tests and benchmarks).
    """

    def __init__(self, path: Path, config: SweepConfig, metrics: Mapping[int, dict], damaged: Mapping[int, str],
                 in_progress: Mapping[int, str], cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path = Path(path)
        self.config = config
        self._metrics = dict(metrics)
        self.damaged: dict[int, str] = dict(damaged)
        self.in_progress = dict(in_progress)
        self.reads: collections.Counter = collections.Counter()
        self._cache: collections.OrderedDict[int, dict[str, np.ndarray]] = collections.OrderedDict()
        self._cache_bytes = int(cache_bytes)
        self._dataset: Optional[Dataset] = None

    # ------------------------------------------------------------- opening -----------
    @classmethod
    def open(cls, path, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> "Run":
        """Open and validate a run folder: its configuration and each finished depth's metrics.

        :class:`UsageError` (one line) for a path that is not a run folder;
        :class:`DamagedRunError` for an unreadable ``config.json``. A depth whose metrics cannot
        be read, or whose weight file is missing, is in ``damaged``, not in ``depths``.
        """
        path = Path(path)
        config = load_config(path)
        metrics, damaged = {}, {}
        for L in finished_depths(path):
            npz, js = depth_paths(path, L)
            try:
                m = read_metrics(js)
            except DamagedRunError as e:
                damaged[L] = str(e)
                continue
            if not npz.is_file():
                damaged[L] = f"{npz} is missing; depth {L} is damaged, rerun the sweep to train it again"
                continue
            metrics[L] = m
        in_progress = {L: who for L, who in live_claims(path / "depths").items() if L not in metrics}
        return cls(path, config, metrics, damaged, in_progress, cache_bytes)

    @property
    def depths(self) -> list[int]:
        """Finished depths not (yet) found damaged, sorted."""
        return sorted(L for L in self._metrics if L not in self.damaged)

    @property
    def figures(self) -> Path:
        """The folder of the run's figures (``RUN_DIR/figures``; made when one is saved)."""
        return self.path / "figures"

    @property
    def is_conv(self) -> bool:
        return self.config.kind == CONV

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {self.config.preset}, {len(self.depths)} depths)"

    # ------------------------------------------------------------- depths ------------
    def _require(self, depth: int) -> None:
        if depth in self.damaged:
            raise DamagedRunError(self.damaged[depth])
        if depth not in self._metrics:
            raise UsageError(f"depth {depth} is not finished in {self.path} (finished: {self.depths})")

    def metrics(self, depth: int) -> dict[str, Any]:
        """The recorded metrics of a finished depth (read at :meth:`open`)."""
        self._require(depth)
        return self._metrics[depth]

    def load(self, depth: int) -> Depth:
        """The arrays and metrics of a finished depth, its weight file read and checked against
        its sha256 on first use and then served from the cache (module docstring).

        :class:`UsageError` if the depth is not finished; :class:`DamagedRunError` (naming the
        file; the depth is then in ``damaged``) if its weights are unreadable or fail the check.
        """
        self._require(depth)
        if depth in self._cache:
            self._cache.move_to_end(depth)
            return Depth(self._cache[depth], self._metrics[depth])
        npz, js = depth_paths(self.path, depth)
        self.reads[depth] += 1
        try:
            data = check_bytes(npz, js, self._metrics[depth])
            with np.load(io.BytesIO(data)) as z:
                arrays = {k: z[k] for k in z.files}
        except DamagedRunError as e:
            self.damaged[depth] = str(e)
            raise
        except Exception as e:  # noqa: BLE001 (a matching checksum, yet np.load fails)
            self.damaged[depth] = (f"{npz} is unreadable ({type(e).__name__}: {e}); depth {depth} is damaged, "
                                   "rerun the sweep to train it again")
            raise DamagedRunError(self.damaged[depth]) from None
        self._remember(depth, arrays)
        return Depth(arrays, self._metrics[depth])

    def _remember(self, depth: int, arrays: dict[str, np.ndarray]) -> None:
        self._cache[depth] = arrays
        size = lambda a: sum(v.nbytes for v in a.values())  # noqa: E731
        while len(self._cache) > 1 and sum(size(a) for a in self._cache.values()) > self._cache_bytes:
            self._cache.popitem(last=False)

    def params(self, depth: int):
        """The networks of a depth: :class:`ResNetParams` with a leading seed axis (fully
        connected), or the nested parameter dict (convolutional)."""
        arrays = self.load(depth).arrays
        return unflatten_params(arrays) if self.is_conv else params_of(arrays)

    def network(self, depth: int, seed: int) -> ResNetParams:
        """One seed's fully-connected network of a depth; one line if the seed is not in the run."""
        p = self.params(depth)
        n = int(np.shape(p.A)[0])
        if not 0 <= seed < n:
            raise UsageError(f"seed must be in 0..{n - 1} (the run has {n} networks at depth {depth}), got {seed}")
        return ResNetParams(p.A[seed], p.b[seed], None if p.delta is None else p.delta[seed])

    # ------------------------------------------------------------- data and output ---
    @property
    def has_data(self) -> bool:
        """Whether the run has training data (imported weights come without)."""
        return self.config.dataset in ("synthetic", "mnist")

    def dataset(self) -> Dataset:
        """The run's exact training and test data, made (or read) once."""
        if not self.has_data:
            raise UsageError(f"{self.path} holds imported weights: it has no data set of its own")
        if self._dataset is None:
            self._dataset = dataset_for(self.config)
        return self._dataset

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``RUN_DIR/name`` (atomic; NaN/Inf -> null); returns its path."""
        return write_json(self.path / name, obj)
