"""The derivatives of order 2 and 3 in every output format of ``bnsym derive``.

``sections(h)`` lists what is shown, in order — the double backward's chain rule, its
closed form, the identities of order 2 and, at order 3, the third order's chain rule — and
``to_text``, ``json_obj``, ``to_latex`` and ``to_markdown`` write them, each appended to
the first-order output of the same format by the command line (JSON: under the key
``"double_backward"``, and ``"third_order"``).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from bnsym.notes import latex as notes
from bnsym.notes import text as render
from bnsym.notes.json_doc import SharedStr
from bnsym.notes.prose import prose_tex, text_tex
from bnsym.notes.text import Section
from bnsym.proofs.higher import HigherDerivation

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


def _bar(z: str) -> str:
    """ḡ_z as the text writes it: ḡ_γ, ḡ_{γᵢ}."""
    return f"ḡ_{z}" if len(z) == 1 else f"ḡ_{{{z}}}"


def _words(h: HigherDerivation) -> dict[str, str]:
    """The layer's own words for the notes of orders 2 and 3: its statistics, its γ and β
    (one for the group, γᵢ per element, γ_c per channel, none), x̂'s denominator D, and the
    terms of ℓ₂ and ℓ₃ (a Σ over the parameters where there are several)."""
    s, o = h.symbols, h.derivation.options
    decl = s.layer
    index = {"shared": "", "element": "ᵢ", "channel": "_c"}[decl.params]
    gamma, beta = "γ" + index, "β" + index
    affine, has_beta = o.affine, o.affine and decl.beta
    if o.mode == "eval":
        var, root = "σ²_run", "√σ²_run"
    else:
        stat = "σ" if decl.centred else "ν"
        var, root = f"{stat}²{decl.stat_suffix}", f"{stat}{decl.stat_suffix}"
    D = {
        "inside": f"√({var} + ε)",
        "outside": f"{root} + ε",
        "sqrt-outside": f"{root} + √ε",
    }[o.eps_placement]
    many = "" if s.shared else ("Σᵢ " if decl.params == "element" else "Σ_c ")
    params = [gamma] + ([beta] if has_beta else []) if affine else []
    # ℓ₂'s terms: each result of the first pass times its seed
    l2 = ["Σᵢ ḡ_{xᵢ}·∂ℓ/∂xᵢ"] + [f"{many}{_bar(p)}·∂ℓ/∂{p}" for p in params]
    seeds = ["ḡ_{xᵢ}"] + [_bar(p) for p in params]
    results = ["∂ℓ₂/∂xᵢ", "ḡ_{yᵢ}"] + ([f"∂ℓ₂/∂{gamma}"] if affine else [])
    l3 = ["Σᵢ ∂ℓ₃/∂(∂ℓ₂/∂xᵢ)·∂ℓ₂/∂xᵢ", "Σᵢ ∂ℓ₃/∂ḡ_{yᵢ}·ḡ_{yᵢ}"]
    l3 += [f"{many}∂ℓ₃/∂(∂ℓ₂/∂{gamma})·∂ℓ₂/∂{gamma}"] if affine else []
    third = ["∂ℓ₃/∂xᵢ", "∂ℓ₃/∂(∂ℓ/∂yᵢ)"] + ([f"∂ℓ₃/∂{gamma}"] if affine else [])
    return {
        "gamma": gamma,
        "var": var,
        "D": D,
        "l2": " + ".join(l2),
        "seeds": ", ".join(seeds),
        "results": _and(results),
        "zero": " = ".join([_bar(p) for p in params] + ["0"]) if params else "",
        "l3": " + ".join(l3),
        "third": _and(third),
    }


def _and(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def sections(h: HigherDerivation) -> list[Section]:
    w = _words(h)
    hvp = (
        f"With {w['zero']} and ḡ_x = v, ∂ℓ₂/∂x = H·v" if w["zero"] else "With ḡ_x = v, ∂ℓ₂/∂x = H·v"
    ) + (
        ": the Hessian-vector product, H the Hessian of Σⱼ ∂ℓ/∂yⱼ·yⱼ in x (∂ℓ/∂y held "
        "fixed). The seeds are written ḡ, not v, so that one rule names every node of this "
        "pass: a seed is the ḡ of a result of the first pass, where the walk starts."
    )
    out = [
        Section(
            "double_backward",
            "Double backward: the chain rule over the backward graph",
            "The backward pass is a computation graph too: each of its steps ∂ℓ/∂z = … is a "
            "node. A second pass walks back over it with the same chain rule. Its adjoints are "
            "written ḡ_z = ∂ℓ₂/∂(∂ℓ/∂z) for a node ∂ℓ/∂z of the backward pass and ∂ℓ₂/∂z for "
            f"a node z of the forward pass, where ℓ₂ = {w['l2']} for any numbers "
            f"{w['seeds']} (the seeds, chosen freely). The results are {w['results']}: "
            f"the double backward. {hvp}",
            h.steps,
        ),
        _closed_section(h, w),
        Section("identities_2", "Identities at order 2", "", h.identities),
    ]
    out = [sec for sec in out if sec.steps or sec.key != "closed_form_2"]
    if h.order == 3:
        out.append(
            Section(
                "third_order",
                "Third order: the chain rule over the double backward",
                "A third pass walks back over the forward, backward and double-backward nodes. "
                "Its adjoint of any node n is written ∂ℓ₃/∂n, where ℓ₃ adds each result of the "
                "double backward times a seed chosen freely, named for the result it "
                f"multiplies: ℓ₃ = {w['l3']} (the double backward's vector-Jacobian product). "
                f"The results are {w['third']}.",
                h.third_steps,
            )
        )
        if h.third_closed_form:
            out.append(
                Section(
                    "third_order_closed_form",
                    "Third order from the closed form",
                    "The same chain rule walked over the closed form of order 2 (its sums, Q "
                    "and its coefficients a and b are nodes too): the third order in those "
                    "sums, proved equal to the chain rule's above (closed_form_3).",
                    h.third_closed_form,
                )
            )
    return out


def to_text(h: HigherDerivation, ascii: bool = False) -> str:
    """The sections as text, after the first-order text of the same derivation."""
    lines: list[str] = []
    for sec in sections(h):
        lines += ["", sec.title, "-" * len(sec.title), *textwrap.wrap(sec.intro, render.WIDTH)]
        for st in sec.steps:
            lhs = render.expr_text(st.lhs, ascii)
            rhs = render.expr_text(st.rhs, ascii, abbreviate=False)  # whole: no "± …"
            if sec.key == "identities_2":
                ok = h.verified.get(st.rule, False)
                mark = ("ok" if ok else "FAILED") if ascii else ("✓" if ok else "✗")
                lines += render.wrap(f"  {lhs} = ", rhs, f"   [{mark} {st.rule}]")
                lines.append(f"      {st.note}")
            else:
                lines += render.wrap(f"  {lhs} = ", rhs)
    title = "Proofs at orders 2 and 3" if "closed_form_3" in h.verified else "Proofs at order 2"
    lines += ["", title, "-" * len(title)]
    for name, ok in h.verified.items():
        mark = ("ok  " if ok else "FAIL") if ascii else ("✓" if ok else "✗")
        lines.append(f"  {mark} {name}: {h.proof_methods[name]}")
    text = "\n".join(lines) + "\n"
    return render._to_ascii(text) if ascii else text


def json_obj(h: HigherDerivation) -> dict[str, Any]:
    """``{"double_backward": {...}}`` (and ``"third_order"``): expressions as ``str``.

    ``double_backward``: ``graph``, the forward and backward steps it differentiates (the
    names its steps use); ``cotangents``, the seeds gdx_i, gdgamma, gdbeta; ``steps``, the
    chain rule over the graph; ``results``, the names of gx_i, gdy_i, ggamma; ``closed_form``
    and the proofs. ``third_order``: the same one order up (t<name> = ∂ℓ₃/∂<name>)."""

    printer = SharedStr(order="none")  # sympy.sstr's text, shared subexpressions printed once

    def steps(sts: Any) -> list[dict[str, str]]:
        return [{"lhs": str(st.lhs), "rhs": printer.doprint(st.rhs)} for st in sts]

    d = h.derivation
    obj: dict[str, Any] = {
        "double_backward": {
            # the graph it differentiates, so that every name of its steps is defined here
            "graph": steps((*d.forward, *d.backward)),
            "cotangents": [str(v) for v in (*h.gdx, *h.gdgamma, *h.gdbeta)],
            "steps": steps(h.steps),
            "results": [str(st.lhs) for st in h.results],
            "closed_form": steps(h.closed_form),
            "verified": dict(h.verified),
            "proof_methods": dict(h.proof_methods),
        }
    }
    if h.order == 3:
        obj["third_order"] = {
            "cotangents": [str(v) for v in h.third_cotangents],
            "steps": steps(h.third_steps),
            "results": [str(st.lhs) for st in h.third_results],
            "closed_form": steps(h.third_closed_form),
        }
    return obj


def _blocks(h: HigherDerivation, width: float) -> list[notes.Block]:
    out: list[notes.Block] = []
    for sec in sections(h):
        out.append(notes._heading(sec.title))
        if sec.intro:
            out.append(notes._prose(sec.intro))
        if sec.key == "identities_2":  # as at order 1: the mark and the note, the statement
            for st in sec.steps:
                mark = "✓ proved" if h.verified.get(st.rule) else "✗ NOT proved"
                out.append(notes._prose(f"{mark}: {st.note}."))
                out.append(notes.Block("math", rows=notes._step_rows((st,), width, [""])))
        else:
            out.append(
                notes.Block("math", rows=notes._step_rows(sec.steps, width, [""] * len(sec.steps)))
            )
    which = "orders 2 and 3" if "closed_form_3" in h.verified else "order 2"
    out.append(notes._heading(f"Proofs at {which}"))
    for name, ok in h.verified.items():  # each proof's name as code, as at order 1
        mark = "✓" if ok else "✗ FAILED"
        method = h.proof_methods[name]
        code = name.replace("_", r"\_")
        out.append(
            notes._prose(
                f"{mark} `{name}`: {method}.",
                f"{text_tex(mark)} \\texttt{{{code}}}: {prose_tex(method)}.",
            )
        )
    return out


def to_latex(h: HigherDerivation, standalone: bool = False) -> str:
    """The sections as LaTeX, for the end of :func:`bnsym.notes.latex.to_latex`'s output."""
    width = notes.WIDTH if standalone else notes.FRAGMENT_WIDTH
    out = [r"\begingroup\allowdisplaybreaks\sloppy", *notes.latex_lines(_blocks(h, width))]
    return "\n".join([*out, r"\endgroup"]) + "\n"


