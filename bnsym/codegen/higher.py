"""NumPy code for the double backward: ``generate_higher(d)`` adds ``double_backward``.

The module is the first-order module of :func:`bnsym.codegen.module.generate` (same layout, same
argument checks) with one more function,
``double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta, eps=…) -> (gx, gdout, ggamma)``
(a layer without β: ``double_backward(gdx, gdgamma, dout, x, gamma, eps=…)``; eval mode adds
``running_mean, running_var`` after the parameters; without affine, ``(gx, gdout)`` of
``double_backward(gdx, dout, x, eps=…)``): the closed form proved in
:mod:`bnsym.proofs.higher`, written over whole arrays for every layout. x, dout and gdx are
viewed as (N, P, K, C) — the group's M values as K parameter values (γ_j) times C values
each — through the module's own ``_groups``; the closed form's sums are reductions over the
last axes, a few coefficients per group follow, and each result is one broadcast expression:
no element-major copies of the inputs and no stacking of the results. In eval mode the
statistics are the running ones, constants: every term that came from differentiating the
mean or the variance is absent.

>>> import numpy as np
>>> from bnsym.derivation import derive
>>> mod = generate_higher(derive(3))
>>> x, dout, g = np.eye(3, 2), np.ones((3, 2)), np.ones(2)
>>> gx, gdout, ggamma = mod.double_backward(np.zeros((3, 2)), g, g, dout, x, g, g)
>>> gx.shape, gdout.shape, ggamma.shape
((3, 2), (3, 2), (2,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

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
from bnsym.limits import bounded, float_eps

__all__ = ["GeneratedModule2", "generate_higher"]


@dataclass(frozen=True)
class GeneratedModule2(GeneratedModule):
    """A generated module with ``double_backward`` besides ``forward`` and ``backward``:
    ``double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta, eps) -> (gx, gdout,
    ggamma)``, gdx, dout and x of x's layout, gdgamma, gdbeta, gamma and beta of γ's; gx
    and gdout of x's shape, ggamma of γ's. (No gdbeta, beta for a layer without β.)"""

    double_backward: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]


def generate_higher(d: Derivation, *, command: str | None = None) -> GeneratedModule2:
    """The module of :func:`bnsym.codegen.module.generate` with ``double_backward`` added, for
    every layer and variant (from its proved closed form of order 2)."""
    float_eps(d.options.eps)
    if command is None:
        command = python_call(d)
    with bounded("codegen", d.m, order=2, force=d.options.force):
        source = _source(d, command)
        namespace = compile_source(source, f"order 2 {variant_text(d)}")
    return GeneratedModule2(
        d, source, namespace["forward"], namespace["backward"], namespace["double_backward"]
    )


def _source(d: Derivation, command: str) -> str:
    base = module_source(d, command)
    o, decl = d.options, d.symbols.layer
    params, stats = arguments(d)
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    cot = [f"gd{p}" for p in params]
    sig = ", ".join(["gdx", *cot, "dout", "x", *params, *stats, f"eps={eps!r}"])
    grads = "(" + ", ".join(["dx", *("d" + p for p in params)]) + ")" if params else "dx"
    seeds = " + ".join(f"sum(g{g}*{g})" for g in ["dx", *("d" + p for p in params)])
    results = "(gx, gdout, ggamma)" if o.affine else "(gx, gdout)"
    wrt = "x, dout and gamma" if o.affine else "x and dout"
    unread = decl.beta and o.affine
    doc = [
        wrap(f"def double_backward({sig}):"),
        f'    """The double backward: the gradients of {seeds}',
        f"    with respect to {wrt}, where",
        f"    {grads} = backward(dout, x" + "".join(", " + p for p in (*params, *stats)) + ").",
        "",
        f"    Returns {results}: gx and gdout of x's shape"
        + (", ggamma of gamma's." if o.affine else ".")
        + (" beta is" if unread else '"""'),
        *(['    checked but not read: the backward does not depend on it."""'] if unread else []),
    ]
    section = [
        "",
        "",
        "# --- the double backward (bnsym codegen --order 2) " + "-" * 44,
        *(_EVAL_COMMENT if stats else _train_comment(d)),
        "",
        "",
        *doc,
        *_body(d, params, stats, cot),
        "",
        "",
        layout_of(d).from_groups_source(),
    ]
    return base.rstrip() + "\n" + "\n".join(section).rstrip() + "\n"


def _train_comment(d: Derivation) -> list[str]:
    decl = d.symbols.layer
    k = normalizer(d.m, d.options.variance) if decl.centred else sp.Rational(1, d.m)
    return [
        f"# The closed form proved in bnsym.proofs.higher (k = {k}):",
        "# sums of dy, dy*xhat, dy*gdx over the values of each gamma_j, of gdx and gdx*xhat over",
        "# the group; q = sum(gdx_i*P(gamma*dy)_i) with P(v) = v - mean(v) - k*xhat*sum(v*xhat)",
        "# (no mean for a layer that is not centred); then gx_i = coef_dy_j*dy_i + coef_gdx*gdx_i",
        "# + coef_xhat*xhat_i + shift, gdout_i = gamma_inv_std_j*gdx_i + coef_xhat_gdy_j*xhat_i",
        "# + shift_gdy_j, and ggamma_j = inv_std*(sum_dy_gdx_j - mean(gdx)*sum_dy_j",
        "# - k*sum_gdx_xhat*sum_dy_xhat_j).",
    ]


