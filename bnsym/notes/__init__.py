"""The renderers: a derivation as text, JSON, LaTeX, Markdown and PDF, the computation graph as
a picture, and reading bnsym's own JSON back (:mod:`bnsym.notes.json_doc`).

The table of formats is :mod:`bnsym.notes.formats`. The renderers read a
:class:`~bnsym.derivation.Derivation`'s fields and never import :mod:`bnsym.derivation`,
which sits above them.
"""
