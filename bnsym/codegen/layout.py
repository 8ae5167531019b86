"""How a generated module reads x as groups: ``_groups``, ``_elements``, ``_from_elements``.

Every layout is read as groups ``(N, P, M)`` — N samples, P groups per sample with their own
parameters, M values per group — as the layer's :class:`~bnsym.family.layers.Grouping` says
(its ``axes``, ``transposed``, ``samples``, ``spatial``); nothing here knows a layer or a
grouping by name. The functions written into the generated source are:

- ``_groups(name, x)``: x's shape checked against the layout, then the view (N, P, M), no copy:
  ``x.T[None]`` where a group runs down axis 0 (batch norm's columns), else a reshape;
- ``_elements(groups)``: the kernel's arguments x1..xm, each (N, P). Where a group runs down
  axis 0 they are the rows of x, views; else one copy, so that each is contiguous;
- ``_from_elements(values, shape)``: the kernel's m results back in x's layout;
- ``_from_groups(groups, shape)`` (the double backward, which works on whole groups): the
  inverse of ``_groups``.

>>> from bnsym.family.layers import GROUPINGS
>>> Layout(GROUPINGS["columns"], 4).x_text, Layout(GROUPINGS["groups"], 8, 2).x_text
('(m, D)', '(N, G*C, *spatial)')
>>> print(Layout(GROUPINGS["rows"], 3).shape_error())
{name} must have shape (N, m) = (N, 3); got {x.shape}
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from bnsym.family.layers import Grouping

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """A grouping for groups of ``M`` values, ``K`` channels each (``K`` > 1 only where the
    layout has a channel axis inside the group, ``"s"`` in its axes)."""

    grouping: Grouping
    M: int
    K: int = 1

    # --- the shapes, as the generated code's docstrings and messages write them ---------------

    def _axis(self, a: str, filled: bool) -> str:
        """One axis of x: its letter of :attr:`Grouping.axes` as a person writes it."""
        g = self.grouping
        if a in ("m", "s") and g.spatial:
            return "*spatial"
        return {
            "N": "N",
            "P": g.p_name,
            "P*K": f"{g.p_name}*{self.K if filled else 'C'}",
            "m": str(self.M) if filled else "m",
            "s": str(self.M // self.K) if filled else "m/C",
        }[a]

    @property
    def x_text(self) -> str:
        """x's shape in letters: ``(m, D)``, ``(N, m)``, ``(N, C, *spatial)``."""
        return "(" + ", ".join(self._axis(a, False) for a in self.grouping.axes) + ")"

    @property
    def groups_text(self) -> str:
        """The view (N, P, M) in the layout's own letters: ``(1, D, M)``, ``(N, 1, M)``."""
        return f"({self.element_text[1:-1]}, M)"

    @property
    def element_text(self) -> str:
        """The shape of one kernel argument x_i: ``(1, D)``, ``(N, 1)``, ``(N, C)``."""
        g = self.grouping
        return f"({'N' if g.samples else '1'}, {g.p_name or '1'})"

    @property
    def p_text(self) -> str:
        """One value per group of a sample: ``(D,)``, ``(1,)``, ``(C,)`` (running statistics)."""
        return f"({self.grouping.p_name or '1'},)"

    def shape_error(self) -> str:
        """The message of a wrong shape of x (``{x.shape}`` left for the f-string)."""
        g = self.grouping
        text, filled = self.x_text, "(" + ", ".join(self._axis(a, True) for a in g.axes) + ")"
        words = text if text == filled else f"{text} = {filled}"
        if g.spatial:
            n = self.M // self.K
            if "P*K" in g.axes:
                words += f": groups of {self.K} channels with {n} positions each"
            else:
                words += f" with {n} positions per channel"
        return f"{{name}} must have shape {words}; got {{x.shape}}"

    # --- the functions written into the generated module ------------------------------------

    def from_groups_source(self) -> str:
        """``_from_groups(groups, shape)``: an array of the groups' shape back in x's layout,
        the inverse of ``_groups`` (for code that works on the groups as a whole)."""
        return _from_groups_source(self.grouping.transposed)

    def source(self) -> str:
        """``_groups``, ``_elements`` and ``_from_elements`` for this layout."""
        g = self.grouping
        checks = []
        for i, a in enumerate(g.axes):
            last = i == len(g.axes) - 1
            extent = f"numpy.prod(x.shape[{i}:])" if g.spatial and last else f"x.shape[{i}]"
            if a == "m":
                checks.append(f"{extent} != M")
            elif a == "s":
                checks.append(f"{extent} * {self.K} != M")
            elif a == "P*K":
                checks.append(f"x.shape[{i}] % {self.K}")
        ndim = len(g.axes)
        checks.insert(0, f"x.ndim < {ndim}" if g.spatial else f"x.ndim != {ndim}")
        if g.transposed:
            view = "x.T[None]"
        else:
            n = "x.shape[0]" if g.samples else "1"
            p = next(
                (
                    f"x.shape[{i}]" + (f" // {self.K}" if a == "P*K" else "")
                    for i, a in enumerate(g.axes)
                    if a in ("P", "P*K")
                ),
                "1",
            )
            view = f"x.reshape({n}, {p}, M)"
        comment = f"x {self.x_text} as groups (N, P, M) = {self.groups_text}; a group: {g.words}"
        lines = [
            "def _groups(name, x):",
            *textwrap.wrap(comment, 96, initial_indent="    # ", subsequent_indent="    # "),
            f"    if {' or '.join(checks)}:",
            *_raise(self.shape_error(), "        "),
            f"    return {view}",
            "",
            "",
            *(
                [line.format(element=self.element_text) for line in _ROWS]
                if g.transposed
                else _COPY
            ),
        ]
        return "\n".join(lines) + "\n"


