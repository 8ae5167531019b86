"""Forward mode and its compositions with reverse mode in every output format of ``bnsym derive``.

``sections(md)`` lists what is shown, in order — the JVP's walk and closed form, the form for
every m, at order 2 the jvp of the jvp, the jvp of the vjp (the Hessian-vector product) and
the vjp of the jvp with their closed forms, the identities that tie them to one tensor, at
order 3 the third derivative along the forward chain — and ``to_text``, ``json_obj``,
``to_latex`` and ``to_markdown`` write them; the ``with_*`` functions append them to the
document of the same format (:mod:`bnsym.notes.formats`, the column ``modes``). JSON: under
the keys ``"forward_mode"``, ``"second_order"`` and ``"forward_third_order"``, read back by
:func:`bnsym.load_json`. Symbols are written through :data:`bnsym.notes.text.DISPLAY` (ẋ, γ̇,
δẏ, x̄, …), so that every format prints mathematics, not internal names.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import TYPE_CHECKING, Any

import sympy as sp

from bnsym.core.cutoffs import GENERAL_PROOF_MIN_M, SHORT_MAX_M
from bnsym.core.graph import Step
from bnsym.family.words import own_words
from bnsym.notes import latex as notes
from bnsym.notes import text as render
from bnsym.notes.text import Section

if TYPE_CHECKING:  # pragma: no cover - the renderers never import the proofs' types at run time
    from bnsym.proofs.modes import Composition, ModesDerivation

__all__ = [
    "json_obj",
    "sections",
    "to_latex",
    "to_markdown",
    "to_text",
    "with_json",
    "with_latex",
    "with_markdown",
    "with_text",
]

#: What each composition is called in the notes' titles.
TITLES = {
    "f": "Forward mode (JVP): the chain rule walked forward",
    "ff": "Forward over forward (the jvp of the jvp)",
    "fr": "Forward over reverse (the jvp of the vjp): the Hessian-vector product",
    "rf": "Reverse over forward (the vjp of the jvp)",
    "fff": "Third order along the forward chain (the jvp of the jvp of the jvp)",
}

INTROS = {
    "f": "Tangents ẋ_i, γ̇, β̇ of the inputs are pushed forward through the same graph, node by "
    "node: each node's tangent is Σ over what it reads of ∂(node)/∂(input)·(its tangent), "
    "with ∂ from sympy.diff of the node's own definition — the chain rule walked forward.",
    "ff": "The forward graph and its tangent steps are one graph; pushed forward along a "
    "second direction δx, δγ, δβ (with δẋ, δγ̇, δβ̇ the tangents of the first tangents, as "
    "JAX composes jvp with jvp), each δẏ_i is the second derivative of y_i along ẋ and δx "
    "plus the JVP along δẋ.",
    "fr": "The backward graph pushed forward along ẋ, γ̇, β̇ (∂ℓ/∂y held fixed): the tangent "
    "(·)˙ of every adjoint. The tangents of ∂ℓ/∂x, ∂ℓ/∂γ and ∂ℓ/∂β are the Hessian-vector "
    "product T[∂ℓ/∂y; ·, ẋ]; that of ∂ℓ/∂β is 0 (the backward does not read x in it).",
    "rf": "The forward-mode graph (the forward graph and its tangent steps) walked back from "
    "cotangents ẏ̄_i of the tangents ẏ_i: x̄, γ̄, β̄ are the gradients of Σ ẏ̄_i·ẏ_i with "
    "respect to x, γ, β, and ẋ̄, γ̇̄, β̇̄ those with respect to the tangents.",
    "fff": "The graph of order 2 pushed forward once more, along a third direction Δx, Δγ, Δβ "
    "(with the Δ of every earlier tangent): Δδẏ_i, the third derivative along ẋ, δx, Δx plus "
    "the lower-order terms of the tangents of tangents.",
}

CLOSED = {
    "f": "Collected: with D the denominator of x̂, μ̇ = mean(ẋ), Ḋ = k·r·Σ_j x̂_j·ẋ_j (k = 1/m, or "
    "1/(m − 1) for the unbiased variance; r = 1 with ε inside the root, D/σ outside), "
    "x̂̇_i = (ẋ_i − μ̇ − x̂_i·Ḋ)/D = P_r(ẋ)_i/D and ẏ_i = γ_i·x̂̇_i + γ̇_i·x̂_i + β̇_i. "
    "The coefficient of x̂_i·Σ_j ẋ_j·x̂_j is k·r, 1/m only for the biased variance with ε "
    "inside the root. No mean for a layer that is not centred; in eval mode μ̇ = Ḋ = 0.",
    "ff": "From x̂·D = x − μ differentiated twice: with ḋ_i = ẋ_i − μ̇ and B = k·Σ_j ḋ_j·δd_j, "
    "δḊ = r·(B − Ḋ·δD)/D + k·r·Σ_j x̂_j·δẋ_j, δx̂̇_i = (δẋ_i − mean(δẋ) − x̂̇_i·δD − δx̂_i·Ḋ − "
    "x̂_i·δḊ)/D, and δẏ_i = γ_i·δx̂̇_i + δγ_i·x̂̇_i + γ̇_i·δx̂_i + δγ̇_i·x̂_i + δβ̇_i.",
    "fr": "With g = γ·∂ℓ/∂y, h = γ̇·∂ℓ/∂y, S_g = Σ_j g_j·x̂_j and q = Σ_j g_j·ḋ_j: the tangent "
    "of ∂ℓ/∂x_i is P_r(h)_i/D − Ḋ·P_r(g)_i/D² − (k·r/D²)·(S_g·ḋ_i + q·x̂_i − (1 + r)·S_g·Ḋ·x̂_i), "
    "of ∂ℓ/∂γ the sum of ∂ℓ/∂y_i·x̂̇_i over the values of each γ, of ∂ℓ/∂β 0.",
    "rf": "The two forms above at the cotangent ẏ̄: (x̄, γ̄, β̄) is the Hessian-vector product at "
    "ẏ̄ along ẋ, and (ẋ̄, γ̇̄, β̇̄) is the backward at ẏ̄ (P_r(γ·ẏ̄)/D, Σ ẏ̄·x̂, Σ ẏ̄).",
    "fff": "The same walk along Δ over the closed forms of orders 1 and 2 (their sums are "
    "nodes too): the third order in those sums, proved equal to the walk above.",
}


def _own_words(text: str, md: ModesDerivation) -> str:
    """``text`` in the layer's own words (:func:`bnsym.family.words.own_words`)."""
    d = md.derivation
    layer = d.symbols.layer
    return own_words(text, centred=layer.centred, beta=layer.beta and d.options.affine)


