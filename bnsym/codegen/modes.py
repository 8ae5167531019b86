"""NumPy code for forward mode: ``generate_modes(d, modes, order)`` adds ``jvp`` (and at order 2
``jvp2`` and ``hvp``) to the generated module.

- ``jvp(x, gamma, beta, tx, tgamma, tbeta, eps=…) -> (y, ty)``: the forward pass and its
  tangent along (tx, tgamma, tbeta) (a layer without β: no beta, tbeta; eval mode adds
  ``running_mean, running_var`` after the parameters; without affine ``jvp(x, tx, eps=…)``);
- ``jvp2(x, gamma, beta, tx, tgamma, tbeta, sx, sgamma, sbeta, eps=…) -> (y, ty, sy, tsy)``:
  the jvp of the jvp: y, its tangents along t and s, and the second derivative of y along t and
  s (the tangents of the tangents taken 0; the jvp of the jvp with them is tsy plus their jvp);
- ``hvp(x, gamma, beta, dout, tx, tgamma, tbeta, eps=…) -> (hx, hgamma, hbeta)``: the
  Hessian-vector product, the jvp of the backward at dout along (tx, tgamma, tbeta) (hbeta is
  0: the backward's dbeta does not depend on x, γ, β).

Each is the closed form proved in :mod:`bnsym.proofs.modes` (:mod:`bnsym.proofs.forward`),
written over whole arrays for every layout as the double backward is
(:mod:`bnsym.codegen.higher`): x and the tangents viewed as (N, P, K, C) through the module's
own ``_groups``, the group's statistics and sums as reductions over the last axes, each result
one broadcast expression. With ``"rev"`` among the modes at order 2 the module has
``double_backward`` too. NumPy only; complex input is carried through (the complex-step check).

>>> import numpy as np
>>> from bnsym.derivation import derive
>>> mod = generate_modes(derive(3, layer="layernorm"), ("fwd",), 1)
>>> x, t = np.arange(6.0).reshape(2, 3) ** 2, np.ones((2, 3))
>>> y, ty = mod.jvp(x, np.ones(3), np.zeros(3), t, np.zeros(3), np.zeros(3))
>>> float(abs(ty).max()) < 1e-12   # moving every value of a row alike changes nothing
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnsym.codegen import higher as _higher
from bnsym.codegen.module import (
    DEFAULT_EPS,
    GeneratedModule,
    arguments,
    check_lines,
    compile_source,
    finite_args,
    layout_of,
    module_source,
)
from bnsym.codegen.naming import python_call, variant_text
from bnsym.codegen.printer import wrap
from bnsym.codegen.runtime import errstate
from bnsym.core.graph import normalizer
from bnsym.derivation import Derivation
from bnsym.limits import float_eps

__all__ = ["GeneratedModes", "generate_modes"]


@dataclass(frozen=True)
class GeneratedModes(GeneratedModule):
    """A generated module with forward mode: ``jvp`` (and at order 2 ``jvp2``, ``hvp``, and
    with reverse mode ``double_backward``) besides ``forward`` and ``backward``; the module
    docstring says what each takes and returns. Functions a module does not have are None."""

    jvp: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]
    jvp2: Callable[..., Any] | None = field(repr=False, default=None)
    hvp: Callable[..., Any] | None = field(repr=False, default=None)
    double_backward: Callable[..., Any] | None = field(repr=False, default=None)


def generate_modes(
    d: Derivation, modes: Sequence[str] = ("fwd",), order: int = 1, *, command: str | None = None
) -> GeneratedModes:
    """The module of :func:`bnsym.codegen.module.generate` with ``jvp`` (order 1), ``jvp2``
    and ``hvp`` (order 2) and, where ``"rev"`` is among ``modes`` at order 2,
    ``double_backward``: every layer and variant, from the proved closed forms."""
    float_eps(d.options.eps)
    if command is None:
        command = python_call(d)
    rev2 = "rev" in modes and order == 2
    base = _higher._source(d, command) if rev2 else module_source(d, command)
    source = _source(d, base, order)
    ns = compile_source(source, f"modes {','.join(modes)} order {order} {variant_text(d)}")
    return GeneratedModes(
        d,
        source,
        ns["forward"],
        ns["backward"],
        ns["jvp"],
        ns.get("jvp2"),
        ns.get("hvp"),
        ns.get("double_backward"),
    )


# --- the source ---------------------------------------------------------------------------------


def _banner(text: str) -> str:
    return f"# --- {text} ".ljust(97, "-")


def _source(d: Derivation, base: str, order: int) -> str:
    params, stats = arguments(d)
    lines = ["", "", _banner("forward mode (bnsym codegen --modes fwd)"), *_comment(d), "", ""]
    lines += _jvp(d, params, stats)
    if order == 2:
        lines += ["", ""]
        lines += _jvp2(d, params, stats)
        lines += ["", ""]
        lines += _hvp(d, params, stats)
    if "def _from_groups(" not in base:
        lines += ["", "", layout_of(d).from_groups_source()]
    return base.rstrip() + "\n" + "\n".join(lines).rstrip() + "\n"


def _k(d: Derivation) -> sp.Rational:
    decl = d.symbols.layer
    return normalizer(d.m, d.options.variance) if decl.centred else sp.Rational(1, d.m)


def _comment(d: Derivation) -> list[str]:
    o, decl = d.options, d.symbols.layer
    if o.mode == "eval":
        return [
            "# The closed forms proved in bnsym.proofs.modes, in eval mode: the running statistics",
            "# are constants, so xhat's tangent is tx*inv_std, ty = gamma*tx*inv_std + tgamma*xhat",
            "# + tbeta, the second derivative keeps only the gamma-x cross terms, and the",
            "# Hessian-vector product is tgamma*dout*inv_std (x) and sum(dout*tx)*inv_std (gamma).",
        ]
    mean = "v - mean(v) - " if decl.centred else "v - "
    e = {"inside": "", "outside": "; r = (sigma + eps)/sigma", "sqrt-outside": "; r = D/sigma"}
    return [
        f"# The closed forms proved in bnsym.proofs.modes (k = {_k(d)}" + e[o.eps_placement] + "):",
        "# the tangent of the denominator D is D_t = k*r*sum(tx*xhat), that of xhat is",
        f"# P_r(tx)/D with P_r(v) = {mean}k*r*xhat*sum(v*xhat), and ty = gamma*xhat_t",
        "# + tgamma*xhat + tbeta. The coefficient is k*r: 1/m only for the biased variance",
        "# with eps inside the root (r = 1 there).",
    ]


def _signature(d: Derivation, params: list[str], stats: list[str], extra: list[str]) -> str:
    o = d.options
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    return ", ".join(["x", *params, *stats, *extra, f"eps={eps!r}"])


def _tangents(prefix: str, params: list[str]) -> list[str]:
    return [f"{prefix}x", *(prefix + p for p in params)]


def _checks(d: Derivation, params: list[str], stats: list[str], arrays: list[str], ps: list[str]):
    """The arguments checked: x and the arrays of x's shape, the parameters, eps."""
    lines = ["    x = _array('x', x)", "    groups = _groups('x', x)"]
    lines += [f"    {a} = _array({a!r}, {a})" for a in arrays]
    if arrays:
        names = ", ".join(f"({a!r}, {a})" for a in arrays)
        lines += [
            f"    for name, a in ({names},):",
            "        if a.shape != x.shape:",
            "            raise ValueError(",
            "                f'{name} must have the shape of x {x.shape}; got {a.shape}'",
            "            )",
        ]
    lines += check_lines([*params, *ps], stats)
    o = d.options
    lines.append(
        "    # views (N, P, K, C): the K values of gamma in a group, C values each; no copies"
    )
    lines.append(
        "    xg = groups.reshape(groups.shape[:2] + " + ("(K, M // K))" if o.affine else "(1, M))")
    )
    return lines


