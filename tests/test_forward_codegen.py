"""Generated forward mode (jvp, jvp2, hvp), check --modes, the notes and the command line.

The references are written here: each layer on its own layout in plain NumPy
(:func:`np_layer`), differentiated by the complex step along the tangent (the jvp, exact to
rounding) and central differences of that (the jvp of the jvp, the Hessian-vector product),
and the same layer in torch.func over elementary PyTorch operations (the ``torch`` fixture).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnsym import load_json
from bnsym.cli import main
from bnsym.codegen import modes as codegen_modes
from bnsym.codegen.modes import generate_modes
from bnsym.crosscheck import modes as check_modes
from bnsym.crosscheck.modes import run_check_modes
from bnsym.derivation import derive
from bnsym.family.layers import LAYERS, Layer
from bnsym.notes.formats import FORMATS, render
from bnsym.proofs.modes import derive_modes

SCALENORM = Layer(name="scalenorm", centred=False, beta=False)  # one γ per row, no β
EPS = 1e-5

# (name, declaration, options, x's shape, parameter size)
CASES = [
    ("batchnorm", LAYERS["batchnorm"], {}, (4, 3), 3),
    ("layernorm", LAYERS["layernorm"], {}, (3, 4), 4),
    ("instancenorm", LAYERS["instancenorm"], {}, (2, 3, 4), 3),
    ("groupnorm", LAYERS["groupnorm"], {"channels": 2}, (2, 4, 2), 4),
    ("rmsnorm", LAYERS["rmsnorm"], {}, (3, 4), 4),
    ("scalenorm", SCALENORM, {}, (3, 4), 1),
]
IDS = [c[0] for c in CASES]


def _group_view(name, x):
    """x as (groups, m) and back, for each layout, written here."""
    if name == "batchnorm":  # columns
        return x.T, lambda g: g.T
    if name in ("layernorm", "rmsnorm", "scalenorm"):  # rows
        return x, lambda g: g
    if name == "instancenorm":  # (N, C, L): one group per (n, c)
        return x.reshape(-1, x.shape[-1]), lambda g: g.reshape(x.shape)
    # group norm (N, G*C, L) with C = 2 channels per group
    return x.reshape(x.shape[0] * x.shape[1] // 2, -1), lambda g: g.reshape(x.shape)


def _per_value(name, p, x):
    """γ or β broadcast to x's shape, for each layout."""
    if name == "batchnorm":
        return p[None, :]
    if name in ("layernorm", "rmsnorm"):
        return p[None, :]
    if name == "scalenorm":
        return p[0]
    return p[None, :, None]


def np_layer(
    name, decl, x, gamma, beta, eps=EPS, placement="inside", variance="biased", stats=None
):
    """The layer in plain NumPy on its own layout (complex input carried through)."""
    g, back = _group_view(name, x)
    if stats is not None:  # batch norm's eval mode: one running mean and variance per column
        xhat = (x - stats[0][None, :]) / np.sqrt(stats[1][None, :] + eps)
    else:
        if decl.centred:
            mu = g.mean(axis=1, keepdims=True)
            var = ((g - mu) ** 2).sum(axis=1, keepdims=True) / (
                g.shape[1] - 1 if variance == "unbiased" else g.shape[1]
            )
        else:
            mu, var = 0.0, (g * g).mean(axis=1, keepdims=True)
        if placement == "inside":
            D = np.sqrt(var + eps)
        else:
            D = np.sqrt(var) + (np.sqrt(eps) if placement == "sqrt-outside" else eps)
        xhat = back((g - mu) / D)
    y = xhat
    if gamma is not None:
        y = y * _per_value(name, gamma, x)
    if beta is not None:
        y = y + _per_value(name, beta, x)
    return y


def _data(shape, P, decl, affine=True, seed=0):
    rng = np.random.default_rng(seed)
    x = 1.5 + 2.0 * rng.standard_normal(shape)
    params = []
    if affine:
        params.append(1.0 + 0.5 * rng.standard_normal(P))
        if decl.beta:
            params.append(rng.standard_normal(P))
    tangents = [rng.standard_normal(a.shape) for a in (x, *params)]
    second = [rng.standard_normal(a.shape) for a in (x, *params)]
    dout = rng.standard_normal(shape)
    return x, params, tangents, second, dout


def _np(name, decl, options):
    def f(x, *params):
        gamma = params[0] if params else None
        beta = params[1] if len(params) > 1 else None
        return np_layer(
            name,
            decl,
            x,
            gamma,
            beta,
            placement=options.get("eps_placement", "inside"),
            variance=options.get("variance", "biased"),
        )

    return f


