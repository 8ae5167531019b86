"""A wrong gradient of a recognised member read against the closed form's terms.

:func:`read_dx` solves the user's ∂ℓ/∂x by least squares on the terms of
:func:`bnsym.reference.terms.dx_terms`, for the layer's own g and means and then for the usual
slips (γ broadcast over another axis or left out, the means over other axes);
:func:`read_param` reads ∂ℓ/∂γ and ∂ℓ/∂β against their sums (over other axes, of x for x̂,
the other parameter's). A reading is given only when it leaves nothing beyond the check's
tolerance, and named in the notes' notation (:class:`Notation`): a term missing, of the wrong
sign, twice, or scaled by the wrong group size (1/N where the group has N·H·W values, 1/m
where the closed form has 1/(m − 1)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from math import prod
from typing import Any

import numpy as np

from bnsym.gradcheck.recognise import AXIS_LETTERS, Member, generic_letters, group_axes
from bnsym.reference.terms import TERMS, axis_sums, dx_terms, param_sum

__all__ = ["Notation", "Reading", "read_dx", "read_param"]

# a factor read from a least-squares coefficient is taken as a round value within this
NEAR = 1e-6
# the notes' notation, by the place of ε: the denominator and the factor r of the x̂ term
_DENOMINATOR = {"inside": "√({s}² + ε)", "outside": "({s} + ε)", "sqrt-outside": "({s} + √ε)"}
_R = {"inside": "", "outside": "·({s} + ε)/{s}", "sqrt-outside": "·({s} + √ε)/{s}"}


# --- notation ---------------------------------------------------------------------------------


class Notation:
    """The closed form in the notes' notation for one member: γ factored out of the means
    where the group shares it (batch and instance norm), ``g = γ·∂ℓ/∂y`` where it does not;
    σ_B with batch norm's subscript, ν for a layer that is not centred."""

    def __init__(self, member: Member) -> None:
        lay, decl = member.layout, member.layer
        values = group_axes(lay)
        shared = all(n == 1 for a, n in enumerate(lay.bcast) if a in values)
        symbol = "σ" if lay.centred else "ν"
        s = symbol + decl.stat_suffix
        g = "∂ℓ/∂y" if shared or member.gamma is None else "g"
        r = _R[member.eps_placement].format(s=s)
        xhat = f"x̂·Σ({g}·x̂)/(m − 1){r}" if member.variance == "unbiased" else f"x̂·mean({g}·x̂){r}"
        #: each term of :data:`TERMS` as it enters the closed form, sign included
        self.terms = {"dy": g, "mean": f"−mean({g})", "xhat": f"−{xhat}"}
        # σ²_B, not σ_B²: the square of σ with the statistics' subscript after it
        denominator = _DENOMINATOR[member.eps_placement].format(s=symbol)
        denominator = denominator.replace(f"{symbol}²", f"{symbol}²{decl.stat_suffix}")
        denominator = denominator.replace(f"{symbol} ", f"{s} ")
        body = " − ".join(
            [g] + [self.terms[t][1:] for t in TERMS[1:] if t != "mean" or lay.centred]
        )
        if member.gamma is None:
            self.closed_form = f"∂ℓ/∂x = ({body})/{denominator}"
        elif shared:
            self.closed_form = f"∂ℓ/∂x = γ·({body})/{denominator}"
        else:
            self.closed_form = f"∂ℓ/∂x = ({body})/{denominator},  g = γ·∂ℓ/∂y"

    def term(self, name: str) -> str:
        return self.terms[name]


# --- reading a gradient ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    findings: tuple[str, ...]
    explained: bool
    residual: float
    exact: np.ndarray  # the closed form, shaped like the gradient