def _view(name: str, var: str) -> str:
    return f"    {var} = _groups({name!r}, {name}).reshape(xg.shape)"


def _statistics(d: Derivation) -> list[str]:
    """mu, xmu, the variance, inv_std (1/D), and with eps outside the root sigma and r."""
    o, decl = d.options, d.symbols.layer
    if o.mode == "eval":
        centre = "xg - running_mean[:, None, None]" if decl.centred else "xg"
        if o.eps_placement == "inside":
            std = "numpy.sqrt(running_var + eps)"
        else:
            e = "numpy.sqrt(eps)" if o.eps_placement == "sqrt-outside" else "eps"
            std = f"(numpy.sqrt(running_var) + {e})"
        return [
            "        # the running statistics, one per group (P,), constants",
            f"        inv_std = (1 / {std})[None]",
            f"        xhat = ({centre}) * inv_std[..., None, None]",
        ]
    k = _k(d)
    lines = [f"        k = {float(k)!r}  # {k}"]
    if decl.centred:
        lines += ["        mu = xg.mean(axis=(-2, -1), keepdims=True)", "        xmu = xg - mu"]
    else:
        lines += ["        xmu = xg  # not centred: the mean square"]
    lines.append("        var = numpy.einsum('npkc,npkc->np', xmu, xmu) * k")
    if o.eps_placement == "inside":
        lines += [
            "        inv_std = 1 / numpy.sqrt(var + eps)",
            "        r, kr = 1.0, k  # eps inside the root: r = 1",
        ]
    else:
        e = "numpy.sqrt(eps)" if o.eps_placement == "sqrt-outside" else "eps"
        lines += [
            "        sigma = numpy.sqrt(var)",
            f"        inv_std = 1 / (sigma + {e})",
            f"        # eps outside the root: D = sigma + {e}, dD/dx_i = k*r*xhat_i, r = D/sigma",
            f"        r = (sigma + {e}) / sigma",
            "        kr = k * r",
        ]
    lines.append("        xhat = xmu * inv_std[..., None, None]")
    return lines


