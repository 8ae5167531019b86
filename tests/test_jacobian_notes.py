"""The Jacobian section's words: I and 𝟙 defined, 𝟙𝟙ᵀ never printed as eleven, and the
projector view — checked as mathematics against torch's Jacobian, not against SymPy."""

from __future__ import annotations

import numpy as np
import pytest

from bnsym import derive
from bnsym.notes.latex import to_latex
from bnsym.notes.text import to_text


def test_the_projector_claim_holds_for_a_torch_jacobian(torch):
    """J = (γ/σ)·(I − (𝟙𝟙ᵀ + x̂x̂ᵀ)/m) at ε = 0, eigenvalues 0, 0 and γ/σ (m − 2 times)."""
    m, gamma = 5, 1.7
    x = torch.tensor([0.3, -1.2, 2.0, 0.7, 4.1], dtype=torch.float64)

    def bn(v):
        mu = v.mean()
        return gamma * (v - mu) / torch.sqrt(((v - mu) ** 2).mean())

    jac = torch.autograd.functional.jacobian(bn, x).numpy()
    sigma = x.std(unbiased=False).item()
    x_hat = (x.numpy() - x.numpy().mean()) / sigma
    ones = np.ones(m)
    projector = np.eye(m) - (np.outer(ones, ones) + np.outer(x_hat, x_hat)) / m
    np.testing.assert_allclose(jac, gamma / sigma * projector, atol=1e-12)
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-12)
    eig = np.sort(np.linalg.eigvalsh((jac + jac.T) / 2))
    np.testing.assert_allclose(eig, [0, 0, *[gamma / sigma] * (m - 2)], atol=1e-12)


@pytest.mark.parametrize(
    "kw, shown",
    [
        ({}, True),
        ({"layer": "instancenorm"}, True),
        ({"variance": "unbiased"}, False),
        ({"layer": "layernorm"}, False),  # γ per element: J is diag(γ)·(…), no projector
        ({"layer": "rmsnorm"}, False),
        ({"mode": "eval"}, False),
    ],
)
def test_the_projector_view_is_stated_where_it_holds(kw, shown):
    d = derive(3, **kw)
    text = to_text(d)
    jacobian = text[text.index("Jacobian") : text.index("Identities")]
    assert "identity matrix and 𝟙 = (1, …, 1)ᵀ the vector of m ones" in jacobian
    assert ("orthogonal projector" in jacobian) is shown
    if shown:
        assert "Σᵢ x̂ᵢ = 0 (the definition of the mean)" in jacobian
        assert "∂ℓ/∂x = 0 for every ∂ℓ/∂y" in jacobian


def test_ones_times_ones_transposed_does_not_read_as_eleven():
    tex = to_latex(derive(3), standalone=True)
    assert r"\mathbf{1}\mathbf{1}" not in tex
    assert r"\mathbf{1}\,\mathbf{1}^{\top}" in tex
    assert "1 1^T" in to_text(derive(3), ascii=True)
