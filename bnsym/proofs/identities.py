"""The identities of a derivation, each stated where it holds and proved from the graph.

In train mode (the group's own statistics):

- ``sum_dx_zero`` (centred): Σ_i ∂ℓ/∂x_i = 0, for any ε;
- ``sum_dx_xhat``: Σ_i ∂ℓ/∂x_i·x̂_i = γ·e·Σ_j ∂ℓ/∂y_j·x̂_j/D³ with ε inside the root
  (e = ε) and /D² with it outside (e = ε or √ε): zero exactly at ε = 0 (with a γ per element
  or channel, γ_j inside the sum instead);
- ``mean_output_beta`` (centred, one γ and β for the group): (1/m)·Σ_i y_i = β;
- ``scale_shift_invariance`` (centred) or ``scale_invariance``: at ε = 0, x → a·x + c (or
  x → a·x) leaves y unchanged.

In every mode, with γ: ``undo_normalization``, γ = x̂'s denominator and β = the mean undo the
normalization. Each proof reads the derivation's own graph in the frame of
:mod:`bnsym.proofs.frame`. SymPy only.
"""

from __future__ import annotations

import sympy as sp

from bnsym.core.graph import Step
from bnsym.proofs.display import (
    MEAN_Y,
    SUM_DX,
    SUM_DX_XHAT,
    X_I,
    Y_I,
    Y_SCALED,
    Y_SCALED_ONLY,
    Y_UNDONE,
)
from bnsym.proofs.frame import Context
from bnsym.proofs.ring import Laurent, place_eps

__all__ = ["identities"]


def identities(c: Context) -> tuple[Step, ...]:
    """The identities of the module docstring that hold for the variant of ``c``, each
    recorded in ``c`` with its proof."""
    steps: list[Step] = []
    if c.train:
        steps += _sums(c)
        steps.append(_invariance(c))
    if c.affine:
        steps.append(_undo(c))
    return tuple(steps)


def _sums(c: Context) -> list[Step]:
    """Σ∂ℓ/∂x_i = 0 (centred), the ε residual of Σ∂ℓ/∂x_i·x̂_i, and mean(y) = β (centred,
    one γ and β for the group)."""
    m, frame = c.m, c.frame
    steps = []
    if c.centred:
        steps.append(
            c.claim(
                Step(SUM_DX, sp.Integer(0), "sum_dx_zero", note="for any ε"),
                lambda st: sum(c.dx_in_frame, frame.ring.zero) == frame(st.rhs),
                "Σ_i of the chain-rule ∂ℓ/∂x_i minus the right-hand side is the zero "
                "polynomial, for any ε",
            )
        )
    residual = c.scale * c.e * c.sum_g_xhat / (c.D**3 if c.placement == "inside" else c.D**2)
    appears = "Σ_i x̂_i and Σ_i x̂_i² appear" if c.centred else "Σ_i x̂_i² appears"
    values = (
        f"these are 0 and ({c.n_txt})·{c.var_txt}/({c.den_txt})²"
        if c.centred
        else f"it is ({c.n_txt})·{c.var_txt}/({c.den_txt})²"
    )
    steps.append(
        c.claim(
            Step(
                SUM_DX_XHAT,
                residual,
                "sum_dx_xhat",
                note="zero exactly when ε = 0: with ε > 0 the gradient keeps a small x̂ part",
            ),
            lambda st: _sum_dx_x_hat(c, st.rhs),
            "multiplying the (proved) closed form by x̂_i and summing gives an identity of "
            f"polynomials in which only {appears}; with the graph's x̂_i {values}, and what "
            f"remains equals the right-hand side exactly; it is 0 exactly when ε = 0 (or when "
            f"{c.sum_txt} = 0)",
        )
    )
    if c.centred and c.shared:
        steps.append(
            c.claim(
                Step(MEAN_Y, c.betas[0], "mean_output_beta", note="whatever the input"),
                lambda st: c.yframe.is_zero(sp.Add(*c.y_graph) / m - st.rhs),
                "(1/m)·Σ_i y_i minus the right-hand side, with y_i from the forward graph, is "
                f"the zero polynomial once Σ_i (x_i − {c.mu_txt}) = 0 is used",
            )
        )
    return steps


