"""The derivation that renders itself: what :func:`bnsym.derive` returns.

:class:`bnsym.symbolic.Derivation` is the data, made by the symbolic core; the renderers
(:mod:`bnsym.render`, :mod:`bnsym.notes`) read it. This module sits above both and adds the
methods a user and Jupyter call — ``to_text``, ``to_json``, ``to_latex``, ``to_markdown``,
``_repr_latex_``, ``_repr_markdown_`` — through the table of formats
(:mod:`bnsym._formats`), so that every dependency points one way.

>>> d = derive(2, eps=0, values="1,3")
>>> d.to_text().splitlines()[0]
'Batch normalization, m = 2: train mode, biased variance (1/m), ε inside the root, ε = 0'
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from bnsym import symbolic
from bnsym._formats import render

__all__ = ["Derivation", "derive"]


class Derivation(symbolic.Derivation):
    """A :class:`bnsym.symbolic.Derivation` with its renderings (immutable, like it)."""

    def to_text(self, ascii: bool = False) -> str:
        return str(render(self, "text", ascii=ascii))

    def to_json(self) -> str:
        return str(render(self, "json"))

    def to_latex(self, standalone: bool = False) -> str:
        return str(render(self, "latex", standalone=standalone))

    def to_markdown(self) -> str:
        return str(render(self, "markdown"))

    def _repr_latex_(self) -> str:
        return str(render(self, "latex", standalone=False, notebook=True))

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def derive(m: int, **options: Any) -> Derivation:
    """:func:`bnsym.symbolic.derive`, returned as a :class:`Derivation` that renders itself.

    Takes the same arguments (``layer``, ``channels``, ``eps``, ``variance``,
    ``eps_placement``, ``affine``, ``mode``, ``values``, ``dy``, ``force``) and raises the
    same :class:`~bnsym.symbolic.DerivationError`.
    """
    data = symbolic.derive(m, **options)
    return Derivation(**{f.name: getattr(data, f.name) for f in fields(data)})
