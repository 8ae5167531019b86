"""Running statistics: eval-mode batch norm, the two frameworks' update rules, the layer.

Everything here concerns the running mean and variance; the normalization of a training
batch with its own statistics lives in :mod:`bnsym.reference.batchnorm`.  :mod:`bnsym.reference`
re-exports the public names of both.

- :func:`batchnorm_forward_eval` / :func:`batchnorm_backward_eval` and their ``_staged`` twins
  normalize with given statistics held constant;
- :func:`update_running` is what a framework does with a batch's statistics afterwards, where
  the two conventions in use differ:

  ========================  =================================  ==============================
                            PyTorch (``nn.BatchNorm1d``)       Keras (``BatchNormalization``)
  ========================  =================================  ==============================
  default ``eps``           1e-5                               1e-3
  default ``momentum``      0.1, weight of the *new* batch     0.99, weight of the *old* value
  update                    r = (1 - momentum) r + momentum b  r = momentum r + (1 - momentum) b
  variance stored           unbiased, var * m / (m - 1)        biased, as normalized with
  ``momentum=None``         cumulative average, 1 / n_batches  not supported
  ========================  =================================  ==============================

  Both start from ``running_mean = 0`` and ``running_var = 1``, and both normalize a training
  batch with its *biased* variance;
- :class:`BatchNorm` is the layer object that keeps them.

NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnsym.reference._common import (
    Array,
    BatchNormError,
    BatchSizeError,
    EpsPlacement,
    _affine,
    _dout,
    _eps,
    _expect,
    _matrix,
    _one_row,
    _placement,
    _std,
    _vector,
)
from bnsym.reference._core import Cache
from bnsym.reference.batchnorm import batchnorm_backward, batchnorm_forward

Convention = Literal["torch", "keras"]

#: convention -> (default eps, default momentum)
DEFAULTS: Final[dict[str, tuple[float, float]]] = {
    "torch": (1e-5, 0.1),
    "keras": (1e-3, 0.99),
}


def update_running(
    running_mean: NDArray[np.float64],
    running_var: NDArray[np.float64],
    mu: NDArray[np.float64],
    var: NDArray[np.float64],
    m: int,
    *,
    momentum: float | None,
    num_batches_tracked: int,
    convention: Convention,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the new ``(running_mean, running_var)`` after one training batch.

    ``mu`` and ``var`` are the batch mean and *biased* variance, shape (D,), of a batch of
    ``m`` rows; ``num_batches_tracked`` counts batches *including* this one (it is only read
    for ``momentum=None``).  New arrays are returned; the inputs are left alone.

    >>> r_mu, r_var = update_running(np.zeros(1), np.ones(1), np.array([2.0]), np.array([2.0]),
    ...                              4, momentum=0.1, num_batches_tracked=1, convention="torch")
    >>> float(r_mu[0]), round(float(r_var[0]), 12)   # 0.1*2, 0.9*1 + 0.1*(2*4/3)
    (0.2, 1.166666666667)
    """
    if convention == "torch":
        # PyTorch stores the unbiased estimate although it normalized with the biased one.
        batch_var = var * (m / (m - 1))
        # momentum=None: the cumulative average, weight 1/n for the n-th batch.
        weight = 1.0 / num_batches_tracked if momentum is None else momentum
        return (
            (1.0 - weight) * running_mean + weight * mu,
            (1.0 - weight) * running_var + weight * batch_var,
        )
    if momentum is None:
        # The layer refuses this at construction; the guard keeps direct callers honest.
        raise ValueError("momentum=None (a cumulative average) exists only in the torch convention")
    # Keras's momentum weighs the old value; the biased variance is stored as is.
    return (
        momentum * running_mean + (1.0 - momentum) * mu,
        momentum * running_var + (1.0 - momentum) * var,
    )


# ----------------------------------------------------------------------------------------------
# eval mode: running statistics are constants


@dataclass(frozen=True)
class EvalCache:
    """What the eval-mode backward passes need; opaque to callers."""

    x_hat: Array
    ivar: Array  # 1 / (denominator of x_hat), a constant in eval mode
    gamma: Array | None


def _eval_args(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    eps: float,
    eps_placement: str,
    affine: bool,
) -> tuple[Array, Array | None, Array | None, Array, Array]:
    """Checked float64 copies of the eval-mode arguments, and the denominator of x_hat."""
    x = _matrix("x", x)
    D = x.shape[1]
    gamma, beta = _affine(gamma, beta, D, affine)
    running_mean = _vector("running_mean", running_mean, D)
    running_var = _vector("running_var", running_var, D)
    if np.any(running_var < 0):
        raise BatchNormError(f"running_var must be >= 0; got {running_var.min()} in it")
    _placement(eps_placement)
    std = _std(running_var, _eps(eps), eps_placement)
    return x, gamma, beta, running_mean, std


