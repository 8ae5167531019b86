"""Worked examples with numbers: γ, β and the running statistics given as numbers, decimals
beside the exact values, the table per feature — checked against NumPy and torch written out
here, not against SymPy."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnsym import derive
from bnsym.cli import main
from bnsym.notes.latex import to_latex, to_markdown
from bnsym.notes.text import to_json, to_text

X = [2.0, 0.0, 2.0, 5.0]
DY = [1.0, 0.0, 0.5, -1.0]


def _layer_in_torch(torch, layer, x, gamma, beta, eps, channels=None):
    """y for one group of values, straight from the layer's definition."""
    if layer == "rmsnorm":
        x_hat = x / torch.sqrt((x * x).mean() + eps)
    else:
        mu = x.mean()
        x_hat = (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + eps)
    if layer == "groupnorm":
        per = len(x) // channels
        gamma = gamma.repeat_interleave(per)
        beta = beta.repeat_interleave(per)
    return gamma * x_hat + beta


CASES = {
    "batchnorm": ({}, [1.5], [0.5]),
    "instancenorm": ({}, [1.5], [0.5]),
    "layernorm": ({}, [1.0, 2.0, 0.5, 1.5], [0.0, 0.1, 0.2, 0.3]),
    "groupnorm": ({"channels": 2}, [1.5, 2.0], [0.5, -1.0]),
    "rmsnorm": ({}, [1.0, 2.0, 3.0, 4.0], None),
}