def _sum_dx_x_hat(c: Context, residual: sp.Expr) -> bool:
    """Prove Σ_i x̂_i·∂ℓ/∂x_i = ``residual`` in three exact steps.

    (1) Σ_i u_i·closed_i, for the closed form as shown (proved equal to the chain rule) with
    x̂_i = u_i free, is (γ/D)·(A − [centred]·B·P1/m − k·r·A·P2), A = Σ_j g_j·u_j,
    B = Σ_j g_j, P1 = Σ u_i, P2 = Σ u_i²: both sides are linear in the ∂ℓ/∂y_j and the same
    formula in every element, so the coefficient of ∂ℓ/∂y_1 decides (O(m) terms); (2) the
    graph's x̂_i have P1 = 0 (centred) and P2 = σ²/(k·D²), by the definitions of the
    statistics; (3) what remains, (γ/D)·A·(1 − r·σ²/D²), is the residual, since D² = σ² + ε
    inside the root and D = σ + e outside.
    """
    s, m, frame, D = c.s, c.m, c.frame, c.D
    u = sp.symbols(f"u1:{m + 1}", real=True)
    D_sym = sp.Symbol("D", positive=True)
    # (1) in a ring of its own: x̂_i = u_i, the dy_j beyond the first 0, D one positive symbol
    ring = Laurent([*u, s.dy[0], *s.gammas, D_sym, s.sigma, s.eps])
    if c.placement == "inside":
        ring.values[c.var] = ring.gen[D_sym] ** 2 - ring.gen[s.eps]  # σ² + ε = D²
    else:
        place_eps(ring, s.eps, ring.gen[D_sym] - ring.gen[s.sigma], c.placement)  # σ + e = D
        ring.values[c.var] = ring.gen[s.sigma] ** 2
    ur = [ring.gen[ui] for ui in u]
    ring.values.update({xh: ui for xh, ui in zip(s.x_hat, ur, strict=True)})
    ring.values.update({dyj: ring.ring.zero for dyj in s.dy[1:]})
    h = s.dy if c.shared else c.g
    ring.values[c.sum_g] = ring(h[0])
    ring.values[c.sum_g_xhat] = ring(h[0]) * ur[0]
    closed = {st.lhs: st.rhs for st in c.closed_form[1:]}
    lhs = sum((ui * ring(closed[dxi]) for ui, dxi in zip(ur, s.dx, strict=True)), ring.ring.zero)
    A, B = ring(h[0]) * ur[0], ring(h[0])
    P1, P2 = sum(ur, ring.ring.zero), sum((ui * ui for ui in ur), ring.ring.zero)
    inner = A - ring(c.k * c.r) * A * P2
    if c.centred:
        inner -= B * P1 * ring(sp.Rational(1, m))
    step1 = lhs == ring(c.scale / D) * inner
    # (2) Σ x̂_i = 0 and Σ x̂_i² = σ²/(k·D²) for the graph's x̂_i
    step2 = frame.is_zero(
        sp.Add(*[xh**2 for xh in c.x_hat_graph]) - c.definition[c.var] / (c.k * D**2)
    )
    if c.centred:
        step2 = step2 and frame.is_zero(sp.Add(*c.x_hat_graph))
    # (3) what remains, with P1 = 0 and P2 = σ²/(k·D²), is the residual
    A_graph = c.sum_g_xhat
    remains = c.scale / D * (A_graph - c.k * c.r * A_graph * c.var / (c.k * D**2))
    step3 = frame.is_zero(remains - residual)
    return bool(c.verified["closed_form"] and step1 and step2 and step3)


