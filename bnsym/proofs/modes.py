"""Forward mode and its compositions with reverse mode: derived by the walks, proved exactly.

:func:`derive_modes` takes a first-order derivation and walks its graph with the engine of
:mod:`bnsym.core.forward` (which knows no layer):

- ``f`` (the JVP): the tangents ẋ, γ̇, β̇ pushed forward through the forward graph, μ̇, σ̇², x̂̇_i,
  ẏ_i;
- at order 2, ``ff`` (forward over forward: the forward graph and its tangent steps pushed
  forward along a second direction δx, δγ, δβ, with δẋ, δγ̇, δβ̇ the tangents of the first);
  and with reverse mode too, ``fr`` (forward over reverse: the backward graph pushed forward,
  the Hessian-vector product) and ``rf`` (reverse over forward: the forward-mode graph walked
  back from cotangents of ẏ); ``rr``, the double backward, is :mod:`bnsym.proofs.higher`'s;
- at order 3, ``fff``: the second-order graph pushed forward along a third direction Δ.

Each composition's closed form (:mod:`bnsym.proofs.forward`) is proved equal to its walk as
Laurent polynomials in the frame of the order-2 proofs (:func:`bnsym.proofs.higher._frame`),
and so are the statements that tie them together: the JVP is the transpose of the VJP
(Σ ẏ_i·ȳ_i = Σ ẋ_i·x̄_i + Σ γ̇·γ̄ + Σ β̇·β̄), and the four compositions of order 2 are
contractions of one second-derivative tensor T[w; u, v], symmetric in u and v:
⟨w, T[·; u, v]⟩ = ⟨T[w; ·, v], u⟩ = ⟨T[w; ·, u], v⟩, rf = (T[w; ·, u], Jᵀw) and
rr = (T[ȳ; a, ·], J a).

>>> from bnsym import derive
>>> md = derive_modes(derive(3, layer="layernorm"), ("fwd", "rev"), order=2)
>>> [c.word for c in md.compositions], all(md.verified.values())
(['f', 'ff', 'fr', 'rf'], True)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.core.cutoffs import GENERAL_PROOF_MIN_M
from bnsym.core.forward import push_forward, word_name
from bnsym.core.general import GeneralForward
from bnsym.core.graph import Step
from bnsym.core.higher import differentiate
from bnsym.core.options import DerivationError
from bnsym.errors import option
from bnsym.family.words import own_words
from bnsym.limits import THIRD_FORWARD_MAX_M as _THIRD_FORWARD_MAX_M
from bnsym.proofs.forward import (
    Tangents,
    ff_closed_form,
    hvp_closed_form,
    jvp_closed_form,
    rf_closed_form,
    tangents,
)
from bnsym.proofs.general import derive_general_forward
from bnsym.proofs.higher import HIGHER_MAX_M, HigherDerivation, _frame, derive_higher
from bnsym.proofs.ring import Laurent

if TYPE_CHECKING:  # pragma: no cover - the derivation is above the proofs
    from bnsym.derivation import Derivation

__all__ = [
    "MODES",
    "MODES_MAX_M",
    "THIRD_FORWARD_MAX_M",
    "Composition",
    "ModesDerivation",
    "derive_modes",
]

#: The modes of differentiation the command line takes.
MODES = ("fwd", "rev")
#: The largest m at which order 2 (every composition) is derived and proved: like the double
#: backward, 2-3 s per variant at m = 16 (the proofs grow as m⁴).
MODES_MAX_M = HIGHER_MAX_M
#: The largest m at which order 3 along the forward chain is derived and proved (its ring has
#: eight tangents of every input).
THIRD_FORWARD_MAX_M = _THIRD_FORWARD_MAX_M  # bnsym.limits holds the bound, proved up to it here


@dataclass(frozen=True)
class Composition:
    """One composition of the walks (``word``, outer first: ``"fr"`` = forward over reverse).

    ``seeds``: the tangents or cotangents it adds, by group; ``steps``: the walk's own steps
    (after the graphs it walks), ending with ``results``; ``closed_form``: the results in x̂,
    D and a few sums (proved equal to ``results``), empty where none is written."""

    word: str
    seeds: tuple[tuple[sp.Symbol, ...], ...]
    steps: tuple[Step, ...]
    results: tuple[Step, ...]
    closed_form: tuple[Step, ...] = ()

    @property
    def name(self) -> str:
        """In words, outer first: "jvp of the vjp"."""
        return word_name(self.word)


@dataclass(frozen=True)
class ModesDerivation:
    """Forward mode (and its compositions with reverse mode) of one derivation. Immutable.

    ``modes`` (``"fwd"``, ``"rev"``) and ``order`` say what was derived: the compositions of
    the modes up to ``order``, as :func:`derive_modes` lists them. ``dot``, ``delta``,
    ``deldot`` (:class:`~bnsym.proofs.forward.Tangents`): the first direction ẋ, γ̇, β̇, the
    second δx, δγ, δβ and the tangents of the first, δẋ, δγ̇, δβ̇. ``higher``: the double
    backward (and third order) where ``"rev"`` is among the modes at order 2 or 3.
    ``identities``, ``verified``, ``proof_methods`` as for order 1.
    """

    derivation: Derivation
    modes: tuple[str, ...]
    order: int
    dot: Tangents
    delta: Tangents | None
    deldot: Tangents | None
    compositions: tuple[Composition, ...]
    identities: tuple[Step, ...]
    verified: Mapping[str, bool]
    proof_methods: Mapping[str, str]
    higher: HigherDerivation | None = None
    general: GeneralForward | None = None

    def composition(self, word: str) -> Composition | None:
        return next((c for c in self.compositions if c.word == word), None)


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """``modes`` as a tuple of the known words, in their order; DerivationError otherwise."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise DerivationError(
            f"modes must be one or both of {', '.join(MODES)}; got "
            f"{', '.join(map(repr, bad)) or 'none'}."
        )
    return tuple(m for m in MODES if m in modes)


