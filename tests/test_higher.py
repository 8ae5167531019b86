"""Orders 2 and 3 for every layer: derived by the chain rule, proved, generated, checked.

References independent of bnsym's closed form: torch autograd (``torch.autograd.grad`` with
``create_graph=True``) through the layer written below in elementary operations and through
PyTorch's functional kernels; complex-step differences of the *first-order* generated
backward; the chain rule's own steps evaluated exactly.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnsym.cli import main
from bnsym.codegen.higher import generate_higher
from bnsym.codegen.module import generate
from bnsym.core import higher as core_higher
from bnsym.core.options import DerivationError
from bnsym.crosscheck import higher as check_higher
from bnsym.crosscheck.oracles import oracles_for
from bnsym.derivation import derive
from bnsym.family.layers import LAYERS as REGISTRY
from bnsym.family.layers import Layer
from bnsym.proofs import higher
from bnsym.proofs.higher import derive_higher
from conftest import needs_torch

try:  # the torch extra; CI installs it (tests/conftest.py)
    import torch
except ImportError:  # the tests marked needs_torch skip; the others run
    torch = None

LAYERS = [
    ("batchnorm", {}, (4, 3), 3),
    ("layernorm", {}, (3, 4), 4),
    ("instancenorm", {}, (2, 3, 4), 3),
    ("groupnorm", {"channels": 2}, (2, 4, 2), 4),
    ("rmsnorm", {}, (3, 4), 4),
]
IDS = [name for name, *_ in LAYERS]


def _torch_layer(name, x, gamma, beta, eps=1e-5):
    """The layer in means, squares and a square root, in its own layout (m = 4)."""
    g = x.T.unsqueeze(0) if name == "batchnorm" else x.reshape(x.shape[0], -1, 4)
    if name == "rmsnorm":
        xhat = g / torch.sqrt((g * g).mean(-1, keepdim=True) + eps)
    else:
        xmu = g - g.mean(-1, keepdim=True)
        xhat = xmu / torch.sqrt((xmu * xmu).mean(-1, keepdim=True) + eps)
    xhat = xhat[0].T if name == "batchnorm" else xhat.reshape(x.shape)
    shape = [1] * x.ndim
    shape[-1 if name in ("layernorm", "rmsnorm") else 1] = -1
    y = xhat * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


def _data(shape, P, seed=0):
    rng = np.random.default_rng(seed)
    x = 1.5 + 2.0 * rng.standard_normal(shape)
    dout, gdx = rng.standard_normal(shape), rng.standard_normal(shape)
    gamma, beta, gdgamma, gdbeta = (rng.standard_normal(P) for _ in range(4))
    return x, dout, gdx, gamma, beta, gdgamma, gdbeta


@needs_torch
@pytest.mark.parametrize(("name", "kw", "shape", "P"), LAYERS, ids=IDS)
def test_generated_double_backward_matches_torch_autograd(name, kw, shape, P):
    mod = generate_higher(derive(4, layer=name, **kw))
    x, dout, gdx, gamma, beta, gdgamma, gdbeta = _data(shape, P)
    T = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in dict(x=x, d=dout, g=gamma, b=beta).items()
    }
    has_beta = name != "rmsnorm"
    y = _torch_layer(name, T["x"], T["g"], T["b"] if has_beta else None)
    wrt = [T["x"], T["g"]] + ([T["b"]] if has_beta else [])
    grads = torch.autograd.grad(y, wrt, T["d"], create_graph=True)
    cot = [gdx, gdgamma] + ([gdbeta] if has_beta else [])
    l2 = sum((torch.tensor(c) * g).sum() for c, g in zip(cot, grads, strict=True))
    want = torch.autograd.grad(l2, (T["x"], T["d"], T["g"]))
    if has_beta:
        got = mod.double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta)
    else:
        got = mod.double_backward(gdx, gdgamma, dout, x, gamma)
    for g, w, what in zip(got, want, ("gx", "gdout", "ggamma"), strict=True):
        assert g.shape == w.shape, what
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-10, atol=1e-11, err_msg=what)


@pytest.mark.parametrize(("name", "kw", "shape", "P"), LAYERS, ids=IDS)
def test_generated_double_backward_is_the_derivative_of_the_generated_backward(name, kw, shape, P):
    """Complex-step differences of Σ gdx·dx + Σ gdgamma·dgamma (+ Σ gdbeta·dbeta) of the
    first-order module, which knows nothing of the closed form of order 2."""
    first = generate(derive(4, layer=name, **kw))
    mod = generate_higher(derive(4, layer=name, **kw))
    x, dout, gdx, gamma, beta, gdgamma, gdbeta = _data(shape, P, seed=3)
    has_beta = name != "rmsnorm"
    params = [beta] if has_beta else []

    def l2(x, dout, gamma):
        grads = first.backward(dout, x, gamma, *params)
        cot = [gdx, gdgamma] + ([gdbeta] if has_beta else [])
        return sum(np.sum(c * g) for c, g in zip(cot, grads, strict=True))

    inputs = [x, dout, gamma]
    want = []
    for k, v in enumerate(inputs):
        grad = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            args = [a.astype(complex) for a in inputs]
            args[k][j] += 1e-20j
            grad[j] = l2(*args).imag / 1e-20
        want.append(grad)
    cot = [gdgamma] + ([gdbeta] if has_beta else [])
    got = mod.double_backward(gdx, *cot, dout, x, gamma, *params)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("name", "kw", "shape", "P"), LAYERS, ids=IDS)
def test_proofs_of_order_2_hold(name, kw, shape, P):
    h = derive_higher(derive(4, layer=name, **kw), order=2)
    assert h.verified and all(h.verified.values()), h.verified
    expected = {"closed_form_2", "hessian_symmetric"}
    if name != "rmsnorm":
        expected.add("sum_gx")
    if name in ("batchnorm", "instancenorm"):
        expected.add("sum_gdy")
    assert set(h.verified) == expected


def test_a_wrong_closed_form_is_not_proved():
    """The proof of the tester: one coefficient changed in gdy_1 must fail closed_form_2."""
    d = derive(3)
    h = derive_higher(d, 2)
    closed = list(h.closed_form)
    k = next(i for i, st in enumerate(closed) if st.lhs.name == "gdy1")
    closed[k] = dataclasses.replace(closed[k], rhs=closed[k].rhs * sp.Rational(1001, 1000))
    verified, _, _, _ = higher._prove(
        d, "biased", h.steps, h.results, closed, h.gdx, h.gdgamma, h.gdbeta
    )
    assert verified["closed_form_2"] is False
    assert verified["hessian_symmetric"] is True  # the chain rule itself is untouched


@needs_torch
@pytest.mark.parametrize(("name", "kw", "shape", "P"), LAYERS, ids=IDS)
def test_order_3_through_the_closed_form_equals_torch(name, kw, shape, P):
    """The third order walked over the closed form of order 2, at numbers, against torch
    autograd three times through the elementary layer (one group: m = 4 values)."""
    d = derive(4, layer=name, **kw)
    h = derive_higher(d, 3)
    assert h.verified["closed_form_3"] and h.third_closed_form
    assert [st.lhs for st in h.third_closed_form[-len(h.third_results) :]] == [
        st.lhs for st in h.third_results
    ]
    s = d.symbols
    K = len(s.gammas)
    rng = np.random.default_rng(9)
    x, dout, gdx, tgx, tgdout = (rng.standard_normal(4) for _ in range(5))
    x = 1.5 + 2 * x
    gamma, gdgamma, gdbeta, tggamma = (rng.standard_normal(K) for _ in range(4))
    values = {s.eps: sp.Rational(1, 100000)}
    pairs = [(s.x, x), (s.dy, dout), (s.gammas, gamma), (h.gdx, gdx), (h.gdgamma, gdgamma)]
    pairs += [(h.gdbeta, gdbeta)] if h.gdbeta else []
    pairs += [(h.third_cotangents, np.concatenate([tgx, tgdout, tggamma]))]
    for syms, nums in pairs:
        values.update({k: sp.Float(v, 40) for k, v in zip(syms, nums, strict=True)})
    out = core_higher.evaluate([*d.forward, *h.closed_form, *h.third_closed_form], values)
    ours = np.array([float(out[st.lhs]) for st in h.third_results])

    # torch: one group of the layer (batch norm: one feature of 4 samples; group norm:
    # one group of 2 channels x 2 positions), through _torch_layer
    layout = {
        "batchnorm": (4, 1),
        "layernorm": (1, 4),
        "instancenorm": (1, 1, 4),
        "groupnorm": (1, 2, 2),
        "rmsnorm": (1, 4),
    }[name]
    T = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in dict(x=x.reshape(layout), d=dout.reshape(layout), g=gamma).items()
    }
    has_beta = name != "rmsnorm"
    beta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    y = _torch_layer(name, T["x"], T["g"], beta if has_beta else None)
    wrt = [T["x"], T["g"]] + ([beta] if has_beta else [])
    grads = torch.autograd.grad(y, wrt, T["d"], create_graph=True)
    cot = [gdx.reshape(layout), gdgamma] + ([gdbeta] if has_beta else [])
    l2 = sum((torch.tensor(c) * g).sum() for c, g in zip(cot, grads, strict=True))
    second = torch.autograd.grad(l2, (T["x"], T["d"], T["g"]), create_graph=True)
    tcot = [tgx.reshape(layout), tgdout.reshape(layout), tggamma]
    l3 = sum((torch.tensor(c) * g).sum() for c, g in zip(tcot, second, strict=True))
    third = torch.autograd.grad(l3, (T["x"], T["d"], T["g"]))
    want = np.concatenate([t.detach().numpy().ravel() for t in third])
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-12)


def test_a_wrong_closed_form_fails_the_third_order_proof():
    d = derive(3)
    h = derive_higher(d, 3)
    closed = list(h.closed_form)
    k = next(i for i, st in enumerate(closed) if st.lhs.name == "coef_gdx")
    closed[k] = dataclasses.replace(closed[k], rhs=closed[k].rhs * sp.Rational(1001, 1000))
    wrong = dataclasses.replace(h, closed_form=tuple(closed))
    outputs = {st.lhs: c for st, c in zip(h.results, h.third_cotangents, strict=True)}
    inputs = core_higher.wrt(d.symbols, d.options.affine)
    walked = core_higher.differentiate([*d.forward, *closed], outputs, inputs, "t")
    n = len(h.third_results)
    assert higher._prove3(wrong, h.third_steps, walked, h.third_cotangents, n) is False
    assert higher._prove3(h, h.third_steps, h.third_closed_form, h.third_cotangents, n) is True


def test_order_3_closed_form_is_bounded():
    h = derive_higher(derive(9, layer="rmsnorm"), 3)
    assert h.third_results and not h.third_closed_form and "closed_form_3" not in h.verified


def test_chain_rule_steps_at_numbers_equal_the_generated_code():
    d = derive(3, layer="layernorm")
    h = derive_higher(d, 2)
    s = d.symbols
    rng = np.random.default_rng(5)
    x, dout, gdx, gamma, beta, gdgamma, gdbeta = (rng.standard_normal(3) for _ in range(7))
    values = {s.eps: sp.Rational(1, 100000)}
    for syms, nums in [
        (s.x, x),
        (s.dy, dout),
        (s.gammas, gamma),
        (h.gdx, gdx),
        (h.gdgamma, gdgamma),
        (h.gdbeta, gdbeta),
    ]:
        values.update({k: sp.Float(v, 40) for k, v in zip(syms, nums, strict=True)})
    out = core_higher.evaluate([*d.forward, *d.backward, *h.steps], values)
    exact = np.array([float(out[st.lhs]) for st in h.results])
    gx, gdout, ggamma = generate_higher(d).double_backward(
        gdx[None], gdgamma, gdbeta, dout[None], x[None], gamma, beta
    )
    np.testing.assert_allclose(np.concatenate([gx[0], gdout[0], ggamma]), exact, rtol=1e-11)


def test_order_3_is_the_vjp_of_the_double_backward():
    h = derive_higher(derive(3, layer="rmsnorm"), order=3)
    assert [st.lhs.name for st in h.third_results] == [
        "tx1",
        "tx2",
        "tx3",
        "tdy1",
        "tdy2",
        "tdy3",
        "tgamma1",
        "tgamma2",
        "tgamma3",
    ]
    assert [c.name for c in h.third_cotangents][:2] == ["tgx1", "tgx2"]


def test_an_order_other_than_2_or_3_is_refused():
    with pytest.raises(DerivationError, match="order must be 2 or 3"):
        derive_higher(derive(3), 4)


# --- the checker and what it finds about PyTorch ------------------------------------------


#: PyTorch's fused kernels whose double backward treats the saved mean and 1/std as constants,
#: so that the third order through them is wrong on ∂/∂x (measured with torch 2.13; torch's own
#: gradcheck of the double backward fails there too).
CONSTANT_STATISTICS = {"batch_norm", "layer_norm", "instance_norm"}
#: A layer the five do not cover, declared here: one γ per row, no β, y = γ·x/√(mean(x²) + ε).
SCALENORM = Layer(name="scalenorm", centred=False, beta=False)
CHECKED = [(d, {"channels": 2} if d.has_channels else {}) for d in [*REGISTRY.values(), SCALENORM]]


@needs_torch
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize(("decl", "kw"), CHECKED, ids=[d.name for d, _ in CHECKED])
def test_check_higher(decl, kw, order):
    """Everything agrees, the layer's fused PyTorch kernel where the oracle table has one and
    the elementary PyTorch layer always, except at order 3 the kernels of
    CONSTANT_STATISTICS on ∂/∂x."""
    d = derive(4, layer=decl, **kw)
    result = check_higher.run_check_higher(d, order, features=2, seed=0, torch=True)
    failed = {(r.quantity, r.pair) for r in result.rows if not r.passed}
    kernel = oracles_for(d.options).torch
    names = ["exact", "differences", *(["torch-native"] if kernel else []), "torch-elementary"]
    if order == 2:
        names.insert(0, "generated")
    assert result.header.endswith(", ".join(names) + ".")
    assert ("no fused PyTorch kernel" in result.table()) == (kernel is None)
    if order == 3 and kernel and kernel.name in CONSTANT_STATISTICS:
        assert failed == {
            ("tx", "exact vs torch-native"),
            ("tx", "differences vs torch-native"),
            ("tx", "torch-native vs torch-elementary"),
        }
        assert len(result.odd) == 1 and result.odd[0].startswith("odd one out: torch-native on tx")
        assert not result.passed
    else:
        assert result.passed, result.table()


# every other variant: eval mode (batch norm), ε outside the root, no γ and β (the unbiased
# variance is in LAYERS' closed form already: k = 1/(m - 1))
VARIANTS = [
    *[(name, {**kw, "eps_placement": "outside"}) for name, kw, *_ in LAYERS],
    *[(name, {**kw, "eps_placement": "sqrt-outside"}) for name, kw, *_ in LAYERS],
    *[(name, {**kw, "affine": False}) for name, kw, *_ in LAYERS],
    *[(name, {**kw, "variance": "unbiased"}) for name, kw, *_ in LAYERS if name != "rmsnorm"],
    ("batchnorm", {"mode": "eval"}),
    ("batchnorm", {"mode": "eval", "affine": False}),
    ("batchnorm", {"mode": "eval", "eps_placement": "sqrt-outside"}),
]
VARIANT_IDS = [f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for name, kw in VARIANTS]


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=VARIANT_IDS)
def test_every_variant_is_derived_and_proved_at_orders_2_and_3(name, kw):
    d = derive(4, layer=name, **kw)
    h = derive_higher(d, 3)
    # the Hessian of Σ dy·y: symmetric in train mode, 0 in eval mode (y affine in x)
    hessian = "hessian_zero" if kw.get("mode") == "eval" else "hessian_symmetric"
    assert all(h.verified.values()) and hessian in h.verified, dict(h.verified)
    assert h.verified["closed_form_2"] and h.verified["closed_form_3"] and h.closed_form
    n = 2 * 4 + (len(d.symbols.gammas) if kw.get("affine", True) else 0)
    assert len(h.results) == len(h.third_results) == n
    if kw.get("mode") != "eval" and name != "rmsnorm":
        assert h.verified["sum_gx"]


@needs_torch
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=VARIANT_IDS)
def test_every_variant_is_checked_against_torch(name, kw, order):
    """exact (the chain rule at numbers), complex-step differences of the order below and torch
    autograd (through the elementary layer of the variant, and through PyTorch's kernel where
    it has the variant: eval-mode batch norm with running statistics, no γ and β) agree —
    except PyTorch's fused batch/layer/instance norm at order 3 on ∂/∂x, as for affine."""
    d = derive(4, layer=name, **kw)
    result = check_higher.run_check_higher(d, order, features=2, seed=1, torch=True)
    kernel = oracles_for(d.options).torch
    native = kw.get("eps_placement", "inside") == "inside" and kw.get("variance") != "unbiased"
    names = ["exact", "differences", *(["torch-native"] if native else []), "torch-elementary"]
    if order == 2:
        names.insert(0, "generated")
    assert result.header.endswith(", ".join(names) + "."), result.header
    if not native:  # the report says why PyTorch's kernel is not compared
        assert f"torch-native: no column; torch.nn.functional.{kernel.name} normalizes with" in (
            result.table()
        )
    quantities = {r.quantity for r in result.rows}
    assert ("ggamma" in quantities or "tgamma" in quantities) == kw.get("affine", True)
    failed = {(r.quantity, r.pair) for r in result.rows if not r.passed}
    fused = kernel.name in CONSTANT_STATISTICS and kw.get("mode") != "eval"
    if order == 3 and native and fused:
        assert {pair for _, pair in failed} == {
            "exact vs torch-native",
            "differences vs torch-native",
            "torch-native vs torch-elementary",
        } and {q for q, _ in failed} == {"tx"}, result.table()
    else:
        assert result.passed, result.table()


