"""Term-level diagnosis for the normalization family: which term of the closed form is wrong.

A failed check of a member of the family (batch, layer, instance, group, RMS norm, spatial
batch and group norm, or a layer the caller declared) is read against the closed form::

    ∂ℓ/∂x = (g − c·mean(g) − k·r·x̂·Σ g·x̂)/std,   g = γ·∂ℓ/∂y        (bnsym.reference.terms)
    ∂ℓ/∂γ = Σ ∂ℓ/∂y·x̂,   ∂ℓ/∂β = Σ ∂ℓ/∂y   over the values that share γ and β

1. :func:`recognise`: the forward is a member when its output at the check's point is the
   reference's (:mod:`bnsym.reference._core`, the core of every reference) over one of the
   layouts the declarations allow for x's shape (:func:`bnsym.reference.terms.layouts_for`),
   with γ and β among the other inputs, and ε, the variance's 1/m or 1/(m − 1) and ε's
   place solved from the output group by group (not assumed). The caller may name the layer.
2. :func:`read_dx` and :func:`read_param`: the difference between the user's gradient and
   the closed form is solved by least squares on the closed form's terms, for the layer's
   own g and means and for the usual slips (γ broadcast over another axis or left out, the
   means over other axes, ∂ℓ/∂γ summed over other axes, x for x̂); a reading is given only
   when it leaves nothing beyond the check's tolerance, and named in words: a term missing,
   of the wrong sign, twice, scaled by the wrong group size (1/N where the group has N·H·W
   values, 1/(m − 1) for 1/m).

Where nothing explains the difference, the diagnosis says so and the report stays as it was.
NumPy, the family's declarations and the references only: no SymPy, no symbolic core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import combinations
from math import prod
from typing import Any

import numpy as np

import bnsym.reference._core as _core
from bnsym.errors import BnsymError
from bnsym.family.layers import LAYERS, Layer
from bnsym.gradcheck.report import Diagnosis, InputResult
from bnsym.reference._common import std_of
from bnsym.reference.terms import TERMS, axis_sums, dx_terms, layouts_for, param_sum

__all__ = ["Member", "diagnose", "read_dx", "read_param", "recognise"]

# the forward's output must be the reference's to this relative error (a float32 forward
# rounds at 6e-8; another layer differs by its own size)
FIT = 1e-6
# a factor read from a least-squares coefficient is taken as a round value within this
NEAR = 1e-6
# ε, the variance's factor and ε's place, in the order a reading prefers them: the common
# variant first, so that at ε = 0 (all places alike) the plain words are used
_VARIANTS: tuple[tuple[str, str], ...] = (
    ("inside", "biased"),
    ("inside", "unbiased"),
    ("outside", "biased"),
    ("outside", "unbiased"),
    ("sqrt-outside", "biased"),
    ("sqrt-outside", "unbiased"),
)
# ε from a group's denominator s and variance, for each place of ε (std_of inverted)
_EPS_OF: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "inside": lambda s, var: s * s - var,
    "outside": lambda s, var: s - np.sqrt(var),
    "sqrt-outside": lambda s, var: np.sign(s - np.sqrt(var)) * (s - np.sqrt(var)) ** 2,
}
#: x's axes by their usual letters, by the number of axes
_AXIS_LETTERS: dict[int, tuple[str, ...]] = {
    2: ("N", "D"),
    3: ("N", "C", "L"),
    4: ("N", "C", "H", "W"),
    5: ("N", "C", "D", "H", "W"),
}
# the notes' notation, by the place of ε: the denominator and the factor r of the x̂ term
_DENOMINATOR = {"inside": "√({s}² + ε)", "outside": "({s} + ε)", "sqrt-outside": "({s} + √ε)"}
_R = {"inside": "", "outside": "·({s} + ε)/{s}", "sqrt-outside": "·({s} + √ε)/{s}"}
_PLACE_WORDS = {
    "inside": "inside the root",
    "outside": "outside the root",
    "sqrt-outside": "as √ε outside the root",
}


# --- recognition --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A member of the family recognised in a forward: its declaration, the layout x is read
    in, which inputs are x, γ and β, the variant solved from the output, and the reference's
    cache at the check's point (x̂, 1/std and the x̂ term's coefficient per group)."""

    layer: Layer
    layout: _core.Layout
    cache: _core.Cache
    x: int
    gamma: int | None
    beta: int | None
    eps: float
    variance: str
    eps_placement: str
    fit: float  # max |out - reference| / max |out|
    letters: tuple[str, ...]  # the view's axes by their letters

    @cached_property
    def m_text(self) -> str:
        """The group's size in letters: ``N·H·W``, ``(C/G)·H·W``."""
        letters = self.letters
        axes = self.layout.axes
        return "·".join(
            f"({letters[a]})" if "/" in letters[a] and len(axes) > 1 else letters[a] for a in axes
        )

    @cached_property
    def group_sizes(self) -> list[tuple[int, str]]:
        """Sizes a backward may wrongly divide a group's sum by (:func:`_sizes_of`)."""
        return _sizes_of(self)

    def axes_text(self, axes: Sequence[int]) -> str:
        """x's ``axes`` in words: ``axes 0, 2, 3 of x (N·H·W)``."""
        x_letters = _AXIS_LETTERS.get(len(self.layout.shape)) or _generic(len(self.layout.shape))
        word = "axis" if len(axes) == 1 else "axes"
        return f"{word} {', '.join(map(str, axes))} of x ({'·'.join(x_letters[a] for a in axes)})"

    def describe(self, named: bool, inputs: Sequence[Any]) -> str:
        """The member in words, for the report: the layer, x's shape, the group, γ's and β's
        shapes as the caller passed them, the variant; named by the caller or recognised."""
        lay, decl = self.layout, self.layer
        params = ", ".join(
            f"{name} of shape {np.shape(inputs[i])}"
            for name, i in (("γ", self.gamma), ("β", self.beta))
            if i is not None
        )
        variance = (
            "biased variance (1/m)"
            if self.variance == "biased"
            else "unbiased variance (1/(m − 1))"
        )
        if not lay.centred:
            variance = "mean square (1/m)"
        how = "as named" if named else "recognised from the forward's output"
        return (
            f"{decl.title} of x {lay.shape}, groups of m = {self.m_text} = {lay.m} "
            f"values{', ' + params if params else ', no γ or β'}, ε = {self.eps:.3g} "
            f"{_PLACE_WORDS[self.eps_placement]}, {variance}; {how}"
        )


