"""Import of fully-connected ResNets trained elsewhere into a run folder (layer 2).

A network of SP eq. 1, ``h_{k+1} = h_k + delta_k sigma(A_k h_k + b_k)``, trained by other code
becomes a run folder that ``analyze`` and ``limits`` read like a sweep of ours (``sweeps/folder.py``
format: ``config.json`` + ``depths/L00003.{npz,json}`` with sha256). Sources:

* ``.npz`` files with ``A`` (L, d, d), ``b`` (L, d) and optionally ``delta`` (() or (L,)), one
  network per file; ``row_convention=True`` for networks written as ``h @ A_k`` (A is transposed);
* the authors' PyTorch output (``scaling_experiments.py`` of the SP code): per-depth folders
  ``depth_003/weights/{A,b,C}.p``, lists of tensors saved with ``torch.save``, used as
  ``sigma(h @ A_k + b_k)`` (row convention); ``C.p`` is one tensor of shape (1,) for a shared
  delta (used as ``|delta|``, like ours) or a list of L such tensors for per-layer deltas, and
  is absent when the network has no delta. Reading them needs PyTorch (``resnet-limits[torch]``);
* Python arrays, through :func:`from_arrays`.

The depth of a network is the length of its arrays; several networks of one depth are stacked
as the "seeds" of that depth. An imported run has no training data: its ``config.json`` says
``"dataset": "imported"``, and :func:`probe_inputs` gives the inputs on which to compare a
network with its limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from resnet_limits.config import SweepConfig
from resnet_limits.errors import UsageError
from resnet_limits.models import ACTIVATIONS, DELTA_MODES, ResNetParams
from resnet_limits.sweeps.folder import record_config, save_depth

__all__ = [
    "IMPORTED",
    "NonFiniteError",
    "TORCH_HINT",
    "find_sources",
    "from_arrays",
    "import_weights",
    "probe_inputs",
    "read_npz",
    "read_source",
    "read_torch",
    "stack_networks",
    "write_run",
]

IMPORTED = "imported"  # the ``dataset`` of an imported run's config.json
TORCH_HINT = 'reading the authors\' .p files needs PyTorch: pip install "resnet-limits[torch]"'
_N_PROBE = 256  # probe inputs of an imported run (its ``n_test``)
_TORCH_FILES = {"A": "A.p", "b": "b.p", "delta": "C.p"}  # the authors' file of each tensor


# ------------------------------------------------------------------ arrays ----------

def _float_array(x: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001 (ragged lists, objects numpy cannot hold)
        raise UsageError(f"{what} is not an array ({type(e).__name__}: {e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise UsageError(f"{what} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.result_type(a.dtype, np.float32), copy=False)


def _stack_layers(xs: Any, what: str) -> np.ndarray:
    """One array with the layers on axis 0, from an array or a sequence of per-layer arrays."""
    if isinstance(xs, (list, tuple)):
        if not xs:
            raise UsageError(f"{what} has no layers")
        parts = [_float_array(x, f"{what}[{k}]") for k, x in enumerate(xs)]
        shapes = {p.shape for p in parts}
        if len(shapes) > 1:
            raise UsageError(f"the layers of {what} have different shapes: {sorted(shapes)}")
        return np.stack(parts)
    return _float_array(xs, what)


def _delta_array(delta: Any, L: int) -> Optional[np.ndarray]:
    """delta as () (shared) or (L,) (per layer); a list is per layer, an array of one value shared."""
    if delta is None:
        return None
    per_layer = isinstance(delta, (list, tuple))
    d = _stack_layers(delta, "delta") if per_layer else _float_array(delta, "delta")
    if per_layer and d.size == L:
        return d.reshape(L)
    if not per_layer and d.size == 1:
        return d.reshape(())
    if not per_layer and d.shape in ((L,), (L, 1)):
        return d.reshape(L)
    raise UsageError(f"delta must be one value or one per layer (L={L}), got shape {d.shape}")


def from_arrays(A: Any, b: Any, delta: Any = None, *, row_convention: bool = False) -> ResNetParams:
    """A network of SP eq. 1 from per-layer arrays: ``A`` (L, d, d) or a list of L (d, d),
    ``b`` (L, d) or a list of L (d,) or (1, d), ``delta`` None, one value (shared) or L values.

    With ``row_convention`` the network computes ``sigma(h @ A_k + b_k)`` (as PyTorch code
    usually does) and ``A_k`` is transposed to the column convention ``sigma(A_k h + b_k)`` of
    SP eq. 1. Returns numpy arrays (A, b float32 or wider, as given); :class:`UsageError` for
    any shape that is not a network, :class:`NonFiniteError` (one) for NaN or Inf weights.
    """
    A = _stack_layers(A, "A")
    b = _stack_layers(b, "b")
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1 or A.shape[1] < 1:
        raise UsageError(f"A must have shape (L, d, d), got {A.shape}")
    L, d = A.shape[0], A.shape[1]
    if b.shape[0] != L or b.size != L * d or b.ndim not in (2, 3):
        raise UsageError(f"b must have shape (L, d) = ({L}, {d}) to match A, got {b.shape}")
    if row_convention:
        A = np.swapaxes(A, 1, 2)
    net = ResNetParams(np.ascontiguousarray(A), b.reshape(L, d), _delta_array(delta, L))
    _check_finite(net, f"the network of depth {L}")
    return net


class NonFiniteError(UsageError):
    """A network's weights hold NaN or Inf; ``tensor`` is the one named (``A``, ``b`` or ``delta``),
    so that a reader of per-tensor files can name the file."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor


