"""The closed forms of forward mode and of its compositions with reverse mode, any layer.

Notation (docs/forward_mode.md): D is x̂'s denominator, c = 1 for a centred layer (0 for RMS
norm), k = 1/m (1/(m − 1) for the unbiased variance), r = D/σ with ε outside the root (1
inside), and P_r(v)_i = v_i − c·mean(v) − k·r·x̂_i·Σ_j v_j·x̂_j, a symmetric projection.
Tangents are named ``dot`` + the input's name (ẋ_i, γ̇, β̇), the second direction ``del``
(δx_i, δγ, δβ; ``deldot``: the tangent of the tangent, δẋ_i), cotangents of ẏ ``bardoty``.

- **JVP**: μ̇ = mean(ẋ), Ḋ = k·r·Σ_j x̂_j·ẋ_j, x̂̇_i = (ẋ_i − μ̇ − x̂_i·Ḋ)/D = P_r(ẋ)_i/D,
  ẏ_i = γ_i·x̂̇_i + γ̇_i·x̂_i + β̇_i (:func:`jvp_closed_form`);
- **forward over forward**: with δḋ_i = δẋ_i − mean(δẋ) and B = k·Σ_j ḋ_j·δd_j,
  δḊ = r·(B − Ḋ·δD)/D + k·r·Σ_j x̂_j·δẋ_j, δx̂̇_i = (δḋ_i − x̂̇_i·δD − δx̂_i·Ḋ − x̂_i·δḊ)/D,
  δẏ_i = γ_i·δx̂̇_i + δγ_i·x̂̇_i + γ̇_i·δx̂_i + δγ̇_i·x̂_i + δβ̇_i (:func:`ff_closed_form`):
  the second derivative along ẋ and δx plus the JVP along δẋ;
- **forward over reverse** (the Hessian-vector product T[ȳ; ·, v] along v = (ẋ, γ̇, β̇)): with
  g = γ·ȳ, h = γ̇·ȳ, S_g = Σ g_j·x̂_j and q = Σ g_j·ḋ_j, the tangent of ∂ℓ/∂x_i is
  P_r(h)_i/D − Ḋ·P_r(g)_i/D² − (k·r/D²)·(S_g·ḋ_i + q·x̂_i − (1 + r)·S_g·Ḋ·x̂_i), of ∂ℓ/∂γ_p
  Σ_{i∈p} ȳ_i·x̂̇_i, and of ∂ℓ/∂β 0 (:func:`hvp_closed_form`);
- **reverse over forward**: (T[w; ·, ẋ], Jᵀw), the two forms above at ȳ = w
  (:func:`rf_closed_form`).

In eval mode the statistics are constants: μ̇ = Ḋ = 0, x̂̇_i = ẋ_i/D, and the second-order
forms keep only the γ–x cross terms. Each form is a list of Steps, proved equal to the walks
of :mod:`bnsym.core.forward` in :mod:`bnsym.proofs.modes`. SymPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from bnsym.core.graph import Step, Symbols, added, denominator, normalizer

__all__ = [
    "Facts",
    "Tangents",
    "facts",
    "ff_closed_form",
    "hvp_closed_form",
    "jvp_closed_form",
    "rf_closed_form",
    "tangents",
    "vjp_closed_form",
]

Names = tuple[sp.Symbol, ...]


@dataclass(frozen=True)
class Tangents:
    """Tangents (or cotangents) of a layer's inputs: ``x`` (m), ``gamma`` and ``beta`` (K each;
    none without affine, no β for a layer without one)."""

    x: Names
    gamma: Names
    beta: Names

    @property
    def all(self) -> Names:
        return (*self.x, *self.gamma, *self.beta)


def tangents(s: Symbols, affine: bool, prefix: str) -> Tangents:
    """``prefix`` + each input's name: ``dotx1``.., ``dotgamma``.., ``dotbeta``.."""

    def like(vs: Sequence[sp.Symbol]) -> Names:
        return tuple(sp.Symbol(prefix + v.name, real=True) for v in vs)

    if not affine:
        return Tangents(like(s.x), (), ())
    return Tangents(like(s.x), like(s.gammas), like(s.betas) if s.layer.beta else ())


def inputs(s: Symbols, affine: bool) -> Names:
    """The layer's inputs, what forward mode pushes tangents of: x, γ, β (as far as present;
    eval mode's running statistics are constants)."""
    return tangents(s, affine, "").all


