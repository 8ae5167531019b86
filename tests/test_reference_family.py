"""Tests of the hand-written family in ``bnsym.reference``: layer, instance, group and RMS norm,
spatial batch norm and spatial group norm.

References independent of the code under test: PyTorch autograd (``F.layer_norm``,
``F.instance_norm``, ``F.group_norm``, ``F.rms_norm``, ``F.batch_norm``) for the default
variant; central finite differences of the scalar ``<dout, out>`` written out below for every
variant (they read only the forward pass); plain batch norm on the channels-last matrix; the
running-statistics formula of the CS231n assignment written out below.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from bnsym import reference as R
from bnsym.reference import BatchNormError, GroupSizeError, NormError
from conftest import needs_torch

try:  # the torch extra; CI installs it (tests/conftest.py)
    import torch
except ImportError:  # the tests marked needs_torch skip; the others run
    torch = None
F = None if torch is None else torch.nn.functional

# float64 rounding over a few dozen operations on values of size 1
TOL = 1e-12
# central differences with step FD_H: truncation ~ FD_H**2, rounding ~ 1e-16 / FD_H
FD_H = 1e-6
FD_TOL = 1e-7


@dataclass(frozen=True)
class Layer:
    name: str
    fused: tuple[Callable, Callable]
    staged: tuple[Callable, Callable]
    torch_fn: Callable  # (x, gamma, beta, **extra) -> out, PyTorch's functional form
    param_shape: Callable[[tuple[int, ...]], tuple[int, ...]]
    shapes: list[tuple[int, ...]]
    extra: dict[str, Any] = field(default_factory=dict)
    centred: bool = True


LAYERS = [
    Layer(
        "layernorm",
        (R.layernorm_forward, R.layernorm_backward),
        (R.layernorm_forward_staged, R.layernorm_backward_staged),
        lambda x, g, b, eps: F.layer_norm(x, x.shape[1:], g, b, eps),
        lambda shape: shape[1:],
        [(4, 6), (3, 2, 5), (2, 3, 2, 2)],
    ),
    Layer(
        "instancenorm",
        (R.instancenorm_forward, R.instancenorm_backward),
        (R.instancenorm_forward_staged, R.instancenorm_backward_staged),
        lambda x, g, b, eps: F.instance_norm(x, weight=g, bias=b, eps=eps),
        lambda shape: shape[1:2],
        [(2, 3, 5), (3, 2, 4, 3), (2, 2, 2, 1, 3)],
    ),
    Layer(
        "groupnorm",
        (R.groupnorm_forward, R.groupnorm_backward),
        (R.groupnorm_forward_staged, R.groupnorm_backward_staged),
        lambda x, g, b, eps, G: F.group_norm(x, G, g, b, eps),
        lambda shape: shape[1:2],
        [(2, 4, 3), (3, 6, 2, 2), (2, 6, 1, 3)],
        extra={"G": 2},
    ),
    Layer(
        "groupnorm_G3",
        (R.groupnorm_forward, R.groupnorm_backward),
        (R.groupnorm_forward_staged, R.groupnorm_backward_staged),
        lambda x, g, b, eps, G: F.group_norm(x, G, g, b, eps),
        lambda shape: shape[1:2],
        [(2, 6, 5), (1, 9, 2, 2)],
        extra={"G": 3},
    ),
    Layer(
        "rmsnorm",
        (R.rmsnorm_forward, R.rmsnorm_backward),
        (R.rmsnorm_forward_staged, R.rmsnorm_backward_staged),
        lambda x, g, b, eps: F.rms_norm(x, x.shape[1:], g, eps),
        lambda shape: shape[1:],
        [(4, 6), (3, 2, 5), (5, 1)],  # (5, 1): a mean square of one value is allowed
        centred=False,
    ),
]
LAYER_IDS = [layer.name for layer in LAYERS]
NAMES = ["out", "dx", "dgamma", "dbeta"]


def variants(layer):
    if not layer.centred:
        return [{"eps_placement": p, "affine": a} for p in ("inside", "outside") for a in (1, 0)]
    return [
        {"variance": v, "eps_placement": p, "affine": a}
        for v, p, a in itertools.product(("biased", "unbiased"), ("inside", "outside"), (1, 0))
    ]


def make(layer, shape, seed, *, affine=True):
    """Seeded (x, gamma, beta, dout); beta is None for RMS norm, both None without affine."""
    rng = np.random.default_rng(seed)
    x = 0.5 + 2.0 * rng.standard_normal(shape)
    p = layer.param_shape(shape)
    gamma = rng.uniform(0.5, 2.0, p) * rng.choice([-1.0, 1.0], p) if affine else None
    beta = rng.standard_normal(p) if affine and layer.centred else None
    return x, gamma, beta, rng.standard_normal(shape)


def run(layer, staged, x, gamma, beta, dout, eps=1e-5, **variant):
    """(out, (dx, dgamma[, dbeta])) of one layer, fused or staged."""
    forward, backward = layer.staged if staged else layer.fused
    if layer.centred:
        out, cache = forward(x, gamma, beta, eps=eps, **layer.extra, **variant)
    else:
        out, cache = forward(x, gamma, eps=eps, **variant)
    return out, backward(dout, cache)


def rel_err(a, b, scale=None):
    """max |a - b| relative to the largest |b| (or to ``scale`` where that is larger)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), scale or 0.0, 1e-300))


