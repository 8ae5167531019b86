"""Hints for a failed gradient: the plain patterns behind the most common backward-pass bugs.

Each hint compares the analytic entries ``a`` with the numerical ones ``n`` of one input.
Hints that *fit* (their pattern holds at every failing entry and says what it is) are shown
alone when there are any; the *guesses* (a ReLU mask, a one-hot, one wrong column) only when
no hint fits:

- fits: all zero (``a == 0`` everywhere while ``n`` is not); a constant ratio ``a / n`` (the
  factor first: ``-1`` a flipped sign, an axis's length ``m`` or its inverse a missing or
  extra ``1/m``, 2 a term counted twice); one slice of the input zero where ``n`` is not (a
  column never computed); entries routed to the wrong places (the argmax of a max);
  ``a - n`` constant at the failing entries or along an axis (a one-hot, a mean); an error
  proportional to the input's values (a regularization term); one wrong entry per row at
  the labels' positions; a transposed matrix;
- guesses: zeros scattered over the input (a mask); one wrong entry per row elsewhere (not
  all in one column).

Where the mismatches are confined to one index along an axis (one wrong feature or column)
is said after either.

Gradients swapped with each other are found across inputs (:mod:`bnsym.gradcheck.swaps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from math import prod

import numpy as np

from bnsym.gradcheck.numeric import dot


def factor_sizes(
    name: str, shape: tuple[int, ...], out_shapes: Sequence[tuple[int, ...]]
) -> dict[int, str]:
    """The lengths a missing or extra ``1/m`` of input ``name`` can have, in words: an axis of
    the input, several of its axes, or an axis of an output the input is broadcast over (the
    batch axis of b in ``x @ w + b``), aligned from the right as NumPy broadcasts."""
    sizes: dict[int, str] = {}
    for r in range(1, len(shape) + 1):
        for axes in combinations(range(len(shape)), r):
            size = prod(shape[a] for a in axes)
            word = "axis" if r == 1 else "axes"
            sizes.setdefault(size, f"the length of {word} {', '.join(map(str, axes))} of {name}")
    for out in out_shapes:
        lead = len(out) - len(shape)
        for a, size in enumerate(out):
            if a < lead or (shape[a - lead] == 1 and size > 1):
                sizes.setdefault(
                    size, f"the length of the output's axis {a}, over which {name} is broadcast"
                )
    return {m: words for m, words in sizes.items() if m > 1}


def pattern_hints(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    indices: Sequence[tuple[int, ...]],
    failed: np.ndarray,
    atol: float,
    sizes: Mapping[int, str] | None = None,
    analytic_all: np.ndarray | None = None,
    x_values: np.ndarray | None = None,
    labels: Sequence[tuple[str, np.ndarray]] = (),
) -> list[str]:
    """Hints for input ``name`` from compared entries (flat arrays ``analytic``, ``numerical``):
    those that fit, or where none does, the guesses (see the module docstring).

    indices: the multi-index of each entry; failed: a boolean mask of the failing ones;
    sizes: the lengths a missing ``1/m`` may have, with their words (:func:`factor_sizes`).
    analytic_all: the whole analytic gradient (shape ``shape``) when only sampled entries were
        compared: a transposed matrix is then seen at the sampled entries, ``a[q, p] == n[p, q]``.
    x_values: the input's values at the compared entries (an error proportional to them).
    labels: the integer inputs by name (labels, indices): one wrong entry per row at them.
    """
    if not failed.any():
        return []
    sizes = sizes or {}
    whole = analytic if analytic_all is None else analytic_all
    if np.all(whole == 0) and np.any(np.abs(numerical) > atol):
        return [
            f"the analytic gradient of {name} is zero everywhere (exactly 0 in every entry) "
            f"though the forward depends on {name}: was it never computed, or overwritten by a "
            "fresh zeros array?"
        ]
    fits: list[str] = []
    guesses: list[str] = []
    significant = np.abs(numerical) > 10 * atol
    zeroed = _zero_pattern_hint(name, shape, analytic, numerical, indices, failed, atol)
    if zeroed is not None:
        (fits if zeroed[1] else guesses).append(zeroed[0])
    elif significant.sum() >= min(2, analytic.size):
        ratio = analytic[significant] / numerical[significant]
        med = float(np.median(ratio))
        spread = float(np.max(np.abs(ratio - med)))
        if spread <= max(1e-6, 0.01 * abs(med - 1)) and abs(med - 1) > 1e-6:
            fits.append(_ratio_hint(name, med, sizes))
    if not fits and zeroed is None:
        offset = _offset_hint(name, shape, analytic, numerical, indices, failed, atol)
        if offset:
            fits.append(offset)
    if not fits and zeroed is None and x_values is not None:
        scaled = _scale_hint(name, analytic - numerical, x_values, failed, atol)
        if scaled:
            fits.append(scaled)
    confined = _confined_hints(name, shape, indices, failed)
    if zeroed is None:
        per_row = _per_row_hint(name, shape, indices, failed, labels)
        if per_row is not None and (per_row[1] or not confined):
            # one per row, all in one column, is one wrong column before it is a one-hot
            (fits if per_row[1] else guesses).append(per_row[0])
    if _transposed(shape, analytic, numerical, indices, atol, analytic_all):
        fits.append(f"the analytic gradient of {name} is the numerical one transposed")
    # where the mismatches are is a fact, shown with either (unless a zeroed slice said it)
    where = confined if zeroed is None or not zeroed[1] else []
    return (fits or guesses) + where


def _transposed(
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    indices: Sequence[tuple[int, ...]],
    atol: float,
    analytic_all: np.ndarray | None,
) -> bool:
    """True if the compared entries fit ``analytic == numerical.T`` and not ``analytic ==
    numerical``: for a square matrix, from every entry or from sampled ones."""
    if len(shape) != 2 or shape[0] != shape[1]:
        return False
    if analytic_all is None:
        if len(indices) != analytic.size or analytic.size != shape[0] * shape[1]:
            return False
        analytic_all = analytic.reshape(shape)
    mirrored = np.array([analytic_all[q, p] for p, q in indices])
    off_diagonal = np.array([p != q for p, q in indices])
    if not off_diagonal.any():
        return False
    return bool(
        np.allclose(mirrored, numerical, rtol=1e-6, atol=atol)
        and not np.allclose(analytic, numerical, atol=atol)
    )


def _zero_pattern_hint(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    indices: Sequence[tuple[int, ...]],
    failed: np.ndarray,
    atol: float,
) -> tuple[str, bool] | None:
    """A hint when the failures are entries zeroed or filled in the wrong places, and whether
    it fits (or is a guess):

    - the analytic value is 0 at every failing entry while the numerical one is not, all of
      them in one slice along an axis (``w[:, 1]``), the rest right: that slice is never
      computed (fits);
    - the same with the zeros scattered: a mask that drops entries (a ReLU mask for a leaky
      ReLU; a guess);
    - in addition the analytic value is nonzero where the numerical one is 0: the gradient is
      routed to the wrong entries (the argmax of a max or a pooling window; fits).
    """
    bad_zero = failed & (analytic == 0) & (np.abs(numerical) > 10 * atol)
    bad_filled = failed & (np.abs(numerical) <= atol) & (np.abs(analytic) > 10 * atol)
    if not bad_zero.any() or (bad_zero | bad_filled).sum() != failed.sum():
        return None
    if bad_filled.any():
        return (
            f"the analytic gradient of {name} is 0 at {int(bad_zero.sum())} checked entries "
            f"where the numerical one is not, and nonzero at {int(bad_filled.sum())} where it "
            "is 0: the gradient is routed to the wrong entries (the argmax of a max or pool?)",
            True,
        )
    if bad_zero.sum() == analytic.size:
        return None  # all zero: the caller's hint
    zeros = [indices[int(k)] for k in np.flatnonzero(bad_zero)]
    for axis, size in enumerate(shape):
        at = {index[axis] for index in zeros}
        if size > 1 and len(at) == 1 and len(zeros) > 1:
            k = at.pop()
            where = ", ".join(str(k) if a == axis else ":" for a in range(len(shape)))
            return (
                f"the analytic gradient of {name} is 0 in {name}[{where}] ({len(zeros)} checked "
                "entries) where the numerical one is not, and right elsewhere: that slice is "
                "never computed, or overwritten with 0?",
                True,
            )
    return (
        f"the analytic gradient of {name} is 0 at {int(bad_zero.sum())} of {analytic.size} "
        "checked entries where the numerical one is not, and right elsewhere: a mask that "
        "drops entries (a ReLU mask where the slope is not 0?)",
        False,
    )


def _offset_hint(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    indices: Sequence[tuple[int, ...]],
    failed: np.ndarray,
    atol: float,
) -> str | None:
    """A hint when analytic - numerical is one constant at the failing entries (a term such
    as the labels' one-hot missing there), or constant along an axis (a mean over that axis
    missing or extra: batch norm's mean(dx_hat))."""
    diff = (analytic - numerical)[failed]
    if diff.size < 2:
        return None
    close = 1e-6 * float(np.max(np.abs(diff))) + atol
    if float(np.ptp(diff)) <= 2 * close:
        where = "every entry" if diff.size == analytic.size else f"all {diff.size} failing entries"
        return (
            f"analytic - numerical = {diff[0]:.6g} at {where} of {name}: a constant term "
            "missing or extra there (a label's one-hot, a bias)?"
        )
    bad = [indices[int(k)] for k in np.flatnonzero(failed)]
    for axis, size in enumerate(shape):
        if size < 2:
            continue
        lines: dict[tuple[int, ...], list[float]] = {}
        for index, d in zip(bad, diff.tolist(), strict=True):
            lines.setdefault(index[:axis] + index[axis + 1 :], []).append(d)
        if len(lines) < 2 or max(len(v) for v in lines.values()) < 2:
            continue
        if all(max(v) - min(v) <= 2 * close for v in lines.values()):
            return (
                f"analytic - numerical is constant along axis {axis} of {name} (one value per "
                f"line, {len(lines)} lines): a mean over axis {axis} missing or extra?"
            )
    return None


def _scale_hint(
    name: str, diff: np.ndarray, x_values: np.ndarray, failed: np.ndarray, atol: float
) -> str | None:
    """A hint when analytic - numerical = c * x at the failing entries: an error that grows
    with the input's own values (a regularization term c * w missing or extra)."""
    d, x = diff[failed], x_values[failed]
    if d.size < 3 or not np.any(x != 0):
        return None
    c = float(dot(d, x) / dot(x, x))
    residual = float(np.max(np.abs(d - c * x)))
    if c == 0 or residual > 1e-3 * float(np.max(np.abs(d))) + atol:
        return None
    return (
        f"analytic - numerical = {c:.6g} * {name} at the failing entries: the error grows with "
        f"the input's values (a term in {name} missing or extra, such as the gradient "
        f"{c:.3g} * {name} of a regularization?)"
    )


def _per_row_hint(
    name: str,
    shape: tuple[int, ...],
    indices: Sequence[tuple[int, ...]],
    failed: np.ndarray,
    labels: Sequence[tuple[str, np.ndarray]],
) -> tuple[str, bool] | None:
    """A hint when exactly one entry per row of a matrix fails: at a label's position (fits),
    elsewhere (a guess)."""
    if len(shape) != 2 or len(indices) != shape[0] * shape[1]:
        return None  # every entry compared: only then is "one per row" seen
    bad = [indices[int(k)] for k in np.flatnonzero(failed)]
    rows = [r for r, _ in bad]
    if len(bad) < 2 or len(set(rows)) != len(rows):
        return None
    for label, y in labels:
        y = np.asarray(y).reshape(-1)
        if y.size == shape[0] and all(0 <= int(y[r]) < shape[1] and int(y[r]) == c for r, c in bad):
            return (
                f"one entry per row of {name} differs, at the position {label} gives in each "
                f"row ({name}[i, {label}[i]]): the term at the labels (the one-hot) is wrong or "
                "missing",
                True,
            )
    return (
        f"one entry per row of {name} differs ({len(bad)} rows): a term at one position per "
        "row (a label's one-hot?) is wrong or missing",
        False,
    )


def _ratio_hint(name: str, ratio: float, sizes: Mapping[int, str]) -> str:
    """The factor first, then its likeliest reading: a flipped sign; 2 or 1/2 (a term counted
    twice, a square's 2); a missing or extra ``1/m`` only where ``m`` is one of ``sizes``."""
    if abs(ratio + 1) < 1e-3:
        return f"analytic = -numerical for every entry of {name}: a flipped sign"
    sign = "a flipped sign and " if ratio < 0 else ""
    size = abs(ratio)
    whole, inverse = round(size), round(1 / size)
    if whole >= 2 and abs(size - whole) < 1e-3 * whole:
        head = (
            f"analytic = {ratio:.9g} x numerical for every entry of {name}: {sign}a factor of "
            f"{whole}"
        )
        if whole == 2:
            return head + " (a term counted twice, or a square's 2 where it does not belong?)"
        if whole in sizes:
            return head + f" (a missing 1/m with m = {whole}, {sizes[whole]}?)"
        return head
    if inverse >= 2 and abs(size * inverse - 1) < 1e-3:
        minus = "-" if ratio < 0 else ""
        head = (
            f"analytic = {minus}numerical / {inverse} for every entry of {name}: {sign}a factor "
            f"of 1/{inverse}"
        )
        if inverse == 2:
            return head + " (the 2 of a square's derivative missing?)"
        if inverse in sizes:
            return head + f" (an extra 1/m with m = {inverse}, {sizes[inverse]}?)"
        return head
    percent = (ratio - 1) * 100
    return (
        f"analytic = {ratio:.9g} x numerical for every entry of {name}: "
        f"a constant factor ({percent:+.3g}%)"
    )


def _confined_hints(
    name: str, shape: tuple[int, ...], indices: Sequence[tuple[int, ...]], failed: np.ndarray
) -> list[str]:
    bad = [indices[int(k)] for k in np.flatnonzero(failed)]
    if not bad or len(bad) == len(indices) or len(shape) == 0:
        return []
    if len(bad) == 1:
        where = ", ".join(str(i) for i in bad[0])
        return [f"only {name}[{where}] differs among the checked entries"]
    hints = []
    for axis, size in enumerate(shape):
        values = {b[axis] for b in bad}
        if size > 1 and len(values) == 1:
            k = values.pop()
            sl = ", ".join(str(k) if a == axis else ":" for a in range(len(shape)))
            hints.append(
                f"all {len(bad)} mismatches are in {name}[{sl}] (index {k} along axis {axis}): "
                "one wrong feature/column?"
            )
    return hints
