"""The lecture notes' other forms, each stated as an identity and proved from the graph.

Lecture notes on batch normalization write a few things that the paper's Algorithm 1 does
not, some of them wrong; this module states what is true about each, for the layer being
derived, and proves it:

- ``output_spread``: (1/m)·Σ(y_i − β)² = γ²·σ²/(σ² + ε), so y's standard deviation is about
  |γ| (not √γ); for a layer with one γ per element, and for RMS norm, the spread of x̂;
- ``sqrt_outside_differs``: (σ + √ε)² = σ² + ε + 2·σ·√ε, so σ + √ε ≠ √(σ² + ε): the notes'
  √(σ² + ε) = σ + √ε is false, and the sqrt-outside layer is a different layer;
- ``constant_batch_limit`` (ε outside the root, ε > 0): at a group whose values are all
  equal, σ = √σ² has no derivative, but y does; ∂ℓ/∂x_i = (γ/ε)·(∂ℓ/∂y_i − mean ∂ℓ/∂y);
  ``constant_batch_no_limit`` (ε outside the root, ε = 0): there y jumps by 2·γ·x̂_i(h)
  between c + t·h and c − t·h however small t > 0 is, so it has no limit and no derivative;
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
    XHAT_OF_H,
    Y_JUMP,
    Y_JUMP_AT_0,
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
    if c.placement == "sqrt-outside" and not c.eps_zero:  # at ε = 0 the layers coincide
        steps.append(_sqrt_outside_differs(c, c.train))
    if c.train and c.placement != "inside":
        if c.eps_zero:
            steps.append(_constant_batch_no_limit(c, yframe))
        else:
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
    if of_y:
        beta = s.beta if s.layer.beta else sp.Integer(0)
        lhs = sp.Add(*[(yi - beta) ** 2 for yi in c.y_graph]) / m
    else:
        lhs = sp.Add(*[xh**2 for xh in c.x_hat_graph]) / m

    def holds(st: Step) -> bool:
        # The statistic in the numerator is its definition (k·Σ(x_i − μ)², a polynomial in
        # the frame); the denominator is the graph's own, which the frame reads as one
        # positive symbol: the claim is about the statistic, not about a free symbol.
        numerator = {s.var: c.definition[s.var]}
        rhs = sp.Mul(
            *[
                f if (f.is_Pow and f.exp.is_negative) else f.xreplace(numerator)
                for f in sp.Mul.make_args(st.rhs)
            ]
        )
        return bool(yframe.is_zero(lhs - rhs))

    parts = [scale, shown_var, sp.Pow(D_shown, -2)]
    rhs = sp.Mul(*[p for p in parts if p != 1], evaluate=False)
    if c.placement == "inside":
        rhs = scale * shown_var / (s.var + s.eps)
    stat = c.stat
    den = den_text(c.placement, f"{stat}²", stat)
    if of_y:
        note = (
            f"the spread of the output: y's standard deviation is |γ|·{stat}/"
            + (den if c.placement == "inside" else f"({den})")
            + ", about |γ| (exactly |γ| at ε = 0), not √γ: γ sets the spread as β sets the mean"
        )
        if mk != 1:
            note += (
                f"; {stat}² here divides by m − 1, so the spread (which divides by m) has (m − 1)/m"
            )
    else:
        y_part = f"yᵢ − {c.beta_txt}" if s.layer.beta else "yᵢ"
        one = {"element": "one γ per element", "channel": "one γ per channel"}
        note = (
            "the spread of x̂: "
            + ("its mean is 0 and " if centred else "")
            + "its mean square is below 1 by the ε in the denominator"
            + (
                f"; with {one[s.layer.params]}, each {y_part} is {c.gamma_txt}·x̂ᵢ"
                if c.affine and not c.shared
                else ""
            )
        )
    what = "(1/m)·Σᵢ (yᵢ − β)²" if of_y else "(1/m)·Σᵢ x̂ᵢ²"
    return c.claim(  # above m = 16, the general form's proof for every m
        Step(SPREAD_Y if of_y else SPREAD_XHAT, rhs, "output_spread", note=note),
        holds,
        f"{what} from the graph minus the right-hand side, with {c.var_txt} in its numerator "
        "written as its definition, is the zero polynomial",
    )


def _sqrt_outside_differs(c: Context, train: bool) -> Step:
    """(σ + √ε)² = σ² + ε + 2·σ·√ε, with 2·σ·√ε > 0 for σ, ε > 0: σ + √ε ≠ √(σ² + ε)."""
    s = c.s
    sigma = s.sigma if train else sp.Symbol("sigma", positive=True)
    root_eps = sp.sqrt(s.eps)
    square = (sigma + root_eps) ** 2
    rhs = sp.Add(sigma**2, s.eps, 2 * sigma * root_eps, evaluate=False)
    root = c.stat if train else "σ"  # a statement about numbers: σ + √ε against √(σ² + ε)
    var = c.var_txt
    paper = c.s.layer.paper
    return c.claim(
        Step(
            sp.Pow(sigma + root_eps, 2, evaluate=False),
            rhs,
            "sqrt_outside_differs",
            note=f"so {root} + √ε ≠ √({root}² + ε) whenever {root} > 0 and ε > 0: the identity "
            f"√({root}² + ε) = {root} + √ε is false, and this layer, which divides by "
            f"{root} + √ε, is a different layer from "
            + (f"{paper}'s" if paper else "the layer that divides by")
            + f" √({var if train else 'σ²'} + ε) (its x̂ is smaller)",
        ),
        lambda st: sp.expand(square - st.rhs) == 0 and bool((2 * sigma * root_eps).is_positive),
        f"({root} + √ε)² minus the right-hand side expands to 0, and 2·{root}·√ε is positive for "
        f"positive {root} and ε (SymPy's assumptions)",
    )


def _limit_parts(c: Context) -> tuple[list[sp.Expr], list[sp.Expr], sp.Expr]:
    """γ_k(i), β_k(i) per element (1, 0 without them) and what x_i − μ is (x_i alone where
    nothing is subtracted)."""
    s, m = c.s, c.m
    gammas = [s.gamma_of(i) if c.affine else sp.Integer(1) for i in range(m)]
    betas = [s.beta_of(i) if (c.affine and s.layer.beta) else sp.Integer(0) for i in range(m)]
    return gammas, betas, (s.mu if s.layer.centred else sp.Integer(0))


def _per_element(c: Context, expr: sp.Expr, i: int) -> sp.Expr:
    """A statement's right-hand side for element i: ∂ℓ/∂y_i, γ_i and the sums as the graph's."""
    s = c.s
    gammas, _, _ = _limit_parts(c)
    g = [gi * dyi for gi, dyi in zip(gammas, s.dy, strict=True)]
    return expr.xreplace(
        {DY_I: s.dy[i], GAMMA_I: gammas[i], SUM_DY: sp.Add(*s.dy), SUM_G: sp.Add(*g)}
    )


def _constant_batch_limit(c: Context, yframe: Any) -> tuple[Step, tuple[sp.Expr, ...]]:
    """At a group whose values are all equal (all 0 for RMS norm), with ε outside the root:
    y(c + h) = y(c) + J·h + O(|h|²) with J = diag(γ)/e·(I − 𝟙𝟙ᵀ/m), e = ε or √ε.

    Proof: e·(y_i − β_i) − γ_i·(x_i − μ) + γ_i·(x_i − μ)·σ/D = 0 for every batch (a polynomial
    identity in the frame, with D = σ + e); at x = c + h it says y_i(c + h) − y_i(c) −
    (γ_i/e)·(h_i − mean h) = −γ_i·(h_i − mean h)·σ(h)/(e·D), and |h_i − mean h|·σ(h) ≤ |h|², so the
    remainder is O(|h|²): y is differentiable at c with that J, although σ(h) is not. The
    statement's right-hand side is then compared with Jᵀ·∂ℓ/∂y, J read off the identity's
    linear part γ_i·(x_i − μ)/e (μ as the graph defines it)."""
    s, m = c.s, c.m
    centred = s.layer.centred
    gammas, betas, mu = _limit_parts(c)
    sigma = sp.sqrt(s.var)
    remainder = all(
        yframe.is_zero(
            c.e * (c.y_graph[i] - betas[i])
            - gammas[i] * (s.x[i] - mu)
            + gammas[i] * (s.x[i] - mu) * sigma / c.D
        )
        for i in range(m)
    )
    # J_ji = γ_j/e·∂(x_j − μ)/∂x_i, with μ the graph's mean (0 where nothing is subtracted)
    mean = c.definition[s.mu] if centred else sp.Integer(0)
    limit = [
        sp.Add(*[s.dy[j] * gammas[j] / c.e * sp.diff(s.x[j] - mean, s.x[i]) for j in range(m)])
        for i in range(m)
    ]

    def holds(st: Step) -> bool:
        return remainder and all(
            sp.expand(_per_element(c, st.rhs, i) - limit[i]) == 0 for i in range(m)
        )

    shared = c.shared
    gamma = s.gamma if (c.affine and shared) else sp.Integer(1)
    g_i = DY_I if shared else GAMMA_I * DY_I
    total = SUM_DY if shared else SUM_G
    inner = sp.Add(g_i, -total / m, evaluate=False) if centred else g_i
    rhs = sp.Mul(gamma / c.e, inner, evaluate=False)
    what = "whose values are all equal" if centred else "whose values are all 0"
    stat, e = c.stat, ("√ε" if c.placement == "sqrt-outside" else "ε")
    g_txt = "γ" if shared else "diag(γ)"
    centred_x = "xᵢ − μ" if centred else "xᵢ"
    note = (
        f"at a group {what} ({stat} = 0): {stat} = √{stat}² has no derivative there, but y "
        f"does, since every {centred_x} is 0 there: y(c + h) = y(c) + J·h + O(|h|²) with "
        f"J = {f'({g_txt}/e)·(I − 𝟙𝟙ᵀ/m)' if centred else f'{g_txt}/e'}, e = {e}; this is the "
        "limit of the closed form, and what the generated code returns. The second derivative "
        "does not exist there"
    )
    y_txt = f"yᵢ − {'β' if shared else 'βᵢ'}" if (c.affine and s.layer.beta) else "yᵢ"
    g_i_txt = ("γ" if shared else "γᵢ") if c.affine else "1"
    step = c.claim(
        Step(DX_CONSTANT, rhs, "constant_batch_limit", note=note),
        holds,
        f"e·({y_txt}) − {g_i_txt}·({centred_x}) + {g_i_txt}·({centred_x})·{stat}/({stat} + e), "
        f"e = {e}, with yᵢ from the graph, is the zero polynomial for every i; and the "
        "right-hand side equals Σ_j ∂ℓ/∂y_j·J_ji for every i, J read off its linear part",
    )
    return step, tuple(limit)


def _constant_batch_no_limit(c: Context, yframe: Any) -> Step:
    """ε outside the root and ε = 0: at a constant group c (0 for RMS norm) y has no limit, so
    no derivative. For every h and t > 0, y_i(c + t·h) − y_i(c − t·h) = 2·γ_i·x̂_i(h), which
    does not shrink with t: two lemmas on the graph's statistics (the mean of c ± t·h is
    c ± t·mean(h), the variance t²·var(h); expanded), then each side in the ring with a = t."""
    s = c.s
    centred = s.layer.centred
    gammas, _, _ = _limit_parts(c)
    t, shift = c.a, (c.c if centred else sp.Integer(0))
    var_def = c.definition[s.var]
    mean_def = c.definition[s.mu] if centred else None

    def moved(sign: int) -> dict[sp.Basic, sp.Expr] | None:
        """x → c + sign·t·x with the statistics moved accordingly (None if a lemma fails)."""
        scaled = {xi: shift + sign * t * xi for xi in s.x}
        after: dict[sp.Basic, sp.Expr] = {**scaled, s.var: t**2 * s.var, s.eps: 0}
        v = var_def
        if mean_def is not None:
            if sp.expand(mean_def.xreplace(scaled) - (shift + sign * t * mean_def)) != 0:
                return None
            v = v.xreplace({s.mu: shift + sign * t * s.mu})
            after[s.mu] = shift + sign * t * s.mu
        if sp.expand(v.xreplace(scaled) - t**2 * var_def) != 0:
            return None
        return after

    def holds(st: Step) -> bool:
        plus, minus = moved(1), moved(-1)
        if plus is None or minus is None:
            return False
        at_0 = {s.eps: 0}
        return all(
            yframe.is_zero(
                y.xreplace(plus)
                - y.xreplace(minus)
                - st.rhs.xreplace({XHAT_OF_H: xh.xreplace(at_0), GAMMA_I: gammas[i]})
            )
            for i, (y, xh) in enumerate(zip(c.y_graph, c.x_hat_graph, strict=True))
        )

    gamma = (s.gamma if c.shared else GAMMA_I) if c.affine else sp.Integer(1)
    stat = c.stat
    what = "whose values are all equal, c" if centred else "whose values are all 0"
    points = "c + t·h and c − t·h" if centred else "t·h and −t·h"
    note = (
        f"at ε = 0 there is no limit at a group {what} ({stat} = 0): for any h with "
        f"x̂(h) ≠ 0, y jumps by this much between {points} "
        "however small t > 0 is, so y has no limit there and ∂ℓ/∂xᵢ does not exist; with "
        "ε > 0 it does (the limit of the closed form)"
    )
    return c.claim(
        Step(
            Y_JUMP if centred else Y_JUMP_AT_0,
            sp.Mul(2, gamma, XHAT_OF_H),
            "constant_batch_no_limit",
            note=note,
        ),
        holds,
        "with ε = 0 and t > 0, the graph's statistics at "
        + ("c ± t·h are c ± t·μ(h) and t²·σ²(h)" if centred else f"±t·h are t²·{stat}²(h)")
        + " (each difference expands to zero), and then yᵢ("
        + ("c + t·h) − yᵢ(c − t·h)" if centred else "t·h) − yᵢ(−t·h)")
        + " minus the right-hand side, with x̂ᵢ(h) the graph's x̂ᵢ at h, is the zero "
        "polynomial for every i",
    )
