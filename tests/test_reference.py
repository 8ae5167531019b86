"""Tests of the hand-written batch norm in ``bnsym.reference`` (its batchnorm and running modules).

The references here are independent of the code under test: central finite differences
written out below, the documented running-statistics formulas written out below, and
PyTorch (``F.batch_norm``, autograd, ``nn.BatchNorm1d``) where it is importable.

About "relative" error for ``dx``: dx is a difference of terms of size ``|gamma * dout| / D``
(``D`` the denominator of x_hat) that nearly cancel when m is small -- for m = 2 the normalized
pair is about (-1, 1) whatever x is, so dx is O(eps) and its own size is no scale for rounding
error.  ``dx`` is therefore compared relative to the size of those terms (see ``dx_scale``); all
other arrays relative to their own largest entry.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnsym.reference import (
    BatchNorm,
    BatchNormError,
    BatchSizeError,
    batchnorm_backward,
    batchnorm_backward_eval,
    batchnorm_backward_eval_staged,
    batchnorm_backward_staged,
    batchnorm_forward,
    batchnorm_forward_eval,
    batchnorm_forward_eval_staged,
    batchnorm_forward_staged,
)

# float64 rounding over a handful of operations; what the issue asks of all three implementations
TOL = 1e-12

VARIANTS = [
    {"variance": v, "eps_placement": p, "affine": a}
    for v, p, a in itertools.product(("biased", "unbiased"), ("inside", "outside"), (True, False))
]
VARIANT_IDS = [
    f"{v['variance']}-{v['eps_placement']}-{'affine' if v['affine'] else 'no_affine'}"
    for v in VARIANTS
]


def make(m, D, seed, *, scale=3.0, offset=1.0):
    """Seeded (x, gamma, beta, dout); gamma has both signs and stays away from 0."""
    rng = np.random.default_rng(seed)
    x = offset + scale * rng.standard_normal((m, D))
    gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
    beta = rng.standard_normal(D)
    dout = rng.standard_normal((m, D))
    return x, gamma, beta, dout


def params(gamma, beta, affine):
    return (gamma, beta) if affine else (None, None)


def denominator(x, eps, variance="biased", eps_placement="inside"):
    """The denominator of x_hat, written out independently of the code under test."""
    var = x.var(axis=0, ddof=0 if variance == "biased" else 1)
    return np.sqrt(var + eps) if eps_placement == "inside" else np.sqrt(var) + eps


def dx_scale(x, gamma, dout, eps, variance="biased", eps_placement="inside"):
    """Size of the terms dx is the difference of: max |gamma * dout| / D."""
    g = dout if gamma is None else gamma * dout
    return float(np.max(np.abs(g) / denominator(x, eps, variance, eps_placement)))


def rel_err(a, b, scale=0.0):
    """max |a - b| over the larger of max |b| and ``scale``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), scale, 1e-300))


