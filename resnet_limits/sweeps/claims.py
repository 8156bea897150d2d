"""Claim files: several processes (or cluster jobs) share the depths of one run folder (layer 2).

A process trains a depth only while it holds that depth's claim, ``depths/L00003.claim``,
holding ``{"host", "pid", "time"}`` and created atomically: a hard link of a complete file,
which fails if the claim exists (``O_CREAT | O_EXCL`` where the file system has no links).
A background thread touches every claim this process holds every ``refresh_every`` seconds;
all of them are removed when the process stops, by Ctrl-C or SIGTERM too.
A claim counts as abandoned, and may be taken over, when

* its host is this host and its pid is gone (a killed process), or
* it has not been touched for ``stale_after`` seconds (a process on another host that died,
  or one suspended that long; hosts are assumed to agree on the time to well within that).

Taking over is serialised by a second exclusive file (``L00003.claim.takeover``), so two
processes that both find a claim abandoned cannot both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import NamedTuple, Optional

from resnet_limits.sweeps.folder import atomic_write, create_exclusive

__all__ = ["REFRESH_EVERY_S", "STALE_AFTER_S", "Claim", "ClaimBook", "Owner", "live_claims", "this_process"]

REFRESH_EVERY_S = 30.0
STALE_AFTER_S = 300.0


class Owner(NamedTuple):
    """The process that holds a claim (``pid`` 0: the claim file could not be read yet)."""

    host: str
    pid: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


def this_process() -> Owner:
    return Owner(socket.gethostname(), os.getpid())


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists under another user
        return True
    try:  # a zombie (dead, not yet reaped: an orphan where PID 1 does not reap) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_owner(path: Path) -> Optional[Owner]:
    """The owner written in a claim file; None while it is being written (or if unreadable)."""
    try:
        d = json.loads(path.read_text())
        return Owner(str(d["host"]), int(d["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_claims(folder: Path, stale_after: float = STALE_AFTER_S) -> dict[int, str]:
    """Depth -> ``host:pid`` of every claim in ``folder`` (``RUN_DIR/depths``) held by a live
    process: this host's claims whose pid is alive, other hosts' refreshed within ``stale_after``."""
    out = {}
    for p in sorted(Path(folder).glob("L*.claim")) if Path(folder).is_dir() else ():
        try:
            depth, mtime = int(p.stem[1:]), p.stat().st_mtime
        except (ValueError, OSError):
            continue
        owner = _read_owner(p)
        if owner is None or time.time() - mtime > stale_after:
            continue
        if owner.host == this_process().host and not _pid_alive(owner.pid):
            continue
        out[depth] = str(owner)
    return out


def _claim_text() -> bytes:
    me = this_process()
    return json.dumps({"host": me.host, "pid": me.pid, "time": time.time()}).encode()


def _create_whole(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` unless it exists; never visible half-written (a hard
    link of a complete temporary file; ``O_EXCL`` where the file system has no hard links)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        return create_exclusive(path, content)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class Claim(NamedTuple):
    """Outcome of :meth:`ClaimBook.claim`: ``held`` by this process now, or ``owner`` holds it.
    ``taken_from``: the abandoned claim's owner when this process took it over."""

    held: bool
    owner: Optional[Owner] = None
    taken_from: Optional[Owner] = None


class ClaimBook:
    """The claims this process holds in one folder; a context manager that releases them all.

    ``claim(name)`` tries to claim ``folder/name.claim``; ``release(name)`` gives it back.
    """

    def __init__(self, folder: Path, *, refresh_every: float = REFRESH_EVERY_S,
                 stale_after: float = STALE_AFTER_S):
        self.folder = Path(folder)
        self.refresh_every = refresh_every
        self.stale_after = stale_after
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.claim"

    def __enter__(self) -> "ClaimBook":
        return self

    def __exit__(self, *exc) -> None:
        self.release_all()

    def claim(self, name: str) -> Claim:
        """Claim ``name`` unless a live process holds it (taking over an abandoned claim).

        Safe against Ctrl-C/SIGTERM at any point: the claim file appears whole or not at all
        (a hard link of a written file), and is removed again if the claim is interrupted."""
        with self._lock:
            if name in self._held:
                return Claim(True, this_process())
            self._held.add(name)
        try:
            got = self._acquire(self.path(name))
        except BaseException:
            self.release(name)
            raise
        if got.held:
            self._start_refresh()
        else:
            with self._lock:
                self._held.discard(name)
        return got

    def release(self, name: str) -> None:
        """Give back a claim of this process (left alone if another process has taken it)."""
        path = self.path(name)
        if _read_owner(path) == this_process():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with self._lock:
            self._held.discard(name)

    def release_all(self) -> None:
        with self._lock:
            names = list(self._held)
        for name in names:
            self.release(name)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stop.clear()

    # ---------------------------------------------------------------- internals -----

    def _abandoned(self, owner: Optional[Owner], mtime: float) -> bool:
        if time.time() - mtime > self.stale_after:
            return True
        if owner is None:  # being written right now
            return False
        me = this_process()
        return owner.host == me.host and (owner.pid == me.pid or not _pid_alive(owner.pid))

    def _take_over(self, path: Path, seen: os.stat_result) -> bool:
        lock = path.with_name(path.name + ".takeover")
        if not create_exclusive(lock):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - lock.stat().st_mtime > self.stale_after:
                    lock.unlink()  # left by a process that died while taking over
            return False
        try:
            try:
                now = path.stat()
                if (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
                    return False  # refreshed or replaced since we looked
            except FileNotFoundError:
                pass
            text = _claim_text()
            atomic_write(path, lambda f: f.write(text))
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def _acquire(self, path: Path) -> Claim:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the holder may release it between our two looks
            if _create_whole(path, _claim_text()):
                return Claim(True, this_process())
            try:
                seen = path.stat()
            except FileNotFoundError:
                continue
            owner = _read_owner(path)
            if self._abandoned(owner, seen.st_mtime) and self._take_over(path, seen):
                return Claim(True, this_process(), taken_from=owner or Owner("?", 0))
            return Claim(False, owner or Owner("?", 0))
        return Claim(False, Owner("?", 0))

    def _start_refresh(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh, name="claim-refresh", daemon=True)
                self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_every):
            with self._lock:
                names = list(self._held)
            for name in names:
                if _read_owner(self.path(name)) == this_process():  # not one taken over meanwhile
                    with contextlib.suppress(OSError):
                        os.utime(self.path(name))
