"""The output formats, registered in one table: format -> the module and function that
render a :class:`~bnsym.derivation.Derivation` in it, and the file extensions that choose it.

Used by :class:`bnsym.derivation.Derivation` (``to_text``, ``_repr_latex_``) and the
command line, which sit above the renderers. A renderer is imported when first used, so
that ``bnsym derive`` to the terminal does not import the LaTeX notes. A new format is one
row here.
"""

from __future__ import annotations

import importlib
from typing import Any

#: format -> (module, function, file extensions that choose it)
FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "text": ("bnsym.notes.text", "to_text", (".txt",)),
    "json": ("bnsym.notes.text", "to_json", (".json",)),
    "latex": ("bnsym.notes.latex", "to_latex", (".tex",)),
    "markdown": ("bnsym.notes.latex", "to_markdown", (".md", ".markdown")),
    "pdf": ("bnsym.notes.latex", "to_pdf", (".pdf",)),
}


def renderer(fmt: str) -> Any:
    """The function that renders ``fmt``; KeyError for an unknown format."""
    module, function, _ = FORMATS[fmt]
    return getattr(importlib.import_module(module), function)


def render(derivation: Any, fmt: str, **options: Any) -> Any:
    """``derivation`` in ``fmt``, with the renderer's ``options``."""
    return renderer(fmt)(derivation, **options)
