"""Notes from a Derivation: LaTeX that compiles with pdflatex, and Markdown with ``$$`` math.

Both formats are printed from one list of blocks (:func:`blocks`): headings, prose, and
math, where a math block is a list of rows ``lhs &= rhs && \\text{rule}`` shared verbatim by
the LaTeX ``align*`` environments and the Markdown ``$$\\begin{aligned} … \\end{aligned}$$``
blocks, so the Markdown shows exactly the LaTeX that compiled. The content is the one every
renderer shows (:func:`bnsym.render.sections`); symbols are written with
:func:`bnsym.render.display_name`.

Long expressions are broken across rows: a sum is packed term by term within a width budget
(an estimate of the typeset width, :func:`math_width`), and a product whose bracketed sum is
too long is written ``prefix \\biggl( … \\biggr)`` with the sum broken inside.

>>> from bnsym.symbolic import derive
>>> tex = to_latex(derive(2))
>>> tex.splitlines()[0]
'% Batch normalization, m = 2: train mode, biased variance (1/m), ε inside the root, symbolic ε'
>>> r"\\hat{x}_{1} &= \\frac{x_{1} - \\mu_{B}}{\\sqrt{\\epsilon + \\sigma_{B}^{2}}}" in tex
True

``python -m bnsym.notes DIRECTORY`` (re)writes the committed examples (:func:`refresh`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy as sp

from bnsym.render import describe, display_name, factored_jacobian, sections
from bnsym.symbolic import Derivation, Step, derive

__all__ = ["LatexError", "compile_pdf", "math_width", "refresh", "to_latex", "to_markdown"]

#: Width of a row of a display, in units of about one letter of 11pt math: A4 with 2.2 cm
#: margins leaves 471pt and a letter with its share of spacing is about 5.5pt. Kept below
#: that so the estimate can be off by a few letters without an overfull box.
WIDTH = 74
#: Up to this m the Jacobian is also printed entry by entry (m = 5 no longer fits a page).
MATRIX_MAX_M = 4

_PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage{amsmath,amssymb}
\usepackage[margin=2.2cm]{geometry}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5\baselineskip}
"""


# --- expressions --------------------------------------------------------------------------


def tex(expr: Any) -> str:
    """``sympy.latex`` of ``expr`` in the derivation's notation (x̂_i, μ_B, σ²_B, ∂ℓ/∂y_i).

    Terms keep the order of the derivation (``order="none"``: x_i − μ_B, not −μ_B + x_i), and
    a long numerator over a short denominator is written as a factor (\\frac{1}{4} (…)).

    >>> from bnsym.symbolic import Symbols
    >>> s = Symbols.of(2)
    >>> tex(s.dy[0] * s.gamma / s.var)
    '\\\\frac{\\\\gamma}{\\\\sigma_{B}^{2}} \\\\frac{\\\\partial \\\\ell}{\\\\partial y_{1}}'
    """
    expr = sp.sympify(expr)
    if expr.is_Mul and any(a.is_Rational for a in expr.args[1:]):
        # an unevaluated (x₁ + … + x_m)·1/m reads better with the number first
        numbers = [a for a in expr.args if a.is_Number]
        expr = sp.Mul(*numbers, *[a for a in expr.args if not a.is_Number], evaluate=False)
    names = {s: display_name(s.name, "latex") for s in expr.free_symbols if s.is_Symbol}
    return str(
        sp.latex(expr, order="none", long_frac_ratio=2, fold_frac_powers=True, symbol_names=names)
    )


_WIDE = {r"\quad": 2.0, r"\qquad": 4.0, r"\sum": 1.6, r"\cdot": 1.2, r"\ldots": 2.0, r"\to": 2}
_ZERO = {r"\left", r"\right", r"\biggl", r"\biggr", r"\big", r"\Big", r"\displaystyle"}
_ARG = {r"\hat", r"\mathbf", r"\mathrm", r"\text", r"\textbf", r"\operatorname"}


def math_width(latex: str) -> float:
    """Estimated typeset width of display math, in letters (see :data:`WIDTH`).

    A fraction is as wide as the wider of its parts, scripts are smaller, binary operators
    and relations carry their spacing. Conservative rather than exact.

    >>> math_width(r"\\frac{x_{1}}{4} + \\frac{x_{2}}{4}")
    6.2
    """
    return round(_width(latex, [0]), 2)