def numerical_grad(f, a, dout, h):
    """Central differences of L(a) = sum(f(a) * dout) with respect to every entry of ``a``."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (np.sum(f(up) * dout) - np.sum(f(down) * dout)) / (2 * h)
    return grad


# ----------------------------------------------------------------------------------------------
# the worked example and the textbook formula


def test_worked_example_x_hat():
    x = np.array([[2.0], [0.0], [2.0], [4.0]])  # mean 2, biased variance 2
    expected = np.array([0.0, -np.sqrt(2.0), 0.0, np.sqrt(2.0)])
    for forward in (batchnorm_forward, batchnorm_forward_staged):
        out, _ = forward(x, None, None, eps=0.0, affine=False)
        np.testing.assert_allclose(out.ravel(), expected, rtol=0, atol=1e-15)


def test_default_variant_is_the_textbook_formula():
    # dx = gamma/(m*D) * (m*dout - sum(dout) - x_hat*sum(dout*x_hat)), CS231n's closed form
    m, D, eps = 5, 4, 1e-5
    x, gamma, beta, dout = make(m, D, seed=1)
    x_hat = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    dx = (
        gamma
        / (m * np.sqrt(x.var(0) + eps))
        * (m * dout - dout.sum(0) - x_hat * np.sum(dout * x_hat, 0))
    )
    out, cache = batchnorm_forward(x, gamma, beta)
    got_dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    assert rel_err(out, gamma * x_hat + beta) < TOL
    assert rel_err(got_dx, dx, dx_scale(x, gamma, dout, eps)) < TOL
    assert rel_err(dgamma, np.sum(dout * x_hat, 0)) < TOL
    assert rel_err(dbeta, dout.sum(0)) < TOL


# ----------------------------------------------------------------------------------------------
# fused == staged


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_fused_equals_staged(variant):
    eps = 1e-5
    for m, D in itertools.product(range(2, 9), (1, 3, 16)):
        x, gamma, beta, dout = make(m, D, seed=100 * m + D)
        g, b = params(gamma, beta, variant["affine"])
        out_f, cache_f = batchnorm_forward(x, g, b, eps, **variant)
        out_s, cache_s = batchnorm_forward_staged(x, g, b, eps, **variant)
        dx_f, dgamma_f, dbeta_f = batchnorm_backward(dout, cache_f)
        dx_s, dgamma_s, dbeta_s = batchnorm_backward_staged(dout, cache_s)
        scale = dx_scale(x, g, dout, eps, variant["variance"], variant["eps_placement"])
        where = f"m={m}, D={D}"
        assert rel_err(out_f, out_s) < TOL, where
        assert rel_err(dx_f, dx_s, scale) < TOL, where
        if variant["affine"]:
            assert rel_err(dgamma_f, dgamma_s) < TOL, where
            assert rel_err(dbeta_f, dbeta_s) < TOL, where
        else:
            assert dgamma_f is dbeta_f is dgamma_s is dbeta_s is None


@pytest.mark.parametrize("eps_placement", ["inside", "outside"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_eval_fused_equals_staged(eps_placement, affine):
    for m, D in itertools.product(range(1, 9), (1, 3, 16)):
        x, gamma, beta, dout = make(m, D, seed=m + 7 * D)
        g, b = params(gamma, beta, affine)
        running_mean, running_var = np.linspace(-1, 1, D), np.linspace(0.5, 2, D)
        args = (x, g, b, running_mean, running_var, 1e-5)
        out_f, cache_f = batchnorm_forward_eval(*args, eps_placement=eps_placement, affine=affine)
        out_s, cache_s = batchnorm_forward_eval_staged(
            *args, eps_placement=eps_placement, affine=affine
        )
        grads_f = batchnorm_backward_eval(dout, cache_f)
        grads_s = batchnorm_backward_eval_staged(dout, cache_s)
        assert rel_err(out_f, out_s) < TOL
        for a, b_ in zip(grads_f, grads_s, strict=True):
            assert (a is None and b_ is None) or rel_err(a, b_) < TOL


# ----------------------------------------------------------------------------------------------
# against central finite differences


# h = 1e-5 on entries of size ~3: truncation error ~h**2 and rounding ~1e-16/h, both near 1e-10
# relative, so 1e-7 leaves room without hiding a wrong term (those are O(1) off).
FD_H, FD_TOL = 1e-5, 1e-7


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
@pytest.mark.parametrize("m, D", [(2, 3), (3, 2), (5, 3), (8, 2)], ids=lambda v: str(v))
def test_against_finite_differences(variant, staged, m, D):
    forward, backward = (
        (batchnorm_forward_staged, batchnorm_backward_staged)
        if staged
        else (batchnorm_forward, batchnorm_backward)
    )
    eps = 1e-3  # large enough that the outside/inside difference shows in the numbers
    x, gamma, beta, dout = make(m, D, seed=m)
    g, b = params(gamma, beta, variant["affine"])
    dx, dgamma, dbeta = backward(dout, forward(x, g, b, eps, **variant)[1])
    num_dx = numerical_grad(lambda z: forward(z, g, b, eps, **variant)[0], x, dout, FD_H)
    scale = dx_scale(x, g, dout, eps, variant["variance"], variant["eps_placement"])
    assert rel_err(dx, num_dx, scale) < FD_TOL
    if variant["affine"]:
        num_dgamma = numerical_grad(lambda z: forward(x, z, b, eps, **variant)[0], g, dout, FD_H)
        num_dbeta = numerical_grad(lambda z: forward(x, g, z, eps, **variant)[0], b, dout, FD_H)
        assert rel_err(dgamma, num_dgamma) < FD_TOL
        assert rel_err(dbeta, num_dbeta) < FD_TOL


@pytest.mark.parametrize("eps_placement", ["inside", "outside"])
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_eval_against_finite_differences(eps_placement, staged):
    forward, backward = (
        (batchnorm_forward_eval_staged, batchnorm_backward_eval_staged)
        if staged
        else (batchnorm_forward_eval, batchnorm_backward_eval)
    )
    x, gamma, beta, dout = make(3, 4, seed=3)
    stats = (np.array([0.5, -1.0, 0.0, 2.0]), np.array([0.25, 1.0, 4.0, 0.0]))
    kw = {"eps_placement": eps_placement}
    dx, dgamma, dbeta = backward(dout, forward(x, gamma, beta, *stats, 1e-3, **kw)[1])
    # dx = gamma * dout / D: the running statistics are constants
    expected = (
        gamma
        * dout
        / (np.sqrt(stats[1] + 1e-3) if eps_placement == "inside" else np.sqrt(stats[1]) + 1e-3)
    )
    assert rel_err(dx, expected) < TOL
    f = lambda z: forward(z, gamma, beta, *stats, 1e-3, **kw)[0]  # noqa: E731
    assert rel_err(dx, numerical_grad(f, x, dout, FD_H)) < FD_TOL
    f = lambda z: forward(x, z, beta, *stats, 1e-3, **kw)[0]  # noqa: E731
    assert rel_err(dgamma, numerical_grad(f, gamma, dout, FD_H)) < FD_TOL
    assert rel_err(dbeta, dout.sum(0)) < TOL


@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_outside_constant_column_takes_the_limit(staged):
    # sqrt(var) is not differentiable at var = 0, but x_hat = (x - mu)/(sqrt(var) + eps) is:
    # dx = gamma * (dout - mean(dout)) / eps there.  A 0 * inf must not turn it into nan.
    forward, backward = (
        (batchnorm_forward_staged, batchnorm_backward_staged)
        if staged
        else (batchnorm_forward, batchnorm_backward)
    )
    x = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
    gamma, beta, eps = np.array([2.0, 1.0]), np.zeros(2), 1e-2
    dout = make(3, 2, seed=5)[3]
    dx, _, _ = backward(dout, forward(x, gamma, beta, eps, eps_placement="outside")[1])
    assert np.all(np.isfinite(dx))
    expected = gamma[0] * (dout[:, 0] - dout[:, 0].mean()) / eps
    assert rel_err(dx[:, 0], expected) < TOL
    f = lambda z: forward(z, gamma, beta, eps, eps_placement="outside")[0]  # noqa: E731
    # one-sided kink of size O(h) in the column's standard deviation: a looser tolerance
    assert rel_err(dx, numerical_grad(f, x, dout, 1e-8)) < 1e-6


# ----------------------------------------------------------------------------------------------
# against PyTorch


def torch_batchnorm(torch, x, gamma, beta, eps, variance, eps_placement, affine):
    """The variant in torch operations; the default one through F.batch_norm itself."""
    if variance == "biased" and eps_placement == "inside":
        return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    var = x.var(0, correction=0 if variance == "biased" else 1)
    std = torch.sqrt(var + eps) if eps_placement == "inside" else torch.sqrt(var) + eps
    x_hat = (x - x.mean(0)) / std
    return gamma * x_hat + beta if affine else x_hat


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_against_torch_autograd(variant):
    torch = pytest.importorskip("torch")
    eps = 1e-5
    for m, D in itertools.product(range(2, 9), (1, 5)):
        x, gamma, beta, dout = make(m, D, seed=m * D)
        g, b = params(gamma, beta, variant["affine"])
        tx = torch.tensor(x, requires_grad=True)
        tg = torch.tensor(gamma, requires_grad=True) if variant["affine"] else None
        tb = torch.tensor(beta, requires_grad=True) if variant["affine"] else None
        t_out = torch_batchnorm(torch, tx, tg, tb, eps, **variant)
        t_out.backward(torch.tensor(dout))
        scale = dx_scale(x, g, dout, eps, variant["variance"], variant["eps_placement"])
        for forward, backward in (
            (batchnorm_forward, batchnorm_backward),
            (batchnorm_forward_staged, batchnorm_backward_staged),
        ):
            out, cache = forward(x, g, b, eps, **variant)
            dx, dgamma, dbeta = backward(dout, cache)
            where = f"{forward.__name__}, m={m}, D={D}"
            assert rel_err(out, t_out.detach().numpy()) < TOL, where
            assert rel_err(dx, tx.grad.numpy(), scale) < TOL, where
            if variant["affine"]:
                assert rel_err(dgamma, tg.grad.numpy()) < TOL, where
                assert rel_err(dbeta, tb.grad.numpy()) < TOL, where


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_eval_against_torch(affine):
    torch = pytest.importorskip("torch")
    x, gamma, beta, dout = make(4, 3, seed=11)
    g, b = params(gamma, beta, affine)
    running_mean, running_var = np.array([0.5, -1.0, 0.0]), np.array([0.25, 1.0, 4.0])
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True) if affine else None
    tb = torch.tensor(beta, requires_grad=True) if affine else None
    t_out = torch.nn.functional.batch_norm(
        tx, torch.tensor(running_mean), torch.tensor(running_var), tg, tb, training=False, eps=1e-5
    )
    t_out.backward(torch.tensor(dout))
    for forward, backward in (
        (batchnorm_forward_eval, batchnorm_backward_eval),
        (batchnorm_forward_eval_staged, batchnorm_backward_eval_staged),
    ):
        out, cache = forward(x, g, b, running_mean, running_var, 1e-5, affine=affine)
        dx, dgamma, dbeta = backward(dout, cache)
        assert rel_err(out, t_out.detach().numpy()) < TOL
        assert rel_err(dx, tx.grad.numpy()) < TOL
        if affine:
            assert rel_err(dgamma, tg.grad.numpy()) < TOL
            assert rel_err(dbeta, tb.grad.numpy()) < TOL


# ----------------------------------------------------------------------------------------------
# running statistics

BATCH_SIZES = (4, 2, 7, 3, 5, 2)  # several steps, uneven sizes: the unbiased factor m/(m-1) varies


def batches(D=3):
    return [
        make(m, D, seed=40 + i, scale=2.0 + i, offset=i - 2.0)[0] for i, m in enumerate(BATCH_SIZES)
    ]


def expected_running(xs, convention, momentum):
    """The documented update rules, written out: PyTorch's and Keras's."""
    running_mean, running_var = np.zeros(xs[0].shape[1]), np.ones(xs[0].shape[1])
    for n, x in enumerate(xs, start=1):
        m = x.shape[0]
        mu, var = x.mean(0), x.var(0)
        if convention == "torch":
            w = 1.0 / n if momentum is None else momentum
            running_mean = (1 - w) * running_mean + w * mu
            running_var = (1 - w) * running_var + w * var * m / (m - 1)
        else:
            running_mean = momentum * running_mean + (1 - momentum) * mu
            running_var = momentum * running_var + (1 - momentum) * var
    return running_mean, running_var


@pytest.mark.parametrize(
    "convention, momentum, layer_momentum",
    [
        ("torch", 0.1, "default"),
        ("torch", 0.3, 0.3),
        ("torch", None, None),
        ("keras", 0.99, "default"),
        ("keras", 0.5, 0.5),
    ],
)
def test_running_stats_follow_the_documented_formulas(convention, momentum, layer_momentum):
    xs = batches()
    bn = BatchNorm(3, momentum=layer_momentum, convention=convention)
    for x in xs:
        bn.forward(x)
    running_mean, running_var = expected_running(xs, convention, momentum)
    assert rel_err(bn.running_mean, running_mean) < TOL
    assert rel_err(bn.running_var, running_var) < TOL
    assert bn.num_batches_tracked == len(xs)
    assert bn.eps == (1e-5 if convention == "torch" else 1e-3)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum=0.1", "momentum=None"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_running_stats_match_torch_batchnorm1d(momentum, affine):
    torch = pytest.importorskip("torch")
    D = 3
    bn = BatchNorm(D, momentum=momentum, affine=affine)
    t_bn = torch.nn.BatchNorm1d(D, momentum=momentum, affine=affine, dtype=torch.float64)
    probe = make(2, D, seed=99)[0]
    for step, x in enumerate(batches(D)):
        if affine:  # parameters that are not ones and zeros, kept equal on both sides
            bn.gamma, bn.beta = 1.0 + 0.1 * step + np.arange(D), 0.5 * step - np.arange(D)
            with torch.no_grad():
                t_bn.weight.copy_(torch.tensor(bn.gamma))
                t_bn.bias.copy_(torch.tensor(bn.beta))
        out = bn.train().forward(x)
        t_out = t_bn.train()(torch.tensor(x))
        assert rel_err(out, t_out.detach().numpy()) < TOL, f"step {step}"
        assert rel_err(bn.running_mean, t_bn.running_mean.numpy()) < TOL, f"step {step}"
        assert rel_err(bn.running_var, t_bn.running_var.numpy()) < TOL, f"step {step}"
        assert bn.num_batches_tracked == int(t_bn.num_batches_tracked)
        # eval mode uses what was accumulated, and does not change it
        out = bn.eval().forward(probe)
        with torch.no_grad():
            t_out = t_bn.eval()(torch.tensor(probe))
        assert rel_err(out, t_out.numpy()) < TOL, f"step {step}"
    assert bn.num_batches_tracked == len(BATCH_SIZES)


def test_layer_backward_is_the_functional_backward():
    x, gamma, beta, dout = make(5, 3, seed=8)
    bn = BatchNorm(3)
    bn.gamma, bn.beta = gamma, beta
    bn.forward(x)
    _, cache = batchnorm_forward(x, gamma, beta, 1e-5)
    for a, b in zip(bn.backward(dout), batchnorm_backward(dout, cache), strict=True):
        assert rel_err(a, b) < TOL
    bn.eval().forward(x)
    dx, dgamma, dbeta = bn.backward(dout)
    _, cache = batchnorm_forward_eval(x, gamma, beta, bn.running_mean, bn.running_var, 1e-5)
    for a, b in zip((dx, dgamma, dbeta), batchnorm_backward_eval(dout, cache), strict=True):
        assert rel_err(a, b) < TOL


def test_layer_defaults():
    bn = BatchNorm(4)
    assert (bn.eps, bn.momentum, bn.training, bn.num_batches_tracked) == (1e-5, 0.1, True, 0)
    assert np.array_equal(bn.running_mean, np.zeros(4))
    assert np.array_equal(bn.running_var, np.ones(4))
    assert np.array_equal(bn.gamma, np.ones(4)) and np.array_equal(bn.beta, np.zeros(4))
    keras = BatchNorm(4, convention="keras")
    assert (keras.eps, keras.momentum) == (1e-3, 0.99)
    plain = BatchNorm(4, affine=False)
    assert plain.gamma is None and plain.beta is None
    assert plain.forward(np.eye(4)).shape == (4, 4)
    assert plain.backward(np.ones((4, 4)))[1:] == (None, None)
    assert bn.eval() is bn and not bn.training and bn.train() is bn and bn.training


# ----------------------------------------------------------------------------------------------
# bad input


def test_single_row_in_training_is_refused_like_torch():
    x = np.array([[1.0, 2.0, 3.0]])
    for call in (
        lambda: batchnorm_forward(x, np.ones(3), np.zeros(3)),
        lambda: batchnorm_forward_staged(x, np.ones(3), np.zeros(3), variance="unbiased"),
        lambda: BatchNorm(3).forward(x),
        lambda: BatchNorm(3, convention="keras").forward(x),
    ):
        with pytest.raises(BatchSizeError) as info:
            call()
        message = str(info.value)
        assert "Expected more than 1 value per channel when training" in message
        assert "(1, 3)" in message and "eval" in message
        assert isinstance(info.value, ValueError)
    bn = BatchNorm(3)
    assert bn.num_batches_tracked == 0 and bn.eval().forward(x).shape == (1, 3)
    assert batchnorm_forward_eval(x, None, None, np.zeros(3), np.ones(3), affine=False)[0].shape


GOOD = make(4, 3, seed=0)


BAD_INPUT = [
    (lambda x, g, b, d: batchnorm_forward(x[0], g, b), ["x", "2-D", "(3,)"]),
    (lambda x, g, b, d: batchnorm_forward(x[:, :, None], g, b), ["x", "(4, 3, 1)"]),
    (lambda x, g, b, d: batchnorm_forward(x, g[:2], b), ["gamma", "(3,)", "(2,)"]),
    (lambda x, g, b, d: batchnorm_forward_staged(x, g, b[:, None]), ["beta", "(3, 1)"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b, affine=False), ["affine=False"]),
    (lambda x, g, b, d: batchnorm_forward(x, None, b), ["affine=True"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b, eps=-1.0), ["eps", "-1.0"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b, eps=np.nan), ["eps", "nan"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b, variance="sample"), ["variance", "sample"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b, eps_placement="in"), ["eps_placement"]),
    (lambda x, g, b, d: batchnorm_forward(np.where(x > 0, np.nan, x), g, b), ["x", "nan"]),
    (lambda x, g, b, d: batchnorm_forward(x, g * np.inf, b), ["gamma", "inf"]),
    (lambda x, g, b, d: batchnorm_forward(x, g, b + 1j), ["beta", "real"]),
    (lambda x, g, b, d: batchnorm_forward(x * 0, g, b, eps=0.0), ["eps", "0/0"]),
    (lambda x, g, b, d: batchnorm_backward(d[:3], batchnorm_forward(x, g, b)[1]), ["dout"]),
    (
        lambda x, g, b, d: batchnorm_backward(d * np.nan, batchnorm_forward(x, g, b)[1]),
        ["dout", "nan"],
    ),
    (
        lambda x, g, b, d: batchnorm_backward(d, batchnorm_forward_staged(x, g, b)[1]),
        ["batchnorm_backward", "batchnorm_forward", "StagedCache"],
    ),
    (
        lambda x, g, b, d: batchnorm_forward_eval(x, g, b, np.zeros(3), -np.ones(3)),
        ["running_var", ">= 0"],
    ),
    (
        lambda x, g, b, d: batchnorm_forward_eval(x, g, b, np.zeros(2), np.ones(3)),
        ["running_mean", "(3,)"],
    ),
    (lambda x, g, b, d: BatchNorm(3).forward(x[:, :2]), ["num_features", "(4, 2)"]),
    (lambda x, g, b, d: BatchNorm(3).backward(d), ["backward", "forward"]),
    (lambda x, g, b, d: BatchNorm(0), ["num_features"]),
    (lambda x, g, b, d: BatchNorm(3, momentum=1.5), ["momentum", "1.5"]),
    (lambda x, g, b, d: BatchNorm(3, momentum=None, convention="keras"), ["momentum=None"]),
    (lambda x, g, b, d: BatchNorm(3, convention="jax"), ["convention", "jax"]),
]


@pytest.mark.parametrize("call, words", BAD_INPUT, ids=[" ".join(w) for _, w in BAD_INPUT])
def test_bad_input_names_the_argument(call, words):
    with pytest.raises(BatchNormError) as info:
        call(*(np.copy(a) for a in GOOD))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_inputs_are_never_mutated():
    x, gamma, beta, dout = make(5, 3, seed=2)
    running_mean, running_var = np.zeros(3), np.ones(3)
    arrays = (x, gamma, beta, dout, running_mean, running_var)
    before = [a.copy() for a in arrays]
    for variant in VARIANTS:
        g, b = params(gamma, beta, variant["affine"])
        for forward, backward in (
            (batchnorm_forward, batchnorm_backward),
            (batchnorm_forward_staged, batchnorm_backward_staged),
        ):
            backward(dout, forward(x, g, b, **variant)[1])
    for forward, backward in (
        (batchnorm_forward_eval, batchnorm_backward_eval),
        (batchnorm_forward_eval_staged, batchnorm_backward_eval_staged),
    ):
        backward(dout, forward(x, gamma, beta, running_mean, running_var)[1])
    bn = BatchNorm(3)
    bn.forward(x)
    bn.backward(dout)
    for a, b in zip(arrays, before, strict=True):
        assert np.array_equal(a, b)


def test_importing_the_reference_does_not_import_sympy():
    code = "import sys, bnsym.reference as r; r.BatchNorm; assert 'sympy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# properties over shapes and scales


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(2, 8),
    D=st.integers(1, 5),
    log_scale=st.floats(-3, 3),
    offset=st.floats(-100, 100),
    seed=st.integers(0, 2**32 - 1),
    variant=st.sampled_from(VARIANTS),
)
def test_properties(m, D, log_scale, offset, seed, variant):
    x, gamma, beta, dout = make(m, D, seed, scale=10.0**log_scale, offset=offset)
    g, b = params(gamma, beta, variant["affine"])
    eps = 1e-5
    out, cache = batchnorm_forward(x, g, b, eps, **variant)
    out_s, cache_s = batchnorm_forward_staged(x, g, b, eps, **variant)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    dx_s = batchnorm_backward_staged(dout, cache_s)[0]
    scale = dx_scale(x, g, dout, eps, variant["variance"], variant["eps_placement"])
    # a large offset costs the centring step digits: |offset| / scale of x of them
    room = TOL * max(1.0, abs(offset) / 10.0**log_scale)
    assert rel_err(out, out_s, 1.0) < room
    assert rel_err(dx, dx_s, scale) < room
    # out does not change when a constant is added to a column, so each column of dx sums to 0
    assert np.max(np.abs(dx.sum(0))) <= 1e3 * room * scale
    # every column of out has mean beta (0 without affine)
    assert rel_err(out.mean(0), np.zeros(D) if b is None else b, 1.0) < room
    if variant["affine"]:
        assert rel_err(dbeta, dout.sum(0)) < TOL
        assert dgamma.shape == (D,)


# ----------------------------------------------------------------------------------------------
# the tests' own tolerances catch the mistakes people make


def test_finite_differences_catch_the_classic_mistakes():
    # The inside formula (c = k) used with eps outside the sqrt, and the biased k used with the
    # unbiased variance: both are off by O(eps / sigma) or O(1/m), and must not pass FD_TOL.
    x, gamma, beta, dout = make(4, 3, seed=21)
    eps = 1e-3
    for variant, wrong in (
        ({"eps_placement": "outside"}, lambda c: c * 0 + 1 / 4),
        ({"variance": "unbiased"}, lambda c: c * 0 + 1 / 4),
    ):
        _, cache = batchnorm_forward(x, gamma, beta, eps, **variant)
        broken = dataclasses.replace(cache, c=wrong(cache.c))
        dx = batchnorm_backward(dout, broken)[0]
        f = lambda z: batchnorm_forward(z, gamma, beta, eps, **variant)[0]  # noqa: E731, B023
        num_dx = numerical_grad(f, x, dout, FD_H)
        assert rel_err(dx, num_dx, dx_scale(x, gamma, dout, eps)) > 100 * FD_TOL, variant


@pytest.mark.parametrize("momentum", [np.float32(0.1), np.float64(0.1), np.int64(1)], ids=repr)
def test_momentum_may_be_a_numpy_number(momentum):
    layer = BatchNorm(3, momentum=momentum)
    assert layer.momentum == float(momentum) and type(layer.momentum) is float
    x = np.arange(12.0).reshape(4, 3)
    layer.forward(x)
    expected = float(momentum) * x.mean(0)  # (1 - momentum) * 0 + momentum * mean
    np.testing.assert_allclose(layer.running_mean, expected, rtol=1e-15)
    with pytest.raises(BatchNormError, match="momentum"):
        BatchNorm(3, momentum=np.bool_(True))
    with pytest.raises(BatchNormError, match="momentum"):
        BatchNorm(3, momentum=np.float64("nan"))


def test_docstrings_call_the_denominator_std_not_d():
    # D is the number of features; the denominator of x_hat is std (STYLE.md, section 3).
    import bnsym.reference.batchnorm as batchnorm
    import bnsym.reference.running as running

    for module in (batchnorm, running):
        for name, obj in vars(module).items():
            doc = getattr(obj, "__doc__", None) or ""
            if getattr(obj, "__module__", module.__name__) != module.__name__:
                continue
            assert "/ D" not in doc and "D the denominator" not in doc, (module.__name__, name)
            assert "``D`` being" not in doc and "(m*D)" not in doc, (module.__name__, name)
