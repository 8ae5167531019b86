"""The output formats, registered in one table: format -> the module and function that
render a :class:`~bnsym.symbolic.Derivation` in it.

The derivation renders itself (``to_text``, ``_repr_latex_``) through this table, which
names its renderers rather than importing them: the renderers import the derivation, so
an import the other way would be a cycle. A new format is one row here.
"""

from __future__ import annotations

import importlib
from typing import Any

#: format -> (module, function, file extensions that choose it)
FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "text": ("bnsym.render", "to_text", (".txt",)),
    "json": ("bnsym.render", "to_json", (".json",)),
    "latex": ("bnsym.notes", "to_latex", (".tex",)),
    "markdown": ("bnsym.notes", "to_markdown", (".md", ".markdown")),
    "pdf": ("bnsym.notes", "to_pdf", (".pdf",)),
}


def renderer(fmt: str) -> Any:
    """The function that renders ``fmt``; KeyError for an unknown format."""
    module, function, _ = FORMATS[fmt]
    return getattr(importlib.import_module(module), function)


def render(derivation: Any, fmt: str, **options: Any) -> Any:
    """``derivation`` in ``fmt``, with the renderer's ``options``."""
    return renderer(fmt)(derivation, **options)
