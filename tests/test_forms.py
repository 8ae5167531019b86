"""The lecture notes' other forms (issue 12, item 6), each against references that did not
come from SymPy: NumPy written here, central finite differences, and PyTorch's autograd and
running statistics."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from bnsym import reference
from bnsym.cli import main
from bnsym.codegen.module import generate
from bnsym.core.options import DerivationError
from bnsym.derivation import derive
from bnsym.family.layers import LAYERS
from conftest import needs_torch

try:  # the torch extra; CI installs it (tests/conftest.py)
    import torch
except ImportError:  # the tests marked needs_torch skip; the others run
    torch = None

PLACEMENTS = ["inside", "outside", "sqrt-outside"]


def numpy_forward(x, gamma, beta, eps, placement, centred=True):
    """The layer written out with NumPy: columns are features, rows the batch."""
    mu = x.mean(axis=0) if centred else 0.0
    var = ((x - mu) ** 2).mean(axis=0)
    std = {
        "inside": np.sqrt(var + eps),
        "outside": np.sqrt(var) + eps,
        "sqrt-outside": np.sqrt(var) + np.sqrt(eps),
    }[placement]
    return gamma * (x - mu) / std + beta


def central_vjp(f, x, dout, h=1e-6):
    dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        dx[idx] = np.sum(dout * (f(x + e) - f(x - e))) / (2 * h)
    return dx


def torch_sqrt_outside(x, gamma, beta, eps, dout):
    xt = torch.tensor(x, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    mu = xt.mean(dim=0)
    sigma = torch.sqrt(((xt - mu) ** 2).mean(dim=0))
    y = g * (xt - mu) / (sigma + eps**0.5) + b
    y.backward(torch.tensor(dout))
    return y.detach().numpy(), xt.grad.numpy(), g.grad.numpy(), b.grad.numpy()


# --- sqrt-outside: σ_B + √ε ----------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("m", [2, 3, 5])
def test_sqrt_outside_generated_code_matches_torch_autograd(m):
    rng = np.random.default_rng(m)
    x, dout = 1.5 + 2 * rng.standard_normal((m, 3)), rng.standard_normal((m, 3))
    gamma, beta, eps = rng.uniform(0.5, 2, 3), rng.standard_normal(3), 1e-3
    mod = generate(m, eps_placement="sqrt-outside")
    y_t, dx_t, dg_t, db_t = torch_sqrt_outside(x, gamma, beta, eps, dout)
    np.testing.assert_allclose(mod.forward(x, gamma, beta, eps=eps), y_t, rtol=1e-12, atol=1e-12)
    dx, dgamma, dbeta = mod.backward(dout, x, gamma, beta, eps=eps)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, dg_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbeta, db_t, rtol=1e-12, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_sqrt_outside_references_match_torch(staged):
    rng = np.random.default_rng(7)
    x, dout = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    fwd = reference.batchnorm_forward_staged if staged else reference.batchnorm_forward
    bwd = reference.batchnorm_backward_staged if staged else reference.batchnorm_backward
    y, cache = fwd(x, gamma, beta, 1e-2, eps_placement="sqrt-outside")
    y_t, dx_t, dg_t, db_t = torch_sqrt_outside(x, gamma, beta, 1e-2, dout)
    np.testing.assert_allclose(y, y_t, rtol=1e-12)
    for ours, theirs in zip(bwd(dout, cache), (dx_t, dg_t, db_t), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("layer", list(LAYERS))
def test_sqrt_outside_family_generated_backward_matches_finite_differences(layer):
    from bnsym.crosscheck.first import run_check

    result = run_check(
        4,
        layer=layer,
        eps_placement="sqrt-outside",
        torch=False,
        channels=2 if layer == "groupnorm" else None,
    )
    assert result.passed, result


def test_sqrt_outside_worked_example_is_numpys_and_differs_from_inside():
    values, eps = np.array([2.0, 0.0, 2.0, 4.0]), 1e-4
    d = derive(4, values="2,0,2,4", eps="1e-4", eps_placement="sqrt-outside")
    ours = np.array([float(v) for v in d.x_hat])
    expected = numpy_forward(values[:, None], 1.0, 0.0, eps, "sqrt-outside")[:, 0]
    np.testing.assert_allclose(ours, expected, rtol=1e-14)
    inside = numpy_forward(values[:, None], 1.0, 0.0, eps, "inside")[:, 0]
    assert abs(ours[3] - inside[3]) > 1e-3  # √(σ² + ε) ≠ σ + √ε: a different layer
    identity = next(st for st in d.identities if st.rule == "sqrt_outside_differs")
    sigma, e = np.sqrt(2.0), eps
    lhs = (sigma + np.sqrt(e)) ** 2
    rhs = float(
        identity.rhs.subs({d.symbols.sigma: sp.sqrt(2), d.symbols.eps: sp.Rational(1, 10**4)})
    )
    assert lhs == pytest.approx(rhs, rel=1e-14)
    assert lhs - (sigma**2 + e) == pytest.approx(2 * sigma * np.sqrt(e), rel=1e-12)
    text = d.to_text() if hasattr(d, "to_text") else ""
    from bnsym.notes.text import to_text

    text = to_text(d)
    assert "different layer" in text and "√(σ² + ε) = σ + √ε is false" in text


# --- eval mode with ε outside the root -----------------------------------------------------


@pytest.mark.parametrize("placement", ["outside", "sqrt-outside"])
def test_eval_mode_outside_generated_code_is_the_constant_scaling(placement):
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    rm, rv, eps = rng.standard_normal(3), rng.uniform(0.5, 2, 3), 1e-2
    mod = generate(4, mode="eval", eps_placement=placement)
    std = np.sqrt(rv) + (eps if placement == "outside" else np.sqrt(eps))
    np.testing.assert_allclose(
        mod.forward(x, gamma, beta, rm, rv, eps=eps), gamma * (x - rm) / std + beta, rtol=1e-13
    )
    dx, dgamma, dbeta = mod.backward(dout, x, gamma, beta, rm, rv, eps=eps)
    np.testing.assert_allclose(dx, gamma * dout / std, rtol=1e-13)

    def f(z):
        return np.sum(dout * (gamma * (z - rm) / std + beta))

    np.testing.assert_allclose(
        dx, central_vjp(lambda z: gamma * (z - rm) / std, x, dout), rtol=1e-7
    )
    np.testing.assert_allclose(dgamma, np.sum(dout * (x - rm) / std, axis=0), rtol=1e-13)


def test_eval_mode_outside_worked_example_and_fold():
    d = derive(
        4,
        mode="eval",
        eps_placement="outside",
        values="8,7,6,9",
        gamma="2",
        beta="1",
        running_mean="7.5",
        running_var="1.25",
        eps="1e-5",
    )
    x = np.array([8.0, 7.0, 6.0, 9.0])
    std = np.sqrt(1.25) + 1e-5
    np.testing.assert_allclose([float(v) for v in d.y], 2 * (x - 7.5) / std + 1, rtol=1e-14)
    fold = next(st for st in d.identities if st.rule == "inference_fold")
    s = d.symbols
    scale = float(
        fold.rhs.args[0]
        .args[0]
        .subs({s.gamma: 2, s.running_var: sp.Rational(5, 4), s.eps: sp.Rational(1, 10**5)})
    )
    assert scale == pytest.approx(2 / std, rel=1e-14)
    assert d.verified["inference_fold"] and d.verified["undo_normalization"]


@needs_torch
def test_eval_mode_inference_fold_matches_torch_eval_batch_norm():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3))
    gamma, beta, rm, rv = (
        rng.uniform(0.5, 2, 3),
        rng.standard_normal(3),
        rng.standard_normal(3),
        rng.uniform(0.5, 2, 3),
    )
    eps = 1e-5
    y_t = torch.nn.functional.batch_norm(
        torch.tensor(x),
        torch.tensor(rm),
        torch.tensor(rv),
        torch.tensor(gamma),
        torch.tensor(beta),
        training=False,
        eps=eps,
    ).numpy()
    scale = gamma / np.sqrt(rv + eps)  # the fold: one multiply-add per feature
    np.testing.assert_allclose(scale * x + (beta - scale * rm), y_t, rtol=1e-12, atol=1e-14)
    assert derive(5, mode="eval").verified["inference_fold"]


@needs_torch
def test_running_variance_factor_m_over_m_minus_1_is_torchs():
    # torch's running_var, with momentum 1, is the batch's unbiased variance: m/(m − 1)·σ²_B.
    m = 4
    x = torch.tensor([[2.0], [0.0], [2.0], [4.0]], dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(1, momentum=1.0, dtype=torch.float64)
    bn(x)
    biased = float(x.var(unbiased=False))
    assert float(bn.running_var) == pytest.approx(m / (m - 1) * biased, rel=1e-14)
    d = derive(m)
    step = next(st for st in d.identities if st.rule == "running_var_unbiased")
    assert step.rhs.args[0] == sp.Rational(m - 1, m) and d.verified["running_var_unbiased"]


# --- a constant batch with ε outside the root: the limit -----------------------------------


@pytest.mark.parametrize("placement", ["outside", "sqrt-outside"])
def test_constant_batch_gradient_is_the_limit_by_finite_differences(placement):
    eps, dy = 0.1, np.array([1.0, -2.0, 0.5, 3.0])
    d = derive(
        4,
        values="3,3,3,3",
        eps="0.1",
        eps_placement=placement,
        dy="1,-2,0.5,3",
        gamma="1.5",
        beta="0.25",
    )
    ours = np.array([float(v) for v in d.dx])
    x = np.full((4, 1), 3.0)
    fd = central_vjp(lambda z: numpy_forward(z, 1.5, 0.25, eps, placement), x, dy[:, None])[:, 0]
    np.testing.assert_allclose(ours, fd, rtol=1e-4)
    e = eps if placement == "outside" else np.sqrt(eps)
    np.testing.assert_allclose(ours, 1.5 / e * (dy - dy.mean()), rtol=1e-14)
    # bnsym's generated code returns the same limit (it takes 0·∞ as 0)
    mod = generate(4, eps_placement=placement)
    dx, _, _ = mod.backward(dy[:, None], x, np.array([1.5]), np.array([0.25]), eps=eps)
    np.testing.assert_allclose(dx[:, 0], ours, rtol=1e-12)
    assert d.verified["constant_batch_limit"]


def test_constant_batch_is_not_differentiable_twice():
    # y(c + t·v) has a term in t·|t|: the one-sided second differences differ in sign.
    v = np.array([[1.0], [-1.0], [0.0], [0.0]])
    c = np.full((4, 1), 3.0)

    def f(t):
        return numpy_forward(c + t * v, 1.0, 0.0, 0.1, "outside")[0, 0]

    t = 1e-3
    right = (f(2 * t) - 2 * f(t) + f(0)) / t**2
    left = (f(-2 * t) - 2 * f(-t) + f(0)) / t**2
    assert right < 0 < left


def test_rms_norm_at_zero_with_eps_outside_is_the_limit():
    d = derive(
        4,
        layer="rmsnorm",
        values="0,0,0,0",
        eps="0.01",
        eps_placement="outside",
        dy="1,2,3,4",
        gamma="1,2,3,4",
    )
    np.testing.assert_allclose([float(v) for v in d.dx], np.array([1, 4, 9, 16]) / 0.01)
    x = np.zeros((1, 4))
    fd = central_vjp(
        lambda z: np.array([1, 2, 3, 4.0]) * z / (np.sqrt((z**2).mean()) + 0.01),
        x,
        np.array([[1, 2, 3, 4.0]]),
    )[0]
    np.testing.assert_allclose([float(v) for v in d.dx], fd, rtol=1e-4)


def test_constant_batch_with_eps_zero_is_still_refused():
    with pytest.raises(DerivationError, match="divides by zero"):
        derive(4, values="3,3,3,3", eps=0, eps_placement="outside")


# --- the identities, against NumPy ----------------------------------------------------------


@pytest.mark.parametrize("variance", ["biased", "unbiased"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_output_spread_identity_holds_in_numpy(placement, variance):
    rng = np.random.default_rng(11)
    m, eps, gamma, beta = 5, 0.3, 1.7, -0.4
    x = rng.standard_normal((m, 1)) * 2 + 1
    ddof = 0 if variance == "biased" else 1
    var_b = x.var(ddof=ddof)
    fwd = reference.batchnorm_forward
    y, _ = fwd(
        x, np.array([gamma]), np.array([beta]), eps, variance=variance, eps_placement=placement
    )
    d = derive(m, variance=variance, eps_placement=placement)
    step = next(st for st in d.identities if st.rule == "output_spread")
    s = d.symbols
    rhs = float(step.rhs.subs({s.gamma: gamma, s.var: var_b, s.sigma: np.sqrt(var_b), s.eps: eps}))
    assert np.mean((y - beta) ** 2) == pytest.approx(rhs, rel=1e-12)
    assert d.verified["output_spread"]


def test_output_spread_is_about_gamma_not_sqrt_gamma():
    # the notes' 2, 0, 2, 4 example with γ = 4: std(y) is 4, not √4 = 2
    y, _ = reference.batchnorm_forward(
        np.array([[2.0], [0], [2], [4]]), np.array([4.0]), np.array([1.0]), 0.0
    )
    assert y.std() == pytest.approx(4.0)
    from bnsym.notes.text import to_text

    text = to_text(derive(4, values="2,0,2,4", eps=0))
    assert "not √γ" in text and "8/3" in text and "by m = 4" in text


def test_undo_holds_for_one_batch_only_and_for_the_population_at_inference():
    eps = 1e-5
    a, b = np.array([[0.0], [2.0]]), np.array([[0.0], [4.0]])
    gamma, beta = np.sqrt(a.var() + eps), a.mean()  # set from batch a
    ya, _ = reference.batchnorm_forward(a, np.array([gamma]), np.array([beta]), eps)
    yb, _ = reference.batchnorm_forward(b, np.array([gamma]), np.array([beta]), eps)
    np.testing.assert_allclose(ya, a, rtol=1e-12)
    assert not np.allclose(yb, b)  # another batch is not undone
    # the paper's version: population statistics in the inference layer undo every input
    E, V = 1.5, 2.5
    z = np.random.default_rng(0).standard_normal((7, 1))
    y, _ = reference.batchnorm_forward_eval(
        z, np.array([np.sqrt(V + eps)]), np.array([E]), np.array([E]), np.array([V]), eps
    )
    np.testing.assert_allclose(y, z, rtol=1e-12, atol=1e-14)
    assert derive(2).verified["undo_population"]


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_family_has_the_forms_proved(layer, placement):
    d = derive(
        4, layer=layer, eps_placement=placement, channels=2 if layer == "groupnorm" else None
    )
    names = {st.rule for st in d.identities}
    assert "output_spread" in names
    assert ("constant_batch_limit" in names) == (placement != "inside")
    assert ("sqrt_outside_differs" in names) == (placement == "sqrt-outside")
    assert all(d.verified.values())


def test_a_wrong_constant_limit_fails_its_proof(monkeypatch):
    from bnsym.derivation import _derive_symbolic
    from bnsym.proofs import forms as _forms

    real = _forms._constant_batch_limit

    def wrong(c, yframe):
        c.e = c.e * 2  # the limit taken with the wrong e
        return real(c, yframe)

    monkeypatch.setattr(_forms, "_constant_batch_limit", wrong)
    _derive_symbolic.cache_clear()
    try:
        d = derive(3, eps_placement="outside")
        assert not d.verified["constant_batch_limit"]
    finally:
        _derive_symbolic.cache_clear()


# --- every format, and bad input ------------------------------------------------------------


def test_forms_in_json_latex_markdown():
    import json

    from bnsym.notes.latex import to_latex, to_markdown
    from bnsym.notes.text import to_json

    d = derive(3, eps_placement="sqrt-outside", values="2,0,4", eps="1e-4")
    obj = json.loads(to_json(d))
    names = {i["name"] for i in obj["identities"]}
    assert {
        "output_spread",
        "sqrt_outside_differs",
        "constant_batch_limit",
        "undo_population",
    } <= names
    assert "sqrt-outside" == obj["options"]["eps_placement"]
    assert "different layer" in to_markdown(d) and "not" in to_markdown(d)
    assert r"\sqrt{\epsilon}" in to_latex(d, True) or r"\sqrt{\varepsilon}" in to_latex(d, True)


def test_cli_bad_placement_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["derive", "--m", "4", "--eps-placement", "sqrt"])
    assert result.exit_code == 2
    assert result.output.count("\n") <= 2 and "sqrt-outside" in result.output
    result = CliRunner().invoke(
        main, ["derive", "--m", "4", "--mode", "eval", "--variance", "unbiased"]
    )
    assert result.exit_code == 2 and "Error:" in result.output


def test_notes_with_the_forms_compile_to_pdf():
    from bnsym.notes.pdf import to_pdf

    for d in (
        derive(4, values="2,0,2,4", eps="1e-4", eps_placement="sqrt-outside"),
        derive(4, values="3,3,3,3", eps="1e-4", eps_placement="outside", dy="1,0,0,0"),
        derive(4, mode="eval", eps_placement="outside", values="8,7,6,9"),
    ):
        assert to_pdf(d).startswith(b"%PDF")
