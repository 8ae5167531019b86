"""The kernels of the generated module: the derivation's graph as expressions for lambdify.

:func:`kernels` turns a derivation into two :class:`Kernel` (``_forward`` and ``_backward``):
their arguments (x1..xm, dy1..dym, the parameters, eps), their outputs (y_i; dx_i, dgamma,
dbeta) and the graph definitions behind them, in the order a person computes them. Each
symbol stands for all the groups at once (x1 is the first value of every group), so one
kernel serves any number of groups.

Why the graph, not the explicit expressions: written in terms of x1..xm alone, every x̂_i
repeats the mean and the variance and SymPy distributes the constants (``x1 - (x1 + x2)/2``
becomes ``x1/2 - x2/2``), so that CSE can no longer find the shared sums and the code costs
O(m²) operations. Handing ``lambdify`` the graph's own definitions as the first
replacements keeps the mean, the variance and 1/√(σ²+ε) computed once: O(m) operations, as a
person would write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from bnsym.derivation import Derivation

__all__ = ["InverseOrZero", "Kernel", "kernels"]


@dataclass(frozen=True)
class Kernel:
    """One function for lambdify: arguments, outputs, and the graph definitions behind them."""

    name: str
    args: tuple[sp.Symbol, ...]
    outputs: tuple[sp.Expr, ...]
    definitions: tuple[tuple[sp.Symbol, sp.Expr], ...]


def kernels(d: Derivation) -> tuple[Kernel, Kernel]:
    """The forward and backward kernels, in the graph symbols of the derivation.

    The graph, in the order it is computed: ``mu_B``; the centred rows ``xmu_i = x_i - mu_B``
    (eval mode: ``x_i - running_mean``); ``sigma2_B``; ``sigma_B`` where ε is outside the root;
    the denominator ``std`` of x̂ and ``inv_std = 1/std``; ``xhat_i = xmu_i*inv_std``.
    """
    s, o = d.symbols, d.options
    eps = sp.Symbol("eps", positive=True)  # the argument's name, not the paper's ε
    rename: dict[sp.Expr, sp.Expr] = {s.eps: eps}
    if s.var is not None:
        rename[sp.sqrt(s.var)] = s.sigma  # sigma_B by name wherever it appears
    params: tuple[sp.Symbol, ...] = ()
    if o.affine:
        params = (*s.gammas, *(s.betas if s.layer.beta else ()))
    if o.mode == "eval":
        params += (s.running_mean, s.running_var)
    nodes = {step.lhs: step.rhs.xreplace(rename) for step in d.forward}
    xmu = tuple(sp.Symbol(f"xmu{i}", real=True) for i in range(1, o.m + 1))
    centred = {sp.numer(nodes[xh]): c for xh, c in zip(s.x_hat, xmu, strict=True)}
    stds = {sp.denom(nodes[xh]) for xh in s.x_hat}
    if len(stds) != 1:  # pragma: no cover - every row is divided by the same denominator
        raise RuntimeError("the rows of x_hat do not share one denominator")
    std_expr = stds.pop()
    std = sp.Symbol("std", positive=True)
    inv_std = sp.Symbol("inv_std", positive=True)
    graph: list[tuple[sp.Symbol, sp.Expr]] = []
    if s.mu in nodes:
        graph.append((s.mu, nodes[s.mu]))
    if s.layer.centred or o.mode == "eval":
        graph += [(c, numer) for numer, c in centred.items()]
    else:  # RMS norm divides x_i itself: no centred rows
        xmu = s.x
        centred = {}
    if s.var in nodes:
        graph.append((s.var, nodes[s.var].xreplace(centred)))
        if std_expr.has(s.sigma):
            graph.append((s.sigma, sp.sqrt(s.var)))
    graph += [(std, std_expr), (inv_std, 1 / std)]
    graph += [(xh, c * inv_std) for xh, c in zip(s.x_hat, xmu, strict=True)]
    y = tuple(nodes[yi] for yi in s.y)
    forward = Kernel("_forward", (*s.x, *params, eps), y, tuple(graph))

    # The backward: the two sums of the closed form, then dx_i, dgamma, dbeta; the closed
    # form written with std and inv_std, and, where eps is outside the root, with
    # inv_sigma for 1/sigma (inv_sigma_B for batch norm's sigma_B; see printer).
    inverses: dict[sp.Expr, sp.Expr] = {1 / std: inv_std}
    defs: list[tuple[sp.Symbol, sp.Expr]] = []
    if std_expr.has(s.sigma):
        inv_sigma = sp.Symbol(f"inv_{s.sigma.name}", nonnegative=True)
        inverses[1 / s.sigma] = inv_sigma
        defs.append((inv_sigma, InverseOrZero(s.sigma)))

    def in_graph_terms(e: sp.Expr) -> sp.Expr:
        e = sp.factor_terms(e.xreplace(rename), radical=False, clear=False)
        return e.subs(std_expr, std).xreplace(inverses)

    closed = {step.lhs: step.rhs for step in d.closed_form[1:]}
    dx = tuple(in_graph_terms(closed[dxi]) for dxi in s.dx)
    named = {sym.name: sym for e in dx for sym in e.free_symbols}
    # The closed form's two sums: of dy_i (and dy_i*xhat_i) where gamma is shared, of
    # gamma_i*dy_i where it is per element or channel (sum_gdy, sum_gdy_xhat).
    g: Sequence[sp.Expr] = s.dy
    prefix = "sum_dy"
    gdy_defs: tuple[tuple[sp.Symbol, sp.Expr], ...] = ()
    if o.affine and not s.shared:
        # gdy_i = gamma_i*dy_i, once: ∂ℓ/∂x depends on dy only through it
        gdy = tuple(sp.Symbol(f"gdy{i + 1}", real=True) for i in range(o.m))
        gdy_defs = tuple((gi, s.gamma_of(i) * s.dy[i]) for i, gi in enumerate(gdy))
        to_gdy = {s.dy[i]: gdy[i] / s.gamma_of(i) for i in range(o.m)}
        dx = tuple(e.xreplace(to_gdy) for e in dx)
        g, prefix = gdy, "sum_gdy"
    sums = {
        prefix: sp.Add(*g),
        f"{prefix}_xhat": sp.Add(*[gi * xh for gi, xh in zip(g, s.x_hat, strict=True)]),
    }
    sum_defs = tuple((named.get(n, sp.Symbol(n, real=True)), e) for n, e in sums.items())
    outputs = dx
    if o.affine:
        by_value = {e: sym for sym, e in sum_defs}
        adjoint = {step.lhs: step.rhs for step in d.backward}
        # dgamma = sum(dy_i * xhat_i), dbeta = sum(dy_i): the sums already defined.
        grads = (*s.dgammas, *(s.dbetas if s.layer.beta else ()))
        outputs += tuple(adjoint[a].xreplace(by_value) for a in grads)
    backward = Kernel(
        "_backward",
        (*s.dy, *s.x, *params, eps),
        outputs,
        (*graph, *defs, *gdy_defs, *sum_defs),
    )
    for kernel in (forward, backward):
        known = set(kernel.args) | {sym for sym, _ in kernel.definitions}
        used = {
            sym
            for e in (*kernel.outputs, *(e for _, e in kernel.definitions))
            for sym in e.free_symbols
        }
        if used - known:  # a symbol of the derivation that the code would not define
            names = ", ".join(sorted(str(sym) for sym in used - known))
            raise RuntimeError(f"the derivation uses {names}, which codegen does not define")
    return forward, backward


class InverseOrZero(sp.Function):
    """1/a where a > 0, else 0 (a Piecewise would collapse: sigma_B is declared positive)."""

    is_real = True
