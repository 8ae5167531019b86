"""The one prover: any declaration, in each of its modes, proved and checked against plain
NumPy written here (central finite differences), and tampered with to see the proofs fail.

Two layers are declared in this file, outside the package: ``evalrows`` (one γ, β per element
of a row, with running statistics and so an eval mode: a layer norm that keeps running
statistics, which no shipped layer is) and ScaleNorm (Nguyen and Salazar, 2019: one γ shared
by the row, not centred, no β: y = γ·x/√(mean(x²) + ε)). NumPy and SymPy only.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from bnsym import derive
from bnsym.core.build import graph_and_chain_rule
from bnsym.core.graph import Step, Symbols
from bnsym.family.layers import LAYERS, Layer
from bnsym.proofs import general, prover, running
from bnsym.proofs.display import SUM_DY_XHAT, SUM_G_XHAT, VAR_X
from bnsym.proofs.general import derive_general

EVALROWS = Layer(name="evalrows", params="element", modes=("train", "eval"))
SCALENORM = Layer(name="scalenorm", centred=False, beta=False)
PLACEMENTS = ("inside", "outside", "sqrt-outside")


# --- plain NumPy ----------------------------------------------------------------------------


def root(var, eps, placement):
    """x̂'s denominator: √(var + ε), √var + ε or √var + √ε."""
    return {
        "inside": np.sqrt(var + eps),
        "outside": np.sqrt(var) + eps,
        "sqrt-outside": np.sqrt(var) + np.sqrt(eps),
    }[placement]


def evalrows_eval(x, gamma, beta, running_mean, running_var, eps, placement):
    """Eval mode: y_i = γ_i·(x_i − μ_run)/D + β_i, the running statistics constants."""
    return gamma * (x - running_mean) / root(running_var, eps, placement) + beta


def scalenorm(x, gamma, eps, placement):
    """y = γ·x/√(mean(x²) + ε) (or with ε outside the root), one γ for the row."""
    return gamma * x / root(np.mean(x**2), eps, placement)


def central(f, v, dy, h=1e-6):
    """Σ_j dy_j·∂f_j/∂v_i by central differences, for every i."""
    out = np.zeros_like(v)
    for i in range(len(v)):
        e = np.zeros_like(v)
        e[i] = h
        out[i] = dy @ (f(v + e) - f(v - e)) / (2 * h)
    return out


def at(values):
    """A function that evaluates a derivation's expression at ``values`` (symbol -> float)."""
    sub = {k: sp.Float(v, 30) for k, v in values.items()}
    return lambda e: float(sp.sympify(e).xreplace(sub).evalf(30))


# --- a declared layer with running statistics, in eval mode ---------------------------------


@pytest.mark.parametrize("m", [1, 3, 4])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_declared_layer_with_an_eval_mode_is_proved_and_agrees_with_numpy(m, placement):
    d = derive(m, layer=EVALROWS, mode="eval", eps_placement=placement)
    assert d.verified and all(d.verified.values()), d.verified
    assert {"closed_form", "jacobian_structure", "jacobian_symmetric", "inference_fold"} <= set(
        d.verified
    )
    assert "sum_dx_zero" not in d.verified  # the running statistics do not move with x
    s = d.symbols
    rng = np.random.default_rng(m)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    gamma, beta = 1 + 0.3 * rng.normal(size=m), rng.normal(size=m)
    mean, var, eps = 0.4, 1.7, 0.01
    values = {s.eps: eps, s.running_mean: mean, s.running_var: var}
    values.update({**dict(zip(s.x, x, strict=True)), **dict(zip(s.dy, dy, strict=True))})
    values.update(
        {**dict(zip(s.gammas, gamma, strict=True)), **dict(zip(s.betas, beta, strict=True))}
    )
    num = at(values)

    def y_of_x(v):
        return evalrows_eval(v, gamma, beta, mean, var, eps, placement)

    def y_of_gamma(g):
        return evalrows_eval(x, g, beta, mean, var, eps, placement)

    np.testing.assert_allclose([num(e) for e in d.y], y_of_x(x), rtol=1e-12)
    np.testing.assert_allclose([num(e) for e in d.dx], central(y_of_x, x, dy), atol=1e-7)
    # one γ per element: a tuple of m (one value where m = 1, as for any single γ)
    dgamma = d.dgamma if isinstance(d.dgamma, tuple) else (d.dgamma,)
    dbeta = d.dbeta if isinstance(d.dbeta, tuple) else (d.dbeta,)
    np.testing.assert_allclose([num(e) for e in dgamma], central(y_of_gamma, gamma, dy), atol=1e-7)
    np.testing.assert_allclose([num(e) for e in dbeta], dy, rtol=1e-12)


