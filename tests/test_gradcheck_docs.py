"""docs/gradcheck.md shows reports as the checker prints them: its Python examples are run
here and their output compared with the text shown under them, character for character."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from bnsym.gradcheck.check import GradientCheckError
from bnsym.gradcheck.pytest_plugin import GradCheck

DOC = Path(__file__).resolve().parents[1] / "docs" / "gradcheck.md"


def _blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the page, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _after(marker: str) -> tuple[str, str]:
    """The Python block holding ``marker`` and the block shown right after it."""
    blocks = _blocks()
    k = next(k for k, (lang, text) in enumerate(blocks) if lang == "python" and marker in text)
    return blocks[k][1], blocks[k + 1][1]


def test_the_diagnosis_example_prints_the_report_shown():
    code, shown = _after("forgot - dx_hat.mean(axis=0)")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    assert printed.getvalue() == shown
    assert "your ∂ℓ/∂x lacks the −mean(∂ℓ/∂y) term" in shown


def test_the_pytest_example_fails_with_the_report_shown():
    code, shown = _after("dx 0.1% too large")
    namespace: dict[str, object] = {"__name__": "test_layers"}
    exec(compile(code, str(DOC), "exec"), namespace)
    with pytest.raises(GradientCheckError) as info:
        namespace["test_batchnorm"](GradCheck({}))  # type: ignore[operator]
    first, *rest = str(info.value).splitlines()
    # pytest's way of showing the exception: its type, then every line under an "E"
    expected = [f"E       bnsym.gradcheck.check.GradientCheckError: {first}"]
    expected += [f"E       {line}" for line in rest]
    assert shown.splitlines() == expected
