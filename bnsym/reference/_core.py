"""One core for the whole family, as in Flax's ``normalization.py``: a layer is a :class:`Layout`.

A normalization layer reshapes ``x`` so that each group it normalizes is a block of whole axes
(the *view*), computes each group's statistics over those axes, normalizes, and scales and
shifts with ``gamma`` and ``beta`` shared as the layer shares them.  The layers differ only in
data -- which axes form a group, whether the mean is subtracted, the parameters' shape -- so
one set of functions serves them all:

- :func:`_stats` and :func:`_normalize`: ``mu``, ``var`` and ``x_hat`` of every group;
- :func:`forward` / :func:`backward`: the fused pass, the closed-form gradient over the
  reduction axes;
- :func:`forward_staged` / :func:`backward_staged`: the graph one node at a time.

With ``m`` the size of a group, ``k`` = ``1/m`` (biased, and always for RMS) or ``1/(m-1)``
(unbiased), ``std`` the denominator of ``x_hat`` and ``g = gamma * dout``::

    dx = (g - mean(g) - c * x_hat * sum(g * x_hat)) / std      (centred; no mean(g) for RMS)

where ``c = k`` with ``eps`` inside the square root and ``c = k * std / sqrt(var)`` with it
outside (0 where ``var = 0``: there ``x_hat`` is 0 and the term's limit is 0).  ``var`` is the
mean square ``mean(x**2)`` for an uncentred (RMS) layer.  NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np
from numpy.typing import ArrayLike

from bnsym.reference._common import (
    Array,
    GroupSizeError,
    NormError,
    _dout,
    _eps,
    _finite,
    _placement,
    std_of,
)


@dataclass(frozen=True)
class Layout:
    """What makes a layer: which values form a group and how ``gamma`` and ``beta`` are shared.

    ``x`` of shape ``shape`` is reshaped to ``view`` (the same values in the same order), whose
    ``axes`` hold one group each; ``gamma`` and ``beta`` of shape ``param`` are reshaped to
    ``bcast`` to broadcast against ``x``.
    """

    layer: str  # the functions' prefix, e.g. "groupnorm", for messages
    shape: tuple[int, ...]  # x as passed
    view: tuple[int, ...]
    axes: tuple[int, ...]  # axes of the view reduced for a group's statistics
    param: tuple[int, ...]
    bcast: tuple[int, ...]
    centred: bool  # subtract the mean (all but RMS norm)
    size_hint: str  # what to do when a group has a single value

    @cached_property
    def m(self) -> int:
        """The number of values in one group."""
        return prod(self.view[a] for a in self.axes)

    @property
    def param_axes(self) -> tuple[int, ...]:
        """The axes of ``x`` that ``gamma`` is shared over: dgamma sums over them."""
        return tuple(i for i, n in enumerate(self.bcast) if n == 1)


# ----------------------------------------------------------------------------------------------
# argument checks that need the layout


def _params(
    layout: Layout,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    affine: bool,
    has_beta: bool = True,
) -> tuple[Array | None, Array | None]:
    """Checked copies of gamma and beta reshaped to broadcast against x, or None, None."""
    names = "gamma and beta" if has_beta else "gamma"
    if not affine:
        if gamma is not None or beta is not None:
            # refusing beats silently ignoring parameters the caller believes are used
            raise NormError(f"affine=False takes {names} = None")
        return None, None
    if gamma is None or (has_beta and beta is None):
        raise NormError(
            f"affine=True needs {names} of shape {layout.param}; pass affine=False for none"
        )
    return _param(layout, "gamma", gamma), None if beta is None else _param(layout, "beta", beta)


def _param(layout: Layout, name: str, a: ArrayLike) -> Array:
    a = _finite(name, a)
    if a.shape != layout.param:
        raise NormError(
            f"{name} must have shape {layout.param} to match x of shape {layout.shape} in "
            f"{layout.layer}; got {a.shape}"
        )
    return a.reshape(layout.bcast)


def _variance_factor(layout: Layout, variance: str) -> float:
    """The ``k`` in ``var = k * sum((x - mu)**2)``; a centred group of one value is refused."""
    if variance not in ("biased", "unbiased"):
        raise NormError(f"variance must be 'biased' or 'unbiased'; got {variance!r}")
    m = layout.m
    if not layout.centred:
        return 1.0 / m  # the mean square is defined for one value
    if m < 2:
        raise GroupSizeError(
            f"{layout.layer} normalizes groups of m = {m} value with x of shape {layout.shape}: "
            f"the variance of one value is zero; {layout.size_hint}"
        )
    return 1.0 / m if variance == "biased" else 1.0 / (m - 1)


def _checked(
    layout: Layout,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float,
    variance: str,
    eps_placement: str,
    affine: bool,
    has_beta: bool,
) -> tuple[Array | None, Array | None, float, float]:
    gamma, beta = _params(layout, gamma, beta, affine, has_beta)
    eps = _eps(eps)
    _placement(eps_placement)
    return gamma, beta, eps, _variance_factor(layout, variance)


# ----------------------------------------------------------------------------------------------
# the statistics and the normalization


def _stats(x: Array, axes: tuple[int, ...], *, centred: bool, k: float) -> tuple[Array, Array]:
    """``(mu, var)`` of every group, kept as size-1 axes; ``mu = 0`` and ``var = mean(x**2)``
    (with ``k = 1/m``) for an uncentred layer."""
    mu = x.mean(axis=axes, keepdims=True) if centred else np.zeros((1,) * x.ndim)
    var = k * np.sum((x - mu) ** 2, axis=axes, keepdims=True)
    return mu, var


def _normalize(
    x: Array, mu: Array, var: Array, eps: float, eps_placement: str
) -> tuple[Array, Array]:
    """``(x_hat, std)`` with ``std`` the denominator (``_common.std_of``), refused if 0."""
    std = std_of(var, eps, eps_placement)
    _nonzero(std)
    return (x - mu) / std, std


def _nonzero(std: Array) -> None:
    if std.all():  # the common case, without argwhere's work
        return
    zero = np.argwhere(std == 0)
    if zero.size:
        where = tuple(int(i) for i in zero[0])
        raise NormError(
            f"the denominator of x_hat is 0 in {len(zero)} group(s), the first at index {where} "
            "of the statistics (zero variance or mean square with eps=0), so x_hat would be "
            "0/0; use eps > 0"
        )


# ----------------------------------------------------------------------------------------------
# fused: the closed form


@dataclass(frozen=True)
class Cache:
    """What :func:`backward` needs; opaque to callers."""

    layout: Layout
    x_hat: Array  # in the view's shape
    gamma: Array | None  # reshaped to layout.bcast
    has_beta: bool
    inv_std: Array  # 1 / std, one per group
    c: Array  # coefficient of x_hat * sum(g * x_hat) in dx, one per group


def forward(
    layout: Layout,
    x: Array,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float,
    *,
    variance: str = "biased",
    eps_placement: str = "inside",
    affine: bool = True,
    has_beta: bool = True,
) -> tuple[Array, Cache]:
    """Normalize each group of ``x`` (already checked, float64) and scale and shift it."""
    gamma, beta, eps, k = _checked(
        layout, gamma, beta, eps, variance, eps_placement, affine, has_beta
    )
    xv = x.reshape(layout.view)
    mu, var = _stats(xv, layout.axes, centred=layout.centred, k=k)
    cache = normalized(layout, xv, mu, var, k, eps, eps_placement, gamma, beta is not None)
    out = _scale_shift(cache.x_hat.reshape(layout.shape), gamma, beta)
    return out, cache


def normalized(
    layout: Layout,
    xv: Array,
    mu: Array,
    var: Array,
    k: float,
    eps: float,
    eps_placement: str,
    gamma: Array | None,
    has_beta: bool,
) -> Cache:
    """:func:`forward`'s cache from checked arguments and the statistics: ``xv`` in the view,
    ``mu`` and ``var = k·Σ(x − mu)²`` per group, ``gamma`` reshaped to ``layout.bcast``."""
    x_hat, std = _normalize(xv, mu, var, eps, eps_placement)
    if eps_placement == "inside":
        c = np.full_like(std, k)
    else:
        # d(sqrt(var) + eps)/dvar = 1/(2 sigma) instead of 1/(2 std): the extra factor std/sigma.
        # Where sigma = 0 the group is constant (all 0 for RMS), x_hat is exactly 0 and the term
        # vanishes in the limit (dx = (g - mean(g))/eps, checked by finite differences and by
        # test_outside_constant_group_takes_the_limit).
        sigma = np.sqrt(var)
        c = k * np.divide(std, sigma, out=np.zeros_like(std), where=sigma > 0)
    return Cache(layout, x_hat, gamma, has_beta, 1.0 / std, c)


def _scale_shift(x_hat: Array, gamma: Array | None, beta: Array | None) -> Array:
    if gamma is None:
        return x_hat
    return gamma * x_hat if beta is None else gamma * x_hat + beta


def backward(dout: ArrayLike, cache: Cache, layer: str) -> tuple[Array, Array | None, Array | None]:
    """``(dx, dgamma, dbeta)`` of :func:`forward`; ``dbeta`` None without beta."""
    _expect(cache, Cache, layer, "")
    lay = cache.layout
    dout = _dout(dout, lay.shape)
    x_hat = cache.x_hat
    g = (dout if cache.gamma is None else cache.gamma * dout).reshape(lay.view)
    dx = g - cache.c * x_hat * np.sum(g * x_hat, axis=lay.axes, keepdims=True)
    if lay.centred:
        dx = dx - g.mean(axis=lay.axes, keepdims=True)
    dx = (dx * cache.inv_std).reshape(lay.shape)
    return (dx, *_dparams(dout, x_hat.reshape(lay.shape), cache.gamma, cache.has_beta, lay))


def _dparams(
    dout: Array, x_hat: Array, gamma: Array | None, has_beta: bool, layout: Layout
) -> tuple[Array | None, Array | None]:
    """dgamma = sum(dout * x_hat) and dbeta = sum(dout) over the axes gamma is shared over."""
    if gamma is None:
        return None, None
    axes = layout.param_axes
    dgamma = np.sum(dout * x_hat, axis=axes, keepdims=True).reshape(layout.param)
    dbeta = np.sum(dout, axis=axes, keepdims=True).reshape(layout.param) if has_beta else None
    return dgamma, dbeta


def _expect(cache: object, kind: type[Cache] | type[StagedCache], layer: str, staged: str) -> None:
    """Refuse a cache that is not from this layer's forward pass (fused or staged as asked)."""
    layout = getattr(cache, "layout", None)
    if isinstance(cache, kind) and isinstance(layout, Layout) and layout.layer == layer:
        return
    source = "elsewhere"
    if isinstance(layout, Layout):
        source = f"{layout.layer}_forward" + ("_staged" if isinstance(cache, StagedCache) else "")
    raise NormError(
        f"{layer}_backward{staged} needs the cache returned by {layer}_forward{staged}; got a "
        f"{type(cache).__name__} from {source}"
    )


