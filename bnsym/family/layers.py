"""The normalization family as data: one declaration per layer, over one core.

Every member normalizes a *group* of m values by statistics of that group, then scales and
shifts; they differ in three things only (as in Flax's ``normalization.py``):

- **which values form a group** — how the layer's natural layout holds its groups
  (``grouping``, a row of :data:`GROUPINGS`);
- **whether the statistics are centred** — mean and variance (batch, layer, instance and
  group norm) or the mean square alone (RMS norm, ``centred=False``);
- **how γ and β are shared** — one pair for the whole group (``params="shared"``: batch and
  instance norm, whose γ belongs to the feature or channel the group is), one per element
  (``"element"``: layer and RMS norm), or one per channel of the group (``"channel"``: group
  norm, whose m values belong to ``channels`` channels listed one after the other).

The rest of a declaration is data too: whether there is a β, the modes (only a layer with
running statistics has an eval mode), and the words its notes use (batch norm's paper says
"mini-batch", subscripts μ_B, σ²_B and calls the forward pass Algorithm 1).

The symbolic core, the proofs, the generated code, the cross-check and the renderers read
these declarations and know no layer by name: a layer declared in a user's own file,
``Layer(name="scalenorm", centred=False, beta=False, grouping="rows")``, goes through all of
them. This module needs nothing but the standard library, so that the command line can list
the layers without importing SymPy.

>>> LAYERS["layernorm"].param_count(4)
4
>>> LAYERS["groupnorm"].param_index(6, channels=2)
(0, 0, 0, 1, 1, 1)
>>> Layer(name="scalenorm", centred=False, beta=False).title
'Scalenorm'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal

from bnsym.errors import BnsymError

__all__ = ["GROUPINGS", "LAYERS", "MODES", "SHARINGS", "Grouping", "Layer", "LayerError", "layer"]

Sharing = Literal["shared", "element", "channel"]
#: How γ and β are shared within a group (see the module docstring).
SHARINGS: tuple[str, ...] = ("shared", "element", "channel")
#: The modes a layer may have: train (the group's own statistics) and eval (running ones).
MODES: tuple[str, ...] = ("train", "eval")


class LayerError(BnsymError, ValueError):
    """An unknown layer, a declaration whose fields contradict, or an option the layer does
    not have: the message names the field or the option."""


@dataclass(frozen=True)
class Grouping:
    """How a natural layout holds the groups: what the generated code, the references and the
    cross-check reshape.

    Every layout is read as ``(N, P, m)`` — N samples, P groups per sample that have their own
    parameters (K values of γ each), m values per group — and its parameters as ``(P*K,)``.
    ``axes`` are x's axes in those letters (``s`` = m/K, the positions of one channel);
    ``transposed``: the group runs down axis 0 (each column of x is a group, so the view is
    ``x.T[None]``), else the view is ``x.reshape(N, -1, m)``. ``samples``: x has a sample
    axis N (else N = 1); ``per_sample``: x has an axis of P groups per sample (else P = 1,
    or P is the column axis of a transposed layout). ``spatial``: x's last axis may be several
    (``(N, C, *spatial)``), read as one axis of their product. ``group_word``: what the
    generated code's messages call one group (batch norm's "feature": a column of x).
    """

    name: str
    axes: tuple[str, ...]
    transposed: bool = False
    samples: bool = True
    per_sample: bool = True
    words: str = ""
    #: x's shape as the notes write it, and the name of the axis P is (D, C, G or none)
    text: str = ""
    p_name: str = ""
    spatial: bool = False
    group_word: str = "group"

    def shape(self, N: int, P: int, m: int, K: int = 1) -> tuple[int, ...]:
        """x's shape in this layout for N samples, P groups each, m values per group.

        >>> GROUPINGS["groups"].shape(2, 3, 8, K=2)
        (2, 6, 4)
        """
        size = {"N": N, "P": P, "m": m, "K": K, "P*K": P * K, "s": m // K}
        return tuple(size[a] for a in self.axes)

    def param_text(self, sharing: str) -> str:
        """The shape of γ (and β) as the notes write it, for a sharing of :data:`SHARINGS`.

        >>> GROUPINGS["groups"].param_text("channel"), GROUPINGS["rows"].param_text("shared")
        ('(G*C,)', '(1,)')
        """
        k = {"shared": "", "element": "m", "channel": "C"}[sharing]
        return "(" + ("*".join(n for n in (self.p_name, k) if n) or "1") + ",)"


#: The groupings the family uses, by name.
GROUPINGS: dict[str, Grouping] = {
    g.name: g
    for g in (
        Grouping(
            "columns",
            ("m", "P"),
            transposed=True,
            samples=False,
            per_sample=False,
            words="one column, one feature's values over the m samples",
            text="(m, D)",
            p_name="D",
            group_word="feature",
        ),
        Grouping(
            "rows",
            ("N", "m"),
            per_sample=False,
            words="one row, the m values of one sample",
            text="(N, m)",
        ),
        Grouping(
            "channels",
            ("N", "P", "m"),
            words="the m positions of one channel of one sample",
            text="(N, C, m)",
            p_name="C",
            spatial=True,
        ),
        Grouping(
            "groups",
            ("N", "P*K", "s"),
            words="C channels × m/C positions of one sample, channel by channel",
            text="(N, G*C, m/C)",
            p_name="G",
            spatial=True,
        ),
    )
}

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class Layer:
    """One member of the normalization family (see the module docstring).

    Args (keywords, all but ``name`` optional):
        name: the command-line spelling: lower-case letters, digits and ``_``.
        centred: subtract the mean and divide by the standard deviation (True), or divide by
            the root mean square (False, as RMS norm).
        params: ``"shared"`` (one γ, β per group), ``"element"`` (one per value of the
            group) or ``"channel"`` (one per channel of the group; ``grouping="groups"``).
        beta: whether the layer shifts by β after scaling by γ.
        grouping: a key of :data:`GROUPINGS`: ``"columns"`` (x (m, D), each column a group,
            as batch norm), ``"rows"`` (x (N, m), each row), ``"channels"`` (x (N, C,
            *spatial), each channel of each sample), ``"groups"`` (x (N, G*C, *spatial),
            C channels of a sample at a time).
        modes: ``("train",)``, or ``("train", "eval")`` for a layer that keeps running
            statistics for inference.
        title: the heading of its notes (default: the name, capitalized).
        group: what the m values are, in words (default: the grouping's words).
        layout: the shapes the generated code and the references take, in words (default:
            from the grouping and the parameters).
        stat_suffix: the subscript of the statistics (``"_B"``: μ_B, σ²_B).
        stat_words: the statistics' adjective (``"mini-batch"``: "mini-batch mean").
        paper: what the paper calls the forward pass (``"Algorithm 1"``); "" for a layer
            the notes follow no paper for (they then never say "the paper").
        paper_inference: what the paper calls the inference with running statistics
            (``"Algorithm 2"``); "" where there is none.
        of_m: how the notes' title says "for ... of m" (``"a batch"``; default ``"groups"``).

    Raises:
        LayerError: a field of the wrong kind, an unknown value, or fields that contradict.
    """

    name: str
    centred: bool = True
    params: Sharing = "shared"
    beta: bool = True
    grouping: str = "rows"
    modes: tuple[str, ...] = ("train",)
    title: str = ""
    group: str = ""
    layout: str = ""
    stat_suffix: str = ""
    stat_words: str = ""
    paper: str = ""
    of_m: str = "groups"
    paper_inference: str = ""

    def __post_init__(self) -> None:
        _validate(self)
        if not self.title:
            object.__setattr__(self, "title", self.name.replace("_", " ").capitalize())
        if not self.group:
            object.__setattr__(self, "group", self.grouping_.words)
        if not self.layout:
            object.__setattr__(self, "layout", _layout_text(self))

    @property
    def grouping_(self) -> Grouping:
        """The :class:`Grouping` row of ``grouping``."""
        return GROUPINGS[self.grouping]

    @property
    def function(self) -> tuple[bool, str, bool, str]:
        """What the layer computes: two declarations with the same ``function`` differ only in
        their words (name, title, subscripts) and modes, and compute the same layer.

        >>> Layer(name="ln", params="element").function == LAYERS["layernorm"].function
        True
        """
        return (self.centred, self.params, self.beta, self.grouping)

    @property
    def has_channels(self) -> bool:
        """The group's values belong to several channels (``--channels``)."""
        return self.params == "channel"

    @property
    def has_eval(self) -> bool:
        """The layer keeps running statistics and has an eval mode."""
        return "eval" in self.modes

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


def _validate(decl: Layer) -> None:
    """LayerError naming the first field that is of the wrong kind, unknown or contradicts."""
    if not isinstance(decl.name, str) or not _NAME.fullmatch(decl.name):
        raise LayerError(
            f"Layer name={str(decl.name)[:40]!r}: give lower-case letters, digits and '_', "
            "starting with a letter (it is the --layer spelling), e.g. name='scalenorm'."
        )
    where = f"Layer {decl.name!r}"
    for f in fields(decl):
        value = getattr(decl, f.name)
        if f.type in ("bool",) and not isinstance(value, bool):
            raise LayerError(f"{where}: {f.name} must be True or False, not {value!r}.")
        if f.type == "str" and not isinstance(value, str):
            raise LayerError(f"{where}: {f.name} must be a string, not {_short(value)}.")
    if decl.params not in SHARINGS:
        raise LayerError(
            f"{where}: params={_short(decl.params)} is not known; choose one of "
            f"{', '.join(map(repr, SHARINGS))}."
        )
    if decl.grouping not in GROUPINGS:
        raise LayerError(
            f"{where}: grouping={_short(decl.grouping)} is not known; choose one of "
            f"{', '.join(map(repr, GROUPINGS))}."
        )
    if decl.grouping_.axes.count("s") != (decl.params == "channel"):
        if decl.params == "channel":
            raise LayerError(
                f"{where}: params='channel' (one γ per channel of the group) needs a layout "
                "whose groups hold several channels: grouping='groups'."
            )
        raise LayerError(
            f"{where}: grouping={decl.grouping!r} lays out channels within a group, which "
            "needs one γ per channel: params='channel'."
        )
    modes = decl.modes
    if (
        not isinstance(modes, tuple)
        or not modes
        or modes[0] != "train"
        or any(m not in MODES for m in modes)
        or len(set(modes)) != len(modes)
    ):
        raise LayerError(
            f"{where}: modes={_short(modes)} must be ('train',) or ('train', 'eval') (a layer "
            "with running statistics), as a tuple."
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _layout_text(decl: Layer) -> str:
    """The default ``layout``: x's shape, what a group is, the parameters' shape."""
    g = decl.grouping_
    params = "gamma and beta" if decl.beta else "gamma"
    return f"x {g.text} (a group: {g.words}), {params} of shape {g.param_text(decl.params)}"


#: The five layers bnsym ships.
LAYERS: dict[str, Layer] = {
    decl.name: decl
    for decl in (
        Layer(
            name="batchnorm",
            title="Batch normalization",
            group="the batch: one feature's values over the m samples",
            layout="x (m, D): each column normalized, gamma and beta of shape (D,)",
            stat_suffix="_B",
            stat_words="mini-batch",
            paper="Algorithm 1",
            paper_inference="Algorithm 2",
            of_m="a batch",
            grouping="columns",
            modes=("train", "eval"),
        ),
        Layer(
            name="layernorm",
            title="Layer normalization",
            group="the m features of one sample",
            layout="x (N, m): each row normalized, gamma and beta of shape (m,)",
            params="element",
        ),
        Layer(
            name="instancenorm",
            title="Instance normalization",
            group="the m positions of one channel of one sample",
            layout="x (N, C, m): each (sample, channel) normalized, gamma and beta of shape (C,)",
            grouping="channels",
        ),
        Layer(
            name="groupnorm",
            title="Group normalization",
            group="the channels × positions of one group of one sample, channel by channel",
            layout="x (N, G*C, m/C): each group of C channels normalized, gamma and beta of "
            "shape (G*C,)",
            params="channel",
            grouping="groups",
        ),
        Layer(
            name="rmsnorm",
            title="RMS normalization",
            group="the m features of one sample, not centred",
            layout="x (N, m): each row divided by its root mean square, gamma of shape (m,)",
            centred=False,
            params="element",
            beta=False,
        ),
    )
}


def layer(name: object) -> Layer:
    """The declaration called ``name`` (a ``Layer`` is passed through); LayerError listing the
    known ones otherwise.

    >>> layer("rmsnorm").centred
    False
    """
    if isinstance(name, Layer):
        return name
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in LAYERS:
        raise LayerError(
            f"unknown layer {str(name)[:40]!r}; choose one of {', '.join(LAYERS)}, or declare "
            "one (bnsym.Layer) and pass it, or FILE.py:NAME on the command line."
        )
    return LAYERS[key]
