"""Notes from a Derivation: LaTeX that compiles with pdflatex, and Markdown with ``$$`` math.

Both formats are printed from one list of blocks (:func:`blocks`): headings, prose, and
math, where a math block is a list of rows ``lhs &= rhs && \\text{rule}`` shared verbatim by
the LaTeX ``align*`` environments and the Markdown ``$$\\begin{aligned} … \\end{aligned}$$``
blocks, so the Markdown shows exactly the LaTeX that compiled. The content is the one every
renderer shows (:func:`bnsym.notes.text.sections`); expressions are printed by
:mod:`bnsym.notes.texexpr`, sentences by :mod:`bnsym.notes.prose`.

Long expressions are broken across rows within a width budget: :data:`WIDTH` for the
standalone document (A4, 11pt), :data:`FRAGMENT_WIDTH` for the fragment and the Markdown,
which must fit the 345pt text of a plain ``\\documentclass{article}``.

>>> from bnsym.derivation import derive
>>> tex = to_latex(derive(2))
>>> tex.splitlines()[0]
'% Batch normalization, m = 2: train mode, biased variance (1/m), ε inside the root, symbolic ε'
>>> r"\\hat{x}_{1} &= \\frac{x_{1} - \\mu_{B}}{\\sqrt{\\sigma_{B}^{2} + \\epsilon}}" in tex
True

``python -m bnsym.notes.latex DIRECTORY`` (re)writes the committed examples (:func:`refresh`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from bnsym.core.graph import Step
from bnsym.limits import MAX_TEX_ROW_LETTERS, LimitError
from bnsym.notes.decimals import TABLE_DIGITS, approx_expr
from bnsym.notes.escape import command_text, latex_comment, latex_text, markdown_code
from bnsym.notes.prose import prose_math, prose_tex, text_tex, text_tex_unicode
from bnsym.notes.texexpr import break_lines, math_width, number_text, tex
from bnsym.notes.text import (
    describe,
    factored_jacobian,
    param_steps,
    proof_reason,
    running_source,
    sections,
)

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["math_width", "to_latex", "to_markdown"]

#: Width of a row of a display in the standalone document, in letters of 11pt math: A4 with
#: 2.2 cm margins leaves 471pt and a letter of indexed maths with its spacing is about 6.5pt. Kept
#: below that so the estimate can be off by a few letters without an overfull box.
WIDTH = 68
#: The same for the fragment and the Markdown: a plain ``article`` (10pt) leaves 345pt, and a
#: letter of 10pt maths about 6pt.
FRAGMENT_WIDTH = 54
#: Up to this m the Jacobian is also printed entry by entry (m = 5 no longer fits a page).
MATRIX_MAX_M = 4
#: Digits of the decimal approximation shown beside an irrational result (≈ −1.41421).
APPROX_DIGITS = 6

_PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage{amsmath,amssymb}
\usepackage[margin=2.2cm]{geometry}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5\baselineskip}
"""


# --- blocks: what the notes show, shared by every format -----------------------------------