def _check_finite(net: ResNetParams, network: str) -> None:
    """:class:`NonFiniteError` naming the tensor and the layer k (0..L-1) of the first NaN or Inf
    of one network (A (L, d, d), b (L, d), delta () or (L,)); ``network`` says which network."""
    for name in ("A", "b", "delta"):
        x = getattr(net, name)
        if x is None:
            continue
        x = np.asarray(x)
        bad = ~np.isfinite(x)
        if not bad.any():
            continue
        first = tuple(np.argwhere(bad)[0])
        value = float(x[first])
        where = (f"{name} has a non-finite value ({value}) in layer {first[0]} of {network}" if x.ndim
                 else f"{name}, shared by all layers of {network}, is not finite ({value})")
        count = int(bad.sum())
        more = f" ({count} non-finite values in all)" if count > 1 else ""
        raise NonFiniteError(f"{where}{more}; a network with NaN or Inf weights cannot be imported: "
                             "fix it or leave it out", name)


def stack_networks(nets: Sequence[ResNetParams]) -> ResNetParams:
    """Networks of one depth stacked on a leading seed axis (the layout of a sweep's depth file)."""
    shapes = {(n.A.shape, None if n.delta is None else np.shape(n.delta)) for n in nets}
    if len(shapes) != 1:
        raise UsageError(f"the networks of depth {nets[0].depth} differ in shape (A, delta): {sorted(shapes, key=str)}")
    delta = None if nets[0].delta is None else np.stack([np.asarray(n.delta) for n in nets])
    return ResNetParams(np.stack([np.asarray(n.A) for n in nets]), np.stack([np.asarray(n.b) for n in nets]), delta)


# ------------------------------------------------------------------ sources ---------