def derive_modes(d: Derivation, modes: Sequence[str] = ("fwd",), order: int = 1) -> ModesDerivation:
    """The compositions of ``modes`` up to ``order`` for the derivation ``d``, proved.

    Args:
        d: a first-order derivation, any layer and variant.
        modes: ``("fwd",)``, ``("rev",)`` or ``("fwd", "rev")``.
        order: 1 (the JVP), 2 (``ff``; with reverse mode ``fr``, ``rf`` and the double
            backward) or 3 (``fff``, and with reverse mode the third order of
            :mod:`bnsym.proofs.higher`).

    Raises:
        DerivationError: an unknown mode, another order, or m above MODES_MAX_M (order 2) or
            THIRD_FORWARD_MAX_M (order 3 with forward mode).
    """
    modes = check_modes(modes)
    if order not in (1, 2, 3):
        raise DerivationError(f"order must be 1, 2 or 3 here; got {order!r}.")
    o = d.options
    limit = MODES_MAX_M if order == 2 or "fwd" not in modes else THIRD_FORWARD_MAX_M
    if order > 1 and o.m > limit:
        raise DerivationError(
            f"{option('modes', ','.join(modes))} {option('order', order)} is derived and "
            f"proved up to m = {limit} (the proofs grow as m⁴ and faster); got m = {o.m}: give "
            f"{option('m')} ≤ {limit}."
        )
    key = (o.m, o.layer, o.channels, o.variance, o.eps_placement, o.affine, o.mode, modes, order)
    if key not in _CACHE:
        _CACHE[key] = _derive(d, modes, order)
    base = _CACHE[key]
    if base.derivation is not d:
        higher = base.higher
        if higher is not None:
            higher = derive_higher(d, order)
        base = ModesDerivation(**{**base.__dict__, "derivation": d, "higher": higher})
    return base


_CACHE: dict[tuple[Any, ...], ModesDerivation] = {}


# --- the walks -------------------------------------------------------------------------------


def _map(a: Tangents, b: Tangents) -> dict[sp.Symbol, sp.Symbol]:
    return dict(zip(a.all, b.all, strict=True))


def _results(steps: Sequence[Step], names: Sequence[sp.Symbol]) -> tuple[Step, ...]:
    """The steps that define ``names``, in that order; a name no step defines is 0 (a zero
    tangent has no step)."""
    by = {st.lhs: st for st in steps}
    return tuple(by.get(n, Step(n, sp.Integer(0), "identically zero")) for n in names)


