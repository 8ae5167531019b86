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
from dataclasses import dataclass
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
#: refused before it is computed: the result's size is estimated first). Python prints no
#: integer above 4300 digits (about 14,000 bits): no numerator or denominator comes near.
MAX_DIGITS = 1000
MAX_BITS = 12_000
#: A root of a number costs SymPy a search for perfect powers, which grows fast with the
#: number's size (a 5000-bit base takes half a minute): the numbers under a non-integer power
#: are bounded more tightly — each radicand, and the product SymPy makes of the numeric roots
#: in one product (√a·√b = √(ab): a thousand roots of 20-bit primes once merged into one of
#: 20,000 bits, 28 s).
MAX_ROOT_BITS = 512
#: What one expression and one document may build, in bits: every integer literal's, and for
#: every distinct root of a number its radicand's plus ROOT_COST (a root costs SymPy about
#: 0.5 ms + 20 µs a bit; a root met again is not recomputed). bnsym's largest expressions
#: (m = 1024 with --force) hold about 150,000 bits of literals, at most a few distinct
#: numeric roots of under 100 bits each, and its documents a few hundred; a document of a few
#: kilobytes can ask for no more than a fraction of a second of roots.
MAX_EXPRESSION_BITS = 1 << 20
MAX_DOCUMENT_BITS = 1 << 30
ROOT_COST = 32
MAX_EXPRESSION_ROOT_BITS = 2048
MAX_DOCUMENT_ROOT_BITS = 16384
#: Each byte of the document beyond the first 16 kB adds this many bits to its root budget: a
#: large document has roots in proportion (a worked example of 256 features with a numeric ε,
#: 396 kB, takes 256 roots, 20,000 bits: its budget is 54,000).
ROOT_BITS_PER_BYTE = 0.1
#: A power's exponent must be a number p/q with |p|, q at most this (bnsym writes 2, 3/2, -1/2).
MAX_EXPONENT = 64
#: The largest index of an indexed name (x12, gamma3).
MAX_INDEX = 10**6


class ExpressionError(BnsymError, ValueError):
    """An expression string that bnsym would not have written; the message names the field."""


# --- the names bnsym writes -----------------------------------------------------------------

_REAL = (("real", True),)
_POSITIVE = (("positive", True),)


@dataclass(frozen=True)
class Stem:
    """A name bnsym writes, without its marks of differentiation: its SymPy assumptions (the
    same as the derivation's own symbols, so that a symbol read back equals it) and whether it
    takes an index (x12; gamma2 per element or channel; sum_dy2 per γ)."""

    assumptions: tuple[tuple[str, bool], ...] = _REAL
    indexed: bool = False