def test_derive_order_2_of_variants_on_the_command_line():
    r = _run("derive", "--m", "3", "--order", "2", "--mode", "eval", "--format", "json")
    db = json.loads(r.output)["double_backward"]
    assert r.exit_code == 0 and all(db["verified"].values())
    assert [st["lhs"] for st in db["closed_form"]][-1] == "ggamma"
    r = _run("derive", "--m", "3", "--order", "3", "--eps-placement", "outside")
    assert r.exit_code == 0 and "Third order from the closed form" in r.output
    assert "k·r stands for k" in r.output and "  r = (√(σ²_B) + ε)/√(σ²_B)" in r.output


@needs_torch
def test_check_names_a_double_backward_off_by_a_tenth_of_a_percent(monkeypatch):
    """The tester's test: a generated gx 0.1% off must fail and be named the odd one out."""
    real = check_higher._double

    def off(gen, data, eps):
        gx, gdout, ggamma = real(gen, data, eps)
        return gx * 1.001, gdout, ggamma

    monkeypatch.setattr(check_higher, "_double", off)
    result = check_higher.run_check_higher(derive(4), 2, features=2, torch=True)
    assert not result.passed
    assert result.odd == [line for line in result.odd if "generated on gx" in line] != []
    assert "worst entry" in result.odd[0] and "FAILED: 4 of" in result.table()


