"""The HTML notes: ``bnsym derive --format html`` / ``-o notes.html`` (bnsym.notes.html,
bnsym.notes.mathml).

Three kinds of test:

- the LaTeX → MathML translation, construct by construct, against MathML written by hand
  from the MathML Core specification, and its refusals;
- the pages, read as text: well formed, self-contained (no script, no load, nothing but
  MathML Core inside <math>), every section and every ✓ of the Markdown notes, the worked
  example's decimals equal to plain NumPy's, a graph whose arrows do not cross, m = 128 under
  1 MB, and the command line's file handling;
- the pages in a real browser: headless Chromium (tests/chromium.py, the DevTools protocol over
  a pipe) opens each file offline and reports every formula without a box, every MathML error
  or unknown element, every console message and network request, and sideways scrolling of the
  page on a 390 px phone; a page broken on purpose must be caught. Without Chromium these skip
  outside CI and fail in CI (.ci/run installs Debian's chromium), as the LaTeX tests do
  without pdflatex.

``python tests/test_html.py`` remakes docs/notes_html.png, the first screen of
``bnsym derive --m 4 -o notes.html``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import tempfile
import unicodedata
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from chromium import DESKTOP, MATHML_CORE, PHONE, Chromium, find_chromium
from click.testing import CliRunner

from bnsym.cli import main
from bnsym.derivation import derive
from bnsym.family import LAYERS
from bnsym.notes import html as notes_html
from bnsym.notes.mathml import MathMLError, math_display, math_inline, text_mode
from bnsym.notes.picture import graph_picture

# --- the translation ----------------------------------------------------------------------------

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


def test_prose_is_escaped_html_with_inline_mathml():
    out = notes_html.prose_html(r"\emph{Why:} a <b> \& \texttt{sum\_dx} is $x_{i}$.")
    assert out == f"<em>Why:</em> a &lt;b&gt; &amp; <code>sum_dx</code> is <math>{X_I}</math>."
    with pytest.raises(MathMLError, match="unclosed"):
        notes_html.prose_html(r"\emph{open")


# --- the pages, built by the command line -------------------------------------------------------

#: Every variant the browser checks: batch norm with m = 4, symbolic and with values, in eval
#: mode, orders 2 and 3, an odd variant of layer norm, and every other layer of the registry.
VARIANTS: dict[str, list[str]] = {
    "bn-m4": ["--m", "4"],
    "bn-m4-values": ["--m", "4", "--values", "2,0,2,4", "--dy", "1,0,0,-1", "--eps", "1e-5",
                     "--gamma", "2", "--beta", "0.5"],
    "bn-m4-eval": ["--m", "4", "--mode", "eval", "--values", "1,2,3,4", "--running-mean", "1",
                   "--running-var", "2", "--gamma", "2", "--beta", "0.5", "--dy", "1,0,0,-1"],
    "bn-m3-order2": ["--m", "3", "--order", "2"],
    "bn-m3-order3": ["--m", "3", "--order", "3"],
    "layernorm-m3-unbiased-outside-no-affine": ["--m", "3", "--layer", "layernorm", "--variance",
                                                "unbiased", "--eps-placement", "outside",
                                                "--no-affine"],
    **{f"{name}-m4": ["--m", "4", "--layer", name] for name in LAYERS if name != "batchnorm"},
}  # fmt: skip


def _derive_to(directory: Path, args: list[str], name: str = "notes.html") -> tuple[str, int]:
    with contextlib.chdir(directory):
        result = CliRunner().invoke(main, ["derive", *args, "-o", name])
    return result.output, result.exit_code


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """Each variant's page, written by ``bnsym derive ... -o NAME.html``."""
    out = {}
    directory = tmp_path_factory.mktemp("pages")
    for name, args in VARIANTS.items():
        output, code = _derive_to(directory, args, f"{name}.html")
        assert (output, code) == ("", 0), f"{name}: {output}"
        out[name] = directory / f"{name}.html"
    return out


class _Tree(HTMLParser):
    """Every element of a page (tag, attributes, the tags it sits in) and its text, with the
    nesting checked."""

    VOID = {"meta", "br", "wbr", "img", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[int] = []  # the elements not closed yet, by index
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.texts: list[list[str]] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(self.elements[k][0] for k in self.open)))
        self.texts.append([])
        if tag not in self.VOID:
            self.open.append(len(self.elements) - 1)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.open.pop()

    def handle_endtag(self, tag):
        if not self.open or self.elements[self.open[-1]][0] != tag:
            self.problems.append(f"</{tag}> closes {self.open and self.elements[self.open[-1]][0]}")
            return
        self.open.pop()

    def handle_data(self, data):
        for k in self.open:
            self.texts[k].append(data)

    def text_of(self, tag: str) -> list[str]:
        return ["".join(self.texts[k]) for k, e in enumerate(self.elements) if e[0] == tag]


