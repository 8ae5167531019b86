"""A layer is one declaration: every layer the registry knows, and a user's own declared in a
file outside the package, goes through derive (every notes format), codegen (orders 1 and 2)
and check (orders 1 and 2), agreeing with references that did not come from bnsym.

The user's layer is ScaleNorm (docs/examples/scalenorm.py, copied to a temporary directory
and named on the command line as FILE.py:NAME, as a user would); its generated code is
compared with a plain NumPy ScaleNorm written here and with central differences of it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnsym
from bnsym.family.layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "scalenorm.py"


def _scalenorm_decl() -> bnsym.Layer:
    spec = importlib.util.spec_from_file_location("scalenorm_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scalenorm


#: The registry and a test-local user layer (the docs' ScaleNorm): every test below runs each.
REGISTRY = {**LAYERS, "scalenorm": _scalenorm_decl()}
CHANNELS = {"groupnorm": 2}


def _bnsym(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bnsym", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A directory outside the package holding the user's file (and nothing of bnsym's)."""
    where = tmp_path_factory.mktemp("user")
    shutil.copy(EXAMPLE, where / "scalenorm.py")
    return where


# --- the registry: every layer through every entry point -------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_layer_derives_with_every_proof_and_renders_every_format(name):
    decl = REGISTRY[name]
    d = bnsym.derive(4, layer=decl, channels=CHANNELS.get(name))
    assert all(d.verified.values()), {k: v for k, v in d.verified.items() if not v}
    assert d.to_text().startswith(decl.title)
    assert json.loads(d.to_json())["options"]["layer"] == decl.name
    assert "\\documentclass" in d.to_latex(standalone=True)
    assert d.to_markdown().startswith(f"# {decl.title}")


