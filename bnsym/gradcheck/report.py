"""The gradient checker's report: per-input results, the worst entries, hints, and its text.

A report is data first (frozen dataclasses other tools read: ``report.inputs[k].max_abs_error``)
and text second (``str(report)``): what was checked, where it differs, both numbers aligned, the
tolerance and the error estimate behind it, the hints, and the seed. Never a whole matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnsym.gradcheck import words


@dataclass(frozen=True)
class Entry:
    """One compared entry: ``index`` into the input, both values, the numerical error estimate.

    ``index`` is a multi-index such as ``(2, 1)``, or ``("direction", k)`` for the k-th random
    direction of the probe mode (then the values are directional derivatives).
    """

    index: tuple[int | str, ...]
    analytic: float
    numerical: float
    error_estimate: float
    tolerance: float

    @property
    def abs_error(self) -> float:
        return abs(self.analytic - self.numerical)

    @property
    def passed(self) -> bool:
        return self.abs_error <= self.tolerance


@dataclass(frozen=True)
class Diagnosis:
    """One gradient of a recognised member of the family, read against its closed form.

    closed_form: the line of the closed form the gradient is (notes' notation), e.g.
        ``∂ℓ/∂x = γ·(∂ℓ/∂y − mean(∂ℓ/∂y) − x̂·mean(∂ℓ/∂y·x̂))/√(σ²_B + ε)``.
    findings: what is wrong with it, term by term ("your ∂ℓ/∂x lacks the −mean(∂ℓ/∂y) term");
        when ``explained`` is False, why no reading was given.
    explained: the findings account for the whole difference between the gradient and the
        closed form, to ``residual`` (the largest entry of what is left), within the check's
        tolerance.
    entries: ``(index, yours, exact)`` at the worst entries: the gradient beside the closed
        form's value.
    """

    closed_form: str
    findings: tuple[str, ...]
    explained: bool
    residual: float = 0.0
    entries: tuple[tuple[tuple[int, ...], float, float], ...] = ()


@dataclass(frozen=True)
class InputResult:
    """The check of one input's gradient.

    passed: the analytic gradient matches within ``atol + rtol * |numerical|`` everywhere checked
        (True for constant and empty inputs, which are not checked: ``checked`` is False).
    max_abs_error, max_rel_error: over the checked entries (in probe mode the sampled ones, and
        the worst entry a failing direction was traced to); the relative error of an entry is
        ``|analytic - numerical| / max(|numerical|, 1e-3 * max|numerical|)``.
    atol, rtol: the tolerances used. ``rtol`` is 1000 units of the working precision (at least
        1e-9); ``atol = rtol * max|numerical| + 4 * (largest error estimate) + 4 * (rounding
        floor of the user's own arithmetic)``, unless given by the caller.
    method: how the numerical gradient was computed (``"complex-step"``, ``"richardson"``).
    n_checked, n_failed: entries (or directions) compared and failed.
    worst: the worst entries, largest error first.
    judged: False when the check stopped before comparing (a forward that modifies its inputs,
        is nondeterministic or returns NaN): ``passed`` is then False but nothing was found wrong
        with this gradient.
    diagnosis: for a failing gradient of a recognised member of the family (``Report.family``),
        the gradient read against the closed form's terms; else None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    passed: bool
    checked: bool = True
    method: str = "-"
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    atol: float = 0.0
    rtol: float = 0.0
    n_checked: int = 0
    n_failed: int = 0
    worst: tuple[Entry, ...] = ()
    hints: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    judged: bool = True
    diagnosis: Diagnosis | None = None


@dataclass(frozen=True)
class Report:
    """The result of a gradient check.

    passed: every checked input passed, at least one input was checked, and no problem
        (mutation, nondeterminism, NaN, a gradient of the wrong count or shape) was found.
    seed: the seed of ``dout``, the directions and sampled entries; pass it back to reproduce.
    mode: ``"full"`` (every entry) or ``"probe"`` (random directions plus sampled entries).
    inputs: one :class:`InputResult` per input, in the order of the inputs.
    problems: findings that stop the comparison or concern the layer as a whole.
    raised: ``"forward"`` or ``"backward"`` when that call raised (the exception is the first
        problem), else ``None``.
    family: for a failed check, the member of the normalization family the forward was
        recognised as (by its output, or as the caller named it), in words; else ``""``.
    method_notes: how the numbers were taken (the complex step not used, and why); shown
        only in a failed report, where they bear on what the reader concludes.
    word: the composition of modes checked, outer first (:mod:`bnsym.gradcheck.words`):
        ``("fwd",)`` for a jvp, ``("fwd", "rev")`` for the jvp of a vjp; ``()`` for a backward
        checked by :func:`~bnsym.gradcheck.check.check_layer` and its kin. A report with a word
        leads with what failed in words (``forward mode, order 1: the jvp of x is wrong …``).
    """

    passed: bool
    seed: int
    mode: str
    inputs: tuple[InputResult, ...]
    forward: str = "forward"
    backward: str = "backward"
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    evaluations: int = 0
    raised: str | None = None
    family: str = ""
    method_notes: tuple[str, ...] = ()
    word: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> InputResult:
        """The result for the input called ``name``."""
        for result in self.inputs:
            if result.name == name:
                return result
        raise KeyError(f"no input named {name!r}; inputs are {[r.name for r in self.inputs]}")

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return format_report(self)


def _g(value: float) -> str:
    return f"{value:.2e}"


def _index(index: tuple[int | str, ...]) -> str:
    if index and index[0] == "direction":
        return f"direction {index[1]}"
    return "[" + ", ".join(str(i) for i in index) + "]"


def format_report(report: Report) -> str:
    """The report as text: a summary table, then per failing input its worst entries and hints."""
    verdict = "passed" if report.passed else "FAILED"
    checked = "gradient"
    lines = []
    if report.word:  # what failed, in words, first; then the check as for a backward
        checked = words.name(report.word).removeprefix("the ")
        lines = [] if report.passed else word_findings(report)
    lines += [
        f"{checked} check {verdict}: {report.backward} vs. numerical derivatives of "
        f"{report.forward}",
        f"  seed={report.seed}  mode={report.mode}  forward evaluations={report.evaluations}",
    ]
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    if report.inputs:
        header = ("input", "shape", "dtype", "method", "max abs err", "max rel err", "atol", "rtol")
        rows = []
        for r in report.inputs:
            if not r.checked:
                what = "constant" if 0 not in r.shape else "-"
                shown = "" if 0 not in r.shape else "not checked (empty)"
                rows.append((r.name, str(r.shape), r.dtype, what, shown, "", "", "", ""))
                continue
            if not r.judged:
                rows.append((r.name, str(r.shape), r.dtype, "-", "", "", "", "", "not judged"))
                continue
            if r.n_checked == 0:
                rows.append(
                    (r.name, str(r.shape), r.dtype, "-", "not compared", "", "", "", "FAIL")
                )
                continue
            rows.append(
                (
                    r.name,
                    str(r.shape),
                    r.dtype,
                    r.method,
                    _g(r.max_abs_error),
                    _g(r.max_rel_error),
                    _g(r.atol),
                    _g(r.rtol),
                    "ok" if r.passed else "FAIL",
                )
            )
        widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(header)]
        lines.append(
            ("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))).rstrip()
        )
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
            lines.append(("  " + "  ".join(cells) + "  " + row[-1]).rstrip())
    if report.family:
        lines.append(f"  family: {report.family}")
    for r in report.inputs:
        lines.extend(_format_input(r))
    for note in report.notes:
        lines.append(f"  note: {note}")
    if not report.passed:  # a pass does not depend on how the numbers were taken
        lines.extend(f"  note: {note}" for note in report.method_notes)
    lines.append(f"  reproduce with seed={report.seed}")
    return "\n".join(lines)


def _format_input(r: InputResult) -> list[str]:
    lines: list[str] = []
    if (r.passed or not r.judged) and not r.notes and not r.problems:
        return lines
    if not r.passed and r.n_checked and r.n_failed:
        what = "directions/entries" if any(e.index[:1] == ("direction",) for e in r.worst) else ""
        what = what or "entries"
        lines.append(
            f"{r.name}: {r.n_failed} of {r.n_checked} checked {what} differ beyond "
            f"atol={_g(r.atol)} + rtol={_g(r.rtol)} * |numerical| ({r.method})"
        )
    elif not r.passed or r.problems:
        lines.append(f"{r.name}:")
    for problem in r.problems:
        lines.append(f"  problem: {problem}")
    if r.worst and not r.passed and (r.n_failed or r.hints):
        lines.append(f"  worst {len(r.worst)}:")
        idx_w = max(len("index"), *(len(_index(e.index)) for e in r.worst))
        lines.append(
            f"    {'index'.ljust(idx_w)}  {'analytic':>20}  {'numerical':>20}  "
            f"{'abs err':>8}  {'est. err':>8}  {'tol':>8}"
        )
        for e in r.worst:
            mark = "" if e.passed else "  <-"
            lines.append(
                f"    {_index(e.index).ljust(idx_w)}  {e.analytic + 0.0:>20.12e}  "
                f"{e.numerical + 0.0:>20.12e}  "
                f"{_g(e.abs_error):>8}  {_g(e.error_estimate):>8}  {_g(e.tolerance):>8}{mark}"
            )
    if r.diagnosis is not None and not r.passed:
        lines.extend(_format_diagnosis(r.name, r.diagnosis))
    for hint in r.hints:
        lines.append(f"  hint: {hint}")
    for note in r.notes:
        lines.append(f"  note ({r.name}): {note}")
    return lines


def _format_diagnosis(name: str, d: Diagnosis) -> list[str]:
    """The closed form, the findings, and the gradient beside the closed form's values."""
    lines = [f"  diagnosis: {d.closed_form}"]
    lines.extend(f"    {finding}" for finding in d.findings)
    if d.explained:
        what = "that" if len(d.findings) == 1 else "these"
        lines.append(f"    with {what} put right, yours is the closed form to {d.residual:.2g}")
    if d.entries:
        idx_w = max(len("index"), *(len(_index(i)) for i, _, _ in d.entries))
        lines.append(f"    {'index'.ljust(idx_w)}  {'yours':>20}  {'closed form':>20}")
        for index, yours, exact in d.entries:
            lines.append(
                f"    {_index(index).ljust(idx_w)}  {yours + 0.0:>20.12e}  {exact + 0.0:>20.12e}"
            )
    return lines


def word_findings(report: Report) -> list[str]:
    """One line per thing wrong in a check of a composition of modes, leading with the mode and
    order: ``forward mode, order 1: the jvp of x is wrong along a random tangent: tout[2, 1]
    is …``."""
    word = report.word
    title, what = words.title(word), words.name(word)
    forward = word[0] == "fwd"
    lines = [f"{title}: problem: {p}" for p in report.problems]
    for r in report.inputs:
        if r.passed or not r.judged:
            continue
        if forward:
            where = (
                f"{what} of {r.name} is wrong along a random tangent"
                if len(word) == 1
                else f"{what}, along a random tangent of {r.name}, is wrong"
            )
        else:
            where = (
                f"{what} of {r.name} is wrong"
                if len(word) == 1
                else f"{what} is wrong in ∂/∂{r.name}"
            )
        failing = [e for e in r.worst if not e.passed]
        if failing:
            e = failing[0]
            at = (
                f"tout{_index(e.index)} is {e.analytic + 0.0:.12g} from {report.backward}"
                if forward
                else f"at {r.name}{_index(e.index)} {report.backward} gives {e.analytic + 0.0:.12g}"
            )
            lines.append(
                f"{title}: {where}: {at}, numerical {e.numerical + 0.0:.12g} (|difference| "
                f"{_g(e.abs_error)} > tolerance {_g(e.tolerance)}; {r.n_failed} of "
                f"{r.n_checked} checked differ)"
            )
        for problem in r.problems:
            lines.append(f"{title}: {where}: {problem}")
        if not failing and not r.problems:
            lines.append(f"{title}: {where}" + (f" ({r.hints[0]})" if r.hints else ""))
    return lines


# --- a check of several orders ------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersReport:
    """The check of a backward (order 1) and a double backward (order 2): one :class:`Report`
    per order, ``report[1]`` and ``report[2]``.

    Order 2 checks the double backward against numerical derivatives of the *backward as
    written*, a function of the inputs and of ``dout``, so it is meaningful on its own even
    where order 1 fails (then it says whether the double backward matches the wrong backward).

    passed: every order passed. failed: the orders that failed, e.g. ``(2,)``.
    """

    orders: tuple[Report, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.orders)

    @property
    def failed(self) -> tuple[int, ...]:
        return tuple(k for k, r in enumerate(self.orders, start=1) if not r.passed)

    @property
    def seed(self) -> int:
        return self.orders[0].seed

    def __getitem__(self, order: int) -> Report:
        """The report of ``order`` (1: the backward, 2: the double backward)."""
        if not isinstance(order, int) or not 1 <= order <= len(self.orders):
            raise KeyError(f"orders are 1 to {len(self.orders)}, not {order!r}")
        return self.orders[order - 1]

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return format_orders(self)


_WHAT = {1: "the backward", 2: "the double backward"}  # what order k checks
_OF = {1: "the forward", 2: "the backward"}


def order_findings(order: int, report: Report) -> list[str]:
    """One line per thing wrong at ``order``: ``order 2: ∂/∂x of the backward is wrong at
    [2, 1]: …`` with both numbers, or the problem that stopped the check."""
    lines = [f"order {order}: problem: {p}" for p in report.problems]
    for r in report.inputs:
        if r.passed or not r.judged:
            continue
        where = f"∂/∂{r.name} of {_OF.get(order, 'the order below')}"
        failing = [e for e in r.worst if not e.passed]
        if failing:
            e = failing[0]
            lines.append(
                f"order {order}: {where} is wrong at {_index(e.index)}: {report.backward} "
                f"gives {e.analytic + 0.0:.12g}, numerical {e.numerical + 0.0:.12g} "
                f"(|difference| {_g(e.abs_error)} > tolerance {_g(e.tolerance)}; "
                f"{r.n_failed} of {r.n_checked} checked differ)"
            )
        for problem in r.problems:
            lines.append(f"order {order}: {where}: {problem}")
        if not failing and not r.problems:
            lines.append(f"order {order}: {where} was not compared")
    return lines


def format_orders(report: OrdersReport) -> str:
    """The findings of every order first (which order failed, where), then each order's report."""
    verdict = (
        "passed"
        if report.passed
        else "FAILED at order " + " and ".join(str(k) for k in report.failed)
    )
    calls = ", ".join(f"{r.backward} (order {k})" for k, r in enumerate(report.orders, start=1))
    lines = [f"double backward check {verdict}: {calls} of {report.orders[0].forward}"]
    for k, r in enumerate(report.orders, start=1):
        if r.passed:
            vs = f"{r.backward} vs. numerical derivatives of {r.forward}"
            lines.append(f"  order {k} passed: {vs}")
        else:
            lines.extend("  " + line for line in order_findings(k, r))
    if 1 in report.failed and 2 not in report.failed and len(report.orders) > 1:
        lines.append(
            "  note: order 2 is checked against the backward as written; it passes, so the "
            "double backward matches the wrong backward and must change with its fix"
        )
    for k, r in enumerate(report.orders, start=1):
        lines.append(f"order {k}, {_WHAT.get(k, '')}:")
        lines.extend("  " + line for line in format_report(r).splitlines())
    return "\n".join(lines)