def _derive(d: Derivation, modes: tuple[str, ...], order: int) -> ModesDerivation:
    s, o = d.symbols, d.options
    variant = (o.variance, o.eps_placement, o.affine, o.mode)
    theta = tangents(s, o.affine, "")
    dot = tangents(s, o.affine, "dot")
    delta = tangents(s, o.affine, "del")
    deldot = tangents(s, o.affine, "deldot")
    gens = [*dot.all]
    if order >= 2:
        gens += [*delta.all, *deldot.all]
    comps: list[Composition] = []
    higher = derive_higher(d, order) if "rev" in modes and order > 1 else None
    if "fwd" not in modes:  # the reverse chain alone is derive_higher's
        return ModesDerivation(
            d, modes, order, dot, None, None, (), (), MappingProxyType({}), MappingProxyType({}),
            higher,
        )  # fmt: skip
    # f: the JVP
    f_steps, _ = push_forward(d.forward, _map(theta, dot), "dot")
    doty = [sp.Symbol("dot" + y.name, real=True) for y in s.y]
    f_closed = jvp_closed_form(s, *variant, dot)
    f = Composition("f", (dot.all,), tuple(f_steps), _results(f_steps, doty), f_closed)
    comps.append(f)
    dif = {
        v: sp.Symbol("dif" + v.name, real=True) for g in (theta, dot, delta, deldot) for v in g.all
    }
    # ∂ℓ/∂y: for the transpose (proved here up to GENERAL_PROOF_MIN_M) and reverse mode
    dy = o.m <= GENERAL_PROOF_MIN_M or ("rev" in modes and order > 1)
    proofs = _Proofs(d, [*gens, *(dif.values() if order == 3 else ())], dy)
    general = derive_general_forward(o.layer, *variant, transpose=o.m > GENERAL_PROOF_MIN_M)
    proofs.jvp(f, dot, general if o.m > GENERAL_PROOF_MIN_M else None)
    if order >= 2:
        # ff: the forward graph and its tangent steps pushed forward along δ (δẋ: ẋ's tangent)
        tan = {**_map(theta, delta), **_map(dot, deldot)}
        ff_steps, _ = push_forward([*d.forward, *f_steps], tan, "del")
        results = _results(ff_steps, [sp.Symbol("del" + y.name, real=True) for y in doty])
        ff_closed = ff_closed_form(s, *variant, dot, delta, deldot)
        ff = Composition("ff", (delta.all, deldot.all), tuple(ff_steps), results, ff_closed)
        comps.append(ff)
        proofs.ff(ff, dot, delta, deldot)
    if order >= 2 and "rev" in modes:
        # fr: the backward graph pushed forward (the Hessian-vector product)
        fr_steps, _ = push_forward([*d.forward, *d.backward], _map(theta, dot), "dot")
        hvp_names = tangents(s, o.affine, "dotd")
        results = _results(fr_steps, hvp_names.all)
        fr_closed = hvp_closed_form(s, *variant, s.dy, dot, hvp_names)
        fr = Composition("fr", (dot.all,), tuple(fr_steps), results, fr_closed)
        comps.append(fr)
        # rf: the forward-mode graph walked back from cotangents w of ẏ
        w = tuple(sp.Symbol("bar" + y.name, real=True) for y in doty)
        rf_steps = differentiate(
            [*d.forward, *f_steps], dict(zip(doty, w, strict=True)), [*theta.all, *dot.all], "bar"
        )
        bar, bardot = tangents(s, o.affine, "bar"), tangents(s, o.affine, "bardot")
        rf_closed = rf_closed_form(s, *variant, w, dot, bar, bardot)
        rf = Composition(
            "rf", (w,), tuple(rf_steps), _results(rf_steps, [*bar.all, *bardot.all]), rf_closed
        )
        comps.append(rf)
        proofs.tensor(f, ff, fr, rf, higher, dot, delta, deldot, w)
    if order == 3:
        ff = comps[1]
        fff_steps, _ = push_forward([*d.forward, *f.steps, *ff.steps], dif, "dif")
        names = [sp.Symbol("dif" + st.lhs.name, real=True) for st in ff.results]
        # the same walk over the closed forms of orders 1 and 2 (their sums are nodes too)
        closed_graph = _unique([*d.forward, *f.closed_form, *ff.closed_form])
        fff_closed, _ = push_forward(closed_graph, dif, "dif")
        seeds = tuple(tuple(dif[v] for v in group.all) for group in (theta, dot, delta, deldot))
        fff = Composition(
            "fff", seeds, tuple(fff_steps), _results(fff_steps, names), tuple(fff_closed)
        )
        comps.append(fff)
        proofs.fff(f, ff, fff, dot, delta, deldot, dif)
    return ModesDerivation(
        derivation=d,
        modes=modes,
        order=order,
        dot=dot,
        delta=delta if order >= 2 else None,
        deldot=deldot if order >= 2 else None,
        compositions=tuple(comps),
        identities=tuple(proofs.identities),
        verified=MappingProxyType(proofs.verified),
        proof_methods=MappingProxyType(proofs.methods),
        higher=higher,
        general=general,
    )


