"""A newcomer's rough edges (issue 18, item 5), each with its test: one install advice
everywhere; PyTorch's known defect named as such by ``bnsym check`` while it still exits 1;
the eval-mode lecture example with numbers in its decimal tables; command-line messages that
name --flags, not Python's arguments; page 1 of the notes in a student's words. (Elsewhere:
-o FILE.tex compiles on its own, tests/test_notes.py; the graph at ε = 0 without ε and no two
arrows crossing, tests/test_picture.py; upright operators, tests/test_wording.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnsym import derive
from bnsym.cli import main
from bnsym.core.options import DerivationError
from bnsym.crosscheck.oracles import KNOWN_DEFECTS, known_defect
from bnsym.limits import LimitError

ROOT = Path(__file__).resolve().parent.parent


def _run(command: str):
    return CliRunner().invoke(main, shlex.split(command))


# --- one install advice ------------------------------------------------------------------------

#: The one advice: the pinned extra (and, for a clone, the same extra with the test tools).
ADVICE = (
    "pip install 'bnsym[torch]'",
    "pip install -e '.[test,torch]'",
    "pip install -q -e '.[test,torch]'",
)


def test_every_install_advice_for_pytorch_is_the_pinned_extra():
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob(".ci/*")]
    for folder in ("bnsym", "benchmarks", "scripts", "tests"):
        files += (ROOT / folder).rglob("*.py")
    advice = re.compile(r"pip install[^\n`\"]*torch[^\n`\"]*")
    found = []
    for path in files:
        if path.name == "test_newcomer.py":
            continue
        for hit in advice.finditer(path.read_text(encoding="utf-8")):
            text = hit.group(0).replace("\\", "")  # a regular expression's escapes
            found.append((path.relative_to(ROOT), text))
            assert text.startswith(ADVICE), (path, text)
    assert found  # the README, the check's report and the checker give it


# --- PyTorch's known defect ----------------------------------------------------------------------


def test_known_defects_are_data_next_to_the_oracles():
    fused = ("batch_norm", "layer_norm", "instance_norm")  # group and RMS norm: none known
    assert {k for k, _ in KNOWN_DEFECTS} == set(fused)
    assert set(KNOWN_DEFECTS) == {(k, w) for k in fused for w in (3, "ff", "rf", "order3")}
    defect = known_defect("instance_norm", 3, "train", "tx")
    assert defect is not None and defect.issues == (
        "pytorch/pytorch#175754",
        "pytorch/pytorch#186256",
    )
    assert known_defect("batch_norm", 3, "eval", "tx") is None  # eval mode agrees
    assert known_defect("group_norm", 3, "train", "tx") is None
    assert known_defect("layer_norm", 2, "train", "gx") is None
    # forward mode: any output of the composition, training only, reported or said not to be
    assert known_defect("layer_norm", "ff", "train", "tty").issues == ("pytorch/pytorch#196700",)
    assert known_defect("batch_norm", "rf", "train", "dx").issues == ()
    assert known_defect("batch_norm", "ff", "eval", "tty") is None


def test_check_names_pytorchs_known_defect_and_still_exits_1(torch):
    r = _run("check --layer layernorm --order 3")
    assert r.exit_code == 1, r.output
    assert "odd one out: torch-native on tx" in r.output
    note = next(line for line in r.output.splitlines() if line.startswith("known PyTorch defect"))
    assert "torch.nn.functional.layer_norm on tx" in note
    assert "pytorch/pytorch#175754" in note and "pytorch/pytorch#186256" in note
    assert r.output.rstrip().splitlines()[-1].startswith("FAILED: 3 of 18, all from PyTorch's")
    clean = _run("check --layer groupnorm --channels 2 --order 3")
    assert clean.exit_code == 0 and "known PyTorch defect" not in clean.output


# --- the eval-mode lecture example ----------------------------------------------------------------


def test_the_eval_example_has_numbers_in_its_decimal_tables():
    r = _run("derive --m 4 --mode eval --values '8,7,6,9;80,70,60,90'")
    assert r.exit_code == 0
    tables = r.output.split("In decimals")[1:]
    assert len(tables) == 2
    for table, x in zip(tables, ([8, 7, 6, 9], [80, 70, 60, 90]), strict=True):
        rows = [ln.split(maxsplit=3) for ln in table.splitlines()[3:7]]
        centred = [float(row[2].replace("−", "-")) for row in rows]
        # the running statistics are the values' own mean (the example gives none)
        np.testing.assert_allclose(centred, np.array(x) - np.mean(x), rtol=1e-3)
        x_hat = r"−?\d+(\.\d+)?/√\(\d+(\.\d+)? \+ ε\)"  # a decimal over √(σ²_run + ε)
        assert all(re.match(x_hat, row[3]) for row in rows), rows
    assert "the mean and variance (1/m) of these values" in r.output


# --- messages name --flags ---------------------------------------------------------------------

BAD = [
    "derive --m 100000",
    "derive --m 1",
    "derive --m four",
    "derive --m 4 --mode bogus",
    "derive --m 4 --eps-placement bogus",
    "derive --m 4 --eps -1",
    "derive --m 4 --dy 1,2,3,4",
    "derive --m 4 --values 1,2,3",
    "derive --m 4 --gamma 1",
    "derive --m 4 --values 1,2,3,4 --gamma 1,2",
    "derive --m 4 --mode eval --values 1,2,3,4 --running-var -1",
    "derive --m 4 --values 1,2,3,4 --running-mean 1",
    "derive --m 4 --layer groupnorm --channels 3",
    "derive --m 4 --no-affine --values 1,2,3,4 --gamma 1",
    "check --m 4 --features 100000000",
    "codegen --m 5000",
    "check --order 2 --m 40",
]
#: a Python argument in a message: name=value, or an argument's name with its underscore
PYTHON = re.compile(r"\b[a-z_]+=\S|\b(?:eps_placement|running_var|running_mean)\b|mode '")


@pytest.mark.parametrize("command", BAD)
def test_command_line_messages_name_flags_not_arguments(command):
    r = _run(command)
    assert r.exit_code == 2
    (line,) = r.output.strip().splitlines()
    assert line.startswith("Error: ") and "--" in line, line
    assert not PYTHON.search(line), line


def test_the_same_errors_from_python_name_the_arguments():
    with pytest.raises(
        LimitError, match=r"^derive\(m=100000\) .* without force=True .* m ≤ \d+\.$"
    ):
        derive(100000)
    with pytest.raises(DerivationError, match=r"use mode='eval'"):
        derive(1)
    with pytest.raises(DerivationError, match=r"^eps_placement must be"):
        derive(4, eps_placement="bogus")


# --- page 1 in a student's words -----------------------------------------------------------------


def test_page_1_opens_with_the_mathematics_not_the_mechanics():
    tex = derive(4).to_latex(standalone=True)
    body = tex[tex.index(r"\begin{document}") :]
    opening = body[: body.index(r"\begin{align*}")]  # title, then the general form's words
    assert "sympy" not in opening.lower() and "Kronecker" not in opening
    assert "the six steps of the chain rule" in opening
    assert body.index("Kronecker") > body.index(r"\end{align*}")  # the mechanics follow
