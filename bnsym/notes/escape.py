"""Text from the command line (file names, values) made safe for the file it is written into.

The command that made a file is shown in it. It is the user's text, so it may hold anything
a shell can pass: a newline (which would end a LaTeX comment and start LaTeX — ``\\input`` of
any readable file — or end a Markdown code span and start HTML), backticks, TeX specials,
characters pdflatex has no glyph for. Each function here returns text that its format shows
literally and that cannot end the construct it sits in.
"""

from __future__ import annotations

import re

from bnsym.notes.prose import ProseError, text_tex

#: Characters that end a line for TeX, an editor or a Markdown renderer, and other controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def visible_controls(text: str) -> str:
    """``text`` with line breaks and other control characters written as escapes (``\\n``).

    >>> visible_controls("a\\nb")
    'a\\\\nb'
    """
    return _CONTROL.sub(lambda c: repr(c.group())[1:-1], text)


def latex_comment(text: str) -> str:
    """``text`` for the rest of a ``%`` comment line: nothing in it can end the comment."""
    return visible_controls(text)


def latex_text(text: str) -> str:
    """``text`` as LaTeX text (for ``\\texttt``): specials escaped, controls made visible, and
    a character pdflatex cannot set written as its code point, ``<U+FF14>``.

    >>> print(latex_text("é\\n_"))
    \\textless{}U+00E9\\textgreater{}\\textbackslash{}n\\_
    """
    out = []
    for c in visible_controls(text):
        try:
            out.append(text_tex(c))
        except ProseError:
            out.append(f"<U+{ord(c):04X}>")
    return "".join(out).replace("<", r"\textless{}").replace(">", r"\textgreater{}")


def markdown_code(text: str) -> str:
    """``text`` as one Markdown code span: fenced by more backticks than it holds in a row,
    so that nothing in it is read as Markdown or HTML, and on one line.

    >>> markdown_code("a `b` <script>")
    '`` a `b` <script> ``'
    """
    text = visible_controls(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") or text.endswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def command_text(command: object) -> str | None:
    """``command`` (the command line shown in a generated file) checked to be text or None."""
    if command is not None and not isinstance(command, str):
        raise TypeError(f"command must be a string (the command line to show), not {command!r}.")
    return command
