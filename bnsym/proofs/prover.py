"""The one prover: for any layer's declaration, in each of its modes, every ε placement and
variance, with or without γ and β, the results of a derivation and their exact proofs.

With g_i = γ_k(i)·∂ℓ/∂y_i (γ_k(i) the γ that scales element i; γ = 1 without them):

- ``closed_form``: ∂ℓ/∂x_i = (1/(m·D))·(m·g_i − Σ_j g_j − m·k·r·x̂_i·Σ_j g_j·x̂_j) in train
  mode, without the Σ_j g_j term where no mean is subtracted (k = 1/m or 1/(m − 1), r = D/σ
  with ε outside the root, else 1; γ taken out where one γ scales the group); in eval mode,
  where the statistics are constants, ∂ℓ/∂x_i = g_i/D;
- ``chain_rule`` (m ≤ 8): the chain rule equals direct differentiation of y_j(x_1..x_m);
- ``jacobian_structure``: J = diag(γ)/D·(I − 𝟙𝟙ᵀ/m − k·r·x̂x̂ᵀ) entry by entry for m ≤ 16
  (no 𝟙𝟙ᵀ/m without a mean; diag(γ)/D·I in eval mode), and ``jacobian_symmetric`` where J is
  symmetric (one γ for the group, or eval mode);
- the identities that hold for the variant (:mod:`bnsym.proofs.identities`) and the lecture
  notes' forms (:mod:`bnsym.proofs.forms`);
- ``explicit_results``: the results in x_1..x_m alone (:mod:`bnsym.proofs.explicit`) equal the
  graph and the chain rule.

Every proof works in the frame of :mod:`bnsym.proofs.frame`, on the derivation's own graph and
steps. SymPy only.

>>> from bnsym.core.build import graph_and_chain_rule
>>> s = Symbols.of(3, "layernorm")
>>> forward, backward = graph_and_chain_rule(s, "biased", "inside", True, "train")
>>> result = prove(s, forward, backward, "biased", "inside", True, "train")
>>> all(result["verified"].values()), result["closed_form"][0].rule
(True, 'closed form')
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.core.cutoffs import DIRECT_MAX_M, JACOBIAN_MAX_M, VALUE_MAX_M
from bnsym.core.graph import Step, Symbols, partial
from bnsym.proofs import forms as _forms
from bnsym.proofs.display import (
    DIAG_GAMMA,
    DX_I,
    DY_I,
    EYE,
    GAMMA_I,
    JACOBIAN,
    ONES,
    XHAT_I,
    XHAT_OUTER,
)
from bnsym.proofs.explicit import explicit_results, explicit_results_match, var_in_x
from bnsym.proofs.frame import Context
from bnsym.proofs.identities import identities

__all__ = ["prove"]


def prove(
    s: Symbols,
    forward: Sequence[Step],
    backward: Sequence[Step],
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    general: Any = None,
    eps_zero: bool = False,
) -> dict[str, Any]:
    """Closed form, Jacobian, identities and explicit expressions of the layer ``s.layer``,
    with their proofs.

    Args:
        s, forward, backward: the layer's symbols, forward graph and chain-rule steps.
        variance, placement, affine, mode: the variant, as :func:`bnsym.derive` takes it.
        general: a :class:`bnsym.core.general.General` whose proofs hold for every m (they are
            recorded from it, not redone), or None.
        eps_zero: the statements are for ε = 0 (see :class:`bnsym.proofs.frame.Context`).

    Returns:
        a dict with ``closed_form`` (the generic Step, then one per element), ``jacobian`` (an
        ImmutableMatrix for m ≤ JACOBIAN_MAX_M, else None), ``jacobian_structure``,
        ``identities`` (Steps whose rule names their proof), ``verified`` (proof name ->
        bool), ``proof_methods`` (proof name -> sentence) and ``explicit`` (the results in
        the inputs only; see :func:`bnsym.proofs.explicit.explicit_results`) and ``claims``
        (each stated identity's proof, a function of the statement as displayed:
        :class:`bnsym.proofs.ring.Proofs`).
    """
    c = Context(s, forward, backward, variance, placement, affine, mode, general, eps_zero)
    closed_form = _closed_form(c)
    if s.m <= DIRECT_MAX_M:
        c.record(
            "chain_rule",
            _direct_matches_chain(c),
            "the chain-rule ∂ℓ/∂x_i equals Σ_j ∂ℓ/∂y_j·∂y_j/∂x_i with each y_j differentiated "
            "directly as a function of x_1..x_m, as polynomials",
        )
    jacobian, structure = _jacobian(c)
    stated = identities(c)
    forms, extra = _forms.forms(c, c.yframe)  # the lecture notes' other forms
    explicit = {**explicit_results(c), **extra}
    c.record(
        "explicit_results",
        explicit_results_match(c, explicit),
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
        "identities": (*stated, *forms),
        "verified": c.verified,
        "proof_methods": c.methods,
        "explicit": explicit,
        "claims": dict(c.claims),
    }


# --- the closed form ---------------------------------------------------------------------------


def _closed_form(c: Context) -> tuple[Step, ...]:
    """The closed form ∂ℓ/∂x_i, shown as the notes write it (σ for √σ² outside the root) and
    proved against the chain rule element by element."""
    s, m = c.s, c.m
    D_shown, c_shown = c.D, m * c.k * c.r
    if c.train and c.placement != "inside":  # σ for √σ², as the notes write it
        D_shown = s.sigma + c.e
        c_shown = m * c.k * D_shown / s.sigma

    def closed(dy_i: sp.Expr, gamma_i: sp.Expr, x_hat_i: sp.Expr) -> sp.Expr:
        """∂ℓ/∂x_i from element i's ∂ℓ/∂y_i, γ (c.scale where it is taken out) and x̂_i."""
        if not c.train:  # the statistics are constants: a scaling
            return sp.Mul(gamma_i / c.D, dy_i, evaluate=False)
        g_i = dy_i if c.shared else gamma_i * dy_i
        terms = [m * g_i] + ([-c.sum_g] if c.centred else [])
        terms.append(-sp.Mul(c_shown, x_hat_i, c.sum_g_xhat))
        return sp.Mul(c.scale / (m * D_shown), sp.Add(*terms, evaluate=False), evaluate=False)

    generic = Step(
        DX_I,
        closed(DY_I, c.scale if c.shared else GAMMA_I, XHAT_I),
        "closed form" if c.train else "eval mode: a scaling",
    )
    h = s.dy if c.shared else c.g  # what the sums add up
    sums = {
        c.sum_g: sp.Add(*h),
        c.sum_g_xhat: sp.Add(*[hj * xh for hj, xh in zip(h, c.x_hat_graph, strict=True)]),
    }
    per_element = []
    for i in range(m):
        shown = closed(s.dy[i], c.scale if c.shared else c.gammas[i], s.x_hat[i])
        value = None
        if m <= VALUE_MAX_M:
            value = shown.xreplace({**sums, s.x_hat[i]: c.x_hat_graph[i], s.sigma: sp.sqrt(c.var)})
        per_element.append(Step(s.dx[i], shown, f"element {i + 1}", value))

    def proof() -> bool:
        # Read the shown form directly: the sums and x̂_i stand for their polynomials.
        read = copy.copy(c.frame)
        read.values = {**c.frame.values, **{k: c.frame(v) for k, v in sums.items()}}
        read.memo = {}
        return all(read(st.rhs) == c.dx_in_frame[i] for i, st in enumerate(per_element))

    c.closed_form = (generic, *per_element)
    c.check(
        "closed_form",
        proof,
        "for each i, the closed form minus the chain-rule ∂ℓ/∂x_i is the zero polynomial "
        + (
            f"once x_i = {c.mu_txt} + d_i with Σd_i = 0 (the definition of {c.mu_txt}) and "
            f"{c.den_txt} is one positive symbol"
            if c.train and c.centred
            else f"once {c.den_txt} is one positive symbol"
        ),
    )
    return c.closed_form


