"""The general-m form (symbolic m, Sum over Indexed) against independent references.

- each chain-rule step, with m = 2…5 substituted and its sums written out, equals the step
  of the explicit derivation (x_1..x_m, derived separately by the instance's chain rule);
- the closed form with symbolic m, evaluated at numbers, equals PyTorch autograd;
- its proofs fail for a closed form off by a term (the tester tested);
- JSON carries it and reads it back; hostile input in it is refused.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp

from bnsym import derive, load_json
from bnsym.core.build import graph_and_chain_rule
from bnsym.core.general import DX, GAMMA, XHAT, general_graph, instance_of
from bnsym.core.graph import Symbols
from bnsym.family.layers import LAYERS as REGISTRY
from bnsym.notes.safe_parse import ExpressionError
from bnsym.proofs.general import derive_general, prove_general
from conftest import needs_torch

try:  # the torch extra; CI installs it (tests/conftest.py)
    import torch
except ImportError:  # the tests marked needs_torch skip; the others run
    torch = None
F = None if torch is None else torch.nn.functional

LAYERS = tuple(REGISTRY)  # every layer bnsym ships


def _channels(layer: str, m: int) -> int | None:
    return 2 if layer == "groupnorm" and m % 2 == 0 else None


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_general_steps_are_the_instances(layer: str, m: int) -> None:
    """Every step of the general chain rule, at m and element i, is the explicit step."""
    channels = _channels(layer, m)
    if layer == "groupnorm" and channels is None:
        channels = 1
    _compare_steps(layer, m, channels, "biased", "inside", True, "train")


# Every variant the options allow, at m = 3 (group norm: 4 values in 2 channels)
VARIANTS = [
    ("batchnorm", "biased", "outside", True, "train"),
    ("batchnorm", "biased", "sqrt-outside", True, "train"),
    ("batchnorm", "unbiased", "inside", True, "train"),
    ("batchnorm", "unbiased", "sqrt-outside", False, "train"),
    ("batchnorm", "biased", "inside", True, "eval"),
    ("batchnorm", "biased", "outside", False, "eval"),
    ("layernorm", "unbiased", "outside", True, "train"),
    ("layernorm", "biased", "sqrt-outside", False, "train"),
    ("instancenorm", "biased", "sqrt-outside", True, "train"),
    ("groupnorm", "unbiased", "outside", True, "train"),
    ("groupnorm", "biased", "sqrt-outside", True, "train"),
    ("rmsnorm", "biased", "outside", True, "train"),
    ("rmsnorm", "biased", "sqrt-outside", False, "train"),
]


@pytest.mark.parametrize(("layer", "variance", "placement", "affine", "mode"), VARIANTS)
def test_general_steps_are_the_instances_in_every_variant(layer, variance, placement, affine, mode):
    m, channels = (4, 2) if layer == "groupnorm" else (3, None)
    _compare_steps(layer, m, channels, variance, placement, affine, mode)


def _compare_steps(layer, m, channels, variance, placement, affine, mode) -> None:
    s = Symbols.of(m, layer, channels)
    _, backward = graph_and_chain_rule(s, variance, placement, affine, mode)
    explicit = {st.lhs: st.rhs for st in backward}
    g = derive_general(layer, variance=variance, placement=placement, affine=affine, mode=mode)
    for st in g.backward:
        elementwise = st.lhs.has(sp.Symbol("i", integer=True)) or st.lhs.has(
            sp.Symbol("c", integer=True)
        )
        count = m if isinstance(st.lhs, sp.Indexed) and st.lhs.base in (DX, XHAT) else None
        if isinstance(st.lhs, sp.Indexed) and st.lhs.base not in (DX, XHAT):
            count = len(s.gammas)  # ∂ℓ/∂γ_k, ∂ℓ/∂β_k: one per parameter
        for k in range(1, (count or 1) + 1) if elementwise else [None]:
            lhs = _instance(st.lhs, m, k, channels)
            rhs = _instance(st.rhs, m, k, channels)
            want = explicit[lhs]
            assert sp.expand(rhs - want) == 0, f"{layer} m={m} {lhs}: {rhs} != {want}"


def _instance(e: sp.Expr, m: int, k: int | None, channels: int | None) -> sp.Expr:
    e = e.xreplace({sp.Symbol("c", integer=True): k}) if k is not None else e
    return instance_of(e, m, k, channels=channels if channels else None)


@needs_torch
@pytest.mark.parametrize("layer", LAYERS)
def test_general_closed_form_matches_torch(layer: str) -> None:
    """The closed form with symbolic m, evaluated at m = 6, equals PyTorch's gradient."""
    m, eps = 6, 1e-3
    rng = np.random.default_rng(12)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    gamma = rng.normal(size=m) + 1.5
    g = derive_general(layer)
    closed = g.closed_form.rhs
    s = Symbols.of(4, layer, 2 if layer == "groupnorm" else None)
    xt = torch.tensor(x, requires_grad=True)
    if layer == "rmsnorm":
        gt = torch.tensor(gamma)
        y = F.rms_norm(xt[None], (m,), gt, eps=eps)[0]
        gam = gamma
    elif layer in ("layernorm",):
        gt = torch.tensor(gamma)
        y = F.layer_norm(xt[None], (m,), gt, None, eps=eps)[0]
        gam = gamma
    elif layer == "groupnorm":  # one group of 2 channels of 3 positions
        gt = torch.tensor(gamma[:2])
        y = F.group_norm(xt.reshape(1, 2, 3), 1, gt, None, eps=eps).reshape(m)
        gam = np.repeat(gamma[:2], 3)
    else:  # batch and instance norm: one γ for the group
        y = (xt - xt.mean()) / torch.sqrt(xt.var(unbiased=False) + eps) * gamma[0]
        gam = np.full(m, gamma[0])
    y.backward(torch.tensor(dy))
    want = xt.grad.numpy()
    mean = 0.0 if layer == "rmsnorm" else x.mean()
    var = float(np.mean((x - mean) ** 2))
    x_hat = (x - mean) / np.sqrt(var + eps)
    got = []
    for i in range(1, m + 1):
        e = instance_of(closed, m, i, channels=2 if layer == "groupnorm" else None)
        values = {s.var: var, s.eps: eps, s.gamma: gamma[0]}
        for j in range(m):
            values[sp.Symbol(f"dy{j + 1}", real=True)] = dy[j]
            values[sp.Symbol(f"xhat{j + 1}", real=True)] = x_hat[j]
            values[sp.Symbol(f"gamma{j + 1}", real=True)] = gam[j] if layer != "groupnorm" else 0
        if layer == "groupnorm":
            values.update({sp.Symbol(f"gamma{c + 1}", real=True): gamma[c] for c in range(2)})
        got.append(float(e.xreplace(values)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_general_proof_fails_for_a_wrong_closed_form() -> None:
    """The proof engine refuses a closed form missing the x̂ term."""
    from bnsym.core import general as _general

    g = general_graph("batchnorm", "biased", "inside", True, "train")
    K, J, M = _general.K, _general.J, _general.M
    DY = _general.DY
    wrong = g.symbols.gamma / (M * g.facts["D"]) * (M * DY[K] - sp.Sum(DY[J], (J, 1, M)))
    assert prove_general(g)[0]["closed_form"] is True
    assert prove_general(dataclasses.replace(g, closed=wrong))[0]["closed_form"] is False


@pytest.mark.parametrize("layer", LAYERS)
def test_general_form_proves_for_every_m(layer: str) -> None:
    g = derive_general(layer)
    assert g.verified and all(g.verified.values()), g.verified


def test_large_m_takes_proofs_from_the_general_form() -> None:
    d = derive(40)
    assert all(d.verified.values())
    assert "not redone for m = 40" in d.proof_methods["closed_form"]
    assert "not redone" not in derive(4).proof_methods["closed_form"]


def test_json_general_round_trips() -> None:
    d = derive(4, layer="layernorm")
    obj = load_json(d.to_json())
    assert obj["general"]["closed_form"]["rhs"] == d.general.closed_form.rhs
    assert [st["lhs"] for st in obj["general"]["backward"]] == [st.lhs for st in d.general.backward]
    assert GAMMA in obj["general"]["closed_form"]["rhs"].atoms(sp.IndexedBase)


@pytest.mark.parametrize(
    "rhs",
    ["__import__('os').system('true')", "Sum(x[j], (os, 1, m))", "xhat[j].base", "c(x1)"],
)
def test_json_general_refuses_hostile_input(rhs: str) -> None:
    obj = json.loads(derive(2).to_json())
    obj["general"]["backward"][0]["rhs"] = rhs
    with pytest.raises(ExpressionError):
        load_json(obj)


def test_large_m_text_has_no_near_identical_lines() -> None:
    text = derive(32).to_text()
    assert "x̂₃₂ = " not in text and "∂ℓ/∂x₃₂ = " not in text and "the same for i = 2, …, 32" in text
    assert text.index("General form") < text.index("Forward pass")


def test_group_norms_general_form_reads_as_the_notes_write_it():
    # γ of x_i's channel is γ_c(i), and ∂ℓ/∂γ_c sums over channel c's elements: neither the
    # printer's c{\left(i \right)} nor the sum's raw bounds m·(c − 1)/C + 1 … c·m/C
    d = derive(4, layer="groupnorm", channels=2)
    text, latex = d.to_text(), d.to_latex()
    general = text.split("General form")[1].split("Forward pass")[0]
    assert "γ_c(i)" in general and "Σ_(j∈c)∂ℓ/∂yⱼ·x̂ⱼ" in general and ".." not in general
    assert r"\gamma_{c(i)}" in latex and r"\sum_{j \in c}" in latex
    assert r"c{\left(" not in latex
    # the closed form with symbolic m lists m·∂ℓ/∂yᵢ first, as the instance does
    closed = [line for line in general.splitlines() if "∂ℓ/∂xᵢ = (m·" in line]
    assert closed and "− Σⱼ∂ℓ/∂yⱼ·γ_c(j) − x̂ᵢ·Σⱼ" in closed[0]


@pytest.mark.parametrize("layer", ["batchnorm", "layernorm"])
def test_general_spread_proof_fails_for_a_wrong_normalizer(layer) -> None:
    """The spread is proved for every m (and taken for m > 16): a claim with the variance's
    1/m doubled must fail it."""
    g = general_graph(layer, "biased", "inside", True, "train")
    assert prove_general(g)[0]["output_spread"] is True
    wrong = dataclasses.replace(g, facts={**g.facts, "k": 2 * g.facts["k"]})
    assert prove_general(wrong)[0]["output_spread"] is False


def test_large_m_takes_the_spread_from_the_general_form() -> None:
    d = derive(20, layer="layernorm")
    assert d.verified["output_spread"] is True
    assert "not redone for m = 20" in d.proof_methods["output_spread"]
