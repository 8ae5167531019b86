"""The derivation: what :func:`bnsym.derive` returns, and how it is assembled.

``derive(m, **options)`` builds the computation graph of a layer of the family (the paper's
Algorithm 1 for batch norm, Ioffe and Szegedy, 2015) with one SymPy symbol per node (μ, σ²,
x̂_i, y_i), differentiates each node with ``sympy.diff`` and walks the graph backwards (the
chain rule in the paper's order: ∂ℓ/∂x̂_i, ∂ℓ/∂σ², ∂ℓ/∂μ, ∂ℓ/∂x_i, ∂ℓ/∂γ, ∂ℓ/∂β) with the
symbolic core (:mod:`bnsym.core`), then proves the closed form and the identities exactly
(:mod:`bnsym.proofs`). Nothing is expanded or ``simplify``-ed along the way, which is what
keeps m = 128 within seconds.

The derivation is always carried out with a symbolic ε and symbolic inputs; a numeric ε,
``values`` (a worked example) and ``dy`` (upstream gradients) are substituted afterwards, so
the proofs hold for every ε and every batch.

:class:`Derivation` is the one type a derivation has. It renders itself (``to_text``,
``to_json``, ``to_latex``, ``to_markdown``, ``_repr_latex_`` for Jupyter) through the table of
formats (:mod:`bnsym.notes.latex.formats`); it is defined here, above the renderers, which read its
fields and never import this module, so that every dependency points one way.

>>> d = derive(4, eps=0, values=[[2, 0, 2, 4]])
>>> d.mean, d.var, d.x_hat
(2, 2, (0, -sqrt(2), 0, sqrt(2)))
>>> all(d.verified.values())
True
>>> derive(2, eps=0, values="1,3").to_text().splitlines()[0]
'Batch normalization, m = 2: train mode, biased variance (1/m), ε inside the root, ε = 0'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sympy as sp

from bnsym.core.build import graph_and_chain_rule
from bnsym.core.cutoffs import GENERAL_PROOF_MIN_M
from bnsym.core.general import General
from bnsym.core.graph import Step, Symbols
from bnsym.core.options import DerivationError, Options, make_options
from bnsym.family.layers import Layer
from bnsym.limits import bounded
from bnsym.notes.formats import render
from bnsym.proofs.general import derive_general
from bnsym.proofs.prover import prove

__all__ = ["Derivation", "DerivationError", "derive", "from_options"]

# --- the derivation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derivation:
    """The derivation of one normalization layer for a group of m values. Immutable.

    Graph form (as the paper writes it): ``forward`` and ``backward`` are tuples of
    :class:`Step`; ``closed_form`` holds ∂ℓ/∂x_i per element in terms of x̂_i and the sums.

    Explicit form (inputs only — x1..xm, dy1..dym, gamma, beta, epsilon — with ε, values
    and dy substituted when given): ``mean``, ``var``, ``x_hat``, ``y``, ``dx``, ``dgamma``,
    ``dbeta`` (a tuple of K where γ and β are per element or per channel; None without
    them). With several features (rows of ``values``), these hold the first feature and
    ``features`` holds one dict per feature.

    ``jacobian`` is the m×m matrix ∂y_j/∂x_i in graph symbols (None above m = 16),
    ``jacobian_structure`` its structured form, ``identities`` the proved statements, and
    ``verified`` maps each proof's name to True/False. ``general`` is the same layer for
    every m at once (:class:`bnsym.core.general.General`: ``Sum`` over ``Indexed``), derived by
    the same chain rule and proved with symbolic m.

    It renders itself: ``to_text(ascii=False)``, ``to_json()``, ``to_latex(standalone=False)``,
    ``to_markdown()``, ``to_html()``, and in Jupyter ``_repr_latex_``/``_repr_markdown_``.
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
    dgamma: sp.Expr | tuple[sp.Expr, ...] | None
    dbeta: sp.Expr | tuple[sp.Expr, ...] | None
    features: tuple[dict[str, Any], ...] = field(default=())
    general: General | None = None

    @property
    def m(self) -> int:
        return self.options.m

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<Derivation {o.layer.name} m={o.m} mode={o.mode} variance={o.variance} "
            f"eps={'symbolic' if o.eps is None else o.eps} placement={o.eps_placement} "
            f"affine={o.affine} verified={sum(self.verified.values())}/{len(self.verified)}>"
        )

    def to_text(self, ascii: bool = False) -> str:
        return str(render(self, "text", ascii=ascii))

    def to_json(self) -> str:
        return str(render(self, "json"))

    def to_latex(self, standalone: bool = False) -> str:
        return str(render(self, "latex", standalone=standalone))

    def to_markdown(self) -> str:
        return str(render(self, "markdown"))

    def to_html(self) -> str:
        return str(render(self, "html"))

    def _repr_latex_(self) -> str:
        return str(render(self, "latex", standalone=False, notebook=True))

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _number_map(o: Options, s: Symbols, feature: int = 0) -> dict[sp.Basic, sp.Basic]:
    mapping: dict[sp.Basic, sp.Basic] = {}
    if o.eps is not None:
        mapping[s.eps] = o.eps
    if o.values is not None:
        mapping.update(zip(s.x, o.values[feature], strict=True))
    if o.dy is not None:
        mapping.update(zip(s.dy, o.dy[feature], strict=True))
    if o.gamma is not None:
        mapping.update(zip(s.gammas, o.gamma[feature], strict=True))
    if o.beta is not None:
        mapping.update(zip(s.betas, o.beta[feature], strict=True))
    if o.running_mean is not None:
        mapping[s.running_mean] = o.running_mean[feature][0]
    if o.running_var is not None:
        mapping[s.running_var] = o.running_var[feature][0]
    if o.values is not None and len(o.values) > 1 and s.shared:
        # one γ, β (and running statistics) per feature: γ₁, γ₂, … where not given as numbers
        k = feature + 1
        for sym in (s.gamma, s.beta, s.running_mean, s.running_var):
            mapping.setdefault(sym, sp.Symbol(f"{sym.name}{k}", **sym.assumptions0))
    return mapping


