"""One input's comparison: its analytic gradient against the numerical one.

``full`` compares every entry; ``probe`` random signed directions and sampled entries, with a
failing direction bisected to a wrong entry and the lines through that entry sampled. Both end
in :meth:`Comparison.result`, which applies the tolerance, looks at kinks, and collects the worst
entries and the hints. :func:`joint_directions_agree` is the cheap first pass of probe mode:
random directions through all inputs at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from bnsym._gradcheck_hints import pattern_hints
from bnsym._gradcheck_numeric import EPS64, Loss, signs
from bnsym._gradcheck_report import Entry, InputResult

N_DIRECTIONS = 3  # random signed directions per input, and through all inputs, in probe mode
N_SAMPLES = 24  # sampled entries per input in probe mode where a direction fails
N_PASS_SAMPLES = 0  # random entries per input (besides its largest) where directions agree
N_WORST = 5  # entries shown per failing input
MAX_KINKS = 8  # kinks taken out of one probe direction before its failure is reported


class Comparison:
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
        self.kink_notes: list[str] = []  # kinks met by probe directions

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
        gscale = finite_max(np.abs(numeric))
        atol = self.atol(gscale, finite_max(errs))
        indices = [tuple(int(k) for k in np.unravel_index(j, self.shape)) for j in range(size)]
        return self.result(a, numeric, errs, indices, atol, gscale, sizes, size, [])

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
        gscale = max(finite_max(np.abs(numeric)), float(np.sqrt(np.mean(a * a))))
        atol = self.atol(gscale, finite_max(errs))
        # directions: the error of a sum of `size` entries, each within about rtol * gscale
        dir_entries: list[Entry] = []
        kinks: set[int] = set()
        for k in range(n_directions):
            v = signs(rng, self.shape)
            v.reshape(-1)[sorted(kinks)] = 0.0  # kinks found by earlier directions
            nv, ev = self.directional(v)
            av = float(np.sum(self.analytic * v))
            tol = 4 * ev + self.direction_tolerance(gscale)
            for _ in range(MAX_KINKS):
                if abs(av - nv) <= tol:
                    break
                # bisect to one wrong entry; a kink with an admissible analytic value is taken
                # out of the direction and the search repeated
                j = self._localize(v, av - nv, size)
                kink = self.kink(j, float(a[j]), float(tol))
                if kink is None or not kink[1]:
                    # sample the lines through it, so that the report can tell one wrong
                    # column from one wrong entry
                    extra = [j] + self._lines_through(j, rng)
                    extra = [t for t in dict.fromkeys(extra) if t not in flat_idx]
                    nj, ej = self.coordinates(extra)
                    flat_idx.extend(extra)
                    numeric = np.append(numeric, nj)
                    errs = np.append(errs, ej)
                    break
                self.kink_notes.append(kink[0])
                kinks.add(j)
                v.reshape(-1)[j] = 0.0
                nv, ev = self.directional(v)
                av = float(np.sum(self.analytic * v))
            dir_entries.append(Entry(("direction", k), av, nv, ev, tol))
        values = a[flat_idx]
        indices = [tuple(int(k) for k in np.unravel_index(j, self.shape)) for j in flat_idx]
        return self.result(
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

    def kink(self, j: int, analytic: float, tol: float) -> tuple[str, bool] | None:
        """None if flat entry j is smooth, else (message, whether the analytic value is allowed).

        A kink (ReLU at 0, a tie in a max) is a jump between the one-sided derivatives that
        does not shrink with the step; any value between them (a subgradient) is allowed.
        """
        left, right, change = self.loss.one_sided(self.i, j)
        jump = abs(right - left)
        if not (jump > 10 * tol and abs(change) < 0.25 * jump):
            return None
        index = ", ".join(str(int(t)) for t in np.unravel_index(j, self.shape))
        sides = (
            f"{self.name}[{index}] sits at a kink "
            f"(one-sided derivatives {left:.6g} and {right:.6g})"
        )
        if min(left, right) - tol <= analytic <= max(left, right) + tol:
            return f"{sides}; the analytic {analytic:.6g} is between them, not counted", True
        return f"{sides} and the analytic {analytic:.6g} is neither", False

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

    def result(
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
        for k in np.flatnonzero(failed)[np.argsort(-abs_err[failed])][:16]:
            j = flat_idx[k] if flat_idx is not None else int(k)
            kink = self.kink(int(j), float(a[k]), float(tol[k]))
            if kink is not None:
                message, allowed = kink
                if allowed:
                    failed[k] = False
                (notes if allowed else hints).append(message)
        notes = list(dict.fromkeys(notes + self.kink_notes))
        dir_failed = [e for e in dir_entries if not e.passed]
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


def joint_directions_agree(
    loss: Loss, checks: Mapping[int, Comparison], rng: np.random.Generator, notes: list[str]
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


def finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.max(finite, initial=0.0))
