"""Layer, instance, group and RMS normalization: each a :class:`~bnsym.reference._core.Layout`.

Each layer is a declaration -- which values form a group, whether the mean is subtracted, the
shape of ``gamma`` and ``beta`` -- over the one core in :mod:`bnsym.reference._core`, in the
CS231n contract and PyTorch's layouts:

==============  ===================  ==================================  ====================
layer           ``x``                a group (normalized together)       ``gamma``, ``beta``
==============  ===================  ==================================  ====================
layer norm      (N, *normalized)     one sample: all of ``x[n]``         ``x.shape[1:]``
instance norm   (N, C, *spatial)     one channel of one sample           (C,)
group norm      (N, C, *spatial)     C/G channels of one sample          (C,)
RMS norm        (N, *normalized)     one sample, not centred             ``x.shape[1:]``, no β
==============  ===================  ==================================  ====================

Each has ``_forward`` / ``_backward`` (fused) and ``_forward_staged`` / ``_backward_staged``
(the graph node by node).  The centred layers take ``variance``, ``eps_placement`` and
``affine`` as :func:`~bnsym.reference.batchnorm_forward` does, ``k`` being ``1/m`` or
``1/(m-1)`` with ``m`` the size of a group; RMS norm, ``out = gamma * x / sqrt(mean(x**2) +
eps)``, takes ``eps_placement`` and ``affine`` only.  A centred group of one value raises
:class:`~bnsym.reference.GroupSizeError`.  To add a layer: write its layout function here and
its thin forward and backward functions.  NumPy only.
"""

from __future__ import annotations

from numpy.typing import ArrayLike

import bnsym.reference._core as _core
from bnsym.reference._common import Array, EpsPlacement, NormError, Variance, _finite

__all__ = [
    "groupnorm_backward",
    "groupnorm_backward_staged",
    "groupnorm_forward",
    "groupnorm_forward_staged",
    "instancenorm_backward",
    "instancenorm_backward_staged",
    "instancenorm_forward",
    "instancenorm_forward_staged",
    "layernorm_backward",
    "layernorm_backward_staged",
    "layernorm_forward",
    "layernorm_forward_staged",
    "rmsnorm_backward",
    "rmsnorm_backward_staged",
    "rmsnorm_forward",
    "rmsnorm_forward_staged",
]

Grads = tuple[Array, Array | None, Array | None]


def _x(x_shape: tuple[int, ...], min_ndim: int, layout: str) -> tuple[int, ...]:
    """``x.shape``, checked: at least ``min_ndim`` axes, none of them empty."""
    if len(x_shape) < min_ndim or 0 in x_shape:
        raise NormError(f"x must be an array of shape {layout}, every size >= 1; got {x_shape}")
    return x_shape


# ----------------------------------------------------------------------------------------------
# the declarations


def _layernorm(x: Array, layer: str = "layernorm", centred: bool = True) -> _core.Layout:
    x_shape = _x(x.shape, 2, "(N, *normalized_shape)")
    return _core.Layout(
        layer=layer,
        shape=x_shape,
        view=x_shape,
        axes=tuple(range(1, len(x_shape))),
        param=x_shape[1:],
        bcast=(1, *x_shape[1:]),
        centred=centred,
        size_hint="give each sample more than one value (x.shape[1:]), or use batch norm",
    )


def _instancenorm(x: Array) -> _core.Layout:
    x_shape = _x(x.shape, 3, "(N, C, *spatial) with at least one spatial axis")
    C = x_shape[1]
    return _core.Layout(
        layer="instancenorm",
        shape=x_shape,
        view=x_shape,
        axes=tuple(range(2, len(x_shape))),
        param=(C,),
        bcast=(1, C) + (1,) * (len(x_shape) - 2),
        centred=True,
        size_hint="give x more than one spatial position (x.shape[2:])",
    )


