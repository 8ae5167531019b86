"""Compile bnsym's modules to bytecode before timing whole processes.

``pip install .`` compiles a package's modules when it installs them, as SymPy's were; an
editable install, or ``PYTHONDONTWRITEBYTECODE=1`` (set on the development machines), leaves
bnsym to be compiled from source in every process, which a bare ``import sympy`` is not.
Compiling once here makes the comparison the one a user's install sees (Python reads existing
bytecode whatever that variable says).
"""

from __future__ import annotations

import compileall
from pathlib import Path

import bnsym


def compile_bnsym() -> None:
    compileall.compile_dir(str(Path(bnsym.__file__).parent), quiet=1)