def _tree(page: str) -> _Tree:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    return tree


#: What a page may be made of: HTML for the text, SVG for the graph, MathML Core for the maths.
HTML_ELEMENTS = set(
    """html head meta title style body header h1 h2 p code em nav ol li a main section div
    table thead tbody tr th td figure figcaption""".split()
)
SVG_ELEMENTS = {"svg", "defs", "marker", "path", "line", "circle", "foreignobject"}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_page_is_well_formed_and_self_contained(pages, name):
    page = pages[name].read_text(encoding="utf-8")
    tree = _tree(page)
    assert tree.problems == [] and tree.open == []
    tags = {tag for tag, _, _ in tree.elements}
    maths = {tag for tag, _, parents in tree.elements if "math" in parents}
    assert maths <= set(MATHML_CORE), maths - set(MATHML_CORE)
    assert tags - maths <= HTML_ELEMENTS | SVG_ELEMENTS | {"math"}, tags - maths - HTML_ELEMENTS
    ids = {attrs["id"] for _, attrs, _ in tree.elements if "id" in attrs}
    for tag, attrs, _ in tree.elements:
        assert not {"src", "style", "srcset", "action"} & set(attrs), (tag, attrs)
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        if "href" in attrs:  # links within the page only, each to a section that exists
            assert attrs["href"][0] == "#" and attrs["href"][1:] in ids, attrs["href"]
    # nothing to fetch, nothing to run: the CSP says so, and the page holds no URL at all
    assert f'content="{notes_html.CSP}"' in page and "script-src" not in notes_html.CSP
    assert not re.search(r"https?:|url\((?!#)|@import|@font-face|<script", page, re.IGNORECASE)


