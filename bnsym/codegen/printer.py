"""Printing a kernel: ``sympy.lambdify``'s NumPy printer, our CSE, and lines a person reads.

:func:`kernel_source` prints a :class:`~bnsym.codegen.kernels.Kernel` as a Python function:
the graph's definitions first (:func:`cse_with` hands them to ``sympy.cse`` as the first
replacements, so that the mean and the variance are computed once), the temporaries that
several lines share as ``_t0``, ``_t1``, ... in the order they are computed, terms in row
order (``x1 + x2 + ... + x10``), ``1/std`` rather than ``std**(-1.0)``, one output per line,
and long sums broken inside their parentheses.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from bnsym.codegen.kernels import InverseOrZero, Kernel

__all__ = ["Printer", "cse_with", "kernel_source", "split_top_level", "wrap"]


def cse_with(definitions: Sequence[tuple[sp.Symbol, sp.Expr]]) -> Callable[[Any], Any]:
    """A ``cse=`` function for lambdify: the graph definitions first, then ``sympy.cse``.

    ``sympy.cse`` runs over the definitions and the outputs together, naming what they share
    ``_t0``, ``_t1``, ... (a prefix no input or graph symbol has); the assignments are then
    ordered so that each follows everything it reads.
    """

    def cse(exprs: Any) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
        exprs = list(exprs)
        lhs = [sym for sym, _ in definitions]
        temps, reduced = sp.cse(
            [rhs for _, rhs in definitions] + exprs,
            symbols=sp.numbered_symbols("_t"),
            order="none",
        )
        assignments = list(temps) + list(zip(lhs, reduced[: len(lhs)], strict=True))
        outputs = [_tidy(e) for e in reduced[len(lhs) :]]
        needed = _needed(assignments, outputs)
        ordered = _in_dependency_order([(a, _tidy(e)) for a, e in assignments if a in needed])
        # number the temporaries in the order they are computed: _t0, _t1, ...
        temp_names = (sym for sym, _ in ordered if sym.name.startswith("_t"))
        renumber = {sym: sp.Symbol(f"_t{k}") for k, sym in enumerate(temp_names)}
        ordered = [(renumber.get(a, a), e.xreplace(renumber)) for a, e in ordered]
        return ordered, [e.xreplace(renumber) for e in outputs]

    return cse


def _tidy(e: sp.Expr) -> sp.Expr:
    """``x1/3 + x2/3 + x3/3`` -> ``(x1 + x2 + x3)/3``: one multiplication, not m."""
    return sp.factor_terms(e, radical=False, clear=False)


def _needed(
    assignments: list[tuple[sp.Symbol, sp.Expr]], outputs: Iterable[sp.Expr]
) -> set[sp.Symbol]:
    """The assigned symbols the outputs read, directly or through other assignments."""
    definition = dict(assignments)
    needed: set[sp.Symbol] = set()
    todo = [sym for e in outputs for sym in e.free_symbols]
    while todo:
        sym = todo.pop()
        if sym in definition and sym not in needed:
            needed.add(sym)
            todo.extend(definition[sym].free_symbols)
    return needed


def _in_dependency_order(
    assignments: list[tuple[sp.Symbol, sp.Expr]],
) -> list[tuple[sp.Symbol, sp.Expr]]:
    """Order assignments so that each comes after those it reads, else keeping their order."""
    assigned = {sym for sym, _ in assignments}
    done: set[sp.Symbol] = set()
    pending = list(assignments)
    ordered = []
    while pending:
        for k, (sym, rhs) in enumerate(pending):
            if (rhs.free_symbols & assigned) <= done:
                ordered.append(pending.pop(k))
                done.add(sym)
                break
        else:  # pragma: no cover - the graph is acyclic
            raise RuntimeError("cyclic definitions in the generated code")
    return ordered


def _natural(name: str) -> tuple[str, int]:
    """``x10`` -> ("x", 10): rows sort as 1, 2, ..., 10, not as strings."""
    match = re.fullmatch(r"(.*?)(\d*)", name)
    assert match is not None  # the pattern matches every string
    prefix, digits = match.groups()
    return prefix, int(digits) if digits else -1


class Printer(NumPyPrinter):
    """lambdify's NumPy printer, with terms in row order and a few spellings a person uses."""

    def _as_ordered_terms(self, expr: Any, order: Any = None) -> list[Any]:
        # Row order (x1 + x2 + ... + x10), positive terms first (x1 - mu_B), then simpler
        # terms first (4*dy1 - sum_dy - _t1*xhat1, as the textbook writes it).
        def key(term: Any) -> tuple[Any, ...]:
            names = sorted((_natural(sym.name) for sym in term.free_symbols), key=str)
            names.sort()
            return (term.could_extract_minus_sign(), len(term.free_symbols), names, str(term))

        return sorted(expr.args, key=key)

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp == -1:  # 1/std, not std**(-1.0)
            return f"1/{self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE['Pow'])}"
        return str(super()._print_Pow(expr, rational=rational))

    def _print_InverseOrZero(self, expr: Any) -> str:
        a = self._print(expr.args[0])
        return f"numpy.where({a} > 0, 1/{a}, 0.0)"


