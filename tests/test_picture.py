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
    names = {"x_i": x, "mu_B": mu, "sigma2_B": var, "xhat_i": xh, "gamma": g}
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
