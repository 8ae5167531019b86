"""Bounds checked before work starts, so that no input runs out of memory or for hours.

Each limit raises :class:`LimitError` (a ValueError) with one sentence: the value, the
estimate of what it would cost, and what to do.
"""

from __future__ import annotations

import math
from fractions import Fraction

from bnsym.errors import BnsymError, option

#: ``run_check`` keeps about 40 float64 arrays of m x D values alive (inputs, outputs and
#: gradients of four implementations, and the gradient checker's): about 340 bytes and 2 µs
#: per value, measured at m = 4 and 64 (m·D = 4·10^6 takes 1.3 GB and 9 s).
CHECK_BYTES_PER_VALUE = 340
CHECK_SECONDS_PER_VALUE = 2e-6
MAX_CHECK_VALUES = 4_000_000


class LimitError(BnsymError, ValueError):
    """An input whose cost would exceed the bounds; the message gives the estimate."""


def check_size(m: int, features: object, seed: object = 0) -> int:
    """D, after checking that a check of m x D values fits the bounds (and seed ≥ 0)."""
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise LimitError(f"{option('features')} must be a whole number ≥ 1, not {features!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LimitError(f"{option('seed')} must be a whole number ≥ 0, not {seed!r}.")
    values = m * features
    if values > MAX_CHECK_VALUES:
        gb = values * CHECK_BYTES_PER_VALUE / 1e9
        minutes = values * CHECK_SECONDS_PER_VALUE / 60
        raise LimitError(
            f"{option('features', features)} with m = {m} is {values:.3g} values, which would "
            f"take about {gb:.3g} GB of memory and {minutes:.2g} min; the check is limited to "
            f"{MAX_CHECK_VALUES:,} values (m·D): give a smaller {option('features')}."
        )
    return features


def float_eps(eps: object) -> float | None:
    """ε as the float64 that generated code uses by default; LimitError when it has none.

    >>> float_eps(Fraction(1, 100000))
    1e-05
    """
    if eps is None:
        return None
    exact = Fraction(str(eps))
    try:
        value = float(exact)  # the nearest float; OverflowError above 1.8e308
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or (value == 0) != (exact == 0):
        raise LimitError(
            f"eps = {_short(eps)} has no float64 value (floats reach from about 5e-324 to "
            "1.8e308), which the generated code needs; give eps within that range."
        )
    return value


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: TeX measures nothing beyond \maxdimen, 16383.99 pt: about 3300 letters of display maths
#: (a row of 3313 letters failed with "Dimension too large"). Rows above this are refused
#: with room to spare; a row that wide is about 60 pages across anyway.
MAX_TEX_ROW_LETTERS = 2500
