"""Layer norm over the last axis in NumPy with its jvp, right and wrong (``wrong`` as in
``corpus_jvp``: ``"factor"``, ``"mean"``, ``"gamma"``), for the checker's forward-mode tests that
need no PyTorch. The closed forms are those of ``corpus_jvp``'s docstring."""

from __future__ import annotations

import numpy as np

EPS = 1e-5


def np_layer_norm(x, gamma, beta):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + EPS)
    return gamma * xc * rstd + beta


def np_layer_norm_jvp(x, gamma, beta, tx, tgamma, tbeta, wrong=None):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + EPS)
    x_hat = xc * rstd
    centred = tx if wrong == "mean" else tx - tx.mean(-1, keepdims=True)
    t_hat = rstd * (centred - x_hat * (tx * x_hat).mean(-1, keepdims=True))
    ty = (2.0 if wrong == "factor" else 1.0) * gamma * t_hat + tbeta
    if wrong != "gamma":
        ty = ty + tgamma * x_hat
    return gamma * x_hat + beta, ty