def _unique(steps: Sequence[Step]) -> list[Step]:
    """``steps`` without repeated definitions (the closed forms of orders 1 and 2 both define
    μ̇, Ḋ and x̂̇_i, the same way)."""
    seen: set[sp.Basic] = set()
    out = []
    for st in steps:
        if st.lhs not in seen:
            seen.add(st.lhs)
            out.append(st)
    return out


# --- the proofs --------------------------------------------------------------------------------


class _Proofs:
    """The record of the proofs of one ModesDerivation, and the one ring they compute in.

    Every walk is read into one ring (the frame of the order-2 proofs, :func:`_frame`, with the
    given generators and ∂ℓ/∂y, γ): its forward and backward graph, then each composition's
    steps, each name once. A statement about another direction or a zero tangent is read off
    the polynomials already computed, by renaming generators (:func:`_permuted`) or dropping
    the terms that hold one (:func:`_dropped`), not by reading the walk again; each closed form
    is read into a copy of the ring (:func:`fork`), whose names may repeat the walk's.
    """

    def __init__(self, d: Derivation, gens: Sequence[sp.Symbol], dy: bool = True) -> None:
        self.d = d
        s = d.symbols
        self.verified: dict[str, bool] = {}
        self.methods: dict[str, str] = {}
        self.identities: list[Step] = []
        # the fewer generators, the faster: every monomial is a tuple of their exponents
        self.gens = [*s.gammas, *(s.dy if dy else ()), *gens]
        self._ring: Laurent | None = None
        self.backward_read = False

    @property
    def ring(self) -> Laurent:
        """The ring, with the forward graph read into it (made when first needed)."""
        if self._ring is None:
            s = self.d.symbols
            self._ring = _frame(self.d, self.gens)
            read(self._ring, self.d.forward, skip=(*s.y, s.mu, s.var))
        return self._ring

    def backward(self) -> None:
        """The chain rule's backward read into the ring (once; O(m³) terms in all)."""
        if not self.backward_read:
            read(self.ring, self.d.backward)
            self.backward_read = True

    def record(self, name: str, ok: bool, method: str, statement: Step | None = None) -> None:
        """The verdict of the proof ``name``, its method in the layer's own words (no β, no
        μ where the layer has none: :func:`bnsym.family.words.own_words`)."""
        o = self.d.options
        self.verified[name] = bool(ok)
        self.methods[name] = own_words(
            method, centred=o.layer.centred, beta=o.layer.beta and o.affine
        )
        if statement is not None:
            self.identities.append(Step(statement.lhs, statement.rhs, name, note=statement.note))

    def index(self, symbols: Sequence[sp.Symbol]) -> list[int]:
        """The positions of these generators in the ring's monomials."""
        gens = self.ring.ring.gens
        return [gens.index(self.ring.gen[v]) for v in symbols]

    def closed(self, closed_form: Sequence[Step], results: Sequence[Step]) -> list[Any]:
        """The results as the closed form gives them, read in a copy of the ring."""
        g = fork(self.ring)
        read(g, closed_form)
        return [value(g, st) for st in results]

    # --- order 1 ----------------------------------------------------------------------------

    def jvp(self, f: Composition, dot: Tangents, general: GeneralForward | None) -> None:
        d, s = self.d, self.d.symbols
        # the pairs of the parameters the layer has (RMS norm has no β; without affine, none)
        names = ["x"] + (["gamma"] if d.options.affine else [])
        names += ["beta"] if d.options.affine and d.options.layer.beta else []
        statement = Step(
            sp.Symbol("<doty, dy>"),
            sp.Symbol(" + ".join(f"<dot{n}, d{n}>" for n in names)),
            note="forward mode is the transpose of reverse mode",
        )
        shown = {"x": "Σ ẋ_i·∂ℓ/∂x_i", "gamma": "Σ γ̇·∂ℓ/∂γ", "beta": "Σ β̇·∂ℓ/∂β"}
        pairs = " + ".join(shown[n] for n in names)
        if general is not None:  # above GENERAL_PROOF_MIN_M: proved for every m, not redone
            for name in ("jvp_closed_form", "jvp_transpose"):
                self.record(
                    name,
                    general.verified[name],
                    f"{general.methods[name]} (not redone for m = {d.m})",
                    statement if name == "jvp_transpose" else None,
                )
            return
        ring = self.ring
        read(ring, f.steps)
        walked = [value(ring, st) for st in f.results]
        self.record(
            "jvp_closed_form",
            self.closed(f.closed_form, f.results) == walked,
            "for each i, the closed form of ẏ_i minus the forward walk's ẏ_i is the zero "
            "polynomial in the frame of the order-2 proofs",
        )
        self.backward()
        grads = tangents(s, d.options.affine, "d")
        lhs = _pair(ring, walked, [ring(dy) for dy in s.dy])
        rhs = _pair(ring, [ring(t) for t in dot.all], [ring.values[g] for g in grads.all])
        self.record(
            "jvp_transpose",
            lhs == rhs,
            f"Σ_i ẏ_i·∂ℓ/∂y_i (the forward walk) minus {pairs} (the chain rule's backward) is "
            "the zero polynomial in the tangents and ∂ℓ/∂y: the JVP is the transpose of the VJP",
            statement,
        )

    # --- order 2 ----------------------------------------------------------------------------

    def ff(self, ff: Composition, dot: Tangents, delta: Tangents, deldot: Tangents) -> None:
        d, ring = self.d, self.ring
        read(ring, ff.steps)
        walked = [value(ring, st) for st in ff.results]
        self.record(
            "ff_closed_form",
            self.closed(ff.closed_form, ff.results) == walked,
            "for each i, the closed form of δẏ_i minus the walk of the forward graph and its "
            "tangent steps along δ is the zero polynomial",
        )
        # T[·; u, v] = T[·; v, u]: with δẋ = 0, swapping the two directions changes nothing
        pure = [_dropped(ring, p, self.index(deldot.all)) for p in walked]
        swap = self.swap(dot.all, delta.all)
        self.record(
            "ff_symmetric",
            [_permuted(ring, p, swap) for p in pure] == pure,
            "with δẋ = δγ̇ = δβ̇ = 0, δẏ_i is unchanged as a polynomial when the two directions "
            "(ẋ, γ̇, β̇) and (δx, δγ, δβ) are swapped",
            Step(
                sp.Symbol("T[.; u, v]"),
                sp.Symbol("T[.; v, u]"),
                note=f"the second derivative of y along two directions ({d.m} values)",
            ),
        )

    def swap(self, a: Sequence[sp.Symbol], b: Sequence[sp.Symbol]) -> dict[int, int]:
        """The generator positions of ``a`` and ``b`` exchanged."""
        ia, ib = self.index(a), self.index(b)
        return {**dict(zip(ia, ib, strict=True)), **dict(zip(ib, ia, strict=True))}

    def tensor(
        self,
        f: Composition,
        ff: Composition,
        fr: Composition,
        rf: Composition,
        higher: HigherDerivation | None,
        dot: Tangents,
        delta: Tangents,
        deldot: Tangents,
        w: Sequence[sp.Symbol],
    ) -> None:
        """The four compositions of order 2 as contractions of one symmetric tensor."""
        d, s, ring = self.d, self.d.symbols, self.ring
        self.backward()
        # fr along ẋ at ȳ = ∂ℓ/∂y, and its closed form
        read(ring, fr.steps)
        hvp = [value(ring, st) for st in fr.results]
        self.record(
            "hvp_closed_form",
            self.closed(fr.closed_form, fr.results) == hvp,
            "for each result, the closed form of the Hessian-vector product minus the walk of "
            "the backward graph along ẋ, γ̇, β̇ is the zero polynomial",
        )
        swap = self.swap(dot.all, delta.all)
        hvp_del = [_permuted(ring, p, swap) for p in hvp]  # the same walk along δ
        u = [ring(t) for t in dot.all]
        v = [ring(t) for t in delta.all]
        ybar = [ring(dy) for dy in s.dy]
        T_uv = [_dropped(ring, value(ring, st), self.index(deldot.all)) for st in ff.results]
        self.record(
            "tensor_ff_fr",
            _pair(ring, ybar, T_uv) == _pair(ring, hvp_del, u),
            "⟨w, T[·; u, v]⟩ (the jvp of the jvp with δẋ = 0, contracted with w = ∂ℓ/∂y) minus "
            "⟨T[w; ·, v], u⟩ (the jvp of the vjp along v, contracted with u) is the zero "
            "polynomial",
            Step(
                sp.Symbol("<w, T[.; u, v]>"),
                sp.Symbol("<T[w; ., v], u>"),
                note="the jvp of the jvp and the jvp of the vjp contract one tensor",
            ),
        )
        self.record(
            "tensor_symmetric",
            _pair(ring, hvp_del, u) == _pair(ring, hvp, v),
            "⟨T[w; ·, v], u⟩ minus ⟨T[w; ·, u], v⟩ (the jvp of the vjp along each direction, "
            "contracted with the other) is the zero polynomial",
            Step(
                sp.Symbol("<T[w; ., v], u>"),
                sp.Symbol("<T[w; ., u], v>"),
                note="T is symmetric in its two directions",
            ),
        )
        # rf at w = ∂ℓ/∂y: (T[w; ·, u], Jᵀw)
        ring.values.update({wi: ring(dy) for wi, dy in zip(w, s.dy, strict=True)})
        read(ring, rf.steps)
        n = len(dot.all)
        bar = [value(ring, st) for st in rf.results]
        grads = tangents(s, d.options.affine, "d")
        vjp = [ring.values[g] for g in grads.all]
        self.record(
            "rf_closed_form",
            self.closed(rf.closed_form, rf.results) == bar,
            "for each result, the closed form of the vjp of the jvp minus the reverse walk of "
            "the forward-mode graph is the zero polynomial",
        )
        self.record(
            "tensor_rf",
            bar[:n] == hvp and bar[n:] == vjp,
            "the vjp of the jvp at w = ∂ℓ/∂y: its adjoints of x, γ, β minus the jvp of the vjp "
            "along ẋ, and its adjoints of ẋ, γ̇, β̇ minus the backward's ∂ℓ/∂x, ∂ℓ/∂γ, ∂ℓ/∂β, "
            "are zero polynomials",
            Step(
                sp.Symbol("vjp(jvp)[w]"),
                sp.Symbol("(T[w; ., u], J^T w)"),
                note="the vjp of the jvp contracts the same tensor",
            ),
        )
        if higher is None:
            return
        # rr: the double backward's cotangents (gdx, gdgamma, gdbeta) read as the direction ẋ
        a = zip((*higher.gdx, *higher.gdgamma, *higher.gdbeta), dot.all, strict=True)
        ring.values.update({g: ring(t) for g, t in a})
        read(ring, higher.steps)
        m = d.m
        gx = [ring(st.lhs) for st in higher.results[:m]]
        gdy = [ring(st.lhs) for st in higher.results[m : 2 * m]]
        ggamma = [ring(st.lhs) for st in higher.results[2 * m :]]
        ok = gx == hvp[:m] and ggamma == hvp[m : m + len(ggamma)]
        ok = ok and gdy == [value(ring, st) for st in f.results]
        self.record(
            "tensor_rr",
            ok,
            "the double backward with cotangents a = (gdx, gdgamma, gdbeta): its gx and "
            "ggamma minus the jvp of the vjp along a, and its gdy minus the jvp along a, are "
            "zero polynomials",
            Step(
                sp.Symbol("vjp(vjp)[a]"),
                sp.Symbol("(T[dy; a, .], J a)"),
                note="the double backward contracts the same tensor",
            ),
        )

    # --- order 3 ----------------------------------------------------------------------------

    def fff(
        self,
        f: Composition,
        ff: Composition,
        fff: Composition,
        dot: Tangents,
        delta: Tangents,
        deldot: Tangents,
        dif: Mapping[sp.Symbol, sp.Symbol],
    ) -> None:
        d, ring = self.d, self.ring
        read(ring, fff.steps)
        walked = [value(ring, st) for st in fff.results]
        closed = _unique([*f.closed_form, *ff.closed_form, *fff.closed_form])
        self.record(
            "fff_closed_form",
            self.closed(closed, fff.results) == walked,
            "the walk along Δ over the closed forms of orders 1 and 2 (their sums are nodes) "
            "and over the graph's own tangent steps give, for each Δδẏ_i, the same polynomial",
        )
        # ∂³y[u, v, w] is symmetric: with every tangent of a tangent 0, permuting the three
        # directions (u = ẋ.., v = δx.., w = Δx..) changes nothing
        third = [t for v, t in dif.items() if not v.name.startswith(("dot", "del"))]
        zero = [*deldot.all, *(t for v, t in dif.items() if v.name.startswith(("dot", "del")))]
        pure = [_dropped(ring, p, self.index(zero)) for p in walked]
        swaps = (self.swap(dot.all, delta.all), self.swap(delta.all, third))
        self.record(
            "fff_symmetric",
            all([_permuted(ring, p, sw) for p in pure] == pure for sw in swaps),
            "with every tangent of a tangent 0, Δδẏ_i is unchanged as a polynomial when two of "
            "the three directions are exchanged (the two exchanges generate every permutation)",
            Step(
                sp.Symbol("d3y[u, v, w]"),
                sp.Symbol("d3y[v, u, w] = d3y[u, w, v]"),
                note=f"the third derivative of y is symmetric ({d.m} values)",
            ),
        )