def read_npz(path, *, row_convention: bool = False) -> ResNetParams:
    """One network from a ``.npz`` with ``A`` (L, d, d), ``b`` (L, d), optional ``delta``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 (not a zip, truncated, pickled objects)
        raise UsageError(f"cannot read {path} as .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in ("A", "b") if k not in arrays]
    if missing:
        raise UsageError(f"{path} has no array {' or '.join(missing)} (it has: {', '.join(arrays) or 'nothing'})")
    try:
        return from_arrays(arrays["A"], arrays["b"], arrays.get("delta"), row_convention=row_convention)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None


def _torch_load(path: Path) -> Any:
    """``torch.load`` of one authors' file (tensors only: ``weights_only``), as numpy arrays."""
    try:
        import torch
    except ImportError:
        raise UsageError(TORCH_HINT) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (damaged file, or a pickle that is not tensors)
        raise UsageError(f"cannot read {path} with torch.load ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    as_np = lambda t: t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t  # noqa: E731
    return [as_np(t) for t in obj] if isinstance(obj, (list, tuple)) else as_np(obj)


def read_torch(folder) -> ResNetParams:
    """One network from the authors' ``weights/`` folder (``A.p``, ``b.p``, optional ``C.p``),
    or a depth folder that holds one. Their layers compute ``sigma(h @ A_k + b_k)``: A is
    transposed to SP eq. 1's convention. A ``C.p`` that is one tensor is a shared delta, a
    list of L tensors per-layer deltas."""
    folder = Path(folder)
    w = folder / "weights" if (folder / "weights" / "A.p").is_file() else folder
    for name in ("A.p", "b.p"):
        if not (w / name).is_file():
            raise UsageError(f"{w} has no {name} (the authors' layout is DEPTH_FOLDER/weights/A.p, b.p, C.p)")
    A, b = _torch_load(w / "A.p"), _torch_load(w / "b.p")
    delta = _torch_load(w / "C.p") if (w / "C.p").is_file() else None
    try:
        return from_arrays(A, b, delta, row_convention=True)
    except NonFiniteError as e:  # name the file that holds the tensor
        raise UsageError(f"{w / _TORCH_FILES[e.tensor]}: {e}") from None
    except UsageError as e:
        raise UsageError(f"{w}: {e}") from None


def _is_torch_folder(p: Path) -> bool:
    return (p / "A.p").is_file() or (p / "weights" / "A.p").is_file()


def find_sources(paths: Sequence) -> list[Path]:
    """Every network named by ``paths``: ``.npz`` files, the authors' depth (or ``weights/``)
    folders, and folders holding such files or depth folders (their experiment folder), sorted
    within each folder. :class:`UsageError` for a path that does not exist or names no network."""
    if not paths:
        raise UsageError("no source given: name .npz files or folders of the authors' weights")
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p} does not exist")
        if p.is_file():
            if p.suffix != ".npz":
                raise UsageError(f"{p} is neither a .npz file nor a folder of the authors' weights/A.p, b.p, C.p")
            found.append(p)
        elif _is_torch_folder(p):
            found.append(p)
        else:
            inside = sorted(q for q in p.iterdir() if (q.is_file() and q.suffix == ".npz")
                            or (q.is_dir() and _is_torch_folder(q)))
            if not inside:
                raise UsageError(f"{p} holds no .npz file and no folder with weights/A.p")
            found.extend(inside)
    return found


def read_source(path, *, row_convention: bool = False) -> ResNetParams:
    """The network of one source of :func:`find_sources` (``row_convention`` applies to ``.npz``
    only: the authors' ``.p`` files are always in the row convention)."""
    path = Path(path)
    return read_npz(path, row_convention=row_convention) if path.is_file() else read_torch(path)


# ------------------------------------------------------------------ the run folder ---

def _default_delta_mode(nets: Sequence[ResNetParams]) -> str:
    """none without delta, shared for one value, per-layer for one per layer; all must agree."""
    modes = {"none" if n.delta is None else "shared" if np.ndim(n.delta) == 0 else "per-layer" for n in nets}
    if len(modes) > 1:
        raise UsageError(f"the networks mix delta kinds ({', '.join(sorted(modes))}); choose one with --delta-mode")
    return modes.pop()


def _with_delta_mode(net: ResNetParams, delta_mode: str, where: str) -> ResNetParams:
    """``net`` with the delta that ``delta_mode`` reads; a shared delta used per layer becomes
    |delta| at every layer (the same network: SP eq. 1 with a shared delta uses |delta|)."""
    kind = "no delta" if net.delta is None else "a shared delta" if np.ndim(net.delta) == 0 else "per-layer deltas"
    if delta_mode == "none" and net.delta is None:
        return net
    if delta_mode == "shared" and kind == "a shared delta":
        return net
    if delta_mode == "per-layer" and kind == "per-layer deltas":
        return net
    if delta_mode == "per-layer" and kind == "a shared delta":
        return net._replace(delta=np.full((net.depth,), np.abs(net.delta), np.asarray(net.delta).dtype))
    raise UsageError(f"{where} has {kind}, which delta mode {delta_mode!r} cannot use")


def _check_names(activation: str, delta_mode: str) -> None:
    if activation not in ACTIVATIONS:
        raise UsageError(f"unknown activation {activation!r}; choose from {', '.join(sorted(ACTIVATIONS))}")
    if delta_mode not in DELTA_MODES:
        raise UsageError(f"unknown delta mode {delta_mode!r}; choose from {', '.join(DELTA_MODES)}")


