"""The normalization family by hand in NumPy: the references the derivations are checked against.

Every layer in the CS231n layer contract, ``forward(x, ...) -> (out, cache)`` and
``backward(dout, cache) -> (dx, dgamma, dbeta)``, fused (the closed form) and staged (the graph
one node at a time).  One module per idea; this package only re-exports their public names:

- :mod:`~bnsym.reference._common`: the error types and the argument checks all layers share;
- :mod:`~bnsym.reference._core`: one core for the family (Flax's ``_compute_stats`` and
  ``_normalize``): the statistics, the normalization and the backward over any reduction axes,
  fused and staged, for a layer declared as a ``Layout``;
- :mod:`~bnsym.reference.batchnorm`: batch norm over (N, D), fused and staged, a layout;
- :mod:`~bnsym.reference.running`: eval mode, the running-statistics updates, :class:`BatchNorm`;
- :mod:`~bnsym.reference.family`: layer, instance, group and RMS norm, each a layout over the
  core (``layernorm_forward``, ``instancenorm_forward``, ``groupnorm_forward``,
  ``rmsnorm_forward``, their backward passes and ``_staged`` twins);
- :mod:`~bnsym.reference.declared`: :class:`DeclaredReference`, the reference of any layer
  declared as a :class:`bnsym.Layer`, over the same core (the layers with no hand-written one);
- :mod:`~bnsym.reference.terms`: the closed form split into its terms, over the layouts a
  declaration reads an x of any shape in (for the gradient checker's diagnosis);
- :mod:`~bnsym.reference.spatial`: spatial batch norm and spatial group norm of (N, C, H, W) in
  the assignment's spelling (``spatial_batchnorm_forward(x, gamma, beta, bn_param)``,
  ``spatial_groupnorm_forward(x, gamma, beta, G, gn_param)``).

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
from bnsym.reference.declared import DeclaredReference
from bnsym.reference.family import (
    groupnorm_backward,
    groupnorm_backward_staged,
    groupnorm_forward,
    groupnorm_forward_staged,
    instancenorm_backward,
    instancenorm_backward_staged,
    instancenorm_forward,
    instancenorm_forward_staged,
    layernorm_backward,
    layernorm_backward_staged,
    layernorm_forward,
    layernorm_forward_staged,
    rmsnorm_backward,
    rmsnorm_backward_staged,
    rmsnorm_forward,
    rmsnorm_forward_staged,
)
from bnsym.reference.running import (
    BatchNorm,
    batchnorm_backward_eval,
    batchnorm_backward_eval_staged,
    batchnorm_forward_eval,
    batchnorm_forward_eval_staged,
)
from bnsym.reference.spatial import (
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)

__all__ = [
    "BatchNorm",
    "BatchNormError",
    "BatchSizeError",
    "DeclaredReference",
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
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
]
