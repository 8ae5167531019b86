"""The steps of a gradient check, in the order :func:`bnsym.gradcheck.check.check_layer` runs them.

1. :func:`run_forward_twice` (safety): the forward on copies, twice; a forward that modifies
   its inputs, returns NaN/inf or is nondeterministic stops the check;
2. :func:`analytic_gradients`: the backward's gradients for a seeded random ``dout``, and
   what is wrong with them as returned (count, shape, dtype, writing into ``dout``);
3. :func:`numerical_side`: the scalar ``L = sum(dout * out)``, the mode and the method;
4. :func:`comparisons` (tolerances): per input its rtol, its rounding floor and, for float32,
   the measured difference from the same backward in float64;
5. :func:`compare_inputs`: each input's verdict in full or probe mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnsym.gradcheck.compare import Comparison
from bnsym.gradcheck.inputs import (
    CheckValueError,
    NotALayerError,
    as_outputs,
    copy_input,
    eps_of,
    float_dtype,
    nonfinite,
    normalize_grads,
    output_label,
    returned_grads,
    same,
    unchecked,
    where_differs,
)
from bnsym.gradcheck.numeric import EPS64, MIN_COMPLEX_STEP, ForwardRaised, Loss, dot
from bnsym.gradcheck.report import InputResult

TINY = float(np.finfo(np.float64).tiny)
FULL_LIMIT = 512  # mode="auto": an input whose first direction fails is compared in full up to this
COMPLEX_UP_FRONT = 2**14  # checked entries up to which the complex step is tried up front:
# beyond, its complex arithmetic costs more than a second real call (at (512, 256) 39 ms for
# a check by complex steps, 23 ms by central differences)
SMALL_INPUT = 64  # mode="probe": failing inputs up to this size are compared entry by entry
# a float32 gradient may differ from the same backward in float64 by this many float32
# roundings of its terms; more is an unstable formula, not rounding
ROUNDINGS_ALLOWED = 64


class BackwardRaised(Exception):
    """The user's backward raised ``error``: the check reports it rather than letting it out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Subject:
    """The code under check and what every step needs: the layer's (or function's) calls, its
    inputs and their names."""

    run_forward: Callable[[Sequence[Any]], tuple[Any, Any]]
    run_backward: Callable[[Any, Any, Sequence[Any]], Any]
    f: Callable[..., Any]  # inputs -> out, for the numerical derivatives
    # the caller's arrays, also the reference for "modified in place": the check never passes
    # them to the layer's code (it works on copies), so they cannot change
    inputs: list[Any]
    names: list[str]
    wrt_idx: list[int]
    forward_name: str
    backward_name: str
    # what the report calls the random seed of L = sum(seed * out): "dout" for a backward,
    # "ggrads" for a double backward (whose inputs include a dout of their own)
    seed_name: str = "dout"