# ----------------------------------------------------------------------------------------------
# staged: the computation graph, one node at a time, for any reduction axes


@dataclass(frozen=True)
class StagedCache:
    """Every node of the forward graph that the backward walk reads; opaque to callers."""

    layout: Layout
    x_mu: Array  # centre (x itself for RMS), in the view's shape
    sqrt_var: Array  # sqrt (of var + eps inside, of var outside)
    std: Array  # denominator of x_hat
    ivar: Array  # invert
    x_hat: Array  # normalize, in the view's shape
    gamma: Array | None
    has_beta: bool
    k: float
    eps_placement: str


def forward_staged(
    layout: Layout,
    x: Array,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float,
    *,
    variance: str = "biased",
    eps_placement: str = "inside",
    affine: bool = True,
    has_beta: bool = True,
) -> tuple[Array, StagedCache]:
    """:func:`forward` one graph node per line; same contract."""
    gamma, beta, eps, k = _checked(
        layout, gamma, beta, eps, variance, eps_placement, affine, has_beta
    )
    axes, m = layout.axes, layout.m
    xv = x.reshape(layout.view)  # group: the same values, each group a block of axes
    if layout.centred:
        mu = np.sum(xv, axis=axes, keepdims=True) / m  # mean
        x_mu = xv - mu  # centre
    else:
        x_mu = xv  # RMS norm does not centre
    sq = x_mu**2  # square
    var = k * np.sum(sq, axis=axes, keepdims=True)  # variance (mean square for RMS)
    if eps_placement == "inside":
        sqrt_var = np.sqrt(var + eps)  # sqrt
        std = sqrt_var
    else:
        sqrt_var = np.sqrt(var)  # sqrt
        std = sqrt_var + (np.sqrt(eps) if eps_placement == "sqrt-outside" else eps)  # add eps
    _nonzero(std)
    ivar = 1.0 / std  # invert
    x_hat = x_mu * ivar  # normalize
    out = x_hat.reshape(layout.shape)  # ungroup
    if gamma is not None:
        out = gamma * out  # scale
        if beta is not None:
            out = out + beta  # shift
    cache = StagedCache(
        layout, x_mu, sqrt_var, std, ivar, x_hat, gamma, beta is not None, k, eps_placement
    )
    return out, cache


