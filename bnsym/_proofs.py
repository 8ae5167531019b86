"""Exact proofs for the batch-norm derivation: the closed form, the Jacobian, the identities.

Brute force (expand everything in x_1..x_m, then ``simplify``) takes minutes at m = 16. The
proofs here use the algebraic structure instead, in a *centred frame*:

- x_i = μ + d_i with d_m = −(d_1 + … + d_{m−1}), which is the definition of μ (Σ d_i = 0);
- σ²_B = σ² for a positive symbol σ, related to the d_i by σ² = k·Σ d_i² (k = 1/m or 1/(m−1));
- ε = S² − σ² with S > 0 when ε is inside the root (so √(σ²_B + ε) = S), and ε = T − σ with
  T > 0 when it is outside (so σ_B + ε = T).

Every quantity is then a polynomial in d_i, dy_i, γ, σ and the reciprocals of S, T and σ, and
an identity holds exactly when the expanded difference is zero after replacing σ² by k·Σ d_i²
(1 and σ are linearly independent over the rational functions of the d_i, since k·Σ d_i² is
not a perfect square). Each expansion has O(m) terms per element, so the proofs cost O(m²).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.symbolic import (
    DIRECT_MAX_M,
    EXPLICIT_MAX_M,
    JACOBIAN_MAX_M,
    Step,
    Symbols,
    _normalizer,
    explicit_forward,
)

# Display-only symbols: renderers know their names (see bnsym.render.DISPLAY).
SUM_DY = sp.Symbol("sum_dy", real=True)  # Σ_j ∂ℓ/∂y_j
SUM_DY_XHAT = sp.Symbol("sum_dy_xhat", real=True)  # Σ_j ∂ℓ/∂y_j · x̂_j
DX_I, DY_I, XHAT_I = (sp.Symbol(n, real=True) for n in ("dx_i", "dy_i", "xhat_i"))
EYE, ONES, XHAT_OUTER = (sp.Symbol(n) for n in ("I", "11T", "xhatxhatT"))
J, J_T = sp.Symbol("J"), sp.Symbol("J^T")
SUM_DX, SUM_DX_XHAT, MEAN_Y = (sp.Symbol(n) for n in ("sum_dx", "sum_dx_xhat", "mean_y"))
Y_SCALED, Y_UNDONE = sp.Symbol("y_i(a*x + c)"), sp.Symbol("y_i|undo")
Y_I, X_I = sp.Symbol("y_i", real=True), sp.Symbol("x_i", real=True)


class ProofError(RuntimeError):
    """An expression fell outside the frame (a bug in the derivation, not bad input)."""


class Frame:
    """The centred frame of one derivation: maps graph expressions to Laurent polynomials.

    Polynomials are SymPy's sparse ``PolyElement`` over QQ (dicts of exponent tuples), which
    is two orders of magnitude faster than ``expand`` on ``Expr`` trees. Negative exponents
    are allowed for S, T and σ (all positive), which makes the ring the Laurent ring in them.
    """

    def __init__(self, s: Symbols, variance: str, placement: str, mode: str) -> None:
        from sympy.polys.domains import QQ
        from sympy.polys.rings import ring

        self.s, self.placement, self.mode = s, placement, mode
        m = s.m
        self.sigma = s.sigma
        self.S = sp.Symbol("S", positive=True)
        self.T = sp.Symbol("T", positive=True)
        train = mode == "train"
        free = sp.symbols(f"d1:{m}", real=True) if train else ()
        self.extra = sp.symbols("a c", real=True)
        gens = [
            *free,
            *s.dy,
            s.gamma,
            s.beta,
            s.mu,
            self.sigma,
            self.S,
            self.T,
            *self.extra,
            SUM_DY,
            SUM_DY_XHAT,
        ]
        if not train:
            gens += [*s.x, s.running_mean]
        self.ring, *ring_gens = ring(gens, QQ)
        self.gen = dict(zip(gens, ring_gens, strict=True))
        self.k = _normalizer(m, variance) if train else sp.Integer(0)
        values: dict[sp.Basic, Any] = {}
        if train:
            d = [self.gen[f] for f in free]
            d.append(-sum(d, self.ring.zero))  # Σ d_i = 0 is the definition of μ_B
            self.d = d
            values.update({xi: self.gen[s.mu] + di for xi, di in zip(s.x, d, strict=True)})
            values[s.var] = self.gen[self.sigma] ** 2
        else:
            values[s.running_var] = self.gen[self.sigma] ** 2
        sigma_r = self.gen[self.sigma]
        if placement == "inside":
            values[s.eps] = self.gen[self.S] ** 2 - sigma_r**2
        else:
            values[s.eps] = self.gen[self.T] - sigma_r
        self.values = values
        self.overrides: dict[sp.Basic, Any] = {}
        # Subtrees are shared between the m elements (∂ℓ/∂σ²_B appears in every ∂ℓ/∂x_i):
        # converting each once keeps the proofs O(m²).
        self.memo: dict[sp.Basic, Any] = {}

    def __call__(self, expr: sp.Basic) -> Any:
        """``expr`` as a Laurent polynomial in the frame (raises ProofError if it cannot be)."""
        return self._convert(expr, self.memo)

    def _convert(self, e: sp.Basic, memo: dict[sp.Basic, Any]) -> Any:
        hit = memo.get(e)
        if hit is not None:
            return hit
        R = self.ring
        if e in self.overrides:
            out = self.overrides[e]
        elif e in self.values:
            out = self.values[e]
        elif e in self.gen:
            out = self.gen[e]
        elif e.is_Rational:
            out = R(e)
        elif e.is_Add:
            out = R.zero
            for a in e.args:
                out = out + self._convert(a, memo)
        elif e.is_Mul:
            out = R.one
            for a in e.args:
                out = out * self._convert(a, memo)
        elif e.is_Pow:
            base = self._convert(e.base, memo)
            exp = e.exp
            if exp.is_Integer and exp >= 0:
                out = base ** int(exp)
            else:
                out = _monomial_power(R, base, exp, e)
        else:
            raise ProofError(f"cannot put {e} in the centred frame")
        memo[e] = out
        return out

    def coefficients(self, linear: Sequence[Any], of: Sequence[sp.Symbol]) -> list[list[Any]]:
        """For polynomials p_i linear in the symbols ``of`` (c_j), the matrix [j][i] of the
        coefficient of c_j in p_i — the Jacobian entries ∂y_j/∂x_i from the ∂ℓ/∂x_i."""
        R = self.ring
        index = [R.gens.index(self.gen[c]) for c in of]
        where = {g: j for j, g in enumerate(index)}
        out = [[R.zero for _ in linear] for _ in of]
        for i, p in enumerate(linear):
            for monom, coeff in p.items():
                hits = [g for g in index if monom[g]]
                if len(hits) != 1 or monom[hits[0]] != 1:
                    raise ProofError("the gradient is not linear in the upstream gradients")
                g = hits[0]
                rest = monom[:g] + (0,) + monom[g + 1 :]
                out[where[g]][i] += R({rest: coeff})
        return out

    def is_zero(self, expr: sp.Basic) -> bool:
        """True when ``expr`` (in graph symbols) is identically zero in the frame; exact."""
        return not self(expr)


def _monomial_power(R: Any, base: Any, exp: sp.Rational, e: sp.Basic) -> Any:
    """base**exp for a single-term base (S², σ, 4·S²...); rational exponents need exact roots."""
    if len(base) != 1:
        raise ProofError(f"{e}: the base is not a single monomial in the frame")
    ((monom, coeff),) = base.items()
    p, q = int(exp.p), int(exp.q)
    if any(x * p % q for x in monom):
        raise ProofError(f"{e}: the exponent does not divide the monomial's exponents")
    c = sp.Rational(coeff.numerator, coeff.denominator) ** exp
    if not c.is_Rational:
        raise ProofError(f"{e}: the coefficient has no rational root")
    return R({tuple(x * p // q for x in monom): c})


def prove(
    s: Symbols,
    forward: Sequence[Step],
    backward: Sequence[Step],
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
) -> dict[str, Any]:
    """Closed form, Jacobian, identities and explicit expressions, with their proofs."""
    m = s.m
    frame = Frame(s, variance, placement, mode)
    train = mode == "train"
    gamma = s.gamma if affine else sp.Integer(1)
    mu, var = (s.mu, s.var) if train else (s.running_mean, s.running_var)
    D = sp.sqrt(var + s.eps) if placement == "inside" else sp.sqrt(var) + s.eps
    k = _normalizer(m, variance) if train else sp.Integer(0)
    # r: the extra factor of the x̂x̂ᵀ term when ε is outside the root, (σ + ε)/σ.
    r = sp.Integer(1) if placement == "inside" else D / sp.sqrt(var)
    chain = {st.lhs: st.value for st in backward}
    dx_chain = [chain[dxi] for dxi in s.dx]
    x_hat_graph = [(xi - mu) / D for xi in s.x]
    verified: dict[str, bool] = {}
    methods: dict[str, str] = {}

    # --- the closed form ---------------------------------------------------------------------
    c_outer = m * k * r  # 1 for the paper's variant
    # Shown with σ_B for √σ²_B (ε outside the root), as the notes write it.
    D_shown, c_shown = D, c_outer
    if train and placement == "outside":
        D_shown = s.sigma + s.eps
        c_shown = m * k * D_shown / s.sigma

    def closed(dy_i: sp.Expr, x_hat_i: sp.Expr) -> sp.Expr:
        """The closed form for one element, its terms kept in the order the notes write them."""
        if not train:
            return sp.Mul(gamma / D, dy_i, evaluate=False)
        inner = sp.Add(m * dy_i, -SUM_DY, -sp.Mul(c_shown, x_hat_i, SUM_DY_XHAT), evaluate=False)
        return sp.Mul(gamma / (m * D_shown), inner, evaluate=False)

    generic = Step(
        DX_I,
        closed(DY_I, XHAT_I),
        "closed form" if train else "eval mode: a per-feature scaling",
    )
    sum_dy = sp.Add(*s.dy)
    sum_dy_xhat_graph = sp.Add(*[dyj * xh for dyj, xh in zip(s.dy, x_hat_graph, strict=True)])
    closed_values = []
    per_element = []
    for i in range(m):
        shown = closed(s.dy[i], s.x_hat[i])
        value = shown.xreplace(
            {
                SUM_DY: sum_dy,
                SUM_DY_XHAT: sum_dy_xhat_graph,
                s.x_hat[i]: x_hat_graph[i],
                s.sigma: sp.sqrt(var),
            }
        )
        closed_values.append(value)
        per_element.append(Step(s.dx[i], shown, "closed form", value))
    chain_in_frame = [frame(d) for d in dx_chain]
    verified["closed_form"] = all(
        frame(c) == d for c, d in zip(closed_values, chain_in_frame, strict=True)
    )
    # The denominator, the mean and the variance as the notes write them, for the sentences.
    den_txt = (
        "√(σ²_run + ε)" if not train else "√(σ²_B + ε)" if placement == "inside" else "σ_B + ε"
    )
    mu_txt = "μ_B" if train else "μ_run"
    n_txt = "m" if variance == "biased" else "m − 1"
    methods["closed_form"] = (
        "for each i, the closed form minus the chain-rule ∂ℓ/∂x_i is the zero polynomial "
        + (
            f"once x_i = μ_B + d_i with Σd_i = 0 (the definition of μ_B) and {den_txt} is "
            "one positive symbol"
            if train
            else f"once {den_txt} is one positive symbol"
        )
    )

    # --- chain rule against direct differentiation of the explicit forward pass ---------------
    if m <= DIRECT_MAX_M:
        verified["chain_rule"] = _direct_matches_chain(
            s, forward, dx_chain, frame, placement, k, train
        )
        methods["chain_rule"] = (
            "the chain-rule ∂ℓ/∂x_i equals Σ_j ∂ℓ/∂y_j·∂y_j/∂x_i with each y_j differentiated "
            "directly as a function of x_1..x_m, as polynomials (the same substitutions)"
        )

    # --- the Jacobian -----------------------------------------------------------------------------
    # Unevaluated, so that it reads (γ/D)·(I − 𝟙𝟙ᵀ/m − x̂x̂ᵀ/m) as the notes write it.
    structure = (
        sp.Mul(
            gamma / D_shown,
            sp.Add(EYE, -ONES / m, -c_shown / m * XHAT_OUTER, evaluate=False),
            evaluate=False,
        )
        if train
        else sp.Mul(gamma / D, EYE, evaluate=False)
    )
    jacobian_structure = Step(J, structure, "structure of ∂y/∂x")

    def structured(j: int, i: int) -> sp.Expr:
        delta = 1 if i == j else 0
        if not train:
            return gamma * delta / D
        return gamma / D * (delta - sp.Rational(1, m) - k * r * x_hat_graph[i] * x_hat_graph[j])

    # Shown with x̂ symbols; proved against the entries derived from the chain rule.
    jacobian = (
        sp.Matrix(
            m,
            m,
            lambda j, i: (
                gamma / D * (int(i == j) - sp.Rational(1, m) - k * r * s.x_hat[i] * s.x_hat[j])
                if train
                else gamma * int(i == j) / D
            ),
        )
        if m <= JACOBIAN_MAX_M
        else None
    )
    if m <= JACOBIAN_MAX_M:
        # ∂y_j/∂x_i is the coefficient of ∂ℓ/∂y_j in ∂ℓ/∂x_i (which is linear in the dy).
        entries = frame.coefficients(chain_in_frame, s.dy)
        verified["jacobian_structure"] = all(
            entries[j][i] == frame(structured(j, i)) for j in range(m) for i in range(m)
        )
        verified["jacobian_symmetric"] = all(
            entries[j][i] == entries[i][j] for j in range(m) for i in range(j)
        )
        methods["jacobian_structure"] = (
            "each entry ∂y_j/∂x_i (the coefficient of ∂ℓ/∂y_j in the chain-rule ∂ℓ/∂x_i) "
            "equals the entry of the structured matrix, as polynomials"
        )
        methods["jacobian_symmetric"] = "J_ij = J_ji for every pair, as polynomials, exactly"
    else:
        # ∂ℓ/∂x = Jᵀ ∂ℓ/∂y for every ∂ℓ/∂y, so the closed-form proof (an identity in the
        # symbols dy_j) proves Jᵀ equal to the structured matrix, which is symmetric.
        verified["jacobian_structure"] = verified["closed_form"]
        verified["jacobian_symmetric"] = verified["closed_form"]
        methods["jacobian_structure"] = (
            "∂ℓ/∂x = Jᵀ·∂ℓ/∂y with ∂ℓ/∂y symbolic, so the closed-form proof is an identity in "
            "the dy_j and proves Jᵀ equal to the structured matrix, entry by entry"
        )
        methods["jacobian_symmetric"] = "the structured matrix is a sum of symmetric matrices"

    # --- identities -------------------------------------------------------------------------------
    identities = []
    if train:
        verified["sum_dx_zero"] = frame.is_zero(sp.Add(*dx_chain))
        methods["sum_dx_zero"] = "Σ_i of the chain-rule ∂ℓ/∂x_i is the zero polynomial, for any ε"
        identities.append(
            Step(SUM_DX, sp.Integer(0), "sum_dx_zero", note="for any ε: the gradient is centred")
        )
        # Σ_i x̂_i·∂ℓ/∂x_i with the (proved) closed form is (γ/D)·(A − (B/m)·P1 − k·r·A·P2),
        # A = Σ_j ∂ℓ/∂y_j x̂_j, B = Σ_j ∂ℓ/∂y_j, P1 = Σ x̂_i = 0 and P2 = Σ x̂_i² = σ²/(k·D²);
        # the residual is proportional to ε.
        lemma_p1 = frame.is_zero(sp.Add(*[xi - mu for xi in s.x]))
        lemma_p2 = sp.expand(sp.Add(*[(xi - mu) ** 2 for xi in s.x]) - forward[1].rhs / k) == 0
        P2 = var / (k * D**2)
        lhs = gamma / D * (SUM_DY_XHAT - k * r * SUM_DY_XHAT * P2)
        if placement == "inside":
            residual_shown = gamma * s.eps * SUM_DY_XHAT / D**3
        else:
            residual_shown = gamma * s.eps * SUM_DY_XHAT / D**2
        verified["sum_dx_xhat"] = (
            verified["closed_form"]
            and lemma_p1
            and lemma_p2
            and frame.is_zero(lhs - residual_shown)
        )
        methods["sum_dx_xhat"] = (
            "multiplying the (proved) closed form by x̂_i and summing needs two facts, checked "
            f"as polynomials: Σ_i x̂_i = 0 and Σ_i x̂_i² = ({n_txt})·σ²_B/({den_txt})²; what "
            "remains equals the residual exactly, and it is 0 exactly when ε = 0 "
            "(or when Σ_j ∂ℓ/∂y_j·x̂_j = 0)"
        )
        identities.append(
            Step(
                SUM_DX_XHAT,
                residual_shown,
                "sum_dx_xhat",
                note="zero exactly when ε = 0: with ε > 0 the gradient keeps a small x̂ component",
            )
        )
        y_graph = [gamma * xh + (s.beta if affine else 0) for xh in x_hat_graph]
        verified["mean_output_beta"] = frame.is_zero(
            sp.Add(*y_graph) / m - (s.beta if affine else 0)
        )
        methods["mean_output_beta"] = (
            "(1/m)·Σ_i y_i − β is the zero polynomial once Σ_i (x_i − μ_B) = 0 is used"
        )
        identities.append(
            Step(
                MEAN_Y,
                s.beta if affine else sp.Integer(0),
                "mean_output_beta",
                note="the output mean is β whatever the input",
            )
        )
        verified["scale_shift_invariance"] = _scale_shift_invariant(s, forward, k)
        methods["scale_shift_invariance"] = (
            "with ε = 0, replacing every x_i by a·x_i + c, where a > 0, turns μ_B into "
            "a·μ_B + c and σ²_B into a²·σ²_B (each difference expands to zero), so x̂_i is "
            "unchanged since √(a²·σ²_B) = a·σ_B"
        )
        identities.append(
            Step(
                Y_SCALED,
                Y_I,
                "scale_shift_invariance",
                note="with ε = 0: x_i → a·x_i + c, where a > 0, leaves every y_i unchanged",
            )
        )
    if affine:
        undo = {s.gamma: D, s.beta: mu}
        verified["undo_normalization"] = all(
            frame.is_zero((s.gamma * xh + s.beta).xreplace(undo) - xi)
            for xh, xi in zip(x_hat_graph, s.x, strict=True)
        )
        methods["undo_normalization"] = (
            f"γ = {den_txt} and β = {mu_txt} substituted into y_i give x_i exactly"
        )
        identities.append(
            Step(
                Y_UNDONE,
                X_I,
                "undo_normalization",
                note=f"with γ = {den_txt} and β = {mu_txt} the layer returns its input: "
                "γ and β can undo the normalization",
            )
        )

    explicit = _explicit(s, forward, dx_chain, gamma, mu, var, D, k, r, affine, train, placement)
    return {
        "closed_form": (generic, *per_element),
        "jacobian": jacobian,
        "jacobian_structure": jacobian_structure,
        "identities": tuple(identities),
        "verified": verified,
        "proof_methods": methods,
        "explicit": explicit,
    }


def _direct_matches_chain(
    s: Symbols,
    forward: Sequence[Step],
    dx_chain: list[sp.Expr],
    frame: Frame,
    placement: str,
    k: sp.Expr,
    train: bool,
) -> bool:
    """Differentiate the fully explicit y_j(x_1..x_m) directly and compare with the chain rule."""
    # y_j as a function of x_1..x_m alone; σ²_B written k·(Σx_i² − (Σx_i)²/m), which is
    # the same function as k·Σ(x_i − μ_B)² with O(m) instead of O(m²) terms.
    m = s.m
    mean_x = sp.Add(*s.x) / m
    var_x: sp.Expr | None = None
    if train:
        var_x = k * (sp.Add(*[xi**2 for xi in s.x]) - sp.Add(*s.x) ** 2 / m)
        if frame(forward[1].rhs.xreplace({s.mu: mean_x})) != frame(var_x):
            return False  # the two forms of σ²_B differ: cannot happen unless the graph is wrong
    to_x = {s.mu: mean_x, s.var: var_x} if var_x is not None else {}
    x_hat_x = {
        xh: n.rhs.xreplace(to_x) for xh, n in zip(s.x_hat, forward[-2 * m : -m], strict=True)
    }
    y_explicit = [n.rhs.xreplace(x_hat_x) for n in forward[-m:]]
    direct_frame = copy.copy(frame)  # the same ring, its own substitutions
    direct_frame.values = dict(frame.values)
    direct_frame.overrides = {}
    direct_frame.memo = {}
    if var_x is None:  # eval mode: the running statistics are constants already
        pass
    elif placement == "inside":
        # ε = S² − σ²(x): then σ²(x) + ε is S² in the ring, whatever the form of σ²(x)
        direct_frame.values[s.eps] = direct_frame.gen[frame.S] ** 2 - direct_frame(var_x)
    else:
        # σ²(x) is the base of √σ²(x): read it as σ², then σ + ε = T as before
        direct_frame.overrides[var_x] = direct_frame.gen[frame.sigma] ** 2
    for i, xi in enumerate(s.x):
        direct = sp.Add(*[dyj * sp.diff(yj, xi) for dyj, yj in zip(s.dy, y_explicit, strict=True)])
        if direct_frame(direct) != frame(dx_chain[i]):
            return False
    return True


def _scale_shift_invariant(s: Symbols, forward: Sequence[Step], k: sp.Expr) -> bool:
    a = sp.Symbol("a", positive=True)
    c = sp.Symbol("c", real=True)
    mean_def = forward[0].rhs
    scaled = {xi: a * xi + c for xi in s.x}
    # μ_B(a·x + c) = a·μ_B + c
    lemma_mean = sp.expand(mean_def.xreplace(scaled) - (a * mean_def + c)) == 0
    # σ²_B(a·x + c) = a²·σ²_B, term by term (each term is k·(x_i − μ_B)²)
    lemma_var = all(
        sp.expand(k * (a * xi + c - (a * s.mu + c)) ** 2 - a**2 * k * (xi - s.mu) ** 2) == 0
        for xi in s.x
    )
    sigma2 = sp.Symbol("sigma2", positive=True)
    ok = True
    for xi in s.x:
        # ε = 0, so inside and outside the root agree: x̂_i = (x_i − μ_B)/σ_B
        before = (xi - s.mu) / sp.sqrt(sigma2)
        after = sp.factor_terms(a * xi + c - (a * s.mu + c)) / sp.sqrt(a**2 * sigma2)
        ok = ok and sp.expand(after - before) == 0
        if not ok:
            break
    return lemma_mean and lemma_var and ok


def _explicit(
    s: Symbols,
    forward: Sequence[Step],
    dx_chain: list[sp.Expr],
    gamma: sp.Expr,
    mu: sp.Expr,
    var: sp.Expr,
    D: sp.Expr,
    k: sp.Expr,
    r: sp.Expr,
    affine: bool,
    train: bool,
    placement: str,
) -> dict[str, Any]:
    """Every result in terms of the inputs only, each of size O(m) (for JSON and codegen).

    The variance is written Σx_i²·k − k·(Σx_i)²/m and Σ_j dy_j·(x_j − μ) as
    Σ_j dy_j·x_j − μ·Σ_j dy_j, so that no expression repeats an O(m) sum m times.
    """
    m = s.m
    sum_dy = sp.Add(*s.dy)
    if train:
        mean_x = sp.Add(*s.x) / m
        var_x = k * (sp.Add(*[xi**2 for xi in s.x]) - sp.Add(*s.x) ** 2 / m)
        to_inputs = {s.mu: mean_x, s.var: var_x}
    else:
        mean_x, var_x = s.running_mean, s.running_var
        to_inputs = {}
    D_x = D.xreplace(to_inputs)
    r_x = r.xreplace(to_inputs)
    centred = [xi - mean_x for xi in s.x]
    x_hat = [c / D_x for c in centred]
    y = [gamma * xh + (s.beta if affine else 0) for xh in x_hat]
    sum_dy_centred = (
        sp.Add(*[dyj * xj for dyj, xj in zip(s.dy, s.x, strict=True)]) - mean_x * sum_dy
    )
    if train:
        dx = [
            gamma / D_x * (s.dy[i] - sum_dy / m - k * r_x * centred[i] * sum_dy_centred / D_x**2)
            for i in range(m)
        ]
    else:
        dx = [gamma * dyi / D_x for dyi in s.dy]
    # Fully in x_1..x_m for small m; with ε outside the root that form is all |x_i − x_j| and
    # nested roots, so only the inside variant gets it.
    explicit_ok = m <= EXPLICIT_MAX_M and train and placement == "inside"
    if explicit_ok:
        values = explicit_forward(s, forward)
        full = {s.mu: values[s.mu], s.var: values[s.var]}
        dx = [sp.factor(sp.together(d.xreplace(full))) for d in dx_chain]
        x_hat = [sp.factor(sp.together(((xi - s.mu) / D).xreplace(full))) for xi in s.x]
        y = [gamma * xh + (s.beta if affine else 0) for xh in x_hat]
        var_x = sp.factor(values[s.var])
    return {
        "mean": mean_x,
        "var": var_x,
        "x_hat": tuple(x_hat),
        "y": tuple(y),
        "dx": tuple(dx),
        "dgamma": sum_dy_centred / D_x if affine else None,
        "dbeta": sum_dy if affine else None,
        "dx_factored": tuple(dx) if explicit_ok else None,
    }