def _tangent(d: Derivation, u: str, t: str) -> list[str]:
    """xhat's tangent along ``u`` (an (N, P, K, C) array): ``xhat_<t>``, and in train mode
    ``mu_<t>``, ``D_<t>`` and the centred tangent ``d_<t>``."""
    o, decl = d.options, d.symbols.layer
    if o.mode == "eval":
        return [f"        xhat_{t} = {u} * inv_std[..., None, None]"]
    lines = []
    if decl.centred:
        lines += [
            f"        mu_{t} = {u}.mean(axis=(-2, -1), keepdims=True)",
            f"        d_{t} = {u} - mu_{t}",
        ]
    else:
        lines.append(f"        d_{t} = {u}")
    lines += [
        f"        D_{t} = kr * numpy.einsum('npkc,npkc->np', {u}, xhat)",
        f"        xhat_{t} = (d_{t} - xhat * D_{t}[..., None, None]) * inv_std[..., None, None]",
    ]
    return lines


def _finish(d: Derivation, names: list[str]) -> list[str]:
    """Each result of x's shape back in x's layout, checked finite."""
    lines = []
    for n in names:
        lines.append(f"    {n} = {n}.reshape(groups.shape)")
        lines.append(f"    _finite_result({n!r}, {n}, {finite_args(d)})")
    return lines


def _out(names: list[str]) -> str:
    return ", ".join(f"_from_groups({n}, x.shape)" for n in names)


