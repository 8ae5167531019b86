"""A ✓ means: proved for exactly the statement displayed.

Every stated identity of every layer the registry knows (the five shipped, and layers
declared here), in every variant, is proved by a function of the statement as the notes show
it (:meth:`bnsym.proofs.ring.Proofs.claim`). Handed the same statement with one coefficient
of its right-hand side changed, that proof must say no; handed the statement itself, yes. No
output of any of these variants shows ``zoo``, ``nan`` or ``oo`` where a formula belongs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sympy as sp

from bnsym import derive
from bnsym.core.graph import Step
from bnsym.derivation import _derive_symbolic
from bnsym.family.layers import LAYERS, Layer
from bnsym.notes.text import sections

#: Layers declared here, as a user would: ScaleNorm (one shared g, not centred, no β), and a
#: centred rows layer with one γ per element and an eval mode (running statistics).
DECLARED = (
    Layer(name="scalenorm", centred=False, beta=False, grouping="rows"),
    Layer(name="rows_running", params="element", modes=("train", "eval")),
)
REGISTRY = (*LAYERS.values(), *DECLARED)


def variants(decl: Layer) -> Iterator[dict[str, Any]]:
    """Every variant of ``decl`` the options allow: placements, variances (centred layers in
    train mode), with and without γ and β, every mode, ε symbolic and ε = 0."""
    for mode in decl.modes:
        for placement in ("inside", "outside", "sqrt-outside"):
            centred_train = decl.centred and mode == "train"
            for variance in ("biased", "unbiased") if centred_train else ("biased",):
                for affine in (True, False):
                    for eps in (None, 0):
                        yield {
                            "layer": decl,
                            "channels": 2 if decl.has_channels else None,
                            "variance": variance,
                            "eps_placement": placement,
                            "affine": affine,
                            "mode": mode,
                            "eps": eps,
                        }


def _id(kw: dict[str, Any]) -> str:
    eps = "eps" if kw["eps"] is None else f"eps{kw['eps']}"
    affine = "affine" if kw["affine"] else "plain"
    return "-".join((kw["mode"], kw["eps_placement"], kw["variance"], affine, eps))


#: m = 2 keeps the 132 variants within seconds (group norm: two channels of one value); the
#: statements are the same formulas for every m.
M = 2


def tamper(rhs: sp.Expr) -> sp.Expr:
    """The right-hand side with one coefficient changed: a number n becomes n + 1, the first
    term of a sum is doubled, anything else (a product, a symbol) is doubled."""
    if rhs.is_Number:
        return rhs + 1
    if rhs.is_Add:
        first, *rest = rhs.args
        return sp.Add(2 * first, *rest, evaluate=False)
    return sp.Mul(2, rhs, evaluate=False)


@pytest.mark.parametrize("decl", REGISTRY, ids=lambda d: d.name)
def test_every_claim_fails_when_one_coefficient_changes(decl):
    checked = set()
    for kw in variants(decl):
        base = _derive_symbolic(
            M,
            decl,
            kw["channels"],
            kw["variance"],
            kw["eps_placement"],
            kw["affine"],
            kw["mode"],
            kw["eps"] == 0,
        )
        where = f"{decl.name} {_id(kw)}"
        assert base.identities, where
        for st in base.identities:
            holds = base.claims.get(st.rule)
            assert holds is not None, f"{where}: {st.rule} is stated but read by no proof"
            assert base.verified[st.rule] and holds(st), f"{where}: {st.rule} as displayed"
            wrong = Step(st.lhs, tamper(st.rhs), st.rule, st.value, st.note)
            assert not holds(wrong), f"{where}: {st.rule} still proved with rhs {wrong.rhs}"
            checked.add(st.rule)
        # the Jacobian's structure, as displayed, is a claim too
        st = base.jacobian_structure
        wrong = Step(st.lhs, tamper(st.rhs), st.rule)
        assert base.claims["jacobian_structure"](st), where
        assert not base.claims["jacobian_structure"](wrong), f"{where}: J = {wrong.rhs}"
    assert checked  # the variants stated something


def test_the_tamper_changes_a_coefficient():
    x, y = sp.symbols("x y")
    assert tamper(sp.Integer(0)) == 1
    assert sp.expand(tamper(3 * x + y) - (3 * x + y)) in (3 * x, y)  # one term doubled
    assert tamper(x) == 2 * x


#: What an undefined number prints as: SymPy's zoo (complex infinity), nan and oo, LaTeX's
#: \tilde{\infty}, and ∞ (no formula of the notes is infinite).
UNDEFINED = re.compile(r"\bzoo\b|\bnan\b|\boo\b|\\tilde\{\\infty\}|\\infty|∞")


@pytest.mark.parametrize("decl", REGISTRY, ids=lambda d: d.name)
def test_no_output_shows_an_undefined_number(decl):
    for kw in variants(decl):
        d = derive(M, **kw)
        where = f"{decl.name} {_id(kw)}"
        for sec in sections(d):
            for st in sec.steps:
                for e in (st.lhs, st.rhs):
                    if isinstance(e, sp.Basic):
                        assert not e.has(sp.zoo, sp.nan, sp.oo, -sp.oo), f"{where}: {st}"
        for name, out in (
            ("text", d.to_text()),
            ("latex", d.to_latex()),
            ("markdown", d.to_markdown()),
        ):
            hit = UNDEFINED.search(out)
            assert hit is None, f"{where} {name}: {out[max(hit.start() - 120, 0) : hit.end()]}"


def test_at_eps_0_the_limit_at_a_constant_group_is_said_not_to_exist():
    """ε outside the root, ε = 0: y jumps across a constant group, so there is no limit;
    the notes say so instead of dividing by ε (the old 'zoo·γ·(…) ✓')."""
    for placement in ("outside", "sqrt-outside"):
        for name in LAYERS:
            kw = {"channels": 2} if LAYERS[name].has_channels else {}
            d = derive(4, layer=name, eps=0, eps_placement=placement, **kw)
            rules = {st.rule for st in d.identities}
            assert "constant_batch_no_limit" in rules and "constant_batch_limit" not in rules
            assert d.verified["constant_batch_no_limit"]
            text = d.to_text()
            assert "∂ℓ/∂xᵢ does not exist" in text and "zoo" not in text
            assert "sqrt_outside_differs" not in rules  # at ε = 0 the placements coincide
            d = derive(4, layer=name, eps_placement=placement, **kw)
            assert d.verified["constant_batch_limit"]


@pytest.mark.parametrize("decl", REGISTRY, ids=lambda d: d.name)
def test_every_claim_of_order_2_fails_when_one_coefficient_changes(decl):
    from bnsym.proofs.higher import derive_higher

    for kw in variants(decl):
        if kw["eps"] is not None or kw["eps_placement"] == "sqrt-outside":
            continue  # the order-2 statements do not depend on ε's value
        h = derive_higher(derive(M, **kw), 2)
        where = f"{decl.name} {_id(kw)}"
        for st in h.identities:
            holds = h.claims[st.rule]
            assert h.verified[st.rule] and holds(st), f"{where}: {st.rule} as displayed"
            wrong = Step(st.lhs, tamper(st.rhs), st.rule)
            assert not holds(wrong), f"{where}: {st.rule} still proved with rhs {wrong.rhs}"
