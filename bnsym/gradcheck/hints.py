"""Hints for a failed gradient: the plain patterns behind the most common backward-pass bugs.

Each hint compares the analytic entries ``a`` with the numerical ones ``n`` of one input:

- all zero: ``a == 0`` everywhere while ``n`` is not;
- a constant ratio ``a / n``: ``-1`` (a flipped sign), the size ``m`` of an axis or its inverse
  (a missing or extra ``1/m``), else the factor itself (``+0.1%``);
- a transposed matrix: ``a == n.T``;
- mismatches confined to one index along an axis (one wrong feature or column);
- one wrong entry per row, at the labels' positions (an integer input);
- an error proportional to the input's values (a regularization term);
- two inputs' gradients swapped (checked across inputs by :func:`swap_hints`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnsym.gradcheck.numeric import dot


def pattern_hints(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    indices: Sequence[tuple[int, ...]],
    failed: np.ndarray,
    atol: float,
    sizes: Sequence[int] = (),
    analytic_all: np.ndarray | None = None,
    x_values: np.ndarray | None = None,
    labels: Sequence[tuple[str, np.ndarray]] = (),
) -> list[str]:
    """Hints for input ``name`` from compared entries (flat arrays ``analytic``, ``numerical``).

    indices: the multi-index of each entry; failed: a boolean mask of the failing ones;
    sizes: axis sizes of all inputs (candidates for a missing ``1/m``).
    analytic_all: the whole analytic gradient (shape ``shape``) when only sampled entries were
        compared: a transposed matrix is then seen at the sampled entries, ``a[q, p] == n[p, q]``.
    x_values: the input's values at the compared entries (an error proportional to them).
    labels: the integer inputs by name (labels, indices): one wrong entry per row at them.
    """
    hints: list[str] = []
    if not failed.any():
        return hints
    whole = analytic if analytic_all is None else analytic_all
    if np.all(whole == 0) and np.any(np.abs(numerical) > atol):
        return [
            f"the analytic gradient of {name} is zero everywhere (exactly 0 in every entry) "
            f"though the forward depends on {name}: was it never computed, or overwritten by a "
            "fresh zeros array?"
        ]
    significant = np.abs(numerical) > 10 * atol
    routed = _zero_pattern_hint(name, analytic, numerical, failed, atol)
    if routed:
        hints.append(routed)
    elif significant.sum() >= min(2, analytic.size):
        ratio = analytic[significant] / numerical[significant]
        med = float(np.median(ratio))
        spread = float(np.max(np.abs(ratio - med)))
        if spread <= max(1e-6, 0.01 * abs(med - 1)) and abs(med - 1) > 1e-6:
            hints.append(_ratio_hint(name, med, sizes))
    if not hints:
        offset = _offset_hint(name, shape, analytic, numerical, indices, failed, atol)
        if offset:
            hints.append(offset)
    if not hints and x_values is not None:
        scaled = _scale_hint(name, analytic - numerical, x_values, failed, atol)
        if scaled:
            hints.append(scaled)
    per_row = _per_row_hint(name, shape, indices, failed, labels)
    if per_row:
        hints.append(per_row)
    if _transposed(shape, analytic, numerical, indices, atol, analytic_all):
        hints.append(f"the analytic gradient of {name} is the numerical one transposed")
    hints.extend(_confined_hints(name, shape, indices, failed))
    return hints


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
    name: str, analytic: np.ndarray, numerical: np.ndarray, failed: np.ndarray, atol: float
) -> str | None:
    """A hint when the failures are entries zeroed or filled in the wrong places.

    - the analytic value is 0 at every failing entry while the numerical one is not, and
      other entries pass: a mask that drops entries (a ReLU mask for a leaky ReLU);
    - in addition the analytic value is nonzero where the numerical one is 0: the gradient is
      routed to the wrong entries (the argmax of a max or a pooling window).
    """
    bad_zero = failed & (analytic == 0) & (np.abs(numerical) > 10 * atol)
    bad_filled = failed & (np.abs(numerical) <= atol) & (np.abs(analytic) > 10 * atol)
    if not bad_zero.any() or (bad_zero | bad_filled).sum() != failed.sum():
        return None
    if bad_filled.any():
        return (
            f"the analytic gradient of {name} is 0 at {int(bad_zero.sum())} checked entries "
            f"where the numerical one is not, and nonzero at {int(bad_filled.sum())} where it "
            "is 0: the gradient is routed to the wrong entries (the argmax of a max or pool?)"
        )
    if bad_zero.sum() == analytic.size:
        return None  # all zero: the caller's hint
    return (
        f"the analytic gradient of {name} is 0 at {int(bad_zero.sum())} of {analytic.size} "
        "checked entries where the numerical one is not, and right elsewhere: a mask that "
        "drops entries (a ReLU mask where the slope is not 0?)"
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
) -> str | None:
    """A hint when exactly one entry per row of a matrix fails, at a label's position."""
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
                "missing"
            )
    return (
        f"one entry per row of {name} differs ({len(bad)} rows): a term at one position per "
        "row (a label's one-hot?) is wrong or missing"
    )


def _ratio_hint(name: str, ratio: float, sizes: Sequence[int]) -> str:
    if abs(ratio + 1) < 1e-3:
        return f"analytic = -numerical for every entry of {name}: a flipped sign"
    for m in sorted({s for s in sizes if s > 1}):
        if abs(ratio - m) < 1e-3 * m:
            return (
                f"analytic = {m} x numerical for every entry of {name}: a missing 1/m with m = {m}?"
            )
        if abs(ratio * m - 1) < 1e-3:
            return (
                f"analytic = numerical / {m} for every entry of {name}: an extra 1/m with m = {m}?"
            )
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


def swap_hints(
    names: Sequence[str],
    analytic: Sequence[np.ndarray | None],
    numerical: Sequence[np.ndarray | None],
) -> list[str]:
    """Hints for pairs of same-shaped inputs whose analytic gradients match each other's numbers."""
    hints = []
    for p in range(len(names)):
        for q in range(p + 1, len(names)):
            ap, aq, np_, nq = analytic[p], analytic[q], numerical[p], numerical[q]
            if ap is None or aq is None or np_ is None or nq is None or ap.shape != aq.shape:
                continue
            if np.allclose(ap, np_, rtol=1e-6) and np.allclose(aq, nq, rtol=1e-6):
                continue
            scale = max(float(np.max(np.abs(np_), initial=0)), float(np.max(np.abs(nq), initial=0)))
            atol = 1e-6 * scale
            if np.allclose(ap, nq, rtol=1e-6, atol=atol) and np.allclose(
                aq, np_, rtol=1e-6, atol=atol
            ):
                hints.append(
                    f"the gradients of {names[p]} and {names[q]} look swapped: the analytic "
                    f"d{names[p]} matches the numerical d{names[q]} and vice versa"
                )
    return hints
