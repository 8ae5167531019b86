"""The double backward's closed form, for any layer of the family and every variant.

In train mode with ε inside the root, with g_i = γ_{k(i)}·dy_i, h_i = gdgamma_{k(i)}·dy_i,
a_i = gdx_i, D = √(σ² + ε), the projection P(v)_i = v_i − c·mean(v) − k·x̂_i·Σ_j v_j·x̂_j
(c = 1 for a centred layer, 0 for RMS norm; k = 1/m, or 1/(m−1) for the unbiased variance)
and Q = Σ_i a_i·P(g)_i:

- gdy_i = γ_{k(i)}·P(a)_i/D + gdgamma_{k(i)}·x̂_i + gdbeta_{k(i)}
- ggamma_k = Σ_{i of k} dy_i·P(a)_i/D
- gx_i = P(h)_i/D − (k/D²)·(x̂_i·Q + (Σ_j g_j·x̂_j)·P(a)_i + (Σ_j a_j·x̂_j)·P(g)_i)

The other variants are data too: without γ and β, γ = 1 and gdgamma = gdbeta = 0 (no
ggamma); with ε outside the root, D = σ + ε and r = D/σ, k·r stands where k did (in P and
in k/D²) and x̂_i·Q becomes x̂_i·(Q − k·r·(r − 1)·(Σ g_j·x̂_j)·(Σ a_j·x̂_j)), since r varies
with x too; in eval mode the statistics are constants and gx_i = gdgamma_{k(i)}·dy_i/D,
gdy_i = γ_{k(i)}·gdx_i/D + gdgamma_{k(i)}·x̂_i + gdbeta_{k(i)}, ggamma_k =
Σ_{i of k} gdx_i·dy_i/D.

Each result is a line of a few terms in x̂_i, D and the group's sums; the chain rule's double
backward (:mod:`bnsym.core.higher`) is what :func:`bnsym.proofs.higher.derive_higher` proves it
equal to. SymPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sympy as sp

from bnsym.core.graph import Step, Symbols, added, denominator, normalizer
from bnsym.core.higher import cotangents

if TYPE_CHECKING:  # pragma: no cover - the derivation is above the proofs
    from bnsym.derivation import Derivation

__all__ = ["closed_form"]


def _closed_form(
    s: Symbols,
    variance: str,
    gdx: Sequence[sp.Symbol],
    gdgamma: Sequence[sp.Symbol],
    gdbeta: Sequence[sp.Symbol],
    placement: str = "inside",
) -> list[Step]:
    """gx_i, gdy_i, ggamma_j in x̂_i, D = √(σ² + ε) and a few sums (the module docstring's
    formulas, expanded so that each result is a line of few terms).

    Sums of dy over the values of each γ_j (its channel: one value for layer and RMS norm,
    the whole group for batch and instance norm): Σdy, Σdy·x̂, Σdy·gdx; over the group: Σgdx,
    Σgdx·x̂, and from them Σg = Σ_j γ_j·Σdy, Σg·x̂, Σh, Σh·x̂, Σgdx·g, q = Σ gdx_i·P(g)_i.
    Then gx_i = coef_dy_j·dy_i + coef_gdx·gdx_i + coef_xhat·x̂_i + shift, gdy_i =
    gamma_inv_std_j·gdx_i + coef_xhat_gdy_j·x̂_i + shift_gdy_j, ggamma_j from the sums.
    """
    m, decl = s.m, s.layer
    k = normalizer(m, variance) if decl.centred else sp.Rational(1, m)
    c = 1 if decl.centred else 0
    steps: list[Step] = []
    if placement == "inside":
        inv_D, r = 1 / sp.sqrt(s.var + s.eps), sp.Integer(1)
    else:  # D = σ + ε: ∂D/∂x_i = k·x̂_i·D/σ, so k·r with r = D/σ where k stood, and one term more
        sigma, e = sp.sqrt(s.var), added(s.eps, placement)  # e = ε, or √ε (sqrt-outside)
        inv_D = 1 / (sigma + e)
        r = sp.Symbol("r", positive=True)
        steps.append(Step(r, (sigma + e) / sigma, "(σ + ε)/σ" if e == s.eps else "(σ + √ε)/σ"))
    xh, idx = s.x_hat, s.param_index
    K = len(s.gammas)

    def define(name: str, e: sp.Expr, rule: str = "") -> sp.Expr:
        if e.is_Atom or e.is_Number:
            return e  # a sum of one term is that term: no line of its own
        sym = sp.Symbol(name, real=True)
        steps.append(Step(sym, e, rule))
        return sym

    def tag(j: int) -> str:
        return "" if K == 1 else str(j + 1)

    members = [[i for i in range(m) if idx[i] == j] for j in range(K)]
    sdy = [
        define(f"sum_dy{tag(j)}", sp.Add(*[s.dy[i] for i in mem])) for j, mem in enumerate(members)
    ]
    sdyx = [
        define(f"sum_dy_xhat{tag(j)}", sp.Add(*[s.dy[i] * xh[i] for i in mem]))
        for j, mem in enumerate(members)
    ]
    sdya = [
        define(f"sum_dy_gdx{tag(j)}", sp.Add(*[s.dy[i] * gdx[i] for i in mem]))
        for j, mem in enumerate(members)
    ]
    sa = define("sum_gdx", sp.Add(*gdx))
    sax = define("sum_gdx_xhat", sp.Add(*[a * x for a, x in zip(gdx, xh, strict=True)]))
    affine = bool(gdgamma)
    # without γ and β: γ = 1, and no gdgamma, gdbeta, ggamma
    gam, b = (s.gammas, gdgamma) if affine else ((sp.Integer(1),) * K, (sp.Integer(0),) * K)
    S_g = define("sum_gamma_dy_xhat", sp.Add(*[gam[j] * sdyx[j] for j in range(K)]))
    S_h = define("sum_gdgamma_dy_xhat", sp.Add(*[b[j] * sdyx[j] for j in range(K)]))
    sag = define("sum_gamma_dy_gdx", sp.Add(*[gam[j] * sdya[j] for j in range(K)]))
    sg = sh = sp.Integer(0)
    if c:
        sg = define("sum_gamma_dy", sp.Add(*[gam[j] * sdy[j] for j in range(K)]))
        sh = define("sum_gdgamma_dy", sp.Add(*[b[j] * sdy[j] for j in range(K)]))
    kr = k * r if r == 1 else define("kr", k * r, "k·r")
    q = define("q", sag - c * sa * sg / m - kr * sax * S_g, "Σ gdx_i·P(γ·dy)_i")
    coef_gdx = define("coef_gdx", -kr * inv_D**2 * S_g)
    # the x̂ coefficient: 2·k²·S_g·sax/D² with ε inside the root; with ε outside, (r + 1)·(k·r)²,
    # since r = D/σ varies with x too (written as one bracket with q, to keep the line short)
    if r == 1:
        coef_xhat_rhs = -k * inv_D * S_h - k * inv_D**2 * q + 2 * k**2 * inv_D**2 * S_g * sax
    else:
        coef_xhat_rhs = -kr * inv_D * S_h - kr * inv_D**2 * (q - (r + 1) * kr * S_g * sax)
    coef_xhat = define("coef_xhat", coef_xhat_rhs)
    shift = sp.Integer(0)
    if c:
        shift = define("shift", -inv_D * sh / m + kr * inv_D**2 * (S_g * sa / m + sax * sg / m))
    coef_dy = [
        define(f"coef_dy{tag(j)}", inv_D * b[j] - kr * inv_D**2 * sax * gam[j]) for j in range(K)
    ]
    for i in range(m):
        j = idx[i]
        rhs = coef_dy[j] * s.dy[i] + coef_gdx * gdx[i] + coef_xhat * xh[i] + shift
        define(f"gx{i + 1}", rhs, "closed form")
    scale = [define(f"gamma_inv_std{tag(j)}", gam[j] * inv_D) for j in range(K)]
    coef_x = [define(f"coef_xhat_gdy{tag(j)}", b[j] - kr * scale[j] * sax) for j in range(K)]
    const = [(gdbeta[j] if gdbeta else 0) - c * scale[j] * sa / m for j in range(K)]
    const = [define(f"shift_gdy{tag(j)}", e) for j, e in enumerate(const)]
    for i in range(m):
        j = idx[i]
        define(f"g{s.dy[i].name}", scale[j] * gdx[i] + coef_x[j] * xh[i] + const[j], "closed form")
    for j, gamma in enumerate(gam if affine else ()):
        rhs = inv_D * (sdya[j] - c * sa * sdy[j] / m - kr * sax * sdyx[j])
        define(f"g{gamma.name}", rhs, "closed form")
    return steps


def _closed_form_eval(
    s: Symbols,
    placement: str,
    gdx: Sequence[sp.Symbol],
    gdgamma: Sequence[sp.Symbol],
    gdbeta: Sequence[sp.Symbol],
) -> list[Step]:
    """Eval mode: the statistics are constants, D = √(ρ² + ε) (or √ρ² + ε), so the backward
    dx_i = γ_k(i)·dy_i/D is linear and gx_i = gdgamma_k(i)·dy_i/D, gdy_i = γ_k(i)·gdx_i/D +
    gdgamma_k(i)·x̂_i + gdbeta_k(i), ggamma_k = Σ_(i of k) gdx_i·dy_i/D (without γ, β:
    gx_i = 0, gdy_i = gdx_i/D; without β, no gdbeta)."""
    inv_D = 1 / denominator(s.running_var, s.eps, placement)
    m, idx = s.m, s.param_index
    if not gdgamma:
        return [Step(sp.Symbol(f"gx{i + 1}", real=True), sp.Integer(0), "closed form")
                for i in range(m)] + [
            Step(sp.Symbol(f"g{s.dy[i].name}", real=True), gdx[i] * inv_D, "closed form")
            for i in range(m)
        ]  # fmt: skip
    K = len(s.gammas)
    gb = list(gdbeta) or [sp.Integer(0)] * K
    members = [[i for i in range(m) if idx[i] == k] for k in range(K)]
    # Σ_(i of k) dy_i·gdx_i: one sum where the group shares γ, one per γ_k else
    sums = [sp.Symbol("sum_dy_gdx" + ("" if K == 1 else str(k + 1)), real=True) for k in range(K)]
    return [
        *(Step(sums[k], sp.Add(*[s.dy[i] * gdx[i] for i in members[k]])) for k in range(K)),
        *(Step(sp.Symbol(f"gx{i + 1}", real=True), gdgamma[idx[i]] * s.dy[i] * inv_D,
               "closed form") for i in range(m)),
        *(Step(sp.Symbol(f"g{s.dy[i].name}", real=True),
               s.gammas[idx[i]] * gdx[i] * inv_D + gdgamma[idx[i]] * s.x_hat[i] + gb[idx[i]],
               "closed form") for i in range(m)),
        *(Step(sp.Symbol(f"g{gamma.name}", real=True), inv_D * sums[k], "closed form")
          for k, gamma in enumerate(s.gammas)),
    ]  # fmt: skip


def closed_form(d: Derivation) -> tuple[Step, ...]:
    """The closed form's steps of order 2 for ``d`` alone, without the chain rule and the
    proofs (what codegen needs at large m; :func:`bnsym.proofs.higher.derive_higher` proves
    it, up to m = 16)."""
    s, o = d.symbols, d.options
    gdx, gdgamma, gdbeta = cotangents(s, o.affine)
    if o.mode == "eval":
        return tuple(_closed_form_eval(s, o.eps_placement, gdx, gdgamma, gdbeta))
    return tuple(_closed_form(s, o.variance, gdx, gdgamma, gdbeta, o.eps_placement))
