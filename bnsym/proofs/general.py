"""The general form's proofs: every identity for every m at once, with symbolic m.

The general form (:mod:`bnsym.core.general`) is a layer's graph written once for every m, with
``Sum`` over ``Indexed``. A Σ is linear, so once every node is replaced by its definition each
side of an identity reduces to a rational function of m, the scalars and a few sum atoms
(Σ_j x_j, Σ_j x_j², Σ_j ∂ℓ/∂y_j·x_j, …); the definitions of the statistics, reduced the same
way, give Σ_j x_j = m·μ and Σ_j x_j² = σ²/k + m·μ², and an identity holds when the
difference cancels to zero (:class:`_Reducer`). The proofs are those of the instance
(:mod:`bnsym.proofs.prover`) that hold for every m: the closed form, Σ∂ℓ/∂x_i = 0,
Σ∂ℓ/∂x_i·x̂_i's residual, mean(y) = β, the invariance under x → a·x + c, the output's
spread and γ, β undoing the normalization, each where the declaration makes it true.
A derivation above GENERAL_PROOF_MIN_M records them from here instead of redoing them.
SymPy only.

>>> g = derive_general("batchnorm")
>>> g.backward[0].rhs
gamma*dy[i]
>>> all(g.verified.values())
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp

from bnsym.core.general import (
    DOTBETA,
    DOTGAMMA,
    DOTX,
    DX,
    DY,
    XHAT,
    General,
    GeneralForward,
    GeneralGraph,
    I,
    J,
    K,
    M,
    X,
    Y,
    _tangent_of,
    general_forward,
    general_graph,
    shown,
)
from bnsym.core.graph import Step, Symbols, added
from bnsym.family.layers import Layer

__all__ = ["derive_general", "derive_general_forward", "prove_general"]

_J0 = sp.Symbol("j0", integer=True, positive=True)  # the canonical dummy of a sum atom


@functools.cache
def derive_general(
    layer: Layer | str = "batchnorm",
    variance: str = "biased",
    placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
    identities: bool = True,
) -> General:
    """The layer's graph, chain rule and closed form with symbolic m
    (:func:`bnsym.core.general.general_graph`), with their proofs for every m
    (:func:`prove_general`; the identities only with ``identities``).

    >>> derive_general("rmsnorm").closed_form.rhs
    (m*dy[i]*gamma[i] - xhat[i]*Sum(dy[j]*gamma[j]*xhat[j], (j, 1, m)))/(m*sqrt(epsilon + nu2))
    """
    g = general_graph(layer, variance, placement, affine, mode)
    verified, methods, residual = prove_general(g, identities)
    return shown(g, verified, methods, residual)


class _Reducer:
    """Reduce an expression of the general form to a rational function of sum atoms."""

    def __init__(self, s: Symbols, facts: Mapping[str, Any], nodes: Sequence[Step], placement: str):
        self.s, self.facts, self.placement = s, facts, placement
        self.atoms: dict[sp.Basic, sp.Symbol] = {}
        self.node_of = {n.lhs.base: n.rhs for n in nodes if isinstance(n.lhs, sp.Indexed)}
        self.lemmas: dict[sp.Symbol, sp.Expr] = {}
        # Σ_j x_j = m·μ and Σ_j x_j² = σ²/k + m·μ², from the definitions of the statistics
        for n in nodes:
            if not isinstance(n.lhs, sp.Indexed):
                reduced = self.linear(n.rhs).xreplace(self.lemmas)
                (atom,) = (a for a in reduced.free_symbols if a in self.atoms.values())
                reduced = sp.expand(reduced)  # linear in the atom: a·atom + b = node
                a = reduced.coeff(atom)
                self.lemmas[atom] = sp.expand((n.lhs - (reduced - a * atom)) / a)

    def inputs(self, expr: sp.Expr) -> sp.Expr:
        """Every x̂ and y element replaced by its definition."""
        for _ in range(2):
            expr = expr.replace(
                lambda e: isinstance(e, sp.Indexed) and e.base in self.node_of,
                lambda e: self.node_of[e.base].xreplace({I: e.indices[0]}),
            )
        return expr

    def linear(self, expr: sp.Expr) -> sp.Expr:
        """Each Σ replaced by its expansion over sum atoms (symbols), innermost first."""
        if not isinstance(expr, sp.Basic) or expr.is_Atom or isinstance(expr, sp.Indexed):
            return expr
        args = [self.linear(a) for a in expr.args]
        if not isinstance(expr, sp.Sum):
            return expr.func(*args)
        v, lo, hi = expr.limits[0]
        out = []
        for term in sp.Add.make_args(sp.expand(args[0])):
            inside = sp.Mul(*[f for f in sp.Mul.make_args(term) if f.has(v)])
            outside = sp.Mul(*[f for f in sp.Mul.make_args(term) if not f.has(v)])
            if inside == 1:
                out.append(outside * (hi - lo + 1))
                continue
            key = sp.Sum(inside.xreplace({v: _J0}), (_J0, lo, hi))
            atom = self.atoms.setdefault(key, sp.Symbol(f"S{len(self.atoms)}", real=True))
            out.append(outside * atom)
        return sp.Add(*out)

    def is_zero(self, expr: sp.Expr) -> bool:
        s = self.s
        e = self.linear(self.inputs(expr)).xreplace(self.lemmas)
        var, eps = self.facts["var"], s.eps
        if self.placement == "inside":
            D = sp.Symbol("D", positive=True)
            e = e.subs(var, D**2 - eps)
        else:
            e = e.subs(var, s.sigma**2)
        return bool(sp.cancel(sp.together(e)) == 0)


def prove_general(
    g: GeneralGraph, identities: bool = True
) -> tuple[dict[str, bool], dict[str, str], sp.Expr | None]:
    """The proofs of the general form ``g`` for every m: proof name -> result, proof name ->
    method, and Σ_i ∂ℓ/∂x_i·x̂_i's residual (None where the identities are not proved).

    The closed form is always proved; the identities (Σ∂ℓ/∂x_i = 0, …) only with
    ``identities``: a derivation for m ≤ GENERAL_PROOF_MIN_M proves them for its m, cheaply,
    and the general proofs would only double its time.
    """
    decl, s, facts, nodes = g.layer, g.symbols, g.facts, g.forward
    backward, closed, placement, affine = g.backward, g.closed, g.placement, g.affine
    r = _Reducer(s, facts, nodes, placement)
    dx: sp.Expr = next(st.value for st in backward if st.lhs == DX[K] and st.value is not None)
    verified, methods = {}, {}
    lemma = (
        "with symbolic m: every Σ expanded by linearity into sum atoms, Σ_j x_j = m·μ and "
        "Σ_j x_j² = σ²/k + m·μ² from the definitions of the statistics, and the difference "
        "cancels to zero as a rational function"
    )
    if not facts["train"]:
        lemma = "with symbolic m: the difference cancels to zero as a rational function"
    verified["closed_form"] = r.is_zero(dx - closed)
    methods["closed_form"] = (
        "for every m at once: the closed form minus the chain rule's ∂ℓ/∂x_i, " + lemma
    )
    residual = None
    if not identities:  # the identities are proved for the instance (m ≤ GENERAL_PROOF_MIN_M)
        return verified, methods, residual
    if facts["train"]:
        every = {K: J}
        if decl.centred:
            verified["sum_dx_zero"] = r.is_zero(sp.Sum(dx.xreplace(every), (J, 1, M)))
            methods["sum_dx_zero"] = (
                "for every m at once: Σ_i of the chain rule's ∂ℓ/∂x_i, " + lemma
            )
        gamma = facts["gamma"]
        shared = not isinstance(gamma, sp.Indexed)
        g_j = DY[J] if shared else gamma.xreplace({I: J}) * DY[J]
        scale = gamma if (shared and affine) else sp.Integer(1)
        # γ·e·Σ_j g_j·x̂_j/D³ with ε inside the root (e = ε), /D² outside (e = ε or √ε)
        power = 3 if placement == "inside" else 2
        residual = scale * added(s.eps, placement) * sp.Sum(g_j * XHAT[J], (J, 1, M))
        residual = residual / facts["D"] ** power
        total = sp.Sum(dx.xreplace(every) * XHAT[J], (J, 1, M))
        verified["sum_dx_xhat"] = r.is_zero(total - residual)
        methods["sum_dx_xhat"] = "for every m at once: Σ_i ∂ℓ/∂x_i·x̂_i minus the residual, " + lemma
        if decl.centred and shared:
            y = sp.Sum(Y[J], (J, 1, M)) / M - (facts["beta"] if affine and decl.beta else 0)
            verified["mean_output_beta"] = r.is_zero(y)
            methods["mean_output_beta"] = "for every m at once: (1/m)·Σ_i y_i − β, " + lemma
        name = "scale_shift_invariance" if decl.centred else "scale_invariance"
        verified[name] = _scale_invariant(r, decl.centred, nodes, s, facts)
        methods[name] = (
            "for every m at once: with ε = 0 and every x_j replaced by a·x_j"
            + (" + c, μ(a·x + c) − (a·μ + c) and σ²(a·x + c) − a²·σ²" if decl.centred else "")
            + ("" if decl.centred else ", ν²(a·x) − a²·ν²")
            + " reduce to zero with symbolic m, and then x̂_i is unchanged"
        )
    if facts["train"]:  # the spread: (1/m)·Σ(y_j − β)² = γ²·σ²/(m·k·D²), or the same for x̂
        definition = {n.lhs: n.rhs for n in nodes}
        shared = not isinstance(facts["gamma"], sp.Indexed)
        of_y = decl.centred and shared and affine
        if of_y:
            beta = facts["beta"] if decl.beta else 0
            lhs = sp.Sum((Y[J] - beta) ** 2, (J, 1, M)) / M
        else:
            lhs = sp.Sum(XHAT[J] ** 2, (J, 1, M)) / M
        scale = facts["gamma"] ** 2 if of_y else 1
        claim = scale * definition[facts["var"]] / (M * facts["k"] * facts["D"] ** 2)
        verified["output_spread"] = r.is_zero(lhs - claim)
        methods["output_spread"] = (
            "for every m at once: "
            + ("(1/m)·Σ_j (y_j − β)²" if of_y else "(1/m)·Σ_j x̂_j²")
            + " minus the right-hand side, with the variance written as its definition, "
            + lemma
        )
    if affine:
        undo = {facts["gamma"]: facts["D"]}
        if decl.beta:
            undo[facts["beta"]] = facts["mu"]
        y_undone = nodes[-1].rhs.xreplace(undo)
        verified["undo_normalization"] = r.is_zero(y_undone - X[I])
        methods["undo_normalization"] = (
            "for every m at once: γ = the denominator"
            + (" and β = the mean" if decl.beta else "")
            + " in the graph's y_i give x_i exactly"
        )
    return verified, methods, residual


def _scale_invariant(
    r: _Reducer, centred: bool, nodes: Sequence[Step], s: Symbols, facts: Mapping[str, Any]
) -> bool:
    """With ε = 0 the statistics of a·x + c are a·μ + c and a²·σ² (c = 0 for RMS norm), with
    symbolic m, so x̂_i = (x_i − μ)/σ is unchanged."""
    a, shift = sp.Symbol("a", positive=True), sp.Symbol("c", real=True) if centred else 0
    definition = {n.lhs: n.rhs for n in nodes}

    def scaled(e: sp.Expr) -> sp.Expr:
        return e.replace(
            lambda t: isinstance(t, sp.Indexed) and t.base == X,
            lambda t: a * t + shift,
        )

    var, after = facts["var"], {s.var: a**2 * s.var, s.eps: 0}
    ok = True
    if centred:
        mean_def = definition[s.mu]
        ok = r.is_zero(scaled(mean_def) - (a * mean_def + shift))
        after[s.mu] = a * s.mu + shift
    var_def = definition[var]
    ok = ok and r.is_zero(scaled(var_def).xreplace(after) - a**2 * var_def)
    x_hat = definition[XHAT[I]]
    moved = scaled(x_hat).xreplace(after)
    return bool(ok and sp.cancel(moved - x_hat.xreplace({s.eps: 0})) == 0)


# --- forward mode for every m -------------------------------------------------------------------


@functools.cache
def derive_general_forward(
    layer: Layer | str = "batchnorm",
    variance: str = "biased",
    placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
    transpose: bool = True,
) -> GeneralForward:
    """Forward mode of the layer for every m (:func:`bnsym.core.general.general_forward`),
    proved with symbolic m: the closed form of ẏ_i equals the walk (``jvp_closed_form``), and
    (with ``transpose``) Σ_i ẏ_i·ȳ_i = Σ_i ẋ_i·x̄_i + Σ γ̇·γ̄ + Σ β̇·β̄ with x̄ the general
    chain rule's ∂ℓ/∂x (``jvp_transpose``; a derivation up to m = 16 proves it for its m,
    cheaply, as the first order's identities are).

    >>> all(derive_general_forward("groupnorm").verified.values())
    True
    """
    g = general_graph(layer, variance, placement, affine, mode)
    steps, closed = general_forward(g)
    decl, s, facts = g.layer, g.symbols, g.facts
    r = _Reducer(s, facts, g.forward, placement)
    doty = steps[-1].value
    assert doty is not None
    lemma = (
        "every Σ expanded by linearity into sum atoms, Σ_j x_j = m·μ and Σ_j x_j² = σ²/k + m·μ² "
        "from the definitions of the statistics, and the difference cancels to zero as a "
        "rational function"
    )
    verified = {"jvp_closed_form": r.is_zero(doty - closed.rhs)}
    methods = {
        "jvp_closed_form": "for every m at once: the closed form of ẏ_i minus the forward walk's, "
        + lemma
    }
    if not transpose:
        return GeneralForward(decl, steps, closed, verified, methods)
    every = {I: J}
    backward = {st.lhs: st.value for st in g.backward}
    dx = backward[DX[K]]
    assert dx is not None
    lhs = sp.Sum(doty.xreplace(every) * DY[J], (J, 1, M))
    rhs = sp.Sum(dx.xreplace({K: J}) * DOTX[J], (J, 1, M))
    if affine:
        tangent = _tangent_of(g)
        if decl.params == "shared":  # γ̇·∂ℓ/∂γ + β̇·∂ℓ/∂β, from the chain rule's own steps
            rhs += tangent[s.gamma] * backward[s.dgamma]
            if decl.beta:
                rhs += tangent[s.beta] * backward[s.dbeta]
        else:  # Σ_k γ̇_k·∂ℓ/∂γ_k regrouped by value: Σ_i γ̇_(k(i))·ȳ_i·x̂_i (and β)
            gamma, beta = facts["gamma"], facts["beta"]
            g_dot = DOTGAMMA[gamma.indices].xreplace(every)
            rhs += sp.Sum(g_dot * DY[J] * XHAT[J], (J, 1, M))
            if decl.beta:
                rhs += sp.Sum(DOTBETA[beta.indices].xreplace(every) * DY[J], (J, 1, M))
    verified["jvp_transpose"] = r.is_zero(lhs - rhs)
    methods["jvp_transpose"] = (
        "for every m at once: Σ_i ẏ_i·∂ℓ/∂y_i minus Σ_i ẋ_i·∂ℓ/∂x_i (the general chain rule's) "
        "minus the γ̇, β̇ terms"
        + (" (Σ_k γ̇_k·∂ℓ/∂γ_k written Σ_i γ̇_k(i)·∂ℓ/∂y_i·x̂_i)" if decl.params != "shared" else "")
        + ", "
        + lemma
    )
    return GeneralForward(decl, steps, closed, verified, methods)
