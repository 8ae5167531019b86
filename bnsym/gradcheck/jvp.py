"""Check forward-mode derivatives: a jvp against numerical directional derivatives (NumPy only).

The jvp of ``f`` at the inputs, along tangents ``t`` (one per input, shaped like it), is the
directional derivative ``d/ds f(inputs + s t)`` at ``s = 0``: an array shaped like the output.
Central differences of the forward along the same tangents give it numerically, so the check
compares two arrays entry by entry:

1. one random tangent through every input at once (one call of the jvp, two of the forward):
   an error in the jvp of any input moves the result, so agreement settles the check;
2. where it disagrees, Richardson differences (with their error estimates, after measuring the
   forward's rounding) along a random tangent of each input alone: the report names the input
   whose jvp is wrong and the entries of the tangent output where it differs.

Tangents are random signs times U(1, 2), in the input's own units (its spread) and snapped to
the steps (:meth:`bnsym.gradcheck.numeric.Loss.snap`), so that both sides differentiate along
exactly the same direction. The tolerance of an entry is ``atol + rtol * |numerical|`` as in
the reverse-mode check: rtol 1000 units of the input's precision (at least 1e-9), atol from the
error estimates and the size of the jvp's terms.

>>> import numpy as np
>>> def f(x, w):
...     return np.tanh(x) * w
>>> def f_jvp(x, w, tx, tw):  # returns (out, tangent out), as jax.jvp does
...     return np.tanh(x) * w, (1 - np.tanh(x) ** 2) * w * tx + np.tanh(x) * tw
>>> check_jvp(f, f_jvp, np.linspace(-1, 1, 4), np.full(4, 0.5)).passed
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bnsym.gradcheck.hints import pattern_hints
from bnsym.gradcheck.inputs import (
    CheckTypeError,
    CheckValueError,
    DtypeError,
    _as_array,
    callable_name,
    changed_shape,
    copy_input,
    eps_of,
    nonfinite,
    nothing_to_differentiate,
    param_names,
    raised,
    resolve_wrt,
    shapes_text,
    unchecked,
    validate_call,
    validate_options,
)
from bnsym.gradcheck.numeric import (
    EPS64,
    MIN_COMPLEX_STEP,
    SUBNORMAL,
    ForwardRaised,
    Loss,
    OutputChanged,
    dot,
)
from bnsym.gradcheck.report import Entry, InputResult, Report
from bnsym.gradcheck.steps import (
    ROUNDINGS_ALLOWED,
    Subject,
    rms,
    run_forward_twice,
    with_changes,
)

__all__ = ["check_jvp"]

_STREAM = 0x6A7670  # "jvp": the tangents are not drawn from the reverse check's stream
METHODS = ("auto", "richardson")
N_WORST = 5


class JvpRaised(Exception):
    """The user's jvp raised ``error``: the check reports it rather than letting it out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class JvpProblem(Exception):
    """The jvp returned something that cannot be compared (count, shape, dtype, NaN)."""