_EVAL_COMMENT = [
    "# The closed form proved in bnsym.proofs.higher, in eval mode: the running statistics are",
    "# constants, so no term comes from differentiating a mean or a variance. gx_i =",
    "# inv_std*gdgamma_j*dy_i, gdout_i = gamma_inv_std_j*gdx_i + gdgamma_j*xhat_i + gdbeta_j,",
    "# ggamma_j = inv_std*sum(dy_i*gdx_i) over the values of gamma_j (and the samples).",
]


def _body(d: Derivation, params: list[str], stats: list[str], cot: list[str]) -> list[str]:
    """``double_backward``'s body: the checks, the views (N, P, K, C), the closed form."""
    o = d.options
    affine = o.affine
    layout = layout_of(d)
    formula = _eval_mode(d) if stats else _train_mode(d)
    return [
        "    x = _array('x', x)",
        "    groups = _groups('x', x)",
        "    dout = _array('dout', dout)",
        "    gdx = _array('gdx', gdx)",
        "    for name, a in (('dout', dout), ('gdx', gdx)):",
        "        if a.shape != x.shape:",
        "            raise ValueError(",
        "                f'{name} must have the shape of x {x.shape}; got {a.shape}'",
        "            )",
        *check_lines([*params, *cot], stats),
        *([] if affine or stats else ["    gamma, gdgamma = 1.0, 0.0  # no gamma and beta"]),
        "    # views (N, P, K, C): the K values of gamma in a group, C values each; no copies",
        "    xg = groups.reshape(groups.shape[:2] + " + ("(K, M // K))" if affine else "(1, M))"),
        "    dy = _groups('dout', dout).reshape(xg.shape)",
        "    a = _groups('gdx', gdx).reshape(xg.shape)",
        errstate(layout),
        *formula,
        "    gx, gdout = gx.reshape(groups.shape), gdout.reshape(groups.shape)",
        f"    _finite_result('gx', gx, {finite_args(d)})",
        "    return (_from_groups(gx, x.shape), _from_groups(gdout, x.shape)"
        + (", ggamma.ravel())" if affine else ")"),
    ]


def _denominator(placement: str, var: str) -> list[str]:
    """``inv_std = 1/std`` for a variance ``var`` (an expression), by where ε is added."""
    if placement == "inside":
        return [f"        inv_std = 1 / numpy.sqrt({var} + eps)"]
    e = "numpy.sqrt(eps)" if placement == "sqrt-outside" else "eps"
    return [f"        inv_std = 1 / (numpy.sqrt({var}) + {e})"]


def _eval_mode(d: Derivation) -> list[str]:
    """The closed form with the running statistics, constants: dx = gamma*dout*inv_std."""
    o, decl = d.options, d.symbols.layer
    inv_std = [
        "        # in eval mode the statistics are the running ones, one per group (P,)",
        *_denominator(o.eps_placement, "running_var"),
    ]
    if not o.affine:
        return [
            *inv_std,
            "        gx = numpy.zeros_like(xg)  # dx = dout*inv_std does not depend on x",
            "        gdout = inv_std[:, None, None] * a",
        ]
    shift = " + gdbeta[..., None]" if decl.beta else ""
    # a centred layer subtracts its running mean; one that is not centred subtracts nothing
    centre = "(xg - running_mean[:, None, None])" if decl.centred else "xg"
    return [
        *inv_std,
        f"        xhat = {centre} * inv_std[:, None, None]",
        "        gx = (inv_std[:, None] * gdgamma)[..., None] * dy",
        "        sum_dy_gdx = numpy.einsum('npkc,npkc->npk', dy, a)",
        "        ggamma = (inv_std[:, None] * sum_dy_gdx).sum(axis=0)",
        "        gamma_inv_std = gamma * inv_std[:, None]",
        f"        gdout = gamma_inv_std[..., None] * a + gdgamma[..., None] * xhat{shift}",
    ]


def _train_mode(d: Derivation) -> list[str]:
    """The closed form with the group's own statistics (see the section's comment)."""
    o, decl = d.options, d.symbols.layer
    affine, centred = o.affine, decl.centred
    inside = o.eps_placement == "inside"
    k_, two = ("k", "2") if inside else ("kr", "(r + 1)")  # see the comment on r below
    # what sigma is added to with eps outside the root: eps, or sqrt(eps) (sqrt-outside)
    e = "numpy.sqrt(eps)" if o.eps_placement == "sqrt-outside" else "eps"
    k = normalizer(d.m, o.variance) if centred else sp.Rational(1, d.m)
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
        f"        k = {float(k)!r}  # {k}",
        *xmu,
        "        var = numpy.einsum('npkc,npkc->np', xmu, xmu) * k",
        *(
            _denominator("inside", "var")
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
    ]