def _raise(message: str, indent: str, width: int = 99) -> list[str]:
    """``raise ValueError(f"...")`` on one line, or the f-string split over several."""
    one = f'{indent}raise ValueError(f"{message}")'
    if len(one) <= width:
        return [one]
    pieces = textwrap.wrap(message, width - len(indent) - 8, drop_whitespace=False)
    return [
        f"{indent}raise ValueError(",
        *(f'{indent}    f"{piece}"' for piece in pieces),
        f"{indent})",
    ]


def _from_groups_source(transposed: bool) -> str:
    if transposed:
        body = [
            "    # (N, P, M) = (1, D, M) back in x's layout (m, D): _groups' view transposed back",
            "    return groups[0].T.reshape(shape)",
        ]
    else:
        body = [
            "    # (N, P, M) back in x's layout (copied only where x's layout needs it)",
            "    return groups.reshape(shape)",
        ]
    return "\n".join(["def _from_groups(groups, shape):", *body]) + "\n"


# A group runs down axis 0: the m values x1..xm are the rows of x, views in memory order.
_ROWS = [
    "def _elements(groups):",
    "    # x1..xm, each (N, P) = {element}: the rows of x, views (no copy)",
    "    return numpy.moveaxis(groups, -1, 0)",
    "",
    "",
    "def _from_elements(values, shape):",
    "    # the m results, each {element}, as the rows of an array of x's shape",
    "    return numpy.stack(values).reshape(shape)",
]

# A group lies along the last axes: the values are strided, so they are copied once.
_COPY = [
    "def _elements(groups):",
    "    # x1..xm, each (N, P): one contiguous copy, so that every kernel line reads memory",
    "    # in order (the strided views groups[..., i] are several times slower). The copy",
    "    # is a transposition, done in blocks of rows that fit in the cache (about 32 KB):",
    "    # NumPy's plain transposing copy is 2-4x slower at these sizes.",
    "    rows = groups.reshape(-1, M)",
    "    out = numpy.empty((M, rows.shape[0]), dtype=rows.dtype)",
    "    block = max(64, 4096 // M)",
    "    for start in range(0, rows.shape[0], block):",
    "        out[:, start:start + block] = rows[start:start + block].T",
    "    return out.reshape((M,) + groups.shape[:-1])",
    "",
    "",
    "def _from_elements(values, shape):",
    "    # the m results, each (N, P), back in x's layout: stacked as (N, P, M) (a view),",
    "    # then reshaped (copied only where x's layout needs it)",
    "    return numpy.moveaxis(numpy.stack(values), 0, -1).reshape(shape)",
]
