"""Rendering a Derivation for a terminal (Unicode or ASCII) and as JSON; reading JSON back.

Every renderer (this module, and bnsym.notes.latex for LaTeX and Markdown) walks the same sections
of the derivation (:func:`sections`) and differs only in how it prints a symbol and an
expression. Symbol display names live in one table, :data:`DISPLAY`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.printing.str import StrPrinter

from bnsym.core.cutoffs import EXPLICIT_MAX_M, GENERAL_PROOF_MIN_M, SHORT_MAX_M
from bnsym.core.general import CH, C
from bnsym.core.graph import Step
from bnsym.proofs.display import EYE

if TYPE_CHECKING:  # pragma: no cover - the renderers never import bnsym.derivation
    from bnsym.derivation import Derivation

__all__ = ["DISPLAY", "Section", "display_name", "load_json", "sections", "to_json", "to_text"]

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_LETTER_SUB = {"i": "ᵢ", "j": "ⱼ", "k": "ₖ", "c": "_c"}

_DY_J = r"\frac{{\partial \ell}}{{\partial y_{{j}}}}"  # ∂ℓ/∂y_j in a format string

# name pattern -> (unicode, ascii, latex); {i} is the index (subscripted in Unicode/LaTeX).
DISPLAY: list[tuple[str, tuple[str, str, str]]] = [
    (r"x(\d+|_[a-z])", ("x{i}", "x{i}", "x_{{{i}}}")),
    (r"y(\d+|_[a-z])", ("y{i}", "y{i}", "y_{{{i}}}")),
    (r"xhat(\d+|_[a-z])", ("x̂{i}", "xhat{i}", r"\hat{{x}}_{{{i}}}")),
    (r"dy(\d+|_[a-z])", ("∂ℓ/∂y{i}", "dl/dy{i}", r"\frac{{\partial \ell}}{{\partial y_{{{i}}}}}")),
    (r"dx(\d+|_[a-z])", ("∂ℓ/∂x{i}", "dl/dx{i}", r"\frac{{\partial \ell}}{{\partial x_{{{i}}}}}")),
    (
        r"dxhat(\d+|_[a-z])",
        ("∂ℓ/∂x̂{i}", "dl/dxhat{i}", r"\frac{{\partial \ell}}{{\partial \hat{{x}}_{{{i}}}}}"),
    ),
    (r"gamma", ("γ", "gamma", r"\gamma")),
    (r"beta", ("β", "beta", r"\beta")),
    (r"gamma(\d+|_[a-z])", ("γ{i}", "gamma{i}", r"\gamma_{{{i}}}")),
    (r"beta(\d+|_[a-z])", ("β{i}", "beta{i}", r"\beta_{{{i}}}")),
    (
        r"dgamma(\d+|_[a-z])",
        ("∂ℓ/∂γ{i}", "dl/dgamma{i}", r"\frac{{\partial \ell}}{{\partial \gamma_{{{i}}}}}"),
    ),
    (
        r"dbeta(\d+|_[a-z])",
        ("∂ℓ/∂β{i}", "dl/dbeta{i}", r"\frac{{\partial \ell}}{{\partial \beta_{{{i}}}}}"),
    ),
    (r"epsilon", ("ε", "eps", r"\epsilon")),
    (r"mu_B", ("μ_B", "mu_B", r"\mu_{B}")),
    (r"sigma2_B", ("σ²_B", "sigma2_B", r"\sigma_{B}^{2}")),
    (r"sigma_B", ("σ_B", "sigma_B", r"\sigma_{B}")),
    (r"mu", ("μ", "mu", r"\mu")),
    (r"sigma2", ("σ²", "sigma2", r"\sigma^{2}")),
    (r"sigma", ("σ", "sigma", r"\sigma")),
    (r"nu2", ("ν²", "nu2", r"\nu^{2}")),
    (r"nu", ("ν", "nu", r"\nu")),
    (r"dmu", ("∂ℓ/∂μ", "dl/dmu", r"\frac{\partial \ell}{\partial \mu}")),
    (r"dsigma2", ("∂ℓ/∂σ²", "dl/dsigma2", r"\frac{\partial \ell}{\partial \sigma^{2}}")),
    (r"dnu2", ("∂ℓ/∂ν²", "dl/dnu2", r"\frac{\partial \ell}{\partial \nu^{2}}")),
    (r"running_mean", ("μ_run", "running_mean", r"\mu_{\mathrm{run}}")),
    (r"running_var", ("σ²_run", "running_var", r"\sigma_{\mathrm{run}}^{2}")),
    (r"running_mean(\d+)", ("μ_run,{i}", "running_mean{i}", r"\mu_{{\mathrm{{run}},{i}}}")),
    (r"running_var(\d+)", ("σ²_run,{i}", "running_var{i}", r"\sigma_{{\mathrm{{run}},{i}}}^{{2}}")),
    (r"dsigma2_B", ("∂ℓ/∂σ²_B", "dl/dsigma2_B", r"\frac{\partial \ell}{\partial \sigma_{B}^{2}}")),
    (r"dmu_B", ("∂ℓ/∂μ_B", "dl/dmu_B", r"\frac{\partial \ell}{\partial \mu_{B}}")),
    (r"dgamma", ("∂ℓ/∂γ", "dl/dgamma", r"\frac{\partial \ell}{\partial \gamma}")),
    (r"dbeta", ("∂ℓ/∂β", "dl/dbeta", r"\frac{\partial \ell}{\partial \beta}")),
    (r"sum_dy", ("Σⱼ∂ℓ/∂yⱼ", "sum_j(dl/dy_j)", r"\sum_{j} \frac{\partial \ell}{\partial y_{j}}")),
    (
        r"sum_dy_xhat",
        (
            "(Σⱼ∂ℓ/∂yⱼ·x̂ⱼ)",
            "sum_j(dl/dy_j*xhat_j)",
            r"\sum_{j} \frac{\partial \ell}{\partial y_{j}} \hat{x}_{j}",
        ),
    ),
    (r"sum_dx", ("Σᵢ∂ℓ/∂xᵢ", "sum_i(dl/dx_i)", r"\sum_{i} \frac{\partial \ell}{\partial x_{i}}")),
    (
        r"sum_dx_xhat",
        (
            "Σᵢ∂ℓ/∂xᵢ·x̂ᵢ",
            "sum_i(dl/dx_i*xhat_i)",
            r"\sum_{i} \frac{\partial \ell}{\partial x_{i}} \hat{x}_{i}",
        ),
    ),
    (
        r"sum_gdy",
        (
            "Σⱼγⱼ∂ℓ/∂yⱼ",
            "sum_j(gamma_j*dl/dy_j)",
            r"\sum_{j} \gamma_{j} \frac{\partial \ell}{\partial y_{j}}",
        ),
    ),
    (
        r"sum_gdy_xhat",
        (
            "(Σⱼγⱼ∂ℓ/∂yⱼ·x̂ⱼ)",
            "sum_j(gamma_j*dl/dy_j*xhat_j)",
            r"\sum_{j} \gamma_{j} \frac{\partial \ell}{\partial y_{j}} \hat{x}_{j}",
        ),
    ),
    (r"diag_gamma", ("diag(γ)", "diag(gamma)", r"\operatorname{diag}(\gamma)")),
    (r"y_i\(a\*x\)", ("yᵢ(a·x)", "y_i(a*x)", r"y_{i}(a x)")),
    (r"mean_y", ("(1/m)·Σᵢyᵢ", "mean_i(y_i)", r"\frac{1}{m}\sum_{i} y_{i}")),
    (r"y_i\(a\*x \+ c\)", ("yᵢ(a·x + c)", "y_i(a*x + c)", r"y_{i}(a x + c)")),
    (r"y_i\|undo", ("yᵢ", "y_i", r"y_{i}")),  # the condition is in the identity's note
    # the lecture notes' other forms (bnsym.proofs.forms); each condition is in its identity's note
    (r"y_i\|E\[x\]", ("yᵢ", "y_i", r"y_{i}")),
    (r"dx_i\|const", ("∂ℓ/∂xᵢ", "dl/dx_i", r"\frac{\partial \ell}{\partial x_{i}}")),
    (
        r"y_i\(c \+ t\*h\) - y_i\(c - t\*h\)",
        (
            "yᵢ(c + t·h) − yᵢ(c − t·h)",
            "y_i(c + t*h) - y_i(c - t*h)",
            r"y_{i}(c + t h) - y_{i}(c - t h)",
        ),
    ),
    (
        r"y_i\(t\*h\) - y_i\(-t\*h\)",
        ("yᵢ(t·h) − yᵢ(−t·h)", "y_i(t*h) - y_i(-t*h)", r"y_{i}(t h) - y_{i}(-t h)"),
    ),
    (r"xhat_i\(h\)", ("x̂ᵢ(h)", "xhat_i(h)", r"\hat{x}_{i}(h)")),
    (
        r"spread_y",
        ("(1/m)·Σᵢ(yᵢ − β)²", "mean_i((y_i - beta)^2)", r"\frac{1}{m}\sum_{i}(y_{i} - \beta)^{2}"),
    ),
    (r"spread_xhat", ("(1/m)·Σᵢx̂ᵢ²", "mean_i(xhat_i^2)", r"\frac{1}{m}\sum_{i}\hat{x}_{i}^{2}")),
    (r"E_B\[sigma2_B\]", ("E_B[σ²_B]", "E_B[sigma2_B]", r"\operatorname{E}_{B}[\sigma_{B}^{2}]")),
    (r"E\[sigma2\]", ("E[σ²]", "E[sigma2]", r"\operatorname{E}[\sigma^{2}]")),
    (r"Var\[x\]", ("Var[x]", "Var[x]", r"\operatorname{Var}[x]")),
    (r"E\[x\]", ("E[x]", "E[x]", r"\operatorname{E}[x]")),
    (r"I", ("I", "I", r"I")),
    # a thin space and 1 1^T: bold 11ᵀ reads as eleven
    (r"11T", ("𝟙𝟙ᵀ", "1 1^T", r"\mathbf{1}\,\mathbf{1}^{\top}")),
    (r"xhatxhatT", ("x̂x̂ᵀ", "xhat xhat^T", r"\hat{x}\hat{x}^{\top}")),
    (r"J", ("J", "J", "J")),
    # --- the double backward's closed form (bnsym.proofs.double_backward): the group's sums,
    # over j = 1…m or over C_k, the values that γ_k scales, and the results' coefficients
    (
        r"sum_dy(\d+)",
        ("(Σ_(j∈C{i})∂ℓ/∂yⱼ)", "sum_(j in C{i})(dl/dy_j)", r"\sum_{{j \in C_{{{i}}}}} " + _DY_J),
    ),
    (
        r"sum_dy_xhat(\d+)",
        (
            "(Σ_(j∈C{i})∂ℓ/∂yⱼ·x̂ⱼ)",
            "sum_(j in C{i})(dl/dy_j*xhat_j)",
            r"\sum_{{j \in C_{{{i}}}}} " + _DY_J + r" \hat{{x}}_{{j}}",
        ),
    ),
    (
        r"sum_dy_gdx(\d+)",
        (
            "(Σ_(j∈C{i})∂ℓ/∂yⱼ·ḡ_{{xⱼ}})",
            "sum_(j in C{i})(dl/dy_j*gbar_{{x_j}})",
            r"\sum_{{j \in C_{{{i}}}}} " + _DY_J + r" \bar{{g}}_{{x_{{j}}}}",
        ),
    ),
    (
        r"sum_dy_gdx",
        (
            "(Σⱼ∂ℓ/∂yⱼ·ḡ_{xⱼ})",
            "sum_j(dl/dy_j*gbar_{x_j})",
            r"\sum_{j} \frac{\partial \ell}{\partial y_{j}} \bar{g}_{x_{j}}",
        ),
    ),
    (r"sum_gdx", ("(Σⱼḡ_{xⱼ})", "sum_j(gbar_{x_j})", r"\sum_{j} \bar{g}_{x_{j}}")),
    (
        r"sum_gdx_xhat",
        ("(Σⱼḡ_{xⱼ}·x̂ⱼ)", "sum_j(gbar_{x_j}*xhat_j)", r"\sum_{j} \bar{g}_{x_{j}} \hat{x}_{j}"),
    ),
    (
        r"sum_gamma_dy_xhat",
        (
            "(Σⱼγⱼ·∂ℓ/∂yⱼ·x̂ⱼ)",
            "sum_j(gamma_j*dl/dy_j*xhat_j)",
            r"\sum_{j} \gamma_{j} \frac{\partial \ell}{\partial y_{j}} \hat{x}_{j}",
        ),
    ),
    (
        r"sum_gdgamma_dy_xhat",
        (
            "(Σⱼḡ_{γⱼ}·∂ℓ/∂yⱼ·x̂ⱼ)",
            "sum_j(gbar_{gamma_j}*dl/dy_j*xhat_j)",
            r"\sum_{j} \bar{g}_{\gamma_{j}} \frac{\partial \ell}{\partial y_{j}} \hat{x}_{j}",
        ),
    ),
    (
        r"sum_gamma_dy_gdx",
        (
            "(Σⱼγⱼ·∂ℓ/∂yⱼ·ḡ_{xⱼ})",
            "sum_j(gamma_j*dl/dy_j*gbar_{x_j})",
            r"\sum_{j} \gamma_{j} \frac{\partial \ell}{\partial y_{j}} \bar{g}_{x_{j}}",
        ),
    ),
    (
        r"sum_gamma_dy",
        (
            "(Σⱼγⱼ·∂ℓ/∂yⱼ)",
            "sum_j(gamma_j*dl/dy_j)",
            r"\sum_{j} \gamma_{j} \frac{\partial \ell}{\partial y_{j}}",
        ),
    ),
    (
        r"sum_gdgamma_dy",
        (
            "(Σⱼḡ_{γⱼ}·∂ℓ/∂yⱼ)",
            "sum_j(gbar_{gamma_j}*dl/dy_j)",
            r"\sum_{j} \bar{g}_{\gamma_{j}} \frac{\partial \ell}{\partial y_{j}}",
        ),
    ),
    (r"H_ij", ("H_ij", "H_ij", r"H_{ij}")),  # the Hessian of Σ ∂ℓ/∂y_i·y_i in x
    (r"H_ji", ("H_ji", "H_ji", r"H_{ji}")),
    (r"kr", ("k·r", "k*r", r"k r")),
    (r"r", ("r", "r", "r")),  # (σ + ε)/σ, with ε outside the root
    (r"q", ("Q", "Q", "Q")),
    (r"coef_dy", ("a_y", "a_y", "a_{y}")),
    (r"coef_dy(\d+)", ("a_y{i}", "a_y{i}", "a_{{y,{i}}}")),
    (r"coef_gdx", ("a_ḡ", "a_gbar", r"a_{\bar{g}}")),
    (r"coef_xhat", ("a_x̂", "a_xhat", r"a_{\hat{x}}")),
    (r"shift", ("a₀", "a_0", "a_{0}")),
    (r"gamma_inv_std", ("b_ḡ", "b_gbar", r"b_{\bar{g}}")),
    (r"gamma_inv_std(\d+)", ("b_ḡ{i}", "b_gbar{i}", r"b_{{\bar{{g}},{i}}}")),
    (r"coef_xhat_gdy", ("b_x̂", "b_xhat", r"b_{\hat{x}}")),
    (r"coef_xhat_gdy(\d+)", ("b_x̂{i}", "b_xhat{i}", r"b_{{\hat{{x}},{i}}}")),
    (r"shift_gdy", ("b₀", "b_0", "b_{0}")),
    (r"shift_gdy(\d+)", ("b_0,{i}", "b_0,{i}", r"b_{{0,{i}}}")),
]


# --- forward mode's names (bnsym.proofs.modes): a name with prefixes, the inner one last ----
# "dot": the tangent (ẋ), "del": along a second direction (δx), "dif": along a third (Δx),
# "bar": an adjoint of the reverse walk over the forward-mode graph (x̄): deldotx1 is δẋ₁, the
# tangent along δ of the tangent ẋ₁; bardotgamma is the adjoint of γ̇.
_DOT, _BAR = "\u0307", "\u0304"  # combining dot and macron above
_MARKED = ("x", "y", "xhat", "gamma", "beta", "mu_B", "mu", "sigma2_B", "sigma2", "nu2")
_ADJOINTS = ("dx", "dxhat", "dgamma", "dbeta", "dmu_B", "dmu", "dsigma2_B", "dsigma2", "dnu2")
#: prefix chains, outer first, and the bases each decorates (an adjoint only gets a dot: the
#: tangent of ∂ℓ/∂x along ẋ is the Hessian-vector product)
_CHAINS = {
    **{p: _MARKED for p in ("dot", "del", "deldot", "bar", "bardot")},
    **{p: _MARKED for p in ("dif", "difdot", "difdel", "difdeldot")},
    "dot": (*_MARKED, *_ADJOINTS),
}


def _mark(form: str, mark: str) -> str:
    """A combining mark on the first letter of a Unicode name (after its own marks)."""
    if form.startswith("∂") or form.startswith("("):
        return f"({form})" + ("˙" if mark == _DOT else "¯")
    k = 1
    while k < len(form) and "\u0300" <= form[k] <= "\u036f":
        k += 1
    return form[:k] + mark + form[k:]


def _latex_mark(form: str, command: str, braces: bool) -> str:
    r"""``\dot{x}_{1}`` from ``x_{1}``: the command on the name's head (x, \hat{x}, \sigma,
    \dot{x}); a fraction (∂ℓ/∂x) in parentheses with a raised dot."""
    if form.startswith(r"\frac"):
        mark = r"\cdot" if command == r"\dot" else "-"
        return (
            rf"\left({form}\right)^{{{{{mark}}}}}" if braces else rf"\left({form}\right)^{{{mark}}}"
        )
    end = 1
    if form.startswith("\\"):
        hit = re.match(r"\\[A-Za-z]+", form)
        end = hit.end() if hit else 1
        if form[end : end + 1] == "{":  # \hat{x}, \dot{x}: the braces' group is the head too
            depth = 0
            for k in range(end, len(form)):
                depth += {"{": 1, "}": -1}.get(form[k], 0)
                if depth == 0:
                    end = k + 1
                    break
    head, rest = form[:end], form[end:]
    return f"{command}{{{{{head}}}}}{rest}" if braces else f"{command}{{{head}}}{rest}"


def _decorated(prefix: str, forms: tuple[str, str, str], braces: bool) -> tuple[str, str, str]:
    """The (unicode, ascii, latex) forms of ``prefix`` + a name, the inner prefix applied
    first."""
    uni, asc, lat = forms
    for p in reversed(re.findall(r"dot|del|dif|bar", prefix)):
        if p in ("dot", "bar"):
            uni = _mark(uni, _DOT if p == "dot" else _BAR)
            lat = _latex_mark(lat, r"\dot" if p == "dot" else r"\bar", braces)
        else:
            uni = ("δ" if p == "del" else "Δ") + uni
            lat = (r"\delta " if p == "del" else r"\Delta ") + lat
        asc = f"{p}({asc})" if "/" in asc else p + asc
    return uni, asc, lat


def _forward_mode_rows() -> list[tuple[str, tuple[str, str, str]]]:
    base = dict(DISPLAY)
    rows = []
    for prefix, names in _CHAINS.items():
        for name in names:
            for pattern in (name, rf"{name}(\d+|_[a-z])"):
                if pattern in base:
                    rows.append(
                        (prefix + pattern, _decorated(prefix, base[pattern], "(" in pattern))
                    )
    rows += [
        (rf"{p}D", (u + "D" if u else "D", p + "D", lat + "D"))
        for p, u, lat in (("dot", "", ""), ("del", "δ", r"\delta "), ("deldot", "δ", r"\delta "))
    ]
    rows[-3] = ("dotD", ("Ḋ", "dotD", r"\dot{D}"))
    rows[-1] = ("deldotD", ("δḊ", "deldotD", r"\delta \dot{D}"))
    # the third order's walk over the closed forms (Δ of each of their nodes)
    rows += [
        ("difdotD", ("ΔḊ", "difdotD", r"\Delta \dot{D}")),
        ("difdelD", ("ΔδD", "difdelD", r"\Delta \delta D")),
        ("difdeldotD", ("ΔδḊ", "difdeldotD", r"\Delta \delta \dot{D}")),
        ("difB", ("ΔB", "difB", r"\Delta B")),
    ]
    rows += [
        (
            "<doty, dy>",
            ("⟨ẏ, ∂ℓ/∂y⟩", "<doty, dl/dy>", r"\langle \dot{y}, \partial \ell/\partial y \rangle"),
        ),
    ]
    # the transpose identity, with the parameters the layer has (no β: RMS norm; no γ, β)
    pairs = [
        (
            "<dotx, dx>",
            "⟨ẋ, ∂ℓ/∂x⟩",
            "<dotx, dl/dx>",
            r"\langle \dot{x}, \partial \ell/\partial x \rangle",
        ),
        (
            "<dotgamma, dgamma>",
            "⟨γ̇, ∂ℓ/∂γ⟩",
            "<dotgamma, dl/dgamma>",
            r"\langle \dot{\gamma}, \partial \ell/\partial \gamma \rangle",
        ),
        (
            "<dotbeta, dbeta>",
            "⟨β̇, ∂ℓ/∂β⟩",
            "<dotbeta, dl/dbeta>",
            r"\langle \dot{\beta}, \partial \ell/\partial \beta \rangle",
        ),
    ]
    for n in (1, 2, 3):
        key, uni, plain, tex = (" + ".join(p[i] for p in pairs[:n]) for i in range(4))
        rows.append((re.escape(key), (uni, plain, tex)))
    # the closed forms' sums (g = γ·∂ℓ/∂y, h = γ̇·∂ℓ/∂y; at the cotangent ẏ̄ with w_) and the
    # statements of the identities (bnsym.proofs.modes)
    for tag in ("", "w_"):
        rows += [
            (tag + "sum_g", ("Σⱼgⱼ", "sum_j(g_j)", r"\sum_{j} g_{j}")),
            (tag + "sum_g_xhat", ("Σⱼgⱼx̂ⱼ", "sum_j(g_j*xhat_j)", r"\sum_{j} g_{j} \hat{x}_{j}")),
            (tag + "sum_h", ("Σⱼhⱼ", "sum_j(h_j)", r"\sum_{j} h_{j}")),
            (tag + "sum_h_xhat", ("Σⱼhⱼx̂ⱼ", "sum_j(h_j*xhat_j)", r"\sum_{j} h_{j} \hat{x}_{j}")),
            (tag + "q", ("q", "q", "q")),
            (tag + "coef_xhat", ("c_x̂", "coef_xhat", r"c_{\hat{x}}")),
        ]
    statements = {
        "<w, T[.; u, v]>": ("⟨w, T[·; u, v]⟩", r"\langle w, T[\cdot; u, v] \rangle"),
        "<T[w; ., v], u>": ("⟨T[w; ·, v], u⟩", r"\langle T[w; \cdot, v], u \rangle"),
        "<T[w; ., u], v>": ("⟨T[w; ·, u], v⟩", r"\langle T[w; \cdot, u], v \rangle"),
        "T[.; u, v]": ("T[·; u, v]", r"T[\cdot; u, v]"),
        "T[.; v, u]": ("T[·; v, u]", r"T[\cdot; v, u]"),
        "vjp(jvp)[w]": ("vjp(jvp)[w]", r"\mathrm{vjp}(\mathrm{jvp})[w]"),
        "(T[w; ., u], J^T w)": ("(T[w; ·, u], Jᵀw)", r"(T[w; \cdot, u], J^{\top} w)"),
        "vjp(vjp)[a]": ("vjp(vjp)[a]", r"\mathrm{vjp}(\mathrm{vjp})[a]"),
        "(T[dy; a, .], J a)": (
            "(T[∂ℓ/∂y; a, ·], J·a)",
            r"(T[\partial \ell/\partial y; a, \cdot], J a)",
        ),
        "d3y[u, v, w]": ("∂³y[u, v, w]", r"\partial^{3} y[u, v, w]"),
        "d3y[v, u, w] = d3y[u, w, v]": (
            "∂³y[v, u, w] = ∂³y[u, w, v]",
            r"\partial^{3} y[v, u, w] = \partial^{3} y[u, w, v]",
        ),
    }
    rows += [(re.escape(k), (u, k, lat)) for k, (u, lat) in statements.items()]
    return rows


DISPLAY += _forward_mode_rows()
_COMPILED = [(re.compile(p + r"\Z"), forms) for p, forms in DISPLAY]
_STYLE = {"unicode": 0, "ascii": 1, "latex": 2}

#: The passes after the first, by the prefix a name of theirs starts with (the rest is a
#: name of an earlier pass; bnsym.core.higher names them so): ``gd`` + z is ḡ_z =
#: ∂ℓ₂/∂(∂ℓ/∂z), the second pass's adjoint of the first pass's ∂ℓ/∂z (the seeds ḡ_x, ḡ_γ,
#: ḡ_β among them); ``g`` + z is ∂ℓ₂/∂z, its adjoint of a node z; ``t`` + n is ∂ℓ₃/∂n, the
#: third pass's adjoint of any earlier node n. {0} is how n itself is written.
PASSES: list[tuple[str, tuple[str, str, str]]] = [
    ("gd", ("ḡ_{{{0}}}", "gbar_{{{0}}}", r"\bar{{g}}_{{{0}}}")),
    ("g", ("∂ℓ₂/∂{0}", "dl2/d{0}", r"\frac{{\partial \ell_{{2}}}}{{\partial {0}}}")),
    ("t", ("∂ℓ₃/∂{0}", "dl3/d{0}", r"\frac{{\partial \ell_{{3}}}}{{\partial {0}}}")),
]


def display_name(name: str, style: str = "unicode") -> str:
    """How a symbol of the derivation is written in ``style`` (unicode, ascii or latex).

    >>> display_name("dxhat3"), display_name("dxhat3", "ascii"), display_name("sigma2_B", "latex")
    ('∂ℓ/∂x̂₃', 'dl/dxhat3', '\\\\sigma_{B}^{2}')
    """
    col = _STYLE[style]
    for pattern, forms in _COMPILED:
        hit = pattern.match(name)
        if hit:
            index = hit.group(1) if hit.groups() else ""
            index = index.lstrip("_")
            if style == "unicode":
                index = index.translate(_SUB) if index.isdigit() else _LETTER_SUB.get(index, index)
            elif style == "ascii" and index.isalpha():
                index = "_" + index  # dl/dx_i, not dl/dxi
            # Only the indexed forms are format strings; μ_B's \mu_{B} has literal braces.
            return forms[col].format(i=index) if hit.groups() else forms[col]
    for prefix, forms in PASSES:
        inner = name[len(prefix) :]
        if not (name.startswith(prefix) and inner):
            continue
        if any(p.match(inner) for p, _ in _COMPILED) or display_name(inner) != inner:
            shown = _of(display_name(inner, style), style)
            if prefix == "gd" and style != "latex" and len(shown) == 1:
                return forms[col].replace("{{{0}}}", "{0}").format(shown)  # ḡ_γ, not ḡ_{γ}
            return forms[col].format(shown)
    return name


def _of(shown: str, style: str) -> str:
    """A name as it stands after ∂ in ∂ℓ₂/∂(…): a fraction, a sum or a product in brackets,
    a fraction written inline."""
    if style == "latex":
        hit = re.fullmatch(r"\\frac\{(\\partial [^{}]*(?:\{[^{}]*\}[^{}]*)*)\}\{(.*)\}", shown)
        if hit:
            return rf"\left({hit.group(1)}/{hit.group(2)}\right)"
        return rf"\left({shown}\right)" if r"\sum" in shown or " " in shown else shown
    if shown.startswith("("):
        return shown
    return f"({shown})" if any(c in shown for c in "/Σ·*") or shown.startswith("sum") else shown


def indexed_name(expr: sp.Indexed, style: str, show: Any) -> str:
    """``base[index]`` as the derivation writes ``base`` with that index (x[j]: xⱼ, x_{j})."""
    (index,) = expr.indices
    base = str(expr.base)
    if isinstance(index, sp.Symbol):
        return display_name(f"{base}_{index.name}", style)
    # q stands for the index expression: no name of the derivation holds a q
    if _is_channel_of(index):  # group norm's c(i), the channel of element i
        shown = f"c({show(index.args[0])})"
    else:
        shown = show(index)
    return display_name(f"{base}_q", style).replace("q", shown if style == "latex" else f"_{shown}")


def _is_channel_of(e: sp.Basic) -> bool:
    """``c(i)``: group norm's channel of element i in the general form."""
    return isinstance(e, sp.Function) and e.func == CH


