"""PyTorch code as NumPy functions for the checker: the forward, and every mode's derivative as
PyTorch computes it.

:func:`bnsym.gradcheck.pytorch.check_torch` checks what autograd computes with the same NumPy
checks that check hand-written code; this module is the bridge. :class:`TorchCode` wraps a
function of tensors or an ``nn.Module`` (its parameters become inputs, its buffers are copied
per call) and gives, as functions of NumPy arrays:

- :meth:`~TorchCode.forward`: the outputs;
- :meth:`~TorchCode.derivative`: the derivative of a composition of modes (a *word*, outer
  first, :mod:`bnsym.gradcheck.words`) as PyTorch computes it, the inner derivative taken as a
  function of the inputs and of its seeds (the cotangent ``dout`` of a vjp, the tangents
  ``tx, ...`` of a jvp).

How PyTorch computes each composition, a table (:data:`HOW`): reverse mode is
``torch.autograd.grad``, forward mode ``torch.autograd.forward_ad`` (dual tensors: a custom
``Function``'s ``jvp``, old style or new), and the jvp of a jvp ``torch.func.jvp`` twice (dual
tensors do not nest). Imports PyTorch: only :mod:`bnsym.gradcheck.pytorch` imports this module,
when :func:`check_torch` runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from bnsym.gradcheck.inputs import callable_name, param_names
from bnsym.gradcheck.words import Word

__all__ = ["HOW", "TorchCode"]

# word -> how PyTorch computes it, as the reports say it
HOW: dict[Word, str] = {
    ("rev",): "torch.autograd.grad",
    ("fwd",): "torch.autograd.forward_ad",
    ("rev", "rev"): "torch.autograd.grad of torch.autograd.grad(create_graph=True)",
    ("fwd", "rev"): "torch.autograd.forward_ad over torch.autograd.grad(create_graph=True)",
    ("rev", "fwd"): "torch.autograd.grad of the torch.autograd.forward_ad tangent",
    ("fwd", "fwd"): "torch.func.jvp of torch.func.jvp",
}


def to_numpy(t: Any) -> Any:
    """A tensor as a NumPy array (a ZeroTensor, a conjugate or negative view materialized);
    anything else as it is."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if t._is_zerotensor():  # autograd's structural zeros refuse .numpy()
        return np.zeros(tuple(t.shape), dtype=to_numpy(torch.zeros((), dtype=t.dtype)).dtype)
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: its values, exactly, in float32
        t = t.float()
    return t.resolve_conj().resolve_neg().cpu().numpy()


def to_tensor(a: Any, requires_grad: bool = False) -> Any:
    """A NumPy array as a tensor (sharing its memory where torch can, so that a forward writing
    into its input is seen by the checker); anything else as it is."""
    if isinstance(a, np.generic):  # a 0-d dout arrives as a NumPy scalar
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        return a
    # else a C-ordered copy (not ascontiguousarray: it makes 0-d 1-d)
    shared = a.flags.c_contiguous and a.flags.writeable
    t = torch.from_numpy(a if shared else np.array(a, order="C"))
    return t.requires_grad_(True) if requires_grad else t