def run_forward_twice(layer: Subject) -> str | tuple[Any, Any, list[Any], list[np.ndarray]]:
    """Step 1, safety: the forward on copies, twice; it must neither modify them nor vary.

    Returns ``(out, cache, args, outs)`` of the first call (``outs`` the outputs as a list),
    or the problem that stops the check: the forward modifies an input, returns NaN/inf, or is
    nondeterministic.
    """
    names, forward_name = layer.names, layer.forward_name
    for i in layer.wrt_idx:  # no derivative at inf, and none the checker could compute at NaN
        a = np.asarray(layer.inputs[i])
        if not np.all(np.isfinite(a)):
            return (
                f"the input {names[i]!r} has {nonfinite(a)}: the derivative is not defined "
                "there; give finite inputs (or leave this one out with wrt)"
            )
    args_a = [copy_input(a) for a in layer.inputs]
    out_a, cache = _forward(layer, args_a)
    # the second call on the same copies (unchanged, or the first call is reported): one
    # copy of the inputs less at the check's peak
    out_b, _ = _forward(layer, args_a)
    for i, (a, orig) in enumerate(zip(args_a, layer.inputs, strict=True)):
        if isinstance(orig, np.ndarray) and not same(a, orig):
            return (
                f"{forward_name} modifies its input {names[i]!r} in place "
                f"({where_differs(a, orig)}); it must treat its inputs as read-only: the "
                "caller's array would change under it (the next layer and the optimizer see "
                "other values)"
            )
    outs_a, outs_b = as_outputs(out_a), as_outputs(out_b)
    raw = list(out_a) if isinstance(out_a, tuple | list) else [out_a]
    for k, o in enumerate(outs_a):
        if o.dtype.kind not in "biuf":
            return (
                f"the output{output_label(k, outs_a)} of {forward_name} is "
                f"{type(raw[k]).__name__} {' '.join(repr(raw[k]).split()):.40}, not an array of "
                "real numbers; the "
                "forward must return an array (or a tuple of arrays)"
                + (
                    "; give a forward that returns out alone (check_layer takes one that "
                    "returns (out, cache))"
                    if len(raw) == 2 and k == 1
                    else ""
                )
            )
    for k, o in enumerate(outs_a):
        if not np.all(np.isfinite(o)):
            return f"the output{output_label(k, outs_a)} of {forward_name} has {nonfinite(o)}"
    if len(outs_a) != len(outs_b) or not all(
        same(p, q) for p, q in zip(outs_a, outs_b, strict=True)
    ):
        shapes_a, shapes_b = [o.shape for o in outs_a], [o.shape for o in outs_b]
        if shapes_a != shapes_b:
            differ = f"return outputs of shape(s) {shapes_a} and {shapes_b}"
        else:
            diff = max(float(np.max(np.abs(p - q))) for p, q in zip(outs_a, outs_b, strict=True))
            differ = f"differ by up to {diff:.3g}"
        return (
            f"{forward_name} is nondeterministic: two calls on the same inputs {differ} "
            "(random numbers without a fixed seed, e.g. dropout?); "
            "its gradient cannot be checked numerically"
        )
    return out_a, cache, args_a, outs_a


def _forward(layer: Subject, args: list[Any]) -> tuple[Any, Any]:
    """The layer's forward; what it raises comes out as :class:`ForwardRaised` (check_layer's
    complaint that the forward is not a layer excepted)."""
    try:
        return layer.run_forward(args)
    except NotALayerError:
        raise
    except Exception as exc:
        raise ForwardRaised(exc) from exc


def analytic_gradients(
    layer: Subject,
    out: Any,
    outs: list[np.ndarray],
    cache: Any,
    args: list[Any],
    dout: Any,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray | None], dict[int, str], list[str], list[Any]]:
    """Step 2: the backward's gradients for a seeded random ``dout`` (or the caller's).

    Returns ``(douts, grads, grad_problems, problems, returned)``: one dout per output, one
    gradient per input (None where unusable), a problem per input whose gradient has the
    wrong shape or dtype or is missing, problems of the layer as a whole (a backward writing
    into dout or into a cached input, the wrong number of gradients), and what the backward
    returned in each input's place, as returned (for swapped gradients of other shapes).
    """
    names, backward_name = layer.names, layer.backward_name
    if dout is None:
        douts = []
        for o in outs:
            d = rng.standard_normal(o.shape)
            factor = range_factor(o)
            if factor != 1.0:
                d *= factor
            douts.append(d.astype(float_dtype(o.dtype), copy=False))
    else:
        # only a tuple means several outputs: a list is one array written as nested lists
        douts = [np.asarray(d) for d in (dout if isinstance(dout, tuple) else [dout])]
        shapes = [o.shape for o in outs]
        if [d.shape for d in douts] != shapes:
            raise CheckValueError(
                f"{layer.seed_name} has shape(s) {[d.shape for d in douts]}, the output(s) of "
                f"{layer.forward_name} {shapes}; pass a tuple of arrays for several outputs"
            )
    dout_arg: Any = tuple(douts) if isinstance(out, tuple | list) else douts[0]
    dout_copy = tuple(d.copy() for d in douts) if isinstance(dout_arg, tuple) else douts[0].copy()
    try:
        grads_raw = layer.run_backward(dout_copy, cache, args)
    except Exception as exc:
        raise BackwardRaised(exc) from exc
    problems: list[str] = []
    if not all(same(p, q) for p, q in zip(as_outputs(dout_copy), douts, strict=True)):
        problems.append(
            f"{backward_name} modifies {layer.seed_name} in place; the upstream gradient may "
            "be shared, so a backward must not write into it"
        )
    for i, (a, orig) in enumerate(zip(args, layer.inputs, strict=True)):
        if isinstance(orig, np.ndarray) and not same(a, orig):
            problems.append(
                f"{backward_name} modifies the input {names[i]!r} (through the cache) in place "
                f"({where_differs(a, orig)}): the caller's array changes, and the next step "
                "starts from corrupted values"
            )
    grads, grad_problems, count_problem = normalize_grads(
        grads_raw, layer.inputs, names, layer.wrt_idx
    )
    if count_problem:
        problems.append(count_problem)
    return douts, grads, grad_problems, problems, returned_grads(grads_raw, names, layer.wrt_idx)[0]


