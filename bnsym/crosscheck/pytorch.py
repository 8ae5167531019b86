"""PyTorch in ``bnsym check``: importing it, and the layer as autograd computes it.

Two PyTorch layers, in the layer's own layout, for every order:

- the **fused kernel**, ``torch.nn.functional.<name>``, where the oracle table has one for the
  layer and it computes the variant (:class:`~bnsym.crosscheck.oracles.TorchKernel`);
- the **torch-elementary** layer, built from the declaration by :func:`elementary`: means,
  squares and a square root over the groups, differentiated by autograd's own rules. It exists
  for every layer and every variant, so a layer with no fused kernel is still compared with
  PyTorch, and never with another layer's kernel.

When PyTorch is not installed, every order's report says so with :data:`INSTALL`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnsym.crosscheck.oracles import TorchKernel, called
from bnsym.reference.declared import groups, ungroup

__all__ = ["INSTALL", "elementary", "fused", "import_torch", "no_kernel"]

#: The advice when PyTorch is missing, the same at every order: the extra pins the version the
#: comparisons were measured with (installing the latest torch may bring another, and with
#: it a different set of wheels).
INSTALL = "PyTorch is not installed; pip install 'bnsym[torch]' adds the tested version."

#: A PyTorch layer as the check calls it: ``(x, gamma, beta, eps, running) -> y`` on tensors
#: in the layer's layout; gamma, beta and running (``(mean, var)``, eval mode) may be None.
TorchLayer = Callable[[Any, Any, Any, float, Any], Any]


def import_torch() -> Any | None:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def no_kernel(o: Any) -> str:
    """The report's words for a layer without a fused kernel in the oracle table."""
    return (
        f"no fused PyTorch kernel for {called(o.layer)}; torch-elementary is autograd through "
        "its means, squares and square root, built from its declaration."
    )


def fused(torch: Any, kernel: TorchKernel, o: Any) -> TorchLayer:
    """The fused ``kernel`` of the oracle table, called for the options ``o``, as a TorchLayer."""
    F = torch.nn.functional

    def layer(x: Any, gamma: Any, beta: Any, eps: float, running: Any) -> Any:
        return kernel.call(F, x, gamma, beta, eps, running, o)

    return layer


def elementary(torch: Any, o: Any) -> TorchLayer:
    """The layer of the options ``o`` (its declaration, m, channels, variant) written in means,
    squares and a square root over its groups ``(N, P, m)``, γ and β given to each value as
    the declaration shares them; eval mode normalizes with the running statistics, one per
    group, held constant. Every variant: ε inside, outside or sqrt-outside, the unbiased
    variance, no γ and β, no β."""
    decl, m = o.layer, o.m
    K = decl.param_count(m, o.channels)
    index = list(decl.param_index(m, o.channels))  # each value's γ within its group's K
    k = 1.0 / (m - 1) if o.variance == "unbiased" else 1.0 / m

    def denominator(var: Any, eps: float) -> Any:
        if o.eps_placement == "inside":
            return torch.sqrt(var + eps)
        return torch.sqrt(var) + (eps**0.5 if o.eps_placement == "sqrt-outside" else eps)

    def layer(x: Any, gamma: Any, beta: Any, eps: float, running: Any) -> Any:
        g = groups(decl, x, m)
        if running is not None:  # eval mode: the running statistics (P,), constants
            centre = g - running[0][:, None] if decl.centred else g  # no mean if not centred
            xhat = centre / denominator(running[1][:, None], eps)
        elif decl.centred:
            xmu = g - g.mean(dim=-1, keepdim=True)
            xhat = xmu / denominator((xmu * xmu).sum(dim=-1, keepdim=True) * k, eps)
        else:  # the root mean square
            xhat = g / denominator((g * g).mean(dim=-1, keepdim=True), eps)
        if gamma is not None:  # (P*K,) as (P, m): each value's γ
            xhat = xhat * gamma.reshape(-1, K)[:, index]
            if beta is not None:
                xhat = xhat + beta.reshape(-1, K)[:, index]
        return ungroup(decl, xhat, x.shape)

    return layer
