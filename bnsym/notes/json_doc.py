"""The derivation as one JSON object, and reading it back (``bnsym derive --format json``).

Every expression is SymPy's ``str()`` (:func:`sstr`), which :func:`load_json` reads back
through :mod:`bnsym.notes.safe_parse` without running anything. The keys are documented in
``docs/derive.md`` ("JSON, and reading it back") and checked there by the schema test
(tests/test_json_schema.py).

SymPy's printer prints a subexpression each time it meets it; the explicit results of m
elements share their statistics (μ and σ² written out in x₁ … x_m), so printing them one by
one is O(m²) calls of the printer. :class:`SharedStr` prints each distinct subexpression of
the document once and reuses its text: the same string, byte for byte, in a tenth of the
time at m = 128 (benchmarks/bench_formats.py).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.printing.str import StrPrinter

from bnsym.core.build import symbol_table
from bnsym.core.graph import Step

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["SharedStr", "general_json", "json_obj", "load_json", "to_json"]


class SharedStr(StrPrinter):
    """SymPy's ``sstr`` with every distinct subexpression printed once (per printer).

    ``SharedStr(order="none").doprint(e) == sympy.sstr(e, order="none")`` for every ``e``:
    the str printer's text of a subexpression does not depend on where it occurs (a parent
    adds its own parentheses around it), so the text is kept by expression and reused.

    >>> x = sp.Symbol("x")
    >>> SharedStr().doprint((x + 1) ** 2 + sp.sqrt(x + 1))
    'sqrt(x + 1) + (x + 1)**2'
    """

    def __init__(self, order: str | None = None) -> None:
        super().__init__({} if order is None else {"order": order})
        self._seen: dict[Any, str] = {}

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if kwargs or not isinstance(expr, sp.Basic):
            return str(super()._print(expr, **kwargs))
        text = self._seen.get(expr)
        if text is None:
            text = self._seen[expr] = str(super()._print(expr))
        return text


def to_json(d: Derivation) -> str:
    """One JSON object; every expression is SymPy's ``str()`` over x1..xm, dy1..dym, gamma,
    beta, epsilon (and running_mean, running_var in eval mode). Read it back with
    :func:`load_json`.
    """
    obj = json_obj(d)
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def json_obj(d: Derivation) -> dict[str, Any]:
    """The JSON object of :func:`to_json`, before it is written."""
    # order="none" prints SymPy's own (canonical, deterministic) argument order and skips the
    # sort that makes str() slow at large m.
    printer = SharedStr(order="none")

    def exprs(feat: dict[str, Any]) -> dict[str, Any]:
        def one(e: Any) -> Any:
            if isinstance(e, tuple):  # one per γ_k: a list
                return [one(x) for x in e]
            return None if e is None else printer.doprint(e)

        return {
            "mean": one(feat["mean"]),
            "var": one(feat["var"]),
            "x_hat": [one(e) for e in feat["x_hat"]],
            "y": [one(e) for e in feat["y"]],
            "dx": [one(e) for e in feat["dx"]],
            "dgamma": one(feat["dgamma"]),
            "dbeta": one(feat["dbeta"]),
        }

    obj: dict[str, Any] = {"m": d.m, "options": d.options.as_dict()}
    obj.update(exprs(d.features[0]))
    if len(d.features) > 1:
        obj["features"] = [exprs(f) for f in d.features]
    o = d.options
    obj["symbols"] = sorted(symbol_table(d.m, o.layer, o.channels), key=_natural)
    obj["identities"] = [  # the identities' statements (display symbols by name)
        {"name": st.rule, "lhs": sp.sstr(st.lhs), "rhs": sp.sstr(st.rhs), "note": st.note}
        for st in d.identities
    ]
    obj["verified"] = dict(d.verified)
    obj["proof_methods"] = dict(d.proof_methods)
    if d.general is not None:
        obj["general"] = general_json(d.general)
    return obj


def general_json(g: Any) -> dict[str, Any]:
    """The general form (symbolic m) as SymPy strings: ``Sum(dy[j], (j, 1, m))``."""

    def step(st: Step) -> dict[str, str]:
        return {"lhs": sp.sstr(st.lhs), "rhs": sp.sstr(st.rhs), "rule": st.rule}

    return {
        "m": "m",
        "forward": [step(st) for st in g.forward],
        "backward": [step(st) for st in g.backward],
        "closed_form": step(g.closed_form),
        "verified": dict(g.verified),
        "proof_methods": dict(g.methods),
    }


def _natural(name: str) -> tuple[str, int]:
    hit = re.match(r"([a-z_]+?)(\d*)\Z", name)
    assert hit
    return hit.group(1), int(hit.group(2) or 0)


_EXPR_KEYS = ("mean", "var", "dgamma", "dbeta")
_LIST_KEYS = ("x_hat", "y", "dx")


def load_json(source: str | dict[str, Any]) -> dict[str, Any]:
    """Read ``bnsym derive --format json`` output back, with SymPy expressions in place of
    strings (``gamma`` and ``beta`` become symbols, not SymPy's functions). Nothing in the
    file is run: the expressions are parsed against an allow-list of what bnsym writes, and
    anything else raises ``ExpressionError`` (a ValueError) naming the field; see
    :mod:`bnsym.notes.safe_parse`.

    >>> from bnsym.derivation import derive
    >>> load_json(to_json(derive(4, eps=0, values="2,0,2,4")))["x_hat"]
    [0, -sqrt(2), 0, sqrt(2)]
    >>> load_json(to_json(derive(2)))["dbeta"]
    dy1 + dy2
    """
    from bnsym.notes.safe_parse import read_document

    return read_document(source, _EXPR_KEYS + _LIST_KEYS)