def _width(s: str, pos: list[int], stop: str = "") -> float:
    """Width of ``s`` from ``pos[0]`` up to the closing brace (``stop="}"``) or the end."""
    total = 0.0
    while pos[0] < len(s):
        c = s[pos[0]]
        pos[0] += 1
        if c == stop:
            break
        if c == "{":
            total += _width(s, pos, "}")
        elif c == "\\":
            hit = re.match(r"[A-Za-z]+|.", s[pos[0] :])
            name = "\\" + (hit.group(0) if hit else "")
            pos[0] += len(name) - 1
            if name == r"\frac":
                total += max(_group(s, pos), _group(s, pos)) + 0.4
            elif name == r"\sqrt":
                total += _group(s, pos) + 1.5
            elif name in _ARG:
                total += _group(s, pos)
            elif name in (r"\begin", r"\end"):
                _group(s, pos)
            elif name in _ZERO:
                pass
            elif name in (r"\,", r"\:", r"\;", r"\!", "\\\\"):
                total += 0.3
            elif name == "\\ ":
                total += 0.5
            else:
                total += _WIDE.get(name, 1.0)
        elif c in "^_":
            total += 0.7 * _group(s, pos)
        elif c in "+-=<>":
            total += 2.0
        elif c in "()[]|":
            total += 0.6
        elif c in ",.;:":
            total += 0.5
        elif c in " &":
            pass
        else:
            total += 1.0
    return total


def _group(s: str, pos: list[int]) -> float:
    """Width of the next argument: a braced group or a single token."""
    while pos[0] < len(s) and s[pos[0]] == " ":
        pos[0] += 1
    if pos[0] < len(s) and s[pos[0]] == "{":
        pos[0] += 1
        return _width(s, pos, "}")
    if pos[0] < len(s) and s[pos[0]] == "\\":
        hit = re.match(r"\\([A-Za-z]+|.)", s[pos[0] :])
        assert hit
        pos[0] += len(hit.group(0))
        return _WIDE.get(hit.group(0), 1.0)
    pos[0] += 1
    return 1.0


def break_lines(expr: Any, budget: float) -> list[str]:
    """``expr`` as LaTeX lines, each within ``budget`` letters where a sum allows a break.

    A sum is packed term by term (continuation lines start with their sign); a product with
    a long bracketed sum becomes ``prefix \\biggl( … \\biggr)``; anything else stays whole.

    >>> from bnsym.symbolic import Symbols
    >>> x = Symbols.of(4).x
    >>> break_lines(sum(x) / 4, 10)
    ['\\\\frac{x_{1}}{4} + \\\\frac{x_{2}}{4}', '+ \\\\frac{x_{3}}{4} + \\\\frac{x_{4}}{4}']
    """
    expr = sp.sympify(expr)
    whole = tex(expr)
    if math_width(whole) <= budget:
        return [whole]
    if expr.is_Add:
        return _pack(expr, budget, budget)
    if expr.is_Mul:
        sums = [f for f in expr.args if f.is_Add]
        if sums:
            inner = max(sums, key=lambda f: math_width(tex(f)))
            rest = sp.Mul(*[f for f in expr.args if f is not inner])
            prefix = "-" if rest == -1 else "" if rest == 1 else tex(rest)
            first = budget - math_width(prefix) - 1.5
            lines = _pack(inner, budget - 1.5, max(first, 8))
            lines[0] = f"{prefix} \\biggl( {lines[0]}".lstrip()
            lines[-1] += r" \biggr)"
            return lines
    return [whole]


def _pack(add: sp.Expr, budget: float, first: float) -> list[str]:
    """The terms of a sum, packed greedily into lines; each line but the first starts with
    its sign."""
    lines: list[str] = []
    current = ""
    for k, term in enumerate(add.args):  # the order sympy.latex prints with order="none"
        negative = term.could_extract_minus_sign()
        sign = "-" if negative else "" if k == 0 else "+"
        parts = break_lines(-term if negative else term, budget - 2)
        piece = f"{sign} {parts[0]}".lstrip()
        limit = first if not lines else budget
        if current and math_width(f"{current} {piece}") > limit:
            lines.append(current)
            current = ""
        current = f"{current} {piece}".lstrip()
        if len(parts) > 1:
            lines.append(current)
            lines += parts[1:-1]
            current = parts[-1]
    lines.append(current)
    return lines