def join_rows(rows: tuple[str, ...]) -> str:
    r"""The rows of a math block joined by ``\\``, with a little air between equations
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


def _step_rows(
    steps: tuple[Step, ...] | list[Step],
    width: float,
    rules: list[str] | None = None,
    decimals: bool = False,
) -> tuple[str, ...]:
    """``lhs &= rhs && \\text{(rule)}`` rows, the rhs broken to fit beside the widest lhs.

    ``rules`` overrides the steps' own rules ("" for none). align* lines its columns up
    across rows, so a rule column costs every row its width: the rules stay in a column of
    their own only when no row has to break for it. Otherwise each rule follows its
    equation, on the same line when it fits, else on a line of its own.
    """
    if rules is None:
        rules = [st.rule for st in steps]
    lhs = [tex(st.lhs, decimals) for st in steps]
    labels = [prose_math(f"({r})") if r else "" for r in rules]
    left = max(math_width(t) for t in lhs) + 3
    column = max((math_width(r) for r in labels), default=0)
    in_column = [break_lines(st.rhs, max(width - left - column - 3, 20), decimals) for st in steps]
    if not column or all(len(lines) == 1 for lines in in_column):
        return _rows(lhs, in_column, [f" &&{r}" if r else "" for r in labels])
    rows: list[str] = []
    for st, lhs_tex, label in zip(steps, lhs, labels, strict=True):
        lines = break_lines(st.rhs, max(width - left, 20), decimals)
        if label and math_width(lines[-1]) + math_width(label) + 3 <= width - left:
            lines[-1] += r" \qquad " + label
        elif label:
            lines.append(label)
        rows += _rows([lhs_tex], [lines], [""])
    return tuple(rows)


def _rows(lhs: list[str], rhs: list[list[str]], ends: list[str]) -> tuple[str, ...]:
    rows = []
    for left, lines, end in zip(lhs, rhs, ends, strict=True):
        rows.append(f"{left} &= {lines[0]}{end}")
        rows += [r"&\quad {}" + line for line in lines[1:]]
    return tuple(rows)


def _jacobian_rows(d: Derivation, width: float) -> tuple[str, ...] | None:
    """``J = c·(matrix)`` with the factor common to every entry taken out; None if too wide."""
    factor, inner = factored_jacobian(d)
    cells = [[tex(inner[i, j]) for j in range(inner.cols)] for i in range(inner.rows)]
    cols = [max(math_width(cells[i][j]) for i in range(inner.rows)) for j in range(inner.cols)]
    prefix = "" if factor == 1 else tex(factor)
    if math_width(prefix) + sum(cols) + 2.5 * len(cols) + 4 > width:
        return None
    body = r" \\ ".join(" & ".join(row) for row in cells)
    return (rf"J &= {prefix} \begin{{pmatrix}} {body} \end{{pmatrix}}",)


def _approx(value: sp.Expr) -> sp.Expr | None:
    """A decimal approximation of a number that is not an integer nor written as a decimal
    already (√2 -> 1.41421, 11/4 -> 2.75), else None."""
    return approx_expr(value, APPROX_DIGITS)


def _vector(values: tuple[sp.Expr, ...]) -> str:
    return "(" + ", ".join(number_text(v) for v in values) + ")"


def _example_blocks(d: Derivation, width: float) -> Iterator[Block]:
    """One paragraph and one block per feature: its inputs, then every result, exactly,
    with a decimal approximation beside each irrational one."""
    o, s = d.options, d.symbols
    if o.values is None:
        raise ValueError("a worked example needs values (derive(..., values=...))")
    several = len(o.values) > 1
    if o.dy is None:
        yield _prose("∂ℓ/∂y_i is left symbolic; every result is exact.")
    else:
        yield _prose("Every result is exact.")
    for f, feat in enumerate(d.features):
        text = f"Feature {f + 1}: " if several else "Input: "
        latex = text + f"$x = {_vector(o.values[f])}$"
        text += f"x = {_vector(o.values[f])}"
        if o.dy is not None:
            text += f", ∂ℓ/∂y = {_vector(o.dy[f])}"
            latex += rf", $\partial \ell /\partial y = {_vector(o.dy[f])}$"
        for name, tex_name, given in (
            ("γ", r"\gamma", o.gamma),
            ("β", r"\beta", o.beta),
            ("μ_run", r"\mu_{\mathrm{run}}", o.running_mean),
            ("σ²_run", r"\sigma_{\mathrm{run}}^{2}", o.running_var),
        ):
            if given is not None:
                shown = _vector(given[f]) if len(given[f]) > 1 else number_text(given[f][0])
                text += f", {name} = {shown}"
                latex += f", ${tex_name} = {shown}$"
        if f == len(d.features) - 1:  # eval mode's running statistics, where from
            source = running_source(d)
            text, latex = text + source, latex + prose_tex(source)
        yield _prose(text + ".", latex + ".")
        steps: list[Step] = []
        rules: list[str] = []
        if o.mode == "train" and s.layer.centred:  # eval mode: running statistics, constants
            steps += [Step(s.mu, feat["mean"]), Step(s.var, feat["var"])]
            rules += ["mean", "variance"]
        elif o.mode == "train":
            steps += [Step(s.var, feat["var"])]
            rules += ["mean square"]
        pairs = [(s.x_hat, feat["x_hat"]), (s.y, feat["y"]), (s.dx, feat["dx"])]
        for symbols, values in pairs:
            steps += [Step(a, b) for a, b in zip(symbols, values, strict=True)]
        steps += param_steps(d, feat)
        rules += [""] * (len(steps) - len(rules))
        rows = list(_step_rows(steps, width, rules, decimals=True))
        yield Block("math", rows=tuple(_with_approx(rows, steps)))
        table = _table_block(d, f, width)
        if table is not None:
            yield _prose(f"In decimals ({TABLE_DIGITS} significant digits):")
            yield table


def _table_block(d: Derivation, feature: int, width: float) -> Block | None:
    """The feature's table (:mod:`bnsym.notes.table`): ``rows`` are LaTeX ``tabular`` rows,
    ``text`` the Markdown table. Columns are dropped from the right (∂ℓ/∂x_i, ∂ℓ/∂y_i, …)
    while the table is wider than ``width``; None if not even three fit."""
    from bnsym.notes.table import example_table

    table = example_table(d, feature)
    heads = [h[2] for h in table.headers]
    cells = [[tex(c, decimals=True) for c in row] for row in table.rows]
    n = len(heads)
    while n >= 3:
        widths = [max(math_width(t) for t in [heads[k], *(r[k] for r in cells)]) for k in range(n)]
        if sum(widths) + 1.6 * n <= width:
            break
        n -= 1
    else:
        return None
    rows = [" & ".join(f"${t}$" for t in heads[:n])]
    rows += [" & ".join(f"${t}$" for t in row[:n]) for row in cells]
    markdown = ["| " + " | ".join(f"${t}$" for t in heads[:n]) + " |"]
    markdown.append("|" + "---:|" * n)
    markdown += ["| " + " | ".join(f"${t}$" for t in row[:n]) + " |" for row in cells]
    return Block("table", "\n".join(markdown), rows=tuple(rows))


def _with_approx(rows: list[str], steps: list[Step]) -> Iterator[str]:
    """The rows, each irrational result followed by ``\\approx`` its decimal value (on the
    equation's last line, before its rule)."""
    groups: list[list[str]] = []
    for row in rows:
        if row.startswith(r"&\quad") and groups:
            groups[-1].append(row)
        else:
            groups.append([row])
    for group, st in zip(groups, steps, strict=True):
        approx = _approx(st.rhs)
        if approx is not None:
            last = group[-1]
            marks = (last.find(" &&"), last.find(r" \qquad \text{("))
            cut = min((i for i in marks if i >= 0), default=len(last))
            group[-1] = f"{last[:cut]} \\approx {tex(approx)}{last[cut:]}"
        yield from group


def _graph_blocks(d: Derivation, width: float) -> Iterator[Block]:
    """The computation graph (:mod:`bnsym.notes.picture`): a ``picture`` for LaTeX, a Mermaid
    flowchart for Markdown (every element's nodes up to m = 4), then each arrow's local
    derivative and what the backward pass carries along it."""
    from bnsym.notes.picture import FULL_MAX_M, graph_picture, latex_picture, mermaid
    from bnsym.notes.text import GRAPH_INTRO, GRAPH_TITLE, expr_text

    pic = graph_picture(d)
    yield _heading(GRAPH_TITLE)
    yield _prose(GRAPH_INTRO)
    chart = mermaid(graph_picture(d, generic=d.m > FULL_MAX_M), expr_text)
    yield Block("picture", "\n".join(["```mermaid", *chart, "```"]), latex_picture(pic, tex))
    rows = []
    for e in pic.edges:
        row = rf"\frac{{\partial {tex(e.child)}}}{{\partial {tex(e.parent)}}} &= {tex(e.local)}"
        rows.append(row + (rf" \qquad {prose_math(f'({e.note})')}" if e.note else ""))
    yield Block("math", rows=tuple(rows))
    yield _prose("Backward, arrow by arrow; a node's adjoint sums what its arrows carry back:")
    back = [rf"{tex(e.adjoint)} &\mathrel{{+}}= {tex(e.back)}" for e in pic.edges if e.local != 0]
    yield Block("math", rows=tuple(back))


def _variant_text(d: Derivation) -> str:
    return f"Variant: m = {d.m}; {_subtitle(d)}."


def blocks(d: Derivation, width: float = WIDTH, variant: bool = True) -> Iterator[Block]:
    """The notes as blocks, in order: the variant (unless a title says it already), each
    section of the derivation, then the proofs not stated in a section."""
    if variant:
        yield _prose(_variant_text(d))
    stated = ""  # prose already shown, so that the Proofs section does not repeat it
    for sec in sections(d):
        yield _heading(sec.title)
        if sec.key == "example":
            yield from _example_blocks(d, width)
            for line in sec.outro.splitlines():  # what lecture notes get wrong, put right
                yield _prose(line)
            continue
        if sec.intro:
            yield _prose(sec.intro)
            stated += sec.intro
        if sec.key == "identities":
            for st in sec.steps:
                ok = d.verified.get(st.rule, False)
                mark = "✓ proved" if ok else "✗ NOT proved"
                yield _prose(f"{mark}: {st.note}." if st.note else f"{mark}.")
                yield Block("math", rows=_step_rows((st,), width, [""]))
        elif sec.key == "closed_form" and sec.steps:
            # the formula for every i, then its instances: one label, not m + 1
            rules = ["any i", *(f"i = {k}" for k in range(1, len(sec.steps)))]
            yield Block("math", rows=_step_rows(sec.steps, width, rules))
        elif sec.steps:
            plain = [""] * len(sec.steps) if sec.key == "explicit" else None
            yield Block("math", rows=_step_rows(sec.steps, width, plain))
        if sec.key == "jacobian" and d.jacobian is not None and d.m <= MATRIX_MAX_M:
            rows = _jacobian_rows(d, width)
            if rows:
                yield _prose(f"Entry by entry, for m = {d.m}:")
                yield Block("math", rows=rows)
        if sec.outro:
            yield _prose(sec.outro)
            stated += sec.outro
        if sec.key == "backward":
            yield from _graph_blocks(d, width)
    proofs = [(n, ok) for n, ok in d.verified.items() if d.proof_methods[n] not in stated]
    if proofs:
        yield _heading("Proofs")
    for name, ok in proofs:
        mark = "✓" if ok else "✗ FAILED"
        method = d.proof_methods[name]
        code = name.replace("_", r"\_")
        reason = proof_reason(d, name)
        if reason is None:
            yield _prose(
                f"{mark} `{name}`: {method}.",
                f"{text_tex(mark)} \\texttt{{{code}}}: {prose_tex(method)}.",
            )
        else:  # the mathematics first, how the machine checked it after
            yield _prose(
                f"{mark} `{name}`: {reason} Checked by machine: {method}.",
                f"{text_tex(mark)} \\texttt{{{code}}}: {prose_tex(reason)} "
                f"\\emph{{Checked by machine:}} {prose_tex(method)}.",
            )


def latex_lines(bs: Iterable[Block]) -> list[str]:
    """The blocks as LaTeX lines: ``\\section*`` headings, prose, pictures, tables and
    ``align*`` displays (rows checked by :func:`check_tex_rows`). Every LaTeX document of the
    notes and its appended sections (higher orders, forward mode) is written by this."""
    out: list[str] = []
    for b in bs:
        if b.kind == "heading":
            out += ["", rf"\section*{{{b.latex}}}"]
        elif b.kind in ("prose", "picture"):
            out += ["", b.latex]
        elif b.kind == "table":
            columns = "r" * len(b.rows[0].split(" & "))
            out += [
                r"\begin{center}\small\setlength{\tabcolsep}{4pt}",
                rf"\begin{{tabular}}{{{columns}}}",
                b.rows[0] + r" \\ \hline",
                *(row + r" \\" for row in b.rows[1:]),
                r"\end{tabular}\end{center}",
            ]
        else:
            check_tex_rows(b.rows)  # "Dimension too large" otherwise
            out += [r"\begin{align*}", join_rows(b.rows), r"\end{align*}"]
    return out


def markdown_lines(bs: Iterable[Block]) -> list[str]:
    """The blocks as Markdown lines: ``##`` headings, text, and ``$$\\begin{aligned}`` maths."""
    out: list[str] = []
    for b in bs:
        if b.kind == "heading":
            out += ["", f"## {b.text}"]
        elif b.kind in ("prose", "table", "picture"):
            out += ["", b.text]
        else:
            out += ["", "$$", r"\begin{aligned}", join_rows(b.rows), r"\end{aligned}", "$$"]
    return out


def check_tex_rows(rows: tuple[str, ...]) -> None:
    """LimitError if a row of display maths is too wide for TeX to measure."""
    widest = max((math_width(r) for r in rows), default=0.0)
    if widest > MAX_TEX_ROW_LETTERS:
        raise LimitError(
            f"the LaTeX would hold a row about {widest:.0f} letters wide, beyond what TeX can "
            f"measure (about {MAX_TEX_ROW_LETTERS} letters, 19 feet): the worked example's "
            "numbers are too long; give values with fewer digits, or use --format text or json."
        )


# --- LaTeX and Markdown --------------------------------------------------------------------


def _title(d: Derivation) -> str:
    return f"{d.symbols.layer.title}, m = {d.m}: {describe(d)}"


def _doc_title(d: Derivation) -> str:
    """The document's title: batch norm's "for a batch of m", the others' "for groups of m"."""
    return f"{d.symbols.layer.title} for {d.symbols.layer.of_m} of m = {d.m}"


def to_latex(
    d: Derivation, standalone: bool = False, command: str | None = None, notebook: bool = False
) -> str:
    """The derivation as LaTeX.

    Args:
        d: the derivation.
        standalone: a complete ``article`` (title, the command, amsmath/amssymb, geometry)
            that compiles as it is with pdflatex; otherwise a fragment of ``align*`` blocks
            and short prose to ``\\input`` into any document that loads amsmath (its rows
            fit the 345pt text of a plain ``article``).
        command: the command line that made the file, shown in it.
        notebook: for Jupyter's ``_repr_latex_``: ``$$\\begin{aligned}…\\end{aligned}$$``
            blocks only, which MathJax renders.
    """
    command = command_text(command)
    if notebook:
        return _notebook(d)
    out = [f"% {_title(d)}"]
    if command:
        out.append(f"% command: {latex_comment(command)}")
    # Within a group, so that no setting leaks into the document that \inputs this; \sloppy
    # because the proof sentences hold inline maths that cannot break (a 345pt column).
    out.append(r"\begingroup\allowdisplaybreaks\sloppy")
    out.append(r"\providecommand{\checkmark}{\ensuremath{\surd}}")
    width = WIDTH if standalone else FRAGMENT_WIDTH
    out += latex_lines(blocks(d, width, variant=not standalone))
    fragment = "\n".join([*out, r"\endgroup"]) + "\n"
    if not standalone:
        return fragment
    made = ""
    if command:
        made = (
            r"{\raggedright\sloppy Made by \texttt{"
            + re.sub(r"([,;/=])", r"\1\\allowbreak{}", latex_text(command))
            + r"} with bnsym.\par}"
            + "\n"
        )
    title = prose_tex(_doc_title(d))
    return (
        _PREAMBLE
        + "\\begin{document}\n"
        + rf"\begin{{center}}{{\LARGE {title}\par}}\medskip{{\large {prose_tex(_subtitle(d))}\par}}"
        + "\\end{center}\n"
        + made
        + fragment
        + "\\end{document}\n"
    )


def _subtitle(d: Derivation) -> str:
    """The variant, under the title: :func:`describe`, and the affine layer when there is one."""
    if not d.options.affine:
        return describe(d)
    s = d.symbols
    gamma = "γ" if s.shared else ("γ_i" if s.layer.params == "element" else "γ_c")
    beta = "" if not s.layer.beta else (" + β" if s.shared else f" + β{gamma[1:]}")
    return describe(d) + f"; affine: y_i = {gamma}·x̂_i{beta}"


def _notebook(d: Derivation) -> str:
    """MathJax-only: one ``$$\\begin{aligned}…\\end{aligned}$$`` per section, its prose (the
    ✓/✗ proof statements, the worked example's inputs) as ``\\text{}`` rows."""
    out = [r"$$\begin{aligned}&\textbf{" + text_tex_unicode(f"{d.symbols.layer.title}, m = {d.m}")]
    out[0] += r"} && \text{" + text_tex_unicode(_subtitle(d)) + r"}\end{aligned}$$"
    rows: list[str] = []
    for b in blocks(d, FRAGMENT_WIDTH, variant=False):
        if b.kind == "heading":
            if rows:
                out.append(r"$$\begin{aligned}" + join_rows(tuple(rows)) + r"\end{aligned}$$")
            rows = [r"&\textbf{" + text_tex_unicode(b.text) + "}"]
        elif b.kind == "prose" and (b.text[:1] in "✓✗" or b.text.startswith(("Input", "Feature"))):
            rows.append(r"&\text{" + text_tex_unicode(b.text) + "}")
        elif b.kind == "math":  # MathJax has no tabular: the table stays in the notes
            rows += b.rows
    out.append(r"$$\begin{aligned}" + join_rows(tuple(rows)) + r"\end{aligned}$$")
    return "\n".join(out) + "\n"


def to_markdown(d: Derivation, command: str | None = None) -> str:
    """The derivation as Markdown: headings, prose, and ``$$ … $$`` display maths (the same
    rows as the LaTeX fragment, in ``aligned``) that GitHub, Jupyter and Obsidian render.

    >>> from bnsym.derivation import derive
    >>> print(to_markdown(derive(2)).splitlines()[0])
    # Batch normalization, m = 2
    """
    command = command_text(command)
    out = [f"# {d.symbols.layer.title}, m = {d.m}", "", f"*{_subtitle(d)}*"]
    if command:
        out += ["", f"Made by {markdown_code(command)} with bnsym."]
    out += markdown_lines(blocks(d, FRAGMENT_WIDTH, variant=False))
    return "\n".join(out) + "\n"


# --- PDF -----------------------------------------------------------------------------------
