"""Check PyTorch code with bnsym's numerics: autograd's backward against numerical derivatives.

:func:`check_torch` takes a function of tensors (a custom ``torch.autograd.Function``'s
``apply`` included) or an ``nn.Module``, and checks what autograd computes for it — the
backward of a custom ``Function``, or the chain of a module's operations — against the
numerical derivatives of its forward, exactly as :func:`bnsym.gradcheck.check.check_function` checks
NumPy code: the same tolerances, the same report, the same hints. A module's parameters are
inputs too, named as the module names them (``weight``, ``0.bias``). ``order=2`` checks the
double backward as ``torch.autograd.gradgradcheck`` does: the gradients, as a function of the
inputs and of ``dout``, against their own numerical derivatives.

``modes=("fwd", "rev")`` checks forward mode too (a custom ``Function``'s ``jvp``, the forward
AD of a module) against numerical directional derivatives (:func:`bnsym.check_jvp`), and with
``order=2`` every composition of the modes (the jvp of the jvp, the jvp of the vjp, the vjp of
the jvp, the vjp of the vjp), as JAX's ``check_grads`` does; the report
(:class:`~bnsym.gradcheck.modes.ModesReport`) leads with the mode and order that failed.

PyTorch stays optional: this module imports it only when :func:`check_torch` runs, so
``import bnsym`` never does.

>>> import torch
>>> x = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)
>>> check_torch(torch.tanh, x).passed
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bnsym.errors import BnsymError
from bnsym.gradcheck.check import METHODS, MODES, Report, function_check
from bnsym.gradcheck.inputs import (
    CheckTypeError,
    CheckValueError,
    DtypeError,
    complex_input,
    raised,
    unchecked,
    validate_names,
)
from bnsym.gradcheck.jvp import check_jvp
from bnsym.gradcheck.modes import ModesReport
from bnsym.gradcheck.precision import LowSpec
from bnsym.gradcheck.steps import with_changes
from bnsym.gradcheck.words import ModesError, Word, parse_modes, parse_order, words

__all__ = ["TorchMissingError", "check_torch"]


class TorchMissingError(BnsymError, ImportError):
    """PyTorch is not installed: ``check_torch`` has nothing to check with."""


def check_torch(
    fn: Any,
    *tensors: Any,
    order: int = 1,
    modes: Sequence[str] | str | None = None,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    mode: str = "auto",
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
) -> Any:
    """Check autograd's gradients of ``fn(*tensors)`` against numerical derivatives.

    fn: a function of tensors returning a tensor or a tuple of tensors (e.g. ``MyFn.apply``
        of a custom ``torch.autograd.Function``), or an ``nn.Module`` (its parameters are
        checked too, after the tensors, under their names; its buffers are copied per call,
        so running statistics of the module are left as they were).
    tensors: the inputs; floating-point ones are checked (never modified), integer and
        complex ones (labels, indices) are constants. Other arguments pass through unchanged.
    order: without ``modes``, 1 checks the backward and 2 the double backward (the gradients
        as functions of the inputs and of ``dout``, which is then an input named ``dout``).
    modes: ``("fwd",)``, ``("rev",)`` or ``("fwd", "rev")`` (or ``"fwd,rev"``): check every
        composition of these modes of order 1 to ``order`` — the jvp (``torch.autograd.
        forward_ad``: a custom Function's ``jvp``) and the vjp at order 1, and at order 2 the
        jvp of the jvp, the jvp of the vjp (forward over reverse), the vjp of the jvp and the
        vjp of the vjp. The seeds of the inner derivative are inputs at order 2, named
        ``dout`` (a vjp's cotangent) and ``tx, ...`` (a jvp's tangents).
    wrt, seed, mode, method, rtol, atol, names: as :func:`bnsym.gradcheck.check.check_function`.

    Returns a :class:`~bnsym.gradcheck.check.Report` without ``modes``, else a
    :class:`~bnsym.gradcheck.modes.ModesReport` (one report per composition). An unknown mode,
    an order above 2, a custom Function without a ``jvp`` asked for forward mode, or a tensor
    the checker cannot read is a bnsym exception (:class:`~bnsym.gradcheck.words.ModesError`,
    :class:`~bnsym.gradcheck.inputs.DtypeError`); a jvp or backward that raises is a report.

    >>> import torch
    >>> class Square(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def backward(ctx, dout):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x * dout  # should be 2 * x * dout
    >>> report = check_torch(Square.apply, torch.ones(4, dtype=torch.float64))
    >>> report.passed, report.inputs[0].hints[0]
    (False, 'analytic = 1.5 x numerical for every entry of x: a constant factor (+50%)')
    """
    try:
        import torch
    except ImportError:
        raise TorchMissingError(
            "check_torch needs PyTorch, which is not installed; "
            "pip install 'bnsym[torch]' adds the tested version"
        ) from None
    from bnsym.gradcheck.torch_calls import TorchCode, function_class, has_own

    if modes is None:
        integer = isinstance(order, int | np.integer) and not isinstance(order, bool)
        if not integer or order not in (1, 2):  # 2.0 == 2, but is no order
            raise ModesError(f"order must be 1 (backward) or 2 (double backward), not {order!r}")
        wanted: list[Word] = [("rev",) * int(order)]
    else:
        wanted = words(parse_modes(modes), parse_order(order))
    if mode not in MODES:  # checked here too: forward mode alone would never look at it
        raise CheckValueError(f"mode must be one of {MODES}, not {mode!r:.60}")
    if method not in METHODS:
        raise CheckValueError(f"method must be one of {METHODS}, not {method!r:.60}")
    if method == "complex" and any(len(w) > 1 for w in wanted):
        # PyTorch's autograd of complex numbers is conjugate Wirtinger calculus, not the
        # holomorphic extension: a complex step through a derivative it computed flips signs
        raise CheckValueError(
            "method='complex' cannot check order 2: the complex step would differentiate "
            "PyTorch's autograd, whose complex derivatives are not holomorphic; use "
            "method='auto' or 'richardson'"
        )
    if not callable(fn):
        raise CheckTypeError(f"fn must be a function of tensors or an nn.Module, not {fn!r:.60}")
    code = TorchCode(fn, len(tensors))
    owner = function_class(fn)
    if owner is not None and any("fwd" in w for w in wanted) and not has_own(owner, "jvp"):
        raise ModesError(
            f"{code.name} has no jvp, so forward mode cannot be checked; define a jvp "
            "staticmethod on the Function (or check modes=('rev',))"
        )
    notes = []
    if owner is not None and ("fwd", "fwd") in wanted:
        # dual tensors do not nest and torch.func.jvp does not differentiate a Function's jvp
        # (it returns 0: pytorch/pytorch#197867), so PyTorch has no jvp of the jvp to check
        wanted.remove(("fwd", "fwd"))
        notes.append(
            f"the jvp of the jvp is not checked: PyTorch cannot compute it for {code.name} "
            "(torch.func.jvp does not differentiate a custom Function's jvp, pytorch/pytorch"
            "#197867, and forward_ad does not nest); the vjp of the jvp checks that the jvp "
            "is differentiable"
        )
    input_names = validate_names(names, len(tensors) + len(code.params))
    input_names = input_names or code.names()
    arrays: list[Any] = [
        _input_array(t, input_names[k], torch) for k, t in enumerate(tensors)
    ] + code.parameters()
    for k, t in enumerate(tensors):
        if isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16:
            code.low[k] = t.dtype  # held in float32 by the checker, run in bfloat16
    low_names = [
        f"{input_names[k]} ({str(t.dtype).removeprefix('torch.')})"
        for k, t in enumerate([*tensors, *(p for _, p in code.params)])
        if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16)
    ]
    if low_names and wanted != [("rev",)]:
        raise DtypeError(
            f"input {low_names[0]} is judged in reverse mode at order 1 only (bfloat16 and "
            "float16 backwards against the same code in float64); check forward mode and order "
            "2 in float32 or float64"
        )
    floating = [
        i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    ]
    options: dict[str, Any] = dict(seed=seed, rtol=rtol, atol=atol)
    reports = [
        _check_word(code, w, arrays, floating, input_names, wrt, mode, method, options)
        for w in wanted
    ]
    if modes is None:  # as before modes existed: the Report of the backward or double backward
        return replace(reports[0], word=())
    return ModesReport(tuple(reports), notes=tuple(notes))


# what the reports call PyTorch's computation of each composition, and its inner derivative
_WHO: dict[Word, tuple[str, str]] = {
    ("rev",): ("{}", "autograd backward of {}"),
    ("fwd",): ("{}", "forward-mode AD of {}"),
    ("rev", "rev"): ("autograd backward of {}", "autograd double backward of {}"),
    ("fwd", "rev"): ("autograd backward of {}", "forward-mode AD of the autograd backward of {}"),
    ("rev", "fwd"): ("forward-mode AD of {}", "autograd backward of the forward-mode AD of {}"),
    ("fwd", "fwd"): ("torch.func.jvp of {}", "torch.func.jvp of torch.func.jvp of {}"),
}


def _check_word(
    code: Any,
    word: Word,
    arrays: list[Any],
    floating: list[int],
    input_names: list[str],
    wrt: Sequence[int | str] | None,
    mode: str,
    method: str,
    options: dict[str, Any],
) -> Report:
    """One composition: :func:`check_function` (outer vjp) or :func:`check_jvp` (outer jvp)
    of the inner derivative as PyTorch computes it, as a function of the inputs and seeds."""
    g, dg = code.derivative(word, floating, len(arrays))
    g_name, dg_name = (who.format(code.name) for who in _WHO[word])
    g.__qualname__, dg.__qualname__ = g_name, dg_name
    try:
        seeds, seed_names = _seeds(code, word, arrays, floating, input_names, options["seed"])
    except Exception as exc:  # the forward raised on the inputs: as at order 1, a report
        complex_input(code.name, exc, input_names, arrays)  # or a DtypeError, as at order 1
        inputs = tuple(
            with_changes(unchecked(n, a, i in floating), judged=i not in floating)
            for i, (n, a) in enumerate(zip(input_names, arrays, strict=True))
        )
        return Report(
            False,
            seed=options["seed"],
            mode=mode if word[0] == "rev" else "probe",
            inputs=inputs,
            forward=g_name,
            backward=dg_name,
            problems=(raised(code.name, exc, input_names, arrays),),
            evaluations=1,
            raised="forward",
            word=word,
        )
    names = input_names + seed_names
    # the seeds of order 2 are checked with the inputs asked for
    wrt_all = wrt if wrt is None or not seed_names else [*wrt, *seed_names]
    if len(word) > 1 and method == "auto":
        # the inner derivative is PyTorch's AD, whose complex extension is not the holomorphic
        # one (conjugate Wirtinger calculus; a complex tangent on a real primal is cast):
        # complex steps through it agreed along one direction and not along another
        method = "richardson"
    if word[0] == "rev":
        options = dict(options, wrt=wrt_all, mode=mode, method=method)
        low = LowSpec({i: "bfloat16" for i in code.low}, lambda: code.out_dtypes)
        report = function_check(g, dg, [*arrays, *seeds], names, None, "dout", options, low)
    else:
        jvp_method = "richardson" if method == "richardson" else "auto"
        report = check_jvp(g, dg, *arrays, *seeds, names=names, wrt=wrt_all, method=jvp_method,
                           **options)  # fmt: skip
    return replace(report, word=word)


def _seeds(
    code: Any,
    word: Word,
    arrays: list[Any],
    floating: list[int],
    input_names: list[str],
    seed: int,
) -> tuple[list[np.ndarray], list[str]]:
    """The seeds of the inner derivative at order 2 (none at order 1): a cotangent per output
    for a vjp, named ``dout``; a tangent per floating input for a jvp, named ``t`` + its name."""
    if len(word) == 1:
        return [], []
    rng = np.random.default_rng([seed, 0x67726432])  # "grd2": not the caller's stream
    if word[1] == "rev":
        out = code.forward(*[np.array(a) if isinstance(a, np.ndarray) else a for a in arrays])
        outs = out if isinstance(out, tuple) else (out,)
        douts = [rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in outs]
        names = ["dout"] if len(douts) == 1 else [f"dout{k}" for k in range(len(douts))]
        return douts, names
    tangents = [rng.standard_normal(np.shape(arrays[i])).astype(arrays[i].dtype) for i in floating]
    return tangents, [f"t{input_names[i]}" for i in floating]


def _input_array(t: Any, name: str, torch: Any) -> Any:
    """A tensor as the NumPy array the checker works on; a tensor it cannot read is a
    :class:`DtypeError` naming the input, its dtype and device."""
    if not isinstance(t, torch.Tensor):
        return t
    from bnsym.gradcheck.torch_calls import to_numpy

    try:
        return to_numpy(t)
    except (TypeError, RuntimeError, NotImplementedError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        dtype = str(t.dtype).removeprefix("torch.")
        if t.device.type == "cpu":  # NumPy has no such dtype (complex32, float8, ...)
            raise DtypeError(
                f"input {name!r} has dtype {dtype}, which the checker does not support "
                f"({first}); give float64, float32, float16 or bfloat16 (integer and complex64/"
                "128 tensors are constants)"
            ) from None
        raise DtypeError(
            f"input {name!r} is a {str(t.dtype).removeprefix('torch.')} tensor on device "
            f"{t.device} that the checker cannot read ({first}); give it on the CPU"
        ) from None
