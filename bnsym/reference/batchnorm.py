"""Batch normalization over (N, D) written by hand: the reference the derivation is checked against.

Two readings of the same layer, in the CS231n layer contract (``forward -> (out, cache)``,
``backward(dout, cache) -> (dx, dgamma, dbeta)``), for ``x`` and ``dout`` of shape (N, D) =
(m, D) and ``gamma``, ``beta`` of shape (D,):

- **fused**: :func:`batchnorm_forward` / :func:`batchnorm_backward`, the closed-form gradient
  ``dx = gamma / std * (dout - mean(dout) - k * x_hat * sum(dout * x_hat))`` the way a person
  simplifies it on paper;
- **staged**: :func:`batchnorm_forward_staged` / :func:`batchnorm_backward_staged`, the
  computation graph walked one node at a time (mean, centre, square, variance, sqrt, invert,
  normalize, scale, shift, and back), each local gradient on its own commented line.

Eval mode and the layer object with running statistics are in :mod:`bnsym.reference.running`;
the other layers of the family in :mod:`bnsym.reference.family`.

Variants, the same as the derivation's:

- ``variance="biased"`` (``var = sum((x - mu)**2) / m``, the default and what every framework
  normalizes with) or ``"unbiased"`` (``/ (m - 1)``); below, ``k`` is ``1/m`` or ``1/(m-1)``;
- ``eps_placement="inside"`` (``x_hat = (x - mu) / sqrt(var + eps)``, the default) or
  ``"outside"`` (``x_hat = (x - mu) / (sqrt(var) + eps)``);
- ``affine=True`` (``out = gamma * x_hat + beta``) or ``False`` (``out = x_hat``; ``gamma`` and
  ``beta`` must then be ``None`` and the backward pass returns ``(dx, None, None)``, so callers
  unpack three values either way).

Everything is computed in float64.  Inputs are never modified.  Bad arguments raise
:class:`BatchNormError` (a ``ValueError``) naming the argument; a training batch of one row
raises :class:`BatchSizeError`, as PyTorch does.  NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bnsym.reference._common import (
    Array,
    EpsPlacement,
    Variance,
    _affine,
    _dout,
    _eps,
    _expect,
    _matrix,
    _nonzero,
    _placement,
    _std,
    _variance_factor,
)

__all__ = [
    "batchnorm_backward",
    "batchnorm_backward_staged",
    "batchnorm_forward",
    "batchnorm_forward_staged",
]


# ----------------------------------------------------------------------------------------------
# fused: the closed form


@dataclass(frozen=True)
class FusedCache:
    """What :func:`batchnorm_backward` needs; opaque to callers."""

    x_hat: Array  # (N, D)
    gamma: Array | None  # (D,), a copy
    inv_std: Array  # (D,), 1 / std where std is the denominator of x_hat
    c: Array  # (D,), coefficient of x_hat * sum(dout * x_hat) in dx, see batchnorm_backward


def batchnorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, FusedCache]:
    """Training-mode forward pass: normalize each column of ``x`` with its batch statistics.

    Args:
        x: array of shape (N, D), N >= 2.
        gamma, beta: arrays of shape (D,), or ``None`` both with ``affine=False``.
        eps: added to the variance (``"inside"``) or to the standard deviation (``"outside"``).
        variance, eps_placement, affine: the variant, see the module docstring.

    Returns:
        ``(out, cache)``: ``out`` of shape (N, D), ``gamma * x_hat + beta`` (or ``x_hat``);
        ``cache`` for :func:`batchnorm_backward`.

    The worked example, one feature, ``eps=0``: mean 2, variance 2, ``x_hat = (x - 2)/sqrt 2``.

    >>> out, cache = batchnorm_forward([[2.0], [0.0], [2.0], [4.0]], [1.0], [0.0], eps=0.0)
    >>> out.ravel() ** 2
    array([0., 2., 0., 2.])
    """
    x = _matrix("x", x)
    m, D = x.shape
    gamma, beta = _affine(gamma, beta, D, affine)
    eps = _eps(eps)
    _placement(eps_placement)
    k = _variance_factor(variance, x.shape, "use batchnorm_forward_eval with running statistics")

    mu = x.mean(axis=0)
    x_mu = x - mu
    var = k * np.sum(x_mu**2, axis=0)
    std = _std(var, eps, eps_placement)
    x_hat = x_mu / std
    out = x_hat if gamma is None else gamma * x_hat + beta

    if eps_placement == "inside":
        c = np.full(D, k)
    else:
        # d(sqrt(var) + eps)/dvar = 1/(2 sigma) instead of 1/(2 std): the extra factor std/sigma.
        # Where sigma = 0 the column is constant, x_hat is exactly 0 and the term vanishes in the
        # limit (dx = gamma*(dout - mean(dout))/eps, checked by finite differences in the tests).
        sigma = np.sqrt(var)
        c = k * np.divide(std, sigma, out=np.zeros(D), where=sigma > 0)
    return out, FusedCache(x_hat=x_hat, gamma=gamma, inv_std=1.0 / std, c=c)


def batchnorm_backward(
    dout: ArrayLike, cache: FusedCache
) -> tuple[Array, Array | None, Array | None]:
    """Backward pass of :func:`batchnorm_forward`, in closed form.

    With ``g = gamma * dout`` and ``std`` the denominator of ``x_hat``::

        dx     = (g - mean(g) - c * x_hat * sum(g * x_hat)) / std
        dgamma = sum(dout * x_hat)
        dbeta  = sum(dout)

    (sums and means over the batch axis), where ``c = k`` for ``eps`` inside the square root
    and ``c = k * std / sqrt(var)`` for ``eps`` outside it.  For the default variant this is the
    textbook ``dx = gamma/(m*std) * (m*dout - sum(dout) - x_hat*sum(dout*x_hat))``.

    Args:
        dout: upstream gradient, shape (N, D), as ``out``.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes (N, D), (D,), (D,); ``dgamma`` and ``dbeta`` are
        ``None`` when ``affine=False``.

    >>> x = [[2.0], [0.0], [2.0], [4.0]]
    >>> out, cache = batchnorm_forward(x, [3.0], [0.0], eps=0.0)
    >>> dx, dgamma, dbeta = batchnorm_backward(np.ones((4, 1)), cache)
    >>> dx.ravel(), dgamma, dbeta   # a shift of out does not depend on x
    (array([0., 0., 0., 0.]), array([0.]), array([4.]))
    """
    _expect(cache, FusedCache, "batchnorm_backward", "batchnorm_forward")
    x_hat = cache.x_hat
    dout = _dout(dout, x_hat.shape)
    g = dout if cache.gamma is None else cache.gamma * dout
    dx = (g - g.mean(axis=0) - cache.c * x_hat * np.sum(g * x_hat, axis=0)) * cache.inv_std
    if cache.gamma is None:
        return dx, None, None
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)


# ----------------------------------------------------------------------------------------------
# staged: the computation graph, one node at a time


@dataclass(frozen=True)
class StagedCache:
    """Every node of the forward graph that the backward walk reads; opaque to callers."""

    x_mu: Array  # centre
    var: Array  # variance
    sqrt_var: Array  # sqrt (of var + eps inside, of var outside)
    std: Array  # denominator of x_hat
    ivar: Array  # invert
    x_hat: Array  # normalize
    gamma: Array | None
    k: float
    eps_placement: str


def batchnorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, StagedCache]:
    """:func:`batchnorm_forward` as a computation graph, one node per line; same contract.

    >>> out, cache = batchnorm_forward_staged([[2.0], [0.0], [2.0], [4.0]], [1.0], [0.0], eps=0.0)
    >>> out.ravel() ** 2
    array([0., 2., 0., 2.])
    """
    x = _matrix("x", x)
    m, D = x.shape
    gamma, beta = _affine(gamma, beta, D, affine)
    eps = _eps(eps)
    _placement(eps_placement)
    k = _variance_factor(
        variance, x.shape, "use batchnorm_forward_eval_staged with running statistics"
    )

    mu = np.sum(x, axis=0) / m  # mean
    x_mu = x - mu  # centre
    sq = x_mu**2  # square
    var = k * np.sum(sq, axis=0)  # variance
    if eps_placement == "inside":
        sqrt_var = np.sqrt(var + eps)  # sqrt
        std = sqrt_var
    else:
        sqrt_var = np.sqrt(var)  # sqrt
        std = sqrt_var + eps  # add eps
    _nonzero(std)
    ivar = 1.0 / std  # invert
    x_hat = x_mu * ivar  # normalize
    if gamma is None:
        out = x_hat
    else:
        gamma_x = gamma * x_hat  # scale
        out = gamma_x + beta  # shift
    cache = StagedCache(x_mu, var, sqrt_var, std, ivar, x_hat, gamma, k, eps_placement)
    return out, cache


def batchnorm_backward_staged(
    dout: ArrayLike, cache: StagedCache
) -> tuple[Array, Array | None, Array | None]:
    """Backward pass of :func:`batchnorm_forward_staged`, node by node in reverse.

    Same contract as :func:`batchnorm_backward`; each line multiplies the incoming gradient
    by one node's local derivative, and a node that feeds two others sums their gradients.

    >>> out, cache = batchnorm_forward_staged([[2.0], [0.0], [2.0], [4.0]], [3.0], [0.0], eps=0.0)
    >>> dx, dgamma, dbeta = batchnorm_backward_staged(np.ones((4, 1)), cache)
    >>> dx.ravel(), dgamma, dbeta
    (array([0., 0., 0., 0.]), array([0.]), array([4.]))
    """
    _expect(cache, StagedCache, "batchnorm_backward_staged", "batchnorm_forward_staged")
    c = cache
    dout = _dout(dout, c.x_hat.shape)
    m = dout.shape[0]

    if c.gamma is None:
        dgamma = dbeta = None
        dx_hat = dout
    else:
        dbeta = np.sum(dout, axis=0)  # shift: d(gamma_x + beta)/dbeta = 1, summed over the batch
        dgamma_x = dout  # shift: d/dgamma_x = 1
        dgamma = np.sum(dgamma_x * c.x_hat, axis=0)  # scale: d(gamma * x_hat)/dgamma = x_hat
        dx_hat = dgamma_x * c.gamma  # scale: d/dx_hat = gamma
    divar = np.sum(dx_hat * c.x_mu, axis=0)  # normalize: d(x_mu * ivar)/divar = x_mu
    dx_mu1 = dx_hat * c.ivar  # normalize: d/dx_mu = ivar  (first path into x_mu)
    dstd = -divar / c.std**2  # invert: d(1/std)/dstd = -1/std**2
    if c.eps_placement == "inside":
        dvar = dstd * 0.5 / c.sqrt_var  # sqrt: d sqrt(var + eps)/dvar = 1/(2 sqrt(var + eps))
    else:
        dsqrt_var = dstd  # add eps: d(sqrt_var + eps)/dsqrt_var = 1
        # sqrt: d sqrt(var)/dvar = 1/(2 sqrt(var)), infinite at var = 0; there dstd and the
        # square's x_mu are exactly 0 and the product's limit is 0, so take it.
        dvar = np.divide(0.5 * dsqrt_var, c.sqrt_var, out=np.zeros_like(dstd), where=c.sqrt_var > 0)
    dsq = c.k * np.ones_like(c.x_mu) * dvar  # variance: d(k * sum(sq))/dsq = k
    dx_mu2 = 2.0 * c.x_mu * dsq  # square: d(x_mu**2)/dx_mu = 2 x_mu  (second path)
    dx1 = dx_mu1 + dx_mu2  # centre: d(x - mu)/dx = 1
    dmu = -np.sum(dx1, axis=0)  # centre: d(x - mu)/dmu = -1
    dx2 = np.ones_like(dout) * dmu / m  # mean: d(sum(x)/m)/dx = 1/m
    dx = dx1 + dx2  # x feeds both the centre and the mean
    return dx, dgamma, dbeta
