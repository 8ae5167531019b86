"""``bnsym codegen`` and ``bnsym check`` through CliRunner: passes when right, fails when not."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import bnsym.crosscheck.first
from bnsym.cli import main
from bnsym.crosscheck import oracles
from bnsym.family.layers import LAYERS


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# --- bnsym check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--m", "4"],
        ["--m", "2", "--features", "5", "--seed", "3"],
        ["--m", "3", "--variance", "unbiased", "--eps-placement", "outside", "--no-affine"],
        ["--m", "4", "--mode", "eval"],
        ["--m", "1", "--mode", "eval", "--no-affine"],
    ],
    ids=["default", "m2", "unbiased-outside-noaffine", "eval", "eval-m1"],
)
def test_check_passes_for_correct_code(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(main, ["check", *args])
    assert result.exit_code == 0, result.output
    assert "OK: all" in result.output and "DISAGREE" not in result.output
    for pair in (
        "generated vs fused",
        "generated vs staged",
        "fused vs staged",
        "generated vs numerical",
    ):
        assert pair in result.output
    assert "max rel error" in result.output and "size of the terms" in result.output


def break_reference(monkeypatch, layer, which, change) -> None:
    """Replace ``which`` ("fused" or "staged") training reference of ``layer`` in the oracle
    table by one whose backward's results pass through ``change``."""
    row = oracles.ORACLES[layer]
    right = getattr(row, which)["train"]

    def backward(dout, cache):
        return change(*right.backward(dout, cache))

    wrong = {**getattr(row, which), "train": dataclasses.replace(right, backward=backward)}
    monkeypatch.setitem(oracles.ORACLES, layer, dataclasses.replace(row, **{which: wrong}))


def test_check_fails_when_the_reference_is_off_by_0_1_percent(runner, monkeypatch) -> None:
    def dx_off(dx, dgamma, dbeta):
        return 1.001 * dx, dgamma, dbeta

    break_reference(monkeypatch, LAYERS["batchnorm"], "fused", dx_off)
    result = runner.invoke(main, ["check", "--m", "4"])
    assert result.exit_code == 1, result.output
    rows = [line for line in result.output.splitlines() if "DISAGREE" in line]
    assert any(r.startswith("dx") and "generated vs fused" in r for r in rows), result.output
    assert any(r.startswith("dx") and "fused vs staged" in r for r in rows)
    assert not any("generated vs staged" in r for r in rows)
    assert "worst at (" in rows[0]
    assert "FAILED: " in result.output
    assert "hint: fused disagrees with the others on dx" in result.output


def test_check_fails_when_the_generated_code_is_broken(runner, monkeypatch) -> None:
    generate = bnsym.crosscheck.first.generate

    def broken_generate(*args, **kwargs):
        module = generate(*args, **kwargs)
        # break the generated source itself: dgamma off by 0.1%
        source = module.source.replace(
            "    return [\n        _t0*",
            "    sum_dy_xhat = 1.001 * sum_dy_xhat\n    return [\n        _t0*",
            1,
        )
        assert source != module.source
        namespace: dict = {}
        exec(compile(source, "<broken>", "exec"), namespace)
        return dataclasses.replace(module, source=source, backward=namespace["backward"])

    monkeypatch.setattr(bnsym.crosscheck.first, "generate", broken_generate)
    result = runner.invoke(main, ["check", "--m", "4", "--features", "2"])
    assert result.exit_code == 1, result.output
    bad = [line for line in result.output.splitlines() if "DISAGREE" in line]
    assert any("generated vs numerical" in line for line in bad), result.output
    assert any("generated vs fused" in line for line in bad)
    assert not any("fused vs staged" in line for line in bad)


#: The one advice of every order's report when PyTorch is missing: the extra with the tested pin.
INSTALL = "PyTorch is not installed; pip install 'bnsym[torch]' adds the tested version."


@pytest.mark.parametrize(
    "args, line",
    [
        ([], f"torch: no column; {INSTALL}"),
        (["--order", "2"], f"torch-native, torch-elementary: no columns; {INSTALL}"),
        (["--order", "3"], f"torch-native, torch-elementary: no columns; {INSTALL}"),
    ],
    ids=["order-1", "order-2", "order-3"],
)
def test_check_says_when_torch_is_missing(runner, monkeypatch, args, line) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    result = runner.invoke(main, ["check", "--m", "3", "-D", "2", *args])
    assert result.exit_code == 0, result.output
    assert line in result.output.splitlines()
    assert "vs torch" not in result.output


@pytest.mark.parametrize("order", ["1", "2"])
def test_torch_asked_for_but_not_installed_is_bad_input(runner, monkeypatch, order) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    args = ["check", "--m", "3", "--torch", "--order", order]
    line = _one_line_error(runner.invoke(main, args))
    assert line.startswith("Error: ") and line.endswith(
        f"no torch column is possible: {INSTALL}"
    ), line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--variance", "unbiased"], "biased variance and eps inside"),
        (["--eps-placement", "outside"], "biased variance and eps inside"),
        (["--eps", "0"], "refuses eps = 0 in training"),
    ],
    ids=["unbiased", "outside", "eps-0"],
)
def test_torch_asked_for_without_a_torch_variant_is_bad_input(runner, args, words) -> None:
    pytest.importorskip("torch")
    line = _one_line_error(runner.invoke(main, ["check", "--m", "3", "--torch", *args]))
    assert line.startswith("Error: --torch: no torch column is possible: ") and words in line


