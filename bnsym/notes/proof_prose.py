"""Each proof as a student reads it: what is claimed, in the notes' notation, and why it
holds, in a sentence or two of mathematics. How the machine checked it (the proof method
recorded by :mod:`bnsym.proofs.prover`) is shown after it, as a note.

The sentences are written with the statistics' names the notes use (μ_B, σ²_B for batch
norm, μ, σ² for the family, ν² for RMS norm), passed in by the renderer.

>>> why("mean_output_beta", mu="μ", var="σ²", sigma="σ", centred=True)[:40]
'Claim: (1/m)·Σᵢ yᵢ = β. Why: Σᵢ x̂ᵢ = Σᵢ'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from bnsym.family.layers import Layer

__all__ = ["why"]


def why(
    name: str,
    *,
    mu: str,
    var: str,
    sigma: str,
    centred: bool,
    train: bool = True,
    root: str | None = None,
    shared: bool = True,
    unbiased: bool = False,
    layer: Layer | None = None,
    affine: bool = True,
) -> str | None:
    """The claim and its reason for the proof called ``name``; None for a proof not known
    here (the machine's note is then shown alone). In eval mode ``mu`` and ``var`` are the
    running statistics' names; ``root`` is what x̂ divides by (√(σ² + ε) unless given, e.g.
    σ + ε with ε outside the root); ``shared``: one γ, β for the whole group (batch and
    instance norm), else one per element or channel; ``unbiased``: the variance divides by
    m − 1. ``layer`` (a :class:`~bnsym.family.layers.Layer`) gives the layer's own words: γ per
    element or channel, whether there is a β, what a group is called, the paper's names;
    ``affine``: False where the layer has no γ and β (y = x̂)."""
    from bnsym.proofs.running import group_words  # what a group is called: "batch", "group"

    root = root or f"√({var} + ε)"
    params = layer.params if layer is not None else ("shared" if shared else "element")
    has_beta = affine and (layer.beta if layer is not None else True)
    index = {"shared": "", "element": "ᵢ", "channel": "_c"}[params] if not shared else ""
    gamma, beta = ("γ" + index, "β" + index) if affine else ("1", "0")
    per = {"element": "one γ per element", "channel": "one γ per channel"}.get(params, "")
    one, many = group_words(layer) if layer is not None else ("group", "groups")
    inference = layer.paper_inference if layer is not None else ""
    stat = var.partition("²")[0]  # σ, or ν where nothing is subtracted
    sub = var.partition("²")[2]  # the statistics' subscript: σ²_B's _B
    # the training statistics' names (the running variance estimates from them): σ²_B, E_B
    suffix = layer.stat_suffix if layer is not None else sub
    var_train = f"{'σ' if centred else 'ν'}²{suffix}"
    root_sq = f"({var} + ε)" if root == f"√({var} + ε)" else f"{root}²"
    if not train and name == "closed_form":
        return (
            f"Claim: ∂ℓ/∂xᵢ = γ·∂ℓ/∂yᵢ/{root}. Why: the running statistics are constants, "
            "so xᵢ reaches ℓ only through x̂ᵢ and yᵢ, each a multiplication: the chain rule "
            f"multiplies 1/{root} by γ."
        )
    if centred:
        shift = (
            f"adding the same c to every xᵢ moves {mu} by c and leaves xᵢ − {mu} and {var} as "
            "they are, so y does not change"
        )
        scaled = f"xᵢ → {mu} + a·(xᵢ − {mu})"
        along = f"Σᵢ ∂ℓ/∂xᵢ·(xᵢ − {mu}) = {sigma}·Σᵢ ∂ℓ/∂xᵢ·x̂ᵢ"
    else:
        scaled = "xᵢ → a·xᵢ"
        along = f"Σᵢ ∂ℓ/∂xᵢ·xᵢ = {sigma}·Σᵢ ∂ℓ/∂xᵢ·x̂ᵢ"
    reasons = {
        "closed_form": (
            "∂ℓ/∂xᵢ equals the closed form above. Why: substitute the adjoints of the "
            "statistics into the chain rule's ∂ℓ/∂xᵢ, write "
            f"{'xᵢ − ' + mu if centred else 'xᵢ'} as {root}·x̂ᵢ, and collect over one "
            "denominator"
            + (
                f"; the ∂ℓ/∂{var} term of ∂ℓ/∂{mu} drops out because Σⱼ(xⱼ − {mu}) = 0, "
                f"the definition of {mu}."
                if centred
                else "."
            )
        ),
        "chain_rule": (
            "the backward pass's ∂ℓ/∂xᵢ is Σⱼ ∂ℓ/∂yⱼ·∂yⱼ/∂xᵢ. Why: that is the chain rule "
            "for ℓ(y(x)); the graph only splits each ∂yⱼ/∂xᵢ into the local derivatives "
            "along the paths from xᵢ to yⱼ, and summing products over the paths is the same "
            "chain rule again."
        ),
        "jacobian_structure": (
            "J has the structure shown. Why: J_ji = ∂yⱼ/∂xᵢ is the coefficient of ∂ℓ/∂yⱼ "
            "in ∂ℓ/∂xᵢ, read off the closed form."
        ),
        "jacobian_symmetric": (
            f"J_ij = J_ji. Why: J is {'γ' if affine else '1'}/{root} times "
            + (
                ("a combination of I, 𝟙·𝟙ᵀ and x̂·x̂ᵀ" if centred else "a combination of I and x̂·x̂ᵀ")
                + ", and each of these is symmetric."
                if train
                else "the identity matrix I, which is symmetric."
            )
        ),
        "sum_dx_zero": (
            "Σᵢ ∂ℓ/∂xᵢ = 0. Why: "
            + (shift if centred else "")
            + "; Σᵢ ∂ℓ/∂xᵢ is the derivative of ℓ in that direction (along 𝟙), so it is 0."
        ),
        "sum_dx_xhat": (
            f"Σᵢ ∂ℓ/∂xᵢ·x̂ᵢ is the residual shown, 0 at ε = 0. Why: at ε = 0 the scaling "
            f"{scaled} (a > 0) leaves x̂ and so y unchanged, and the derivative of ℓ in that "
            f"direction is {along}; with ε > 0 the denominator {root} does not scale by a, which "
            "leaves the residual."
        ),
        "mean_output_beta": (
            f"(1/m)·Σᵢ yᵢ = β. Why: Σᵢ x̂ᵢ = Σᵢ(xᵢ − {mu})/{root} = 0 by the definition of "
            f"{mu}, so (1/m)·Σᵢ yᵢ = γ·0 + β."
        ),
        "scale_shift_invariance": (
            f"at ε = 0, x̂ does not change when every xᵢ becomes a·xᵢ + c (a > 0). Why: {mu} "
            f"becomes a·{mu} + c and {var} becomes a²·{var}, so xᵢ − {mu} and {sigma} are "
            "both multiplied by a."
        ),
        "scale_invariance": (
            f"at ε = 0, x̂ does not change when every xᵢ becomes a·xᵢ (a > 0). Why: {var} "
            f"becomes a²·{var}, so xᵢ and {sigma} are both multiplied by a."
        ),
        "undo_normalization": (
            f"{'' if shared else 'every '}{gamma} = {root}"
            + (
                f" and {'' if shared else 'every '}{beta} = {mu if centred else 0}"
                if has_beta
                else ""
            )
            + (" give" if has_beta or shared else " gives")
            + " back yᵢ = xᵢ. Why: "
            + (
                f"{gamma}·x̂ᵢ + {beta} = {root}·(xᵢ − {mu})/{root} + {mu} = xᵢ."
                if has_beta and centred
                else f"{gamma}·x̂ᵢ = {root}·(xᵢ − {mu})/{root} = xᵢ − {mu}, which is xᵢ at {mu} = 0."
                if centred
                else f"{gamma}·x̂ᵢ + {beta} = {root}·xᵢ/{root} + 0 = xᵢ."
                if has_beta
                else f"{gamma}·x̂ᵢ = {root}·xᵢ/{root} = xᵢ."
            )
        ),
        # the lecture notes' other forms (bnsym.proofs.forms)
        "output_spread": (
            (
                f"(1/m)·Σᵢ (yᵢ − β)² = γ²·{var}/{root_sq} for the variance that divides by m. "
                f"Why: yᵢ − β = γ·x̂ᵢ = γ·(xᵢ − {mu})/{root}, and the mean of the (xᵢ − {mu})² "
                f"is that variance; so y's standard deviation is |γ|·{sigma}/{root}, close to "
                "|γ| (not √γ): γ sets the spread as β sets the mean."
            )
            if centred and shared
            else (
                f"(1/m)·Σᵢ x̂ᵢ² = {var}/{root_sq}. Why: x̂ᵢ = (xᵢ − {mu})/{root}, and the mean "
                f"of the (xᵢ − {mu})² is {var}"
                + (
                    f"; with {per}, each {'yᵢ − ' + beta if has_beta else 'yᵢ'} is "
                    f"{gamma}·x̂ᵢ, so the spread of y is that of x̂ scaled element by element."
                    if per and affine
                    else "."
                )
            )
            if centred
            else (
                f"(1/m)·Σᵢ x̂ᵢ² = {var}/{root_sq}. Why: x̂ᵢ = xᵢ/{root}, and the mean of the xᵢ² "
                f"is {var}" + (f"; with {per}, each yᵢ is {gamma}·x̂ᵢ." if per and affine else ".")
            )
        ),
        "undo_population": (
            "with γ = √(Var[x] + ε) and β = E[x] (ε placed as in this layer), the inference "
            "layer γ·(x − E[x])/√(Var[x] + ε) + β is x for every x. Why: the same cancellation "
            f"as for one {one}, with constants instead of the {one}'s statistics; the {one}'s "
            f"version needs γ and β equal to this {one}'s {root} and {mu}, which change from "
            f"{one} to {one} while γ and β do not."
        ),
        "sqrt_outside_differs": (
            f"({stat} + √ε)² = {stat}² + ε + 2·{stat}·√ε. Why: expand the square; the cross term "
            f"2·{stat}·√ε is positive when {stat} > 0 and ε > 0, so {stat} + √ε > "
            f"√({stat}² + ε): the two denominators, and so the two layers, differ."
        ),
        "constant_batch_limit": (
            "at a group whose values all equal c"
            + ("" if centred else " = 0")
            + f", ∂ℓ/∂xᵢ = ({'γ' if shared else '1'}/e)·("
            + ("∂ℓ/∂yᵢ" if shared else f"{gamma}·∂ℓ/∂yᵢ")
            + (f" − (1/m)·Σⱼ {'' if shared else 'γⱼ·'}∂ℓ/∂yⱼ)" if centred else ")")
            + ", with e the ε or √ε added to the root"
            + ("" if shared or not centred else " and γⱼ the γ of xⱼ")
            + ". "
            f"Why: write x = c + h; then {'yᵢ − ' + beta if has_beta else 'yᵢ'} = "
            f"{gamma}·uᵢ/(s + e) = ({gamma}/e)·uᵢ − {gamma}·uᵢ·s/(e·(s + e)), where "
            + ("uᵢ = hᵢ − (1/m)·Σⱼ hⱼ" if centred else "uᵢ = hᵢ")
            + f" and s = √{stat}²(h); the last term is at most a constant times |h|², since "
            f"|uᵢ| ≤ |h| and s ≤ |h|. So y is differentiable at c with J = "
            + ("(γ/e)" if shared else "(diag(γ)/e)")
            + ("·(I − 𝟙𝟙ᵀ/m)" if centred else "" if not shared else "·I")
            + ", although s, a root of a square, is not; ∂ℓ/∂x = Jᵀ·∂ℓ/∂y."
        ),
        "constant_batch_no_limit": (
            "at ε = 0, y has no limit at a group whose values all equal c"
            + ("" if centred else " = 0")
            + ", so ∂ℓ/∂xᵢ does not exist there. Why: at ε = 0, x̂ = "
            + (f"(x − {mu})/{stat}" if centred else f"x/{stat}")
            + f" does not change when x − {'c' if centred else '0'} is scaled by t > 0 and "
            "changes sign when it is scaled by −t; so y takes the values "
            f"{gamma}·x̂ᵢ(h){' + ' + beta if has_beta else ''} and "
            f"−{gamma}·x̂ᵢ(h){' + ' + beta if has_beta else ''} at c + t·h and c − t·h, "
            "points as close to c as we like, and has no limit at c."
        ),
        "inference_fold": (
            f"yᵢ = ({gamma}/{root})·xᵢ + ({beta} − {gamma}·{mu}/{root}). Why: expand "
            f"{gamma}·(xᵢ − {mu})/{root} + {beta}; {mu} and {var} are constants at inference, "
            "so the scale and the shift are computed once, not for every input."
            if centred
            else f"yᵢ = ({gamma}/{root})·xᵢ{' + ' + beta if has_beta else ''}. Why: {gamma}·xᵢ/"
            f"{root}{' + ' + beta if has_beta else ''} with {var} a constant at inference, so "
            "the scale is computed once, not for every input (nothing is subtracted)."
        ),
        "running_var_unbiased": (
            (
                f"E{suffix}[{var_train}] = Var[x] when the m values of a {one} are independent "
                f"with variance Var[x], for this {var_train}, which divides by m − 1. Why: with "
                "zᵢ = xᵢ − E[x] and w = (1/m)·Σᵢ zᵢ, "
                f"{var_train} = (1/(m − 1))·(Σᵢ zᵢ² − m·w²), E[zᵢ²] = Var[x] and E[w²] = Var[x]/m; "
                f"so E{suffix}[{var_train}] = (m·Var[x] − Var[x])/(m − 1) = Var[x]: it is unbiased."
            )
            if unbiased
            else (
                f"E{suffix}[{var_train}] = (m − 1)/m·Var[x] when the m values of a {one} are "
                f"independent with variance Var[x]. Why: with zᵢ = xᵢ − E[x] and "
                f"w = (1/m)·Σᵢ zᵢ, {var_train} = (1/m)·Σᵢ zᵢ² − w², E[zᵢ²] = Var[x] and E[w²] = "
                f"Var[x]/m; so m/(m − 1)·E{suffix}[{var_train}] = Var[x], which is why "
                + (f"{inference}" if inference else "the running variance")
                + " multiplies by m/(m − 1)."
            )
        ),
        "explicit_results": (
            "the results written in x₁, …, x_m alone are the graph's. Why: they are the "
            "graph's steps with every node replaced by its definition."
        ),
    }
    text = reasons.get(name)
    return None if text is None else "Claim: " + text
