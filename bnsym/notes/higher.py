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


def sections(h: HigherDerivation) -> list[Section]:
    seeds = ", ".join(str(v) for v in (*h.gdx[:1], *h.gdgamma[:1], *h.gdbeta[:1]))
    out = [
        Section(
            "double_backward",
            "Double backward: the chain rule over the backward graph",
            "Every step of the backward is a node; seeded with the cotangents gdx_i of "
            f"∂ℓ/∂x_i, gdgamma of ∂ℓ/∂γ and gdbeta of ∂ℓ/∂β ({seeds}, …), the same chain rule "
            "walks forward and backward nodes back to x, dy and γ: ℓ₂ = Σ gdx_i·∂ℓ/∂x_i + "
            "Σ gdgamma·∂ℓ/∂γ + Σ gdbeta·∂ℓ/∂β, and g<name> = ∂ℓ₂/∂<name>.",
            h.steps,
        ),
        _closed_section(h),
        Section("identities_2", "Identities at order 2", "", h.identities),
    ]
    out = [sec for sec in out if sec.steps or sec.key != "closed_form_2"]
    if h.order == 3:
        out.append(
            Section(
                "third_order",
                "Third order: the chain rule over the double backward",
                "Cotangents tgx_i, tgdy_i, tggamma of the double backward's results; "
                "t<name> = ∂ℓ₃/∂<name> with ℓ₃ = Σ tgx_i·gx_i + Σ tgdy_i·gdy_i + "
                "Σ tggamma·ggamma (the double backward's vector-Jacobian product).",
                h.third_steps,
            )
        )
        if h.third_closed_form:
            out.append(
                Section(
                    "third_order_closed_form",
                    "Third order from the closed form",
                    "The same chain rule walked over the closed form of order 2 (its sums and "
                    "coefficients are nodes too): the third order in those sums, proved equal "
                    "to the chain rule's above (closed_form_3).",
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
            rhs = render.expr_text(st.rhs, ascii)
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
        out += [notes._heading(sec.title), notes._prose(sec.intro)]
        if sec.key == "identities_2":
            rules = [("✓ " if h.verified.get(st.rule) else "✗ ") + st.rule for st in sec.steps]
            out.append(notes.Block("math", rows=notes._step_rows(sec.steps, width, rules)))
        else:
            out.append(
                notes.Block("math", rows=notes._step_rows(sec.steps, width, [""] * len(sec.steps)))
            )
    proofs = "; ".join(f"{n}: {'proved' if ok else 'FAILED'}" for n, ok in h.verified.items())
    which = "orders 2 and 3" if "closed_form_3" in h.verified else "order 2"
    out.append(notes._prose(f"Proofs at {which} — {proofs}."))
    return out


def to_latex(h: HigherDerivation, standalone: bool = False) -> str:
    """The sections as LaTeX, for the end of :func:`bnsym.notes.latex.to_latex`'s output."""
    out = [r"\begingroup\allowdisplaybreaks\sloppy"]
    width = notes.WIDTH if standalone else notes.FRAGMENT_WIDTH
    for b in _blocks(h, width):
        if b.kind == "heading":
            out += ["", rf"\section*{{{b.latex}}}"]
        elif b.kind == "prose":
            out += ["", b.latex]
        else:
            out += [r"\begin{align*}", notes.join_rows(b.rows), r"\end{align*}"]
    return "\n".join([*out, r"\endgroup"]) + "\n"


def to_markdown(h: HigherDerivation) -> str:
    """The sections as Markdown, for the end of :func:`bnsym.notes.latex.to_markdown`'s output."""
    out: list[str] = []
    for b in _blocks(h, notes.FRAGMENT_WIDTH):
        if b.kind == "heading":
            out += ["", f"## {b.text}"]
        elif b.kind == "prose":
            out += ["", b.text]
        else:
            out += ["", "$$", r"\begin{aligned}", notes.join_rows(b.rows), r"\end{aligned}", "$$"]
    return "\n".join(out) + "\n"


def _closed_section(h: HigherDerivation) -> Section:
    """The closed form's section: the formulas of train mode (ε inside or outside the root)
    or of eval mode."""
    s, o = h.symbols, h.derivation.options
    if o.mode == "eval":
        # D is x̂'s denominator, written with the running variance as the notes name it
        D = {"inside": "√(σ²_run + ε)", "outside": "√σ²_run + ε", "sqrt-outside": "√σ²_run + √ε"}
        return Section(
            "closed_form_2",
            "Double backward: closed form",
            f"In eval mode the statistics are constants and D = {D[o.eps_placement]}, so "
            "∂ℓ/∂x_i = γ·dy_i/D is linear: "
            "gx_i = gdgamma·dy_i/D, gdy_i = γ·gdx_i/D + gdgamma·x̂_i + gdbeta, ggamma = "
            "Σ gdx_i·dy_i/D (without γ and β: gx_i = 0, gdy_i = gdx_i/D).",
            h.closed_form,
        )
    return Section(
        "closed_form_2",
        "Double backward: closed form",
        "With a_i = gdx_i, g_i = γ_i·dy_i, h_i = gdgamma_i·dy_i, D = √(σ² + ε), "
        "P(v)_i = v_i − "
        + ("mean(v) − " if s.layer.centred else "")
        + "k·x̂_i·Σ_j v_j·x̂_j and Q = Σ_i a_i·P(g)_i: gx_i = P(h)_i/D − (k/D²)·(x̂_i·Q + "
        "(Σ g_j·x̂_j)·P(a)_i + (Σ a_j·x̂_j)·P(g)_i), gdy_i = γ_i·P(a)_i/D + gdgamma_i·x̂_i "
        "+ gdbeta_i, ggamma = Σ dy_i·P(a)_i/D over the values of each γ. The steps below "
        "expand them into sums over each γ's values and a few coefficients, so that each "
        "result is one line of four terms (as the generated code computes it)."
        + (
            ""
            if o.eps_placement == "inside"
            else " With ε outside the root, D = σ + ε and r = D/σ (the step r): k·r stands "
            "for k in P and in k/D², and x̂_i·Q becomes x̂_i·(Q − k·r·(r − 1)·(Σ g_j·x̂_j)·"
            "(Σ a_j·x̂_j)), since D/σ varies with x too."
        )
        + ("" if o.affine else " Without γ and β: γ = 1, gdgamma = gdbeta = 0, no ggamma."),
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