def _cs_jvp(f, theta, t, h=1e-30):
    return np.imag(f(*[a + 1j * h * v for a, v in zip(theta, t, strict=True)])) / h


def _cs_grad(f, theta, dout, h=1e-30):
    out = []
    for k, a in enumerate(theta):
        g = np.zeros(a.shape)
        for j in np.ndindex(a.shape):
            moved = [b.astype(complex) for b in theta]
            moved[k][j] += 1j * h
            g[j] = np.imag(np.sum(dout * f(*moved))) / h
        out.append(g)
    return out


VARIANTS = [{}, {"eps_placement": "outside", "variance": "unbiased"}, {"affine": False}]


@pytest.mark.parametrize(("name", "decl", "kw", "shape", "P"), CASES, ids=IDS)
@pytest.mark.parametrize("options", VARIANTS, ids=["inside", "outside-unbiased", "no-affine"])
def test_generated_jvp_jvp2_hvp_are_plain_numpys(name, decl, kw, shape, P, options):
    if not decl.centred:
        options = {k: v for k, v in options.items() if k != "variance"}
    d = derive(4, layer=decl, **kw, **options)
    mod = generate_modes(d, ("fwd",), 2)
    affine = options.get("affine", True)
    x, params, t, s, dout = _data(shape, P, decl, affine)
    f = _np(name, decl, options)
    theta = [x, *params]
    y, ty = mod.jvp(x, *params, *t)
    np.testing.assert_allclose(y, f(*theta), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ty, _cs_jvp(f, theta, t), rtol=1e-10, atol=1e-10)
    # jvp2: the derivative along s of the jvp along t (central differences of the complex step)
    h = 1e-5
    plus = _cs_jvp(f, [a + h * v for a, v in zip(theta, s, strict=True)], t)
    minus = _cs_jvp(f, [a - h * v for a, v in zip(theta, s, strict=True)], t)
    y2, ty2, sy, tsy = mod.jvp2(x, *params, *t, *s)
    np.testing.assert_allclose(ty2, ty, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(sy, _cs_jvp(f, theta, s), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tsy, (plus - minus) / (2 * h), rtol=1e-6, atol=1e-6)
    # hvp: the derivative along t of the gradient of <dout, y>
    g_plus = _cs_grad(f, [a + h * v for a, v in zip(theta, t, strict=True)], dout)
    g_minus = _cs_grad(f, [a - h * v for a, v in zip(theta, t, strict=True)], dout)
    hvp = mod.hvp(x, *params, dout, *t)
    hvp = hvp if isinstance(hvp, tuple) else (hvp,)
    for got, a, b in zip(hvp, g_plus, g_minus, strict=True):
        np.testing.assert_allclose(got, (a - b) / (2 * h), rtol=1e-6, atol=1e-6)


def test_eval_mode_generated_forward_mode_is_plain_numpys():
    decl = LAYERS["batchnorm"]
    d = derive(4, mode="eval")
    mod = generate_modes(d, ("fwd",), 2)
    x, params, t, s, dout = _data((4, 3), 3, decl)
    stats = (np.array([0.1, -0.3, 0.5]), np.array([1.2, 0.7, 2.0]))

    def f(x, gamma, beta):
        return np_layer("batchnorm", decl, x, gamma, beta, stats=stats)

    theta = [x, *params]
    y, ty = mod.jvp(x, *params, *stats, *t)
    np.testing.assert_allclose(ty, _cs_jvp(f, theta, t), rtol=1e-12, atol=1e-12)
    *_, tsy = mod.jvp2(x, *params, *stats, *t, *s)
    # y is bilinear in (x, γ) there: the second derivative is γ's tangent times x's, both ways
    scale = 1 / np.sqrt(stats[1] + EPS)
    expected = (s[1][None, :] * t[0] + t[1][None, :] * s[0]) * scale[None, :]
    np.testing.assert_allclose(tsy, expected, rtol=1e-13, atol=1e-13)


def test_generated_hvp_is_torchs_forward_over_reverse_of_the_elementary_layer(torch):
    """torch.func.jvp of torch.func.vjp over group norm written in elementary operations."""
    d = derive(4, layer="groupnorm", channels=2, eps_placement="outside")
    mod = generate_modes(d, ("fwd",), 2)
    decl = LAYERS["groupnorm"]
    x, params, t, _, dout = _data((2, 4, 2), 4, decl)

    def layer(x, gamma, beta):
        g = x.reshape(2, 2, -1)
        xmu = g - g.mean(-1, keepdim=True)
        D = torch.sqrt((xmu * xmu).mean(-1, keepdim=True)) + EPS
        return (xmu / D).reshape(x.shape) * gamma[None, :, None] + beta[None, :, None]

    T = [torch.tensor(a) for a in (x, *params)]
    Tt = [torch.tensor(a) for a in t]
    Td = torch.tensor(dout)

    def grads(*theta):
        return torch.func.vjp(layer, *theta)[1](Td)

    _, hvp = torch.func.jvp(grads, tuple(T), tuple(Tt))
    for got, want in zip(mod.hvp(x, *params, dout, *t), hvp, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_generated_module_reads_as_documented():
    mod = generate_modes(derive(4, layer="rmsnorm"), ("fwd", "rev"), 2)
    src = mod.source
    for line in (
        "def jvp(x, gamma, tx, tgamma, eps=1e-05):",
        "def jvp2(x, gamma, tx, tgamma, sx, sgamma, eps=1e-05):",
        "def hvp(x, gamma, dout, tx, tgamma, eps=1e-05):",
        "def double_backward(gdx, gdgamma, dout, x, gamma, eps=1e-05):",
    ):
        assert line in src
    assert "import numpy\n" in src and "sympy" not in src.split('"""', 2)[2]
    assert src.count("def _from_groups(") == 1
    assert max(len(line) for line in src.splitlines()) <= 100
    eval_src = generate_modes(derive(4, mode="eval"), ("fwd",), 1).source
    assert (
        "def jvp(x, gamma, beta, running_mean, running_var, tx, tgamma, tbeta, eps=1e-05):"
        in eval_src
    )
    assert (
        "def jvp(x, tx, eps=1e-05):" in generate_modes(derive(4, affine=False), ("fwd",), 1).source
    )


def test_generated_jvp_refuses_bad_arguments():
    mod = generate_modes(derive(4, layer="layernorm"), ("fwd",), 1)
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"tx must have the shape of x \(2, 4\); got \(2, 3\)"):
        mod.jvp(x, np.ones(4), np.zeros(4), np.ones((2, 3)), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="tgamma must have shape"):
        mod.jvp(x, np.ones(4), np.zeros(4), np.ones((2, 4)), np.zeros(3), np.zeros(4))


# --- check --modes -----------------------------------------------------------------------------


#: What PyTorch 2.13's fused kernels get wrong at order 2 (docs/forward_mode.md).
TORCH_WRONG = {"batchnorm": {"ff", "rf"}, "layernorm": {"ff", "rf"}, "instancenorm": {"ff", "rf"}}


@pytest.mark.parametrize(("name", "decl", "kw", "shape", "P"), CASES, ids=IDS)
def test_check_modes_at_order_2_names_what_pytorch_gets_wrong(torch, name, decl, kw, shape, P):
    d = derive(4, layer=decl, **kw)
    report = run_check_modes(d, ("fwd", "rev"), 2)
    wrong = {(r.word, r.impl) for r in report.rows if not r.passed}
    expected = {(w, "torch-native") for w in TORCH_WRONG.get(name, ())}
    assert wrong == expected, report.table()
    table = report.table()
    for w in TORCH_WRONG.get(name, ()):
        phrase = {"ff": "jvp of the jvp", "rf": "vjp of the jvp"}[w]
        assert f"odd one out: torch-native in the {phrase} on" in table
        assert f"is wrong in the {phrase} (relative error" in table
    if name == "layernorm":
        assert "Upstream: pytorch/pytorch#196700." in table
    if name == "scalenorm":
        assert "torch-native: no fused PyTorch kernel for scalenorm" in table


def test_check_modes_names_a_wrong_generated_jvp_as_the_odd_one_out(monkeypatch):
    real = check_modes._generated

    def off(word, gen, args, stats, eps, n):
        out = real(word, gen, args, stats, eps, n)
        return [o * 1.001 for o in out] if word == "f" else out

    monkeypatch.setattr(check_modes, "_generated", off)
    report = run_check_modes(derive(4, layer="rmsnorm"), ("fwd",), 1, torch=False)
    assert not report.passed
    assert "odd one out: generated in the jvp on ty" in report.table()


@pytest.mark.parametrize(("name", "decl", "kw", "shape", "P"), CASES, ids=IDS)
def test_check_modes_at_order_3_along_the_forward_chain(torch, name, decl, kw, shape, P):
    """The third derivative along three directions: the exact walk, complex-step differences
    of the generated jvp2 and torch.func.jvp three times over the elementary layer agree."""
    report = run_check_modes(derive(4, layer=decl, eps_placement="outside", **kw), ("fwd",), 3)
    assert [r.word for r in report.rows if r.impl == "differences"] == ["f", "ff", "fff"]
    assert all(r.passed for r in report.rows if r.impl != "torch-native"), report.table()
    assert any(r.word == "fff" and r.impl == "torch-elementary" for r in report.rows)


# --- notes, JSON, the command line --------------------------------------------------------------


def test_every_format_prints_forward_mode_in_mathematics():
    d = derive(3, layer="layernorm")
    md = derive_modes(d, ("fwd", "rev"), 2)
    for fmt in FORMATS:
        if FORMATS[fmt].binary:
            continue
        out = render(d, fmt, higher=md.higher, modes=md)
        assert "Forward" in out or "forward_mode" in out, fmt
    text = render(d, "text", modes=md)
    dot, hat = "\u0307", "\u0302"  # combining dot and hat: ẏ₁ = β̇₁ + γ̇₁·x̂₁ + x̂̇₁·γ₁
    assert f"y{dot}₁ = β{dot}₁ + γ{dot}₁·x{hat}₁ + x{hat}{dot}₁·γ₁" in text
    assert "dotx" not in text and "deldot" not in text and "bardot" not in text
    latex = render(d, "latex", modes=md)
    assert r"\dot{y}_{1}" in latex and r"\delta \dot{y}_{1}" in latex and "dotx" not in latex
    ascii_text = render(d, "text", modes=md, ascii=True)
    assert ascii_text.isascii()


def test_json_of_forward_mode_reads_back():
    d = derive(2, layer="rmsnorm")
    md = derive_modes(d, ("fwd", "rev"), 3)
    doc = load_json(render(d, "json", higher=md.higher, modes=md))
    f = md.composition("f")
    got = doc["forward_mode"]["closed_form"]
    for a, st in zip(got, f.closed_form, strict=True):
        assert a["lhs"] == st.lhs and sp.expand(a["rhs"] - st.rhs) == 0
    assert doc["forward_mode"]["tangents"] == list(md.dot.all)
    assert set(doc["second_order"]) == {"ff", "fr", "rf"}
    assert doc["second_order"]["fr"]["name"] == "jvp of the vjp"
    assert doc["forward_third_order"]["results"][0] == sp.Symbol("difdeldoty1", real=True)
    assert doc["forward_mode"]["general"]["closed_form"]["rhs"].has(sp.Sum)


def test_json_of_forward_mode_refuses_code():
    d = derive(2)
    obj = json.loads(render(d, "json", modes=derive_modes(d, ("fwd",), 1)))
    obj["forward_mode"]["steps"][0]["rhs"] = "__import__('os').system('true')"
    with pytest.raises(ValueError, match=r"forward_mode.steps\[0\].rhs"):
        load_json(obj)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["derive", "--modes", "lin"],
            "Error: --modes 'lin' is not a mode; give fwd, rev or fwd,rev",
        ),
        (["check", "--modes", "fwd,,"], "is not a mode"),
        (["codegen", "--modes", "fwd", "--order", "3"], "--order '3' is not one of 1, 2"),
        (["derive", "--modes", "fwd", "--order", "2", "--m", "17"], "up to m = 16"),
        (["check", "--modes", "fwd", "--order", "2", "--m", "17"], "up to m = 16"),
    ],
)
def test_bad_modes_on_the_command_line_are_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_derive_and_codegen_with_modes_on_the_command_line(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["derive", "--m", "3", "--modes", "fwd", "--layer", "rmsnorm"])
    assert out.exit_code == 0 and "Forward mode (JVP): the chain rule walked forward" in out.output
    assert "✓ jvp_transpose" in out.output
    rev = runner.invoke(main, ["derive", "--m", "3", "--modes", "rev"]).output
    plain = runner.invoke(main, ["derive", "--m", "3"]).output
    assert rev.replace(" --modes rev", "") == plain  # the default is reverse mode
    target = tmp_path / "ln.py"
    code = runner.invoke(
        main,
        [
            "codegen",
            "--m",
            "4",
            "--layer",
            "layernorm",
            "--modes",
            "fwd,rev",
            "--order",
            "2",
            "-o",
            str(target),
        ],
    )
    assert code.exit_code == 0, code.output
    namespace: dict = {}
    exec(compile(target.read_text(), str(target), "exec"), namespace)
    assert {"jvp", "jvp2", "hvp", "double_backward"} <= set(namespace)