def numerical_side(
    layer: Subject,
    douts: list[np.ndarray],
    outs: list[np.ndarray],
    ok_idx: list[int],
    mode: str,
    method: str,
    rng: np.random.Generator,
) -> tuple[Loss, str, list[str]]:
    """Step 3: the scalar L = sum(dout * out) and the mode.

    The method (:attr:`Loss.use_complex`: the complex step where it cross-checks with finite
    differences, else Richardson) and the forward's noise are decided when first needed, up
    front only for ``mode="full"``. Returns ``(loss, mode, notes)``.
    """
    loss = Loss(layer.f, layer.inputs, douts, ok_idx)
    loss.evals = 2  # the safety calls
    loss.set_outputs(outs)
    total = sum(loss.base[i].size for i in ok_idx)
    chosen_mode = mode if mode != "auto" or total else "full"
    # the method and the noise are settled when first needed, each with its own generator
    # (so that the directions do not depend on whether they ran); the method up front for
    # inputs up to COMPLEX_UP_FRONT entries (exact first directions); above, a first
    # central difference per input settles most checks without the complex step's copies of
    # every temporary of the forward
    loss.method = method
    loss.method_rng = np.random.default_rng(int(rng.integers(2**63)))
    loss.noise_rng = np.random.default_rng(int(rng.integers(2**63)))
    if total <= COMPLEX_UP_FRONT and ok_idx:
        loss.use_complex  # noqa: B018 - decides the method now: the first directions use it
    if chosen_mode == "full" and ok_idx and not loss.use_complex:
        loss.ensure_noise()
    return loss, chosen_mode, []


def noise_note(loss: Loss, seed_name: str = "dout") -> list[str]:
    """A note when L rounds far above float64 (float32 inside, or a kink next to x)."""
    if loss.eps_eval <= 1e-13:
        return []
    return [
        f"L = sum({seed_name} * out) varies by {loss.eps_eval:.2g} relative on tiny steps (float32 "
        "inside, or a kink or singularity next to x?); steps and tolerances are sized for it"
    ]


def comparisons(
    layer: Subject,
    loss: Loss,
    douts: list[np.ndarray],
    outs: list[np.ndarray],
    grads: list[np.ndarray | None],
    ok_idx: list[int],
    rtol: float | None,
    atol: float | None,
) -> tuple[dict[int, Comparison], dict[int, list[str]], dict[int, list[str]]]:
    """Step 4, tolerances: a :class:`Comparison` per input with a usable gradient.

    rtol from the input's dtype; the rounding floor of the user's own arithmetic; for float32
    inputs the measured difference from the same backward in float64 (or a hint that it is too
    large). Returns ``(comparisons, hints, notes)``, the last two per input.
    """
    rounding = backward_rounding(
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
    rms_douts = rms(douts)
    rms_terms = rms_douts * rms(outs)
    # inputs far from 0 against their spread (x = 3000 + N(0, 1)) are rounded at their
    # magnitude: float32 centering loses that factor of precision in every correct formula
    offset = max([1.0] + [rms([loss.base[i]]) / loss.scale[i] for i in ok_idx])
    for i in ok_idx:
        a, g = layer.inputs[i], grads[i]
        if g is None:  # not reached: normalize_grads names a problem for a missing gradient
            continue
        # the input's precision, not the gradient's: a float32 gradient of a float64 input is
        # held to float64 plus its own rounding to float32 (and a note), not to float32
        eps_dtype = eps_of(np.asarray(a).dtype)
        eps_a = max(eps_dtype, loss.eps_eval)
        rtol_i = rtol if rtol is not None else min(1e-2, max(1e-9, 1000 * eps_a))
        # rounding of the analytic formula relative to the size of its terms, which for a
        # gradient that cancels almost exactly (batch norm of two rows) exceeds rtol * |dx|:
        # the terms scale like |dout| * |out| / |x|
        natural = rms_terms / loss.scale[i]
        # and the outputs' absolute rounding where they underflow (x of 1e-200 squared is 0):
        # the derivative of an output rounded at TINY is known to that over the step at best
        # (finite differences have it in their error estimates; the complex step here)
        extra = 0.0 if loss.method == "richardson" else 4 * loss.complex_resolution(i)
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
            extra += min(measured, allowed, g64_max)
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
            np.asarray(a).dtype.name,
            g.astype(np.float64, copy=False),
            rtol,
            atol,
            eps_dtype=eps_dtype,
            eps_grad=eps_of(g.dtype),
            natural=natural,
            floor_extra=extra,
            rounding_error=rounding_error,
        )
    labels = [
        (layer.names[k], np.asarray(a))
        for k, a in enumerate(layer.inputs)
        if np.asarray(a).dtype.kind in "iu" and np.ndim(a) == 1
    ]
    for check in checks.values():
        check.labels = labels
    return checks, input_hints, input_notes


