"""The on-disk format of a run folder, for any kind of depth sweep (layer 2).

::

    RUN_DIR/config.json          the resolved configuration (written once the data set has loaded)
    RUN_DIR/depths/L00003.npz    the arrays of one depth (all seeds)
    RUN_DIR/depths/L00003.json   its metrics (with the "devices" and "platform" it trained on), plus
                                 "sha256" of the .npz, "host" and "pid" that trained it
    RUN_DIR/depths/L00003.claim  present while a process trains that depth (see ``claims.py``)

Every file is written atomically (temporary file in the same folder + ``os.replace``), the
``.npz`` before the ``.json``: a depth is finished iff its ``.json`` exists, and it is intact iff
its ``.npz`` still has the recorded sha256. A damaged depth is moved aside (``*.damaged``) and
trained again by the next sweep; :class:`resnet_limits.run.Run` refuses it with
:class:`~resnet_limits.errors.DamagedRunError`, whose message names the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from resnet_limits.config import FREE_FIELDS, SweepConfig
from resnet_limits.errors import DamagedRunError, UsageError
from resnet_limits.scaling.fits import finite_or_none

__all__ = [
    "CONFIG",
    "atomic_write",
    "write_text",
    "check_bytes",
    "check_folder",
    "check_out_dir",
    "create_exclusive",
    "depth_paths",
    "depth_problem",
    "finished_depths",
    "json_ready",
    "load_config",
    "read_metrics",
    "record_config",
    "save_depth",
    "set_aside",
    "write_json",
]

CONFIG = "config.json"
_CONFIG_LOCK = ".config.json.lock"  # names starting with ".config.json" belong to the folder's machinery
_LOCK_STALE_S = 60.0
_UMASK = os.umask(0)
os.umask(_UMASK)


# ------------------------------------------------------------------ writing ---------

def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` through a temporary file in the same folder, then ``os.replace``.

    A reader sees the old file or the whole new one, never a part; the temporary file is
    removed if anything (including Ctrl-C) interrupts the write. The file gets the usual
    permissions (0666 minus the umask), so other processes of a shared sweep can read it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _naming(e, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """``e`` about ``path`` itself: a full disk's error names no file, a permission error names
    the temporary file; the user needs the file that could not be written."""
    return type(e)(e.errno, e.strerror or str(e), str(path))


def create_exclusive(path: Path, content: bytes = b"") -> bool:
    """Create ``path`` holding ``content`` unless it exists (``O_CREAT | O_EXCL``: atomic, one
    process wins); False if it existed."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:  # a full disk: no half-written file may stay (it would look like a claim)
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(e, OSError):
            raise _naming(e, Path(path)) from None
        raise
    return True


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return Path(path)


def json_ready(obj: Any) -> Any:
    """``obj`` as plain JSON data: numpy arrays and scalars as lists and numbers, NaN and
    +-Inf as None (JSON has no such numbers), tuples as lists, a :class:`SweepConfig` as its
    ``config.json``, paths and other objects as text."""
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "to_json"):
        return json_ready(obj.to_json())
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # a device array
        return json_ready(np.asarray(obj))
    return str(obj)


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (:func:`json_ready`: NaN/Inf -> null), atomically; the one
    JSON writer of the package. Returns ``path``."""
    return write_text(path, json.dumps(json_ready(obj), indent=1, allow_nan=False) + "\n")


def _read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; ``ValueError`` with a short reason if it cannot be read."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    except OSError as e:
        raise ValueError(e.strerror or str(e)) from None


# ------------------------------------------------------------------ the folder ------

def check_out_dir(path: Path) -> None:
    """Raise :class:`UsageError` if ``path`` is not a folder and cannot be created as one."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{path} exists and is not a folder; choose another --out")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write in {path}: permission denied; choose another --out")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot create {path}: {parent} is not a folder; choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {path}: permission denied in {parent}; choose another --out")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {path}: {e.strerror or e}; choose another --out") from None


def load_config(run_dir) -> SweepConfig:
    """The configuration of a run folder.

    :class:`UsageError` if ``run_dir`` does not exist or is not a run folder;
    :class:`DamagedRunError` if its ``config.json`` cannot be read.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"{run_dir} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder")
    path = run_dir / CONFIG
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a sweep folder (no {CONFIG})")
    try:
        obj = _read_json(path)
    except ValueError as e:
        raise DamagedRunError(
            f"{path} is damaged ({e}); delete the folder and run the sweep again, or choose another --out"
        ) from None
    return SweepConfig.from_json(obj, str(path))


def _foreign_entries(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if not p.name.startswith(".config.json")]


def check_folder(out: Path, cfg: SweepConfig, free: Sequence[str] = FREE_FIELDS) -> None:
    """Refuse ``out`` if it is a file, a non-empty folder that is not a run, or a run made by a
    configuration that differs from ``cfg`` in anything but ``free`` (the depth grid)."""
    out = Path(out)
    check_out_dir(out)
    if not out.exists():
        return
    if not (out / CONFIG).exists():
        if _foreign_entries(out):
            raise UsageError(f"{out} exists, is not empty and is not a sweep folder; choose another --out")
        return
    diff = load_config(out).differences(cfg, free)
    if diff:
        raise UsageError(f"{out} was made by another configuration: {', '.join(diff)}; choose another --out")


@contextlib.contextmanager
def _config_lock(out: Path) -> Iterator[None]:
    """Exclusive lock on ``out``'s configuration (several processes may start one sweep together)."""
    lock = out / _CONFIG_LOCK
    while not create_exclusive(lock):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > _LOCK_STALE_S:  # its holder died
                lock.unlink()
        time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def record_config(out: Path, cfg: SweepConfig, free: Sequence[str] = FREE_FIELDS) -> SweepConfig:
    """Create ``out`` if needed and write its ``config.json``: ``cfg`` with ``depths`` the union
    of all depth grids asked of the folder. Refuses (under a lock, so two processes cannot both
    pass) a folder of another configuration; an unchanged file is not rewritten. Returns it."""
    out = Path(out)
    check_out_dir(out)
    _make_dir(out)
    with _config_lock(out):
        check_folder(out, cfg, free)
        old = load_config(out) if (out / CONFIG).exists() else None
        new = cfg.replace(depths=tuple(sorted(set(cfg.depths) | set(old.depths if old else ()))))
        if old is None or new.to_json() != old.to_json():
            write_json(out / CONFIG, new.to_json())
    return new


