"""The notes as one self-contained web page: ``bnsym derive --format html`` (``-o notes.html``).

The page holds every section the other formats show — the same blocks
(:func:`bnsym.notes.latex.blocks`, and :mod:`bnsym.notes.higher`'s at orders 2 and 3), broken
into the same rows as the PDF — as HTML a browser reads offline:

- the mathematics as MathML Core (:mod:`bnsym.notes.mathml`), which browsers lay out
  themselves: no script, no web font, nothing fetched;
- the computation graph as inline SVG, its node labels MathML in ``<foreignObject>``, drawn so
  that no two arrows cross;
- the worked example's decimals as an HTML table.

Its Content-Security-Policy (:data:`CSP`) forbids scripts and every load, so a page that
tried would show an error in the browser's console rather than fetch anything. On a phone each
formula block scrolls sideways by itself and the page never does; printed, blocks are kept
whole.

>>> from bnsym.derivation import derive
>>> page = to_html(derive(2))
>>> page.startswith("<!DOCTYPE html>"), "<script" in page, page.count("<math") > 50
(True, False, True)
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.notes.escape import command_text, visible_controls
from bnsym.notes.latex import WIDTH, Block, _doc_title, _subtitle, _title, blocks
from bnsym.notes.mathml import MathMLError, math_display, math_inline, text_mode
from bnsym.notes.picture import Picture, graph_picture
from bnsym.notes.prose import prose_tex
from bnsym.notes.texexpr import tex

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["CSP", "node_positions", "prose_html", "to_html"]

#: No script, no load of any kind (fonts, images, styles from elsewhere): only the page's own
#: <style>. A page that tried to load something would be refused, with a console error.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { color-scheme: light; }
body { font: 17px/1.55 "Latin Modern Roman", "STIX Two Text", Cambria, Georgia, serif;
  max-width: 52rem; margin: 0 auto; padding: 0 1rem 3rem; color: #111; background: #fff; }
math { font-family: "Latin Modern Math", "STIX Two Math", "Cambria Math", math; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 1.2em 0 .3em; }
h2 { font-size: 1.25rem; line-height: 1.3; margin: 1.8em 0 .5em; }
header p { margin: .3em 0; }
.made { color: #444; font-size: .9rem; }
nav ol { columns: 2 15rem; margin: .3em 0; padding-left: 1.6em; }
a { color: #1a4e8a; }
code { font-size: .88em; overflow-wrap: anywhere; }
p.failed { border-left: 4px solid #b00020; padding-left: .6em; }
/* a formula block scrolls sideways by itself on a narrow screen; the page never does */
.eq { overflow-x: auto; overflow-y: hidden; margin: .7em 0; padding: .15em 0; }
/* align*: display style in every cell, odd columns to the right and even ones to the left */
mtable.align mtd { padding: .55em 0 0; math-style: normal; }
mtable.align mtr.more mtd { padding-top: .15em; }
mtable.align mtd:nth-child(odd) { text-align: right; }
mtable.align mtd:nth-child(even) { text-align: left; }
mtable.align mtd:nth-child(3) { padding-left: 1.5em; }
mtable:not(.align) > mtr > mtd { padding: .15em .45em; text-align: center; }  /* a matrix */
.wrap { overflow-x: auto; }
table.num { border-collapse: collapse; margin: .6em 0; }
table.num th, table.num td { padding: .2em .8em; border-bottom: 1px solid #bbb; text-align: right; }
table.num th { border-bottom-width: 2px; }
/* the graph keeps labels legible: on a phone it scrolls sideways like a wide formula */
figure { margin: 1em 0; overflow-x: auto; }
figure svg { display: block; width: 100%; min-width: 26rem; max-width: 40rem; height: auto; }
figcaption { font-size: .92em; color: #333; }
.node { display: flex; align-items: center; justify-content: center; width: 100%;
  height: 100%; font-size: 21px; }
@media (max-width: 30rem) { body { font-size: 16px; padding: 0 .7rem 2rem; } }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  .eq, .wrap, figure { overflow: visible; }
  figure svg { min-width: 0; max-width: 34rem; }
  .eq, figure, table.num tr, p { break-inside: avoid; }
  h1, h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  @page { margin: 16mm 15mm; }
}
"""