def channel_sum(expr: sp.Sum) -> bool:
    """A Σ over the elements of one channel c: its bound holds C, the channels per group."""
    return C in expr.limits[0][2].free_symbols


class _TextPrinter(StrPrinter):
    """SymPy's str printer with the derivation's notation for symbols."""

    def __init__(self, style: str, abbreviate: bool = True) -> None:
        super().__init__({"order": "none"})
        self.style = style
        self.abbreviate = abbreviate

    def _print_Symbol(self, expr: sp.Symbol) -> str:  # noqa: N802 - SymPy's naming
        return display_name(expr.name, self.style)

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sp.Indexed):  # before Indexed's own _sympystr
            return self._print_Indexed(expr)
        return str(super()._print(expr, **kwargs))

    def _print_Indexed(self, expr: sp.Indexed) -> str:  # noqa: N802
        """The general form's x[i] as xᵢ, gamma[c(i)] as γ_c(i)."""
        return indexed_name(expr, self.style, self._print)

    def _print_Sum(self, expr: sp.Sum) -> str:  # noqa: N802
        """Σⱼ(…) for j = 1…m, Σ_{j=lo..hi}(…) otherwise (sum_j(…) in ASCII)."""
        body = self._print(expr.function)
        if expr.function.is_Add or self.style == "ascii":
            body = f"({body})"
        v, lo, hi = expr.limits[0]
        name = self._print(v)
        sub = _LETTER_SUB.get(name, "_" + name) if self.style == "unicode" else "_" + name
        if channel_sum(expr):  # the elements of channel c
            sub = f"_({name}∈c)" if self.style == "unicode" else f"_({name} in c)"
        elif (lo, str(hi)) != (1, "m"):
            sub = f"_({name}={self._print(lo)}..{self._print(hi)})"
        return ("Σ" if self.style == "unicode" else "sum") + sub + body

    def _print_Mul(self, expr: sp.Mul) -> str:  # noqa: N802
        # An unevaluated (sum)·(1/m), as the forward pass writes μ_B and σ²_B: "(sum)/m".
        fractions = [a for a in expr.args if a.is_Rational and a.p == 1 and a.q > 1]
        if len(expr.args) == 2 and fractions:
            (other,) = [a for a in expr.args if a is not fractions[0]]
            if other.is_Add:
                return f"({self._print(other)})/{fractions[0].q}"
        return super()._print_Mul(expr)

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:  # noqa: N802
        """Terms in index order (x₁ + x₂ + … + x₁₆, not x₁ + x₁₀ + …); a sum of more than
        MAX_TERMS terms shows its first two and its last, joined by "…"."""
        terms = list(expr.args)
        # A sum in SymPy's canonical order is sorted by index instead; an unevaluated sum keeps
        # the order it was written in. (Compared directly, not through Add(): SymPy's cache
        # ignores the global evaluate flag, so Add(*args) may return an unevaluated sum.)
        if terms == sorted(terms, key=_CANONICAL):
            terms.sort(key=term_key)
        hidden = ""
        if self.abbreviate and len(terms) > MAX_TERMS:
            hidden = _hidden_sign([self._print(t) for t in terms[2:-1]])
            if hidden != "±…":  # terms of both signs are never hidden: "± …" reads as nothing
                terms = [*terms[:2], _ELLIPSIS, terms[-1]]
        out = ""
        for i, term in enumerate(terms):
            text = hidden if term is _ELLIPSIS else self._print(term)
            if i == 0:
                out = text
            elif text.startswith("-"):
                out += " - " + text[1:]
            else:
                out += " + " + text
        return out


