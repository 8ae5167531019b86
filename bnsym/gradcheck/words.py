"""The modes of differentiation and their compositions, as the checker names them.

A *word* is a composition of modes read outer first, as JAX's ``check_grads`` reads them:
``("fwd",)`` is the jvp, ``("rev",)`` the vjp (the backward), ``("fwd", "rev")`` the jvp of
the vjp (forward over reverse: the Hessian-vector product), ``("rev", "fwd")`` the vjp of the
jvp. Order ``k`` checks every word of length ``k`` over the modes asked for; the checker checks
every order from 1 to the one asked for.

Standard library only: the report (:mod:`bnsym.gradcheck.report`) renders words with it.

>>> words(("fwd", "rev"), 2)
[('fwd',), ('rev',), ('fwd', 'fwd'), ('fwd', 'rev'), ('rev', 'fwd'), ('rev', 'rev')]
>>> title(("fwd", "rev")), name(("fwd", "rev"))
('forward over reverse mode, order 2', 'the jvp of the vjp')
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from bnsym.errors import BnsymError

__all__ = ["MODES", "ModesError", "Word", "name", "parse_modes", "title", "words"]

Word = tuple[str, ...]

# mode -> (its name in a title, the derivative it computes, what it pushes: along or onto)
MODES: dict[str, tuple[str, str]] = {
    "fwd": ("forward", "jvp"),
    "rev": ("reverse", "vjp"),
}
MAX_ORDER = 2  # the compositions the checker builds (order 3 would nest three transforms)


class ModesError(BnsymError, ValueError):
    """``modes`` or ``order`` the checker cannot run (an unknown word, an order above 2)."""


def parse_modes(modes: Any) -> tuple[str, ...]:
    """``modes`` as a tuple of known modes, in the order given, without repeats.

    Accepts a sequence of words (``("fwd", "rev")``) or one string (``"fwd"``, ``"fwd,rev"``,
    as the command line spells it); anything else is a :class:`ModesError` naming the word.
    """
    if isinstance(modes, str):
        items: Iterable[Any] = [w.strip() for w in modes.split(",")]
    elif isinstance(modes, Iterable):
        items = list(modes)
    else:
        raise ModesError(
            f"modes must be a sequence of {' and '.join(map(repr, MODES))}, not {modes!r:.60}"
        )
    found: list[str] = []
    for word in items:
        if not isinstance(word, str) or word not in MODES:
            raise ModesError(
                f"modes: unknown mode {word!r:.40}; the modes are "
                f"{', '.join(map(repr, MODES))} (forward: jvp, reverse: vjp)"
            )
        if word not in found:
            found.append(word)
    if not found:
        raise ModesError(f"modes is empty; give one or more of {', '.join(map(repr, MODES))}")
    return tuple(found)


def parse_order(order: Any) -> int:
    """``order`` as an int from 1 to :data:`MAX_ORDER`, or a :class:`ModesError`."""
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ModesError(f"order must be 1 (jvp, vjp) or 2 (their compositions), not {order!r:.40}")
    return order


def words(modes: Iterable[str], order: int) -> list[Word]:
    """Every composition of ``modes`` of length 1 to ``order``, shorter first, outer first."""
    modes = tuple(modes)
    return [w for k in range(1, order + 1) for w in itertools.product(modes, repeat=k)]


def title(word: Word) -> str:
    """``forward mode, order 1``; ``forward over reverse mode, order 2``."""
    kinds = " over ".join(MODES[m][0] for m in word)
    return f"{kinds} mode, order {len(word)}"


def name(word: Word) -> str:
    """``the jvp``; ``the jvp of the vjp`` (outer first)."""
    return " of ".join(f"the {MODES[m][1]}" for m in word)


def derivative(word: Word) -> str:
    """The outer derivative's short name: ``jvp`` or ``vjp``."""
    return MODES[word[0]][1]
