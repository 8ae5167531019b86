"""The check of several compositions of modes: one :class:`~bnsym.gradcheck.report.Report` per
word (the jvp, the vjp, the jvp of the vjp, ...), read as one report that leads with what failed.

>>> from bnsym.gradcheck.report import Report
>>> jvp = Report(True, seed=0, mode="probe", inputs=(), word=("fwd",))
>>> vjp = Report(False, seed=0, mode="probe", inputs=(), problems=("…",), word=("rev",))
>>> report = ModesReport((jvp, vjp))
>>> report.passed, report.failed, report["fwd"] is jvp
(False, (('rev',),), True)
>>> print(str(report).splitlines()[0])
modes check FAILED in reverse mode, order 1: jvp, vjp of forward
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bnsym.gradcheck import words
from bnsym.gradcheck.report import Report, format_report, word_findings

__all__ = ["ModesReport"]


@dataclass(frozen=True)
class ModesReport:
    """The checks of every composition of modes asked for, shorter words first.

    checks: one :class:`Report` per word (``report.word``), e.g. the jvp, the vjp, then the four
        compositions of order 2.
    notes: the compositions asked for that could not be checked, and why.
    passed: every composition passed. failed: the words that failed, outer first, e.g.
        ``(("fwd", "fwd"),)`` for the jvp of the jvp.
    ``report["fwd", "rev"]`` (or ``report["fwd,rev"]``) is the report of the jvp of the vjp;
    ``str(report)`` starts with what failed, by mode and order (``forward over forward mode,
    order 2: the jvp of the jvp, along a random tangent of x, is wrong: …``).
    """

    checks: tuple[Report, ...]
    notes: tuple[str, ...] = ()  # compositions asked for and not checked, and why

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.checks)

    @property
    def failed(self) -> tuple[words.Word, ...]:
        return tuple(r.word for r in self.checks if not r.passed)

    @property
    def seed(self) -> int:
        return self.checks[0].seed

    def __getitem__(self, word: Any) -> Report:
        """The report of ``word``: a tuple of modes, outer first, or its spelling
        ``"fwd,rev"``."""
        key = tuple(word.split(",")) if isinstance(word, str) else tuple(word)
        for r in self.checks:
            if r.word == key:
                return r
        raise KeyError(f"no check of {word!r}; checked: {[','.join(r.word) for r in self.checks]}")

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return format_modes(self)


def format_modes(report: ModesReport) -> str:
    """What failed, by mode and order, first; then what passed; then each check's report."""
    first = report.checks[0]
    verdict = (
        "passed"
        if report.passed
        else "FAILED in " + " and ".join(words.title(w) for w in report.failed)
    )
    checked = ", ".join(words.name(r.word).removeprefix("the ") for r in report.checks)
    lines = [f"modes check {verdict}: {checked} of {first.forward}"]
    for r in report.checks:
        if not r.passed:
            lines.extend("  " + line for line in word_findings(r))
    for r in report.checks:
        if r.passed:
            lines.append(
                f"  {words.title(r.word)} passed: {words.name(r.word)}, {r.backward} vs. "
                f"numerical derivatives of {r.forward}"
            )
    for note in report.notes:
        lines.append(f"  note: {note}")
    for r in report.checks:
        lines.append(f"{words.title(r.word)} ({words.name(r.word)}):")
        lines.extend("  " + line for line in format_report(r).splitlines())
    return "\n".join(lines)
