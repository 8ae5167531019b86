"""Expressions of a derivation as LaTeX, their typeset width, and line breaking.

The printer writes the derivation's notation (x̂_i, μ_B, σ²_B, ∂ℓ/∂y_i, from
:func:`bnsym.notes.text.display_name`) and reads like handwritten notes:

* a sum SymPy has put in its canonical order is printed in index order (x_1, x_2, …, x_10,
  numbers first, ε, β and μ_B last: :func:`bnsym.notes.text.term_key`), while a sum built
  unevaluated keeps the order it was written in;
* nothing that is itself a fraction goes into a numerator: gradient symbols (∂ℓ/∂x̂_1), sums
  of gradients and sums with fractions in them follow the fraction as factors,
  ``-\\frac{x_1 - \\mu_B}{2 (\\sigma_B^2 + \\epsilon)^{3/2}}
  \\frac{\\partial\\ell}{\\partial\\hat x_1}``.

>>> from bnsym.core.graph import Symbols
>>> s = Symbols.of(2)
>>> tex(s.dy[0] * s.gamma / s.var)
'\\\\frac{\\\\gamma}{\\\\sigma_{B}^{2}} \\\\frac{\\\\partial \\\\ell}{\\\\partial y_{1}}'
"""

from __future__ import annotations

import functools
import re
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

from bnsym.notes.text import channel_sum, display_name, indexed_name, term_key

__all__ = ["break_lines", "math_width", "number_text", "ordered_terms", "tex"]

_CANONICAL = functools.cmp_to_key(sp.Basic.compare)


def ordered_terms(add: sp.Expr) -> list[sp.Expr]:
    """The terms of a sum in the order the notes print them.

    A sum in SymPy's canonical order (an evaluated one) is sorted by :func:`term_key`; an
    unevaluated sum keeps its written order. (Compared with the canonical order directly:
    SymPy's cache ignores the evaluate flag, so rebuilding the sum would not tell.)
    """
    terms = list(add.args)
    if terms == sorted(terms, key=_CANONICAL):
        terms.sort(key=term_key)
    return terms


def _is_fraction(latex: str) -> bool:
    """Whether printed LaTeX is (or holds) a fraction or a Σ, and so must not go in a
    numerator."""
    return r"\frac" in latex or r"\sum" in latex


class _NotesPrinter(LatexPrinter):
    """SymPy's LaTeX printer with the derivation's symbols, term order and fractions."""

    def __init__(self, decimals: bool = False) -> None:
        super().__init__({"fold_frac_powers": True})
        self.decimals = decimals

    def _print_Rational(self, expr: sp.Rational) -> str:  # noqa: N802
        """With ``decimals``, a number typed as a decimal is shown as one (89/10 as 8.9)
        and 1/10^k as 10^{-k}, as ε = 1e-5 was given."""
        k = _decimal_places(expr)
        if self.decimals and k:
            if abs(expr.p) == 1 and k > 2:
                return ("-" if expr.p < 0 else "") + f"10^{{-{k}}}"
            return _decimal(expr, k)
        return str(super()._print_Rational(expr))

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:  # noqa: N802
        return display_name(expr.name, "latex")

    def _print_Indexed(self, expr: sp.Indexed) -> str:  # noqa: N802
        return indexed_name(expr, "latex", self._print)

    def _print_Sum(self, expr: sp.Sum) -> str:  # noqa: N802
        r"""A Σ over one channel's elements (group norm) as \sum_{j \in c}; others as SymPy."""
        if not channel_sum(expr):
            return str(super()._print_Sum(expr))
        v = expr.limits[0][0]
        body = self._print(expr.function)
        if expr.function.is_Add:
            body = rf"\left({body}\right)"
        return rf"\sum_{{{self._print(v)} \in c}} {body}"

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:  # noqa: N802
        out = ""
        for k, term in enumerate(ordered_terms(expr)):
            if k == 0:
                pass
            elif term.could_extract_minus_sign():
                out += " - "
                term = -term
            else:
                out += " + "
            text = self._print(term)
            out += rf"\left({text}\right)" if self._needs_add_brackets(term) else text
        return out

    def _print_Mul(self, expr: sp.Expr) -> str:  # noqa: N802
        """``[−] \\frac{numerator}{denominator} trailing-factors``: factors that print as
        fractions (∂ℓ/∂x̂_1, Σ_j …) and sums holding fractions trail instead of nesting."""
        if expr.is_Mul and expr.could_extract_minus_sign():
            negated = -expr
            if not (negated.is_Mul and negated.could_extract_minus_sign()):
                return "- " + self._print(negated)
        numerator: list[sp.Expr] = []
        denominator: list[sp.Expr] = []
        for f in sp.Mul.make_args(expr):
            if f.is_Rational and f != 1:
                if f.p != 1:
                    numerator.append(sp.Integer(f.p))
                if f.q != 1:
                    denominator.append(sp.Integer(f.q))
            elif f.is_Pow and f.exp.is_Rational and f.exp.is_negative:
                denominator.append(f.base ** (-f.exp))
            else:
                numerator.append(f)
        plain = [f for f in numerator if not _is_fraction(self._print(f))]
        trail = [f for f in numerator if _is_fraction(self._print(f))]
        if denominator and all(f.is_Number for f in denominator):
            # (x_1 + … + x_4)/4 reads better as \frac{1}{4} (x_1 + … + x_4)
            trail += [f for f in plain if f.is_Add]
            plain = [f for f in plain if not f.is_Add]
        trail.sort(key=lambda f: bool(f.is_Add))  # ∂ℓ/∂σ²_B (…), not (…) ∂ℓ/∂σ²_B
        alone = len(plain) + len(trail) + bool(denominator) == 1
        parts = []
        if denominator:
            top = self._factors(plain, brackets=len(plain) > 1) or "1"
            bottom = self._factors(denominator, brackets=len(denominator) > 1)
            parts.append(rf"\frac{{{top}}}{{{bottom}}}")
        elif plain:
            parts.append(self._factors(plain, brackets=not alone))
        if trail:
            parts.append(self._factors(trail, brackets=not alone))
        return " ".join(parts) or "1"

    def _factors(self, factors: list[sp.Expr], brackets: bool) -> str:
        """Factors side by side; sums in brackets when ``brackets`` (not alone)."""
        out: list[str] = []
        for f in factors:
            text = self._print(f)
            if (f.is_Add and brackets) or (f.is_Number and f.is_negative and out):
                text = rf"\left({text}\right)"
            out.append(text)
        return " ".join(out)