def compare_inputs(
    layer: Subject,
    checks: dict[int, Comparison],
    grads: list[np.ndarray | None],
    grad_problems: dict[int, str],
    mode: str,
    rng: np.random.Generator,
    input_hints: dict[int, list[str]],
    input_notes: dict[int, list[str]],
) -> tuple[list[InputResult], str]:
    """Step 5: each input's verdict, in the order of the inputs, and the mode that decided
    them (``"probe"`` if random directions did for any input, else ``"full"``).

    ``"auto"`` and ``"probe"`` first try one random direction per input; where it does not
    agree, ``"auto"`` compares an input of up to FULL_LIMIT entries entry by entry and
    ``"probe"`` (and ``"auto"`` above FULL_LIMIT) looks closer with :meth:`Comparison.probe`.

    Constants are not checked; inputs with an unusable gradient fail with their problem; the
    rest are compared in ``mode`` (a small input that fails in probe mode again entry by
    entry, so that its pattern shows in the hints). A gradient in another dtype than its input
    is a problem of that input.
    """
    names, inputs = layer.names, layer.inputs
    results: list[InputResult] = []
    probed = False  # some input's verdict came from random directions
    for i, a in enumerate(inputs):
        if i not in layer.wrt_idx:
            results.append(unchecked(names[i], a, False))
            continue
        if i in grad_problems and grads[i] is None:
            results.append(
                InputResult(
                    names[i],
                    tuple(np.shape(a)),
                    np.asarray(a).dtype.name,
                    False,
                    problems=(grad_problems[i],) if grad_problems[i] else (),
                )
            )
            continue
        if np.size(a) == 0:  # nothing to compare: not checked, like a constant (not FAIL)
            results.append(unchecked(names[i], a, False))
            continue
        check, g_dtype = checks[i], grads[i].dtype  # type: ignore[union-attr]
        quick = check.quick(rng) if mode in ("auto", "probe") else None
        if quick is not None:  # one random direction agrees: the common case, settled
            result = quick
        elif mode == "probe" or (mode == "auto" and check.analytic.size > FULL_LIMIT):
            result = check.probe(rng)
        if quick is None and (
            mode == "full"
            or (mode == "auto" and check.analytic.size <= FULL_LIMIT)
            or (not result.passed and check.analytic.size <= SMALL_INPUT)
        ):
            # a small input that fails is compared entry by entry: its pattern shows
            result = check.full()
        else:
            probed = True
        result = resolved(layer, check, result)
        if i in grad_problems:  # the shape is wrong; the values were compared all the same
            result = with_changes(
                result, passed=False, problems=(grad_problems[i],) + result.problems
            )
        if g_dtype != np.asarray(a).dtype:
            # the values are judged (to the coarser dtype's rounding); the dtype is a warning
            result = with_changes(
                result,
                notes=result.notes
                + (
                    f"warning: the gradient of {names[i]!r} has dtype {g_dtype}, the input "
                    f"{np.asarray(a).dtype}; return it in the input's dtype",
                ),
            )
        if input_hints[i] or input_notes[i]:
            result = with_changes(
                result,
                hints=result.hints + tuple(input_hints[i]),
                notes=result.notes + tuple(input_notes[i]),
                passed=result.passed and not input_hints[i],
            )
        results.append(result)
    return results, "probe" if probed else "full"


