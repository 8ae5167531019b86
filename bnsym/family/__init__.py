"""The normalization family as data: one declaration per layer (standard library only).

:class:`Layer` is what a member of the family is; :data:`LAYERS` holds the five that bnsym
ships, and :func:`layer` finds one by name (or passes a ``Layer`` through).
"""

from bnsym.family.layers import LAYERS, Layer, LayerError, layer

__all__ = ["LAYERS", "Layer", "LayerError", "layer"]
