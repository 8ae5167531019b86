"""Exact proofs for any layer of the family, read off its declaration (:mod:`bnsym.family.layers`).

The same method as batch norm's proofs (:mod:`bnsym.proofs.batchnorm`, whose ring this module
uses): every quantity becomes a Laurent polynomial once the statistics are written in a
frame — x_i = μ + d_i with Σd_i = 0 for a centred layer (the definition of the mean), x_i
free for RMS norm; the variance (or mean square) σ² a positive symbol; √(σ² + ε) = S (ε
inside the root) or σ + ε = T (outside) — and an identity holds when the difference is the
zero polynomial. What differs between layers is data: whether the mean is subtracted, and
which γ_k scales element i (``Symbols.param_index``). With g_i = γ_{k(i)}·∂ℓ/∂y_i:

- ``closed_form``: ∂ℓ/∂x_i = (1/(m·D))·(m·g_i − Σ_j g_j − m·k·r·x̂_i·Σ_j g_j·x̂_j), without
  the Σ_j g_j term for RMS norm (k = 1/m there, r = D/σ with ε outside the root, else 1);
- ``chain_rule`` (m ≤ 8): the chain rule equals direct differentiation of y_j(x_1..x_m);
- ``jacobian_structure`` (m ≤ 16): J = diag(γ)/D·(I − 𝟙𝟙ᵀ/m − k·r·x̂x̂ᵀ) entry by entry
  (no 𝟙𝟙ᵀ/m for RMS norm), and ``jacobian_symmetric`` where γ is shared;
- the identities that hold for the layer: Σ∂ℓ/∂x_i = 0 (centred), Σ∂ℓ/∂x_i·x̂_i equal to
  its ε residual (ε inside), mean(y) = β (centred, shared γ), invariance under x → a·x + c
  (centred) or x → a·x (RMS) at ε = 0, and γ, β undoing the normalization;
- ``explicit_results``: the results in x_1..x_m alone equal the graph and the chain rule.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.core.cutoffs import DIRECT_MAX_M, EXPLICIT_MAX_M, JACOBIAN_MAX_M, VALUE_MAX_M
from bnsym.core.graph import Step, Symbols, added, denominator, normalizer, partial
from bnsym.proofs import forms as _forms
from bnsym.proofs.display import (
    DIAG_GAMMA,
    DX_I,
    DY_I,
    EYE,
    GAMMA_I,
    MEAN_Y,
    ONES,
    SUM_DX,
    SUM_DX_XHAT,
    SUM_DY,
    SUM_DY_XHAT,
    SUM_G,
    SUM_G_XHAT,
    X_I,
    XHAT_I,
    XHAT_OUTER,
    Y_I,
    Y_SCALED,
    Y_SCALED_ONLY,
    Y_UNDONE,
)
from bnsym.proofs.display import JACOBIAN as J
from bnsym.proofs.ring import Laurent, Lazy, Proofs, XFrame, place_eps, variance_ring


class _Family(Proofs):
    """The frame and the graph of one derivation, and the proofs' record."""

    def __init__(
        self,
        s: Symbols,
        forward: Sequence[Step],
        backward: Sequence[Step],
        variance: str,
        placement: str,
        affine: bool,
        general: Any = None,
    ) -> None:
        super().__init__(s.m, general)
        self.s, self.placement, self.affine = s, placement, affine
        self.centred = s.layer.centred
        m = s.m
        self.k = normalizer(m, variance) if self.centred else sp.Rational(1, m)
        self.D = denominator(s.var, s.eps, placement)
        self.e = added(s.eps, placement)  # what σ is added to, ε or √ε (outside the root)
        self.r = sp.Integer(1) if placement == "inside" else self.D / sp.sqrt(s.var)
        self.gammas = [s.gamma_of(i) if affine else sp.Integer(1) for i in range(m)]
        self.g = [gi * dyi for gi, dyi in zip(self.gammas, s.dy, strict=True)]
        self.definition = {n.lhs: n.rhs for n in forward}
        self.backward = backward
        self.x_hat_graph = [self.definition[xh] for xh in s.x_hat]
        to_x_hat = dict(zip(s.x_hat, self.x_hat_graph, strict=True))
        self.y_graph = [self.definition[yi].xreplace(to_x_hat) for yi in s.y]
        self.chain = {st.lhs: st.value for st in backward}
        self.S, self.T = sp.Symbol("S", positive=True), sp.Symbol("T", positive=True)
        self.a, self.c = sp.Symbol("a", positive=True), sp.Symbol("c", real=True)
        self.free = sp.symbols(f"d1:{m}", real=True) if self.centred else s.x
        # Two frames: one for the gradients (the dy, no β), one for the outputs y (β and the
        # a, c of x -> a·x + c, no dy). The ring's cost grows with its generators, and no
        # gradient holds a β nor any y a dy.
        root = self.S if placement == "inside" else self.T
        self.frame = self._frame([*s.dy, *s.gammas, root, SUM_G_XHAT], to_x_hat)
        self.yframe = self._frame([*s.gammas, *s.betas, root, self.a, self.c], to_x_hat)
        f = self.frame
        for st in backward:  # the chain rule done in the ring, adjoint by adjoint
            if st.lhs not in s.dx:
                f.values[st.lhs] = f(st.rhs)
        dx_rhs = [st.rhs for st in backward if st.lhs in s.dx]
        self.dx_in_frame = Lazy(lambda i: f(dx_rhs[i]), m)
        self.den_txt = {"inside": "√(σ² + ε)", "outside": "σ + ε", "sqrt-outside": "σ + √ε"}[
            placement
        ]
        if not self.centred:
            self.den_txt = self.den_txt.replace("σ", "ν")

    def _frame(self, gens: list[sp.Symbol], to_x_hat: dict[sp.Symbol, sp.Expr]) -> Laurent:
        """A ring over the frame's own generators and ``gens``, with x_i, σ², ε and x̂_i
        standing for their polynomials."""
        s = self.s
        own = [*self.free, s.sigma] + ([s.mu] if self.centred else [])
        f = Laurent([*own, *gens])
        sigma = f.gen[s.sigma]
        if self.centred:
            d = [f.gen[v] for v in self.free]
            d.append(-sum(d, f.ring.zero))  # Σ d_i = 0 is the definition of the mean
            f.values.update({xi: f.gen[s.mu] + di for xi, di in zip(s.x, d, strict=True)})
        f.values[s.var] = sigma**2
        if self.placement == "inside":
            f.values[s.eps] = f.gen[self.S] ** 2 - sigma**2
        else:
            place_eps(f, s.eps, f.gen[self.T] - sigma, self.placement)
        f.values.update({xh: f(e) for xh, e in to_x_hat.items()})
        return f

    def frame_of_x(self, var_x: sp.Expr, base: Laurent | None = None) -> Any:
        """The frame ``base`` (the gradients' by default) for expressions in x_1..x_m alone,
        with σ² written as ``var_x``."""
        base = self.frame if base is None else base
        if self.placement == "inside":
            return XFrame(base, var_x, self.s.eps, self.S)
        xf = copy.copy(base)
        xf.values, xf.overrides, xf.memo = dict(base.values), dict(base.overrides), {}
        xf.overrides[var_x] = xf.gen[self.s.sigma] ** 2
        return xf


