"""bnsym: normalization layers derived exactly, generated as NumPy code, checked numerically.

The public surface, by concern:

- ``Layer(name=..., centred=..., params=..., beta=..., grouping=...)`` — a member of the
  family as data (``LAYERS`` holds the five shipped ones); every entry point takes one where
  it takes a layer's name;
- ``derive(m, layer=..., **options) -> Derivation`` — the symbolic derivation (SymPy);
- ``generate(derivation) -> GeneratedModule`` — NumPy code from it (``sympy.lambdify``);
- ``check_layer``, ``check_function``, ``assert_layer_gradients``, ``GradientCheckError`` —
  the finite-difference gradient checker (NumPy only); ``check_double_backward`` checks a
  hand-written double backward too, and says which order failed;
- ``check_torch`` — the same checker on PyTorch functions and modules (imports torch when
  called, never before), in reverse and forward mode and their compositions (``modes=``);
- ``check_jvp`` — forward mode: a hand-written jvp against numerical directional derivatives;
- ``BnsymError`` — the base of every exception bnsym raises.

Names are imported lazily, so ``import bnsym`` followed by ``bnsym.check_layer`` never
imports SymPy: the gradient checker and the pytest plugin stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "Layer": "bnsym.family.layers",
    "LAYERS": "bnsym.family.layers",
    "LayerError": "bnsym.family.layers",
    "BnsymError": "bnsym.errors",
    "derive": "bnsym.derivation",
    "Derivation": "bnsym.derivation",
    "DerivationError": "bnsym.derivation",
    "load_json": "bnsym.notes.json_doc",
    "generate": "bnsym.codegen.module",
    "GeneratedModule": "bnsym.codegen.module",
    "check_layer": "bnsym.gradcheck.check",
    "check_function": "bnsym.gradcheck.check",
    "check_double_backward": "bnsym.gradcheck.check",
    "OrdersReport": "bnsym.gradcheck.check",
    "assert_layer_gradients": "bnsym.gradcheck.check",
    "numerical_vjp": "bnsym.gradcheck.check",
    "GradientCheckError": "bnsym.gradcheck.check",
    "check_torch": "bnsym.gradcheck.pytorch",
    "check_jvp": "bnsym.gradcheck.jvp",
    "ModesReport": "bnsym.gradcheck.modes",
    "Report": "bnsym.gradcheck.check",
    "BatchNorm": "bnsym.reference",
    "batchnorm_forward": "bnsym.reference",
    "batchnorm_backward": "bnsym.reference",
}

__all__ = [
    "LAYERS",
    "BatchNorm",
    "BnsymError",
    "Layer",
    "LayerError",
    "Derivation",
    "DerivationError",
    "GeneratedModule",
    "GradientCheckError",
    "ModesReport",
    "OrdersReport",
    "Report",
    "__version__",
    "assert_layer_gradients",
    "batchnorm_backward",
    "batchnorm_forward",
    "check_double_backward",
    "check_function",
    "check_jvp",
    "check_layer",
    "check_torch",
    "derive",
    "generate",
    "load_json",
    "numerical_vjp",
]
assert set(__all__) == set(_LAZY) | {"__version__"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from bnsym.codegen.module import GeneratedModule, generate
    from bnsym.core.options import DerivationError
    from bnsym.derivation import Derivation, derive
    from bnsym.errors import BnsymError
    from bnsym.family.layers import LAYERS, Layer, LayerError
    from bnsym.gradcheck.check import (
        GradientCheckError,
        OrdersReport,
        Report,
        assert_layer_gradients,
        check_double_backward,
        check_function,
        check_layer,
        numerical_vjp,
    )
    from bnsym.gradcheck.jvp import check_jvp
    from bnsym.gradcheck.modes import ModesReport
    from bnsym.notes.json_doc import load_json
    from bnsym.reference import BatchNorm, batchnorm_backward, batchnorm_forward


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bnsym' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
