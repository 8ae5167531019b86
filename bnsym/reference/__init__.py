"""The normalization family by hand in NumPy: the references the derivations are checked against.

Every layer in the CS231n layer contract, ``forward(x, ...) -> (out, cache)`` and
``backward(dout, cache) -> (dx, dgamma, dbeta)``, fused (the closed form) and staged (the graph
one node at a time).  One module per idea; this package only re-exports their public names:

- :mod:`~bnsym.reference._common`: the error types and the argument checks all layers share;
- :mod:`~bnsym.reference.batchnorm`: batch norm over (N, D), fused and staged;
- :mod:`~bnsym.reference.running`: eval mode, the running-statistics updates, :class:`BatchNorm`;

Everything is float64, inputs are never modified, bad arguments raise :class:`NormError` (a
``ValueError``; :class:`BatchNormError` is the same class) naming the argument.  NumPy only:
importing this package imports neither SymPy nor PyTorch, and its modules never import it.
"""

from __future__ import annotations

from bnsym.reference._common import BatchNormError, BatchSizeError, GroupSizeError, NormError
from bnsym.reference.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_staged,
    batchnorm_forward,
    batchnorm_forward_staged,
)
from bnsym.reference.running import (
    BatchNorm,
    batchnorm_backward_eval,
    batchnorm_backward_eval_staged,
    batchnorm_forward_eval,
    batchnorm_forward_eval_staged,
)

__all__ = [
    "BatchNorm",
    "BatchNormError",
    "BatchSizeError",
    "GroupSizeError",
    "NormError",
    "batchnorm_backward",
    "batchnorm_backward_eval",
    "batchnorm_backward_eval_staged",
    "batchnorm_backward_staged",
    "batchnorm_forward",
    "batchnorm_forward_eval",
    "batchnorm_forward_eval_staged",
    "batchnorm_forward_staged",
]
