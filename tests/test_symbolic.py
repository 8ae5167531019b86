"""The derivation against numbers that did not come from SymPy, its proofs, and its inputs.

References: a plain NumPy batch norm written out below (not bnsym.reference, so that this file
stands alone), central finite differences of it, and exact arithmetic done by hand.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp

from bnsym.core.graph import Symbols
from bnsym.core.options import DerivationError, exact_number
from bnsym.derivation import Derivation, derive
from bnsym.proofs import prover as _proofs
from bnsym.proofs.frame import Context

VARIANTS = [
    dict(variance=v, eps_placement=p, affine=a)
    for v, p, a in itertools.product(("biased", "unbiased"), ("inside", "outside"), (True, False))
]


# --- an independent NumPy batch norm (one feature) -------------------------------------------


def np_forward(x, gamma, beta, eps, variance="biased", eps_placement="inside", affine=True):
    m = x.size
    mu = x.mean()
    var = ((x - mu) ** 2).sum() / (m if variance == "biased" else m - 1)
    denom = np.sqrt(var + eps) if eps_placement == "inside" else np.sqrt(var) + eps
    x_hat = (x - mu) / denom
    return gamma * x_hat + beta if affine else x_hat


def np_vjp_fd(x, dy, gamma, beta, eps, h=1e-6, **variant):
    """∂ℓ/∂x for ℓ = Σ dy·y by central differences of np_forward."""
    grad = np.zeros_like(x)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (
            dy
            @ (
                np_forward(xp, gamma, beta, eps, **variant)
                - np_forward(xm, gamma, beta, eps, **variant)
            )
            / (2 * h)
        )
    return grad


def evaluate(d: Derivation, expr, x, dy, gamma, beta, eps, running=None):
    s = d.symbols
    sub = {s.gamma: gamma, s.beta: beta, s.eps: eps}
    sub.update(zip(s.x, x, strict=True))
    sub.update(zip(s.dy, dy, strict=True))
    if running is not None:
        sub.update({s.running_mean: running[0], s.running_var: running[1]})
    return float(sp.sympify(expr).xreplace({k: sp.Float(v, 30) for k, v in sub.items()}).evalf(30))


# --- worked examples (exact) -----------------------------------------------------------------


def test_worked_example_two_zero_two_four_is_exact():
    d = derive(4, eps=0, values="2,0,2,4")
    assert d.mean == 2 and d.var == 2
    assert d.x_hat == (0, -sp.sqrt(2), 0, sp.sqrt(2))
    g, b = d.symbols.gamma, d.symbols.beta
    assert d.y == (b, b - sp.sqrt(2) * g, b, b + sp.sqrt(2) * g)


def test_scaled_example_gives_the_same_x_hat():
    assert (
        derive(4, eps=0, values="200,0,200,400").x_hat == derive(4, eps=0, values="2,0,2,4").x_hat
    )


def test_decimals_are_read_exactly():
    d = derive(4, values="8.9,6.2,8.3,9.2", eps=0)
    assert d.options.values == (
        (sp.Rational(89, 10), sp.Rational(62, 10), sp.Rational(83, 10), sp.Rational(92, 10)),
    )
    assert d.mean == sp.Rational(163, 20)  # (8.9 + 6.2 + 8.3 + 9.2)/4 = 32.6/4
    assert exact_number(1e-5, "eps") == sp.Rational(1, 100000)
    assert exact_number(np.float64(8.9), "values") == sp.Rational(89, 10)
    assert derive(2, values=np.array([[1.5, 2.5]]), eps=0).x_hat == (-1, 1)


def test_several_features_use_their_own_statistics():
    d = derive(2, eps=0, values="1,2;10,11")
    assert [f["mean"] for f in d.features] == [sp.Rational(3, 2), sp.Rational(21, 2)]
    assert [f["x_hat"] for f in d.features] == [(-1, 1), (-1, 1)]


def test_dy_gives_numeric_gradients():
    # x̂ = (0, −√2, 0, √2), σ = √2: ∂ℓ/∂x₁ = γ/(4√2)·(4·1 − 1 − 0) = 3√2γ/8 (worked by hand)
    d = derive(4, eps=0, values="2,0,2,4", dy="1,0,0,0")
    g = d.symbols.gamma
    assert sp.simplify(d.dx[0] - 3 * sp.sqrt(2) * g / 8) == 0
    assert sp.simplify(d.dx[1] + sp.sqrt(2) * g / 8) == 0
    assert d.dgamma == 0 and d.dbeta == 1


def test_m2_closed_form_is_eps_times_difference():
    # m = 2: x̂ = ±(x1−x2)/2/s, so ∂ℓ/∂x₁ = γ·ε·(dy1 − dy2)/(2 s³), s² = (x1−x2)²/4 + ε
    d = derive(2)
    s = d.symbols
    x1, x2, dy1, dy2, g, e = s.x[0], s.x[1], s.dy[0], s.dy[1], s.gamma, s.eps
    expected = g * e * (dy1 - dy2) / (2 * ((x1 - x2) ** 2 / 4 + e) ** sp.Rational(3, 2))
    assert sp.simplify(d.dx[0] - expected) == 0


# --- against NumPy and finite differences ----------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_explicit_results_match_numpy_and_finite_differences(m, variant):
    rng = np.random.default_rng(m)
    x = rng.normal(2.0, 3.0, m)
    dy = rng.normal(size=m)
    gamma, beta, eps = 1.7, -0.3, 1e-3
    d = derive(m, **variant)
    y_np = np_forward(x, gamma, beta, eps, **variant)
    y_sym = [evaluate(d, e, x, dy, gamma, beta, eps) for e in d.y]
    np.testing.assert_allclose(y_sym, y_np, rtol=1e-12, atol=1e-12)
    dx_sym = np.array([evaluate(d, e, x, dy, gamma, beta, eps) for e in d.dx])
    dx_fd = np_vjp_fd(x, dy, gamma, beta, eps, **variant)
    np.testing.assert_allclose(dx_sym, dx_fd, rtol=1e-6, atol=1e-7 * np.abs(dx_fd).max())
    if variant["affine"]:
        x_hat = (y_np - beta) / gamma
        assert evaluate(d, d.dgamma, x, dy, gamma, beta, eps) == pytest.approx(
            dy @ x_hat, rel=1e-12
        )
        assert evaluate(d, d.dbeta, x, dy, gamma, beta, eps) == pytest.approx(dy.sum(), rel=1e-12)
    else:
        assert d.dgamma is None and d.dbeta is None


def test_eval_mode_is_a_per_feature_scaling():
    d = derive(3, mode="eval")
    x, dy = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0])
    rm, rv, gamma, beta, eps = 0.2, 1.5, 2.0, 0.1, 1e-5
    y = [evaluate(d, e, x, dy, gamma, beta, eps, (rm, rv)) for e in d.y]
    np.testing.assert_allclose(y, gamma * (x - rm) / np.sqrt(rv + eps) + beta, rtol=1e-13)
    dx = [evaluate(d, e, x, dy, gamma, beta, eps, (rm, rv)) for e in d.dx]
    np.testing.assert_allclose(dx, gamma * dy / np.sqrt(rv + eps), rtol=1e-13)
    assert derive(1, mode="eval").verified["closed_form"]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_residual_of_sum_dx_xhat_matches_numpy(variant):
    # Σ ∂ℓ/∂x_i·x̂_i = γ·ε·Σ dy_j x̂_j / D³ (inside) or / D² (outside), computed in NumPy
    m, gamma, eps = 5, 1.3, 0.05
    rng = np.random.default_rng(7)
    x, dy = rng.normal(size=m), rng.normal(size=m)
    d = derive(m, **variant)
    dx = np.array([evaluate(d, e, x, dy, gamma, 0.0, eps) for e in d.dx])
    x_hat = np_forward(x, 1.0, 0.0, eps, **variant)
    k = 1 / m if variant["variance"] == "biased" else 1 / (m - 1)
    var = k * ((x - x.mean()) ** 2).sum()
    D = math.sqrt(var + eps) if variant["eps_placement"] == "inside" else math.sqrt(var) + eps
    power = 3 if variant["eps_placement"] == "inside" else 2
    g = gamma if variant["affine"] else 1.0
    assert dx @ x_hat == pytest.approx(g * eps * (dy @ x_hat) / D**power, rel=1e-10)
    assert abs(dx.sum()) < 1e-12


# --- the proofs ------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_every_proof_holds(m, variant):
    d = derive(m, **variant)
    assert d.verified and all(d.verified.values()), d.verified
    assert "closed_form" in d.verified and "sum_dx_zero" in d.verified
    assert ("undo_normalization" in d.verified) == variant["affine"]
    if m <= 8:
        assert d.verified["chain_rule"]


@pytest.mark.parametrize("m", [16, 32])
def test_proofs_hold_for_larger_m(m):
    d = derive(m)
    assert all(d.verified.values())
    assert (d.jacobian is None) == (m > 16)  # entry by entry up to m = 16 only


def test_eval_mode_lists_only_what_holds_there():
    d = derive(4, mode="eval")
    assert all(d.verified.values())
    assert "sum_dx_zero" not in d.verified  # Σ∂ℓ/∂x_i = 0 needs batch statistics


def _derivation_parts(m, variance="biased", placement="inside", affine=True, mode="train"):
    from bnsym.core.build import graph_and_chain_rule

    s = Symbols.of(m)
    return (s, *graph_and_chain_rule(s, variance, placement, affine, mode))


def _replace_step(steps, lhs, rhs):
    return [
        type(st)(st.lhs, rhs(st.rhs), st.rule, st.value) if st.lhs == lhs else st for st in steps
    ]


def _tampered(m, factor=None, sign=False):
    """The proofs of a derivation whose ∂ℓ/∂x_1 step is off by ``factor`` or flipped."""
    s, forward, backward = _derivation_parts(m)
    change = (lambda e: -e) if sign else (lambda e: e * factor)
    backward = _replace_step(backward, s.dx[0], change)
    return _proofs.prove(s, forward, backward, "biased", "inside", True, "train")


def test_the_prover_rejects_a_gradient_off_by_a_tenth_of_a_percent():
    result = _tampered(4, factor=sp.Rational(1001, 1000))
    assert result["verified"]["closed_form"] is False
    assert result["verified"]["sum_dx_zero"] is False
    assert result["verified"]["jacobian_symmetric"] is False


def test_the_prover_rejects_a_flipped_sign():
    result = _tampered(3, sign=True)
    assert result["verified"]["closed_form"] is False
    assert result["verified"]["chain_rule"] is False


def test_frame_is_exact_about_the_variance_relation():
    s, forward, backward = _derivation_parts(3)
    frame = Context(s, forward, backward, "biased", "inside", True, "train").frame
    assert frame.is_zero(sp.Add(*[xi - s.mu for xi in s.x]))  # Σ(x_i − μ) = 0
    assert not frame.is_zero(sp.Add(*[(xi - s.mu) ** 2 for xi in s.x]))
    # √(σ² + ε) is S in the frame: (σ² + ε)·(σ² + ε)^(−1/2) − √(σ² + ε) = 0
    assert frame.is_zero((s.var + s.eps) / sp.sqrt(s.var + s.eps) - sp.sqrt(s.var + s.eps))


def test_jacobian_matrix_has_the_stated_structure_numerically():
    m = 4
    d = derive(m)
    rng = np.random.default_rng(3)
    x = rng.normal(size=m)
    gamma, eps = 0.7, 1e-3
    x_hat = np_forward(x, 1.0, 0.0, eps)
    D = math.sqrt(((x - x.mean()) ** 2).mean() + eps)
    s = d.symbols
    sub = {s.gamma: gamma, s.eps: eps, **dict(zip(s.x_hat, x_hat, strict=True)), s.var: D**2 - eps}
    J = np.array(d.jacobian.xreplace(sub).evalf(), dtype=float)
    J_fd = np.array([np_vjp_fd(x, np.eye(m)[j], gamma, 0.0, eps) for j in range(m)])
    np.testing.assert_allclose(J, J_fd, atol=1e-7)
    np.testing.assert_allclose(J, J.T, atol=1e-15)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(m=0), "at least 1"),
        (dict(m=-3), "at least 1"),
        (dict(m=2.5), "whole number"),
        (dict(m="four"), "whole number"),
        # from Python, the arguments' names; the command line says --mode eval
        (dict(m=1), "mode='eval'"),
        (dict(m=4, eps=-1e-5), "≥ 0"),
        (dict(m=4, eps="tiny"), "not a number"),
        (dict(m=4, values="1,2,3"), "3 value(s) but m = 4"),
        (dict(m=4, values="1,2,x,4"), "'x' is not a number"),
        (dict(m=4, values="1,1,1,1", eps=0), "divides by zero"),
        (dict(m=2, values="1,2;3,4", dy="1,0"), "one row of upstream"),
        (dict(m=4, mode="eval", variance="unbiased"), "eval mode"),
        (dict(m=4, variance="sample"), "biased"),
        (dict(m=4, eps_placement="under"), "inside"),
        (dict(m=4, mode="test"), "train"),
        (dict(m="4.0"), "whole number"),
        (dict(m="1_0"), "whole number"),
        (dict(m="1e3"), "whole number"),
        (dict(m=4, values="1,,2,3,4"), "empty field"),
        (dict(m=4, values="1,2,3,4,"), "empty field"),
        (dict(m=4, values="1e99999,2,3,4"), "exponent beyond"),
        (dict(m=4, eps="1e-99999"), "exponent beyond"),
        (dict(m=4, eps="nan"), "not a number"),
        (dict(m=4, values="1" * 300 + ",2,3,4"), "not a number"),
        (dict(m=4, dy="1,0,0,0"), "give values too"),
    ],
)
def test_bad_input_is_one_sentence_naming_the_value(kwargs, words):
    m = kwargs.pop("m")
    with pytest.raises(DerivationError) as info:
        derive(m, **kwargs)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_m_1_in_eval_mode_and_m_above_the_limit_with_force_are_allowed(monkeypatch):
    from bnsym import limits

    assert derive(1, mode="eval").m == 1
    # a budget below what m = 4 costs, so that "above the limit" is cheap to test
    monkeypatch.setattr(limits, "LIMIT", limits.Budget(seconds=0.1, bytes=1e9))
    with pytest.raises(limits.LimitError, match="above the limit without force=True"):
        derive(4)
    assert derive(4, force=True).m == 4


def test_derivation_is_immutable():
    d = derive(2)
    with pytest.raises(AttributeError):
        d.options = None  # type: ignore[misc]


def test_the_prover_checks_the_forward_graph_it_was_given():
    # y_i = γ·x̂_i + 2β: the identities are about the graph, so the mean of y is not β.
    s, forward, backward = _derivation_parts(4)
    forward = _replace_step(forward, s.y[0], lambda e: e + s.beta)
    verified = _proofs.prove(s, forward, backward, "biased", "inside", True, "train")["verified"]
    assert verified["mean_output_beta"] is False
    assert verified["undo_normalization"] is False


def test_the_prover_checks_the_normalization_it_was_given():
    # x̂_1 divided by the square of the root: invariance under x → a·x + c is lost.
    s, forward, backward = _derivation_parts(3)
    forward = _replace_step(forward, s.x_hat[0], lambda e: e / sp.sqrt(s.var + s.eps))
    verified = _proofs.prove(s, forward, backward, "biased", "inside", True, "train")["verified"]
    assert verified["scale_shift_invariance"] is False
    assert verified["undo_normalization"] is False


@pytest.mark.parametrize("key", ["dx", "dgamma", "dbeta", "mean", "x_hat"])
def test_the_prover_checks_the_explicit_results(key, monkeypatch):
    # The explicit results are written out separately (O(m) forms for JSON and codegen);
    # doubling one of them must make "explicit_results" fail.
    real = _proofs.explicit_results

    def doubled(c):
        ex = dict(real(c))
        ex[key] = tuple(2 * e for e in ex[key]) if isinstance(ex[key], tuple) else 2 * ex[key]
        return ex

    monkeypatch.setattr(_proofs, "explicit_results", doubled)
    s, forward, backward = _derivation_parts(5)
    verified = _proofs.prove(s, forward, backward, "biased", "inside", True, "train")["verified"]
    assert verified["explicit_results"] is False
    assert verified["closed_form"] is True


def test_the_residual_identity_is_proved_not_assumed(monkeypatch):
    # A closed form off by a factor in its x̂x̂ᵀ term breaks the Σ x̂_i·∂ℓ/∂x_i identity too.
    s, forward, backward = _derivation_parts(4)
    backward = _replace_step(backward, s.dx[1], lambda e: e * sp.Rational(3, 2))
    verified = _proofs.prove(s, forward, backward, "biased", "inside", True, "train")["verified"]
    assert verified["sum_dx_xhat"] is False


def test_worked_examples_stay_exact_with_a_tiny_eps():
    d = derive(4, eps="1e-12", values="2,0,2,4")
    x_hat = d.x_hat[1]
    assert x_hat != -sp.sqrt(2)  # the true value is −2/√(2 + 10⁻¹²), not its float's guess
    assert sp.simplify(x_hat + 2 / sp.sqrt(2 + sp.Rational(1, 10**12))) == 0


def test_the_cached_jacobian_cannot_be_changed():
    d = derive(3)
    with pytest.raises(TypeError):
        d.jacobian[0, 0] = 42
    with pytest.raises(TypeError):
        d.verified["closed_form"] = False  # type: ignore[index]