def derive(
    m: int,
    *,
    layer: str | Layer = "batchnorm",
    channels: object = None,
    eps: object = None,
    variance: str = "biased",
    eps_placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
    values: object = None,
    dy: object = None,
    gamma: object = None,
    beta: object = None,
    running_mean: object = None,
    running_var: object = None,
    force: bool = False,
) -> Derivation:
    """Derive a normalization layer's forward and backward pass for a group of ``m`` values.

    Args:
        m: the number of values normalized together (the batch for batch norm, the features
            of one sample for layer and RMS norm, the positions of one channel for instance
            norm, channels × positions for group norm), m ≥ 1 within the budget of
            :data:`bnsym.limits.LIMIT` (a minute and 2 GB: m up to about 450; with
            ``force=True`` :data:`bnsym.limits.FORCED`); a centred layer needs m ≥ 2 in
            train mode.
        layer: one of :data:`~bnsym.family.layers.LAYERS` (``"batchnorm"``, ``"layernorm"``,
            ``"instancenorm"``, ``"groupnorm"``, ``"rmsnorm"``).
        channels: group norm only: the group's m values belong to this many channels of
            m/channels values each, listed channel by channel, with one γ, β per channel.
        eps: None for a symbolic ε (default), or a number ≥ 0 read exactly (1e-5 -> 1/100000).
        variance: ``"biased"`` (1/m, the paper and PyTorch) or ``"unbiased"`` (1/(m-1)).
        eps_placement: ``"inside"`` the square root, √(σ²_B + ε) (default), ``"outside"``,
            σ_B + ε, or ``"sqrt-outside"``, σ_B + √ε, as some lecture notes write them (each a
            different layer from √(σ²_B + ε)).
        affine: False drops γ and β (y_i = x̂_i).
        mode: ``"train"`` (batch statistics) or ``"eval"`` (batch norm only: running mean and
            variance are constants, so the gradient is a per-feature scaling).
        values: a worked example: m numbers per feature, as a string ``"2,0,2,4"`` (features
            separated by ``;``), a list, or a list of lists. Decimals are exact (8.9 -> 89/10).
        dy: upstream gradients ∂ℓ/∂y_i, in the same layout as ``values``.
        gamma, beta: the worked example's γ and β: one number per feature where the group
            shares them (batch, instance norm), m per row (layer, RMS norm: one per element),
            one per channel (group norm); one row for every feature, or one per feature.
        running_mean, running_var: eval mode's running statistics, one number per feature
            (the variance ≥ 0).
        force: raise the budget to :data:`bnsym.limits.FORCED` (ten minutes, 8 GB), held to
            while the derivation runs; generating and checking the derivation may use it too.

    Returns:
        an immutable :class:`Derivation`; ``verified`` maps each proof to True/False.

    Raises:
        DerivationError: bad input, with one sentence naming the value and what to do.
        LimitError: the derivation would exceed its budget (raised before any work, with the
            estimate), or reached its cap while running.

    >>> d = derive(2)
    >>> d.dx[0]
    4*epsilon*gamma*(dy1 - dy2)/(4*epsilon + x1**2 - 2*x1*x2 + x2**2)**(3/2)
    >>> derive(4, layer="rmsnorm", eps=0, values="1,-1,1,-1").x_hat   # mean square 1
    (1, -1, 1, -1)
    """
    opts = make_options(
        m,
        layer=layer,
        channels=channels,
        eps=eps,
        variance=variance,
        eps_placement=eps_placement,
        affine=affine,
        mode=mode,
        values=values,
        dy=dy,
        gamma=gamma,
        beta=beta,
        running_mean=running_mean,
        running_var=running_var,
        force=force,
    )
    return from_options(opts)


