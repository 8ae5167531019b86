"""One input's comparison: its analytic gradient against the numerical one.

``full`` compares every entry; ``probe`` random signed directions and sampled entries, with a
failing direction bisected to a wrong entry and the lines through that entry sampled. Both end
in :meth:`Comparison.result`, which applies the tolerance, looks at kinks, and collects the worst
entries and the hints.

Each input is judged on its own directions against its own tolerance: a direction through all
inputs at once would hold a small gradient to the tolerance of a large one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bnsym.gradcheck.hints import factor_sizes, pattern_hints
from bnsym.gradcheck.numeric import EPS64, Loss, dot, signs
from bnsym.gradcheck.report import Entry, InputResult

TINY = float(np.finfo(np.float64).tiny)
N_DIRECTIONS = 2  # random signed directions per input in probe mode
N_SAMPLES = 24  # sampled entries per input in probe mode where a direction fails
# random entries per input (besides its largest) where the directions agree: two for a small
# input, one for a large one, where a sampled entry meets one wrong entry by a chance of
# 1/size either way and each costs a forward call (the default at (64, 32) within torch's time)
N_PASS_SAMPLES = 2
N_PASS_SAMPLES_LARGE = 1
LARGE_INPUT = 64
N_WORST = 5  # entries shown per failing input
MAX_KINKS = 8  # kinks off the candidates taken out of one direction before it is reported
MAX_SMOOTH = 16  # failing entries found smooth before the rest are no longer tested for kinks


def kink_candidates(x: np.ndarray, ordered: np.ndarray | None = None) -> np.ndarray:
    """Flat indices where a kink is likely: exact zeros (ReLU, abs) and exact ties (max).

    ordered: the entries sorted, if the caller has them (most inputs have neither zeros nor
    ties, which the sorted entries tell without np.unique's work).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    s = np.sort(flat) if ordered is None else ordered
    if s.size and not (np.any(s[1:] == s[:-1]) or np.any(s == 0)):
        return np.zeros(0, dtype=np.intp)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return np.flatnonzero((flat == 0) | (counts[inverse] > 1))


class Comparison:
    """Analytic vs numerical gradient of one input, in full or probe mode.

    loss: the scalar L whose gradient the backward returns; i: the input's position.
    analytic: the backward's gradient of the input, as float64, shaped like the input.
    rtol: the caller's relative tolerance, or None for 1000 units of the working precision (the
        input's dtype, or the forward's measured noise if larger; at least 1e-9), plus the
        rounding of a gradient returned in a lower precision than its input.
    atol: the caller's, or None to derive it from the error estimates.
    eps_dtype, eps_grad: the machine epsilon of the input's and of the gradient's dtype.
    natural: the size of the analytic formula's terms; 64 roundings of them join atol (the
        floor), with ``floor_extra`` (the outputs' underflow, a float32 backward's rounding).
    rounding_error: for a float32 input, the analytic gradient minus the same backward run in
        float64 (shape of the input), when that difference is within plain rounding; random
        directions then hold the gradient to float64 precision plus this known difference.

    The tolerances follow the forward's noise, which is measured only when first needed
    (:meth:`tolerances` recomputes them).
    """

    def __init__(
        self,
        loss: Loss,
        i: int,
        name: str,
        dtype: str,
        analytic: np.ndarray,
        rtol: float | None,
        atol: float | None,
        *,
        eps_dtype: float = EPS64,
        eps_grad: float = EPS64,
        natural: float = 0.0,
        floor_extra: float = 0.0,
        rounding_error: np.ndarray | None = None,
    ) -> None:
        self.loss, self.i, self.name = loss, i, name
        self.analytic = analytic
        self.shape = analytic.shape
        self.dtype = dtype
        self.rtol_user, self.atol_user = rtol, atol
        self.eps_dtype, self.eps_grad = eps_dtype, eps_grad
        self.natural, self.floor_extra = natural, floor_extra
        self.numeric_all: np.ndarray | None = None
        self.rounding_error = rounding_error
        self.kink_notes: list[str] = []  # about kinks found before the comparison
        self.labels: list[tuple[str, np.ndarray]] = []  # the integer inputs, for the hints
        self.tolerances()

    def tolerances(self) -> None:
        """rtol and the rounding floor from the precision known now (the input's dtype, the
        forward's noise once measured); ``*_work`` the same at float64 for float32 inputs."""
        eps_a = max(self.eps_dtype, self.loss.eps_eval)
        eps_work = max(EPS64, self.loss.eps_eval)
        # a gradient rounded to a coarser dtype than its input's is right to that rounding
        coarse = 2 * self.eps_grad if self.eps_grad > self.eps_dtype else 0.0
        user = self.rtol_user
        self.rtol = user if user is not None else max(min(1e-2, max(1e-9, 1000 * eps_a)), coarse)
        self.rtol_work = (
            user if user is not None else max(min(1e-2, max(1e-9, 1000 * eps_work)), coarse)
        )
        self.floor = 64 * eps_a * self.natural + self.floor_extra
        self.floor_work = 64 * eps_work * self.natural + self.floor_extra

    @property
    def use_complex(self) -> bool:
        return self.loss.use_complex

    @property
    def method(self) -> str:
        return "complex-step" if self.use_complex else "richardson"

    # -- numerical values --------------------------------------------------------------------

    def coordinates(self, flat_idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self.use_complex:
            values = self.loss.complex_coordinates(self.i, flat_idx)
            # exact up to the rounding of the forward's arithmetic
            return values, 4 * EPS64 * np.abs(values)
        return self.loss.richardson_coordinates(self.i, flat_idx)

    def directional(self, v: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        """(analytic, numerical, error estimate, direction) of dL along the signs v.

        The direction is in the input's units (:meth:`Loss.direction`) as actually taken.
        """
        ws = {self.i: self.loss.direction(self.i, v)}
        numerical, err, taken = self.loss.directional(ws, self.use_complex)
        w = taken[self.i]
        return float(dot(self.analytic.reshape(-1), w.reshape(-1))), numerical, err, w

    # -- tolerances --------------------------------------------------------------------------

    def direction_tolerance(self, w: np.ndarray, gscale: float) -> float:
        """Allowed error of <g, w>: each entry within its tolerance, errors of random sign.

        For a float32 input whose float64 run is known, the float32 rounding is not guessed:
        it is <g32 - g64, w>, and the rest is held to float64 precision, so that an error of
        1e-2 in one column of a float32 dx is not lost in 4 * rtol32 * |g| * sqrt(size).
        """
        wflat = w.reshape(-1)
        norm = float(np.sqrt(dot(wflat, wflat)))
        user = self.atol_user * float(np.abs(wflat).sum()) if self.atol_user else 0.0
        if self.rounding_error is not None:
            known = 2 * abs(float(dot(self.rounding_error.reshape(-1), wflat)))
            return known + (4 * self.rtol_work * gscale + 4 * self.floor_work) * norm + user
        return (4 * self.rtol * gscale + 4 * self.floor) * norm + user

    def atol(self, gscale: float, max_err: float) -> float:
        if self.atol_user is not None:
            return self.atol_user
        return self.rtol * gscale + 4 * max_err + 4 * self.floor

    # -- the two modes -------------------------------------------------------------------------

    def full(self) -> InputResult:
        if not self.use_complex:  # finite differences: their steps need the noise
            self.loss.ensure_noise()
            self.tolerances()
        size = self.analytic.size
        numeric, errs = self.coordinates(range(size))
        self.numeric_all = numeric.reshape(self.shape)
        a = self.analytic.reshape(-1)
        gscale = finite_max(np.abs(numeric))
        atol = self.atol(gscale, finite_max(errs))
        indices = _multi_indices(range(size), self.shape)
        return self.result(a, numeric, errs, indices, atol, gscale, size, [])

    def quick(self, rng: np.random.Generator) -> InputResult | None:
        """The passing verdict from one random direction, or None to look closer.

        The direction's derivative costs one complex step or one central difference; if it
        agrees with the analytic <g, w> within the direction's own tolerance, the gradient is
        right: an error e of any pattern moves it by <e, w>, with entries of w of random sign
        and a random size between 1 and 2 (in the input's units), which cancels by chance no
        more often than a fraction of order tol / |e| of the time. A direction that crosses a
        kink (a ReLU input at 0, a tie in a max) disagrees and is looked at closer, where kinks
        are told from errors; one that agrees has met none, or a subgradient the backward chose.
        """
        size = self.analytic.size
        if size == 0:
            return None
        a = self.analytic.reshape(-1)
        # entries of random sign and size 1 to 2: one wrong entry moves <e, w> by at least
        # its own error (a Gaussian entry can be near 0), and two equal errors cannot cancel
        # exactly (random signs alone cancel them half of the time)
        v = rng.random(self.shape) * 2.0 - 1.0
        v += np.sign(v)
        ws = {self.i: self.loss.direction(self.i, v)}
        del v
        exact = self.loss.method == "complex" or self.loss.decided_complex
        if self.loss.method == "richardson":  # the method the caller forced, as asked
            nv, ev, taken = self.loss.directional(ws, False)
            label = "richardson"
        else:
            nv, ev, taken = self.loss.central(ws, exact)
            label = "complex-step" if exact else "central"
        w = taken[self.i].reshape(-1)
        av = float(dot(a, w))
        norm = float(np.sqrt(dot(w, w)))
        if not (math.isfinite(nv) and norm > 0):
            return None
        gscale = max(math.sqrt(float(dot(a, a)) / size), abs(nv) / norm)
        tol = 4 * ev + self.direction_tolerance(w, gscale)
        if not abs(av - nv) <= tol:
            return None
        return InputResult(
            self.name,
            self.shape,
            self.dtype,
            True,
            method=label,
            max_abs_error=abs(av - nv) / norm,  # per unit of the direction: an entry's error
            max_rel_error=abs(av - nv) / max(abs(nv), TINY),
            atol=float(self.atol(gscale, ev / norm)),
            rtol=float(self.rtol),
            n_checked=1,
            worst=(Entry(("direction", 0), av, nv, ev, tol),),
            notes=tuple(self.kink_notes),
        )

    def probe(self, rng: np.random.Generator) -> InputResult:
        """Random signed directions through this input, plus sampled entries.

        Kinks are found first among the exact zeros and ties and left out of the directions
        (a sample of them is compared entry by entry); where a direction fails, more entries
        are sampled and the direction is bisected down to a wrong entry.
        """
        if not self.use_complex:  # finite differences: their steps need the noise
            self.loss.ensure_noise()
            self.tolerances()
        size = self.analytic.size
        a = self.analytic.reshape(-1)
        n_pass = N_PASS_SAMPLES if size <= LARGE_INPUT else N_PASS_SAMPLES_LARGE
        flat_idx = self._sample(rng, n_pass, [int(np.abs(a).argmax())])
        numeric, errs = self.coordinates(flat_idx)
        gscale = max(finite_max(np.abs(numeric)), math.sqrt(float(dot(a, a)) / max(size, 1)))
        excluded = self._kinks_up_front(rng, gscale)
        if excluded.size:
            extra = self._sample_from(rng, excluded, N_SAMPLES, flat_idx)
            nj, ej = self.coordinates(extra)
            flat_idx += extra
            numeric, errs = np.append(numeric, nj), np.append(errs, ej)
        dir_entries: list[Entry] = []
        kinks: set[int] = set()
        for k in range(N_DIRECTIONS):
            v = signs(rng, self.shape)
            if excluded.size or kinks:
                v.reshape(-1)[excluded] = 0.0
                v.reshape(-1)[sorted(kinks)] = 0.0  # kinks found by earlier directions
            av, nv, ev, w = self.directional(v)
            tol = 4 * ev + self.direction_tolerance(w, gscale)
            for _ in range(MAX_KINKS):
                if abs(av - nv) <= tol:
                    break
                # bisect to one wrong entry; a kink with an admissible analytic value is taken
                # out of the direction and the search repeated
                j = self._localize(v, av - nv, size)
                kink = self.kink(j, float(a[j]), float(tol))
                if kink is None or not kink[2]:
                    # sample the lines through it, so that the report can tell one wrong
                    # column from one wrong entry
                    extra = [j] + self._lines_through(j, rng)
                    extra = [t for t in dict.fromkeys(extra) if t not in flat_idx]
                    nj, ej = self.coordinates(extra)
                    flat_idx.extend(extra)
                    numeric, errs = np.append(numeric, nj), np.append(errs, ej)
                    break
                left, right, _ = kink
                self.kink_notes.append(
                    f"{self.name}[{self._where(j)}] (one-sided derivatives {_num(left)} and "
                    f"{_num(right)}) sits at a kink a random direction met; left out of it"
                )
                kinks.add(j)
                v.reshape(-1)[j] = 0.0
                av, nv, ev, w = self.directional(v)
                tol = 4 * ev + self.direction_tolerance(w, gscale)
            dir_entries.append(Entry(("direction", k), av, nv, ev, tol))
        if any(not e.passed for e in dir_entries):
            # a wrong gradient: enough sampled entries for its pattern (a ratio, a transpose)
            extra = self._sample(rng, N_SAMPLES, flat_idx)[len(flat_idx) :]
            nj, ej = self.coordinates(extra)
            flat_idx += extra
            numeric, errs = np.append(numeric, nj), np.append(errs, ej)
        atol = self.atol(gscale, finite_max(errs))
        values = a[flat_idx]
        indices = _multi_indices(flat_idx, self.shape)
        return self.result(
            values,
            numeric,
            errs,
            indices,
            atol,
            gscale,
            len(flat_idx) + N_DIRECTIONS,
            dir_entries,
            flat_idx,
        )

    def _sample(self, rng: np.random.Generator, n: int, have: list[int]) -> list[int]:
        """``have`` followed by up to n random flat indices not in it."""
        size = self.analytic.size
        picked = rng.choice(size, size=min(size, n + len(have)), replace=False).tolist()
        taken = set(have)
        new = [int(j) for j in picked if j not in taken][:n]
        return list(have) + new

    def _sample_from(
        self, rng: np.random.Generator, pool: np.ndarray, n: int, have: Sequence[int]
    ) -> list[int]:
        chosen = rng.choice(pool, size=min(pool.size, n), replace=False).tolist()
        return [int(j) for j in chosen if j not in set(have)]

    def _kinks_up_front(self, rng: np.random.Generator, gscale: float) -> np.ndarray:
        """The exact zeros and ties if one direction through them all meets a kink, else none.

        A kink sends a probe direction's error far beyond its tolerance, and bisecting to one
        kink at a time costs log2(size) evaluations each: with half the entries of a
        post-ReLU input at 0 that never ends. Five evaluations tell whether any candidate is a
        kink; then all of them leave the directions and a sample is compared one by one.
        """
        if not self.loss.has_ties.get(self.i, False):
            return np.zeros(0, dtype=np.intp)
        candidates = kink_candidates(self.loss.base[self.i])
        if candidates.size == 0:
            return candidates
        v = np.zeros(self.analytic.size)
        v[candidates] = signs(rng, (candidates.size,))
        w = self.loss.direction(self.i, v.reshape(self.shape))
        left, right, change, noise = self.loss.one_sided_along({self.i: w})
        tol = self.direction_tolerance(w, gscale) + 1e-300
        if not is_jump(left, right, change, noise, tol):
            return np.zeros(0, dtype=int)
        self.kink_notes.append(
            f"{candidates.size} entries of {self.name} sit exactly at 0 or at a tie and L has "
            f"a kink there; they are left out of the random directions, "
            f"{min(candidates.size, N_SAMPLES)} of them compared one by one"
        )
        return candidates

    # -- kinks and localization ------------------------------------------------------------

    def kink(self, j: int, analytic: float, tol: float) -> tuple[float, float, bool] | None:
        """None if flat entry j is smooth, else (left, right, whether the analytic is allowed).

        A kink (ReLU at 0, a tie in a max) is a jump between the one-sided derivatives that
        does not shrink with the step; any value between them (a subgradient) is allowed.
        """
        left, right, change, noise = self.loss.one_sided(self.i, j)
        if not is_jump(left, right, change, noise, tol):
            return None
        allowed = min(left, right) - tol <= analytic <= max(left, right) + tol
        return left, right, allowed

    def _where(self, j: int) -> str:
        if not self.shape:  # a 0-d input: x[()]
            return "()"
        return ", ".join(str(int(t)) for t in np.unravel_index(j, self.shape))

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
        vflat = v.reshape(-1)
        idx = np.flatnonzero(vflat)
        while idx.size > 1:
            half = idx[: idx.size // 2]
            vh = np.zeros(size)
            vh[half] = vflat[half]
            ah, nh, _, _ = self.directional(vh.reshape(self.shape))
            d_half = ah - nh
            if abs(d_half) >= abs(discrepancy - d_half):
                idx, discrepancy = half, d_half
            else:
                idx, discrepancy = idx[idx.size // 2 :], discrepancy - d_half
        return int(idx[0]) if idx.size else 0

    # -- the verdict ---------------------------------------------------------------------------

    def _kinks_among_failures(
        self,
        a: np.ndarray,
        abs_err: np.ndarray,
        tol: np.ndarray,
        failed: np.ndarray,
        flat_idx: Sequence[int] | None,
    ) -> tuple[np.ndarray, list[str], list[str]]:
        """Test failing entries, worst first, for a kink: (exempt mask, notes, hints).

        Every failing entry is tested until MAX_SMOOTH of them turned out smooth: a correct
        layer on post-ReLU activations has dozens of kinks and nothing else failing, while a
        wrong layer's failures are smooth, and testing all of them would only cost time.
        """
        exempt = np.zeros(failed.shape, dtype=bool)
        allowed_at: list[tuple[str, float, float]] = []
        wrong_at: list[tuple[str, float, float, float]] = []
        smooth = 0
        for k in np.flatnonzero(failed)[np.argsort(-abs_err[failed], kind="stable")]:
            if smooth >= MAX_SMOOTH:
                break
            j = int(flat_idx[k]) if flat_idx is not None else int(k)
            kink = self.kink(j, float(a[k]), float(tol[k]))
            if kink is None:
                smooth += 1
                continue
            left, right, allowed = kink
            where = f"{self.name}[{self._where(j)}]"
            if allowed:
                exempt[k] = True
                allowed_at.append((where, left, right))
            else:
                wrong_at.append((where, left, right, float(a[k])))
        notes, hints = [], []
        if allowed_at:
            where, left, right = allowed_at[0]
            count = len(allowed_at)
            notes.append(
                f"{count} {'entry' if count == 1 else 'entries'} at kinks, e.g. {where} "
                f"(one-sided derivatives {_num(left)} and {_num(right)}); the analytic values "
                "lie between the one-sided derivatives, not counted"
            )
        if wrong_at:
            where, left, right, value = wrong_at[0]
            count = len(wrong_at)
            hints.append(
                f"{count} {'entry' if count == 1 else 'entries'} at kinks with an analytic "
                f"value outside the one-sided derivatives, e.g. {where} (one-sided "
                f"{_num(left)} and {_num(right)}, analytic {_num(value)})"
            )
        return exempt, notes, hints

    def result(
        self,
        a: np.ndarray,
        n: np.ndarray,
        errs: np.ndarray,
        indices: list[tuple[int, ...]],
        atol: float,
        gscale: float,
        n_checked: int,
        dir_entries: list[Entry],
        flat_idx: Sequence[int] | None = None,
    ) -> InputResult:
        """The verdict on compared entries: flat arrays ``a`` (analytic), ``n`` (numerical),
        ``errs`` (error estimates) at multi-indices ``indices`` (flat ones ``flat_idx``, or
        0..size-1 in full mode), plus the probe directions ``dir_entries``."""
        tol = atol + self.rtol * np.abs(n)
        abs_err = np.abs(a - n)
        nonfinite = ~np.isfinite(n)
        failed = (abs_err > tol) | nonfinite
        hints: list[str] = []
        if nonfinite.any():
            k = int(np.flatnonzero(nonfinite)[0])
            where = ", ".join(str(t) for t in indices[k])
            hints.append(
                f"the numerical derivative is NaN/inf at {self.name}[{where}] "
                f"({int(nonfinite.sum())} entries): the steps leave the forward's domain "
                "(sqrt or log near 0?); not a verdict on the backward there"
            )
        any_failed = bool(failed.any())
        if any_failed:
            abs_err = np.where(nonfinite, np.inf, abs_err)
            exempt, notes, kink_hints = self._kinks_among_failures(
                a, abs_err, tol, failed, flat_idx
            )
            failed &= ~exempt
            any_failed = bool(failed.any())
            hints += kink_hints
            judged_err = np.where(exempt, 0.0, abs_err)  # kinks' subgradients are not errors
        else:  # the common case, without the kink search's work
            exempt, notes, judged_err = np.zeros(failed.shape, dtype=bool), [], abs_err
        notes = list(dict.fromkeys(self.kink_notes + notes))
        dir_failed = [e for e in dir_entries if not e.passed]
        rel = judged_err / np.maximum(np.abs(n), max(1e-3 * gscale, TINY))
        if any_failed:
            rel = np.where(nonfinite, np.inf, rel)
        order = [k for k in np.argsort(-judged_err, kind="stable") if not exempt[k]]
        entries = [
            Entry(indices[k], float(a[k]), float(n[k]), float(errs[k]), float(tol[k]))
            for k in order[:N_WORST]
        ]
        if dir_failed:
            entries = [e for e in entries if not e.passed] + dir_failed
        analytic_all = self.analytic if flat_idx is not None else None
        if any_failed:
            hints = (
                pattern_hints(
                    self.name,
                    self.shape,
                    a,
                    n,
                    indices,
                    failed,
                    atol,
                    factor_sizes(self.name, self.shape, [d.shape for d in self.loss.dout]),
                    analytic_all,
                    x_values=self.loss.base[self.i].reshape(-1)[
                        slice(None) if flat_idx is None else np.asarray(flat_idx, dtype=np.intp)
                    ],
                    labels=self.labels,
                )
                + hints
            )
        if dir_failed and not any_failed:
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
            max_abs_error=float(judged_err.max(initial=0.0)),
            max_rel_error=float(rel.max(initial=0.0)),
            atol=float(atol),
            rtol=float(self.rtol),
            n_checked=n_checked,
            n_failed=n_failed,
            worst=tuple(entries),
            hints=tuple(hints),
            notes=tuple(notes),
        )


def is_jump(left: float, right: float, change: float, noise: float, tol: float) -> bool:
    """Whether one-sided derivatives ``left`` and ``right`` differ by a kink's jump.

    The jump must exceed the tolerance, not change with the step (``change``: the jump at the
    smaller step minus that at the larger), and be more than rounding: beyond twice the
    ``noise`` of L over the step and far beyond the last digits of the derivatives. A smooth
    entry of a large layer otherwise showed a "kink" of one ulp of L over the step (1e-7).
    """
    jump = abs(right - left)
    return (
        jump > 10 * tol
        and abs(change) < 0.25 * jump
        and jump > 2 * noise
        and jump > 16 * EPS64 * max(abs(left), abs(right))
    )


def _num(value: float) -> str:
    """A number for the report; -0 shows as 0."""
    return f"{value + 0.0:.6g}"


def finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max(initial=0.0))


def _multi_indices(flat_idx: Sequence[int], shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The multi-index of each flat index, as tuples of Python ints."""
    if not shape:  # a 0-d input: its one entry is x[()]; unravel_index refuses shape ()
        return [()] * len(flat_idx)
    columns = np.unravel_index(np.asarray(flat_idx, dtype=np.intp), shape)
    return list(zip(*(c.tolist() for c in columns), strict=True))