def test_check_modes_exit_status_says_a_comparison_failed(torch):
    result = CliRunner().invoke(
        main, ["check", "--layer", "layernorm", "--modes", "fwd", "--order", "2"]
    )
    assert result.exit_code == 1
    assert (
        "PyTorch's fused kernel torch.nn.functional.layer_norm is wrong in the jvp of the jvp"
        in result.output
    )
    ok = CliRunner().invoke(
        main, ["check", "--layer", "rmsnorm", "--modes", "fwd,rev", "--order", "2"]
    )
    assert ok.exit_code == 0, ok.output


def test_codegen_modes_module_is_whole_array_numpy():
    """No Python loop over groups in jvp: the time for 64 times the groups stays far below 64×."""
    import time

    mod = generate_modes(derive(4, layer="layernorm"), ("fwd",), 1)
    small, large = np.ones((64, 4)) + np.arange(4), np.ones((4096, 4)) + np.arange(4)
    g, b = np.ones(4), np.zeros(4)

    def best(x):
        t = [np.ones_like(x), g, b]
        times = []
        for _ in range(5):
            start = time.perf_counter()
            mod.jvp(x, g, b, *t)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best(large) < 20 * best(small)
    assert codegen_modes.__doc__ and "jvp2" in codegen_modes.__doc__


