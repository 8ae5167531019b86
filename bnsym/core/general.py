"""The general-m form: one layer's graph with a symbolic group size m, and its chain rule.

The graph is the layer's declaration (:mod:`bnsym.family.layers`) written once for every m: m a
positive integer symbol, the inputs ``Indexed`` (x[i], dy[i]), the statistics ``Sum`` over
j = 1…m. The chain rule is the one of :func:`bnsym.core.graph.chain_rule` — the adjoint of v is
Σ over the nodes c that consume v of ∂ℓ/∂c·∂c/∂v, ∂c/∂v from ``sympy.diff`` — where a node
of a family (x̂_i, y_i) consumes v once for every i, so its term is a Σ over i. ``sympy.diff``
of x[j] by x[k] is the Kronecker delta δ_jk, and :func:`collapse` evaluates it inside its Σ
(Σ_j f(j)·δ_jk = f(k), since 1 ≤ k ≤ m).

This module writes the form (:func:`general_graph`) and shows it as the notes write it
(:func:`shown`); :mod:`bnsym.proofs.general` proves it for every m at once and
:func:`bnsym.proofs.general.derive_general` returns both. SymPy only.

>>> g = general_graph("batchnorm")
>>> g.backward[0].rhs
gamma*dy[k]
>>> shown(g).backward[0].rhs
gamma*dy[i]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnsym.core.graph import Step, Symbols, added, denominator
from bnsym.family.layers import Layer
from bnsym.family.layers import layer as _layer

__all__ = ["General", "GeneralGraph", "collapse", "general_graph", "instance_of", "shown"]

M = sp.Symbol("m", integer=True, positive=True)
# The indices as bnsym.notes.safe_parse reads them back (integer; m positive).
I, J = sp.Symbol("i", integer=True), sp.Symbol("j", integer=True)
K = sp.Symbol("k", integer=True)  # the element (or channel) differentiated by
C = sp.Symbol("C", integer=True, positive=True)  # group norm: channels in the group
CH = sp.Function("c")  # group norm: c(i), the channel of element i
X, DY, XHAT, Y, DXHAT, DX = (
    sp.IndexedBase(n, real=True) for n in ("x", "dy", "xhat", "y", "dxhat", "dx")
)
GAMMA, BETA, DGAMMA, DBETA = (
    sp.IndexedBase(n, real=True) for n in ("gamma", "beta", "dgamma", "dbeta")
)


@dataclass(frozen=True)
class General:
    """The derivation of one layer for every m at once (SymPy ``Sum`` over ``Indexed``).

    ``forward`` and ``backward`` are the graph and the chain rule's steps (lhs x̂[i], y[i],
    dx[i]... for an element i, a Symbol for the statistics); ``closed_form`` is ∂ℓ/∂x_i
    collected into one expression; ``verified`` and ``methods`` map each proof that holds
    for every m to its result and to how it was checked.
    """

    layer: Layer
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    closed_form: Step
    verified: Mapping[str, bool] = field(default_factory=dict)
    methods: Mapping[str, str] = field(default_factory=dict)
    residual: sp.Expr | None = None  # Σ_i ∂ℓ/∂x_i·x̂_i where it is proved

    def steps(self) -> tuple[Step, ...]:
        return (*self.backward, self.closed_form)


# --- Σ and δ ------------------------------------------------------------------------------------


def _pull(body: sp.Expr, limits: tuple[Any, ...]) -> sp.Expr:
    """Σ of ``body`` with the factors that do not depend on the index taken out."""
    v = limits[0]
    out = []
    for term in sp.Add.make_args(sp.factor_terms(body)):
        inside = [f for f in sp.Mul.make_args(term) if f.has(v)]
        outside = [f for f in sp.Mul.make_args(term) if not f.has(v)]
        count = limits[2] - limits[1] + 1
        out.append(sp.Mul(*outside) * (sp.Sum(sp.Mul(*inside), limits) if inside else count))
    return sp.Add(*out)


def _delta_term(term: sp.Expr, limits: tuple[Any, ...]) -> sp.Expr | None:
    """Σ over ``limits`` of one product holding δ(v, k): the product at v = k; with δ(k, c(v))
    (group norm's γ of channel k), the Σ over the elements of channel k. None without δ."""
    v, lo, hi = limits
    for f in sp.Mul.make_args(term):
        if isinstance(f, sp.KroneckerDelta) and f.has(v):
            rest = sp.Mul(*[g for g in sp.Mul.make_args(term) if g is not f])
            a, b = f.args
            other = b if a == v else a if b == v else None
            if other is not None:
                return rest.xreplace({v: other})
            k = a if not a.has(v) else b  # δ(k, c(v)): v runs over the elements of channel k
            rest = rest.xreplace({CH(v): k})
            return _pull(rest, (v, (k - 1) * hi / C + lo, k * hi / C))
    return None


def collapse(expr: sp.Expr) -> sp.Expr:
    """Evaluate every Σ_j f(j)·δ_jk in ``expr`` to f(k) (1 ≤ k ≤ m), innermost first.

    >>> x = X
    >>> collapse(sp.Sum(sp.diff(x[J] ** 2, x[K]), (J, 1, M)))
    2*x[k]
    """
    if not isinstance(expr, sp.Basic) or expr.is_Atom or isinstance(expr, sp.Indexed):
        return expr
    args = [collapse(a) for a in expr.args]
    if not isinstance(expr, sp.Sum):
        return expr.func(*args) if args != list(expr.args) else expr
    body, limits = args[0], tuple(expr.limits[0])
    if not body.has(sp.KroneckerDelta):
        return _pull(body, limits)
    kept, out = [], []
    for term in sp.Add.make_args(sp.expand(body)):
        hit = _delta_term(term, limits)
        if hit is None:
            kept.append(term)
        else:
            out.append(hit)
    rest = _pull(sp.Add(*kept), limits) if kept else sp.Integer(0)
    return sp.factor_terms(sp.Add(*out)) + rest


# --- the graph and the chain rule ---------------------------------------------------------------


def _graph(
    name: Any, variance: str, placement: str, affine: bool, mode: str
) -> tuple[list[Step], Any, Symbols, dict[str, Any]]:
    """The forward graph with symbolic m, the declaration, the scalars' symbols, and the facts
    the closed form and the proofs read (k, D, μ, the variance, γ, β, train)."""
    decl = _layer(name)
    s = Symbols.of(4, decl, 2 if decl.has_channels else None)  # the scalars' names
    nodes: list[Step] = []
    train = mode == "train"
    k = (1 / M if variance == "biased" else 1 / (M - 1)) if decl.centred else 1 / M
    if train:
        if decl.centred:
            nodes.append(Step(s.mu, sp.Sum(X[J], (J, 1, M)) / M, "mean"))
            nodes.append(Step(s.var, k * sp.Sum((X[J] - s.mu) ** 2, (J, 1, M)), "variance"))
        else:
            nodes.append(Step(s.var, sp.Sum(X[J] ** 2, (J, 1, M)) / M, "mean square"))
        mu, var = (s.mu if decl.centred else sp.Integer(0)), s.var
    else:  # eval mode: the running statistics (no running mean where nothing is subtracted)
        mu, var = (s.running_mean if decl.centred else sp.Integer(0)), s.running_var
    D = denominator(var, s.eps, placement)
    nodes.append(Step(XHAT[I], (X[I] - mu) / D, "normalize"))
    if decl.params == "shared":
        gamma, beta = s.gamma, s.beta
    elif decl.params == "element":
        gamma, beta = GAMMA[I], BETA[I]
    else:
        gamma, beta = GAMMA[CH(I)], BETA[CH(I)]
    shift = beta if decl.beta else sp.Integer(0)
    if affine:
        rule = "scale and shift" if decl.beta else "scale"
        nodes.append(Step(Y[I], gamma * XHAT[I] + shift, rule))
    else:
        nodes.append(Step(Y[I], XHAT[I], "no scale and shift" if decl.beta else "no scale"))
    if not affine:
        gamma, beta = sp.Integer(1), sp.Integer(0)
    facts = {"k": k, "D": D, "mu": mu, "var": var, "gamma": gamma, "beta": beta, "train": train}
    return nodes, decl, s, facts


def chain_rule_general(
    nodes: Sequence[Step],
    seeds: Mapping[sp.Basic, sp.Basic],
    order: Sequence[tuple[sp.Basic, sp.Basic, str]],
) -> list[Step]:
    """:func:`bnsym.core.graph.chain_rule` over a graph whose family nodes (lhs ``base[i]``)
    stand for m nodes: a consumer ``c[i]`` contributes Σ_i ∂ℓ/∂c_i·∂c_i/∂v, and the δ that
    ``sympy.diff`` gives where v is one element is evaluated by :func:`collapse`.

    ``seeds`` maps output bases (or symbols) to their adjoints' bases; ``order`` lists
    ``(v, name, rule)`` with v a symbol or ``base[k]``. Each step's value has the earlier
    adjoints substituted, element by element.
    """
    adjoint: dict[sp.Basic, sp.Basic] = dict(seeds)
    values: dict[sp.Basic, sp.Expr] = {}
    steps = []
    for v, name, rule in order:
        terms = []
        for n in nodes:
            d = sp.diff(n.rhs, v)
            if d == 0:
                continue
            if isinstance(n.lhs, sp.Indexed):
                a = adjoint[n.lhs.base][n.lhs.indices]
                terms.append(sp.Sum(a * d, (n.lhs.indices[0], 1, M)))
            else:
                terms.append(adjoint[n.lhs] * d)
        rhs = collapse(sp.Add(*terms))
        value = collapse(_substitute(rhs, values))
        key = v.base if isinstance(v, sp.Indexed) else v
        adjoint[key] = name.base if isinstance(name, sp.Indexed) else name
        values[adjoint[key]] = value
        steps.append(Step(name, rhs, rule, value))
    return steps


def _substitute(expr: sp.Expr, values: Mapping[sp.Basic, sp.Expr]) -> sp.Expr:
    """Replace each adjoint by its value: a symbol directly, an element ``base[j]`` by the
    value of ``base[k]`` at k = j."""

    def element(e: sp.Indexed) -> sp.Expr:
        return values[e.base].xreplace({K: e.indices[0]})

    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in values, element)
    return expr.xreplace({k: v for k, v in values.items() if not isinstance(k, sp.IndexedBase)})