#: Sums longer than this are abbreviated in text (first two terms, …, last term).
MAX_TERMS = 8
_ELLIPSIS = object()


def _hidden_sign(texts: list[str]) -> str:
    """The "…" standing for the hidden terms of an abbreviated sum, with their sign, so that
    the sum read literally is right: "+ …" only hides terms added, "− …" (written "-…" here,
    the caller turns it into " − …") only terms subtracted; "±…" says the terms have both
    signs, and such a sum is printed whole."""
    negative = [t.startswith("-") for t in texts]
    if all(negative):
        return "-…"
    if any(negative):
        return "±…"
    return "…"


@functools.lru_cache(maxsize=8192)  # every renderer sorts the same terms, str() is costly
def term_key(term: sp.Basic) -> tuple[int, int, int, int, str]:
    """Sort key for the terms of a sum: terms with indexed symbols (x₃, ∂ℓ/∂y₁₂) by index,
    others (γ, β, ε) first in their usual order; in the general form, a term with a Σ after
    those without (m·∂ℓ/∂yᵢ − Σⱼ∂ℓ/∂yⱼ − …, as the notes write it)."""
    indices = [
        int(m.group(1))
        for s in term.free_symbols
        if (m := re.search(r"(\d+)\Z", getattr(s, "name", "")))
    ]
    if term.is_Number or term == EYE:
        return (-1, 0, 0, 0, str(term))  # 2 − x̂₁² and I − 𝟙𝟙ᵀ/m, as a person writes them
    if any(getattr(s, "name", "") in _OTHER_ADJOINTS for s in term.free_symbols):
        # ∂ℓ/∂μ_B = Σ ∂ℓ/∂x̂_i·(…) + ∂ℓ/∂σ²_B·(…): the term of another node's gradient last
        return (2, 1 << 30, 0, 0, str(term))
    constant = bool(term.free_symbols & _ADDED_LAST) or any(
        _ADDED_LAST_INDEXED.fullmatch(getattr(s, "name", "")) for s in term.free_symbols
    )
    has_sum = int(term.has(sp.Sum))
    return (0 if indices else 1, min(indices) if indices else 0, has_sum, int(constant), str(term))