def write_run(
    out, networks: Mapping[int, ResNetParams], *, activation: str, delta_mode: str, source: Any,
    depth_sources: Optional[Mapping[int, Sequence[str]]] = None,
) -> Path:
    """Write ``networks`` (depth -> one network, or several stacked on a leading seed axis) as
    a run folder (``sweeps/folder.py`` format) and return its path.

    ``config.json`` holds ``dataset: "imported"``, ``activation``, ``delta_mode``, ``width``,
    ``seeds`` (the most networks of one depth), ``depths``, ``source`` (a list of strings) and
    ``n_test``/``data_seed`` for :func:`probe_inputs`. Each depth's ``.json`` records its
    ``seeds``, ``imported: true`` (no losses: nothing was trained here) and, if given,
    ``depth_sources[L]`` (where each of its networks came from) as ``source``. An existing folder
    must be empty or an import with the same settings; :class:`UsageError` otherwise, and for
    weights with NaN or Inf (everything is checked before anything is written).
    """
    _check_names(activation, delta_mode)
    if not networks:
        raise UsageError("no network to import")
    stacked: dict[int, ResNetParams] = {}
    for L, net in networks.items():
        net = net if np.ndim(net.A) == 4 else stack_networks([net])
        if np.shape(net.A)[1] != int(L):
            raise UsageError(f"the networks given for depth {L} have {np.shape(net.A)[1]} layers")
        want = {"none": None, "shared": 1, "per-layer": 2}[delta_mode]
        if (net.delta is None) != (want is None) or (want is not None and np.ndim(net.delta) != want):
            shape = None if net.delta is None else np.shape(net.delta)
            raise UsageError(f"the delta of depth {L} has shape {shape}, which delta mode {delta_mode!r} cannot use")
        names = list((depth_sources or {}).get(L) or ())
        for s, one in enumerate(zip(net.A, net.b, [None] * len(net.A) if net.delta is None else net.delta)):
            try:
                _check_finite(ResNetParams(*one), f"network {s} of depth {L}")
            except NonFiniteError as e:
                raise UsageError(f"{names[s]}: {e}" if s < len(names) else str(e)) from None
        stacked[int(L)] = net
    widths = sorted({int(np.shape(n.A)[-1]) for n in stacked.values()})
    if len(widths) > 1:
        raise UsageError(f"the networks have different widths {widths}; import each width into its own folder")
    sources = [str(source)] if isinstance(source, (str, Path)) else [str(s) for s in source]
    cfg = SweepConfig(
        preset=IMPORTED, dataset=IMPORTED, source=tuple(sources), activation=activation, delta_mode=delta_mode,
        width=widths[0], seeds=max(int(np.shape(n.A)[0]) for n in stacked.values()), n_test=_N_PROBE,
        data_seed=0, depths=tuple(sorted(stacked)),
    )
    out = Path(out)
    record_config(out, cfg)
    for L, net in sorted(stacked.items()):
        arrays = {"A": np.asarray(net.A), "b": np.asarray(net.b)}
        if net.delta is not None:
            arrays["delta"] = np.asarray(net.delta)
        metrics = {"depth": L, "seeds": int(arrays["A"].shape[0]), "imported": True}
        if depth_sources is not None and L in depth_sources:
            metrics["source"] = [str(s) for s in depth_sources[L]]
        save_depth(out, L, arrays, metrics)
    return out


def import_weights(
    sources: Sequence, out, *, activation: str = "tanh", delta_mode: Optional[str] = None,
    row_convention: bool = False,
) -> Path:
    """Read every network named by ``sources`` (:func:`find_sources`), group them by depth and
    write the run folder ``out`` (:func:`write_run`). ``delta_mode`` None takes it from the
    sources (none / shared / per-layer). Everything is read and checked before ``out`` is touched."""
    _check_names(activation, delta_mode or "none")
    paths = find_sources(sources)
    nets = [read_source(p, row_convention=row_convention) for p in paths]
    mode = delta_mode or _default_delta_mode(nets)
    by_depth: dict[int, list[ResNetParams]] = {}
    where: dict[int, list[str]] = {}
    for p, n in zip(paths, nets):
        by_depth.setdefault(n.depth, []).append(_with_delta_mode(n, mode, str(p)))
        where.setdefault(n.depth, []).append(str(p.absolute()))
    networks = {L: stack_networks(g) for L, g in by_depth.items()}
    return write_run(out, networks, activation=activation, delta_mode=mode,
                     source=[str(Path(s).absolute()) for s in sources], depth_sources=where)


def probe_inputs(cfg: SweepConfig, n: int) -> np.ndarray:
    """``n`` inputs (n, d) for an imported run (no data of its own): the inputs of the synthetic
    task (SP §3.1; x ~ U[-1, 1]^d scaled to unit norm, as the authors' out-of-sample probes),
    deterministic from the run's ``data_seed``."""
    import jax

    from resnet_limits.data import synthetic

    key = jax.random.PRNGKey(int(cfg.data_seed))
    return np.asarray(synthetic(key, 0, int(n), int(cfg.width)).x_test)
