"""The normalization family on one core: derive, codegen and the CLI for layer, instance,
group and RMS norm, each against PyTorch autograd, finite differences and each other.

References here are independent of bnsym: torch.nn.functional's kernels differentiated by
autograd, and central differences of a forward pass written below in plain NumPy.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnsym import derive, generate, load_json
from bnsym.cli import main
from bnsym.core.build import graph_and_chain_rule
from bnsym.core.graph import Symbols
from bnsym.core.options import DerivationError
from bnsym.family.layers import LAYERS
from bnsym.proofs import prover as _prover
from conftest import needs_torch

try:  # the torch extra; CI installs it (tests/conftest.py)
    import torch
except ImportError:  # the tests marked needs_torch skip; the others run
    torch = None
F = None if torch is None else torch.nn.functional

#: Every layer of the registry (batch norm is a declaration like the others)
FAMILY = list(LAYERS)


def _kw(layer, m):
    return {"channels": 2} if layer == "groupnorm" and m % 2 == 0 else {}


# --- plain NumPy: one group of m values, every variant ------------------------------------


def np_group(x, gammas, betas, eps, centred=True, variance="biased", placement="inside"):
    """y for one group x of shape (m,), per-element gammas and betas."""
    m = len(x)
    mu = x.mean() if centred else 0.0
    if centred:
        var = ((x - mu) ** 2).sum() / (m if variance == "biased" else m - 1)
    else:
        var = (x**2).mean()
    std = np.sqrt(var + eps) if placement == "inside" else np.sqrt(var) + eps
    return gammas * (x - mu) / std + betas


def fd_vjp(f, x, dy, h=1e-6):
    """Σ_j dy_j ∂y_j/∂x_i by central differences."""
    out = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = dy @ (f(x + e) - f(x - e)) / (2 * h)
    return out


def _numbers(d, x, dy, gammas, betas, eps):
    s = d.symbols
    sub = {s.eps: eps, **dict(zip(s.x, x, strict=True)), **dict(zip(s.dy, dy, strict=True))}
    sub.update(zip(s.gammas, gammas, strict=False))
    sub.update(zip(s.betas, betas, strict=False))
    sub = {k: sp.Float(v, 30) for k, v in sub.items()}
    return lambda e: float(sp.sympify(e).xreplace(sub).evalf(30))


# --- derive: proofs, numbers, equivalences ------------------------------------------------


@pytest.mark.parametrize(
    "layer, m, variance, placement, affine",
    [
        (layer, m, variance, placement, affine)
        for layer in FAMILY
        for m, variance, placement, affine in itertools.product(
            (2, 4), ("biased", "unbiased"), ("inside", "outside"), (True, False)
        )
        if not (layer == "rmsnorm" and variance == "unbiased")
    ],
)
def test_every_variant_is_proved_and_matches_numpy_finite_differences(
    layer, m, variance, placement, affine
):
    d = derive(
        m, layer=layer, variance=variance, eps_placement=placement, affine=affine, **_kw(layer, m)
    )
    assert d.verified and all(d.verified.values()), d.verified
    s = d.symbols
    rng = np.random.default_rng(m)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    K = len(s.gammas)
    gk, bk = 1 + 0.3 * rng.normal(size=K), rng.normal(size=K)
    gammas = gk[list(s.param_index)] if affine else np.ones(m)
    betas = bk[list(s.param_index)] if affine and LAYERS[layer].beta else np.zeros(m)
    eps = 0.01
    num = _numbers(d, x, dy, gk, bk, eps)

    def f(v):
        return np_group(v, gammas, betas, eps, LAYERS[layer].centred, variance, placement)

    np.testing.assert_allclose([num(e) for e in d.y], f(x), atol=1e-12)
    np.testing.assert_allclose([num(e) for e in d.dx], fd_vjp(f, x, dy), atol=1e-7)


@needs_torch
@pytest.mark.parametrize("layer", FAMILY)
def test_symbolic_results_at_numbers_match_torch_autograd(layer):
    m = 6
    d = derive(m, layer=layer, **_kw(layer, m))
    s = d.symbols
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    K = len(s.gammas)
    gk, bk = 1 + 0.3 * rng.normal(size=K), rng.normal(size=K)
    eps = 1e-3
    num = _numbers(d, x, dy, gk, bk, eps)
    # the group as a torch tensor in the layer's own layout
    xt = torch.tensor(x, requires_grad=True)
    g = torch.tensor(gk, requires_grad=True)
    b = torch.tensor(bk, requires_grad=True)
    if layer == "batchnorm":  # one feature's m values, a column of x (m, 1)
        y = F.batch_norm(xt[:, None], None, None, g, b, training=True, eps=eps)[:, 0]
    elif layer == "layernorm":
        y = F.layer_norm(xt[None], (m,), g, b, eps)[0]
    elif layer == "rmsnorm":
        y = F.rms_norm(xt[None], (m,), g, eps)[0]
    elif layer == "instancenorm":
        y = F.instance_norm(xt[None, None], weight=g, bias=b, eps=eps)[0, 0]
    else:  # one group of 2 channels of 3 positions
        y = F.group_norm(xt.reshape(1, 2, 3), 1, g, b, eps).reshape(m)
    y.backward(torch.tensor(dy))
    np.testing.assert_allclose([num(e) for e in d.y], y.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose([num(e) for e in d.dx], xt.grad.numpy(), atol=1e-12)
    dgamma = d.dgamma if isinstance(d.dgamma, tuple) else (d.dgamma,)
    np.testing.assert_allclose([num(e) for e in dgamma], g.grad.numpy(), atol=1e-12)
    if LAYERS[layer].beta:
        dbeta = d.dbeta if isinstance(d.dbeta, tuple) else (d.dbeta,)
        np.testing.assert_allclose([num(e) for e in dbeta], b.grad.numpy(), atol=1e-12)
    else:
        assert d.dbeta is None


def test_equivalences_layer_norm_is_group_norm_of_one_value_channels_instance_is_batch():
    # Flax's doctests, exactly: the same explicit results, symbol for symbol.
    ln, gn = derive(4, layer="layernorm"), derive(4, layer="groupnorm", channels=4)
    assert ln.dx == gn.dx and ln.y == gn.y and ln.dgamma == gn.dgamma
    inst, bn = derive(4, layer="instancenorm"), derive(4)
    assert all(sp.simplify(a - b) == 0 for a, b in zip(inst.dx, bn.dx, strict=True))
    assert inst.dgamma == bn.dgamma and inst.dbeta == bn.dbeta


def test_identities_are_the_layers_own():
    rms = derive(4, layer="rmsnorm")
    assert "sum_dx_zero" not in rms.verified  # no centring: Σ∂ℓ/∂x_i ≠ 0
    assert rms.verified["scale_invariance"]
    assert "mean_output_beta" not in derive(4, layer="layernorm").verified  # γ per element
    assert derive(4, layer="instancenorm").verified["mean_output_beta"]
    assert "jacobian_symmetric" not in derive(4, layer="groupnorm", channels=2).verified


def test_rms_norm_sum_dx_is_not_zero_numerically():
    d = derive(3, layer="rmsnorm", eps=0, values="1,2,4", dy="1,0,0")
    assert sum(d.dx) != 0


def _tampered(layer, change, m=4, **kw):
    s = Symbols.of(m, layer, kw.get("channels"))
    forward, backward = graph_and_chain_rule(s, "biased", "inside", True, "train")
    backward = [
        type(st)(st.lhs, change(st.rhs), st.rule, st.value) if st.lhs == s.dx[0] else st
        for st in backward
    ]
    return _prover.prove(s, forward, backward, "biased", "inside", True, "train")


@pytest.mark.parametrize("layer", FAMILY)
def test_the_family_prover_rejects_a_gradient_off_by_a_tenth_of_a_percent(layer):
    result = _tampered(layer, lambda e: e * sp.Rational(1001, 1000), **_kw(layer, 4))
    assert result["verified"]["closed_form"] is False
    assert result["verified"]["chain_rule"] is False
    assert result["verified"]["jacobian_structure"] is False


@pytest.mark.parametrize("layer", FAMILY)
def test_the_family_prover_rejects_a_wrong_forward_graph(layer):
    s = Symbols.of(4, layer, 2 if layer == "groupnorm" else None)
    forward, backward = graph_and_chain_rule(s, "biased", "inside", True, "train")
    forward = [type(n)(n.lhs, 2 * n.rhs, n.rule) if n.lhs == s.var else n for n in forward]
    result = _prover.prove(s, forward, backward, "biased", "inside", True, "train")
    assert not all(result["verified"].values())


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(layer="nope"), "choose one of batchnorm, layernorm"),
        (dict(layer="layernorm", channels=2), "--channels is for group norm"),
        (dict(layer="groupnorm", channels=3), "divide m = 4"),
        (dict(layer="groupnorm", channels=0), "at least 1"),
        (dict(layer="groupnorm", channels="two"), "whole number"),
        (dict(layer="rmsnorm", variance="unbiased"), "no unbiased variant"),
        (dict(layer="layernorm", mode="eval"), "no eval mode"),
    ],
)
def test_family_bad_input_is_one_sentence(kwargs, words):
    with pytest.raises(DerivationError) as info:
        derive(4, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_centred_group_of_one_value_is_refused_rms_is_not():
    with pytest.raises(DerivationError, match="variance of one value"):
        derive(1, layer="layernorm")
    assert derive(1, layer="rmsnorm").verified["closed_form"]


# --- generated code against PyTorch, on the layers' own layouts -----------------------------


CASES = [
    ("layernorm", 5, {}, (3, 5), lambda x, g, b, e: F.layer_norm(x, (5,), g, b, e), (5,)),
    ("rmsnorm", 5, {}, (3, 5), lambda x, g, b, e: F.rms_norm(x, (5,), g, e), (5,)),
    (
        "instancenorm",
        6,
        {},
        (2, 3, 6),
        lambda x, g, b, e: F.instance_norm(x, None, None, g, b, eps=e),
        (3,),
    ),
    (
        "instancenorm",
        6,
        {},
        (2, 3, 2, 3),
        lambda x, g, b, e: F.instance_norm(x, None, None, g, b, eps=e),
        (3,),
    ),
    (
        "groupnorm",
        6,
        {"channels": 2},
        (2, 6, 3),
        lambda x, g, b, e: F.group_norm(x, 3, g, b, e),
        (6,),
    ),
    (
        "groupnorm",
        8,
        {"channels": 2},
        (2, 4, 2, 2),
        lambda x, g, b, e: F.group_norm(x, 2, g, b, e),
        (4,),
    ),
]


@needs_torch
@pytest.mark.parametrize("layer, m, kw, shape, torch_fn, pshape", CASES, ids=lambda v: str(v))
def test_generated_code_matches_torch(layer, m, kw, shape, torch_fn, pshape):
    mod = generate(m, layer=layer, **kw)
    rng = np.random.default_rng(7)
    x, dout = 1 + 2 * rng.normal(size=shape), rng.normal(size=shape)
    gamma, beta = 1 + 0.3 * rng.normal(size=pshape), rng.normal(size=pshape)
    params = (gamma, beta) if LAYERS[layer].beta else (gamma,)
    eps = 1e-5
    y = mod.forward(x, *params, eps=eps)
    grads = mod.backward(dout, x, *params, eps=eps)
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    yt = torch_fn(*leaves, eps)
    yt.backward(torch.tensor(dout))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-12)
    for got, leaf in zip(grads, leaves, strict=False):
        assert got.shape == leaf.shape
        np.testing.assert_allclose(got, leaf.grad.numpy(), atol=1e-11)


@pytest.mark.parametrize("layer", FAMILY)
@pytest.mark.parametrize("variance, placement", [("unbiased", "inside"), ("biased", "outside")])
def test_generated_variants_match_finite_differences(layer, variance, placement):
    if layer == "rmsnorm" and variance == "unbiased":
        variance = "biased"
    m = 4
    mod = generate(m, layer=layer, variance=variance, eps_placement=placement, **_kw(layer, m))
    decl = LAYERS[layer]
    rng = np.random.default_rng(3)
    x, dout = rng.normal(size=(1, m)), rng.normal(size=m)
    s = mod.derivation.symbols
    K = len(s.gammas)
    gk, bk = 1 + 0.3 * rng.normal(size=K), rng.normal(size=K)
    gammas, betas = gk[list(s.param_index)], bk[list(s.param_index)]
    if not decl.beta:
        betas = np.zeros(m)
    # one sample (one group) in the layout; gamma of one group, shaped as the module wants
    shape = decl.grouping_.shape(1, 1, m, K)
    params = (gk, bk) if decl.beta else (gk,)
    eps = 0.01
    dx = mod.backward(dout.reshape(shape), x.reshape(shape), *params, eps=eps)[0].ravel()

    def f(v):
        return np_group(v, gammas, betas, eps, decl.centred, variance, placement)

    np.testing.assert_allclose(
        mod.forward(x.reshape(shape), *params, eps=eps).ravel(), f(x[0]), atol=1e-12
    )
    np.testing.assert_allclose(dx, fd_vjp(f, x[0], dout), atol=1e-7)


def test_generated_module_refuses_a_wrong_layout_naming_it():
    mod = generate(4, layer="groupnorm", channels=2)
    with pytest.raises(ValueError, match=r"groups of 2 channels"):
        mod.forward(np.ones((2, 3, 2)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"gamma must have shape \(G\*C,\) = \(4,\)"):
        mod.forward(np.ones((2, 4, 2)), np.ones(3), np.zeros(4))
    ln = generate(3, layer="layernorm")
    with pytest.raises(ValueError, match=r"\(N, m\) = \(N, 3\)"):
        ln.forward(np.ones((2, 4)), np.ones(4), np.zeros(4))


def test_generated_module_names_a_constant_group_with_eps_zero():
    mod = generate(3, layer="layernorm")
    x = np.array([[1.0, 2.0, 4.0], [5.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"group \(1, 0\).*constant"):
        mod.forward(x, np.ones(3), np.zeros(3), eps=0.0)


# --- the command line and the JSON contract ---------------------------------------------------


@pytest.mark.parametrize("layer", FAMILY)
def test_cli_derive_and_codegen_every_layer(layer):
    extra = ["--channels", "2"] if layer == "groupnorm" else []
    runner = CliRunner()
    result = runner.invoke(main, ["derive", "--layer", layer, "--m", "4", *extra])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(LAYERS[layer].title)
    assert "✗" not in result.output
    code = runner.invoke(main, ["codegen", "--layer", layer, "--m", "4", *extra])
    assert code.exit_code == 0 and "def backward(dout, x, gamma" in code.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--layer", "batchnorms"], "unknown layer 'batchnorms'; choose one of"),
        (["--layer", "groupnorm", "--m", "6", "--channels", "4"], "divide m = 6"),
        (["--layer", "instancenorm", "--channels", "2"], "--channels is for group norm"),
        (["--layer", "layernorm", "--m", "1"], "variance of one value"),
        (["--layer", "rmsnorm", "--variance", "unbiased"], "no unbiased variant"),
    ],
)
@pytest.mark.parametrize("command", ["derive", "codegen", "check"])
def test_cli_family_errors_are_one_line_exit_2(command, args, words):
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0]


def test_json_contract_per_element_parameters_and_rms_without_beta():
    ln = json.loads(derive(3, layer="layernorm").to_json())
    assert ln["options"]["layer"] == "layernorm"
    assert isinstance(ln["dgamma"], list) and len(ln["dgamma"]) == 3
    assert {"gamma1", "gamma3", "beta2"} <= set(ln["symbols"])
    gn = json.loads(derive(4, layer="groupnorm", channels=2).to_json())
    assert len(gn["dgamma"]) == 2 and len(gn["dbeta"]) == 2
    rms = json.loads(derive(3, layer="rmsnorm").to_json())
    assert rms["dbeta"] is None and rms["mean"] is None
    inst = json.loads(derive(3, layer="instancenorm").to_json())
    assert isinstance(inst["dgamma"], str) and "gamma" in inst["symbols"]
    back = load_json(derive(3, layer="layernorm", eps=0, values="1,2,4", dy="1,0,0").to_json())
    assert len(back["dgamma"]) == 3 and all(isinstance(e, sp.Expr) for e in back["dgamma"])


# --- bnsym check --layer ----------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("layer", list(LAYERS))
def test_check_every_layer_agrees_with_torch(layer):
    """Every shipped layer is compared with its own fused PyTorch kernel (the oracle table's),
    and says nothing of a missing one."""
    from bnsym.crosscheck.first import run_check

    result = run_check(4, layer=layer, torch=True, **_kw(layer, 4))
    assert result.passed, result.table()
    pairs = {r.pair for r in result.rows}
    assert {"generated vs torch", "fused vs staged", "generated vs numerical"} <= pairs
    assert "torch-elementary" not in result.table() and not result.notes


@needs_torch
def test_check_names_a_wrong_reference_as_the_odd_one_out(monkeypatch):
    import dataclasses

    from bnsym.crosscheck import oracles
    from bnsym.crosscheck.first import run_check

    row = oracles.ORACLES[LAYERS["layernorm"]]
    right = row.fused["train"]

    def wrong(dout, cache):  # dgamma off by 0.1%
        dx, dgamma, dbeta = right.backward(dout, cache)
        return dx, dgamma * 1.001, dbeta

    fused = {"train": dataclasses.replace(right, backward=wrong)}
    monkeypatch.setitem(oracles.ORACLES, LAYERS["layernorm"], dataclasses.replace(row, fused=fused))
    result = run_check(4, layer="layernorm", torch=True)
    assert not result.passed
    assert "hint: fused disagrees with the others on dgamma" in result.table()


@needs_torch
def test_cli_check_layer_exit_codes():
    runner = CliRunner()
    ok = runner.invoke(main, ["check", "--layer", "groupnorm", "--m", "4", "--channels", "2"])
    assert ok.exit_code == 0 and "bnsym check --layer groupnorm: m = 4, x (3, 4, 2)" in ok.output
    bad = runner.invoke(main, ["check", "--layer", "rmsnorm", "--m", "4", "--torch"])
    assert bad.exit_code == 0, bad.output  # RMS norm's default variant is torch's


@pytest.mark.parametrize("variance", ["biased", "unbiased"])
@pytest.mark.parametrize("placement", ["inside", "outside"])
def test_the_family_prover_proves_batch_norm_too(variance, placement):
    # Batch norm is a declaration like the others: the one prover reads its declaration.
    s = Symbols.of(4)
    forward, backward = graph_and_chain_rule(s, variance, placement, True, "train")
    result = _prover.prove(s, forward, backward, variance, placement, True, "train")
    assert all(result["verified"].values()) and "mean_output_beta" in result["verified"]


def test_rmsnorm_module_header_names_no_variance_and_no_beta():
    # RMS norm divides by the root mean square and has no beta: the generated module's
    # header and `check`'s variant line must not describe it as a centred layer with beta
    source = generate(derive(4, layer="rmsnorm")).source
    header = [line for line in source.splitlines() if line.startswith(("# Variant", "K ="))]
    assert header == [
        "# Variant: train mode, mean square (1/m), eps inside the square root, affine (gamma).",
        "K = 4  # gamma values per group",
    ]


def test_group_norms_graph_names_gamma_by_channel_not_by_element():
    # group norm has one γ per channel: element i's arrow comes from γ of x_i's channel, so
    # the graph must not write γ_i (which reads as one γ per element, m of them)
    text = derive(4, layer="groupnorm", channels=2).to_text()
    graph = text.split("Computation graph")[1].split("Closed form")[0]
    assert "γ_c" in graph and "the channel of xᵢ" in graph
    assert "γᵢ" not in graph and "βᵢ" not in graph
    # layer norm's γ is per element: γ_i is right there
    graph = derive(4, layer="layernorm").to_text().split("Computation graph")[1]
    assert "γᵢ" in graph.split("Closed form")[0]


@pytest.mark.parametrize("layer", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("field", ["dx", "var"])
def test_explicit_results_proof_fails_when_tampered_above_the_jacobian_cutoff(
    layer, field, monkeypatch
):
    # Above m = 16 explicit_results compares elements 1 and 2 and reads σ²(x) + ε as one
    # quantity: a wrong second element, or a wrong σ²(x), must still fail it
    honest = _prover.explicit_results

    def tampered(c):
        ex = honest(c)
        if field == "dx":
            ex["dx"] = (ex["dx"][0], ex["dx"][1] + c.s.dy[0] / 1000, *ex["dx"][2:])
        else:
            ex["var"] = ex["var"] + c.s.x[0] ** 2 / 1000
        return ex

    import bnsym.derivation as symbolic

    symbolic._derive_symbolic.cache_clear()  # derivations are cached: derive afresh
    monkeypatch.setattr(_prover, "explicit_results", tampered)
    assert derive(20, layer=layer).verified["explicit_results"] is False
    symbolic._derive_symbolic.cache_clear()
    monkeypatch.setattr(_prover, "explicit_results", honest)
    assert derive(20, layer=layer).verified["explicit_results"] is True