def test_a_declared_layer_with_running_statistics_states_their_forms_in_train_mode():
    d = derive(4, layer=EVALROWS)
    assert all(d.verified.values()), d.verified
    assert "running_var_unbiased" in d.verified  # it keeps running statistics
    assert "undo_population" not in d.verified  # γ, β per element: the paper's is per group
    step = next(st for st in d.identities if st.rule == "running_var_unbiased")
    assert step.lhs.name == "E[sigma2]" and step.rhs == sp.Mul(sp.Rational(3, 4), VAR_X)
    assert "Algorithm" not in " ".join(st.note for st in d.identities)  # batch norm's words


def test_a_layer_without_an_eval_mode_has_no_running_statistics_forms():
    d = derive(4, layer="layernorm")
    assert not {"running_var_unbiased", "undo_population", "inference_fold"} & set(d.verified)


# --- ScaleNorm: one γ, not centred, no β ------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_scalenorm_is_proved_and_agrees_with_numpy(m, placement):
    d = derive(m, layer=SCALENORM, eps_placement=placement)
    assert d.verified and all(d.verified.values()), d.verified
    assert {"scale_invariance", "sum_dx_xhat", "jacobian_symmetric", "chain_rule"} <= set(
        d.verified
    )
    assert not {"sum_dx_zero", "mean_output_beta", "scale_shift_invariance"} & set(d.verified)
    assert d.dbeta is None and d.mean is None
    s = d.symbols
    rng = np.random.default_rng(10 + m)
    x, dy = rng.normal(size=m) + 0.5, rng.normal(size=m)
    gamma, eps = 1.3, 0.02
    num = at(
        {
            s.eps: eps,
            s.gamma: gamma,
            **dict(zip(s.x, x, strict=True)),
            **dict(zip(s.dy, dy, strict=True)),
        }
    )

    def y_of_x(v):
        return scalenorm(v, gamma, eps, placement)

    np.testing.assert_allclose([num(e) for e in d.y], y_of_x(x), rtol=1e-12)
    np.testing.assert_allclose([num(e) for e in d.dx], central(y_of_x, x, dy), atol=1e-7)
    h = 1e-6
    up, down = scalenorm(x, gamma + h, eps, placement), scalenorm(x, gamma - h, eps, placement)
    assert num(d.dgamma) == pytest.approx(dy @ (up - down) / (2 * h), abs=1e-7)


# --- Σ ∂ℓ/∂x_i·x̂_i with ε outside the root, for every layer ---------------------------------


@pytest.mark.parametrize("layer", [*LAYERS, SCALENORM])
@pytest.mark.parametrize("placement", ["outside", "sqrt-outside"])
def test_the_residual_of_sum_dx_xhat_outside_the_root_holds_for_every_layer(layer, placement):
    d = derive(4, layer=layer, eps_placement=placement)
    assert d.verified["sum_dx_xhat"]
    step = next(st for st in d.identities if st.rule == "sum_dx_xhat")
    s, m = d.symbols, 4
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    gk = 1 + 0.3 * rng.normal(size=len(s.gammas))
    gamma, eps = gk[list(s.param_index)], 0.05
    centred = s.layer.centred
    mu = x.mean() if centred else 0.0
    var = np.mean((x - mu) ** 2)
    x_hat = (x - mu) / root(var, eps, placement)

    def y_of_x(v):
        c = v - v.mean() if centred else v
        return gamma * c / root(np.mean(c**2), eps, placement)

    dx = central(y_of_x, x, dy)
    values = {s.var: var, s.sigma: np.sqrt(var), s.eps: eps, **dict(zip(s.gammas, gk, strict=True))}
    values[SUM_DY_XHAT] = dy @ x_hat
    values[SUM_G_XHAT] = (gamma * dy) @ x_hat
    assert dx @ x_hat == pytest.approx(at(values)(step.rhs), abs=1e-8)


