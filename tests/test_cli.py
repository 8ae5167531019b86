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
        (["--m", "600"], "--force"),
        (["--m", "4", "--eps", "-1"], "eps must be ≥ 0"),
        (["--m", "4", "--values", "1,2,3"], "3 value(s) but m = 4"),
        (["--m", "4", "--values", "1,2,three,4"], "'three' is not a number"),
        (["--m", "4", "--values", "3,3,3,3", "--eps", "0"], "divides by zero"),
        (["--m", "4", "--ascii", "--format", "json"], "--ascii applies to text"),
        (["--m", "4", "--standalone"], "--standalone applies to latex"),
        (["--m", "4", "--mode", "eval", "--variance", "unbiased"], "eval mode"),
        (["--m", "4", "--format", "docx"], "--format 'docx'"),
        (["--m", "4", "--format", "pdf"], "add -o FILE.pdf"),
        (["--m", "4", "--format", "latex", "-o", "notes.pdf"], "disagree"),
        (["--m", "4", "--format", "pdf", "-o", "notes.tex"], "disagree"),
        (["--m", "4", "-o", "notes.docx"], "extension"),
        (["--m", "4", "-o", "/nonexistent-dir/x.txt"], "does not exist"),
        (["--m", "4", "--bogus"], "No such option"),
        (["--m", "4", "--values", "1e99999,2,3,4"], "exponent beyond"),
        (["--m", "4", "--values", "1,2,,4"], "empty field"),
        (["--m", "4", "--dy", "1,0,0,0"], "give --values too"),
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


# --- targets that say what they are -----------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--format", "text", "-o", "out.json"], "a .json file holds json output"),
        (["--format", "latex", "-o", "out.json"], "a .json file holds json output"),
        (["--format", "json", "-o", "notes.md"], "a .md file holds markdown output"),
        (["-o", "sub/out.tex/"], "ends with '/', which names a directory"),
        (["-o", "out.tex/"], "ends with '/', which names a directory"),
    ],
    ids=["text-into-json", "latex-into-json", "json-into-md", "dir-slash", "slash"],
)
def test_a_target_that_contradicts_its_format_is_refused_and_nothing_written(
    run, tmp_path, monkeypatch, args, words
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    result = CliRunner().invoke(main, ["derive", "--m", "2", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub"]


def test_codegen_refuses_a_directory_path_for_its_module(tmp_path):
    result = CliRunner().invoke(main, ["codegen", "--m", "2", "-o", f"{tmp_path}/out.py/"])
    assert result.exit_code == 2 and "names a directory" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_full_device_is_one_line_and_exit_1():
    done = subprocess.run(
        f"{sys.executable} -m bnsym derive --m 4 > /dev/full",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        "Error: cannot write the output: No space left on device; write to a file with -o.\n"
    )


def test_a_closed_pipe_is_quiet():
    # the reader stops after one line; bnsym writes the rest into a closed pipe
    done = subprocess.run(
        f"{sys.executable} -m bnsym derive --m 16 --format latex | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        executable="/bin/bash",
    )
    assert done.returncode == 0 and len(done.stdout) == 10
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_bare_bnsym_shows_the_help():
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ") and "Commands:" in result.output
    assert "derive" in result.output and "Error" not in result.output
