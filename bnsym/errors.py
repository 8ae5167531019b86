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

__all__ = ["BnsymError"]


class BnsymError(Exception):
    """The base of every exception bnsym raises; ``exit_code`` is the command line's status."""

    #: 2: the input was bad (the command line's convention for usage errors); a failed check
    #: is 1.
    exit_code: int = 2
