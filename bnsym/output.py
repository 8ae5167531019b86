"""Writing output files so that a failure never leaves a partial, clobbered or damaged file.

What ``-o PATH`` (and :func:`atomic_write`) does with what is already at PATH:

- nothing there: a new file, created atomically (below) with ``0o666`` less the umask;
- a regular file: replaced atomically, keeping its permission bits and owner — refused if it
  is write-protected (no write permission for the user, or, for root, no write bit at all:
  root can write anything, so the mode bits say what its owner meant, as ``rm`` and ``cp -i``
  read them), where a shell redirect would say "Permission denied";
- a symbolic link: followed — the file it points to is written (created if missing), never
  the link itself; a loop of links is refused;
- a FIFO or a character device (``/dev/stdout``, a terminal, ``/dev/null``): written through,
  as a shell redirect writes to it, never replaced by a regular file;
- a directory, a socket, a block device or anything else: refused.

"Atomically": the text goes to a temporary file in the target's own directory, is flushed to
disk (``fsync``), and is renamed over the target only once complete (``os.replace`` is atomic
on POSIX within one filesystem). The temporary file is removed on every exit path that runs
Python code — errors, Ctrl-C, and SIGTERM/SIGHUP under :func:`cleanup_on_signals`; one left by
SIGKILL or a power cut carries the writer's process id in its name and is removed by the next
write to the same target once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from bnsym.errors import BnsymError


class OutputError(BnsymError, ValueError):
    """The output path cannot be written; the message is one sentence for the user."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Return the path that writing ``path`` would write, after checking that it can be.

    Raises OutputError naming the path otherwise (see the module's docstring for what is
    refused). Call it before expensive work so that a bad ``-o`` fails fast.
    """
    return _plan(path)[1]


def _plan(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """``("new" | "replace" | "through", target)`` for writing ``path``; OutputError if not."""
    try:
        name = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a file name (str or os.PathLike), not {path!r}.") from None
    shown = repr(name if len(name) <= 80 else name[:77] + "...")
    try:
        if "\0" in name:
            raise OutputError(f"the file name {shown} holds a NUL character; choose another.")
        if not name:
            raise OutputError("the file name is empty; give a file name or '-'.")
        if name.endswith(("/", os.sep)):  # a directory's path, whether or not it exists
            raise OutputError(
                f"{shown} ends with '/', which names a directory; give the name of a file."
            )
        try:
            st = os.stat(name)  # through links, /proc's magic links included
        except (FileNotFoundError, NotADirectoryError):  # the parent is checked below
            st = None
        if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            return "through", Path(name)
        # Through links: writing must replace the file a link points to, not the link itself.
        target = Path(name).resolve() if os.path.islink(name) else Path(name)
        if st is not None:
            kind = _refused_kind(st.st_mode)
            if kind:
                raise OutputError(f"{shown} is {kind}; give the name of a file.")
            if not _may_write(target, st):
                raise OutputError(
                    f"{shown} is write-protected; bnsym does not replace it (a shell "
                    "redirect would say 'Permission denied'): make it writable or choose "
                    "another path."
                )
        parent = target.parent
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{str(parent)!r} is a file, not a directory; choose another path.")
        if not parent.is_dir():
            raise OutputError(
                f"directory {str(parent)!r} does not exist; create it first or choose another path."
            )
        if not os.access(parent, os.W_OK):
            raise OutputError(f"directory {str(parent)!r} is not writable; choose another path.")
    except OutputError:
        raise
    except RuntimeError:  # Python 3.11's resolve() on a loop of links
        raise OutputError(f"{shown} is a loop of symbolic links; choose another path.") from None
    except (OSError, ValueError) as exc:  # a name too long, a loop of links, ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OutputError(f"cannot write {shown}: {reason}.") from None
    return ("new" if st is None else "replace"), target


def _refused_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words; "" for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device (a disk)"
    return "not a regular file"


def _may_write(target: Path, st: os.stat_result) -> bool:
    """Would a shell redirect (``> target``) be allowed by the file's permissions?

    For an ordinary user, ``os.access`` answers (ACLs, read-only filesystems included). Root
    passes every access check, so for root the mode bits decide: a file with no write bit
    for anyone was write-protected on purpose.
    """
    if os.geteuid() == 0:
        return bool(st.st_mode & 0o222)
    return os.access(target, os.W_OK)


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` without ever leaving it partial or damaged.

    A new or regular file is written atomically (temporary file beside it, ``fsync``, then
    rename); a replaced file keeps its permission bits and owner; a FIFO or a character device
    is written through; anything else is refused (see the module's docstring). Every OSError
    (no permission, no such directory, a full disk, a read-only filesystem) becomes an
    :class:`OutputError` naming the path, and no temporary file is left behind.

    >>> import tempfile, pathlib
    >>> d = tempfile.mkdtemp()
    >>> atomic_write(pathlib.Path(d) / "a.txt", "hello\\n").read_text()
    'hello\\n'
    """
    how, target = _plan(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if how == "through":
        return _write_through(target, raw)
    tmp: str | None = None
    try:
        _remove_stale(target)
        old = None if how == "new" else target.stat()
        if old is not None and old.st_uid != os.geteuid() and os.geteuid() != 0:
            # Renaming would hand another user's file to us; write it in place as the
            # shell would, keeping its owner.
            return _write_through(target, raw, truncate=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name[:180]}.", suffix=f".{os.getpid()}.bnsym-tmp", dir=target.parent
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_mode() if old is None else stat.S_IMODE(old.st_mode))
        if old is not None and (old.st_uid, old.st_gid) != _owner(tmp):
            os.chown(tmp, old.st_uid, old.st_gid)  # root replacing another user's file
            os.chmod(tmp, stat.S_IMODE(old.st_mode))  # chown clears set-id bits
        os.replace(tmp, target)
        tmp = None
        _fsync_directory(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}.") from None
    finally:
        _remove(tmp)
    return target


def _write_through(target: Path, raw: bytes, truncate: bool = False) -> Path:
    """Write into what is at ``target`` (a FIFO, a device, another user's file) in place."""
    flags = os.O_WRONLY | os.O_NOCTTY | (os.O_TRUNC if truncate else 0)
    try:
        fd = os.open(target, flags)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
    except OSError as exc:
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}.") from None
    return target


def _owner(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def _new_mode() -> int:
    """What ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    umask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(target: Path) -> None:
    """Remove temporary files of earlier writes to ``target`` whose process is gone."""
    pattern = re.compile(re.escape(f".{target.name[:180]}.") + r"[^.]+\.(\d+)\.bnsym-tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            hit = pattern.fullmatch(entry.name)
            if hit and not _alive(int(hit.group(1))):
                _remove(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise SystemExit (status 128 + the signal), so
    that every ``finally`` and ``with`` runs: temporary files and directories are removed.
    Does nothing outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signals = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {s: signal.signal(getattr(signal, s), leave) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(getattr(signal, s), handler)
