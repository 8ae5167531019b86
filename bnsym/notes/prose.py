"""Unicode sentences of a derivation (rules, proofs, notes) as LaTeX text with inline maths.

The sentences are written for a terminal (``σ²_B feeds every x̂_i``); here each word is
classified as maths or text, maths is converted through :data:`MATH` and text has its
specials escaped. A character neither table knows raises :class:`ProseError`: pdflatex
would print nothing or fail, and a silent ``?`` in the notes is worse than a loud error.

>>> prose_tex("The ∂ℓ/∂σ²_B term vanishes because Σᵢ(xᵢ − μ_B) = 0.")
'The $\\\\partial \\\\ell /\\\\partial \\\\sigma ^{2}_{B}$ term vanishes because \
$\\\\sum _{i}(x_{i} - \\\\mu _{B}) = 0$.'
"""

from __future__ import annotations

import re

from bnsym.errors import BnsymError

__all__ = ["MATH", "ProseError", "prose_math", "prose_parts", "prose_tex", "text_tex"]


class ProseError(BnsymError, ValueError):
    """A sentence holds a character the LaTeX notes have no spelling for."""


#: Unicode maths -> LaTeX (math mode).
MATH = {
    "ε": r"\epsilon ", "γ": r"\gamma ", "β": r"\beta ", "μ": r"\mu ", "σ": r"\sigma ",
    "Σ": r"\sum ", "δ": r"\delta ", "∂": r"\partial ", "ℓ": r"\ell ", "·": r"\cdot ", "−": "-",
    "→": r"\to ", "±": r"\pm ", "\u1e21": r"\bar{g}",
    "×": r"\times ", "≥": r"\geq ", "≤": r"\leq ", "²": "^{2}", "³": "^{3}", "ᵢ": "_{i}",
    "ⱼ": "_{j}", "ᵀ": r"^{\top}", "𝟙": r"\mathbf{1}", "√": r"\surd ", "≈": r"\approx ",
    "∞": r"\infty ", "∈": r"\in ", "≠": r"\neq ", "…": r"\ldots ", "ν": r"\nu ",
    **{chr(0x2080 + n): f"_{{{n}}}" for n in range(10)},
    # forward mode (bnsym.notes.modes): θ, ⟨u, v⟩, Δ, the raised dot of (∂ℓ/∂x)˙
    "Δ": r"\Delta ", "θ": r"\theta ", "ρ": r"\rho ", "⟨": r"\langle ", "⟩": r"\rangle ",
    "˙": r"^{\cdot}", "¯": r"^{-}",
}  # fmt: skip
#: Letters with a dot above written as one character, as the letter and the combining dot.
_DOTTED = {"ẋ": "x\u0307", "ẏ": "y\u0307", "ḋ": "d\u0307", "Ḋ": "D\u0307"}
#: What a combining mark sits on: a letter, or \hat{x} and \dot{x} (x̂̇, ẏ̄).
_MARKED = r"(\\(?:hat|dot)\{(?:[^{}]|\{[^{}]*\})*\}|[A-Za-zα-ωΑ-Ω])"
_OPS = {"=", "+", "−", "-", "→", ">", "<", "≥", "≤", "·", "×", "≈"}
#: Text (not maths) -> LaTeX text mode.
_TEXT = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "–": "--", "’": "'", "‘": "`", "“": "``", "”": "''", "…": r"\ldots{}",
    "✓": r"$\checkmark$", "✗": r"$\times$", "\u00a0": "~",
}  # fmt: skip
#: Subscripts that are words but still maths: μ_run, σ²_run, μ_B.
_WORD_SUBSCRIPTS = {"run": r"_{\mathrm{run}}"}


def _is_math(core: str, before: str, after: str) -> bool:
    """Whether a word (stripped of punctuation and brackets) is mathematics."""
    if not core:
        return False
    if re.search(r"\b(?:E|Var)(?:_[A-Za-z]+)?\[", core):  # E[x], Var[x], E_B[σ²_B]
        return True
    if core in _OPS or re.search(r"[^\x00-\x7f—–’…✓✗]|[=+/<>]|_[A-Za-z0-9]{1,3}\b", core):
        # sum_dx_zero is a name, not maths; μ_run and x_i are maths
        return not re.search(r"_(?!run\b)[A-Za-z]{3,}", core)
    if re.fullmatch(r"[A-Za-z]|\d+", core):
        return (core not in ("a", "A", "I") and not core.isdigit()) or bool({before, after} & _OPS)
    return False


