"""Check a layer's backward pass against numerical derivatives of its forward pass (NumPy only).

The backward pass of a layer returns vector-Jacobian products: given the upstream gradient
``dout`` it returns ``dx = dout . d(out)/dx`` for every input. That is the gradient of the scalar
``L(inputs) = sum(dout * forward(inputs))``, so the checker draws a seeded random ``dout`` and
compares each returned gradient with numerical derivatives of ``L``:

- ``mode="full"``: every entry of every input (one complex-step evaluation per entry, or four
  finite-difference evaluations);
- ``mode="probe"``: per input, random signed directions, which see an error anywhere in its
  gradient, and a few sampled entries; where a direction disagrees, more sampled entries and a
  bisection of the direction down to a wrong entry. A failing input of up to ``SMALL_INPUT``
  entries (gamma, beta, a bias) is compared entry by entry, so that swapped gradients are named;
- ``mode="auto"``: ``full`` up to ``FULL_LIMIT`` checked entries, ``probe`` above.

The tolerance of each input is ``atol + rtol * |numerical|`` with ``rtol`` 1000 units of the
working precision (at least 1e-9) and ``atol`` from the error estimates, so a correct float64
layer is held to about 1e-9 and a correct float32 one to about 1e-4.

This module holds the public API and the sequence of the check (safety, analytic gradients,
tolerances, comparison, report). The parts, one idea each: ``_gradcheck_numeric`` (the
numerical derivatives and their error estimates), ``_gradcheck_compare`` (one input's
comparison), ``_gradcheck_hints`` (patterns of common bugs), ``_gradcheck_inputs`` (calling
conventions and safety messages), ``_gradcheck_report`` (the report and its text).

>>> import numpy as np
>>> def scale_forward(x, w):
...     return x * w, (x, w)
>>> def scale_backward(dout, cache):
...     x, w = cache
...     return dout * w, dout * x
>>> x, w = np.arange(1.0, 5.0), np.full(4, 0.5)
>>> check_layer(scale_forward, scale_backward, x, w).passed
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnsym._gradcheck_compare import Comparison
from bnsym._gradcheck_hints import swap_hints
from bnsym._gradcheck_inputs import (
    as_outputs,
    callable_name,
    copy_input,
    eps_of,
    float_dtype,
    nonfinite,
    normalize_grads,
    output_label,
    param_names,
    resolve_wrt,
    same,
    unchecked,
    where_differs,
)
from bnsym._gradcheck_numeric import EPS64, Loss
from bnsym._gradcheck_report import Entry, InputResult, Report

__all__ = [
    "FULL_LIMIT",
    "GradientCheckError",
    "Report",
    "InputResult",
    "Entry",
    "assert_layer_gradients",
    "check_function",
    "check_layer",
    "numerical_vjp",
]

FULL_LIMIT = 512  # mode="auto": "full" up to this many checked entries, "probe" above
SMALL_INPUT = 64  # mode="probe": failing inputs up to this size are compared entry by entry
# a float32 gradient may differ from the same backward in float64 by this many float32
# roundings of its terms; more is an unstable formula, not rounding
ROUNDINGS_ALLOWED = 64
_STREAM = 0x67726164  # "grad": separates the checker's random numbers from the caller's
MODES = ("auto", "full", "probe")
METHODS = ("auto", "complex", "richardson")


class GradientCheckError(AssertionError):
    """A gradient check failed; ``.report`` holds the :class:`Report`, ``str()`` shows it."""

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


# --- public entry points ------------------------------------------------------------------------


def check_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *inputs: Any,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    mode: str = "auto",
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
    dout: Any = None,
) -> Report:
    """Check a layer written as ``forward(*inputs) -> (out, cache)``, ``backward(dout, cache)``.

    inputs: the arrays the forward takes, e.g. ``x`` of shape (N, D), ``gamma`` and ``beta`` of
        shape (D,). Never modified. Non-floating inputs (integer labels) are constants.
    backward: returns one gradient per input (tuple or list, ``None`` for constants allowed), a
        dict keyed by input name (``"x"`` or ``"dx"``), or a single array for a single input.
        ``out`` may be a tuple of arrays; then ``dout`` is a tuple too.
    wrt: the inputs to check, by position or name; default all floating-point inputs.
    seed: seeds ``dout``, the random directions and the sampled entries (printed in the report).
    mode: ``"auto"``, ``"full"`` or ``"probe"`` (see the module docstring).
    method: ``"auto"`` (complex step where the forward is complex-analytic, else Richardson
        finite differences), ``"complex"`` or ``"richardson"``.
    rtol, atol: override the tolerances (``|analytic - numerical| <= atol + rtol * |numerical|``).
    names: the inputs' names in the report; default the forward's parameter names.
    dout: the upstream gradient; default seeded standard normal.

    Returns a :class:`Report`; ``report.passed`` tells the verdict, ``print(report)`` the details.

    >>> import numpy as np
    >>> def affine_forward(x, w, b):
    ...     return x @ w + b, (x, w)
    >>> def affine_backward(dout, cache):
    ...     x, w = cache
    ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    >>> report = check_layer(affine_forward, affine_backward, x, w, b)
    >>> report.passed, [r.name for r in report.inputs], report.inputs[0].method
    (True, ['x', 'w', 'b'], 'complex-step')
    """

    def run_forward(args: Sequence[Any]) -> tuple[Any, Any]:
        result = forward(*args)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise NotALayerError(
                f"{callable_name(forward)} must return (out, cache) for check_layer; "
                "use check_function for f(*inputs) -> out"
            )
        return result[0], result[1]

    def run_backward(d: Any, cache: Any, args: Sequence[Any]) -> Any:
        return backward(d, cache)

    return _check(
        run_forward,
        run_backward,
        lambda *args: forward(*args)[0],
        inputs,
        forward_name=callable_name(forward),
        backward_name=callable_name(backward),
        names=names or param_names(forward, len(inputs)),
        wrt=wrt,
        seed=seed,
        mode=mode,
        method=method,
        rtol=rtol,
        atol=atol,
        dout=dout,
    )


def check_function(
    f: Callable[..., Any],
    vjp: Callable[..., Any],
    *inputs: Any,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    mode: str = "auto",
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
    dout: Any = None,
) -> Report:
    """Check ``vjp(dout, *inputs)`` against numerical derivatives of ``f(*inputs) -> out``.

    The same check and options as :func:`check_layer`, for code without a cache: ``vjp``
    receives the upstream gradient and the inputs and returns one gradient per input.

    >>> import numpy as np
    >>> def f(x, gamma, beta):
    ...     return gamma * np.tanh(x) + beta
    >>> def vjp(dout, x, gamma, beta):
    ...     return dout * gamma * (1 - np.tanh(x) ** 2), (dout * np.tanh(x)).sum(0), dout.sum(0)
    >>> x, gamma, beta = np.ones((4, 3)), np.full(3, 2.0), np.zeros(3)
    >>> report = check_function(f, vjp, x, gamma, beta, wrt=["x", "gamma"])
    >>> [(r.name, r.passed, r.checked) for r in report.inputs]
    [('x', True, True), ('gamma', True, True), ('beta', True, False)]
    """

    def run_forward(args: Sequence[Any]) -> tuple[Any, Any]:
        return f(*args), None

    def run_backward(d: Any, cache: Any, args: Sequence[Any]) -> Any:
        return vjp(d, *args)

    return _check(
        run_forward,
        run_backward,
        f,
        inputs,
        forward_name=callable_name(f),
        backward_name=callable_name(vjp),
        names=names or param_names(f, len(inputs)),
        wrt=wrt,
        seed=seed,
        mode=mode,
        method=method,
        rtol=rtol,
        atol=atol,
        dout=dout,
    )


def assert_layer_gradients(
    forward: Callable[..., Any], backward: Callable[..., Any], *inputs: Any, **options: Any
) -> Report:
    """:func:`check_layer`, raising :class:`GradientCheckError` (an AssertionError) on failure.

    Returns the report when the check passes.

    >>> import numpy as np
    >>> def double_forward(x):
    ...     return 2 * x, None
    >>> def wrong_backward(dout, cache):
    ...     return 3 * dout
    >>> try:
    ...     assert_layer_gradients(double_forward, wrong_backward, np.ones(3))
    ... except GradientCheckError as exc:
    ...     print(exc.report.passed, exc.report.inputs[0].hints[0])
    False analytic = 1.5 x numerical for every entry of x: a constant factor (+50%)
    """
    report = check_layer(forward, backward, *inputs, **options)
    if not report.passed:
        raise GradientCheckError(report)
    return report


def numerical_vjp(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    dout: Any,
    *,
    wrt: Sequence[int | str] | None = None,
    method: str = "auto",
    seed: int = 0,
) -> list[np.ndarray | None]:
    """Numerical vector-Jacobian products ``dout . d f(*inputs) / d input`` for every input.

    f: the forward, ``f(*inputs) -> out`` (an array or a tuple of arrays).
    inputs: a sequence of arrays (never modified); dout: shaped like ``out`` (a tuple for a tuple).
    wrt: inputs to differentiate (position or name); default every floating-point input.
    method: ``"auto"``, ``"complex"`` or ``"richardson"``.

    Returns a list with, per input, a float64 array of the input's shape, or ``None`` for an
    input not differentiated. Every entry is computed (one or four forward calls per entry).

    >>> import numpy as np
    >>> dx, dw = numerical_vjp(lambda x, w: x @ w, [np.eye(2), np.ones((2, 3))], np.ones((2, 3)))
    >>> np.round(dx, 12), np.round(dw, 12)
    (array([[3., 3.],
           [3., 3.]]), array([[1., 1., 1.],
           [1., 1., 1.]]))
    """
    with np.errstate(all="ignore"):  # NaN from a step outside the domain shows in the result
        return _numerical_vjp(f, list(inputs), dout, wrt, method, seed)


class NotALayerError(TypeError):
    """check_layer's forward did not return ``(out, cache)``."""


