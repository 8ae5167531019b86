"""The computation graph of a derivation as a picture: its nodes, each arrow's local
derivative, and the backward pass that runs the arrows the other way.

:func:`graph_picture` reads the derivation's forward graph (``d.forward``, one Step per
node) and differentiates each node by each node it reads (``sympy.diff``): the same graph
and the same local derivatives the chain rule used. Drawn for the element i (x_i, x̂_i,
y_i stand for every element) or, for small m, element by element. The drawings — ASCII for
the terminal, a Mermaid flowchart for Markdown, a LaTeX ``picture`` (no package needed) —
take a function that prints a symbol or an expression, so this module needs no renderer.

>>> from bnsym.derivation import derive
>>> pic = graph_picture(derive(2))
>>> [(e.parent.name, e.child.name) for e in pic.edges][:3]
[('x_i', 'mu_B'), ('x_i', 'sigma2_B'), ('mu_B', 'sigma2_B')]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.core.graph import derivative

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["Edge", "Picture", "ascii_drawing", "graph_picture", "latex_picture", "mermaid"]

#: Up to this m, the Mermaid flowchart draws every element's nodes (x₁ … x_m), not x_i.
FULL_MAX_M = 4


@dataclass(frozen=True)
class Edge:
    """An arrow ``parent → child``: the child's definition reads the parent. ``local`` is
    ∂child/∂parent; ``back`` what the backward pass carries along it to ∂ℓ/∂parent, i.e.
    ∂ℓ/∂child · local; ``note`` why a local derivative that vanishes does."""

    parent: sp.Symbol
    child: sp.Symbol
    local: sp.Expr
    back: sp.Expr
    adjoint: sp.Symbol
    note: str = ""


@dataclass(frozen=True)
class Picture:
    """The nodes by rank (inputs, statistics, x̂, y, then γ and β) and the arrows."""

    inputs: tuple[sp.Symbol, ...]
    stats: tuple[sp.Symbol, ...]
    x_hat: tuple[sp.Symbol, ...]
    y: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    edges: tuple[Edge, ...]
    generic: bool

    @property
    def nodes(self) -> tuple[sp.Symbol, ...]:
        return (*self.inputs, *self.stats, *self.x_hat, *self.y, *self.params)


def graph_picture(d: Derivation, generic: bool = True) -> Picture:
    """The forward graph of ``d`` with its local derivatives: for the element i
    (``generic``), or every element."""
    s = d.symbols
    rhs = {st.lhs: st.rhs for st in d.forward}
    elements = [0] if generic else list(range(d.m))
    stats = tuple(v for v in (s.mu, s.var) if v in rhs)
    used = set().union(*(st.rhs.free_symbols for st in d.forward))
    params = [p for p in (*s.gammas, *s.betas) if p in used]
    if generic:  # the first element's γ and β stand for x_i's
        params = [p for p in params if p in (s.gamma_of(0), s.beta_of(0))]
    adjoint = dict(zip(s.x, s.dx, strict=True))
    adjoint.update(zip(s.x_hat, s.d_x_hat, strict=True))
    adjoint.update(zip(s.y, s.dy, strict=True))
    adjoint.update({s.mu: s.d_mu, s.var: s.d_var})
    adjoint.update(zip(s.gammas, s.dgammas, strict=True))
    adjoint.update(zip(s.betas, s.dbetas, strict=True))
    # a numeric ε is shown as the number, as in every other section (--eps 0: no ε at all)
    eps = {} if d.options.eps is None else {s.eps: d.options.eps}
    xs = [s.x[i] for i in elements]
    children = [*stats, *(s.x_hat[i] for i in elements), *(s.y[i] for i in elements)]
    readers = [*xs, *stats, *s.x_hat, *params]
    edges = []
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr] = {}
    for child in children:
        free = rhs[child].free_symbols
        for parent in readers:
            if parent not in free:
                continue
            # only the terms that hold the parent: σ² has m terms, x_i is in one of them
            part = sp.Add(*(t for t in sp.Add.make_args(rhs[child]) if t.has(parent)))
            local = _factored(_root_shown(derivative(part, parent, shapes).xreplace(eps), s))
            note = ""
            if parent == s.mu and child == s.var:
                mean = rhs[s.mu].doit()
                if sp.expand(local.xreplace({s.mu: mean})) == 0:
                    mu = s.mu.name.replace("mu", "μ")  # μ, or batch norm's μ_B
                    local, note = sp.Integer(0), f"Σⱼ(xⱼ − {mu}) = 0 by the definition of {mu}"
            back = adjoint[child] * local
            edges.append(Edge(parent, child, local, back, adjoint[parent], note))
    pic = Picture(
        tuple(xs),
        stats,
        tuple(s.x_hat[i] for i in elements),
        tuple(s.y[i] for i in elements),
        tuple(params),
        tuple(edges),
        generic,
    )
    return _generic(pic, d) if generic else pic


def _root_shown(e: sp.Expr, s: Any) -> sp.Expr:
    """√σ² written σ (its powers too), as every section of the notes writes it."""
    return e.replace(
        lambda p: p.is_Pow and p.base == s.var and p.exp.is_Rational and p.exp.q == 2,
        lambda p: s.sigma ** (2 * p.exp),
    )


def _factored(e: sp.Expr) -> sp.Expr:
    """(x_i − μ)/2 rather than x_i/2 − μ/2: the content of a sum kept out, unevaluated (an
    evaluated number times a sum distributes again)."""
    content, rest = e.as_content_primitive()
    if content != 1 and rest.is_Add:
        return sp.Mul(content, rest, evaluate=False)
    return e


def _generic(pic: Picture, d: Derivation) -> Picture:
    """Element 1's symbols renamed x_i, x̂_i, y_i (and γ_i, β_i where they are per element)."""
    s = d.symbols
    names = {s.x[0]: "x_i", s.x_hat[0]: "xhat_i", s.y[0]: "y_i", s.dy[0]: "dy_i"}
    names.update({s.dx[0]: "dx_i", s.d_x_hat[0]: "dxhat_i"})
    if not s.shared:  # per element: γ_i; per channel (group norm): γ_c, c the channel of x_i
        k = "c" if s.layer.params == "channel" else "i"
        names.update({s.gammas[0]: f"gamma_{k}", s.betas[0]: f"beta_{k}"})
        names.update({s.dgammas[0]: f"dgamma_{k}", s.dbetas[0]: f"dbeta_{k}"})
    rename = {k: sp.Symbol(v, **k.assumptions0) for k, v in names.items()}

    def r(e: sp.Expr) -> sp.Expr:
        return e.xreplace(rename)

    edges = tuple(
        Edge(r(e.parent), r(e.child), _factored(r(e.local)), r(e.back), r(e.adjoint), e.note)
        for e in pic.edges
    )
    return Picture(
        tuple(r(v) for v in pic.inputs),
        pic.stats,
        tuple(r(v) for v in pic.x_hat),
        tuple(r(v) for v in pic.y),
        tuple(r(v) for v in pic.params),
        edges,
        True,
    )