def _decimal_places(q: sp.Rational) -> int:
    """k when ``q``'s denominator is 10^k (1 <= k <= 12), else 0."""
    k = 0
    den = int(q.q)
    while den % 10 == 0 and k < 12:
        den //= 10
        k += 1
    return k if den == 1 else 0


def _decimal(q: sp.Rational, k: int) -> str:
    """``q`` (whose denominator is 10^k) as a decimal, exactly: 89/10 -> '8.9'."""
    digits = str(abs(int(q.p))).rjust(k + 1, "0")
    return ("-" if q.p < 0 else "") + digits[:-k] + "." + digits[-k:]


def number_text(q: Any) -> str:
    """A number of a worked example as plain text, the way :func:`tex` shows it with
    ``decimals``: 8.9, 1/3, 1e-05 for 10^{-5}.

    >>> number_text(sp.Rational(89, 10)), number_text(sp.Rational(-1, 3)), number_text(2)
    ('8.9', '-1/3', '2')
    """
    q = sp.Rational(q)
    k = _decimal_places(q)
    if k and abs(q.p) == 1 and k > 2:
        return ("-" if q.p < 0 else "") + f"1e-{k}"
    return _decimal(q, k) if k else str(q)


_PRINTER = _NotesPrinter()
_DECIMAL_PRINTER = _NotesPrinter(decimals=True)


def tex(expr: Any, decimals: bool = False) -> str:
    """LaTeX of ``expr`` in the derivation's notation (see the module docstring).

    >>> from bnsym.core.graph import Symbols
    >>> s = Symbols.of(2)
    >>> tex(-s.d_x_hat[0] * (s.x[0] - s.mu) / (2 * (s.var + s.eps) ** sp.Rational(3, 2)))
    '- \\\\frac{x_{1} - \\\\mu_{B}}{2 \\\\left(\\\\sigma_{B}^{2} + \\\\epsilon\\\\right)^{3/2}} \
\\\\frac{\\\\partial \\\\ell}{\\\\partial \\\\hat{x}_{1}}'
    """
    return _tex(sp.sympify(expr), decimals)


@functools.lru_cache(maxsize=8192)  # break_lines prints the same terms at several widths
def _tex(expr: sp.Basic, decimals: bool) -> str:
    printer = _DECIMAL_PRINTER if decimals else _PRINTER
    return str(printer.doprint(expr))


# --- width ---------------------------------------------------------------------------------

_WIDE = {r"\quad": 2.0, r"\qquad": 4.0, r"\sum": 1.6, r"\cdot": 1.2, r"\ldots": 2.0, r"\to": 2}
_ZERO = {r"\left", r"\right", r"\biggl", r"\biggr", r"\big", r"\Big", r"\displaystyle"}
_ARG = {r"\hat", r"\mathbf", r"\mathrm", r"\text", r"\textbf", r"\operatorname"}


