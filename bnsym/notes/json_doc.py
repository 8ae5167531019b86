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
    obj["symbols"] = symbols_used(d)
    obj["identities"] = [  # the identities' statements (display symbols by name)
        {"name": st.rule, "lhs": sp.sstr(st.lhs), "rhs": sp.sstr(st.rhs), "note": st.note}
        for st in d.identities
    ]
    obj["verified"] = dict(d.verified)
    obj["proof_methods"] = dict(d.proof_methods)
    if d.general is not None:
        obj["general"] = general_json(d.general)
    return obj


def symbols_used(d: Derivation) -> list[str]:
    """The names of exactly the symbols the explicit expressions use (``mean`` … ``dbeta``,
    and those of every feature): no γ, β without them, no running statistics in train mode,
    and ``gamma1``, ``running_mean2`` where several features have their own."""
    used: set[str] = set()
    for feat in d.features:
        for key in ("mean", "var", "x_hat", "y", "dx", "dgamma", "dbeta"):
            value = feat[key]
            for e in value if isinstance(value, tuple) else (value,):
                if isinstance(e, sp.Basic):
                    used |= {s.name for s in e.free_symbols}
    return sorted(used, key=_natural)


#: What each name of the general form means that no step defines (the steps define the
#: statistics, x̂, y and the adjoints): the inputs, the indices and sizes. Written only where
#: the expressions use it; each name has this one meaning.
GENERAL_NAMES: dict[str, str] = {
    "m": "the number of values in a group",
    "i": "the element a step is written for, 1 ≤ i ≤ m",
    "j": "the index of a sum",
    "c": "a channel of the group, 1 ≤ c ≤ C (the index of dgamma[c], dbeta[c])",
    "C": "the channels of a group (group norm)",
    "channel": "channel(i): the channel of element i",
    "x": "x[i]: the inputs",
    "dy": "dy[i]: the upstream gradients ∂ℓ/∂y_i",
    "gamma": "the scale γ: gamma, or gamma[i] per element, gamma[channel(i)] per channel",
    "beta": "the shift β: beta, or beta[i] per element, beta[channel(i)] per channel",
    "epsilon": "ε, added to the variance (or to its root)",
    "running_mean": "eval mode: the running mean",
    "running_var": "eval mode: the running variance",
}
#: The general form writes the root of a statistic as its own symbol (σ_B = √σ²_B, with ε
#: outside the root); the JSON writes the root, so that every name is a step's or an input's.
_ROOT_OF = {"sigma_B": "sigma2_B", "sigma": "sigma2", "nu": "nu2"}
#: c(i), the channel of element i, is written channel(i): c is a channel index elsewhere.
_CHANNEL = sp.Function("channel")


def _general_expr(e: Any) -> Any:
    """``e`` as the JSON writes it: roots of statistics written out, channel(i) for c(i)."""
    from bnsym.core.general import CH

    roots = {
        s: sp.sqrt(sp.Symbol(_ROOT_OF[s.name], positive=True))
        for s in e.free_symbols
        if isinstance(s, sp.Symbol) and s.name in _ROOT_OF
    }
    if roots:
        e = e.xreplace(roots)
    return e.replace(CH, _CHANNEL) if e.has(CH) else e


def general_names(exprs: list[Any], defined: set[str]) -> dict[str, str]:
    """The rows of GENERAL_NAMES that ``exprs`` use and no step defines."""
    used: set[str] = set()
    for e in exprs:
        used |= {s.name for s in e.free_symbols if isinstance(s, sp.Symbol)}
        used |= {str(b.label) for b in e.atoms(sp.IndexedBase)}
        used |= {str(limit[0]) for total in e.atoms(sp.Sum) for limit in total.limits}
        used |= {
            f.func.__name__
            for f in e.atoms(sp.Function)
            if isinstance(f, sp.core.function.AppliedUndef)
        }
    return {n: meaning for n, meaning in GENERAL_NAMES.items() if n in used - defined}


def general_json(g: Any) -> dict[str, Any]:
    """The general form (symbolic m) as SymPy strings: ``Sum(dy[j], (j, 1, m))``, with
    ``names`` defining every name that no step defines (the inputs, indices and sizes)."""
    steps = {
        key: [(_general_expr(st.lhs), _general_expr(st.rhs), st.rule) for st in sts]
        for key, sts in (("forward", g.forward), ("backward", g.backward))
    }
    closed = (_general_expr(g.closed_form.lhs), _general_expr(g.closed_form.rhs), "closed form")
    all_steps = [*steps["forward"], *steps["backward"]]
    defined = {
        str(lhs.base.label) if isinstance(lhs, sp.Indexed) else str(lhs) for lhs, _, _ in all_steps
    }

    def step(st: tuple[Any, Any, str]) -> dict[str, str]:
        return {"lhs": sp.sstr(st[0]), "rhs": sp.sstr(st[1]), "rule": st[2]}

    rhs = [r for _, r, _ in (*all_steps, closed)] + [lhs for lhs, _, _ in (*all_steps, closed)]
    return {
        "m": "m",
        "names": general_names(rhs, defined),
        "forward": [step(st) for st in steps["forward"]],
        "backward": [step(st) for st in steps["backward"]],
        "closed_form": step(closed),
        "verified": dict(g.verified),
        "proof_methods": dict(g.methods),
    }


def _natural(name: str) -> tuple[str, int]:
    hit = re.match(r"([a-z_]+?)(\d*)\Z", name)
    assert hit
    return hit.group(1), int(hit.group(2) or 0)


#: Where a document holds expressions, for load_json: the keys of one expression (or null, or
#: a list), in the document and in each of its features; and its sections of steps
#: {lhs, rhs, ...}: section -> (keys of steps, keys of lists of names, keys of sections of the
#: same shape nested in it, "*" for every key). A new section (a mode of differentiation's)
#: is a row.
EXPRESSION_KEYS = ("mean", "var", "dgamma", "dbeta", "x_hat", "y", "dx")
SECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "general": (("forward", "backward", "closed_form"), (), ()),
    "double_backward": (("graph", "steps", "closed_form"), ("cotangents", "results"), ()),
    "third_order": (("steps", "closed_form"), ("cotangents", "results"), ()),
    # forward mode (bnsym.notes.modes): the jvp with its general form, the compositions of
    # order 2 keyed by their word (ff, fr, rf), the forward chain's third order
    "forward_mode": (
        ("steps", "closed_form"),  # its identities are statements (⟨ẏ, ȳ⟩ …), kept as text
        ("tangents", "seeds", "results"),
        ("general",),
    ),
    "second_order": ((), (), ("*",)),
    "forward_third_order": (("steps", "closed_form"), ("seeds", "results"), ()),
}


def load_json(source: str | dict[str, Any]) -> dict[str, Any]:
    """Read ``bnsym derive --format json`` output back (any order), with SymPy expressions in
    place of strings (``gamma`` and ``beta`` become symbols, not SymPy's functions). Nothing
    in the file is run: the expressions are parsed against an allow-list of what bnsym
    writes, and anything else raises ``ExpressionError`` (a ValueError) naming the field; see
    :mod:`bnsym.notes.safe_parse`.

    >>> from bnsym.derivation import derive
    >>> load_json(to_json(derive(4, eps=0, values="2,0,2,4")))["x_hat"]
    [0, -sqrt(2), 0, sqrt(2)]
    >>> load_json(to_json(derive(2)))["dbeta"]
    dy1 + dy2
    """
    from bnsym.notes.safe_parse import read_document

    return read_document(source, EXPRESSION_KEYS, SECTIONS)