def _numerical_vjp(
    f: Callable[..., Any],
    inputs: list[Any],
    dout: Any,
    wrt: Sequence[int | str] | None,
    method: str,
    seed: int,
) -> list[np.ndarray | None]:
    names = param_names(f, len(inputs))
    wrt_idx = resolve_wrt(wrt, inputs, names)
    douts = list(dout) if isinstance(dout, tuple) else [np.asarray(dout)]
    loss = Loss(f, inputs, douts, wrt_idx)
    rng = _rng(seed)
    loss.set_outputs(loss.outputs(loss.real))
    use_complex = method == "complex" or (
        method == "auto" and loss.complex_step_usable(rng) is None
    )
    if not use_complex:
        loss.noise(rng)
    result: list[np.ndarray | None] = [None] * len(inputs)
    for i in wrt_idx:
        flat = range(loss.base[i].size)
        if use_complex:
            values = loss.complex_coordinates(i, flat)
        else:
            values, _ = loss.richardson_coordinates(i, flat)
        result[i] = values.reshape(loss.base[i].shape)
    return result


# --- the check --------------------------------------------------------------------------------


def _check(*args: Any, **kwargs: Any) -> Report:
    # NaN and inf, at the inputs or from a step outside the domain, are reported with their
    # index; NumPy's warnings about them would only repeat that, once per evaluation
    with np.errstate(all="ignore"):
        return _check_quietly(*args, **kwargs)


