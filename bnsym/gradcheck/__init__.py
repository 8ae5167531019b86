"""The gradient checker: a layer's backward pass against numerical derivatives of its forward
pass (NumPy only; importing it imports neither SymPy nor PyTorch).

The public functions live in :mod:`bnsym.gradcheck.check` (reverse mode) and
:mod:`bnsym.gradcheck.jvp` (forward mode); :func:`check_torch` (in :mod:`bnsym.gradcheck.pytorch`)
imports PyTorch when it is called.
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
from bnsym.gradcheck.jvp import check_jvp
from bnsym.gradcheck.modes import ModesReport

__all__ = [
    "GradientCheckError",
    "ModesReport",
    "NotALayerError",
    "OrdersReport",
    "Report",
    "assert_layer_gradients",
    "check_double_backward",
    "check_function",
    "check_jvp",
    "check_layer",
    "check_torch",
    "numerical_vjp",
]


def __getattr__(name: str) -> Any:
    if name == "check_torch":
        from bnsym.gradcheck.pytorch import check_torch

        return check_torch
    raise AttributeError(f"module 'bnsym.gradcheck' has no attribute {name!r}")