def _order(decl: Any, s: Symbols, facts: dict[str, Any], affine: bool) -> list[Any]:
    order: list[Any] = [(XHAT[K], DXHAT[K], "x̂_i feeds y_i")]
    # the statistic in the layer's own word: the variance, or the mean square (RMS norm)
    var = "the variance" if decl.centred else "the mean square"
    if facts["train"]:
        order.append((s.var, s.d_var, f"{var} feeds every x̂_i: sum over i"))
        if decl.centred:
            order.append((s.mu, s.d_mu, "the mean feeds every x̂_i and the variance"))
    feeds = "x̂_i and the statistics" if decl.centred else "x̂_i and the mean square"
    order.append((X[K], DX[K], f"x_i feeds {feeds if facts['train'] else 'x̂_i'}"))
    if affine:
        if decl.params == "shared":
            order.append((s.gamma, s.dgamma, "γ scales every x̂_i"))
            if decl.beta:
                order.append((s.beta, s.dbeta, "β shifts every y_i"))
        else:
            what = "x̂_i" if decl.params == "element" else "the x̂_j of channel c"
            sub = "i" if decl.params == "element" else "c"
            order.append((GAMMA[K], DGAMMA[K], f"γ_{sub} scales {what}"))
            if decl.beta:
                order.append((BETA[K], DBETA[K], f"β_{sub} shifts {what.replace('x̂', 'y')}"))
    return order


