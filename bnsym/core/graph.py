"""The core: a computation graph of SymPy nodes and reverse-mode differentiation over it.

A graph is a list of :class:`Step` — ``lhs = rhs``, one symbol per node, each node defined
in terms of the inputs and earlier nodes. :func:`chain_rule` walks it backwards: the adjoint
of a node v is Σ over the nodes c that consume v of ∂ℓ/∂c · ∂c/∂v, with ∂c/∂v from
``sympy.diff`` of c's definition. It knows no layer by name: the normalization layers'
graphs (:mod:`bnsym.derivation`) and, applied to a backward graph, their higher derivatives
go through the same function.

:class:`Symbols` holds the symbols of one layer's graph for a group of m values, named as
the notes name them; :mod:`bnsym.family.layers` declares which ones a layer has.

>>> x, w, y, dy = sp.symbols("x w y dy")
>>> steps = chain_rule([Step(y, w * x**2)], {y: dy}, [(x, sp.Symbol("dx"), "")])
>>> steps[0].rhs
2*dy*w*x
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from bnsym.family.layers import Layer, layer

__all__ = [
    "PLACEMENTS",
    "Step",
    "Symbols",
    "added",
    "chain_rule",
    "denominator",
    "explicit_forward",
    "normalizer",
]


@dataclass(frozen=True)
class Step:
    """One equation ``lhs = rhs`` of the derivation, with the rule that produced it.

    ``rhs`` is in terms of graph symbols (μ_B, σ²_B, x̂_i and the adjoints of later nodes), as
    the paper writes it; ``value``, where set, is the same quantity after substituting every
    earlier step (for the ∂ℓ/∂x_i steps only up to m = VALUE_MAX_M), and ``note`` a sentence
    on what the step means.
    """

    lhs: sp.Expr
    rhs: sp.Expr
    rule: str = ""
    value: sp.Expr | None = None
    note: str = ""


@dataclass(frozen=True)
class Symbols:
    """The SymPy symbols of one layer's derivation for a group of m values.

    Inputs: ``x`` (x1..xm), ``dy`` (dy1..dym, the upstream gradients ∂ℓ/∂y_i), ``gammas``
    and ``betas`` (K of each: ``gamma``/``beta`` when the group shares one pair, else
    ``gamma1``..``gammaK``), ``eps`` (named ``epsilon``), and in eval mode ``running_mean``,
    ``running_var``. ``param_index[i]`` is the index of element i's γ. Graph nodes: ``mu``
    (the mean; None for RMS norm), ``var`` (the variance, or RMS norm's mean square),
    ``sigma`` (its root), ``x_hat``, ``y``. Adjoints: ``d_x_hat``, ``d_var``, ``d_mu``,
    ``dx``, ``dgammas``, ``dbetas``. ``gamma``, ``beta``, ``dgamma``, ``dbeta`` are the first
    of each (the only one where the pair is shared).
    """

    m: int
    layer: Layer
    x: tuple[sp.Symbol, ...]
    dy: tuple[sp.Symbol, ...]
    gammas: tuple[sp.Symbol, ...]
    betas: tuple[sp.Symbol, ...]
    param_index: tuple[int, ...]
    eps: sp.Symbol
    mu: sp.Symbol
    var: sp.Symbol
    sigma: sp.Symbol
    running_mean: sp.Symbol
    running_var: sp.Symbol
    x_hat: tuple[sp.Symbol, ...]
    y: tuple[sp.Symbol, ...]
    d_x_hat: tuple[sp.Symbol, ...]
    d_var: sp.Symbol
    d_mu: sp.Symbol
    dx: tuple[sp.Symbol, ...]
    dgammas: tuple[sp.Symbol, ...]
    dbetas: tuple[sp.Symbol, ...]

    @property
    def gamma(self) -> sp.Symbol:
        return self.gammas[0]

    @property
    def beta(self) -> sp.Symbol:
        return self.betas[0]

    @property
    def dgamma(self) -> sp.Symbol:
        return self.dgammas[0]

    @property
    def dbeta(self) -> sp.Symbol:
        return self.dbetas[0]

    @property
    def shared(self) -> bool:
        """One γ, β for the whole group."""
        return len(self.gammas) == 1

    def gamma_of(self, i: int) -> sp.Symbol:
        return self.gammas[self.param_index[i]]

    def beta_of(self, i: int) -> sp.Symbol:
        return self.betas[self.param_index[i]]

    @staticmethod
    @functools.cache
    def of(m: int, layer_: Layer | str = "batchnorm", channels: int | None = None) -> Symbols:
        """The symbols of the layer ``layer_`` (a declaration, or a shipped layer's name)."""
        decl = layer(layer_)

        def seq(name: str, n: int = m, **assumptions: bool) -> tuple[sp.Symbol, ...]:
            return tuple(sp.Symbol(f"{name}{i}", **assumptions) for i in range(1, n + 1))

        K = decl.param_count(m, channels)
        params = (
            ((sp.Symbol("gamma", real=True),), (sp.Symbol("beta", real=True),))
            if K == 1 and decl.params == "shared"
            else (seq("gamma", K, real=True), seq("beta", K, real=True))
        )
        suffix = decl.stat_suffix
        stat = "sigma" if decl.centred else "nu"  # RMS norm's root mean square is ν
        return Symbols(
            m=m,
            layer=decl,
            x=seq("x", real=True),
            dy=seq("dy", real=True),
            gammas=params[0],
            betas=params[1],
            param_index=decl.param_index(m, channels),
            eps=sp.Symbol("epsilon", positive=True),
            mu=sp.Symbol(f"mu{suffix}", real=True),
            var=sp.Symbol(f"{stat}2{suffix}", positive=True),
            sigma=sp.Symbol(f"{stat}{suffix}", positive=True),
            running_mean=sp.Symbol("running_mean", real=True),
            running_var=sp.Symbol("running_var", positive=True),
            x_hat=seq("xhat", real=True),
            y=seq("y", real=True),
            d_x_hat=seq("dxhat", real=True),
            d_var=sp.Symbol(f"d{stat}2{suffix}", real=True),
            d_mu=sp.Symbol(f"dmu{suffix}", real=True),
            dx=seq("dx", real=True),
            dgammas=tuple(sp.Symbol(f"d{g.name}", real=True) for g in params[0]),
            dbetas=tuple(sp.Symbol(f"d{b.name}", real=True) for b in params[1]),
        )

    def public(self) -> dict[str, sp.Symbol]:
        """Name -> symbol for every symbol that can appear in an exported expression."""
        names = {s.name: s for s in (*self.x, *self.dy, *self.gammas, *self.betas, self.eps)}
        names.update(running_mean=self.running_mean, running_var=self.running_var)
        return names


def normalizer(m: int, variance: str) -> sp.Rational:
    """k in σ²_B = k·Σ(x_i − μ_B)²: 1/m (biased) or 1/(m − 1) (unbiased)."""
    return sp.Rational(1, m) if variance == "biased" else sp.Rational(1, m - 1)


#: Where ε goes: √(σ² + ε) (the paper), σ + ε, or σ + √ε (both as some lecture notes write it;
#: σ + √ε is not √(σ² + ε): (σ + √ε)² = σ² + ε + 2·σ·√ε).
PLACEMENTS = ("inside", "outside", "sqrt-outside")


def added(eps: sp.Expr, placement: str) -> sp.Expr:
    """What is added to σ when ε is outside the root: ε, or √ε (sqrt-outside)."""
    return sp.sqrt(eps) if placement == "sqrt-outside" else eps


def denominator(var: sp.Expr, eps: sp.Expr, placement: str) -> sp.Expr:
    """x̂'s denominator: √(var + ε) (inside), √var + ε (outside), √var + √ε (sqrt-outside)."""
    if placement == "inside":
        return sp.sqrt(var + eps)
    return sp.sqrt(var) + added(eps, placement)


def chain_rule(
    nodes: Sequence[Step],
    seeds: Mapping[sp.Symbol, sp.Symbol],
    order: Sequence[tuple[sp.Symbol, sp.Symbol, str]],
    substitute: Mapping[sp.Symbol, bool] | None = None,
) -> list[Step]:
    """Reverse-mode differentiation of the graph ``nodes``, one step per ``order`` entry.

    ``seeds`` maps each output node to the symbol of its adjoint (y_i -> ∂ℓ/∂y_i);
    ``order`` lists ``(v, name, rule)``: the variable whose adjoint to form, the symbol the
    step assigns it to, and the rule to show. The adjoint of v is Σ over the nodes c that
    consume v of ∂ℓ/∂c · ∂c/∂v, where ∂c/∂v is ``sympy.diff`` of c's definition; each ∂ℓ/∂c
    must be a seed or come earlier in ``order``. Each step's ``rhs`` is written in the
    adjoint symbols of later nodes and its ``value`` in the seeds alone (skipped for the
    variables that ``substitute`` maps to False: their substituted value can be large).
    """
    definition = {n.lhs: n.rhs if n.rhs.is_Atom else n.rhs.func(*n.rhs.args) for n in nodes}
    consumers: dict[sp.Symbol, list[sp.Symbol]] = {}
    # The part of each definition that involves v: σ²_B = k·Σ(x_j − μ_B)² has m terms, of
    # which ∂/∂x_i needs one, so differentiating only that term keeps the walk O(m).
    part: dict[tuple[sp.Symbol, sp.Symbol], sp.Expr] = {}
    for c, rhs in definition.items():
        for term in sp.Add.make_args(rhs):
            for v in term.free_symbols:
                part[c, v] = part.get((c, v), sp.Integer(0)) + term
        for v in rhs.free_symbols:
            consumers.setdefault(v, []).append(c)
    adjoint_symbol: dict[sp.Symbol, sp.Symbol] = dict(seeds)
    adjoint_value: dict[sp.Basic, sp.Expr] = {}
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr] = {}
    steps = []
    for v, name, rule in order:
        terms = [
            adjoint_symbol[c] * derivative(part[c, v], v, shapes) for c in consumers.get(v, [])
        ]
        rhs = sp.Add(*terms)
        value = rhs.xreplace(adjoint_value) if (substitute or {}).get(v, True) else None
        adjoint_symbol[v] = name
        adjoint_value[name] = value
        steps.append(Step(name, rhs, rule, value))
    return steps


def derivative(
    e: sp.Expr, v: sp.Symbol, shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr]
) -> sp.Expr:
    """``sympy.diff(e, v)``, once per shape: ∂(x_i − μ)²/∂x_i is the same for every i up to
    the names of its symbols, so ``e`` is differentiated with its symbols renamed to
    placeholders of the same assumptions (exact: renaming symbols one to one commutes with
    differentiation) and the result named back; the m elements cost one ``sympy.diff``. A sum
    is differentiated term by term, as ``diff`` does. ``shapes`` is the cache."""
    if e.is_Add:
        return sp.Add(*(derivative(t, v, shapes) for t in e.args))
    if e.is_Mul:  # c·f(v): c·f'(v), as the product rule gives with one factor in v
        holding = [f for f in e.args if f.has(v)]
        if len(holding) == 1 and holding[0].is_Add:
            rest = [f for f in e.args if not f.has(v)]
            return sp.Mul(*rest) * derivative(holding[0], v, shapes)
    return _diff_renamed(e, v, sorted(e.free_symbols | {v}, key=lambda t: t.name), shapes)