def check_jvp(
    forward: Callable[..., Any],
    jvp: Callable[..., Any],
    *inputs: Any,
    wrt: Sequence[int | str] | None = None,
    seed: int = 0,
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] | None = None,
    tangents: Sequence[Any] | None = None,
) -> Report:
    """Check ``jvp(*inputs, *tangents)`` against numerical directional derivatives of
    ``forward(*inputs) -> out``.

    inputs: the arrays the forward takes (never modified); floating-point ones are
        differentiated, integer ones are constants.
    jvp: called with the inputs and one tangent per input (an array shaped like a
        floating-point input, zeros for inputs not in ``wrt``; None for integer inputs), as
        bnsym's generated ``jvp(x, gamma, beta, tx, tgamma, tbeta)``; returns
        ``(out, tangent_out)`` as ``jax.jvp`` does, or ``tangent_out`` alone, shaped like the
        output (a tuple of arrays for a tuple of outputs).
    wrt: the inputs whose tangents are checked, by position or name; default all
        floating-point inputs.
    seed: seeds the random tangents (printed in the report).
    method: ``"auto"`` (a central difference, then Richardson where it disagrees) or
        ``"richardson"`` (Richardson from the start).
    rtol, atol: override the tolerances (``|jvp - numerical| <= atol + rtol * |numerical|``).
    names: the inputs' names in the report; default the forward's parameter names.
    tangents: one tangent per input (None for constants); default seeded random ones.

    Returns a :class:`~bnsym.gradcheck.report.Report` whose ``word`` is ``("fwd",)``: per
    input, whether its jvp agrees, the worst entries of the tangent output, hints; its text
    leads with what is wrong (``forward mode, order 1: the jvp of x is wrong along …``). A
    forward or jvp that raises is a failed report naming it.

    >>> import numpy as np
    >>> def f(x):
    ...     return x**3
    >>> def wrong_jvp(x, tx):
    ...     return x**3, 2 * x**2 * tx  # should be 3 x^2 tx
    >>> report = check_jvp(f, wrong_jvp, np.linspace(1, 2, 4))
    >>> report.passed, report["x"].n_failed
    (False, 4)
    >>> print(str(report).splitlines()[0][:73])
    forward mode, order 1: the jvp of x is wrong along a random tangent: tout
    """
    arrays = validate_call(forward, jvp, inputs, names, "jvp")
    names = list(names) if names is not None else param_names(forward, len(arrays))
    validate_options(seed, rtol, atol)
    if method not in METHODS:
        raise CheckValueError(f"method must be one of {METHODS} for a jvp, not {method!r}")
    wrt_idx = resolve_wrt(wrt, arrays, names)
    for i in wrt_idx:
        dtype = np.asarray(arrays[i]).dtype
        if dtype.itemsize < 4:  # float16: the tolerance is too wide to see a wrong jvp
            raise DtypeError(
                f"input {names[i]!r} has dtype {dtype}: forward mode is checked in float32 or "
                f"float64 (give {names[i]}.astype(np.float32)); low precision is judged in "
                "reverse mode at order 1 (check_function)"
            )
    given = _given_tangents(tangents, arrays, names, wrt_idx)
    with np.errstate(all="ignore"):  # NaN/inf are reported where they occur
        return _Check(forward, jvp, arrays, names, wrt_idx, seed, method, rtol, atol).run(given)


def _given_tangents(
    tangents: Sequence[Any] | None, arrays: list[Any], names: list[str], wrt_idx: list[int]
) -> dict[int, np.ndarray] | None:
    """The caller's tangents of the checked inputs, or None for random ones."""
    if tangents is None:
        return None
    if isinstance(tangents, np.ndarray | str) or not isinstance(tangents, Sequence):
        raise CheckTypeError("tangents must be a sequence with one tangent per input (or None)")
    if len(tangents) != len(arrays):
        raise CheckValueError(
            f"tangents has {len(tangents)} entries for {len(arrays)} inputs; give one per input"
        )
    found = {}
    for i in wrt_idx:
        t = tangents[i]
        if t is None:
            raise CheckValueError(f"tangents: the tangent of {names[i]!r} is None")
        t = _as_array(t)
        if t.dtype.kind not in "biuf":  # complex: a cast would drop the imaginary part
            raise DtypeError(
                f"tangents: the tangent of {names[i]!r} has dtype {t.dtype}; give a real "
                f"floating-point array shaped like {names[i]}"
            )
        t = t.astype(np.float64)
        if t.shape != np.shape(arrays[i]):
            raise CheckValueError(
                f"tangents: the tangent of {names[i]!r} has shape {t.shape}, the input "
                f"{np.shape(arrays[i])}"
            )
        found[i] = t
    return found


