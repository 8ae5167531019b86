"""The results in the inputs alone, each of size O(m), and their proof against the graph.

``explicit_results`` writes every result in x_1..x_m, ∂ℓ/∂y, γ, β and ε only (for JSON, the
notes and worked examples): the variance as k·(Σx_i² − (Σx_i)²/m), Σ_j ∂ℓ/∂y_j·(x_j − μ) as
Σ_j ∂ℓ/∂y_j·x_j − μ·Σ_j ∂ℓ/∂y_j, so that no expression repeats an O(m) sum m times. These
are written here, not derived: :func:`explicit_results_match` proves them equal to the forward
graph and the chain rule, as polynomials in the frame of :mod:`bnsym.proofs.frame`. SymPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.core.cutoffs import EXPLICIT_MAX_M, JACOBIAN_MAX_M
from bnsym.core.graph import explicit_forward
from bnsym.proofs.frame import Context
from bnsym.proofs.ring import variance_ring

__all__ = ["explicit_results", "explicit_results_match", "var_in_x"]


def var_in_x(c: Context) -> sp.Expr:
    """The variance as k·(Σx_i² − (Σx_i)²/m) (the mean square Σx_i²/m where nothing is
    subtracted): the same function as k·Σ(x_i − μ)², with O(m) instead of O(m²) terms."""
    x = c.s.x
    if c.centred:
        return c.k * (sp.Add(*[xi**2 for xi in x]) - sp.Add(*x) ** 2 / c.m)
    return sp.Add(*[xi**2 for xi in x]) / c.m


def explicit_results(c: Context) -> dict[str, Any]:
    """``mean`` (None where nothing is subtracted), ``var``, ``x_hat``, ``y``, ``dx``,
    ``dgamma``, ``dbeta`` (a tuple of K where γ is per element or channel; None without γ, or
    without β) in the inputs only. In eval mode the statistics are the running ones. For
    m ≤ EXPLICIT_MAX_M in train mode with ε inside the root, x̂_i and ∂ℓ/∂x_i are the chain
    rule's, fully in x_1..x_m and factored (with ε outside that form is all |x_i − x_j| and
    nested roots)."""
    s, m = c.s, c.m
    if c.train:
        mean_x = sp.Add(*s.x) / m if c.centred else sp.Integer(0)
        var_x = var_in_x(c)
        to_inputs: dict[sp.Basic, sp.Expr] = {s.var: var_x}
    else:
        mean_x, var_x, to_inputs = c.mu, c.var, {}
    D_x, r_x = c.D.xreplace(to_inputs), c.r.xreplace(to_inputs)
    centred = [xi - mean_x for xi in s.x]
    x_hat = [xc / D_x for xc in centred]
    # γ taken out where one γ scales the group, as the closed form shows it
    h = s.dy if c.shared else c.g
    sum_h = sp.Add(*h)
    sum_h_centred = sp.Add(*[hj * xj for hj, xj in zip(h, s.x, strict=True)]) - mean_x * sum_h
    if c.train:
        mean_h = sum_h / m if c.centred else 0
        dx = [
            c.scale / D_x * (h[i] - mean_h - c.k * r_x * centred[i] * sum_h_centred / D_x**2)
            for i in range(m)
        ]
    else:
        dx = [gi * dyi / D_x for gi, dyi in zip(c.gammas, s.dy, strict=True)]
    if m <= EXPLICIT_MAX_M and c.train and c.placement == "inside":
        values = explicit_forward(s, c.forward)
        full = {v: values[v] for v in (s.mu, s.var) if v in values}
        dx = [sp.factor(sp.together(c.chain[dxi].xreplace(full))) for dxi in s.dx]
        x_hat = [sp.factor(sp.together(xh.xreplace(full))) for xh in c.x_hat_graph]
        var_x = sp.factor(values[s.var])
    return {
        "mean": mean_x if c.centred else None,
        "var": var_x,
        "x_hat": tuple(x_hat),
        "y": tuple(g * xh + b for g, xh, b in zip(c.gammas, x_hat, c.betas, strict=True)),
        "dx": tuple(dx),
        **_parameters(c, mean_x, D_x),
    }


def _parameters(c: Context, mean_x: sp.Expr, D_x: sp.Expr) -> dict[str, Any]:
    """∂ℓ/∂γ_k = Σ_(i of k) ∂ℓ/∂y_i·x̂_i and ∂ℓ/∂β_k = Σ_(i of k) ∂ℓ/∂y_i: one of each
    where the layer shares them over the group, else a tuple of K (K = 1 included)."""
    s = c.s
    if not c.affine:
        return {"dgamma": None, "dbeta": None}
    members = [[i for i in range(c.m) if s.param_index[i] == k] for k in range(len(s.gammas))]
    dgamma: Any = tuple(
        (sp.Add(*[s.dy[i] * s.x[i] for i in idx]) - mean_x * sp.Add(*[s.dy[i] for i in idx])) / D_x
        for idx in members
    )
    dbeta: Any = tuple(sp.Add(*[s.dy[i] for i in idx]) for idx in members)
    if s.layer.params == "shared":  # one γ of the group; per channel or element: a tuple, of
        dgamma, dbeta = dgamma[0], dbeta[0]  # one where there is one channel (group norm, C = 1)
    return {"dgamma": dgamma, "dbeta": dbeta if s.layer.beta else None}


def explicit_results_match(c: Context, ex: dict[str, Any]) -> bool:
    """The explicit results (in x_1..x_m only) equal the graph's forward values and the chain
    rule's gradients, as polynomials in the frame.

    Above JACOBIAN_MAX_M only elements (and parameters) 1 and 2 are compared: every explicit
    result is the same formula in its index (one comprehension in :func:`explicit_results`),
    so a permutation of the elements carries either to any other; the chain rule's are
    proved element by element.
    """
    s, frame = c.s, c.frame
    ok = True
    if c.train:
        # In the frame the mean of the x_i is μ itself (Σ d_i = 0), so the variance's
        # definition with μ replaced by the explicit mean reads the same as the definition.
        if c.centred:
            ok = frame(ex["mean"]) == frame(c.definition[s.mu])
        small = variance_ring(s, c.free, c.centred)
        ok = ok and small(ex["var"]) == small(c.definition[s.var])
    # ε is eliminated against the explicit form of the variance itself, whichever it is (the
    # O(m) form, or the factored one for m ≤ EXPLICIT_MAX_M): equal polynomials, as above.
    var_x = ex["var"] if c.train else None
    xf, yf = c.frame_of_x(var_x), c.frame_of_x(var_x, c.yframe)
    chosen = range(c.m) if c.m <= JACOBIAN_MAX_M else (0, 1)
    for i in chosen:
        ok = ok and xf(ex["x_hat"][i]) == frame(c.x_hat_graph[i])
        ok = ok and yf(ex["y"][i]) == c.yframe(c.y_graph[i])
        ok = ok and xf(ex["dx"][i]) == c.dx_in_frame[i]
    if c.affine:
        pairs: list[tuple[Any, Sequence[sp.Symbol]]] = [(ex["dgamma"], s.dgammas)]
        if s.layer.beta:
            pairs.append((ex["dbeta"], s.dbetas))
        for values, names in pairs:
            values = values if isinstance(values, tuple) else (values,)
            count = len(values) if c.m <= JACOBIAN_MAX_M else min(2, len(values))
            for v, name in zip(values[:count], names[:count], strict=True):
                # the chain rule's ∂ℓ/∂γ_k, ∂ℓ/∂β_k, already in the frame
                ok = ok and xf(v) == frame.values[name]
    return bool(ok)
