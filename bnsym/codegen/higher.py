"""NumPy code for the double backward: ``generate_higher(d)`` adds ``double_backward``.

The module is the first-order module of :func:`bnsym.codegen.module.generate` (same layout, same
argument checks) with one more function,
``double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta, eps=…) -> (gx, gdout, ggamma)``
(RMS norm, which has no β: ``double_backward(gdx, gdgamma, dout, x, gamma, eps=…)``), and its
kernel ``_double_backward``, printed by ``sympy.lambdify`` from the proved closed form of
:mod:`bnsym.proofs.higher`: the forward graph's lines (``mu``, ``xmu_i``, ``sigma2``, ``std``,
``inv_std``, ``xhat_i``), the sums of dy over each γ's values (``sum_dy``, ``sum_dy_xhat``,
``sum_dy_gdx``) and of gdx over the group, a few coefficients per group, and one line of
four terms per result: O(m) row operations, as a person would write it. That kernel serves
batch norm, whose m values per feature are rows of x. The grouped layouts (layer, instance,
group and RMS norm), whose m values per group are strided, get the same closed form written
over whole arrays instead (:func:`_grouped_body`): views of x, dout and gdx as (N, P, K, C),
the sums as reductions over the last axes, each result one broadcast expression — no
element-major copies of the inputs and no stacking of the results.

>>> import numpy as np
>>> from bnsym.derivation import derive
>>> mod = generate_higher(derive(3))
>>> x, dout, g = np.eye(3, 2), np.ones((3, 2)), np.ones(2)
>>> gx, gdout, ggamma = mod.double_backward(np.zeros((3, 2)), g, g, dout, x, g, g)
>>> gx.shape, gdout.shape, ggamma.shape
((3, 2), (3, 2), (2,))
"""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from bnsym.codegen import module as codegen
from bnsym.codegen.kernels import Kernel, kernels
from bnsym.codegen.module import DEFAULT_EPS, GeneratedModule
from bnsym.codegen.printer import kernel_source, wrap
from bnsym.core.graph import normalizer
from bnsym.derivation import Derivation
from bnsym.limits import float_eps
from bnsym.proofs.higher import closed_form, cotangents

__all__ = ["GeneratedModule2", "generate_higher"]


@dataclass(frozen=True)
class GeneratedModule2(GeneratedModule):
    """A generated module with ``double_backward`` besides ``forward`` and ``backward``:
    ``double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta, eps) -> (gx, gdout,
    ggamma)``, gdx, dout and x of x's layout, gdgamma, gdbeta, gamma and beta of γ's; gx
    and gdout of x's shape, ggamma of γ's. (No gdbeta, beta for RMS norm.)"""

    double_backward: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]


def generate_higher(d: Derivation, *, command: str | None = None) -> GeneratedModule2:
    """The module of :func:`bnsym.codegen.module.generate` with ``double_backward`` added, for
    every variant (from its proved closed form of order 2)."""
    float_eps(d.options.eps)
    if command is None:
        command = codegen._python_call(d)
    source = _source(d, command)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    filename = f"<bnsym-generated order 2 {codegen._variant_text(d)} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "bnsym_generated"}
    exec(compile(source, filename, "exec"), namespace)
    return GeneratedModule2(
        d, source, namespace["forward"], namespace["backward"], namespace["double_backward"]
    )