def function_class(fn: Any) -> Any:
    """The custom ``torch.autograd.Function`` whose ``apply`` fn is, else None."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        return owner
    return None


def has_own(owner: Any, method: str) -> bool:
    """Whether a custom Function defines ``method`` (jvp, setup_context) itself."""
    base = torch.autograd.function._SingleLevelFunction
    return getattr(owner, method, None) is not getattr(base, method)


class complex_guard:  # noqa: N801 - used like a function
    """Around a call on the checker's complex-step inputs: a cast that drops the imaginary part
    raises (the step is then not usable) instead of warning the caller about the checker's own
    complex numbers. Nothing to do for real inputs."""

    def __init__(self, tensors: Sequence[Any]) -> None:
        self.active = any(isinstance(t, torch.Tensor) and t.is_complex() for t in tensors)

    def __enter__(self) -> None:
        if self.active:
            self.context: Any = warnings.catch_warnings()
            self.context.__enter__()
            # what PyTorch says about the checker's complex numbers is not the caller's
            # business ("Mismatch dtype between input and weight ... complex"), and dropping
            # an imaginary part means the step is not usable
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", message="Casting complex values to real")

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self.context.__exit__(*exc)


class TorchCode:
    """A function of tensors, or an ``nn.Module``, called on NumPy arrays.

    fn: the function (``MyFn.apply`` included) or module; n_args: the tensors it takes; the
    module's parameters follow them as inputs, named as the module names them.
    """

    def __init__(self, fn: Any, n_args: int) -> None:
        self.fn = fn
        self.module = fn if isinstance(fn, torch.nn.Module) else None
        self.n_args = n_args
        # input position -> dtype of an input the checker holds in another dtype (bfloat16)
        self.low: dict[int, Any] = {}
        self.out_dtypes: list[str] = []  # of the outputs of the last forward
        if self.module is not None:
            self.params = list(self.module.named_parameters())
            self.buffers = dict(self.module.named_buffers())
            self.name = type(fn).__name__
        else:
            self.params, self.buffers = [], {}
            owner = function_class(fn)
            self.name = (
                f"{owner.__name__}.apply"
                if owner is not None
                else getattr(fn, "__name__", None) or callable_name(fn)
            )

    def parameters(self) -> list[np.ndarray]:
        """The module's parameters as arrays (a bfloat16 one held in float32, and noted in
        :attr:`low` so that the code gets it back in bfloat16)."""
        for k, (_, p) in enumerate(self.params):
            if p.dtype == torch.bfloat16:
                self.low[self.n_args + k] = p.dtype
        return [to_numpy(p) for _, p in self.params]

    def tensors(self, arrays: Sequence[Any]) -> list[Any]:
        """The inputs as tensors for the code: an input given in bfloat16 (:attr:`low`) gets
        its bfloat16 values back as bfloat16, and runs in float64 when the checker gives it
        float64 values (the float64 check of the same code)."""
        ts = [to_tensor(a) for a in arrays]
        for i, dtype in self.low.items():
            if i < len(ts) and isinstance(ts[i], torch.Tensor) and ts[i].dtype == torch.float32:
                ts[i] = ts[i].to(dtype)
        return ts

    def names(self) -> list[str]:
        """The inputs' names: the parameter names of fn (of a custom Function's forward, after
        ``ctx``; of a module's forward), then the module's parameters."""
        owner = function_class(self.fn)
        target = self.module.forward if self.module is not None else self.fn
        try:
            if owner is not None and not has_own(owner, "setup_context"):
                found = param_names(owner.forward, self.n_args + 1)[1:]
            elif owner is not None:
                found = param_names(owner.forward, self.n_args)
            else:
                found = param_names(target, self.n_args)
        except Exception:  # a builtin without a signature
            found = [f"x{i}" for i in range(self.n_args)]
        return found + [name for name, _ in self.params]

    # -- calls -------------------------------------------------------------------------------

    def call(self, inputs: Sequence[Any]) -> list[Any]:
        """The outputs of fn for tensors ``inputs`` (the module's parameters last), as a list."""
        if self.module is None:
            out = self.fn(*inputs)
        else:
            n = self.n_args
            state = {k: p for (k, _), p in zip(self.params, inputs[n:], strict=True)}
            # running statistics stay as they were
            state.update({k: b.clone() for k, b in self.buffers.items()})
            out = torch.func.functional_call(self.module, state, tuple(inputs[:n]))
        return list(out) if isinstance(out, tuple | list) else [out]

    def forward(self, *arrays: Any) -> Any:
        """The outputs for NumPy inputs, as NumPy (a tuple for several outputs)."""
        tensors = self.tensors(arrays)
        with torch.no_grad(), complex_guard(tensors):
            out = self._raw(tensors)
        outs = out if isinstance(out, tuple | list) else [out]
        self.out_dtypes = [
            str(o.dtype).removeprefix("torch.") for o in outs if isinstance(o, torch.Tensor)
        ]
        return self._numpy(out)

    def _raw(self, tensors: list[Any]) -> Any:
        if self.module is None:
            return self.fn(*tensors)
        outs = self.call(tensors)
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def _numpy(out: Any) -> Any:
        if isinstance(out, tuple | list):
            return tuple(to_numpy(o) for o in out)
        return to_numpy(out)

    # -- derivatives ---------------------------------------------------------------------------

    def vjp(self, ts: list[Any], floating: list[int], douts: list[Any], graph: bool) -> list[Any]:
        """Reverse mode: dout . d outputs / d input for the floating inputs (tensors that
        require grad), a graph kept if ``graph``."""
        with torch.enable_grad():
            outs = self.call(ts)
            # a low-precision output's dout arrives held in float32: give it back its dtype
            douts = [
                d.to(o.dtype)
                if _low(o) and isinstance(d, torch.Tensor) and d.dtype != o.dtype
                else d
                for d, o in zip(douts, outs, strict=True)
            ]
            return list(
                torch.autograd.grad(
                    outs,
                    [ts[i] for i in floating],
                    grad_outputs=list(douts),
                    create_graph=graph,
                    allow_unused=True,
                    materialize_grads=True,
                )
            )

    def jvp(self, ts: list[Any], tangents: dict[int, Any]) -> list[Any]:
        """Forward mode (dual tensors): the tangent of every output along ``tangents`` (input
        position -> tangent tensor); zeros for an output that does not depend on them."""
        with fwad.dual_level():
            duals = [
                fwad.make_dual(t, tangents[i]) if i in tangents else t for i, t in enumerate(ts)
            ]
            outs = self.call(duals)
            found = []
            for o in outs:
                tangent = fwad.unpack_dual(o).tangent
                found.append(
                    torch.zeros_like(fwad.unpack_dual(o).primal) if tangent is None else tangent
                )
            return found

    def jvp_func(self, ts: list[Any], floating: list[int], tangents: list[Any]) -> list[Any]:
        """Forward mode through ``torch.func.jvp`` (which nests): the tangents of the outputs
        along ``tangents`` of the floating inputs."""

        def f(*moved: Any) -> tuple[Any, ...]:
            args = list(ts)
            for i, m in zip(floating, moved, strict=True):
                args[i] = m
            return tuple(self.call(args))

        touts = torch.func.jvp(f, tuple(ts[i] for i in floating), tuple(tangents))[1]
        return list(touts)

    def derivative(
        self, word: Word, floating: list[int], n_inputs: int
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """``(g, dg)``: the function whose derivative ``word[0]`` is checked, and that
        derivative as PyTorch computes it, both of NumPy arrays.

        Order 1: ``g`` is the forward. Order 2: ``g(*inputs, *seeds)`` is the inner
        derivative ``word[1]`` (the vjp's gradients of the floating inputs for cotangents
        ``seeds``, one per output; or the jvp's tangent outputs for tangents ``seeds``, one
        per floating input). ``dg`` is ``vjp(c, *args) -> grads`` (one per arg, None for
        constants) for an outer ``"rev"``, ``jvp(*args, *tangents) -> tangent outputs`` for
        an outer ``"fwd"``.
        """
        n = n_inputs
        inner = word[1] if len(word) > 1 else None

        def split(ts: list[Any]) -> tuple[list[Any], list[Any]]:
            return ts[:n], ts[n:]

        def inner_torch(ts: list[Any], graph: bool) -> list[Any]:
            """The inner derivative at tensors ``ts`` (inputs then seeds)."""
            if inner is None:
                return self.call(ts)
            primal, seeds = split(ts)
            if inner == "rev":
                return self.vjp(primal, floating, seeds, graph)
            return self.jvp(primal, dict(zip(floating, seeds, strict=True)))

        def moved(args: Sequence[Any]) -> list[int]:
            """Positions the outer derivative moves: the floating inputs, then every seed."""
            return floating + list(range(n, len(args)))

        def g(*args: Any) -> Any:
            if inner is None:
                return self.forward(*args)
            ts = self.tensors(args)
            for i in moved(args):
                ts[i] = ts[i].detach().requires_grad_(inner == "rev" and i < n)
            with complex_guard(ts):
                return tuple(to_numpy(o) for o in inner_torch(ts, graph=False))

        def vjp(c: Any, *args: Any) -> tuple[Any, ...]:
            ts = self.tensors(args)
            at = moved(args)
            for i in at:
                ts[i] = ts[i].detach().requires_grad_(True)
            cs = [to_tensor(x) for x in (c if isinstance(c, tuple | list) else [c])]
            with torch.enable_grad():
                outs = inner_torch(ts, graph=True)
                cs = [
                    x.to(o.dtype) if _low(o) and x.dtype != o.dtype else x
                    for x, o in zip(cs, outs, strict=True)
                ]
                grads = torch.autograd.grad(
                    outs,
                    [ts[i] for i in at],
                    grad_outputs=cs,
                    allow_unused=True,
                    materialize_grads=True,
                )
            result: list[Any] = [None] * len(args)
            for i, gr in zip(at, grads, strict=True):
                result[i] = to_numpy(gr)
            return tuple(result)

        def jvp(*args_tangents: Any) -> tuple[Any, ...]:
            half = len(args_tangents) // 2
            args, tangents = args_tangents[:half], args_tangents[half:]
            ts = self.tensors(args)
            at = moved(args)
            tts = {i: to_tensor(tangents[i]) for i in at}
            if inner == "fwd":  # dual tensors do not nest: torch.func twice

                def tangent_of(*xs: Any) -> tuple[Any, ...]:
                    return tuple(self.jvp_func(list(xs[:n]), floating, list(xs[n:])))

                everything = [i for i in range(len(ts)) if i in at]
                touts = torch.func.jvp(
                    lambda *xs: tangent_of(*_placed(ts, everything, xs)),
                    tuple(ts[i] for i in everything),
                    tuple(tts[i] for i in everything),
                )[1]
                return tuple(to_numpy(t) for t in touts)
            if inner == "rev":  # dual tensors through autograd.grad(create_graph=True)
                with fwad.dual_level():
                    duals = list(ts)
                    for i in at:
                        duals[i] = fwad.make_dual(ts[i].detach().requires_grad_(i < n), tts[i])
                    with torch.enable_grad():
                        outs = inner_torch(duals, graph=True)
                    touts = []
                    for o in outs:
                        tangent = fwad.unpack_dual(o).tangent
                        touts.append(torch.zeros_like(o) if tangent is None else tangent)
                    return tuple(to_numpy(t) for t in touts)
            touts = self.jvp(ts, tts)
            result = tuple(to_numpy(t) for t in touts)
            return result if len(result) > 1 else result[0]  # as g returns the outputs

        return g, (vjp if word[0] == "rev" else jvp)


def _low(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16)


def _placed(ts: list[Any], positions: list[int], values: Sequence[Any]) -> list[Any]:
    """``ts`` with ``values`` at ``positions``."""
    found = list(ts)
    for i, v in zip(positions, values, strict=True):
        found[i] = v
    return found
