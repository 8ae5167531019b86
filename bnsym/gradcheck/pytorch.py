"""Check PyTorch code with bnsym's numerics: autograd's backward against numerical derivatives.

:func:`check_torch` takes a function of tensors (a custom ``torch.autograd.Function``'s
``apply`` included) or an ``nn.Module``, and checks what autograd computes for it — the
backward of a custom ``Function``, or the chain of a module's operations — against the
numerical derivatives of its forward, exactly as :func:`bnsym.gradcheck.check.check_function` checks
NumPy code: the same tolerances, the same report, the same hints. A module's parameters are
inputs too, named as the module names them (``weight``, ``0.bias``). ``order=2`` checks the
double backward as ``torch.autograd.gradgradcheck`` does: the gradients, as a function of the
inputs and of ``dout``, against their own numerical derivatives.

PyTorch stays optional: this module imports it only when :func:`check_torch` runs, so
``import bnsym`` never does.

>>> import torch
>>> x = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)
>>> check_torch(torch.tanh, x).passed
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bnsym.errors import BnsymError
from bnsym.gradcheck.check import Report, check_function
from bnsym.gradcheck.inputs import CheckTypeError, CheckValueError, callable_name, param_names

__all__ = ["TorchMissingError", "check_torch"]


class TorchMissingError(BnsymError, ImportError):
    """PyTorch is not installed: ``check_torch`` has nothing to check with."""


def check_torch(
    fn: Any,
    *tensors: Any,
    order: int = 1,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    mode: str = "auto",
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
) -> Report:
    """Check autograd's gradients of ``fn(*tensors)`` against numerical derivatives.

    fn: a function of tensors returning a tensor or a tuple of tensors (e.g. ``MyFn.apply``
        of a custom ``torch.autograd.Function``), or an ``nn.Module`` (its parameters are
        checked too, after the tensors, under their names; its buffers are copied per call,
        so running statistics of the module are left as they were).
    tensors: the inputs; floating-point ones are checked (never modified), integer ones
        (labels, indices) are constants. Other arguments pass through unchanged.
    order: 1 checks the backward; 2 the double backward (the gradients as functions of the
        inputs and of ``dout``, which is then an input named ``dout``).
    wrt, seed, mode, method, rtol, atol, names: as :func:`bnsym.gradcheck.check.check_function`.

    Returns a :class:`~bnsym.gradcheck.check.Report`.

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
            "install it with: pip install 'bnsym[torch]' (or pip install torch)"
        ) from None

    if order not in (1, 2):
        raise CheckValueError(f"order must be 1 (backward) or 2 (double backward), not {order!r}")
    if not callable(fn):
        raise CheckTypeError(f"fn must be a function of tensors or an nn.Module, not {fn!r:.60}")
    module = fn if isinstance(fn, torch.nn.Module) else None
    n_args = len(tensors)
    arrays: list[Any] = [_to_numpy(t) for t in tensors]
    input_names = list(names) if names is not None else None
    if module is not None:
        params = list(module.named_parameters())
        arrays += [p.detach().cpu().numpy() for _, p in params]
        if input_names is None:
            input_names = _names(module.forward, n_args) + [name for name, _ in params]
        buffers = dict(module.named_buffers())
    elif input_names is None:
        input_names = _names(fn, n_args)
    name = type(fn).__name__ if module is not None else _torch_name(fn)
    floating = [
        i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
    ]

    def call(inputs: Sequence[Any]) -> Any:
        if module is None:
            return fn(*inputs)
        state = {k: p for (k, _), p in zip(params, inputs[n_args:], strict=True)}
        state.update({k: b.clone() for k, b in buffers.items()})  # running stats stay as they were
        return torch.func.functional_call(module, state, tuple(inputs[:n_args]))

    def forward(*inputs: Any) -> Any:
        tensors = [_to_tensor(a) for a in inputs]
        with torch.no_grad():
            if not any(isinstance(t, torch.Tensor) and t.is_complex() for t in tensors):
                return _outputs_to_numpy(call(tensors))
            # the complex step: a cast that drops the imaginary part must stop it (the step is
            # then not usable), never warn the caller about the checker's own complex inputs
            with warnings.catch_warnings():
                warnings.filterwarnings("error", message="Casting complex values to real")
                return _outputs_to_numpy(call(tensors))

    def gradients(dout: Any, inputs: Sequence[Any], create_graph: bool) -> Any:
        """(tensors, gradient tensors) of the floating inputs for the upstream ``dout``."""
        ts = [_to_tensor(a, i in floating) for i, a in enumerate(inputs)]
        with torch.enable_grad():
            out = call(ts)
            outs = list(out) if isinstance(out, tuple | list) else [out]
            douts = list(dout) if isinstance(dout, tuple) else [dout]
            grads = torch.autograd.grad(
                outs,
                [ts[i] for i in floating],
                grad_outputs=[_to_tensor(d) for d in douts],
                create_graph=create_graph,
                allow_unused=True,
                materialize_grads=True,
            )
        return ts, grads

    def backward(dout: Any, *inputs: Any) -> tuple[Any, ...]:
        _, grads = gradients(dout, inputs, create_graph=False)
        result: list[Any] = [None] * len(inputs)
        for i, g in zip(floating, grads, strict=True):
            result[i] = g.detach().cpu().numpy()
        return tuple(result)

    options: dict[str, Any] = dict(
        seed=seed, mode=mode, method=method, rtol=rtol, atol=atol, wrt=wrt
    )
    if order == 1:
        forward.__qualname__ = name
        backward.__qualname__ = f"autograd backward of {name}"
        return check_function(forward, backward, *arrays, names=input_names, **options)

    # order 2: the gradients g(inputs, dout) = dout . d fn / d inputs are the function, and the
    # backward of the backward (autograd's double backward) its vector-Jacobian product
    out = forward(*[np.array(a) if isinstance(a, np.ndarray) else a for a in arrays])
    outs = out if isinstance(out, tuple) else (out,)
    rng = np.random.default_rng([seed, 0x67726432])  # "grd2": not the caller's stream
    douts = [rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in outs]
    n_in = len(arrays)

    def first_gradients(*inputs_dout: Any) -> tuple[Any, ...]:
        inputs, dout = inputs_dout[:n_in], inputs_dout[n_in:]
        d = tuple(dout) if isinstance(out, tuple) else dout[0]
        grads = [g for g in backward(d, *inputs) if g is not None]
        return tuple(grads)

    def double_backward(ddgrads: Any, *inputs_dout: Any) -> tuple[Any, ...]:
        inputs, dout = inputs_dout[:n_in], inputs_dout[n_in:]
        dts = [_to_tensor(d, True) for d in dout]
        d = tuple(dts) if isinstance(out, tuple) else dts[0]
        ts, grads = gradients(d, inputs, create_graph=True)
        dd = list(ddgrads) if isinstance(ddgrads, tuple) else [ddgrads]
        wrt_tensors = [ts[i] for i in floating] + dts
        with torch.enable_grad():
            second = torch.autograd.grad(
                [g for g in grads],
                wrt_tensors,
                grad_outputs=[_to_tensor(x) for x in dd],
                allow_unused=True,
                materialize_grads=True,
            )
        result: list[Any] = [None] * (n_in + len(dts))
        for i, g in zip(floating + list(range(n_in, n_in + len(dts))), second, strict=True):
            result[i] = g.detach().cpu().numpy()
        return tuple(result)

    first_gradients.__qualname__ = f"autograd backward of {name}"
    double_backward.__qualname__ = f"autograd double backward of {name}"
    dout_names = ["dout"] if len(douts) == 1 else [f"dout{k}" for k in range(len(douts))]
    return check_function(
        first_gradients,
        double_backward,
        *arrays,
        *douts,
        names=list(input_names) + dout_names,
        **options,
    )