_OTHER_ADJOINTS = ("dsigma2_B", "dmu_B", "dsigma2", "dmu", "dnu2")


#: β₁, μ_run,2: a feature's (or element's) shift, added last as its unindexed form is.
_ADDED_LAST_INDEXED = re.compile(r"(beta|running_mean)\d+")
_CANONICAL = functools.cmp_to_key(sp.Basic.compare)
_ADDED_LAST = {
    sp.Symbol("epsilon", positive=True),
    sp.Symbol("beta", real=True),
    sp.Symbol("mu_B", real=True),
    sp.Symbol("mu", real=True),
    sp.Symbol("running_mean", real=True),
}


_POWERS = {"**2": "²", "**3": "³", "**4": "⁴", "**(3/2)": "^(3/2)", "**(-1/2)": "^(-1/2)"}


def expr_text(expr: Any, ascii: bool = False, abbreviate: bool = True) -> str:
    """One-line text of an expression: Unicode (√, ², ·, −) or plain ASCII."""
    if expr is None:
        return "—" if not ascii else "-"
    printer = _TextPrinter("ascii" if ascii else "unicode", abbreviate)
    text = printer.doprint(sp.sympify(expr))
    if ascii:
        return text
    for k, v in _POWERS.items():
        text = text.replace(k, v)
    text = text.replace("sqrt(", "√(").replace("**", "^").replace("*", "·").replace("-", "−")
    text = re.sub(r"√\((\d+)\)", r"√\1", text)  # √(2) -> √2
    return re.sub(r"\((√\d+)\)", r"\1", text)  # (√2)/4 -> √2/4


