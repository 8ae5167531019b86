"""What a worked example's notes say beside the numbers, where lecture notes go wrong.

Some lecture notes define the variance with 1/(m − 1) next to an example that divides by m,
write the output's spread as √γ, or write √(σ² + ε) = σ + √ε. The notes bnsym produces for
such an example say what is right, in numbers of the example itself: which divisor this layer
uses and what the other would give, the spread (1/m)·Σ(y_i − β)² = γ²·σ²/(σ² + ε), what the
sqrt-outside layer's x̂ is beside Algorithm 1's, and, at a constant batch with ε outside the
root, that ∂ℓ/∂x_i is the limit. The caller passes ``show`` (an expression as text), so that
this module does not depend on the renderers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

from bnsym.notes.decimals import decimal_text

__all__ = ["remarks"]


def _with_decimal(value: sp.Expr, show: Callable[[Any], str]) -> str:
    text = decimal_text(value)
    return show(value) + ("" if text is None else f" ≈ {text.replace('-', '−')}")


def _times(value: sp.Expr, what: str, show: Callable[[Any], str]) -> str:
    """value·what, with its decimal: γ², 3/4·γ² ≈ 0.75·γ²."""
    if value == 1:
        return what
    text = decimal_text(value)
    approx = "" if text is None else f" ≈ {text.replace('-', '−')}·{what}"
    return f"{show(value)}·{what}{approx}"


def remarks(d: Any, show: Callable[[Any], str]) -> list[str]:
    """One sentence per remark for the worked example of ``d`` (a Derivation with values)."""
    o, s = d.options, d.symbols
    if o.values is None or o.mode != "train":
        return []
    centred = s.layer.centred
    eps = s.eps if o.eps is None else o.eps
    out: list[str] = []
    for f, (row, feat) in enumerate(zip(o.values, d.features, strict=True)):
        label = f"Feature {f + 1}: " if len(o.values) > 1 else ""
        m = o.m
        mean = sp.Add(*row) / m if centred else sp.Integer(0)
        squares = sp.Add(*[(x - mean) ** 2 for x in row])
        if centred and squares != 0:
            biased, unbiased = squares / m, squares / (m - 1)
            if o.variance == "biased":
                out.append(
                    f"{label}σ²_B divides Σᵢ(xᵢ − μ_B)² = {show(squares)} by m = {m}, as "
                    f"Algorithm 1 does: σ²_B = {_with_decimal(biased, show)}. Dividing by "
                    f"m − 1 = {m - 1} gives {_with_decimal(unbiased, show)}, the variance of "
                    "another layer (--variance unbiased), and Algorithm 2's estimate of Var[x] "
                    "for inference; a formula with 1/(m − 1) and numbers divided by m do not "
                    "describe the same layer."
                )
            else:
                out.append(
                    f"{label}σ²_B divides Σᵢ(xᵢ − μ_B)² = {show(squares)} by m − 1 = {m - 1} "
                    f"here (--variance unbiased): σ²_B = {_with_decimal(unbiased, show)}; "
                    f"Algorithm 1 divides by m = {m}: {_with_decimal(biased, show)}, a "
                    "different layer."
                )
        spread = sp.nsimplify(sp.together(sp.Add(*[xh**2 for xh in feat["x_hat"]]) / m))
        if centred and s.shared and o.affine and spread.is_number and spread != 0:
            out.append(
                f"{label}The spread of the output: (1/m)·Σᵢ(yᵢ − β)² = γ²·(1/m)·Σᵢ x̂ᵢ² = "
                f"{_times(spread, 'γ²', show)}, so y's standard deviation is "
                f"{_times(sp.sqrt(spread), '|γ|', show)} — about |γ|, not √γ: γ scales the "
                "spread of x̂ (which is about 1), as β sets the mean."
            )
        if o.eps_placement == "sqrt-outside" and feat["var"] != 0:
            var = feat["var"]
            i = max(range(m), key=lambda k: abs(float(row[k] - mean)))
            here = feat["x_hat"][i]
            inside = (row[i] - mean) / sp.sqrt(var + eps)
            sub = str(i + 1).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
            diff = sp.nsimplify(inside - here) if (inside - here).is_number else inside - here
            out.append(
                f"{label}This layer divides by σ_B + √ε, not √(σ²_B + ε), and they differ: "
                f"x̂{sub} = {_with_decimal(here, show)} here, while Algorithm 1's x̂{sub} = "
                f"{_with_decimal(inside, show)}; the difference is {_with_decimal(diff, show)}"
                + (" (0 only at ε = 0)." if o.eps is None or o.eps != 0 else " (0 at ε = 0).")
            )
        if o.eps_placement != "inside" and feat["var"] == 0:
            e = "√ε" if o.eps_placement == "sqrt-outside" else "ε"
            what = "are all equal" if centred else "are all 0"
            out.append(
                f"{label}The values {what}, so σ = √σ² = 0, where the root has no "
                "derivative; the layer has one: ∂ℓ/∂xᵢ above is the limit "
                f"(γ/{e})·(∂ℓ/∂yᵢ"
                + (" − (1/m)·Σⱼ ∂ℓ/∂yⱼ)" if centred else ")")
                + " (constant_batch_limit, under Identities)."
            )
    return out