@dataclass(frozen=True)
class Facts:
    """What the closed forms read of a variant: ``c`` (1 centred, 0 not), ``k``, ``D`` (x̂'s
    denominator), ``r`` (1, or the symbol r of the step ``r_steps`` outside the root), ``train``,
    and per element ``gamma`` (γ_k(i), 1 without affine) and its index ``idx``."""

    c: int
    k: sp.Rational
    D: sp.Expr
    r: sp.Expr
    r_steps: tuple[Step, ...]
    train: bool
    gamma: tuple[sp.Expr, ...]
    idx: tuple[int, ...]


def facts(s: Symbols, variance: str, placement: str, affine: bool, mode: str) -> Facts:
    decl, m = s.layer, s.m
    train = mode == "train"
    var = s.var if train else s.running_var
    D = denominator(var, s.eps, placement)
    r: sp.Expr = sp.Integer(1)
    r_steps: tuple[Step, ...] = ()
    if train and placement != "inside":  # D = σ + e: ∂D/∂x_i = k·r·x̂_i with r = D/σ
        sigma, e = sp.sqrt(s.var), added(s.eps, placement)
        r = sp.Symbol("r", positive=True)
        r_steps = (Step(r, (sigma + e) / sigma, "(σ + ε)/σ" if e == s.eps else "(σ + √ε)/σ"),)
    gamma = tuple(s.gamma_of(i) if affine else sp.Integer(1) for i in range(m))
    return Facts(
        c=1 if decl.centred else 0,
        k=normalizer(m, variance) if decl.centred else sp.Rational(1, m),
        D=D,
        r=r,
        r_steps=r_steps,
        train=train,
        gamma=gamma,
        idx=s.param_index,
    )


def _of(t: Tangents, idx: Sequence[int], which: str) -> list[sp.Expr]:
    """Element i's tangent of γ (or β): t.gamma[idx[i]], or 0 where there is none."""
    vs = getattr(t, which)
    return [vs[j] if vs else sp.Integer(0) for j in idx]