def prove(
    s: Symbols,
    forward: Sequence[Step],
    backward: Sequence[Step],
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    general: Any = None,
) -> dict[str, Any]:
    """The closed form, the Jacobian, the identities and the explicit results of the layer
    ``s.layer`` (train mode), each proved; the same keys as :func:`bnsym.proofs.batchnorm.prove`."""
    c = _Family(s, forward, backward, variance, placement, affine, general)
    closed_form = _closed_form(c)
    explicit = _explicit(c)
    if c.m <= DIRECT_MAX_M:
        c.record(
            "chain_rule",
            _direct_matches_chain(c, explicit["var"]),
            "the chain-rule ∂ℓ/∂x_i equals Σ_j ∂ℓ/∂y_j·∂y_j/∂x_i with each y_j differentiated "
            "directly as a function of x_1..x_m, as polynomials",
        )
    jacobian, structure = _jacobian(c)
    identities = _identities(c, explicit["var"])
    more, extra = _forms.forms(c, c.yframe, True)  # the lecture notes' other forms
    identities = (*identities, *more)
    explicit.update(extra)
    c.record(
        "explicit_results",
        _explicit_matches(c, explicit),
        "the results written in x_1..x_m alone equal the forward graph and the chain rule, "
        "as polynomials"
        + (
            ""
            if c.m <= JACOBIAN_MAX_M
            else " (elements and parameters 1 and 2: each result is the same formula in its "
            "index, so a permutation carries them to every other)"
        ),
    )
    return {
        "closed_form": closed_form,
        "jacobian": jacobian,
        "jacobian_structure": structure,
        "identities": identities,
        "verified": c.verified,
        "proof_methods": c.methods,
        "explicit": explicit,
    }


