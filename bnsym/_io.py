"""Writing output files so that a failure never leaves a partial or clobbered file.

The text is written to a temporary file in the target's own directory and renamed over the
target only once it is complete (``os.replace`` is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """The output path cannot be written; the message is one sentence for the user."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking that its directory exists and is writable.

    Raises OutputError naming the path otherwise. Call it before expensive work so that a bad
    ``-o`` fails fast.
    """
    # Through links: writing must replace the file a link points to, not the link itself.
    target = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        if target.is_dir():
            raise OutputError(f"{str(target)!r} is a directory; give a file name.")
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{str(parent)!r} is a file, not a directory; choose another path.")
        if not parent.is_dir():
            raise OutputError(
                f"directory {str(parent)!r} does not exist; create it first or choose another path."
            )
        writable = os.access(parent, os.W_OK)
    except OSError as exc:  # a name too long, a loop of links, ...
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}.") from exc
    if not writable:
        raise OutputError(f"directory {str(parent)!r} is not writable; choose another path.")
    return target


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then rename).

    An existing target keeps its permission bits; a new file gets ``0o666`` less the umask,
    as ``open(path, "w")`` would give it. Every OSError (no permission, no such directory, a
    full disk, a read-only filesystem) becomes an :class:`OutputError` naming the path, and
    no temporary file is left behind.

    >>> import tempfile, pathlib
    >>> d = tempfile.mkdtemp()
    >>> atomic_write(pathlib.Path(d) / "a.txt", "hello\\n").read_text()
    'hello\\n'
    """
    target = check_writable(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp: str | None = None
    try:
        mode = _mode_for(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.chmod(tmp, mode)  # mkstemp creates 0o600
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}.") from exc
    except BaseException:
        _remove(tmp)
        raise
    return target


def _mode_for(target: Path) -> int:
    """The permission bits the written file should have: the target's own, else the umask's."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it back at once
        os.umask(umask)
        return 0o666 & ~umask


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
