"""Decimals beside exact values: ``√2`` is shown ``√2 ≈ 1.41421``, ``11/4`` as ``11/4 ≈ 2.75``.

Exact results stay exact; this module only says how many digits their decimal gets and
when one is worth showing (not for integers, nor for a number already written as a decimal).
SymPy evaluates with more digits than it shows (``sp.N``), so every digit printed is right
up to the rounding of the last one.

>>> decimal_text(sp.sqrt(2)), decimal_text(sp.Rational(-1, 3)), decimal_text(4)
('1.41421', '-0.333333', None)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sympy as sp

__all__ = [
    "DIGITS",
    "TABLE_DIGITS",
    "approx",
    "approx_expr",
    "decimal_text",
    "exact_text",
    "rounded",
]

#: Significant digits beside an exact result (≈ 1.41421).
DIGITS = 6
#: Significant digits in the worked example's table, where seven columns share a line.
TABLE_DIGITS = 4


def _written_as_decimal(q: sp.Rational) -> bool:
    den = int(q.q)
    while den % 10 == 0:
        den //= 10
    return den == 1


def approx(value: Any, digits: int = DIGITS) -> sp.Float | None:
    """The decimal to show beside ``value``: None for integers, non-numbers and numbers whose
    denominator is a power of ten (8.9 is shown as 8.9 already)."""
    text = decimal_text(value, digits)
    return None if text is None else _float(text)


def decimal_text(value: Any, digits: int = DIGITS) -> str | None:
    """``value`` rounded to ``digits`` significant digits, as text ('1.41421', '-2.5e-7'):
    SymPy evaluates ten digits more, and Decimal rounds that decimal string (a binary float
    of ``digits`` digits could round the last digit the wrong way)."""
    if not isinstance(value, sp.Basic) or not value.is_number or value.is_Integer:
        return None
    if value.is_Rational and _written_as_decimal(value):
        return None
    return _round(value, digits)


def _round(value: sp.Expr, digits: int) -> str:
    exact = Decimal(str(sp.N(value, digits + 10)).replace("*^", "e"))
    mantissa, _, exponent = format(exact, f".{digits}g").partition("e")
    if "." in mantissa:  # 2.75, not 2.75000
        mantissa = mantissa.rstrip("0").rstrip(".")
    return mantissa + (f"e{int(exponent)}" if exponent else "")


def _float(text: str) -> sp.Float:
    """A SymPy Float that prints as ``text`` (its significant digits, no more)."""
    significant = len(text.partition("e")[0].lstrip("-").replace(".", "").lstrip("0"))
    return sp.Float(text, max(significant, 2))  # 3.0e-7: SymPy prints one digit as "3.e-7"


def rounded(expr: Any, digits: int = TABLE_DIGITS) -> Any:
    """``expr`` with its numbers as decimals of ``digits`` significant digits (integers kept):
    a table's cell, −1.414·γ + 0.5 rather than −√2·γ + 1/2."""
    if not isinstance(expr, sp.Basic):
        return expr
    if expr.is_Integer:
        return expr
    if expr.is_number:
        return _float(_round(expr, digits))
    # evalf writes integers and exponents as floats too: keep 1 − μ and (1 + ε)^(−1/2)
    out = expr.evalf(digits)
    out = out.replace(
        lambda a: a.is_Pow and a.exp.is_Float, lambda a: sp.Pow(a.base, sp.Rational(str(a.exp)))
    )
    whole = {f: sp.Integer(int(f)) for f in out.atoms(sp.Float) if float(f).is_integer()}
    return out.xreplace(whole)


def approx_expr(value: Any, digits: int = DIGITS) -> Any:
    """:func:`approx` for a number; for an expression in at most two symbols (γ and β) with
    a coefficient that is not an integer, the expression with decimal coefficients
    (−200·γ·√2000010/200001 + β -> −1.41421·γ + β); None otherwise."""
    if not isinstance(value, sp.Basic):
        return None
    if value.is_number:
        return approx(value, digits)
    if len(value.free_symbols) > 2:
        return None
    numbers = [a for a in value.atoms(sp.Number) if not a.is_Integer]
    if not numbers and not value.has(sp.Pow) or not value.atoms(sp.Pow, sp.Rational):
        return None
    out = value.evalf(digits)
    return None if out == value or not out.atoms(sp.Float) else out


def exact_text(q: Any) -> str:
    """An input number as the user typed it: a fraction whose decimal ends (31/5, 89/10) as
    that decimal, exactly ('6.2', '8.9'); others as a fraction ('1/3').

    >>> exact_text(sp.Rational(31, 5)), exact_text(sp.Rational(-1, 3)), exact_text(4)
    ('6.2', '-1/3', '4')
    """
    q = sp.Rational(q)
    den, k = int(q.q), 0
    while den % 10 == 0 or den % 5 == 0 or den % 2 == 0:
        den //= 10 if den % 10 == 0 else 5 if den % 5 == 0 else 2
        k += 1
    if den != 1 or q.q == 1 or k > 12:
        return str(q)
    scaled = abs(int(q * 10**k))
    digits = str(scaled).rjust(k + 1, "0")
    text = (digits[:-k] + "." + digits[-k:]).rstrip("0").rstrip(".")
    return ("-" if q < 0 else "") + text
