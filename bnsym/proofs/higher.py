"""Second and third derivatives of every normalization layer: their closed forms and proofs.

The chain rule over the backward graph (:mod:`bnsym.core.higher`, which knows no layer) gives
the **double backward**: the gradients of ℓ₂ = Σ gdx_i·dx_i + Σ gdgamma·dgamma +
Σ gdbeta·dbeta with respect to x (``gx``), to the upstream gradient (``gdy``) and to γ
(``ggamma``) — what PyTorch's ``batchnorm_double_backward`` returns — and, walked once more
with cotangents ``tgx``, ``tgdy``, ``tggamma``, the **third order**.

:func:`derive_higher` takes the closed forms of order 2 (:mod:`bnsym.proofs.double_backward`),
proves each equal to the chain rule's result exactly, as Laurent polynomials in the frame of
:mod:`bnsym.proofs.frame`, and proves the identities of order 2: the Hessian of ⟨dy, y⟩ in x is
symmetric; Σ_i gx_i = 0 for a centred layer in train mode (ℓ₂ does not change when x shifts);
Σ_i gdy_i = m·gdbeta where γ and β are shared. At order 3 the same walk over the closed form's
own steps gives the third order in its sums, proved equal to the walk over the whole double
backward (``third_closed_form``, m ≤ 8).

>>> from bnsym import derive
>>> h = derive_higher(derive(3), order=2)
>>> all(h.verified.values())
True
>>> [str(st.lhs) for st in h.results][:4]
['gx1', 'gx2', 'gx3', 'gdy1']
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.core.graph import Step, Symbols
from bnsym.core.higher import (
    cotangents,
    differentiate,
    double_backward,
    evaluate,
    third_order,
    wrt,
)
from bnsym.core.options import DerivationError
from bnsym.limits import HIGHER_MAX_M, bounded
from bnsym.proofs.display import HESSIAN_IJ, HESSIAN_JI
from bnsym.proofs.double_backward import closed_form
from bnsym.proofs.ring import Laurent, ProofError, place_eps

# differentiate, evaluate and cotangents are the core's (bnsym.core.higher), named here too for
# the code generator and the cross-check, which read them with the closed form

if TYPE_CHECKING:  # pragma: no cover - the derivation is above the proofs
    from bnsym.derivation import Derivation

__all__ = [
    "ORDERS",
    "HigherDerivation",
    "closed_form",
    "cotangents",
    "derive_higher",
    "differentiate",
    "evaluate",
]

#: The orders derive and check accept (codegen writes order 2).
ORDERS = (1, 2, 3)
#: the largest m at which order 3 through the closed form is given, and proved (2 s at m = 8,
#: a minute or two at 16: the chain rule's third order grows as m⁵ in the ring)
THIRD_CLOSED_MAX_M = 8


@dataclass(frozen=True)
class HigherDerivation:
    """The derivatives of order 2 (and 3) of one layer's derivation ``d``. Immutable.

    ``cotangents``: the inputs of the double backward — ``gdx`` (m), ``gdgamma``,
    ``gdbeta`` (K each; no gdbeta for RMS norm). ``steps``: the double backward's chain rule,
    one Step per node, ending with ``results`` (gx_i, gdy_i, ggamma_k). ``closed_form``: the
    results per element in x̂_i, D and the group's sums (one Step each, value None).
    ``identities`` the proved statements; ``verified``/``proof_methods`` as for order 1.
    At order 3: ``third_cotangents`` (tgx, tgdy, tggamma) and ``third_steps`` ending with
    ``third_results`` (tx_i, tdy_i, tgamma_k); empty at order 2. ``third_closed_form``: the
    same chain rule walked over the closed form of order 2 instead of the backward graph —
    steps in the closed form's sums and coefficients, O(m) of them, ending with the same
    results, proved equal to ``third_results`` (``closed_form_3``) where a closed form of
    order 2 is written and m ≤ THIRD_CLOSED_MAX_M (8); empty otherwise.
    """

    derivation: Derivation
    order: int
    gdx: tuple[sp.Symbol, ...]
    gdgamma: tuple[sp.Symbol, ...]
    gdbeta: tuple[sp.Symbol, ...]
    steps: tuple[Step, ...]
    results: tuple[Step, ...]
    closed_form: tuple[Step, ...]
    identities: tuple[Step, ...]
    verified: Mapping[str, bool]
    proof_methods: Mapping[str, str]
    third_cotangents: tuple[sp.Symbol, ...] = ()
    third_steps: tuple[Step, ...] = ()
    third_results: tuple[Step, ...] = ()
    third_closed_form: tuple[Step, ...] = ()
    #: each identity's proof, a function of the statement as displayed (for the tamper tests)
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def symbols(self) -> Symbols:
        return self.derivation.symbols

    def nodes(self) -> list[Step]:
        """Forward, backward and double-backward steps: the graph order 3 differentiates."""
        d = self.derivation
        return [*d.forward, *d.backward, *self.steps]


def derive_higher(d: Derivation, order: int = 2) -> HigherDerivation:
    """The double backward of ``d`` (and, for ``order=3``, its vector-Jacobian product).

    Args:
        d: a first-order derivation, any variant: train or eval mode, ε inside or outside the
            root, biased or unbiased variance, affine or not; the chain rule, the closed form
            and the identities of order 2 are derived and proved for all.
        order: 2 or 3.

    Raises:
        DerivationError: another order, or m above HIGHER_MAX_M.
    """
    if order not in (2, 3):
        raise DerivationError(f"order must be 2 or 3 here; got {order!r}.")
    o = d.options
    if o.m > HIGHER_MAX_M:
        raise DerivationError(
            f"--order {order} is derived and proved up to m = {HIGHER_MAX_M} (the proofs grow "
            f"as m⁴); got m = {o.m}. codegen --order 2 has no such limit."
        )
    # The graph and the symbols are those of the variant, whatever worked example ``d``
    # carries: derived and proved once per variant, then shown with ``d``.
    key = (o.m, o.layer, o.channels, o.variance, o.eps_placement, o.affine, o.mode)
    with bounded("derive", o.m, order=order, force=o.force):
        if key not in _SECOND:
            _SECOND[key] = _derive2(d)
        if order == 3 and key not in _THIRD:
            _THIRD[key] = _derive3(_SECOND[key])
    base = _SECOND[key]
    if base.derivation is not d:
        base = HigherDerivation(**{**base.__dict__, "derivation": d})
    if order == 3:
        base = HigherDerivation(**{**base.__dict__, **_THIRD[key], "order": 3, "derivation": d})
    return base


#: The derivatives of orders 2 and 3 of each variant (m, layer, channels, variance,
#: placement, affine, mode), derived and proved once.
_SECOND: dict[tuple[Any, ...], HigherDerivation] = {}
_THIRD: dict[tuple[Any, ...], dict[str, Any]] = {}


def _derive2(d: Derivation) -> HigherDerivation:
    s, variance = d.symbols, d.options.variance
    walk = double_backward(s, d.forward, d.backward, d.options.affine)
    gdx, gdgamma, gdbeta, steps, results = walk
    closed = list(closed_form(d))
    verified, methods, identities, claims = _prove(
        d, variance, steps, results, closed, gdx, gdgamma, gdbeta
    )
    return HigherDerivation(
        derivation=d,
        order=2,
        gdx=gdx,
        gdgamma=gdgamma,
        gdbeta=gdbeta,
        steps=tuple(steps),
        results=results,
        closed_form=tuple(closed),
        identities=tuple(identities),
        verified=MappingProxyType(verified),
        proof_methods=MappingProxyType(methods),
        claims=MappingProxyType(claims),
    )


def _derive3(h: HigherDerivation) -> dict[str, Any]:
    d = h.derivation
    outputs = [st.lhs for st in h.results]
    inputs = wrt(d.symbols, d.options.affine)
    cot, steps, results = third_order(h.nodes(), outputs, inputs)
    seeds = dict(zip(outputs, cot, strict=True))
    out: dict[str, Any] = {
        "third_cotangents": cot,
        "third_steps": tuple(steps),
        "third_results": results,
    }
    if h.closed_form and d.m <= THIRD_CLOSED_MAX_M:
        # the order-2 closed form is a graph too: the same walk over it gives the third order
        # in its sums and coefficients, O(m) steps
        closed = differentiate([*d.forward, *h.closed_form], seeds, inputs, "t")
        out["third_closed_form"] = tuple(closed)
        out["verified"] = MappingProxyType(
            {**h.verified, "closed_form_3": _prove3(h, steps, closed, cot, len(inputs))}
        )
        out["proof_methods"] = MappingProxyType(
            {
                **h.proof_methods,
                "closed_form_3": "the chain rule over the closed form of order 2 and over the "
                "double backward's own graph give, for each result of order 3, the same "
                "polynomial in the frame of the order-2 proofs",
            }
        )
    return out


def _prove3(
    h: HigherDerivation,
    chain: Sequence[Step],
    closed: Sequence[Step],
    cot: Sequence[sp.Symbol],
    n: int,
) -> bool:
    """The third order through the closed form equals the third order through the chain
    rule's double backward, result by result, as Laurent polynomials (two rings of values
    over one frame: the names of the two walks' intermediate adjoints coincide)."""
    d = h.derivation
    s = d.symbols
    f = _frame(d, [*s.dy, *s.gammas, *h.gdx, *h.gdgamma, *h.gdbeta, *cot])
    g = copy.copy(f)
    g.values, g.memo = dict(f.values), {}
    frame_symbols = (*s.y, s.mu, s.var)
    for ring, walk in ((f, (*d.backward, *h.steps, *chain)), (g, (*h.closed_form, *closed))):
        for st in (*d.forward, *walk):
            if st.lhs not in frame_symbols:
                ring.values[st.lhs] = ring(st.rhs)
    return all(
        f.values[a.lhs] == g.values[b.lhs] for a, b in zip(chain[-n:], closed[-n:], strict=True)
    )


