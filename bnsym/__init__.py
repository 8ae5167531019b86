"""bnsym: batch normalization derived exactly, generated as NumPy code, checked numerically.

The public surface, by concern:

- ``derive(m, **options) -> Derivation`` — the symbolic derivation (SymPy);
- ``generate(derivation) -> GeneratedModule`` — NumPy code from it (``sympy.lambdify``);
- ``check_layer``, ``check_function``, ``assert_layer_gradients``, ``GradientCheckError`` —
  the finite-difference gradient checker (NumPy only); ``check_double_backward`` checks a
  hand-written double backward too, and says which order failed;
- ``check_torch`` — the same checker on PyTorch functions and modules (imports torch when
  called, never before).

Names are imported lazily, so ``import bnsym`` followed by ``bnsym.check_layer`` never
imports SymPy: the gradient checker and the pytest plugin stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "derive": "bnsym.derivation",
    "Derivation": "bnsym.derivation",
    "DerivationError": "bnsym.symbolic",
    "load_json": "bnsym.render",
    "generate": "bnsym.codegen",
    "GeneratedModule": "bnsym.codegen",
    "check_layer": "bnsym.gradcheck",
    "check_function": "bnsym.gradcheck",
    "check_double_backward": "bnsym.gradcheck",
    "OrdersReport": "bnsym.gradcheck",
    "assert_layer_gradients": "bnsym.gradcheck",
    "numerical_vjp": "bnsym.gradcheck",
    "GradientCheckError": "bnsym.gradcheck",
    "check_torch": "bnsym.gradcheck_torch",
    "Report": "bnsym.gradcheck",
    "BatchNorm": "bnsym.reference",
    "batchnorm_forward": "bnsym.reference",
    "batchnorm_backward": "bnsym.reference",
}

__all__ = [
    "BatchNorm",
    "Derivation",
    "DerivationError",
    "GeneratedModule",
    "GradientCheckError",
    "OrdersReport",
    "Report",
    "__version__",
    "assert_layer_gradients",
    "batchnorm_backward",
    "batchnorm_forward",
    "check_double_backward",
    "check_function",
    "check_layer",
    "check_torch",
    "derive",
    "generate",
    "load_json",
    "numerical_vjp",
]
assert set(__all__) == set(_LAZY) | {"__version__"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from bnsym.codegen import GeneratedModule, generate
    from bnsym.derivation import Derivation, derive
    from bnsym.gradcheck import (
        GradientCheckError,
        OrdersReport,
        Report,
        assert_layer_gradients,
        check_double_backward,
        check_function,
        check_layer,
        numerical_vjp,
    )
    from bnsym.reference import BatchNorm, batchnorm_backward, batchnorm_forward
    from bnsym.render import load_json
    from bnsym.symbolic import DerivationError


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
