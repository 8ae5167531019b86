"""The normalization family as data: one declaration per layer, over one core.

Every member normalizes a *group* of m values by statistics of that group, then scales and
shifts; they differ in three things only (as in Flax's ``normalization.py``):

- **which values form a group** — the reduction axes of the layer's natural layout
  (``layout``, ``group``);
- **whether the statistics are centred** — mean and variance (batch, layer, instance and
  group norm) or the mean square alone (RMS norm, ``centred=False``);
- **how γ and β are shared** — one pair for the whole group (``params="shared"``: batch and
  instance norm, whose γ belongs to the feature or channel the group is), one per element
  (``"element"``: layer and RMS norm), or one per channel of the group (``"channel"``: group
  norm, whose m values belong to ``channels`` channels listed one after the other).

The symbolic core (:mod:`bnsym.core`), the generated code (:mod:`bnsym.codegen`), the
cross-check (:mod:`bnsym.crosscheck`) and the renderers read these declarations and know no
layer by name. This module needs nothing but the standard library, so that the command line can
list the layers without importing SymPy.

>>> LAYERS["layernorm"].param_count(4)
4
>>> LAYERS["groupnorm"].param_index(6, channels=2)
(0, 0, 0, 1, 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["LAYERS", "Layer", "LayerError", "layer"]

Sharing = Literal["shared", "element", "channel"]
#: How the natural layout holds the groups (what the generated code reshapes):
#: "columns" x (m, D), "rows" x (N, m), "channels" x (N, C, *spatial), "groups"
#: x (N, G*C, *spatial) with C channels of a group next to each other.
Grouping = Literal["columns", "rows", "channels", "groups"]


class LayerError(ValueError):
    """An unknown layer, or an option the layer does not have: the message says which."""


@dataclass(frozen=True)
class Layer:
    """One member of the normalization family (see the module docstring).

    ``name`` is the command-line spelling, ``title`` the heading of its notes; ``group`` says
    in words what the m values are; ``layout`` is the shape the generated code and the
    references take (``m`` the group size); ``stat_suffix`` subscripts the statistics
    (μ_B, σ²_B for the batch norm paper's "mini-batch"); ``grouping`` how that layout holds
    the groups (see :data:`Grouping`); ``torch`` is PyTorch's functional name; ``modes`` the
    modes it has (only batch norm keeps running statistics).
    """

    name: str
    title: str
    group: str
    layout: str
    centred: bool = True
    params: Sharing = "shared"
    beta: bool = True
    stat_suffix: str = ""
    grouping: Grouping = "rows"
    torch: str = ""
    modes: tuple[str, ...] = ("train",)

    @property
    def has_channels(self) -> bool:
        return self.params == "channel"

    def param_count(self, m: int, channels: int | None = None) -> int:
        """K, the number of γ (and β) symbols of a group of m values."""
        if self.params == "shared":
            return 1
        if self.params == "element":
            return m
        return int(channels or 1)

    def param_index(self, m: int, channels: int | None = None) -> tuple[int, ...]:
        """For each element 0..m−1 of the group, the index of its γ (channel by channel)."""
        if self.params == "shared":
            return (0,) * m
        if self.params == "element":
            return tuple(range(m))
        c = int(channels or 1)
        return tuple(i // (m // c) for i in range(m))

    def min_m(self, mode: str = "train") -> int:
        """The smallest group: a centred statistic needs two values (a variance of one value
        is 0); the mean square and eval mode need one."""
        return 2 if self.centred and mode == "train" else 1


LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            "batchnorm",
            "Batch normalization",
            "the batch: one feature's values over the m samples",
            "x (m, D): each column normalized, gamma and beta of shape (D,)",
            stat_suffix="_B",
            grouping="columns",
            torch="batch_norm",
            modes=("train", "eval"),
        ),
        Layer(
            "layernorm",
            "Layer normalization",
            "the m features of one sample",
            "x (N, m): each row normalized, gamma and beta of shape (m,)",
            params="element",
            torch="layer_norm",
        ),
        Layer(
            "instancenorm",
            "Instance normalization",
            "the m positions of one channel of one sample",
            "x (N, C, m): each (sample, channel) normalized, gamma and beta of shape (C,)",
            grouping="channels",
            torch="instance_norm",
        ),
        Layer(
            "groupnorm",
            "Group normalization",
            "the channels × positions of one group of one sample, channel by channel",
            "x (N, G*C, m/C): each group of C channels normalized, gamma and beta of shape (G*C,)",
            params="channel",
            grouping="groups",
            torch="group_norm",
        ),
        Layer(
            "rmsnorm",
            "RMS normalization",
            "the m features of one sample, not centred",
            "x (N, m): each row divided by its root mean square, gamma of shape (m,)",
            centred=False,
            params="element",
            beta=False,
            torch="rms_norm",
        ),
    )
}


def layer(name: object) -> Layer:
    """The declaration called ``name``; LayerError listing the known ones otherwise.

    >>> layer("rmsnorm").centred
    False
    """
    if isinstance(name, Layer):
        return name
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in LAYERS:
        raise LayerError(f"unknown layer {str(name)[:40]!r}; choose one of {', '.join(LAYERS)}.")
    return LAYERS[key]