def _closed_form(c: _Family) -> tuple[Step, ...]:
    s, m = c.s, c.m
    shared = s.shared or not c.affine
    c_outer = m * c.k * c.r
    D_shown, c_shown = c.D, c_outer
    if c.placement != "inside":  # σ for √σ², as the notes write it
        D_shown = s.sigma + c.e
        c_shown = m * c.k * D_shown / s.sigma
    sum_g, sum_g_xhat = (SUM_DY, SUM_DY_XHAT) if shared else (SUM_G, SUM_G_XHAT)

    def closed(g_i: sp.Expr, x_hat_i: sp.Expr, gamma: sp.Expr) -> sp.Expr:
        terms = [m * g_i] + ([-sum_g] if c.centred else [])
        terms.append(-sp.Mul(c_shown, x_hat_i, sum_g_xhat))
        return sp.Mul(gamma / (m * D_shown), sp.Add(*terms, evaluate=False), evaluate=False)

    one = sp.Integer(1)
    gamma_shown = s.gamma if (shared and c.affine) else one
    generic = Step(
        DX_I,
        closed(DY_I if shared else GAMMA_I * DY_I, XHAT_I, gamma_shown),
        "closed form",
    )
    sums = {
        sum_g: sp.Add(*(s.dy if shared else c.g)),
        sum_g_xhat: sp.Add(
            *[gi * xh for gi, xh in zip(s.dy if shared else c.g, c.x_hat_graph, strict=True)]
        ),
    }
    per_element = []
    for i in range(m):
        g_i = s.dy[i] if shared else c.g[i]
        shown = closed(g_i, s.x_hat[i], gamma_shown)
        value = None
        if m <= VALUE_MAX_M:
            value = shown.xreplace({**sums, s.x_hat[i]: c.x_hat_graph[i], s.sigma: sp.sqrt(s.var)})
        per_element.append(Step(s.dx[i], shown, f"element {i + 1}", value))

    def proof() -> bool:
        read = copy.copy(c.frame)
        read.values = {**c.frame.values, **{k: c.frame(v) for k, v in sums.items()}}
        read.memo = {}
        return all(read(st.rhs) == c.dx_in_frame[i] for i, st in enumerate(per_element))

    c.check(
        "closed_form",
        proof,
        "for each i, the closed form minus the chain-rule ∂ℓ/∂x_i is the zero polynomial "
        + (
            f"once x_i = μ + d_i with Σd_i = 0 (the definition of μ) and {c.den_txt} is one "
            "positive symbol"
            if c.centred
            else f"once {c.den_txt} is one positive symbol"
        ),
    )
    return (generic, *per_element)


def _jacobian(c: _Family) -> tuple[sp.ImmutableMatrix | None, Step]:
    """J_ji = ∂y_j/∂x_i = (γ_j/D)·(δ_ij − [centred]/m − k·r·x̂_i·x̂_j)."""
    s, m = c.s, c.m
    rk = c.k * c.r
    rk_shown = c.k * (s.sigma + c.e) / s.sigma if c.placement != "inside" else c.k
    D_shown = s.sigma + c.e if c.placement != "inside" else c.D
    shared = s.shared or not c.affine
    scale = (s.gamma if c.affine else sp.Integer(1)) if shared else DIAG_GAMMA
    inner = [EYE] + ([-ONES / m] if c.centred else []) + [-rk_shown * XHAT_OUTER]
    structure = sp.Mul(scale / D_shown, sp.Add(*inner, evaluate=False), evaluate=False)
    mean_part = sp.Rational(1, m) if c.centred else 0

    def entry(j: int, i: int, x_hat: Sequence[sp.Expr]) -> sp.Expr:
        delta = 1 if i == j else 0
        return c.gammas[j] / c.D * (delta - mean_part - rk * x_hat[i] * x_hat[j])

    step = Step(J, structure, "structure of ∂y/∂x")
    if m > JACOBIAN_MAX_M:
        ok = c.verified["closed_form"]
        c.record(
            "jacobian_structure",
            ok,
            "∂ℓ/∂x = Jᵀ·∂ℓ/∂y with ∂ℓ/∂y symbolic, so the closed-form proof is an identity in "
            "the dy_j and proves Jᵀ equal to the structured matrix, entry by entry",
        )
        return None, step
    entries = c.frame.coefficients(c.dx_in_frame, s.dy)
    c.record(
        "jacobian_structure",
        all(
            entries[j][i] == c.frame(entry(j, i, c.x_hat_graph)) for j in range(m) for i in range(m)
        ),
        "each entry ∂y_j/∂x_i (the coefficient of ∂ℓ/∂y_j in the chain-rule ∂ℓ/∂x_i) "
        "equals the entry of the structured matrix, as polynomials",
    )
    if shared:
        c.record(
            "jacobian_symmetric",
            all(entries[j][i] == entries[i][j] for j in range(m) for i in range(j)),
            "J_ij = J_ji for every pair, as polynomials, exactly",
        )
    return sp.ImmutableMatrix(m, m, lambda j, i: entry(j, i, s.x_hat)), step


