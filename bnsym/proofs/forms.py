"""The lecture notes' other forms, each stated as an identity and proved from the graph.

Lecture notes on batch normalization write a few things that the paper's Algorithm 1 does
not, some of them wrong; this module states what is true about each, for the layer being
derived, and proves it:

- ``output_spread``: (1/m)·Σ(y_i − β)² = γ²·σ²/(σ² + ε), so y's standard deviation is about
  |γ| (not √γ); for a layer with one γ per element, and for RMS norm, the spread of x̂;
- ``sqrt_outside_differs``: (σ + √ε)² = σ² + ε + 2·σ·√ε, so σ + √ε ≠ √(σ² + ε): the notes'
  √(σ² + ε) = σ + √ε is false, and the sqrt-outside layer is a different layer;
- ``constant_batch_limit`` (ε outside the root): at a group whose values are all equal,
  σ = √σ² has no derivative, but y does; ∂ℓ/∂x_i = (γ/ε)·(∂ℓ/∂y_i − mean ∂ℓ/∂y);
- for a layer that keeps running statistics (an eval mode): ``undo_population``,
  ``inference_fold`` and ``running_var_unbiased`` (:mod:`bnsym.proofs.running`).

Each proof works on the derivation's own forward graph, in the frame of
:mod:`bnsym.proofs.frame` (a Laurent polynomial ring) where that frame can hold the claim,
else with small SymPy expressions whose equality SymPy decides exactly. SymPy only.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from bnsym.core.graph import Step
from bnsym.proofs import running as _running
from bnsym.proofs.display import (
    DX_CONSTANT,
    DY_I,
    GAMMA_I,
    SPREAD_XHAT,
    SPREAD_Y,
    SUM_DY,
    SUM_G,
)
from bnsym.proofs.frame import Context, den_text

__all__ = ["forms"]


def forms(c: Context, yframe: Any) -> tuple[list[Step], dict[str, Any]]:
    """The identities of this module that hold for the derivation ``c`` (its graph, frame and
    record: :class:`bnsym.proofs.frame.Context`), and the explicit results they add
    (``dx_limit``: ∂ℓ/∂x_i at a constant group, in the inputs). ``yframe`` is the ring that
    holds γ, β and the graph's y_i."""
    steps: list[Step] = []
    extra: dict[str, Any] = {}
    decl = c.s.layer
    if c.train:
        steps.append(_output_spread(c, yframe))
        if _running.keeps_running_statistics(decl) and c.affine and decl.beta and c.s.shared:
            steps.append(_running.undo_population(c))
    if c.placement == "sqrt-outside":
        steps.append(_sqrt_outside_differs(c, c.train))
    if c.train and c.placement != "inside":
        step, extra["dx_limit"] = _constant_batch_limit(c, yframe)
        steps.append(step)
    if not c.train:
        steps.append(_running.inference_fold(c, yframe))
    if _running.keeps_running_statistics(decl):
        steps.append(_running.running_var_unbiased(c))
    return steps, extra


def _output_spread(c: Context, yframe: Any) -> Step:
    """(1/m)·Σ(y_i − β)² = γ²·σ²/D² where γ and β are one pair per group (σ² the biased
    variance: (m − 1)/m times the unbiased one); else the same for x̂: (1/m)·Σx̂_i² = σ²/D²."""
    s, m = c.s, c.m
    centred = s.layer.centred
    of_y = centred and c.affine and c.shared
    mk = m * c.k  # 1 (biased, and RMS norm), m/(m − 1) (unbiased)
    shown_var = s.var / mk
    D_shown = sp.sqrt(s.var + s.eps) if c.placement == "inside" else s.sigma + c.e
    scale = s.gamma**2 if of_y else sp.Integer(1)

    def proof() -> bool:
        if of_y:
            beta = s.beta if s.layer.beta else sp.Integer(0)
            lhs = sp.Add(*[(yi - beta) ** 2 for yi in c.y_graph]) / m
        else:
            lhs = sp.Add(*[xh**2 for xh in c.x_hat_graph]) / m
        # σ² in the numerator is its definition (k·Σ(x_i − μ)², a polynomial in the frame),
        # the denominator is the graph's own: the claim is about the statistic, not a symbol.
        claim = scale * c.definition[s.var] / (mk * c.D**2)
        return bool(yframe.is_zero(lhs - claim))

    what = "(1/m)·Σᵢ (yᵢ − β)²" if of_y else "(1/m)·Σᵢ x̂ᵢ²"
    c.check(  # above m = 16, the general form's proof for every m
        "output_spread",
        proof,
        f"{what} from the graph minus the right-hand side, with the variance written as its "
        "definition, is the zero polynomial",
    )
    rhs = sp.Mul(scale, shown_var, sp.Pow(D_shown, -2), evaluate=False)
    if c.placement == "inside":
        rhs = scale * shown_var / (s.var + s.eps)
    if of_y:
        note = (
            "the spread of the output: y's standard deviation is |γ|·σ/"
            + (
                den_text(c.placement, "σ²", "σ")
                if c.placement == "inside"
                else f"({den_text(c.placement, 'σ²', 'σ')})"
            )
            + ", about |γ| (exactly |γ| at ε = 0), not √γ: γ sets the spread as β sets the mean"
        )
        if mk != 1:
            note += "; σ² here divides by m − 1, so the spread (which divides by m) has (m − 1)/m"
    else:
        note = (
            "the spread of x̂: "
            + ("its mean is 0 and " if centred else "")
            + "its mean square is below 1 by the ε in the denominator"
            + (
                "; with one γ per element, each yᵢ − βᵢ is γᵢ·x̂ᵢ"
                if c.affine and not c.shared
                else ""
            )
        )
    return Step(SPREAD_Y if of_y else SPREAD_XHAT, rhs, "output_spread", note=note)