def _invariance(c: Context) -> Step:
    """With ε = 0, x → a·x + c (a > 0; c = 0 where nothing is subtracted) leaves y unchanged."""
    name = "scale_shift_invariance" if c.centred else "scale_invariance"
    mu, var, root = c.mu_txt, c.var_txt, c.var_txt.replace("²", "")
    step = Step(
        Y_SCALED if c.centred else Y_SCALED_ONLY,
        Y_I,
        name,
        note="with ε = 0: x_i → a·x_i"
        + (" + c" if c.centred else "")
        + ", where a > 0, leaves every y_i unchanged",
    )
    return c.claim(
        step,
        lambda st: _scale_invariant(c, st.rhs),
        "with ε = 0, replacing every x_i by a·x_i"
        + (" + c" if c.centred else "")
        + ", where a > 0, "
        + (f"turns {mu} into a·{mu} + c and {var} into a²·{var}" if c.centred else "")
        + ("" if c.centred else f"turns {var} into a²·{var}")
        + " (each difference expands to zero), and then y_i, as the graph defines it, minus "
        + f"the right-hand side is the zero polynomial, since √(a²·{var}) = a·{root}",
    )


def _scale_invariant(c: Context, rhs: sp.Expr) -> bool:
    """With ε = 0 the statistics of a·x + shift are a·μ + shift and a²·σ², so y is unchanged:
    two lemmas on the graph's definitions (expanded), then each y_i(a·x + shift) compared in
    the ring with ``rhs``, where y_i stands for the graph's y_i."""
    s, a = c.s, c.a
    shift = c.c if c.centred else sp.Integer(0)
    var_def = c.definition[s.var]
    scaled = {xi: a * xi + shift for xi in s.x}
    after = {**scaled, s.var: a**2 * s.var, s.eps: 0}
    lemma = True
    if c.centred:
        mean_def = c.definition[s.mu]
        lemma = sp.expand(mean_def.xreplace(scaled) - (a * mean_def + shift)) == 0
        var_def = var_def.xreplace({s.mu: a * s.mu + shift})
        after[s.mu] = a * s.mu + shift
    lemma = lemma and sp.expand(var_def.xreplace(scaled) - a**2 * c.definition[s.var]) == 0
    yf = c.yframe
    at_0 = {s.eps: 0}
    return lemma and all(
        yf(y.xreplace(after)) == yf(rhs.xreplace({Y_I: y}).xreplace(at_0)) for y in c.y_graph
    )


def _undo(c: Context) -> Step:
    """γ = x̂'s denominator and β = the mean (of the group, or the running one) give y = x."""
    s = c.s
    undo = {g: c.D for g in s.gammas}
    beta = s.layer.beta
    if beta:
        undo.update({b: c.mu for b in s.betas})
    if s.shared:
        what = "γ and β can" if beta else "γ can"
        note = f"with {_undo_text(c)} the layer returns its input: {what} undo the "
        note += "normalization"
    else:
        note = f"with {_undo_text(c)} of this group the layer returns its input"
    return c.claim(
        Step(Y_UNDONE, X_I, "undo_normalization", note=note),
        lambda st: all(
            c.yframe.is_zero(y.xreplace(undo) - st.rhs.xreplace({X_I: xi}))
            for y, xi in zip(c.y_graph, s.x, strict=True)
        ),
        _undo_text(c) + " substituted into the graph's y_i give the right-hand side, x_i, exactly",
    )


def _undo_text(c: Context) -> str:
    """ "γ = D and β = μ" where one γ, β scale and shift the group, else "every γᵢ = D and
    every βᵢ = μ" (γ_c, β_c: one per channel), in the layer's own words."""
    every = "" if c.s.shared else "every "
    text = f"{every}{c.gamma_txt} = {c.den_txt}"
    if c.s.layer.beta:
        text += f" and {every}{c.beta_txt} = {c.mu_txt}"
    return text
