"""A layer named on the command line: a shipped one, or a declaration in the user's own file.

``--layer`` takes one of three spellings:

- ``layernorm``: a layer bnsym ships (:data:`~bnsym.family.layers.LAYERS`);
- ``FILE.py:NAME``: the :class:`~bnsym.family.layers.Layer` called ``NAME`` in the Python file
  ``FILE.py`` (which is run, as ``python FILE.py`` would run it: name a file you trust);
- ``module:NAME``: the same from an importable module (the current directory is searched
  first, as ``bnsym gradcheck`` loads layers).

Every way it can go wrong — a file that is not there, a file that raises when it runs, a
name it does not define, an object that is not a ``Layer``, a declaration whose fields
contradict — is a :class:`~bnsym.family.layers.LayerError` of one line naming the spec.
Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from bnsym.errors import BnsymError
from bnsym.family.layers import Layer, LayerError, layer

__all__ = ["load_layer"]

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_layer(spec: str | Layer) -> Layer:
    """The layer ``spec`` names (see the module docstring); a ``Layer`` is passed through.

    >>> load_layer("rmsnorm").beta
    False
    """
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, str):
        raise LayerError(f"a layer is a name or a Layer, not {type(spec).__name__}.")
    text = spec.strip()
    where, sep, name = text.rpartition(":")
    if not sep:
        return layer(text)
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not _NAME.fullmatch(name):
        raise LayerError(
            f"--layer {shown!r}: {name[:40]!r} after ':' is not a Python name; write "
            "FILE.py:NAME or module:NAME, e.g. mylayers.py:scalenorm."
        )
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _run_file(where, shown)
    elif _MODULE.fullmatch(where):
        module = _import(where, shown)
    else:
        raise LayerError(
            f"--layer {shown!r}: {where[:40]!r} is neither a .py file nor a module name; write "
            "FILE.py:NAME or module:NAME, e.g. mylayers.py:scalenorm."
        )
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, Layer))
        has = f"; it defines {', '.join(found)}" if found else "; it defines no Layer"
        raise LayerError(f"--layer {shown!r}: {where} has no {name!r}{has}.")
    obj = getattr(module, name)
    if not isinstance(obj, Layer):
        kind = type(obj).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise LayerError(
            f"--layer {shown!r}: {name} is {article} {kind}, not a bnsym.Layer; declare it as "
            f"{name} = bnsym.Layer(name=..., centred=..., ...)."
        )
    return obj


def _run_file(path: str, shown: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise LayerError(f"--layer {shown!r}: {path} {what}; give the path of a .py file.")
    # one module name per file path, so that two files of the same name do not collide
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"_bnsym_layer_{digest}", file)
    if spec is None or spec.loader is None:
        raise LayerError(f"--layer {shown!r}: {path} cannot be loaded as a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file: whatever it raises is its own
        raise LayerError(f"--layer {shown!r}: running {path} raised {_one_line(exc)}.") from None
    return module


def _import(name: str, shown: str) -> ModuleType:
    if os.getcwd() not in sys.path:  # a module in the current directory, as python -m does
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise LayerError(
                f"--layer {shown!r}: no module named {exc.name!r} (in the current directory or "
                "installed); give FILE.py:NAME for a file."
            ) from None
        raise LayerError(f"--layer {shown!r}: importing {name} raised {_one_line(exc)}.") from None
    except (Exception, SystemExit) as exc:
        raise LayerError(f"--layer {shown!r}: importing {name} raised {_one_line(exc)}.") from None


def _one_line(exc: BaseException) -> str:
    """The exception's first line, without its closing full stop (the caller adds one); a
    bnsym error whole (it says what to do), another cut at 120 characters."""
    first = (str(exc).splitlines() or [""])[0].rstrip(".")
    limit = 600 if isinstance(exc, BnsymError) else 120
    first = first if len(first) <= limit else first[: limit - 1] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
