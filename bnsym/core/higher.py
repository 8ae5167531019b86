"""Higher derivatives by the same chain rule: the backward pass is a graph too.

Each step ``∂ℓ/∂v = …`` of a backward pass is a node defined in terms of earlier nodes, the
upstream gradients dy and the parameters. Seeding its outputs with cotangents — ``gdx_i`` for
∂ℓ/∂x_i, ``gdgamma_k`` for ∂ℓ/∂γ_k, ``gdbeta_k`` for ∂ℓ/∂β_k — and walking that graph backwards
with :func:`bnsym.core.graph.chain_rule`, which knows no layer, gives the **double backward**:
the gradients of ℓ₂ = Σ gdx_i·dx_i + Σ gdgamma_k·dgamma_k + Σ gdbeta_k·dbeta_k with respect to
x (``gx``), to the upstream gradient (``gdy``) and to γ (``ggamma``). (∂ℓ₂/∂β = 0: the backward
does not read β.) Applied once more, with cotangents on the double backward's results, the same
walk gives the **third order**.

This module builds those walks (:func:`double_backward`, :func:`third_order`, over any graph
:func:`differentiate`) and evaluates steps at numbers (:func:`evaluate`); the closed forms of
order 2 and their proofs are :mod:`bnsym.proofs.higher`'s. SymPy only.

>>> from bnsym.core.build import graph_and_chain_rule
>>> s = Symbols.of(2, "layernorm")
>>> forward, backward = graph_and_chain_rule(s, "biased", "inside", True, "train")
>>> gdx, gdgamma, gdbeta, steps, results = double_backward(s, forward, backward, True)
>>> [str(st.lhs) for st in results]
['gx1', 'gx2', 'gdy1', 'gdy2', 'ggamma1', 'ggamma2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp

from bnsym.core.graph import Step, Symbols, chain_rule

__all__ = ["cotangents", "differentiate", "double_backward", "evaluate", "third_order", "wrt"]

Names = tuple[sp.Symbol, ...]


def _seq(name: str, n: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"{name}{i}", real=True) for i in range(1, n + 1))


def _like(prefix: str, symbols: Sequence[sp.Symbol]) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(prefix + v.name, real=True) for v in symbols)


def differentiate(
    nodes: Sequence[Step],
    seeds: Mapping[sp.Symbol, sp.Symbol],
    inputs: Sequence[sp.Symbol],
    prefix: str,
) -> list[Step]:
    """Reverse mode over any graph: the adjoint of every node that leads to a seed, then of
    each input, named ``prefix + name``.

    ``nodes`` are in topological order (each defined in terms of earlier ones and inputs);
    ``seeds`` maps the outputs to their cotangent symbols. Nodes from which no seed can be
    reached (y_i, once the backward has been seeded) have a zero adjoint and are left out.
    """
    live = set(seeds)
    kept: list[Step] = []
    for n in reversed(nodes):
        if n.lhs in live:
            kept.append(n)
            live |= n.rhs.free_symbols
    kept.reverse()
    internal = [n.lhs for n in reversed(kept) if n.lhs not in seeds]
    order = [(v, sp.Symbol(prefix + v.name, real=True), "") for v in (*internal, *inputs)]
    never = {v: False for v, _, _ in order}
    return chain_rule(kept, seeds, order, never)


def cotangents(s: Symbols, affine: bool = True) -> tuple[Names, Names, Names]:
    """The double backward's inputs: gdx (m), gdgamma (K), gdbeta (K; none without β);
    gdx alone for a layer without γ and β."""
    if not affine:
        return _seq("gdx", s.m), (), ()
    gdbeta = _like("g", s.dbetas) if s.layer.beta else ()
    return _seq("gdx", s.m), _like("g", s.dgammas), gdbeta


def wrt(s: Symbols, affine: bool) -> list[sp.Symbol]:
    """What the double backward differentiates: x, dy and, for an affine layer, γ (never β,
    which the backward does not read, nor eval mode's running statistics, constants)."""
    return [*s.x, *s.dy, *(s.gammas if affine else ())]


def double_backward(
    s: Symbols, forward: Sequence[Step], backward: Sequence[Step], affine: bool
) -> tuple[Names, Names, Names, list[Step], tuple[Step, ...]]:
    """The chain rule over the forward and backward graphs, seeded with the cotangents:
    ``(gdx, gdgamma, gdbeta, steps, results)``, ``results`` the last steps (gx_i, gdy_i,
    ggamma_k)."""
    gdx, gdgamma, gdbeta = cotangents(s, affine)
    seeds = dict(zip(s.dx, gdx, strict=True))
    seeds.update(zip(s.dgammas[: len(gdgamma)], gdgamma, strict=True))  # none without affine
    seeds.update(zip(s.dbetas[: len(gdbeta)], gdbeta, strict=True))
    inputs = wrt(s, affine)
    steps = differentiate([*forward, *backward], seeds, inputs, "g")
    return gdx, gdgamma, gdbeta, steps, tuple(steps[-len(inputs) :])


def third_order(
    nodes: Sequence[Step], outputs: Sequence[sp.Symbol], inputs: Sequence[sp.Symbol]
) -> tuple[Names, list[Step], tuple[Step, ...]]:
    """The vector-Jacobian product of ``outputs`` (the double backward's results) over the
    graph ``nodes``, with cotangents ``t`` + each output's name: ``(cotangents, steps,
    results)``, ``results`` the adjoints of ``inputs`` (tx_i, tdy_i, tgamma_k)."""
    cot = _like("t", outputs)
    steps = differentiate(nodes, dict(zip(outputs, cot, strict=True)), inputs, "t")
    return cot, steps, tuple(steps[-len(inputs) :])


def evaluate(steps: Sequence[Step], values: Mapping[sp.Symbol, Any]) -> dict[sp.Basic, sp.Expr]:
    """Every step's value at the exact numbers ``values`` (inputs and cotangents), in order."""
    out: dict[sp.Basic, sp.Expr] = dict(values)
    for st in steps:
        out[st.lhs] = st.rhs.xreplace(out)
    return out
