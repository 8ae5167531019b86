"""Check a layer's backward pass against numerical derivatives of its forward pass (NumPy only).

The backward pass of a layer returns vector-Jacobian products: given the upstream gradient
``dout`` it returns ``dx = dout . d(out)/dx`` for every input. That is the gradient of the scalar
``L(inputs) = sum(dout * forward(inputs))``, so the checker draws a seeded random ``dout`` and
compares each returned gradient with numerical derivatives of ``L``:

- ``mode="full"``: every entry of every input (one complex-step evaluation per entry, or four
  finite-difference evaluations);
- ``mode="probe"``: per input, first one random direction (one complex step or one central
  difference), which sees an error anywhere in its gradient and settles a pass; where it
  disagrees, random signed directions, a few sampled entries and a bisection of a direction
  down to a wrong entry. A failing input of up to ``SMALL_INPUT`` (64) entries (gamma, beta, a
  bias) is compared entry by entry, so that swapped gradients are named;
- ``mode="auto"``: the first direction per input, then, where it disagrees, ``full`` for an
  input of up to ``FULL_LIMIT`` entries and ``probe`` above.

A forward or backward that raises is a failed check whose report names it, the exception and
the input shapes.

The tolerance of each input is ``atol + rtol * |numerical|`` with ``rtol`` 1000 units of the
working precision (at least 1e-9) and ``atol`` from the error estimates, so a correct float64
layer is held to about 1e-9 and a correct float32 one to about 1e-4.

This module holds the public API and the sequence of the check. The parts of the package,
one idea each: :mod:`~bnsym.gradcheck.steps` (the steps: safety, analytic gradients,
numerical side, tolerances, comparison), :mod:`~bnsym.gradcheck.numeric` (the numerical
derivatives and their error estimates), :mod:`~bnsym.gradcheck.compare` (one input's
comparison), :mod:`~bnsym.gradcheck.hints` (patterns of common bugs), :mod:`~bnsym.gradcheck.swaps`
(gradients returned in each other's places), :mod:`~bnsym.gradcheck.diagnose` (a failed check
of the normalization family read against the closed form's terms, over
:mod:`~bnsym.gradcheck.recognise` and :mod:`~bnsym.gradcheck.readings`),
:mod:`~bnsym.gradcheck.inputs` (calling conventions and safety messages),
:mod:`~bnsym.gradcheck.report` (the report and its text), :mod:`~bnsym.gradcheck.arrays`
(the command line's ``--input`` arrays and files), :mod:`~bnsym.gradcheck.pytorch` (PyTorch
code) and :mod:`~bnsym.gradcheck.pytest_plugin` (the ``gradcheck`` fixture).

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

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bnsym.errors import BnsymError
from bnsym.family.layers import Layer
from bnsym.family.layers import layer as lookup_layer
from bnsym.gradcheck.inputs import (
    CheckTypeError,
    CheckValueError,
    NotALayerError,
    as_outputs,
    callable_name,
    changed_shape,
    complex_input,
    copy_input,
    normalize_grads,
    nothing_to_differentiate,
    param_names,
    raised,
    resolve_wrt,
    unchecked,
    validate_call,
    validate_options,
)
from bnsym.gradcheck.numeric import ForwardRaised, Loss, OutputChanged
from bnsym.gradcheck.precision import (
    LOW_PRECISION,
    LowRaised,
    LowSpec,
    input_dtypes,
    is_low,
    judge,
    merge,
    stopped_low,
)
from bnsym.gradcheck.report import Entry, InputResult, OrdersReport, Report
from bnsym.gradcheck.steps import (
    FULL_LIMIT,
    BackwardRaised,
    Subject,
    analytic_gradients,
    compare_inputs,
    comparisons,
    noise_note,
    numerical_side,
    run_forward_twice,
    with_changes,
)
from bnsym.gradcheck.swaps import swapped

__all__ = [
    "FULL_LIMIT",
    "GradientCheckError",
    "Report",
    "InputResult",
    "Entry",
    "OrdersReport",
    "assert_layer_gradients",
    "check_double_backward",
    "check_function",
    "check_layer",
    "numerical_vjp",
]


_STREAM = 0x67726164  # "grad": separates the checker's random numbers from the caller's
MODES = ("auto", "full", "probe")
METHODS = ("auto", "complex", "richardson")


class GradientCheckError(BnsymError, AssertionError):
    """A gradient check failed; ``.report`` holds the :class:`Report` (an
    :class:`OrdersReport` for :func:`check_double_backward`, a ``ModesReport`` for
    ``check_torch(..., modes=...)``), ``str()`` shows it."""

    exit_code = 1  # a failed check, not bad input

    def __init__(self, report: Any) -> None:
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
    layer: str | Layer | None = None,
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
    Raises TypeError / ValueError naming an argument that cannot be checked (a forward that is
    not callable, a bad ``seed``, ``rtol`` or ``wrt``, a ragged list, an ``np.matrix``).
    method: ``"auto"`` (complex step where the forward is complex-analytic, else Richardson
        finite differences), ``"complex"`` or ``"richardson"``.
    rtol, atol: override the tolerances (``|analytic - numerical| <= atol + rtol * |numerical|``).
    names: the inputs' names in the report; default the forward's parameter names.
    dout: the upstream gradient; default seeded standard normal.
    layer: the member of the normalization family the forward is (``"batchnorm"``, a
        :class:`bnsym.Layer`), for the diagnosis of a failed check; by default it is recognised
        from the forward's output. A failing gradient of x, γ or β of a member is read
        against the closed form's terms (:mod:`~bnsym.gradcheck.diagnose`): the report names
        the term that is missing, of the wrong sign or scaled by the wrong group size, and
        shows the closed form's values beside yours. An unknown name raises ``LayerError``.

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
    inputs = tuple(validate_call(forward, backward, inputs, names))
    named = None if layer is None else lookup_layer(layer)

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
        named=named,
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
    layer: str | Layer | None = None,
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
    options = dict(wrt=wrt, seed=seed, mode=mode, method=method, rtol=rtol, atol=atol)
    return function_check(f, vjp, inputs, names, dout, "dout", options, layer=layer)


def function_check(
    f: Callable[..., Any],
    vjp: Callable[..., Any],
    inputs: Sequence[Any],
    names: Sequence[str] | None,
    dout: Any,
    seed_name: str,
    options: dict[str, Any],
    low: LowSpec | None = None,
    layer: str | Layer | None = None,
) -> Report:
    """:func:`check_function`, its random seed of L called ``seed_name`` in the report; ``low``
    tells which inputs hold low-precision values (:class:`~bnsym.gradcheck.precision.LowSpec`)."""
    inputs = tuple(validate_call(f, vjp, inputs, names))
    named = None if layer is None else lookup_layer(layer)

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
        dout=dout,
        named=named,
        seed_name=seed_name,
        low=low,
        **options,
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


def check_double_backward(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    double_backward: Callable[..., Any],
    *inputs: Any,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    mode: str = "auto",
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
    dout: Any = None,
    ggrads: Any = None,
) -> OrdersReport:
    """Check a hand-written backward (order 1) and double backward (order 2) of a layer.

    forward, backward: as :func:`check_layer`: ``forward(*inputs) -> (out, cache)``,
        ``backward(dout, cache) -> grads`` (one gradient per input). Order 1 is
        :func:`check_layer` of the two.
    double_backward: ``double_backward(ggrads, dout, cache) -> (g_input..., gdout)``, the
        gradients of ``sum(ggrads * backward(dout, cache))`` with respect to every input and
        to ``dout``. ``ggrads`` has the structure of what the backward returns (a tuple
        ``(gdx, gdgamma, gdbeta)`` for ``(dx, dgamma, dbeta)``, None where the backward gives
        None); the result holds one array per input, then one for ``dout`` (one per output
        for a tuple of outputs), zeros where the backward does not read an input (β of batch
        norm), or a dict keyed ``"x"``/``"gx"``, …, ``"dout"``/``"gdout"``. Order 2 is
        :func:`check_function` of the backward, as a function of the inputs and of ``dout``,
        with this vector-Jacobian product: the same probes, tolerances and hints.
    wrt: the inputs to check at both orders (``dout`` is always checked at order 2).
    seed, mode, method, rtol, atol, names: as :func:`check_layer`, for both orders.
    dout: the upstream gradient of order 1 and the point ``dout`` of order 2; default seeded
        standard normal. ggrads: the cotangents of order 2; default seeded standard normal.

    Returns an :class:`OrdersReport`: ``report.passed``, ``report.failed`` (e.g. ``(2,)``),
    ``report[1]`` and ``report[2]`` the :class:`Report` of each order, and ``str(report)``
    starting with what failed at which order (``order 2: ∂/∂x of the backward is wrong at
    [2, 1]: …``). A layer written as ``f(*inputs) -> out`` with ``vjp(dout, *inputs)`` is
    checked as ``forward = lambda *a: (f(*a), a)``, ``backward = lambda d, a: vjp(d, *a)``.

    >>> import numpy as np
    >>> def tanh_forward(x):
    ...     t = np.tanh(x)
    ...     return t, t
    >>> def tanh_backward(dout, t):
    ...     return dout * (1 - t**2)
    >>> def tanh_double_backward(gdx, dout, t):  # wrong: gx has its sign flipped
    ...     return 2 * gdx * dout * t * (1 - t**2), gdx * (1 - t**2)
    >>> report = check_double_backward(
    ...     tanh_forward, tanh_backward, tanh_double_backward, np.linspace(-1, 1, 5)
    ... )
    >>> report.failed, report[2]["x"].hints[0]
    ((2,), 'analytic = -numerical for every entry of x: a flipped sign')
    >>> print(str(report).splitlines()[2][:56])
      order 2: ∂/∂x of the backward is wrong at [1]: tanh_do
    """
    if not callable(double_backward):
        raise CheckTypeError(
            "the double_backward must be callable (a function), not "
            f"{type(double_backward).__name__} {double_backward!r:.60}"
        )
    arrays = validate_call(forward, backward, inputs, names)
    names = list(names) if names is not None else param_names(forward, len(arrays))
    options: dict[str, Any] = dict(seed=seed, mode=mode, method=method, rtol=rtol, atol=atol)
    first = check_layer(forward, backward, *arrays, wrt=wrt, names=names, dout=dout, **options)
    wrt_names = None if wrt is None else [names[i] for i in resolve_wrt(wrt, arrays, names)]
    return OrdersReport(
        (first, _check_order2(forward, backward, double_backward, arrays, names, wrt_names,
                              dout, ggrads, options))
    )  # fmt: skip


def _check_order2(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    double_backward: Callable[..., Any],
    arrays: list[Any],
    names: list[str],
    wrt: list[str] | None,
    dout: Any,
    ggrads: Any,
    options: dict[str, Any],
) -> Report:
    """Order 2 as :func:`check_function`: the function is ``grads(*inputs, *douts)``, the
    backward's non-None gradients as a tuple, and its vjp the user's double backward."""
    n = len(arrays)
    try:
        with np.errstate(all="ignore"):
            out = forward(*[np.array(a) if isinstance(a, np.ndarray) else a for a in arrays])[0]
    except Exception:  # order 1's report names what the forward raised; order 2 repeats it
        out = None
    several = isinstance(out, tuple | list)
    outs = [np.asarray(o) for o in out] if several else [np.asarray(out)]
    if dout is None:
        rng = np.random.default_rng([seed_of(options), 0x67726432])  # "grd2": its own stream
        douts = [rng.standard_normal(o.shape).astype(_real(o.dtype)) for o in outs]
    else:
        douts = [np.asarray(d) for d in (dout if isinstance(dout, tuple) else [dout])]
    dout_names = ["dout"] if len(douts) == 1 else [f"dout{k}" for k in range(len(douts))]

    def split(args: Sequence[Any]) -> tuple[Any, Any]:
        d = tuple(args[n:]) if several else args[n]
        return forward(*args[:n])[1], d

    def grads(*args: Any) -> tuple[np.ndarray, ...]:
        cache, d = split(args)
        return tuple(np.asarray(g) for g in _flatten(backward(d, cache)))

    def vjp(gg: Any, *args: Any) -> Any:
        cache, d = split(args)
        template = backward(d, cache)  # the structure ggrads takes
        cache, _ = split(args)  # a cache of its own: what the backward did to its one is not seen
        result = double_backward(_rebuild(template, list(gg)), d, cache)
        if isinstance(result, dict):  # "gx" for "x", "gdout" for "dout"
            keys = {"g" + name: name for name in (*names, *dout_names)}
            result = {keys.get(k, k): v for k, v in result.items()}
        return result

    grads.__qualname__ = callable_name(backward)
    vjp.__qualname__ = callable_name(double_backward)
    if ggrads is not None:
        ggrads = tuple(np.asarray(g) for g in _flatten(ggrads))
    return function_check(
        grads,
        vjp,
        [*arrays, *douts],
        [*names, *dout_names],
        ggrads,
        "ggrads",  # the seeds of order 2: "dout" is one of its inputs
        dict(options, wrt=None if wrt is None else [*wrt, *dout_names]),
    )


def seed_of(options: dict[str, Any]) -> int:
    seed = options["seed"]
    validate_options(seed, None, None)
    return int(seed)


def _real(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _flatten(raw: Any) -> list[Any]:
    """The arrays a backward returned, in order, without its Nones."""
    if isinstance(raw, dict):
        return [g for g in raw.values() if g is not None]
    if isinstance(raw, tuple | list):
        return [g for g in raw if g is not None]
    return [raw]


def _rebuild(template: Any, flat: list[Any]) -> Any:
    """``flat`` in the structure of ``template`` (what the backward returned)."""
    it = iter(flat)
    if isinstance(template, dict):
        return {k: None if g is None else next(it) for k, g in template.items()}
    if isinstance(template, tuple | list):
        return type(template)(None if g is None else next(it) for g in template)
    return next(it)


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
    validate_options(seed, None, None)
    if method not in METHODS:
        raise CheckValueError(f"method must be one of {METHODS}, not {method!r}")
    arrays = validate_call(f, f, list(inputs), None)
    with np.errstate(all="ignore"):  # NaN from a step outside the domain shows in the result
        return _numerical_vjp(f, arrays, dout, wrt, method, seed)


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


def _check(*args: Any, low: LowSpec | None = None, **kwargs: Any) -> Report:
    # NaN and inf, at the inputs or from a step outside the domain, are reported with their
    # index; NumPy's warnings about them would only repeat that, once per evaluation
    with np.errstate(all="ignore"):
        dtypes = input_dtypes(args[3], low)
        if any(d is not None and is_low(d) for d in dtypes):
            return _check_low_precision(*args, dtypes=dtypes, low=low, **kwargs)
        return _check_quietly(*args, **kwargs)


def _check_low_precision(
    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]],
    run_backward: Callable[[Any, Any, Sequence[Any]], Any],
    f: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    dtypes: list[str | None],
    low: LowSpec | None,
    **kwargs: Any,
) -> Report:
    """A check with bfloat16 or float16 inputs (:mod:`bnsym.gradcheck.precision`): the same
    code in float64 against numerical derivatives (the algebra), then the user's low-precision
    gradients against that float64 code's, within the rounding noise measured on them."""
    inputs64 = [
        np.array(a, dtype=np.float64) if d is not None else copy_input(a)
        for a, d in zip(inputs, dtypes, strict=True)
    ]
    coarse = _not_float64(run_forward, inputs64, low.output_dtypes if low else None)
    if coarse is not None:  # no float64 twin of the code: nothing to judge its rounding against
        names = list(kwargs["names"])
        problem = (
            f"{kwargs['forward_name']} returns {coarse} for float64 inputs: it does not run in "
            "float64, so there is no float64 reference of the same code to judge your "
            "low-precision gradients against; write it for any dtype (x.dtype, not a fixed "
            "one) and check again"
        )
        return Report(
            False,
            seed=kwargs["seed"],
            mode=kwargs["mode"],
            inputs=tuple(
                replace(
                    unchecked(n, a, d is not None),
                    dtype=d or np.asarray(a).dtype.name,
                    judged=d is None,
                )
                for n, a, d in zip(names, inputs, dtypes, strict=True)
            ),  # fmt: skip
            forward=kwargs["forward_name"],
            backward=kwargs["backward_name"],
            problems=(problem,),
            evaluations=1,
        )
    report64 = _check_quietly(run_forward, run_backward, f, inputs64, **kwargs)
    judged = [i for i, r in enumerate(report64.inputs) if r.checked and r.judged and r.n_checked]
    if not judged or report64.raised or report64.problems:  # nothing the judge could add
        return merge(report64, {}, dtypes)
    names = [r.name for r in report64.inputs]
    forward_name, backward_name = kwargs["forward_name"], kwargs["backward_name"]
    label = max((d for d in dtypes if d is not None and is_low(d)), key=lambda d: LOW_PRECISION[d])

    def gradients(values: list[Any], douts: list[np.ndarray]) -> list[np.ndarray | None]:
        try:
            # a function's vjp needs no cache: its forward is not run again for one
            cache = run_forward(values)[1] if cached else None
            raw = run_backward(tuple(douts) if several else douts[0], cache, values)
        except Exception as exc:
            who = "backward" if "cache" in locals() else "forward"
            name = backward_name if who == "backward" else forward_name
            raise LowRaised(f"{raised(name, exc, names, values)} in {label}", who) from exc
        grads, problems, count = normalize_grads(raw, values, names, judged)
        if count or problems:  # NaN/inf: an overflow past the dtype's range, a rounded 0?
            raise LowRaised(f"in {label}: {count or next(iter(problems.values()))}", None)
        found: list[np.ndarray | None] = [None] * len(values)
        for i in judged:  # normalize_grads found no NaN/inf; the judge's stacks are float32
            found[i] = np.asarray(grads[i])
        return found

    out_dtypes_of = low.output_dtypes if low is not None else None
    try:
        out, cache_at_inputs = run_forward(list(inputs))
    except Exception as exc:
        problem = f"{raised(forward_name, exc, names, inputs)} in {label}"
        return stopped_low(report64, problem, "forward", dtypes)
    several, cached = isinstance(out, tuple | list), cache_at_inputs is not None
    outs = as_outputs(out)
    try:
        out_dtypes = out_dtypes_of() if out_dtypes_of else [o.dtype.name for o in outs]
        verdicts = judge(
            gradients, gradients, outs, inputs, dtypes, judged, out_dtypes, kwargs["seed"]
        )
    except LowRaised as exc:
        return stopped_low(report64, exc.problem, exc.who, dtypes)
    return merge(report64, verdicts, dtypes, numpy_code=low is None)


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
    named: Layer | None = None,
    seed_name: str = "dout",
) -> Report:
    """The check, step by step: safety, analytic gradients, numerical side, tolerances,
    comparison, and for a failed check the diagnosis. Arguments as :func:`check_layer`'s,
    the layer given as two calls, the family's member named (``named``) as a declaration."""
    if mode not in MODES:
        raise CheckValueError(f"mode must be one of {MODES}, not {mode!r}")
    validate_options(seed, rtol, atol)
    if method not in METHODS:
        raise CheckValueError(f"method must be one of {METHODS}, not {method!r}")
    arrays = list(inputs)
    layer = Subject(
        run_forward,
        run_backward,
        f,
        arrays,
        list(names),
        resolve_wrt(wrt, arrays, list(names)),
        forward_name,
        backward_name,
        seed_name,
    )
    rng = _rng(seed)
    header: dict[str, Any] = dict(seed=seed, forward=forward_name, backward=backward_name)

    def stopped(problem: str, evaluations: int, who: str | None = None) -> Report:
        unjudged = tuple(
            with_changes(
                unchecked(layer.names[i], a, i in layer.wrt_idx), judged=i not in layer.wrt_idx
            )
            for i, a in enumerate(layer.inputs)
        )
        return Report(
            False, mode=mode, inputs=unjudged, problems=(problem,), evaluations=evaluations,
            raised=who, **header,
        )  # fmt: skip

    if not any(np.size(layer.inputs[i]) for i in layer.wrt_idx):
        # nothing to differentiate: a report that says so, blaming neither forward nor backward
        return stopped(nothing_to_differentiate(layer.names, layer.inputs), 0)
    try:
        safe = run_forward_twice(layer)
    except ForwardRaised as exc:  # the user's forward raised: a failed check, with its report
        complex_input(forward_name, exc.error, layer.names, layer.inputs)
        return stopped(raised(forward_name, exc.error, layer.names, layer.inputs), 1, "forward")
    if isinstance(safe, str):
        return stopped(safe, 2)
    out, cache, args, outs = safe
    try:
        douts, grads, grad_problems, problems, returned = analytic_gradients(
            layer, out, outs, cache, args, dout, rng
        )
    except BackwardRaised as exc:
        return stopped(raised(backward_name, exc.error, layer.names, layer.inputs), 2, "backward")
    del safe, out, cache, args  # the layer's cache is not needed again: free it for the numerics
    ok_idx = [i for i in layer.wrt_idx if grads[i] is not None]
    loss = None
    try:
        loss, chosen_mode, notes = numerical_side(layer, douts, outs, ok_idx, mode, method, rng)
        checks, input_hints, input_notes = comparisons(
            layer, loss, douts, outs, grads, ok_idx, rtol, atol
        )
        del outs  # sized into the tolerances; not needed again
        results, chosen_mode = compare_inputs(
            layer, checks, grads, grad_problems, chosen_mode, rng, input_hints, input_notes
        )
    except ForwardRaised as exc:  # the forward raised on inputs moved by a numerical step
        problem = raised(forward_name, exc.error, layer.names, layer.inputs)
        return stopped(
            f"{problem} during the numerical derivatives, on inputs moved by a small step",
            loss.evals if loss is not None else 2,
            "forward",
        )
    except OutputChanged as exc:  # no derivative where the output's shape jumps
        return stopped(changed_shape(forward_name, exc), loss.evals if loss is not None else 2)
    notes += noise_note(loss, seed_name)
    if sum(not r.passed and r.judged for r in results) >= 2:
        results, calls = swapped(
            layer.f, layer.inputs, douts, layer.names, returned, results, loss.decided_complex, rng
        )
        loss.evals += calls
    family = ""
    if any(not r.passed and r.judged for r in results):
        results, family = _diagnose(loss, douts, grads, results, named)
    if not any(r.checked for r in results):  # a check that compares nothing must not pass
        problems.append(
            "no input was checked: every input is an integer constant or empty (size 0); "
            "give at least one floating-point input with entries"
        )
    passed = not problems and all(r.passed for r in results)
    return Report(
        passed,
        mode=chosen_mode,
        inputs=tuple(results),
        problems=tuple(problems),
        notes=tuple(notes),
        evaluations=loss.evals,
        family=family,
        method_notes=tuple(loss.method_notes),
        **header,
    )