def _identities(c: _Family, var_x: sp.Expr) -> tuple[Step, ...]:
    s, m, frame = c.s, c.m, c.frame
    steps: list[Step] = []
    shared = s.shared or not c.affine
    if c.centred:
        c.check(
            "sum_dx_zero",
            lambda: not sum(c.dx_in_frame, frame.ring.zero),
            "Σ_i of the chain-rule ∂ℓ/∂x_i is the zero polynomial, for any ε",
        )
        steps.append(Step(SUM_DX, sp.Integer(0), "sum_dx_zero", note="for any ε"))
    if c.placement == "inside":
        sum_g_xhat = SUM_DY_XHAT if shared else SUM_G_XHAT
        scale = s.gamma if (shared and c.affine) else sp.Integer(1)
        residual = scale * s.eps * sum_g_xhat / c.D**3
        c.check("sum_dx_xhat", lambda: _sum_dx_x_hat(c), _SUM_DX_XHAT_METHOD)
        steps.append(
            Step(
                SUM_DX_XHAT,
                residual,
                "sum_dx_xhat",
                note="zero exactly when ε = 0: with ε > 0 the gradient keeps a small x̂ part",
            )
        )
    beta = [s.beta_of(i) if (c.affine and s.layer.beta) else sp.Integer(0) for i in range(m)]
    if c.centred and shared:
        c.check(
            "mean_output_beta",
            lambda: c.yframe.is_zero(sp.Add(*c.y_graph) / m - beta[0]),
            "(1/m)·Σ_i y_i − β, with y_i from the forward graph, is the zero polynomial once "
            "Σ_i (x_i − μ) = 0 is used",
        )
        steps.append(Step(MEAN_Y, beta[0], "mean_output_beta", note="whatever the input"))
    shift = c.c if c.centred else sp.Integer(0)
    c.check(
        "scale_shift_invariance" if c.centred else "scale_invariance",
        lambda: _scale_invariant(c, shift),
        "with ε = 0, replacing every x_i by a·x_i"
        + (" + c" if c.centred else "")
        + ", where a > 0, "
        + ("turns μ into a·μ + c and σ² into a²·σ²" if c.centred else "turns ν² into a²·ν²")
        + " (each difference expands to zero), and then x̂_i, as the graph defines it, is "
        + ("unchanged since √(a²·σ²) = a·σ" if c.centred else "unchanged since √(a²·ν²) = a·ν"),
    )
    steps.append(
        Step(
            Y_SCALED if c.centred else Y_SCALED_ONLY,
            Y_I,
            "scale_shift_invariance" if c.centred else "scale_invariance",
            note="with ε = 0: x_i → a·x_i"
            + (" + c" if c.centred else "")
            + ", where a > 0, leaves every y_i unchanged",
        )
    )
    if c.affine:
        mu = s.mu if c.centred else sp.Integer(0)
        undo = {g: c.D for g in s.gammas}
        if s.layer.beta:
            undo.update({b: mu for b in s.betas})
        c.check(
            "undo_normalization",
            lambda: all(
                c.yframe.is_zero(y.xreplace(undo) - xi)
                for y, xi in zip(c.y_graph, s.x, strict=True)
            ),
            "every γ_k = "
            + c.den_txt
            + (" and every β_k = μ" if s.layer.beta else "")
            + " substituted into the graph's y_i give x_i exactly",
        )
        steps.append(
            Step(
                Y_UNDONE,
                X_I,
                "undo_normalization",
                note=f"with every γ = {c.den_txt}"
                + (" and every β = μ" if s.layer.beta else "")
                + " of this group the layer returns its input",
            )
        )
    return tuple(steps)