def _groupnorm(x: Array, G: int) -> _core.Layout:
    x_shape = _x(x.shape, 2, "(N, C, *spatial)")
    N, C, *spatial = x_shape
    if isinstance(G, bool) or not isinstance(G, int) or G < 1 or C % G:
        raise NormError(
            f"G (the number of groups) must be an integer >= 1 dividing C = {C}; got {G!r}"
        )
    return _core.Layout(
        layer="groupnorm",
        shape=x_shape,
        # channels in order: group g holds channels g*C/G ... (g+1)*C/G - 1, as F.group_norm
        view=(N, G, C // G, *spatial),
        axes=tuple(range(2, len(x_shape) + 1)),
        param=(C,),
        bcast=(1, C) + (1,) * len(spatial),
        centred=True,
        size_hint="use fewer groups G or give x more spatial positions",
    )


# ----------------------------------------------------------------------------------------------
# layer norm


def layernorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.Cache]:
    """Layer norm, as ``F.layer_norm(x, x.shape[1:])``: normalize each sample over its values.

    Args:
        x: array of shape (N, D), or (N, *normalized_shape); every axis but the first is
            normalized over.  More than one value per sample.
        gamma, beta: arrays of shape ``x.shape[1:]``, or ``None`` both with ``affine=False``.
        eps, variance, eps_placement, affine: as in :func:`~bnsym.reference.batchnorm_forward`.

    Returns:
        ``(out, cache)``, ``out`` of the shape of ``x``; ``cache`` for
        :func:`layernorm_backward`.

    One sample: mean 2, variance 2, ``x_hat = (x - 2)/sqrt 2``.

    >>> out, cache = layernorm_forward([[2.0, 0.0, 2.0, 4.0]], [1.0] * 4, [0.0] * 4, eps=0.0)
    >>> out ** 2
    array([[0., 2., 0., 2.]])
    """
    x = _finite("x", x)
    layout = _layernorm(x)
    return _core.forward(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def layernorm_backward(dout: ArrayLike, cache: _core.Cache) -> Grads:
    """Backward pass of :func:`layernorm_forward`, in closed form.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes ``x.shape``, ``x.shape[1:]``, ``x.shape[1:]``;
        ``dgamma``, ``dbeta`` are ``None`` when ``affine=False``.

    A shift of ``out`` does not depend on ``x``: ``dx`` is 0 and ``dbeta`` counts the samples.

    >>> out, cache = layernorm_forward([[2.0, 0.0, 2.0, 4.0]], [3.0] * 4, [0.0] * 4, eps=0.0)
    >>> dx, dgamma, dbeta = layernorm_backward([[1.0] * 4], cache)
    >>> dx, dbeta
    (array([[0., 0., 0., 0.]]), array([1., 1., 1., 1.]))
    """
    return _core.backward(dout, cache, "layernorm")


def layernorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.StagedCache]:
    """:func:`layernorm_forward` as a computation graph, one node per line; same contract.

    >>> out, cache = layernorm_forward_staged([[2.0, 0.0, 2.0, 4.0]], [1.0] * 4, [0.0] * 4, 0.0)
    >>> out ** 2
    array([[0., 2., 0., 2.]])
    """
    x = _finite("x", x)
    layout = _layernorm(x)
    return _core.forward_staged(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def layernorm_backward_staged(dout: ArrayLike, cache: _core.StagedCache) -> Grads:
    """Backward of :func:`layernorm_forward_staged`, node by node; as :func:`layernorm_backward`.

    >>> out, cache = layernorm_forward_staged([[2.0, 0.0, 2.0, 4.0]], [3.0] * 4, [0.0] * 4, 0.0)
    >>> dx, dgamma, dbeta = layernorm_backward_staged([[1.0] * 4], cache)
    >>> dx, dbeta
    (array([[0., 0., 0., 0.]]), array([1., 1., 1., 1.]))
    """
    return _core.backward_staged(dout, cache, "layernorm")


# ----------------------------------------------------------------------------------------------
# instance norm


def instancenorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.Cache]:
    """Instance norm, as ``F.instance_norm``: normalize each channel of each sample over space.

    Args:
        x: array of shape (N, C, *spatial), at least one spatial axis, more than one spatial
            position.
        gamma, beta: arrays of shape (C,), or ``None`` both with ``affine=False``.
        eps, variance, eps_placement, affine: as in :func:`~bnsym.reference.batchnorm_forward`.

    Returns:
        ``(out, cache)``, ``out`` of the shape of ``x``; ``cache`` for
        :func:`instancenorm_backward`.

    One sample, one channel, four positions: mean 2, variance 2.

    >>> out, cache = instancenorm_forward([[[2.0, 0.0, 2.0, 4.0]]], [1.0], [0.0], eps=0.0)
    >>> out ** 2
    array([[[0., 2., 0., 2.]]])
    """
    x = _finite("x", x)
    layout = _instancenorm(x)
    return _core.forward(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def instancenorm_backward(dout: ArrayLike, cache: _core.Cache) -> Grads:
    """Backward pass of :func:`instancenorm_forward`, in closed form.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes ``x.shape``, (C,), (C,); ``dgamma``, ``dbeta`` are
        ``None`` when ``affine=False``.

    >>> out, cache = instancenorm_forward([[[2.0, 0.0, 2.0, 4.0]]], [3.0], [0.0], eps=0.0)
    >>> dx, dgamma, dbeta = instancenorm_backward([[[1.0] * 4]], cache)
    >>> dx, dbeta   # a shift of out does not depend on x; dbeta sums dout
    (array([[[0., 0., 0., 0.]]]), array([4.]))
    """
    return _core.backward(dout, cache, "instancenorm")


def instancenorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.StagedCache]:
    """:func:`instancenorm_forward` as a computation graph, one node per line; same contract.

    >>> out, cache = instancenorm_forward_staged([[[2.0, 0.0, 2.0, 4.0]]], [1.0], [0.0], eps=0.0)
    >>> out ** 2
    array([[[0., 2., 0., 2.]]])
    """
    x = _finite("x", x)
    layout = _instancenorm(x)
    return _core.forward_staged(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def instancenorm_backward_staged(dout: ArrayLike, cache: _core.StagedCache) -> Grads:
    """Backward pass of :func:`instancenorm_forward_staged`, node by node.

    >>> out, cache = instancenorm_forward_staged([[[2.0, 0.0, 2.0, 4.0]]], [3.0], [0.0], eps=0.0)
    >>> dx, dgamma, dbeta = instancenorm_backward_staged([[[1.0] * 4]], cache)
    >>> dx, dbeta
    (array([[[0., 0., 0., 0.]]]), array([4.]))
    """
    return _core.backward_staged(dout, cache, "instancenorm")


# ----------------------------------------------------------------------------------------------
# group norm


def groupnorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    G: int,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.Cache]:
    """Group norm, as ``F.group_norm(x, G)``: normalize each group of C/G channels of a sample.

    Args:
        x: array of shape (N, C, *spatial); group ``g`` is channels ``g*C/G`` to
            ``(g+1)*C/G - 1`` (in order) at every spatial position, more than one value.
        gamma, beta: arrays of shape (C,), one per channel, or ``None`` both with
            ``affine=False``.
        G: the number of groups, an integer >= 1 dividing C.
        eps, variance, eps_placement, affine: as in :func:`~bnsym.reference.batchnorm_forward`.

    Returns:
        ``(out, cache)``, ``out`` of the shape of ``x``; ``cache`` for
        :func:`groupnorm_backward`.

    Two channels of two positions: with ``G=2`` each channel is normalized alone (``[2, 0]``
    has mean 1 and variance 1), with ``G=1`` the four values together (mean 2, variance 2).

    >>> x = [[[2.0, 0.0], [2.0, 4.0]]]
    >>> groupnorm_forward(x, [1.0, 1.0], [0.0, 0.0], G=2, eps=0.0)[0]
    array([[[ 1., -1.],
            [-1.,  1.]]])
    >>> groupnorm_forward(x, [1.0, 1.0], [0.0, 0.0], G=1, eps=0.0)[0] ** 2
    array([[[0., 2.],
            [0., 2.]]])
    """
    x = _finite("x", x)
    layout = _groupnorm(x, G)
    return _core.forward(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def groupnorm_backward(dout: ArrayLike, cache: _core.Cache) -> Grads:
    """Backward pass of :func:`groupnorm_forward`, in closed form.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes ``x.shape``, (C,), (C,); ``dgamma``, ``dbeta`` are
        ``None`` when ``affine=False``.

    >>> out, cache = groupnorm_forward([[[2.0, 0.0], [2.0, 4.0]]], [3.0, 3.0], [0.0, 0.0], G=2)
    >>> dx, dgamma, dbeta = groupnorm_backward([[[1.0, 1.0], [1.0, 1.0]]], cache)
    >>> dx, dgamma, dbeta   # x_hat is about [[1, -1], [-1, 1]]
    (array([[[0., 0.],
             [0., 0.]]]), array([0., 0.]), array([2., 2.]))
    """
    return _core.backward(dout, cache, "groupnorm")


def groupnorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    G: int,
    eps: float = 1e-5,
    *,
    variance: Variance = "biased",
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.StagedCache]:
    """:func:`groupnorm_forward` as a computation graph, one node per line; same contract.

    >>> x = [[[2.0, 0.0], [2.0, 4.0]]]
    >>> groupnorm_forward_staged(x, [1.0, 1.0], [0.0, 0.0], G=2, eps=0.0)[0]
    array([[[ 1., -1.],
            [-1.,  1.]]])
    """
    x = _finite("x", x)
    layout = _groupnorm(x, G)
    return _core.forward_staged(
        layout, x, gamma, beta, eps,
        variance=variance, eps_placement=eps_placement, affine=affine,
    )  # fmt: skip


