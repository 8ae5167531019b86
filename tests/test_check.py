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
from bnsym.family.layers import LAYERS, Layer


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
def test_a_variant_the_fused_kernel_lacks_is_compared_with_the_elementary_layer(
    runner, args, words
) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(main, ["check", "--m", "3", "--torch", *args])
    assert result.exit_code == 0, result.output
    assert "generated vs torch-elementary" in result.output and words in result.output
    assert "generated vs torch " not in result.output


def test_eps_0_skips_the_torch_column_with_a_reason(runner) -> None:
    pytest.importorskip("torch")  # F.batch_norm raises ValueError for eps = 0 in training
    result = runner.invoke(main, ["check", "--m", "3", "--eps", "0"])
    assert result.exit_code == 0, result.output
    assert "torch: torch.nn.functional.batch_norm refuses eps = 0" in result.output
    assert "Compared with torch-elementary." in result.output
    assert "vs torch " not in result.output and "vs torch-elementary" in result.output
    # eval mode has no such limit
    result = runner.invoke(main, ["check", "--m", "3", "--eps", "0", "--mode", "eval"])
    assert result.exit_code == 0 and "generated vs torch" in result.output, result.output
    # the table's row says so at every order (order 2 used to call it and die in PyTorch)
    result = runner.invoke(main, ["check", "--m", "3", "--eps", "0", "--order", "2", "-D", "2"])
    assert result.exit_code == 0, result.output
    assert "torch-native: no column; torch.nn.functional.batch_norm refuses eps = 0" in (
        result.output
    )
    assert "vs torch-native" not in result.output and "vs torch-elementary" in result.output


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


# --- the oracle table, and layers declared outside the package ---------------------------------

#: A layer the five do not cover, declared as a user would: one γ for a row, no β,
#: y = γ·x/√(mean(x²) + ε).
SCALENORM = Layer(name="scalenorm", centred=False, beta=False)
#: A declaration that reuses a shipped layer's name: it is not that layer (it computes what
#: RMS norm computes).
NOT_LAYERNORM = Layer(name="layernorm", centred=False, params="element", beta=False)
#: Layer norm under another name and title: it computes what layer norm computes.
MY_LAYERNORM = Layer(name="my_ln", title="My layer norm", params="element")
#: One γ per channel of a group, not centred, no β: the layout of group norm, not group norm.
GROUP_RMS = Layer(name="grouprms", centred=False, params="channel", grouping="groups", beta=False)


def test_every_shipped_layer_has_its_row_and_no_other_declaration_has_one() -> None:
    from bnsym.core.options import make_options

    assert set(oracles.ORACLES) == set(LAYERS.values())
    for decl, row in oracles.ORACLES.items():
        assert row.hand_written and row.torch is not None and "train" in row.fused, decl.name
        assert set(row.fused) == set(row.staged) == set(decl.modes), decl.name
    row = oracles.oracles_for(make_options(4, layer=SCALENORM))
    assert row.torch is None and not row.hand_written
    # looked up by what a declaration computes, not by its name: the shipped name with other
    # fields is RMS norm's function, and layer norm under another name is layer norm's
    assert oracles.oracles_for(make_options(4, layer=NOT_LAYERNORM)).torch.name == "rms_norm"
    assert oracles.oracles_for(make_options(4, layer=MY_LAYERNORM)).torch.name == "layer_norm"


def _plain_scalenorm(x, gamma, dout, eps):
    """ScaleNorm by hand: y = γ·x/r, r = √(mean(x²) + ε) per row; dx = γ/r·(dout − x̂·mean(dout·x̂)),
    dγ = Σ dout·x̂ over every value."""
    r = np.sqrt((x**2).mean(axis=1, keepdims=True) + eps)
    x_hat = x / r
    dx = gamma / r * (dout - x_hat * (dout * x_hat).mean(axis=1, keepdims=True))
    return gamma * x_hat, dx, np.array([(dout * x_hat).sum()])