# --- prose: Unicode sentences to LaTeX text with inline math -----------------------------

_MATH = {
    "ε": r"\epsilon ", "γ": r"\gamma ", "β": r"\beta ", "μ": r"\mu ", "σ": r"\sigma ",
    "Σ": r"\sum ", "∂": r"\partial ", "ℓ": r"\ell ", "·": r"\cdot ", "−": "-", "→": r"\to ",
    "×": r"\times ", "≥": r"\geq ", "≤": r"\leq ", "²": "^{2}", "³": "^{3}", "ᵢ": "_{i}",
    "ⱼ": "_{j}", "ᵀ": r"^{\top}", "𝟙": r"\mathbf{1}", "√": r"\surd ",
    **{chr(0x2080 + n): f"_{{{n}}}" for n in range(10)},
}  # fmt: skip
_OPS = {"=", "+", "−", "-", "→", ">", "<", "≥", "≤", "·", "×"}
_TEXT = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "–": "--", "’": "'", "…": r"\ldots{}", "✓": r"$\checkmark$", "✗": r"$\times$",
}  # fmt: skip


def _is_math(core: str, before: str, after: str) -> bool:
    """Whether a word (stripped of punctuation and brackets) is mathematics."""
    if not core:
        return False
    if core in _OPS or re.search(r"[^\x00-\x7f—–’…✓✗]|[=+/<>]|_[A-Za-z0-9]{1,2}\b", core):
        return not re.search(r"_[A-Za-z]{3,}", core)  # sum_dx_zero is a name, not maths
    if re.fullmatch(r"[A-Za-z]|\d+", core):
        return (core not in ("a", "A", "I") and not core.isdigit()) or bool({before, after} & _OPS)
    return False


def prose_parts(text: str) -> list[tuple[bool, str]]:
    """Split a Unicode sentence into (is_math, text) parts; maths is converted to LaTeX.

    >>> prose_parts("x_i feeds x̂_i, σ²_B and μ_B")
    [(True, 'x_{i}'), (False, ' feeds '), (True, '\\\\hat{x}_{i}'), (False, ', '), \
(True, '\\\\sigma ^{2}_{B}'), (False, ' and '), (True, '\\\\mu _{B}')]
    """
    words = re.split(r"(\s+)", text)
    cores = [w.strip("()[],;:.!?") for w in words]
    parts: list[tuple[bool, str]] = []
    run: list[str] = []  # words of the current piece of maths

    def close(trail: str = "") -> None:
        if run:
            text = "".join(run)
            body = text.rstrip()
            lead, end = "", text[len(body) :]
            while body.count("(") > body.count(")") and body.startswith("("):
                lead, body = lead + "(", body[1:]
            while body.count(")") > body.count("(") and body.endswith(")"):
                end, body = ")" + end, body[:-1]
            parts.extend([(False, lead), (True, _math_tex(body)), (False, end + trail)])
            run.clear()
        elif trail:
            parts.append((False, trail))

    for k in range(0, len(words), 2):
        word = words[k]
        space = words[k + 1] if k + 1 < len(words) else ""
        before = cores[k - 2] if k >= 2 else ""
        after = cores[k + 2] if k + 2 < len(words) else ""
        if _is_math(cores[k], before, after):
            hit = re.match(r"(.*?)([,;:!?]*|\.(?!\.)[,;:!?]*)\Z", word)
            assert hit
            body, punct = hit.groups()
            if body.endswith(".") and not body.endswith(".."):
                body, punct = body[:-1], "." + punct
            run.append(body)
            if punct or not space:
                close(punct + space)
            else:
                run.append(space)
        else:
            close()
            parts.append((False, word + space))
    close()
    merged: list[tuple[bool, str]] = []
    for is_math, piece in parts:
        if piece and merged and merged[-1][0] == is_math and not is_math:
            merged[-1] = (False, merged[-1][1] + piece)
        elif piece:
            merged.append((is_math, piece))
    return merged


def _math_tex(s: str) -> str:
    """Unicode maths (σ²_B, ∂ℓ/∂x̂_i, √(σ²+ε), x_1..x_m) as LaTeX."""
    s = re.sub(r"√\(([^()]*)\)", r"\\sqrt{\1}", s)
    s = re.sub(r"([A-Za-z])\u0302", r"\\hat{\1}", s)
    s = re.sub(r"_([A-Za-z0-9]+)", r"_{\1}", s)
    s = s.replace("..", r"\ldots ")
    out = "".join(_MATH.get(c, c if c.isascii() else "?") for c in s)
    return re.sub(r" +", " ", out).strip()