def _jvp(d: Derivation, params: list[str], stats: list[str]) -> list[str]:
    o, decl = d.options, d.symbols.layer
    t = _tangents("t", params)
    sig = _signature(d, params, stats, t)
    affine = o.affine
    y = "gamma[..., None] * xhat" if affine else "xhat"
    ty = "gamma[..., None] * xhat_t + tgamma[..., None] * xhat" if affine else "xhat_t"
    if affine and decl.beta:
        y += " + beta[..., None]"
        ty += " + tbeta[..., None]"
    return [
        wrap(f"def jvp({sig}):"),
        '    """The forward pass and its tangent: (y, ty), ty the derivative of y along '
        + ("(tx, " + ", ".join(t[1:]) + ")" if affine else "tx")
        + ".",
        "",
        "    y and ty have the shape of x"
        + ("; the tangents have the shapes of x and gamma." if affine else ".")
        + '"""',
        *_checks(d, params, stats, ["tx"], t[1:]),
        _view("tx", "u"),
        errstate(layout_of(d)),
        *_statistics(d),
        *_tangent(d, "u", "t"),
        f"        y = {y}",
        f"        ty = {ty}",
        *_finish(d, ["y", "ty"]),
        f"    return {_out(['y', 'ty'])}",
    ]


def _jvp2(d: Derivation, params: list[str], stats: list[str]) -> list[str]:
    o, decl = d.options, d.symbols.layer
    t, s = _tangents("t", params), _tangents("s", params)
    sig = _signature(d, params, stats, [*t, *s])
    affine = o.affine
    g = "gamma[..., None] * " if affine else ""
    shift = (" + tbeta[..., None]", " + sbeta[..., None]") if affine and decl.beta else ("", "")
    ty = f"{g}xhat_t" + (" + tgamma[..., None] * xhat" + shift[0] if affine else "")
    sy = f"{g}xhat_s" + (" + sgamma[..., None] * xhat" + shift[1] if affine else "")
    if o.mode == "eval":
        second = ["        # xhat is affine in x: its second derivative is 0"]
        tsy = (
            "sgamma[..., None] * xhat_t + tgamma[..., None] * xhat_s"
            if affine
            else "numpy.zeros_like(xhat)"
        )
    else:
        second = [
            "        # xhat*D = x - mu differentiated along t and s: B = k*sum(d_t*d_s),",
            "        # D_ts = r*(B - D_t*D_s)/D,",
            "        # xhat_ts = -(xhat_t*D_s + xhat_s*D_t + xhat*D_ts)/D",
            "        B = k * numpy.einsum('npkc,npkc->np', d_t, d_s)",
            "        D_ts = r * (B - D_t * D_s) * inv_std",
            "        xhat_ts = -(",
            "            xhat_t * D_s[..., None, None]",
            "            + xhat_s * D_t[..., None, None]",
            "            + xhat * D_ts[..., None, None]",
            "        ) * inv_std[..., None, None]",
        ]
        tsy = f"{g}xhat_ts" + (
            " + sgamma[..., None] * xhat_t + tgamma[..., None] * xhat_s" if affine else ""
        )
    return [
        wrap(f"def jvp2({sig}):"),
        '    """The jvp of the jvp: (y, ty, sy, tsy), ty and sy the derivatives of y along',
        "    t = (tx"
        + (", " + ", ".join(t[1:]) if affine else "")
        + ") and s = (sx"
        + (", " + ", ".join(s[1:]) if affine else "")
        + "),",
        "    tsy the second derivative of y along t and s.",
        "",
        "    The tangents of the tangents are taken 0: with them (txs, ...), the jvp of the jvp is",
        '    tsy + jvp(x, ..., txs, ...)[1]. Every result has the shape of x."""',
        *_checks(d, params, stats, ["tx", "sx"], [*t[1:], *s[1:]]),
        _view("tx", "u"),
        _view("sx", "v"),
        errstate(layout_of(d)),
        *_statistics(d),
        *_tangent(d, "u", "t"),
        *_tangent(d, "v", "s"),
        *second,
        f"        y = {g}xhat" + (" + beta[..., None]" if affine and decl.beta else ""),
        f"        ty = {ty}",
        f"        sy = {sy}",
        f"        tsy = {tsy}",
        *_finish(d, ["y", "ty", "sy", "tsy"]),
        wrap(f"    return ({_out(['y', 'ty', 'sy', 'tsy'])})"),
    ]