#: The stems, one row per name (:mod:`bnsym.core.graph`, :mod:`bnsym.proofs.double_backward`).
STEMS: dict[str, Stem] = {
    # inputs
    "x": Stem(indexed=True),
    "dy": Stem(indexed=True),  # the upstream gradient ∂ℓ/∂y
    "gamma": Stem(indexed=True),
    "beta": Stem(indexed=True),
    "epsilon": Stem(_POSITIVE),
    "running_mean": Stem(indexed=True),  # indexed: one per feature of a worked example
    "running_var": Stem(_POSITIVE, indexed=True),
    # the graph's nodes
    "y": Stem(indexed=True),
    "xhat": Stem(indexed=True),
    "mu_B": Stem(),
    "mu": Stem(),
    **{name: Stem(_POSITIVE) for name in ("sigma2_B", "sigma2", "sigma_B", "sigma", "nu2", "nu")},
    # the double backward's closed form: sums, coefficients, and r = D/σ with ε outside
    **{name: Stem(indexed=True) for name in ("sum_dy", "sum_dy_xhat", "sum_dy_gdx")},
    **{
        name: Stem()
        for name in (
            "sum_gdx",
            "sum_gdx_xhat",
            "sum_gamma_dy",
            "sum_gamma_dy_xhat",
            "sum_gamma_dy_gdx",
            "sum_gdgamma_dy",
            "sum_gdgamma_dy_xhat",
            "coef_gdx",
            "coef_xhat",
            "shift",
            "kr",
            "q",
        )
    },
    **{name: Stem(indexed=True) for name in ("coef_dy", "coef_xhat_gdy", "gamma_inv_std")},
    "shift_gdy": Stem(indexed=True),
    "r": Stem(_POSITIVE),
    # forward mode's closed forms (bnsym.proofs.forward): the denominator's tangent (dotD),
    # B = k·Σ ẋ̊·ẋ̊, and the sums of the HVP (w_ the cotangent's)
    "D": Stem(_POSITIVE),
    "B": Stem(),
    **{
        f"{w}{name}": Stem()
        for w in ("", "w_")
        for name in ("sum_g", "sum_g_xhat", "sum_h", "sum_h_xhat", "q", "coef_xhat")
    },
}
#: The marks of differentiation a name may carry before its stem, outermost first, each at
#: most once: t (order 3, ∂ℓ₃/∂·), g (order 2, ∂ℓ₂/∂·), d (order 1, ∂ℓ/∂·): tgdx1, gdsigma2_B,
#: dxhat3. A marked name is a derivative, real whatever its stem is. A new mode of
#: differentiation is a row here.
MARKS: tuple[tuple[str, str], ...] = (
    ("dif", "forward mode: the tangent along a third direction (Δ)"),
    ("del", "forward mode: the tangent along a second direction (δ)"),
    ("bar", "forward mode: an adjoint of the reverse pass over the jvp (x̄)"),
    ("dot", "forward mode: the tangent (ẋ)"),
    ("t", "order 3: the gradient of ℓ₃"),
    ("g", "order 2: the gradient of ℓ₂"),
    ("d", "order 1: the gradient of ℓ"),
)
_INDEXED_NAME = re.compile(r"(?P<stem>[a-z_]+?)(?P<index>[1-9][0-9]*)")
#: Summation indices of the general form, Sum(x[i], (i, 1, m)), and the batch size m.
#: Group norm's general form adds c (a channel), C (the channels of a group) and channel(i),
#: the channel of element i (c(i) in documents of earlier versions).
_DUMMIES = {"i", "j", "k", "c"}
_INTEGERS = {
    **{name: sp.Symbol(name, integer=True) for name in _DUMMIES},
    "m": sp.Symbol("m", integer=True, positive=True),
    "C": sp.Symbol("C", integer=True, positive=True),
}
_CHANNELS = {"channel": sp.Function("channel"), "c": sp.Function("c")}
_FUNCTIONS = {"sqrt", "Abs", "Rational", "Sum", *_CHANNELS}


def _resolve(name: str) -> tuple[Stem, bool, str | None] | None:
    """(stem, marked, index) of a name bnsym writes, or None."""
    rest, marked = name, False
    for mark, _ in (("", ""), *MARKS):
        if mark:
            if not rest.startswith(mark):
                continue
            rest, marked = rest[len(mark) :], True
        if rest in STEMS:
            return STEMS[rest], marked, None
        hit = _INDEXED_NAME.fullmatch(rest)
        if hit and hit["stem"] in STEMS:
            stem = STEMS[hit["stem"]]
            if stem.indexed and int(hit["index"]) <= MAX_INDEX:
                return stem, marked, hit["index"]
            return None
    return None


def symbol(name: str) -> sp.Symbol | None:
    """The symbol bnsym writes as ``name`` (``x12``, ``gamma``, ``gdsigma2_B``), or None if it
    writes no such.

    >>> symbol("x12"), symbol("epsilon").is_positive, symbol("tgdx1").is_real, symbol("os")
    (x12, True, True, None)
    """
    hit = _resolve(name)
    if hit is None:
        return None
    stem, marked, _ = hit
    return sp.Symbol(name, **dict(_REAL if marked else stem.assumptions))