def _to_numpy(t: Any) -> Any:
    import torch

    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return t


def _to_tensor(a: Any, requires_grad: bool = False) -> Any:
    import torch

    if isinstance(a, np.generic):  # a 0-d dout arrives as a NumPy scalar
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        return a
    # the array itself where torch can share it, so that a forward writing into its input is
    # seen by the checker; else a C-ordered copy (not ascontiguousarray: it makes 0-d 1-d)
    shared = a.flags.c_contiguous and a.flags.writeable
    t = torch.from_numpy(a if shared else np.array(a, order="C"))
    return t.requires_grad_(True) if requires_grad else t


def _outputs_to_numpy(out: Any) -> Any:
    if isinstance(out, tuple | list):
        return tuple(_to_numpy(o) for o in out)
    return _to_numpy(out)


def _function_class(fn: Any) -> Any:
    """The custom ``torch.autograd.Function`` whose ``apply`` fn is, else None."""
    import torch

    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        return owner
    return None


def _names(fn: Callable[..., Any], n: int) -> list[str]:
    """The parameter names of fn (of a custom Function's forward, after ``ctx``)."""
    owner = _function_class(fn)
    try:
        if owner is not None:
            return param_names(owner.forward, n + 1)[1:]
        return param_names(fn, n)
    except Exception:  # a builtin without a signature
        return [f"x{i}" for i in range(n)]


def _torch_name(fn: Any) -> str:
    """``Square.apply`` for a custom Function's apply, else the function's name."""
    owner = _function_class(fn)
    if owner is not None:
        return f"{owner.__name__}.apply"
    return getattr(fn, "__name__", None) or callable_name(fn)
