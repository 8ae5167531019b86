"""Exact proofs for the batch-norm derivation: the closed form, the Jacobian, the identities,
and the explicit results.

Brute force (expand everything in x_1..x_m, then ``simplify``) takes minutes at m = 16. The
proofs here use the algebraic structure instead, in a *centred frame*:

- x_i = μ_B + d_i with d_m = −(d_1 + … + d_{m−1}), which is the definition of μ_B (Σd_i = 0);
- σ²_B = σ² for a positive symbol σ;
- ε = S² − σ² with S > 0 when ε is inside the root (so √(σ²_B + ε) = S), and ε = T − σ with
  T > 0 when it is outside (so σ_B + ε = T); with √ε outside (σ_B + √ε), √ε = T − σ and
  ε = (T − σ)² (:func:`place_eps`).

Every quantity of the graph is then a Laurent polynomial in d_i, dy_i, γ, β, σ, S, T (held as
SymPy's sparse ``PolyElement``), and an identity holds exactly when the difference is the zero
polynomial. σ stays a free symbol: the graph's expressions depend on the variance only
through σ²_B, so no relation between σ and the d_i is needed, except where a proof says so
and uses the definition of σ²_B explicitly (Σ x̂_i² in the residual of Σ ∂ℓ/∂x_i·x̂_i).
Each element costs O(m) terms, so the proofs cost O(m²).

Every proof starts from the derivation's own forward graph and chain-rule steps (passed in),
so a wrong graph or a wrong step makes the proofs that depend on it fail; the tests tamper
with each of them to check that.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.core.cutoffs import DIRECT_MAX_M, EXPLICIT_MAX_M, JACOBIAN_MAX_M, VALUE_MAX_M
from bnsym.core.graph import Step, Symbols, added, denominator, explicit_forward, partial
from bnsym.core.graph import normalizer as _normalizer
from bnsym.proofs import forms as _forms
from bnsym.proofs.display import (
    DX_I,
    DY_I,
    EYE,
    MEAN_Y,
    ONES,
    SUM_DX,
    SUM_DX_XHAT,
    SUM_DY,
    SUM_DY_XHAT,
    X_I,
    XHAT_I,
    XHAT_OUTER,
    Y_I,
    Y_SCALED,
    Y_UNDONE,
)
from bnsym.proofs.display import JACOBIAN as J
from bnsym.proofs.ring import Laurent, Lazy, Proofs, XFrame, place_eps, variance_ring


class Frame(Laurent):
    """The centred frame of one derivation (see the module docstring)."""

    def __init__(self, s: Symbols, variance: str, placement: str, mode: str) -> None:
        self.s, self.placement, self.mode = s, placement, mode
        self.sigma = s.sigma
        self.S = sp.Symbol("S", positive=True)
        self.T = sp.Symbol("T", positive=True)
        train = mode == "train"
        free = sp.symbols(f"d1:{s.m}", real=True) if train else ()
        self.free = free
        self.extra = (sp.Symbol("a", positive=True), sp.Symbol("c", real=True))
        gens = [*free, *s.dy, s.gamma, s.beta, s.mu, self.sigma, self.S, self.T, *self.extra]
        gens += [SUM_DY, SUM_DY_XHAT]
        if not train:
            gens += [*s.x, s.running_mean]
        super().__init__(gens)
        sigma = self.gen[self.sigma]
        if train:
            d = [self.gen[f] for f in free]
            d.append(-sum(d, self.ring.zero))  # Σ d_i = 0 is the definition of μ_B
            self.values.update({xi: self.gen[s.mu] + di for xi, di in zip(s.x, d, strict=True)})
            self.values[s.var] = sigma**2
        else:
            self.values[s.running_var] = sigma**2
        if placement == "inside":
            self.values[s.eps] = self.gen[self.S] ** 2 - sigma**2
        else:
            place_eps(self, s.eps, self.gen[self.T] - sigma, placement)


class _Ctx(Proofs):
    """What every proof of one derivation needs: the graph, the chain rule, the frame."""

    def __init__(
        self,
        s: Symbols,
        forward: Sequence[Step],
        backward: Sequence[Step],
        variance: str,
        placement: str,
        affine: bool,
        mode: str,
        general: Any = None,
    ) -> None:
        super().__init__(s.m, general)
        self.s, self.forward = s, forward
        self.variance, self.placement, self.affine = variance, placement, affine
        self.train = mode == "train"
        self.frame = Frame(s, variance, placement, mode)
        self.gamma = s.gamma if affine else sp.Integer(1)
        self.mu, self.var = (s.mu, s.var) if self.train else (s.running_mean, s.running_var)
        self.D = denominator(self.var, s.eps, placement)
        self.e = added(s.eps, placement)  # what σ is added to, ε or √ε (outside the root)
        self.k = _normalizer(s.m, variance) if self.train else sp.Integer(0)
        # r: the extra factor of the x̂x̂ᵀ term when ε is outside the root, (σ + ε)/σ.
        self.r = sp.Integer(1) if placement == "inside" else self.D / sp.sqrt(self.var)
        self.definition = {n.lhs: n.rhs for n in forward}
        self.chain_rhs = {st.lhs: st.rhs for st in backward}
        # The graph's own x̂_i and y_i in terms of x_i, μ_B, σ²_B (not retyped here), so that
        # every identity is about the derivation as it stands.
        self.x_hat_graph = [self.definition[xh] for xh in s.x_hat]
        to_x_hat = dict(zip(s.x_hat, self.x_hat_graph, strict=True))
        self.y_graph = [self.definition[yi].xreplace(to_x_hat) for yi in s.y]
        self.frame.values.update({xh: self.frame(d) for xh, d in to_x_hat.items()})
        self.chain = {st.lhs: st.value for st in backward}
        # ∂ℓ/∂x_i in the frame: each step's rhs with the earlier adjoints (∂ℓ/∂x̂_i, ∂ℓ/∂σ²_B,
        # ∂ℓ/∂μ_B) standing for their own polynomials — the chain rule done in the ring.
        for st in backward:
            if st.lhs not in s.dx:
                self.frame.values[st.lhs] = self.frame(st.rhs)
        self.dx_in_frame = Lazy(lambda i: self.frame(self.chain_rhs[s.dx[i]]), s.m)
        self.dx_chain = [self.chain[dxi] for dxi in s.dx]  # None above VALUE_MAX_M
        # The denominator, the mean and the variance's n as the notes write them.
        root = {"inside": "√({} + ε)", "outside": "√{} + ε", "sqrt-outside": "√{} + √ε"}
        self.den_txt = root[placement].format("σ²_run" if not self.train else "σ²_B")
        if self.train and placement != "inside":
            self.den_txt = self.den_txt.replace("√σ²_B", "σ_B")
        self.mu_txt = "μ_B" if self.train else "μ_run"
        self.n_txt = str(s.m if variance == "biased" else s.m - 1)


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
    """Closed form, Jacobian, identities and explicit expressions, with their proofs.

    Returns a dict with the keys ``closed_form`` (the generic Step, then one per element),
    ``jacobian`` (an ImmutableMatrix for m ≤ JACOBIAN_MAX_M, else None),
    ``jacobian_structure``, ``identities`` (Steps whose rule names their proof),
    ``verified`` (proof name -> bool), ``proof_methods`` (proof name -> sentence) and
    ``explicit`` (the results in the inputs only; see :func:`_explicit`). ``general`` (a
    :class:`bnsym.core.general.General`, or None) supplies the proofs that hold for every m.
    """
    c = _Ctx(s, forward, backward, variance, placement, affine, mode, general)
    closed_form, closed_form_proved = _closed_form(c)
    if s.m <= DIRECT_MAX_M:
        c.record(
            "chain_rule",
            _direct_matches_chain(c),
            "the chain-rule ∂ℓ/∂x_i equals Σ_j ∂ℓ/∂y_j·∂y_j/∂x_i with each y_j differentiated "
            "directly as a function of x_1..x_m, as polynomials (the same substitutions)",
        )
    jacobian, structure = _jacobian(c, closed_form_proved)
    identities = _identities(c)
    more, extra = _forms.forms(c, c.frame, c.train)  # the lecture notes' other forms
    identities = (*identities, *more)
    explicit = {**_explicit(c), **extra}
    c.record(
        "explicit_results",
        _explicit_matches(c, explicit),
        "the results written in x_1..x_m alone (μ_B, σ²_B, x̂_i, y_i, ∂ℓ/∂x_i, ∂ℓ/∂γ, ∂ℓ/∂β) "
        "equal the forward graph and the chain rule, as polynomials",
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


# --- the closed form ---------------------------------------------------------------------------


def _closed_form(c: _Ctx) -> tuple[tuple[Step, ...], bool]:
    """The closed form ∂ℓ/∂x_i = γ/(m·D)·(m·∂ℓ/∂y_i − Σ_j ∂ℓ/∂y_j − c·x̂_i·Σ_j ∂ℓ/∂y_j·x̂_j)
    (c = 1 for the paper's variant), shown as written and proved against the chain rule."""
    s, m = c.s, c.m
    c_outer = m * c.k * c.r
    D_shown, c_shown = c.D, c_outer
    if c.train and c.placement != "inside":  # σ_B for √σ²_B, as the notes write it
        D_shown = s.sigma + c.e
        c_shown = m * c.k * D_shown / s.sigma

    def closed(dy_i: sp.Expr, x_hat_i: sp.Expr) -> sp.Expr:
        if not c.train:
            return sp.Mul(c.gamma / c.D, dy_i, evaluate=False)
        inner = sp.Add(m * dy_i, -SUM_DY, -sp.Mul(c_shown, x_hat_i, SUM_DY_XHAT), evaluate=False)
        return sp.Mul(c.gamma / (m * D_shown), inner, evaluate=False)

    generic = Step(DX_I, closed(DY_I, XHAT_I), "closed form" if c.train else "eval mode: a scaling")
    sum_dy = sp.Add(*s.dy)
    sum_dy_xhat = sp.Add(*[dyj * xh for dyj, xh in zip(s.dy, c.x_hat_graph, strict=True)])
    per_element = []
    for i in range(m):
        shown = closed(s.dy[i], s.x_hat[i])
        value = None
        if m <= VALUE_MAX_M:
            value = shown.xreplace(
                {
                    SUM_DY: sum_dy,
                    SUM_DY_XHAT: sum_dy_xhat,
                    s.x_hat[i]: c.x_hat_graph[i],
                    s.sigma: sp.sqrt(c.var),
                }
            )
        per_element.append(Step(s.dx[i], shown, f"element {i + 1}", value))

    def proof() -> bool:
        # Read the shown form directly: the sums and x̂_i stand for their polynomials.
        read = copy.copy(c.frame)
        read.values = {
            **c.frame.values,
            SUM_DY: c.frame(sum_dy),
            SUM_DY_XHAT: c.frame(sum_dy_xhat),
        }
        read.memo = {}
        return all(read(st.rhs) == c.dx_in_frame[i] for i, st in enumerate(per_element))

    ok = c.check(
        "closed_form",
        proof,
        "for each i, the closed form minus the chain-rule ∂ℓ/∂x_i is the zero polynomial "
        + (
            f"once x_i = μ_B + d_i with Σd_i = 0 (the definition of μ_B) and {c.den_txt} is "
            "one positive symbol"
            if c.train
            else f"once {c.den_txt} is one positive symbol"
        ),
    )
    return (generic, *per_element), ok


# --- the Jacobian ------------------------------------------------------------------------------


def _jacobian(c: _Ctx, closed_form_proved: bool) -> tuple[sp.ImmutableMatrix | None, Step]:
    """J_ji = ∂y_j/∂x_i = (γ/D)·(δ_ij − 1/m − k·r·x̂_i·x̂_j), entry by entry for small m."""
    s, m = c.s, c.m
    rk = c.k * c.r
    if c.train:
        rk_shown = c.k * (s.sigma + c.e) / s.sigma if c.placement != "inside" else c.k
        D_shown = s.sigma + c.e if c.placement != "inside" else c.D
        # Unevaluated, so that it reads (γ/D)·(I − 𝟙𝟙ᵀ/m − x̂x̂ᵀ/m) as the notes write it.
        structure = sp.Mul(
            c.gamma / D_shown,
            sp.Add(EYE, -ONES / m, -rk_shown * XHAT_OUTER, evaluate=False),
            evaluate=False,
        )
    else:
        structure = sp.Mul(c.gamma / c.D, EYE, evaluate=False)

    def entry(j: int, i: int, x_hat: Sequence[sp.Expr]) -> sp.Expr:
        delta = 1 if i == j else 0
        if not c.train:
            return c.gamma * delta / c.D
        return c.gamma / c.D * (delta - sp.Rational(1, m) - rk * x_hat[i] * x_hat[j])

    if m > JACOBIAN_MAX_M:
        # ∂ℓ/∂x = Jᵀ ∂ℓ/∂y for every ∂ℓ/∂y, so the closed-form proof (an identity in the
        # symbols dy_j) proves Jᵀ equal to the structured matrix, which is symmetric.
        c.record(
            "jacobian_structure",
            closed_form_proved,
            "∂ℓ/∂x = Jᵀ·∂ℓ/∂y with ∂ℓ/∂y symbolic, so the closed-form proof is an identity in "
            "the dy_j and proves Jᵀ equal to the structured matrix, entry by entry",
        )
        c.record(
            "jacobian_symmetric",
            closed_form_proved,
            "the structured matrix is a sum of symmetric matrices",
        )
        return None, Step(J, structure, "structure of ∂y/∂x")
    # ∂y_j/∂x_i is the coefficient of ∂ℓ/∂y_j in ∂ℓ/∂x_i (which is linear in the dy).
    entries = c.frame.coefficients(c.dx_in_frame, s.dy)
    c.record(
        "jacobian_structure",
        all(
            entries[j][i] == c.frame(entry(j, i, c.x_hat_graph)) for j in range(m) for i in range(m)
        ),
        "each entry ∂y_j/∂x_i (the coefficient of ∂ℓ/∂y_j in the chain-rule ∂ℓ/∂x_i) "
        "equals the entry of the structured matrix, as polynomials",
    )
    c.record(
        "jacobian_symmetric",
        all(entries[j][i] == entries[i][j] for j in range(m) for i in range(j)),
        "J_ij = J_ji for every pair, as polynomials, exactly",
    )
    shown = sp.ImmutableMatrix(m, m, lambda j, i: entry(j, i, s.x_hat))
    return shown, Step(J, structure, "structure of ∂y/∂x")


# --- identities -------------------------------------------------------------------------------


def _identities(c: _Ctx) -> tuple[Step, ...]:
    """Σ∂ℓ/∂x_i = 0, the ε-residual of Σ∂ℓ/∂x_i·x̂_i, mean(y) = β, invariance under
    x → a·x + c, and γ, β undoing the normalization — each proved from the graph itself."""
    s, m, frame = c.s, c.m, c.frame
    steps: list[Step] = []
    beta = s.beta if c.affine else sp.Integer(0)
    if c.train:
        c.check(
            "sum_dx_zero",
            lambda: not sum(c.dx_in_frame, frame.ring.zero),
            "Σ_i of the chain-rule ∂ℓ/∂x_i is the zero polynomial, for any ε",
        )
        steps.append(Step(SUM_DX, sp.Integer(0), "sum_dx_zero", note="for any ε"))
        residual = _sum_dx_x_hat(c)
        steps.append(
            Step(
                SUM_DX_XHAT,
                residual,
                "sum_dx_xhat",
                note="zero exactly when ε = 0: with ε > 0 the gradient keeps a small x̂ part",
            )
        )
        c.check(
            "mean_output_beta",
            lambda: frame.is_zero(sp.Add(*c.y_graph) / m - beta),
            "(1/m)·Σ_i y_i − β, with y_i from the forward graph, is the zero polynomial once "
            "Σ_i (x_i − μ_B) = 0 is used",
        )
        steps.append(Step(MEAN_Y, beta, "mean_output_beta", note="whatever the input"))
        c.check(
            "scale_shift_invariance",
            lambda: _scale_shift_invariant(c),
            "with ε = 0, replacing every x_i by a·x_i + c, where a > 0, turns μ_B into "
            "a·μ_B + c and σ²_B into a²·σ²_B (each difference expands to zero), and then x̂_i, "
            "as the graph defines it, is unchanged since √(a²·σ²_B) = a·σ_B",
        )
        steps.append(
            Step(
                Y_SCALED,
                Y_I,
                "scale_shift_invariance",
                note="with ε = 0: x_i → a·x_i + c, where a > 0, leaves every y_i unchanged",
            )
        )
    if c.affine:
        undo = {s.gamma: c.D, s.beta: c.mu}
        c.check(
            "undo_normalization",
            lambda: all(
                frame.is_zero(y.xreplace(undo) - xi) for y, xi in zip(c.y_graph, s.x, strict=True)
            ),
            f"γ = {c.den_txt} and β = {c.mu_txt} substituted into the graph's y_i give x_i exactly",
        )
        steps.append(
            Step(
                Y_UNDONE,
                X_I,
                "undo_normalization",
                note=f"with γ = {c.den_txt} and β = {c.mu_txt} the layer returns its input: "
                "γ and β can undo the normalization",
            )
        )
    return tuple(steps)


def _sum_dx_x_hat(c: _Ctx) -> sp.Expr:
    """Prove Σ_i x̂_i·∂ℓ/∂x_i = γ·ε·Σ_j ∂ℓ/∂y_j·x̂_j / D³ (D² with ε outside); return it.

    Three steps, each exact: (1) with the closed form (proved equal to the chain rule) and
    x̂_i, ∂ℓ/∂y_i free, Σ_i x̂_i·∂ℓ/∂x_i = (γ/D)·(A − (B/m)·Σx̂_i − k·r·A·Σx̂_i²), where
    A = Σ_j ∂ℓ/∂y_j·x̂_j and B = Σ_j ∂ℓ/∂y_j — an identity of polynomials, O(m²) terms;
    (2) the graph's x̂_i sum to zero and their squares to σ²_B/(k·D²), by the definitions
    of μ_B and σ²_B; (3) what remains equals the residual.
    """
    D = c.D
    residual = c.gamma * c.e * SUM_DY_XHAT / (D**3 if c.placement == "inside" else D**2)
    c.check(
        "sum_dx_xhat",
        lambda: _sum_dx_x_hat_proof(c, residual),
        "multiplying the (proved) closed form by x̂_i and summing gives an identity of "
        "polynomials in which only Σ_i x̂_i and Σ_i x̂_i² appear; with the graph's x̂_i these "
        f"are 0 and ({c.n_txt})·σ²_B/({c.den_txt})², and what remains equals the residual "
        "exactly; it is 0 exactly when ε = 0 (or when Σ_j ∂ℓ/∂y_j·x̂_j = 0)",
    )
    return residual


def _sum_dx_x_hat_proof(c: _Ctx, residual: sp.Expr) -> bool:
    s, m, frame, D = c.s, c.m, c.frame, c.D
    # (1) in a ring of its own, with x̂_i and dy_i free and D one positive symbol
    u = sp.symbols(f"u1:{m + 1}", real=True)
    D_sym = sp.Symbol("D", positive=True)
    ring = Laurent([*u, *s.dy, s.gamma, D_sym, s.sigma, s.eps])
    if c.placement == "inside":
        ring.values[c.var] = ring.gen[D_sym] ** 2 - ring.gen[s.eps]  # σ²_B + ε = D²
    else:
        place_eps(ring, s.eps, ring.gen[D_sym] - ring.gen[s.sigma], c.placement)  # σ_B + ε = D
        ring.values[c.var] = ring.gen[s.sigma] ** 2
    # Both sides are linear in the dy_j and symmetric under permuting the elements (every
    # closed_i is the same formula in i), so the coefficient of dy_1 decides: O(m) terms.
    # The arithmetic is done in the ring itself: building m SymPy sums of m terms is O(m²)
    # slow object construction.
    dy1, ur = ring.gen[s.dy[0]], [ring.gen[ui] for ui in u]
    A, B = dy1 * ur[0], dy1
    scale, c_outer = ring(c.gamma / (c.m * D)), ring(c.m * c.k * c.r)
    lhs = scale * (m * dy1 * ur[0] - B * sum(ur, ring.ring.zero))
    lhs -= scale * c_outer * A * sum((ui * ui for ui in ur), ring.ring.zero)
    P1, P2 = sp.Add(*u), sp.Add(*[ui**2 for ui in u])
    rhs = ring(c.gamma / D) * (A - B * ring(P1) / m - ring(c.k * c.r) * A * ring(P2))
    step1 = lhs == rhs
    # (2) Σ x̂_i = 0 and Σ x̂_i² = σ²_B/(k·D²) for the graph's x̂_i
    step2 = frame.is_zero(sp.Add(*c.x_hat_graph)) and frame.is_zero(
        sp.Add(*[xh**2 for xh in c.x_hat_graph]) - c.definition[s.var] / (c.k * D**2)
    )
    # (3) what remains, with P1 = 0 and P2 = σ²_B/(k·D²), is the residual
    remains = c.gamma / D * (SUM_DY_XHAT - c.k * c.r * SUM_DY_XHAT * c.var / (c.k * D**2))
    step3 = frame.is_zero(remains - residual)
    return bool(c.verified["closed_form"] and step1 and step2 and step3)


def _scale_shift_invariant(c: _Ctx) -> bool:
    """With ε = 0: μ_B(a·x + c) = a·μ_B + c, σ²_B(a·x + c) = a²·σ²_B, x̂_i unchanged."""
    s = c.s
    a, shift = c.frame.extra
    mean_def, var_def = c.definition[s.mu], c.definition[s.var]
    scaled = {xi: a * xi + shift for xi in s.x}
    lemma_mean = sp.expand(mean_def.xreplace(scaled) - (a * mean_def + shift)) == 0
    scaled_var = var_def.xreplace({**scaled, s.mu: a * s.mu + shift})
    lemma_var = sp.expand(scaled_var - a**2 * var_def) == 0
    after = {**scaled, s.mu: a * s.mu + shift, s.var: a**2 * s.var, s.eps: 0}
    unchanged = all(
        c.frame(xh.xreplace(after)) == c.frame(xh.xreplace({s.eps: 0})) for xh in c.x_hat_graph
    )
    return lemma_mean and lemma_var and unchanged


# --- the chain rule against direct differentiation, and the explicit results ------------------


def _x_frame(c: _Ctx, var_x: sp.Expr | None) -> Any:
    """The frame for expressions in x_1..x_m alone, with σ²_B written as ``var_x``."""
    s, frame = c.s, c.frame
    if var_x is not None and c.placement == "inside":
        # ε = S² − σ²(x): then σ²(x) + ε is S² in the ring, whatever the form of σ²(x)
        return XFrame(frame, var_x, s.eps, frame.S)
    xf = copy.copy(frame)  # the same ring, its own substitutions
    xf.values, xf.overrides, xf.memo = dict(frame.values), dict(frame.overrides), {}
    if var_x is not None:  # else eval mode: the running statistics are constants already
        # σ²(x) is the base of √σ²(x): read it as σ², then σ + ε = T as before
        xf.overrides[var_x] = xf.gen[frame.sigma] ** 2
    return xf


def _var_in_x(c: _Ctx) -> sp.Expr:
    """σ²_B as k·(Σx_i² − (Σx_i)²/m): the same function as k·Σ(x_i − μ_B)², with O(m)
    instead of O(m²) terms."""
    x = c.s.x
    return c.k * (sp.Add(*[xi**2 for xi in x]) - sp.Add(*x) ** 2 / c.m)


def _direct_matches_chain(c: _Ctx) -> bool:
    """Differentiate the fully explicit y_j(x_1..x_m) directly and compare with the chain rule."""
    s, m, frame = c.s, c.m, c.frame
    var_x = None
    to_x: dict[sp.Basic, sp.Expr] = {}
    if c.train:
        mean_x, var_x = sp.Add(*s.x) / m, _var_in_x(c)
        if frame(c.definition[s.var].xreplace({s.mu: mean_x})) != frame(var_x):
            return False  # the two forms of σ²_B differ: cannot happen unless the graph is wrong
        to_x = {s.mu: mean_x, s.var: var_x}
    y_explicit = [y.xreplace(to_x) for y in c.y_graph]
    xf = _x_frame(c, var_x)
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


def _explicit_matches(c: _Ctx, ex: dict[str, Any]) -> bool:
    """The explicit results (in x_1..x_m only) equal the graph's forward values and the
    chain rule's gradients, as polynomials in the frame."""
    s, frame = c.s, c.frame
    ok = True
    if c.train:
        # In the frame the mean of the x_i is μ_B itself (Σd_i = 0), so σ²_B's definition
        # with μ_B replaced by the explicit mean reads the same as the definition.
        ok = frame(ex["mean"]) == frame(c.definition[s.mu])
        small = variance_ring(s, frame.free, centred=True)
        ok = ok and small(ex["var"]) == small(c.definition[s.var])
    # ε is eliminated against the explicit form of σ²_B itself, whichever it is (the O(m)
    # form, or the factored one for m ≤ EXPLICIT_MAX_M): equal polynomials, as checked above.
    xf = _x_frame(c, ex["var"] if c.train else None)
    pairs: list[tuple[Sequence[Any], Sequence[Any] | None, Frame]] = [
        (ex["x_hat"], c.x_hat_graph, xf),
        (ex["y"], c.y_graph, xf),
        (ex["dx"], None, xf),  # None: the chain rule's ∂ℓ/∂x_i, already in the frame
    ]
    if c.affine:
        pairs.append(((ex["dgamma"],), (c.chain[s.dgamma],), xf))
        pairs.append(((ex["dbeta"],), (c.chain[s.dbeta],), xf))
    # Above JACOBIAN_MAX_M only elements 1 and 2 are compared: every explicit result is the
    # same formula in i (one list comprehension in _explicit), so a permutation of the
    # elements carries either to any other; the chain rule's are proved element by element.
    m = c.m
    chosen = range(m) if m <= JACOBIAN_MAX_M else (0, 1)
    for explicit, graph, read in pairs:
        idx = chosen if len(explicit) == m else range(len(explicit))
        for i in idx:
            expected = c.dx_in_frame[i] if graph is None else frame(graph[i])
            ok = ok and read(explicit[i]) == expected
    return bool(ok)


def _explicit(c: _Ctx) -> dict[str, Any]:
    """Every result in terms of the inputs only, each of size O(m) (for JSON and codegen).

    The variance is written k·(Σx_i² − (Σx_i)²/m) and Σ_j dy_j·(x_j − μ) as
    Σ_j dy_j·x_j − μ·Σ_j dy_j, so that no expression repeats an O(m) sum m times. For
    m ≤ EXPLICIT_MAX_M (ε inside the root) x̂_i and ∂ℓ/∂x_i are the chain rule's, factored.
    These are written here, not derived: ``_explicit_matches`` proves them equal to the graph.
    """
    s, m, gamma, k, r, D = c.s, c.m, c.gamma, c.k, c.r, c.D
    beta = s.beta if c.affine else 0
    sum_dy = sp.Add(*s.dy)
    if c.train:
        mean_x, var_x = sp.Add(*s.x) / m, _var_in_x(c)
        to_inputs: dict[sp.Basic, sp.Expr] = {s.mu: mean_x, s.var: var_x}
    else:
        mean_x, var_x = s.running_mean, s.running_var
        to_inputs = {}
    D_x, r_x = D.xreplace(to_inputs), r.xreplace(to_inputs)
    centred = [xi - mean_x for xi in s.x]
    x_hat = [xc / D_x for xc in centred]
    sum_dy_centred = (
        sp.Add(*[dyj * xj for dyj, xj in zip(s.dy, s.x, strict=True)]) - mean_x * sum_dy
    )
    if c.train:
        dx = [
            gamma / D_x * (s.dy[i] - sum_dy / m - k * r_x * centred[i] * sum_dy_centred / D_x**2)
            for i in range(m)
        ]
    else:
        dx = [gamma * dyi / D_x for dyi in s.dy]
    # Fully in x_1..x_m for small m; with ε outside the root that form is all |x_i − x_j| and
    # nested roots, so only the inside variant gets it.
    factored = m <= EXPLICIT_MAX_M and c.train and c.placement == "inside"
    if factored:
        values = explicit_forward(s, c.forward)
        full = {s.mu: values[s.mu], s.var: values[s.var]}
        dx = [sp.factor(sp.together(d.xreplace(full))) for d in c.dx_chain if d is not None]
        x_hat = [sp.factor(sp.together(xh.xreplace(full))) for xh in c.x_hat_graph]
        var_x = sp.factor(values[s.var])
    return {
        "mean": mean_x,
        "var": var_x,
        "x_hat": tuple(x_hat),
        "y": tuple(gamma * xh + beta for xh in x_hat),
        "dx": tuple(dx),
        "dgamma": sum_dy_centred / D_x if c.affine else None,
        "dbeta": sum_dy if c.affine else None,
    }