def to_markdown(h: HigherDerivation) -> str:
    """The sections as Markdown, for the end of :func:`bnsym.notes.latex.to_markdown`'s output."""
    return "\n".join(notes.markdown_lines(_blocks(h, notes.FRAGMENT_WIDTH))) + "\n"


def _closed_section(h: HigherDerivation, w: dict[str, str]) -> Section:
    """The closed form's section: the formulas of train mode (ε inside or outside the root)
    or of eval mode, every symbol defined before the steps use it."""
    s, o = h.symbols, h.derivation.options
    g, D = w["gamma"], w["D"]
    several = len(s.gammas) > 1 and o.affine
    sets = (
        " Σ_(j∈C_k) runs over C_k, the values that γ_k scales; γⱼ is the γ of value j."
        if several
        else " γⱼ is the γ of value j (one γ for the group)."
        if o.affine
        else ""
    )
    if o.mode == "eval":
        return Section(
            "closed_form_2",
            "Double backward: closed form",
            f"In eval mode the statistics are constants and D = {D}, so ∂ℓ/∂xᵢ = "
            f"{g}·∂ℓ/∂yᵢ/D is linear in ∂ℓ/∂y and depends on x through nothing else: "
            f"∂ℓ₂/∂xᵢ = {_bar(g)}·∂ℓ/∂yᵢ/D, ḡ_{{yᵢ}} = {g}·ḡ_{{xᵢ}}/D + {_bar(g)}·x̂ᵢ"
            + (" + " + _bar(g.replace("γ", "β")) if s.layer.beta else "")
            + f", ∂ℓ₂/∂{g} = Σᵢ ḡ_{{xᵢ}}·∂ℓ/∂yᵢ/D over the values of each γ"
            + (" (without γ: ∂ℓ₂/∂xᵢ = 0, ḡ_{yᵢ} = ḡ_{xᵢ}/D)." if not o.affine else ".")
            + sets,
            h.closed_form,
        )
    k = (
        "k = 1/(m − 1), the unbiased variance's factor"
        if o.variance == "unbiased" and s.layer.centred
        else "k = 1/m, the " + ("variance's" if s.layer.centred else "mean square's") + " factor"
    )
    mean = "mean(v) − " if s.layer.centred else ""
    return Section(
        "closed_form_2",
        "Double backward: closed form",
        f"Write D = {D} (x̂'s denominator), {k}, uᵢ = γᵢ·∂ℓ/∂yᵢ and wᵢ = ḡ_{{γᵢ}}·∂ℓ/∂yᵢ "
        + (
            "(γᵢ and βᵢ: the γ and β of value i; ḡ_{γᵢ} and ḡ_{βᵢ}: their seeds)"
            if s.layer.beta
            else "(γᵢ: the γ of value i; ḡ_{γᵢ}: its seed)"
        )
        + f", P(v)ᵢ = vᵢ − {mean}"
        "k·x̂ᵢ·Σⱼ vⱼ·x̂ⱼ for a vector v, and Q = Σᵢ ḡ_{xᵢ}·P(u)ᵢ. Then ∂ℓ₂/∂xᵢ = P(w)ᵢ/D − "
        "(k/D²)·(x̂ᵢ·Q + (Σⱼ uⱼ·x̂ⱼ)·P(ḡ_x)ᵢ + (Σⱼ ḡ_{xⱼ}·x̂ⱼ)·P(u)ᵢ), ḡ_{yᵢ} = "
        "γᵢ·P(ḡ_x)ᵢ/D + ḡ_{γᵢ}·x̂ᵢ"
        + (" + ḡ_{βᵢ}" if s.layer.beta else "")
        + ", and ∂ℓ₂/∂γ = Σᵢ ∂ℓ/∂yᵢ·P(ḡ_x)ᵢ/D over the values of each γ. The steps below "
        "expand them into sums, Q, and the coefficients a of ∂ℓ₂/∂xᵢ and b of ḡ_{yᵢ}, each "
        "defined by a step before it is used, so that each result is one line of four terms "
        "(as the generated code computes it)."
        + sets
        + (
            ""
            if o.eps_placement == "inside"
            else " With ε outside the root, r = D/σ (the step r): k·r stands for k in P and "
            "in k/D², and x̂ᵢ·Q becomes x̂ᵢ·(Q − k·r·(r − 1)·(Σⱼ uⱼ·x̂ⱼ)·(Σⱼ ḡ_{xⱼ}·x̂ⱼ)), "
            "since D/σ varies with x too."
        )
        + (
            ""
            if o.affine
            else " Without γ and β: γ = 1, ḡ_γ = ḡ_β = 0, no ∂ℓ₂/∂γ."
            if s.layer.beta
            else " Without γ: γ = 1, ḡ_γ = 0, no ∂ℓ₂/∂γ."
        ),
        h.closed_form,
    )


# --- appended to the first order's document, for each format (bnsym.notes.formats) ----------


def with_text(first: str, h: HigherDerivation, ascii: bool = False) -> str:
    """The first order's text, then the sections of order 2 (and 3)."""
    return first + to_text(h, ascii)


def with_json(first: str, h: HigherDerivation) -> str:
    """The first order's JSON object with the keys ``"double_backward"`` (and
    ``"third_order"``) added."""
    obj = json.loads(first)
    obj.update(json_obj(h))
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def with_latex(first: str, h: HigherDerivation, standalone: bool = False) -> str:
    """The first order's LaTeX with the sections of order 2 (and 3) before ``\\end{document}``
    (a fragment: after it)."""
    end = "\\end{document}\n"
    more = to_latex(h, standalone)
    return first[: -len(end)] + more + end if standalone else first + more


def with_markdown(first: str, h: HigherDerivation) -> str:
    """The first order's Markdown, then the sections of order 2 (and 3)."""
    return first + to_markdown(h)