def _short(md: ModesDerivation, steps: tuple[Step, ...] | list[Step]) -> tuple[Step, ...]:
    """``steps``, or above m = SHORT_MAX_M each family of per-element lines (a name with
    several indices: x̂̇₁ … x̂̇_m) by its first."""
    if md.derivation.m <= SHORT_MAX_M:
        return tuple(steps)
    index = [re.fullmatch(r"(.*?)(\d+)", st.lhs.name) for st in steps]
    stems: dict[str, int] = {}
    for hit in index:
        if hit:
            stems[hit.group(1)] = stems.get(hit.group(1), 0) + 1
    out = []
    for st, hit in zip(steps, index, strict=True):
        if hit and stems[hit.group(1)] > 1:
            if int(hit.group(2)) > 1:
                continue
            rule = "the same for every index" + (f"; {st.rule}" if st.rule else "")
            st = Step(st.lhs, st.rhs, rule, st.value, st.note)
        out.append(st)
    return tuple(out)


def sections(md: ModesDerivation) -> list[Section]:
    out: list[Section] = []
    f = md.composition("f")
    shown = {st.lhs for st in f.steps} if f else set()
    for c in md.compositions:
        steps = c.steps
        if c.word == "fr":  # the forward nodes' tangents are the JVP's, shown above
            steps = tuple(st for st in c.steps if st.lhs not in shown)
        outro = ""
        d = md.derivation
        if c.word == "f" and d.options.mode == "train" and d.symbols.layer.centred:
            mu = render.display_name(d.symbols.mu.name)
            mu_dot, var_dot = (
                render.display_name("dot" + v.name) for v in (d.symbols.mu, d.symbols.var)
            )
            outro = (
                f"The {mu_dot} term of {var_dot} vanishes because Σᵢ(xᵢ − {mu}) = 0; the closed "
                "form below drops it."
            )
        out.append(
            Section(
                f"modes_{c.word}",
                TITLES[c.word],
                _own_words(INTROS[c.word], md),
                _short(md, steps),
                outro,
            )
        )
        if c.closed_form:
            key = f"modes_{c.word}_closed_form"
            title = f"{TITLES[c.word].split(':')[0].split(' (')[0]}: closed form"
            closed = _own_words(CLOSED[c.word], md)
            out.append(Section(key, title, closed, _short(md, c.closed_form)))
        if c.word == "f" and md.general is not None:
            g = md.general
            proved = [n for n, ok in g.verified.items() if ok]
            out.append(
                Section(
                    "modes_general",
                    "Forward mode for every m",
                    "The same walk over the graph written once for every m (Σ_j runs over "
                    "j = 1, …, m): each node's tangent is d/dt of its definition along θ + t·θ̇ "
                    f"at t = 0; proved for every m at once: {', '.join(proved)}."
                    + (
                        ""
                        if "jvp_transpose" in g.verified
                        else " The transpose identity is proved for this m below (for every m "
                        f"at once above m = {GENERAL_PROOF_MIN_M})."
                    ),
                    (*(Step(st.lhs, st.rhs, st.rule) for st in g.steps), g.closed_form),
                )
            )
    if md.identities:
        out.append(Section("modes_identities", "Identities of forward mode", "", md.identities))
    return out


