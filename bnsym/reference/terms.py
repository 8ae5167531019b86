"""The family's closed form split into its terms, for a checker that names the wrong one.

Every member of the family is a :class:`~bnsym.reference._core.Layout` over one core.  With
``g = γ·∂ℓ/∂y`` read as the groups, ``std`` the denominator of ``x̂`` and ``c = k·r`` the
coefficient of :mod:`~bnsym.reference._core` (``k`` = 1/m or 1/(m − 1), ``r`` = 1 with ε
inside the root, ``std/σ`` outside), the closed form is the sum of three terms::

    ∂ℓ/∂x = g/std  −  mean(g)/std  −  c·x̂·Σ(g·x̂)/std
            "dy"       "mean"          "xhat"            (no "mean" for a layer not centred)
    ∂ℓ/∂γ = Σ ∂ℓ/∂y·x̂,   ∂ℓ/∂β = Σ ∂ℓ/∂y    over the axes γ and β are shared over

:func:`dx_terms` returns them as arrays of x's shape (signed as they enter the sum), so that a
wrong backward can be written as a combination of them; :func:`layouts_for` gives the layouts
a declaration's grouping can read an ``x`` of a given shape as (spatial axes included, as
CS231n's spatial batch norm and group norm take them).  NumPy and the standard-library
declarations only.

>>> import numpy as np
>>> from bnsym.family.layers import LAYERS
>>> x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
>>> (layout,) = layouts_for(LAYERS["batchnorm"], x.shape)
>>> layout.axes, layout.bcast, layout.m
((0,), (1, 2), 3)
>>> out, cache = _core.forward(layout, x, np.ones(2), np.zeros(2), 0.0)
>>> dout = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
>>> terms = dx_terms(cache, dout)
>>> np.allclose(sum(terms.values()), _core.backward(dout, cache, layout.layer)[0])
True
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from math import prod

import numpy as np

import bnsym.reference._core as _core
from bnsym.family.layers import Layer
from bnsym.reference._common import Array

__all__ = ["TERMS", "axis_sums", "dx_terms", "layouts_for", "param_sum", "spread"]

#: The terms of ∂ℓ/∂x, in the order of the closed form.
TERMS: tuple[str, ...] = ("dy", "mean", "xhat")

#: What each letter of a grouping's ``axes`` does to x's axis: ``keep`` an axis of samples or
#: of groups, ``reduce`` an axis of a group's values, ``split`` the channels of ``P*K`` into
#: (groups, channels of a group).  ``param``: γ varies along it for the sharings listed.
_LETTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "N": ("keep", ()),
    "P": ("keep", ("shared", "element", "channel")),
    "m": ("reduce", ("element",)),
    "s": ("reduce", ("element",)),
    "P*K": ("split", ("shared", "element", "channel")),
}


def layouts_for(
    layer: Layer, shape: tuple[int, ...], groups: Iterable[int] = ()
) -> list[_core.Layout]:
    """The layouts in which ``layer``'s grouping reads an ``x`` of ``shape``.

    A grouping's letters name x's leading axes; axes beyond them hold more values of a group
    (the spatial positions of ``(N, C, *spatial)``).  A transposed grouping (batch norm's
    columns) keeps axis 1, the features or channels, and reduces every other axis: batch norm
    of ``(N, D)`` and CS231n's spatial batch norm of ``(N, C, H, W)``.  A ``P*K`` axis (group
    norm's channels) is split as ``(G, C/G)`` for every G of ``groups`` that divides it, or
    every divisor of C when ``groups`` is empty.  ``layout.param`` is γ's shape as x's
    broadcast (``bcast``) reads it, flattened: the caller reshapes its own γ.
    """
    return list(_layouts(layer, tuple(shape), tuple(groups)))


@lru_cache(maxsize=256)
def _layouts(
    layer: Layer, shape: tuple[int, ...], groups: tuple[int, ...]
) -> tuple[_core.Layout, ...]:
    # a checker asks for the same few shapes on every failed check of a test suite
    grouping = layer.grouping_
    letters = list(grouping.axes)
    if len(shape) < max(2, len(letters)) or 0 in shape:
        return ()
    if grouping.transposed:  # each column a group: axis 1 holds the groups, the rest values
        roles = ["reduce"] * len(shape)
        roles[1] = "keep"
        varies = [layer.params == "element" or a == 1 for a in range(len(shape))]
    else:
        roles, varies = [], []
        for a in range(len(shape)):
            # axes beyond the letters are more values of a group: its spatial positions
            role, sharings = _LETTERS[letters[a] if a < len(letters) else "m"]
            roles.append(role)
            varies.append(layer.params in sharings)
    if "split" not in roles:
        return (_layout(layer, shape, shape, roles, varies),)
    a = roles.index("split")
    C = shape[a]
    wanted = [G for G in groups if isinstance(G, int) and 0 < G <= C and C % G == 0]
    candidates = wanted or [G for G in range(1, C + 1) if C % G == 0]
    found = []
    for G in dict.fromkeys(candidates):
        view = shape[:a] + (G, C // G) + shape[a + 1 :]
        view_roles = roles[:a] + ["keep", "reduce"] + roles[a + 1 :]
        found.append(_layout(layer, shape, view, view_roles, varies))
    return tuple(found)


def _layout(
    layer: Layer,
    shape: tuple[int, ...],
    view: tuple[int, ...],
    roles: list[str],
    varies: list[bool],
) -> _core.Layout:
    bcast = tuple(n if v else 1 for n, v in zip(shape, varies, strict=True))
    return _core.Layout(
        layer=layer.name,
        shape=shape,
        view=view,
        axes=tuple(a for a, role in enumerate(roles) if role == "reduce"),
        param=(prod(bcast),),
        bcast=bcast,
        centred=layer.centred,
        size_hint="",
    )


def spread(cache: _core.Cache, a: Array) -> Array:
    """``a``, one value per group (the view with the group's axes kept as 1), spread to every
    value of x's shape."""
    lay = cache.layout
    return np.broadcast_to(a, lay.view).reshape(lay.shape)


def dx_terms(
    cache: _core.Cache,
    dout: Array,
    *,
    g: Array | None = None,
    axes: tuple[int, ...] | None = None,
) -> dict[str, Array]:
    """The terms of ∂ℓ/∂x (:data:`TERMS`), each of x's shape, whose sum is the closed form.

    g: ``γ·∂ℓ/∂y`` in x's shape, if not the layer's own (γ broadcast over another axis,
        or left out); axes: x's axes to take the means over instead of the group's (a view
        of x's own shape), with ``k·m`` and ``r`` per group as they are.
    """
    lay = cache.layout
    if g is None:
        g = dout if cache.gamma is None else cache.gamma * dout
    if axes is None:
        gv = g.reshape(lay.view)
        x_hat, inv_std, c = cache.x_hat, cache.inv_std, cache.c
        add = np.add.reduce  # the ufunc: np.sum's and np.mean's wrappers cost more here
        mean = -(add(gv, axis=lay.axes, keepdims=True) / lay.m) * inv_std
        shaped = {
            "dy": (gv * inv_std).reshape(lay.shape),
            # each group's mean at its every value (np.broadcast_to's Python costs more)
            "mean": np.add(mean, np.zeros(lay.view)).reshape(lay.shape),
            "xhat": (
                -(c * inv_std) * add(gv * x_hat, axis=lay.axes, keepdims=True) * x_hat
            ).reshape(lay.shape),
        }
    else:  # the same terms with the means over other axes of x: k·m and r kept per group
        x_hat = cache.x_hat.reshape(lay.shape)
        inv_std = spread(cache, cache.inv_std)
        cr = spread(cache, cache.c * lay.m)
        shaped = {
            "dy": g * inv_std,
            "mean": -np.mean(g, axis=axes, keepdims=True) * inv_std,
            "xhat": -cr * inv_std * x_hat * np.mean(g * x_hat, axis=axes, keepdims=True),
        }
    if not lay.centred:
        del shaped["mean"]
    return shaped


def param_sum(a: Array, layout: _core.Layout, axes: tuple[int, ...] | None = None) -> Array:
    """Σ ``a`` over the axes γ and β are shared over (or over ``axes``), flattened: the closed
    form's ∂ℓ/∂γ for ``a = ∂ℓ/∂y·x̂`` and ∂ℓ/∂β for ``a = ∂ℓ/∂y``."""
    axes = layout.param_axes if axes is None else axes
    return np.sum(a, axis=axes).reshape(-1)


def axis_sums(shape: tuple[int, ...], size: int) -> list[tuple[int, ...]]:
    """Every set of x's axes whose sum leaves ``size`` values: the ways a ∂ℓ/∂γ of that size
    can be summed (the right one among them)."""
    n = len(shape)
    found = []
    for mask in range(1, 2**n - 1):
        axes = tuple(a for a in range(n) if mask >> a & 1)
        if prod(shape[a] for a in range(n) if a not in axes) == size:
            found.append(axes)
    return found
