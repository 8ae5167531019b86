"""The layers docs/gradcheck.md checks from the shell (``bnsym gradcheck mylayers:…``): an
affine layer, and a softmax loss with integer labels, in the course-assignment contract
``forward(*inputs) -> (out, cache)``, ``backward(dout, cache) -> one gradient per input``."""

import numpy as np


def affine_forward(x, w, b):
    out = x @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(x.shape[0]), y]).mean(), (p, y)


def softmax_loss_backward(dout, cache):
    p, y = cache
    dx = p.copy()
    dx[np.arange(p.shape[0]), y] -= 1
    return dx * dout / p.shape[0], None  # no gradient for the labels
