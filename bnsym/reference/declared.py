"""The NumPy reference of any declared layer, fused and staged, built from its declaration.

A layer of :mod:`bnsym.family` is data: which values form a group (its ``grouping``), centred
or not, how γ and β are shared.  Every grouping reads ``x`` as groups ``(N, P, m)`` -- N
samples, P groups per sample, m values per group (:func:`groups`) -- and the parameters as
``(P*K,)``: P groups' K values each, γ_k shared by the ``s = m/K`` consecutive values of
block k of a group (one block for ``params="shared"``, m blocks of one for ``"element"``,
one block per channel for ``"channel"``).  So ``x`` viewed as ``(N, P, K, s)`` is a
:class:`~bnsym.reference._core.Layout` of the family's one core: reduced over the axes
(2, 3), γ and β broadcast as ``(1, P, K, 1)``.  :class:`DeclaredReference` is that layout,
in the CS231n contract of the hand-written layers:

- :meth:`~DeclaredReference.forward` / :meth:`~DeclaredReference.backward`: the closed form
  (fused); :meth:`~DeclaredReference.forward_staged` / :meth:`~DeclaredReference.backward_staged`:
  the graph one node at a time -- both the core's, with every variant (``variance``,
  ``eps_placement`` inside, outside or sqrt-outside with the limit at a constant group,
  ``affine``, a layer without β);
- :meth:`~DeclaredReference.forward_eval` / :meth:`~DeclaredReference.backward_eval` and
  their ``_staged`` twins, for a layer with running statistics (``"eval" in layer.modes``):
  one running mean and variance per group, held constant.

``bnsym check`` uses it for a layer with no hand-written reference.  ScaleNorm, one shared γ
over the values of a row, ``y = γ·x/√(mean(x²) + ε)``:

>>> from bnsym.family.layers import Layer
>>> scalenorm = DeclaredReference(Layer(name="scalenorm", centred=False, beta=False), m=2)
>>> out, cache = scalenorm.forward([[3.0, -3.0], [0.0, 4.0]], [2.0], None, eps=0.0)
>>> out
array([[ 2.        , -2.        ],
       [ 0.        ,  2.82842712]])
>>> dx, dgamma, dbeta = scalenorm.backward([[1.0, 0.0], [0.0, 0.0]], cache)
>>> dx[0], dgamma, dbeta   # 2·(1/3)·(1 - 1/2), 2·(1/3)·(1/2); ∂/∂γ = x̂₁ = 1; no β
(array([0.33333333, 0.33333333]), array([1.]), None)

NumPy and the standard-library declarations only: no SymPy, no symbolic core.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

import bnsym.reference._core as _core
from bnsym.family.layers import Layer
from bnsym.reference._common import (
    Array,
    EpsPlacement,
    NormError,
    Variance,
    _dout,
    _eps,
    _finite,
    _placement,
    _std,
)

__all__ = ["DeclaredReference", "groups", "ungroup"]

Grads = tuple[Array, Array | None, Array | None]


# ----------------------------------------------------------------------------------------------
# the group view of a grouping


def groups(layer: Layer, a: Any, m: int) -> Any:
    """``a`` of x's layout as groups ``(N, P, m)``, as the generated code reads it: ``a.T[None]``
    for a transposed layout (each column a group), else ``a.reshape(N, -1, m)``.  A view where
    the layout allows; NumPy arrays and torch tensors alike.

    An uncentred batch norm (as PowerNorm uses it), whose groups are the columns of x:

    >>> powernorm = Layer(name="powernorm", centred=False, grouping="columns")
    >>> groups(powernorm, np.arange(6.0).reshape(3, 2), 3)
    array([[[0., 2., 4.],
            [1., 3., 5.]]])
    """
    if layer.grouping_.transposed:
        return a.T[None]
    return a.reshape(a.shape[0], -1, m)


def ungroup(layer: Layer, g: Any, shape: tuple[int, ...]) -> Any:
    """Groups ``(N, P, m)`` back to x's layout of ``shape``: the inverse of :func:`groups`."""
    if layer.grouping_.transposed:
        return g[0].T
    return g.reshape(shape)


# ----------------------------------------------------------------------------------------------
# the reference


