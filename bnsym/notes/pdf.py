"""The notes as a PDF: the standalone LaTeX document compiled by pdflatex.

pdflatex is a tool of the machine, not a Python dependency: when it is missing,
:class:`LatexError` says how to install it (``apt-get install texlive-latex-base``).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnsym.errors import BnsymError
from bnsym.notes import higher
from bnsym.notes.latex import to_latex

if TYPE_CHECKING:  # pragma: no cover
    from bnsym.derivation import Derivation

__all__ = ["LatexError", "compile_pdf", "to_pdf"]


def to_pdf(
    d: Derivation, command: str | None = None, higher_order: Any = None, modes: Any = None
) -> bytes:
    """The standalone notes (with the sections of order 2 or 3 when ``higher_order`` is
    given, as :func:`bnsym.proofs.higher.derive_higher` returns them, and those of forward
    mode when ``modes`` is, as :func:`bnsym.proofs.modes.derive_modes` returns them) compiled
    by pdflatex (see :func:`compile_pdf`)."""
    source = to_latex(d, standalone=True, command=command)
    if higher_order is not None:
        source = higher.with_latex(source, higher_order, standalone=True)
    if modes is not None:
        from bnsym.notes.modes import with_latex

        source = with_latex(source, modes, standalone=True)
    return compile_pdf(source)


class LatexError(BnsymError):
    """pdflatex is missing or failed; the message is one sentence for the user."""


def compile_pdf(tex_source: str, timeout: float = 60) -> bytes:
    """Compile a standalone LaTeX document with pdflatex and return the PDF's bytes.

    Runs ``pdflatex -halt-on-error -interaction=nonstopmode`` in a temporary directory (a
    second time if the log asks for a rerun). Raises LatexError with one sentence: how to
    install pdflatex when it is missing, or the first error line of the log.
    """
    with tempfile.TemporaryDirectory(prefix="bnsym-latex-") as tmp:
        source = Path(tmp, "notes.tex")
        source.write_text(tex_source, encoding="utf-8")
        for _ in range(2):
            log = _run_pdflatex(source, timeout)
            if "Rerun to get" not in log:
                break
        return Path(tmp, "notes.pdf").read_bytes()


def _run_pdflatex(source: Path, timeout: float) -> str:
    command = ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", source.name]
    try:
        done = subprocess.run(
            command, cwd=source.parent, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise LatexError(
            "pdflatex is not installed; install it with 'apt-get install texlive-latex-base' "
            "(Debian/Ubuntu) or any TeX Live distribution, or write .tex instead."
        ) from None
    except subprocess.TimeoutExpired:
        raise LatexError(f"pdflatex did not finish within {timeout:g} s.") from None
    log_path = source.with_suffix(".log")
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if done.returncode != 0 or not source.with_suffix(".pdf").exists():
        first = next((line for line in log.splitlines() if line.startswith("!")), "")
        detail = first.lstrip("! ").strip() or f"exit status {done.returncode}"
        raise LatexError(f"pdflatex failed: {detail}")
    return log
