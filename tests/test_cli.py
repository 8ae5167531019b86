"""The derive command through click's CliRunner: output, formats and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bnsym.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_derive_default_prints_the_derivation(run):
    result = run("derive", "--m", "4")
    assert result.exit_code == 0
    assert result.output.startswith("Batch normalization, m = 4")
    assert "✓ closed_form" in result.output


def test_derive_json_is_one_object(run):
    result = run("derive", "--m", "3", "--format", "json", "--eps", "1e-5")
    obj = json.loads(result.output)
    assert obj["options"]["eps"] == "1/100000" and obj["m"] == 3


def test_worked_example_from_the_notes(run):
    result = run("derive", "--m", "4", "--values", "2,0,2,4", "--eps", "0", "--format", "json")
    obj = json.loads(result.output)
    assert obj["x_hat"] == ["0", "-sqrt(2)", "0", "sqrt(2)"]


def test_output_file_is_written_and_format_taken_from_extension(run, tmp_path):
    target = tmp_path / "d.json"
    result = run("derive", "--m", "2", "-o", str(target))
    assert result.exit_code == 0 and result.output == ""
    assert json.loads(target.read_text())["m"] == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["--m", "0"], "m must be at least 1"),
        (["--m", "-3"], "m must be at least 1"),
        (["--m", "2.5"], "whole number"),
        (["--m", "four"], "whole number"),
        (["--m", "1"], "--mode eval"),
        (["--m", "200"], "--force"),
        (["--m", "4", "--eps", "-1"], "eps must be ≥ 0"),
        (["--m", "4", "--values", "1,2,3"], "3 value(s) but m = 4"),
        (["--m", "4", "--values", "1,2,three,4"], "'three' is not a number"),
        (["--m", "4", "--values", "3,3,3,3", "--eps", "0"], "divides by zero"),
        (["--m", "4", "--ascii", "--format", "json"], "--ascii applies to text"),
        (["--m", "4", "--standalone"], "--standalone applies to latex"),
        (["--m", "4", "--mode", "eval", "--variance", "unbiased"], "eval mode"),
        (["--m", "4", "--format", "html"], "--format 'html'"),
        (["--m", "4", "--format", "pdf"], "add -o FILE.pdf"),
        (["--m", "4", "--format", "latex", "-o", "notes.pdf"], "disagree"),
        (["--m", "4", "--format", "pdf", "-o", "notes.tex"], "disagree"),
        (["--m", "4", "-o", "notes.docx"], "extension"),
        (["--m", "4", "-o", "/nonexistent-dir/x.txt"], "does not exist"),
        (["--m", "4", "--bogus"], "No such option"),
        (["--m", "4", "--values", "1e99999,2,3,4"], "exponent beyond"),
        (["--m", "4", "--values", "1,2,,4"], "empty field"),
        (["--m", "4", "--dy", "1,0,0,0"], "give values too"),
    ],
)
def test_bad_input_is_one_line_exit_2(run, args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("derive", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert words in lines[0]
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_existing_file_is_not_clobbered_on_error(run, tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    result = run("derive", "--m", "1", "-o", str(target))
    assert result.exit_code == 2 and target.read_text() == "precious"


def test_python_dash_m_and_no_numpy_for_derive():
    code = (
        "import sys, runpy; sys.argv = ['bnsym', 'derive', '--m', '3'];"
        "import bnsym.cli;"
        "from bnsym import derive; derive(3).to_text(); derive(3).to_json();"
        "assert 'numpy' not in sys.modules, 'derive imported numpy'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "bnsym", "derive", "--m", "2", "--ascii"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.startswith("Batch normalization, m = 2") and out.isascii()


def test_import_bnsym_does_not_import_sympy():
    code = "import sys, bnsym; bnsym.__version__; assert 'sympy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_codegen_refuses_an_output_name_that_is_not_python(tmp_path):
    target = tmp_path / "notes.tex"
    result = CliRunner().invoke(main, ["codegen", "--m", "2", "-o", str(target)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert ".py" in result.output and not target.exists()