class _Check:
    """One jvp check: the calls, the tangents, the comparisons, the report."""

    def __init__(
        self,
        f: Callable[..., Any],
        jvp: Callable[..., Any],
        inputs: list[Any],
        names: list[str],
        wrt_idx: list[int],
        seed: int,
        method: str,
        rtol: float | None,
        atol: float | None,
    ) -> None:
        self.f, self.jvp = f, jvp
        self.inputs, self.names, self.wrt_idx = inputs, names, wrt_idx
        self.seed, self.method, self.rtol_user, self.atol_user = seed, method, rtol, atol
        self.f_name, self.jvp_name = callable_name(f), callable_name(jvp)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _STREAM])))
        self.jvp_calls = 0

    # -- the sequence ----------------------------------------------------------------------

    def run(self, given: dict[int, np.ndarray] | None) -> Report:
        if not any(np.size(self.inputs[i]) for i in self.wrt_idx):
            return self._stopped(nothing_to_differentiate(self.names, self.inputs), 0)
        subject = Subject(
            lambda args: (self.f(*args), None),
            lambda d, c, a: None,
            self.f,
            self.inputs,
            self.names,
            self.wrt_idx,
            self.f_name,
            self.jvp_name,
        )
        try:
            safe = run_forward_twice(subject)
        except ForwardRaised as exc:
            problem = raised(self.f_name, exc.error, self.names, self.inputs)
            return self._stopped(problem, 1, "forward")
        if isinstance(safe, str):
            return self._stopped(safe, 2)
        out, _, _, outs = safe
        if not any(o.size for o in outs):  # no tangent output to compare: blame no code
            shapes = [tuple(o.shape) for o in outs]
            return self._stopped(
                f"no input was checked: there is nothing to differentiate, as {self.f_name} "
                f"returned outputs with no entries {shapes} (inputs "
                f"{shapes_text(self.names, self.inputs)}); nothing was compared",
                2,
            )
        self.outs = outs
        self.several = isinstance(out, tuple | list)
        cotangents = [self.rng.standard_normal(o.shape) for o in outs]
        self.loss = Loss(self.f, self.inputs, cotangents, self.wrt_idx)
        self.loss.evals = 3
        self.loss.set_outputs(outs)
        self.loss.noise_rng = np.random.default_rng(int(self.rng.integers(2**63)))
        self.rms_out = rms(outs)
        checked = [i for i in self.wrt_idx if np.size(self.inputs[i])]
        raw = {i: given[i] if given is not None else self._random_tangent(i) for i in checked}
        try:
            return self._compare(raw, checked)
        except ForwardRaised as exc:
            problem = raised(self.f_name, exc.error, self.names, self.inputs)
            return self._stopped(
                f"{problem} during the numerical derivatives, on inputs moved by a small step",
                self.loss.evals,
                "forward",
            )
        except OutputChanged as exc:
            return self._stopped(changed_shape(self.f_name, exc), self.loss.evals)
        except JvpRaised as exc:
            problem = raised(self.jvp_name, exc.error, self.names, self.inputs)
            return self._stopped(problem, self.loss.evals, "jvp")
        except JvpProblem as exc:
            return self._stopped(str(exc), self.loss.evals)

    def _random_tangent(self, i: int) -> np.ndarray:
        # random signs times U(1, 2): one wrong entry of the jvp moves the result by at least
        # its own error, and equal errors cannot cancel exactly (as the reverse check's quick
        # direction); in the input's units, so that the forward bends on the step's scale
        v = self.rng.random(np.shape(self.inputs[i])) * 2.0 - 1.0
        v += np.sign(v)
        return np.asarray(self.loss.direction(i, v), dtype=np.float64)

    def _compare(self, raw: dict[int, np.ndarray], checked: list[int]) -> Report:
        fine = self.method == "richardson"
        together = self._along(raw, fine)
        results: dict[int, InputResult] = {}
        if together.passed:
            for i in checked:
                results[i] = together.result(self.names[i], self.inputs[i])
        else:  # which input's jvp is wrong: each along its own tangent, with Richardson
            self.loss.ensure_noise()
            for i in checked:
                results[i] = self._along({i: raw[i]}, True).result(self.names[i], self.inputs[i])
        inputs = tuple(  # not compared: constants, and empty inputs (nothing to move)
            results[i] if i in results else unchecked(self.names[i], a, False)
            for i, a in enumerate(self.inputs)
        )
        notes = []
        if self.loss.noise_measured and self.loss.eps_eval > 1e-13:
            notes.append(
                f"the forward varies by {self.loss.eps_eval:.2g} relative on tiny steps "
                "(float32 inside, or a kink next to the inputs?); steps and tolerances are "
                "sized for it"
            )
        return Report(
            all(r.passed for r in inputs),
            seed=self.seed,
            mode="probe",
            inputs=inputs,
            forward=self.f_name,
            backward=self.jvp_name,
            notes=tuple(notes),
            evaluations=self.loss.evals,
            word=("fwd",),
        )

    def _stopped(self, problem: str, evaluations: int, who: str | None = None) -> Report:
        unjudged = tuple(
            with_changes(
                unchecked(self.names[i], a, i in self.wrt_idx), judged=i not in self.wrt_idx
            )
            for i, a in enumerate(self.inputs)
        )
        return Report(
            False,
            seed=self.seed,
            mode="probe",
            inputs=unjudged,
            forward=self.f_name,
            backward=self.jvp_name,
            problems=(problem,),
            evaluations=evaluations,
            raised=who,
            word=("fwd",),
        )

    # -- one tangent -------------------------------------------------------------------------

    def _along(self, raw: dict[int, np.ndarray], fine: bool) -> _Comparison:
        """Both sides along the tangents ``raw`` (input -> direction), snapped to the steps:
        the jvp, and a central difference (``fine``: Richardson with its error estimate)."""
        h = self.loss.fd_step()
        ws = self.loss.snap(raw, h / 2)  # x + k h/2 w exact: the quotients are along ws
        analytic = self._user_jvp(ws, self.inputs)
        d1, at_steps = self._central(ws, h)
        noise = self._rounding()
        if fine:
            d2, at_steps2 = self._central(ws, h / 2)
            numerical = (4 * d2 - d1) / 3
            errors = np.abs(d2 - d1) / 3 + 2 * noise / (h / 2)
            at_steps = np.maximum(at_steps, at_steps2)
            label = "richardson"
        else:
            numerical, errors, label = d1, 2 * noise / h, "central"
        resolution = 0.0
        if self.loss.max_out < MIN_COMPLEX_STEP:
            # the outputs underflow at the inputs, so their rounding there says nothing: the
            # outputs at the steps are known to their own rounding (and a few subnormals), and
            # the quotients resolve derivatives no finer than that over the step
            errors = np.maximum(errors, at_steps)
            resolution = float(np.max(errors, initial=0.0))
        low = [i for i in ws if eps_of(np.asarray(self.inputs[i]).dtype) > 1e-15]
        known = None
        if low:  # the user's own low-precision rounding: the same jvp in float64
            inputs64 = [
                np.array(a, dtype=np.float64) if i in self.wrt_idx else copy_input(a)
                for i, a in enumerate(self.inputs)
            ]
            try:
                known = analytic - self._user_jvp(ws, inputs64)
            except (JvpRaised, JvpProblem):
                known = None
        eps_a = max(
            [EPS64, self.loss.eps_eval] + [eps_of(np.asarray(self.inputs[i]).dtype) for i in ws]
        )
        size = max(
            float(np.sqrt(dot(w.reshape(-1), w.reshape(-1)) / max(w.size, 1))) / self.loss.scale[i]
            for i, w in ws.items()
        )
        return _Comparison(
            analytic, numerical, errors, label, eps_a, self.rms_out * size, known, self, resolution
        )

    def _central(self, ws: dict[int, np.ndarray], t: float) -> tuple[np.ndarray, np.ndarray]:
        """The central difference at step t, and the rounding of the outputs at the steps over
        the step (per entry: a few ulps of the larger of the two, at least a few subnormals)."""
        plus = self._outputs_at(ws, t)
        minus = self._outputs_at(ws, -t)
        rounding = (4 * EPS64 * np.maximum(np.abs(plus), np.abs(minus)) + 4 * SUBNORMAL) / t
        return (plus - minus) / (2 * t), rounding

    def _outputs_at(self, ws: dict[int, np.ndarray], t: float) -> np.ndarray:
        args = list(self.loss.real)
        for i, w in ws.items():
            args[i] = self.loss.base[i] + t * w
        outs = self.loss.outputs(args)
        self.loss.same_shapes(outs)
        return _flat(outs)

    def _rounding(self) -> np.ndarray:
        """The rounding of each output entry: the forward's measured relative noise (float64's
        until measured) times the entry, or the outputs' typical size where that is larger."""
        flat = _flat(self.outs)
        return 2 * self.loss.eps_eval * np.maximum(np.abs(flat), self.rms_out)

    def _user_jvp(self, ws: dict[int, np.ndarray], inputs: Sequence[Any]) -> np.ndarray:
        """The user's jvp along ``ws`` at ``inputs`` (their dtype), as one flat float64 array."""
        args = [copy_input(a) for a in inputs]
        tangents: list[Any] = []
        for i, a in enumerate(args):
            if np.asarray(a).dtype.kind != "f":
                tangents.append(None)
            elif i in ws:
                tangents.append(ws[i].astype(np.asarray(a).dtype))
            else:
                tangents.append(np.zeros(np.shape(a), dtype=np.asarray(a).dtype))
        self.jvp_calls += 1
        try:
            result = self.jvp(*args, *tangents)
        except Exception as exc:
            raise JvpRaised(exc) from exc
        return self._tangent_out(result)

    def _tangent_out(self, result: Any) -> np.ndarray:
        """The tangent output of what the jvp returned, flat, or a :class:`JvpProblem`."""
        k, seq = len(self.outs), (tuple, list)
        if self.several:  # (outs, touts), or touts: one tangent per output
            if isinstance(result, seq) and len(result) == 2:
                if all(isinstance(r, seq) and len(r) == k for r in result):
                    result = result[1]
            if not isinstance(result, seq) or len(result) != k:
                raise JvpProblem(
                    f"{self.jvp_name} returned {type(result).__name__} for the {k} outputs of "
                    f"{self.f_name}; return (out, tangent_out) with one tangent per output"
                )
            touts = list(result)
        else:  # (out, tout), or tout
            if (
                isinstance(result, seq)
                and len(result) != 2
                and any(isinstance(r, (np.ndarray, *seq)) for r in result)
            ):
                raise JvpProblem(
                    f"{self.jvp_name} returned a {type(result).__name__} of {len(result)} "
                    f"things for the one output of {self.f_name}; return (out, tangent_out) "
                    "as jax.jvp does, or tangent_out alone"
                )
            touts = [result[1] if isinstance(result, seq) and len(result) == 2 else result]
        arrays = []
        for j, (t, o) in enumerate(zip(touts, self.outs, strict=True)):
            label = f" {j}" if k > 1 else ""
            a = _as_array(t)  # a ragged list is an object array: a problem, not a ValueError
            if a.dtype.kind != "f":
                raise JvpProblem(
                    f"the tangent output{label} of {self.jvp_name} is {type(t).__name__} of "
                    f"dtype {a.dtype}; it must be a real floating-point array shaped like the "
                    "output"
                )
            if a.shape != o.shape:
                raise JvpProblem(
                    f"the tangent output{label} of {self.jvp_name} has shape {a.shape}, the "
                    f"output of {self.f_name} {o.shape}; a jvp returns one tangent shaped like "
                    "each output"
                )
            if not np.all(np.isfinite(a)):
                raise JvpProblem(f"the tangent output{label} of {self.jvp_name} has {nonfinite(a)}")
            arrays.append(a.astype(np.float64))
        return _flat(arrays)

    def indices(self, flat_idx: Sequence[int] | np.ndarray) -> list[tuple[int, ...]]:
        """Multi-indices into the tangent output; for several outputs the output's number
        first."""
        flat = np.asarray(flat_idx, dtype=np.intp)
        if len(self.outs) == 1:
            shape = self.outs[0].shape
            if not shape:
                return [()] * flat.size
            return list(zip(*(c.tolist() for c in np.unravel_index(flat, shape)), strict=True))
        offsets = np.cumsum([0] + [o.size for o in self.outs])
        found = []
        for j in flat.tolist():
            k = int(np.searchsorted(offsets, j, side="right") - 1)
            shape = self.outs[k].shape
            local = np.unravel_index(j - int(offsets[k]), shape) if shape else ()
            found.append((k, *(int(t) for t in local)))
        return found


