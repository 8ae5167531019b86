"""What the benchmarks share: bnsym compiled before whole processes are timed, one timed
process, and the family's layouts for timing the generated code.

Compiling bnsym's modules to bytecode before timing whole processes:

``pip install .`` compiles a package's modules when it installs them, as SymPy's were; an
editable install, or ``PYTHONDONTWRITEBYTECODE=1`` (set on the development machines), leaves
bnsym to be compiled from source in every process, which a bare ``import sympy`` is not.
Compiling once here makes the comparison the one a user's install sees (Python reads existing
bytecode whatever that variable says).
"""

from __future__ import annotations

import compileall
import subprocess
import time
from pathlib import Path

import bnsym


def compile_bnsym() -> None:
    compileall.compile_dir(str(Path(bnsym.__file__).parent), quiet=1)


def run_process(args: list[str]) -> float:
    """Seconds of one whole process (its output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


#: The generated code is timed on 262,144 values in groups of m = 64, in each layer's layout:
#: name -> (m, codegen options, x shape, parameter size).
LAYERS = {
    "batchnorm": (64, {}, (64, 4096), 4096),
    "layernorm": (64, {}, (4096, 64), 64),
    "instancenorm": (64, {}, (64, 64, 64), 64),
    "groupnorm": (64, {"channels": 4}, (64, 256, 16), 256),
    "rmsnorm": (64, {}, (4096, 64), 64),
}
