"""Layer norm over the last axis as custom ``torch.autograd.Function``s with a ``jvp``, right and
wrong, for the checker's forward-mode tests; and the same layer in NumPy with its jvp.

Every Function has the right forward and backward; ``WRONG`` names what is wrong with its jvp:

- ``None``: right, and differentiable (written in differentiable operations on the saved inputs);
- ``"factor"``: the x part of the tangent twice over;
- ``"mean"``: the tangent's mean over the group is not subtracted (a missing term of the mean);
- ``"gamma"``: the tangent of gamma is dropped;
- ``"detached"``: right at order 1, but computed on detached inputs, so its own derivative (the
  vjp of the jvp, the Hessian's blocks) misses every term through x and gamma.

The closed forms, for rows x of D values, mu = mean(x), rstd = 1 / sqrt(var(x) + eps),
x_hat = (x - mu) rstd, y = gamma x_hat + beta:

    dx = rstd (g - mean(g) - x_hat mean(g x_hat)),  g = dy gamma
    ty = gamma rstd (tx - mean(tx) - x_hat mean(tx x_hat)) + tgamma x_hat + tbeta
"""

from __future__ import annotations

import torch
from corpus_jvp_numpy import EPS, np_layer_norm, np_layer_norm_jvp  # noqa: F401 - re-exported


def _stats(x):
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    rstd = 1.0 / torch.sqrt((xc * xc).mean(-1, keepdim=True) + EPS)
    return xc * rstd, rstd


def _jvp(x, gamma, tx, tgamma, tbeta, wrong):
    if wrong == "detached":
        x, gamma = x.detach(), gamma.detach()
    x_hat, rstd = _stats(x)
    tx = torch.zeros_like(x) if tx is None else tx
    centred = tx if wrong == "mean" else tx - tx.mean(-1, keepdim=True)
    t_hat = rstd * (centred - x_hat * (tx * x_hat).mean(-1, keepdim=True))
    ty = (2.0 if wrong == "factor" else 1.0) * gamma * t_hat
    if tgamma is not None and wrong != "gamma":
        ty = ty + tgamma * x_hat
    if tbeta is not None:
        ty = ty + tbeta
    return ty


def layer_norm_function(wrong: str | None = None, name: str | None = None) -> type:
    """A new-style Function (setup_context): torch.func and forward_ad both take it."""

    class LayerNorm(torch.autograd.Function):
        WRONG = wrong

        @staticmethod
        def forward(x, gamma, beta):
            x_hat, _ = _stats(x)
            return gamma * x_hat + beta

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, gamma, _ = inputs
            ctx.save_for_backward(x, gamma)
            ctx.save_for_forward(x, gamma)

        @staticmethod
        def backward(ctx, dy):
            x, gamma = ctx.saved_tensors
            x_hat, rstd = _stats(x)
            g = dy * gamma
            dx = rstd * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True))
            rows = tuple(range(x.dim() - 1))
            return dx, (dy * x_hat).sum(rows), dy.sum(rows)

        @staticmethod
        def jvp(ctx, tx, tgamma, tbeta):
            x, gamma = ctx.saved_tensors
            return _jvp(x, gamma, tx, tgamma, tbeta, wrong)

    LayerNorm.__name__ = LayerNorm.__qualname__ = name or f"LayerNorm_{wrong or 'right'}"
    return LayerNorm


class OldStyleLayerNorm(torch.autograd.Function):
    """The same layer written the old way (forward(ctx, ...)): forward_ad takes it."""

    @staticmethod
    def forward(ctx, x, gamma, beta):
        ctx.save_for_backward(x, gamma)
        ctx.save_for_forward(x, gamma)
        x_hat, _ = _stats(x)
        return gamma * x_hat + beta

    @staticmethod
    def backward(ctx, dy):
        return layer_norm_function().backward(ctx, dy)

    @staticmethod
    def jvp(ctx, tx, tgamma, tbeta):
        x, gamma = ctx.saved_tensors
        return _jvp(x, gamma, tx, tgamma, tbeta, None)


class NoJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, dy):
        return 2 * dy


class RaisingJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, dy):
        return 2 * dy

    @staticmethod
    def jvp(ctx, tx):
        raise RuntimeError("jvp not written yet")


def layer_norm_inputs(shape=(4, 6), dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    gamma = (1 + 0.3 * torch.randn(shape[-1], generator=gen, dtype=torch.float64)).to(dtype)
    beta = torch.randn(shape[-1], generator=gen, dtype=torch.float64).to(dtype)
    return x, gamma, beta
