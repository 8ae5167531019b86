"""Every note in the layer's own words: γ per element, channel or group as declared, no β or μ
where the layer has none, ν² (not "the variance") where nothing is subtracted, the chain
rule's steps counted, the paper named only where the layer has one (``Layer.paper``)."""

from __future__ import annotations

import re

import pytest

from bnsym import derive
from bnsym.family.layers import Layer
from bnsym.notes.text import to_text

SCALENORM = Layer(name="scalenorm", centred=False, beta=False, grouping="rows")
#: a centred rows layer with an eval mode and no paper: its running statistics in its words
RUNNING = Layer(name="rows_running", params="element", modes=("train", "eval"))


def _outputs(d):
    return {"text": d.to_text(), "latex": d.to_latex(), "markdown": d.to_markdown()}


@pytest.mark.parametrize("layer", ["rmsnorm", SCALENORM], ids=["rmsnorm", "scalenorm"])
@pytest.mark.parametrize("placement", ["inside", "outside", "sqrt-outside"])
def test_a_layer_without_mean_or_beta_never_mentions_them(layer, placement):
    for affine in (True, False):
        for eps in (None, 0):
            d = derive(4, layer=layer, eps_placement=placement, affine=affine, eps=eps)
            for name, out in _outputs(d).items():
                hit = re.search(r"[βμσ]|\\beta|\\mu\b|\\sigma|\bvariance\b|paper|six steps", out)
                where = f"{placement} affine={affine} eps={eps} {name}"
                assert hit is None, f"{where}: {out[max(hit.start() - 80, 0) : hit.end() + 40]}"


def test_the_chain_rules_steps_are_counted():
    cases = {
        "the six steps": derive(4),
        "the four steps": derive(4, layer="rmsnorm"),
    }
    cases["the four steps "] = derive(4, affine=False)  # no ∂ℓ/∂γ, ∂ℓ/∂β
    for phrase, d in cases.items():
        assert phrase.strip() in to_text(d), phrase
        assert len(d.general.backward) == {"six": 6, "four": 4}[phrase.split()[1]]
    scalenorm = derive(4, layer=SCALENORM)
    assert "the four steps" in to_text(scalenorm) and len(scalenorm.general.backward) == 4


def test_group_norms_notes_say_one_gamma_per_channel():
    d = derive(4, layer="groupnorm", channels=2)
    spread = next(st for st in d.identities if st.rule == "output_spread")
    assert "one γ per channel" in spread.note and "per element" not in spread.note
    text = to_text(d)
    assert "one γ per element" not in text
    layer = next(st for st in derive(4, layer="layernorm").identities if st.rule == "output_spread")
    assert "one γ per element" in layer.note


@pytest.mark.parametrize(
    ("layer", "kw", "J"),
    [
        ("batchnorm", {}, "J = (γ/e)·(I − 𝟙𝟙ᵀ/m)"),
        ("instancenorm", {}, "J = (γ/e)·(I − 𝟙𝟙ᵀ/m)"),
        ("layernorm", {}, "J = (diag(γ)/e)·(I − 𝟙𝟙ᵀ/m)"),
        ("groupnorm", {"channels": 2}, "J = (diag(γ)/e)·(I − 𝟙𝟙ᵀ/m)"),
        ("rmsnorm", {}, "J = diag(γ)/e"),
    ],
)
def test_the_constant_batch_note_has_the_layers_gamma(layer, kw, J):
    d = derive(4, layer=layer, eps_placement="outside", **kw)
    note = next(st.note for st in d.identities if st.rule == "constant_batch_limit")
    assert J in note, note


def test_the_paper_is_named_only_for_a_layer_that_has_one():
    assert "in the order of the paper" in to_text(derive(4))
    for layer in ("layernorm", "rmsnorm", SCALENORM, RUNNING):
        text = to_text(derive(4, layer=layer))
        assert "paper" not in text, layer


def test_the_running_statistics_in_the_layers_own_words():
    bn = to_text(derive(4))
    assert "E_B[σ²_B] = (m − 1)/m·Var[x] when the m values of a batch" in bn
    assert "which is why Algorithm 2 multiplies by m/(m − 1)" in bn
    for mode in ("train", "eval"):
        text = to_text(derive(4, layer=RUNNING, mode=mode))
        proof = next(ln for ln in text.splitlines() if "✓ running_var_unbiased:" in ln)
        assert "E[σ²] = (m − 1)/m·Var[x] when the m values of a group" in proof, proof
        assert "Algorithm" not in proof and "batch" not in proof and "E_B" not in proof
        assert "the running variance multiplies by m/(m − 1)" in proof
    unbiased = to_text(derive(4, variance="unbiased"))
    assert "E_B[σ²_B] = Var[x]   [✓ running_var_unbiased]" in unbiased


@pytest.mark.parametrize("kw", [{}, {"mode": "eval"}, {"variance": "unbiased"}])
def test_operator_names_are_upright(kw):
    """Var, E (and diag) are operators: \\operatorname in every LaTeX output, never a product
    of italic letters V·a·r, whether in a formula or in a sentence's maths."""
    d = derive(4, **kw)
    maths = "".join(re.findall(r"\$\$(.*?)\$\$", d.to_markdown(), re.S))  # its prose is Unicode
    for tex in (d.to_latex(standalone=True), maths):
        assert r"\operatorname{Var}[x]" in tex and r"\operatorname{E}" in tex
        bare = re.findall(r"(?<!\\operatorname\{)\b(?:Var|E)(?=\[|_\{?B)", tex)
        assert not bare, re.findall(r".{40}(?<!\\operatorname\{)\b(?:Var|E)(?:\[|_\{?B).{10}", tex)
