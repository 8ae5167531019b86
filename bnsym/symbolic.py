"""The symbolic batch-normalization derivation for a batch of m values (SymPy only).

``derive(m, **options)`` builds the computation graph of the paper's Algorithm 1 (Ioffe and
Szegedy, 2015) with one SymPy symbol per node (μ_B, σ²_B, x̂_i, y_i), differentiates each node
with ``sympy.diff`` and walks the graph backwards (the chain rule in the paper's order:
∂ℓ/∂x̂_i, ∂ℓ/∂σ²_B, ∂ℓ/∂μ_B, ∂ℓ/∂x_i, ∂ℓ/∂γ, ∂ℓ/∂β), then proves the closed form and the
identities exactly (:mod:`bnsym._proofs`). Nothing is expanded or ``simplify``-ed along the
way, which is what keeps m = 128 within seconds.

The derivation is always carried out with a symbolic ε and symbolic inputs; a numeric ε,
``values`` (a worked example) and ``dy`` (upstream gradients) are substituted afterwards, so
the proofs hold for every ε and every batch.

>>> d = derive(4, eps=0, values=[[2, 0, 2, 4]])
>>> d.mean, d.var, d.x_hat
(2, 2, (0, -sqrt(2), 0, sqrt(2)))
>>> all(d.verified.values())
True
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sympy as sp

from bnsym._options import (
    MAX_M,
    DerivationError,
    Options,
    exact_number,
    make_options,
)

__all__ = [
    "MAX_M",
    "EXPLICIT_MAX_M",
    "Derivation",
    "DerivationError",
    "Options",
    "Step",
    "Symbols",
    "derive",
    "exact_number",
    "make_options",
]

#: Up to this m, the per-element results are also shown fully in terms of x_1..x_m.
EXPLICIT_MAX_M = 3
#: Up to this m, the m×m Jacobian is built entry by entry and compared with its structure.
JACOBIAN_MAX_M = 16
#: Up to this m, each ∂ℓ/∂x_i step also carries its ``value`` with every earlier step
#: substituted (above, that is O(m²) SymPy terms that nothing needs).
VALUE_MAX_M = 16
#: Up to this m, the chain-rule result is also checked against direct differentiation of the
#: fully explicit forward pass (that costs O(m³)).
DIRECT_MAX_M = 8


# --- symbols -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Symbols:
    """The SymPy symbols of a derivation for batch size m.

    Inputs: ``x`` (x1..xm), ``dy`` (dy1..dym, the upstream gradients ∂ℓ/∂y_i), ``gamma``,
    ``beta``, ``eps`` (named ``epsilon``), and in eval mode ``running_mean``, ``running_var``.
    Graph nodes: ``mu`` (μ_B), ``var`` (σ²_B), ``sigma`` (σ_B = √σ²_B), ``x_hat``, ``y``.
    Adjoints: ``d_x_hat``, ``d_var``, ``d_mu``, ``dx``, ``dgamma``, ``dbeta`` — the names
    that the steps of the backward pass assign to.
    """

    m: int
    x: tuple[sp.Symbol, ...]
    dy: tuple[sp.Symbol, ...]
    gamma: sp.Symbol
    beta: sp.Symbol
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
    dgamma: sp.Symbol
    dbeta: sp.Symbol

    @staticmethod
    @functools.cache
    def of(m: int) -> Symbols:
        def seq(name: str, **assumptions: bool) -> tuple[sp.Symbol, ...]:
            return tuple(sp.Symbol(f"{name}{i}", **assumptions) for i in range(1, m + 1))

        return Symbols(
            m=m,
            x=seq("x", real=True),
            dy=seq("dy", real=True),
            gamma=sp.Symbol("gamma", real=True),
            beta=sp.Symbol("beta", real=True),
            eps=sp.Symbol("epsilon", positive=True),
            mu=sp.Symbol("mu_B", real=True),
            var=sp.Symbol("sigma2_B", positive=True),
            sigma=sp.Symbol("sigma_B", positive=True),
            running_mean=sp.Symbol("running_mean", real=True),
            running_var=sp.Symbol("running_var", positive=True),
            x_hat=seq("xhat", real=True),
            y=seq("y", real=True),
            d_x_hat=seq("dxhat", real=True),
            d_var=sp.Symbol("dsigma2_B", real=True),
            d_mu=sp.Symbol("dmu_B", real=True),
            dx=seq("dx", real=True),
            dgamma=sp.Symbol("dgamma", real=True),
            dbeta=sp.Symbol("dbeta", real=True),
        )

    def public(self) -> dict[str, sp.Symbol]:
        """Name -> symbol for every symbol that can appear in an exported expression."""
        names = {s.name: s for s in (*self.x, *self.dy, self.gamma, self.beta, self.eps)}
        names.update(running_mean=self.running_mean, running_var=self.running_var)
        return names


# --- the derivation ------------------------------------------------------------------------------


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
class Derivation:
    """The derivation of batch normalization for a batch of m values. Immutable.

    Graph form (as the paper writes it): ``forward`` and ``backward`` are tuples of
    :class:`Step`; ``closed_form`` holds ∂ℓ/∂x_i per element in terms of x̂_i and the sums.

    Explicit form (inputs only — x1..xm, dy1..dym, gamma, beta, epsilon — with ε, values
    and dy substituted when given): ``mean``, ``var``, ``x_hat``, ``y``, ``dx``, ``dgamma``,
    ``dbeta``. With several features (rows of ``values``), these hold the first feature and
    ``features`` holds one dict per feature.

    ``jacobian`` is the m×m matrix ∂y_j/∂x_i in graph symbols (None above m = 16),
    ``jacobian_structure`` its structured form, ``identities`` the proved statements, and
    ``verified`` maps each proof's name to True/False.
    """

    options: Options
    symbols: Symbols
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    closed_form: tuple[Step, ...]
    jacobian: sp.ImmutableMatrix | None
    jacobian_structure: Step
    identities: tuple[Step, ...]
    verified: Mapping[str, bool]
    proof_methods: Mapping[str, str]
    mean: sp.Expr
    var: sp.Expr
    x_hat: tuple[sp.Expr, ...]
    y: tuple[sp.Expr, ...]
    dx: tuple[sp.Expr, ...]
    dgamma: sp.Expr | None
    dbeta: sp.Expr | None
    features: tuple[dict[str, Any], ...] = field(default=())

    @property
    def m(self) -> int:
        return self.options.m

    # Rendering lives in bnsym.render (text, JSON) and bnsym.notes (LaTeX, Markdown); these
    # methods import lazily so that the derivation itself needs SymPy only.
    def to_text(self, ascii: bool = False) -> str:
        from bnsym.render import to_text

        return to_text(self, ascii=ascii)

    def to_json(self) -> str:
        from bnsym.render import to_json

        return to_json(self)

    def to_latex(self, standalone: bool = False) -> str:
        from bnsym.notes import to_latex

        return to_latex(self, standalone=standalone)

    def to_markdown(self) -> str:
        from bnsym.notes import to_markdown

        return to_markdown(self)

    def _repr_latex_(self) -> str:
        from bnsym.notes import to_latex

        return to_latex(self, standalone=False, notebook=True)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<Derivation m={o.m} mode={o.mode} variance={o.variance} "
            f"eps={'symbolic' if o.eps is None else o.eps} placement={o.eps_placement} "
            f"affine={o.affine} verified={sum(self.verified.values())}/{len(self.verified)}>"
        )


def _number_map(o: Options, s: Symbols, feature: int = 0) -> dict[sp.Basic, sp.Basic]:
    mapping: dict[sp.Basic, sp.Basic] = {}
    if o.eps is not None:
        mapping[s.eps] = o.eps
    if o.values is not None:
        mapping.update(zip(s.x, o.values[feature], strict=True))
    if o.dy is not None:
        mapping.update(zip(s.dy, o.dy[feature], strict=True))
    return mapping


def derive(
    m: int,
    *,
    eps: object = None,
    variance: str = "biased",
    eps_placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
    values: object = None,
    dy: object = None,
    force: bool = False,
) -> Derivation:
    """Derive batch normalization's forward and backward pass for a batch of ``m`` values.

    Args:
        m: batch size, 1 ≤ m ≤ MAX_M (more with ``force=True``); m = 1 only in eval mode.
        eps: None for a symbolic ε (default), or a number ≥ 0 read exactly (1e-5 -> 1/100000).
        variance: ``"biased"`` (1/m, the paper and PyTorch) or ``"unbiased"`` (1/(m-1)).
        eps_placement: ``"inside"`` the square root, √(σ²_B + ε) (default), or ``"outside"``,
            σ_B + ε, as some lecture notes write it.
        affine: False drops γ and β (y_i = x̂_i).
        mode: ``"train"`` (batch statistics) or ``"eval"`` (running mean and variance are
            constants, so the gradient is a per-feature scaling).
        values: a worked example: m numbers per feature, as a string ``"2,0,2,4"`` (features
            separated by ``;``), a list, or a list of lists. Decimals are exact (8.9 -> 89/10).
        dy: upstream gradients ∂ℓ/∂y_i, in the same layout as ``values``.
        force: allow m above MAX_M.

    Returns:
        an immutable :class:`Derivation`; ``verified`` maps each proof to True/False.

    Raises:
        DerivationError: bad input, with one sentence naming the value and what to do.

    >>> d = derive(2)
    >>> d.dx[0]
    4*epsilon*gamma*(dy1 - dy2)/(4*epsilon + x1**2 - 2*x1*x2 + x2**2)**(3/2)
    """
    opts = make_options(
        m,
        eps=eps,
        variance=variance,
        eps_placement=eps_placement,
        affine=affine,
        mode=mode,
        values=values,
        dy=dy,
        force=force,
    )
    base = _derive_symbolic(opts.m, opts.variance, opts.eps_placement, opts.affine, opts.mode)
    return _instantiate(base, opts)


# --- the graph and the chain rule --------------------------------------------------------------


@dataclass(frozen=True)
class _Symbolic:
    """The derivation with symbolic ε and inputs, shared by every instantiation (cached)."""

    symbols: Symbols
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    closed_form: tuple[Step, ...]
    jacobian: sp.Matrix | None
    jacobian_structure: Step
    identities: tuple[Step, ...]
    verified: dict[str, bool]
    proof_methods: dict[str, str]
    explicit: dict[str, Any]


def _normalizer(m: int, variance: str) -> sp.Rational:
    """k in σ²_B = k·Σ(x_i − μ_B)²: 1/m (biased) or 1/(m − 1) (unbiased)."""
    return sp.Rational(1, m) if variance == "biased" else sp.Rational(1, m - 1)


def _graph(s: Symbols, variance: str, placement: str, affine: bool, mode: str) -> list[Step]:
    """The forward computation graph, one Step per node, in the paper's order."""
    m = s.m
    nodes: list[Step] = []
    if mode == "train":
        k = _normalizer(m, variance)
        # Unevaluated, so that they read (x₁ + … + x_m)/m; _chain_rule evaluates them.
        nodes.append(
            Step(s.mu, sp.Mul(sp.Add(*s.x), sp.Rational(1, m), evaluate=False), "mini-batch mean")
        )
        nodes.append(
            Step(
                s.var,
                sp.Mul(sp.Add(*[(xi - s.mu) ** 2 for xi in s.x]), k, evaluate=False),
                "mini-batch variance",
            )
        )
        mu, var = s.mu, s.var
    else:
        mu, var = s.running_mean, s.running_var
    denom = sp.sqrt(var + s.eps) if placement == "inside" else sp.sqrt(var) + s.eps
    for xi, xh in zip(s.x, s.x_hat, strict=True):
        nodes.append(Step(xh, (xi - mu) / denom, "normalize"))
    for xh, yi in zip(s.x_hat, s.y, strict=True):
        if affine:
            nodes.append(Step(yi, s.gamma * xh + s.beta, "scale and shift"))
        else:
            nodes.append(Step(yi, xh, "no scale and shift"))
    return nodes


