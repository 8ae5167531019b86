"""Numerical derivatives of the scalar loss ``L(inputs) = sum_k sum(dout_k * out_k)``.

The gradient of ``L`` with respect to an input is exactly the vector-Jacobian product the
backward pass must return, so every check reduces to derivatives of one scalar function:

- coordinate derivatives ``dL/dx[j]`` (``mode="full"``, and the sampled entries of ``"probe"``);
- directional derivatives ``dL/dt L(x + t v)`` along a direction ``v`` (``"probe"``).

Two methods, each returning a value and an estimate of its error:

- **complex step**: ``Im L(x + i h v) / h`` with ``h = 1e-20 * scale``. There is no
  subtraction, so the result is exact to rounding (about 1e-15 relative) in one evaluation —
  but only for code that is complex-analytic. :meth:`Loss.complex_step_usable` cross-checks it
  against finite differences on a random direction and reports why it cannot be used
  (``np.abs``, ``np.var`` on complex input, casts to float, ...).
- **Richardson**: central differences at ``h`` and ``h/2`` extrapolated to ``(4 D(h/2) - D(h))/3``.
  ``h = eps_eval ** (1/3) * scale``, the optimum for the central difference, so the error
  estimate ``|D(h/2) - D(h)| / 3`` (the truncation error of the smaller step, an upper bound
  for the extrapolated value) plus the rounding term ``eps_eval * |L| / h`` is small:
  about 1e-10 relative in float64.

All evaluations run in float64 (complex128 for the complex step) on private copies, whatever
the caller's dtype: the derivative of a float32 layer is taken of the same code evaluated more
precisely. ``eps_eval`` is measured (:meth:`Loss.noise`), so a layer that computes in float32
internally gets a step sized for float32 rather than a wrong derivative.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bnsym.gradcheck.inputs import copy_input

EPS64 = float(np.finfo(np.float64).eps)

# complex step size relative to the input's scale: far below any rounding of x, far above
# underflow of h**2 terms that the complex arithmetic may form
COMPLEX_STEP = 1e-20
# the smallest complex step: the imaginary parts h * x' the forward forms stay normal numbers
# (subnormals have fewer digits, and 1e-20 * 1e-310 is 0); up to MAX_COMPLEX_STEP relative
# to the input's spread the step's O(h**2) error is still below rounding, beyond that an input
# is too small for the complex step (1e-300: Richardson differences instead)
MIN_COMPLEX_STEP = float(np.finfo(np.float64).tiny) / EPS64
MAX_COMPLEX_STEP = 1e-8
TINY = float(np.finfo(np.float64).tiny)
# the smallest spread a step is sized from: below it (inputs of 1e-300, subnormal ones) a step
# of the spread's size would underflow (x + h == x, or a ZeroDivisionError), so steps are sized
# as if the spread were this (2^-940, about 1e-283: central steps of 1e-288, complex steps of
# 1e-292, both normal numbers)
SCALE_FLOOR = 2.0**-940
# the imaginary parts of a complex step's outputs must stay above this to keep their digits
# (x ** 2 at x = 1e-200 makes them 1e-420 = 0 at the usual step): the step grows until they do,
# at most to BOOSTED_STEP (absolute), and is then checked against half of it
IMAG_FLOOR = TINY * 2.0**20
BOOSTED_STEP = 2.0**-20
# the spacing of float64 numbers at 0 (the smallest subnormal): an output that underflows is
# known to about this, absolutely
SUBNORMAL = 2.0**-1074
CACHED_UNITS = 2**16  # an input's direction units are kept up to this many entries


def dot(a: np.ndarray, b: np.ndarray) -> Any:
    """sum(a * b) of two flat vectors, without BLAS.

    np.dot and np.vdot of long vectors go to a threaded BLAS call whose threads, woken between
    the forward calls of a check on a busy machine, took 3 to 8 ms for 131,072 entries; the
    einsum loop takes 0.1 ms (a (512, 256) check went from 0.13 s to 0.025 s).
    """
    return np.einsum("i,i->", a, b)


def norm2(arrays: Sequence[np.ndarray]) -> float:
    """The 2-norm of all entries, scaled by the largest (a dout of 1e301 squares to inf)."""
    top = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)
    if top == 0 or not math.isfinite(top):
        return top
    return top * math.sqrt(
        sum(float(dot((a / top).reshape(-1), (a / top).reshape(-1))) for a in arrays)
    )


def _rounding(lp: float, lm: float) -> float:
    """The rounding of L at two points of a difference quotient: a few units of their last
    place. Where L cancels at x (x ** 2 of 1e-200 is 0) it is far larger there than at x."""
    return 2 * EPS64 * (abs(lp) + abs(lm))


def signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random +-1.0 of the given shape (a Rademacher direction)."""
    # the sign of uniform numbers: half the cost of integers(0, 2) * 2.0 - 1.0
    return np.copysign(1.0, rng.random(shape) - 0.5)


