"""The numbers of a worked example besides x and ∂ℓ/∂y: γ, β, and in eval mode the running
mean and variance, read exactly and checked against the layer's declaration.

γ and β come as many to a row as the layer has per group (:meth:`Layer.param_count`): one
per feature where the group shares them (batch and instance norm: "1.5;2" or "1.5,2" for two
features), one per element (layer and RMS norm: m numbers) or one per channel (group norm).
One row serves every feature; otherwise give one row per feature, separated by ';'. The
running statistics are one number per feature, and the running variance is never negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

Rows = tuple[tuple[sp.Rational, ...], ...]


def _split(raw: object) -> list[list[Any]]:
    if isinstance(raw, str):
        return [r.split(",") for r in raw.split(";")]
    if not hasattr(raw, "__iter__"):  # one number: γ = 2
        return [[raw]]
    seq = list(raw)
    nested = bool(seq) and hasattr(seq[0], "__iter__") and not isinstance(seq[0], str)
    return [list(r) for r in seq] if nested else [seq]


def example_rows(
    raw: object,
    what: str,
    per_row: int,
    features: int,
    each: str,
    number: Callable[[object, str], sp.Rational],
    error: type[Exception],
) -> Rows:
    """``raw`` as ``features`` rows of ``per_row`` exact numbers (one row given serves every
    feature; with one number a row, a single row of ``features`` numbers is one per feature).

    ``each`` says in words what a row holds ("one per element, m = 4"), for the error;
    ``number`` reads one number exactly (:func:`bnsym.core.options.exact_number`), ``error`` is
    raised with one sentence (the caller's DerivationError: this module sits below it).
    """
    rows = _split(raw)
    for row in rows:
        if any(isinstance(v, str) and not v.strip() for v in row):
            raise error(
                f"{what} has an empty field in {','.join(map(str, row))!r}; give numbers "
                "separated by commas, features separated by ';'."
            )
    if per_row == 1 and len(rows) == 1 and len(rows[0]) == features > 1:
        rows = [[v] for v in rows[0]]  # "1.5,2": one per feature
    if len(rows) not in (1, features):
        raise error(
            f"{what} has {len(rows)} row(s) but values has {features} feature(s); give one "
            "row for all of them or one per feature, separated by ';'."
        )
    out = []
    for f, row in enumerate(rows, start=1):
        nums = tuple(number(v, what) for v in row)
        if len(nums) != per_row:
            where = f" (feature {f})" if len(rows) > 1 else ""
            raise error(f"{what}{where} has {len(nums)} number(s) but needs {per_row} ({each}).")
        out.append(nums)
    return tuple(out) * (features if len(out) == 1 else 1)


def as_strings(rows: Rows | None) -> Any:
    """JSON-ready: exact strings, one list per feature; None stays None."""
    return None if rows is None else [[str(n) for n in row] for row in rows]
