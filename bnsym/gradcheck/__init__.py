"""The gradient checker: a layer's backward pass against numerical derivatives of its forward
pass (NumPy only; importing it imports neither SymPy nor PyTorch).

The public functions live in :mod:`bnsym.gradcheck.check`; :func:`check_torch` (in
:mod:`bnsym.gradcheck.pytorch`) imports PyTorch when it is called.
"""

from __future__ import annotations

from typing import Any

from bnsym.gradcheck.check import (
    GradientCheckError,
    NotALayerError,
    OrdersReport,
    Report,
    assert_layer_gradients,
    check_double_backward,
    check_function,
    check_layer,
    numerical_vjp,
)

__all__ = [
    "GradientCheckError",
    "NotALayerError",
    "OrdersReport",
    "Report",
    "assert_layer_gradients",
    "check_double_backward",
    "check_function",
    "check_layer",
    "check_torch",
    "numerical_vjp",
]


def __getattr__(name: str) -> Any:
    if name == "check_torch":
        from bnsym.gradcheck.pytorch import check_torch

        return check_torch
    raise AttributeError(f"module 'bnsym.gradcheck' has no attribute {name!r}")
