"""Every command the README and docs/*.md show is run, and its shown output compared, so that
the documentation cannot go stale.

The convention the documents follow (a document that breaks it fails here):

- A ```` ```sh ```` block lists commands: each line that starts with ``bnsym`` is run. What
  follows an unquoted ``#`` is a comment; a comment that says ``exit N`` gives the exit status
  the command must have (a failed check exits 1), else it must exit 0.
- A ```` ```console ```` block shows a session: a line ``$ bnsym …`` is a command, run, and the
  lines after it, up to the next ``$`` line, are its output as shown. Lines of other commands
  (``$ python …``) are not run.
- A shown output is compared line by line with the command's (trailing spaces aside). A line
  that holds only ``…`` (or ``...``) stands for any number of lines, none included: an excerpt
  starts and ends with one. Floating-point errors printed by ``check`` and ``gradcheck``
  (``2.22e-16``) are compared as "a number in scientific notation" and long values by their
  first 8 digits, as tests/test_cli_sessions.py does: they are rounding, not content.
- An inline code span that is a whole command (``bnsym derive --m 4 --values 2,0,2,4 --eps
  0``) is run too, and must exit 0 (or the ``exit N`` that follows it in brackets). A span
  with a placeholder — a word in capitals (NAME, FILE, M), ``|``, ``[…]`` or ``…`` — is a
  synopsis, not a command, and is not run.
- No ``bnsym`` command stands in any other kind of block (an indented block, a fence without
  ``sh`` or ``console``).

Each command runs once, with click's test runner, in a fresh temporary directory that holds
``docs/examples/`` as in the repository and, at its top, every module of ``docs/examples``
(so that ``bnsym gradcheck mylayers:affine_forward …`` imports as from a user's directory).
A ``check`` that compares with PyTorch needs it (CI installs it).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnsym.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = ROOT / "docs" / "examples"


@dataclass(frozen=True)
class Shown:
    """A command as a document shows it: where, the command, its exit status and its shown
    output (None where only the status is checked)."""

    where: str
    command: str
    status: int
    output: tuple[str, ...] | None = None


def _fences(text: str) -> list[tuple[str, list[str], int]]:
    """(info string, lines, line number) of each fenced block."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        hit = re.match(r"(`{3,}|~{3,})(.*)", lines[i])
        if hit:
            fence, body, j = hit.group(1), [], i + 1
            while j < len(lines) and not lines[j].startswith(fence):
                body.append(lines[j])
                j += 1
            out.append((hit.group(2).strip(), body, i + 1))
            i = j
        i += 1
    return out


def _status(comment: str) -> int:
    hit = re.search(r"\bexit (\d+)\b", comment)
    return int(hit.group(1)) if hit else 0


def _split(line: str) -> tuple[str, str]:
    """A shell line as (command, comment): the comment starts at an unquoted #. The command
    is written canonically (shlex), so that one command shown twice runs once."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return shlex.join(shlex.split(line[:k])), line[k + 1 :]
    return shlex.join(shlex.split(line)), ""


#: a synopsis rather than a command: a placeholder in capitals, alternatives, optional parts
_SYNOPSIS = re.compile(r"(?<![\w-])[A-Z]{1,}(?![\w-])|\||\[|\]|…|\.\.\.")
_COMMAND_SPAN = re.compile(
    r"`(bnsym (?:derive|codegen|check|gradcheck) [^`]+)`((?:\s*\(exit \d+)?)"
)


def shown_commands() -> tuple[list[Shown], list[str]]:
    """Every command the documents show, and every breach of the convention."""
    found: list[Shown] = []
    breaches: list[str] = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        for info, body, start in _fences(text):
            kind = info.split()[0] if info else ""
            for k, line in enumerate(body):
                where = f"{name}:{start + 1 + k}"
                if kind == "sh" and line.startswith("bnsym "):
                    command, comment = _split(line)
                    found.append(Shown(where, command, _status(comment)))
                elif kind == "console" and line.startswith("$ bnsym "):
                    command, comment = _split(line[2:])
                    output = []
                    for rest in body[k + 1 :]:
                        if rest.startswith("$ "):
                            break
                        output.append(rest.rstrip())
                    found.append(Shown(where, command, _status(comment), tuple(output) or None))
                elif re.match(r"\s*(\$ )?bnsym ", line) and kind not in ("sh", "console"):
                    breaches.append(f"{where}: a bnsym command in a ``{info}`` block")
        for k, line in enumerate(text.splitlines(), start=1):
            if re.match(r" {4,}(\$ )?bnsym ", line) and not _inside_fence(text, k):
                breaches.append(f"{name}:{k}: a bnsym command in an indented block")
        for hit in _COMMAND_SPAN.finditer(text):
            command = " ".join(hit.group(1).split())
            if _SYNOPSIS.search(command.partition(" ")[2]):
                continue
            command = shlex.join(shlex.split(command))
            line = text.count("\n", 0, hit.start()) + 1
            found.append(Shown(f"{name}:{line}", command, _status(hit.group(2))))
    return found, breaches


def _inside_fence(text: str, line: int) -> bool:
    return any(start <= line <= start + len(body) for _, body, start in _fences(text))


SHOWN, BREACHES = shown_commands()
COMMANDS = sorted({s.command for s in SHOWN})


def test_the_documents_follow_the_convention():
    assert not BREACHES, "\n".join(BREACHES)
    assert len(COMMANDS) > 20  # the README and docs show commands, and they are found


#: rounding, printed by check and gradcheck: compared as a kind of number, not digit by digit
_ROUNDING = re.compile(r"\b\d(?:\.\d+)?e[-+]\d\d\b")
_FULL_VALUE = re.compile(r"(\d\.\d{7})\d+")


def _comparable(command: str, line: str) -> str:
    line = line.rstrip()
    if command.split()[1] in ("check", "gradcheck"):
        line = _FULL_VALUE.sub(r"\1…", _ROUNDING.sub("<x.xxe±xx>", line))
    return line


def _matches(shown: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``shown`` with each gap line (… alone) standing for any lines."""
    if not shown:
        return not actual
    head, *rest = shown
    if head.strip() in ("…", "..."):
        return any(_matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and head == actual[0] and _matches(rest, actual[1:])


def _run(command: str, tmp: Path) -> tuple[str, int]:
    shutil.copytree(EXAMPLES, tmp / "docs" / "examples")
    for module in EXAMPLES.glob("*.py"):
        shutil.copy(module, tmp / module.name)
    runner = CliRunner()
    with contextlib.chdir(tmp):
        result = runner.invoke(main, shlex.split(command)[1:], catch_exceptions=False)
    return result.output, result.exit_code


def _needs_torch(command: str) -> bool:
    words = command.split()
    return words[1] == "check" and "--no-torch" not in words


@pytest.mark.parametrize("command", COMMANDS)
def test_a_shown_command_runs_and_prints_what_is_shown(command, tmp_path, request):
    if _needs_torch(command):
        request.getfixturevalue("torch")
    output, status = _run(command, tmp_path)
    actual = [_comparable(command, line) for line in output.splitlines()]
    for shown in (s for s in SHOWN if s.command == command):
        assert status == shown.status, (
            f"{shown.where}: exit {status}, shown {shown.status}\n{output[-2000:]}"
        )
        if shown.output is None:
            continue
        expected = [_comparable(command, line) for line in shown.output]
        assert _matches(expected, actual), (
            f"{shown.where}: the output of `{command}` differs from what is shown:\n"
            + "\n".join(expected[:12])
            + "\n--- printed ---\n"
            + "\n".join(actual[:40])
        )


def test_the_gap_matching_is_strict():
    assert _matches(["a", "…", "d"], ["a", "b", "c", "d"])
    assert _matches(["…", "c", "…"], ["a", "b", "c", "d"])
    assert not _matches(["a", "c"], ["a", "b", "c"])
    assert not _matches(["…", "x", "…"], ["a", "b"])