def prose_parts(text: str) -> list[tuple[bool, str]]:
    """Split a Unicode sentence into (is_math, text) parts; maths is converted to LaTeX,
    text is left as it is (see :func:`text_tex`).

    >>> prose_parts("x_i feeds x̂_i, σ²_B and μ_run")
    [(True, 'x_{i}'), (False, ' feeds '), (True, '\\\\hat{x}_{i}'), (False, ', '), \
(True, '\\\\sigma ^{2}_{B}'), (False, ' and '), (True, '\\\\mu _{\\\\mathrm{run}}')]
    """
    words = re.split(r"(\s+)", text)
    cores = [w.strip("()[],;:.!?") for w in words]
    parts: list[tuple[bool, str]] = []
    run: list[str] = []  # words of the current piece of maths

    def close(trail: str = "") -> None:
        if run:
            text = "".join(run)
            body = text.rstrip()
            lead, end = "", text[len(body) :]
            while body.count("(") > body.count(")") and body.startswith("("):
                lead, body = lead + "(", body[1:]
            while body.count(")") > body.count("(") and body.endswith(")"):
                end, body = ")" + end, body[:-1]
            parts.extend([(False, lead), (True, math_tex(body)), (False, end + trail)])
            run.clear()
        elif trail:
            parts.append((False, trail))

    for k in range(0, len(words), 2):
        word = words[k]
        space = words[k + 1] if k + 1 < len(words) else ""
        before = cores[k - 2] if k >= 2 else ""
        after = cores[k + 2] if k + 2 < len(words) else ""
        if _is_math(cores[k], before, after):
            # the word's trailing punctuation is text; a final "." is, an ".." is not
            body, punct = re.fullmatch(r"(.*?)([,;:!?]*|\.(?!\.)[,;:!?]*)", word, re.S).groups()  # type: ignore[union-attr]
            if body.endswith(".") and not body.endswith(".."):
                body, punct = body[:-1], "." + punct
            run.append(body)
            if punct or not space:
                close(punct + space)
            else:
                run.append(space)
        else:
            close()
            parts.append((False, word + space))
    close()
    merged: list[tuple[bool, str]] = []
    for is_math, piece in parts:
        if piece and merged and merged[-1][0] == is_math and not is_math:
            merged[-1] = (False, merged[-1][1] + piece)
        elif piece:
            merged.append((is_math, piece))
    return merged


def math_tex(s: str) -> str:
    """Unicode maths (σ²_B, ∂ℓ/∂x̂_i, √(σ²+ε), μ_run, x_1..x_m) as LaTeX.

    >>> math_tex("√(σ²_run + ε)")
    '\\\\sqrt{\\\\sigma ^{2}_{\\\\mathrm{run}} + \\\\epsilon}'
    """
    s = re.sub(r"√\(([^()]*)\)", r"\\sqrt{\1}", s)
    s = re.sub(r"([A-Za-z])\u0302", r"\\hat{\1}", s)
    for one, two in _DOTTED.items():
        s = s.replace(one, two)
    s = re.sub(_MARKED + "\u0307", r"\\dot{\1}", s)  # ẋ, γ̇, x̂̇
    s = re.sub(_MARKED + "\u0304", r"\\bar{\1}", s)  # x̄, ẏ̄
    for word, sub in _WORD_SUBSCRIPTS.items():
        s = re.sub(rf"_{word}\b", sub.replace("\\", "\\\\"), s)
    s = re.sub(r"_([A-Za-z0-9]+)\b", r"_{\1}", s)
    # operators upright, as \operatorname: Var[x], E[x], E_B[σ²_B], diag(γ)
    s = re.sub(r"\b(Var|E|diag)(?=[\[_(])", r"\\operatorname{\1}", s)
    s = s.replace("..", r"\ldots ")
    out = "".join(_math_char(c, s) for c in s)
    return re.sub(r" +", " ", out).replace(" }", "}").strip()


def _math_char(c: str, context: str) -> str:
    if c.isascii():
        return c
    if c in MATH:
        return MATH[c]
    raise ProseError(f"no LaTeX for {c!r} (U+{ord(c):04X}) in the maths {context!r}")


def text_tex(s: str) -> str:
    """Text for pdflatex: specials escaped, Unicode maths symbols set as inline maths.

    >>> text_tex("a_b — 5% of ε")
    'a\\\\_b --- 5\\\\% of $\\\\epsilon$'
    """
    out = []
    for c in s:
        if c in _TEXT:
            out.append(_TEXT[c])
        elif c.isascii():
            out.append(c)
        elif c in MATH:
            out.append(f"${MATH[c].strip()}$")
        else:
            raise ProseError(f"no LaTeX for {c!r} (U+{ord(c):04X}) in the text {s!r}")
    return "".join(out)


def text_tex_unicode(s: str) -> str:
    """Text for MathJax's \\text{}: specials escaped, Unicode kept (MathJax shows it)."""
    return "".join(_TEXT.get(c, c) if c not in "—✓✗…" else c for c in s)


def prose_tex(text: str) -> str:
    """A Unicode sentence as LaTeX text with ``$…$`` maths (pdflatex-safe)."""
    return "".join(f"${p}$" if m else text_tex(p) for m, p in prose_parts(text))


def prose_math(text: str) -> str:
    """A Unicode sentence for use inside maths: ``\\text{…}`` around the words."""
    return "".join(p if m else r"\text{" + text_tex(p) + "}" for m, p in prose_parts(text))
