"""Reading bnsym's own expression strings back without running anything they contain.

``sympy.sympify`` evaluates Python, so a JSON file with ``"mean": "__import__('os')…"`` would
run a command. Here the text is parsed with :mod:`ast` and the tree walked against an
allow-list of exactly what bnsym writes:

- numbers (integers, decimals), bounded in size;
- the symbol names bnsym writes, by rule: a known stem (``x``, ``dy``, ``gamma``, ``beta``,
  ``epsilon``, ``running_mean``, ``running_var``, …) followed by an optional index
  (``x12``, ``dy3``, ``gamma2``);
- ``+ - * / **``, unary ``-`` and ``+``, parentheses;
- the functions bnsym emits: ``sqrt``, ``Abs``, ``Rational(p, q)``, and for the general form
  ``Sum(term, (i, lo, hi))`` over ``x[i]``-style ``Indexed`` entries.

Everything else (attributes, calls of other names, strings, lambdas, comprehensions, …) is
refused with :class:`ExpressionError` naming the field. Sizes are bounded before SymPy sees
them — the text's length, the tree's size and depth, the digits of each number, exponents,
and the size of every number computed on the way — so no document takes more than a moment.
The SymPy objects are built here, node by node; ``sympify``, ``eval`` and ``parse_expr`` are
never called on the text.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import sympy as sp

from bnsym.errors import BnsymError

#: The longest expression string read, and the nodes of its syntax tree (m = 128 writes
#: a few kB and a few thousand nodes per element).
MAX_CHARS = 1_000_000
MAX_NODES = 200_000
#: Depth of nesting of one expression.
MAX_DEPTH = 200
#: Digits of one integer literal, and bits of any number met while building (2**10**10 is
#: refused before it is computed: the result's size is estimated first).
MAX_DIGITS = 1000
MAX_BITS = 20_000
#: A root of a number costs SymPy a search for perfect powers, which grows fast with the
#: number's size (a 5000-bit base takes half a minute): the numbers under a non-integer power
#: are bounded more tightly, and only so many roots of numbers above 64 bits are taken in one
#: document (each below 0.05 s).
MAX_ROOT_BITS = 512
MAX_LARGE_ROOTS = 50
#: A power's exponent must be a number p/q with |p|, q at most this (bnsym writes 2, 3/2, -1/2).
MAX_EXPONENT = 64
#: The largest index of an indexed name (x12, gamma3).
MAX_INDEX = 10**6


class ExpressionError(BnsymError, ValueError):
    """An expression string that bnsym would not have written; the message names the field."""


# Stems of the names bnsym writes and their SymPy assumptions (the same as
# ``symbolic.Symbols``, so that a symbol read back equals the derivation's own). A stem in
# _INDEXED may carry an index (x12; gamma2 for per-element parameters), the others may not.
_ASSUMPTIONS: dict[str, dict[str, bool]] = {
    "x": {"real": True},
    "dy": {"real": True},
    "gamma": {"real": True},
    "beta": {"real": True},
    "dgamma": {"real": True},
    "dbeta": {"real": True},
    "running_mean": {"real": True},
    "running_var": {"positive": True},
    "epsilon": {"positive": True},
}
_INDEXED = {"x", "dy", "gamma", "beta", "dgamma", "dbeta", "running_mean", "running_var"}
#: The general form's graph nodes and their adjoints: the statistics by exact name, and the
#: element-wise nodes only as ``xhat[i]``-style Indexed bases.
_GRAPH_NAMES: dict[str, dict[str, bool]] = {
    **{n: {"real": True} for n in ("mu_B", "mu", "dmu_B", "dmu", "dsigma2_B", "dsigma2")},
    **{n: {"positive": True} for n in ("sigma2_B", "sigma2", "sigma_B", "sigma", "nu2", "nu")},
    "dnu2": {"real": True},
}
_BASES = {**{n: {"real": True} for n in ("xhat", "dxhat", "dx", "y")}, **_ASSUMPTIONS}
# forward mode's general form: ẋ[i], x̂̇[i], ẏ[i], γ̇[c(i)], β̇[c(i)]
_BASES.update({n: {"real": True} for n in ("dotx", "dotxhat", "doty", "dotgamma", "dotbeta")})
_NAME = re.compile(r"(?P<stem>[a-z_]+?)(?P<index>[1-9][0-9]*)?")
#: Summation indices of the general form, Sum(x[i], (i, 1, m)), and the batch size m.
#: Group norm's general form adds c (a channel), C (the channels of a group) and c(i), the
#: channel of element i.
_DUMMIES = {"i", "j", "k", "c"}
_INTEGERS = {
    **{name: sp.Symbol(name, integer=True) for name in _DUMMIES},
    "m": sp.Symbol("m", integer=True, positive=True),
    "C": sp.Symbol("C", integer=True, positive=True),
}
_FUNCTIONS = {"sqrt", "Abs", "Rational", "Sum", "c"}
_CHANNEL = sp.Function("c")


#: Forward mode's names (bnsym.proofs.modes): prefixes (dif, del, bar, dot; at least one) on
#: a node's or an input's name, or on an adjoint's (dotdx3); the graph's x̂_i it reads; its
#: closed forms' sums and coefficients (and r = D/σ, positive, as the order-2 closed form has).
_MODE_NAME = re.compile(
    r"(?:(?:dif)?(?:del)?(?:bar)?dot|(?:dif)?(?:del)?bar|(?:dif)?del|dif)"
    r"(?:d?(?:xhat|x|y|gamma|beta|sigma2_B|sigma2|mu_B|mu|nu2)[1-9]?[0-9]*|D|B)"
)
_MODE_PLAIN = re.compile(
    r"(?:xhat|dxhat)[1-9][0-9]*|B|(?:w_)?(?:sum_g|sum_g_xhat|sum_h|sum_h_xhat|q|coef_xhat)"
)


def symbol(name: str) -> sp.Symbol | None:
    """The symbol bnsym writes as ``name`` (``x12``, ``gamma``), or None if it writes no such.

    >>> symbol("x12"), symbol("epsilon").is_positive, symbol("os")
    (x12, True, None)
    >>> symbol("deldotx3"), symbol("r").is_positive
    (deldotx3, True)
    """
    if name in _GRAPH_NAMES:
        return sp.Symbol(name, **_GRAPH_NAMES[name])
    if name == "r":
        return sp.Symbol(name, positive=True)
    if _MODE_NAME.fullmatch(name) or _MODE_PLAIN.fullmatch(name):
        return sp.Symbol(name, real=True)
    hit = _NAME.fullmatch(name)
    if hit is None or hit["stem"] not in _ASSUMPTIONS:
        return None
    if hit["index"] is not None:
        if hit["stem"] not in _INDEXED or int(hit["index"]) > MAX_INDEX:
            return None
    return sp.Symbol(name, **_ASSUMPTIONS[hit["stem"]])


def parse_expression(text: object, field: str, reader: Reader | None = None) -> sp.Expr:
    """Parse one expression as bnsym writes it; :class:`ExpressionError` naming ``field``.

    >>> parse_expression("gamma*(dy1 - dy2)/(2*sqrt(epsilon + x1**2))", "dx[0]")
    gamma*(dy1 - dy2)/(2*sqrt(epsilon + x1**2))
    >>> parse_expression("__import__('os').system('true')", "mean")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bnsym.notes.safe_parse.ExpressionError: mean: a call of "__import__('os').system" is not ...
    """
    reader = Reader() if reader is None else reader
    reader.field = field
    if not isinstance(text, str):
        raise ExpressionError(f"{field}: expected an expression string, not {_short(text)}.")
    if len(text) > MAX_CHARS:
        raise ExpressionError(
            f"{field}: the expression is {len(text)} characters long, above the limit of "
            f"{MAX_CHARS}; bnsym writes nothing that long."
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = getattr(exc, "msg", None) or type(exc).__name__
        raise ExpressionError(f"{field}: {_short(text)} is not an expression ({detail}).") from None
    nodes = 0
    for _ in ast.walk(tree):
        nodes += 1
        if nodes > MAX_NODES:
            raise ExpressionError(
                f"{field}: the expression has more than {MAX_NODES} terms and operators; "
                "bnsym writes nothing that large."
            )
    return reader.build(tree.body, 0)


class Reader:
    """Builds SymPy objects from allow-listed syntax trees, bounding every number; one reader
    per document, so that the budget of large roots is the document's."""

    def __init__(self) -> None:
        self.field = ""
        self.large_roots = 0

    def parse(self, text: object, field: str) -> sp.Expr:
        """:func:`parse_expression` within this reader's budget."""
        return parse_expression(text, field, self)

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{self.field}: {what}")

    def build(self, node: ast.expr, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {MAX_DEPTH} levels.")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            terms = self._chain(node, (ast.Add, ast.Sub), depth)
            return self.bounded(sp.Add(*(t if add else -t for add, t in terms)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            factors = self._chain(node, (ast.Mult, ast.Div), depth)
            return self.bounded(sp.Mul(*(f if mul else self.reciprocal(f) for mul, f in factors)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self.power(self.build(node.left, depth + 1), self.build(node.right, depth + 1))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Constant):
            return self.number(node.value)
        if isinstance(node, ast.Name) and node.id in _INTEGERS:
            return _INTEGERS[node.id]
        if isinstance(node, ast.Name):
            sym = symbol(node.id)
            if sym is None:
                raise self.fail(
                    f"{node.id!r} is not a name bnsym writes (x1…xm, dy1…dym, gamma, beta, "
                    "epsilon, running_mean, running_var, with an index where bnsym gives one)."
                )
            return sym
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Subscript):
            return self.indexed(node, depth)
        raise self.fail(
            f"{type(node).__name__} ({_short(ast.unparse(node))}) is not part of an expression "
            "bnsym writes; only numbers, names, + - * / **, sqrt, Abs, Rational and Sum are read."
        )

    def _chain(self, node: ast.BinOp, ops: tuple[type, ...], depth: int) -> list[tuple[bool, Any]]:
        """The operands of a left-leaning chain a ± b ± c … (or a */ b */ c …), in order,
        each with True for + (or *): built in one SymPy call rather than one per operator,
        and walked in a loop, since a long sum is a deep tree."""
        right: list[tuple[bool, ast.expr]] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp) and isinstance(left.op, ops):
            right.append((isinstance(left.op, (ast.Add, ast.Mult)), left.right))
            left = left.left
        operands = [(True, self.build(left, depth + 1))]
        operands += [(sign, self.build(r, depth + 1)) for sign, r in reversed(right)]
        # The numbers of the chain are combined by SymPy: bound the result's size first.
        if sum(_bits(v) for _, v in operands if isinstance(v, sp.Rational)) > MAX_BITS:
            raise self.fail(f"a number has more than {MAX_BITS} bits; bnsym writes none.")
        return operands

    def number(self, value: object) -> sp.Number:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"the constant {_short(value)} is not a number bnsym writes.")
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise self.fail(f"the number {value!r} is not finite.")
            return sp.Float(repr(value))
        if value.bit_length() > MAX_DIGITS * 3.33:
            raise self.fail(f"a number has more than {MAX_DIGITS} digits; bnsym writes none.")
        return sp.Integer(value)

    def reciprocal(self, f: Any) -> Any:
        if f == 0:
            raise self.fail("division by zero.")
        return self.power(f, sp.Integer(-1))

    def power(self, base: Any, exponent: Any) -> Any:
        if not isinstance(exponent, sp.Rational):
            raise self.fail(
                f"the exponent {_short(exponent)} is not a number; bnsym writes 2, 3/2, -1/2."
            )
        if abs(exponent.p) > MAX_EXPONENT or exponent.q > MAX_EXPONENT:
            raise self.fail(
                f"the exponent {exponent} is beyond ±{MAX_EXPONENT} (or has a denominator above "
                f"{MAX_EXPONENT}); bnsym writes 2, 3/2, -1/2."
            )
        if base == 0 and exponent < 0:
            raise self.fail("division by zero (0 to a negative power).")
        # The size of a numeric result, estimated before it is computed.
        if isinstance(base, sp.Rational) and _bits(base) * abs(exponent) > MAX_BITS:
            raise self.fail(f"a number has more than {MAX_BITS} bits; bnsym writes none.")
        if exponent.q != 1:
            self.root_of(base)
        return self.bounded(sp.Pow(base, exponent))

    def root_of(self, base: Any) -> None:
        """Refuse a root of large numbers before SymPy searches them for perfect powers."""
        bits = max((_bits(r) for r in base.atoms(sp.Rational)), default=0)
        if bits > MAX_ROOT_BITS:
            raise self.fail(
                f"a root of a number of {bits} bits (above {MAX_ROOT_BITS}); bnsym writes none."
            )
        if bits > 64:
            self.large_roots += 1
            if self.large_roots > MAX_LARGE_ROOTS:
                raise self.fail(
                    f"more than {MAX_LARGE_ROOTS} roots of large numbers in one document; "
                    "bnsym writes none."
                )

    def call(self, node: ast.Call, depth: int) -> Any:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in _FUNCTIONS or node.keywords:
            raise self.fail(
                f"a call of {_short(name)} is not an expression bnsym writes; only sqrt, Abs, "
                "Rational and Sum are read."
            )
        if name == "Sum":
            return self.sum(node, depth)
        args = [self.build(a, depth + 1) for a in node.args]
        if name == "c":  # the channel of an element: c(i), of an index only
            if len(args) != 1 or args[0] not in _INTEGERS.values():
                raise self.fail("c takes one index, c(i).")
            return _CHANNEL(args[0])
        if name == "Rational":
            if len(args) != 2 or not all(isinstance(a, sp.Integer) for a in args):
                raise self.fail("Rational takes two integers, Rational(p, q).")
            return self.reciprocal(args[1]) * args[0]
        if len(args) != 1:
            raise self.fail(f"{name} takes one argument, not {len(args)}.")
        if name == "sqrt":
            return self.power(args[0], sp.Rational(1, 2))
        return self.bounded(sp.Abs(args[0]))

    def sum(self, node: ast.Call, depth: int) -> Any:
        if len(node.args) < 2:
            raise self.fail("Sum takes a term and one or more limits (i, lo, hi).")
        term = self.build(node.args[0], depth + 1)
        limits = []
        for limit in node.args[1:]:
            if not (isinstance(limit, ast.Tuple) and len(limit.elts) == 3):
                raise self.fail("a limit of Sum must be (i, lo, hi).")
            index, lo, hi = limit.elts
            if not (isinstance(index, ast.Name) and index.id in _DUMMIES):
                raise self.fail(f"the index of a Sum must be one of {sorted(_DUMMIES)}.")
            bounds = [self.build(b, depth + 1) for b in (lo, hi)]
            limits.append((_INTEGERS[index.id], *bounds))
        return sp.Sum(term, *limits)

    def indexed(self, node: ast.Subscript, depth: int) -> Any:
        base = node.value
        if not (isinstance(base, ast.Name) and base.id in _BASES):
            raise self.fail(f"{_short(ast.unparse(node))} indexes something bnsym does not index.")
        index = node.slice
        idx = self.build(index, depth + 1)
        return sp.IndexedBase(base.id, **_BASES[base.id])[idx]

    def bounded(self, value: Any) -> Any:
        """``value`` if it is finite and its numbers are of bounded size."""
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise self.fail("the expression is not finite (a division by zero?).")
        if isinstance(value, sp.Rational) and _bits(value) > MAX_BITS:
            raise self.fail(f"a number has more than {MAX_BITS} bits; bnsym writes none.")
        return value


def _general(part: object, reader: Reader) -> dict[str, Any]:
    """The ``general`` object: each step's ``lhs`` and ``rhs`` parsed (as every expression)."""
    if not isinstance(part, dict):
        raise ExpressionError(f"general: expected an object, not {_short(part)}.")
    out = dict(part)
    for key in ("forward", "backward", "closed_form"):
        steps = out.get(key)
        many = isinstance(steps, list)
        if steps is None:
            continue
        if not many:
            steps = [steps]
        if len(steps) > 100 or not all(isinstance(st, dict) for st in steps):
            raise ExpressionError(f"general.{key}: expected steps {{lhs, rhs, rule}}.")
        parsed = [
            {
                **st,
                **{
                    side: reader.parse(st.get(side), f"general.{key}[{n}].{side}")
                    for side in ("lhs", "rhs")
                },
            }
            for n, st in enumerate(steps)
        ]
        out[key] = parsed if many else parsed[0]
    return out


#: The keys forward mode writes (bnsym.notes.modes.json_obj).
MODE_KEYS = ("forward_mode", "second_order", "forward_third_order")
SIDES = ("lhs", "rhs")


def _modes(part: object, reader: Reader, where: str) -> Any:
    """Forward mode's objects: every ``steps``/``closed_form`` entry's ``lhs`` and ``rhs``
    parsed, every name of ``tangents``/``seeds``/``results`` read as a symbol; an object of
    compositions (``second_order``: ``ff``, ``fr``, ``rf``) read part by part."""
    if not isinstance(part, dict):
        raise ExpressionError(f"{where}: expected an object, not {_short(part)}.")
    if where == "second_order":
        return {k: _modes(v, reader, f"{where}.{k}") for k, v in part.items()}
    out = dict(part)
    for key in ("steps", "closed_form"):
        if key not in out:
            continue
        steps = out[key]
        single = isinstance(steps, dict)
        steps = [steps] if single else steps
        if not isinstance(steps, list) or not all(isinstance(st, dict) for st in steps):
            raise ExpressionError(f"{where}.{key}: expected steps {{lhs, rhs}}.")
        if len(steps) > MAX_INDEX:
            raise ExpressionError(
                f"{where}.{key}: {len(steps)} steps; bnsym writes none that many."
            )
        parsed = [
            {
                **st,
                **{s: reader.parse(st.get(s), f"{where}.{key}[{n}].{s}") for s in ("lhs", "rhs")},
            }
            for n, st in enumerate(steps)
        ]
        out[key] = parsed[0] if single else parsed
    for key in ("tangents", "seeds", "results"):
        if key in out:
            names = out[key]
            if not isinstance(names, list) or len(names) > MAX_INDEX:
                raise ExpressionError(f"{where}.{key}: expected a list of names.")
            out[key] = [reader.parse(n, f"{where}.{key}[{i}]") for i, n in enumerate(names)]
    if "general" in out:
        out["general"] = _modes(out["general"], reader, f"{where}.general")
    return out


def _bits(r: sp.Rational) -> int:
    return int(r.p).bit_length() + int(r.q).bit_length()


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…'"


def read_document(source: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """``bnsym derive --format json`` output (text or a dict) with the expressions at ``keys``
    (each a string, null, or a list of those) parsed; ``features`` entries likewise.

    Raises :class:`ExpressionError` naming the field for anything bnsym would not have written.
    """
    import json

    if isinstance(source, (str, bytes, bytearray)):
        try:
            obj = json.loads(source)
        except (ValueError, RecursionError) as exc:
            raise ExpressionError(f"the document is not JSON ({exc}).") from None
    else:
        obj = source
    if not isinstance(obj, dict):
        raise ExpressionError(
            f"expected a JSON object as bnsym derive --format json writes, not {_short(obj)}."
        )
    m = obj.get("m")
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_INDEX:
        raise ExpressionError(f"m: expected a whole number from 1 to {MAX_INDEX}, not {_short(m)}.")
    reader = Reader()

    def convert(part: object, where: str) -> dict[str, Any]:
        if not isinstance(part, dict):
            raise ExpressionError(
                f"{where or 'the document'}: expected an object, not {_short(part)}."
            )
        out = dict(part)
        for key in keys:
            if key in out:
                out[key] = value(out[key], f"{where}{key}")
        return out

    def value(v: object, field: str) -> Any:
        if v is None:
            return None
        if isinstance(v, list):
            if len(v) > MAX_INDEX:
                raise ExpressionError(
                    f"{field}: a list of {len(v)} expressions; bnsym writes none that long."
                )
            return [
                value(e, f"{field}[{i}]") if not isinstance(e, list) else _nested(field)
                for i, e in enumerate(v)
            ]
        return reader.parse(v, field)

    def _nested(field: str) -> Any:
        raise ExpressionError(f"{field}: a list inside a list; bnsym writes lists of expressions.")

    result = convert(obj, "")
    if "general" in result:
        result["general"] = _general(result["general"], reader)
    for key in MODE_KEYS:
        if key in result:
            result[key] = _modes(result[key], reader, key)
    if "features" in result:
        features = result["features"]
        if not isinstance(features, list):
            raise ExpressionError(f"features: expected a list of objects, not {_short(features)}.")
        result["features"] = [convert(f, f"features[{i}].") for i, f in enumerate(features)]
    return result