def _sqrt_outside_differs(c: Context, train: bool) -> Step:
    """(σ + √ε)² = σ² + ε + 2·σ·√ε, with 2·σ·√ε > 0 for σ, ε > 0: σ + √ε ≠ √(σ² + ε)."""
    s = c.s
    sigma = s.sigma if train else sp.Symbol("sigma", positive=True)
    root_eps = sp.sqrt(s.eps)
    square = (sigma + root_eps) ** 2
    rhs = sp.Add(sigma**2, s.eps, 2 * sigma * root_eps, evaluate=False)
    ok = sp.expand(square - rhs) == 0 and bool((2 * sigma * root_eps).is_positive)
    c.record(
        "sqrt_outside_differs",
        ok,
        "(σ + √ε)² − (σ² + ε + 2·σ·√ε) expands to 0, and 2·σ·√ε is positive for positive σ "
        "and ε (SymPy's assumptions)",
    )
    return Step(
        sp.Pow(sigma + root_eps, 2, evaluate=False),
        rhs,
        "sqrt_outside_differs",
        note="so σ + √ε ≠ √(σ² + ε) whenever σ > 0 and ε > 0: the identity √(σ² + ε) = σ + √ε "
        "is false, and this layer, which divides by σ + √ε, is a different layer from "
        "Algorithm 1's √(σ² + ε) (its x̂ is smaller)",
    )


def _constant_batch_limit(c: Context, yframe: Any) -> tuple[Step, tuple[sp.Expr, ...]]:
    """At a group whose values are all equal (all 0 for RMS norm), with ε outside the root:
    y(c + h) = y(c) + J·h + O(|h|²) with J = diag(γ)/e·(I − 𝟙𝟙ᵀ/m), e = ε or √ε.

    Proof: e·(y_i − β_i) − γ_i·(x_i − μ) + γ_i·(x_i − μ)·σ/D = 0 for every batch (a polynomial
    identity in the frame, with D = σ + e); at x = c + h it says y_i(c + h) − y_i(c) −
    (γ_i/e)·(h_i − mean h) = −γ_i·(h_i − mean h)·σ(h)/(e·D), and |h_i − mean h|·σ(h) ≤ |h|², so the
    remainder is O(|h|²): y is differentiable at c with that J, although σ(h) is not."""
    s, m = c.s, c.m
    centred = s.layer.centred
    mu = s.mu if centred else sp.Integer(0)
    sigma = sp.sqrt(s.var)
    gammas = [s.gamma_of(i) if c.affine else sp.Integer(1) for i in range(m)]
    betas = [s.beta_of(i) if (c.affine and s.layer.beta) else sp.Integer(0) for i in range(m)]
    ok = all(
        yframe.is_zero(
            c.e * (c.y_graph[i] - betas[i])
            - gammas[i] * (s.x[i] - mu)
            + gammas[i] * (s.x[i] - mu) * sigma / c.D
        )
        for i in range(m)
    )
    c.record(
        "constant_batch_limit",
        ok,
        "e·(yᵢ − βᵢ) − γᵢ·(xᵢ − μ) + γᵢ·(xᵢ − μ)·σ/(σ + e), e = "
        + ("√ε" if c.placement == "sqrt-outside" else "ε")
        + ", with yᵢ from the graph, is the zero polynomial for every i",
    )
    g = [gi * dyi for gi, dyi in zip(gammas, s.dy, strict=True)]
    mean_g = sp.Add(*g) / m if centred else sp.Integer(0)
    limit = tuple((gi - mean_g) / c.e for gi in g)
    shared = c.shared
    gamma = s.gamma if (c.affine and shared) else sp.Integer(1)
    g_i = DY_I if shared else GAMMA_I * DY_I
    total = SUM_DY if shared else SUM_G
    inner = sp.Add(g_i, -total / m, evaluate=False) if centred else g_i
    rhs = sp.Mul(gamma / c.e, inner, evaluate=False)
    what = "whose values are all equal" if centred else "whose values are all 0"
    stat = "σ" if centred else "ν"
    note = (
        f"at a group {what} ({stat} = 0): {stat} = √{stat}² has no derivative there, but y "
        f"does, since every xᵢ − μ is 0 there: y(c + h) = y(c) + J·h + O(|h|²) with "
        f"J = {'(γ/e)·(I − 𝟙𝟙ᵀ/m)' if centred else 'diag(γ)/e'}, "
        f"e = {'√ε' if c.placement == 'sqrt-outside' else 'ε'}; "
        "this is the limit of the closed form, and what the generated code returns. The "
        "second derivative does not exist there"
    )
    return Step(DX_CONSTANT, rhs, "constant_batch_limit", note=note), limit
