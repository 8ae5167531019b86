"""The computation graph drawn in every format: it names every node of the derivation's
forward graph, and its local derivatives are the ones a person writes down by hand."""

from __future__ import annotations

import re

import pytest
import sympy as sp

from bnsym import derive
from bnsym.notes.latex import to_latex, to_markdown
from bnsym.notes.picture import graph_picture
from bnsym.notes.text import display_name, to_text

LAYERS = {
    "batchnorm": {},
    "batchnorm-eval": {"mode": "eval"},
    "layernorm": {"layer": "layernorm"},
    "instancenorm": {"layer": "instancenorm"},
    "groupnorm": {"layer": "groupnorm", "channels": 2},
    "rmsnorm": {"layer": "rmsnorm"},
    "batchnorm-plain": {"affine": False},
}


def _nodes(d):
    """Every node of the forward graph, its inputs and parameters included, by display name."""
    symbols = set()
    for st in d.forward:
        symbols.add(st.lhs)
        symbols |= {
            s
            for s in st.rhs.free_symbols
            if s.name not in ("epsilon", "running_mean", "running_var")
        }
    return {display_name(s.name) for s in symbols}


@pytest.mark.parametrize("name", list(LAYERS))
def test_mermaid_and_ascii_name_every_node(name):
    d = derive(4, **LAYERS[name])
    nodes = _nodes(d)
    md = to_markdown(d)
    chart = re.search(r"```mermaid\nflowchart LR\n(.*?)```", md, re.S)
    assert chart, md[:500]
    labels = set(re.findall(r'n\d+\["([^"]+)"\]', chart.group(1)))
    assert labels == nodes
    # every node has an arrow, and the backward pass runs along the same arrows
    forward = re.findall(r"(n\d+) -- .*? --> (n\d+)", chart.group(1))
    backward = re.findall(r"(n\d+) -\. .*? \.-> (n\d+)", chart.group(1))
    assert {a for a, _ in forward} | {b for _, b in forward} == {
        f"n{k}" for k in range(len(labels))
    }
    assert {(b, a) for a, b in backward} <= set(forward)
    text = to_text(d)
    section = text[text.index("Computation graph") : text.index("Closed form")]
    for node in nodes:
        assert node in section, (node, section)
    ascii_section = to_text(d, ascii=True)
    ascii_section = ascii_section[ascii_section.index("Computation graph") :]
    assert ascii_section.isascii()
    assert r"\begin{picture}" in to_latex(d, standalone=True)


def test_local_derivatives_are_the_ones_written_by_hand():
    d = derive(4, eps=0)
    pic = graph_picture(d)
    x, mu, var, xh, y, g, b = sp.symbols("x_i mu_B sigma2_B xhat_i y_i gamma beta")
    by_name = {(e.parent.name, e.child.name): e.local for e in pic.edges}
    expected = {
        ("x_i", "mu_B"): sp.Rational(1, 4),
        ("x_i", "sigma2_B"): (x - mu) / 2,
        ("mu_B", "sigma2_B"): 0,
        ("x_i", "xhat_i"): 1 / sp.sqrt(var),
        ("mu_B", "xhat_i"): -1 / sp.sqrt(var),
        ("sigma2_B", "xhat_i"): -(x - mu) / (2 * var ** sp.Rational(3, 2)),
        ("xhat_i", "y_i"): g,
        ("gamma", "y_i"): xh,
        ("beta", "y_i"): 1,
    }
    assert set(by_name) == set(expected)
    # σ_B is √σ²_B: at ε = 0 the picture writes the root as every section does
    names = {"x_i": x, "mu_B": mu, "sigma2_B": var, "xhat_i": xh, "gamma": g}
    names["sigma_B"] = sp.sqrt(var)
    for key, want in expected.items():
        got = by_name[key].subs(sp.Symbol("epsilon", positive=True), 0)
        got = got.xreplace({s: names[s.name] for s in got.free_symbols})
        assert sp.simplify(got - want) == 0, (key, got, want)
    # the vanishing arrow says why
    (note,) = [e.note for e in pic.edges if e.note]
    assert "definition of μ" in note


def test_rms_norm_has_no_mean_node():
    pic = graph_picture(derive(4, layer="rmsnorm"))
    assert [v.name for v in pic.stats] == ["nu2"]


def _segments(latex):
    """The arrows of a LaTeX picture as segments ((x0, y0), (x1, y1)), read from its
    \\put(x,y){\\vector(a,b){length}} commands (length: the x-extent, or y for a = 0)."""
    out = []
    for x, y, a, b, length in re.findall(
        r"\\put\(([-\d.]+),([-\d.]+)\)\{\\vector\((-?\d+),(-?\d+)\)\{([\d.]+)\}\}", latex
    ):
        x, y, a, b, length = float(x), float(y), int(a), int(b), float(length)
        dx = length * (1 if a > 0 else -1) if a else 0.0
        dy = dx * b / a if a else length * (1 if b > 0 else -1)
        out.append(((x, y), (x + dx, y + dy)))
    return out


def _cross(p, q):
    """Whether two segments cross at a point inside both (touching ends do not count)."""

    def orient(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    (p1, p2), (q1, q2) = p, q
    apart_p = orient(p1, p2, q1) * orient(p1, p2, q2) < 0
    return apart_p and orient(q1, q2, p1) * orient(q1, q2, p2) < 0


@pytest.mark.parametrize("name", list(LAYERS))
def test_no_two_arrows_of_the_latex_picture_cross(name):
    tex = to_latex(derive(4, **LAYERS[name]), standalone=True)
    picture = tex[tex.index(r"\begin{picture}") : tex.index(r"\end{picture}")]
    arrows = _segments(picture)
    assert len(arrows) == len(graph_picture(derive(4, **LAYERS[name])).edges)
    crossing = [(p, q) for k, p in enumerate(arrows) for q in arrows[k + 1 :] if _cross(p, q)]
    assert not crossing, crossing


def test_the_segments_reader_finds_a_crossing():
    """The check above, shown to fail on two arrows that do cross (an X)."""
    x = r"\put(0,0){\vector(1,1){10}} \put(0,10){\vector(1,-1){10}}"
    (p, q) = _segments(x)
    assert _cross(p, q)


def test_at_eps_0_the_graph_has_no_eps():
    text = to_text(derive(4, eps=0))
    section = text[text.index("Computation graph") : text.index("Closed form")]
    assert "ε" not in section and "1/σ_B" in section
    tex = to_latex(derive(4, eps=0))
    graph = tex[tex.index("Computation graph") : tex.index("Closed form")]
    assert r"\epsilon" not in graph