EVAL_DECLARED = {
    # PowerNorm's uncentred batch norm and a rows layer, both with running statistics
    "powernorm": Layer(
        name="powernorm", centred=False, grouping="columns", modes=("train", "eval")
    ),
    "rmsrun": Layer(
        name="rmsrun", centred=False, params="element", beta=False, modes=("train", "eval")
    ),
}


@pytest.mark.parametrize("placement", ["inside", "outside"])
@pytest.mark.parametrize("name", list(EVAL_DECLARED))
def test_declared_layers_with_running_statistics_in_every_mode(torch, name, placement):
    d = derive(3, layer=EVAL_DECLARED[name], mode="eval", eps_placement=placement)
    md = derive_modes(d, ("fwd", "rev"), 2)
    assert all(md.verified.values()), md.verified
    report = run_check_modes(d, ("fwd", "rev"), 2)
    assert report.passed, report.table()
    assert "torch-elementary" in report.header


def test_every_format_has_a_column_for_forward_mode():
    """A format added to the table (one row) must say how it shows forward mode: its
    ``modes`` column, or a renderer that takes ``modes=`` itself (``higher`` None)."""
    import inspect

    from bnsym.notes.formats import _function

    for row in FORMATS.values():
        if row.higher is None:
            assert "modes" in inspect.signature(_function(row.render)).parameters, row.name
        else:
            assert row.modes is not None, f"the format {row.name} has no modes column"


