"""The worked example as a table, one per feature: i, x_i, x_i − μ, x̂_i, y_i, ∂ℓ/∂y_i,
∂ℓ/∂x_i, each cell a decimal of :data:`~bnsym.notes.decimals.TABLE_DIGITS` significant digits
(the exact values are listed beside the table). Renderers print it; this module only says
what is in it.

A column whose cells stay symbolic and long (∂ℓ/∂x_i without ∂ℓ/∂y numbers is a sum over
every ∂ℓ/∂y_j) is left out: the exact list has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.notes.decimals import rounded

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["Table", "example_table"]

#: A column is kept when every cell has at most this many free symbols (γ, β: 2).
MAX_CELL_SYMBOLS = 2


@dataclass(frozen=True)
class Table:
    """``headers`` as (unicode, ascii, latex); ``rows`` one per element, cells as SymPy
    expressions (the index i as an Integer)."""

    headers: tuple[tuple[str, str, str], ...]
    rows: tuple[tuple[Any, ...], ...]


_HEADERS = {
    "i": ("i", "i", "i"),
    "x": ("xᵢ", "x_i", "x_{i}"),
    "centred": ("xᵢ − {mu}", "x_i - {mu_a}", "x_{{i}} - {mu_t}"),
    "x_hat": ("x̂ᵢ", "xhat_i", r"\hat{x}_{i}"),
    "y": ("yᵢ", "y_i", "y_{i}"),
    "dy": ("∂ℓ/∂yᵢ", "dl/dy_i", r"\partial \ell / \partial y_{i}"),
    "dx": ("∂ℓ/∂xᵢ", "dl/dx_i", r"\partial \ell / \partial x_{i}"),
}


def example_table(d: Derivation, feature: int) -> Table:
    """The table of feature ``feature`` (0-based) of ``d``'s worked example."""
    o, s = d.options, d.symbols
    assert o.values is not None
    feat = d.features[feature]
    x = o.values[feature]
    columns: list[tuple[str, list[Any]]] = [("i", list(range(1, d.m + 1))), ("x", list(x))]
    mu: Any = None
    sub = s.layer.stat_suffix.lstrip("_")
    names = {"mu": "μ" + s.layer.stat_suffix, "mu_a": "mu" + s.layer.stat_suffix}
    names["mu_t"] = rf"\mu_{{{sub}}}" if sub else r"\mu"
    if o.mode == "train" and s.layer.centred:
        mu = feat["mean"]
    elif o.mode == "eval":
        names = {"mu": "μ_run", "mu_a": "running_mean", "mu_t": r"\mu_{\mathrm{run}}"}
        mu = s.running_mean
        if o.running_mean is not None:
            mu = o.running_mean[feature][0]
        elif len(o.values) > 1:
            mu = sp.Symbol(f"{s.running_mean.name}{feature + 1}")
    if mu is not None:
        columns.append(("centred", [xi - mu for xi in x]))
    columns += [("x_hat", list(feat["x_hat"])), ("y", list(feat["y"]))]
    dy = list(o.dy[feature]) if o.dy is not None else list(s.dy)
    columns += [("dy", dy), ("dx", list(feat["dx"]))]
    kept = [
        (key, [rounded(sp.sympify(c)) for c in cells])
        for key, cells in columns
        if all(len(sp.sympify(c).free_symbols) <= MAX_CELL_SYMBOLS for c in cells)
    ]
    headers = []
    for key, _ in kept:
        u, a, t = _HEADERS[key]
        if key == "centred":  # the only header naming a statistic
            u, a, t = u.format(**names), a.format(**names), t.format(**names)
        headers.append((u, a, t))
    rows = tuple(tuple(cells[i] for _, cells in kept) for i in range(d.m))
    return Table(tuple(headers), rows)
