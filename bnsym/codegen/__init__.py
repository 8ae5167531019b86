"""Readable NumPy code from a derivation, through ``sympy.lambdify``.

``generate(d)`` writes ``forward`` and ``backward`` (:mod:`bnsym.codegen.module`);
``generate_higher(d)`` adds ``double_backward`` (:mod:`bnsym.codegen.higher`).
"""

from bnsym.codegen.module import DEFAULT_EPS, GeneratedModule, generate

__all__ = ["DEFAULT_EPS", "GeneratedModule", "generate"]
