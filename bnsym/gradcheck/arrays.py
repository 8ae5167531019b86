"""The inputs of ``bnsym gradcheck --input``: random arrays of a shape, integer labels, or arrays
read from ``.npy`` and ``.npz`` files — each bounded before it is allocated.

A spec is one of

- ``4,3``: seeded standard normal floats of that shape (``""`` or ``scalar`` for a scalar);
- ``int:LOW-HIGH:SHAPE``: integers LOW..HIGH of that shape (labels: ``int:0-9:64``), a
  constant of the check;
- ``x.npy``: the array in the file; ``data.npz:x``: the array ``x`` of an ``.npz`` file (the
  key may be left out when the file holds one array).

A file is read only as far as its header says it is sound: its shape and dtype are read
first and refused (before any memory is allocated) if the array would exceed the bound or
the file is shorter than the header claims; object arrays (which only pickling can hold)
and damaged archives are refused. Every refusal is an :class:`InputFileError` of one line
naming the spec and what is wrong. NumPy only.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from bnsym.errors import BnsymError

__all__ = ["MAX_BYTES", "InputFileError", "make_inputs"]

#: Inputs beyond 1 GiB in all are refused before anything is allocated (the check needs a
#: few times that again).
MAX_BYTES = 2**30


class InputFileError(BnsymError, ValueError):
    """An ``--input`` that cannot be made or read; the message names it and says why."""


def parse_shape(text: str) -> tuple[int, ...]:
    """``"4,3"`` -> (4, 3); ``""`` or ``"scalar"`` -> ().

    >>> parse_shape("(4, 3)"), parse_shape("scalar")
    ((4, 3), ())
    """
    text = text.strip().strip("()")
    if text in ("", "scalar"):
        return ()
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        shape = (-1,)
    if not shape or any(n < 1 for n in shape):
        raise InputFileError(f"--input {text!r} is not a shape; give positive sizes like 4,3")
    return shape


def make_inputs(specs: tuple[str, ...], dtype: str, seed: int) -> list[np.ndarray]:
    """The arrays the specs describe, in order (see the module docstring)."""
    plans: list[tuple[str, Any]] = []
    total = 0
    for spec in specs:
        if spec.endswith(".npy") or ".npz" in spec:
            path, _, key = spec.partition(".npz")
            file = spec if spec.endswith(".npy") else path + ".npz"
            plans.append(("file", (spec, file, key.lstrip(":"))))
        elif spec.startswith("int:"):
            _, low_high, shape_text = (spec.split(":", 2) + ["", ""])[:3]
            low, sep, high = low_high.partition("-")
            try:
                lo, hi = int(low), int(high)
            except ValueError:
                lo, hi, sep = 0, -1, ""
            if not sep or hi < lo:
                raise InputFileError(
                    f"--input {spec!r}: integers are int:LOW-HIGH:SHAPE, e.g. int:0-9:64 "
                    "(labels 0 to 9 for 64 rows)"
                )
            shape = parse_shape(shape_text)
            plans.append(("int", (lo, hi, shape)))
            total += 8 * math.prod(shape)
        else:
            shape = parse_shape(spec)
            plans.append(("float", shape))
            total += np.dtype(dtype).itemsize * math.prod(shape)
    if total > MAX_BYTES:
        raise InputFileError(
            f"the --input shapes need {total / 2**30:.3g} GiB for the random inputs alone, and "
            f"the check a few times that; give shapes under {MAX_BYTES / 2**30:g} GiB"
        )
    rng = np.random.default_rng(seed)
    arrays: list[np.ndarray] = []
    for kind, plan in plans:
        if kind == "float":
            arrays.append(rng.standard_normal(plan).astype(dtype))
        elif kind == "int":
            lo, hi, shape = plan
            arrays.append(rng.integers(lo, hi + 1, size=shape))
        else:
            arrays.append(load_array(*plan))
    return arrays


def load_array(spec: str, file: str, key: str = "") -> np.ndarray:
    """The array of an ``.npy`` file, or of an ``.npz`` file under ``key``."""
    path = Path(file)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputFileError(f"--input {spec!r}: {file} {what}")
    try:
        if file.endswith(".npy"):
            with open(path, "rb") as f:
                return _read_npy(f, path.stat().st_size, spec)
        return _read_npz(path, key, spec)
    except InputFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputFileError(f"--input {spec!r}: cannot read {file}: {_first_line(exc)}") from None


def _read_npy(f: IO[bytes], size: int, spec: str) -> np.ndarray:
    """One array of the ``.npy`` format from ``f`` (``size`` bytes), header checked first."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
    except ValueError as exc:
        raise InputFileError(f"--input {spec!r}: not an .npy array: {_first_line(exc)}") from None
    if dtype.hasobject:
        raise InputFileError(
            f"--input {spec!r}: the array holds Python objects ({dtype}), which only pickling "
            "can read; save numbers (np.save of a float or integer array)"
        )
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > MAX_BYTES:
        raise InputFileError(
            f"--input {spec!r}: its header says shape {shape} of {dtype}, "
            f"{nbytes / 2**30:.3g} GiB; give an array under {MAX_BYTES / 2**30:g} GiB"
        )
    if size >= 0 and f.tell() + nbytes > size:
        raise InputFileError(
            f"--input {spec!r}: its header says shape {shape} of {dtype} ({nbytes} bytes) but "
            f"the file holds {max(size - f.tell(), 0)}: it is cut short or damaged"
        )
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputFileError(f"--input {spec!r}: the file is shorter than its header says")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _read_npz(path: Path, key: str, spec: str) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".npy")]
        keys = [n[: -len(".npy")] for n in names]
        if not key and len(keys) == 1:
            key = keys[0]
        if key not in keys:
            raise InputFileError(
                f"--input {spec!r}: give one array of {path} as {path}:NAME; it holds {keys}"
            )
        info = archive.getinfo(key + ".npy")
        if info.file_size > MAX_BYTES + 4096:
            raise InputFileError(
                f"--input {spec!r}: {key} is {info.file_size / 2**30:.3g} GiB; give an array "
                f"under {MAX_BYTES / 2**30:g} GiB"
            )
        with archive.open(info) as member:
            return _read_npy(member, info.file_size, spec)  # a bad CRC raises BadZipFile


def _first_line(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."
