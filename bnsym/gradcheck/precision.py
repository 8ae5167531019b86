"""Low precision: a bfloat16 or float16 backward judged by what the precision allows (NumPy only).

A gradient computed in bfloat16 differs from the exact one by rounding, and by how much depends
on the code: a fused kernel that keeps its mean and 1/sigma in bfloat16 makes an error of a
unit roundoff ``u`` coherent over a whole group. A fixed ``atol`` is either loose enough to
pass a missing term or tight enough to fail a correct kernel. The judge measures instead:

1. **The reference** is the same code run in float64 on the same rounded inputs and ``dout``
   (:func:`bnsym.gradcheck.check.check_function` checks that float64 code against numerical
   derivatives of its forward first: the algebra, to float64's precision).
2. **The noise** is the spread of the user's own low-precision gradient over ``K_RUNS``
   coherent rounding-level perturbations: every input scaled by ``1 + a u`` and shifted by
   ``b u rms`` (``a, b ~ U(-2, 2)``, one draw per input and run, which re-draws the rounding of
   the statistics a kernel keeps), then every entry moved by one ulp up or down; the random
   ``dout`` likewise.
3. **The comparisons**, for two ``dout`` probes (seeded normal; ones plus the output itself,
   which makes the mean and the x_hat terms of a normalization dominant), along generic
   directions ``w`` of each gradient: random signs times U(1, 2), ``block(A)`` (a random sign
   per block, constant over the axes ``A``, for every subset ``A`` of the input's axes), the
   input times those, and every entry.
4. **The bound** of a comparison is ``C * max(noise, floor)``: the noise measured along ``w``
   (the spread of the runs' projections, at least the one predicted from every entry's own
   spread) or one rounding of the result (``u (|<g_ref, w>| + |g_ref * w|_2)``), whichever is
   larger. ``C = 20``: with ``K = 3`` runs the ratio error/noise of correct code follows a
   t-distribution with 3 degrees of freedom, ``P(|t| > 20) = 2.7e-4`` per comparison.

Research and margins: ``notes/research-19.md`` (PyTorch's fused CPU kernels pass with a margin of
2.9 or more in bfloat16; every structural wrong backward of the family fails with 4.8 or more;
a term off by less than about ``8 u`` relative, 1/(m-1) for 1/m at m = 4096, cannot be seen in
bfloat16 and is caught by the float64 check of the same code).

Values of a low-precision dtype are held in NumPy as ``float16`` (float16) or ``float32``
(bfloat16, exactly: NumPy has no bfloat16); the caller's runners turn them into what the code
takes.

>>> import numpy as np
>>> round_to(np.array([1.0 + 2.0**-9, 3.14159]), "bfloat16")
array([1.    , 3.140625], dtype=float32)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnsym.gradcheck.report import Entry, Report

__all__ = ["LOW_PRECISION", "Verdict", "is_low", "judge", "round_to"]

# unit roundoff u (half the distance from 1 to the next number) of the dtypes judged here
LOW_PRECISION: dict[str, float] = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
_ROUNDOFF = {**LOW_PRECISION, "float32": 2.0**-24, "float64": 2.0**-53}
K_RUNS = 3  # coherent perturbations of the user's low-precision run (research-19 §2)
C = 20.0  # bound = C * max(noise, floor): P(|t_3| > 20) = 2.7e-4 per comparison
AMPLITUDE = 2.0  # a, b ~ U(-AMPLITUDE, AMPLITUDE) in t (1 + a u) + b u rms(t)
_STREAM = 0x6C6F7770  # "lowp": the probes and perturbations have a stream of their own


def is_low(dtype: str) -> bool:
    return dtype in LOW_PRECISION


def storage(dtype: str) -> np.dtype:
    """The NumPy dtype that holds a dtype's values exactly."""
    return np.dtype(np.float32 if dtype == "bfloat16" else dtype)


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` (to nearest, ties to even), held in :func:`storage`."""
    if dtype != "bfloat16":
        return np.asarray(values).astype(storage(dtype))
    return _round_bfloat16(np.array(values, dtype=np.float32))


def _round_bfloat16(work: np.ndarray) -> np.ndarray:
    """float32 ``work`` rounded to bfloat16 in place: bfloat16 is float32 without its low 16
    bits, so the bit pattern is rounded at bit 16 (to nearest, ties to even). In place because
    every fresh array of a large input costs its page faults (a third of the time here)."""
    bits = work.view(np.uint32)
    carry = np.right_shift(bits, 16)
    carry &= np.uint32(1)
    carry += np.uint32(0x7FFF)
    bits += carry
    bits &= np.uint32(0xFFFF0000)
    return work


# one ulp of each low dtype as a step of its bit pattern (sign and magnitude: +1 moves a number
# away from 0), and the unsigned integer of its width
_ULP = {"bfloat16": (np.uint32, 0x10000), "float16": (np.uint16, 1)}


def _move_ulp(a: np.ndarray, dtype: str, up: np.ndarray) -> None:
    """Every nonzero finite entry of ``a`` (a low dtype's values in storage) moved in place by
    one ulp, away from 0 where ``up`` is true and towards it elsewhere."""
    kind, step = _ULP[dtype]
    delta = up.astype(kind)  # +step or -step, in unsigned arithmetic (-step wraps around)
    delta *= kind(2 * step)
    delta -= kind(step)
    zeros = a == 0
    if zeros.any():  # zeros stay (one ulp below 0 is a NaN pattern)
        delta[zeros] = 0
    bits = a.view(kind)
    bits += delta
    if dtype == "float16" and not np.all(np.isfinite(a)):  # 65504 stepped past: back
        delta[np.isfinite(a)] = 0
        bits -= delta


def _random_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random booleans of ``shape``, from bytes (a fraction of rng.random's cost)."""
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), dtype=np.uint8))[:n]
    return bits.reshape(shape).view(bool)


def perturb(
    a: np.ndarray,
    dtype: str,
    u: float,
    rng: np.random.Generator,
    amplitude: float = AMPLITUDE,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``a`` (a dtype's values in storage) scaled by ``1 + a u`` and shifted by ``b u rms(a)``
    (one draw of a, b per call), rounded to ``dtype``, then moved by one ulp up or down.

    out: a work array to reuse (float32 for the low dtypes, else ``a``'s dtype), or None.
    """
    low = is_low(dtype)
    # in float32 for the low dtypes: exact for their values, and its rounding (2^-24) is far
    # below the move (u); in the input's own dtype otherwise
    work = a.astype(np.float32 if low else a.dtype) if out is None else out
    if out is not None:
        np.copyto(work, a)
    if amplitude and a.size:
        scale, shift = (rng.random(2) * 2 - 1) * amplitude
        flat = work.reshape(-1)
        rms = math.sqrt(max(float(np.einsum("i,i->", flat, flat)), 0.0) / a.size)
        work *= work.dtype.type(1 + scale * u)
        work += work.dtype.type(shift * u * rms)
        if dtype == "bfloat16":
            _round_bfloat16(work)
    if not low:
        return work
    if dtype != "bfloat16":
        work = work.astype(storage(dtype))
    _move_ulp(work, dtype, _random_bits(rng, a.shape))
    return work


@dataclass(frozen=True)
class LowSpec:
    """What the arrays alone do not tell about a check's low-precision values.

    dtypes: input position -> low dtype name, for inputs held in :func:`storage` (a bfloat16
        tensor arrives as float32); NumPy's float16 arrays need no entry.
    output_dtypes: the dtype names of the outputs of the last call of the code (bfloat16
        outputs arrive as float32), or None to read them from the arrays.
    """

    dtypes: dict[int, str]
    output_dtypes: Callable[[], list[str]] | None = None


def input_dtypes(inputs: Sequence[Any], low: LowSpec | None) -> list[str | None]:
    """Each input's dtype name as the judge sees it (None for a non-floating input)."""
    found: list[str | None] = []
    for i, a in enumerate(inputs):
        if low is not None and i in low.dtypes:
            found.append(low.dtypes[i])
        elif isinstance(a, np.ndarray | np.generic) and np.asarray(a).dtype.kind == "f":
            found.append(np.asarray(a).dtype.name)
        else:
            found.append(None)
    return found


# --- the comparisons --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one gradient: its worst comparison.

    dtype, u: the precision judged (the coarsest among the inputs) and its unit roundoff.
    ratio: error / bound at the worst comparison; passed: ``ratio <= 1``.
    err, bound, noise, floor: at that comparison (``bound = C * max(noise, floor)``).
    where: the comparison (``"entry [2, 1]"``, ``"direction block over axes (0,)"``) and the
        probe (``"dout = ones + y"``); index: the entry's multi-index, or None.
    low, ref: the two values compared there (the user's low-precision gradient or its
        projection, and the float64 code's).
    entry_noise: the rms spread of one entry, and rms: the rms of the reference gradient,
        for the report's "noise in units of u rms(g)".
    """

    dtype: str
    u: float
    ratio: float
    err: float
    bound: float
    noise: float
    floor: float
    where: str
    index: tuple[int, ...] | None
    low: float
    ref: float
    entry_noise: float
    rms: float

    @property
    def passed(self) -> bool:
        return self.ratio <= 1.0


class _Directions:
    """The directions of one input: random, blocks over every subset of its axes, and the
    input's values times those blocks, applied to a stack of gradients at once (float32, as
    the stacks: sums of a few hundred thousand float32 terms are off by ~1e-5 of their size,
    far below the unit roundoffs judged)."""

    def __init__(self, shape: tuple[int, ...], x: np.ndarray | None, rng: np.random.Generator):
        self.shape = shape
        w = rng.random(shape, dtype=np.float32) * 2 - 1
        self.rand = (np.sign(w) + w).reshape(-1)  # random sign x U(1, 2)
        nd = len(shape)
        self.subsets = [
            axes
            for r in range(1, nd + 1)
            for axes in itertools.combinations(range(nd), r)
            if any(shape[a] > 1 for a in axes)
        ]
        self.signs = {
            axes: np.where(
                _random_bits(rng, tuple(s for a, s in enumerate(shape) if a not in axes)),
                np.float32(1),
                np.float32(-1),
            ).reshape(-1)
            for axes in self.subsets
        }
        self.x = None if x is None or x.size < 2 else np.asarray(x, dtype=np.float32)

    def names(self) -> list[str]:
        found = ["random direction"] + [f"direction block over axes {a}" for a in self.subsets]
        if self.x is not None:
            found += [f"direction input x block over axes {a}" for a in self.subsets]
        return found

    def project(self, stack: np.ndarray) -> np.ndarray:
        """(rows, directions): every row of ``stack`` (rows, *shape) along every direction."""
        rows = stack.shape[0]
        # einsum, not @: a matrix product goes to BLAS, whose threads cost milliseconds on a
        # busy machine
        found = [np.einsum("kn,n->k", stack.reshape(rows, -1), self.rand)]
        for weight in [None] if self.x is None else [None, self.x]:
            # the sum over A from the sum over A without its last axis: one pass over the
            # whole stack per axis (times x in the same pass), the rest over arrays already
            # reduced
            sums: dict[tuple[int, ...], np.ndarray] = {}
            for axes in self.subsets:  # single axes first
                parent = sums.get(axes[:-1])
                if parent is None:
                    reduced = _sum_over(stack, axes, weight)
                else:
                    reduced = parent.sum(axis=axes[-1] + 1, keepdims=True)
                sums[axes] = reduced
                found.append(np.einsum("kn,n->k", reduced.reshape(rows, -1), self.signs[axes]))
        return np.stack(found, axis=1).astype(np.float64)

    def independent(self, var: np.ndarray) -> np.ndarray:
        """sqrt(sum var_i w_i^2) per direction: the noise if entries were independent (the
        block signs square to 1)."""
        flat = var.reshape(-1)
        parts = [_dot(flat, self.rand * self.rand)] + [float(flat.sum())] * len(self.subsets)
        if self.x is not None:
            xs = self.x.reshape(-1)
            parts += [_dot(flat, xs * xs)] * len(self.subsets)
        return np.sqrt(np.maximum(np.array(parts), 0.0))

    def norms(self, ref: np.ndarray) -> np.ndarray:
        """|ref * w|_2 per direction (one rounding of every entry of the reference)."""
        flat = ref.reshape(-1)
        r = _norm(flat * self.rand)
        parts = [r] + [_norm(flat)] * len(self.subsets)
        if self.x is not None:
            parts += [_norm(flat * self.x.reshape(-1))] * len(self.subsets)
        return np.array(parts)


def _sum_over(stack: np.ndarray, axes: tuple[int, ...], weight: np.ndarray | None) -> np.ndarray:
    """The rows of ``stack`` (rows, *shape), times ``weight`` (shape) if given, summed over
    the axes ``axes`` of ``shape`` (kept, of size 1); ``()`` sums nothing. The product is
    never formed: einsum multiplies and sums in one pass."""
    if not axes and weight is None:
        return stack
    letters = "abcdefghijklmnopqrstuvwxyz"[: stack.ndim - 1]
    kept = "".join(c for a, c in enumerate(letters) if a not in axes)
    if weight is None:
        reduced = np.einsum(f"k{letters}->k{kept}", stack)
    else:
        reduced = np.einsum(f"k{letters},{letters}->k{kept}", stack, weight)
    return reduced.reshape(
        stack.shape[0], *(1 if a in axes else n for a, n in enumerate(stack.shape[1:]))
    )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a * b) of flat vectors without BLAS threads (milliseconds on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


def _norm(flat: np.ndarray) -> float:
    return math.sqrt(max(_dot(flat, flat), 0.0))


def _judge_stack(
    stack: np.ndarray, directions: _Directions, dtype: str, u: float, probe: str
) -> Verdict:
    """The verdict on one gradient for one probe: ``stack`` (float32) row 0 the float64 code's
    gradient, row 1 the user's run at the inputs, rows 2.. the perturbed runs."""
    ref, runs = stack[0], stack[1:]
    n_runs = runs.shape[0]
    mean = runs.sum(axis=0)
    mean /= np.float32(n_runs)
    var = np.zeros_like(mean)
    dev = np.empty_like(mean)
    for run in runs:  # a pass per run, no (runs, n) temporaries
        np.subtract(run, mean, out=dev)
        dev *= dev
        var += dev
    var /= np.float32(n_runs - 1)
    del dev, mean
    tiny = 1e-30
    rms = _norm(ref.reshape(-1)) / math.sqrt(ref.size) if ref.size else 0.0
    mean_var = float(var.mean(dtype=np.float64)) if var.size else 0.0
    entry_noise = math.sqrt(mean_var)
    # along the directions
    proj = directions.project(stack)
    err = np.abs(proj[1] - proj[0])
    noise = np.maximum(proj[1:].std(axis=0, ddof=1), directions.independent(var))
    floor = u * (np.abs(proj[0]) + directions.norms(ref))
    bound = C * np.maximum(noise, floor) + tiny
    ratios = err / bound
    k = int(np.argmax(ratios))
    best = Verdict(
        dtype, u, float(ratios[k]), float(err[k]), float(bound[k]), float(noise[k]),
        float(floor[k]), f"{directions.names()[k]}, dout = {probe}", None, float(proj[1][k]),
        float(proj[0][k]), entry_noise, rms,
    )  # fmt: skip
    # every entry: its own spread and the mean spread, or one rounding of it (in place: no
    # fresh array per step)
    bound_i = var
    bound_i += np.float32(mean_var)
    np.sqrt(bound_i, out=bound_i)
    np.maximum(bound_i, np.float32(u) * np.abs(ref), out=bound_i)
    bound_i *= np.float32(C)
    bound_i += np.float32(tiny)
    ratio_i = np.abs(runs[0] - ref)
    ratio_i /= bound_i
    j = int(np.argmax(ratio_i))
    if float(ratio_i.reshape(-1)[j]) > best.ratio:
        index = tuple(int(t) for t in np.unravel_index(j, ref.shape)) if ref.shape else ()
        low, at = float(runs[0].reshape(-1)[j]), float(ref.reshape(-1)[j])
        entry_bound = float(bound_i.reshape(-1)[j])
        floor_j = u * abs(at)
        best = Verdict(
            dtype, u, float(ratio_i.reshape(-1)[j]), abs(low - at), entry_bound,
            entry_bound / C, floor_j, f"entry {list(index)}, dout = {probe}", index, low, at,
            entry_noise, rms,
        )  # fmt: skip
    return best


# runners: (values per input, douts per output) -> gradients per input (float64, None where
# the input is not differentiated), and values -> outputs
Gradients = Callable[[list[Any], list[np.ndarray]], list[np.ndarray | None]]


def judge(
    run_low: Gradients,
    run_ref: Gradients,
    outs: Sequence[np.ndarray],
    inputs: Sequence[Any],
    dtypes: Sequence[str | None],
    wrt_idx: Sequence[int],
    out_dtypes: Sequence[str],
    seed: int,
) -> dict[int, Verdict]:
    """The verdict on the low-precision gradient of every input in ``wrt_idx``.

    inputs: the user's values (each in :func:`storage` of its dtype; constants as they are);
        dtypes: each input's dtype name (None for constants), out_dtypes: each output's.
    run_low: the user's code in its own dtypes; run_ref: the same code in float64 (it receives
        float64 values). outs: the user's outputs at the inputs (for the probe "ones + y").
    The runners must not keep the arrays they are given: the judge reuses them.
    """
    u = max(_ROUNDOFF.get(d, 0.0) for d in [*dtypes, *out_dtypes] if d is not None)
    coarse = max((d for d in [*dtypes, *out_dtypes] if d), key=lambda d: _ROUNDOFF.get(d, 0.0))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _STREAM])))
    shapes = {i: np.shape(inputs[i]) for i in wrt_idx if np.size(inputs[i])}
    directions = {i: _Directions(shapes[i], inputs[i], rng) for i in shapes}
    probes = {
        "seeded normal": [
            round_to(rng.standard_normal(o.shape, dtype=np.float32), d)
            for o, d in zip(outs, out_dtypes, strict=True)
        ],
        "ones + y": [
            round_to(1.0 + o.astype(np.float32), d) for o, d in zip(outs, out_dtypes, strict=True)
        ],
    }
    inputs64 = [_float64(a, d) for a, d in zip(inputs, dtypes, strict=True)]
    # work arrays reused by every run (a fresh array per run of a large input costs its page
    # faults); float32 holds the low-precision gradients exactly and the reference to 6e-8,
    # far below u: half the memory traffic of float64 in the judge's passes over the stacks
    work = [
        None if d is None else np.empty(np.shape(a), _work(d, a))
        for a, d in zip(inputs, dtypes, strict=True)
    ]
    work_out = [np.empty(o.shape, _work(d, o)) for o, d in zip(outs, out_dtypes, strict=True)]
    stacks = {i: np.empty((K_RUNS + 2, *shapes[i]), dtype=np.float32) for i in shapes}
    verdicts: dict[int, Verdict] = {}
    for probe, douts in probes.items():
        ref = run_ref(inputs64, [d.astype(np.float64) for d in douts])
        for i in shapes:
            stacks[i][0] = ref[i]
        for k in range(K_RUNS + 1):
            if k == 0:
                values, d_k = list(inputs), douts
            else:
                values = [
                    a if d is None else perturb(a, d, u, rng, out=w)
                    for a, d, w in zip(inputs, dtypes, work, strict=True)
                ]
                amplitude = AMPLITUDE if probe == "seeded normal" else 0.0
                d_k = [
                    perturb(d, t, u, rng, amplitude, out=w)
                    for d, t, w in zip(douts, out_dtypes, work_out, strict=True)
                ]
            grads = run_low(values, d_k)
            for i in shapes:
                stacks[i][k + 1] = grads[i]
        for i in shapes:
            found = _judge_stack(stacks[i], directions[i], coarse, u, probe)
            if i not in verdicts or found.ratio > verdicts[i].ratio:
                verdicts[i] = found
    return verdicts


def _work(dtype: str, a: Any) -> np.dtype:
    """The dtype :func:`perturb` works in for values of ``dtype`` held as ``a``."""
    return np.dtype(np.float32) if is_low(dtype) else np.asarray(a).dtype


def _float64(a: Any, dtype: str | None) -> Any:
    return a if dtype is None else np.asarray(a, dtype=np.float64)


def describe(v: Verdict, name: str) -> str:
    """The note on a judged gradient: the precision, the noise measured, the bound, the worst
    comparison."""
    relative = f" = {v.entry_noise / (v.u * v.rms):.3g} u rms(d{name})" if v.rms > 0 else ""
    return (
        f"{v.dtype} (u = {v.u:.3g}): your {v.dtype} gradient of {name} against the same code in "
        f"float64; measured rounding noise {v.entry_noise:.3g} per entry{relative}; "
        f"worst comparison {v.where}: |difference| {v.err:.3g} vs bound {v.bound:.3g} "
        f"({C:g} x max(noise {v.noise:.3g}, one rounding {v.floor:.3g})), ratio {v.ratio:.2f}"
    )


def resolution_note(dtype: str, u: float) -> str:
    """What a low-precision judge cannot see, said once per report."""
    return (
        f"judged in {dtype}: your gradients are compared with the same code run in float64 on "
        f"the same rounded inputs (that float64 code is checked above against numerical "
        f"derivatives), within {C:g} times the rounding noise measured over {K_RUNS} "
        f"perturbations of your own {dtype} run; a term off by less than about 8 u "
        f"({8 * u:.2g}) relative cannot be seen in {dtype} itself, the float64 check sees it"
    )


# --- the report ---------------------------------------------------------------------------------


class LowRaised(Exception):
    """The user's code raised, or returned NaN/inf, when run in its low precision."""

    def __init__(self, problem: str, who: str | None) -> None:
        super().__init__(problem)
        self.problem, self.who = problem, who


def merge(
    report64: Report,
    verdicts: dict[int, Verdict],
    dtypes: Sequence[str | None],
    numpy_code: bool = True,
) -> Report:
    """The report of a low-precision check: the float64 check of the same code (the algebra),
    each judged gradient's verdict joined to its input, the inputs shown in their own dtypes.
    numpy_code: the low-precision values are NumPy's (its float16 sums are a likely cause of a
    large rounding error)."""
    results = []
    for i, r in enumerate(report64.inputs):
        dtype = dtypes[i] or r.dtype
        v = verdicts.get(i)
        if v is None:
            results.append(replace(r, dtype=dtype))
            continue
        hints: tuple[str, ...] = ()
        worst = r.worst
        if not v.passed:
            hints = (
                f"your {v.dtype} gradient of {r.name} differs from the same code in float64 by "
                f"{v.err:.3g} along {v.where}: {v.ratio:.1f} times the bound {v.bound:.3g} "
                f"({C:g} x the rounding noise {v.noise:.3g} measured over {K_RUNS} "
                f"perturbations): more than rounding, a wrong term?",
            )
            if dtypes[i] == "float16" and numpy_code:
                hints += (
                    "NumPy sums float16 in float16 (np.mean accumulates in float32): a sum over "
                    "hundreds of entries is off by many units in the last place, the same way "
                    "at every perturbation; sum with dtype=np.float32 if that is not meant",
                )
            index = ("entry",) if v.index is None else v.index
            worst = (Entry(index, v.low, v.ref, v.noise, v.bound),) + worst
        results.append(
            replace(
                r,
                dtype=dtype,
                passed=r.passed and v.passed,
                n_failed=r.n_failed + (0 if v.passed else 1),
                worst=worst if not v.passed else r.worst,
                hints=r.hints + hints,
                notes=r.notes + (describe(v, r.name),),
            )
        )
    judged = [v for v in verdicts.values()]
    notes = report64.notes
    if judged:
        notes += (resolution_note(judged[0].dtype, judged[0].u),)
    return replace(
        report64,
        passed=report64.passed and all(v.passed for v in judged),
        inputs=tuple(results),
        notes=notes,
    )


def stopped_low(
    report64: Report, problem: str, who: str | None, dtypes: Sequence[str | None]
) -> Report:
    """The float64 check's report with the low-precision run's problem: not passed."""
    inputs = tuple(
        replace(r, dtype=d or r.dtype) for r, d in zip(report64.inputs, dtypes, strict=True)
    )
    return replace(
        report64, passed=False, inputs=inputs, problems=report64.problems + (problem,), raised=who
    )