def _diagnose(
    loss: Loss,
    douts: list[np.ndarray],
    grads: list[np.ndarray | None],
    results: list[InputResult],
    named: Layer | None,
) -> tuple[list[InputResult], str]:
    """The term-level diagnosis of a failed check (imported only then: it reads the
    references). It explains a verdict and never changes one: a forward that raises on its own
    float64 copies, or inputs the diagnosis cannot read, leave the report as it was."""
    from bnsym.gradcheck.diagnose import diagnose

    try:
        return diagnose(lambda: loss.outputs(loss.real), loss.base, douts, grads, results, named)
    except (ForwardRaised, ArithmeticError, ValueError, TypeError, IndexError):
        return results, ""


def _not_float64(
    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]],
    inputs64: list[Any],
    output_dtypes: Callable[[], list[str]] | None = None,
) -> str | None:
    """The dtype of an output the code returns in another precision than float64 for float64
    inputs (``"float16 outputs"``), or None (also when it raises: the float64 check says so).
    ``output_dtypes``: the outputs' own dtypes where the arrays do not tell (a bfloat16 tensor
    arrives as float32)."""
    try:
        outs = as_outputs(run_forward([copy_input(a) for a in inputs64])[0])
    except Exception:
        return None
    if output_dtypes is not None:
        coarse = [d for d in output_dtypes() if "float" in d and d != "float64"]
    else:
        coarse = [o.dtype.name for o in outs if o.dtype.kind == "f" and o.dtype.itemsize < 8]
    return f"{coarse[0]} outputs" if coarse else None


# --- helpers ----------------------------------------------------------------------------------


def _rng(seed: int) -> np.random.Generator:
    """The checker's random stream for ``seed``.

    Not ``default_rng(seed)``: tests draw their inputs from that, and a ``dout`` equal to ``x``
    makes the batch-norm ``dx`` vanish (``dout`` in the span of ``x_hat``) and hides every bug.
    """
    # default_rng([seed, _STREAM]) without hashing the seed again on every check
    return np.random.Generator(np.random.PCG64(_seed_sequence(seed)))


@functools.lru_cache(maxsize=64)
def _seed_sequence(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, _STREAM])