# --- the command line --------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_derive_order_1_is_unchanged():
    def body(*extra):  # all but the line that echoes the command
        out = _run("derive", "--m", "3", "--format", "json", *extra).output
        return out

    assert body() == body("--order", "1")
    text = _run("derive", "--m", "3", "--order", "1").output.splitlines()
    assert [line for line in text if not line.startswith("command:")] == [
        line
        for line in _run("derive", "--m", "3").output.splitlines()
        if not line.startswith("command:")
    ]


@pytest.mark.parametrize("fmt", ["text", "json", "latex", "markdown"])
def test_derive_order_2_in_every_format(fmt):
    # LaTeX as a fragment, to which the sections of order 2 are appended (a document has
    # them before its \end{document})
    extra = ["--fragment"] if fmt == "latex" else []
    first = _run("derive", "--m", "3", "--layer", "layernorm", "--format", fmt, *extra).output
    r = _run("derive", "--m", "3", "--layer", "layernorm", "--order", "2", "--format", fmt, *extra)
    assert r.exit_code == 0
    if fmt == "json":
        obj = json.loads(r.output)
        assert {k: v for k, v in obj.items() if k != "double_backward"} == json.loads(first)
        db = obj["double_backward"]
        assert db["results"][:3] == ["gx1", "gx2", "gx3"] and all(db["verified"].values())
        gx1 = next(st["rhs"] for st in db["closed_form"] if st["lhs"] == "gx1")
        assert "coef_dy1*dy1" in gx1 and "coef_xhat*xhat1" in gx1
    else:

        def without_command(text):
            return "\n".join(line for line in text.splitlines() if "derive --m" not in line)

        assert without_command(r.output).startswith(without_command(first))
        assert "Double backward" in r.output and "closed form" in r.output.lower()