def batchnorm_forward_eval(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    eps: float = 1e-5,
    *,
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, EvalCache]:
    """Eval-mode forward pass: normalize with given statistics, held constant.

    Args:
        x: array of shape (N, D), any N >= 1.
        gamma, beta: arrays of shape (D,), or ``None`` both with ``affine=False``.
        running_mean, running_var: arrays of shape (D,), ``running_var >= 0``.
        eps, eps_placement, affine: as in :func:`batchnorm_forward`.

    Returns:
        ``(out, cache)`` with ``out = gamma * (x - running_mean) / std + beta``, ``std`` being
        ``sqrt(running_var + eps)`` or ``sqrt(running_var) + eps``.

    >>> out, cache = batchnorm_forward_eval([[3.0]], [2.0], [1.0], [1.0], [4.0], eps=0.0)
    >>> out   # 2 * (3 - 1) / 2 + 1
    array([[3.]])
    """
    x, gamma, beta, running_mean, std = _eval_args(
        x, gamma, beta, running_mean, running_var, eps, eps_placement, affine
    )
    x_hat = (x - running_mean) / std
    out = x_hat if gamma is None or beta is None else gamma * x_hat + beta
    return out, EvalCache(x_hat, 1.0 / std, gamma)


def batchnorm_backward_eval(
    dout: ArrayLike, cache: EvalCache
) -> tuple[Array, Array | None, Array | None]:
    """Backward pass of :func:`batchnorm_forward_eval`: ``dx = gamma * dout / std``.

    ``dgamma = sum(dout * x_hat)`` and ``dbeta = sum(dout)`` as in training mode (``None``
    without affine).  Same shapes as :func:`batchnorm_backward`.

    >>> out, cache = batchnorm_forward_eval([[3.0]], [2.0], [1.0], [1.0], [4.0], eps=0.0)
    >>> batchnorm_backward_eval([[1.0]], cache)
    (array([[1.]]), array([1.]), array([1.]))
    """
    _expect(cache, EvalCache, "batchnorm_backward_eval", "batchnorm_forward_eval")
    dout = _dout(dout, cache.x_hat.shape)
    g = dout if cache.gamma is None else cache.gamma * dout
    dx = g * cache.ivar
    if cache.gamma is None:
        return dx, None, None
    return dx, np.sum(dout * cache.x_hat, axis=0), np.sum(dout, axis=0)


def batchnorm_forward_eval_staged(
    x: ArrayLike,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    eps: float = 1e-5,
    *,
    eps_placement: EpsPlacement = "inside",
    affine: bool = True,
) -> tuple[Array, EvalCache]:
    """:func:`batchnorm_forward_eval` one graph node per line; same contract.

    >>> out, cache = batchnorm_forward_eval_staged([[3.0]], [2.0], [1.0], [1.0], [4.0], eps=0.0)
    >>> out
    array([[3.]])
    """
    x, gamma, beta, running_mean, std = _eval_args(
        x, gamma, beta, running_mean, running_var, eps, eps_placement, affine
    )
    x_mu = x - running_mean  # centre, on a constant: no gradient flows into running_mean
    ivar = 1.0 / std  # invert a constant (the sqrt node is inside std)
    x_hat = x_mu * ivar  # normalize
    if gamma is None or beta is None:  # affine=False; both are None together
        return x_hat, EvalCache(x_hat, ivar, None)
    gamma_x = gamma * x_hat  # scale
    out = gamma_x + beta  # shift
    return out, EvalCache(x_hat, ivar, gamma)


def batchnorm_backward_eval_staged(
    dout: ArrayLike, cache: EvalCache
) -> tuple[Array, Array | None, Array | None]:
    """Backward pass of the eval-mode graph, node by node: centre, normalize, scale, shift.

    >>> out, cache = batchnorm_forward_eval_staged([[3.0]], [2.0], [1.0], [1.0], [4.0], eps=0.0)
    >>> batchnorm_backward_eval_staged([[1.0]], cache)
    (array([[1.]]), array([1.]), array([1.]))
    """
    _expect(cache, EvalCache, "batchnorm_backward_eval_staged", "batchnorm_forward_eval_staged")
    c = cache
    dout = _dout(dout, c.x_hat.shape)
    if c.gamma is None:
        dgamma = dbeta = None
        dx_hat = dout
    else:
        dbeta = np.sum(dout, axis=0)  # shift: d(gamma_x + beta)/dbeta = 1
        dgamma = np.sum(dout * c.x_hat, axis=0)  # scale: d(gamma * x_hat)/dgamma = x_hat
        dx_hat = dout * c.gamma  # scale: d/dx_hat = gamma
    dx_mu = dx_hat * c.ivar  # normalize: d(x_mu * ivar)/dx_mu = ivar; ivar is a constant
    dx = dx_mu  # centre: d(x - running_mean)/dx = 1; the mean is a constant
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------------------------
# the layer object


