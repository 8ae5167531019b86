"""The forward graph of a layer from its declaration, and its backward pass by the chain rule.

:func:`forward_graph` writes the computation graph of a layer (:mod:`bnsym.family`) for a
group of m values, one :class:`~bnsym.core.graph.Step` per node, in the paper's order: the
statistics (mean and variance, or the mean square), x̂_i, y_i; :func:`backward_order` says
what the backward pass computes, in the paper's order; :func:`graph_and_chain_rule` walks
the graph backwards with the generic :func:`~bnsym.core.graph.chain_rule`. SymPy only.
"""

from __future__ import annotations

import sympy as sp

from bnsym.core.cutoffs import VALUE_MAX_M
from bnsym.core.graph import Step, Symbols, chain_rule, denominator, normalizer
from bnsym.family.layers import Layer

__all__ = ["backward_order", "forward_graph", "graph_and_chain_rule", "symbol_table"]


def forward_graph(s: Symbols, variance: str, placement: str, affine: bool, mode: str) -> list[Step]:
    """The forward computation graph of ``s.layer``, one Step per node, in the paper's order:
    the statistics (mean and variance, or the mean square), x̂_i, y_i."""
    m, decl = s.m, s.layer
    words = f"{decl.stat_words} " if decl.stat_words else ""
    nodes: list[Step] = []
    if mode == "train":
        # Unevaluated, so that they read (x₁ + … + x_m)/m; the chain rule evaluates them.
        if decl.centred:
            k = normalizer(m, variance)
            mean = sp.Mul(sp.Add(*s.x), sp.Rational(1, m), evaluate=False)
            nodes.append(Step(s.mu, mean, f"{words}mean"))
            squares = sp.Add(*[(xi - s.mu) ** 2 for xi in s.x])
            nodes.append(Step(s.var, sp.Mul(squares, k, evaluate=False), f"{words}variance"))
        else:
            squares = sp.Add(*[xi**2 for xi in s.x])
            nodes.append(
                Step(s.var, sp.Mul(squares, sp.Rational(1, m), evaluate=False), "mean square")
            )
        mu, var = (s.mu if decl.centred else sp.Integer(0)), s.var
    else:  # eval mode: the running statistics (no running mean where nothing is subtracted)
        mu = s.running_mean if decl.centred else sp.Integer(0)
        var = s.running_var
    denom = denominator(var, s.eps, placement)
    for xi, xh in zip(s.x, s.x_hat, strict=True):
        nodes.append(Step(xh, (xi - mu) / denom, "normalize"))
    for i, (xh, yi) in enumerate(zip(s.x_hat, s.y, strict=True)):
        if affine:
            shift = s.beta_of(i) if decl.beta else sp.Integer(0)
            rule = "scale and shift" if decl.beta else "scale"
            nodes.append(Step(yi, s.gamma_of(i) * xh + shift, rule))
        else:
            nodes.append(Step(yi, xh, "no scale and shift" if decl.beta else "no scale"))
    return nodes


def backward_order(
    s: Symbols, nodes: list[Step], affine: bool
) -> list[tuple[sp.Symbol, sp.Symbol, str]]:
    """What the backward pass computes, in the paper's order, with the rule each step shows:
    ∂ℓ/∂x̂_i, the statistics' adjoints, ∂ℓ/∂x_i, then ∂ℓ/∂γ and ∂ℓ/∂β."""
    decl = s.layer
    shown = {
        s.mu: ("μ" + decl.stat_suffix),
        s.var: ("σ²" if decl.centred else "ν²") + decl.stat_suffix,
    }
    defined = {n.lhs for n in nodes}
    shared = s.shared
    gamma_i = {"shared": "γ", "element": "γ_i", "channel": "γ_c, the γ of x_i's channel"}[
        decl.params
    ]
    order = [
        (xh, dxh, f"∂y_i/∂x̂_i = {gamma_i}" if affine else "∂y_i/∂x̂_i = 1")
        for xh, dxh in zip(s.x_hat, s.d_x_hat, strict=True)
    ]
    if s.var in defined:
        order.append((s.var, s.d_var, f"{shown[s.var]} feeds every x̂_i: sum over i"))
    if s.mu in defined:
        order.append((s.mu, s.d_mu, f"{shown[s.mu]} feeds every x̂_i and {shown[s.var]}"))
    feeds = [shown[v] for v in (s.var, s.mu) if v in defined]
    rule = "x_i feeds x̂_i" + (", " + " and ".join(feeds) if len(feeds) > 1 else "")
    if len(feeds) == 1:
        rule = f"x_i feeds x̂_i and {feeds[0]}"
    order += [(xi, dxi, rule) for xi, dxi in zip(s.x, s.dx, strict=True)]
    if affine:
        if shared:
            order.append((s.gamma, s.dgamma, "γ scales every x̂_i"))
        else:
            what = "x̂_i" if decl.params == "element" else "the x̂_i of channel c"
            what_y = "y_i" if decl.params == "element" else "the y_i of channel c"
            sub = "i" if decl.params == "element" else "c"
            order += [
                (g, dg, f"γ_{sub} scales {what}") for g, dg in zip(s.gammas, s.dgammas, strict=True)
            ]
        if decl.beta:
            if shared:
                order.append((s.beta, s.dbeta, "β shifts every y_i"))
            else:
                order += [
                    (b, db, f"β_{sub} shifts {what_y}")
                    for b, db in zip(s.betas, s.dbetas, strict=True)
                ]
    return order


def graph_and_chain_rule(
    s: Symbols, variance: str, placement: str, affine: bool, mode: str
) -> tuple[list[Step], list[Step]]:
    """The forward graph of ``s.layer`` and its backward pass by the generic chain rule."""
    forward = forward_graph(s, variance, placement, affine, mode)
    # ∂ℓ/∂x_i substituted is O(m) terms for each of m elements: built only up to
    # VALUE_MAX_M (the proofs substitute inside their polynomial ring instead).
    substitute = {xi: s.m <= VALUE_MAX_M for xi in s.x}
    seeds = dict(zip(s.y, s.dy, strict=True))
    return forward, chain_rule(forward, seeds, backward_order(s, forward, affine), substitute)


def symbol_table(
    m: int, layer: Layer | str = "batchnorm", channels: int | None = None
) -> dict[str, sp.Symbol]:
    """The name -> symbol map that reads exported expressions back (see render.load_json)."""
    return Symbols.of(m, layer, channels).public()
