"""Every layer's notes speak of what the layer has: no μ where nothing is subtracted, no β where
there is no shift, in the prose, the claims and the proofs' descriptions of every mode of
differentiation (bnsym.family.words); and the claims that change with the layer are true for
it, checked here with plain NumPy, not with the prover that printed them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnsym.cli import main
from bnsym.family.layers import LAYERS
from bnsym.family.words import NO_BETA, UNCENTRED, own_words

#: Declarations the five do not cover, as a user writes them in a file of their own.
USER_LAYERS = """
import bnsym
ubn = bnsym.Layer(name="ubn", title="Uncentred batch norm", centred=False, params="shared",
                  beta=True, grouping="columns", modes=("train", "eval"),
                  group="one feature over the batch, not centred")
cnb = bnsym.Layer(name="cnb", title="Centred norm without shift", centred=True,
                  params="element", beta=False, grouping="rows",
                  group="the features of one sample")
"""


@pytest.fixture(scope="module")
def layer_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "userlayers.py"
    path.write_text(USER_LAYERS)
    return path


def _notes(layer: str, mode: str) -> str:
    args = ["derive", "--layer", layer, "--m", "3", "--modes", "fwd,rev", "--order", "2"]
    result = CliRunner().invoke(main, [*args, "--mode", mode], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


CASES = [(name, decl.centred, decl.beta, "train") for name, decl in LAYERS.items()]
CASES += [("batchnorm", True, True, "eval")]
CASES += [("userlayers.py:ubn", False, True, m) for m in ("train", "eval")]
CASES += [("userlayers.py:cnb", True, False, "train")]


@pytest.mark.parametrize(("layer", "centred", "beta", "mode"), CASES)
def test_the_notes_name_only_what_the_layer_has(layer, centred, beta, mode, layer_file):
    spec = layer.replace("userlayers.py", str(layer_file))
    text = _notes(spec, mode)
    if not centred:
        assert not re.search(r"μ|mean\(ẋ\)|mean\(δẋ\)|x − μ", text), layer
    if not beta:
        assert "β" not in text, [line for line in text.splitlines() if "β" in line][:3]
    # the layer's β, where it has one, is named in the forward mode too
    if beta:
        assert "β̇" in text


def test_every_rule_applies_to_a_sentence_and_leaves_the_others():
    for old, new in UNCENTRED + NO_BETA:
        assert old != new
    sentence = "the tangents ẋ, γ̇, β̇ along δx, δγ, δβ; ∂ℓ/∂x, ∂ℓ/∂γ and ∂ℓ/∂β + β̇_i"
    assert own_words(sentence, centred=True, beta=True) == sentence
    assert "β" not in own_words(sentence, centred=True, beta=False)


def test_the_uncentred_claims_hold_for_the_layer_computed_in_numpy(layer_file):
    # ubn: y = γ·x/√(ν² + ε) + β with ν² = mean(x²) over the batch
    rng = np.random.default_rng(3)
    x, eps = rng.normal(size=(5, 2)) + 0.7, 1e-3
    nu2 = (x * x).mean(axis=0)
    text = _notes(f"{layer_file}:ubn", "train")
    assert text.startswith("Uncentred batch norm, m = 3: train mode, mean square (1/m)")
    assert "γ = √(ν² + ε) and β = 0 give back yᵢ = xᵢ" in text
    gamma, beta = np.sqrt(nu2 + eps), 0.0  # the claim's γ and β
    np.testing.assert_allclose(gamma * x / np.sqrt(nu2 + eps) + beta, x, rtol=1e-14)
    # with the mean as β (the centred layers' claim) it would not hold
    assert not np.allclose(gamma * x / np.sqrt(nu2 + eps) + x.mean(axis=0), x)
    # eval mode: y = (γ/√(σ²_run + ε))·x + β is the whole fold, no running mean subtracted
    text = _notes(f"{layer_file}:ubn", "eval")
    assert "Claim: yᵢ = (γ/√(σ²_run + ε))·xᵢ + β." in text
    g, b, run = 1.3, -0.4, 2.5
    y = g * x / np.sqrt(run + eps) + b  # the layer at inference, as declared
    np.testing.assert_allclose(y, (g / np.sqrt(run + eps)) * x + b, rtol=1e-14)