def _hvp(d: Derivation, params: list[str], stats: list[str]) -> list[str]:
    o, decl = d.options, d.symbols.layer
    t = _tangents("t", params)
    sig = _signature(d, params, stats, ["dout", *t])
    affine = o.affine
    results = ["hx", *(f"h{p}" for p in params)]
    returns = "(" + ", ".join(results) + ")" if params else "hx"
    beta_note = ["    (hbeta is 0: dbeta = sum(dout) does not depend on x, gamma, beta.)"]
    doc = [
        wrap(f"def hvp({sig}):"),
        f'    """The Hessian-vector product {returns}:',
        "    the derivative of backward(dout, x"
        + "".join(", " + p for p in (*params, *stats))
        + ") along",
        "    t = (tx" + (", " + ", ".join(t[1:]) if affine else "") + "), dout held fixed.",
        "",
        "    hx has the shape of x"
        + ("; " + " and ".join(f"h{p}" for p in params) + " the shape of gamma." if params else ".")
        + ("" if "beta" in params else '"""'),
        *([beta_note[0] + '"""'] if "beta" in params else []),
    ]
    if o.mode == "eval":
        formula = [
            *_tangent(d, "u", "t"),
            "        # dx = gamma*dout*inv_std is linear in x: gamma's tangent alone moves it",
            "        hx = tgamma[..., None] * dy * inv_std[..., None, None]"
            if affine
            else "        hx = numpy.zeros_like(xg * dy)  # dx = dout*inv_std: x does not move it",
        ]
    else:
        centred = decl.centred
        mean = " - {v}.mean(axis=(-2, -1), keepdims=True)" if centred else ""
        # k*r is a number with eps inside the root, one per group (N, P) outside it
        kr_b = "kr[..., None, None]" if o.eps_placement != "inside" else "kr"
        formula = [
            *_tangent(d, "u", "t"),
            "        # with g = gamma*dout, h = tgamma*dout, P_r(v) = v"
            + (" - mean(v)" if centred else "")
            + " - k*r*xhat*sum(v*xhat):",
            "        # hx = P_r(h)/D - D_t*P_r(g)/D**2 - (k*r/D**2)*(S_g*d_t + q*xhat",
            "        #      - (1 + r)*S_g*D_t*xhat), S_g = sum(g*xhat), q = sum(g*d_t)",
            "        g = gamma[..., None] * dy" if affine else "        g = dy",
            "        S_g = numpy.einsum('npkc,npkc->np', g, xhat)",
            "        Pg = g" + mean.format(v="g") + f" - {kr_b} * xhat * S_g[..., None, None]",
            "        q = numpy.einsum('npkc,npkc->np', g, d_t)",
            "        inv_var = inv_std * inv_std",
            "        coef_xhat = kr * (q - (1 + r) * S_g * D_t) * inv_var",
            "        hx = -(D_t * inv_std)[..., None, None] * Pg",
        ]
        if affine:
            formula += [
                "        h = tgamma[..., None] * dy",
                "        S_h = numpy.einsum('npkc,npkc->np', h, xhat)",
                "        hx += h" + mean.format(v="h") + f" - {kr_b} * xhat * S_h[..., None, None]",
            ]
        formula += [
            "        hx = hx * inv_std[..., None, None]",
            "        hx -= (kr * inv_var * S_g)[..., None, None] * d_t",
            "        hx -= coef_xhat[..., None, None] * xhat",
        ]
    grads = []
    if affine:
        grads.append("        hgamma = numpy.einsum('npkc,npkc->pk', dy, xhat_t).ravel()")
        if decl.beta:
            grads.append("        hbeta = numpy.zeros(beta.size, dtype=hgamma.dtype)")
    return [
        *doc,
        *_checks(d, params, stats, ["dout", "tx"], t[1:]),
        _view("dout", "dy"),
        _view("tx", "u"),
        errstate(layout_of(d)),
        *_statistics(d),
        *formula,
        *grads,
        *_finish(d, ["hx"]),
        "    return " + ", ".join(["_from_groups(hx, x.shape)", *(f"h{p}" for p in params)]),
    ]