def test_derive_order_2_standalone_latex_compiles():
    from bnsym.notes import pdf

    r = _run("derive", "--m", "2", "--order", "2", "--format", "latex", "--standalone")
    assert pdf.compile_pdf(r.output).startswith(b"%PDF")


def test_derive_order_3_json():
    r = _run("derive", "--m", "2", "--layer", "rmsnorm", "--order", "3", "--format", "json")
    third = json.loads(r.output)["third_order"]
    assert third["results"] == ["tx1", "tx2", "tdy1", "tdy2", "tgamma1", "tgamma2"]


@needs_torch
@pytest.mark.parametrize(
    ("args", "signature"),
    [
        (("--no-affine",), "def double_backward(gdx, dout, x, eps=1e-05):"),
        (("--layer", "rmsnorm", "--no-affine"), "def double_backward(gdx, dout, x, eps=1e-05):"),
        (
            ("--mode", "eval"),
            "def double_backward(gdx, gdgamma, gdbeta, dout, x, gamma, beta, running_mean, "
            "running_var,",
        ),
    ],
)
def test_codegen_order_2_of_variants_runs_against_torch(args, signature):
    r = _run("codegen", "--m", "4", "--order", "2", *args)
    assert r.exit_code == 0 and signature in r.output
    namespace: dict = {}
    exec(compile(r.output, "<codegen>", "exec"), namespace)
    rng = np.random.default_rng(2)
    layer = "rmsnorm" if "rmsnorm" in args else "batchnorm"
    shape = (4, 3) if layer == "batchnorm" else (3, 4)
    x, dout, gdx = 1.5 + 2 * rng.standard_normal(shape), *rng.standard_normal((2, *shape))
    if "--mode" in args:
        g, b, gg, gb, rm = rng.standard_normal((5, 3))
        rv = rng.uniform(0.5, 2.0, 3)
        got = namespace["double_backward"](gdx, gg, gb, dout, x, g, b, rm, rv)
        T = {k: torch.tensor(v, requires_grad=True) for k, v in dict(x=x, d=dout, g=g).items()}
        y = torch.nn.functional.batch_norm(
            T["x"], torch.tensor(rm), torch.tensor(rv), T["g"], torch.tensor(b), False, eps=1e-5
        )
        dx, dg = torch.autograd.grad(y, (T["x"], T["g"]), T["d"], create_graph=True)
        l2 = (torch.tensor(gdx) * dx).sum() + (torch.tensor(gg) * dg).sum()
        l2 = l2 + (torch.tensor(gb) * T["d"].sum(0)).sum()
        want = torch.autograd.grad(l2, (T["x"], T["d"], T["g"]), allow_unused=True)
    else:
        got = namespace["double_backward"](gdx, dout, x)
        T = {k: torch.tensor(v, requires_grad=True) for k, v in dict(x=x, d=dout).items()}
        y = _torch_layer(layer, T["x"], torch.ones(3 if layer == "batchnorm" else 4), None)
        (dx,) = torch.autograd.grad(y, (T["x"],), T["d"], create_graph=True)
        want = torch.autograd.grad((torch.tensor(gdx) * dx).sum(), (T["x"], T["d"]))
    assert len(got) == len(want)
    for g_, w in zip(got, want, strict=True):
        w = np.zeros_like(g_) if w is None else w.detach().numpy()
        np.testing.assert_allclose(g_, w, rtol=1e-10, atol=1e-12)


