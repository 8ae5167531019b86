"""The notes' LaTeX as MathML Core, for the web page (:mod:`bnsym.notes.html`).

Every format prints the same blocks (:func:`bnsym.notes.latex.blocks`), whose maths are
LaTeX strings already broken into rows, with the rule labels, the ≈ values and the
second-order layout the PDF shows. Translating those strings, rather than printing the SymPy
expressions a second time, makes the page show exactly what the PDF shows.

The notes use a small, closed subset of LaTeX, and this module translates exactly that
subset (the tables below). Anything else — an unknown command, an environment, a stray
brace, a character outside ASCII — raises :class:`MathMLError` naming it, so that a new
construct fails a test instead of reaching a reader as raw TeX (``\\tilde{\\infty}``,
SymPy's ``zoo``, is refused this way).

MathML Core is what browsers lay out natively (Chromium since 109, Firefox, Safari): no
``mfenced``, no ``columnalign``, no ``mathvariant`` but ``normal``; so brackets are ``mo``,
columns are aligned by the page's CSS, and bold is a Unicode character.

>>> math_inline(r"\\frac{x_{i} - \\mu}{\\sigma}")
'<math><mfrac><mrow><msub><mi>x</mi><mi>i</mi></msub><mo>−</mo><mi>μ</mi></mrow><mi>σ</mi></mfrac></math>'
>>> math_inline(r"\\tilde{\\infty}")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bnsym.notes.mathml.MathMLError: the notes hold LaTeX the web page cannot typeset: \\tilde (in ...).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bnsym.errors import BnsymError

__all__ = ["MathMLError", "math_display", "math_inline", "text_mode"]


class MathMLError(BnsymError, ValueError):
    """The notes hold LaTeX outside the subset this module translates (a bug of bnsym's
    notes, reported in one line rather than shown as raw TeX)."""


# --- the subset: one table per kind of token -------------------------------------------------

#: Letters and letter-like symbols: ``<mi>``.
IDENTIFIERS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "ϕ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Sigma": "Σ",
    "ell": "ℓ", "partial": "∂", "infty": "∞", "top": "⊤", "checkmark": "✓",
}  # fmt: skip
#: Operators, with TeX's class of each (which decides whether a + or − after it is unary).
OPERATORS = {
    "cdot": ("⋅", "bin"), "times": ("×", "bin"), "pm": ("±", "bin"), "mp": ("∓", "bin"),
    "approx": ("≈", "rel"), "in": ("∈", "rel"), "notin": ("∉", "rel"), "to": ("→", "rel"),
    "mapsto": ("↦", "rel"), "le": ("≤", "rel"), "leq": ("≤", "rel"), "ge": ("≥", "rel"),
    "geq": ("≥", "rel"), "ne": ("≠", "rel"), "neq": ("≠", "rel"), "equiv": ("≡", "rel"),
    "propto": ("∝", "rel"), "mid": ("∣", "rel"), "ldots": ("…", "ord"), "cdots": ("⋯", "ord"),
    "sum": ("∑", "op"), "prod": ("∏", "op"), "surd": ("√", "ord"), "colon": (":", "punct"),
    "langle": ("⟨", "open"), "rangle": ("⟩", "close"), "circ": ("∘", "bin"),
}  # fmt: skip
#: Characters that are operators as they stand.
CHARACTERS = {
    "+": ("+", "bin"), "-": ("−", "bin"), "=": ("=", "rel"), "<": ("<", "rel"),
    ">": (">", "rel"), ":": (":", "rel"), ",": (",", "punct"), ";": (";", "punct"),
    ".": (".", "ord"), "!": ("!", "close"), "/": ("/", "ord"), "*": ("∗", "bin"),
    "(": ("(", "open"), "[": ("[", "open"), ")": (")", "close"), "]": ("]", "close"),
    "|": ("|", "ord"),
}  # fmt: skip
#: Horizontal spaces, in em (TeX's: \\, is 3/18 em, \\quad 1 em).
SPACES = {",": 0.1667, ":": 0.2222, ">": 0.2222, ";": 0.2778, " ": 0.3333, "!": -0.1667,
          "quad": 1.0, "qquad": 2.0}  # fmt: skip
#: \\big … \\Bigg: a delimiter of fixed height (em, as amsmath sizes them at 10pt).
BIG = {"big": 1.2, "Big": 1.623, "bigg": 2.047, "Bigg": 2.470}
_SIDES = {"l": "open", "r": "close"}  # \biggl( opens, \biggr) closes
#: Accents over one symbol: \\hat{x} is x̂ (not stretched, as TeX's \\hat).
ACCENTS = {"hat": "^", "bar": "¯", "dot": "˙", "ddot": "¨", "vec": "→"}
#: Matrix environments and their brackets.
MATRICES = {"pmatrix": ("(", ")"), "bmatrix": ("[", "]"), "vmatrix": ("|", "|"), "matrix": ("", "")}
#: Text mode (\\text{…} and the prose around the maths): escapes and TeX's ligatures.
TEXT_COMMANDS = {
    "_": "_", "&": "&", "%": "%", "$": "$", "#": "#", "{": "{", "}": "}", ",": "\u2009",
    "textbackslash": "\\", "textasciitilde": "~", "textasciicircum": "^", "textless": "<",
    "textgreater": ">", "ldots": "…", "textendash": "–", "textemdash": "—",
}  # fmt: skip
TEXT_LIGATURES = {"---": "—", "--": "–", "``": "“", "''": "”", "`": "‘", "'": "’", "~": "\u00a0"}
#: Bold letters and digits: MathML Core has no mathvariant="bold"; Unicode has the letters.
_BOLD = {
    **{chr(ord("A") + k): chr(0x1D400 + k) for k in range(26)},
    **{chr(ord("a") + k): chr(0x1D41A + k) for k in range(26)},
    **{chr(ord("0") + k): chr(0x1D7CE + k) for k in range(10)},
}
#: Content that makes a \\left( … \\right) taller than a line: only then do its brackets
#: stretch. Chromium would otherwise grow them around a subscript (x_j − μ_B), which TeX's
#: \\left( does not do.
_TALL = re.compile(r"<(mfrac|munderover|munder|mover|msqrt|mroot|mtable)\b")
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|\s+|.", re.DOTALL)
#: In text: a command (its name in group 1, an empty {} after it swallowed), a ligature, or
#: a character that has no place in text.
_TEXT_TOKEN = re.compile(
    r"\\([A-Za-z]+|.)(?:\{\})?|" + "|".join(map(re.escape, TEXT_LIGATURES)) + r"|[{}$^_&\\]",
    re.DOTALL,
)


def _error(what: str, latex: str) -> MathMLError:
    shown = latex if len(latex) <= 120 else latex[:117] + "..."
    return MathMLError(f"the notes hold LaTeX the web page cannot typeset: {what} (in '{shown}').")


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


@dataclass(frozen=True)
class _Atom:
    """A translated piece and its TeX class (ord, op, bin, rel, open, close, punct, or space,
    which does not count)."""

    xml: str
    kind: str = "ord"


def _row(atoms: Sequence[_Atom]) -> str:
    """One element for a sequence: the element itself if it is one, else an ``<mrow>``."""
    if len(atoms) == 1:
        return atoms[0].xml
    return "<mrow>" + "".join(a.xml for a in atoms) + "</mrow>"


def _join(atoms: Sequence[_Atom]) -> str:
    """The atoms side by side, for an element that is a row itself (math, mtd)."""
    return "".join(a.xml for a in atoms)


def _operator(symbol: str, kind: str, previous: str | None) -> _Atom:
    """``<mo>``. A + or − where TeX reads a sign (at the start, after an operator, a relation
    or an opening bracket) gets no space around it, as TeX sets −x, not − x. Brackets and
    bars keep their size: only \\left … \\right stretches."""
    if kind == "bin" and previous in (None, "bin", "op", "rel", "open", "punct"):
        return _Atom(f'<mo lspace="0" rspace="0">{_esc(symbol)}</mo>', "ord")
    if kind in ("open", "close"):
        return _Atom(f'<mo stretchy="false">{_esc(symbol)}</mo>', kind)
    if kind == "ord":  # |γ|, 1/m, √γ, …: symbols, not operators, so no space around them
        return _Atom(f'<mo stretchy="false" lspace="0" rspace="0">{_esc(symbol)}</mo>', kind)
    return _Atom(f"<mo>{_esc(symbol)}</mo>", kind)


# --- the parser --------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens of one row of maths."""

    def __init__(self, latex: str) -> None:
        self.latex = latex
        found = [m for m in _TOKEN.finditer(latex) if not m.group().isspace()]
        self.tokens = [m.group() for m in found]
        self.spans = [m.span() for m in found]  # where each token is, for raw_group
        self.k = 0

    def peek(self) -> str | None:
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _error("an unexpected end", self.latex)
        self.k += 1
        return token

    def expect(self, token: str) -> None:
        got = self.take()
        if got != token:
            raise _error(f"{got!r} where {token!r} belongs", self.latex)

    def raw_group(self) -> str:
        """The source of a ``{…}`` group, unparsed (for ``\\text`` and names): spaces kept."""
        self.expect("{")
        start = self.spans[self.k - 1][1]
        depth = 1
        while depth:
            token = self.take()
            depth += {"{": 1, "}": -1}.get(token, 0)
        return self.latex[start : self.spans[self.k - 1][0]]

    # -- rows and groups

    def atoms(self, stop: tuple[str, ...] = ()) -> list[_Atom]:
        """Atoms up to the end, a closing brace, ``&``, ``\\\\`` or a token in ``stop``."""
        out: list[_Atom] = []
        while (token := self.peek()) is not None and token not in ("}", "&", r"\\", *stop):
            previous = next((a.kind for a in reversed(out) if a.kind != "space"), None)
            out.append(self.scripted(self.atom(previous)))
        return out

    def argument(self) -> str:
        """A command's argument: a ``{…}`` group or a single token."""
        if self.peek() == "{":
            self.take()
            inside = self.atoms()
            self.expect("}")
            return _row(inside) if inside else "<mrow></mrow>"
        return self.atom(None).xml

    def scripted(self, base: _Atom) -> _Atom:
        """``base`` with the ``_{…}`` and ``^{…}`` that follow it, in either order."""
        scripts: dict[str, str] = {}
        while self.peek() in ("_", "^", "'"):
            token = self.take()
            if token == "'":
                scripts["^"] = scripts.get("^", "") + "<mo>′</mo>"
                continue
            if token in scripts:
                raise _error(f"a double {token}", self.latex)
            scripts[token] = self.argument()
        if not scripts:
            return base
        under = base.kind == "op"  # ∑ takes its limits below and above (beside it inline)
        names = ("munder", "mover", "munderover") if under else ("msub", "msup", "msubsup")
        if "_" in scripts and "^" in scripts:
            return _Atom(
                f"<{names[2]}>{base.xml}{scripts['_']}{scripts['^']}</{names[2]}>", base.kind
            )
        tag, script = (names[0], scripts["_"]) if "_" in scripts else (names[1], scripts["^"])
        return _Atom(f"<{tag}>{base.xml}{script}</{tag}>", base.kind)

    def atom(self, previous: str | None) -> _Atom:
        token = self.take()
        if token == "{":
            inside = self.atoms()
            self.expect("}")
            return _Atom(_row(inside) if inside else "<mrow></mrow>")
        if token in ("_", "^"):  # a script with no base: x^2 written ^2 after {}
            self.k -= 1
            return _Atom("<mrow></mrow>")
        if token.startswith("\\"):
            return self.command(token[1:], previous)
        if token[0].isdigit():
            return _Atom(f"<mn>{token}</mn>")
        if token.isascii() and token.isalpha():
            return _Atom(f"<mi>{token}</mi>")
        if token in CHARACTERS:
            return _operator(*CHARACTERS[token], previous)
        if token == "~":
            return _Atom(_space(SPACES[" "]), "space")
        raise _error(repr(token), self.latex)

    def command(self, name: str, previous: str | None) -> _Atom:
        if name == "frac":
            return _Atom(f"<mfrac>{self.argument()}{self.argument()}</mfrac>")
        if name == "sqrt":
            if self.peek() == "[":  # \sqrt[n]{x}
                self.take()
                degree = self.atoms(stop=("]",))
                self.expect("]")
                return _Atom(f"<mroot>{self.argument()}{_row(degree)}</mroot>")
            return _Atom(f"<msqrt>{self.argument()}</msqrt>")
        if name in ACCENTS:
            accent = f'<mo stretchy="false">{ACCENTS[name]}</mo>'
            return _Atom(f'<mover accent="true">{self.argument()}{accent}</mover>')
        if name in ("mathrm", "operatorname"):
            return _Atom(_upright(self.word()))
        if name == "mathbf":
            word = self.word()
            if any(c not in _BOLD for c in word):
                raise _error(f"\\mathbf{{{word}}}", self.latex)
            bold = "".join(_BOLD[c] for c in word)
            return _Atom(f"<mn>{bold}</mn>" if word.isdigit() else f"<mi>{bold}</mi>")
        if name == "text":
            return _Atom(_row(_text(self.raw_group(), self.latex)))
        if name == "mathrel":  # \mathrel{+}= is one relation, +=
            inner = text_mode(self.raw_group())
            if self.peek() == "=":
                self.take()
                inner += "="
            return _Atom(f"<mo>{_esc(inner)}</mo>", "rel")
        if name == "left":
            return self.fenced()
        if name in BIG or (name[-1] in "lr" and name[:-1] in BIG):
            return self.big(name)
        if name == "begin":
            return self.matrix()
        if name in IDENTIFIERS:  # capital Greek is upright, as TeX sets it
            letter = IDENTIFIERS[name]
            return _Atom(_upright(letter) if name[0].isupper() else f"<mi>{letter}</mi>")
        if name in OPERATORS:
            return _operator(*OPERATORS[name], previous)
        if name in SPACES:
            return _Atom(_space(SPACES[name]), "space")
        if name in ("{", "}", "|"):
            return _operator(name, {"{": "open", "}": "close", "|": "ord"}[name], previous)
        raise _error(f"\\{name}", self.latex)

    def word(self) -> str:
        """The letters of ``\\mathrm{…}`` and the like (letters and digits only)."""
        word = self.raw_group()
        if not re.fullmatch(r"[A-Za-z0-9]+", word):
            raise _error(f"the name {word!r}", self.latex)
        return word

    def delimiter(self) -> str:
        token = self.take()
        if token == ".":
            return ""
        if token in ("(", ")", "[", "]", "|") or token in (r"\{", r"\}", r"\|"):
            return {r"\{": "{", r"\}": "}", r"\|": "‖"}.get(token, token)
        raise _error(f"the delimiter {token!r}", self.latex)

    def fenced(self) -> _Atom:
        r"""``\left( … \right)``: stretched only around content taller than a line."""
        opening = self.delimiter()
        inside = self.atoms(stop=(r"\right",))
        self.expect(r"\right")
        closing = self.delimiter()
        body = _row(inside) if inside else "<mrow></mrow>"
        stretch = "" if _TALL.search(body) else ' stretchy="false"'
        fences = [f"<mo{stretch}>{_esc(d)}</mo>" if d else "" for d in (opening, closing)]
        return _Atom(f"<mrow>{fences[0]}{body}{fences[1]}</mrow>")

    def big(self, name: str) -> _Atom:
        r"""``\biggl(`` … ``\biggr)``: the two halves may sit on different rows, so each is a
        bracket of the fixed height TeX gives it."""
        size, kind = (BIG[name], "ord") if name in BIG else (BIG[name[:-1]], _SIDES[name[-1]])
        symbol = self.delimiter()
        if not symbol:
            return _Atom("", "space")
        return _Atom(
            f'<mo stretchy="true" symmetric="true" minsize="{size}em" maxsize="{size}em">'
            f"{_esc(symbol)}</mo>",
            kind,
        )

    def matrix(self) -> _Atom:
        env = self.raw_group()
        if env not in MATRICES:
            raise _error(f"the environment {env}", self.latex)
        rows = []
        while True:
            cells = [self.atoms(stop=(r"\end",))]
            while self.peek() == "&":
                self.take()
                cells.append(self.atoms(stop=(r"\end",)))
            rows.append("<mtr>" + "".join(f"<mtd>{_join(c)}</mtd>" for c in cells) + "</mtr>")
            if self.peek() != r"\\":
                break
            self.take()
        self.expect(r"\end")
        if self.raw_group() != env:
            raise _error(f"\\begin{{{env}}} closed by another \\end", self.latex)
        table = "<mtable>" + "".join(rows) + "</mtable>"
        left, right = MATRICES[env]
        if not left:
            return _Atom(table)
        return _Atom(f"<mrow><mo>{_esc(left)}</mo>{table}<mo>{_esc(right)}</mo></mrow>")


