"""What every hand-written normalization layer shares: the error types and the argument checks.

Each check names the argument, shows the bad value and says what to do; each returns a float64
copy (``np.array`` copies, so nothing the caller holds is aliased by a cache).  NumPy only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bnsym.errors import BnsymError

Array = NDArray[np.float64]
Variance = Literal["biased", "unbiased"]
EpsPlacement = Literal["inside", "outside", "sqrt-outside"]


class NormError(BnsymError, ValueError):
    """An argument of a normalization function or layer is invalid; the message names it."""


#: The batch-norm functions' name for :class:`NormError`, kept for the callers that use it.
BatchNormError = NormError


class GroupSizeError(NormError):
    """A group normalized in training has a single value, so its variance is zero."""


class BatchSizeError(GroupSizeError):
    """A training batch has a single row, so every feature's batch variance is zero."""


# ----------------------------------------------------------------------------------------------
# argument checks: each names the argument and shows the bad value


def _matrix(name: str, a: ArrayLike) -> Array:
    a = _finite(name, a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise NormError(f"{name} must be a 2-D array of shape (N, D), N, D >= 1; got {a.shape}")
    return a


def _vector(name: str, a: ArrayLike, D: int) -> Array:
    a = _finite(name, a)
    if a.shape != (D,):
        raise NormError(f"{name} must have shape (D,) = ({D},) to match x; got {a.shape}")
    return a


def _finite(name: str, a: ArrayLike) -> Array:
    try:
        if np.iscomplexobj(a):  # float64 conversion would drop the imaginary part silently
            raise TypeError(f"got complex dtype {np.asarray(a).dtype}")
        # np.array copies, so nothing the caller holds is aliased by a cache
        out = np.array(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise NormError(f"{name} must be an array of real numbers: {e}") from None
    bad = np.argwhere(~np.isfinite(out))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise NormError(
            f"{name} has {len(bad)} non-finite value(s), the first {out[where]} at index {where}"
        )
    return out


def _dout(dout: ArrayLike, shape: tuple[int, ...]) -> Array:
    dout = _finite("dout", dout)
    if dout.shape != shape:
        raise NormError(f"dout must have the shape of the forward output {shape}; got {dout.shape}")
    return dout


def _affine(
    gamma: ArrayLike | None, beta: ArrayLike | None, D: int, affine: bool
) -> tuple[Array | None, Array | None]:
    if not affine:
        if gamma is not None or beta is not None:
            # refusing beats silently ignoring parameters the caller believes are used
            raise NormError("affine=False takes gamma=None and beta=None")
        return None, None
    if gamma is None or beta is None:
        raise NormError(
            "affine=True needs gamma and beta of shape (D,); pass affine=False for none"
        )
    return _vector("gamma", gamma, D), _vector("beta", beta, D)


def _eps(eps: float) -> float:
    if (
        isinstance(eps, bool)
        or not isinstance(eps, (int, float, np.floating, np.integer))
        or not np.isfinite(eps)
        or eps < 0
    ):
        raise NormError(f"eps must be a finite number >= 0; got {eps!r}")
    return float(eps)


def _placement(eps_placement: str) -> None:
    if eps_placement not in ("inside", "outside", "sqrt-outside"):
        raise NormError(
            f"eps_placement must be 'inside', 'outside' or 'sqrt-outside'; got {eps_placement!r}"
        )


def _variance_factor(variance: str, shape: tuple[int, ...], hint: str) -> float:
    """The ``k`` in ``var = k * sum((x - mu)**2)``; refuses m = 1 (the variance is 0 or 0/0)."""
    if variance not in ("biased", "unbiased"):
        raise NormError(f"variance must be 'biased' or 'unbiased'; got {variance!r}")
    m = shape[0]
    if m < 2:
        raise BatchSizeError(_one_row(shape, hint))
    return 1.0 / m if variance == "biased" else 1.0 / (m - 1)


def _one_row(shape: tuple[int, ...], hint: str) -> str:
    # PyTorch's words, so that a search for the message finds both
    return (
        f"Expected more than 1 value per channel when training, got x of shape {shape}: "
        f"a batch of one row has zero variance; {hint}"
    )


def std_of(var: Array, eps: float, eps_placement: str) -> Array:
    """The denominator of x_hat: ``sqrt(var + eps)`` (inside), ``sqrt(var) + eps`` (outside)
    or ``sqrt(var) + sqrt(eps)`` (sqrt-outside, which is not ``sqrt(var + eps)``)."""
    if eps_placement == "inside":
        return np.sqrt(var + eps)
    return np.sqrt(var) + (np.sqrt(eps) if eps_placement == "sqrt-outside" else eps)


def _std(var: Array, eps: float, eps_placement: str) -> Array:
    """The denominator of x_hat (:func:`std_of`), refused if 0."""
    std = std_of(var, eps, eps_placement)
    _nonzero(std)
    return std


def _nonzero(std: Array) -> None:
    zero = np.flatnonzero(std == 0)
    if zero.size:
        raise NormError(
            f"the denominator of x_hat is 0 in feature(s) {zero.tolist()} (zero variance with "
            "eps=0), so x_hat would be 0/0; use eps > 0"
        )


def _expect(cache: object, kind: type, backward: str, forward: str) -> None:
    if not isinstance(cache, kind):
        raise NormError(
            f"{backward} needs the cache returned by {forward}; got {type(cache).__name__}"
        )
