"""Spatial batch norm and spatial group norm in the CS231n assignment's contract.

Both take ``x`` of shape (N, C, H, W) and a parameter dict, as the assignment spells them:

- :func:`spatial_batchnorm_forward` ``(x, gamma, beta, bn_param)``, ``gamma`` and ``beta`` of
  shape (C,): each channel normalized over (N, H, W), i.e. batch norm of
  ``x.transpose(0, 2, 3, 1).reshape(-1, C)``; ``bn_param["mode"]`` is ``"train"`` or
  ``"test"``, and training replaces ``bn_param["running_mean"]`` and
  ``bn_param["running_var"]`` by ``momentum * running + (1 - momentum) * batch`` (the biased
  batch variance; momentum 0.9 and zeros by default, as the assignment);
- :func:`spatial_groupnorm_forward` ``(x, gamma, beta, G, gn_param)``, ``gamma`` and ``beta``
  of shape (1, C, 1, 1) and ``dgamma``, ``dbeta`` returned in that shape: group norm.

Both layers are layouts over :mod:`bnsym.reference._core`; eval mode is
:func:`~bnsym.reference.batchnorm_forward_eval` on the channels-last matrix.  The dicts may
also hold ``variance`` and ``eps_placement`` (see :func:`~bnsym.reference.batchnorm_forward`).
NumPy only.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

import bnsym.reference._core as _core
from bnsym.reference._common import Array, NormError, _eps, _finite, _vector
from bnsym.reference.family import _groupnorm
from bnsym.reference.running import (
    EvalCache,
    batchnorm_backward_eval,
    batchnorm_forward_eval,
    update_running,
)

__all__ = [
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
]

Grads = tuple[Array, Array | None, Array | None]

_BN_KEYS = {"mode", "eps", "momentum", "running_mean", "running_var", "variance", "eps_placement"}
_GN_KEYS = {"eps", "variance", "eps_placement"}


def _param_dict(name: str, param: Any, keys: set[str]) -> MutableMapping[str, Any]:
    if not isinstance(param, MutableMapping):
        raise NormError(f"{name} must be a dict; got {type(param).__name__}")
    unknown = sorted(set(param) - keys)
    if unknown:
        # a misspelt key (say 'epsilon') would otherwise be silently replaced by its default
        raise NormError(f"{name} has unknown key(s) {unknown}; it takes {sorted(keys)}")
    return param


def _nchw(x: ArrayLike) -> Array:
    x = _finite("x", x)
    if x.ndim != 4 or 0 in x.shape:
        raise NormError(f"x must be an array of shape (N, C, H, W), every size >= 1; got {x.shape}")
    return x


def _channels_last(a: Array) -> Array:
    """(N, C, H, W) -> (N*H*W, C): one row per position, as batch norm over (N, D) takes it."""
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _channels_first(a: Array, shape: tuple[int, ...]) -> Array:
    N, C, H, W = shape
    return a.reshape(N, H, W, C).transpose(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------
# spatial batch norm


@dataclass(frozen=True)
class SpatialEvalCache:
    """What :func:`spatial_batchnorm_backward` needs in test mode; opaque to callers."""

    cache: EvalCache  # of the channels-last matrix
    shape: tuple[int, ...]


def _batchnorm_layout(x: Array) -> _core.Layout:
    C = x.shape[1]
    return _core.Layout(
        layer="spatial_batchnorm",
        shape=x.shape,
        view=x.shape,
        axes=(0, 2, 3),
        param=(C,),
        bcast=(1, C, 1, 1),
        centred=True,
        size_hint="give x more than one value per channel (N*H*W > 1), or use mode 'test'",
    )


def spatial_batchnorm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, bn_param: MutableMapping[str, Any]
) -> tuple[Array, _core.Cache | SpatialEvalCache]:
    """Batch norm of each channel over (N, H, W), as ``F.batch_norm`` on a 4-D input.

    Args:
        x: array of shape (N, C, H, W); in training N*H*W >= 2.
        gamma, beta: arrays of shape (C,).
        bn_param: dict with ``mode`` (``"train"`` or ``"test"``, required), ``eps`` (1e-5),
            ``momentum`` (0.9), ``running_mean`` and ``running_var`` (shape (C,), zeros), and
            optionally ``variance`` and ``eps_placement``.  Training stores new arrays under
            ``running_mean`` and ``running_var``, ``momentum * old + (1 - momentum) * batch``
            with the batch's biased variance; the arrays passed in are not modified.

    Returns:
        ``(out, cache)``, ``out`` of shape (N, C, H, W); ``cache`` for
        :func:`spatial_batchnorm_backward`.

    One channel of values 2, 0, 2, 4: mean 2, variance 2; the running mean becomes
    0.9 * 0 + 0.1 * 2.

    >>> bn_param = {"mode": "train", "eps": 0.0}
    >>> out, cache = spatial_batchnorm_forward([[[[2.0, 0.0]]], [[[2.0, 4.0]]]], [1.0], [0.0],
    ...                                        bn_param)
    >>> out.ravel() ** 2, bn_param["running_mean"], bn_param["running_var"]
    (array([0., 2., 0., 2.]), array([0.2]), array([0.2]))
    """
    x = _nchw(x)
    C = x.shape[1]
    bn_param = _param_dict("bn_param", bn_param, _BN_KEYS)
    mode = bn_param.get("mode")
    if mode not in ("train", "test"):
        raise NormError(f"bn_param['mode'] must be 'train' or 'test'; got {mode!r}")
    eps = _eps(bn_param.get("eps", 1e-5))
    momentum = bn_param.get("momentum", 0.9)
    if (
        isinstance(momentum, (bool, np.bool_))
        or not isinstance(momentum, (int, float, np.integer, np.floating))
        or not 0 <= momentum <= 1
    ):
        raise NormError(f"bn_param['momentum'] must be a number in [0, 1]; got {momentum!r}")
    running_mean = _vector("bn_param['running_mean']", bn_param.get("running_mean", np.zeros(C)), C)
    running_var = _vector("bn_param['running_var']", bn_param.get("running_var", np.zeros(C)), C)
    eps_placement = bn_param.get("eps_placement", "inside")

    if mode == "test":
        out, eval_cache = batchnorm_forward_eval(
            _channels_last(x), gamma, beta, running_mean, running_var, eps,
            eps_placement=eps_placement,
        )  # fmt: skip
        return _channels_first(out, x.shape), SpatialEvalCache(eval_cache, x.shape)

    out, cache = _core.forward(
        _batchnorm_layout(x), x, gamma, beta, eps,
        variance=bn_param.get("variance", "biased"), eps_placement=eps_placement,
    )  # fmt: skip
    # the assignment's convention is Keras's: momentum weighs the old value, biased variance
    bn_param["running_mean"], bn_param["running_var"] = update_running(
        running_mean,
        running_var,
        x.mean(axis=(0, 2, 3)),
        x.var(axis=(0, 2, 3)),
        x.size // C,
        momentum=float(momentum),
        num_batches_tracked=1,
        convention="keras",
    )
    return out, cache


def spatial_batchnorm_backward(dout: ArrayLike, cache: _core.Cache | SpatialEvalCache) -> Grads:
    """Backward pass of :func:`spatial_batchnorm_forward`, in the mode it ran in.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes (N, C, H, W), (C,), (C,).

    >>> out, cache = spatial_batchnorm_forward([[[[2.0, 0.0]]], [[[2.0, 4.0]]]], [3.0], [0.0],
    ...                                        {"mode": "train"})
    >>> dx, dgamma, dbeta = spatial_batchnorm_backward([[[[1.0, 1.0]]], [[[1.0, 1.0]]]], cache)
    >>> dx.ravel(), dbeta   # a shift of out does not depend on x
    (array([0., 0., 0., 0.]), array([4.]))
    """
    if isinstance(cache, SpatialEvalCache):
        dout = _finite("dout", dout)
        if dout.shape != cache.shape:
            raise NormError(
                f"dout must have the shape of the forward output {cache.shape}; got {dout.shape}"
            )
        dx, dgamma, dbeta = batchnorm_backward_eval(_channels_last(dout), cache.cache)
        return _channels_first(dx, cache.shape), dgamma, dbeta
    return _core.backward(dout, cache, "spatial_batchnorm")


# ----------------------------------------------------------------------------------------------
# spatial group norm


def spatial_groupnorm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, G: int, gn_param: MutableMapping[str, Any]
) -> tuple[Array, _core.Cache]:
    """Group norm of (N, C, H, W) with the assignment's parameter shape (1, C, 1, 1).

    Args:
        x: array of shape (N, C, H, W); each sample's C/G consecutive channels form a group.
        gamma, beta: arrays of shape (1, C, 1, 1).
        G: the number of groups, an integer >= 1 dividing C.
        gn_param: dict with ``eps`` (1e-5) and optionally ``variance`` and ``eps_placement``.

    Returns:
        ``(out, cache)``, ``out`` of shape (N, C, H, W); ``cache`` for
        :func:`spatial_groupnorm_backward`.

    Two channels, each its own group: ``[2, 0]`` has mean 1 and variance 1.

    >>> gamma, beta = np.ones((1, 2, 1, 1)), np.zeros((1, 2, 1, 1))
    >>> x = [[[[2.0, 0.0]], [[2.0, 4.0]]]]
    >>> spatial_groupnorm_forward(x, gamma, beta, 2, {"eps": 0.0})[0].ravel()
    array([ 1., -1., -1.,  1.])
    """
    x = _nchw(x)
    gn_param = _param_dict("gn_param", gn_param, _GN_KEYS)
    # group norm's groups, with gamma and beta in their broadcast shape (1, C, 1, 1)
    layout = _groupnorm(x, G)
    layout = replace(layout, layer="spatial_groupnorm", param=layout.bcast)
    return _core.forward(
        layout, x, gamma, beta, gn_param.get("eps", 1e-5),
        variance=gn_param.get("variance", "biased"),
        eps_placement=gn_param.get("eps_placement", "inside"),
    )  # fmt: skip


def spatial_groupnorm_backward(dout: ArrayLike, cache: _core.Cache) -> Grads:
    """Backward pass of :func:`spatial_groupnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes (N, C, H, W), (1, C, 1, 1), (1, C, 1, 1).

    >>> gamma, beta = np.full((1, 2, 1, 1), 3.0), np.zeros((1, 2, 1, 1))
    >>> out, cache = spatial_groupnorm_forward([[[[2.0, 0.0]], [[2.0, 4.0]]]], gamma, beta, 2, {})
    >>> dx, dgamma, dbeta = spatial_groupnorm_backward(np.ones((1, 2, 1, 2)), cache)
    >>> dx.ravel(), dbeta.shape, dbeta.ravel()   # a shift does not depend on x
    (array([0., 0., 0., 0.]), (1, 2, 1, 1), array([2., 2.]))
    """
    return _core.backward(dout, cache, "spatial_groupnorm")
