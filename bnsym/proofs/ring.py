"""The ring the proofs compute in: Laurent polynomials over QQ, exact and fast.

Brute force (expand everything in x_1..x_m, then ``simplify``) takes minutes at m = 16. The
proofs use the algebraic structure instead: once the statistics are written in a *frame*
(:mod:`bnsym.proofs.frame`), every quantity of a layer's graph is a Laurent polynomial in a
few generators, held as SymPy's sparse ``PolyElement``, and an identity holds exactly when
the difference is the zero polynomial.

This module is that ring and the record the proofs write into: :class:`Laurent` (SymPy
expressions to polynomials, with square roots of a few primes as generators),
:func:`place_eps` (ε outside the root), :class:`XFrame` (expressions in x_1..x_m alone),
:func:`variance_ring`, :class:`Lazy` (per-element results computed when first read) and
:class:`Proofs` (proof name -> result and method). SymPy only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import sympy as sp

from bnsym.core.graph import Step, Symbols
from bnsym.errors import BnsymError

__all__ = [
    "RADICALS",
    "Laurent",
    "Lazy",
    "ProofError",
    "Proofs",
    "XFrame",
    "place_eps",
    "variance_ring",
]


class ProofError(BnsymError, RuntimeError):
    """An expression fell outside the frame (a bug in the derivation, not bad input)."""

    exit_code = 1


class Laurent:
    """Maps SymPy expressions to Laurent polynomials over QQ in the generators ``gens``.

    Polynomials are SymPy's sparse ``PolyElement`` (dicts of exponent tuples), two orders of
    magnitude faster than ``expand`` on ``Expr`` trees. Negative exponents are allowed (for
    positive generators such as S, T and σ), which makes the ring the Laurent ring. ``values``
    maps symbols to the polynomials they stand for; ``overrides`` maps whole subexpressions.
    A rational power is taken only of a single monomial whose root is exact.
    """

    def __init__(self, gens: Sequence[sp.Symbol]) -> None:
        from sympy.polys.domains import QQ
        from sympy.polys.rings import ring

        radicals = [sp.Symbol(f"r{p}", positive=True) for p in RADICALS]
        self.ring, *ring_gens = ring([*gens, *radicals], QQ)
        self.gen = dict(zip([*gens, *radicals], ring_gens, strict=True))
        self.radical = {p: self.gen[r] for p, r in zip(RADICALS, radicals, strict=True)}
        self.radical_index = {len(gens) + i: p for i, p in enumerate(RADICALS)}
        self.values: dict[sp.Basic, Any] = {}
        self.overrides: dict[sp.Basic, Any] = {}
        # Subtrees are shared between the m elements (∂ℓ/∂σ²_B appears in every ∂ℓ/∂x_i):
        # converting each once keeps the proofs O(m²).
        self.memo: dict[sp.Basic, Any] = {}

    def __call__(self, expr: sp.Basic) -> Any:
        """``expr`` as a Laurent polynomial (raises ProofError if it cannot be one)."""
        return _normalize(self, self._convert(expr, self.memo))

    def _convert(self, e: sp.Basic, memo: dict[sp.Basic, Any]) -> Any:
        hit = memo.get(e)
        if hit is not None:
            return hit
        R = self.ring
        if e in self.overrides:
            out = self.overrides[e]
        elif e in self.values:
            out = self.values[e]
        elif e in self.gen:
            out = self.gen[e]
        elif e.is_Rational:
            out = R(e)
        elif e.is_Add:
            # Accumulate into one dict: adding term by term would copy the sum each time,
            # O(n²) for a sum of n terms.
            acc: dict[Any, Any] = {}
            zero = R.domain.zero
            for a in e.args:
                for monom, coeff in self._convert(a, memo).items():
                    acc[monom] = acc.get(monom, zero) + coeff
            out = R.zero.copy()  # a PolyElement is a dict: fill it without re-converting
            out.update((k, v) for k, v in acc.items() if v)
        elif e.is_Mul:
            # Small factors first: multiplying a long sum by each one-term factor in turn
            # would pass over the sum once per factor.
            out = R.one
            for factor in sorted((self._convert(a, memo) for a in e.args), key=len):
                out = out * factor
        elif e.is_Pow:
            base = self._convert(e.base, memo)
            exp = e.exp
            if exp.is_Integer and exp >= 0:
                out = base ** int(exp)
            else:
                out = _monomial_power(self, base, exp, e)
        else:
            raise ProofError(f"cannot write {e} as a Laurent polynomial here")
        memo[e] = out
        return out

    def is_zero(self, expr: sp.Basic) -> bool:
        """True when ``expr`` is identically zero as a Laurent polynomial; exact."""
        return not self(expr)

    def coefficients(self, linear: Sequence[Any], of: Sequence[sp.Symbol]) -> list[list[Any]]:
        """For polynomials p_i linear in the symbols ``of`` (c_j), the matrix [j][i] of the
        coefficient of c_j in p_i — the Jacobian entries ∂y_j/∂x_i from the ∂ℓ/∂x_i."""
        R = self.ring
        index = [R.gens.index(self.gen[c]) for c in of]
        where = {g: j for j, g in enumerate(index)}
        out = [[R.zero for _ in linear] for _ in of]
        for i, p in enumerate(linear):
            for monom, coeff in p.items():
                hits = [g for g in index if monom[g]]
                if len(hits) != 1 or monom[hits[0]] != 1:
                    raise ProofError("the gradient is not linear in the upstream gradients")
                g = hits[0]
                rest = monom[:g] + (0,) + monom[g + 1 :]
                out[where[g]][i] += R({rest: coeff})
        return out


def place_eps(f: Laurent, eps: sp.Symbol, e: Any, placement: str) -> None:
    """ε in the ring ``f`` when it is outside the root, from e = what σ is added to: ε = e
    (outside), or √ε = e and ε = e² (sqrt-outside; √ε is then read as one subexpression)."""
    if placement == "sqrt-outside":
        f.values[eps] = e**2
        f.overrides[sp.sqrt(eps)] = e
    else:
        f.values[eps] = e


#: Square roots of these primes may appear as coefficients (√2, √3 in the factored results for
#: small m); each is a generator r_p of the ring with r_p² = p, applied by ``_normalize``.
RADICALS = (2, 3, 5, 7)


def _monomial_power(self: Laurent, base: Any, exp: sp.Rational, e: sp.Basic) -> Any:
    """base**exp for a single-term base (S², σ, 4·S²...); rational exponents need exact roots
    of the monomial and, for the coefficient, a square root made of the ring's radicals."""
    R = self.ring
    if len(base) != 1:
        raise ProofError(f"{e}: the base is not a single monomial in the frame")
    ((monom, coeff),) = base.items()
    p, q = int(exp.p), int(exp.q)
    if any(x * p % q for x in monom):
        raise ProofError(f"{e}: the exponent does not divide the monomial's exponents")
    out = R({tuple(x * p // q for x in monom): 1})
    c = sp.Rational(coeff.numerator, coeff.denominator) ** exp
    if c.is_Rational:
        return out * R(c)
    if q != 2:
        raise ProofError(f"{e}: the coefficient has no rational root")
    # c = n^(p/2) with n rational: n^p = a/b, √(a/b) = √(a·b)/b, √(a·b) = s·Π √prime
    ab = sp.Rational(coeff.numerator, coeff.denominator) ** p
    a_b = int(ab.p * ab.q)
    out = out * R(sp.Rational(1, int(ab.q)))
    for prime, power in sp.factorint(a_b).items():
        out = out * R(sp.Integer(prime) ** (power // 2))
        if power % 2:
            r = self.radical.get(prime)
            if r is None:
                raise ProofError(f"{e}: √{prime} is not among the ring's radicals")
            out = out * r
    return out


def _normalize(self: Laurent, poly: Any) -> Any:
    """Reduce every power of a radical r_p to r_p⁰ or r_p¹ using r_p² = p (exact)."""
    index = self.radical_index
    if not any(monom[g] for monom in poly.itermonoms() for g in index):
        return poly  # the common case: no radicals at all
    domain = self.ring.domain
    acc: dict[tuple[int, ...], Any] = {}
    for monom, coeff in poly.items():
        exps, factor = list(monom), domain.one
        for g, prime in index.items():
            keep = exps[g] % 2
            factor *= domain.convert(sp.Integer(prime) ** ((exps[g] - keep) // 2))
            exps[g] = keep
        key = tuple(exps)
        acc[key] = acc.get(key, domain.zero) + coeff * factor
    out = self.ring.zero.copy()
    out.update((k, v) for k, v in acc.items() if v)
    return out


class Lazy(Sequence[Any]):
    """``[f(i) for i in range(n)]``, each entry computed when first read: above m = 16 the
    proofs that the general form covers are not redone, and the rest read two entries."""

    def __init__(self, f: Callable[[int], Any], n: int) -> None:
        self.f, self.n = f, n
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i not in self.cache:
            self.cache[i] = self.f(i)
        return self.cache[i]


class Proofs:
    """The record of one derivation's proofs: proof name -> result and how it was checked.

    ``general`` holds the proofs of the general form (:mod:`bnsym.core.general`), which hold for
    every m: a proof found there is recorded from it, not redone for this m.

    ``claims`` maps the name of each stated identity to the proof that reads it: a function of
    the statement as displayed (a :class:`~bnsym.core.graph.Step`, lhs = rhs) that says whether
    it holds. A ✓ is given to the statement the notes show, and the same proof, handed a
    statement with one coefficient changed, must say no (the tests tamper every claim).
    """

    def __init__(self, m: int, general: Any = None) -> None:
        self.m = m
        self.general = general
        self.verified: dict[str, bool] = {}
        self.methods: dict[str, str] = {}
        self.claims: dict[str, Callable[[Step], bool]] = {}

    def record(self, name: str, ok: bool, method: str) -> None:
        self.verified[name] = bool(ok)
        self.methods[name] = method

    def check(self, name: str, proof: Callable[[], Any], method: str) -> bool:
        """Record ``proof()`` under ``name``, or the general form's proof where it has one."""
        g = self.general
        if g is not None and name in g.verified:
            self.record(name, g.verified[name], f"{g.methods[name]} (not redone for m = {self.m})")
        else:
            self.record(name, proof(), method)
        return self.verified[name]

    def claim(self, step: Step, holds: Callable[[Step], Any], method: str, name: str = "") -> Step:
        """Prove the statement ``step`` as it is displayed with ``holds(step)`` and record the
        result under ``name`` (``step.rule`` by default; see :meth:`check`); keep ``holds`` in
        ``claims``. A statement that falls outside the proof's frame (ProofError) does not
        hold."""

        def proof(st: Step) -> bool:
            try:
                return bool(holds(st))
            except ProofError:
                return False

        name = name or step.rule
        self.claims[name] = proof
        self.check(name, lambda: proof(step), method)
        return step


class XFrame:
    """A frame for expressions in x_1..x_m alone with ε inside the root: σ²(x) + ε, where it
    appears (x̂'s denominator), is read as S², so σ²(x) — an O(m²) polynomial in the centred
    frame — is not expanded; an expression with ε anywhere else is read by the frame with
    ε = S² − σ²(x) instead (built when first needed). Either way σ²(x) + ε is S²; that
    σ²(x) is σ²'s definition is proved separately."""

    def __init__(self, base: Any, var_x: sp.Expr, eps: sp.Symbol, S: sp.Symbol) -> None:
        self.fast = copy.copy(base)
        self.fast.values, self.fast.overrides = dict(base.values), dict(base.overrides)
        self.fast.memo = {}
        self.fast.overrides[var_x + eps] = self.fast.gen[S] ** 2
        del self.fast.values[eps]  # ε alone is then not readable: ProofError, slow frame
        self.base, self.var_x, self.eps, self.S = base, var_x, eps, S
        self.slow: Any = None

    def __call__(self, expr: sp.Basic) -> Any:
        try:
            return self.fast(expr)
        except ProofError:
            if self.slow is None:
                self.slow = copy.copy(self.base)
                slow = self.slow
                slow.values, slow.overrides = dict(self.base.values), dict(self.base.overrides)
                slow.memo = {}
                slow.values[self.eps] = slow.gen[self.S] ** 2 - slow(self.var_x)
            return self.slow(expr)


def variance_ring(s: Symbols, free: Sequence[sp.Symbol], centred: bool) -> Laurent:
    """The centred frame's x_i = μ + d_i (Σ d_i = 0: d_m = −(d_1 + … + d_{m−1})) alone, in a
    ring of the d_i and μ (of the x_i for RMS norm): the variance's two forms are O(m²)
    polynomials, which the whole frame's hundreds of generators would make several times
    slower to expand and compare."""
    f = Laurent([*free, s.mu] if centred else [*free])
    if centred:
        d = [f.gen[v] for v in free]
        d.append(-sum(d, f.ring.zero))
        f.values.update({xi: f.gen[s.mu] + di for xi, di in zip(s.x, d, strict=True)})
    return f
