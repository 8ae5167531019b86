"""The normalization family in low precision: PyTorch's fused kernels, and hand-written
``torch.autograd.Function``s with right and wrong backwards, for the low-precision checks.

A case is (layer, shape). A layer is described by the axes a group is reduced over, how x is
viewed so that the groups are (N, G, rest) (group norm), and how gamma and beta broadcast, so
one hand-written Function serves layer, RMS, batch (plain and spatial) and group norm. It
computes in the inputs' dtype, every operation rounded to it (PyTorch's reductions accumulate
in float32 and round once), as a bfloat16 kernel written in torch operations does.

The wrong backwards (``WRONG``) are the family bugs of issue 19 item 1: each term dropped, each
sign flipped, 1/N for 1/(N H W), 1/(m - 1) for 1/m, gamma along the wrong axis, dgamma summed
over the wrong axis. The design follows the study in research-19 (/work/proto-19/family.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-5
SHAPES = [(8, 64), (32, 256), (4, 8, 4096)]
LAYERS = ["layernorm", "rmsnorm", "batchnorm", "groupnorm"]
GROUPS = {(8, 64): 8, (32, 256): 16, (4, 8, 4096): 2}  # group norm's G per shape


@dataclass(frozen=True)
class Geometry:
    layer: str
    shape: tuple[int, ...]

    @property
    def groups(self) -> int:
        return GROUPS[self.shape] if self.layer == "groupnorm" else 1

    @property
    def centred(self) -> bool:
        return self.layer != "rmsnorm"

    @property
    def pdim(self) -> int:
        return self.shape[-1] if self.layer in ("layernorm", "rmsnorm") else self.shape[1]

    @property
    def pshape(self) -> tuple[int, ...]:
        if self.layer in ("layernorm", "rmsnorm"):
            return (1,) * (len(self.shape) - 1) + (self.shape[-1],)
        return (1, self.shape[1]) + (1,) * (len(self.shape) - 2)

    def grouped(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(self.shape[0], self.groups, -1) if self.layer == "groupnorm" else t

    @property
    def red(self) -> tuple[int, ...]:
        n = len(self.shape)
        if self.layer in ("layernorm", "rmsnorm"):
            return (n - 1,)
        if self.layer == "groupnorm":
            return (2,)
        return (0,) + tuple(range(2, n))  # batch norm: every axis but the channels

    @property
    def m(self) -> int:
        g = self.grouped(torch.empty(self.shape))
        out = 1
        for a in self.red:
            out *= g.shape[a]
        return out

    @property
    def batch_len(self) -> int:
        """The length a 1/N uses instead of 1/m (spatial batch norm, group norm)."""
        if self.layer == "batchnorm":
            return self.shape[0]
        if self.layer == "groupnorm":
            return self.shape[1] // self.groups
        return self.m

    def __str__(self) -> str:
        return f"{self.layer}{list(self.shape)}"


def geometries() -> list[Geometry]:
    return [Geometry(layer, shape) for layer in LAYERS for shape in SHAPES]


def make_inputs(geo: Geometry, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """x ~ N(0.5, 1) (a mean the layer must remove), gamma ~ N(1, 0.3), beta ~ N(0, 0.3),
    rounded to dtype; RMS norm has no beta."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(geo.shape, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    gamma = (1 + 0.3 * torch.randn(geo.pdim, generator=g, dtype=torch.float64)).to(dtype)
    beta = (0.3 * torch.randn(geo.pdim, generator=g, dtype=torch.float64)).to(dtype)
    return [x, gamma] if geo.layer == "rmsnorm" else [x, gamma, beta]


def fused(geo: Geometry):
    """PyTorch's own F.<layer> of (x, gamma[, beta]): the fused CPU kernels (RMS norm is a
    composite on the CPU), right in every dtype."""
    if geo.layer == "layernorm":
        return lambda x, w, b: F.layer_norm(x, (geo.shape[-1],), w, b, EPS)
    if geo.layer == "rmsnorm":
        return lambda x, w: F.rms_norm(x, (geo.shape[-1],), w, EPS)
    if geo.layer == "groupnorm":
        return lambda x, w, b: F.group_norm(x, geo.groups, w, b, EPS)

    def batch_norm(x, w, b):
        c = geo.shape[1]
        rm, rv = torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype)
        return F.batch_norm(x, rm, rv, w, b, training=True, eps=EPS)

    return batch_norm