def _generic(n: int) -> tuple[str, ...]:
    return tuple(f"n{a}" for a in range(n))


def recognise(
    inputs: Sequence[Any], out: np.ndarray, layers: Sequence[Layer], groups: Sequence[int] = ()
) -> Member | None:
    """The member of ``layers`` whose reference gives ``out`` at ``inputs``, or None.

    x is the first floating-point input of ``out``'s shape with at least two axes; γ and β
    the next ones of the size a layout's parameters have (β may be absent, or both: a layer
    without them). ``groups``: integer inputs, tried first as group norm's G.
    """
    out = np.asarray(out, dtype=np.float64)
    floats = [
        (i, np.asarray(a, dtype=np.float64))
        for i, a in enumerate(inputs)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    ]
    x_at = [i for i, a in floats if a.shape == out.shape and a.ndim >= 2]
    if not x_at or not np.isfinite(out).all():
        return None
    ix = x_at[0]
    x = dict(floats)[ix]
    scale = float(np.abs(out).max()) if out.size else 0.0
    if scale == 0:
        return None
    for decl in layers:
        for layout in layouts_for(decl, x.shape, groups):
            sized = [(i, a.reshape(-1)) for i, a in floats if i != ix and a.size == layout.param[0]]
            for gamma, beta in _assignments(sized, len(floats) - 1):
                member = _fit(decl, layout, x, ix, gamma, beta, out, scale)
                if member is not None:
                    return member
    return None