def _text_tex(s: str) -> str:
    """Text for pdflatex: specials escaped, any other non-ASCII character shown as '?'."""
    return "".join(_TEXT.get(c, c if c.isascii() else "?") for c in s)


def _text_tex_unicode(s: str) -> str:
    """Text for MathJax's \\text{}: specials escaped, Unicode kept (MathJax shows it)."""
    return "".join(_TEXT.get(c, c) if c not in "—✓✗" else c for c in s)


def prose_tex(text: str) -> str:
    """A Unicode sentence as LaTeX text with ``$…$`` maths (pdflatex-safe).

    >>> prose_tex("The ∂ℓ/∂σ²_B term vanishes because Σᵢ(xᵢ − μ_B) = 0.")
    'The $\\\\partial \\\\ell /\\\\partial \\\\sigma ^{2}_{B}$ term vanishes because \
$\\\\sum _{i}(x_{i} - \\\\mu _{B}) = 0$.'
    """
    return "".join(f"${p}$" if m else _text_tex(p) for m, p in prose_parts(text))


def prose_math(text: str) -> str:
    """A Unicode sentence for use inside maths: ``\\text{…}`` around the words."""
    return "".join(p if m else r"\text{" + _text_tex(p) + "}" for m, p in prose_parts(text))


# --- blocks: what the notes show, shared by every format -----------------------------------


def join_rows(rows: tuple[str, ...]) -> str:
    r"""The rows of a math block joined by ``\``, with a little air between equations
    (continuation rows, which start with ``&\quad``, follow their equation closely)."""
    out = rows[0]
    for row in rows[1:]:
        out += (" \\\\\n" if row.startswith(r"&\quad") else " \\\\[3pt]\n") + row
    return out


@dataclass(frozen=True)
class Block:
    """One piece of the notes: a heading, prose (Unicode, with its LaTeX), or math rows."""

    kind: str  # "heading", "prose" or "math"
    text: str = ""
    latex: str = ""
    rows: tuple[str, ...] = ()


def _heading(title: str) -> Block:
    return Block("heading", title, prose_tex(title))


def _prose(text: str, latex: str | None = None) -> Block:
    return Block("prose", text, prose_tex(text) if latex is None else latex)


def _step_rows(steps: tuple[Step, ...], with_rules: bool = True) -> tuple[str, ...]:
    """``lhs &= rhs && \\text{rule}`` rows, the rhs broken to fit beside the widest lhs and
    rule of the block (align* lines its columns up across rows)."""
    lhs = [tex(st.lhs) for st in steps]
    rules = [prose_math(f"({st.rule})") if with_rules and st.rule else "" for st in steps]
    rule_width = max((math_width(r) for r in rules), default=0)
    budget = WIDTH - max(math_width(t) for t in lhs) - 3 - (rule_width + 3 if rule_width else 0)
    rows = []
    for st, left, rule in zip(steps, lhs, rules, strict=True):
        lines = break_lines(st.rhs, max(budget, 20))
        first = f"{left} &= {lines[0]}" + (f" &&{rule}" if rule else "")
        rows.append(first)
        rows += [r"&\quad {}" + line for line in lines[1:]]
    return tuple(rows)


def _jacobian_rows(d: Derivation) -> tuple[str, ...] | None:
    """``J = c·(matrix)`` with the factor common to every entry taken out; None if too wide."""
    factor, inner = factored_jacobian(d)
    cells = [[tex(inner[i, j]) for j in range(inner.cols)] for i in range(inner.rows)]
    cols = [max(math_width(cells[i][j]) for i in range(inner.rows)) for j in range(inner.cols)]
    prefix = "" if factor == 1 else tex(factor)
    if math_width(prefix) + sum(cols) + 2.5 * len(cols) + 4 > WIDTH:
        return None
    body = r" \\ ".join(" & ".join(row) for row in cells)
    return (rf"J &= {prefix} \begin{{pmatrix}} {body} \end{{pmatrix}}",)