WRONG = {
    "drop_mean": "the -mean(dy gamma) term dropped",
    "drop_proj": "the x_hat mean(dy gamma x_hat) term dropped",
    "sign_mean": "+mean(dy gamma) instead of -",
    "sign_proj": "+x_hat mean(...) instead of -",
    "group_size": "1/N for 1/(N H W) in both means (spatial and group norm)",
    "group_size_proj": "1/N for 1/(N H W) in the x_hat term only",
    "unbiased": "1/(m - 1) for 1/m in the x_hat term",
    "unbiased_mean": "1/(m - 1) for 1/m in the mean term",
    "gamma_axis": "gamma applied along the wrong axis of its (2, D/2) view",
    "dgamma_axis": "dgamma summed over the wrong axis of its (2, D/2) view",
}
# below what bfloat16 resolves at large m (a relative 1/m): research-19 §2c
SUBTLE = ("unbiased", "unbiased_mean")


def applies(geo: Geometry, bug: str) -> bool:
    if bug in ("drop_mean", "sign_mean", "unbiased_mean") and not geo.centred:
        return False
    if bug.startswith("group_size"):
        return geo.layer in ("batchnorm", "groupnorm") and len(geo.shape) > 2
    return True


def cases(bugs=WRONG) -> list[tuple[Geometry, str]]:
    return [(geo, bug) for geo in geometries() for bug in bugs if applies(geo, bug)]


def _sum_except_param(t: torch.Tensor, geo: Geometry) -> torch.Tensor:
    return t.sum(dim=tuple(i for i, s in enumerate(geo.pshape) if s == 1))


def _wrong_axis(p: torch.Tensor) -> torch.Tensor:
    return p.reshape(2, -1).T.reshape(-1)


def handwritten(geo: Geometry, bug: str | None = None):
    """The layer as a Function computing in its inputs' dtype, with the backward ``bug``."""
    centred, m = geo.centred, geo.m

    class Norm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta=None):
            xg = geo.grouped(x)
            xc = xg - xg.mean(dim=geo.red, keepdim=True) if centred else xg
            rstd = torch.rsqrt((xc * xc).mean(dim=geo.red, keepdim=True) + EPS)
            x_hat = (xc * rstd).reshape(x.shape)
            y = x_hat * gamma.reshape(geo.pshape)
            if beta is not None:
                y = y + beta.reshape(geo.pshape)
            ctx.save_for_backward(x_hat, rstd, gamma)
            ctx.has_beta = beta is not None
            return y

        @staticmethod
        def backward(ctx, dy):
            x_hat, rstd, gamma = ctx.saved_tensors
            g = _wrong_axis(gamma) if bug == "gamma_axis" else gamma
            dxh, xh = geo.grouped(dy * g.reshape(geo.pshape)), geo.grouped(x_hat)
            m_mean = m_proj = m
            if bug == "group_size":
                m_mean = m_proj = geo.batch_len
            if bug == "group_size_proj":
                m_proj = geo.batch_len
            if bug == "unbiased":
                m_proj = m - 1
            if bug == "unbiased_mean":
                m_mean = m - 1
            mean_term = dxh.sum(dim=geo.red, keepdim=True) / m_mean
            proj_term = xh * ((dxh * xh).sum(dim=geo.red, keepdim=True) / m_proj)
            sign_mean = {"drop_mean": 0, "sign_mean": 1}.get(bug or "", -1)
            sign_proj = {"drop_proj": 0, "sign_proj": 1}.get(bug or "", -1)
            inner = dxh
            if centred and sign_mean:
                inner = inner + sign_mean * mean_term
            if sign_proj:
                inner = inner + sign_proj * proj_term
            dx = (inner * rstd).reshape(dy.shape)
            dgamma = _sum_except_param(dy * x_hat, geo)
            if bug == "dgamma_axis":
                dgamma = _wrong_axis(dgamma)
            dbeta = _sum_except_param(dy, geo) if ctx.has_beta else None
            return dx, dgamma, dbeta

    Norm.__name__ = Norm.__qualname__ = f"{geo.layer}_{bug or 'right'}"
    return Norm.apply


def wrong_in_low_precision_only(geo: Geometry, bug: str):
    """The layer whose bfloat16 and float16 path has the backward ``bug`` and whose float64
    path is right, as a kernel library with a separate low-precision kernel: only the judge of
    the low-precision gradients can see the bug."""
    right, wrong = handwritten(geo), handwritten(geo, bug)

    def layer(*inputs):
        low = inputs[0].dtype in (torch.bfloat16, torch.float16)
        return (wrong if low else right)(*inputs)

    layer.__name__ = layer.__qualname__ = f"{geo.layer}_{bug}_in_low_precision"
    return layer