@pytest.mark.parametrize("layer", list(CASES))
def test_worked_example_with_numbers_equals_numpy_and_torch(layer, torch):
    extra, gamma, beta = CASES[layer]
    eps = 1e-5
    d = derive(
        4,
        layer=layer,
        eps="1e-5",
        values=X,
        dy=DY,
        gamma=gamma,
        beta=beta,
        **extra,
    )
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    g = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(beta if beta else [0.0] * len(gamma), dtype=torch.float64, requires_grad=True)
    y = _layer_in_torch(torch, layer, x, g, b, eps, extra.get("channels"))
    y.backward(torch.tensor(DY, dtype=torch.float64))
    # every quantity of the example is a number
    for e in (*d.y, *d.dx):
        assert e.is_number, e
    np.testing.assert_allclose([float(e) for e in d.y], y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose([float(e) for e in d.dx], x.grad.numpy(), rtol=1e-9, atol=1e-12)
    dgamma = d.dgamma if isinstance(d.dgamma, tuple) else (d.dgamma,)
    np.testing.assert_allclose([float(e) for e in dgamma], g.grad.numpy(), rtol=1e-12)
    # and plain NumPy for the forward pass of the first layers
    xn = np.array(X)
    if layer == "batchnorm":
        y_np = gamma[0] * (xn - xn.mean()) / np.sqrt(xn.var() + eps) + beta[0]
        np.testing.assert_allclose([float(e) for e in d.y], y_np, rtol=1e-12)


def test_eval_mode_running_statistics_as_numbers():
    d = derive(
        3,
        mode="eval",
        eps=0,
        values="1,2,4",
        dy="1,0,-1",
        gamma=2,
        beta=0.5,
        running_mean=1.5,
        running_var=4,
    )
    x = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose([float(e) for e in d.y], 2 * (x - 1.5) / 2 + 0.5)
    np.testing.assert_allclose([float(e) for e in d.dx], [1.0, 0.0, -1.0])  # γ/√4 · dy


_APPROX = re.compile(r"^  (\S+) = (.+?) ≈ (−?[\d.]+(?:e[+−-]?\d+)?)(?:\s{6}\(.*\))?$")


def _close_to_the_digits_shown(shown: str, exact: float) -> bool:
    digits = len(re.sub(r"e.*|[−\-.]", "", shown).lstrip("0")) or 1
    value = float(shown.replace("−", "-"))
    if exact == 0:
        return value == 0
    unit = 10 ** (math.floor(math.log10(abs(exact))) - digits + 1)
    return abs(value - exact) <= unit / 2 * 1.0001


def test_each_decimal_is_the_exact_value_to_the_digits_shown():
    d = derive(
        4, eps="1e-5", values="2,0,2,4;1,2,3,5", dy="1,2,3,4;0,0,1,1", gamma="1.5,2", beta="0.5;-1"
    )
    text = to_text(d)
    example = text[text.index("Worked example") :]
    hits = [m for m in map(_APPROX.match, example.splitlines()) if m]
    assert len(hits) >= 20
    # the exact values, feature after feature, in the order the text lists them
    exact = []
    for feat in d.features:
        exact += [feat["mean"], feat["var"], *feat["x_hat"], *feat["y"], *feat["dx"]]
        exact += [feat["dgamma"], feat["dbeta"]]
    numbers = [float(e) for e in exact if e.is_number and not e.is_Integer]
    shown = [h.group(3) for h in hits]
    # every non-integer number got a decimal (11/4 too), none of them off
    assert len(shown) == len([e for e in exact if not sp.Integer(e) == e or not e.is_Integer])
    for s, e in zip(shown, numbers, strict=True):
        assert _close_to_the_digits_shown(s, e), (s, e)
    # LaTeX and Markdown show the same decimals (6 significant digits)
    for notes in (to_latex(d, standalone=True), to_markdown(d)):
        found = re.findall(r"\\approx (-?[\d.]+)(?: \\cdot 10\^\{(-?\d+)\})?", notes)
        # the remarks after the example (bnsym.notes.example_notes) add decimals of their own
        approx = [f"{a}e{k}" if k else a for a, k in found][: len(numbers)]
        assert approx and all(
            _close_to_the_digits_shown(a, e) for a, e in zip(approx, numbers, strict=True)
        )


def test_the_table_holds_each_quantity_in_decimals():
    d = derive(4, eps=0, values="2,0,2,4", dy="1,2,3,4", gamma=2, beta=1)
    text = to_text(d)
    table = text[text.index("In decimals") :].splitlines()
    header = table[1].split()
    assert header[:2] == ["i", "xᵢ"] and "x̂ᵢ" in header and "∂ℓ/∂xᵢ" in header
    x = np.array([2.0, 0.0, 2.0, 4.0])
    x_hat = (x - x.mean()) / x.std()
    rows = [line.split() for line in table[3:7]]
    shown = [
        float(r[header.index("x̂ᵢ") - 2].replace("−", "-")) for r in rows
    ]  # "xᵢ − μ_B" is 3 words
    np.testing.assert_allclose(shown, x_hat, atol=5e-4)
    md = to_markdown(d)
    assert "| $i$ | $x_{i}$ | $x_{i} - \\mu_{B}$ |" in md


def test_several_features_index_their_gamma_and_beta():
    text = to_text(derive(2, eps=0, values="1,3;0,4"))
    assert "γ₁" in text and "γ₂" in text and "∂ℓ/∂γ₂" in text and "β₂" in text
    data = json.loads(to_json(derive(2, eps=0, values="1,3;0,4")))
    assert "gamma2" in data["features"][1]["y"][0]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--values", "1,2,3,4", "--layer", "layernorm", "--gamma", "1,2"], "needs 4"),
        (["--values", "1,2,3,4", "--gamma", "x"], "not a number"),
        (["--values", "1,2,3,4;1,2,3,5", "--gamma", "1;2;3"], "3 row(s)"),
        (
            ["--values", "1,2,3,4", "--layer", "groupnorm", "--channels", "2", "--gamma", "1"],
            "one per channel",
        ),
        (["--values", "1,2,3,4", "--mode", "eval", "--running-var", "-1"], "≥ 0"),
        (
            ["--values", "1,2,3,4", "--mode", "eval", "--eps", "0", "--running-var", "0"],
            "divides by zero",
        ),
        (["--values", "1,2,3,4", "--running-mean", "1"], "eval mode"),
        (["--values", "1,2,3,4", "--layer", "rmsnorm", "--beta", "1,1,1,1"], "no β"),
        (["--values", "1,2,3,4", "--no-affine", "--gamma", "2"], "no γ"),
        (["--gamma", "2"], "give --values too"),
    ],
)
def test_bad_parameter_values_are_one_line_errors(args, says):
    result = CliRunner().invoke(main, ["derive", "--m", "4", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and says in lines[0], lines


def test_parameters_are_carried_into_json_options():
    result = CliRunner().invoke(
        main,
        [
            "derive",
            "--m",
            "2",
            "--mode",
            "eval",
            "--values",
            "1,3",
            "--gamma",
            "1.5",
            "--running-mean",
            "0.5",
            "--running-var",
            "2",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    options = json.loads(result.output)["options"]
    assert options["gamma"] == [["3/2"]] and options["running_mean"] == [["1/2"]]
    assert options["running_var"] == [["2"]] and options["beta"] is None


def test_exact_numbers_are_written_over_one_denominator():
    d = derive(4, eps=0, values="2,0,2,4", dy="1,2,3,4", gamma=1.5, beta=0.5)
    assert str(d.y[1]) == "(1 - 3*sqrt(2))/2"  # not 1/2 - 3*sqrt(2)/2
    for e in (*d.x_hat, *d.y, *d.dx, d.dgamma, d.dbeta):
        numerator, denominator = e.as_numer_denom()
        assert denominator.is_Integer and not e.is_Add, e