# --- the Jacobian ------------------------------------------------------------------------------


def _jacobian(c: Context) -> tuple[sp.ImmutableMatrix | None, Step]:
    """J_ji = ∂y_j/∂x_i = (γ_j/D)·(δ_ij − [centred]/m − k·r·x̂_i·x̂_j) in train mode,
    γ_j·δ_ij/D in eval mode; entry by entry for small m."""
    s, m = c.s, c.m
    rk = c.k * c.r
    scale = c.scale if c.shared else DIAG_GAMMA
    if c.train:
        rk_shown = c.k * (s.sigma + c.e) / s.sigma if c.placement != "inside" else c.k
        D_shown = s.sigma + c.e if c.placement != "inside" else c.D
        # Unevaluated, so that it reads (γ/D)·(I − 𝟙𝟙ᵀ/m − x̂x̂ᵀ/m) as the notes write it.
        inner = [EYE] + ([-ONES / m] if c.centred else []) + [-rk_shown * XHAT_OUTER]
        structure = sp.Mul(scale / D_shown, sp.Add(*inner, evaluate=False), evaluate=False)
    else:
        structure = sp.Mul(scale / c.D, EYE, evaluate=False)
    mean_part = sp.Rational(1, m) if c.centred else 0
    # J is symmetric where one γ scales the group, and in eval mode (a diagonal matrix).
    symmetric = c.shared or not c.train

    def entry(j: int, i: int, x_hat: Sequence[sp.Expr]) -> sp.Expr:
        delta = 1 if i == j else 0
        if not c.train:
            return c.gammas[j] * delta / c.D
        return c.gammas[j] / c.D * (delta - mean_part - rk * x_hat[i] * x_hat[j])

    step = Step(JACOBIAN, structure, "structure of ∂y/∂x")
    if m > JACOBIAN_MAX_M:
        # ∂ℓ/∂x = Jᵀ ∂ℓ/∂y for every ∂ℓ/∂y, so the closed-form proof (an identity in the
        # symbols dy_j) proves Jᵀ equal to the structured matrix.
        ok = c.verified["closed_form"]
        c.record(
            "jacobian_structure",
            ok,
            "∂ℓ/∂x = Jᵀ·∂ℓ/∂y with ∂ℓ/∂y symbolic, so the closed-form proof is an identity in "
            "the dy_j and proves Jᵀ equal to the structured matrix, entry by entry",
        )
        if symmetric:
            c.record(
                "jacobian_symmetric",
                ok,
                "the structured matrix is a sum of symmetric matrices"
                if c.train
                else "the structured matrix is diagonal",
            )
        return None, step
    # ∂y_j/∂x_i is the coefficient of ∂ℓ/∂y_j in ∂ℓ/∂x_i (which is linear in the dy).
    entries = c.frame.coefficients(c.dx_in_frame, s.dy)

    def read(shown: sp.Expr, j: int, i: int) -> sp.Expr:
        """Entry (j, i) of a structure as displayed: I, 𝟙𝟙ᵀ, x̂x̂ᵀ and diag(γ) at (j, i)."""
        at = {EYE: int(i == j), ONES: 1, XHAT_OUTER: c.x_hat_graph[i] * c.x_hat_graph[j]}
        return shown.xreplace({**at, DIAG_GAMMA: c.gammas[j]})

    c.claim(
        step,
        lambda st: all(
            entries[j][i] == c.frame(read(st.rhs, j, i)) for j in range(m) for i in range(m)
        ),
        "each entry ∂y_j/∂x_i (the coefficient of ∂ℓ/∂y_j in the chain-rule ∂ℓ/∂x_i) "
        "equals the entry of the structure as displayed, as polynomials",
        name="jacobian_structure",
    )
    if symmetric:
        c.record(
            "jacobian_symmetric",
            all(entries[j][i] == entries[i][j] for j in range(m) for i in range(j)),
            "J_ij = J_ji for every pair, as polynomials, exactly",
        )
    return sp.ImmutableMatrix(m, m, lambda j, i: entry(j, i, s.x_hat)), step


# --- the chain rule against direct differentiation ---------------------------------------------


def _direct_matches_chain(c: Context) -> bool:
    """Differentiate the fully explicit y_j(x_1..x_m) directly and compare with the chain rule."""
    s = c.s
    var_x = None
    to_x: dict[sp.Basic, sp.Expr] = {}
    if c.train:
        var_x = var_in_x(c)
        mean = {}
        if c.centred:
            to_x[s.mu] = mean[s.mu] = sp.Add(*s.x) / c.m
        if c.frame(c.definition[s.var].xreplace(mean)) != c.frame(var_x):
            return False  # the two forms of the variance differ: the graph is wrong
        to_x[s.var] = var_x
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