def _chain_rule(s: Symbols, nodes: list[Step], affine: bool) -> list[Step]:
    """Reverse-mode differentiation of the graph, one step per node, as the paper does it.

    The adjoint of a node v is Σ over the nodes c that consume v of ∂ℓ/∂c · ∂c/∂v, where
    ∂c/∂v is ``sympy.diff`` of c's definition. Each step is written in terms of the adjoint
    symbols of later nodes (``rhs``) and, substituted, in terms of the inputs (``value``).
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
    adjoint_symbol = dict(zip(s.y, s.dy, strict=True))
    adjoint_value: dict[sp.Basic, sp.Expr] = {}

    def step(v: sp.Symbol, name: sp.Symbol, rule: str, substitute: bool = True) -> Step:
        terms = [adjoint_symbol[c] * sp.diff(part[c, v], v) for c in consumers.get(v, [])]
        rhs = sp.Add(*terms)
        value = rhs.xreplace(adjoint_value) if substitute else None
        adjoint_symbol[v] = name
        adjoint_value[name] = value
        return Step(name, rhs, rule, value)

    steps = [
        step(xh, dxh, "∂y_i/∂x̂_i = γ" if affine else "∂y_i/∂x̂_i = 1")
        for xh, dxh in zip(s.x_hat, s.d_x_hat, strict=True)
    ]
    if s.var in definition:
        steps.append(step(s.var, s.d_var, "σ²_B feeds every x̂_i: sum over i"))
        steps.append(step(s.mu, s.d_mu, "μ_B feeds every x̂_i and σ²_B"))
    # ∂ℓ/∂x_i substituted is O(m) terms for each of m elements: built only up to
    # VALUE_MAX_M (the proofs substitute inside their polynomial ring instead).
    rule = "x_i feeds x̂_i, σ²_B and μ_B" if s.var in definition else "x_i feeds x̂_i"
    steps += [
        step(xi, dxi, rule, substitute=s.m <= VALUE_MAX_M)
        for xi, dxi in zip(s.x, s.dx, strict=True)
    ]
    if affine:
        steps.append(step(s.gamma, s.dgamma, "γ scales every x̂_i"))
        steps.append(step(s.beta, s.dbeta, "β shifts every y_i"))
    return steps


@functools.cache
def _derive_symbolic(m: int, variance: str, placement: str, affine: bool, mode: str) -> _Symbolic:
    from bnsym import _proofs

    s = Symbols.of(m)
    forward = _graph(s, variance, placement, affine, mode)
    backward = _chain_rule(s, forward, affine)
    result = _proofs.prove(s, forward, backward, variance, placement, affine, mode)
    return _Symbolic(symbols=s, forward=tuple(forward), backward=tuple(backward), **result)


def _instantiate(base: _Symbolic, opts: Options) -> Derivation:
    """Substitute ε, values and dy into the symbolic derivation."""
    s = base.symbols
    ex = base.explicit
    features = []
    n_features = 1 if opts.values is None and opts.dy is None else len(opts.values or opts.dy or ())
    for f in range(n_features):
        mapping = _number_map(opts, s, f)

        def num(e: sp.Expr | None, mapping: dict[sp.Basic, sp.Basic] = mapping) -> Any:
            if e is None:
                return None
            # Exact substitution; SymPy's own evaluation already writes 2/√2 as √2. Gradients
            # that are sums over dy get their common factor out: √2·γ/8·(3·dy1 − dy2 − …).
            out = e.xreplace(mapping)
            return sp.factor_terms(out) if mapping and not out.is_number else out

        def num_all(es: Iterable[sp.Expr], num: Any = num) -> tuple[Any, ...]:
            return tuple(num(e) for e in es)

        features.append(
            {
                "mean": num(ex["mean"]),
                "var": num(ex["var"]),
                "x_hat": num_all(ex["x_hat"]),
                "y": num_all(ex["y"]),
                "dx": num_all(ex["dx"]),
                "dgamma": num(ex["dgamma"]),
                "dbeta": num(ex["dbeta"]),
            }
        )
    first = features[0]
    return Derivation(
        options=opts,
        symbols=s,
        forward=base.forward,
        backward=base.backward,
        closed_form=base.closed_form,
        jacobian=base.jacobian,
        jacobian_structure=base.jacobian_structure,
        identities=base.identities,
        verified=MappingProxyType(dict(base.verified)),
        proof_methods=MappingProxyType(dict(base.proof_methods)),
        mean=first["mean"],
        var=first["var"],
        x_hat=first["x_hat"],
        y=first["y"],
        dx=first["dx"],
        dgamma=first["dgamma"],
        dbeta=first["dbeta"],
        features=tuple(features),
    )


def symbol_table(m: int) -> dict[str, sp.Symbol]:
    """The name -> symbol map that reads exported expressions back (see render.load_json)."""
    return Symbols.of(m).public()


def explicit_forward(s: Symbols, forward: Sequence[Step]) -> dict[sp.Basic, sp.Expr]:
    """Graph symbol -> its definition in terms of the inputs, each node substituted in turn."""
    values: dict[sp.Basic, sp.Expr] = {}
    for n in forward:
        values[n.lhs] = n.rhs.xreplace(values)
    return values