# --- the proofs ------------------------------------------------------------------------------


def _frame(d: Derivation, extra: Sequence[sp.Symbol]) -> Laurent:
    """The frame of :mod:`bnsym.proofs.frame`: in train mode x_i = μ + d_i with Σd_i = 0
    (centred) and σ² a positive symbol's square; in eval mode x_i free and the running
    variance ρ²; the denominator of x̂ — √(σ² + ε), or σ + ε with ε outside the root — one
    positive symbol S (ε = S² − σ², or S − σ); with ``extra`` generators."""
    s, o = d.symbols, d.options
    S = sp.Symbol("S", positive=True)
    if o.mode == "eval":
        rho = sp.Symbol("rho", positive=True)
        f = Laurent([*s.x, s.running_mean, rho, S, *extra])
        sigma = f.gen[rho]
        f.values[s.running_var] = sigma**2
    else:
        free = sp.symbols(f"d1:{s.m}", real=True) if s.layer.centred else s.x
        own = [*free, s.sigma] + ([s.mu] if s.layer.centred else [])
        f = Laurent([*own, S, *extra])
        sigma = f.gen[s.sigma]
        if s.layer.centred:
            dev = [f.gen[v] for v in free]
            dev.append(-sum(dev, f.ring.zero))
            f.values.update({xi: f.gen[s.mu] + di for xi, di in zip(s.x, dev, strict=True)})
        f.values[s.var] = sigma**2
    if o.eps_placement == "inside":
        f.values[s.eps] = f.gen[S] ** 2 - sigma**2
    else:  # σ + ε = S, or σ + √ε = S (√ε read as one subexpression)
        place_eps(f, s.eps, f.gen[S] - sigma, o.eps_placement)
    return f


