"""The lecture notes' other forms, each stated as an identity and proved from the graph.

Lecture notes on batch normalization write a few things that the paper's Algorithm 1 does
not, some of them wrong; this module states what is true about each, for the layer being
derived, and proves it:

- ``output_spread``: (1/m)·Σ(y_i − β)² = γ²·σ²/(σ² + ε), so y's standard deviation is about
  |γ| (not √γ); for a layer with one γ per element, and for RMS norm, the spread of x̂;
- ``undo_population`` (batch norm): γ = √(σ²_B + ε), β = μ_B undo the normalization of one
  batch only; the paper's statement, with E[x] and Var[x], is about the inference layer;
- ``sqrt_outside_differs``: (σ + √ε)² = σ² + ε + 2·σ·√ε, so σ + √ε ≠ √(σ² + ε): the notes'
  √(σ² + ε) = σ + √ε is false, and the sqrt-outside layer is a different layer;
- ``constant_batch_limit`` (ε outside the root): at a group whose values are all equal,
  σ = √σ² has no derivative, but y does; ∂ℓ/∂x_i = (γ/ε)·(∂ℓ/∂y_i − mean ∂ℓ/∂y);
- ``inference_fold`` (eval mode) and ``running_var_unbiased`` (batch norm): Algorithm 2's
  y = γ/√(Var[x] + ε)·x + (β − γ·E[x]/√(Var[x] + ε)), with Var[x] = m/(m − 1)·E_B[σ²_B].

Each proof works on the derivation's own forward graph, in the frame of
:mod:`bnsym.proofs.ring` (a Laurent polynomial ring) where that frame can hold the claim,
else with small SymPy expressions whose equality SymPy decides exactly. SymPy only.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from bnsym.core.graph import Step, denominator
from bnsym.proofs.display import (
    DX_CONSTANT,
    DY_I,
    E_X,
    GAMMA_I,
    SPREAD_XHAT,
    SPREAD_Y,
    SUM_DY,
    SUM_G,
    VAR_X,
    X_I,
    Y_I,
    Y_POPULATION,
)

EXPECTED_VAR = sp.Symbol("E_B[sigma2_B]")


def forms(c: Any, yframe: Any, train: bool) -> tuple[list[Step], dict[str, Any]]:
    """The identities of this module that hold for the derivation ``c`` (a proof context of
    :mod:`bnsym.proofs.batchnorm` or :mod:`bnsym.proofs.family`: its graph, frame and record), and
    the explicit results they add (``dx_limit``: ∂ℓ/∂x_i at a constant group, in the inputs).
    ``yframe`` is the ring that holds γ, β and the graph's y_i."""
    s = c.s
    steps: list[Step] = []
    extra: dict[str, Any] = {}
    batchnorm = s.layer.name == "batchnorm"
    if train:
        steps.append(_output_spread(c, yframe))
        if batchnorm and c.affine:
            steps.append(_undo_population(c))
    if c.placement == "sqrt-outside":
        steps.append(_sqrt_outside_differs(c, train))
    if train and c.placement != "inside":
        step, extra["dx_limit"] = _constant_batch_limit(c, yframe)
        steps.append(step)
    if not train:
        steps.append(_inference_fold(c, yframe))
    if batchnorm:
        steps.append(_running_var_unbiased(c))
    return steps, extra


def _shared(c: Any) -> bool:
    return bool(c.s.shared or not c.affine)


def _output_spread(c: Any, yframe: Any) -> Step:
    """(1/m)·Σ(y_i − β)² = γ²·σ²/D² where γ and β are one pair per group (σ² the biased
    variance: (m − 1)/m times the unbiased one); else the same for x̂: (1/m)·Σx̂_i² = σ²/D²."""
    s, m = c.s, c.m
    centred = s.layer.centred
    of_y = centred and c.affine and _shared(c)
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
                _den_text(c.placement, "σ²", "σ")
                if c.placement == "inside"
                else f"({_den_text(c.placement, 'σ²', 'σ')})"
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
                if c.affine and not _shared(c)
                else ""
            )
        )
    return Step(SPREAD_Y if of_y else SPREAD_XHAT, rhs, "output_spread", note=note)