def _base(name: str) -> sp.IndexedBase | None:
    """The general form's ``x`` of ``x[i]``: a stem that takes an index, given none."""
    hit = _resolve(name)
    if hit is None or not hit[0].indexed or hit[2] is not None:
        return None
    return sp.IndexedBase(name, real=True)


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
    reader.expression_bits = reader.expression_root_bits = 0
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
    """Builds SymPy objects from allow-listed syntax trees, bounding every number and what the
    expression and the document build (the bits of their integers and roots); one reader per
    document, so that the document's budget holds across its expressions.

    ``size`` is the document's length in bytes: a large document's root budget grows with it
    (ROOT_BITS_PER_BYTE).
    """

    def __init__(self, size: int = 0) -> None:
        self.field = ""
        self.expression_bits = self.document_bits = 0
        self.expression_root_bits = self.document_root_bits = 0
        self.root_budget = MAX_DOCUMENT_ROOT_BITS + int(ROOT_BITS_PER_BYTE * max(0, size - 16384))
        self.roots: dict[tuple[Any, Any], Any] = {}  # (radicand, exponent) -> root, once each

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
        operands: list[tuple[bool, Any]] = []
        merged = 0  # √a·√b is √(ab): the numeric roots of a product merge, so bound them all
        for sign, r in [(True, left), *reversed(right)]:
            operands.append((sign, self.build(r, depth + 1)))
            if ast.Mult in ops:
                merged += sum(_bits(b) for b in _numeric_radicands(operands[-1][1]))
                if merged > MAX_ROOT_BITS:
                    raise self.fail(
                        f"a product of roots of numbers of more than {MAX_ROOT_BITS} bits in all "
                        "(SymPy would merge them into one root); bnsym writes none."
                    )
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
        self.charge(value.bit_length(), root=False)
        return sp.Integer(value)

    def charge(self, bits: int, root: bool) -> None:
        """Count ``bits`` built against the expression's and the document's budgets: of
        integers, or (``root``) of the radicands of roots, before SymPy computes anything."""
        self.expression_bits += bits
        self.document_bits += bits
        if self.expression_bits > MAX_EXPRESSION_BITS:
            raise self.fail(
                f"the expression's numbers hold more than {MAX_EXPRESSION_BITS} bits; bnsym "
                "writes none that large."
            )
        if self.document_bits > MAX_DOCUMENT_BITS:
            raise self.fail(
                f"the document's numbers hold more than {MAX_DOCUMENT_BITS} bits; bnsym writes "
                "none that large."
            )
        if not root:
            return
        self.expression_root_bits += bits
        self.document_root_bits += bits
        if self.expression_root_bits > MAX_EXPRESSION_ROOT_BITS:
            raise self.fail(
                f"the expression takes roots of numbers of more than {MAX_EXPRESSION_ROOT_BITS} "
                "bits in all; bnsym writes none."
            )
        if self.document_root_bits > self.root_budget:
            raise self.fail(
                f"the document takes roots of numbers of more than {self.root_budget} bits in "
                "all (roots of large numbers cost SymPy a search each); bnsym writes none."
            )

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
        # The size of a numeric result, estimated before it is computed (the numbers of a
        # numeric base, √a·√b included, raised to the power).
        if base.is_number and _numeric_bits(base) * abs(exponent) > MAX_BITS:
            raise self.fail(f"a number has more than {MAX_BITS} bits; bnsym writes none.")
        if exponent.q == 1:
            return self.bounded(sp.Pow(base, exponent))
        key = (base, exponent)
        if key not in self.roots:  # a root met again is not searched again
            self.root_of(base)
            self.roots[key] = self.bounded(sp.Pow(base, exponent))
        return self.roots[key]

    def root_of(self, base: Any) -> None:
        """Refuse a root of large numbers before SymPy searches them for perfect powers, and
        count the numbers it searches against the budgets."""
        bits = max((_bits(r) for r in base.atoms(sp.Rational)), default=0)
        if bits > MAX_ROOT_BITS:
            raise self.fail(
                f"a root of a number of {bits} bits (above {MAX_ROOT_BITS}); bnsym writes none."
            )
        # SymPy searches a numeric radicand, and the numeric coefficient of a product
        searched = base if base.is_Rational else base.as_coeff_Mul()[0] if base.is_Mul else None
        if searched is not None and searched not in (0, 1, -1):
            self.charge(_bits(searched) + ROOT_COST, root=True)

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
        if name in _CHANNELS:  # the channel of an element: channel(i), of an index only
            if len(args) != 1 or args[0] not in _INTEGERS.values():
                raise self.fail(f"{name} takes one index, {name}(i).")
            return _CHANNELS[name](args[0])
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
        indexed = _base(base.id) if isinstance(base, ast.Name) else None
        if indexed is None:
            raise self.fail(f"{_short(ast.unparse(node))} indexes something bnsym does not index.")
        return indexed[self.build(node.slice, depth + 1)]

    def bounded(self, value: Any) -> Any:
        """``value`` if it is finite and its numbers are of bounded size."""
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise self.fail("the expression is not finite (a division by zero?).")
        if isinstance(value, sp.Rational) and _bits(value) > MAX_BITS:
            raise self.fail(f"a number has more than {MAX_BITS} bits; bnsym writes none.")
        return value