def _example_blocks(d: Derivation, steps: tuple[Step, ...]) -> Iterator[Block]:
    o = d.options
    assert o.values is not None
    text, latex = [], []
    for f, row in enumerate(o.values):
        label = f"feature {f + 1}: " if len(o.values) > 1 else ""
        vec = ", ".join(str(v) for v in row)
        vec_tex = ", ".join(tex(v) for v in row)
        part, part_tex = f"{label}x = ({vec})", f"{label}$x = ({vec_tex})$"
        if o.dy is not None:
            dy = ", ".join(str(v) for v in o.dy[f])
            part += f", ∂ℓ/∂y = ({dy})"
            part_tex += (
                r", $\partial\ell/\partial y = (" + ", ".join(tex(v) for v in o.dy[f]) + ")$"
            )
        text.append(part)
        latex.append(part_tex)
    grads = "" if o.dy is not None else " (∂ℓ/∂y_i left symbolic)"
    grads_tex = "" if o.dy is not None else r" ($\partial\ell/\partial y_i$ left symbolic)"
    yield _prose(
        "With " + "; ".join(text) + grads + ", in exact arithmetic:",
        "With " + "; ".join(latex) + grads_tex + ", in exact arithmetic:",
    )
    yield Block("math", rows=_step_rows(steps))


def _options_text(d: Derivation) -> str:
    o = d.options
    text = f"m = {d.m}; {describe(d)}"
    if o.affine:
        text += "; affine: y_i = γ·x̂_i + β"
    return text + "."


def blocks(d: Derivation) -> Iterator[Block]:
    """The notes as blocks, in order: the variant, then each section of the derivation."""
    yield _prose("Variant: " + _options_text(d))
    for sec in sections(d):
        yield _heading(sec.title)
        if sec.key == "example":
            yield from _example_blocks(d, sec.steps)
            continue
        if sec.intro:
            yield _prose(sec.intro)
        if sec.key == "identities":
            for st in sec.steps:
                ok = d.verified.get(st.rule, False)
                mark = "✓ proved" if ok else "✗ NOT proved"
                yield _prose(f"{mark}: {st.note}." if st.note else f"{mark}.")
                yield Block("math", rows=_step_rows((st,), with_rules=False))
        elif sec.steps:
            yield Block("math", rows=_step_rows(sec.steps, with_rules=sec.key != "explicit"))
        if sec.key == "jacobian" and d.jacobian is not None and d.m <= MATRIX_MAX_M:
            rows = _jacobian_rows(d)
            if rows:
                yield _prose(f"Entry by entry, for m = {d.m}:")
                yield Block("math", rows=rows)
        if sec.outro:
            yield _prose(sec.outro)
    yield _heading("Proofs")
    for name, ok in d.verified.items():
        mark = "✓" if ok else "✗ FAILED"
        method = d.proof_methods[name]
        code = name.replace("_", r"\_")
        yield _prose(
            f"{mark} `{name}`: {method}.",
            f"{_text_tex(mark)} \\texttt{{{code}}}: {prose_tex(method)}.",
        )


# --- LaTeX and Markdown --------------------------------------------------------------------


def _title(d: Derivation) -> str:
    return f"Batch normalization, m = {d.m}: {describe(d)}"


def to_latex(
    d: Derivation, standalone: bool = False, command: str | None = None, notebook: bool = False
) -> str:
    """The derivation as LaTeX.

    Args:
        d: the derivation.
        standalone: a complete ``article`` (title, the command, amsmath/amssymb, geometry)
            that compiles as it is with pdflatex; otherwise a fragment of ``align*`` blocks
            and short prose to ``\\input`` into any document that loads amsmath.
        command: the command line that made the file, shown in it.
        notebook: for Jupyter's ``_repr_latex_``: ``$$\\begin{aligned}…\\end{aligned}$$``
            blocks only, which MathJax renders.
    """
    if notebook:
        return _notebook(d)
    out = [f"% {_title(d)}"]
    if command:
        out.append(f"% command: {command}")
    # Within a group, so that neither setting leaks into the document that \inputs this.
    out.append(r"\begingroup\allowdisplaybreaks")
    out.append(r"\providecommand{\checkmark}{\ensuremath{\surd}}")
    for b in blocks(d):
        if b.kind == "heading":
            out += ["", rf"\section*{{{b.latex}}}"]
        elif b.kind == "prose":
            out += ["", b.latex]
        else:
            out += [r"\begin{align*}", join_rows(b.rows), r"\end{align*}"]
    fragment = "\n".join([*out, r"\endgroup"]) + "\n"
    if not standalone:
        return fragment
    made = ""
    if command:
        made = (
            r"{\raggedright\sloppy Made by \texttt{"
            + re.sub(r"([,;/=])", r"\1\\allowbreak{}", _text_tex(command))
            + r"} with bnsym.\par}"
            + "\n"
        )
    title = prose_tex(f"Batch normalization for a batch of m = {d.m}")
    return (
        _PREAMBLE
        + "\\begin{document}\n"
        + rf"\begin{{center}}{{\LARGE {title}\par}}\medskip{{\large {prose_tex(describe(d))}\par}}"
        + "\\end{center}\n"
        + made
        + fragment
        + "\\end{document}\n"
    )