def _solve(columns: list[np.ndarray], u: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Least-squares coefficients of ``u`` on ``columns`` (two or three) and the largest entry
    left, or None where the columns are not independent (a group of two values: its terms
    coincide).

    By the normal equations, solved by Cramer's rule on the Gram matrix of the columns scaled
    to unit length, whose determinant tells their dependence (it bounds the smallest
    eigenvalue from below): a 3×3 system costs less in plain floats than any NumPy solver's
    call, and the diagnosis of a small layer is mostly such calls."""
    M = np.empty((len(columns), u.size))  # the columns as rows: np.stack costs more here
    for k, c in enumerate(columns):
        M[k] = c.reshape(-1)
    flat = u.reshape(-1)
    G = (M @ M.T).tolist()
    b = (M @ flat).tolist()
    n = len(columns)
    norms = [math.sqrt(G[i][i]) for i in range(n)]
    if not all(norms):
        return None
    Gn = [[G[i][j] / (norms[i] * norms[j]) for j in range(n)] for i in range(n)]
    bn = [b[i] / norms[i] for i in range(n)]
    det = _det(Gn)
    if det <= 1e-12:
        return None
    coef = []
    for k in range(n):
        Gk = [[bn[i] if j == k else Gn[i][j] for j in range(n)] for i in range(n)]
        coef.append(_det(Gk) / det / norms[k])
    c = np.array(coef)
    return c, float(np.abs(c @ M - flat).max(initial=0.0))


def _det(a: list[list[float]]) -> float:
    if len(a) == 2:
        return a[0][0] * a[1][1] - a[0][1] * a[1][0]
    return (
        a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
    )


def _scale_words(rho: float, member: Member, what: str, divisor: int) -> str | None:
    """``what`` scaled by ``rho`` in words, or None for 1: missing, of the wrong sign, divided
    by another count than the closed form's ``divisor`` (m, or m − 1 for an unbiased
    variance), twice, or the factor."""
    m, m_text = member.layout.m, member.m_text
    if abs(rho - 1) <= NEAR:
        return None
    if abs(rho) <= NEAR:
        return f"lacks the {what} term"
    if abs(rho + 1) <= NEAR:
        return f"has the {what} term with the wrong sign"
    sign = "with the wrong sign and " if rho < 0 else ""
    sizes = member.group_sizes + ([(m, "m")] if divisor != m else [])
    for size, text in sizes:
        if size != divisor and size > 0 and abs(abs(rho) * size - divisor) <= NEAR * divisor:
            where = (
                f"where the group has m = {m_text} = {m} values"
                if divisor == m
                else f"where the closed form has 1/(m − 1), m = {m_text} = {m}"
            )
            return (
                f"has the {what} term {sign}scaled by 1/{text} {where} (divided by {size}, "
                f"not {divisor})"
            )
    if abs(rho - 2) <= NEAR:
        return f"has the {what} term twice"
    return f"has the {what} term {sign}scaled by {rho:.6g}"


def read_dx(
    member: Member,
    dout: np.ndarray,
    user: np.ndarray,
    tolerance: Callable[[float], float],
    notation: Notation | None = None,
) -> Reading:
    """The user's ∂ℓ/∂x as a combination of the closed form's terms, under the layer's own g
    and means first, then under the usual slips; the first reading that leaves at most
    ``tolerance(size)`` (size: the largest entry of a term) is given."""
    notation = notation or Notation(member)
    terms = dx_terms(member.cache, dout)
    columns = list(terms.values())
    exact = columns[0] + columns[1] + columns[2] if len(columns) == 3 else columns[0] + columns[1]
    tol = tolerance(max(float(np.abs(t).max()) for t in columns))
    best = float(np.abs(user - exact).max())
    for slip, kwargs in _dx_slips(member, dout):
        these = terms if not kwargs else dx_terms(member.cache, dout, **kwargs)
        solved = _solve(list(these.values()), user)
        if solved is None:
            if not kwargs:
                return Reading(
                    ("the closed form's terms are not independent at these inputs (groups of "
                     f"{member.layout.m} values): no term-level reading",),
                    False, best, exact,
                )  # fmt: skip
            continue
        coef, residual = solved
        best = min(best, residual)
        if residual > tol:
            continue
        rho = dict(zip(these, coef.tolist(), strict=True))
        words = _dx_words(rho, member, notation)
        if not slip and not words:
            return Reading(
                (f"your ∂ℓ/∂x is the closed form to {residual:.2g}: its terms are right",),
                False, residual, exact,
            )  # fmt: skip
        return Reading(tuple(([slip] if slip else []) + words), True, residual, exact)
    return Reading(
        ("no combination of the closed form's terms explains the difference (the closest "
         f"leaves {best:.3g}, the tolerance is {tol:.3g}): see the entries and hints",),
        False, best, exact,
    )  # fmt: skip


def _dx_words(rho: dict[str, float], member: Member, notation: Notation) -> list[str]:
    values = list(rho.values())
    if len(values) > 1 and max(values) - min(values) <= NEAR * max(1.0, abs(values[0])):
        whole = _scale_words(values[0], member, "", member.layout.m)
        if whole is None:
            return []
        if abs(values[0] - member.layout.m) <= NEAR * member.layout.m:
            return [
                f"your ∂ℓ/∂x is m = {member.m_text} = {member.layout.m} times the closed form, in "
                "every term: the closed form's 1/m in front is missing"
            ]
        return ["your ∂ℓ/∂x " + whole.replace("the  term", "every term")]
    words = []
    unbiased = member.variance == "unbiased" and member.layout.centred
    for name, value in rho.items():
        divisor = member.layout.m - 1 if name == "xhat" and unbiased else member.layout.m
        said = _scale_words(value, member, notation.term(name), divisor)
        if said:
            words.append("your ∂ℓ/∂x " + said)
    return words


def _dx_slips(member: Member, dout: np.ndarray) -> Iterator[tuple[str, dict[str, Any]]]:
    """The layer's own g and means, then γ broadcast over another axis, γ left out, and the
    means over other axes of x: (what the slip is in words, dx_terms' arguments)."""
    yield "", {}
    lay, cache = member.layout, member.cache
    if cache.gamma is not None:
        along = [a for a, n in enumerate(lay.bcast) if n > 1]
        gamma = cache.gamma.reshape(-1)
        if len(along) == 1:
            for a, n in enumerate(lay.shape):
                if a != along[0] and n == gamma.size:
                    shape = [1] * len(lay.shape)
                    shape[a] = n
                    yield (
                        f"your ∂ℓ/∂x takes γ along {member.axes_text([a])} where γ belongs to "
                        f"{member.axes_text(along)}: γ is broadcast over the wrong axis in "
                        "g = γ·∂ℓ/∂y",
                        {"g": gamma.reshape(shape) * dout},
                    )
        yield "your ∂ℓ/∂x leaves γ out: g = ∂ℓ/∂y where the closed form has γ·∂ℓ/∂y", {"g": dout}
    own = group_axes(lay) if len(lay.view) == len(lay.shape) else None
    n = len(lay.shape)
    others = [(a,) for a in range(n)] + [tuple(b for b in range(n) if b != a) for a in range(n)]
    for axes in dict.fromkeys(others):
        if axes != own:
            yield (
                f"the means of your ∂ℓ/∂x run over {member.axes_text(axes)}, not over the "
                f"group's m = {member.m_text} values",
                {"axes": axes},
            )


def read_param(
    kind: str,
    member: Member,
    dout: np.ndarray,
    x: np.ndarray,
    user: np.ndarray,
    tolerance: Callable[[float], float],
) -> Reading:
    """The user's ∂ℓ/∂γ (``kind="gamma"``) or ∂ℓ/∂β (``"beta"``) against the closed form's
    sum and the usual slips: summed over other axes, x for x̂, the other parameter's sum.
    ``tolerance(size)``: what may be left unexplained, for a sum of that largest entry."""
    lay, cache = member.layout, member.cache
    dy_xhat = dout * cache.x_hat.reshape(lay.shape)
    own = lay.param_axes
    mine, other = (dy_xhat, dout) if kind == "gamma" else (dout, dy_xhat)
    symbol, what = ("γ", "∂ℓ/∂y·x̂") if kind == "gamma" else ("β", "∂ℓ/∂y")
    exact = param_sum(mine, lay)
    slips: list[tuple[str, np.ndarray]] = [("", exact)]
    for axes in axis_sums(lay.shape, exact.size):
        if axes != own:
            slips.append((
                f"your ∂ℓ/∂{symbol} sums {what} over {member.axes_text(axes)} where {symbol} "
                f"is shared over {member.axes_text(own)}",
                param_sum(mine, lay, axes),
            ))  # fmt: skip
    if kind == "gamma":
        slips.append((
            "your ∂ℓ/∂γ sums ∂ℓ/∂y·x where the closed form has ∂ℓ/∂y·x̂ (x for x̂)",
            param_sum(dout * x, lay),
        ))  # fmt: skip
    slips.append((
        f"your ∂ℓ/∂{symbol} is Σ {'∂ℓ/∂y' if kind == 'gamma' else '∂ℓ/∂y·x̂'}, the closed form "
        f"of ∂ℓ/∂{'β' if kind == 'gamma' else 'γ'}",
        param_sum(other, lay),
    ))  # fmt: skip
    u = user.reshape(-1)
    tol = tolerance(float(np.abs(exact).max()))
    best = float(np.abs(u - exact).max())
    for slip, column in slips:
        norm = float(np.dot(column, column))
        if norm == 0:
            continue
        a = float(np.dot(column, u)) / norm
        residual = float(np.max(np.abs(u - a * column)))
        best = min(best, residual)
        if residual > tol:
            continue
        said = _sum_scale_words(a, member)
        if not slip:
            if said is None:  # the closed form's own sum: nothing to read
                break
            return Reading((f"your ∂ℓ/∂{symbol} {said}",), True, residual, exact)
        return Reading((slip,) + ((f"and {said}",) if said else ()), True, residual, exact)
    return Reading(
        (f"no reading of the closed form's Σ explains your ∂ℓ/∂{symbol} (the closest leaves "
         f"{best:.3g}, the tolerance is {tol:.3g})",),
        False, best, exact,
    )  # fmt: skip


def _sum_scale_words(a: float, member: Member) -> str | None:
    """A sum scaled by ``a`` in words: 0, the wrong sign, divided by the values it sums (a
    mean where the closed form sums), or the factor; None for 1."""
    if abs(a - 1) <= NEAR:
        return None
    if abs(a) <= NEAR:
        return "is 0"
    if abs(a + 1) <= NEAR:
        return "has the wrong sign"
    shape = member.layout.shape
    letters = AXIS_LETTERS.get(len(shape)) or generic_letters(len(shape))
    for r in range(1, len(shape) + 1):
        for combo in combinations(range(len(shape)), r):
            size = prod(shape[k] for k in combo)
            text = "·".join(letters[k] for k in combo)
            if size > 1 and abs(abs(a) * size - 1) <= NEAR:
                sign = "has the wrong sign and " if a < 0 else ""
                return f"{sign}is divided by {text} = {size}: a mean where the closed form sums"
    return f"is {a:.6g} × the closed form"


def param_line(member: Member, kind: str) -> str:
    own = member.layout.param_axes
    what = "∂ℓ/∂y·x̂" if kind == "gamma" else "∂ℓ/∂y"
    symbol = "γ" if kind == "gamma" else "β"
    return f"∂ℓ/∂{symbol} = Σ {what} over {member.axes_text(own)}"
