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

Batch norm is one layout over the family's core (:mod:`bnsym.reference._core`): a group is a
column, ``gamma`` and ``beta`` have one entry per column.  Eval mode and the layer object with
running statistics are in :mod:`bnsym.reference.running`; the other layers of the family in
:mod:`bnsym.reference.family`.

Variants, the same as the derivation's:

- ``variance="biased"`` (``var = sum((x - mu)**2) / m``, the default and what every framework
  normalizes with) or ``"unbiased"`` (``/ (m - 1)``); below, ``k`` is ``1/m`` or ``1/(m-1)``;
- ``eps_placement="inside"`` (``x_hat = (x - mu) / sqrt(var + eps)``, the default),
  ``"outside"`` (``x_hat = (x - mu) / (sqrt(var) + eps)``) or ``"sqrt-outside"``
  (``x_hat = (x - mu) / (sqrt(var) + sqrt(eps))``, a different layer from the default:
  ``sqrt(var + eps) != sqrt(var) + sqrt(eps)``);
- ``affine=True`` (``out = gamma * x_hat + beta``) or ``False`` (``out = x_hat``; ``gamma`` and
  ``beta`` must then be ``None`` and the backward pass returns ``(dx, None, None)``, so callers
  unpack three values either way).

Everything is computed in float64.  Inputs are never modified.  Bad arguments raise
:class:`BatchNormError` (a ``ValueError``) naming the argument; a training batch of one row
raises :class:`BatchSizeError`, as PyTorch does.  NumPy only.
"""

from __future__ import annotations

from numpy.typing import ArrayLike

import bnsym.reference._core as _core
from bnsym.reference._common import (
    Array,
    EpsPlacement,
    Variance,
    _matrix,
    _variance_factor,
)

__all__ = [
    "batchnorm_backward",
    "batchnorm_backward_staged",
    "batchnorm_forward",
    "batchnorm_forward_staged",
]

Grads = tuple[Array, Array | None, Array | None]


def _batchnorm(x: Array, variance: str, hint: str) -> _core.Layout:
    """The declaration: each column of (N, D) is a group, one gamma and beta per column."""
    # refused here rather than by the core, in PyTorch's words (BatchSizeError)
    _variance_factor(variance, x.shape, hint)
    D = x.shape[1]
    return _core.Layout(
        layer="batchnorm",
        shape=x.shape,
        view=x.shape,
        axes=(0,),
        param=(D,),
        bcast=(1, D),
        centred=True,
        size_hint=hint,
    )


# ----------------------------------------------------------------------------------------------
# fused: the closed form


def batchnorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.Cache]:
    """Training-mode forward pass: normalize each column of ``x`` with its batch statistics.

    Args:
        x: array of shape (N, D), N >= 2.
        gamma, beta: arrays of shape (D,), or ``None`` both with ``affine=False``.
        eps: added to the variance (``"inside"``), or it or its root to the standard deviation
            (``"outside"``, ``"sqrt-outside"``).
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
    layout = _batchnorm(x, variance, "use batchnorm_forward_eval with running statistics")
    return _core.forward(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def batchnorm_backward(dout: ArrayLike, cache: _core.Cache) -> Grads:
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
    >>> dx, dgamma, dbeta = batchnorm_backward([[1.0]] * 4, cache)
    >>> dx.ravel(), dgamma, dbeta   # a shift of out does not depend on x
    (array([0., 0., 0., 0.]), array([0.]), array([4.]))
    """
    return _core.backward(dout, cache, "batchnorm")


# ----------------------------------------------------------------------------------------------
# staged: the computation graph, one node at a time


def batchnorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.StagedCache]:
    """:func:`batchnorm_forward` as a computation graph, one node per line; same contract.

    >>> out, cache = batchnorm_forward_staged([[2.0], [0.0], [2.0], [4.0]], [1.0], [0.0], eps=0.0)
    >>> out.ravel() ** 2
    array([0., 2., 0., 2.])
    """
    x = _matrix("x", x)
    layout = _batchnorm(x, variance, "use batchnorm_forward_eval_staged with running statistics")
    return _core.forward_staged(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def batchnorm_backward_staged(dout: ArrayLike, cache: _core.StagedCache) -> Grads:
    """Backward pass of :func:`batchnorm_forward_staged`, node by node in reverse.

    Same contract as :func:`batchnorm_backward`; each line multiplies the incoming gradient
    by one node's local derivative, and a node that feeds two others sums their gradients.

    >>> out, cache = batchnorm_forward_staged([[2.0], [0.0], [2.0], [4.0]], [3.0], [0.0], eps=0.0)
    >>> dx, dgamma, dbeta = batchnorm_backward_staged([[1.0]] * 4, cache)
    >>> dx.ravel(), dgamma, dbeta
    (array([0., 0., 0., 0.]), array([0.]), array([4.]))
    """
    return _core.backward_staged(dout, cache, "batchnorm")