def _notebook(d: Derivation) -> str:
    """MathJax-only: one ``$$\\begin{aligned}…\\end{aligned}$$`` per section."""
    out = [r"$$\begin{aligned}&\textbf{" + _text_tex(f"Batch normalization, m = {d.m}") + "}"]
    out[0] += r" && \text{" + _text_tex_unicode(describe(d)) + r"}\end{aligned}$$"
    rows: list[str] = []
    for b in blocks(d):
        if b.kind == "heading":
            if rows:
                out.append(r"$$\begin{aligned}" + join_rows(tuple(rows)) + r"\end{aligned}$$")
            rows = [r"&\textbf{" + _text_tex_unicode(b.text) + "}"]
        elif b.kind == "math":
            rows += b.rows
    out.append(r"$$\begin{aligned}" + join_rows(tuple(rows)) + r"\end{aligned}$$")
    return "\n".join(out) + "\n"


def to_markdown(d: Derivation, command: str | None = None) -> str:
    """The derivation as Markdown: headings, prose, and ``$$ … $$`` display maths (the same
    rows as the LaTeX notes, in ``aligned``) that GitHub, Jupyter and Obsidian render.

    >>> from bnsym.symbolic import derive
    >>> print(to_markdown(derive(2)).splitlines()[0])
    # Batch normalization, m = 2
    """
    out = [f"# Batch normalization, m = {d.m}", "", f"*{describe(d)}*"]
    if command:
        out += ["", f"Made by `{command}` with bnsym."]
    for b in blocks(d):
        if b.kind == "heading":
            out += ["", f"## {b.text}"]
        elif b.kind == "prose":
            out += ["", b.text]
        else:
            out += ["", "$$", r"\begin{aligned}", join_rows(b.rows), r"\end{aligned}", "$$"]
    return "\n".join(out) + "\n"


# --- PDF -----------------------------------------------------------------------------------


class LatexError(Exception):
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


# --- the committed examples ----------------------------------------------------------------

#: The batch sizes of the committed notes in ``derivations/``.
REFRESH_M = (2, 3, 4)


def refresh(directory: str | os.PathLike[str]) -> list[Path]:
    """(Re)write the committed examples into ``directory``: ``bn_m{2,3,4}.tex`` (standalone)
    and ``.md``, and ``bn_m4.py`` when :mod:`bnsym.codegen` is available. Deterministic:
    the same files, byte for byte, on every run. Returns the paths written.
    """
    from bnsym._io import atomic_write

    out = Path(directory)
    written = []
    for m in REFRESH_M:
        d = derive(m)
        tex_cmd = f"bnsym derive --m {m} --standalone -o derivations/bn_m{m}.tex"
        md_cmd = f"bnsym derive --m {m} -o derivations/bn_m{m}.md"
        written.append(atomic_write(out / f"bn_m{m}.tex", to_latex(d, True, command=tex_cmd)))
        written.append(atomic_write(out / f"bn_m{m}.md", to_markdown(d, command=md_cmd)))
    try:
        from bnsym import codegen
    except ImportError:  # the code generator is optional here: notes do not need it
        codegen = None  # type: ignore[assignment]
    source = getattr(getattr(codegen, "generate", lambda m: None)(4), "source", None)
    if isinstance(source, str):
        written.append(atomic_write(out / "bn_m4.py", source))
    return written


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--refresh"]
    if len(args) != 1:
        sys.exit("usage: python -m bnsym.notes [--refresh] DIRECTORY")
    for path in refresh(args[0]):
        print(path)