def _kernel(d: Derivation) -> Kernel:
    """The double backward's kernel: the forward kernel's graph lines, then the proved closed
    form's steps (:attr:`bnsym.proofs.higher.HigherDerivation.closed_form`), with the denominator of
    x̂ (√(σ² + ε), in eval mode that of the running variance) written ``std`` and its inverse
    ``inv_std`` as in the first-order kernels."""
    s, o = d.symbols, d.options
    closed = closed_form(d)
    forward, _ = kernels(d)
    eps = forward.args[-1]
    std, inv_std = sp.Symbol("std", positive=True), sp.Symbol("inv_std", positive=True)
    std_expr = dict(forward.definitions)[std]  # the forward kernel's own denominator

    def in_kernel_terms(e: sp.Expr) -> sp.Expr:
        if o.eps_placement != "inside" and o.mode == "train":  # sigma_B by name, as in
            e = e.subs(sp.sqrt(s.var), s.sigma)  # the forward kernel
        e = e.xreplace({s.eps: eps}).subs(std_expr, std)
        return e.xreplace({1 / std: inv_std, std**-2: inv_std**2})

    defs = (
        *forward.definitions,
        *((st.lhs, in_kernel_terms(st.rhs)) for st in closed if st.rule != "closed form"),
    )
    outputs = tuple(in_kernel_terms(st.rhs) for st in closed if st.rule == "closed form")
    stats = (s.running_mean, s.running_var) if o.mode == "eval" else ()
    gammas = s.gammas if o.affine else ()
    cot = (v for group in cotangents(s, o.affine) for v in group)
    args = (*cot, *s.dy, *s.x, *gammas, *stats, eps)
    if any(sym.name == "std" for e in outputs for sym in e.free_symbols):  # pragma: no cover
        raise RuntimeError("the closed form kept a power of std that codegen does not name")
    return Kernel("_double_backward", args, outputs, defs)


def _source(d: Derivation, command: str) -> str:
    base = codegen._module_source(d, command)
    s, o = d.symbols, d.options
    decl = s.layer
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    cot = (["gdgamma", "gdbeta"] if decl.beta else ["gdgamma"]) if o.affine else []
    params = (["gamma", "beta"] if decl.beta else ["gamma"]) if o.affine else []
    stats = ["running_mean", "running_var"] if o.mode == "eval" else []
    sig = ", ".join(["gdx", *cot, "dout", "x", *params, *stats, f"eps={eps!r}"])
    grads = "(" + ", ".join(["dx", *("d" + p for p in params)]) + ")" if params else "dx"
    seeds = " + ".join(f"sum(g{g}*{g})" for g in ["dx", *("d" + p for p in params)])
    results = "(gx, gdout, ggamma)" if o.affine else "(gx, gdout)"
    wrt = "x, dout and gamma" if o.affine else "x and dout"
    doc = [
        wrap(f"def double_backward({sig}):"),
        f'    """The double backward: the gradients of {seeds}',
        f"    with respect to {wrt}, where",
        f"    {grads} = backward(dout, x" + "".join(", " + p for p in (*params, *stats)) + ").",
        "",
        f"    Returns {results}: gx and gdout of x's shape"
        + (", ggamma of gamma's." if o.affine else ".")
        + (" beta is" if decl.beta and o.affine else '"""'),
        *(
            ['    checked but not read: the backward does not depend on it."""']
            if decl.beta and o.affine
            else []
        ),
    ]
    if decl.grouping == "columns":
        call = ", ".join(["*gdx", *cot, "*dout", "*x", *params[:1], *stats, "eps"])
        finite = "running_var" if stats else "x"
        body = [
            "    x = _matrix('x', x)",
            "    dout = _matrix('dout', dout)",
            "    gdx = _matrix('gdx', gdx)",
            *(["    D = x.shape[1]"] if params or stats else []),
            *[f"    {p} = _vector({p!r}, {p}, D)" for p in (*params, *stats, *cot)],
            *(["    _nonnegative('running_var', running_var)"] if stats else []),
            "    eps = _eps(eps)",
            codegen._ERRSTATE,
            wrap(f"        grads = _double_backward({call})"),
            "    gx = numpy.stack(grads[:M])"
            if o.affine or o.mode == "train"
            else "    gx = numpy.zeros_like(x)  # dx = dout/std does not depend on x in eval mode",
            f"    _finite_result('gx', gx, {finite}, eps)",
            "    return (gx, numpy.stack(grads[M : 2 * M])"
            + (", grads[2 * M])" if o.affine else ")"),
        ]
    else:
        body = _grouped_body(d, params, cot)
    section = [
        "",
        "",
        "# --- the double backward (bnsym codegen --order 2) " + "-" * 44,
        "# The closed form proved in bnsym.proofs.higher (k = "
        + f"{normalizer(d.m, d.options.variance) if decl.centred else sp.Rational(1, d.m)}):",
        "# sums of dy, dy*xhat, dy*gdx over the values of each gamma_j, of gdx and gdx*xhat over",
        "# the group; q = sum(gdx_i*P(gamma*dy)_i) with P(v) = v - mean(v) - k*xhat*sum(v*xhat)",
        "# (no mean for RMS norm); then gx_i = coef_dy_j*dy_i + coef_gdx*gdx_i + coef_xhat*xhat_i",
        "# + shift, gdout_i = gamma_inv_std_j*gdx_i + coef_xhat_gdy_j*xhat_i + shift_gdy_j, and",
        "# ggamma_j = inv_std*(sum_dy_gdx_j - mean(gdx)*sum_dy_j - k*sum_gdx_xhat*sum_dy_xhat_j).",
        "",
        "",
        *doc,
        *body,
        *(["", "", kernel_source(_kernel(d))] if decl.grouping == "columns" else []),
    ]
    return base.rstrip() + "\n" + "\n".join(section).rstrip() + "\n"