# --- sections: what every renderer shows, in order -------------------------------------------


@dataclass(frozen=True)
class Section:
    """A titled part of the derivation: prose, then equations (Steps), then prose."""

    key: str
    title: str
    intro: str
    steps: tuple[Step, ...] = ()
    outro: str = ""


def describe(d: Derivation) -> str:
    """One line naming the variant, e.g. 'train mode, biased variance (1/m), ε inside √'."""
    o = d.options
    placement = {
        "inside": "ε inside the root",
        "outside": "ε outside the root ({} + ε)",
        "sqrt-outside": "√ε outside the root ({} + √ε, not √({}² + ε))",
    }[o.eps_placement]
    if o.mode == "eval":
        parts = ["eval mode (running statistics)"]
        if o.eps_placement != "inside":
            parts.append(placement.format(*["√σ²_run"] * 2).replace("√σ²_run²", "σ²_run"))
    elif not d.symbols.layer.centred:
        # train mode named where the layer has another (RMS norm has training mode alone)
        train = ["train mode"] if "eval" in d.symbols.layer.modes else []
        parts = [*train, "mean square (1/m)", placement.format("ν", "ν")]
    else:
        parts = [
            "train mode",
            "biased variance (1/m)" if o.variance == "biased" else "unbiased variance (1/(m−1))",
            placement.format("σ", "σ"),
        ]
    if o.channels is not None:
        parts.append(f"{o.channels} channel{'s' if o.channels > 1 else ''} of {o.m // o.channels}")
    if o.eps is None:
        parts.append("symbolic ε")
    elif o.eps.is_Integer:
        parts.append(f"ε = {o.eps}")
    else:  # exact, and as the user typed it: ε = 1/100000 (1e-05)
        parts.append(f"ε = {o.eps} ({float(o.eps):g})")
    if not o.affine:
        parts.append("no γ, β" if d.symbols.layer.beta else "no γ")
    return ", ".join(parts)


def sections(d: Derivation) -> Iterator[Section]:
    """The derivation as sections, in the order notes and the terminal show them.

    Expressions are shown as the notes write them: √σ²_B as σ_B (ε outside the root).
    """
    # A numeric ε is shown as the number (ε = 0 makes the residual of Σ∂ℓ/∂x_i·x̂_i vanish);
    # xreplace rebuilds only what contains ε, so unevaluated sums keep their written order.
    eps = {} if d.options.eps is None else {d.symbols.eps: d.options.eps}

    def shown(e: Any) -> Any:
        return _sigma_shown(d, e.xreplace(eps) if eps and isinstance(e, sp.Basic) else e)

    for sec in _sections(d):
        steps = tuple(Step(st.lhs, shown(st.rhs), st.rule, st.value, st.note) for st in sec.steps)
        yield Section(sec.key, sec.title, sec.intro, steps, sec.outro)


