"""Replay the recorded command-line sessions in cli/ and fail on any difference.

Each file in cli/ is one session: a first line ``$ bnsym ...`` (the command, shell-quoted),
then the exact output (standard output and standard error, as a terminal shows them), then a
last line ``[exit N]``. They are the README's examples, so they cannot go stale.

Refresh them after an intended change of output with:  python tests/test_cli_sessions.py
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnsym.cli import main

CLI_DIR = Path(__file__).resolve().parent.parent / "cli"
SESSIONS = sorted(CLI_DIR.glob("*.txt"))


def parse(path: Path) -> tuple[list[str], str, int]:
    text = path.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    assert first.startswith("$ bnsym "), f"{path.name}: first line must be '$ bnsym ...'"
    body, _, last = rest.rstrip("\n").rpartition("\n")
    assert last.startswith("[exit ") and last.endswith("]"), f"{path.name}: no [exit N] line"
    return shlex.split(first[len("$ bnsym ") :]), body + "\n" if body else "", int(last[6:-1])


def run(args: list[str], cwd: Path) -> tuple[str, int]:
    runner = CliRunner()
    with contextlib.chdir(cwd):  # files the command writes land in cwd, a temporary directory
        result = runner.invoke(main, args, catch_exceptions=False)
    return result.output, result.exit_code


def render(args: list[str], output: str, code: int) -> str:
    return f"$ bnsym {shlex.join(args)}\n{output}[exit {code}]\n"


def test_sessions_are_the_recorded_ones():
    # A session file that RECORD no longer makes would replay forever without being refreshed.
    assert {p.stem for p in SESSIONS} == set(RECORD)


# Errors printed by the numerical checks (2.22e-16 and the like) are floating-point rounding,
# which may differ in the last digits on another CPU or NumPy build; they are compared as
# "some number in scientific notation". Everything else, verdicts included, is exact.
_ROUNDING = re.compile(r"\b\d(?:\.\d+)?e[-+]\d\d\b")
# A value printed in full (the worst entry of a disagreement) keeps its first 8 digits.
_FULL_VALUE = re.compile(r"(\d\.\d{7})\d+")


def comparable(path: Path, text: str) -> str:
    if path.stem.startswith(("check_", "gradcheck_")):
        return _FULL_VALUE.sub(r"\1…", _ROUNDING.sub("<x.xxe±xx>", text))
    return text


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_session_replays_exactly(path, tmp_path):
    args, expected, code = parse(path)
    if args[0] == "check" and "--no-torch" not in args:
        pytest.importorskip("torch")  # the session shows PyTorch's rows (CI installs it)
    output, exit_code = run(args, tmp_path)
    assert comparable(path, output) == comparable(path, expected), (
        f"{path.name}: output differs; refresh with python {__file__}"
    )
    assert exit_code == code


# The sessions, by file name: the examples of the lecture notes in ../shared/seeds/ among them.
RECORD = {
    "derive_m4": "derive --m 4",
    "derive_m2_json": "derive --m 2 --format json",
    "derive_m3_ascii": "derive --m 3 --ascii",
    "example_2_0_2_4": "derive --m 4 --values 2,0,2,4 --eps 0",
    "example_scaled_200": "derive --m 4 --values 200,0,200,400 --eps 0",
    "example_2_0_2_4_unbiased": "derive --m 4 --values 2,0,2,4 --eps 0 --variance unbiased",
    "example_with_dy": "derive --m 4 --values 2,0,2,4 --eps 0 --dy 1,0,0,0",
    "example_gpa_iq": "derive --m 4 --values '8.9,6.2,8.3,9.2;100,25,2,70' --eps-placement outside",
    "example_two_nodes": "derive --m 2 --values '1,10;2,11' --eps 0",
    "example_cgpa_iq": "derive --m 4 --values '7,8,9,6;70,80,90,60' --eps-placement outside",
    "example_test_time": "derive --m 4 --mode eval --values '8,7,6,9;80,70,60,90'",
    "example_algorithm1": "derive --m 4 --values '6,9,8,5;8,9,8,6' --eps 1e-5 --format json",
    # the lecture notes' other forms (issue 12, item 6; docs/lecture_forms.md)
    "example_sqrt_outside": (
        "derive --m 4 --values 2,0,2,4 --eps 1e-4 --eps-placement sqrt-outside"
    ),
    "example_constant_outside": (
        "derive --m 4 --values 3,3,3,3 --eps 1e-4 --eps-placement outside --dy 1,0,0,0"
    ),
    "example_test_time_outside": (
        "derive --m 4 --mode eval --eps-placement outside --values '8,7,6,9;80,70,60,90' "
        "--running-mean 7.5,75 --running-var 1.25,125 --eps 1e-5"
    ),
    "check_m4_sqrt_outside": "check --m 4 --eps-placement sqrt-outside --no-torch",
    "check_m4_eval_outside": "check --m 4 --mode eval --eps-placement outside --no-torch",
    "error_m1": "derive --m 1",
    "error_values": "derive --m 4 --values 1,2,3",
    "notes_markdown_m2": "derive --m 2 --format markdown",
    "notes_latex_eval": "derive --m 2 --mode eval --format latex",
    "error_notes_extension": "derive --m 4 -o notes.docx",
    "codegen_m2": "codegen --m 2",
    "error_codegen_output": "codegen --m 4 -o missing-dir/bn_m4.py",
    "check_m4": "check --m 4 --no-torch",
    "check_m3_outside_unbiased": (
        "check --m 3 --variance unbiased --eps-placement outside --no-torch"
    ),
    "gradcheck_reference": (
        "gradcheck bnsym.reference:batchnorm_forward bnsym.reference:batchnorm_backward "
        "--input 4,3 --input 3 --input 3"
    ),
    "error_gradcheck_spec": "gradcheck nomodule forward --input 4,3",
    # the family and higher orders
    "derive_layernorm_m4": "derive --layer layernorm --m 4",
    "check_groupnorm_m4_c2": "check --layer groupnorm --m 4 --channels 2",
    "check_layernorm_order3": "check --layer layernorm --order 3",
    "error_layer": "derive --layer batchnorm2d --m 4",
    # forward mode and its compositions with reverse mode (issue 17; docs/forward_mode.md)
    "derive_rmsnorm_m2_modes": "derive --layer rmsnorm --m 2 --modes fwd",
    "check_layernorm_modes": "check --layer layernorm --modes fwd,rev --order 2",
    "check_groupnorm_modes": "check --layer groupnorm --channels 2 --modes fwd,rev --order 2",
    "error_modes": "derive --m 4 --modes jvp",
}


if __name__ == "__main__":
    CLI_DIR.mkdir(exist_ok=True)
    import tempfile

    for name, command in RECORD.items():
        args = shlex.split(command)
        with tempfile.TemporaryDirectory() as tmp:
            output, code = run(args, Path(tmp))
        (CLI_DIR / f"{name}.txt").write_text(render(args, output, code), encoding="utf-8")
        print(f"cli/{name}.txt  [exit {code}]", file=sys.stderr)