# ------------------------------------------------------------------ depths ----------

def depth_paths(run_dir, depth: int) -> tuple[Path, Path]:
    """``(RUN_DIR/depths/L00003.npz, RUN_DIR/depths/L00003.json)``."""
    stem = Path(run_dir) / "depths" / f"L{int(depth):05d}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def finished_depths(run_dir) -> list[int]:
    """Depths whose results are complete (their ``.json`` exists), sorted; not verified."""
    folder = Path(run_dir) / "depths"
    if not folder.is_dir():
        return []
    out = []
    for p in folder.glob("L*.json"):
        with contextlib.suppress(ValueError):
            out.append(int(p.stem[1:]))
    return sorted(out)


def save_depth(run_dir, depth: int, arrays: Mapping[str, np.ndarray], metrics: Mapping[str, Any]) -> None:
    """Write one finished depth: the ``.npz`` of ``arrays``, then the ``.json`` of ``metrics``
    with ``sha256`` (of the ``.npz`` bytes), ``host`` and ``pid`` added."""
    npz, js = depth_paths(run_dir, depth)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write(npz, lambda f: f.write(data))
    write_json(js, dict(metrics, sha256=hashlib.sha256(data).hexdigest(), host=socket.gethostname(),
                        pid=os.getpid()))


def _damaged(what: str, depth_file: Path) -> DamagedRunError:
    """The error of a damaged depth file; ``.problem`` is ``what`` alone (the sweep's warning)."""
    depth = depth_file.stem[1:].lstrip("0") or "0"
    e = DamagedRunError(f"{what}; depth {depth} is damaged, rerun the sweep to train it again")
    e.problem = what
    return e


def read_metrics(js: Path) -> dict[str, Any]:
    """A finished depth's recorded metrics (its ``.json``); :class:`DamagedRunError` naming the
    file if it cannot be read."""
    try:
        metrics = _read_json(js)
        if not isinstance(metrics, dict):
            raise ValueError("not a depth's metrics")
    except ValueError as e:
        raise _damaged(f"{js} is unreadable ({e})", js) from None
    return metrics


def check_bytes(npz: Path, js: Path, metrics: Mapping[str, Any]) -> bytes:
    """The bytes of a depth's weight file, checked against the sha256 recorded in ``metrics``
    (a file written before checksums were recorded must at least load); :class:`DamagedRunError`
    naming the file otherwise."""
    try:
        data = npz.read_bytes()
    except FileNotFoundError:
        raise _damaged(f"{npz} is missing", npz) from None
    except OSError as e:
        raise _damaged(f"{npz} is unreadable ({e.strerror or e})", npz) from None
    if "sha256" in metrics:
        if hashlib.sha256(data).hexdigest() != metrics["sha256"]:
            raise _damaged(f"{npz} does not match the sha256 recorded in {js.name}", npz)
    else:
        try:
            with np.load(io.BytesIO(data)) as z:
                [z[k] for k in z.files]
        except Exception as e:  # noqa: BLE001 (any failure of np.load means damage)
            raise _damaged(f"{npz} is unreadable ({type(e).__name__}: {e})", npz) from None
    return data


def depth_problem(run_dir, depth: int) -> Optional[str]:
    """What is wrong with a depth whose ``.json`` exists (one line naming the file), or None
    if it is intact. A depth that is not finished has no problem (None). Reads the files."""
    npz, js = depth_paths(run_dir, depth)
    if not js.exists():
        return None
    try:
        check_bytes(npz, js, read_metrics(js))
    except DamagedRunError as e:
        return e.problem
    return None


def set_aside(run_dir, depth: int) -> None:
    """Move a damaged depth's files to ``*.damaged`` (the ``.json`` first: the depth is then
    unfinished at once) so that it is trained again; replaces older ``*.damaged`` files."""
    npz, js = depth_paths(run_dir, depth)
    for p in (js, npz):
        with contextlib.suppress(FileNotFoundError):
            os.replace(p, p.with_name(p.name + ".damaged"))
