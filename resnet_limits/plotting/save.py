"""The one writer of figures: :func:`save`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

__all__ = ["save"]

_UMASK = os.umask(0)  # read once (setting it back at once): the permissions a plain open() gives
os.umask(_UMASK)


def save(fig, path, *, dpi: int = 110) -> str:
    """Write ``fig`` to ``path`` (its format from the suffix, PNG without one) and close it;
    returns ``str(path)``.

    The parent folders are created; the file is written under a temporary name in the same
    folder and renamed onto ``path`` (``os.replace``), so ``path`` is either the old file or the
    whole new one, and a failed write leaves no temporary file behind. The file gets the usual
    permissions (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # not mkstemp's 0600
            fig.savefig(f, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        plt.close(fig)  # a figure made with pyplot leaves pyplot's list; others: nothing to do
    return str(path)
