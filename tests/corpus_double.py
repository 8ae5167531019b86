"""A corpus of layers with right and deliberately wrong double backward passes.

Every layer is written out by hand here, none comes from bnsym: forward(*inputs) -> (out,
cache), backward(dout, cache) -> gradients, double_backward(ggrads, dout, cache) ->
(one gradient per input, gdout), the gradients of sum(ggrads * backward(dout, cache)).
``tests/test_gradcheck_double.py`` checks the right ones against torch autograd, so that the
corpus does not rest on the checker it tests.

Batch norm over axis 0 of x (N, D), with a = gdx, g = gamma*dout, h = gdgamma*dout,
D = sqrt(var + eps), P(v) = v - mean(v) - x_hat*mean(v*x_hat) per feature, Q = sum(a*P(g)):

    gdout  = gamma*P(a)/D + gdgamma*x_hat + gdbeta
    ggamma = sum(dout*P(a))/D
    gx     = P(h)/D - (x_hat*Q + sum(g*x_hat)*P(a) + sum(a*x_hat)*P(g))/(N*D**2)
    gbeta  = 0          (the backward never reads beta)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-5


@dataclass(frozen=True)
class Case:
    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    double_backward: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator], tuple[Any, ...]]
    failed: tuple[int, ...] = ()  # the orders that must fail; () for a right layer
    expect: tuple[str, ...] = ()  # substrings of str(report)

    def inputs(self, seed: int = 0) -> tuple[Any, ...]:
        return self.make_inputs(np.random.default_rng(seed))


# --- tanh ---------------------------------------------------------------------------------------


def tanh_forward(x):
    t = np.tanh(x)
    return t, t


def tanh_backward(dout, t):
    return dout * (1 - t * t)


def tanh_backward_offset(dout, t):
    return dout * (1 - t * t) + 1e-3  # wrong by a constant: its derivatives are right


def tanh_double_backward(gdx, dout, t):
    return -2 * gdx * dout * t * (1 - t * t), gdx * (1 - t * t)


def tanh_double_backward_sign(gdx, dout, t):
    gx, gdout = tanh_double_backward(gdx, dout, t)
    return -gx, gdout


def tanh_double_backward_no_chain(gdx, dout, t):
    return -2 * gdx * dout * t, gdx * (1 - t * t)  # forgot dt/dx = 1 - t**2


def tanh_inputs(rng):
    return (rng.normal(size=(5, 3)),)


# --- affine -------------------------------------------------------------------------------------


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def affine_double_backward(ggrads, dout, cache):
    gdx, gdw, gdb = ggrads
    x, w = cache
    return dout @ gdw.T, gdx.T @ dout, np.zeros(w.shape[1]), gdx @ w + x @ gdw + gdb


def affine_double_backward_no_gdb(ggrads, dout, cache):
    gx, gw, gb, gdout = affine_double_backward(ggrads, dout, cache)
    gdx, gdw, gdb = ggrads
    return gx, gw, gb, gdout - gdb  # forgot the bias's sum(dout)


def affine_double_backward_dict(ggrads, dout, cache):
    gx, gw, gb, gdout = affine_double_backward(ggrads, dout, cache)
    return {"gx": gx, "gw": gw, "gb": gb, "gdout": gdout}


def affine_inputs(rng):
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)


# --- batch norm (train mode, over axis 0) -------------------------------------------------------


def bn_forward(x, gamma, beta):
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    std = np.sqrt(var + EPS)
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, gamma, std)


def bn_backward(dout, cache):
    x_hat, gamma, std = cache
    g = dout * gamma
    dx = (g - g.mean(0) - x_hat * (g * x_hat).mean(0)) / std
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def _project(v, x_hat):
    return v - v.mean(0) - x_hat * (v * x_hat).mean(0)


def bn_double_backward(ggrads, dout, cache, *, bug=None):
    gdx, gdgamma, gdbeta = ggrads
    x_hat, gamma, std = cache
    n = dout.shape[0]
    a, g, h = gdx, gamma * dout, gdgamma * dout
    Pa, Pg, Ph = _project(a, x_hat), _project(g, x_hat), _project(h, x_hat)
    Q = (a * Pg).sum(0)
    terms = [x_hat * Q, (g * x_hat).sum(0) * Pa, (a * x_hat).sum(0) * Pg]
    if bug == "gx one term short":
        terms.pop()
    gx = Ph / std - sum(terms) / (n * std**2)
    gdout = gamma * Pa / std + gdgamma * x_hat + gdbeta
    ggamma = (dout * Pa).sum(0) / std
    if bug == "ggamma without 1/std":
        ggamma = (dout * Pa).sum(0)
    if bug == "gdout off by 0.1%":
        gdout = gdout * 1.001
    return gx, ggamma, np.zeros_like(gdbeta), gdout


def _bn_bug(bug):
    def double_backward(ggrads, dout, cache):
        return bn_double_backward(ggrads, dout, cache, bug=bug)

    double_backward.__qualname__ = f"bn_double_backward ({bug})"
    return double_backward


def bn_inputs(rng):
    return rng.normal(1.0, 2.0, size=(6, 4)), rng.normal(size=4), rng.normal(size=4)


def bn_inputs_large(rng):
    return rng.normal(1.0, 2.0, size=(64, 48)), rng.normal(size=48), rng.normal(size=48)


RIGHT = [
    Case("tanh", tanh_forward, tanh_backward, tanh_double_backward, tanh_inputs),
    Case("affine", affine_forward, affine_backward, affine_double_backward, affine_inputs),
    Case(
        "affine, dict result",
        affine_forward,
        affine_backward,
        affine_double_backward_dict,
        affine_inputs,
    ),
    Case("batch norm", bn_forward, bn_backward, bn_double_backward, bn_inputs),
    Case("batch norm (64, 48)", bn_forward, bn_backward, bn_double_backward, bn_inputs_large),
]

WRONG = [
    Case(
        "tanh, gx sign flipped",
        tanh_forward,
        tanh_backward,
        tanh_double_backward_sign,
        tanh_inputs,
        failed=(2,),
        expect=("order 2: ∂/∂x of the backward is wrong at", "a flipped sign", "order 1 passed"),
    ),
    Case(
        "tanh, gx without the chain rule through t",
        tanh_forward,
        tanh_backward,
        tanh_double_backward_no_chain,
        tanh_inputs,
        failed=(2,),
        expect=("order 2: ∂/∂x of the backward is wrong at",),
    ),
    Case(
        "tanh, backward off by a constant",
        tanh_forward,
        tanh_backward_offset,
        tanh_double_backward,
        tanh_inputs,
        failed=(1,),
        expect=(
            "FAILED at order 1:",
            "order 1: ∂/∂x of the forward is wrong at",
            "order 2 passed",
            "matches the wrong backward",
        ),
    ),
    Case(
        "affine, gdout without gdb",
        affine_forward,
        affine_backward,
        affine_double_backward_no_gdb,
        affine_inputs,
        failed=(2,),
        expect=("order 2: ∂/∂dout of the backward is wrong at", "order 1 passed"),
    ),
    Case(
        "batch norm, gx one term short",
        bn_forward,
        bn_backward,
        _bn_bug("gx one term short"),
        bn_inputs,
        failed=(2,),
        expect=("order 2: ∂/∂x of the backward is wrong at",),
    ),
    Case(
        "batch norm, ggamma without 1/std",
        bn_forward,
        bn_backward,
        _bn_bug("ggamma without 1/std"),
        bn_inputs,
        failed=(2,),
        expect=("order 2: ∂/∂gamma of the backward is wrong at",),
    ),
    Case(
        "batch norm, gdout off by 0.1%",
        bn_forward,
        bn_backward,
        _bn_bug("gdout off by 0.1%"),
        bn_inputs,
        failed=(2,),
        expect=(
            "order 2: ∂/∂dout of the backward is wrong at",
            "analytic = 1.001 x numerical for every entry of dout: a constant factor (+0.1%)",
        ),
    ),
    Case(
        "batch norm (64, 48), gx one term short",
        bn_forward,
        bn_backward,
        _bn_bug("gx one term short"),
        bn_inputs_large,
        failed=(2,),
        expect=("order 2: ∂/∂x of the backward is wrong at",),
    ),
]