def test_codegen_order_2_writes_double_backward():
    r = _run("codegen", "--m", "4", "--layer", "rmsnorm", "--order", "2")
    assert r.exit_code == 0
    assert "def double_backward(gdx, gdgamma, dout, x, gamma, eps=1e-05):" in r.output
    assert "_Dummy" not in r.output
    namespace: dict = {}
    exec(compile(r.output, "<codegen>", "exec"), namespace)
    x = np.arange(8.0).reshape(2, 4)
    gx, gdout, ggamma = namespace["double_backward"](x, np.ones(4), x, x + 1, np.ones(4))
    assert gx.shape == gdout.shape == (2, 4) and ggamma.shape == (4,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("derive", "--order", "4"), "Error: --order '4' is not one of 1, 2, 3"),
        (("derive", "--order", "x"), "Error: --order 'x' is not one of 1, 2, 3"),
        (("check", "--order", "0"), "Error: --order '0' is not one of 1, 2, 3"),
        (("codegen", "--order", "3"), "Error: --order '3' is not one of 1, 2 for"),
        (("codegen", "--order", "2", "--m", "1"), "Error: "),
        (("derive", "--order", "2", "--m", "1"), "Error: "),
    ],
)
def test_bad_order_is_one_line_exit_2(args, message):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 2
    assert r.output.startswith(message) and r.output.count("\n") == 1, r.output


@needs_torch
def test_check_order_3_exits_1_naming_torch():
    r = _run("check", "--order", "3", "--layer", "layernorm", "-D", "2")
    assert r.exit_code == 1
    assert "odd one out: torch-native on tx" in r.output


def test_check_order_2_exits_0():
    r = _run("check", "--order", "2", "--layer", "groupnorm", "--channels", "2", "-D", "2")
    assert r.exit_code == 0 and r.output.rstrip().endswith("comparisons agree.")


@pytest.mark.parametrize("order", [2, 3])
def test_at_m_2_and_eps_0_gx_is_zero_and_rounding_is_not_a_failure(order):
    from bnsym.crosscheck.higher import run_check_higher

    # batch norm over two values at ε = 0: x̂ = ±1 whatever x, so ∂ℓ/∂x and everything it is
    # differentiated into vanish; the implementations differ by rounding of O(1) terms
    x = np.array([[0.3, -1.2], [1.7, 0.4]])
    xh = (x - x.mean(0)) / x.std(0)
    assert np.allclose(np.abs(xh), 1.0)
    report = run_check_higher(derive(2, eps=0), order, torch=False)
    assert report.passed, report.table()
