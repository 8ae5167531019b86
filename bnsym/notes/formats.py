"""The output formats, in one table: a new format is one row here.

Each row says which function renders a :class:`~bnsym.derivation.Derivation` in the format,
which function appends the sections of orders 2 and 3 to it (``None`` where the renderer
takes them itself), the file extensions that choose it for ``-o``, the options of
``bnsym derive`` that apply to it, and the phrase ``--format``'s help gives it. The command
line (``--format``, ``-o``, ``--ascii``, ``--standalone``/``--fragment``) and
:class:`~bnsym.derivation.Derivation`'s methods read this table; neither knows a format by
name. A renderer is imported when first used, so that ``bnsym derive`` to the terminal does
not import the LaTeX notes.

>>> by_extension(".md").name, FORMATS["pdf"].file_only
('markdown', True)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMATS", "Format", "by_extension", "render"]


@dataclass(frozen=True)
class Format:
    """One output format (see the module docstring).

    ``render`` and ``higher`` are ``"module:function"``: ``render(d, **options)`` returns
    the document (``str``, or ``bytes`` where ``binary``), ``higher(document, h, **options)``
    the document with the derivatives of order 2 or 3 ``h`` added. ``options`` are the
    keyword options the renderer takes besides the derivation (``ascii``, ``standalone``,
    ``command``); ``file_only``: written to a file, never to the terminal.
    """

    name: str
    render: str
    higher: str | None
    extensions: tuple[str, ...]
    help: str
    options: tuple[str, ...] = ("command",)
    binary: bool = False
    file_only: bool = False
    #: ``"module:function"``: ``modes(document, md, **options)`` is the document with forward
    #: mode and its compositions (:func:`bnsym.proofs.modes.derive_modes`) added; None where
    #: the renderer takes them itself (``modes=``).
    modes: str | None = None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "text",
            "bnsym.notes.text:to_text",
            "bnsym.notes.higher:with_text",
            (".txt",),
            "Unicode text for a terminal (--ascii: plain ASCII)",
            ("command", "ascii"),
            modes="bnsym.notes.modes:with_text",
        ),
        Format(
            "json",
            "bnsym.notes.json_doc:to_json",
            "bnsym.notes.higher:with_json",
            (".json",),
            "one JSON object, read back by bnsym.load_json",
            (),
            modes="bnsym.notes.modes:with_json",
        ),
        Format(
            "latex",
            "bnsym.notes.latex:to_latex",
            "bnsym.notes.higher:with_latex",
            (".tex",),
            "LaTeX, a document that compiles with pdflatex (--fragment: to \\input)",
            ("command", "standalone"),
            modes="bnsym.notes.modes:with_latex",
        ),
        Format(
            "markdown",
            "bnsym.notes.latex:to_markdown",
            "bnsym.notes.higher:with_markdown",
            (".md", ".markdown"),
            "Markdown with $$ maths, for GitHub and Jupyter",
            modes="bnsym.notes.modes:with_markdown",
        ),
        Format(
            "pdf",
            "bnsym.notes.pdf:to_pdf",
            None,
            (".pdf",),
            "the LaTeX notes compiled by pdflatex (a file: -o FILE.pdf)",
            binary=True,
            file_only=True,
        ),
        Format(
            "html",
            "bnsym.notes.html:to_html",
            None,
            (".html", ".htm"),
            "one web page that opens offline in any browser: MathML, no script",
        ),
    )
}


def by_extension(extension: str) -> Format | None:
    """The format a file extension (``".tex"``, any case) chooses, or None."""
    ext = extension.lower()
    return next((f for f in FORMATS.values() if ext in f.extensions), None)


def _function(where: str) -> Any:
    module, _, function = where.partition(":")
    return getattr(importlib.import_module(module), function)


def render(derivation: Any, fmt: str, higher: Any = None, modes: Any = None, **options: Any) -> Any:
    """``derivation`` in the format ``fmt`` (KeyError if unknown), with the sections of
    order 2 or 3 when ``higher`` is given and those of forward mode when ``modes`` is (a
    :class:`~bnsym.proofs.modes.ModesDerivation`); ``options`` the format takes (others are
    dropped: ``ascii`` means nothing to JSON)."""
    row = FORMATS[fmt]
    given = {k: v for k, v in options.items() if k in row.options or k == "notebook"}
    if row.higher is None:
        more = {"modes": modes} if modes is not None else {}
        return _function(row.render)(derivation, **given, **_higher_arg(higher), **more)
    out = _function(row.render)(derivation, **given)
    extra = {k: v for k, v in given.items() if k in ("ascii", "standalone")}
    if higher is not None:
        out = _function(row.higher)(out, higher, **extra)
    if modes is not None:
        if row.modes is None:
            raise KeyError(f"the format {fmt} has no column for forward mode (Format.modes)")
        out = _function(row.modes)(out, modes, **extra)
    return out


def _higher_arg(higher: Any) -> dict[str, Any]:
    return {} if higher is None else {"higher_order": higher}