def _assignments(sized: list[tuple[int, np.ndarray]], others: int) -> Iterator[tuple[Any, Any]]:
    """(γ, β) as (index, values) or None: the first two inputs of the parameters' size, or the
    one there is (a layer without β), or, where x is the only floating-point input, neither
    (a layer without γ and β)."""
    if len(sized) >= 2:
        yield sized[0], sized[1]
    elif sized:
        yield sized[0], None
    elif not others:
        yield None, None


def _fit(
    decl: Layer,
    layout: _core.Layout,
    x: np.ndarray,
    ix: int,
    gamma: tuple[int, np.ndarray] | None,
    beta: tuple[int, np.ndarray] | None,
    out: np.ndarray,
    scale: float,
) -> Member | None:
    """The member if ``out = γ·(x − μ)/s + β`` holds group by group for one s per group, and
    one ε (with one variance and place of ε) gives every s; None otherwise."""
    view, axes, m = layout.view, layout.axes, layout.m
    add = np.add.reduce  # the ufunc itself: np.mean and np.sum cost more than the sums here
    xv = x.reshape(view)
    mu = add(xv, axis=axes, keepdims=True) / m if layout.centred else np.zeros((1,) * len(view))
    d = xv - mu
    y = out if beta is None else out - beta[1].reshape(layout.bcast)
    gamma_b = None if gamma is None else gamma[1].reshape(layout.bcast)
    gd = d if gamma_b is None else (gamma_b * d.reshape(layout.shape)).reshape(view)
    y = y.reshape(view)
    num = add(gd * gd, axis=axes, keepdims=True)
    den = add(gd * y, axis=axes, keepdims=True)
    valid = (num > 0) & (den > 0)
    every = bool(valid.all())  # the common case: no constant group, no γ of 0
    if not every and not valid.any():
        return None
    # what the best s leaves in each group, sum(y**2) - den**2/num, without forming y - gd/s:
    # a layout that is not the forward's is refused here, at the cost of one product
    fitted = den * den / num if every else np.where(valid, den * den / np.where(valid, num, 1), 0)
    if float((add(y * y, axis=axes, keepdims=True) - fitted).max()) > (FIT * scale) ** 2 * m:
        return None
    s = num / den if every else np.where(valid, num / np.where(valid, den, 1.0), 1.0)
    ss = add(d * d, axis=axes, keepdims=True)
    variant = _variant(layout, ss.ravel() if every else ss[valid], s.ravel() if every else s[valid])
    if variant is None:
        return None
    eps, placement, variance = variant
    k = 1.0 / (m if variance == "biased" or not layout.centred else m - 1)
    try:  # the reference's own normalization, at the statistics found
        cache = _core.normalized(
            layout, xv, mu, k * ss, k, eps, placement, gamma_b, beta is not None
        )
    except BnsymError:  # a constant group with ε = 0
        return None
    ref = cache.x_hat.reshape(layout.shape)
    if gamma_b is not None:
        ref = gamma_b * ref
    fit = float(np.abs(ref - (out if beta is None else y.reshape(layout.shape))).max()) / scale
    if not fit <= FIT:
        return None
    return Member(
        decl, layout, cache, ix,
        None if gamma is None else gamma[0], None if beta is None else beta[0],
        eps, variance, placement, fit, _letters(layout),
    )  # fmt: skip


