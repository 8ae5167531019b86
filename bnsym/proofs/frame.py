"""The frame of one derivation: its graph, its chain rule and its words, read into the ring.

Every quantity of a layer's graph becomes a Laurent polynomial (:mod:`bnsym.proofs.ring`) once
the statistics are written in a *frame*:

- train mode, centred layer: x_i = μ + d_i with d_m = −(d_1 + … + d_{m−1}), which is the
  definition of the mean (Σd_i = 0); not centred (RMS norm): the x_i themselves;
- eval mode: the x_i and the running mean are free, the running statistics being constants;
- the variance (or mean square, or running variance) is σ² for a positive symbol σ;
- ε = S² − σ² with S > 0 when ε is inside the root (so √(σ² + ε) = S), and ε = T − σ with
  T > 0 when it is outside (so σ + ε = T); with √ε outside (σ + √ε), √ε = T − σ and
  ε = (T − σ)² (:func:`~bnsym.proofs.ring.place_eps`).

σ stays a free symbol: the graph depends on the variance only through the variance's node, so
no relation between σ and the d_i is needed, except where a proof says so and uses the
variance's definition explicitly. Each element costs O(m) terms, so the proofs cost O(m²).

What differs between layers and modes is data read off the declaration
(:mod:`bnsym.family.layers`): whether the mean is subtracted, which γ_k scales element i
(``Symbols.param_index``), whether there is a β, and the statistics' names (batch norm's
μ_B, σ²_B from its ``stat_suffix``; μ_run, σ²_run in eval mode). :class:`Context` holds all of
it for the proofs of :mod:`bnsym.proofs.prover`, :mod:`bnsym.proofs.identities` and
:mod:`bnsym.proofs.forms`, which start from the derivation's own forward graph and chain-rule
steps: a wrong graph or a wrong step makes the proofs that depend on it fail.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy as sp

from bnsym.core.graph import Step, Symbols, added, denominator, normalizer
from bnsym.proofs.display import SUM_DY, SUM_DY_XHAT, SUM_G, SUM_G_XHAT
from bnsym.proofs.ring import Laurent, Lazy, Proofs, XFrame, place_eps

__all__ = ["Context", "den_text"]

#: x̂'s denominator as the notes write it, from the variance's and its root's names.
_ROOT = {"inside": "√({var} + ε)", "outside": "{root} + ε", "sqrt-outside": "{root} + √ε"}


def den_text(placement: str, var: str, root: str) -> str:
    """x̂'s denominator in words: √(var + ε), root + ε or root + √ε.

    >>> den_text("sqrt-outside", "σ²_B", "σ_B")
    'σ_B + √ε'
    """
    return _ROOT[placement].format(var=var, root=root)


class Context(Proofs):
    """What every proof of one derivation needs: its graph, its chain rule, two frames, and
    the words its notes use; the record of the proofs (:class:`~bnsym.proofs.ring.Proofs`).

    Args:
        s: the layer's symbols for a group of m values (``s.layer`` is its declaration).
        forward, backward: the derivation's forward graph and chain-rule steps.
        variance, placement, affine, mode: the variant (see :func:`bnsym.derive`).
        general: the general form (:class:`bnsym.core.general.General`) whose proofs hold for
            every m and are recorded from it, or None.
        eps_zero: the notes show ε = 0: a statement that needs ε > 0 (the limit at a constant
            group with ε outside the root) is replaced by what holds at ε = 0.

    Attributes read by the proofs: ``mu``, ``var`` (the statistics the graph divides by: the
    group's, or the running ones; ``mu`` is 0 where nothing is subtracted), ``D`` (x̂'s
    denominator), ``e`` (what σ is added to outside the root, ε or √ε), ``k`` (the
    variance's 1/m or 1/(m − 1)), ``r`` ((σ + e)/σ outside the root, else 1), ``gammas``,
    ``betas`` and ``g`` (per element: γ_k(i), β_k(i), γ_k(i)·∂ℓ/∂y_i), ``shared`` (one γ
    scales the whole group, or none), ``scale`` (that γ, else 1), ``sum_g``, ``sum_g_xhat``
    (the closed form's sums: of ∂ℓ/∂y where γ is taken out, else of γ_k(j)·∂ℓ/∂y_j),
    ``frame`` (the gradients' ring: ∂ℓ/∂y, γ), ``yframe`` (the outputs' ring: γ, β and the
    a, c of x → a·x + c), ``x_hat_graph``, ``y_graph`` (the graph's own x̂_i and y_i in x_i
    and the statistics), ``dx_in_frame`` (the chain rule's ∂ℓ/∂x_i as polynomials) and the
    words ``mu_txt``, ``var_txt``, ``den_txt``, ``n_txt``, ``sum_txt``, ``gamma_txt``,
    ``beta_txt`` (γ, γᵢ or γ_c: one for the group, per element or per channel), ``stat``
    (σ, or ν where nothing is subtracted).
    """

    def __init__(
        self,
        s: Symbols,
        forward: Sequence[Step],
        backward: Sequence[Step],
        variance: str,
        placement: str,
        affine: bool,
        mode: str,
        general: Any = None,
        eps_zero: bool = False,
    ) -> None:
        super().__init__(s.m, general)
        self.eps_zero = eps_zero
        decl, m = s.layer, s.m
        self.s, self.forward, self.backward = s, forward, backward
        self.variance, self.placement, self.affine, self.mode = variance, placement, affine, mode
        self.train = mode == "train"
        self.centred = decl.centred
        # One scale for the whole group (one γ, or none): γ is taken out of the closed form.
        self.shared = s.shared or not affine
        if self.train:
            self.mu_symbol, self.var = (s.mu if self.centred else None), s.var
        else:  # eval mode: the running statistics, constants
            self.mu_symbol = s.running_mean if self.centred else None
            self.var = s.running_var
        self.mu = self.mu_symbol if self.mu_symbol is not None else sp.Integer(0)
        self.k = normalizer(m, variance) if self.centred else sp.Rational(1, m)
        self.D = denominator(self.var, s.eps, placement)
        self.e = added(s.eps, placement)
        # r: the extra factor of the x̂x̂ᵀ term when ε is outside the root, (σ + ε)/σ.
        self.r = sp.Integer(1) if placement == "inside" else self.D / sp.sqrt(self.var)
        self.gammas = [s.gamma_of(i) if affine else sp.Integer(1) for i in range(m)]
        self.betas = [s.beta_of(i) if (affine and decl.beta) else sp.Integer(0) for i in range(m)]
        self.scale = s.gamma if (affine and self.shared) else sp.Integer(1)
        self.g = [gi * dyi for gi, dyi in zip(self.gammas, s.dy, strict=True)]
        # The closed form's sums: of ∂ℓ/∂y where γ is taken out, else of γ_k(j)·∂ℓ/∂y_j.
        self.sum_g, self.sum_g_xhat = (SUM_DY, SUM_DY_XHAT) if self.shared else (SUM_G, SUM_G_XHAT)
        self.definition = {n.lhs: n.rhs for n in forward}
        # The graph's own x̂_i and y_i in terms of x_i and the statistics (not retyped here),
        # so that every identity is about the derivation as it stands.
        self.x_hat_graph = [self.definition[xh] for xh in s.x_hat]
        to_x_hat = dict(zip(s.x_hat, self.x_hat_graph, strict=True))
        self.y_graph = [self.definition[yi].xreplace(to_x_hat) for yi in s.y]
        self.chain: dict[sp.Basic, Any] = {st.lhs: st.value for st in backward}
        self.S, self.T = sp.Symbol("S", positive=True), sp.Symbol("T", positive=True)
        self.a, self.c = sp.Symbol("a", positive=True), sp.Symbol("c", real=True)
        self.free = sp.symbols(f"d1:{m}", real=True) if self.train and self.centred else s.x
        # Two frames: one for the gradients (the dy, no β), one for the outputs y (β and the
        # a, c of x -> a·x + c, no dy). The ring's cost grows with its generators, and no
        # gradient holds a β nor any y a dy.
        root = self.S if placement == "inside" else self.T
        self.frame = self._frame([*s.dy, *s.gammas, root, self.sum_g_xhat], to_x_hat)
        self.yframe = self._frame([*s.gammas, *s.betas, root, self.a, self.c], to_x_hat)
        f = self.frame
        for st in backward:  # the chain rule done in the ring, adjoint by adjoint
            if st.lhs not in s.dx:
                f.values[st.lhs] = f(st.rhs)
        dx_rhs = {st.lhs: st.rhs for st in backward}
        self.dx_in_frame = Lazy(lambda i: f(dx_rhs[s.dx[i]]), m)
        #: the closed form as shown, once the prover has written (and proved) it
        self.closed_form: tuple[Step, ...] = ()
        self._words()

    def _frame(self, gens: list[sp.Symbol], to_x_hat: dict[sp.Symbol, sp.Expr]) -> Laurent:
        """A ring over the frame's own generators and ``gens``, with x_i, the variance, ε and
        x̂_i standing for their polynomials."""
        s = self.s
        own = [*self.free, s.sigma] + ([self.mu_symbol] if self.mu_symbol is not None else [])
        f = Laurent([*own, *gens])
        sigma = f.gen[s.sigma]  # the variance's root: σ, ν (RMS norm), or √σ²_run
        if self.train and self.centred:
            d = [f.gen[v] for v in self.free]
            d.append(-sum(d, f.ring.zero))  # Σ d_i = 0 is the definition of the mean
            f.values.update({xi: f.gen[s.mu] + di for xi, di in zip(s.x, d, strict=True)})
        f.values[self.var] = sigma**2
        if self.placement == "inside":
            f.values[s.eps] = f.gen[self.S] ** 2 - sigma**2
        else:
            place_eps(f, s.eps, f.gen[self.T] - sigma, self.placement)
        f.values.update({xh: f(e) for xh, e in to_x_hat.items()})
        return f

    def _words(self) -> None:
        """The statistics' names as the notes write them, from the declaration's data."""
        decl = self.s.layer
        stat = "σ" if self.centred else "ν"
        if self.train:
            suffix = decl.stat_suffix
            self.mu_txt = f"μ{suffix}" if self.centred else "0"
            self.var_txt, root = f"{stat}²{suffix}", f"{stat}{suffix}"
        else:
            self.mu_txt = "μ_run" if self.centred else "0"
            self.var_txt = "σ²_run"
            root = "√σ²_run"
        self.den_txt = den_text(self.placement, self.var_txt, root)
        self.stat = stat
        self.n_txt = str(1 / self.k)  # m, or m − 1 (the unbiased variance)
        index = {"shared": "", "element": "ᵢ", "channel": "_c"}[decl.params]
        self.gamma_txt, self.beta_txt = "γ" + index, "β" + index
        self.sum_txt = "Σ_j ∂ℓ/∂y_j·x̂_j" if self.shared else "Σ_j γ_j·∂ℓ/∂y_j·x̂_j"

    def frame_of_x(self, var_x: sp.Expr | None, base: Laurent | None = None) -> Any:
        """The frame ``base`` (the gradients' by default) for expressions in x_1..x_m alone,
        with the variance written as ``var_x`` (None in eval mode: the running statistics are
        constants already)."""
        base = self.frame if base is None else base
        if var_x is not None and self.placement == "inside":
            # ε = S² − σ²(x): then σ²(x) + ε is S² in the ring, whatever the form of σ²(x)
            return XFrame(base, var_x, self.s.eps, self.S)
        xf = copy.copy(base)  # the same ring, its own substitutions
        xf.values, xf.overrides, xf.memo = dict(base.values), dict(base.overrides), {}
        if var_x is not None:  # σ²(x) is the base of √σ²(x): read it as σ², then σ + ε = T
            xf.overrides[var_x] = xf.gen[self.s.sigma] ** 2
        return xf