def _shown(expr: sp.Expr, channel: bool) -> sp.Expr:
    """As the notes write it: the element is i, every Σ runs over j (γ's channel is c)."""
    expr = expr.replace(
        lambda e: isinstance(e, sp.Sum) and e.limits[0][0] != J,
        lambda e: e.xreplace({e.limits[0][0]: J}),
    )
    return expr.xreplace({K: sp.Symbol("c", integer=True) if channel else I})


# --- the closed form -----------------------------------------------------------------------------


def _closed_form(decl: Any, s: Symbols, facts: dict[str, Any], placement: str) -> sp.Expr:
    """∂ℓ/∂x_k = (1/(m·D))·(m·g_k − Σ_j g_j − c·x̂_k·Σ_j g_j·x̂_j), g_j = γ_j·∂ℓ/∂y_j, as the
    notes write it (c = m·k·r; no Σ_j g_j for RMS norm; γ taken out where it is shared)."""
    gamma, D = facts["gamma"], facts["D"]
    shared = not isinstance(gamma, sp.Indexed)
    g = (lambda e: DY[e]) if shared else (lambda e: gamma.xreplace({I: e}) * DY[e])
    if not facts["train"]:
        return gamma.xreplace({I: K}) * DY[K] / D
    D_shown, c = D, M * facts["k"]
    if placement != "inside":  # σ + ε, or σ + √ε (sqrt-outside)
        D_shown = s.sigma + added(s.eps, placement)
        c = M * facts["k"] * D_shown / s.sigma
    terms = [M * g(K)]
    if decl.centred:
        terms.append(-sp.Sum(g(J), (J, 1, M)))
    terms.append(-c * XHAT[K] * sp.Sum(g(J) * XHAT[J], (J, 1, M)))
    scale = gamma if shared else sp.Integer(1)
    return sp.Mul(scale / (M * D_shown), sp.Add(*terms), evaluate=False)