# --- tampering: the proofs must fail ---------------------------------------------------------


def _parts(m, layer, mode, variance="biased"):
    s = Symbols.of(m, layer)
    return (s, *graph_and_chain_rule(s, variance, "inside", True, mode))


def _replace(steps, lhs, change):
    return [
        Step(st.lhs, change(st.rhs), st.rule, st.value) if st.lhs == lhs else st for st in steps
    ]


@pytest.mark.parametrize("layer", ["batchnorm", EVALROWS])
def test_eval_mode_proofs_fail_for_a_gradient_off_by_a_tenth_of_a_percent(layer):
    s, forward, backward = _parts(4, layer, "eval")
    backward = _replace(backward, s.dx[1], lambda e: e * sp.Rational(1001, 1000))
    verified = prover.prove(s, forward, backward, "biased", "inside", True, "eval")["verified"]
    assert verified["closed_form"] is False
    assert verified["chain_rule"] is False
    assert verified["jacobian_structure"] is False
    assert verified["explicit_results"] is False


@pytest.mark.parametrize("layer", ["batchnorm", EVALROWS])
def test_eval_mode_proofs_fail_for_a_wrong_inference_graph(layer):
    # y_1 shifted by its β once more: the fold and γ, β undoing the layer must both fail
    s, forward, backward = _parts(4, layer, "eval")
    forward = _replace(forward, s.y[0], lambda e: e + s.betas[0])
    verified = prover.prove(s, forward, backward, "biased", "inside", True, "eval")["verified"]
    assert verified["inference_fold"] is False
    assert verified["undo_normalization"] is False
    honest = prover.prove(s, *_parts(4, layer, "eval")[1:], "biased", "inside", True, "eval")
    assert all(honest["verified"].values())


def test_eval_mode_proofs_fail_for_a_wrong_normalization():
    # x̂_1 off by a tenth of a percent: the fold and the explicit results must fail
    s, forward, backward = _parts(3, "batchnorm", "eval")
    forward = _replace(forward, s.x_hat[0], lambda e: e * sp.Rational(1001, 1000))
    verified = prover.prove(s, forward, backward, "biased", "inside", True, "eval")["verified"]
    assert verified["inference_fold"] is False
    assert verified["explicit_results"] is False


# --- E[σ²] for exactly the variance displayed -------------------------------------------------


def _expected_variance(m, ddof):
    """E[σ²] over every group of m values ±1 (each with probability 1/2: Var[x] = 1), with
    σ² = Σ(x_i − μ)²/(m − ddof), exactly in fractions."""
    total = Fraction(0)
    for xs in itertools.product((-1, 1), repeat=m):
        mean = Fraction(sum(xs), m)
        total += sum((Fraction(v) - mean) ** 2 for v in xs) / (m - ddof)
    return total / 2**m


@pytest.mark.parametrize("m", [2, 3, 4, 5])
@pytest.mark.parametrize("variance", ["biased", "unbiased"])
def test_running_var_claim_is_the_one_for_the_variance_displayed(m, variance):
    d = derive(m, variance=variance)
    assert d.verified["running_var_unbiased"]
    step = next(st for st in d.identities if st.rule == "running_var_unbiased")
    expected = _expected_variance(m, 0 if variance == "biased" else 1)  # Var[x] = 1
    assert step.rhs.xreplace({VAR_X: 1}) == sp.Rational(expected.numerator, expected.denominator)
    if variance == "unbiased":
        assert step.rhs == VAR_X  # E_B[σ²_B] = Var[x]: the unbiased variance's expectation