def rms_dx_scale(x, gamma, dout):
    """The size of the terms RMS norm's dx is a difference of, |gamma * dout| / rms.

    For a sample of one value dx = gamma * dout * eps / (x**2 + eps)**1.5: the two terms of
    size |gamma * dout| / |x| cancel but for a factor eps / x**2, so dx's own size is no scale
    for the rounding error of either computation.
    """
    rms = np.sqrt(np.mean(x.reshape(len(x), -1) ** 2, axis=1))
    return float(np.max(np.abs(gamma * dout)) / np.min(rms))


def numerical_grad(f, a, dout, h=FD_H):
    """Central differences of the scalar <dout, f(a)> with respect to every entry of a."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = np.sum(dout * (f(plus) - f(minus))) / (2 * h)
    return grad


# ----------------------------------------------------------------------------------------------
# against PyTorch, default variant


@needs_torch
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
@pytest.mark.parametrize("layer", LAYERS, ids=LAYER_IDS)
def test_against_torch_autograd(layer, staged):
    for seed, shape in enumerate(layer.shapes):
        x, gamma, beta, dout = make(layer, shape, seed)
        out, grads = run(layer, staged, x, gamma, beta, dout)
        tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma)]
        tensors.append(None if beta is None else torch.tensor(beta, requires_grad=True))
        t_out = layer.torch_fn(*tensors, 1e-5, **layer.extra)
        t_out.backward(torch.tensor(dout))
        expected = [t_out.detach().numpy()] + [t.grad.numpy() for t in tensors if t is not None]
        assert len(grads) == len(expected) - 1
        for what, ours, theirs in zip(NAMES[: len(expected)], [out, *grads], expected, strict=True):
            scale = rms_dx_scale(x, gamma, dout) if what == "dx" and not layer.centred else None
            assert rel_err(ours, theirs, scale) < TOL, (layer.name, shape, what)


@needs_torch
def test_spatial_batchnorm_against_torch():
    for seed, shape in enumerate([(4, 3, 2, 5), (2, 2, 3, 3), (1, 3, 1, 3)]):
        rng = np.random.default_rng(seed)
        x = 1.0 + 2.0 * rng.standard_normal(shape)
        C = shape[1]
        gamma, beta, dout = (
            rng.uniform(0.5, 2, C),
            rng.standard_normal(C),
            rng.standard_normal(shape),
        )
        out, cache = R.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
        dx, dgamma, dbeta = R.spatial_batchnorm_backward(dout, cache)
        tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
        t_out = F.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
        t_out.backward(torch.tensor(dout))
        for ours, theirs in zip(
            [out, dx, dgamma, dbeta], [t_out, tx.grad, tg.grad, tb.grad], strict=True
        ):
            assert rel_err(ours, theirs.detach().numpy()) < TOL, shape


@needs_torch
def test_spatial_batchnorm_test_mode_against_torch():
    rng = np.random.default_rng(7)
    x, dout = rng.standard_normal((3, 2, 2, 4)), rng.standard_normal((3, 2, 2, 4))
    gamma, beta = np.array([1.5, -0.5]), np.array([0.3, 0.1])
    running_mean, running_var = np.array([0.2, -1.0]), np.array([0.5, 2.0])
    bn_param = {"mode": "test", "running_mean": running_mean, "running_var": running_var}
    out, cache = R.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = R.spatial_batchnorm_backward(dout, cache)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    t_out = F.batch_norm(
        tx, torch.tensor(running_mean), torch.tensor(running_var), tg, tb, training=False
    )
    t_out.backward(torch.tensor(dout))
    for ours, theirs in zip(
        [out, dx, dgamma, dbeta], [t_out, tx.grad, tg.grad, tb.grad], strict=True
    ):
        assert rel_err(ours, theirs.detach().numpy()) < TOL
    # test mode leaves the running statistics alone
    assert bn_param["running_mean"] is running_mean and bn_param["running_var"] is running_var


def test_spatial_batchnorm_updates_running_stats_as_the_assignment():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 2, 2))
    old_mean, old_var = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    bn_param = {"mode": "train", "momentum": 0.8, "running_mean": old_mean.copy(),
                "running_var": old_var.copy()}  # fmt: skip
    passed_mean = bn_param["running_mean"]
    R.spatial_batchnorm_forward(x, np.ones(3), np.zeros(3), bn_param)
    # CS231n: running = momentum * running + (1 - momentum) * batch, biased variance, per channel
    x_rows = np.moveaxis(x, 1, -1).reshape(-1, 3)
    mu = x_rows.sum(0) / 8
    var = ((x_rows - mu) ** 2).sum(0) / 8
    np.testing.assert_allclose(bn_param["running_mean"], 0.8 * old_mean + 0.2 * mu, rtol=1e-14)
    np.testing.assert_allclose(bn_param["running_var"], 0.8 * old_var + 0.2 * var, rtol=1e-14)
    np.testing.assert_array_equal(passed_mean, old_mean)  # the array passed in is not modified
    # the assignment's defaults: momentum 0.9, statistics starting at zero
    fresh = {"mode": "train"}
    R.spatial_batchnorm_forward(x, np.ones(3), np.zeros(3), fresh)
    np.testing.assert_allclose(fresh["running_mean"], 0.1 * mu, rtol=1e-14)
    np.testing.assert_allclose(fresh["running_var"], 0.1 * var, rtol=1e-14)


@needs_torch
def test_spatial_groupnorm_against_torch_with_the_assignments_shapes():
    rng = np.random.default_rng(11)
    for N, C, H, W, G in [(2, 6, 3, 2, 3), (3, 4, 2, 2, 2), (1, 4, 1, 3, 1)]:
        x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
        gamma, beta = rng.uniform(0.5, 2, (1, C, 1, 1)), rng.standard_normal((1, C, 1, 1))
        out, cache = R.spatial_groupnorm_forward(x, gamma, beta, G, {"eps": 1e-5})
        dx, dgamma, dbeta = R.spatial_groupnorm_backward(dout, cache)
        assert dgamma.shape == dbeta.shape == (1, C, 1, 1)
        tx = torch.tensor(x, requires_grad=True)
        tg, tb = (torch.tensor(a.ravel(), requires_grad=True) for a in (gamma, beta))
        t_out = F.group_norm(tx, G, tg, tb, 1e-5)
        t_out.backward(torch.tensor(dout))
        assert rel_err(out, t_out.detach().numpy()) < TOL
        assert rel_err(dx, tx.grad.numpy()) < TOL
        assert rel_err(dgamma.ravel(), tg.grad.numpy()) < TOL
        assert rel_err(dbeta.ravel(), tb.grad.numpy()) < TOL


# ----------------------------------------------------------------------------------------------
# every variant against finite differences of the forward pass


def _fd_cases():
    for layer in LAYERS:
        for variant in variants(layer):
            ident = "-".join(str(v) for v in variant.values())
            for staged in (False, True):
                yield pytest.param(layer, variant, staged, id=f"{layer.name}-{ident}-{staged}")


@pytest.mark.parametrize("layer, variant, staged", list(_fd_cases()))
def test_variants_against_finite_differences(layer, variant, staged):
    variant = {**variant, "affine": bool(variant["affine"])}
    x, gamma, beta, dout = make(layer, layer.shapes[0], 5, affine=variant["affine"])
    eps = 0.1  # large enough that inside and outside differ well beyond the tolerance
    _, grads = run(layer, staged, x, gamma, beta, dout, eps, **variant)

    def out(x=x, gamma=gamma, beta=beta):
        return run(layer, staged, x, gamma, beta, dout, eps, **variant)[0]

    assert rel_err(grads[0], numerical_grad(lambda a: out(x=a), x, dout)) < FD_TOL
    if variant["affine"]:
        assert rel_err(grads[1], numerical_grad(lambda a: out(gamma=a), gamma, dout)) < FD_TOL
        if layer.centred:
            assert rel_err(grads[2], numerical_grad(lambda a: out(beta=a), beta, dout)) < FD_TOL
    else:
        assert all(g is None for g in grads[1:])


@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
@pytest.mark.parametrize("name", ["layernorm", "groupnorm"])
def test_outside_constant_group_takes_the_limit(name, staged):
    # A constant group has var = 0; with eps outside the square root, sqrt(var) has no
    # derivative there, but x_hat is 0 and dx has a limit: gamma*(dout - mean(dout))/eps.
    layer = next(la for la in LAYERS if la.name == name)
    x, gamma, beta, dout = make(layer, layer.shapes[0], 2)
    x[0] = 1.5  # sample 0 is constant, so is each of its groups
    _, (dx, _, _) = run(layer, staged, x, gamma, beta, dout, 0.1, eps_placement="outside")
    g = gamma * dout[0] if name == "layernorm" else gamma[:, None] * dout[0]
    G = layer.extra.get("G", 1)
    g_groups = g.reshape(G, -1)
    expected = (g_groups - g_groups.mean(axis=1, keepdims=True)).reshape(g.shape) / 0.1
    assert rel_err(dx[0], expected) < TOL


@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_rmsnorm_outside_zero_sample_takes_the_limit(staged):
    # out = gamma * x / (rms(x) + eps) at x = 0: rms has no derivative there, but the
    # derivative of out along any v is gamma * v / eps, so dx = gamma * dout / eps.
    layer = next(la for la in LAYERS if la.name == "rmsnorm")
    x, gamma, _, dout = make(layer, (3, 4), 8)
    x[1] = 0.0
    _, (dx, _) = run(layer, staged, x, gamma, None, dout, 0.1, eps_placement="outside")
    assert rel_err(dx[1], gamma * dout[1] / 0.1) < TOL


def test_rmsnorm_worked_example_by_hand():
    # x = [3, -4]: mean square (9 + 16)/2 = 12.5; eps = 0 inside
    out, cache = R.rmsnorm_forward([[3.0, -4.0]], [2.0, 1.0], eps=0.0)
    rms = np.sqrt(12.5)
    np.testing.assert_allclose(out, [[6.0 / rms, -4.0 / rms]], rtol=1e-15)
    # one value: out = gamma * x / |x| = gamma * sign(x), whatever x is: dx = 0
    out, cache = R.rmsnorm_forward([[-3.0]], [2.0], eps=0.0)
    dx, dgamma = R.rmsnorm_backward([[1.0]], cache)
    assert out.tolist() == [[-2.0]] and dx.tolist() == [[0.0]] and dgamma.tolist() == [-1.0]


# ----------------------------------------------------------------------------------------------
# fused equals staged; the equivalences between the layers


def _all_cases():
    for layer in LAYERS:
        for variant in variants(layer):
            yield pytest.param(
                layer, variant, id=f"{layer.name}-" + "-".join(map(str, variant.values()))
            )


@pytest.mark.parametrize("layer, variant", list(_all_cases()))
def test_fused_equals_staged(layer, variant):
    variant = {**variant, "affine": bool(variant["affine"])}
    for seed, shape in enumerate(layer.shapes):
        x, gamma, beta, dout = make(layer, shape, seed, affine=variant["affine"])
        fused = run(layer, False, x, gamma, beta, dout, 1e-3, **variant)
        staged = run(layer, True, x, gamma, beta, dout, 1e-3, **variant)
        for a, b in zip([fused[0], *fused[1]], [staged[0], *staged[1]], strict=True):
            assert (a is None and b is None) or rel_err(a, b) < TOL, (shape, variant)


VARIANTS_CENTRED = [
    {"variance": "biased", "eps_placement": "inside"},
    {"variance": "unbiased", "eps_placement": "outside"},
]


@pytest.mark.parametrize("variant", VARIANTS_CENTRED, ids=["default", "unbiased-outside"])
def test_layernorm_over_chw_is_groupnorm_with_one_group(variant):
    rng = np.random.default_rng(1)
    N, C, H, W = 2, 3, 2, 4
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    # layer norm's gamma has the shape of a sample; one value per channel makes them equal
    gamma_chw = np.broadcast_to(gamma[:, None, None], (C, H, W)).copy()
    beta_chw = np.broadcast_to(beta[:, None, None], (C, H, W)).copy()
    out_ln, cache_ln = R.layernorm_forward(x, gamma_chw, beta_chw, **variant)
    out_gn, cache_gn = R.groupnorm_forward(x, gamma, beta, 1, **variant)
    dx_ln, dgamma_ln, dbeta_ln = R.layernorm_backward(dout, cache_ln)
    dx_gn, dgamma_gn, dbeta_gn = R.groupnorm_backward(dout, cache_gn)
    assert rel_err(out_ln, out_gn) < TOL and rel_err(dx_ln, dx_gn) < TOL
    assert rel_err(dgamma_ln.sum(axis=(1, 2)), dgamma_gn) < TOL
    assert rel_err(dbeta_ln.sum(axis=(1, 2)), dbeta_gn) < TOL


@pytest.mark.parametrize("variant", VARIANTS_CENTRED, ids=["default", "unbiased-outside"])
def test_instancenorm_is_groupnorm_with_one_channel_per_group(variant):
    rng = np.random.default_rng(2)
    x, dout = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    out_in, cache_in = R.instancenorm_forward(x, gamma, beta, **variant)
    out_gn, cache_gn = R.groupnorm_forward(x, gamma, beta, 4, **variant)
    assert rel_err(out_in, out_gn) < TOL
    for a, b in zip(
        R.instancenorm_backward(dout, cache_in), R.groupnorm_backward(dout, cache_gn), strict=True
    ):
        assert rel_err(a, b) < TOL


@pytest.mark.parametrize("variant", VARIANTS_CENTRED, ids=["default", "unbiased-outside"])
def test_spatial_batchnorm_is_batchnorm_of_the_channels_last_matrix(variant):
    rng = np.random.default_rng(4)
    N, C, H, W = 2, 3, 2, 3
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    out, cache = R.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train", **variant})
    dx, dgamma, dbeta = R.spatial_batchnorm_backward(dout, cache)

    def rows(a):
        return a.transpose(0, 2, 3, 1).reshape(-1, C)

    out2, cache2 = R.batchnorm_forward(rows(x), gamma, beta, **variant)
    dx2, dgamma2, dbeta2 = R.batchnorm_backward(rows(dout), cache2)
    assert rel_err(rows(out), out2) < TOL and rel_err(rows(dx), dx2) < TOL
    assert rel_err(dgamma, dgamma2) < TOL and rel_err(dbeta, dbeta2) < TOL


def test_spatial_groupnorm_is_groupnorm():
    rng = np.random.default_rng(6)
    x, dout = rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((2, 4, 3, 2))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    gn_param = {"eps": 1e-3, "variance": "unbiased", "eps_placement": "outside"}
    out, cache = R.spatial_groupnorm_forward(
        x, gamma.reshape(1, 4, 1, 1), beta.reshape(1, 4, 1, 1), 2, gn_param
    )
    out2, cache2 = R.groupnorm_forward(x, gamma, beta, 2, 1e-3, variance="unbiased",
                                       eps_placement="outside")  # fmt: skip
    assert rel_err(out, out2) < TOL
    for a, b in zip(
        R.spatial_groupnorm_backward(dout, cache), R.groupnorm_backward(dout, cache2), strict=True
    ):
        assert rel_err(a.reshape(b.shape), b) < TOL


# ----------------------------------------------------------------------------------------------
# inputs, errors, imports


@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
@pytest.mark.parametrize("layer", LAYERS, ids=LAYER_IDS)
def test_inputs_are_never_modified(layer, staged):
    x, gamma, beta, dout = make(layer, layer.shapes[1], 0)
    copies = [None if a is None else a.copy() for a in (x, gamma, beta, dout)]
    forward, backward = layer.staged if staged else layer.fused
    args = (x, gamma, beta) if layer.centred else (x, gamma)
    out, cache = forward(*args, **layer.extra)
    grads = backward(dout, cache)
    for a, copy in zip((x, gamma, beta, dout), copies, strict=True):
        assert a is None or np.array_equal(a, copy)
    # nor does the cache alias them: changing x or gamma afterwards changes nothing
    x += 1.0
    gamma *= 2.0
    for a, b in zip(grads, backward(dout, cache), strict=True):
        assert a is None or np.array_equal(a, b)


def test_spatial_inputs_are_never_modified():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 2, 2, 2)), rng.standard_normal((2, 2, 2, 2))
    gamma, beta = np.ones(2), np.zeros(2)
    running_mean, running_var = np.zeros(2), np.ones(2)
    arrays = (x, dout, gamma, beta, running_mean, running_var)
    copies = [a.copy() for a in arrays]
    for mode in ("train", "test"):
        bn_param = {"mode": mode, "running_mean": running_mean, "running_var": running_var}
        R.spatial_batchnorm_backward(dout, R.spatial_batchnorm_forward(x, gamma, beta, bn_param)[1])
    g4, b4 = gamma.reshape(1, 2, 1, 1), beta.reshape(1, 2, 1, 1)
    R.spatial_groupnorm_backward(dout, R.spatial_groupnorm_forward(x, g4, b4, 1, {})[1])
    for a, copy in zip(arrays, copies, strict=True):
        assert np.array_equal(a, copy)


x24 = np.arange(8.0).reshape(2, 4)
x243 = np.arange(24.0).reshape(2, 4, 3)
x4d = np.arange(16.0).reshape(2, 2, 2, 2)
g4, b4 = np.ones(4), np.zeros(4)

BAD = [
    (lambda: R.layernorm_forward(np.ones(4), g4, b4), NormError, "x must be an array of shape"),
    (lambda: R.layernorm_forward(x24, np.ones(3), b4), NormError, r"gamma must have shape \(4,\)"),
    (lambda: R.layernorm_forward(x24, g4, np.ones((1, 4))), NormError, "beta must have shape"),
    (lambda: R.layernorm_forward(np.ones((3, 1)), [1.0], [0.0]), GroupSizeError, r"x.shape\[1:\]"),
    (lambda: R.layernorm_forward(x24, g4, b4, variance="population"), NormError, "variance"),
    (lambda: R.layernorm_forward(x24, g4, b4, eps_placement="mid"), NormError, "eps_placement"),
    (lambda: R.layernorm_forward(x24, g4, b4, eps=-1.0), NormError, "eps must be"),
    (lambda: R.layernorm_forward(x24, g4, b4, affine=False), NormError, "affine=False takes"),
    (lambda: R.layernorm_forward(x24, None, None), NormError, "affine=True needs gamma and beta"),
    (lambda: R.layernorm_forward([[1.0, np.nan]], [1, 1], [0, 0]), NormError, "x has 1 non-finite"),
    (
        lambda: R.layernorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), eps=0.0),
        NormError,
        "denominator of x_hat is 0",
    ),
    (lambda: R.instancenorm_forward(x24, g4, b4), NormError, r"\(N, C, \*spatial\)"),
    (lambda: R.instancenorm_forward(np.ones((2, 4, 1)), g4, b4), GroupSizeError, "spatial"),
    (lambda: R.instancenorm_forward(x243, np.ones(3), np.zeros(3)), NormError, r"shape \(4,\)"),
    (lambda: R.groupnorm_forward(x243, g4, b4, 3), NormError, "G .the number of groups. must"),
    (lambda: R.groupnorm_forward(x243, g4, b4, True), NormError, "G .the number of groups. must"),
    (lambda: R.groupnorm_forward(np.ones((2, 4, 1)), g4, b4, 4), GroupSizeError, "fewer groups G"),
    (lambda: R.rmsnorm_forward(x24, np.ones(3)), NormError, r"gamma must have shape \(4,\)"),
    (lambda: R.rmsnorm_forward(x24, g4, affine=False), NormError, "affine=False takes gamma"),
    (lambda: R.rmsnorm_forward(np.zeros((2, 4)), g4, eps=0.0), NormError, "mean square"),
    (
        lambda: R.layernorm_backward(np.ones((2, 3)), R.layernorm_forward(x24, g4, b4)[1]),
        NormError,
        "dout must have the shape",
    ),
    (
        lambda: R.layernorm_backward(x243, R.groupnorm_forward(x243, g4, b4, 2)[1]),
        NormError,
        "layernorm_backward needs the cache returned by layernorm_forward; got a Cache from "
        "groupnorm_forward",
    ),
    (
        lambda: R.layernorm_backward_staged(x24, R.layernorm_forward(x24, g4, b4)[1]),
        NormError,
        "layernorm_backward_staged needs the cache returned by layernorm_forward_staged",
    ),
    (
        lambda: R.spatial_batchnorm_forward(x4d, [1, 1], [0, 0], {}),
        NormError,
        r"bn_param\['mode'\]",
    ),
    (
        lambda: R.spatial_batchnorm_forward(x4d, [1, 1], [0, 0], {"mode": "train", "epsilon": 1}),
        NormError,
        r"unknown key\(s\) \['epsilon'\]",
    ),
    (
        lambda: R.spatial_batchnorm_forward(x243, g4, b4, {"mode": "train"}),
        NormError,
        r"\(N, C, H, W\)",
    ),
    (
        lambda: R.spatial_batchnorm_forward(x4d, [1, 1], [0, 0], {"mode": "train", "momentum": 2}),
        NormError,
        "momentum",
    ),
    (
        lambda: R.spatial_batchnorm_forward(
            x4d, [1, 1], [0, 0], {"mode": "test", "running_mean": np.zeros(3)}
        ),
        NormError,
        r"running_mean'\] must have shape",
    ),
    (
        lambda: R.spatial_batchnorm_forward(
            np.ones((1, 2, 1, 1)), [1, 1], [0, 0], {"mode": "train"}
        ),
        GroupSizeError,
        "N\\*H\\*W > 1",
    ),
    (lambda: R.spatial_batchnorm_forward(x4d, [1, 1], [0, 0], []), NormError, "must be a dict"),
    (
        lambda: R.spatial_groupnorm_forward(x4d, [1, 1], [0, 0], 1, {}),
        NormError,
        r"gamma must have shape \(1, 2, 1, 1\)",
    ),
    (lambda: R.spatial_groupnorm_forward(x243, g4, b4, 1, {}), NormError, r"\(N, C, H, W\)"),
]


@pytest.mark.parametrize("call, error, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_arguments_name_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_the_error_types():
    assert BatchNormError is NormError and issubclass(NormError, ValueError)
    assert issubclass(R.BatchSizeError, GroupSizeError) and issubclass(GroupSizeError, NormError)
    # batch norm's refusals are the family's: one except clause catches them all
    with pytest.raises(NormError):
        R.batchnorm_forward([[1.0, 2.0]], [1.0, 1.0], [0.0, 0.0])


@needs_torch
def test_importing_the_reference_imports_neither_sympy_nor_torch():
    code = (
        "import sys, bnsym.reference as r; r.groupnorm_forward; r.BatchNorm; "
        "bad = {'sympy', 'torch'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