_SUM_DX_XHAT_METHOD = (
    "multiplying the (proved) closed form by x̂_i and summing gives an identity of "
    "polynomials in which only Σ_i x̂_i and Σ_i x̂_i² appear; with the graph's x̂_i these are "
    "0 (centred layers) and the variance (or mean square) over k·(σ² + ε), and what remains "
    "equals the residual exactly"
)


def _sum_dx_x_hat(c: _Family) -> bool:
    """Σ_i x̂_i·∂ℓ/∂x_i = ε·Σ_j g_j·x̂_j/D³ (ε inside the root), in three exact steps:

    (1) with x̂_i = u_i and g_i free, Σ_i u_i·closed_i = (1/D)·(A − [centred]·B·P1/m −
    k·A·P2), A = Σ g_j·u_j, B = Σ g_j, P1 = Σ u_i, P2 = Σ u_i²: both sides are linear in g and
    symmetric under permuting the elements, so the coefficient of g_1 decides (O(m) terms);
    (2) the graph's x̂_i have P1 = 0 (centred) and P2 = σ²/(k·D²), by the definitions of the
    statistics; (3) what remains is the residual, since D² = σ² + ε.
    """
    s, m, frame = c.s, c.m, c.frame
    u = sp.symbols(f"u1:{m + 1}", real=True)
    g = [sp.Symbol("g1", real=True)] + [sp.Integer(0)] * (m - 1)  # the coefficient of g_1
    D = sp.Symbol("D", positive=True)
    A = sp.Add(*[gi * ui for gi, ui in zip(g, u, strict=True)])
    B = sp.Add(*g)
    P1, P2 = sp.Add(*u), sp.Add(*[ui**2 for ui in u])
    centred = 1 if c.centred else 0

    def closed(i: int) -> sp.Expr:
        return (m * g[i] - centred * B - m * c.k * u[i] * A) / (m * D)

    lhs = sp.Add(*[u[i] * closed(i) for i in range(m)])
    rhs = (A - centred * B * P1 / m - c.k * A * P2) / D
    step1 = sp.expand(lhs - rhs) == 0
    step2 = frame.is_zero(
        sp.Add(*[xh**2 for xh in c.x_hat_graph]) - c.definition[s.var] / (c.k * c.D**2)
    )
    if c.centred:
        step2 = step2 and frame.is_zero(sp.Add(*c.x_hat_graph))
    A_graph = SUM_G_XHAT
    remains = (A_graph - c.k * A_graph * s.var / (c.k * c.D**2)) / c.D
    step3 = frame.is_zero(remains - s.eps * A_graph / c.D**3)
    return bool(c.verified["closed_form"] and step1 and step2 and step3)


def _scale_invariant(c: _Family, shift: sp.Expr) -> bool:
    """With ε = 0 the statistics of a·x + shift are a·μ + shift and a²·σ², so x̂ is unchanged."""
    s, a = c.s, c.a
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
    return lemma and all(
        yf(xh.xreplace(after)) == yf(xh.xreplace({s.eps: 0})) for xh in c.x_hat_graph
    )


def _var_in_x(c: _Family) -> sp.Expr:
    x = c.s.x
    if c.centred:
        return c.k * (sp.Add(*[xi**2 for xi in x]) - sp.Add(*x) ** 2 / c.m)
    return sp.Add(*[xi**2 for xi in x]) / c.m


def _direct_matches_chain(c: _Family, var_x: sp.Expr) -> bool:
    s = c.s
    to_x: dict[sp.Basic, sp.Expr] = {s.var: var_x}
    if c.centred:
        to_x[s.mu] = sp.Add(*s.x) / c.m
        if c.frame(c.definition[s.var].xreplace({s.mu: to_x[s.mu]})) != c.frame(var_x):
            return False
    elif c.frame(c.definition[s.var]) != c.frame(var_x):
        return False
    y_explicit = [y.xreplace(to_x) for y in c.y_graph]
    xf = c.frame_of_x(var_x)
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr] = {}
    for i, xi in enumerate(s.x):
        direct = sp.Add(
            *[
                dyj * partial(yj, xi, xj, s.x, shapes)
                for dyj, yj, xj in zip(s.dy, y_explicit, s.x, strict=True)
            ]
        )
        if xf(direct) != c.dx_in_frame[i]:
            return False
    return True