def _tidy(st: Step) -> Step:
    """A backward step with each local derivative's common factor taken out, as the notes
    write it: ∂ℓ/∂σ²_B·(x₁ − μ_B)/2 rather than ∂ℓ/∂σ²_B·(x₁/2 − μ_B/2). Display only."""

    def tidy(term: sp.Expr) -> sp.Expr:
        if not term.is_Mul or not any(f.is_Add for f in term.args):
            return term
        coeff, rest = sp.Integer(1), []
        for f in term.args:
            if f.is_Add:
                content, f = f.as_content_primitive()
                coeff *= content
            if f.is_Number:
                coeff *= f
            else:
                rest.append(f)
        # Unevaluated: evaluating would distribute the coefficient over the sum again.
        return sp.Mul(coeff, *rest, evaluate=False) if coeff != 1 else sp.Mul(*rest)

    terms = [tidy(t) for t in sp.Add.make_args(st.rhs)]
    if len(terms) > MAX_TERMS * 4:  # long sums are abbreviated anyway; keep them cheap
        return st
    return Step(st.lhs, sp.Add(*terms), st.rule, st.value, st.note)


def _sigma_shown(d: Derivation, e: Any) -> Any:
    """``e`` with √σ²_B written σ_B (its powers too); other expressions are left as they are,
    unevaluated ones (whose term order is as the notes write it) included."""
    var, sigma = d.symbols.var, d.symbols.sigma
    if not isinstance(e, sp.Basic) or not e.has(sp.sqrt(var), 1 / sp.sqrt(var)):
        return e
    return e.replace(
        lambda p: p.is_Pow and p.base == var and p.exp.is_Rational and p.exp.q == 2,
        lambda p: sigma ** (2 * p.exp),
    )


def _general_section(d: Derivation) -> Section:
    g = d.general
    assert g is not None
    proved = [n for n, ok in g.verified.items() if ok]
    closed = Step(g.closed_form.lhs, g.closed_form.rhs, "closed form for every m")
    steps = len(g.backward)  # the chain rule's steps: six for batch norm, four for RMS norm
    count = _NUMBERS.get(steps, str(steps))
    return Section(
        "general",
        "General form (any m)",
        "The layer for a group of any size m, each Σⱼ running over j = 1, …, m: the forward pass, "
        f"the {count} steps of the chain rule that carry ∂ℓ/∂y back to x, γ"
        + (" and β" if d.symbols.layer.beta else "")
        + ", and the closed form they add up to."
        + (f" Proved for every m at once: {', '.join(proved)}." if proved else ""),
        (*g.forward, *(Step(st.lhs, st.rhs, st.rule) for st in g.backward), closed),
        "How they were derived: the graph, with m a symbol, is differentiated once "
        "(sympy.diff of x_j by x_i is the Kronecker delta δ_ij, evaluated inside its sum)."
        + (
            " The identities are proved for this m under Proofs (with symbolic m too, for every"
            f" m at once, when m is above {GENERAL_PROOF_MIN_M})."
            if d.m <= GENERAL_PROOF_MIN_M
            else ""
        )
        + (
            f" Below, this m = {d.m}."
            if d.m <= SHORT_MAX_M
            else f" Below, m = {d.m}: the statistics, and each per-element line once, for i = 1."
        ),
    )


_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}


def _distinct(d: Derivation, steps: Sequence[Step]) -> tuple[Step, ...]:
    """``steps`` where they are short (m ≤ SHORT_MAX_M); above, each family of per-element
    lines (x̂ᵢ, yᵢ, ∂ℓ/∂xᵢ, …) by its first element only, said to hold for every i."""
    if d.m <= SHORT_MAX_M:
        return tuple(steps)
    s = d.symbols
    families = [s.x_hat, s.y, s.d_x_hat, s.dx]
    if not s.shared:
        families += [s.dgammas, s.dbetas]
    later = {v for fam in families for v in fam[1:]}
    first = {fam[0] for fam in families}
    out = []
    for st in steps:
        if st.lhs in later:
            continue
        if st.lhs in first:
            same = f"the same for i = 2, …, {len(next(f for f in families if f[0] == st.lhs))}"
            st = Step(st.lhs, st.rhs, f"{st.rule}; {same}" if st.rule else same, st.value, st.note)
        out.append(st)
    return tuple(out)


def _sections(d: Derivation) -> Iterator[Section]:
    o, s = d.options, d.symbols
    decl = s.layer
    train = o.mode == "train"
    if d.general is not None:
        yield _general_section(d)
    if decl.beta:
        then = ", then scale and shift" if o.affine else " (no γ, β: the output is x̂)"
    else:
        then = ", then scale" if o.affine else " (no γ: the output is x̂)"
    stats = (
        f"{decl.stat_words.capitalize()} statistics"
        if decl.stat_words
        else f"Statistics of the group ({decl.group})"
    )
    yield Section(
        "forward",
        (f"Forward pass ({decl.paper})" if decl.paper else "Forward pass")
        if train
        else "Forward pass at inference",
        f"{stats}, normalize{then}."
        if train
        else (
            "The running mean μ_run and variance σ²_run are constants"
            if decl.centred
            else "The running mean square σ²_run is a constant (nothing is subtracted)"
        )
        + f"; normalize{then}.",
        _distinct(d, d.forward),
    )
    yield Section(
        "backward",
        "Backward pass by the chain rule",
        "Each step differentiates one node of the computation graph (sympy.diff) and "
        "multiplies by the gradients of the nodes that use it, "
        + ("in the order of the paper." if decl.paper else "from the output back to x."),
        tuple(_tidy(st) for st in _distinct(d, d.backward)),
        _vanishing(d) if train and decl.centred else "",
    )
    generic, *per_element = d.closed_form
    if d.m > SHORT_MAX_M:
        per_element = []  # the formula for any i is the distinct line
    yield Section(
        "closed_form",
        "Closed form",
        "Collecting the chain rule into one expression per element:",
        (generic, *per_element),
        "✓ proved exactly (closed_form, under Proofs)."
        if d.verified.get("closed_form")
        else "✗ NOT proved (closed_form, under Proofs).",
    )
    if d.m <= EXPLICIT_MAX_M and train and o.values is None and o.eps_placement == "inside":
        yield Section(
            "explicit",
            "Per-element results, fully in "
            + ("x₁, x₂" if d.m == 2 else f"x₁, …, x{str(d.m).translate(_SUB)}"),
            "",
            tuple(Step(sym, val) for sym, val in zip(s.dx, d.dx, strict=True)),
        )
    yield Section(
        "jacobian",
        "Jacobian ∂y/∂x",
        "The m×m matrix J with J_ji = ∂y_j/∂x_i has this structure, where I is the m×m "
        "identity matrix and 𝟙 = (1, …, 1)ᵀ the vector of m ones:",
        (d.jacobian_structure,),
        (
            "Every entry is proved against the chain rule."
            if d.jacobian is not None
            else "Proved through the closed form (∂ℓ/∂x = Jᵀ·∂ℓ/∂y for every ∂ℓ/∂y)."
        )
        + _projector(d),
    )
    if d.identities:
        yield Section(
            "identities",
            "Identities",
            "",
            d.identities,
        )
    if o.values is not None:
        steps: list[Step] = []
        for f, feat in enumerate(d.features):
            label = f" (feature {f + 1})" if len(d.features) > 1 else ""
            x_hat = [Step(a, b, "") for a, b in zip(s.x_hat, feat["x_hat"], strict=True)]
            if train and decl.centred:  # in eval mode the statistics are constants
                steps.append(Step(s.mu, feat["mean"], f"mean{label}"))
                steps.append(Step(s.var, feat["var"], f"variance{label}"))
            elif train:
                steps.append(Step(s.var, feat["var"], f"mean square{label}"))
            elif label:
                x_hat[0] = Step(x_hat[0].lhs, x_hat[0].rhs, label.strip(" ()"))
            steps += x_hat
            steps += [Step(a, b, "") for a, b in zip(s.y, feat["y"], strict=True)]
            steps += [Step(a, b, "") for a, b in zip(s.dx, feat["dx"], strict=True)]
            steps += param_steps(d, feat)
        from bnsym.notes.example_notes import remarks  # what the notes get wrong, put right

        outro = "\n".join(remarks(d, lambda e: expr_text(_sigma_shown(d, e))))
        yield Section("example", "Worked example", _example_intro(d), tuple(steps), outro)