class _Steps:
    """A list of steps under construction; a sum of one term is that term (no step)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def define(self, name: str, e: sp.Expr, rule: str = "") -> sp.Expr:
        """``name`` = ``e`` as a step (once: a name defined already is read back)."""
        if e.is_Atom:
            return e
        sym = sp.Symbol(name, real=True)
        if all(st.lhs != sym for st in self.steps):
            self.steps.append(Step(sym, e, rule))
        return sym

    def result(self, sym: sp.Symbol, e: sp.Expr, rule: str = "closed form") -> None:
        self.steps.append(Step(sym, e, rule))


def _mean(out: _Steps, name: str, vs: Sequence[sp.Expr], f: Facts) -> sp.Expr:
    """mean(v) as a step (0 for a layer that is not centred, and in eval mode)."""
    if not (f.c and f.train):
        return sp.Integer(0)
    return out.define(name, sp.Mul(sp.Add(*vs), sp.Rational(1, len(vs)), evaluate=False), "mean")


def _first(
    out: _Steps, s: Symbols, f: Facts, t: Tangents, prefix: str, x_hat: Sequence[sp.Expr]
) -> tuple[sp.Expr, sp.Expr, list[sp.Expr], list[sp.Expr]]:
    """μ̇, Ḋ, ḋ_i and x̂̇_i along the tangent ``t``, as steps named ``prefix`` + mu, D, xhat_i."""
    m = s.m
    shown = {"dot": "ẋ", "del": "δx"}.get(prefix, prefix + "x")  # the tangent, as the notes name it
    mu_dot = _mean(out, prefix + (s.mu.name if s.layer.centred else "mu"), t.x, f)
    d_dot = [tx - mu_dot for tx in t.x]
    if f.train:
        kr = f.k * f.r
        D_dot = out.define(
            prefix + "D",
            kr * sp.Add(*[a * b for a, b in zip(x_hat, t.x, strict=True)]),
            f"k·r·Σ x̂·{shown}",
        )
        xh_dot = [
            out.define(
                prefix + s.x_hat[i].name, (d_dot[i] - x_hat[i] * D_dot) / f.D, f"P_r({shown})/D"
            )
            for i in range(m)
        ]
    else:
        D_dot = sp.Integer(0)
        xh_dot = [
            out.define(prefix + s.x_hat[i].name, t.x[i] / f.D, f"{shown}/D") for i in range(m)
        ]
    return mu_dot, D_dot, d_dot, xh_dot


def jvp_closed_form(
    s: Symbols, variance: str, placement: str, affine: bool, mode: str, dot: Tangents
) -> tuple[Step, ...]:
    """ẏ_i along the tangents ``dot`` (module docstring): μ̇, (r,) Ḋ, x̂̇_i, then ẏ_i."""
    f = facts(s, variance, placement, affine, mode)
    out = _Steps()
    out.steps += f.r_steps
    x_hat = list(s.x_hat)
    _, _, _, xh_dot = _first(out, s, f, dot, "dot", x_hat)
    g_dot, b_dot = _of(dot, f.idx, "gamma"), _of(dot, f.idx, "beta")
    for i in range(s.m):
        rhs = f.gamma[i] * xh_dot[i] + g_dot[i] * x_hat[i] + b_dot[i]
        out.result(sp.Symbol("dot" + s.y[i].name, real=True), rhs)
    return tuple(out.steps)


def ff_closed_form(
    s: Symbols,
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    dot: Tangents,
    delta: Tangents,
    deldot: Tangents,
) -> tuple[Step, ...]:
    """δẏ_i, the tangent along ``delta`` (with ``deldot`` the tangents of ``dot``) of ẏ_i
    along ``dot`` (module docstring)."""
    f = facts(s, variance, placement, affine, mode)
    out = _Steps()
    out.steps += f.r_steps
    x_hat = list(s.x_hat)
    _, D_dot, d_dot, xh_dot = _first(out, s, f, dot, "dot", x_hat)
    _, D_del, d_del, xh_del = _first(out, s, f, delta, "del", x_hat)
    m = s.m
    if f.train:
        mu_dd = _mean(out, "deldot" + (s.mu.name if s.layer.centred else "mu"), deldot.x, f)
        kr = f.k * f.r
        # B = k·Σ ḋ_j·δd_j, written k·(Σ ẋ_j·δx_j − m·μ̇·δμ) (Σ ḋ_j = 0): m products, not m²
        mu_dot, mu_del = (t.x[0] - dd[0] for t, dd in ((dot, d_dot), (delta, d_del)))
        cross = sp.Add(*[a * b for a, b in zip(dot.x, delta.x, strict=True)])
        B = out.define("B", f.k * (cross - f.c * m * mu_dot * mu_del), "k·Σ ḋ·δd")
        S_dd = sp.Add(*[a * b for a, b in zip(x_hat, deldot.x, strict=True)])
        D_dd = out.define(
            "deldotD", f.r * (B - D_dot * D_del) / f.D + kr * S_dd, "∂²D[ẋ, δx] + ∂D[δẋ]"
        )
        xh_dd = [
            out.define(
                "deldot" + s.x_hat[i].name,
                (deldot.x[i] - mu_dd - xh_dot[i] * D_del - xh_del[i] * D_dot - x_hat[i] * D_dd)
                / f.D,
                "x̂·D = x − μ, differentiated twice"
                if s.layer.centred
                else "x̂·D = x, differentiated twice",
            )
            for i in range(m)
        ]
    else:
        xh_dd = [
            out.define("deldot" + s.x_hat[i].name, deldot.x[i] / f.D, "δẋ/D") for i in range(m)
        ]
    g_dot, g_del, g_dd = (_of(t, f.idx, "gamma") for t in (dot, delta, deldot))
    b_dd = _of(deldot, f.idx, "beta")
    for i in range(m):
        rhs = (
            f.gamma[i] * xh_dd[i]
            + g_del[i] * xh_dot[i]
            + g_dot[i] * xh_del[i]
            + g_dd[i] * x_hat[i]
            + b_dd[i]
        )
        out.result(sp.Symbol("deldot" + s.y[i].name, real=True), rhs)
    return tuple(out.steps)


def _members(s: Symbols) -> list[list[int]]:
    """The elements of each γ_k (one for layer and RMS norm, the group for batch norm)."""
    K = len(s.gammas)
    return [[i for i in range(s.m) if s.param_index[i] == k] for k in range(K)]


def _projection(
    out: _Steps, s: Symbols, f: Facts, v: Sequence[sp.Expr], name: str
) -> list[sp.Expr]:
    """P_r(v)_i (train mode; v itself in eval mode), with Σ v and Σ v·x̂ as steps."""
    if not f.train:
        return list(v)
    total = out.define(name, sp.Add(*v)) if f.c else sp.Integer(0)
    sx = out.define(f"{name}_xhat", sp.Add(*[a * b for a, b in zip(v, s.x_hat, strict=True)]))
    m = s.m
    return [v[i] - f.c * total / m - f.k * f.r * s.x_hat[i] * sx for i in range(m)]


def vjp_closed_form(
    s: Symbols,
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    ybar: Sequence[sp.Symbol],
    names: Tangents,
    tag: str = "",
) -> tuple[Step, ...]:
    """The VJP at the cotangent ``ybar``: x̄_i = P_r(γ·ȳ)_i/D, γ̄_p = Σ_{i∈p} ȳ_i·x̂_i,
    β̄_p = Σ_{i∈p} ȳ_i, as steps whose results are named ``names`` (the sums' names begin
    with ``tag``)."""
    f = facts(s, variance, placement, affine, mode)
    out = _Steps()
    out.steps += f.r_steps
    g = [f.gamma[i] * ybar[i] for i in range(s.m)]
    Pg = _projection(out, s, f, g, f"{tag}sum_g")
    for i in range(s.m):
        out.result(names.x[i], Pg[i] / f.D)
    for k, mem in enumerate(_members(s) if names.gamma else []):
        out.result(names.gamma[k], sp.Add(*[ybar[i] * s.x_hat[i] for i in mem]))
    for k, mem in enumerate(_members(s) if names.beta else []):
        out.result(names.beta[k], sp.Add(*[ybar[i] for i in mem]))
    return tuple(out.steps)


def hvp_closed_form(
    s: Symbols,
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    ybar: Sequence[sp.Symbol],
    dot: Tangents,
    names: Tangents,
    tag: str = "",
) -> tuple[Step, ...]:
    """T[ȳ; ·, v] along v = ``dot`` at the cotangent ``ybar`` (module docstring), its results
    named ``names`` (the x and γ parts; the β part is 0 and has no step; the sums' names
    begin with ``tag``)."""
    f = facts(s, variance, placement, affine, mode)
    out = _Steps()
    out.steps += f.r_steps
    m = s.m
    x_hat = list(s.x_hat)
    _, D_dot, d_dot, xh_dot = _first(out, s, f, dot, "dot", x_hat)
    g_dot = _of(dot, f.idx, "gamma")
    h = [g_dot[i] * ybar[i] for i in range(m)]
    if f.train:
        g = [f.gamma[i] * ybar[i] for i in range(m)]
        Ph = _projection(out, s, f, h, f"{tag}sum_h") if any(e != 0 for e in h) else [0] * m
        Pg = _projection(out, s, f, g, f"{tag}sum_g")
        S_g = out.define(
            f"{tag}sum_g_xhat", sp.Add(*[a * b for a, b in zip(g, x_hat, strict=True)])
        )
        kr = f.k * f.r
        # q = Σ g_j·ḋ_j, written Σ g_j·ẋ_j − μ̇·Σ g_j: m products, not m²
        mu_dot = dot.x[0] - d_dot[0]
        gx = sp.Add(*[a * b for a, b in zip(g, dot.x, strict=True)])
        q = out.define(f"{tag}q", gx - mu_dot * sp.Add(*g) if f.c else gx, "Σ g·ḋ")
        coef = out.define(
            f"{tag}coef_xhat", kr * (q - (1 + f.r) * S_g * D_dot) / f.D**2, "the x̂ coefficient"
        )
        for i in range(m):
            rhs = (Ph[i] - D_dot * Pg[i] / f.D) / f.D - kr * S_g * d_dot[i] / f.D**2
            out.result(names.x[i], rhs - coef * x_hat[i])
    else:
        for i in range(m):
            out.result(names.x[i], h[i] / f.D)
    for k, mem in enumerate(_members(s) if names.gamma else []):
        out.result(names.gamma[k], sp.Add(*[ybar[i] * xh_dot[i] for i in mem]))
    return tuple(out.steps)


def rf_closed_form(
    s: Symbols,
    variance: str,
    placement: str,
    affine: bool,
    mode: str,
    w: Sequence[sp.Symbol],
    dot: Tangents,
    bar: Tangents,
    bardot: Tangents,
) -> tuple[Step, ...]:
    """The VJP at ``w`` of the JVP along ``dot``: (T[w; ·, ẋ], Jᵀw), results named ``bar``
    (x̄, γ̄; β̄ = 0 has no step) and ``bardot`` (the adjoints of ẋ, γ̇, β̇)."""
    variant = (variance, placement, affine, mode)
    first = hvp_closed_form(s, *variant, w, dot, bar, "w_")
    second = vjp_closed_form(s, *variant, w, bardot, "w_")
    seen = {st.lhs for st in first}
    return (*first, *(st for st in second if st.lhs not in seen))