def from_options(opts: Options) -> Derivation:
    """The derivation of validated options (:func:`bnsym.core.options.make_options`), within
    the bounds of :mod:`bnsym.limits` (LimitError before any work if it would not fit)."""
    with bounded("derive", opts.m, force=opts.force):
        base = _derive_symbolic(
            opts.m,
            opts.layer,
            opts.channels,
            opts.variance,
            opts.eps_placement,
            opts.affine,
            opts.mode,
            opts.eps == 0,  # a statement that needs ε > 0 is replaced by what holds at ε = 0
        )
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
    general: General
    #: each stated identity's proof, a function of the statement as displayed (the tests
    #: hand it a tampered statement and require it to fail)
    claims: dict[str, Any]


@functools.cache
def _derive_symbolic(
    m: int,
    layer: Layer,
    channels: int | None,
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    eps_zero: bool = False,
) -> _Symbolic:
    s = Symbols.of(m, layer, channels)
    forward, backward = graph_and_chain_rule(s, variance, placement, affine, mode)
    general = derive_general(
        layer, variance, placement, affine, mode, identities=m > GENERAL_PROOF_MIN_M
    )
    # Above GENERAL_PROOF_MIN_M the proofs that hold for every m are the general form's.
    for_every_m = general if m > GENERAL_PROOF_MIN_M else None
    result = prove(s, forward, backward, variance, placement, affine, mode, for_every_m, eps_zero)
    return _Symbolic(
        symbols=s, forward=tuple(forward), backward=tuple(backward), general=general, **result
    )


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
            if out.is_number and out.is_Add:  # one denominator: (1 − 3·√2)/2, not 1/2 − 3·√2/2
                return sp.together(out)
            return sp.factor_terms(out) if mapping and not out.is_number else out

        def num_all(es: Iterable[sp.Expr], num: Any = num) -> tuple[Any, ...]:
            return tuple(num(e) for e in es)

        def num_any(e: Any, num: Any = num) -> Any:  # one expression, or one per γ
            return tuple(num(x) for x in e) if isinstance(e, tuple) else num(e)

        var = num(ex["var"])
        # σ = 0 with ε outside the root: ∂ℓ/∂x_i is the proved limit (bnsym.proofs.forms)
        dx = ex["dx"] if var != 0 or "dx_limit" not in ex else ex["dx_limit"]
        features.append(
            {
                "mean": num(ex["mean"]),
                "var": var,
                "x_hat": num_all(ex["x_hat"]),
                "y": num_all(ex["y"]),
                "dx": num_all(dx),
                "dgamma": num_any(ex["dgamma"]),
                "dbeta": num_any(ex["dbeta"]),
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
        general=base.general,
    )