def _plain(text: str) -> str:
    """The text with no spaces, x₁ read as x1 (MathML writes a subscript as an element)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


@pytest.mark.parametrize("name", ["bn-m4", "bn-m4-values", "bn-m3-order3", "rmsnorm-m4"])
def test_the_page_has_every_section_and_every_check_mark_of_the_markdown(pages, name, tmp_path):
    # The Markdown notes of the same command, rendered by their own renderer, are the list of
    # what the notes say: every heading and every ✓ (in prose, or \checkmark in a formula).
    _derive_to(tmp_path, VARIANTS[name], "notes.md")
    markdown = (tmp_path / "notes.md").read_text(encoding="utf-8")
    page = pages[name].read_text(encoding="utf-8")
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert [_plain(h) for h in _tree(page).text_of("h2")] == [_plain(h) for h in headings]
    for mark, tex in (("✓", r"\checkmark"), ("✗", r"\times")):
        shown = markdown.count(mark) + (markdown.count(tex) if mark == "✓" else 0)
        assert page.count(mark) == shown, mark


def test_the_worked_example_table_holds_numpy_decimals(pages):
    # Batch norm in plain NumPy, the values of VARIANTS["bn-m4-values"].
    x, dy, gamma, beta, eps = np.array([2.0, 0, 2, 4]), np.array([1.0, 0, 0, -1]), 2.0, 0.5, 1e-5
    mu, var = x.mean(), x.var()
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx = gamma / (4 * np.sqrt(var + eps)) * (4 * dy - dy.sum() - x_hat * (dy * x_hat).sum())
    expected = {"xᵢ": x, "xᵢ − μ_B": x - mu, "x̂ᵢ": x_hat, "yᵢ": gamma * x_hat + beta,
                "∂ℓ/∂yᵢ": dy, "∂ℓ/∂xᵢ": dx}  # fmt: skip
    expected = {_plain(k.replace("x̂", "x^").replace("_", "")): v for k, v in expected.items()}
    tree = _tree(pages["bn-m4-values"].read_text(encoding="utf-8"))
    heads = [_plain(h) for h in tree.text_of("th")]
    cells = [float(c.replace("−", "-")) for c in tree.text_of("td")]
    rows = [cells[k : k + len(heads)] for k in range(0, len(cells), len(heads))]
    assert heads[0] == "i" and set(heads[1:]) == set(expected), heads
    for column, head in enumerate(heads[1:], start=1):
        for row, value in zip(rows, expected[head], strict=True):
            # four significant digits, rounded: within half a unit of the fourth digit
            unit = 10.0 ** (math.floor(math.log10(abs(value))) - 3) if value else 0.0
            assert abs(row[column] - value) <= unit / 2 + 1e-12, (head, row[column], value)


@pytest.mark.parametrize(
    "options",
    [
        *({"layer": name} for name in LAYERS),
        {"mode": "eval"},
        {"affine": False},
        {"layer": "layernorm", "eps_placement": "outside"},
    ],
    ids=lambda o: "-".join(str(v) for v in o.values()),
)
def test_no_two_arrows_of_the_graph_cross(options):
    pic = graph_picture(derive(4, **options))
    at = notes_html.node_positions(pic)
    assert len(set(at.values())) == len(at) == len(pic.nodes)
    arrows = [(at[e.parent], at[e.child]) for e in pic.edges]

    def turn(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    for (p, q), (r, s) in combinations(arrows, 2):
        if {p, q} & {r, s}:
            continue  # arrows that meet at a node
        crossing = turn(p, q, r) * turn(p, q, s) < 0 and turn(r, s, p) * turn(r, s, q) < 0
        assert not crossing, (p, q, r, s)
    for p, q in arrows:  # and no arrow runs through a node it does not join
        for c in set(at.values()) - {p, q}:
            t = max(0, min(1, ((c[0] - p[0]) * (q[0] - p[0]) + (c[1] - p[1]) * (q[1] - p[1]))
                           / ((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2)))  # fmt: skip
            gap = math.dist(c, (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
            assert gap > notes_html.R + 8, (p, q, c)


def test_the_graph_is_drawn_with_mathml_labels(pages):
    page = pages["bn-m4"].read_text(encoding="utf-8")
    figure = page[page.index("<figure>") : page.index("</figure>")]
    pic = graph_picture(derive(4))
    assert figure.count("<line ") == len(pic.edges)
    assert figure.count("<foreignObject") == figure.count("<circle ") == len(pic.nodes)
    assert figure.count('stroke-dasharray="5 4"') == sum(e.local == 0 for e in pic.edges) == 1


def test_the_html_of_m_128_is_under_1_MB():
    page = derive(128).to_html()
    assert len(page.encode("utf-8")) < 1_000_000


def test_to_html_is_the_html_format():
    d = derive(2)
    page = d.to_html()
    assert page == notes_html.to_html(d) and page.startswith("<!DOCTYPE html>\n")
    assert "Made by" not in page  # no command line to show from the API


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["notes.html", "notes.htm", "NOTES.HTML"])
def test_o_with_an_html_name_writes_the_page(tmp_path, name):
    assert _derive_to(tmp_path, ["--m", "2"], name) == ("", 0)
    page = (tmp_path / name).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert f"Made by <code>bnsym derive --m 2 -o {name}</code> with bnsym." in page


def test_format_html_writes_the_page_to_standard_output():
    result = CliRunner().invoke(main, ["derive", "--m", "2", "--format", "html"])
    assert result.exit_code == 0 and result.output.startswith("<!DOCTYPE html>")
    assert "Made by <code>bnsym derive --m 2 --format html</code>" in result.output


def test_the_command_shown_cannot_inject_html(tmp_path):
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(main, ["derive", "--m", "2", "-o", "<b>&x\n.html"])
    assert result.exit_code == 0
    page = (tmp_path / "<b>&x\n.html").read_text(encoding="utf-8")
    assert "<code>bnsym derive --m 2 -o '&lt;b&gt;&amp;x\\n.html'</code>" in page


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--m", "4", "--values", "1,2,3"], "3 value(s) but m = 4"),
        (["--m", "4", "--standalone"], "--standalone applies to latex"),
        (["--m", "4", "--ascii"], "--ascii applies to text"),
        (["--m", "4", "--format", "latex"], "disagree"),
        (["--m", "1"], "--mode eval"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, args, words):
    output, code = _derive_to(tmp_path, args)
    assert code == 2 and output.startswith("Error: ") and output.count("\n") == 1, output
    assert words in output
    assert list(tmp_path.iterdir()) == []


def test_a_page_that_cannot_be_made_leaves_no_file_and_the_old_one_whole(tmp_path, monkeypatch):
    (tmp_path / "notes.html").write_text("old\n")

    def refuse(rows):
        raise MathMLError("the notes hold LaTeX the web page cannot typeset: \\tilde (in 'x').")

    monkeypatch.setattr(notes_html, "math_display", refuse)
    output, code = _derive_to(tmp_path, ["--m", "2"])
    assert (
        code == 2 and output.startswith("Error: the notes hold LaTeX") and output.count("\n") == 1
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.html"]
    assert (tmp_path / "notes.html").read_text() == "old\n"


# --- in a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the module (its start costs a second or two; each page after
    that a fraction of one)."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI; .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium fonts-lmodern)")
    with Chromium(binary) as chromium:
        yield chromium


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_formula_is_laid_out_on_a_desktop_and_on_a_phone(browser, pages, name):
    page = pages[name]
    count = page.read_text(encoding="utf-8").count("<math")
    desktop = browser.check(page)
    assert desktop.problems == {}, str(desktop)
    assert desktop.probe["maths"] == count > 0
    phone = browser.check(page, PHONE[0], mobile=True)
    assert phone.problems == {}, str(phone)  # the page itself never scrolls sideways


def test_printed_every_formula_fits_the_page(browser, pages):
    # A4 less the page's 15 mm margins is 180 mm, 680 CSS pixels: laid out for print at that
    # width, no formula sticks out (print shows no scroll bar), and Chromium prints the page.
    page = pages["bn-m4"]
    printed = browser.check(page, 680, media="print")
    assert printed.problems == {}, str(printed)
    pdf = browser.pdf()
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000


#: A page broken on purpose, one way each, and what the check must call it.
BROKEN = {
    "mfenced": ("<math><mfenced><mi>x</mi></mfenced></math>", "not_core"),
    "merror": ("<math><merror><mtext>bad</mtext></merror></math>", "merror"),
    "empty-math": ("<p><math></math></p>", "empty"),
    "entity-as-text": ("<math><mi>&amp;bogus;</mi></math>", "entities"),
    "invisible-token": ("<math><mi>x</mi><mi>&InvisibleTimes;</mi></math>", "zero_tokens"),
    "script": ("<script>document.title = 'ran';</script>", "console"),
    "remote-image": ('<img src="https://example.invalid/x.png" alt="">', "console"),
    "wide-formula": ("<p><math>" + "<mi>x</mi>" * 400 + "</math></p>", "page_scrolls_sideways"),
    "cut-off-block": (
        '<div class="eq"><math display="block" style="margin-left:-80px">'
        "<mi>x</mi><mo>=</mo><mn>1</mn></math></div>",
        "cut_left",
    ),  # fmt: skip
    "clipped-label": (
        '<svg viewBox="0 0 40 40" width="40"><foreignObject width="8" height="8">'
        "<div><math><mi>xyzw</mi></math></div></foreignObject></svg>",
        "clipped_labels",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_page_broken_on_purpose_is_caught(browser, pages, tmp_path, name):
    defect, kind = BROKEN[name]
    page = pages["bn-m4"].read_text(encoding="utf-8").replace("</main>", defect + "</main>")
    broken = tmp_path / f"{name}.html"
    broken.write_text(page, encoding="utf-8")
    report = browser.check(broken, PHONE[0], mobile=True)
    assert kind in report.problems, str(report)


def test_a_request_is_caught_on_a_page_without_the_policy(browser, pages, tmp_path):
    # The policy blocks every load before it starts; the check must see one that does start.
    page = pages["bn-m4"].read_text(encoding="utf-8")
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    page = page.replace("</head>", '<link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head>')
    broken = tmp_path / "request.html"
    broken.write_text(page, encoding="utf-8")
    report = browser.check(broken)
    assert report.requests == ["http://127.0.0.1:9/x.css"], str(report)


# --- the screenshot in docs/ ----------------------------------------------------------------

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "notes_html.png"


def test_the_screenshot_in_docs_is_a_first_screen():
    # Remade by ``python tests/test_html.py``: a PNG of a 1280 × 800 desktop's first screen.
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == DESKTOP


def make_screenshot(path: Path = SCREENSHOT) -> None:
    """The first screen of ``bnsym derive --m 4 -o notes.html`` in Chromium, as a PNG."""
    with tempfile.TemporaryDirectory() as tmp:
        assert _derive_to(Path(tmp), ["--m", "4"]) == ("", 0)
        with Chromium() as chromium:
            report = chromium.check(Path(tmp, "notes.html"))
            assert report.problems == {}, str(report)
            chromium.screenshot(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    make_screenshot()