def _explicit(c: _Family) -> dict[str, Any]:
    """Every result in the inputs only, each of size O(m) (for JSON, codegen and examples);
    written here, proved equal to the graph by :func:`_explicit_matches`."""
    s, m = c.s, c.m
    mean_x = sp.Add(*s.x) / m if c.centred else sp.Integer(0)
    var_x = _var_in_x(c)
    to_inputs = {s.var: var_x}
    D_x, r_x = c.D.xreplace(to_inputs), c.r.xreplace(to_inputs)
    centred = [xi - mean_x for xi in s.x]
    x_hat = [xc / D_x for xc in centred]
    sum_g = sp.Add(*c.g)
    sum_g_centred = sp.Add(*[g * xj for g, xj in zip(c.g, s.x, strict=True)]) - mean_x * sum_g
    mean_g = sum_g / m if c.centred else 0
    dx = [
        (c.g[i] - mean_g - c.k * r_x * centred[i] * sum_g_centred / D_x**2) / D_x for i in range(m)
    ]
    K = len(s.gammas)
    members = [[i for i in range(m) if s.param_index[i] == k] for k in range(K)]
    dgamma: Any = None
    dbeta: Any = None
    if c.affine:
        dgamma = tuple(
            (sp.Add(*[s.dy[i] * s.x[i] for i in idx]) - mean_x * sp.Add(*[s.dy[i] for i in idx]))
            / D_x
            for idx in members
        )
        dbeta = tuple(sp.Add(*[s.dy[i] for i in idx]) for idx in members)
        if s.shared:
            dgamma, dbeta = dgamma[0], dbeta[0]
        if not s.layer.beta:
            dbeta = None
    if m <= EXPLICIT_MAX_M and c.placement == "inside":
        # Small groups: fully in x_1..x_m, factored, as batch norm shows them.
        x_hat = [sp.factor(sp.together(xh)) for xh in x_hat]
        dx = [sp.factor(sp.together(d)) for d in dx]
        var_x = sp.factor(var_x)
    beta = [s.beta_of(i) if (c.affine and s.layer.beta) else 0 for i in range(m)]
    return {
        "mean": mean_x if c.centred else None,
        "var": var_x,
        "x_hat": tuple(x_hat),
        "y": tuple(g * xh + b for g, xh, b in zip(c.gammas, x_hat, beta, strict=True)),
        "dx": tuple(dx),
        "dgamma": dgamma,
        "dbeta": dbeta,
    }


def _explicit_matches(c: _Family, ex: dict[str, Any]) -> bool:
    s, frame = c.s, c.frame
    # In the frame the mean of the x_i is μ itself (Σ d_i = 0; proved first), so σ²'s
    # definition with μ replaced by the explicit mean reads the same as the definition.
    ok = not c.centred or frame(ex["mean"]) == frame(c.definition[s.mu])
    small = variance_ring(s, c.free, c.centred)
    ok = ok and small(ex["var"]) == small(c.definition[s.var])
    xf = c.frame_of_x(ex["var"])
    yf = c.frame_of_x(ex["var"], c.yframe)
    chosen = range(c.m) if c.m <= JACOBIAN_MAX_M else (0, 1)
    for i in chosen:
        ok = ok and xf(ex["x_hat"][i]) == frame(c.x_hat_graph[i])
        ok = ok and yf(ex["y"][i]) == c.yframe(c.y_graph[i])
        ok = ok and xf(ex["dx"][i]) == c.dx_in_frame[i]
    if c.affine:
        pairs = [(ex["dgamma"], s.dgammas)]
        if s.layer.beta:
            pairs.append((ex["dbeta"], s.dbetas))
        for values, names in pairs:
            values = values if isinstance(values, tuple) else (values,)
            # as for the elements: every ∂ℓ/∂γ_k is the same formula in k, so above
            # JACOBIAN_MAX_M the first two stand for all (a permutation carries one to any)
            count = len(values) if c.m <= JACOBIAN_MAX_M else min(2, len(values))
            for v, name in zip(values[:count], names[:count], strict=True):
                ok = ok and xf(v) == frame(c.chain[name])
    return bool(ok)