@dataclass(frozen=True)
class DeclaredCache:
    """What the backward passes need: the core's cache over the ``(N, P, K, s)`` view and x's
    shape; opaque to callers."""

    core: Any  # _core.Cache, _core.StagedCache or _EvalCache
    shape: tuple[int, ...]
    staged: bool


@dataclass(frozen=True)
class _EvalCache:
    layout: _core.Layout
    x_mu: Array  # x - running_mean, in the view
    ivar: Array  # 1 / std, a constant
    x_hat: Array
    gamma: Array | None  # as (1, P, K, 1)
    has_beta: bool


@dataclass(frozen=True)
class DeclaredReference:
    """The NumPy reference of ``layer`` for groups of ``m`` values (``channels`` of them per
    group for a layer with ``params="channel"``), in the layer's own layout.

    Every method takes and returns arrays in that layout: ``x`` and ``dout`` as the
    declaration's grouping lays them out (``layer.layout``), γ and β of shape ``(P*K,)``,
    running statistics of shape ``(P,)``, one per group of a sample.  ``beta`` is ``None``
    for a layer without β, and the backward passes then return ``dbeta = None``; with
    ``affine=False`` γ and β are ``None`` and so are ``dgamma`` and ``dbeta``.

    Raises:
        NormError: a bad argument, named; :class:`~bnsym.reference.GroupSizeError` for a
            centred group of one value in training.
    """

    layer: Layer
    m: int
    channels: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, Layer):
            raise NormError(f"layer must be a bnsym Layer, not {type(self.layer).__name__}")
        if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
            raise NormError(f"m must be a whole number >= 1; got {self.m!r}")
        K = self.layer.param_count(self.m, self.channels)
        if self.channels is not None and not self.layer.has_channels:
            raise NormError(f"{self.layer.name} has no channels within a group; pass channels=None")
        if isinstance(K, bool) or K < 1 or self.m % K:
            raise NormError(
                f"channels = {self.channels!r} must be a whole number >= 1 dividing m = {self.m}"
            )

    # --- training: the group's own statistics -----------------------------------------------

    def forward(
        self,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        eps: float = 1e-5,
        *,
        variance: Variance = "biased",
        eps_placement: EpsPlacement = "inside",
        affine: bool = True,
    ) -> tuple[Array, DeclaredCache]:
        """Normalize every group by its own statistics, in closed form.

        Args:
            x: array in the layer's layout; every group has m values.
            gamma, beta: arrays of shape (P*K,), or None (beta always None without β).
            eps, variance, eps_placement, affine: the variant, as in
                :func:`~bnsym.reference.batchnorm_forward` (an uncentred layer, which divides
                by the root mean square, has only ``variance="biased"``).

        Returns:
            ``(out, cache)``: ``out`` of x's shape; ``cache`` for :meth:`backward`.
        """
        return self._train(_core.forward, x, gamma, beta, eps, variance, eps_placement, affine)

    def backward(self, dout: ArrayLike, cache: DeclaredCache) -> Grads:
        """``(dx, dgamma, dbeta)`` of :meth:`forward` or :meth:`forward_eval`, in closed form:
        dx of x's shape, dgamma and dbeta of shape (P*K,) or None."""
        return self._backward(dout, cache, staged=False)

    def forward_staged(
        self,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        eps: float = 1e-5,
        *,
        variance: Variance = "biased",
        eps_placement: EpsPlacement = "inside",
        affine: bool = True,
    ) -> tuple[Array, DeclaredCache]:
        """:meth:`forward` as the computation graph, one node at a time; same contract."""
        return self._train(
            _core.forward_staged, x, gamma, beta, eps, variance, eps_placement, affine
        )

    def backward_staged(self, dout: ArrayLike, cache: DeclaredCache) -> Grads:
        """Backward of :meth:`forward_staged` (or :meth:`forward_eval_staged`), node by node."""
        return self._backward(dout, cache, staged=True)

    # --- eval: running statistics, constants ------------------------------------------------

    def forward_eval(
        self,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        running_mean: ArrayLike,
        running_var: ArrayLike,
        eps: float = 1e-5,
        *,
        eps_placement: EpsPlacement = "inside",
        affine: bool = True,
    ) -> tuple[Array, DeclaredCache]:
        """Normalize every group by its running statistics (shape (P,), held constant):
        ``out = γ·(x - running_mean)/std + β`` (``γ·x/std + β`` for a layer that is not
        centred), std from ``running_var`` and ε as placed.
        Only for a layer with an eval mode; ``cache`` for :meth:`backward`."""
        return self._eval(x, gamma, beta, running_mean, running_var, eps, eps_placement, affine)

    def backward_eval(self, dout: ArrayLike, cache: DeclaredCache) -> Grads:
        """Backward of :meth:`forward_eval`: ``dx = γ·dout/std``; as :meth:`backward`."""
        return self._backward(dout, cache, staged=False)

    def forward_eval_staged(
        self,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        running_mean: ArrayLike,
        running_var: ArrayLike,
        eps: float = 1e-5,
        *,
        eps_placement: EpsPlacement = "inside",
        affine: bool = True,
    ) -> tuple[Array, DeclaredCache]:
        """:meth:`forward_eval` one graph node per line (centre, invert, normalize, scale,
        shift); same contract."""
        return self._eval(
            x, gamma, beta, running_mean, running_var, eps, eps_placement, affine, staged=True
        )

    def backward_eval_staged(self, dout: ArrayLike, cache: DeclaredCache) -> Grads:
        """Backward of :meth:`forward_eval_staged`, node by node."""
        return self._backward(dout, cache, staged=True)

    # --- the layout and the passes ----------------------------------------------------------

    def _view(self, x: ArrayLike) -> tuple[Array, _core.Layout]:
        """Checked x as the core's ``(N, P, K, s)`` view, and that layout."""
        x = _finite("x", x)
        grouping, m, K = self.layer.grouping_, self.m, self._K
        N = x.shape[0] if grouping.samples and x.ndim else 1
        fits = x.size > 0 and x.size % (N * m) == 0
        if fits:
            want = grouping.shape(N, x.size // (N * m), m, K)
            lead = len(want) - 1
            # the last axis of a group may come as several (*spatial, as PyTorch's layouts)
            fits = (
                (x.ndim == len(want) or (x.ndim > len(want) and not grouping.transposed))
                and x.shape[:lead] == want[:lead]
                and prod(x.shape[lead:]) == want[-1]
            )
        if not fits:
            raise NormError(
                f"x must have shape {grouping.text} for {self.layer.name} with m = {m}"
                f"{f', {self.channels} channels per group' if self.channels else ''}; "
                f"got {x.shape}"
            )
        g = groups(self.layer, x, m)
        N, P, _ = g.shape
        view = (N, P, K, m // K)
        layout = _core.Layout(
            layer=self.layer.name,
            shape=view,
            view=view,
            axes=(2, 3),
            param=(P * K,),
            bcast=(1, P, K, 1),
            centred=self.layer.centred,
            size_hint="normalize groups of at least 2 values (m >= 2)"
            + (", or use the eval mode" if self.layer.has_eval else ""),
        )
        return np.ascontiguousarray(g).reshape(view), layout

    @property
    def _K(self) -> int:
        return self.layer.param_count(self.m, self.channels)

    def _beta(self, beta: ArrayLike | None) -> None:
        if beta is not None and not self.layer.beta:
            raise NormError(f"{self.layer.name} has no beta (no shift after γ); pass beta=None")

    def _train(
        self,
        core_forward: Any,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        eps: float,
        variance: str,
        eps_placement: str,
        affine: bool,
    ) -> tuple[Array, DeclaredCache]:
        self._beta(beta)
        if not self.layer.centred and variance != "biased":
            raise NormError(
                f"{self.layer.name} divides by its root mean square, which has no unbiased "
                f"variant; got variance={variance!r}"
            )
        xv, layout = self._view(x)
        out, cache = core_forward(
            layout, xv, gamma, beta, eps,
            variance=variance, eps_placement=eps_placement, affine=affine,
            has_beta=self.layer.beta,
        )  # fmt: skip
        shape = np.shape(x)
        staged = core_forward is _core.forward_staged
        return self._back(out, shape), DeclaredCache(cache, shape, staged)

    def _eval(
        self,
        x: ArrayLike,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        running_mean: ArrayLike,
        running_var: ArrayLike,
        eps: float,
        eps_placement: str,
        affine: bool,
        staged: bool = False,
    ) -> tuple[Array, DeclaredCache]:
        if not self.layer.has_eval:
            raise NormError(
                f"{self.layer.name} has no eval mode: it keeps no running statistics "
                "(declare modes=('train', 'eval'))"
            )
        self._beta(beta)
        xv, layout = self._view(x)
        P = layout.view[1]
        gamma, beta = _core._params(layout, gamma, beta, affine, self.layer.beta)
        mean = _stat(running_mean, "running_mean", P)
        var = _stat(running_var, "running_var", P)
        if np.any(var < 0):
            raise NormError(f"running_var must be >= 0; got {var.min()} in it")
        _placement(eps_placement)
        std = _std(var, _eps(eps), eps_placement)
        # a centred layer subtracts its running mean; one that is not centred divides by the
        # running mean square alone (the running mean is taken, and unused)
        centre = mean if self.layer.centred else 0.0
        if staged:
            x_mu = xv - centre  # centre, on a constant: no gradient flows into running_mean
            ivar = 1.0 / std  # invert a constant (the sqrt node is inside std)
            x_hat = x_mu * ivar  # normalize
            out = x_hat
            if gamma is not None:
                out = gamma * out  # scale
                if beta is not None:
                    out = out + beta  # shift
        else:
            x_mu = xv - centre
            ivar = 1.0 / std
            x_hat = x_mu / std
            out = _core._scale_shift(x_hat, gamma, beta)
        cache = _EvalCache(layout, x_mu, ivar, x_hat, gamma, beta is not None)
        return self._back(out, np.shape(x)), DeclaredCache(cache, np.shape(x), staged)

    def _backward(self, dout: ArrayLike, cache: DeclaredCache, staged: bool) -> Grads:
        if not isinstance(cache, DeclaredCache) or cache.staged != staged:
            want = "forward_staged or forward_eval_staged" if staged else "forward or forward_eval"
            raise NormError(
                f"the {'staged ' if staged else ''}backward pass needs the cache returned by "
                f"{want} of a DeclaredReference; got {type(cache).__name__}"
            )
        dout = _dout(dout, cache.shape)
        core = cache.core
        dv = np.ascontiguousarray(groups(self.layer, dout, self.m)).reshape(core.layout.shape)
        if isinstance(core, _EvalCache):
            dx, dgamma, dbeta = _eval_backward(dv, core, staged)
        elif staged:
            dx, dgamma, dbeta = _core.backward_staged(dv, core, self.layer.name)
        else:
            dx, dgamma, dbeta = _core.backward(dv, core, self.layer.name)
        return self._back(dx, cache.shape), dgamma, dbeta

    def _back(self, a: Array, shape: tuple[int, ...]) -> Array:
        """The ``(N, P, K, s)`` view back to x's layout of ``shape``."""
        N, P = a.shape[:2]
        return np.ascontiguousarray(ungroup(self.layer, a.reshape(N, P, self.m), shape))


def _stat(a: ArrayLike, name: str, P: int) -> Array:
    """A running statistic, one per group: (P,) checked, as (1, P, 1, 1)."""
    a = _finite(name, a)
    if a.shape != (P,):
        raise NormError(f"{name} must have shape (P,) = ({P},), one per group; got {a.shape}")
    return a.reshape(1, P, 1, 1)


def _eval_backward(dout: Array, c: _EvalCache, staged: bool) -> Grads:
    """dx = γ·dout/std (the statistics are constants), dgamma and dbeta summed over the
    samples and the values that share each γ."""
    lay = c.layout
    shared, param = (0, 3), lay.param  # the axes γ and β are shared over in the view
    if c.gamma is None:
        dgamma = dbeta = None
        dx_hat = dout
    elif staged:
        dbeta = np.sum(dout, axis=shared).reshape(param) if c.has_beta else None  # shift
        dgamma = np.sum(dout * c.x_hat, axis=shared).reshape(param)  # scale: d/dγ = x_hat
        dx_hat = dout * c.gamma  # scale: d/dx_hat = γ
    else:
        dgamma = np.sum(dout * c.x_hat, axis=shared).reshape(param)
        dbeta = np.sum(dout, axis=shared).reshape(param) if c.has_beta else None
        dx_hat = c.gamma * dout
    dx = dx_hat * c.ivar  # normalize: d(x_mu·ivar)/dx_mu = ivar; centre: d(x - mean)/dx = 1
    return dx, dgamma, dbeta
