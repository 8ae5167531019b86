"""A corpus of layers with right and deliberately wrong backward passes, to test the checker.

Every layer is written out by hand here, forward and backward, from the textbook formulas; none
comes from bnsym. A case is *correct* (``bug is None``: the checker must pass it) or *wrong*
(the checker must fail it and its report must contain every string of ``expect``). The benchmark
scores torch.autograd.gradcheck and bnsym on the same cases.

Batch norm, for x of shape (N, D), normalizing over the batch axis 0:

    mu = mean(x), var = mean((x - mu)**2), x_hat = (x - mu) / sqrt(var + eps),
    out = gamma * x_hat + beta,
    dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / sqrt(var + eps),
    with dx_hat = dout * gamma, dgamma = sum(dout * x_hat), dbeta = sum(dout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = 1e-5


@dataclass(frozen=True)
class Case:
    """One layer: forward(*inputs) -> (out, cache), backward(dout, cache) -> gradients."""

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator], tuple[Any, ...]]
    bug: str | None = None  # None: a correct layer
    expect: tuple[str, ...] = ()  # substrings of str(report)
    options: dict[str, Any] = field(default_factory=dict)
    torch_ok: bool = True  # can be wrapped as a torch.autograd.Function (no int constants)
    # the correct backward, for wrong layers without a plain pattern: the report must lead with
    # the entry where the two differ most
    right: Callable[..., Any] | None = None

    def inputs(self, seed: int = 0) -> tuple[Any, ...]:
        return self.make_inputs(np.random.default_rng(seed))


# --- batch norm ---------------------------------------------------------------------------------


def bn_forward(x, gamma, beta):
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    std = np.sqrt(var + EPS)
    x_hat = xc / std
    return gamma * x_hat + beta, (x_hat, gamma, std, xc, var)


def bn_forward_npvar(x, gamma, beta):
    """The same batch norm with np.var: not complex-analytic, so no complex step."""
    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0)
    std = np.sqrt(var + EPS)
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, gamma, std, x - mu, var)


def _bn_dx(dout, x_hat, gamma, std, m_mean=None, m_var=None):
    dx_hat = dout * gamma
    m = dout.shape[0]
    m_mean = m if m_mean is None else m_mean
    m_var = m if m_var is None else m_var
    return (dx_hat - dx_hat.sum(0) / m_mean - x_hat * (dx_hat * x_hat).sum(0) / m_var) / std


def bn_backward(dout, cache):
    x_hat, gamma, std, _, _ = cache
    return _bn_dx(dout, x_hat, gamma, std), (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_no_var_term(dout, cache):
    x_hat, gamma, std, _, _ = cache
    dx_hat = dout * gamma
    return (dx_hat - dx_hat.mean(0)) / std, (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_no_mean_term(dout, cache):
    x_hat, gamma, std, _, _ = cache
    dx_hat = dout * gamma
    dx = (dx_hat - x_hat * (dx_hat * x_hat).mean(0)) / std
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_sign(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return -dx, dgamma, dbeta


def bn_backward_no_1_over_m(dout, cache):
    x_hat, gamma, std, _, _ = cache
    dx_hat = dout * gamma
    m = dout.shape[0]
    # forgot the 1/m in front of the whole expression
    dx = (m * dx_hat - dx_hat.sum(0) - x_hat * (dx_hat * x_hat).sum(0)) / std
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_swapped(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return dx, dbeta, dgamma


def bn_backward_unbiased(dout, cache):
    x_hat, gamma, std, _, _ = cache
    m = dout.shape[0]
    return _bn_dx(dout, x_hat, gamma, std, m_var=m - 1), (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_other_eps(dout, cache):
    x_hat, gamma, _, xc, var = cache
    std = np.sqrt(var + 1e-3)  # the forward used 1e-5
    return _bn_dx(dout, xc / std, gamma, std), (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_eps_outside_sqrt(dout, cache):
    x_hat, gamma, _, xc, var = cache
    std = np.sqrt(var) + EPS  # eps outside the square root, in the backward only
    return _bn_dx(dout, xc / std, gamma, std), (dout * x_hat).sum(0), dout.sum(0)


def bn_backward_scaled(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return dx * 1.001, dgamma, dbeta


def bn_backward_one_feature(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    dx = dx.copy()
    dx[:, 1] *= 1.001
    return dx, dgamma, dbeta


def bn_backward_zero_dgamma(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return dx, np.zeros_like(dgamma), dbeta


def bn_backward_two_grads(dout, cache):
    dx, dgamma, _ = bn_backward(dout, cache)
    return dx, dgamma


def bn_backward_dx_transposed(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return dx.T, dgamma, dbeta


def bn_backward_nan(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    dx = dx.copy()
    dx[0, 0] = np.nan
    return dx, dgamma, dbeta


def bn_backward_dict(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout, cache)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def bn_forward_mutating(x, gamma, beta):
    x -= x.mean(axis=0)  # centers the caller's array in place
    var = (x * x).mean(axis=0)
    std = np.sqrt(var + EPS)
    x_hat = x / std
    return gamma * x_hat + beta, (x_hat, gamma, std, x, var)


def bn_forward_dropout(x, gamma, beta):
    out, cache = bn_forward(x, gamma, beta)
    mask = np.random.default_rng().random(out.shape) > 0.5  # unseeded: differs on every call
    return out * mask / 0.5, cache


def bn_forward_nan(x, gamma, beta):
    out, cache = bn_forward(x, gamma, beta)
    out = out.copy()
    out[0, 0] = np.nan  # a bug in the forward: its gradient cannot be judged numerically
    return out, cache


def bn_forward_float32_inside(x, gamma, beta):
    out, cache = bn_forward(x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32))
    return out.astype(x.dtype), cache


def bn_backward_float32_inside(dout, cache):
    dx, dgamma, dbeta = bn_backward(dout.astype(np.float32), cache)
    return dx.astype(np.float64), dgamma.astype(np.float64), dbeta.astype(np.float64)


def bn_inputs(n, d, dtype=np.float64, scale=1.0, shift=0.0):
    def make(rng):
        x = (rng.normal(size=(n, d)) * scale + shift).astype(dtype)
        gamma = rng.normal(1.0, 0.3, size=d).astype(dtype)
        beta = rng.normal(size=d).astype(dtype)
        return x, gamma, beta

    return make


def bn_inputs_with_outlier(rng):
    x, gamma, beta = bn_inputs(8, 3)(rng)
    x[0, 0] = 1e5  # one entry far from the rest: its column's spread is ~3e4, the others' ~1
    return x, gamma, beta


# --- affine -------------------------------------------------------------------------------------


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def affine_backward_dw_transposed(dout, cache):
    x, w = cache
    return dout @ w.T, (x.T @ dout).T, dout.sum(axis=0)


def affine_backward_mean_db(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)


def affine_inputs(n, d, k):
    def make(rng):
        return rng.normal(size=(n, d)), rng.normal(size=(d, k)), rng.normal(size=k)

    return make


# --- leaky ReLU ---------------------------------------------------------------------------------

ALPHA = 0.01


def leaky_relu_forward(x):
    return np.where(x > 0, x, ALPHA * x), x


def leaky_relu_backward(dout, x):
    return np.where(x > 0, dout, ALPHA * dout)


def leaky_relu_backward_relu(dout, x):
    return np.where(x > 0, dout, 0.0)  # the plain ReLU's backward: slope 0 for x < 0


def leaky_relu_inputs_with_zeros(rng):
    x = rng.normal(size=(4, 5))
    x[1, 2] = 0.0  # exactly at the kink
    return (x,)


# --- max pooling over pairs of features ---------------------------------------------------------


def maxpool_forward(x):
    n, d = x.shape
    windows = x.reshape(n, d // 2, 2)
    return windows.max(axis=2), (x.shape, windows.argmax(axis=2))


def maxpool_backward(dout, cache):
    shape, arg = cache
    n, d = shape
    dx = np.zeros((n, d // 2, 2))
    np.put_along_axis(dx, arg[..., None], dout[..., None], axis=2)
    return dx.reshape(shape)


def maxpool_backward_wrong_element(dout, cache):
    shape, arg = cache
    n, d = shape
    dx = np.zeros((n, d // 2, 2))
    np.put_along_axis(dx, 1 - arg[..., None], dout[..., None], axis=2)  # the smaller one
    return dx.reshape(shape)


def maxpool_inputs_with_tie(rng):
    x = rng.normal(size=(3, 6))
    x[0, 1] = x[0, 0]  # a tie in the first window
    return (x,)


# --- softmax cross-entropy with integer labels (a constant input) ------------------------------


def softmax_ce_forward(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), y]).mean()
    return loss, (p, y)


def softmax_ce_backward(dout, cache):
    p, y = cache
    n = p.shape[0]
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return dx * dout / n, None


def softmax_ce_backward_no_mean(dout, cache):
    p, y = cache
    dx = p.copy()
    dx[np.arange(p.shape[0]), y] -= 1
    return dx * dout, None  # forgot the 1/N of the mean


def softmax_ce_backward_no_onehot(dout, cache):
    p, _ = cache
    return p * dout / p.shape[0], None  # forgot to subtract the one-hot labels


def softmax_inputs(rng):
    return rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)


# --- layer norm (normalizes each row over its features, axis 1) -------------------------------


def layernorm_forward(x, gamma, beta):
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    std = np.sqrt(var + EPS)
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, gamma, std)


def layernorm_backward(dout, cache):
    x_hat, gamma, std = cache
    dx_hat = dout * gamma
    dx = (
        dx_hat
        - dx_hat.mean(axis=1, keepdims=True)
        - x_hat * (dx_hat * x_hat).mean(axis=1, keepdims=True)
    ) / std
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def layernorm_backward_batch_axis(dout, cache):
    x_hat, gamma, std = cache
    dx_hat = dout * gamma
    # means over the batch axis, as in batch norm: the wrong axis for layer norm
    dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std
    return dx, (dout * x_hat).sum(0), dout.sum(0)


# --- layers with np.abs, two outputs ------------------------------------------------------------


def abs_scale_forward(x, gamma, beta):
    return gamma * np.abs(x) + beta, (x, gamma)


def abs_scale_backward(dout, cache):
    x, gamma = cache
    return dout * gamma * np.sign(x), (dout * np.abs(x)).sum(0), dout.sum(0)


def two_outputs_forward(x, w):
    return (x * w, np.tanh(x)), (x, w)


def two_outputs_backward(dout, cache):
    d1, d2 = dout
    x, w = cache
    return d1 * w + d2 * (1 - np.tanh(x) ** 2), (d1 * x).sum(0)


def two_outputs_inputs(rng):
    return rng.normal(size=(5, 3)), rng.normal(size=3)


# --- convolution and max pooling written with Python loops, as course code writes them -------
# (out is a float array filled entry by entry: a complex step cannot pass through it)


def conv_naive_forward(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    n_, _, h, w_ = x.shape
    f_, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (w_ + 2 * pad - ww) // stride
    out = np.zeros((n_, f_, ho, wo))
    for n in range(n_):
        for f in range(f_):
            for i in range(ho):
                for j in range(wo):
                    window = xp[n, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def _conv_naive_backward(dout, cache, stride_in_dx=True):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    f_, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    n_, _, ho, wo = dout.shape
    for n in range(n_):
        for f in range(f_):
            for i in range(ho):
                for j in range(wo):
                    r, c = i * stride, j * stride
                    window = xp[n, :, r : r + hh, c : c + ww]
                    dw[f] += window * dout[n, f, i, j]
                    rx, cx = (r, c) if stride_in_dx else (i, j)  # the bug: no stride in dx
                    dxp[n, :, rx : rx + hh, cx : cx + ww] += w[f] * dout[n, f, i, j]
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, db


def conv_naive_backward(dout, cache):
    return _conv_naive_backward(dout, cache)


def conv_naive_backward_no_stride_in_dx(dout, cache):
    return _conv_naive_backward(dout, cache, stride_in_dx=False)


def conv_inputs(shape_x, shape_w, stride, pad):
    def make(rng):
        x, w = rng.normal(size=shape_x), rng.normal(size=shape_w)
        return x, w, rng.normal(size=shape_w[0]), {"stride": stride, "pad": pad}

    return make


def maxpool_naive_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n_, c_, h, w = x.shape
    ho, wo = 1 + (h - ph) // s, 1 + (w - pw) // s
    out = np.zeros((n_, c_, ho, wo))
    for n in range(n_):
        for c in range(c_):
            for i in range(ho):
                for j in range(wo):
                    out[n, c, i, j] = np.max(x[n, c, i * s : i * s + ph, j * s : j * s + pw])
    return out, (x, pool_param)


def _maxpool_naive_backward(dout, cache, first_of_window=False):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    n_, c_, ho, wo = dout.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(ho):
                for j in range(wo):
                    window = x[n, c, i * s : i * s + ph, j * s : j * s + pw]
                    k = 0 if first_of_window else int(np.argmax(window))  # the bug: entry 0
                    r, q = divmod(k, pw)
                    dx[n, c, i * s + r, j * s + q] += dout[n, c, i, j]
    return dx, None


def maxpool_naive_backward(dout, cache):
    return _maxpool_naive_backward(dout, cache)


def maxpool_naive_backward_first_entry(dout, cache):
    return _maxpool_naive_backward(dout, cache, first_of_window=True)


def maxpool_naive_inputs(shape):
    def make(rng):
        return rng.normal(size=shape), {"pool_height": 2, "pool_width": 2, "stride": 2}

    return make


# --- the corpus ---------------------------------------------------------------------------------

BN = bn_inputs(8, 3)

WRONG: list[Case] = [
    Case(
        "bn: missing variance term",
        bn_forward,
        bn_backward_no_var_term,
        BN,
        "dx misses the x_hat * mean(dx_hat * x_hat) term",
        ("FAILED", "x: ", "worst"),
        right=bn_backward,
    ),
    Case(
        "bn: missing mean term",
        bn_forward,
        bn_backward_no_mean_term,
        BN,
        "dx misses the mean(dx_hat) term",
        ("constant along axis 0 of x", "a mean over axis 0 missing"),
    ),
    Case(
        "bn: flipped sign",
        bn_forward,
        bn_backward_sign,
        BN,
        "dx has the wrong sign",
        ("flipped sign",),
    ),
    Case(
        "bn: missing 1/m",
        bn_forward,
        bn_backward_no_1_over_m,
        BN,
        "dx misses the 1/m",
        ("missing 1/m with m = 8",),
    ),
    Case(
        "bn: swapped dgamma and dbeta",
        bn_forward,
        bn_backward_swapped,
        BN,
        "dgamma and dbeta swapped",
        ("gradients of gamma and beta look swapped",),
    ),
    Case(
        "bn: unbiased variance in the backward",
        bn_forward,
        bn_backward_unbiased,
        BN,
        "1/(m-1) instead of 1/m in the backward only",
        ("FAILED", "x: "),
        right=bn_backward,
    ),
    Case(
        "bn: another eps in the backward",
        bn_forward,
        bn_backward_other_eps,
        bn_inputs(8, 3, scale=0.1),
        "eps=1e-3 in the backward, 1e-5 in the forward",
        ("FAILED", "x: "),
        right=bn_backward,
    ),
    Case(
        "bn: eps outside the sqrt in the backward",
        bn_forward,
        bn_backward_eps_outside_sqrt,
        BN,
        "sqrt(var) + eps in the backward",
        ("FAILED", "x: "),
        right=bn_backward,
    ),
    Case(
        "bn: 0.1% scale error",
        bn_forward,
        bn_backward_scaled,
        BN,
        "dx 0.1% too large",
        ("analytic = 1.001 x numerical", "(+0.1%)"),
    ),
    Case(
        "bn: one wrong feature",
        bn_forward,
        bn_backward_one_feature,
        BN,
        "dx[:, 1] 0.1% too large",
        ("mismatches are in x[:, 1]",),
    ),
    Case(
        "bn: dgamma all zero",
        bn_forward,
        bn_backward_zero_dgamma,
        BN,
        "dgamma never computed",
        ("gradient of gamma is zero everywhere",),
    ),
    Case(
        "bn: two gradients for three inputs",
        bn_forward,
        bn_backward_two_grads,
        BN,
        "dbeta not returned",
        ("returned 2 gradients for 3 inputs (x, gamma, beta)",),
    ),
    Case(
        "bn: dx transposed",
        bn_forward,
        bn_backward_dx_transposed,
        BN,
        "dx returned transposed",
        ("gradient of 'x' has shape (3, 8), expected (8, 3)", "transpose"),
    ),
    Case(
        "bn: NaN in dx",
        bn_forward,
        bn_backward_nan,
        BN,
        "NaN in dx",
        ("gradient of 'x' has 1 NaN/inf entries, first at index (0, 0)",),
    ),
    Case(
        "bn: forward mutates x",
        bn_forward_mutating,
        bn_backward,
        BN,
        "the forward centers x in place",
        ("modifies its input 'x' in place",),
    ),
    Case(
        "bn: random forward",
        bn_forward_dropout,
        bn_backward,
        BN,
        "dropout without a fixed seed",
        ("nondeterministic", "dropout"),
    ),
    Case(
        "affine: dw transposed",
        affine_forward,
        affine_backward_dw_transposed,
        affine_inputs(4, 3, 3),
        "dw = (x.T @ dout).T",
        ("w is the numerical one transposed",),
    ),
    Case(
        "affine: db averaged",
        affine_forward,
        affine_backward_mean_db,
        affine_inputs(4, 3, 2),
        "db = mean instead of sum",
        ("an extra 1/m with m = 4",),
    ),
    Case(
        "leaky relu: slope 0 for x < 0",
        leaky_relu_forward,
        leaky_relu_backward_relu,
        lambda rng: (rng.normal(size=(4, 5)),),
        "the ReLU backward",
        ("is 0 at 11 of 20 checked entries", "a mask that drops entries"),
    ),
    Case(
        "max pool: gradient to the smaller element",
        maxpool_forward,
        maxpool_backward_wrong_element,
        lambda rng: (rng.normal(size=(3, 6)),),
        "routes dout to the non-maximum",
        ("routed to the wrong entries",),
    ),
    Case(
        "softmax ce: missing 1/N",
        softmax_ce_forward,
        softmax_ce_backward_no_mean,
        softmax_inputs,
        "forgot the mean's 1/N",
        ("missing 1/m with m = 6",),
        torch_ok=False,
    ),
    Case(
        "softmax ce: no one-hot",
        softmax_ce_forward,
        softmax_ce_backward_no_onehot,
        softmax_inputs,
        "forgot subtracting the labels",
        ("at all 6 failing entries of x: a constant term", "one-hot"),
        torch_ok=False,
    ),
    Case(
        "conv (naive loops): no stride in dx",
        conv_naive_forward,
        conv_naive_backward_no_stride_in_dx,
        conv_inputs((1, 2, 5, 5), (2, 2, 3, 3), stride=2, pad=1),
        "dx accumulated at (i, j) instead of (i * stride, j * stride)",
        ("FAILED", "x: "),
        torch_ok=False,
    ),
    Case(
        "max pool (naive loops): gradient to the window's first entry",
        maxpool_naive_forward,
        maxpool_naive_backward_first_entry,
        maxpool_naive_inputs((1, 2, 4, 4)),
        "routes dout to the window's first entry, not its argmax",
        ("the gradient is routed to the wrong entries",),
        torch_ok=False,
    ),
    Case(
        "layer norm: batch axis in the backward",
        layernorm_forward,
        layernorm_backward_batch_axis,
        bn_inputs(5, 4),
        "means over axis 0",
        ("FAILED", "x: "),
        right=layernorm_backward,
    ),
]

CORRECT: list[Case] = [
    Case("bn float64", bn_forward, bn_backward, BN),
    Case("bn float32", bn_forward, bn_backward, bn_inputs(16, 4, np.float32)),
    Case("bn float32 (64, 32)", bn_forward, bn_backward, bn_inputs(64, 32, np.float32)),
    Case("bn large scale", bn_forward, bn_backward, bn_inputs(8, 3, scale=1e4, shift=3e3)),
    Case(
        "bn float32 large scale", bn_forward, bn_backward, bn_inputs(16, 4, np.float32, scale=1e3)
    ),
    Case("bn variance near eps", bn_forward, bn_backward, bn_inputs(8, 3, scale=1e-3)),
    Case("bn mean far above spread", bn_forward, bn_backward, bn_inputs(8, 3, shift=1e4)),
    Case("bn with an outlier", bn_forward, bn_backward, bn_inputs_with_outlier),
    Case("bn with np.var", bn_forward_npvar, bn_backward, BN),
    Case(
        "bn computing in float32 inside", bn_forward_float32_inside, bn_backward_float32_inside, BN
    ),
    Case("bn returning a dict", bn_forward, bn_backward_dict, BN),
    Case("affine", affine_forward, affine_backward, affine_inputs(4, 3, 2)),
    Case(
        "affine float32",
        affine_forward,
        affine_backward,
        lambda rng: tuple(a.astype(np.float32) for a in affine_inputs(5, 4, 3)(rng)),
    ),
    Case(
        "leaky relu",
        leaky_relu_forward,
        leaky_relu_backward,
        lambda rng: (rng.normal(size=(4, 5)),),
    ),
    Case(
        "leaky relu at its kink",
        leaky_relu_forward,
        leaky_relu_backward,
        leaky_relu_inputs_with_zeros,
    ),
    Case("max pool", maxpool_forward, maxpool_backward, lambda rng: (rng.normal(size=(3, 6)),)),
    Case("max pool with a tie", maxpool_forward, maxpool_backward, maxpool_inputs_with_tie),
    Case("softmax ce", softmax_ce_forward, softmax_ce_backward, softmax_inputs, torch_ok=False),
    Case("layer norm", layernorm_forward, layernorm_backward, bn_inputs(5, 4)),
    Case(
        "conv (naive loops), stride 1",
        conv_naive_forward,
        conv_naive_backward,
        conv_inputs((1, 2, 5, 5), (2, 2, 3, 3), stride=1, pad=1),
        torch_ok=False,
    ),
    Case(
        "conv (naive loops), stride 2",
        conv_naive_forward,
        conv_naive_backward,
        conv_inputs((1, 2, 5, 5), (2, 2, 3, 3), stride=2, pad=1),
        torch_ok=False,
    ),
    Case(
        "max pool (naive loops)",
        maxpool_naive_forward,
        maxpool_naive_backward,
        maxpool_naive_inputs((1, 2, 4, 4)),
        torch_ok=False,
    ),
    Case("abs inside", abs_scale_forward, abs_scale_backward, bn_inputs(6, 3)),
    Case(
        "two outputs", two_outputs_forward, two_outputs_backward, two_outputs_inputs, torch_ok=False
    ),
]

CASES = WRONG + CORRECT


# --- the family, term by term: batch, layer, group and spatial batch norm ----------------------
#
# One textbook backward with knobs, written out here (not from bnsym), for four layers. With the
# group's m values reduced over ``axes`` of the view of x, g = gamma * dout:
#
#     dx = (w_dy * g - w_mean * sum(g) / n_mean - w_xhat * x_hat * sum(g * x_hat) / n_var) / std
#
# right at w = 1 and n_mean = n_var = m; dgamma = sum(dout * x_hat) and dbeta = sum(dout) over
# the axes gamma is shared over. Each wrong layer turns one knob, and must get the diagnosis
# written beside it.


@dataclass(frozen=True)
class Norm:
    """A layer of the family: x's shape, the view whose ``axes`` hold a group, gamma along
    ``gamma_axis`` of x (every other axis of x is shared), and the words its terms use."""

    name: str
    shape: tuple[int, ...]
    view: tuple[int, ...]
    axes: tuple[int, ...]
    gamma_axis: int = 1
    g: str = "∂ℓ/∂y"  # "g" where gamma varies within a group (layer and group norm)

    @property
    def m(self) -> int:
        return int(np.prod([self.view[a] for a in self.axes]))

    @property
    def param_axes(self) -> tuple[int, ...]:
        return tuple(a for a in range(len(self.shape)) if a != self.gamma_axis)

    def gamma_shape(self, axis: int | None = None) -> tuple[int, ...]:
        shape = [1] * len(self.shape)
        shape[self.gamma_axis if axis is None else axis] = self.shape[self.gamma_axis]
        return tuple(shape)


BATCH = Norm("batch norm", (6, 6), (6, 6), (0,))
LAYER = Norm("layer norm", (5, 5), (5, 5), (1,), g="g")
SPATIAL = Norm("spatial batch norm", (2, 3, 4, 3), (2, 3, 4, 3), (0, 2, 3))
GROUP = Norm("group norm", (2, 4, 3, 4), (2, 2, 2, 3, 4), (2, 3, 4), g="g")  # G = 2


def family_forward(norm: Norm):
    def forward(x, gamma, beta):
        xv = x.reshape(norm.view)
        mu = xv.mean(axis=norm.axes, keepdims=True)
        var = ((xv - mu) ** 2).mean(axis=norm.axes, keepdims=True)
        std = np.sqrt(var + EPS)
        x_hat = ((xv - mu) / std).reshape(norm.shape)
        out = gamma.reshape(norm.gamma_shape()) * x_hat + beta.reshape(norm.gamma_shape())
        return out, (x_hat, gamma, std)

    forward.__qualname__ = norm.name.replace(" ", "_") + "_forward"
    return forward


def family_backward(
    norm: Norm,
    w_dy=1.0,
    w_mean=1.0,
    w_xhat=1.0,
    n_mean=None,
    n_var=None,
    gamma_axis=None,
    dgamma_axes=None,
):
    def backward(dout, cache):
        x_hat, gamma, std = cache
        g = (gamma.reshape(norm.gamma_shape(gamma_axis)) * dout).reshape(norm.view)
        xv_hat = x_hat.reshape(norm.view)
        total = g.sum(axis=norm.axes, keepdims=True)
        total_xhat = (g * xv_hat).sum(axis=norm.axes, keepdims=True)
        dx = (
            w_dy * g
            - w_mean * total / (n_mean or norm.m)
            - w_xhat * xv_hat * total_xhat / (n_var or norm.m)
        ) / std
        dgamma = (dout * x_hat).sum(axis=dgamma_axes or norm.param_axes)
        dbeta = dout.sum(axis=norm.param_axes)
        return dx.reshape(norm.shape), dgamma, dbeta

    backward.__qualname__ = norm.name.replace(" ", "_") + "_backward"
    return backward


def family_inputs(norm: Norm):
    def make(rng):
        C = norm.shape[norm.gamma_axis]
        return rng.normal(size=norm.shape), rng.normal(1.0, 0.3, size=C), rng.normal(size=C)

    return make


def _family_cases(norm: Norm) -> list[Case]:
    g, m = norm.g, norm.m
    xhat = f"−x̂·mean({g}·x̂)"
    letters = {2: ("N", "D"), 4: ("N", "C", "H", "W")}[len(norm.shape)]
    m_text = "·".join(
        {5: ("N", "G", "(C/G)", "H", "W")}.get(len(norm.view), letters)[a] for a in norm.axes
    )
    group = f"where the group has m = {m_text} = {m} values"

    def case(bug, expect, **knobs):
        return Case(
            f"{norm.name}: {bug}",
            family_forward(norm),
            family_backward(norm, **knobs),
            family_inputs(norm),
            bug,
            ("FAILED", *expect),
        )

    cases = [
        case("∂ℓ/∂y term dropped", [f"your ∂ℓ/∂x lacks the {g} term"], w_dy=0.0),
        case("mean term dropped", [f"your ∂ℓ/∂x lacks the −mean({g}) term"], w_mean=0.0),
        case("x̂ term dropped", [f"your ∂ℓ/∂x lacks the {xhat} term"], w_xhat=0.0),
        case("∂ℓ/∂y term's sign", [f"has the {g} term with the wrong sign"], w_dy=-1.0),
        case("mean term's sign", [f"has the −mean({g}) term with the wrong sign"], w_mean=-1.0),
        case("x̂ term's sign", [f"has the {xhat} term with the wrong sign"], w_xhat=-1.0),
        case(
            "1/(m − 1) for 1/m in the x̂ term",
            [f"has the {xhat} term scaled by 1/(m − 1) {group}"],
            n_var=m - 1,
        ),
    ]
    if len(norm.shape) == 4:  # the means divided by fewer values than the group has
        fewer, text = (norm.shape[0], "N") if norm is SPATIAL else (12, "(H·W)")
        cases.append(
            case(
                f"1/{text} for 1/m in both means",
                [
                    f"has the −mean({g}) term scaled by 1/{text} {group}",
                    f"has the {xhat} term scaled by 1/{text} {group}",
                ],
                n_mean=fewer,
                n_var=fewer,
            )
        )
    wrong_axis = len(norm.shape) - 1 if len(norm.shape) == 4 else 0
    gamma_where = f"axis {norm.gamma_axis} of x ({letters[norm.gamma_axis]})"
    cases.append(
        case(
            "gamma broadcast over the wrong axis",
            [
                f"your ∂ℓ/∂x takes γ along axis {wrong_axis} of x ({letters[wrong_axis]}) where "
                f"γ belongs to {gamma_where}"
            ],
            gamma_axis=wrong_axis,
        )
    )
    wrong_sum = (1,) if len(norm.shape) == 2 else (0, 1, 2)
    word = "axis" if len(wrong_sum) == 1 else "axes"
    shared = norm.param_axes
    cases.append(
        case(
            "dgamma summed over the wrong axis",
            [
                f"your ∂ℓ/∂γ sums ∂ℓ/∂y·x̂ over {word} {', '.join(map(str, wrong_sum))} of x",
                f"where γ is shared over {'axis' if len(shared) == 1 else 'axes'} "
                f"{', '.join(map(str, shared))} of x",
            ],
            dgamma_axes=wrong_sum,
        )
    )
    return cases


FAMILY = [BATCH, LAYER, SPATIAL, GROUP]
FAMILY_WRONG: list[Case] = [c for norm in FAMILY for c in _family_cases(norm)]
FAMILY_CORRECT: list[Case] = [
    Case(f"{n.name}", family_forward(n), family_backward(n), family_inputs(n)) for n in FAMILY
]