def test_running_var_claim_fails_when_its_coefficient_is_the_other_variances(monkeypatch):
    # the bug this replaces: the unbiased variant stated E[σ²] = (m − 1)/m·Var[x], proved
    # silently for the variance that divides by m
    s, forward, backward = _parts(4, "batchnorm", "train", "unbiased")
    monkeypatch.setattr(running, "stated_coefficient", lambda m, k: sp.Rational(m - 1, m))
    verified = prover.prove(s, forward, backward, "unbiased", "inside", True, "train")["verified"]
    assert verified["running_var_unbiased"] is False
    monkeypatch.undo()
    verified = prover.prove(s, forward, backward, "unbiased", "inside", True, "train")["verified"]
    assert verified["running_var_unbiased"] is True


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_running_var_claim_is_proved_from_the_graphs_variance(mode, monkeypatch):
    # the variance's node with 1/m where the variant says 1/(m − 1): the claim for the
    # unbiased variance (E = Var[x]) must fail against that graph
    m = 4
    s, forward, backward = _parts(m, "batchnorm", "train", "unbiased")
    biased = _replace(forward, s.var, lambda e: e * sp.Rational(m - 1, m))
    verified = prover.prove(s, biased, backward, "unbiased", "inside", True, "train")["verified"]
    assert verified["running_var_unbiased"] is False
    if mode == "eval":  # eval mode reads the training graph's variance from the core
        from bnsym.core import build

        real = build.forward_graph

        def doubled(s, variance, placement, affine, mode):
            steps = real(s, variance, placement, affine, mode)
            return _replace(steps, s.var, lambda e: 2 * e) if mode == "train" else steps

        monkeypatch.setattr(running, "forward_graph", doubled)
        s, forward, backward = _parts(m, "batchnorm", "eval")
        result = prover.prove(s, forward, backward, "biased", "inside", True, "eval")
        assert result["verified"]["running_var_unbiased"] is False


def test_undo_population_names_the_value_another_batch_gets():
    # γ, β set from the batch (0, 2, 1, 1) applied to (0, 4, 2, 2), in plain NumPy at ε = 0
    first, second = np.array([0.0, 2, 1, 1]), np.array([0.0, 4, 2, 2])
    gamma, beta = np.sqrt(first.var()), first.mean()
    y = gamma * (second - second.mean()) / np.sqrt(second.var()) + beta
    assert y[1] == pytest.approx(2.0) and y[1] != second[1]
    method = derive(4).proof_methods["undo_population"]
    assert "(0, 2, 1, …, 1) give 2, not 4," in method


# --- the general form: Σ ∂ℓ/∂x_i·x̂_i for every layer and placement --------------------------


@pytest.mark.parametrize("layer", [*LAYERS, SCALENORM])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_the_general_form_proves_the_residual_for_every_layer(layer, placement):
    g = derive_general(layer, placement=placement)
    assert g.verified["sum_dx_xhat"] and g.residual is not None


def test_the_general_residual_fails_with_the_wrong_e(monkeypatch):
    monkeypatch.setattr(general, "added", lambda eps, placement: 2 * eps)
    g = general.general_graph("layernorm", placement="outside")
    assert general.prove_general(g)[0]["sum_dx_xhat"] is False


def test_undo_population_is_proved_on_the_layers_inference_graph(monkeypatch):
    # an inference graph whose y_1 is shifted by β once more: γ = √(Var[x] + ε), β = E[x]
    # no longer give x back, and the claim must fail
    real = running.forward_graph

    def shifted(s, variance, placement, affine, mode):
        steps = real(s, variance, placement, affine, mode)
        return _replace(steps, s.y[0], lambda e: e + s.beta) if mode == "eval" else steps

    s, forward, backward = _parts(3, "batchnorm", "train")
    monkeypatch.setattr(running, "forward_graph", shifted)
    verified = prover.prove(s, forward, backward, "biased", "inside", True, "train")["verified"]
    assert verified["undo_population"] is False
    assert verified["closed_form"] is True  # the training graph is untouched