def to_html(
    d: Derivation, command: str | None = None, higher_order: Any = None, modes: Any = None
) -> str:
    """The notes of ``d`` as one HTML page (a ``str``; UTF-8 when written).

    Args:
        d: the derivation.
        command: the command line that made the page, shown under the title.
        higher_order: the derivatives of order 2 or 3 (what
            :func:`bnsym.proofs.higher.derive_higher` returns), whose sections follow.
        modes: forward mode and its compositions (what
            :func:`bnsym.proofs.modes.derive_modes` returns), whose sections follow.

    Raises:
        MathMLError: the notes hold LaTeX outside the subset :mod:`bnsym.notes.mathml` knows.
    """
    command = command_text(command)
    parts = list(blocks(d, WIDTH, variant=False))
    if higher_order is not None:  # imported here: a page of order 1 needs none of it
        from bnsym.notes.higher import _blocks

        parts += _blocks(higher_order, WIDTH)
    if modes is not None:  # likewise: only a page with forward mode needs its sections
        from bnsym.notes.modes import blocks as mode_blocks

        parts += mode_blocks(modes, WIDTH)
    sections = _sections(parts)
    header = [f"<h1>{prose_html(prose_tex(_doc_title(d)))}</h1>"]
    header.append(f"<p>{prose_html(prose_tex(_subtitle(d)))}</p>")
    if command:
        shown = html.escape(visible_controls(command), quote=False)
        header.append(f'<p class="made">Made by <code>{shown}</code> with bnsym.</p>')
    contents = [f'<li><a href="#{s.key}">{s.title}</a></li>' for s in sections if s.key]
    body = [
        "<header>",
        *header,
        "</header>",
        '<nav aria-label="Contents"><ol>',
        *contents,
        "</ol></nav>",
        "<main>",
    ]
    for section in sections:
        if section.key:
            body += [f'<section id="{section.key}">', f"<h2>{section.title}</h2>"]
        else:
            body.append("<section>")
        body += [_RENDER[b.kind](b, d) for b in section.blocks]
        body.append("</section>")
    body.append("</main>")
    return _page(_title(d), body)


def _page(title: str, body: list[str]) -> str:
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="generator" content="bnsym">',
        f"<title>{html.escape(title, quote=False)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]
    return "\n".join([*head, *body, "</body>", "</html>"]) + "\n"


