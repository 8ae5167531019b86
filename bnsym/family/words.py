"""Prose written once for the whole family, put in one layer's own words.

Sentences about the derivatives (the forward-mode notes, the proofs' descriptions) are written
for a centred layer with γ and β; :func:`own_words` rewrites them for a layer that is not
centred (no μ is subtracted: RMS norm, ScaleNorm, PowerNorm's statistics) or has no β (RMS
norm, or no affine parameters), so that no sentence names a statistic or a parameter the
layer does not have. A rule is a literal replacement; a new sentence that names μ or β gets
its rule here, and ``tests/test_own_words.py`` reads every layer's notes for the names.

>>> own_words("the tangents ẋ, γ̇, β̇ of x, γ, β", centred=True, beta=False)
'the tangents ẋ, γ̇ of x, γ'
"""

from __future__ import annotations

__all__ = ["own_words"]

#: For a layer that subtracts nothing.
UNCENTRED = (
    ("μ̇ = mean(ẋ), ", ""),
    ("(ẋ_i − μ̇ − x̂_i·Ḋ)", "(ẋ_i − x̂_i·Ḋ)"),
    ("From x̂·D = x − μ differentiated twice", "From x̂·D = x differentiated twice"),
    ("ḋ_i = ẋ_i − μ̇", "ḋ_i = ẋ_i"),
    ("δẋ_i − mean(δẋ) − ", "δẋ_i − "),
    (" No mean for a layer that is not centred;", " Nothing is subtracted (not centred);"),
    ("in eval mode μ̇ = Ḋ = 0", "in eval mode Ḋ = 0"),
    (
        "the tangents ẋ, γ̇, β̇ pushed forward through the forward graph, μ̇, σ̇²,",
        "the tangents ẋ, γ̇, β̇ pushed forward through the forward graph,",
    ),
)

#: For a layer without β (longer phrases first: a rule never sees another's output).
NO_BETA = (
    ("; that of ∂ℓ/∂β is 0 (the backward does not read x in it)", ""),
    ("∂ℓ/∂x, ∂ℓ/∂γ and ∂ℓ/∂β", "∂ℓ/∂x and ∂ℓ/∂γ"),
    ("∂ℓ/∂x, ∂ℓ/∂γ, ∂ℓ/∂β", "∂ℓ/∂x, ∂ℓ/∂γ"),
    (", of ∂ℓ/∂β 0", ""),
    (", Σ ẏ̄)", ")"),
    ("ḡ_γ = ḡ_β = 0", "ḡ_γ = 0"),
    (" = δβ̇ = 0", " = 0"),
    (", β̇̄", ""),
    (", β̄", ""),
    (", δβ̇", ""),
    (", δβ", ""),
    (", Δβ", ""),
    (", β̇", ""),
    (" + δβ̇_i", ""),
    (" + β̇_i", ""),
    ("x, γ, β", "x, γ"),
)


def own_words(text: str, *, centred: bool, beta: bool) -> str:
    """``text`` in the words of a layer that is ``centred`` (or not) and has a β (or not)."""
    rules = (() if centred else UNCENTRED) + (() if beta else NO_BETA)
    for old, new in rules:
        text = text.replace(old, new)
    return text