def _upright(word: str) -> str:
    # A one-letter <mi> is italic unless told otherwise; a longer one is upright.
    return f'<mi mathvariant="normal">{word}</mi>' if len(word) == 1 else f"<mi>{word}</mi>"


def _space(em: float) -> str:
    return f'<mspace width="{em:g}em"></mspace>'


def _text(raw: str, latex: str) -> list[_Atom]:
    r"""``\text{…}``: text, with maths between ``$…$`` inside it (``\text{($\checkmark$ …)}``)."""
    parts = re.split(r"(?<!\\)\$", raw)
    if len(parts) % 2 == 0:
        raise _error("an unpaired $ in \\text", latex)
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            out += _cells(part)[0] if part.strip() else []
        elif part:
            out.append(_Atom(_mtext(text_mode(part))))
    return out or [_Atom("<mrow></mrow>")]


def _mtext(text: str) -> str:
    # Layout drops the spaces at the ends of a token; \text{ feeds } needs them.
    text = re.sub(r"^ +| +$", lambda m: "\u00a0" * len(m.group()), text)
    return f"<mtext>{_esc(text)}</mtext>"


# --- entry points ------------------------------------------------------------------------------


def text_mode(latex: str) -> str:
    r"""LaTeX text (the inside of ``\text{…}``, the prose between ``$…$``) as plain Unicode:
    escapes and TeX's ligatures (``--`` –, ``''`` ”, ``~`` a no-break space) resolved.
    MathMLError for any other command, a brace or a ``$``.

    >>> text_mode(r"closed\_form --- J's \ldots{}")
    'closed_form — J’s …'
    """

    def one(token: re.Match[str]) -> str:
        if token.group(1) is not None:  # a command
            if token.group(1) not in TEXT_COMMANDS:
                raise _error(f"\\{token.group(1)}", latex)
            return TEXT_COMMANDS[token.group(1)]
        if token.group() in TEXT_LIGATURES:
            return TEXT_LIGATURES[token.group()]
        raise _error(f"{token.group()!r} in text", latex)

    return _TEXT_TOKEN.sub(one, latex)