def _grouped_body(d: Derivation, params: list[str], cot: list[str]) -> list[str]:
    """The double backward of a grouped layout (layer, instance, group and RMS norm) as
    whole-array NumPy over views of x, dout and gdx as (N, P, K, C) — the group's M values
    as K parameter values (γ_j) times C positions — with no element-major copies: the
    closed form's sums are reductions over the last axes and each result line is one
    broadcast expression (the per-element kernel copies x, dout and gdx element-major and
    stacks gx and gdout back, as much time as the arithmetic on these layouts)."""
    decl = d.symbols.layer
    affine = d.options.affine
    inside = d.options.eps_placement == "inside"
    k_, two = ("k", "2") if inside else ("kr", "(r + 1)")  # see the comment on r below
    # what sigma is added to with eps outside the root: eps, or sqrt(eps) (sqrt-outside)
    e = "numpy.sqrt(eps)" if d.options.eps_placement == "sqrt-outside" else "eps"
    # without gamma and beta: gamma = 1 and gdgamma = gdbeta = 0, one "value of gamma" (K = 1)
    k = normalizer(d.m, d.options.variance) if decl.centred else sp.Rational(1, d.m)
    centred = decl.centred
    xmu = [
        "        mu = xg.mean(axis=(-2, -1), keepdims=True)",
        "        xmu = xg - mu",
    ] if centred else ["        xmu = xg"]  # fmt: skip
    sums_c = [
        "        sum_gamma_dy = (gamma * sum_dy).sum(axis=-1)",
        "        sum_gdgamma_dy = (gdgamma * sum_dy).sum(axis=-1)",
        f"        q = sum_gamma_dy_gdx - sum_gdx * sum_gamma_dy / M - {k_} * sum_gdx_xhat * S_g",
    ] if centred else [
        f"        q = sum_gamma_dy_gdx - {k_} * sum_gdx_xhat * S_g",
    ]  # fmt: skip
    shift = [
        f"        shift = -inv_std * sum_gdgamma_dy / M + {k_} * inv_var * (",
        "            S_g * sum_gdx / M + sum_gdx_xhat * sum_gamma_dy / M",
        "        )",
        "        gx += shift[..., None, None]",
    ] if centred else []  # fmt: skip
    shift_gdy = "gdbeta" if decl.beta and affine else "0.0"
    if centred:
        shift_gdy += " - gamma_inv_std * sum_gdx[..., None] / M"
    mean_dy = " - sum_gdx[..., None] * sum_dy / M" if centred else ""
    ggamma = [
        f"        ggamma = sum_dy_gdx{mean_dy}",
        f"        ggamma -= ({k_} * sum_gdx_xhat)[..., None] * sum_dy_xhat",
        "        ggamma = (inv_std[..., None] * ggamma).sum(axis=0)",
    ] if affine else []  # fmt: skip
    return [
        "    x = _array('x', x)",
        "    dout = _array('dout', dout)",
        "    gdx = _array('gdx', gdx)",
        "    for name, a in (('dout', dout), ('gdx', gdx)):",
        "        if a.shape != x.shape:",
        "            raise ValueError(",
        "                f'{name} must have the shape of x {x.shape}; got {a.shape}'",
        "            )",
        "    groups = _groups('x', x)",
        "    N, P = groups.shape[:2]",
        *[f"    {p} = _param({p!r}, {p}, P)" for p in (*params, *cot)],
        "    eps = _eps(eps)",
        *([] if affine else ["    gamma, gdgamma = 1.0, 0.0  # no gamma and beta"]),
        f"    k = {float(k)!r}  # {k}",
        "    # views (N, P, K, C): the K values of gamma in a group, C positions each; no copies",
        "    xg = groups.reshape(N, P, " + ("K, M // K)" if affine else "1, M)"),
        "    dy = _groups('dout', dout).reshape(xg.shape)",
        "    a = _groups('gdx', gdx).reshape(xg.shape)",
        codegen._ERRSTATE.replace("by feature", "by group"),
        *xmu,
        "        var = numpy.einsum('npkc,npkc->np', xmu, xmu) * k",
        *(
            ["        inv_std = 1 / numpy.sqrt(var + eps)"]
            if inside
            else [
                "        sigma = numpy.sqrt(var)",
                f"        inv_std = 1 / (sigma + {e})",
                f"        # eps outside the root: d(sigma + {e})/dx_i = k*r*xhat_i with",
                f"        # r = (sigma + {e})/sigma: k*r stands where k did, and r varies with x",
                f"        r = (sigma + {e}) / sigma",
                "        kr = k * r",
            ]
        ),
        "        inv_var = inv_std * inv_std",
        "        xhat = xmu * inv_std[..., None, None]",
        "        # sums over the values of each gamma_j (N, P, K) and over the group (N, P)",
        *(["        sum_dy = dy.sum(axis=-1)"] if centred else []),
        "        sum_dy_xhat = numpy.einsum('npkc,npkc->npk', dy, xhat)",
        "        sum_dy_gdx = numpy.einsum('npkc,npkc->npk', dy, a)",
        *(["        sum_gdx = a.sum(axis=(-2, -1))"] if centred else []),
        "        sum_gdx_xhat = numpy.einsum('npkc,npkc->np', a, xhat)",
        "        S_g = (gamma * sum_dy_xhat).sum(axis=-1)",
        "        S_h = (gdgamma * sum_dy_xhat).sum(axis=-1)",
        "        sum_gamma_dy_gdx = (gamma * sum_dy_gdx).sum(axis=-1)",
        *sums_c,
        f"        coef_gdx = -{k_} * inv_var * S_g",
        f"        coef_xhat = -{k_} * inv_std * S_h - {k_} * inv_var * q",
        f"        coef_xhat += {two} * {k_} * {k_} * inv_var * S_g * sum_gdx_xhat",
        "        coef_dy = inv_std[..., None] * gdgamma",
        f"        coef_dy -= ({k_} * inv_var * sum_gdx_xhat)[..., None] * gamma",
        "        gx = coef_dy[..., None] * dy + coef_gdx[..., None, None] * a",
        "        gx += coef_xhat[..., None, None] * xhat",
        *shift,
        "        gamma_inv_std = gamma * inv_std[..., None]",
        f"        coef_xhat_gdy = gdgamma - ({k_} * sum_gdx_xhat)[..., None] * gamma_inv_std",
        "        gdout = gamma_inv_std[..., None] * a + coef_xhat_gdy[..., None] * xhat",
        *(
            [f"        shift_gdy = {shift_gdy}", "        gdout += shift_gdy[..., None]"]
            if shift_gdy != "0.0"
            else []
        ),
        *ggamma,
        "    _finite_result('gx', gx.reshape(groups.shape), groups, eps)",
        "    return (gx.reshape(x.shape), gdout.reshape(x.shape)"
        + (", ggamma.ravel())" if affine else ")"),
    ]