def backward_staged(
    dout: ArrayLike, cache: StagedCache, layer: str
) -> tuple[Array, Array | None, Array | None]:
    """Backward pass of :func:`forward_staged`, node by node in reverse.

    Each line multiplies the incoming gradient by one node's local derivative; a node that
    feeds two others sums their gradients; a sum over a group's axes sends its gradient back
    to every value of the group (broadcasting over the kept size-1 axes).
    """
    _expect(cache, StagedCache, layer, "_staged")
    c = cache
    lay = c.layout
    axes, m = lay.axes, lay.m
    dout = _dout(dout, lay.shape)

    if c.gamma is None:
        dgamma = dbeta = None
        dx_hat = dout
    else:
        shared, param = lay.param_axes, lay.param  # the axes gamma and beta are shared over
        if c.has_beta:
            # shift: d(gamma_x + beta)/dbeta = 1, summed where beta is shared
            dbeta = np.sum(dout, axis=shared, keepdims=True).reshape(param)
        else:
            dbeta = None
        x_hat = c.x_hat.reshape(lay.shape)
        # scale: d(gamma * x_hat)/dgamma = x_hat, summed where gamma is shared
        dgamma = np.sum(dout * x_hat, axis=shared, keepdims=True).reshape(param)
        dx_hat = dout * c.gamma  # scale: d(gamma * x_hat)/dx_hat = gamma
    dx_hat = dx_hat.reshape(lay.view)  # ungroup: a reshape passes the gradient through
    divar = np.sum(dx_hat * c.x_mu, axis=axes, keepdims=True)  # normalize: d/divar = x_mu
    dx_mu1 = dx_hat * c.ivar  # normalize: d(x_mu * ivar)/dx_mu = ivar  (first path into x_mu)
    dstd = -divar / c.std**2  # invert: d(1/std)/dstd = -1/std**2
    if c.eps_placement == "inside":
        dvar = dstd * 0.5 / c.sqrt_var  # sqrt: d sqrt(var + eps)/dvar = 1/(2 sqrt(var + eps))
    else:
        dsqrt_var = dstd  # add eps (or sqrt(eps)): d(sqrt_var + eps)/dsqrt_var = 1
        # sqrt: d sqrt(var)/dvar = 1/(2 sqrt(var)), infinite at var = 0; there dstd and the
        # square's x_mu are exactly 0 and the product's limit is 0, so take it.
        dvar = np.divide(0.5 * dsqrt_var, c.sqrt_var, out=np.zeros_like(dstd), where=c.sqrt_var > 0)
    dsq = c.k * np.ones_like(c.x_mu) * dvar  # variance: d(k * sum(sq))/dsq = k
    dx_mu2 = 2.0 * c.x_mu * dsq  # square: d(x_mu**2)/dx_mu = 2 x_mu  (second path)
    dx1 = dx_mu1 + dx_mu2  # x_mu feeds both the square and the normalize
    if lay.centred:
        dmu = -np.sum(dx1, axis=axes, keepdims=True)  # centre: d(x - mu)/dmu = -1
        dx2 = np.ones_like(dx1) * dmu / m  # mean: d(sum(x)/m)/dx = 1/m
        dx = dx1 + dx2  # centre: d(x - mu)/dx = 1; x feeds both the centre and the mean
    else:
        dx = dx1  # no centre: x_mu is x
    return dx.reshape(lay.shape), dgamma, dbeta
