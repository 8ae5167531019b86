"""The HTML notes, part 1: the notes' LaTeX as MathML Core (bnsym.notes.mathml), construct
by construct, against MathML written by hand from the MathML Core specification, and the
refusal of anything outside the subset.
"""

from __future__ import annotations

import re

import pytest

from bnsym.notes.mathml import MathMLError, math_display, math_inline, text_mode

# --- the translation ----------------------------------------------------------------------------

MI, MN = "<mi>{}</mi>", "<mn>{}</mn>"
X_I = "<msub><mi>x</mi><mi>i</mi></msub>"


@pytest.mark.parametrize(
    ("latex", "mathml"),
    [
        ("x_{i}", X_I),
        (r"\sigma_{B}^{2}", "<msubsup><mi>σ</mi><mi>B</mi><mn>2</mn></msubsup>"),
        (r"\sigma ^{2}_{B}", "<msubsup><mi>σ</mi><mi>B</mi><mn>2</mn></msubsup>"),
        (r"\frac{1}{m}", "<mfrac><mn>1</mn><mi>m</mi></mfrac>"),
        (r"\sqrt{x + \epsilon}", "<msqrt><mrow><mi>x</mi><mo>+</mo><mi>ϵ</mi></mrow></msqrt>"),
        (r"\sqrt[3]{x}", "<mroot><mi>x</mi><mn>3</mn></mroot>"),
        # ∑ takes its limits under and over (MathML moves them aside in a sentence)
        (
            r"\sum_{j=1}^{m} x_{j}",
            "<munderover><mo>∑</mo><mrow><mi>j</mi><mo>=</mo><mn>1</mn></mrow><mi>m</mi>"
            "</munderover><msub><mi>x</mi><mi>j</mi></msub>",
        ),
        (
            r"\hat{x}_{i}",
            '<msub><mover accent="true"><mi>x</mi><mo stretchy="false">^</mo>'
            "</mover><mi>i</mi></msub>",
        ),  # fmt: skip
        # a binary minus, U+2212, spaced; a sign (at the start, after =) not
        ("a - b", "<mi>a</mi><mo>−</mo><mi>b</mi>"),
        ("- b", '<mo lspace="0" rspace="0">−</mo><mi>b</mi>'),
        ("a = - b", '<mi>a</mi><mo>=</mo><mo lspace="0" rspace="0">−</mo><mi>b</mi>'),
        ("{}- b", "<mrow></mrow><mo>−</mo><mi>b</mi>"),
        # \left( \right) stretch around a fraction, not around a subscript
        (
            r"\left(x_{j} - \mu\right)",
            '<mrow><mo stretchy="false">(</mo><mrow><msub><mi>x</mi><mi>j</mi></msub><mo>−</mo>'
            '<mi>μ</mi></mrow><mo stretchy="false">)</mo></mrow>',
        ),
        (
            r"\left(\frac{1}{2}\right)",
            "<mrow><mo>(</mo><mfrac><mn>1</mn><mn>2</mn></mfrac><mo>)</mo></mrow>",
        ),
        (
            r"\biggl( x",
            '<mo stretchy="true" symmetric="true" minsize="2.047em" '
            'maxsize="2.047em">(</mo><mi>x</mi>',
        ),  # fmt: skip
        (r"\text{ feeds }", "<mtext>\u00a0feeds\u00a0</mtext>"),
        (
            r"\text{($\checkmark$ ok)}",
            "<mrow><mtext>(</mtext><mi>✓</mi><mtext>\u00a0ok)</mtext></mrow>",
        ),
        (r"\mu_{\mathrm{run}}", "<msub><mi>μ</mi><mi>run</mi></msub>"),
        (r"\operatorname{E}", '<mi mathvariant="normal">E</mi>'),
        (r"\mathbf{1}^{\top}", "<msup><mn>𝟏</mn><mi>⊤</mi></msup>"),
        (r"\mathrel{+}= x", "<mo>+=</mo><mi>x</mi>"),
        ("3/2", '<mn>3</mn><mo stretchy="false" lspace="0" rspace="0">/</mo><mn>2</mn>'),
        (r"\approx 1.41421", "<mo>≈</mo><mn>1.41421</mn>"),
        (r"x \qquad y", '<mi>x</mi><mspace width="2em"></mspace><mi>y</mi>'),
        (
            r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}",
            "<mrow><mo>(</mo><mtable><mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd></mtr>"
            "<mtr><mtd><mi>c</mi></mtd><mtd><mi>d</mi></mtd></mtr></mtable><mo>)</mo></mrow>",
        ),
    ],
)
def test_each_construct_becomes_its_mathml(latex, mathml):
    assert math_inline(latex) == f"<math>{mathml}</math>"


def test_an_align_block_is_one_table_with_continuation_rows_marked():
    rows = (r"y &= a + b &&\text{(rule)}", r"&\quad {}+ c")
    out = math_display(rows)
    assert out.startswith('<math display="block"><mtable class="align"><mtr><mtd><mi>y</mi>')
    assert out.count("<mtr") == 2 and out.count('<mtr class="more">') == 1
    # every row has as many cells as the widest: the label column stays a column
    assert [len(re.findall("<mtd>", r)) for r in out.split("</mtr>")[:2]] == [4, 4]


def test_a_sentence_formula_may_break_after_relations_and_operators():
    # A browser breaks no line inside a <math>: a long formula in a sentence is cut into one
    # <math> per piece, each ending in a relation or a binary operator, as TeX breaks them.
    out = math_inline(r"y_{i} = \gamma x_{i} - \beta", breakable=True)
    assert out.count("<math>") == 3
    assert out.split("</math>")[0].endswith("<mo>=</mo>")
    assert math_inline("- x = y", breakable=True).count("<math>") == 2  # a sign does not break


@pytest.mark.parametrize(
    ("latex", "named"),
    [
        (r"\tilde{\infty}", r"\tilde"),  # SymPy's zoo: refused, never shown as raw TeX
        (r"\begin{cases} a \end{cases}", "environment cases"),
        ("x}", "stray '}'"),
        ("{x", "unexpected end"),
        ("é", "'é'"),
        (r"\frac{1}", "unexpected end"),
        (r"\text{$x}", "unpaired $"),
        (r"\left( x", "unexpected end"),
        ("x & y", "'&' outside a display"),
        ("x_{1}_{2}", "double _"),
        (r"\mathbf{\alpha}", "the name"),
    ],
)
def test_latex_outside_the_subset_is_refused_in_one_line(latex, named):
    with pytest.raises(MathMLError) as info:
        math_inline(latex)
    message = str(info.value)
    assert message.startswith("the notes hold LaTeX the web page cannot typeset: ")
    assert named in message and "\n" not in message


def test_text_mode_resolves_escapes_and_ligatures():
    assert (
        text_mode(r"closed\_form --- J's \ldots{} 50\% a~b") == "closed_form — J’s … 50% a\u00a0b"
    )
    for bad in (r"\textbf{x}", "{x}", "$x$"):
        with pytest.raises(MathMLError):
            text_mode(bad)
