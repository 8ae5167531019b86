"""Which member of the normalization family a checked forward is: recognised from its output.

The forward is a member when its output at the check's point is the reference's
(:mod:`bnsym.reference._core`, the core of every reference) over one of the layouts the
declarations allow for x's shape (:func:`bnsym.reference.terms.layouts_for`), with γ and β
among the other inputs; ε, the variance's 1/m or 1/(m − 1) and ε's place are solved from the
output group by group, not assumed. The :class:`Member` found carries the reference's cache at
that point (x̂, 1/std, the x̂ term's coefficient), from which :mod:`~bnsym.gradcheck.readings`
forms the closed form's terms. NumPy, the declarations and the references only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from math import prod
from typing import Any

import numpy as np

import bnsym.reference._core as _core
from bnsym.errors import BnsymError
from bnsym.family.layers import Layer
from bnsym.reference._common import std_of
from bnsym.reference.terms import layouts_for

__all__ = ["AXIS_LETTERS", "FIT", "Member", "generic_letters", "group_axes", "recognise"]

# the forward's output must be the reference's to this relative error (a float32 forward
# rounds at 6e-8; another layer differs by its own size)
FIT = 1e-6
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
AXIS_LETTERS: dict[int, tuple[str, ...]] = {
    2: ("N", "D"),
    3: ("N", "C", "L"),
    4: ("N", "C", "H", "W"),
    5: ("N", "C", "D", "H", "W"),
}
# the place of ε in words, for the member's description
_PLACE_WORDS = {
    "inside": "inside the root",
    "outside": "outside the root",
    "sqrt-outside": "as √ε outside the root",
}


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
        x_letters = AXIS_LETTERS.get(len(self.layout.shape)) or generic_letters(
            len(self.layout.shape)
        )
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


def generic_letters(n: int) -> tuple[str, ...]:
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
    letters = AXIS_LETTERS.get(len(layout.shape)) or generic_letters(len(layout.shape))
    a = _split_axis(layout)
    if a is None:
        return letters
    return letters[:a] + ("G", f"{letters[a]}/G") + letters[a + 1 :]


def _split_axis(layout: _core.Layout) -> int | None:
    """The axis of x the view splits in two (group norm's channels as (G, C/G)), or None."""
    if len(layout.view) == len(layout.shape):
        return None
    return next(k for k in range(len(layout.shape)) if layout.view[k] != layout.shape[k])


def group_axes(layout: _core.Layout) -> tuple[int, ...]:
    """x's axes that hold a group's values (the reduced axes of the view, in x's axes)."""
    split = _split_axis(layout)
    if split is None:
        return layout.axes
    return tuple(a if a <= split else a - 1 for a in layout.axes if a != split)


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
