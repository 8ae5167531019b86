"""Check a layer's backward pass against numerical derivatives of its forward pass (NumPy only).

The backward pass of a layer returns vector-Jacobian products: given the upstream gradient
``dout`` it returns ``dx = dout . d(out)/dx`` for every input. That is the gradient of the scalar
``L(inputs) = sum(dout * forward(inputs))``, so the checker draws a seeded random ``dout`` and
compares each returned gradient with numerical derivatives of ``L``:

- ``mode="full"``: every entry of every input (one complex-step evaluation per entry, or four
  finite-difference evaluations);
- ``mode="probe"``: a few random signed directions per input, which see an error anywhere in
  the gradient, plus sampled entries; a failing direction is localized by bisection to an entry;
- ``mode="auto"``: ``full`` up to ``FULL_LIMIT`` checked entries, ``probe`` above.

The numerical derivatives and their error estimates are described in
:mod:`bnsym._gradcheck_numeric`; the tolerance of each input is ``atol + rtol * |numerical|``
with ``rtol`` 1000 units of the working precision (at least 1e-9) and ``atol`` from the error
estimate, so a correct float64 layer is held to about 1e-9 and a correct float32 one to about
1e-4.

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

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bnsym._gradcheck_hints import pattern_hints, swap_hints
from bnsym._gradcheck_numeric import EPS64, Loss, signs
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
N_DIRECTIONS = 3  # random signed directions per input in "probe" mode
N_SAMPLES = 24  # sampled entries per input in "probe" mode where a direction fails
N_PASS_SAMPLES = 0  # random entries per input (besides its largest) where directions agree
N_WORST = 5  # entries shown per failing input
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
            raise TypeError(
                f"{_name(forward)} must return (out, cache) for check_layer; "
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
        forward_name=_name(forward),
        backward_name=_name(backward),
        names=names or _param_names(forward, len(inputs)),
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
        forward_name=_name(f),
        backward_name=_name(vjp),
        names=names or _param_names(f, len(inputs)),
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
    inputs = list(inputs)
    names = _param_names(f, len(inputs))
    wrt_idx = _resolve_wrt(wrt, inputs, names)
    douts = list(dout) if isinstance(dout, tuple | list) else [dout]
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


class _Stop(Exception):
    """A problem that makes the comparison meaningless; carries the report's problem line."""