def _cells(latex: str) -> list[list[_Atom]]:
    parser = _Parser(latex)
    cells = [parser.atoms()]
    while parser.peek() == "&":
        parser.take()
        cells.append(parser.atoms())
    if parser.peek() is not None:
        raise _error(f"a stray {parser.peek()!r}", latex)
    return cells


def math_inline(latex: str, breakable: bool = False) -> str:
    """One formula (no ``&``, no ``\\\\``) as an inline ``<math>``.

    ``breakable``: for a formula in a sentence. A browser never breaks a line inside a
    ``<math>``, so a long one would stick out of a phone's screen; TeX breaks inline maths
    after a relation or a binary operator, so here the formula is one ``<math>`` per piece
    ending there, and the line may break between them (each is an atomic inline).

    >>> math_inline("a = b + c", breakable=True)
    '<math><mi>a</mi><mo>=</mo></math><math><mi>b</mi><mo>+</mo></math><math><mi>c</mi></math>'
    """
    cells = _cells(latex)
    if len(cells) > 1:
        raise _error("'&' outside a display", latex)
    pieces: list[list[_Atom]] = [[]]
    for atom in cells[0]:
        if atom.kind != "space" and pieces[-1] and pieces[-1][-1].kind in ("rel", "bin"):
            pieces.append([])
        pieces[-1].append(atom)
    if not breakable:
        pieces = [cells[0]]
    return "".join(f"<math>{_join(piece)}</math>" for piece in pieces)


def math_display(rows: Sequence[str]) -> str:
    r"""The rows of an ``align*`` (``lhs &= rhs && label``; a row that starts ``&\quad``
    continues the equation above) as one display ``<math>`` holding an
    ``<mtable class="align">``: one ``<mtr>`` a row, one ``<mtd>`` a column, the columns
    aligned by the page's CSS (odd ones to the right, even ones to the left, as align*);
    continuation rows carry ``class="more"``.
    """
    parsed = [_cells(r) for r in rows]
    width = max((len(c) for c in parsed), default=0)
    out = []
    for row, cells in zip(rows, parsed, strict=True):
        tds = [f"<mtd>{_join(c)}</mtd>" for c in cells]
        tds += ["<mtd></mtd>"] * (width - len(cells))
        more = ' class="more"' if row.startswith(r"&\quad") else ""
        out.append(f"<mtr{more}>{''.join(tds)}</mtr>")
    return f'<math display="block"><mtable class="align">{"".join(out)}</mtable></math>'