def groupnorm_backward_staged(dout: ArrayLike, cache: _core.StagedCache) -> Grads:
    """Backward pass of :func:`groupnorm_forward_staged`, node by node.

    >>> x = [[[2.0, 0.0], [2.0, 4.0]]]
    >>> out, cache = groupnorm_forward_staged(x, [3.0, 3.0], [0.0, 0.0], G=2)
    >>> dx, dgamma, dbeta = groupnorm_backward_staged([[[1.0, 1.0], [1.0, 1.0]]], cache)
    >>> dx, dgamma, dbeta
    (array([[[0., 0.],
             [0., 0.]]]), array([0., 0.]), array([2., 2.]))
    """
    return _core.backward_staged(dout, cache, "groupnorm")


# ----------------------------------------------------------------------------------------------
# RMS norm


def rmsnorm_forward(
    x: ArrayLike,
    gamma: ArrayLike | None,
    eps: float = 1e-5,
    *,
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.Cache]:
    """RMS norm, as ``F.rms_norm(x, x.shape[1:])``: ``gamma * x / sqrt(mean(x**2) + eps)``.

    No centring and no ``beta``; the mean square of one value is defined, so any size works.

    Args:
        x: array of shape (N, D), or (N, *normalized_shape); every axis but the first is
            normalized over.
        gamma: array of shape ``x.shape[1:]``, or ``None`` with ``affine=False``.
        eps: added to the mean square (``"inside"``) or to its square root (``"outside"``).
        eps_placement, affine: as in :func:`~bnsym.reference.batchnorm_forward`.

    Returns:
        ``(out, cache)``, ``out`` of the shape of ``x``; ``cache`` for :func:`rmsnorm_backward`.

    ``[2, -2]`` has mean square 4, root 2: ``x_hat = [1, -1]``, scaled by ``gamma = [3, 1]``.

    >>> out, cache = rmsnorm_forward([[2.0, -2.0]], [3.0, 1.0], eps=0.0)
    >>> out
    array([[ 3., -1.]])
    """
    x = _finite("x", x)
    layout = _layernorm(x, "rmsnorm", centred=False)
    return _core.forward(
        layout, x, gamma, None, eps,
        eps_placement=eps_placement, affine=affine, has_beta=False,
    )  # fmt: skip