Show = Callable[[sp.Expr], str]

# --- ASCII ---------------------------------------------------------------------------------


def ascii_drawing(
    pic: Picture, show: Show, ascii: bool = False, width: int = 100, every: str | None = None
) -> list[str]:
    """A small drawing of the graph for element i, then one line per arrow: its local
    derivative, and what the backward pass adds to ∂ℓ/∂(tail) along it. ``every`` is a line
    saying which nodes x_i, x̂_i, y_i stand for (see :func:`elements_line`)."""
    arrow, back_arrow, bar, down, corner, tee = (
        ("->", "<-", "-", "|", "+", "+") if ascii else ("──►", "◄──", "─", "│", "└", "┴")
    )
    x, x_hat, y = (show(v) for v in (pic.inputs[0], pic.x_hat[0], pic.y[0]))
    params = ", ".join(show(p) for p in pic.params)
    tail = f"{arrow} {x_hat} {arrow} {y}" + (f" {back_arrow} {params}" if params else "")
    if not pic.stats:
        lines = [f"  {x} {tail}"]
    else:
        top, columns = x, [0]
        for stat in pic.stats:
            top += f" {arrow} "
            columns.append(len(top))
            top += show(stat)
        bars, under = [" "] * (columns[-1] + 1), [bar] * (columns[-1] + 1)
        for k, c in enumerate(columns):
            bars[c] = down
            under[c] = corner if k == 0 else tee
        lines = ["  " + top, "  " + "".join(bars), "  " + "".join(under) + bar * 2 + tail]
    if every is not None:  # what x_i, x̂_i, y_i stand for
        lines.append("  " + every)
    lines.append("")
    heads = [f"{show(e.parent)} → {show(e.child)}" for e in pic.edges]
    pad = max(len(h) for h in heads)
    for head, e in zip(heads, pic.edges, strict=True):
        local = f"  {head.ljust(pad)}   local derivative {show(e.local)}"
        if e.note:
            local += f" ({e.note})"
        back = f"backward: {show(e.adjoint)} += {show(e.back)}" if e.local != 0 else ""
        if back and len(local) + 3 + len(back) <= width:
            lines.append(f"{local};  {back}")
        else:
            lines += [local] + ([" " * (pad + 5) + back] if back else [])
    return lines