def _numerical_dx(forward, x, dout, h=1e-6):
    """Central differences of sum(dout * forward(x)) with respect to x, entry by entry."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        grad[idx] = (np.sum(dout * forward(x + e)) - np.sum(dout * forward(x - e))) / (2 * h)
    return grad


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_layers_generated_code_agrees_with_central_differences(name):
    decl = REGISTRY[name]
    d = bnsym.derive(4, layer=decl, channels=CHANNELS.get(name))
    mod = bnsym.generate(d)
    rng = np.random.default_rng(5)
    g = decl.grouping_
    K = decl.param_count(4, CHANNELS.get(name))
    P = 2 if g.per_sample else (3 if g.transposed else 1)
    x = 0.5 + rng.standard_normal(g.shape(1 if g.transposed else 3, P, 4, K))
    params = [1.0 + 0.3 * rng.standard_normal(P * K)]
    if decl.beta:
        params.append(rng.standard_normal(P * K))
    dout = rng.standard_normal(x.shape)

    def forward(v):
        return mod.forward(v, *params)

    grads = mod.backward(dout, x, *params)
    np.testing.assert_allclose(grads[0], _numerical_dx(forward, x, dout), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_layer_is_checked_at_orders_1_and_2_against_the_elementary_pytorch_layer(
    name, order, torch
):
    from bnsym.crosscheck.first import run_check
    from bnsym.crosscheck.higher import run_check_higher

    d = bnsym.derive(4, layer=REGISTRY[name], channels=CHANNELS.get(name))
    result = run_check(d, torch=True) if order == 1 else run_check_higher(d, 2, torch=True)
    table = result.table()
    assert result.passed, table
    # the numerical derivatives are compared at order 1, complex-step differences at order 2
    assert ("vs numerical" if order == 1 else "vs differences") in table
    if order == 2 or name == "scalenorm":
        assert "torch-elementary" in table


# --- the user's layer, as a user meets it: a file outside the package, on the command line ----


def test_scalenorm_derives_in_every_format_from_the_command_line(user_dir):
    spec = "scalenorm.py:scalenorm"
    text = _bnsym("derive", "--layer", spec, "--m", "4", cwd=user_dir)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("ScaleNorm, m = 4") and "✗" not in text.stdout
    for fmt in ("json", "latex", "markdown"):
        done = _bnsym("derive", "--layer", spec, "--m", "4", "--format", fmt, cwd=user_dir)
        assert done.returncode == 0 and done.stdout, (fmt, done.stderr)
    obj = json.loads(_bnsym("derive", "--layer", spec, "--m", "3", "--format", "json",
                            cwd=user_dir).stdout)  # fmt: skip
    assert obj["options"]["layer"] == "scalenorm" and all(obj["verified"].values())


def _plain_scalenorm(x, g, eps):
    """ScaleNorm by hand, per row: y = g·x/√(mean(x²) + ε)."""
    return g * x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)


@pytest.mark.parametrize("order", ["1", "2"])
def test_scalenorm_codegen_writes_a_module_that_agrees_with_plain_numpy(user_dir, order):
    out = user_dir / f"scalenorm_m4_order{order}.py"
    done = _bnsym("codegen", "--layer", "scalenorm.py:scalenorm", "--m", "4", "--order", order,
                  "-o", str(out), cwd=user_dir)  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec = importlib.util.spec_from_file_location(out.stem, out)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    x, g, dout = rng.standard_normal((5, 4)), np.array([1.7]), rng.standard_normal((5, 4))
    eps = 1e-5
    np.testing.assert_allclose(mod.forward(x, g, eps=eps), _plain_scalenorm(x, g, eps), rtol=1e-13)
    dx, dg = mod.backward(dout, x, g, eps=eps)
    numerical = _numerical_dx(lambda v: _plain_scalenorm(v, g, eps), x, dout)
    np.testing.assert_allclose(dx, numerical, rtol=1e-6, atol=1e-9)
    x_hat = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)
    np.testing.assert_allclose(dg, [np.sum(dout * x_hat)], rtol=1e-12)
    if order == "2":
        gdx, gdg = rng.standard_normal(x.shape), rng.standard_normal(1)
        gx, gdout, gg = mod.double_backward(gdx, gdg, dout, x, g, eps=eps)

        def ell2(v):  # Σ gdx·dx + gdg·dg at the point v, by the generated backward
            dx_v, dg_v = mod.backward(dout, v, g, eps=eps)
            return np.sum(gdx * dx_v) + np.sum(gdg * dg_v)

        h = 1e-6
        gx_num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = h
            gx_num[idx] = (ell2(x + e) - ell2(x - e)) / (2 * h)
        np.testing.assert_allclose(gx, gx_num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", ["1", "2"])
def test_scalenorm_is_checked_from_the_command_line(user_dir, order, torch):
    done = _bnsym("check", "--layer", "scalenorm.py:scalenorm", "--m", "4", "--order", order,
                  cwd=user_dir)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no fused PyTorch kernel for scalenorm" in done.stdout
    assert "OK: all" in done.stdout


# --- a --layer that cannot be loaded: one line, exit 2 ---------------------------------------


@pytest.mark.parametrize(
    "content, spec, words",
    [
        (None, "missing.py:scalenorm", "missing.py does not exist"),
        ("raise RuntimeError('boom')\n", "mine.py:x", "running mine.py raised RuntimeError: boom"),
        ("x = 1\n", "mine.py:scalenorm", "mine.py has no 'scalenorm'; it defines no Layer"),
        ("x = 1\n", "mine.py:x", "x is an int, not a bnsym.Layer"),
        (
            "import bnsym\nbad = bnsym.Layer(name='bad', grouping='groups')\n",
            "mine.py:bad",
            "grouping='groups' lays out channels within a group, which needs one γ per channel",
        ),
        (
            "import bnsym\nbad = bnsym.Layer(name='bad', grouping='diagonal')\n",
            "mine.py:bad",
            "grouping='diagonal' is not known",
        ),
        (
            "import bnsym\nbad = bnsym.Layer(name='Bad Name')\n",
            "mine.py:bad",
            "(it is the --layer spelling), e.g. name='scalenorm'.",  # whole, one full stop
        ),
        (None, "no_such_module:layer", "no module named 'no_such_module'"),
        (None, "mine.py:not-a-name", "'not-a-name' after ':' is not a Python name"),
        (None, "mine.py:", "'' after ':' is not a Python name"),
    ],
    ids=[
        "no-file",
        "raises",
        "no-name",
        "not-a-layer",
        "contradicts",
        "unknown-grouping",
        "layer-name",
        "no-module",
        "bad-name",
        "empty-name",
    ],  # fmt: skip
)
@pytest.mark.parametrize("command", ["derive", "codegen", "check"])
def test_a_bad_layer_spec_is_one_line_exit_2(tmp_path, content, spec, words, command):
    if content is not None:
        (tmp_path / "mine.py").write_text(content)
    done = _bnsym(command, "--layer", spec, "--m", "4", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --layer "), done.stderr
    assert words in lines[0], lines[0]
    assert done.stdout == ""


def test_in_python_a_bad_declaration_is_a_bnsym_error_naming_the_field():
    with pytest.raises(bnsym.LayerError, match="params='per-row' is not known") as info:
        bnsym.Layer(name="x", params="per-row")
    assert isinstance(info.value, bnsym.BnsymError)
    with pytest.raises(bnsym.LayerError, match="beta must be True or False"):
        bnsym.Layer(name="x", beta="no")


#: Layers with running statistics: batch norm, and two declared here that are not centred (an
#: uncentred batch norm, as PowerNorm divides by a running mean square, and a rows layer).
EVAL_LAYERS = {
    "batchnorm": LAYERS["batchnorm"],
    "powernorm": bnsym.Layer(
        name="powernorm", centred=False, grouping="columns", modes=("train", "eval")
    ),
    "rmsrun": bnsym.Layer(
        name="rmsrun", centred=False, params="element", beta=False, modes=("train", "eval")
    ),
}


@pytest.mark.parametrize("placement", ["inside", "outside"])
@pytest.mark.parametrize("name", list(EVAL_LAYERS))
def test_eval_mode_of_every_layer_with_running_statistics_is_derived_and_checked(
    name, placement, torch
):
    from bnsym.crosscheck.first import run_check
    from bnsym.crosscheck.higher import run_check_higher

    d = bnsym.derive(3, layer=EVAL_LAYERS[name], mode="eval", eps_placement=placement)
    assert all(d.verified.values()), d.verified
    # a layer that is not centred divides by the running mean square alone: no running mean
    centred = EVAL_LAYERS[name].centred
    assert d.x_hat[0].has(d.symbols.running_mean) == centred
    for result in (run_check(d, torch=True), run_check_higher(d, 2, torch=True)):
        assert result.passed, result.table()