class BatchNorm:
    """A batch-norm layer over (N, D) inputs with running statistics, like ``nn.BatchNorm1d``.

    Args:
        num_features: D.
        eps: default 1e-5 (``convention="torch"``) or 1e-3 (``"keras"``).
        momentum: default 0.1 (torch: weight of the new batch; ``None`` for the cumulative
            average) or 0.99 (keras: weight of the old running value).
        affine: learnable ``gamma`` (ones) and ``beta`` (zeros) of shape (D,), else ``None``.
        convention: ``"torch"`` stores the unbiased batch variance in ``running_var``,
            ``"keras"`` the biased one; both normalize a training batch with the biased one.

    Attributes: ``gamma``, ``beta``, ``running_mean`` (zeros), ``running_var`` (ones),
    ``num_batches_tracked`` (training batches seen), ``training`` (True after construction).
    ``forward(x)`` returns ``out``; ``backward(dout)`` returns ``(dx, dgamma, dbeta)`` for the
    last forward call, in the mode it ran in.  A training batch of one row raises
    :class:`BatchSizeError`.

    >>> bn = BatchNorm(1)
    >>> out = bn.forward([[2.0], [0.0], [2.0], [4.0]])
    >>> bn.running_mean, bn.running_var   # 0.9*0 + 0.1*2, 0.9*1 + 0.1*(8/3)
    (array([0.2]), array([1.16666667]))
    >>> dx, dgamma, dbeta = bn.backward(np.ones((4, 1)))
    >>> bn.eval().forward([[0.2]])
    array([[0.]])
    """

    def __init__(
        self,
        num_features: int,
        eps: float | None = None,
        momentum: float | None | Literal["default"] = "default",
        affine: bool = True,
        convention: Convention = "torch",
    ) -> None:
        if convention not in DEFAULTS:
            raise BatchNormError(f"convention must be 'torch' or 'keras'; got {convention!r}")
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)):
            raise BatchNormError(f"num_features must be an integer >= 1; got {num_features!r}")
        if num_features < 1:
            raise BatchNormError(f"num_features must be an integer >= 1; got {num_features!r}")
        default_eps, default_momentum = DEFAULTS[convention]
        self.eps = _eps(default_eps if eps is None else eps)
        if momentum == "default":
            momentum = default_momentum
        if momentum is None and convention == "keras":
            raise BatchNormError(
                "momentum=None (a cumulative average) exists only for convention='torch'"
            )
        if momentum is not None and (
            isinstance(momentum, (bool, np.bool_))
            or not isinstance(momentum, (int, float, np.integer, np.floating))
            or not 0 <= momentum <= 1
        ):
            raise BatchNormError(f"momentum must be a number in [0, 1] or None; got {momentum!r}")
        self.num_features = int(num_features)
        self.momentum: float | None = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.convention: Convention = convention
        D = self.num_features
        self.gamma: Array | None = np.ones(D) if affine else None
        self.beta: Array | None = np.zeros(D) if affine else None
        self.running_mean: Array = np.zeros(D)
        self.running_var: Array = np.ones(D)
        self.num_batches_tracked = 0
        self.training = True
        self._cache: Cache | EvalCache | None = None

    def __repr__(self) -> str:
        return (
            f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, convention={self.convention!r})"
        )

    def train(self, mode: bool = True) -> BatchNorm:
        """Switch to training mode (``mode=False``: eval mode); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> BatchNorm:
        """Switch to eval mode: normalize with the running statistics; returns the layer."""
        return self.train(False)

    def forward(self, x: ArrayLike) -> Array:
        """Normalize ``x`` of shape (N, num_features); in training also update running stats."""
        x = _matrix("x", x)
        if x.shape[1] != self.num_features:
            raise BatchNormError(
                f"x must have {self.num_features} columns (num_features); got {x.shape}"
            )
        if not self.training:
            out, self._cache = batchnorm_forward_eval(
                x,
                self.gamma,
                self.beta,
                self.running_mean,
                self.running_var,
                self.eps,
                affine=self.affine,
            )
            return out
        if x.shape[0] < 2:
            raise BatchSizeError(_one_row(x.shape, "call .eval() to use the running statistics"))
        out, self._cache = batchnorm_forward(x, self.gamma, self.beta, self.eps, affine=self.affine)
        self.num_batches_tracked += 1
        self.running_mean, self.running_var = update_running(
            self.running_mean,
            self.running_var,
            x.mean(axis=0),
            x.var(axis=0),
            x.shape[0],
            momentum=self.momentum,
            num_batches_tracked=self.num_batches_tracked,
            convention=self.convention,
        )
        return out

    __call__ = forward

    def backward(self, dout: ArrayLike) -> tuple[Array, Array | None, Array | None]:
        """``(dx, dgamma, dbeta)`` of the last :meth:`forward`, as the functions return them."""
        if self._cache is None:
            raise BatchNormError(
                "backward() called before forward(): there is nothing to differentiate"
            )
        if isinstance(self._cache, EvalCache):
            return batchnorm_backward_eval(dout, self._cache)
        return batchnorm_backward(dout, self._cache)