def _mark(md: ModesDerivation, rule: str, ascii: bool) -> str:
    ok = md.verified.get(rule, False)
    return ("ok" if ok else "FAILED") if ascii else ("✓" if ok else "✗")


def to_text(md: ModesDerivation, ascii: bool = False) -> str:
    """The sections as text, after the first-order text of the same derivation."""
    lines: list[str] = []
    for sec in sections(md):
        lines += ["", sec.title, "-" * len(sec.title), *textwrap.wrap(sec.intro, render.WIDTH)]
        for st in sec.steps:
            lhs = render.expr_text(st.lhs, ascii)
            rhs = render.expr_text(st.rhs, ascii)
            if sec.key == "modes_identities":
                lines += render.wrap(
                    f"  {lhs} = ", rhs, f"   [{_mark(md, st.rule, ascii)} {st.rule}]"
                )
                lines.append(f"      {st.note}")
            else:
                lines += render.wrap(f"  {lhs} = ", rhs, f"      ({st.rule})" if st.rule else "")
        if sec.outro:
            lines += textwrap.wrap(sec.outro, render.WIDTH)
    title = f"Proofs of forward mode (order {md.order})"
    lines += ["", title, "-" * len(title)]
    for name, ok in md.verified.items():
        mark = ("ok  " if ok else "FAIL") if ascii else ("✓" if ok else "✗")
        lines.append(f"  {mark} {name}: {md.proof_methods[name]}")
    text = "\n".join(lines) + "\n"
    return render._to_ascii(text) if ascii else text


def _steps(sts: Any) -> list[dict[str, str]]:
    return [{"lhs": sp.sstr(st.lhs), "rhs": sp.sstr(st.rhs, order="none")} for st in sts]


def _composition(c: Composition) -> dict[str, Any]:
    return {
        "name": c.name,
        "seeds": [str(v) for group in c.seeds for v in group],
        "steps": _steps(c.steps),
        "results": [str(st.lhs) for st in c.results],
        "closed_form": _steps(c.closed_form),
    }