def _variant(layout: _core.Layout, ss: np.ndarray, s: np.ndarray) -> tuple[float, str, str] | None:
    """(ε, place of ε, variance) that gives every group's denominator ``s`` from its sum of
    squares ``ss``, or None."""
    m = layout.m
    for placement, variance in _VARIANTS:
        if variance == "unbiased" and (not layout.centred or m < 2):
            continue
        var = ss / (m if variance == "biased" else m - 1)
        eps_g = np.sort(_EPS_OF[placement](s, var))
        eps = float(eps_g[eps_g.size // 2])  # the median: one group's rounding does not decide
        if eps < -FIT * float(s.min()) ** 2:
            continue
        eps = max(eps, 0.0)
        if float((np.abs(std_of(var, eps, placement) - s) / s).max()) <= FIT:
            return eps, placement, variance
    return None


def _letters(layout: _core.Layout) -> tuple[str, ...]:
    letters = _AXIS_LETTERS.get(len(layout.shape)) or _generic(len(layout.shape))
    a = _split_axis(layout)
    if a is None:
        return letters
    return letters[:a] + ("G", f"{letters[a]}/G") + letters[a + 1 :]


def _split_axis(layout: _core.Layout) -> int | None:
    """The axis of x the view splits in two (group norm's channels as (G, C/G)), or None."""
    if len(layout.view) == len(layout.shape):
        return None
    return next(k for k in range(len(layout.shape)) if layout.view[k] != layout.shape[k])


# --- notation ---------------------------------------------------------------------------------


class Notation:
    """The closed form in the notes' notation for one member: γ factored out of the means
    where the group shares it (batch and instance norm), ``g = γ·∂ℓ/∂y`` where it does not;
    σ_B with batch norm's subscript, ν for a layer that is not centred."""

    def __init__(self, member: Member) -> None:
        lay, decl = member.layout, member.layer
        group_axes = _x_axes(lay)
        shared = all(n == 1 for a, n in enumerate(lay.bcast) if a in group_axes)
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


def _x_axes(layout: _core.Layout) -> tuple[int, ...]:
    """x's axes that hold a group's values (the reduced axes of the view, in x's axes)."""
    split = _split_axis(layout)
    if split is None:
        return layout.axes
    return tuple(a if a <= split else a - 1 for a in layout.axes if a != split)


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


def _sizes_of(member: Member) -> list[tuple[int, str]]:
    """Sizes a backward may wrongly divide a group's sum by, in words: fewer values than the
    group has (a part of its axes: N where it has N·H·W), m − 1, or more (its axes and
    others: N·H·W where it has H·W)."""
    view, reduced = member.layout.view, member.layout.axes
    kept = [a for a in range(len(view)) if a not in reduced]
    parts = [c for r in range(1, len(reduced)) for c in combinations(reduced, r)]
    more = [
        tuple(sorted(reduced + c)) for r in range(1, len(kept) + 1) for c in combinations(kept, r)
    ]
    sizes = [(prod(view[a] for a in combo), _product(member.letters, combo)) for combo in parts]
    sizes.append((member.layout.m - 1, "(m − 1)"))
    return sizes + [(prod(view[a] for a in c), _product(member.letters, c)) for c in more]


def _product(letters: Sequence[str], axes: Sequence[int]) -> str:
    """``N`` or ``(N·H·W)``: a divisor in letters, bracketed when it is a product."""
    text = "·".join(letters[a] for a in axes)
    return f"({text})" if len(axes) > 1 or "/" in text else text


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
    own = _x_axes(lay) if len(lay.view) == len(lay.shape) else None
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
    letters = _AXIS_LETTERS.get(len(shape)) or _generic(len(shape))
    for r in range(1, len(shape) + 1):
        for combo in combinations(range(len(shape)), r):
            size = prod(shape[k] for k in combo)
            text = "·".join(letters[k] for k in combo)
            if size > 1 and abs(abs(a) * size - 1) <= NEAR:
                sign = "has the wrong sign and " if a < 0 else ""
                return f"{sign}is divided by {text} = {size}: a mean where the closed form sums"
    return f"is {a:.6g} × the closed form"


def _param_line(member: Member, kind: str) -> str:
    own = member.layout.param_axes
    what = "∂ℓ/∂y·x̂" if kind == "gamma" else "∂ℓ/∂y"
    symbol = "γ" if kind == "gamma" else "β"
    return f"∂ℓ/∂{symbol} = Σ {what} over {member.axes_text(own)}"


# --- the report -------------------------------------------------------------------------------


def diagnose(
    outputs: Callable[[], list[np.ndarray]],
    inputs: Sequence[Any],
    douts: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    results: list[InputResult],
    named: Layer | None,
) -> tuple[list[InputResult], str]:
    """Each failing gradient of x, γ or β read against the closed form, and the member the
    forward is, in words (``""`` where it is none).

    outputs: the forward's outputs at ``inputs`` (one call); inputs: the check's float64
    copies; douts, grads: the check's upstream gradient and the user's gradients; results:
    the check's verdicts; named: the layer the caller named, tried alone.
    """
    # a member maps x to an output of x's shape: anything else is settled without a call
    if len(douts) != 1 or not any(
        isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape == douts[0].shape for a in inputs
    ):
        return results, ""
    out = outputs()
    if len(out) != 1:
        return results, ""
    groups = [int(a) for a in inputs if isinstance(a, int | np.integer) and not isinstance(a, bool)]
    layers = [named] if named is not None else list(LAYERS.values())
    member = recognise(inputs, out[0], layers, groups)
    if member is None:
        if named is None:
            return results, ""
        return results, (
            f"{named.title} was named, but the forward's output is not its output for "
            "these inputs (no layout, γ, β, ε or variance of it fits): no term-level diagnosis"
        )
    dout = douts[0].astype(np.float64)
    x = np.asarray(inputs[member.x], dtype=np.float64)
    notation = Notation(member)
    kinds = {member.x: "x", member.gamma: "gamma", member.beta: "beta"}
    diagnosed = []
    for i, r in enumerate(results):
        kind = kinds.get(i)
        g = grads[i]
        # only a gradient whose values are wrong: a wrong shape alone is the problem it states
        if kind is None or r.passed or not r.judged or not r.n_failed or g is None:
            diagnosed.append(r)
            continue
        user = np.asarray(g, dtype=np.float64)

        def tolerance(size: float, r: InputResult = r) -> float:
            # the check's own tolerance, and the forward's distance from the reference
            return 4 * r.atol + 4 * r.rtol * size + 64 * member.fit * size

        if kind == "x":
            reading = read_dx(member, dout, user, tolerance, notation)
            line = notation.closed_form
        else:
            reading = read_param(kind, member, dout, x, user, tolerance)
            line = _param_line(member, kind)
        exact = reading.exact.reshape(user.shape)
        # the worst entries by their multi-index (the probe's directions have none)
        points = [
            (tuple(int(k) for k in e.index), e)
            for e in r.worst
            if e.index[:1] != ("direction",) and len(e.index) == user.ndim
        ]
        entries = tuple((at, float(user[at]), float(exact[at])) for at, _ in points[:3])
        wrong = [
            (at, e) for at, e in points
            if abs(float(exact[at]) - e.numerical) > 4 * e.tolerance + 4 * e.error_estimate
        ]  # fmt: skip
        if wrong:  # the closed form must be what the numbers say, or there is no diagnosis
            at, e = wrong[0]
            reading = Reading(
                (f"the closed form gives {float(exact[at]):.12g} at {list(at)}, the numerical "
                 f"derivative {e.numerical:.12g}: the forward is not this layer everywhere, "
                 "no term-level diagnosis",),
                False, reading.residual, reading.exact,
            )  # fmt: skip
        diagnosis = Diagnosis(line, reading.findings, reading.explained, reading.residual, entries)
        diagnosed.append(replace(r, diagnosis=diagnosis))
    if all(r.diagnosis is None for r in diagnosed):
        return results, ""
    return diagnosed, member.describe(named is not None, inputs)