def test_scalenorm_generated_code_is_plain_numpys_scalenorm() -> None:
    from bnsym.codegen.module import generate
    from bnsym.derivation import derive

    mod = generate(derive(4, layer=SCALENORM))
    rng = np.random.default_rng(11)
    x, dout, gamma = 1 + 2 * rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), [1.3]
    y, dx, dgamma = _plain_scalenorm(x, 1.3, dout, 1e-5)
    np.testing.assert_allclose(mod.forward(x, gamma), y, rtol=1e-13)
    got_dx, got_dgamma = mod.backward(dout, x, gamma)
    np.testing.assert_allclose(got_dx, dx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_dgamma, dgamma, rtol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_scalenorm_passes_with_the_elementary_pytorch_column(order) -> None:
    """No fused kernel: the report says so, and the torch-elementary column agrees."""
    pytest.importorskip("torch")
    from bnsym.crosscheck.higher import run_check_higher
    from bnsym.derivation import derive

    d = derive(4, layer=SCALENORM)
    if order == 1:
        result = bnsym.crosscheck.first.run_check(d, torch=True)
        pairs = {r.pair for r in result.rows}
        assert "generated vs torch-elementary" in pairs and "generated vs torch" not in pairs
    else:
        result = run_check_higher(d, order, features=2, torch=True)
        assert result.header.endswith(", torch-elementary.") and "torch-native" not in str(
            result.rows
        )
    table = result.table()
    assert result.passed, table
    assert "no fused PyTorch kernel for scalenorm;" in table
    if order == 1:
        assert "no hand-written reference of scalenorm" in table


@pytest.mark.parametrize(
    "decl, kernel, kw",
    [
        (NOT_LAYERNORM, "layer_norm", {}),  # compared with F.rms_norm, which it computes
        (GROUP_RMS, "group_norm", {"channels": 2}),
        (SCALENORM, "group_norm", {}),  # the old fall-through of an unknown layer
    ],
    ids=["shipped-name", "group-layout", "unknown"],
)
@pytest.mark.parametrize("order", [1, 2])
def test_a_declared_layer_gets_no_other_layers_kernel(monkeypatch, decl, kernel, kw, order):
    """Never a fall-back to another layer's kernel: the kernel a wrong lookup would reach
    raises here, and the check passes with the elementary column all the same."""
    torch = pytest.importorskip("torch")
    from bnsym.crosscheck.higher import run_check_higher
    from bnsym.derivation import derive

    def refuse(*args, **kwargs):
        raise AssertionError(f"F.{kernel} called for a layer it does not compute")

    monkeypatch.setattr(torch.nn.functional, kernel, refuse)
    d = derive(4, layer=decl, **kw)
    if order == 1:
        result = bnsym.crosscheck.first.run_check(d, torch=True)
    else:
        result = run_check_higher(d, order, features=2, torch=True)
    table = result.table()
    assert result.passed, table
    if decl.function == LAYERS["rmsnorm"].function:  # compared with what it computes
        assert "no fused PyTorch kernel" not in table and "torch" in table
        assert "computes what bnsym's rmsnorm computes" in table
    else:
        assert "torch-elementary" in table and "no fused PyTorch kernel for " in table
    if decl.name in LAYERS:
        assert f"as declared here (not bnsym's {decl.name})" in table


def test_a_shipped_layer_declared_anew_is_checked_in_eval_mode_too() -> None:
    """Batch norm with other words computes what batch norm computes: it is compared with batch
    norm's references (eval mode's running statistics included), and, for a variant F.batch_norm
    does not compute (σ + √ε), with the elementary PyTorch layer."""
    pytest.importorskip("torch")
    from bnsym.crosscheck.higher import run_check_higher
    from bnsym.derivation import derive

    again = dataclasses.replace(LAYERS["batchnorm"], title="Batch norm, declared again")
    assert oracles.ORACLES.get(again) is None and oracles.twin(again) == LAYERS["batchnorm"]
    d = derive(4, layer=again, mode="eval", eps_placement="sqrt-outside")
    result = bnsym.crosscheck.first.run_check(d, torch=True)
    table = result.table()
    assert result.passed and "generated vs torch-elementary" in table, table
    assert "computes what bnsym's batchnorm computes" in table
    assert run_check_higher(d, 2, features=2, torch=True).passed


def test_a_wrong_declared_reference_is_the_odd_one_out(monkeypatch) -> None:
    from bnsym.reference import DeclaredReference

    right = DeclaredReference.backward

    def off(self, dout, cache):  # dx 0.1% off
        dx, dgamma, dbeta = right(self, dout, cache)
        return 1.001 * dx, dgamma, dbeta

    monkeypatch.setattr(DeclaredReference, "backward", off)
    table = bnsym.crosscheck.first.run_check(4, layer=SCALENORM, torch=False).table()
    assert "FAILED: 2 of" in table
    assert "hint: fused disagrees with the others on dx, which agree among themselves." in table


@pytest.mark.parametrize("order", [1, 2])
def test_a_wrong_elementary_pytorch_layer_is_the_odd_one_out(monkeypatch, order) -> None:
    pytest.importorskip("torch")
    from bnsym.crosscheck import higher, pytorch
    from bnsym.derivation import derive

    right = pytorch.elementary

    def off(torch, o):  # y 0.1% off, and with it every derivative
        layer = right(torch, o)
        return lambda *args: 1.001 * layer(*args)

    monkeypatch.setattr(pytorch, "elementary", off)
    d = derive(4, layer=SCALENORM)
    if order == 1:
        table = bnsym.crosscheck.first.run_check(d, torch=True).table()
        assert "hint: torch-elementary disagrees with the others on y, dx, dgamma" in table
    else:
        table = higher.run_check_higher(d, 2, features=2, torch=True).table()
        assert "odd one out: torch-elementary on gx, which the others agree on" in table