@dataclass(frozen=True)
class _Layer:
    """What every step of the check needs: the layer's calls, its inputs and their names."""

    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]]
    run_backward: Callable[[Any, Any, Sequence[Any]], Any]
    f: Callable[..., Any]  # inputs -> out, for the numerical derivatives
    inputs: list[Any]
    originals: list[Any]  # copies taken on entry: nothing may change the caller's arrays
    names: list[str]
    wrt_idx: list[int]
    forward_name: str
    backward_name: str


def _check_quietly(
    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]],
    run_backward: Callable[[Any, Any, Sequence[Any]], Any],
    f: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    forward_name: str,
    backward_name: str,
    names: Sequence[str],
    wrt: Sequence[int | str] | None,
    seed: int,
    mode: str,
    method: str,
    rtol: float | None,
    atol: float | None,
    dout: Any,
) -> Report:
    """The check, step by step: safety, analytic gradients, numerical side, tolerances,
    comparison. Arguments as :func:`check_layer`'s, the layer given as two calls."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    arrays = [np.asarray(a) if isinstance(a, int | float | list) else a for a in inputs]
    layer = _Layer(
        run_forward,
        run_backward,
        f,
        arrays,
        [copy_input(a) for a in arrays],
        list(names),
        resolve_wrt(wrt, arrays, list(names)),
        forward_name,
        backward_name,
    )
    rng = _rng(seed)
    header: dict[str, Any] = dict(seed=seed, forward=forward_name, backward=backward_name)

    safe = _run_forward_twice(layer)
    if isinstance(safe, str):
        unjudged = tuple(
            _with(unchecked(layer.names[i], a, i in layer.wrt_idx), judged=i not in layer.wrt_idx)
            for i, a in enumerate(layer.inputs)
        )
        return Report(False, mode=mode, inputs=unjudged, problems=(safe,), evaluations=2, **header)
    out, cache, args, outs = safe
    douts, grads, grad_problems, problems = _analytic_gradients(
        layer, out, outs, cache, args, dout, rng
    )
    ok_idx = [i for i in layer.wrt_idx if i not in grad_problems]
    loss, chosen_mode, use_complex, notes = _numerical_side(
        layer, douts, outs, ok_idx, mode, method, rng
    )
    checks, input_hints, input_notes = _comparisons(
        layer, loss, douts, outs, grads, ok_idx, use_complex, rtol, atol
    )
    results = _compare_inputs(
        layer, checks, grads, grad_problems, chosen_mode, rng, input_hints, input_notes
    )
    for i, (a, orig) in enumerate(zip(layer.inputs, layer.originals, strict=True)):
        if isinstance(orig, np.ndarray) and not same(a, orig):  # pragma: no cover - a bug of ours
            problems.append(f"the caller's input {layer.names[i]!r} changed during the check")
    passed = not problems and all(r.passed for r in results)
    return Report(
        passed,
        mode=chosen_mode,
        inputs=tuple(results),
        problems=tuple(problems),
        notes=tuple(notes),
        evaluations=loss.evals,
        **header,
    )


def _run_forward_twice(layer: _Layer) -> str | tuple[Any, Any, list[Any], list[np.ndarray]]:
    """Step 1, safety: the forward on copies, twice; it must neither modify them nor vary.

    Returns ``(out, cache, args, outs)`` of the first call (``outs`` the outputs as a list),
    or the problem that stops the check: the forward modifies an input, returns NaN/inf, or is
    nondeterministic.
    """
    names, forward_name = layer.names, layer.forward_name
    args_a = [copy_input(a) for a in layer.inputs]
    args_b = [copy_input(a) for a in layer.inputs]
    out_a, cache = layer.run_forward(args_a)
    out_b, _ = layer.run_forward(args_b)
    for i, (a, orig) in enumerate(zip(args_a, layer.originals, strict=True)):
        if isinstance(orig, np.ndarray) and not same(a, orig):
            return (
                f"{forward_name} modifies its input {names[i]!r} in place "
                f"({where_differs(a, orig)}); it must treat its inputs as read-only"
            )
    outs_a, outs_b = as_outputs(out_a), as_outputs(out_b)
    for k, o in enumerate(outs_a):
        if not np.all(np.isfinite(o)):
            return f"the output{output_label(k, outs_a)} of {forward_name} has {nonfinite(o)}"
    if len(outs_a) != len(outs_b) or not all(
        same(p, q) for p, q in zip(outs_a, outs_b, strict=True)
    ):
        try:
            diff = max(float(np.max(np.abs(p - q))) for p, q in zip(outs_a, outs_b, strict=True))
        except ValueError:  # different numbers or shapes of outputs
            diff = float("nan")
        return (
            f"{forward_name} is nondeterministic: two calls on the same inputs differ by up to "
            f"{diff:.3g} (random numbers without a fixed seed, e.g. dropout?); "
            "its gradient cannot be checked numerically"
        )
    return out_a, cache, args_a, outs_a


def _analytic_gradients(
    layer: _Layer,
    out: Any,
    outs: list[np.ndarray],
    cache: Any,
    args: list[Any],
    dout: Any,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray | None], dict[int, str], list[str]]:
    """Step 2: the backward's gradients for a seeded random ``dout`` (or the caller's).

    Returns ``(douts, grads, grad_problems, problems)``: one dout per output, one gradient per
    input (None where unusable), a problem per input whose gradient has the wrong shape or
    dtype or is missing, and problems of the layer as a whole (a backward writing into dout
    or into a cached input, the wrong number of gradients).
    """
    names, backward_name = layer.names, layer.backward_name
    if dout is None:
        douts = [rng.standard_normal(o.shape).astype(float_dtype(o.dtype)) for o in outs]
    else:
        # only a tuple means several outputs: a list is one array written as nested lists
        douts = [np.asarray(d) for d in (dout if isinstance(dout, tuple) else [dout])]
        shapes = [o.shape for o in outs]
        if [d.shape for d in douts] != shapes:
            raise ValueError(
                f"dout has shape(s) {[d.shape for d in douts]}, the output(s) of "
                f"{layer.forward_name} {shapes}; pass a tuple of arrays for several outputs"
            )
    dout_arg: Any = tuple(douts) if isinstance(out, tuple | list) else douts[0]
    dout_copy = tuple(d.copy() for d in douts) if isinstance(dout_arg, tuple) else douts[0].copy()
    grads_raw = layer.run_backward(dout_copy, cache, args)
    problems: list[str] = []
    if not all(same(p, q) for p, q in zip(as_outputs(dout_copy), douts, strict=True)):
        problems.append(
            f"{backward_name} modifies dout in place; the upstream gradient may be shared, "
            "so a backward must not write into it"
        )
    for i, (a, orig) in enumerate(zip(args, layer.originals, strict=True)):
        if isinstance(orig, np.ndarray) and not same(a, orig):
            problems.append(
                f"{backward_name} modifies the input {names[i]!r} (through the cache) in place "
                f"({where_differs(a, orig)})"
            )
    grads, grad_problems, count_problem = normalize_grads(
        grads_raw, layer.inputs, names, layer.wrt_idx
    )
    if count_problem:
        problems.append(count_problem)
    return douts, grads, grad_problems, problems


def _numerical_side(
    layer: _Layer,
    douts: list[np.ndarray],
    outs: list[np.ndarray],
    ok_idx: list[int],
    mode: str,
    method: str,
    rng: np.random.Generator,
) -> tuple[Loss, str, bool, list[str]]:
    """Step 3: the scalar L = sum(dout * out), the mode, and the method.

    The complex step where it cross-checks with finite differences, else Richardson (after
    measuring the forward's rounding noise for its steps). Returns ``(loss, mode, use_complex,
    notes)``.
    """
    loss = Loss(layer.f, layer.inputs, douts, ok_idx)
    loss.evals = 2  # the safety calls
    loss.set_outputs(outs)
    total = sum(loss.base[i].size for i in ok_idx)
    chosen_mode = mode if mode != "auto" else ("full" if total <= FULL_LIMIT else "probe")
    notes: list[str] = []
    use_complex = method == "complex"
    if method == "auto" and ok_idx:
        why_not = loss.complex_step_usable(rng)
        use_complex = why_not is None
        if why_not:
            notes.append(f"complex step not used: {why_not}; Richardson finite differences instead")
        if loss.cross_check_note:
            notes.append(loss.cross_check_note)
    if not use_complex:
        # finite differences need the forward's rounding noise for their steps; code that
        # passes the complex-step cross-check computes in float64
        loss.noise(rng)
    if loss.eps_eval > 1e-13:
        notes.append(
            f"L = sum(dout * out) varies by {loss.eps_eval:.2g} relative on tiny steps (float32 "
            "inside, or a kink or singularity next to x?); steps and tolerances are sized for it"
        )
    return loss, chosen_mode, use_complex, notes


def _comparisons(
    layer: _Layer,
    loss: Loss,
    douts: list[np.ndarray],
    outs: list[np.ndarray],
    grads: list[np.ndarray | None],
    ok_idx: list[int],
    use_complex: bool,
    rtol: float | None,
    atol: float | None,
) -> tuple[dict[int, Comparison], dict[int, list[str]], dict[int, list[str]]]:
    """Step 4, tolerances: a :class:`Comparison` per input with a usable gradient.

    rtol from the input's dtype; the rounding floor of the user's own arithmetic; for float32
    inputs the measured difference from the same backward in float64 (or a hint that it is too
    large). Returns ``(comparisons, hints, notes)``, the last two per input.
    """
    rounding = _backward_rounding(
        layer.run_forward,
        layer.run_backward,
        layer.inputs,
        douts,
        grads,
        layer.names,
        layer.wrt_idx,
    )
    checks: dict[int, Comparison] = {}
    input_notes: dict[int, list[str]] = {i: [] for i in ok_idx}
    input_hints: dict[int, list[str]] = {i: [] for i in ok_idx}
    rms_terms = _rms(douts) * _rms(outs)
    eps_work = max(EPS64, loss.eps_eval)
    # inputs far from 0 against their spread (x = 3000 + N(0, 1)) are rounded at their
    # magnitude: float32 centering loses that factor of precision in every correct formula
    offset = max([1.0] + [_rms([loss.base[i]]) / loss.scale[i] for i in ok_idx])
    for i in ok_idx:
        a, g = layer.inputs[i], grads[i]
        if g is None:  # not reached: normalize_grads names a problem for a missing gradient
            continue
        # the input's precision, not the gradient's: a float32 gradient of a float64 input is
        # held to float64 (and its dtype reported as a problem), not excused by its rounding
        eps_a = max(eps_of(np.asarray(a).dtype), loss.eps_eval)
        rtol_i = rtol if rtol is not None else min(1e-2, max(1e-9, 1000 * eps_a))
        # rounding of the analytic formula relative to the size of its terms, which for a
        # gradient that cancels almost exactly (batch norm of two rows) exceeds rtol * |dx|:
        # the terms scale like |dout| * |out| / |x|
        natural = rms_terms / loss.scale[i]
        floor = 64 * eps_a * natural
        rounding_error: np.ndarray | None = None
        if i in rounding:
            # the user's own float32 rounding, measured against the same code in float64: up
            # to a few roundings of the formula's terms (or rtol of the gradient) it is rounding
            # and joins atol, never by more than the gradient's own size; beyond, it is a
            # formula that only float64 computes right
            g_minus_g64, g64 = rounding[i]
            measured = float(np.max(np.abs(g_minus_g64), initial=0.0))
            g64_max = float(np.max(np.abs(g64), initial=0.0))
            allowed = max(ROUNDINGS_ALLOWED * eps_a * natural * offset, rtol_i * g64_max)
            floor += min(measured, allowed, g64_max)
            if measured > allowed:
                input_hints[i].append(
                    f"your {g.dtype} backward differs from the same code in float64 by "
                    f"{measured:.3g} (more than {ROUNDINGS_ALLOWED} roundings of its terms, "
                    f"{allowed:.3g}): an unstable formula, e.g. a variance as E[x^2] - E[x]^2?"
                )
            else:
                rounding_error = g_minus_g64
                if measured > 0.25 * rtol_i * g64_max:
                    input_notes[i].append(
                        f"atol includes the rounding of your {g.dtype} backward: it differs "
                        f"from the same code in float64 by {measured:.3g}"
                    )
        checks[i] = Comparison(
            loss,
            i,
            layer.names[i],
            str(np.asarray(a).dtype),
            g.astype(np.float64),
            use_complex,
            rtol_i,
            atol,
            floor,
            rounding_error=rounding_error,
            rtol_work=rtol if rtol is not None else min(1e-2, max(1e-9, 1000 * eps_work)),
            floor_work=64 * eps_work * natural,
        )
    return checks, input_hints, input_notes


def _compare_inputs(
    layer: _Layer,
    checks: dict[int, Comparison],
    grads: list[np.ndarray | None],
    grad_problems: dict[int, str],
    mode: str,
    rng: np.random.Generator,
    input_hints: dict[int, list[str]],
    input_notes: dict[int, list[str]],
) -> list[InputResult]:
    """Step 5: each input's verdict, in the order of the inputs.

    Constants are not checked; inputs with an unusable gradient fail with their problem; the
    rest are compared in ``mode`` (a small input that fails in probe mode again entry by
    entry, so that swapped gradients can be named). A gradient in another dtype than its input
    is a problem of that input.
    """
    names, inputs = layer.names, layer.inputs
    results: list[InputResult] = []
    analytic_full: list[np.ndarray | None] = [None] * len(inputs)
    numeric_full: list[np.ndarray | None] = [None] * len(inputs)
    sizes = sorted({s for a in inputs if isinstance(a, np.ndarray) for s in a.shape})
    for i, a in enumerate(inputs):
        if i not in layer.wrt_idx:
            results.append(unchecked(names[i], a, False))
            continue
        if i in grad_problems:
            results.append(
                InputResult(
                    names[i],
                    tuple(np.shape(a)),
                    str(np.asarray(a).dtype),
                    False,
                    problems=(grad_problems[i],) if grad_problems[i] else (),
                )
            )
            continue
        check, g_dtype = checks[i], grads[i].dtype  # type: ignore[union-attr]
        if mode == "probe":
            result = check.probe(rng, sizes)
        if mode == "full" or (not result.passed and check.analytic.size <= SMALL_INPUT):
            # a small input that fails is compared entry by entry: swapped gradients show
            result = check.full(sizes)
            analytic_full[i], numeric_full[i] = check.analytic, check.numeric_all
        if g_dtype != np.asarray(a).dtype:
            result = _with(
                result,
                passed=False,
                problems=result.problems
                + (
                    f"the gradient of {names[i]!r} has dtype {g_dtype}, the input "
                    f"{np.asarray(a).dtype}: return it in the input's dtype",
                ),
            )
        if input_hints[i] or input_notes[i]:
            result = _with(
                result,
                hints=result.hints + tuple(input_hints[i]),
                notes=result.notes + tuple(input_notes[i]),
                passed=result.passed and not input_hints[i],
            )
        results.append(result)
    swaps = swap_hints(names, analytic_full, numeric_full)
    if swaps:
        results = [
            _with(r, hints=r.hints + tuple(h for h in swaps if f" {r.name} " in h))
            if not r.passed
            else r
            for r in results
        ]
    return results


# --- helpers ----------------------------------------------------------------------------------


def _backward_rounding(
    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]],
    run_backward: Callable[[Any, Any, Sequence[Any]], Any],
    inputs: Sequence[Any],
    douts: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    names: Sequence[str],
    wrt_idx: Sequence[int],
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per float32/float16 input: (analytic gradient minus the float64 one, the float64 one),
    from the same forward and backward run on the inputs cast to float64.

    That difference is the rounding of the user's own low-precision arithmetic, which can be
    large against a small result (cancellation: the batch-norm dx of two rows is ~eps/var,
    computed from terms of size 1/std); up to a cap it joins the tolerance. A wrong formula is
    wrong in float64 too, so this does not hide bugs; a formula that is right only in float64
    (E[x^2] - E[x]^2) exceeds the cap. Code that fails in float64 keeps the default.
    """
    low = [
        i for i in wrt_idx if grads[i] is not None and eps_of(np.asarray(inputs[i]).dtype) > 1e-15
    ]
    if not low:
        return {}
    try:
        args = [
            np.asarray(a, dtype=np.float64) if i in wrt_idx else copy_input(a)
            for i, a in enumerate(inputs)
        ]
        out, cache = run_forward(args)
        d64 = [np.asarray(d, dtype=np.float64) for d in douts]
        dout: Any = tuple(d64) if isinstance(out, tuple | list) else d64[0]
        raw = run_backward(dout, cache, args)
        grads64, problems, count = normalize_grads(raw, inputs, names, wrt_idx)
    except Exception:  # the check itself reports what is wrong with the layer
        return {}
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in low:
        g64, g = grads64[i], grads[i]
        if count is None and i not in problems and g64 is not None and g is not None:
            g64 = g64.astype(np.float64)
            found[i] = (g.astype(np.float64) - g64, g64)
    return found


def _rms(arrays: Sequence[np.ndarray]) -> float:
    total = 0.0
    for a in arrays:
        flat = np.abs(np.asarray(a, dtype=np.float64)).reshape(-1)
        total += float(np.dot(flat, flat))
    count = sum(a.size for a in arrays)
    return math.sqrt(total / count) if count else 0.0


def _rng(seed: int) -> np.random.Generator:
    """The checker's random stream for ``seed``.

    Not ``default_rng(seed)``: tests draw their inputs from that, and a ``dout`` equal to ``x``
    makes the batch-norm ``dx`` vanish (``dout`` in the span of ``x_hat``) and hides every bug.
    """
    return np.random.default_rng([seed, _STREAM])


def _with(result: InputResult, **changes: Any) -> InputResult:
    return replace(result, **changes)
