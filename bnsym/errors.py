"""One base for every exception bnsym raises (standard library only).

Every bnsym exception derives from :class:`BnsymError` (as every Click exception derives from
``ClickException``), and also from the built-in class a caller would expect — ``ValueError``
for bad input, ``TypeError`` for an argument of the wrong kind, ``AssertionError`` for a
failed check — so that ``except ValueError`` keeps working. The message is one sentence that
names the value and says what to do; the command line prints it as ``Error: <message>`` and
exits with :attr:`BnsymError.exit_code` (2, bad input) in one place.

>>> from bnsym.family import LayerError
>>> issubclass(LayerError, BnsymError) and issubclass(LayerError, ValueError)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["BnsymError", "command_line", "option"]


class BnsymError(Exception):
    """The base of every exception bnsym raises; ``exit_code`` is the command line's status."""

    #: 2: the input was bad (the command line's convention for usage errors); a failed check
    #: is 1.
    exit_code: int = 2


# --- how a message names an option: Python's argument or the command line's flag -------------

#: True while the command line runs: messages then name ``--force``, not ``force=True``.
_COMMAND_LINE: ContextVar[bool] = ContextVar("bnsym_command_line", default=False)

#: A Python argument whose flag is not ``--`` + its name with ``-`` for ``_``.
_FLAGS = {"features": "--features"}


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block, :func:`option` spells options as the command line takes them."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(name: str, value: object = None) -> str:
    """An option as a message names it: ``force=True``, ``mode='eval'`` from Python;
    ``--force``, ``--mode eval`` within :func:`command_line` (False: ``--no-affine``).
    ``value`` None: the name alone.

    >>> option("force", True), option("eps_placement")
    ('force=True', 'eps_placement')
    >>> with command_line():
    ...     option("force", True), option("mode", "eval"), option("eps_placement")
    ('--force', '--mode eval', '--eps-placement')
    """
    if not _COMMAND_LINE.get():
        return name if value is None else f"{name}={value!r}"
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is None or value is True:
        return flag
    if value is False:
        return "--no-" + flag[2:]
    return f"{flag} {value}"
