"""Proofs a student can read: each states its claim in the notes' notation and why it holds,
and the machine's check comes after as a note. The reasons given are checked as mathematics
with NumPy (the invariances they rest on), not with SymPy."""

from __future__ import annotations

import numpy as np
import pytest

from bnsym import derive
from bnsym.notes.latex import to_markdown
from bnsym.notes.text import to_text

LAYERS = {
    "batchnorm": ({}, "μ_B"),
    "batchnorm-eval": ({"mode": "eval"}, "μ_run"),
    "layernorm": ({"layer": "layernorm"}, "μ"),
    "groupnorm": ({"layer": "groupnorm", "channels": 2}, "μ"),
    "rmsnorm": ({"layer": "rmsnorm"}, "ν²"),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_proof_says_what_and_why_then_how_it_was_checked(name):
    kw, stat = LAYERS[name]
    d = derive(4, **kw)
    text = to_text(d)
    proofs = text[text.index("\nProofs\n") :].splitlines()[3:]
    for proof in d.verified:
        (k,) = [i for i, line in enumerate(proofs) if line.startswith(f"  ✓ {proof}: ")]
        assert "Claim: " in proofs[k] and " Why: " in proofs[k], proofs[k]
        assert proofs[k + 1].startswith("      checked by machine: ")
    assert stat in "\n".join(proofs)  # the layer's own notation
    md = to_markdown(d)
    # the notes list the proofs a section did not state already, each with its reason
    assert md.count("Claim: ") == md.count("Checked by machine:") >= len(d.verified) - 2


def _bn(x, eps=0.0):
    mu = x.mean()
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean() + eps)


def test_the_reasons_hold_numerically():
    """sum_dx_zero rests on shift invariance, sum_dx_xhat on scaling about the mean at
    ε = 0 (and its failure for ε > 0), mean_output_beta on Σ x̂_i = 0."""
    x = np.array([0.3, -1.2, 2.0, 0.7])
    np.testing.assert_allclose(_bn(x + 5.0, 1e-3), _bn(x, 1e-3), atol=1e-12)
    scaled = x.mean() + 3.0 * (x - x.mean())
    np.testing.assert_allclose(_bn(scaled), _bn(x), atol=1e-12)
    assert np.abs(_bn(scaled, 1e-1) - _bn(x, 1e-1)).max() > 1e-4
    assert abs(_bn(x, 1e-3).sum()) < 1e-12


def test_with_eps_outside_the_reasons_divide_by_sigma_plus_eps():
    text = to_text(derive(3, eps_placement="outside"))
    proofs = text[text.index("\nProofs\n") :]
    assert "write xᵢ − μ_B as (σ_B + ε)·x̂ᵢ" in proofs
    assert "γ = (σ_B + ε) and β = μ_B give back" in proofs
    assert "√(σ²_B + ε)" not in proofs.split("checked by machine")[0]