@dataclass(frozen=True)
class GeneralGraph:
    """The general form before its proofs and before it is shown: the forward graph
    (``forward``), the chain rule's steps (``backward``) and the closed form (``closed``) with
    the element differentiated by still ``k``, and what the proofs read: the declaration, the
    scalars' symbols (``symbols``), the variant and ``facts`` (k, D, μ, the variance, γ, β,
    train)."""

    layer: Layer
    symbols: Symbols
    facts: Mapping[str, Any]
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    closed: sp.Expr
    placement: str
    affine: bool


@functools.cache
def general_graph(
    layer: Layer | str = "batchnorm",
    variance: str = "biased",
    placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
) -> GeneralGraph:
    """The layer's graph, chain rule and closed form with symbolic m (not proved here: see
    :func:`bnsym.proofs.general.derive_general`).

    >>> shown(general_graph("rmsnorm")).closed_form.rhs
    (m*dy[i]*gamma[i] - xhat[i]*Sum(dy[j]*gamma[j]*xhat[j], (j, 1, m)))/(m*sqrt(epsilon + nu2))
    """
    nodes, decl, s, facts = _graph(layer, variance, placement, affine, mode)
    backward = chain_rule_general(nodes, {Y: DY}, _order(decl, s, facts, affine))
    closed = _closed_form(decl, s, facts, placement)
    return GeneralGraph(decl, s, facts, tuple(nodes), tuple(backward), closed, placement, affine)


def shown(
    g: GeneralGraph,
    verified: Mapping[str, bool] | None = None,
    methods: Mapping[str, str] | None = None,
    residual: sp.Expr | None = None,
) -> General:
    """The general form as the notes write it (the element is i, every Σ runs over j, γ's
    channel is c), with the proofs' record where given."""
    by_channel = {DGAMMA[K], DBETA[K]} if g.layer.params == "channel" else set()

    def step(st: Step) -> Step:
        channel = st.lhs in by_channel
        value = None if st.value is None else _shown(st.value, channel)
        return Step(_shown(st.lhs, channel), _shown(st.rhs, channel), st.rule, value)

    return General(
        layer=g.layer,
        forward=g.forward,
        backward=tuple(step(st) for st in g.backward),
        closed_form=Step(DX[I], _shown(g.closed, False), "closed form"),
        verified=dict(verified or {}),
        methods=dict(methods or {}),
        residual=None if residual is None else _shown(residual, False),
    )


# --- instances --------------------------------------------------------------------------------