# --- where the terms cancel: m = 2, ε small or 0 ------------------------------------------------


def _m2_layer_norm_dx(x, dout, gamma, eps):
    """Layer norm's ∂ℓ/∂x over rows of two values, in plain NumPy: at ε = 0 it is exactly 0
    (x̂ = ±1 whatever x), at small ε of order ε, while each term is of order 1."""
    mu = x.mean(-1, keepdims=True)
    std = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xh, g = (x - mu) / std, dout * gamma
    return (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True)) / std


@pytest.mark.parametrize("eps", [0, 1e-8])
@pytest.mark.parametrize("modes", [("fwd",), ("fwd", "rev")])
def test_at_m_2_rounding_where_the_terms_cancel_is_not_a_failure(modes, eps):
    rng = np.random.default_rng(0)
    x, dout, gamma = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=2)
    dx = _m2_layer_norm_dx(x, dout, gamma, eps)
    assert np.max(np.abs(dx)) <= 1e-4  # the result is (nearly) nothing; its terms are O(1)
    d = derive(2, layer="layernorm", eps=eps)
    report = run_check_modes(d, modes, 2 if "rev" in modes else 1, torch=False)
    assert report.passed, report.table()
    report = run_check_modes(
        derive(2, layer="layernorm", eps=eps, affine=False), modes, 1, torch=False
    )
    assert report.passed, report.table()


def test_at_m_2_a_wrong_term_is_still_caught(monkeypatch):
    real = check_modes._generated

    def off(word, gen, args, stats, eps, n):  # the jvp's tangent off by 1e-6 of its size
        out = real(word, gen, args, stats, eps, n)
        return [o + 1e-6 * np.max(np.abs(args[0])) for o in out] if word == "f" else out

    monkeypatch.setattr(check_modes, "_generated", off)
    report = run_check_modes(derive(2, layer="layernorm", eps=0), ("fwd",), 1, torch=False)
    assert not report.passed
    assert "odd one out: generated in the jvp on ty" in report.table()