def input_scale(x: np.ndarray, ordered: np.ndarray | None = None) -> float:
    """The spread of an input's entries: the scale on which the layer's output bends.

    The median absolute deviation (robust to one outlier such as ``x[0, 0] = 1e5``), else the
    standard deviation, else the magnitude, else 1. Not the magnitude first: batch norm of
    ``x = 1e4 + N(0, 1)`` bends on the scale 1, and a step sized from 1e4 is all truncation
    error. Entries far from the rest get a larger step of their own (:func:`step_floor`).
    ordered: the entries sorted (float64), if the caller has them.
    """
    if x.size == 0:
        return 1.0
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        mad = 0.0
        s = np.sort(flat) if ordered is None else ordered
        if flat.size > 2 and not np.isnan(s[-1]):  # NaN sorts last
            # np.median, without its wrapper's cost (a check runs this once per input)
            mad = 1.4826 * _median(np.abs(s - _median(s, True)), False)
        if mad > 0 and math.isfinite(mad):
            return mad
        std = float(np.std(flat)) if flat.size > 1 else 0.0
        rms = float(np.sqrt(dot(flat, flat) / flat.size))
    for scale in (std, rms):
        if scale > 0 and math.isfinite(scale):
            return scale
    return 1.0


def _median(values: np.ndarray, is_sorted: bool) -> float:
    n = values.size
    if is_sorted:
        return float(0.5 * (values[(n - 1) // 2] + values[n // 2]))
    part = np.partition(values, [(n - 1) // 2, n // 2])
    return float(0.5 * (part[(n - 1) // 2] + part[n // 2]))


def step_floor(x: np.ndarray) -> np.ndarray:
    """The smallest step at each entry: sqrt(eps) * |x|.

    ``x + h`` is rounded at ``|x|``; a step at least sqrt(eps) * |x| keeps that rounding below
    sqrt(eps) of the step, so the step actually taken is the step intended.
    """
    return math.sqrt(EPS64) * np.abs(x)


def power_of_two(h: float) -> float:
    """The power of two nearest to h: multiples t * w of it are exact in binary."""
    return float(2.0 ** round(math.log2(h)))


_FILTERS_MUTATED = getattr(warnings, "_filters_mutated", None)


class complex_errors:  # noqa: N801 - used like a function
    """A context in which dropping an imaginary part (a cast to float) raises, not warns.

    It is entered for every complex-step evaluation, so where the interpreter allows it swaps
    the filter list itself: the same as ``warnings.catch_warnings()`` with
    ``simplefilter("error", ComplexWarning)``, at a fraction of its cost. Interpreters without
    ``warnings._filters_mutated`` (its filters kept per context) take the documented way.
    """

    _filter = ("error", None, np.exceptions.ComplexWarning, None, 0)

    def __enter__(self) -> None:
        if _FILTERS_MUTATED is None:
            self.context: Any = warnings.catch_warnings()
            self.context.__enter__()
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            return
        self.saved = warnings.filters
        warnings.filters = [self._filter, *self.saved]
        _FILTERS_MUTATED()

    def __exit__(self, *exc: object) -> None:
        if _FILTERS_MUTATED is None:
            self.context.__exit__(*exc)
            return
        warnings.filters = self.saved
        _FILTERS_MUTATED()


class ForwardRaised(Exception):
    """The forward raised ``error`` on inputs moved by a step (not an error of the checker)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class OutputChanged(Exception):
    """The forward returned outputs of another number or shape on inputs moved by a step than
    at the inputs: its derivative is not defined there (a failed check, not an error of the
    checker)."""

    def __init__(self, before: list[tuple[int, ...]], after: list[tuple[int, ...]]) -> None:
        super().__init__(f"the output shape(s) changed from {before} to {after}")
        self.before, self.after = before, after


class Loss:
    """``L(inputs) = sum(dout * f(inputs))`` with private float64 / complex128 working copies.

    f: the forward, called as ``f(*inputs)``, returning one array or a tuple of arrays.
    inputs: the caller's inputs (never modified; copies are taken).
    dout: one float64 array per output, shaped like the outputs.
    wrt: indices of the inputs that are differentiated; the others are passed unchanged.
    """

    def __init__(
        self,
        f: Callable[..., Any],
        inputs: Sequence[Any],
        dout: Sequence[np.ndarray],
        wrt: Sequence[int],
    ) -> None:
        self.f = f
        self.wrt = list(wrt)
        self.dout = [np.asarray(d, dtype=np.float64) for d in dout]
        # fresh C-ordered copies: entries are stepped through a flat view, which for a
        # transposed, Fortran-ordered or broadcast array would be a copy that the forward
        # never sees (every complex-step derivative 0)
        self.base = [
            np.array(a, dtype=np.float64, order="C") if i in self.wrt else copy_input(a)
            for i, a in enumerate(inputs)
        ]
        self.real = self.base  # the forward is checked not to modify its inputs beforehand
        self.cplx: list[Any] | None = None
        # the inputs not moved by a complex step stay real (cheaper arithmetic, the same
        # numbers) until a forward fails on that mix (x.astype(gamma.dtype)): then all complex
        self.mixed = True
        self.dout_complex: list[np.ndarray] | None = None
        self.cross_check_note: str | None = None
        # each input's entries in order: its median spread and its ties (kinks) come from them
        ordered = {i: np.sort(self.base[i], axis=None) for i in self.wrt}
        self.scale = {i: max(input_scale(self.base[i], ordered[i]), SCALE_FLOOR) for i in self.wrt}
        # whether an input has exact zeros or ties (kinks); the sorted copy is not kept
        self.has_ties = {
            i: bool(s.size and (np.any(s[1:] == s[:-1]) or np.any(s == 0)))
            for i, s in ordered.items()
        }
        del ordered
        self._units: dict[tuple[int, float], np.ndarray] = {}
        self.evals = 0
        # "auto": the complex step is cross-checked when first needed (use_complex)
        self.method = "auto"
        self.method_rng: np.random.Generator | None = None
        self._use_complex: bool | None = None
        self.method_notes: list[str] = []
        self.noise_rng: np.random.Generator | None = None  # set: noise() runs when first needed
        self.noise_measured = False
        self.eps_eval = EPS64  # relative rounding noise of L, measured by noise()
        self.noise_abs = 0.0  # absolute rounding noise of L, its resolution included
        # L's resolution where outputs underflow: an output is known to the spacing of float64
        # numbers at 0 at best (x of 1e-200 squared is 0), so L to a few of them times |dout|_2
        self.resolution = 0.0
        self.max_out = 1.0  # the largest |output| at the inputs
        self.boost = 1.0  # the complex step's growth where its imaginary parts underflow
        self.imag_max = 0.0  # the largest |imaginary part| of the outputs of a complex call
        self.boost_note: str | None = None
        self.boost_failed = False
        self.magnitude = 1.0  # the 2-norm of the terms of L

    # -- evaluating L ------------------------------------------------------------------------

    def outputs(self, args: Sequence[Any]) -> list[np.ndarray]:
        try:
            out = self.f(*args)  # under np.errstate(all="ignore"): NaN is reported, not warned
        except Exception as exc:  # the layer's error, told apart from an error of the checker
            raise ForwardRaised(exc) from exc
        self.evals += 1
        outs = list(out) if isinstance(out, tuple | list) else [out]
        return [np.asarray(o) for o in outs]

    def value(self, args: Sequence[Any]) -> Any:
        outs = self.outputs(args)
        self.same_shapes(outs)
        total = 0.0
        for d, o in zip(self.dout, outs, strict=True):
            total = total + dot(d.reshape(-1), o.reshape(-1))
        return total

    def same_shapes(self, outs: Sequence[np.ndarray]) -> None:
        """:class:`OutputChanged` unless ``outs`` are shaped like the outputs at the inputs."""
        if len(outs) != len(self.dout) or any(
            d.shape != o.shape for d, o in zip(self.dout, outs, strict=False)
        ):
            raise OutputChanged([d.shape for d in self.dout], [o.shape for o in outs])

    def at(self, ws: Mapping[int, np.ndarray], t: float) -> float:
        """L at ``x_i + t w_i`` for the inputs i of the direction ``ws`` (real; snap it first)."""
        args = list(self.real)
        for i, w in ws.items():
            args[i] = self.base[i] + t * w
        return float(self.value(args))

    # -- estimates of the precision of the forward ----------------------------------------

    def set_outputs(self, outs: Sequence[np.ndarray]) -> None:
        """Size the rounding of L from the outputs at x: float64 rounding until noise() runs."""
        # the 2-norm of the terms of L: the size of its rounding error in float64
        magnitude = math.sqrt(
            sum(float(np.sum(np.abs(d * o) ** 2)) for d, o in zip(self.dout, outs, strict=True))
        )
        self.magnitude = max(magnitude, TINY)
        self.resolution = 4.0 * SUBNORMAL * norm2(self.dout)
        self.max_out = max((float(np.max(np.abs(o), initial=0.0)) for o in outs), default=0.0)
        self.noise_abs = 2.0 * EPS64 * self.magnitude + self.resolution
        self.eps_eval = EPS64

    def noise(self, rng: np.random.Generator) -> float:
        """Measure the relative rounding noise of L and store it as ``eps_eval``.

        Values of L along one random direction with a tiny spacing: for smooth code their
        fourth differences are pure noise (the smooth part is ~spacing**4), with a standard
        deviation of sqrt(70) times that of L. A forward that computes in float32 internally
        shows up here as eps_eval ~ 1e-7 instead of 1e-16.
        """
        self.noise_measured = True
        if not self.wrt:
            return self.eps_eval
        spacing = power_of_two(1e-6)
        ws = {i: self.direction(i, signs(rng, self.base[i].shape)) for i in self.wrt}
        ws = self.snap(ws, spacing)
        # sixteen values, twelve fourth differences: a kink crossed by the series (ReLU input
        # next to 0) spoils at most four of them, so their median still measures the noise;
        # the spacing is large enough that a forward computing in float32 inside shows its
        # rounding rather than a staircase, and small enough that the smooth part (~1e-24) is not
        # seen even in float64. NaN (a step outside the domain) leaves the float64 floor.
        vals = np.array([self.at(ws, k * spacing) for k in range(16)])
        d4 = np.abs(np.diff(vals, 4))
        d4 = d4[np.isfinite(d4)]
        sigma = float(np.median(d4)) / (0.6745 * math.sqrt(70.0)) if d4.size else 0.0
        relative = max(2.0 * sigma, 2.0 * EPS64 * self.magnitude)
        self.eps_eval = relative / self.magnitude
        if not (math.isfinite(self.eps_eval) and self.eps_eval < 1.0):
            # L overflows along the steps (x of 1e150 squared): float64 rounding, and the
            # NaN/inf derivatives are reported where they occur
            relative = 2.0 * EPS64 * self.magnitude
            self.eps_eval = EPS64
        self.noise_abs = relative + self.resolution
        return self.eps_eval

    @property
    def decided_complex(self) -> bool:
        """True if the complex step was decided usable (without deciding it now)."""
        return bool(self._use_complex)

    @property
    def use_complex(self) -> bool:
        """Whether coordinate and directional derivatives take the complex step: forced by
        ``method``, else decided once by :meth:`complex_step_usable` (and noted why not)."""
        if self._use_complex is None:
            if self.method != "auto" or not self.wrt:
                self._use_complex = self.method == "complex"
            else:
                rng = self.method_rng or np.random.default_rng(0)
                why_not = self.complex_step_usable(rng)
                self._use_complex = why_not is None
                if why_not:
                    self.method_notes.append(
                        f"complex step not used: {why_not}; Richardson finite differences instead"
                    )
                if self.cross_check_note:
                    self.method_notes.append(self.cross_check_note)
        return self._use_complex

    def ensure_noise(self) -> None:
        """Measure the noise (:meth:`noise`) if that was left until finite differences need
        it beyond a first central difference."""
        if not self.noise_measured and self.noise_rng is not None:
            self.noise(self.noise_rng)

    def central(
        self, ws: Mapping[int, np.ndarray], use_complex: bool
    ) -> tuple[float, float, dict[int, np.ndarray]]:
        """The cheapest derivative along ``ws``: (value, rounding error, direction taken).

        The complex step (one evaluation), else one central difference at the step for the
        noise known so far (two evaluations), whose error estimate is its rounding only: its
        truncation, O(h**2), is not estimated, so a disagreement is a reason to look closer
        (:meth:`directional`), never a verdict.
        """
        if use_complex:
            return self.directional(ws, True)
        h = self.fd_step()
        ws = self.snap(ws, h)
        if self.noise_measured:  # steps sized for a noisy forward: Richardson's estimate
            return self.directional(ws, False)
        lp, lm = self.at(ws, h), self.at(ws, -h)
        return (lp - lm) / (2 * h), (2 * self.noise_abs + _rounding(lp, lm)) / h, ws

    def fd_step(self) -> float:
        """The central-difference step in units of the direction: the optimum eps ** (1/3)."""
        return power_of_two(self.eps_eval ** (1.0 / 3.0))

    def step(self, i: int, x0: float) -> float:
        """The step at an entry x0 of input i: the spread's, at least the rounding floor."""
        return max(self.fd_step() * self.scale[i], float(step_floor(np.array(x0))))

    def direction(self, i: int, v: np.ndarray) -> np.ndarray:
        """Signs ``v`` of input i as a direction in the input's units: the spread, and at an
        entry far from the rest (an outlier, a large mean) enough to clear its rounding."""
        key = (i, self.fd_step())
        unit = self._units.get(key)
        if unit is None:
            base = self.base[i]  # step_floor / h, then at least the spread, in place
            w = np.abs(base, out=np.empty_like(base))  # (out=: an array for 0-d too)
            w *= math.sqrt(EPS64) / key[1]
            np.maximum(w, self.scale[i], out=w)
            if w.size > CACHED_UNITS:  # a large input: one array less, computed per direction
                w *= v
                return w
            unit = self._units[key] = w
        return v * unit

    def snap(self, ws: Mapping[int, np.ndarray], t: float) -> dict[int, np.ndarray]:
        """The direction actually taken from x at the step t (a power of two).

        ``x + t w`` is rounded at ``|x|``: w' = (fl(x + t w) - x) / t is exact, and so are the
        points x + k t w' (k = 1, 2, ...) of a difference quotient, which then is the derivative
        along w' without the rounding of x; callers compare with the analytic <g, w'>.
        """
        taken = {}
        for i, w in ws.items():
            step = self.base[i] + t * w  # in place from here: one array per input, not three
            step -= self.base[i]
            step /= t
            taken[i] = step
        return taken

    # -- complex step ----------------------------------------------------------------------

    def _complex_args(self) -> list[Any]:
        if self.cplx is None:
            self.cplx = [
                self.base[i].astype(np.complex128) if i in self.wrt else a
                for i, a in enumerate(self.base)
            ]
        return self.cplx

    def _complex_call(self, compute: Callable[[list[Any]], Any]) -> Any:
        """``compute(args)`` on the real inputs, or on all inputs complex if that fails;
        ``compute`` puts the moved inputs, complex, into ``args``."""
        if self.mixed:
            try:
                return compute(list(self.real))
            except Exception:
                self.mixed = False
        return compute(list(self._complex_args()))

    def complex_value(self, args: Sequence[Any]) -> complex:
        """L at complex arguments; call inside :func:`complex_errors`."""
        outs = self.outputs(args)
        self.same_shapes(outs)
        if self.dout_complex is None:  # np.dot of real and complex would convert on every call
            self.dout_complex = [d.reshape(-1).astype(np.complex128) for d in self.dout]
        total = 0j
        for d, o in zip(self.dout_complex, outs, strict=True):
            if not np.iscomplexobj(o):
                raise TypeError(f"the forward returned a real {o.dtype} array for complex input")
            if o.size:
                self.imag_max = max(self.imag_max, float(np.max(np.abs(o.imag))))
            total += complex(dot(d, o.reshape(-1)))
        return total

    def complex_step(self, i: int) -> float:
        """The complex step of input i relative to its spread: COMPLEX_STEP, or more where
        that would make the imaginary parts subnormal (an input of 1e-310), times the growth
        that keeps the outputs' imaginary parts from underflowing (:attr:`boost`)."""
        return max(COMPLEX_STEP * self.boost, MIN_COMPLEX_STEP / self.scale[i])

    def complex_resolution(self, i: int) -> float:
        """The smallest error of a coordinate derivative of input i that a complex step can
        resolve: L's resolution over the step (0 for outputs that do not underflow)."""
        return self.resolution / (self.complex_step(i) * self.scale[i])

    def fd_resolution(self, i: int) -> float:
        """The same for a central difference: L's rounding and resolution over the step."""
        return 2.0 * self.noise_abs / (self.fd_step() * self.scale[i])

    def directional(
        self, ws: Mapping[int, np.ndarray], use_complex: bool
    ) -> tuple[float, float, dict[int, np.ndarray]]:
        """(value, error estimate, direction taken) of the derivative of L along ``x_i + t w_i``.

        ``ws`` maps input positions to directions in the inputs' own units (one input, or
        several at once: the derivative is then the sum of their directional derivatives).
        Finite differences go along the snapped direction (:meth:`snap`), returned as the third
        element: the analytic side is ``sum_i <g_i, w_i>`` over it.
        """
        if use_complex:  # x + i h w: the real part is not rounded
            value, err = self._complex_directional(ws)
            return value, err, dict(ws)
        self.ensure_noise()
        h = self.fd_step()
        ws = self.snap(ws, h / 2)
        lp, lm = self.at(ws, h), self.at(ws, -h)
        hp, hm = self.at(ws, h / 2), self.at(ws, -h / 2)
        d1, d2 = (lp - lm) / (2 * h), (hp - hm) / h
        err = abs(d2 - d1) / 3 + (2 * self.noise_abs + 2 * _rounding(hp, hm)) / h
        return (4 * d2 - d1) / 3, err, ws

    def _complex_at(self, ws: Mapping[int, np.ndarray]) -> float:
        """The complex-step derivative along ``ws`` at the current step."""
        h = max(self.complex_step(i) for i in ws)

        def compute(args: list[Any]) -> float:
            for i, w in ws.items():
                z = np.empty(w.shape, dtype=np.complex128)
                z.real, z.imag = self.base[i], h * w
                args[i] = z
            with complex_errors():
                return float(self.complex_value(args).imag / h)

        self.imag_max = 0.0
        value: float = self._complex_call(compute)
        return value

    def _complex_directional(self, ws: Mapping[int, np.ndarray]) -> tuple[float, float]:
        """(value, error) of the complex-step derivative along ``ws``.

        Where the outputs' imaginary parts underflow (x ** 2 at x = 1e-200: 2 x h = 1e-420), the
        step grows until they keep their digits (:data:`IMAG_FLOOR`), up to an absolute
        :data:`BOOSTED_STEP`; a grown step is checked against half of it, whose difference is
        then its error estimate (the step's O(h**2) term).
        """
        value = self._complex_at(ws)
        grown = False
        while (
            self.imag_max < IMAG_FLOOR
            and self.max_out < MIN_COMPLEX_STEP  # the outputs underflow, not the derivative
            and math.isfinite(value)
            and max(self.complex_step(i) * self.scale[i] for i in ws) < BOOSTED_STEP
        ):
            largest = max(self.complex_step(i) * self.scale[i] for i in ws)
            factor = IMAG_FLOOR * 2.0**20 / self.imag_max if self.imag_max > 0 else 2.0**200
            self.boost *= min(factor, 2.0**200, BOOSTED_STEP / largest)
            value, grown = self._complex_at(ws), True
        if not math.isfinite(value) and self.boost > 1.0:
            self.boost = 1.0  # grown too far: the usual step, and its value as it is
            return self._complex_at(ws), math.inf
        if self.imag_max < IMAG_FLOOR and grown:
            self.boost_failed = True  # even the largest step leaves them underflowing
            return value, math.inf
        h = max(self.complex_step(i) for i in ws)
        err = 4 * EPS64 * abs(value) + 2 * self.resolution / h
        if grown or self.boost > 1.0:
            self.boost /= 2
            half = self._complex_at(ws)
            self.boost *= 2
            err += abs(value - half)
            if self.boost_note is None:
                self.boost_note = (
                    f"the outputs underflow (largest |output| {self.max_out:.3g}): the complex "
                    f"step was grown {self.boost:.3g} times so that its imaginary parts keep "
                    "their digits, and checked against half of it"
                )
        return value, err

    def complex_coordinates(self, i: int, flat_idx: Sequence[int]) -> np.ndarray:
        """dL/dx_i[j] for the flat indices j, one complex-step evaluation each."""
        h = self.complex_step(i) * self.scale[i]

        def compute(args: list[Any]) -> np.ndarray:
            work = self.base[i].astype(np.complex128)
            args[i] = work
            flat = work.reshape(-1)
            out = np.empty(len(flat_idx))
            with complex_errors():
                for k, j in enumerate(flat_idx):
                    x0 = flat[j]
                    flat[j] = x0 + 1j * h
                    out[k] = self.complex_value(args).imag / h
                    flat[j] = x0
            return out

        result: np.ndarray = self._complex_call(compute)
        return result

    def complex_step_usable(self, rng: np.random.Generator) -> str | None:
        """None if the complex step agrees with finite differences for every input, else why not.

        One random signed direction through all inputs; the complex step and a central
        difference must agree to 1e-6 relative (they agree to ~1e-10 for analytic code; the
        non-analytic operations lose whole terms of the derivative, an O(1) difference).
        """
        ws = {
            i: self.direction(i, signs(rng, self.base[i].shape))
            for i in self.wrt
            if self.base[i].size
        }
        if not ws:
            return None
        for i in ws:
            if self.complex_step(i) > MAX_COMPLEX_STEP:
                return (
                    f"the spread of input {i} ({self.scale[i]:.3g}) is too small for a "
                    "complex step that stays clear of subnormal numbers"
                )
        # both sides along the direction finite differences actually take from x
        ws = self.snap(ws, self.fd_step() / 2)
        try:
            cs, cs_err, _ = self.directional(ws, use_complex=True)
        except Exception as exc:  # any failure on complex input means: not usable
            exc = exc.error if isinstance(exc, ForwardRaised) else exc
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"the forward fails on complex input ({type(exc).__name__}: {first})"
        # a central difference at h/2 first (two evaluations): for analytic code it agrees with
        # the complex step to ~1e-10, far inside 1e-6, and the O(1) difference of non-analytic
        # code is far outside it. Where it does not agree, Richardson (two more evaluations, the
        # step h) with its error estimate decides: it is accurate to ~1e-10 also when the
        # rounding floor of a large |x| makes the step large against the spread.
        h = self.fd_step()
        if self.boost_failed:
            return (
                f"the outputs underflow (largest |output| {self.max_out:.3g}) and the imaginary "
                f"parts of a complex step stay below {IMAG_FLOOR:.3g} even at a step of "
                f"{BOOSTED_STEP:.3g}"
            )
        if self.boost > 1.0 and not cs_err <= 1e-6 * abs(cs):
            return (
                f"the outputs underflow (largest |output| {self.max_out:.3g}) and a complex step "
                "large enough to keep its imaginary parts changes the derivative (it differs "
                f"by {cs_err:.3g} from the step of half its size)"
            )
        hp, hm = self.at(ws, h / 2), self.at(ws, -h / 2)
        central = (hp - hm) / h
        # what finite differences resolve here: L's noise and its rounding at the steps (which
        # exceeds that at x where L cancels there: x ** 2 of 1e-200 is 0, of 1e-200 + h is not)
        fd_floor = 16 * (self.noise_abs + _rounding(hp, hm)) / h
        if self.resolution > 0 and fd_floor > abs(cs):
            # finite differences cannot see this derivative at all: nothing to cross-check
            self.cross_check_note = (
                f"the outputs underflow (largest |output| {self.max_out:.3g}), so finite "
                "differences cannot resolve the derivative along a random direction, nor "
                "cross-check the complex step, which is used alone"
            )
            return None
        if abs(cs - central) <= fd_floor + 1e-6 * abs(central):
            return None
        wide = (self.at(ws, h) - self.at(ws, -h)) / (2 * h)
        fd = (4 * central - wide) / 3
        err = abs(central - wide) / 3 + fd_floor / 8
        if math.isfinite(cs) and not math.isfinite(fd):
            self.cross_check_note = (
                "finite differences leave the forward's domain (NaN/inf), so the complex step "
                "(which does not move x) is used without its cross-check"
            )
            return None
        if not abs(cs - fd) <= 8.0 * err + 1e-6 * abs(fd) + 1e-300:
            return (
                f"the forward is not complex-analytic (complex step {cs:.6g} vs finite "
                f"differences {fd:.6g} along a random direction: np.abs, np.var, a cast?)"
            )
        return None

    # -- finite differences ------------------------------------------------------------------

    def richardson_coordinates(
        self, i: int, flat_idx: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values, error estimates) of dL/dx_i[j] for the flat indices j."""
        self.ensure_noise()
        args = list(self.real)
        work = self.base[i].copy()
        args[i] = work
        flat = work.reshape(-1)
        values = np.empty(len(flat_idx))
        errs = np.empty(len(flat_idx))

        def central(j: int, x0: float, hh: float) -> tuple[float, float, float]:
            # the steps actually taken (x0 + hh is rounded), so the quotient is exact in them
            tp = (x0 + hh) - x0
            tm = x0 - (x0 - hh)
            flat[j] = x0 + tp
            lp = float(self.value(args))
            flat[j] = x0 - tm
            lm = float(self.value(args))
            flat[j] = x0
            return (lp - lm) / (tp + tm), (tp + tm) / 2, _rounding(lp, lm)

        for k, j in enumerate(flat_idx):
            x0 = float(flat[j])
            h = self.step(i, x0)
            d1, h1, _ = central(j, x0, h)
            d2, h2, rounding = central(j, x0, h / 2)
            values[k] = (4 * d2 - d1) / 3
            errs[k] = abs(d2 - d1) / 3 + (2 * self.noise_abs + 2 * rounding) / h2
        return values, errs

    def one_sided(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(left, right, jump at h/4 minus jump at h, noise) one-sided derivatives at flat
        index j; ``noise`` bounds the rounding of the jump ``right - left`` (at the step h/4).

        At a kink (ReLU at 0, a tie in a max) the two sides differ by a jump that does not
        shrink with the step; for smooth code they differ by O(h) plus the rounding of L over
        the step: a few ulps of L, which on a large layer exceed a tight tolerance.
        """
        self.ensure_noise()
        args = list(self.real)
        work = self.base[i].copy()
        args[i] = work
        flat = work.reshape(-1)
        x0 = float(flat[j])
        l0 = float(self.value(args))
        jumps = []
        left = right = noise = 0.0
        for hh in (self.step(i, x0), self.step(i, x0) / 4):
            tp = (x0 + hh) - x0
            tm = x0 - (x0 - hh)
            flat[j] = x0 + tp
            right = (float(self.value(args)) - l0) / tp
            flat[j] = x0 - tm
            left = (l0 - float(self.value(args))) / tm
            flat[j] = x0
            jumps.append(right - left)
            noise = self.jump_noise(min(tp, tm))
        return left, right, jumps[1] - jumps[0], noise

    def jump_noise(self, t: float) -> float:
        """Bound on the rounding of ``right - left`` at the step t: three values of L, each
        off by up to noise_abs, over t (the noise floor noise_abs / t, four times)."""
        return 4.0 * self.noise_abs / t if t > 0 else math.inf

    def one_sided_along(self, ws: Mapping[int, np.ndarray]) -> tuple[float, float, float, float]:
        """:meth:`one_sided` along a direction: (left, right, jump at h/4 minus jump at h,
        noise).

        A direction through many candidate kinks at once (every exact zero of a post-ReLU
        input) tells in five evaluations whether any of them is one.
        """
        self.ensure_noise()
        h = self.fd_step()
        ws = self.snap(ws, h / 4)
        l0 = self.at(ws, 0.0)
        jumps = []
        left = right = 0.0
        for t in (h, h / 4):
            right = (self.at(ws, t) - l0) / t
            left = (l0 - self.at(ws, -t)) / t
            jumps.append(right - left)
        return left, right, jumps[1] - jumps[0], self.jump_noise(h / 4)