def instance_of(expr: sp.Expr, m: int, i: int | None = None, channels: int | None = None) -> Any:
    """``expr`` at group size ``m`` (and element ``i``, 1-based): every Σ written out, every
    ``base[n]`` the instance's symbol ``base`` + n (``x[3]`` -> ``x3``).

    >>> instance_of(sp.Sum(X[J], (J, 1, M)) / M, 3)
    x1/3 + x2/3 + x3/3
    """
    sub: dict[sp.Basic, Any] = {M: m}
    if i is not None:
        sub[I] = i
    if channels is not None:
        sub[C] = channels
    e = expr.xreplace(sub)
    e = e.replace(lambda a: isinstance(a, sp.Sum), lambda a: a.doit())
    if channels is not None:
        per = m // channels
        e = e.replace(
            lambda a: isinstance(a, sp.Function) and a.func == CH, lambda a: -(-a.args[0] // per)
        )
    return e.replace(
        lambda a: isinstance(a, sp.Indexed),
        lambda a: sp.Symbol(f"{a.base}{a.indices[0]}", real=True),
    )


# --- forward mode -------------------------------------------------------------------------------

#: The tangents of the general form: ẋ[i], and of the element-wise nodes x̂̇[i], ẏ[i].
DOTX, DOTXHAT, DOTY = (sp.IndexedBase(n, real=True) for n in ("dotx", "dotxhat", "doty"))
DOTGAMMA, DOTBETA = (sp.IndexedBase(n, real=True) for n in ("dotgamma", "dotbeta"))
_T = sp.Symbol("t", real=True)  # the line θ + t·θ̇ along which the walk differentiates


@dataclass(frozen=True)
class GeneralForward:
    """Forward mode for every m: the forward graph's tangent steps (``steps``: μ̇, σ̇², x̂̇[i],
    ẏ[i], each with its ``value`` in the inputs and tangents), the closed form of ẏ[i]
    (``closed_form``), and the proofs' record."""

    layer: Layer
    steps: tuple[Step, ...]
    closed_form: Step
    verified: Mapping[str, bool] = field(default_factory=dict)
    methods: Mapping[str, str] = field(default_factory=dict)


def _tangent_of(g: GeneralGraph) -> dict[sp.Basic, sp.Basic]:
    """Each input's tangent: x[i] -> ẋ[i], γ -> γ̇ (a symbol where shared, γ̇[c] else), β."""
    s, decl = g.symbols, g.layer
    out: dict[sp.Basic, sp.Basic] = {X: DOTX}
    if g.affine:
        if decl.params == "shared":
            out[s.gamma] = sp.Symbol("dotgamma", real=True)
            out[s.beta] = sp.Symbol("dotbeta", real=True)
        else:
            out[GAMMA], out[BETA] = DOTGAMMA, DOTBETA
    return out


def general_forward(g: GeneralGraph) -> tuple[tuple[Step, ...], Step]:
    """The forward walk over the general graph ``g`` and the closed form of ẏ[i].

    Each node n's tangent is d/dt of n's definition along the line θ + t·θ̇ (every input and
    earlier node moved by t times its tangent), at t = 0: ``sympy.diff`` through Σ as through
    any sum. The closed form is ẏ_i = (γ_i/D)·(ẋ_i − c·mean(ẋ) − k·r·x̂_i·Σ_j ẋ_j·x̂_j)
    + γ̇_i·x̂_i + β̇_i (eval mode: γ_i·ẋ_i/D + γ̇_i·x̂_i + β̇_i).
    """
    s, facts, decl = g.symbols, g.facts, g.layer
    tangent = _tangent_of(g)
    values: dict[sp.Basic, sp.Expr] = {}  # each tangent's value, earlier ones substituted

    def moved(e: sp.Expr) -> sp.Expr:
        def along(a: sp.Indexed) -> sp.Expr:
            return a + _T * tangent[a.base][a.indices]

        e = e.replace(lambda a: isinstance(a, sp.Indexed) and a.base in tangent, along)
        return e.xreplace({v: v + _T * t for v, t in tangent.items() if isinstance(v, sp.Symbol)})

    steps = []
    for n in g.forward:
        rhs = sp.diff(moved(n.rhs), _T).xreplace({_T: 0})
        rhs = sp.factor_terms(rhs)
        if isinstance(n.lhs, sp.Indexed):
            base = {XHAT: DOTXHAT, Y: DOTY}[n.lhs.base]
            lhs: sp.Basic = base[n.lhs.indices]
            tangent[n.lhs.base] = base
        else:
            lhs = sp.Symbol("dot" + n.lhs.name, real=True)
            tangent[n.lhs] = lhs
        value = _substitute_tangents(rhs, values)
        values[lhs.base if isinstance(lhs, sp.Indexed) else lhs] = value
        steps.append(Step(lhs, rhs, f"{n.rule} pushed forward", value))
    gamma, beta, D = facts["gamma"], facts["beta"], facts["D"]
    t_gamma = tangent.get(GAMMA, tangent.get(s.gamma))
    dot_gamma = dot_beta = sp.Integer(0)
    if g.affine:
        dot_gamma = (
            t_gamma if isinstance(t_gamma, sp.Symbol) else t_gamma[gamma.indices]  # type: ignore[index]
        )
        if decl.beta:
            t_beta = tangent.get(BETA, tangent.get(s.beta))
            dot_beta = t_beta if isinstance(t_beta, sp.Symbol) else t_beta[beta.indices]  # type: ignore[index]
    if facts["train"]:
        c = 1 if decl.centred else 0
        kr = facts["k"]
        if g.placement != "inside":  # r = D/σ
            kr = kr * D / sp.sqrt(facts["var"])
        projected = (
            DOTX[I]
            - c * sp.Sum(DOTX[J], (J, 1, M)) / M
            - kr * XHAT[I] * sp.Sum(DOTX[J] * XHAT[J], (J, 1, M))
        )
    else:
        projected = DOTX[I]
    closed = sp.Mul(gamma / D, projected, evaluate=False) + dot_gamma * XHAT[I] + dot_beta
    return tuple(steps), Step(DOTY[I], closed, "closed form")


def _substitute_tangents(expr: sp.Expr, values: Mapping[sp.Basic, sp.Expr]) -> sp.Expr:
    """Each earlier tangent replaced by its value (an element ``base[j]`` by the value at j)."""

    def element(e: sp.Indexed) -> sp.Expr:
        return values[e.base].xreplace({I: e.indices[0]})

    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in values, element)
    return expr.xreplace({k: v for k, v in values.items() if isinstance(k, sp.Symbol)})