def _undo_population(c: Any) -> Step:
    """The paper's E[x], Var[x] version of "γ and β undo the normalization", beside the
    one-batch version: exact for the inference layer; in training only for one batch."""
    s = c.s
    gamma, beta, x = s.gamma, s.beta, X_I
    D_pop = denominator(VAR_X, s.eps, c.placement)
    inference = gamma * (x - E_X) / D_pop + beta
    population = sp.simplify(inference.xreplace({gamma: D_pop, beta: E_X}) - x) == 0
    # For contrast: γ, β set from the batch (0, 2) (μ_B = 1, σ²_B = 1) do not undo the batch
    # (0, 4) (μ_B = 2, σ²_B = 4): at ε = 0 its second value comes out as 3, not 4.
    one = {s.var: 1, s.eps: 0}
    gamma_1 = c.D.xreplace(one)
    other = gamma_1 * (4 - 2) / c.D.xreplace({s.var: 4, s.eps: 0}) + 1
    one_batch_only = sp.simplify(other - 4) != 0
    c.record(
        "undo_population",
        population and one_batch_only,
        "γ = "
        + _den_text(c.placement, "Var[x]", "√Var[x]")
        + " and β = E[x] substituted into the inference layer give x, as a SymPy identity; "
        "and γ, β taken from the batch (0, 2) give 3, not 4, for the second value of the "
        "batch (0, 4) at ε = 0",
    )
    return Step(
        Y_POPULATION,
        X_I,
        "undo_population",
        note="the paper's statement: with γ = "
        + _den_text(c.placement, "Var[x]", "√Var[x]")
        + " and β = E[x], the population's statistics, the inference layer (Algorithm 2) "
        "returns every input; γ = "
        + _den_text(c.placement, "σ²_B", "σ_B")
        + " and β = μ_B undo one batch only, since γ and β are shared by every batch while "
        "μ_B and σ²_B change from batch to batch",
    )


def _den_text(placement: str, var: str, root: str) -> str:
    """x̂'s denominator in words: √(var + ε), root + ε or root + √ε."""
    return {
        "inside": f"√({var} + ε)",
        "outside": f"{root} + ε",
        "sqrt-outside": f"{root} + √ε",
    }[placement]


def _sqrt_outside_differs(c: Any, train: bool) -> Step:
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


def _constant_batch_limit(c: Any, yframe: Any) -> tuple[Step, tuple[sp.Expr, ...]]:
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
    shared = _shared(c)
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


def _inference_fold(c: Any, yframe: Any) -> Step:
    """Algorithm 2: y_i = (γ/D)·x_i + (β − γ·μ_run/D), one multiply-add per feature."""
    s = c.s
    gamma = s.gamma if c.affine else sp.Integer(1)
    beta = s.beta if c.affine else sp.Integer(0)
    D = c.D
    scale, shift = gamma / D, beta - gamma * s.running_mean / D
    ok = all(
        yframe.is_zero(yi - (scale * xi + shift)) for yi, xi in zip(c.y_graph, s.x, strict=True)
    )
    c.record(
        "inference_fold",
        ok,
        "each yᵢ of the graph minus (γ/D)·xᵢ − (β − γ·μ_run/D) is the zero polynomial",
    )
    rhs = sp.Add(
        sp.Mul(scale, X_I, evaluate=False),
        sp.Add(beta, -gamma * s.running_mean / D, evaluate=False),
        evaluate=False,
    )
    return Step(
        Y_I,
        rhs,
        "inference_fold",
        note="Algorithm 2 folds the inference layer into one multiply-add per feature, "
        "computed once; μ_run and σ²_run stand for E[x] = E_B[μ_B] and Var[x] = "
        "m/(m − 1)·E_B[σ²_B] over the training batches (below)",
    )


def _running_var_unbiased(c: Any) -> Step:
    """E_B[σ²_B] = (m − 1)/m·Var[x] for independent x_i of variance Var[x] (σ²_B biased), so
    Algorithm 2 estimates Var[x] as m/(m − 1)·E_B[σ²_B].

    Proof, exact for this m: with x_i = E[x] + z_i and w the mean of the z_i,
    σ²_B = (1/m)·Σ(z_i − w)² is a quadratic form in the z_i; E[z_i·z_j] = Var[x]·δ_ij, so
    E_B[σ²_B] is Var[x] times the sum of its diagonal coefficients."""
    m = c.m
    # A quadratic form Q(z) = Σ a_ij·z_i·z_j has a_11 = Q(e_1); this one is symmetric in the
    # z_i, so its m diagonal coefficients are all Q(e_1) = (1/m)·Σ_i (δ_i1 − 1/m)².
    e1 = [sp.Integer(1)] + [sp.Integer(0)] * (m - 1)
    a11 = sum(((zi - sp.Rational(1, m)) ** 2 for zi in e1), sp.Integer(0)) / m
    ok = m * a11 == sp.Rational(m - 1, m)
    c.record(
        "running_var_unbiased",
        ok,
        f"for m = {m}, σ²_B = (1/m)·Σᵢ(zᵢ − (1/m)·Σⱼ zⱼ)² is a quadratic form symmetric in "
        "the zᵢ, so its m diagonal coefficients all equal its value at z = (1, 0, …, 0); they "
        "sum to (m − 1)/m exactly, and E[zᵢ·zⱼ] = Var[x] for i = j, 0 otherwise",
    )
    return Step(
        EXPECTED_VAR,
        sp.Mul(sp.Rational(m - 1, m), VAR_X, evaluate=False),
        "running_var_unbiased",
        note="over batches of m independent values: the batch variance, which divides by m, "
        "is low on average by (m − 1)/m, so Algorithm 2 estimates Var[x] = m/(m − 1)·E_B[σ²_B] "
        "= E_B of the variance that divides by m − 1. That 1/(m − 1) belongs to the running "
        "variance, not to the normalization of the batch, which divides by m (Algorithm 1)",
    )