def math_width(latex: str) -> float:
    """Estimated typeset width of display math, in letters of the surrounding font.

    A fraction is as wide as the wider of its parts, scripts are smaller, binary operators
    and relations carry their spacing. Conservative rather than exact.

    >>> math_width(r"\\frac{x_{1}}{4} + \\frac{x_{2}}{4}")
    6.2
    """
    return round(_width(latex, [0]), 2)


def _width(s: str, pos: list[int], stop: str = "") -> float:
    """Width of ``s`` from ``pos[0]`` up to the closing brace (``stop="}"``) or the end."""
    total = 0.0
    while pos[0] < len(s):
        c = s[pos[0]]
        pos[0] += 1
        if c == stop:
            break
        if c == "{":
            total += _width(s, pos, "}")
        elif c == "\\":
            hit = re.match(r"[A-Za-z]+|.", s[pos[0] :])
            name = "\\" + (hit.group(0) if hit else "")
            pos[0] += len(name) - 1
            if name == r"\frac":
                total += max(_group(s, pos), _group(s, pos)) + 0.4
            elif name == r"\sqrt":
                total += _group(s, pos) + 1.5
            elif name in _ARG:
                total += _group(s, pos)
            elif name in (r"\begin", r"\end"):
                _group(s, pos)
            elif name in _ZERO:
                pass
            elif name in (r"\,", r"\:", r"\;", r"\!", "\\\\"):
                total += 0.3
            elif name == "\\ ":
                total += 0.5
            else:
                total += _WIDE.get(name, 1.0)
        elif c in "^_":
            total += 0.7 * _group(s, pos)
        elif c in "+-=<>":
            total += 2.0
        elif c in "()[]|":
            total += 0.6
        elif c in ",.;:":
            total += 0.5
        elif c in " &":
            pass
        else:
            total += 1.0
    return total


def _group(s: str, pos: list[int]) -> float:
    """Width of the next argument: a braced group or a single token."""
    while pos[0] < len(s) and s[pos[0]] == " ":
        pos[0] += 1
    if pos[0] < len(s) and s[pos[0]] == "{":
        pos[0] += 1
        return _width(s, pos, "}")
    if pos[0] < len(s) and s[pos[0]] == "\\":
        hit = re.match(r"\\([A-Za-z]+|.)", s[pos[0] :])
        name = hit.group(0) if hit else "\\"
        pos[0] += len(name)
        return _WIDE.get(name, 1.0)
    pos[0] += 1
    return 1.0


# --- line breaking -------------------------------------------------------------------------


def break_lines(expr: Any, budget: float, decimals: bool = False) -> list[str]:
    """``expr`` as LaTeX lines, each within ``budget`` letters where a sum allows a break.

    A sum is packed term by term (continuation lines start with their sign); a product with
    a long bracketed sum becomes ``prefix \\biggl( … \\biggr)``; anything else stays whole.

    >>> from bnsym.core.graph import Symbols
    >>> x = Symbols.of(4).x
    >>> break_lines(sum(x) / 4, 10)
    ['\\\\frac{x_{1}}{4} + \\\\frac{x_{2}}{4}', '+ \\\\frac{x_{3}}{4} + \\\\frac{x_{4}}{4}']
    """
    expr = sp.sympify(expr)
    whole = tex(expr, decimals)
    if math_width(whole) <= budget:
        return [whole]
    if expr.is_Add:
        return _pack(expr, budget, budget, decimals)
    if expr.is_Mul:
        sums = [f for f in expr.args if f.is_Add]
        if sums:
            inner = max(sums, key=lambda f: math_width(tex(f, decimals)))
            rest = sp.Mul(*[f for f in expr.args if f is not inner])
            prefix = "-" if rest == -1 else "" if rest == 1 else tex(rest, decimals)
            first = budget - math_width(prefix) - 1.5
            lines = _pack(inner, budget - 1.5, max(first, 8), decimals)
            lines[0] = f"{prefix} \\biggl( {lines[0]}".lstrip()
            lines[-1] += r" \biggr)"
            return lines
    return [whole]


def _pack(add: sp.Expr, budget: float, first: float, decimals: bool) -> list[str]:
    """The terms of a sum, packed greedily into lines; each line but the first starts with
    its sign."""
    lines: list[str] = []
    current = ""
    for k, term in enumerate(ordered_terms(add)):  # the order tex() prints them in
        negative = term.could_extract_minus_sign()
        sign = "-" if negative else "" if k == 0 else "+"
        parts = break_lines(-term if negative else term, budget - 2, decimals)
        piece = f"{sign} {parts[0]}".lstrip()
        limit = first if not lines else budget
        if current and math_width(f"{current} {piece}") > limit:
            lines.append(current)
            current = ""
        current = f"{current} {piece}".lstrip()
        if len(parts) > 1:
            lines.append(current)
            lines += parts[1:-1]
            current = parts[-1]
    lines.append(current)
    return lines