def json_obj(md: ModesDerivation) -> dict[str, Any]:
    """``{"forward_mode": {...}}``, at order 2 ``"second_order"`` (keyed by composition:
    ``"ff"``, ``"fr"``, ``"rf"``), at order 3 ``"forward_third_order"``; expressions as
    ``str``, as ``"double_backward"`` writes them."""
    f = md.composition("f")
    if f is None:
        return {}
    first = _composition(f)
    first.pop("name")
    obj: dict[str, Any] = {
        "forward_mode": {
            "modes": list(md.modes),
            "order": md.order,
            "tangents": first.pop("seeds"),
            **first,
            "identities": [
                {"name": st.rule, "lhs": sp.sstr(st.lhs), "rhs": sp.sstr(st.rhs), "note": st.note}
                for st in md.identities
            ],
            "verified": dict(md.verified),
            "proof_methods": dict(md.proof_methods),
        }
    }
    if md.general is not None:
        g = md.general
        obj["forward_mode"]["general"] = {
            "m": "m",
            "steps": _steps(g.steps),
            "closed_form": _steps([g.closed_form])[0],
            "verified": dict(g.verified),
            "proof_methods": dict(g.methods),
        }
    second = {c.word: _composition(c) for c in md.compositions if len(c.word) == 2}
    if second:
        obj["second_order"] = second
    third = md.composition("fff")
    if third is not None:
        obj["forward_third_order"] = _composition(third)
    return obj


def blocks(md: ModesDerivation, width: float) -> list[notes.Block]:
    """The sections as the LaTeX notes' blocks (headings, prose, math rows), for LaTeX,
    Markdown and any format built from those blocks."""
    out: list[notes.Block] = []
    for sec in sections(md):
        out += [notes._heading(sec.title), notes._prose(sec.intro)]
        if not sec.steps:
            continue
        if sec.key == "modes_identities":
            rules = [("✓ " if md.verified.get(st.rule) else "✗ ") + st.rule for st in sec.steps]
        else:
            rules = [st.rule for st in sec.steps]
        out.append(notes.Block("math", rows=notes._step_rows(sec.steps, width, rules)))
        if sec.outro:
            out.append(notes._prose(sec.outro))
    proofs = "; ".join(f"{n}: {'proved' if ok else 'FAILED'}" for n, ok in md.verified.items())
    out.append(notes._prose(f"Proofs of forward mode — {proofs}."))
    return out


def to_latex(md: ModesDerivation, standalone: bool = False) -> str:
    """The sections as LaTeX, for the end of :func:`bnsym.notes.latex.to_latex`'s output."""
    width = notes.WIDTH if standalone else notes.FRAGMENT_WIDTH
    out = [r"\begingroup\allowdisplaybreaks\sloppy", *notes.latex_lines(blocks(md, width))]
    return "\n".join([*out, r"\endgroup"]) + "\n"


def to_markdown(md: ModesDerivation) -> str:
    """The sections as Markdown, for the end of :func:`bnsym.notes.latex.to_markdown`'s output."""
    return "\n".join(notes.markdown_lines(blocks(md, notes.FRAGMENT_WIDTH))) + "\n"


# --- appended to the document of each format (bnsym.notes.formats, the column "modes") --------


def with_text(first: str, md: ModesDerivation, ascii: bool = False) -> str:
    return first + to_text(md, ascii)


def with_json(first: str, md: ModesDerivation) -> str:
    obj = json.loads(first)
    obj.update(json_obj(md))
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def with_latex(first: str, md: ModesDerivation, standalone: bool = False) -> str:
    end = "\\end{document}\n"
    more = to_latex(md, standalone)
    return first[: -len(end)] + more + end if standalone else first + more


def with_markdown(first: str, md: ModesDerivation) -> str:
    return first + to_markdown(md)