# --- the ring's helpers -------------------------------------------------------------------------


def read(f: Laurent, steps: Sequence[Step], skip: Sequence[sp.Basic] = ()) -> None:
    """Each step's right-hand side as a polynomial of the ring ``f``, in order."""
    for st in steps:
        if st.lhs not in skip:
            f.values[st.lhs] = f(st.rhs)


def fork(f: Laurent, values: Mapping[sp.Symbol, Any] | None = None) -> Laurent:
    """A copy of the ring ``f`` with its own values (and these, read in ``f``) and memo."""
    g = copy.copy(f)
    g.values = dict(f.values)
    g.overrides = dict(f.overrides)
    g.memo = {}
    for k, v in (values or {}).items():
        g.values[k] = v if not isinstance(v, (int, sp.Basic)) else f(sp.sympify(v))
    return g


def _gens(f: Laurent, a: Tangents, b: Tangents) -> dict[sp.Symbol, Any]:
    """a's symbols read as b's generators."""
    return {x: f.gen[y] for x, y in zip(a.all, b.all, strict=True)}


def value(f: Laurent, st: Step) -> Any:
    """A result's polynomial: its step's, or (a result that no step defines) its own 0."""
    return f.values[st.lhs] if st.lhs in f.values else f(st.rhs)


def _dropped(f: Laurent, p: Any, positions: Sequence[int]) -> Any:
    """``p`` with the generators at ``positions`` set to 0: its terms that hold none."""
    out = f.ring.zero.copy()
    out.update((mon, c) for mon, c in p.items() if not any(mon[i] for i in positions))
    return out


def _permuted(f: Laurent, p: Any, moves: Mapping[int, int]) -> Any:
    """``p`` with the generator at each position i renamed to the one at ``moves[i]``."""
    out = f.ring.zero.copy()
    for mon, c in p.items():
        new = list(mon)
        for i, j in moves.items():
            new[j] = mon[i]
        out[tuple(new)] = c
    return out


def _pair(f: Laurent, a: Sequence[Any], b: Sequence[Any]) -> Any:
    """Σ a_i·b_i in the ring."""
    return sum((x * y for x, y in zip(a, b, strict=True)), f.ring.zero)
