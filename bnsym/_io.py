"""Writing output files so that a failure never leaves a partial or clobbered file.

The text is written to a temporary file in the target's own directory and renamed over the
target only once it is complete (``os.replace`` is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """The output path cannot be written; the message is one sentence for the user."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking that its directory exists and is writable.

    Raises OutputError naming the path otherwise. Call it before expensive work so that a bad
    ``-o`` fails fast.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"{str(target)!r} is a directory; give a file name.")
    if not parent.is_dir():
        raise OutputError(
            f"directory {str(parent)!r} does not exist; create it first or choose another path."
        )
    if not os.access(parent, os.W_OK):
        raise OutputError(f"directory {str(parent)!r} is not writable; choose another path.")
    return target


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then rename).

    >>> import tempfile, pathlib
    >>> d = tempfile.mkdtemp()
    >>> atomic_write(pathlib.Path(d) / "a.txt", "hello\\n").read_text()
    'hello\\n'
    """
    target = check_writable(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}.") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