def elements_line(d: Derivation, show: Show) -> str | None:
    """ "i = 1 … 4: x₁, x₂, x₃, x₄ → x̂₁, … → y₁, …", naming every element's nodes, for
    m ≤ FULL_MAX_M; None above."""
    if d.m > FULL_MAX_M:
        return None
    s = d.symbols
    rows = [", ".join(show(v) for v in vs) for vs in (s.x, s.x_hat, s.y)]
    line = f"for i = 1 … {d.m}: " + " → ".join(rows)
    params = graph_picture(d, generic=False).params
    if not s.shared and params:  # γ_i (β_i) stand for one per element, γ_c per channel
        line += "; " + ", ".join(show(p) for p in params)
        if s.layer.params == "channel":
            line += f" (c = 1 … {d.options.channels}, the channel of xᵢ)"
    return line


# --- Mermaid ---------------------------------------------------------------------------------


def mermaid(pic: Picture, show: Show) -> list[str]:
    """A Mermaid flowchart: solid arrows forward, labelled with their local derivatives;
    dotted arrows backward, labelled with what they carry to ∂ℓ/∂(tail)."""
    ids = {v: f"n{k}" for k, v in enumerate(pic.nodes)}
    lines = ["flowchart LR"]
    for v in pic.nodes:
        lines.append(f'  {ids[v]}["{_quoted(show(v))}"]')
    for e in pic.edges:
        lines.append(f'  {ids[e.parent]} -- "{_quoted(show(e.local))}" --> {ids[e.child]}')
    for e in pic.edges:
        if e.local != 0:
            lines.append(f'  {ids[e.child]} -. "{_quoted(show(e.back))}" .-> {ids[e.parent]}')
    return lines


def _quoted(text: str) -> str:
    return text.replace('"', "#quot;")


# --- LaTeX picture ---------------------------------------------------------------------------

#: Where each rank of node sits, in units of 0.8 mm, by the number of statistics: x_i left,
#: x̂_i and y_i right, the statistics between and above them (the mean inside the triangle
#: that x_i, the variance and x̂_i make, so that no two arrows cross), γ and β above y_i.
#: Chosen so that every arrow has a slope \vector can draw (integers of at most 4).
_AT = {"x": (0, 0), "x_hat": (70, 0), "y": (100, 0)}
_STATS = {1: [(28, 14)], 2: [(40, 10), (60, 30)]}
_PARAMS = {1: [(85, 20)], 2: [(85, 20), (115, 20)]}
#: How far each arrow stops short of the nodes it joins (their labels), in the same units.
_GAP = 5


def latex_picture(pic: Picture, show: Show) -> str:
    """The graph for element i in LaTeX's ``picture`` environment (no package needed)."""
    at = {pic.inputs[0]: _AT["x"], pic.x_hat[0]: _AT["x_hat"], pic.y[0]: _AT["y"]}
    at.update(zip(pic.stats, _STATS.get(len(pic.stats), []), strict=False))
    at.update(zip(pic.params, _PARAMS.get(len(pic.params), []), strict=False))
    out = [r"\begin{center}\setlength{\unitlength}{0.8mm}\begin{picture}(120,36)(0,-4)"]
    for v, (px, py) in at.items():
        out.append(rf"\put({px},{py}){{\makebox(0,0){{${show(v)}$}}}}")
    for e in pic.edges:
        (px, py), (qx, qy) = at[e.parent], at[e.child]
        dx, dy = qx - px, qy - py
        g = math.gcd(dx, dy)
        a, b = dx // g, dy // g
        t = _GAP / math.hypot(dx, dy)  # the fraction of the arrow left out at each end
        sx, sy = px + t * dx, py + t * dy
        length = (abs(dx) if a else abs(dy)) * (1 - 2 * t)  # \vector's length: its x-extent
        out.append(rf"\put({_num(sx)},{_num(sy)}){{\vector({a},{b}){{{_num(length)}}}}}")
    out.append(r"\end{picture}\end{center}")
    return "\n".join(out)


def crossings(pic: Picture) -> list[tuple[Edge, Edge]]:
    """The pairs of arrows of :func:`latex_picture` that cross (none, by the layout above)."""
    at = {pic.inputs[0]: _AT["x"], pic.x_hat[0]: _AT["x_hat"], pic.y[0]: _AT["y"]}
    at.update(zip(pic.stats, _STATS.get(len(pic.stats), []), strict=False))
    at.update(zip(pic.params, _PARAMS.get(len(pic.params), []), strict=False))

    def side(o: tuple[int, int], p: tuple[int, int], q: tuple[int, int]) -> int:
        cross = (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0])
        return (cross > 0) - (cross < 0)

    out = []
    for k, e in enumerate(pic.edges):
        for f in pic.edges[k + 1 :]:
            p1, p2, q1, q2 = at[e.parent], at[e.child], at[f.parent], at[f.child]
            if len({p1, p2, q1, q2}) < 4:
                continue  # arrows that share a node meet there
            if side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0:
                out.append((e, f))
    return out


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")
