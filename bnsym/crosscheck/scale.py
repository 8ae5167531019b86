"""The size of the terms a derivative of order n is made of, the scale its errors are read on.

Two float64 implementations of the same derivative differ by rounding of the terms they add,
not of the sum: where the terms cancel (at m = 2, ∂ℓ/∂x of batch norm is O(ε) while each
term is O(1); at ε = 0 it is exactly 0), an error relative to the largest exact entry is
rounding divided by almost nothing. ``bnsym check`` at order 1 measures each result against
the size of its own terms (:func:`bnsym.crosscheck.first._scales`); the higher orders and the
compositions of the modes measure against :func:`term_scale`, the largest exact entry or,
where that is far smaller, a bound on the terms of any derivative of that order:

    max(1, |γ|, |β|) · s^n · max(1, 1/D)^n,

s the largest seed (dout, the tangents, the cotangents; at least 1) and D the smallest
denominator of x̂ over the groups: each of the n passes multiplies by one seed and at most
one more 1/D (x̂ and its derivatives are O(1) in units of 1/D). A wrong term is off by O(1)
of the terms, a billion times the tolerance of 1e-9.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from bnsym.reference._common import std_of
from bnsym.reference.declared import groups

__all__ = ["term_scale", "terms_bound"]


def terms_bound(
    o: Any, x: np.ndarray, params: Iterable[Any], seeds: Iterable[Any], eps: float, n: int,
    running: tuple[Any, Any] | None = None,
) -> float:  # fmt: skip
    """The bound of the module docstring for a derivative of order ``n`` of the layer ``o``
    (its options) at ``x`` in its layout, with the parameters and seeds given (arrays or
    None); ``running``: eval mode's (running_mean, running_var)."""
    decl = o.layer
    xs = groups(decl, np.asarray(x, dtype=np.float64), o.m)
    if o.mode == "eval" and running is not None:
        var = np.asarray(running[1], dtype=np.float64)
    elif decl.centred:
        var = xs.var(axis=-1, ddof=0 if o.variance == "biased" else 1)
    else:
        var = (xs * xs).mean(axis=-1)
    D = float(np.min(std_of(var, eps, o.eps_placement))) if np.size(var) else 1.0
    big = max([1.0] + [float(np.max(np.abs(p))) for p in params if p is not None and np.size(p)])
    seed = max([1.0] + [float(np.max(np.abs(s))) for s in seeds if s is not None and np.size(s)])
    inv = 1.0 / D if D > 0 else np.inf
    return float(big * seed**n * max(1.0, inv) ** n)


#: The bound errs large (by up to about 10× on the check's data), so it takes over from the
#: largest exact entry only below a hundredth of it, where the terms cancel; there 1e-9 of it
#: is still 1e5 times the rounding of the terms. Elsewhere the relative errors are those of
#: max|exact|, as the reports and docs/forward_mode.md quote them.
CANCELLED = 1e-2


def term_scale(exact: Any, bound: float) -> float:
    """The scale an output's errors are divided by: its largest exact entry, or, where the
    terms cancel (that entry below CANCELLED·bound), CANCELLED·bound; never 0."""
    largest = float(np.max(np.abs(exact))) if np.size(exact) else 0.0
    scale = max(largest, CANCELLED * bound)
    return scale if np.isfinite(scale) and scale > 0 else 1.0