def _steps(part: object, where: str, reader: Reader) -> Any:
    """A list of steps {lhs, rhs, ...} (or one step) with ``lhs`` and ``rhs`` parsed."""
    many = isinstance(part, list)
    steps: list[Any] = part if isinstance(part, list) else [part]
    if len(steps) > MAX_INDEX or not all(isinstance(st, dict) for st in steps):
        raise ExpressionError(f"{where}: expected steps {{lhs, rhs, rule}}.")
    parsed = []
    for n, st in enumerate(steps):
        sides = {
            side: reader.parse(st.get(side), f"{where}[{n}].{side}") for side in ("lhs", "rhs")
        }
        parsed.append({**st, **sides})
    return parsed if many else parsed[0]


def _section(part: object, where: str, row: Any, reader: Reader) -> dict[str, Any]:
    """One section of a document (a row of ``sections``: keys of steps, keys of lists of
    names, and the keys of sections of the same shape nested in it, ``"*"`` for every one)."""
    step_keys, name_keys, nested = row
    if not isinstance(part, dict):
        raise ExpressionError(f"{where}: expected an object, not {_short(part)}.")
    out = dict(part)
    for key in step_keys:
        if out.get(key) is not None:
            out[key] = _steps(out[key], f"{where}.{key}", reader)
    for key in name_keys:
        if key in out:
            out[key] = _names(out[key], f"{where}.{key}")
    for key in list(out) if "*" in nested else nested:
        if key in out:
            out[key] = _section(out[key], f"{where}.{key}", (step_keys, name_keys, ()), reader)
    return out


def _names(part: object, where: str) -> list[sp.Symbol]:
    """A list of names bnsym writes (a section's cotangents, results), as symbols."""
    if not isinstance(part, list) or len(part) > MAX_INDEX:
        raise ExpressionError(f"{where}: expected a list of names, not {_short(part)}.")
    out = []
    for n, name in enumerate(part):
        sym = symbol(name) if isinstance(name, str) else None
        if sym is None:
            raise ExpressionError(f"{where}[{n}]: {_short(name)} is not a name bnsym writes.")
        out.append(sym)
    return out


def _bits(r: sp.Rational) -> int:
    return int(r.p).bit_length() + int(r.q).bit_length()


def _numeric_bits(e: Any) -> int:
    """The bits of the numbers of a numeric expression (its rationals and radicands)."""
    return sum(_bits(r) for r in e.atoms(sp.Rational))


def _numeric_radicands(f: Any) -> list[sp.Rational]:
    """The radicands of the numeric roots in the factor ``f`` (√3 in 2·√3·x: [3])."""
    return [
        p.base
        for p in sp.Mul.make_args(f)
        if p.is_Pow and p.base.is_Rational and p.exp.is_Rational and not p.exp.is_Integer
    ]


def _short(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a whole number of {value.bit_length()} bits"  # repr() fails above 4300 digits
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…'"


def read_document(
    source: object,
    keys: tuple[str, ...],
    sections: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
) -> dict[str, Any]:
    """``bnsym derive --format json`` output (text or a dict) with the expressions parsed:
    those at ``keys`` (each a string, null, or a list of those), in the document and in each
    of its ``features``; and in each of ``sections`` (``general``, ``double_backward``, …:
    section -> (keys of steps {lhs, rhs}, keys of lists of names, keys of sections of the same
    shape nested in it)) its steps and names.

    Raises :class:`ExpressionError` naming the field for anything bnsym would not have written.
    """
    import json

    if isinstance(source, (str, bytes, bytearray)):
        size = len(source)
        try:
            obj = json.loads(source)
        except (ValueError, RecursionError) as exc:  # integers above 4300 digits included
            raise ExpressionError(f"the document is not JSON ({_short(str(exc))}).") from None
    else:
        obj, size = source, None
    if not isinstance(obj, dict):
        raise ExpressionError(
            f"expected a JSON object as bnsym derive --format json writes, not {_short(obj)}."
        )
    m = obj.get("m")
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_INDEX:
        raise ExpressionError(f"m: expected a whole number from 1 to {MAX_INDEX}, not {_short(m)}.")
    if size is None:  # a document given as an object: its size as JSON text
        try:
            size = len(json.dumps(obj))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ExpressionError(f"the document is not JSON ({_short(str(exc))}).") from None
    reader = Reader(size)

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
    for section, row in sections.items():
        if section in result:
            result[section] = _section(result[section], section, row, reader)
    if "features" in result:
        features = result["features"]
        if not isinstance(features, list):
            raise ExpressionError(f"features: expected a list of objects, not {_short(features)}.")
        result["features"] = [convert(f, f"features[{i}].") for i, f in enumerate(features)]
    return result