def test_eps_0_skips_the_torch_column_with_a_reason(runner) -> None:
    pytest.importorskip("torch")  # F.batch_norm raises ValueError for eps = 0 in training
    result = runner.invoke(main, ["check", "--m", "3", "--eps", "0"])
    assert result.exit_code == 0, result.output
    assert "torch: no column; torch.nn.functional.batch_norm refuses eps = 0" in result.output
    assert "vs torch" not in result.output
    # eval mode has no such limit
    result = runner.invoke(main, ["check", "--m", "3", "--eps", "0", "--mode", "eval"])
    assert result.exit_code == 0 and "generated vs torch" in result.output, result.output


def test_the_hint_blames_torch_when_only_torch_disagrees(monkeypatch) -> None:
    pytest.importorskip("torch")
    torch_column = bnsym.crosscheck.first._torch

    def broken(gen, eps):
        (name, run), why = torch_column(gen, eps)

        def off(data, eps):
            out = run(data, eps)
            out["dx"] = out["dx"] * 1.001
            return out

        return (name, off), why

    monkeypatch.setattr(bnsym.crosscheck.first, "_torch", broken)
    table = bnsym.crosscheck.first.run_check(4, features=2, seed=0).table()
    assert "hint: torch disagrees with the others on dx, which agree among themselves." in table
    assert "hint: generated" not in table


def test_check_compares_with_torch_where_installed(runner) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(main, ["check", "--m", "4"])
    assert result.exit_code == 0, result.output
    assert "generated vs torch" in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--m", "1.5"], "whole number"),
        (["--m", "0"], "at least 1"),
        (["--m", "1"], "m = 1 in train mode"),
        (["--features", "0"], "--features"),
        (["--variance", "odd"], "variance"),
        (["--seed", "-1"], "--seed"),
    ],
    ids=["m-fraction", "m-zero", "m-one-train", "features-zero", "variance", "seed-negative"],
)
def test_check_bad_input(runner: CliRunner, args: list[str], words: str) -> None:
    assert words in _one_line_error(runner.invoke(main, ["check", *args]))


def test_run_check_api() -> None:
    result = bnsym.crosscheck.first.run_check(2, features=4, seed=1, torch=False)
    assert result.passed
    dx_rows = [r for r in result.rows if r.quantity == "dx" and "numerical" not in r.pair]
    assert all(r.max_rel_error < 1e-14 for r in dx_rows)


# --- bnsym codegen ----------------------------------------------------------------------------


def test_codegen_prints_the_module(runner: CliRunner) -> None:
    result = runner.invoke(main, ["codegen", "--m", "3", "--no-affine"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Generated by bnsym")
    assert "def forward(x, eps=1e-05):" in result.output
    dash = runner.invoke(main, ["codegen", "--m", "3", "--no-affine", "-o", "-"])
    assert "# Command: bnsym codegen --m 3 --no-affine -o -\n" in dash.output

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("# Command:")]

    assert body(dash.output) == body(result.output)


def test_codegen_writes_a_working_file(runner: CliRunner, tmp_path) -> None:
    path = tmp_path / "bn_m4.py"
    result = runner.invoke(main, ["codegen", "--m", "4", "-o", str(path)])
    assert result.exit_code == 0, result.output
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    x = np.arange(8.0).reshape(4, 2) ** 2
    y = namespace["forward"](x, np.ones(2), np.zeros(2))
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["bn_m4.py"]  # no temporary left


def test_codegen_bad_output_leaves_no_file(runner: CliRunner, tmp_path) -> None:
    missing = tmp_path / "no" / "such" / "bn.py"
    line = _one_line_error(runner.invoke(main, ["codegen", "--m", "4", "-o", str(missing)]))
    assert "does not exist" in line and not missing.parent.exists()
    line = _one_line_error(runner.invoke(main, ["codegen", "--m", "4", "-o", str(tmp_path)]))
    assert "is a directory" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("m", ["x", "2.5", "-3"])
def test_codegen_bad_m(runner: CliRunner, tmp_path, m: str) -> None:
    path = tmp_path / "bn.py"
    line = _one_line_error(runner.invoke(main, ["codegen", "--m", m, "-o", str(path)]))
    assert "m must" in line and not path.exists()


def test_codegen_header_survives_a_newline_in_an_argument(runner: CliRunner, tmp_path) -> None:
    path = tmp_path / "a\nb.py"
    result = runner.invoke(main, ["codegen", "--m", "2", "-o", str(path)])
    assert result.exit_code == 0, result.output
    source = path.read_text()
    compile(source, "bn.py", "exec")  # a SyntaxError before the header was escaped
    assert "a\\nb.py" in source.splitlines()[3]