def resolved(layer: Subject, check: Comparison, result: InputResult) -> InputResult:
    """``result``, not judged where the numerical derivatives cannot resolve the gradient,
    with a note of what they resolve where the outputs underflow.

    The outputs of x ** 2 at x = 1e-200 are 0 in float64: L is known to TINY * |dout|, so a
    difference quotient over a step h resolves derivatives to about that over h (1e-102 here),
    far above the gradient (2e-200): such a check compares nothing and must not pass. The
    complex step, grown until its imaginary parts keep their digits, resolves it.
    """
    loss, i = check.loss, check.i
    if loss.resolution == 0 or loss.max_out >= MIN_COMPLEX_STEP:
        return result  # the outputs keep their digits: the error estimates say the rest
    fd, cs = loss.fd_resolution(i), loss.complex_resolution(i)
    seen = cs if check.use_complex else fd
    # and the error estimates of what was compared (rounding at the steps included)
    seen = max([seen] + [e.error_estimate for e in result.worst if e.index[:1] != ("direction",)])
    size = float(np.max(np.abs(check.analytic), initial=0.0))
    natural = EPS64 * check.natural  # a gradient this far below its terms is a zero one
    name = layer.names[i]
    what = (
        f"the outputs of {layer.forward_name} underflow (largest |output| {loss.max_out:.3g}): "
        f"the numerical derivatives resolve the gradient of {name} to {seen:.3g}"
        + ("" if check.use_complex else f" (finite differences; the complex step: {cs:.3g})")
    )
    # resolved: finer than the gradient; for a gradient of exactly 0, finer than a unit
    # roundoff of |dout| times the input's spread (x ** 2 at 0 is resolved to 1e-20 and its
    # gradient 0 confirmed; at 1e-200 a gradient of 0 for 2e-200 is not: 1e-118 is coarser)
    zero_size = EPS64 * rms(loss.dout) * loss.scale[i]
    if seen < max(size if size > 0 else zero_size, natural):
        return with_changes(result, notes=result.notes + (f"{what}, finer than it ({size:.3g})",))
    return with_changes(
        result,
        passed=False,
        judged=False,
        problems=result.problems
        + (
            f"{what}, which is more than the gradient itself ({size:.3g}): its values could "
            "not be compared (the complex step resolves more where the forward is "
            "complex-analytic; inputs further from underflow do too)",
        ),
    )


def backward_rounding(
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
            # copies, also of float64 inputs: asarray would hand the caller's array to a
            # backward that may write into its cache
            np.array(a, dtype=np.float64, order="C") if i in wrt_idx else copy_input(a)
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


def range_factor(o: np.ndarray) -> float:
    """1, or for outputs far from 1 (1e-300: an input of 1e-150 squared) the power of two that
    brings the terms of L = sum(dout * out) to about 1: their derivatives along the steps then
    stay far from underflow and overflow (the gradients scale with dout, both sides alike).
    At most 2^500 either way: a gradient of 3 * x at a subnormal x times 2^1000 is 1e301, whose
    square (in a norm) overflows."""
    size = float(np.max(np.abs(o), initial=0.0))  # not rms: squares of 1e-300 underflow
    if size == 0 or not math.isfinite(size) or 1e-100 <= size <= 1e100:
        return 1.0
    return float(2.0 ** min(500, max(-500, -round(math.log2(size)))))


def rms(arrays: Sequence[np.ndarray]) -> float:
    """The root mean square of all entries, relative to the largest: squares of 1e-200
    underflow and of 1e200 overflow."""
    flats = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    count = sum(f.size for f in flats)
    top = max((float(np.max(np.abs(f))) for f in flats if f.size), default=0.0)
    if count == 0 or top == 0 or not math.isfinite(top):
        return top if count else 0.0
    if 1e-150 < top < 1e150:  # the squares neither underflow nor overflow: no scaled copy
        return math.sqrt(sum(float(dot(f, f)) for f in flats) / count)
    total = sum(float(dot(f / top, f / top)) for f in flats)
    return top * math.sqrt(total / count)


def with_changes(result: InputResult, **changes: Any) -> InputResult:
    return replace(result, **changes)