def partial(
    y: sp.Expr,
    xi: sp.Symbol,
    xj: sp.Symbol,
    xs: Sequence[sp.Symbol],
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr],
) -> sp.Expr:
    """``sympy.diff(y, xi)`` for the output y_j of the fully explicit layer (x_j its own
    input), once per shape: y_j is symmetric in the other inputs (they enter through sums),
    so with x_i, x_j, the other inputs in order and then y's remaining symbols renamed to
    placeholders, every pair i ≠ j has one shape and every i = j another; each is
    differentiated once and named back (exact: renaming symbols one to one commutes with
    differentiation). Were y_j not symmetric so, the keys would differ and only the cache
    would miss."""
    names = [xi, *([xj] if xj != xi else []), *(x for x in xs if x not in (xi, xj))]
    names += sorted(y.free_symbols - set(xs), key=lambda t: t.name)
    return _diff_renamed(y, xi, names, shapes)


def _diff_renamed(
    e: sp.Expr,
    v: sp.Symbol,
    names: Sequence[sp.Symbol],
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr],
) -> sp.Expr:
    """``sympy.diff(e, v)`` with ``names`` (every symbol of e, and v) renamed in order to
    placeholders of the same assumptions: one diff per shape in ``shapes``, named back."""
    rename = {t: _placeholder(k, t) for k, t in enumerate(names)}
    key = (e.xreplace(rename), rename[v])
    if key not in shapes:
        shapes[key] = sp.diff(*key)
    return shapes[key].xreplace({p: t for t, p in rename.items()})


def _placeholder(k: int, v: sp.Symbol) -> sp.Symbol:
    """The k-th placeholder, a name no derivation uses, with v's assumptions."""
    return _placeholder_of(k, tuple(sorted(v.assumptions0.items())))


@functools.cache
def _placeholder_of(k: int, assumptions: tuple[tuple[str, bool], ...]) -> sp.Symbol:
    return sp.Symbol(f"_p{k}_", **dict(assumptions))


def explicit_forward(s: Symbols, forward: Sequence[Step]) -> dict[sp.Basic, sp.Expr]:
    """Graph symbol -> its definition in terms of the inputs, each node substituted in turn."""
    values: dict[sp.Basic, sp.Expr] = {}
    for n in forward:
        values[n.lhs] = n.rhs.xreplace(values)
    return values