def _projector(d: Derivation) -> str:
    """The projector view of J, for the centred layers with one γ per group (batch and
    instance norm), biased variance, ε inside the root, train mode; "" otherwise."""
    o, s = d.options, d.symbols
    if not (
        s.layer.centred
        and s.shared
        and o.affine
        and o.mode == "train"
        and o.variance == "biased"
        and o.eps_placement == "inside"
    ):
        return ""
    sigma = display_name(s.sigma.name)
    return (
        f" At ε = 0 it is J = (γ/{sigma})·P with P = I − (𝟙·𝟙ᵀ + x̂·x̂ᵀ)/m. Because "
        "Σᵢ x̂ᵢ = 0 (the definition of the mean), 𝟙 and x̂ are orthogonal, and because "
        "Σᵢ x̂ᵢ² = m (the definition of the variance), both have squared length m: so P is the "
        "orthogonal projector off the plane they span, with eigenvalues 0, 0 and 1 (m − 2 "
        f"times), and J's are 0, 0 and γ/{sigma}. 𝟙ᵀ·J = 0 is the identity Σᵢ ∂ℓ/∂xᵢ = 0, "
        "and x̂ᵀ·J = 0 is Σᵢ ∂ℓ/∂xᵢ·x̂ᵢ = 0 at ε = 0; at m = 2 the plane is everything, so "
        "∂ℓ/∂x = 0 for every ∂ℓ/∂y."
    )


def _vanishing(d: Derivation) -> str:
    """Why the variance's term drops out of the mean's adjoint: Σ(x_i − μ) = 0."""
    mu = display_name(d.symbols.mu.name)
    var = display_name(d.symbols.var.name)
    return f"The ∂ℓ/∂{var} term of ∂ℓ/∂{mu} vanishes because Σᵢ(xᵢ − {mu}) = 0."


def param_steps(d: Derivation, feat: dict[str, Any]) -> list[Step]:
    """∂ℓ/∂γ and ∂ℓ/∂β of one feature's worked example: one step each where the group
    shares γ and β, one per γ_k, β_k otherwise; none without them."""
    s = d.symbols
    if not d.options.affine:
        return []

    def each(symbols: tuple[sp.Symbol, ...], values: Any) -> list[Step]:
        if values is None:
            return []
        values = values if isinstance(values, tuple) else (values,)
        return [Step(a, b, "") for a, b in zip(symbols, values, strict=True)]

    dgammas, dbetas = s.dgammas, s.dbetas
    if s.shared and len(d.features) > 1:  # one γ, β per feature: ∂ℓ/∂γ₁, ∂ℓ/∂γ₂, …
        k = next(i for i, other in enumerate(d.features) if other is feat) + 1
        dgammas = (sp.Symbol(f"dgamma{k}"),)
        dbetas = (sp.Symbol(f"dbeta{k}"),)
    return each(dgammas, feat["dgamma"]) + each(dbetas, feat["dbeta"])


def _example_intro(d: Derivation) -> str:
    o = d.options
    assert o.values is not None
    from bnsym.notes.decimals import exact_text

    def vector(given: Any) -> str:  # as typed: 8.9, not 89/10
        return "(" + "; ".join(", ".join(exact_text(v) for v in row) for row in given) + ")"

    text = f"x = {vector(o.values)}"
    if o.dy is not None:
        text += f"; ∂ℓ/∂y = {vector(o.dy)}"
    for name, given in (
        ("γ", o.gamma),
        ("β", o.beta),
        ("μ_run", o.running_mean),
        ("σ²_run", o.running_var),
    ):
        if given is not None:
            text += f"; {name} = {vector(given)}"
    return text + running_source(d) + " — exact arithmetic, decimals beside."


def running_source(d: Derivation) -> str:
    """Where eval mode's running statistics come from when the example gave none."""
    if not d.options.running_from_values:
        return ""
    what = "mean and variance (1/m)" if d.symbols.layer.centred else "mean square"
    return f" (the {what} of these values, as no running statistics were given)"


# --- text ----------------------------------------------------------------------------------


def to_text(d: Derivation, ascii: bool = False, command: str | None = None) -> str:
    """The derivation for a terminal: Unicode math (or plain ASCII), one section per block.

    >>> from bnsym.derivation import derive
    >>> print(to_text(derive(2, eps=0, values="2,4"), ascii=True).splitlines()[0])
    Batch normalization, m = 2: train mode, biased variance (1/m), eps inside the root, eps = 0
    """
    lines = [f"{d.symbols.layer.title}, m = {d.m}: {describe(d)}"]
    if command:
        lines.append(f"command: {command}")
    for sec in sections(d):
        lines += ["", sec.title, "-" * len(sec.title)]
        if sec.intro:
            lines.append(sec.intro)
        for st in sec.steps:
            lhs = expr_text(st.lhs, ascii)
            # Results fully in x_1..x_m and numbers are shown whole; long symbolic sums abridged.
            whole = sec.key in ("explicit", "example")
            rhs = expr_text(st.rhs, ascii, abbreviate=not whole)
            if sec.key == "identities":
                mark = "ok" if ascii else "✓"
                if not d.verified.get(st.rule, False):
                    mark = "FAILED" if ascii else "✗"
                lines += wrap(f"  {lhs} = ", rhs, f"   [{mark} {st.rule}]")
                if st.note:
                    lines.append(f"      {st.note}")
            else:
                if sec.key == "example":
                    rhs += _approx_text(st.rhs, ascii)
                lines += wrap(f"  {lhs} = ", rhs, f"      ({st.rule})" if st.rule else "")
        if sec.key == "example":
            lines += _table_lines(d, ascii)
        if sec.key == "jacobian" and d.jacobian is not None and d.m <= JACOBIAN_SHOWN_M:
            lines += _jacobian_entries(d, ascii)
        if sec.outro:
            lines.append(sec.outro)
        if sec.key == "backward":
            lines += _graph_lines(d, ascii)
    lines += ["", "Proofs", "------"]
    for name, ok in d.verified.items():
        mark = ("ok  " if ok else "FAIL") if ascii else ("✓" if ok else "✗")
        reason = proof_reason(d, name)
        if reason is None:
            lines.append(f"  {mark} {name}: {d.proof_methods[name]}")
        else:
            lines.append(f"  {mark} {name}: {reason}")
            lines.append(f"      checked by machine: {d.proof_methods[name]}")
    text = "\n".join(lines) + "\n"
    if ascii:
        text = _to_ascii(text)
    return text


def _approx_text(value: Any, ascii: bool) -> str:
    """ " ≈ 1.41421" beside an exact number that is not an integer (nothing otherwise)."""
    from bnsym.notes.decimals import approx_expr, decimal_text

    text = decimal_text(value)
    if text is None:
        rounded = approx_expr(value)
        if rounded is None:
            return ""
        return f" ~ {expr_text(rounded, ascii)}" if ascii else f" ≈ {expr_text(rounded)}"
    return f" ~ {text}" if ascii else f" ≈ {text.replace('-', '−')}"


#: The computation graph's section: its title and what the drawing shows.
GRAPH_TITLE = "Computation graph"
GRAPH_INTRO = (
    "Each arrow feeds a node into the next, drawn for element i (every element has the same "
    "arrows), with its local derivative. The backward pass runs the arrows the other way: "
    "along each, the adjoint of the node it points to, times the local derivative, is added "
    "to the adjoint of the node it starts from."
)