def _check(
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
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    inputs = [np.asarray(a) if isinstance(a, int | float | list) else a for a in inputs]
    names = list(names)
    wrt_idx = _resolve_wrt(wrt, inputs, names)
    originals = [_copy(a) for a in inputs]
    rng = _rng(seed)
    header: dict[str, Any] = dict(seed=seed, forward=forward_name, backward=backward_name)

    def stopped(problem: str, mode_: str = mode, evals: int = 0) -> Report:
        results = tuple(_unchecked(names[i], a, i in wrt_idx) for i, a in enumerate(inputs))
        return Report(
            False, mode=mode_, inputs=results, problems=(problem,), evaluations=evals, **header
        )

    # 1. safety: the forward on copies, twice; it must neither modify them nor vary
    args_a = [_copy(a) for a in inputs]
    args_b = [_copy(a) for a in inputs]
    out_a, cache = run_forward(args_a)
    out_b, _ = run_forward(args_b)
    for i, (a, orig) in enumerate(zip(args_a, originals, strict=True)):
        if isinstance(orig, np.ndarray) and not _same(a, orig):
            return stopped(
                f"{forward_name} modifies its input {names[i]!r} in place "
                f"({_where_differs(a, orig)}); it must treat its inputs as read-only"
            )
    outs_a, outs_b = _as_outputs(out_a), _as_outputs(out_b)
    for k, o in enumerate(outs_a):
        if not np.all(np.isfinite(o)):
            return stopped(f"the output{_k(k, outs_a)} of {forward_name} has {_nonfinite(o)}")
    if len(outs_a) != len(outs_b) or not all(
        _same(p, q) for p, q in zip(outs_a, outs_b, strict=True)
    ):
        diff = max(float(np.max(np.abs(p - q))) for p, q in zip(outs_a, outs_b, strict=True))
        return stopped(
            f"{forward_name} is nondeterministic: two calls on the same inputs differ by up to "
            f"{diff:.3g} (random numbers without a fixed seed, e.g. dropout?); "
            "its gradient cannot be checked numerically"
        )

    # 2. the analytic gradients for a seeded random dout
    if dout is None:
        douts = [rng.standard_normal(o.shape).astype(_float_dtype(o.dtype)) for o in outs_a]
    else:
        douts = [np.asarray(d) for d in (dout if isinstance(dout, tuple | list) else [dout])]
    dout_arg: Any = tuple(douts) if isinstance(out_a, tuple | list) else douts[0]
    dout_copy = tuple(d.copy() for d in douts) if isinstance(dout_arg, tuple) else douts[0].copy()
    grads_raw = run_backward(dout_copy, cache, args_a)
    problems: list[str] = []
    if not all(_same(p, q) for p, q in zip(_as_outputs(dout_copy), douts, strict=True)):
        problems.append(
            f"{backward_name} modifies dout in place; the upstream gradient may be shared, "
            "so a backward must not write into it"
        )
    grads, grad_problems, count_problem = _normalize_grads(grads_raw, inputs, names, wrt_idx)
    if count_problem:
        problems.append(count_problem)
    rounding = _backward_rounding(run_forward, run_backward, inputs, douts, grads, names, wrt_idx)

    # 3. the numerical side
    ok_idx = [i for i in wrt_idx if i not in grad_problems]
    loss = Loss(f, inputs, douts, ok_idx)
    loss.evals = 2
    loss.set_outputs(outs_a)
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

    results: list[InputResult] = []
    analytic_full: list[np.ndarray | None] = [None] * len(inputs)
    numeric_full: list[np.ndarray | None] = [None] * len(inputs)
    sizes = sorted({s for a in inputs if isinstance(a, np.ndarray) for s in a.shape})
    checks: dict[int, _Comparison] = {}
    rms_terms = _rms(douts) * _rms(outs_a)
    for i in ok_idx:
        a, g = inputs[i], grads[i]
        assert g is not None  # guaranteed by _normalize_grads when i has no problem
        eps_a = max(_eps(np.asarray(a).dtype), _eps(g.dtype), loss.eps_eval)
        rtol_i = rtol if rtol is not None else min(1e-2, max(1e-9, 1000 * eps_a))
        # rounding of the analytic formula relative to the size of its terms, which for a
        # gradient that cancels almost exactly (batch norm of two rows) exceeds rtol * |dx|:
        # the terms scale like |dout| * |out| / |x|
        natural = rms_terms / loss.scale[i]
        floor = 64 * eps_a * natural + rounding.get(i, 0.0)
        checks[i] = _Comparison(
            loss,
            i,
            names[i],
            str(np.asarray(a).dtype),
            g.astype(np.float64),
            use_complex,
            rtol_i,
            atol,
            floor,
        )
    # probe mode: first random directions through all inputs at once (one evaluation each
    # with the complex step); the per-input search runs only where they disagree
    joint_ok = chosen_mode == "probe" and _joint_directions_agree(loss, checks, rng, notes)
    for i, a in enumerate(inputs):
        if i not in wrt_idx:
            results.append(_unchecked(names[i], a, False))
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
        g = grads[i]
        assert g is not None
        check = checks[i]
        if chosen_mode == "full":
            result = check.full(sizes)
            analytic_full[i], numeric_full[i] = check.analytic, check.numeric_all
        elif joint_ok:
            result = check.probe(rng, sizes, N_PASS_SAMPLES, 0)
        else:
            result = check.probe(rng, sizes, N_SAMPLES, N_DIRECTIONS)
        if g.dtype != np.asarray(a).dtype:
            result = _with(
                result,
                notes=result.notes
                + (f"gradient dtype {g.dtype} differs from the input's {np.asarray(a).dtype}",),
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
    for i, (a, orig) in enumerate(zip(inputs, originals, strict=True)):
        if isinstance(orig, np.ndarray) and not _same(a, orig):  # pragma: no cover - a bug of ours
            problems.append(f"the caller's input {names[i]!r} changed during the check")
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


class _Comparison:
    """Analytic vs numerical gradient of one input, in full or probe mode."""

    def __init__(
        self,
        loss: Loss,
        i: int,
        name: str,
        dtype: str,
        analytic: np.ndarray,
        use_complex: bool,
        rtol: float,
        atol: float | None,
        floor: float = 0.0,
    ) -> None:
        self.loss, self.i, self.name = loss, i, name
        self.analytic = analytic
        self.shape = analytic.shape
        self.dtype = dtype
        self.use_complex = use_complex
        self.method = "complex-step" if use_complex else "richardson"
        self.rtol, self.atol_user = rtol, atol
        self.numeric_all: np.ndarray | None = None
        self.floor = floor

    def coordinates(self, flat_idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self.use_complex:
            values = self.loss.complex_coordinates(self.i, flat_idx)
            # exact up to the rounding of the forward's arithmetic
            return values, 4 * EPS64 * np.abs(values)
        return self.loss.richardson_coordinates(self.i, flat_idx)

    def directional(self, v: np.ndarray) -> tuple[float, float]:
        """(value, error estimate) of the derivative of L along v in this input."""
        scale = self.loss.scale[self.i]
        value, err = self.loss.directional({self.i: scale * v}, self.use_complex)
        return value / scale, err / scale

    def direction_tolerance(self, gscale: float) -> float:
        """Allowed error of a sum of all entries times +-1: each within about rtol * gscale."""
        per_entry = 4 * self.rtol * gscale + 4 * self.floor + (self.atol_user or 0.0)
        return per_entry * math.sqrt(self.analytic.size)

    def atol(self, gscale: float, max_err: float) -> float:
        if self.atol_user is not None:
            return self.atol_user
        return self.rtol * gscale + 4 * max_err + 4 * self.floor

    def full(self, sizes: Sequence[int]) -> InputResult:
        size = self.analytic.size
        numeric, errs = self.coordinates(range(size))
        self.numeric_all = numeric.reshape(self.shape)
        a = self.analytic.reshape(-1)
        gscale = _finite_max(np.abs(numeric))
        atol = self.atol(gscale, _finite_max(errs))
        indices = [tuple(int(k) for k in np.unravel_index(j, self.shape)) for j in range(size)]
        return self._result(a, numeric, errs, indices, atol, gscale, sizes, size, [])

    def probe(
        self, rng: np.random.Generator, sizes: Sequence[int], n_samples: int, n_directions: int
    ) -> InputResult:
        size = self.analytic.size
        a = self.analytic.reshape(-1)
        sampled: set[int] = set()
        if n_samples:
            sampled = set(rng.choice(size, size=min(size, n_samples), replace=False).tolist())
        flat_idx = sorted(sampled | {int(np.argmax(np.abs(a)))})
        numeric, errs = self.coordinates(flat_idx)
        gscale = max(_finite_max(np.abs(numeric)), float(np.sqrt(np.mean(a * a))))
        atol = self.atol(gscale, _finite_max(errs))
        # directions: the error of a sum of `size` entries, each within about rtol * gscale
        dir_entries: list[Entry] = []
        for k in range(n_directions):
            v = signs(rng, self.shape)
            nv, ev = self.directional(v)
            av = float(np.sum(self.analytic * v))
            tol = 4 * ev + self.direction_tolerance(gscale)
            dir_entries.append(Entry(("direction", k), av, nv, ev, tol))
            if abs(av - nv) > tol and not any(not e.passed for e in dir_entries[:-1]):
                # bisect to one wrong entry, then sample the lines through it, so that the
                # report can tell one wrong column from one wrong entry
                j = self._localize(v, av - nv, size)
                extra = [j] + self._lines_through(j, rng)
                extra = [t for t in dict.fromkeys(extra) if t not in flat_idx]
                nj, ej = self.coordinates(extra)
                flat_idx.extend(extra)
                numeric = np.append(numeric, nj)
                errs = np.append(errs, ej)
        values = a[flat_idx]
        indices = [tuple(int(k) for k in np.unravel_index(j, self.shape)) for j in flat_idx]
        return self._result(
            values,
            numeric,
            errs,
            indices,
            atol,
            gscale,
            sizes,
            len(flat_idx) + n_directions,
            dir_entries,
            flat_idx,
        )

    def _lines_through(self, j: int, rng: np.random.Generator, per_axis: int = 8) -> list[int]:
        """Flat indices of up to ``per_axis`` entries on each axis-parallel line through j."""
        center = np.unravel_index(j, self.shape)
        found = []
        for axis, n in enumerate(self.shape):
            for k in rng.choice(n, size=min(n, per_axis), replace=False):
                idx = [int(c) for c in center]
                idx[axis] = int(k)
                found.append(int(np.ravel_multi_index(tuple(idx), self.shape)))
        return found

    def _localize(self, v: np.ndarray, discrepancy: float, size: int) -> int:
        """Bisect the entries of direction v to one whose gradient is wrong; log2(size) steps."""
        a, vflat = self.analytic.reshape(-1), v.reshape(-1)
        idx = np.arange(size)
        while idx.size > 1:
            half = idx[: idx.size // 2]
            vh = np.zeros(size)
            vh[half] = vflat[half]
            nh, _ = self.directional(vh.reshape(self.shape))
            d_half = float(np.dot(a[half], vflat[half])) - nh
            if abs(d_half) >= abs(discrepancy - d_half):
                idx, discrepancy = half, d_half
            else:
                idx, discrepancy = idx[idx.size // 2 :], discrepancy - d_half
        return int(idx[0])

    def _result(
        self,
        a: np.ndarray,
        n: np.ndarray,
        errs: np.ndarray,
        indices: list[tuple[int, ...]],
        atol: float,
        gscale: float,
        sizes: Sequence[int],
        n_checked: int,
        dir_entries: list[Entry],
        flat_idx: Sequence[int] | None = None,
    ) -> InputResult:
        tol = atol + self.rtol * np.abs(n)
        abs_err = np.abs(a - n)
        nonfinite = ~np.isfinite(n)
        failed = (abs_err > tol) | nonfinite
        notes: list[str] = []
        hints: list[str] = []
        if nonfinite.any():
            k = int(np.flatnonzero(nonfinite)[0])
            where = ", ".join(str(t) for t in indices[k])
            hints.append(
                f"the numerical derivative is NaN/inf at {self.name}[{where}] "
                f"({int(nonfinite.sum())} entries): the steps leave the forward's domain "
                "(sqrt or log near 0?); not a verdict on the backward there"
            )
        abs_err = np.where(nonfinite, np.inf, abs_err)
        # kinks: a jump between the one-sided derivatives that does not shrink with the step
        for k in np.flatnonzero(failed)[np.argsort(-abs_err[failed])][:16]:
            j = flat_idx[k] if flat_idx is not None else int(k)
            left, right, change = self.loss.one_sided(self.i, int(j))
            jump = abs(right - left)
            if jump > 10 * tol[k] and abs(change) < 0.25 * jump:
                where = f"{self.name}[{', '.join(str(t) for t in indices[k])}]"
                lo, hi = min(left, right) - tol[k], max(left, right) + tol[k]
                if lo <= a[k] <= hi:
                    failed[k] = False
                    notes.append(
                        f"{where} sits at a kink (one-sided derivatives {left:.6g} and "
                        f"{right:.6g}); the analytic {a[k]:.6g} is between them, not counted"
                    )
                else:
                    hints.append(
                        f"{where} sits at a kink (one-sided derivatives {left:.6g} and "
                        f"{right:.6g}) and the analytic {a[k]:.6g} is neither"
                    )
        dir_failed = [e for e in dir_entries if not e.passed]
        if dir_failed and not failed.any() and notes:
            notes.append("the failing random directions cross these kinks; not counted")
            dir_failed = []
        rel = abs_err / np.maximum(np.abs(n), max(1e-3 * gscale, np.finfo(np.float64).tiny))
        rel = np.where(nonfinite, np.inf, rel)
        entries = [
            Entry(indices[k], float(a[k]), float(n[k]), float(errs[k]), float(tol[k]))
            for k in np.argsort(-abs_err, kind="stable")[:N_WORST]
        ]
        if dir_failed:
            entries = [e for e in entries if not e.passed] + dir_failed
        hints = pattern_hints(self.name, self.shape, a, n, indices, failed, atol, sizes) + hints
        if dir_failed and not failed.any():
            hints.append(
                f"random directions through {self.name} fail but no sampled entry does: an "
                "error in a few entries; use mode='full' to see all of them"
            )
        n_failed = int(failed.sum()) + len(dir_failed)
        return InputResult(
            self.name,
            self.shape,
            self.dtype,
            n_failed == 0,
            method=self.method,
            max_abs_error=float(np.max(abs_err, initial=0.0)),
            max_rel_error=float(np.max(rel, initial=0.0)),
            atol=float(atol),
            rtol=float(self.rtol),
            n_checked=n_checked,
            n_failed=n_failed,
            worst=tuple(entries),
            hints=tuple(hints),
            notes=tuple(notes),
        )


# --- helpers ----------------------------------------------------------------------------------


def _joint_directions_agree(
    loss: Loss, checks: Mapping[int, _Comparison], rng: np.random.Generator, notes: list[str]
) -> bool:
    """True if N_DIRECTIONS random signed directions through all inputs agree within tolerance.

    An error e in one input's gradient shows up in a direction v as <e, v>: exactly |e_j| for
    one wrong entry, and with a spread of |e| for many, so a few directions see any error
    above the tolerance of a sum of ``size`` entries.
    """
    if not checks:
        return True
    worst = 0.0
    tol_inputs = sum(
        loss.scale[i] * c.direction_tolerance(float(np.max(np.abs(c.analytic), initial=0.0)))
        for i, c in checks.items()
    )
    bounds = np.cumsum([0] + [c.analytic.size for c in checks.values()])
    for _ in range(N_DIRECTIONS):
        all_signs = signs(rng, (int(bounds[-1]),))  # one draw for all inputs
        ws, analytic, tol = {}, 0.0, tol_inputs
        for k, (i, check) in enumerate(checks.items()):
            v = all_signs[bounds[k] : bounds[k + 1]].reshape(check.shape)
            ws[i] = loss.scale[i] * v
            analytic += loss.scale[i] * float(np.dot(check.analytic.reshape(-1), v.reshape(-1)))
        numerical, err = loss.directional(ws, checks[next(iter(checks))].use_complex)
        tol += 4 * err
        if not abs(analytic - numerical) <= tol:
            return False
        worst = max(worst, abs(analytic - numerical) / tol if tol else 0.0)
    notes.append(
        f"{N_DIRECTIONS} random directions through all inputs agree "
        f"(largest error {worst:.2g} of its tolerance); the largest entry of each gradient "
        "checked on its own"
    )
    return True


def _backward_rounding(
    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]],
    run_backward: Callable[[Any, Any, Sequence[Any]], Any],
    inputs: Sequence[Any],
    douts: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    names: Sequence[str],
    wrt_idx: Sequence[int],
) -> dict[int, float]:
    """Per float32/float16 input: the largest difference between its analytic gradient and
    the same forward and backward run on the inputs cast to float64.

    That difference is the rounding of the user's own low-precision arithmetic, which can be
    large against a small result (cancellation: the batch-norm dx of two rows is ~eps/var,
    computed from terms of size 1/std); it joins the tolerance. A wrong formula is wrong in
    float64 too, so this does not hide bugs. Code that fails in float64 keeps the default.
    """
    low = [i for i in wrt_idx if grads[i] is not None and _eps(np.asarray(inputs[i]).dtype) > 1e-15]
    if not low:
        return {}
    try:
        with np.errstate(all="ignore"):
            args = [
                np.asarray(a, dtype=np.float64) if i in wrt_idx else _copy(a)
                for i, a in enumerate(inputs)
            ]
            out, cache = run_forward(args)
            d64 = [np.asarray(d, dtype=np.float64) for d in douts]
            dout: Any = tuple(d64) if isinstance(out, tuple | list) else d64[0]
            raw = run_backward(dout, cache, args)
        grads64, problems, count = _normalize_grads(raw, inputs, names, wrt_idx)
    except Exception:  # the check itself reports what is wrong with the layer
        return {}
    found: dict[int, float] = {}
    for i in low:
        g64, g = grads64[i], grads[i]
        if count is None and i not in problems and g64 is not None and g is not None:
            diff = np.abs(g.astype(np.float64) - g64.astype(np.float64))
            found[i] = float(np.max(diff, initial=0.0))
    return found


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.max(finite, initial=0.0))


def _rms(arrays: Sequence[np.ndarray]) -> float:
    total = sum(float(np.sum(np.abs(a.astype(np.float64)) ** 2)) for a in arrays)
    count = sum(a.size for a in arrays)
    return math.sqrt(total / count) if count else 0.0


def _rng(seed: int) -> np.random.Generator:
    """The checker's random stream for ``seed``.

    Not ``default_rng(seed)``: tests draw their inputs from that, and a ``dout`` equal to ``x``
    makes the batch-norm ``dx`` vanish (``dout`` in the span of ``x_hat``) and hides every bug.
    """
    return np.random.default_rng([seed, _STREAM])


def _with(result: InputResult, **changes: Any) -> InputResult:
    from dataclasses import replace

    return replace(result, **changes)


def _unchecked(name: str, a: Any, checked: bool) -> InputResult:
    arr = np.asarray(a)
    return InputResult(name, tuple(arr.shape), str(arr.dtype), not checked, checked=checked)


def _copy(a: Any) -> Any:
    return a.copy() if isinstance(a, np.ndarray) else a


def _same(p: Any, q: Any) -> bool:
    p, q = np.asarray(p), np.asarray(q)
    if p.shape != q.shape:
        return False
    if p.dtype.kind in "fc" and q.dtype.kind in "fc":
        return bool(np.array_equal(p, q, equal_nan=True))
    return bool(np.array_equal(p, q))


def _where_differs(a: np.ndarray, orig: np.ndarray) -> str:
    diff = np.argwhere(~np.isclose(a, orig, rtol=0, atol=0, equal_nan=True))
    if diff.size == 0:
        return "its values changed"
    first = tuple(int(t) for t in diff[0])
    return (
        f"{len(diff)} entries changed, first at index {first}: "
        f"{float(orig[first]):.6g} -> {float(a[first]):.6g}"
    )


def _nonfinite(o: np.ndarray) -> str:
    bad = np.argwhere(~np.isfinite(o))
    first = tuple(int(t) for t in bad[0])
    return f"{len(bad)} NaN/inf entries, first at index {first} ({float(o[first])})"


def _k(k: int, outs: Sequence[Any]) -> str:
    return f" {k}" if len(outs) > 1 else ""


def _as_outputs(out: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in (out if isinstance(out, tuple | list) else [out])]


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if np.dtype(dtype).kind in "fc" else 0.0


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _param_names(fn: Callable[..., Any], n: int) -> list[str]:
    """The forward's positional parameter names when they match the inputs, else x0, x1, ..."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= n and not any(p.kind == p.VAR_POSITIONAL for p in params[:n]):
        return positional[:n]
    return [f"x{i}" for i in range(n)]


def _resolve_wrt(
    wrt: Sequence[int | str] | None, inputs: Sequence[Any], names: Sequence[str]
) -> list[int]:
    floating = [i for i, a in enumerate(inputs) if np.asarray(a).dtype.kind == "f"]
    if wrt is None:
        return floating
    idx = []
    for w in [wrt] if isinstance(wrt, int | str) else wrt:
        if isinstance(w, str):
            if w not in names:
                raise ValueError(f"wrt={w!r} is not an input; inputs are {list(names)}")
            i = list(names).index(w)
        else:
            if not -len(inputs) <= w < len(inputs):
                raise ValueError(f"wrt={w} is out of range for {len(inputs)} inputs")
            i = w % len(inputs)
        if i not in floating:
            raise ValueError(
                f"input {names[i]!r} has dtype {np.asarray(inputs[i]).dtype}; "
                "only floating-point inputs can be differentiated"
            )
        idx.append(i)
    return sorted(set(idx))


def _normalize_grads(
    raw: Any, inputs: Sequence[Any], names: Sequence[str], wrt_idx: Sequence[int]
) -> tuple[list[np.ndarray | None], dict[int, str], str | None]:
    """One gradient per input (None for constants), a problem per input, a problem for all."""
    n = len(inputs)
    grads: list[Any] = [None] * n
    problems: dict[int, str] = {}
    if isinstance(raw, Mapping):
        for i in range(n):
            for key in (names[i], "d" + names[i], i):
                if key in raw:
                    grads[i] = raw[key]
                    break
    elif isinstance(raw, tuple | list):
        if len(raw) == n:
            grads = list(raw)
        elif len(raw) == len(wrt_idx):
            for i, g in zip(wrt_idx, raw, strict=True):
                grads[i] = g
        else:
            msg = f"the backward returned {len(raw)} gradients for {n} inputs ({', '.join(names)})"
            return grads, dict.fromkeys(wrt_idx, ""), msg
    elif n == 1 or len(wrt_idx) == 1:
        grads[wrt_idx[0] if wrt_idx else 0] = raw
    else:
        msg = (
            f"the backward returned one {type(raw).__name__} for {n} inputs "
            f"({', '.join(names)}); return a tuple with one gradient per input"
        )
        return grads, dict.fromkeys(wrt_idx, ""), msg
    out: list[np.ndarray | None] = [None] * n
    for i in wrt_idx:
        g = grads[i]
        name = names[i]
        shape = tuple(np.shape(inputs[i]))
        if g is None:
            problems[i] = f"no gradient was returned for {name!r}"
            continue
        g = np.asarray(g)
        if g.dtype.kind != "f":
            problems[i] = (
                f"the gradient of {name!r} has dtype {g.dtype}; "
                "a gradient must be a real floating-point array"
            )
        elif g.shape != shape:
            hint = ""
            if g.shape == shape[::-1] and len(shape) == 2:
                hint = " - the transpose: return the gradient, not its .T?"
            elif g.size == int(np.prod(shape)):
                hint = " - same size: a reshape is missing?"
            elif _broadcasts_to(shape, g.shape):
                hint = " - the input is broadcast in the forward: sum the gradient over those axes"
            problems[i] = (
                f"the gradient of {name!r} has shape {g.shape}, "
                f"expected {shape} like the input{hint}"
            )
        elif not np.all(np.isfinite(g)):
            problems[i] = f"the gradient of {name!r} has {_nonfinite(g)}"
        else:
            out[i] = g
    return out, problems, None