def _prove(
    d: Derivation,
    variance: str,
    steps: Sequence[Step],
    results: Sequence[Step],
    closed: Sequence[Step],
    gdx: Sequence[sp.Symbol],
    gdgamma: Sequence[sp.Symbol],
    gdbeta: Sequence[sp.Symbol],
) -> tuple[dict[str, bool], dict[str, str], list[Step], dict[str, Any]]:
    s, m, o = d.symbols, d.m, d.options
    f = _frame(d, [*s.dy, *s.gammas, *gdx, *gdgamma, *gdbeta])
    for st in (*d.forward, *d.backward, *steps):  # the chain rule done in the ring
        if st.lhs not in (*s.y, s.mu, s.var):  # the statistics are the frame's symbols
            f.values[st.lhs] = f(st.rhs)
    chain = {st.lhs: f.values[st.lhs] for st in results}
    verified, methods = {}, {}
    if closed:
        root = "x̂'s denominator D"
        where = (
            "once √σ²_run and x̂'s denominator D are positive symbols"
            if o.mode == "eval"
            else f"once x_i = μ + d_i with Σd_i = 0 and σ and {root} are positive symbols"
            if s.layer.centred
            else "once ν and x̂'s denominator D are positive symbols"
        )
        cf = copy.copy(f)  # the closed form's own steps, converted in a ring of their own
        cf.values, cf.memo = dict(f.values), {}
        for st in closed:
            cf.values[st.lhs] = cf(st.rhs)
        verified["closed_form_2"] = all(cf.values[r.lhs] == chain[r.lhs] for r in results)
        methods["closed_form_2"] = (
            "for each result, the closed form minus the chain rule's double backward is the "
            f"zero polynomial {where}"
        )
    # The Hessian of <dy, y> in x: gx = H·gdx when gdgamma = gdbeta = 0.
    R = f.ring
    pos = [R.gens.index(f.gen[v]) for v in gdx]
    others = [R.gens.index(f.gen[v]) for v in (*gdgamma, *gdbeta)]
    gx = [chain[st.lhs] for st in results[:m]]

    def by_gdx(p: Any) -> list[dict[tuple[int, ...], Any]]:
        """The coefficient of each gdx_j in p (the terms without gdgamma, gdbeta), one pass."""
        out: list[dict[tuple[int, ...], Any]] = [{} for _ in gdx]
        for monom, co in p.items():
            hits = [j for j, g in enumerate(pos) if monom[g]]
            if len(hits) == 1 and monom[pos[hits[0]]] == 1 and not any(monom[g] for g in others):
                g = pos[hits[0]]
                out[hits[0]][monom[:g] + (0,) + monom[g + 1 :]] = co
        return out

    H = [by_gdx(p) for p in gx]  # H[i][j]: the coefficient of gdx_j in gx_i
    claims: dict[str, Any] = {}

    def claim(step: Step, holds: Any, method: str) -> Step:
        """Prove the statement as displayed (and keep the proof, for the tamper tests)."""

        def proof(st: Step) -> bool:
            try:
                return bool(holds(st))
            except (ProofError, TypeError):
                return False

        claims[step.rule] = proof
        verified[step.rule] = proof(step)
        methods[step.rule] = method
        return step

    def symmetric(st: Step) -> bool:
        factor = st.rhs / HESSIAN_JI  # H_ij = factor·H_ji, as displayed
        if not factor.is_Rational:
            return False
        q = R.domain.convert(factor)
        return all(
            H[i][j] == {k: q * v for k, v in H[j][i].items() if q * v}
            for i in range(m)
            for j in range(i + 1, m)
        )

    if o.mode == "train":
        identities = [
            claim(
                Step(
                    HESSIAN_IJ,
                    HESSIAN_JI,
                    "hessian_symmetric",
                    note="H is the Hessian of Σᵢ ∂ℓ/∂yᵢ·yᵢ in x, ∂ℓ/∂y held fixed: with "
                    + ("ḡ_γ = ḡ_β = 0" if o.layer.beta else "ḡ_γ = 0")
                    + ", ∂ℓ₂/∂x = H·ḡ_x, the Hessian-vector product",
                ),
                symmetric,
                "the coefficient of ḡ_{x_j} in ∂ℓ₂/∂x_i equals that of ḡ_{x_i} in ∂ℓ₂/∂x_j "
                "times the right-hand side's factor (1), as polynomials",
            )
        ]
    else:  # the running statistics are constants: y is affine in x, its Hessian 0

        def vanishes(st: Step) -> bool:
            if not st.rhs.is_Rational:
                return False
            q = R.domain.convert(st.rhs)
            one = {(0,) * R.ngens: q} if q else {}
            return all(H[i][j] == one for i in range(m) for j in range(m))

        identities = [
            claim(
                Step(
                    HESSIAN_IJ,
                    sp.Integer(0),
                    "hessian_zero",
                    note="H is the Hessian of Σᵢ ∂ℓ/∂yᵢ·yᵢ in x: in eval mode the statistics "
                    "are constants, y is affine in x, and ∂ℓ₂/∂x has no ḡ_x term",
                ),
                vanishes,
                "the coefficient of every ḡ_{x_j} in every ∂ℓ₂/∂x_i equals the right-hand side, "
                "as polynomials",
            )
        ]
    if s.layer.centred and o.mode == "train":  # eval mode's ℓ₂ moves with x: no such sums
        identities.append(
            claim(
                Step(
                    sp.Add(*[st.lhs for st in results[:m]]),
                    sp.Integer(0),
                    "sum_gx",
                    note="ℓ₂ is unchanged when every xᵢ shifts by the same c",
                ),
                lambda st: sum(gx, R.zero) == f(st.rhs),
                "Σ_i ∂ℓ₂/∂x_i minus the right-hand side is the zero polynomial",
            )
        )
        if s.shared and gdbeta:
            total = sum((chain[st.lhs] for st in results[m : 2 * m]), R.zero)
            identities.append(
                claim(
                    Step(
                        sp.Add(*[st.lhs for st in results[m : 2 * m]]),
                        m * gdbeta[0],
                        "sum_gdy",
                        note="γ and β shared by the group: the γ·P(ḡ_x) part sums to 0",
                    ),
                    lambda st: total == f(st.rhs),
                    "Σ_i ḡ_{y_i} minus the right-hand side is the zero polynomial",
                )
            )
    return verified, methods, identities, claims