def _graph_lines(d: Derivation, ascii: bool) -> list[str]:
    """The computation graph (:mod:`bnsym.notes.picture`) as a small drawing and its arrows."""
    from bnsym.notes.picture import ascii_drawing, elements_line, graph_picture

    def show(e: Any) -> str:
        return expr_text(e, ascii)

    drawing = ascii_drawing(graph_picture(d), show, ascii, WIDTH, elements_line(d, show))
    return ["", GRAPH_TITLE, "-" * len(GRAPH_TITLE), GRAPH_INTRO, *drawing]


def _table_lines(d: Derivation, ascii: bool) -> list[str]:
    """The worked example's tables (one per feature), decimals in aligned columns."""
    from bnsym.notes.decimals import TABLE_DIGITS
    from bnsym.notes.table import example_table

    assert d.options.values is not None
    lines: list[str] = []
    for f in range(len(d.options.values)):
        table = example_table(d, f)
        label = f"feature {f + 1}, " if len(d.options.values) > 1 else ""
        lines += ["", f"  In decimals ({label}{TABLE_DIGITS} significant digits):"]
        cells = [[h[1 if ascii else 0] for h in table.headers]]
        cells += [[expr_text(c, ascii) for c in row] for row in table.rows]
        widths = [max(len(row[k]) for row in cells) for k in range(len(cells[0]))]
        for r, row in enumerate(cells):
            lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
            if r == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def proof_reason(d: Derivation, name: str) -> str | None:
    """What the proof ``name`` claims and why it holds, in the notes' notation
    (:mod:`bnsym.notes.proof_prose`); None where no sentence is written for it."""
    from bnsym.notes.proof_prose import why

    s = d.symbols
    train = d.options.mode == "train"
    names = (s.mu, s.var, s.sigma) if train else (s.running_mean, s.running_var, None)
    mu, var = display_name(names[0].name), display_name(names[1].name)
    sigma = display_name(s.sigma.name) if train else "√(σ²_run + ε)"
    placement = d.options.eps_placement
    if not train:
        sigma_shown = display_name(s.running_var.name).join(("√", ""))
    else:
        sigma_shown = sigma
    added = {"inside": None, "outside": "ε", "sqrt-outside": "√ε"}[placement]
    root = f"({sigma_shown} + {added})" if added else None  # x̂ divides by σ + ε or σ + √ε
    return why(
        name,
        mu=mu,
        var=var,
        sigma=sigma,
        centred=s.layer.centred,
        train=train,
        root=root,
        shared=s.shared or not d.options.affine,
        unbiased=d.options.variance == "unbiased",
        layer=s.layer,
        affine=d.options.affine,
    )


#: Text lines are wrapped to this many characters, at a + or − outside any parentheses.
WIDTH = 100


def wrap(prefix: str, rhs: str, suffix: str = "", width: int = WIDTH) -> list[str]:
    """``prefix + rhs + suffix`` as lines of at most ``width`` characters where possible:
    ``rhs`` breaks before a top-level + or −, continuation lines indented under it.

    >>> wrap("  y = ", "a + b − (c + d) + e", "  (rule)", width=18)
    ['  y = a + b', '      − (c + d)', '      + e  (rule)']
    """
    if len(prefix) + len(rhs) + len(suffix) <= width:
        return [prefix + rhs + suffix]
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(rhs):
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if depth == 0 and i > start and rhs[i : i + 3] in (" + ", " − ", " - "):
            pieces.append(rhs[start:i])
            start = i + 1
    pieces.append(rhs[start:])
    indent = " " * len(prefix)
    lines, current = [], prefix + pieces[0]
    for piece in pieces[1:]:
        if len(current) + 1 + len(piece) > width and current.strip():
            lines.append(current)
            current = indent + piece
        else:
            current += " " + piece
    if len(current) + len(suffix) > width and suffix.strip():
        lines += [current, indent + suffix.strip()]
    else:
        lines.append(current + suffix)
    return lines


#: Up to this m the text also lists the Jacobian entry by entry.
JACOBIAN_SHOWN_M = 4


def factored_jacobian(d: Derivation) -> tuple[sp.Expr, sp.Matrix]:
    """The Jacobian as ``factor · M``: the factor common to every entry taken out, and the
    denominators of the entries cleared into it (3/4 − x̂₁²/4 -> 3 − x̂₁², over 4 outside).
    √σ²_B is written σ_B, as everywhere in the notes. Requires ``d.jacobian``."""
    jac = d.jacobian
    assert jac is not None
    eps = {} if d.options.eps is None else {d.symbols.eps: d.options.eps}
    jac = jac.applyfunc(lambda e: _sigma_shown(d, e.xreplace(eps)))
    entries = [e for e in jac if e != 0]
    common = set(sp.Mul.make_args(entries[0]))
    for e in entries[1:]:
        common &= set(sp.Mul.make_args(e))
    factor = sp.Mul(*sorted(common, key=sp.default_sort_key))
    inner = jac.applyfunc(lambda e: sp.expand(e / factor))
    denominators = [sp.Rational(t.as_coeff_Mul()[0]).q for e in inner for t in sp.Add.make_args(e)]
    scale = sp.ilcm(*denominators) if len(denominators) > 1 else denominators[0]
    if scale != 1:
        inner = inner.applyfunc(lambda e: sp.expand(e * scale))
        factor = factor / scale
    return factor, inner


def _jacobian_entries(d: Derivation, ascii: bool) -> list[str]:
    """J_ji = ∂y_j/∂x_i, one entry a line, the common factor taken out."""
    factor, inner = factored_jacobian(d)
    out = [f"  entry by entry, J = {expr_text(factor, ascii)} × M with"]
    for j in range(d.m):
        for i in range(d.m):
            name = f"M{j + 1}{i + 1}"
            out.append(
                f"    {name if ascii else name.translate(_SUB)} = {expr_text(inner[j, i], ascii)}"
            )
    return out


_ASCII = {
    "\u1e21": "gbar",  # ḡ
    "ℓ₂": "l2",
    "ℓ₃": "l3",
    "∈": " in ",
    "≠": "!=",
    "≈": "~",
    "𝟙𝟙ᵀ": "1 1^T",
    "ε": "eps",
    "γ": "gamma",
    "β": "beta",
    "μ": "mu",
    "ν": "nu",
    "σ²": "sigma2",
    "σ": "sigma",
    "√": "sqrt",
    "Σ": "sum",
    "ᵢ": "_i",
    "ⱼ": "_j",
    "∂ℓ/∂": "dl/d",
    "x̂": "xhat",
    "−": "-",
    "·": "*",
    "—": "-",
    "≥": ">=",
    "≤": "<=",
    "→": "->",
    "×": "x",
    "ᵀ": "^T",
    "✓": "ok",
    "✗": "X",
    "₁": "1",
    "𝟙": "1",
    "²": "^2",
    "³": "^3",
    "∂": "d",
    "ℓ": "l",
    "…": "...",
    "±": "+/-",
    "δ": "delta",
    "ₖ": "_k",
    # forward mode (bnsym.notes.modes): ẋ is xdot, δẋ del xdot, x̄ xbar
    "\u0307": "dot",
    "\u0304": "bar",
    "Ḋ": "Ddot",
    "ẋ": "xdot",
    "ẏ": "ydot",
    "ḋ": "ddot",
    "θ": "theta",
    "ρ": "rho",
    "Δ": "Delta ",
    "⟨": "<",
    "⟩": ">",
    "˙": "dot",
    "¯": "bar",
    "∘": "o",
}


def _to_ascii(text: str) -> str:
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    text = text.translate(str.maketrans("₀₂₃₄₅₆₇₈₉", "023456789"))
    return text


# The JSON output moved to bnsym.notes.json_doc; these names stay importable from here.
from bnsym.notes.json_doc import load_json, to_json  # noqa: E402