class _Comparison:
    """The jvp against the numerical directional derivative along one tangent, entry by entry."""

    def __init__(
        self,
        analytic: np.ndarray,
        numerical: np.ndarray,
        errors: np.ndarray,
        method: str,
        eps_a: float,
        natural: float,
        known: np.ndarray | None,
        check: _Check,
        resolution: float = 0.0,
    ) -> None:
        self.analytic, self.numerical, self.errors = analytic, numerical, errors
        self.method, self.check = method, check
        rtol_user, atol_user = check.rtol_user, check.atol_user
        self.rtol = rtol_user if rtol_user is not None else min(1e-2, max(1e-9, 1000 * eps_a))
        finite = np.isfinite(numerical)
        gscale = float(np.max(np.abs(numerical[finite]), initial=0.0))
        max_err = float(np.max(errors[finite], initial=0.0))
        # the terms of the jvp are of the size of the outputs per unit of the tangent: their
        # rounding, 64 times, is the floor under a result that cancels
        floor = 64 * eps_a * (natural + gscale)
        self.hints: list[str] = []
        self.notes: list[str] = []
        if known is not None:
            measured = float(np.max(np.abs(known), initial=0.0))
            allowed = max(ROUNDINGS_ALLOWED * eps_a * natural, self.rtol * gscale)
            if measured > allowed:
                self.hints.append(
                    f"your jvp in low precision differs from the same code in float64 by "
                    f"{measured:.3g} (more than {ROUNDINGS_ALLOWED} roundings of its terms, "
                    f"{allowed:.3g}): an unstable formula?"
                )
            else:
                floor += measured
        if atol_user is not None:
            self.atol = atol_user
        else:
            self.atol = self.rtol * gscale + 4 * max_err + 4 * floor
        self.tol = self.atol + self.rtol * np.abs(numerical)
        self.abs_err = np.abs(analytic - numerical)
        self.failed = (self.abs_err > self.tol) | ~finite
        self.gscale = gscale
        self.passed = not self.failed.any() and not self.hints
        self.unresolved = ""
        if resolution > 0:  # the outputs underflow: what the numerical side can tell
            size = float(np.max(np.abs(analytic), initial=0.0))
            what = (
                f"the outputs of {check.f_name} underflow (largest |output| "
                f"{check.loss.max_out:.3g}): the numerical derivatives resolve the jvp to "
                f"{resolution:.3g}"
            )
            if resolution < size:
                self.notes.append(f"{what}, finer than it ({size:.3g})")
            else:  # nothing could be compared: not judged, and never passed
                self.unresolved = (
                    f"{what}, which is more than the jvp itself ({size:.3g}): its values could "
                    "not be compared (inputs further from underflow can be)"
                )
                self.passed = False

    def result(self, name: str, a: Any) -> InputResult:
        shown = _largest(np.where(np.isfinite(self.numerical), self.abs_err, np.inf), N_WORST)
        idx = self.check.indices([int(k) for k in shown])
        worst = tuple(
            Entry(
                idx[m],
                float(self.analytic[k]),
                float(self.numerical[k]),
                float(self.errors[k]),
                float(self.tol[k]),
            )
            for m, k in enumerate(shown)
        )
        hints = list(self.hints)
        if self.failed.any() and not self.analytic.any():
            hints.insert(
                0,
                f"the jvp is exactly 0 in every entry along a tangent of {name} alone, though "
                f"the forward depends on {name}: its tangent is dropped (never added to the "
                "tangent output)?",
            )
        elif self.failed.any():
            outs = self.check.outs
            shape = outs[0].shape if len(outs) == 1 else (self.analytic.size,)
            every = (
                self.check.indices(np.arange(self.analytic.size))
                if len(outs) == 1
                else [(j,) for j in range(self.analytic.size)]
            )
            hints = (
                pattern_hints(
                    "tout", shape, self.analytic, self.numerical, every, self.failed, self.atol
                )
                + hints
            )
        rel = self.abs_err / np.maximum(np.abs(self.numerical), max(1e-3 * self.gscale, 1e-300))
        arr = np.asarray(a)
        if self.unresolved:
            return with_changes(
                unchecked(name, a, True),
                method=self.method,
                judged=False,
                problems=(self.unresolved,),
                notes=tuple(self.notes),
            )
        return InputResult(
            name,
            tuple(arr.shape),
            arr.dtype.name,
            self.passed,
            method=self.method,
            max_abs_error=float(np.max(self.abs_err, initial=0.0)),
            max_rel_error=float(np.max(rel, initial=0.0)),
            atol=float(self.atol),
            rtol=float(self.rtol),
            n_checked=int(self.analytic.size),
            n_failed=int(self.failed.sum()) + (1 if self.hints and not self.failed.any() else 0),
            worst=worst,
            hints=tuple(hints),
            notes=tuple(self.notes),
        )


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (ties by position): no sort of a
    whole tangent output of a large layer."""
    if values.size > k:
        top = np.argpartition(-values, k - 1)[:k]
        return top[np.lexsort((top, -values[top]))]
    return np.argsort(-values, kind="stable")


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return np.asarray(arrays[0], dtype=np.float64).reshape(-1)
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])