@dataclass
class _Section:
    """A heading and the blocks under it; ``key`` is its id (the heading's words,
    ``backward-pass-by-the-chain-rule``), "" for blocks before any heading."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def _sections(parts: Iterable[Block]) -> list[_Section]:
    out = [_Section("", "")]
    for b in parts:
        if b.kind == "heading":
            out.append(_Section(_unique_id(b.text, {s.key for s in out}), prose_html(b.latex)))
        else:
            out[-1].blocks.append(b)
    return [s for s in out if s.key or s.blocks]


def _unique_id(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    key, n = base, 1
    while key in used:
        n += 1
        key = f"{base}-{n}"
    return key


# --- blocks ----------------------------------------------------------------------------------


def _prose_block(b: Block, d: Derivation) -> str:
    failed = ' class="failed"' if b.text.startswith("✗") else ""  # a proof that failed stands out
    return f"<p{failed}>{prose_html(b.latex)}</p>"


def _math_block(b: Block, d: Derivation) -> str:
    return f'<div class="eq">{math_display(b.rows)}</div>'


def _table_block(b: Block, d: Derivation) -> str:
    """The worked example's decimals: LaTeX ``tabular`` rows of ``$…$`` cells, the first
    the header."""
    rows = []
    for k, row in enumerate(b.rows):
        cells = re.findall(r"\$([^$]*)\$", row)
        if " & ".join(f"${c}$" for c in cells) != row:
            raise MathMLError(f"a table row is not a list of $…$ cells: {row[:80]!r}.")
        tag = "th" if k == 0 else "td"
        scope = ' scope="col"' if k == 0 else ""
        rows.append(
            "<tr>" + "".join(f"<{tag}{scope}>{math_inline(c)}</{tag}>" for c in cells) + "</tr>"
        )
    head, *rest = rows
    return (
        f'<div class="wrap"><table class="num"><thead>{head}</thead>'
        f"<tbody>{''.join(rest)}</tbody></table></div>"
    )


def _picture_block(b: Block, d: Derivation) -> str:
    return graph_figure(graph_picture(d))


_RENDER: dict[str, Callable[[Block, Any], str]] = {
    "prose": _prose_block,
    "math": _math_block,
    "table": _table_block,
    "picture": _picture_block,
}


#: The pieces of the notes' prose: maths, the start of a group, its end, or a run of text.
_PROSE = re.compile(
    r"\$(?P<math>(?:[^$\\]|\\.)*)\$"
    r"|\\(?P<group>texttt|emph)\{"
    r"|(?P<close>\})"
    r"|(?:\\(?!texttt\{|emph\{)(?:[A-Za-z]+(?:\{\})?|.)|[^$\\}])+",
    re.DOTALL,
)
_GROUPS = {"texttt": "code", "emph": "em"}


def prose_html(latex: str) -> str:
    r"""A sentence of the notes' LaTeX (:func:`bnsym.notes.prose.prose_tex`: text, ``$…$``,
    ``\texttt{…}``, ``\emph{…}``) as HTML, the maths as inline MathML.

    >>> prose_html(r"\emph{Why:} $m = 2$ (closed\_form).")
    '<em>Why:</em> <math><mi>m</mi><mo>=</mo></math><math><mn>2</mn></math> (closed_form).'
    """
    out: list[str] = []
    closing: list[str] = []  # the end tags of the \texttt{ and \emph{ still open
    k = 0
    while k < len(latex):
        token = _PROSE.match(latex, k)
        if token is None:
            raise MathMLError(f"an unpaired $ in the notes' prose: {latex[:80]!r}.")
        k = token.end()
        if token["math"] is not None:
            out.append(math_inline(token["math"], breakable=True))
        elif token["group"] is not None:
            out.append(f"<{_GROUPS[token['group']]}>")
            closing.append(f"</{_GROUPS[token['group']]}>")
        elif token["close"] is not None and closing:
            out.append(closing.pop())
        else:  # text (a stray } is left to text_mode, which refuses it)
            out.append(html.escape(text_mode(token.group()), quote=False))
    if closing:
        raise MathMLError(f"an unclosed group in the notes' prose: {latex[:80]!r}.")
    return "".join(out)


# --- the computation graph --------------------------------------------------------------------

#: Node radius and the drawing's size (SVG units; the figure scales).
R = 27
VIEW = (660, 205)
#: Where the nodes sit: x_i, x̂_i and y_i on one line; the statistics above, between x_i and
#: x̂_i (σ² above μ: x_i, μ, σ² and x̂_i are each joined to each, and with μ inside the
#: triangle x_i, σ², x̂_i no two arrows cross); γ and β above y_i.
LINE = {"x": (50, 170), "x_hat": (410, 170), "y": (560, 170)}
STATS = {0: [], 1: [(230, 70)], 2: [(230, 118), (230, 38)]}
PARAMS = {0: [], 1: [(560, 50)], 2: [(500, 50), (620, 50)]}


def node_positions(pic: Picture) -> dict[sp.Symbol, tuple[int, int]]:
    """Where :func:`graph_figure` draws each node of the picture for element i."""
    at = {pic.inputs[0]: LINE["x"], pic.x_hat[0]: LINE["x_hat"], pic.y[0]: LINE["y"]}
    at.update(zip(pic.stats, STATS[len(pic.stats)], strict=True))
    at.update(zip(pic.params, PARAMS[len(pic.params)], strict=True))
    return at


def graph_figure(pic: Picture) -> str:
    """The graph for element i as a ``<figure>`` holding inline SVG: a circle per node with
    its MathML label, an arrow per edge (dashed where the local derivative is 0)."""
    at = node_positions(pic)
    svg = [
        f'<svg viewBox="0 0 {VIEW[0]} {VIEW[1]}" role="img" aria-label="The computation graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>',
    ]
    notes = []
    for e in pic.edges:
        (px, py), (qx, qy) = at[e.parent], at[e.child]
        n = math.hypot(qx - px, qy - py)
        ux, uy = (qx - px) / n, (qy - py) / n
        dashed = ' stroke-dasharray="5 4"' if e.local == 0 else ""
        svg.append(
            f'<line x1="{px + ux * R:.1f}" y1="{py + uy * R:.1f}" x2="{qx - ux * (R + 1):.1f}" '
            f'y2="{qy - uy * (R + 1):.1f}" stroke="#333" stroke-width="1.5"{dashed} '
            'marker-end="url(#arrow)"/>'
        )
        if e.local == 0 and e.note:
            notes.append(
                f"{math_inline(tex(e.parent))} → {math_inline(tex(e.child))}: "
                f"{prose_html(prose_tex(e.note))}"
            )
    for v, (x, y) in at.items():
        svg.append(f'<circle cx="{x}" cy="{y}" r="{R}" fill="#f3f5fa" stroke="#333"/>')
        svg.append(
            f'<foreignObject x="{x - R}" y="{y - R}" width="{2 * R}" height="{2 * R}">'
            f'<div class="node">{math_inline(tex(v))}</div></foreignObject>'
        )
    svg.append("</svg>")
    caption = prose_html(prose_tex("Drawn for element i; every element has the same arrows."))
    if notes:
        caption += " Dashed: the local derivative is 0 (" + "; ".join(notes) + ")."
    return "<figure>" + "\n".join(svg) + f"<figcaption>{caption}</figcaption></figure>"