def _inverse_comment(inverse: str, sigma: str) -> list[str]:
    """Where eps is outside the root, the closed form of dx has the term
    x̂_i·sum_dy_xhat·std/σ, which is 0·∞ where σ = 0 (a constant group, or all zero where the
    layer is not centred); its limit is 0 (x̂ = 0)."""
    return [
        f"    # {inverse} = 1/{sigma}, or 0 where {sigma} = 0: there x_hat = 0, and the term",
        f"    # xhat_i*sum_dy_xhat*std/{sigma} of dx tends to 0, its limit (as in bnsym.reference)",
    ]


def kernel_source(kernel: Kernel) -> str:
    """The kernel's Python source, printed by lambdify's NumPy printer with our CSE."""
    fn = sp.lambdify(
        kernel.args,
        list(kernel.outputs),
        modules="numpy",
        # fully qualified: numpy.sqrt, as the module imports numpy and nothing from it
        printer=Printer(
            {"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": True}
        ),
        cse=cse_with(kernel.definitions),
        dummify=False,
        docstring_limit=None,
    )
    text = inspect.getsource(fn)
    text = re.sub(r"^def _lambdifygenerated\(", f"def {kernel.name}(", text)
    if "_Dummy" in text:  # pragma: no cover - every argument is a named Symbol
        raise RuntimeError("lambdify introduced a dummy name")
    inverses = {
        f"    {sym.name} = ": _inverse_comment(sym.name, str(rhs.args[0]))
        for sym, rhs in kernel.definitions
        if isinstance(rhs, InverseOrZero)
    }
    lines = []
    for line in text.rstrip().splitlines():
        lines += next((c for start, c in inverses.items() if line.startswith(start)), [])
        if line.startswith("    return [") and line.endswith("]"):
            items = split_top_level(line[len("    return [") : -1], ", ")
            lines += ["    return [", *(f"        {item}," for item in items), "    ]"]
        else:
            lines.append(wrap(line))
    return "\n".join(lines) + "\n"


def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` at each ``sep`` outside parentheses and brackets."""
    parts, depth, start, k = [], 0, 0, 0
    while k < len(text):
        ch = text[k]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and text.startswith(sep, k):
            parts.append(text[start:k])
            k += len(sep)
            start = k
            continue
        k += 1
    parts.append(text[start:])
    return parts


def wrap(line: str, width: int = 99) -> str:
    """Break a long line inside its parentheses before ``+``/``-`` or after ``,``.

    A sum over m = 64 rows would otherwise be one line of 700 characters.
    """
    if len(line) <= width:
        return line
    lhs, equals, rhs = line.partition(" = ")
    if equals and len(split_top_level(rhs, " + ")) > 1:  # a sum: parenthesize to break it
        line = f"{lhs} = ({rhs})"
    indent = " " * (len(line) - len(line.lstrip()) + 8)
    out, current, depth = [], "", 0
    k = 0
    while k < len(line):
        ch = line[k]
        depth += ch in "([{"
        depth -= ch in ")]}"
        current += ch
        k += 1
        at_break = depth > 0 and (
            ch == "," or line.startswith(" + ", k) or line.startswith(" - ", k)
        )
        if at_break and len(current) > width - 20 and len(current) > len(indent) + 20:
            out.append(current.rstrip())
            current = indent
            while k < len(line) and line[k] == " ":
                k += 1
    out.append(current)
    return "\n".join(out)
