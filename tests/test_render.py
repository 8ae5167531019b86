"""Text and JSON rendering: the JSON contract, reading it back, and the text's content."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

from bnsym import derive
from bnsym.notes.text import display_name, load_json, to_json, to_text

REQUIRED = {"m", "options", "mean", "var", "x_hat", "y", "dx", "dgamma", "dbeta", "verified"}


@pytest.mark.parametrize("m", [2, 4, 6])
def test_json_contract_and_round_trip_against_numpy(m):
    d = derive(m)
    obj = json.loads(to_json(d))
    assert REQUIRED <= obj.keys()
    assert obj["m"] == m and len(obj["x_hat"]) == len(obj["y"]) == len(obj["dx"]) == m
    assert all(obj["verified"].values())
    allowed = {f"x{i}" for i in range(1, m + 1)} | {f"dy{i}" for i in range(1, m + 1)}
    allowed |= {"gamma", "beta", "epsilon"}
    data = load_json(to_json(d))
    for e in [data["mean"], data["var"], *data["x_hat"], *data["y"], *data["dx"], data["dgamma"]]:
        assert {s.name for s in e.free_symbols} <= allowed
        assert not e.atoms(sp.Function)  # gamma/beta read as symbols, not SymPy's functions
    # numbers: a NumPy batch norm written out here, and its Jacobian-vector product
    rng = np.random.default_rng(m)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    gamma, eps = 1.5, 1e-2
    sym = {s.name: s for e in data["dx"] for s in e.free_symbols}
    sub = {sym.get(f"x{i + 1}", sp.Symbol(f"x{i + 1}")): x[i] for i in range(m)}
    sub.update({sym.get(f"dy{i + 1}", sp.Symbol(f"dy{i + 1}")): dy[i] for i in range(m)})
    sub[sym.get("gamma", sp.Symbol("gamma"))] = gamma
    sub[sym.get("epsilon", sp.Symbol("epsilon"))] = eps
    mu, var = x.mean(), x.var()
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx_np = gamma / np.sqrt(var + eps) * (dy - dy.mean() - x_hat * (dy @ x_hat) / m)
    dx = [float(e.xreplace(sub)) for e in data["dx"]]
    np.testing.assert_allclose(dx, dx_np, rtol=1e-10)


def test_json_reads_back_with_plain_sympify_locals():
    obj = json.loads(to_json(derive(3)))
    names = {n: sp.Symbol(n) for n in obj["symbols"]}
    e = sp.sympify(obj["dbeta"], locals=names)
    assert e == sp.Symbol("dy1") + sp.Symbol("dy2") + sp.Symbol("dy3")


def test_json_of_a_worked_example_holds_exact_numbers():
    obj = json.loads(to_json(derive(4, eps=0, values="2,0,2,4")))
    assert obj["mean"] == "2" and obj["var"] == "2"
    assert obj["x_hat"] == ["0", "-sqrt(2)", "0", "sqrt(2)"]
    assert obj["options"]["values"] == [["2", "0", "2", "4"]]


def test_json_of_several_features_lists_each():
    obj = json.loads(to_json(derive(2, eps=0, values="1,2;10,11")))
    assert [f["x_hat"] for f in obj["features"]] == [["-1", "1"], ["-1", "1"]]


def test_text_has_every_section_and_proof_marks():
    text = to_text(derive(4))
    for title in (
        "Forward pass",
        "Backward pass",
        "Closed form",
        "Jacobian",
        "Identities",
        "Proofs",
    ):
        assert title in text
    assert "∂ℓ/∂σ²_B" in text and "✓ closed_form" in text and "✗" not in text


def test_ascii_text_is_ascii():
    text = to_text(derive(3, values="1,2,4", dy="1,0,0"), ascii=True)
    assert text.isascii()
    assert "Worked example" in text


def test_display_names():
    assert display_name("dy12") == "∂ℓ/∂y₁₂"
    assert display_name("xhat_i", "latex") == r"\hat{x}_{i}"
    assert display_name("gamma", "ascii") == "gamma"


@pytest.mark.parametrize("m", [8, 128])
def test_an_ellipsis_never_hides_a_sign(m):
    """Every abbreviated sum's "…" carries the sign of the terms it hides: "+ …" only for
    added terms, "− …" only for subtracted ones (signs read off SymPy, not the printer); a sum
    that would hide terms of both signs is printed whole."""
    from bnsym.core.build import graph_and_chain_rule
    from bnsym.core.graph import Symbols
    from bnsym.notes.text import MAX_TERMS, expr_text, term_key

    # the graph and the chain rule that derive prints, without the proofs (m = 128 in 1 s)
    forward, backward = graph_and_chain_rule(Symbols.of(m), "biased", "inside", True, "train")
    seen = 0
    for st in (*forward, *backward):
        for add in sp.preorder_traversal(st.rhs):
            if not (isinstance(add, sp.Add) and len(add.args) > MAX_TERMS):
                continue
            terms = sorted(add.args, key=term_key)
            hidden = [t.could_extract_minus_sign() for t in terms[2:-1]]
            text = expr_text(add)
            if any(hidden) and not all(hidden):  # both signs: printed whole, no "± …"
                assert "…" not in text and "±" not in text, text
                continue
            sign = "−" if all(hidden) else "+"
            assert f" {sign} …" in text, (text, sign)
            seen += 1
    assert seen >= 2  # ∂ℓ/∂μ_B and the sum inside it at least
    if m == 8:  # the sum of issue 12: its hidden terms are −x₃ … −x₇
        assert "(−x₁ − x₂ − … + 8·μ_B)/4" in to_text(derive(m))
