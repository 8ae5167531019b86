"""The notes of orders 2 and 3 in the notes' own notation (issue 18, item 3).

Every symbol a step of order 2 or 3 shows is written as mathematics (ḡ_{x_i}, ∂ℓ₂/∂σ²_B,
Σ…, a_x̂): none is printed by its internal name (gdx1, gdsigma2_B, sum_dy_gdx, coef_xhat);
every symbol is defined before a step uses it — the seeds and k in the sections' prose, the
closed form's sums and coefficients by earlier steps; no expression is cut with "…"; the
LaTeX compiles. Checked in text, LaTeX and Markdown, at orders 2 and 3, for every layer.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp

from bnsym import derive
from bnsym.family.layers import Layer
from bnsym.notes import higher as notes
from bnsym.notes.pdf import compile_pdf
from bnsym.notes.text import display_name
from bnsym.proofs.higher import derive_higher

SCALENORM = Layer(name="scalenorm", centred=False, beta=False)
CASES = {
    "batchnorm": {},
    "batchnorm-eval": {"mode": "eval"},
    "batchnorm-outside-unbiased": {"eps_placement": "outside", "variance": "unbiased"},
    "layernorm": {"layer": "layernorm"},
    "groupnorm": {"layer": "groupnorm", "channels": 2},
    "rmsnorm-plain": {"layer": "rmsnorm", "affine": False},
    "scalenorm": {"layer": SCALENORM},
}
M = {"groupnorm": 4}


@pytest.fixture(scope="module", params=list(CASES))
def h(request):
    return derive_higher(derive(M.get(request.param, 3), **CASES[request.param]), 3)


#: what an internal name looks like: a name of bnsym.core.higher or of the closed form
INTERNAL = re.compile(
    r"\b(?:g|gd|t|tg|tgd)d?(?:x|y|xhat|mu|sigma2|nu2|gamma|beta)(?:\d+|_B|_i)?\b"
    r"|\bsum_[a-z]{2,}\w*|\bcoef_\w+|\bgamma_inv_std\d*\b|\bshift(?:_gdy)?\d*\b|g<name>|sum_d y_g"
)


def _symbols(h):
    sts = [*h.steps, *h.closed_form, *h.identities, *h.third_steps, *h.third_closed_form]
    out = set()
    for st in sts:
        for e in (st.lhs, st.rhs):
            out |= {s for s in sp.sympify(e).free_symbols if isinstance(s, sp.Symbol)}
    return out


def test_every_symbol_is_written_as_mathematics(h):
    for sym in _symbols(h):
        for style in ("unicode", "ascii", "latex"):
            shown = display_name(sym.name, style)
            if style == "latex":  # a name with a row, not printed as it is (H_ij: H_{ij})
                assert shown != sym.name or len(sym.name) == 1, (sym.name, style)
            assert not INTERNAL.fullmatch(shown), (sym.name, style, shown)


def test_no_internal_name_and_no_cut_in_any_format(h):
    outputs = {
        "text": notes.to_text(h),
        "ascii": notes.to_text(h, ascii=True),
        "latex": notes.to_latex(h),
        "markdown": notes.to_markdown(h),
    }
    for fmt, out in outputs.items():
        for proof in h.verified:  # the proofs' names are labels, as at order 1 (sum_dx_zero)
            out = out.replace(proof, "").replace(proof.replace("_", r"\_"), "")
        hit = INTERNAL.search(out)
        assert hit is None, (fmt, out[max(hit.start() - 80, 0) : hit.end() + 40])
        equations = [ln for ln in out.splitlines() if ln.startswith("  ") or "&=" in ln]
        cut = [ln for ln in equations if "…" in ln or "±" in ln or "+/-" in ln or "..." in ln]
        assert not cut, (fmt, cut[:2])


def test_every_symbol_is_defined_before_it_is_used(h):
    """The seeds, the statistics and the parameters are defined by the sections' prose (and
    the first-order notes); every other symbol a step reads is the left-hand side of an
    earlier step."""
    d = h.derivation
    s = d.symbols
    given = {*s.x, *s.dy, *s.gammas, *s.betas, s.eps, s.running_mean, s.running_var}
    given |= {*h.gdx, *h.gdgamma, *h.gdbeta, *h.third_cotangents}
    given |= {st.lhs for st in (*d.forward, *d.backward)}  # the first order's nodes
    for walk in (h.steps, h.closed_form, h.third_steps, h.third_closed_form):
        if walk is h.third_closed_form:
            defined = given | {st.lhs for st in h.closed_form}
        elif walk is h.third_steps:
            defined = given | {st.lhs for st in h.steps}
        else:
            defined = set(given)
        for st in walk:
            unknown = {v for v in st.rhs.free_symbols if v not in defined}
            assert not unknown, (st.lhs, unknown)
            defined.add(st.lhs)
    text = notes.to_text(h)
    if d.options.mode == "train":  # k, used in P(v), is defined in the closed form's prose
        assert "k = 1/" in text and text.index("k = 1/") < text.index("k·x̂ᵢ")
    assert "ḡ_{xᵢ}" in text.split("\n  ")[0]  # the seeds are named before the first step
    assert "H·v" in text  # the Hessian-vector product, named as such


def test_the_seeds_and_results_have_the_layers_parameters(h):
    text = notes.to_text(h)
    intro = text[: text.index("\n  ")]
    decl, o = h.symbols.layer, h.derivation.options
    assert ("ḡ_β" in intro or "ḡ_{β" in intro) == (decl.beta and o.affine)
    assert ("ḡ_γ" in intro or "ḡ_{γ" in intro) == o.affine


@pytest.mark.parametrize("case", ["batchnorm", "groupnorm", "rmsnorm-plain"])
@pytest.mark.parametrize("order", [2, 3])
def test_the_latex_of_orders_2_and_3_compiles(case, order):
    d = derive(M.get(case, 2), **CASES[case])
    tex = d.to_latex(standalone=True)
    tex = notes.with_latex(tex, derive_higher(d, order), standalone=True)
    assert compile_pdf(tex).startswith(b"%PDF")