def rmsnorm_backward(dout: ArrayLike, cache: _core.Cache) -> tuple[Array, Array | None]:
    """Backward pass of :func:`rmsnorm_forward`, in closed form.

    With ``g = gamma * dout`` and ``rms`` the denominator of ``x_hat``:
    ``dx = (g - c * x_hat * sum(g * x_hat)) / rms``, ``c = 1/m`` (eps inside), and
    ``dgamma = sum(dout * x_hat)`` over the batch.

    Returns:
        ``(dx, dgamma)`` of shapes ``x.shape`` and ``x.shape[1:]``; ``dgamma`` is ``None``
        when ``affine=False``.

    For ``x = [2, -2]``: ``dx_1 = 1/2 - (x_1 + x_2) x_1 / (m rms**3) = 1/2``, and so ``dx_2``.

    >>> out, cache = rmsnorm_forward([[2.0, -2.0]], [1.0, 1.0], eps=0.0)
    >>> rmsnorm_backward([[1.0, 1.0]], cache)
    (array([[0.5, 0.5]]), array([ 1., -1.]))
    """
    dx, dgamma, _ = _core.backward(dout, cache, "rmsnorm")
    return dx, dgamma


def rmsnorm_forward_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    eps: float = 1e-5,
    *,
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, _core.StagedCache]:
    """:func:`rmsnorm_forward` as a computation graph, one node per line; same contract.

    >>> rmsnorm_forward_staged([[2.0, -2.0]], [3.0, 1.0], eps=0.0)[0]
    array([[ 3., -1.]])
    """
    x = _finite("x", x)
    layout = _layernorm(x, "rmsnorm", centred=False)
    return _core.forward_staged(
        layout, x, gamma, None, eps,
        eps_placement=eps_placement, affine=affine, has_beta=False,
    )  # fmt: skip


def rmsnorm_backward_staged(
    dout: ArrayLike, cache: _core.StagedCache
) -> tuple[Array, Array | None]:
    """Backward pass of :func:`rmsnorm_forward_staged`, node by node; as :func:`rmsnorm_backward`.

    >>> out, cache = rmsnorm_forward_staged([[2.0, -2.0]], [1.0, 1.0], eps=0.0)
    >>> rmsnorm_backward_staged([[1.0, 1.0]], cache)
    (array([[0.5, 0.5]]), array([ 1., -1.]))
    """
    dx, dgamma, _ = _core.backward_staged(dout, cache, "rmsnorm")
    return dx, dgamma
