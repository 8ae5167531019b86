"""``bnsym check --order 2|3``: the double backward (and its derivative) checked four ways.

On seeded random data in the layer's layout (the data of :mod:`bnsym.check`), each
implementation computes the results of the order:

- order 2: ``gx``, ``gdout``, ``ggamma`` — the gradients of ℓ₂ = Σ gdx·dx + Σ gdgamma·dgamma
  + Σ gdbeta·dbeta with respect to x, dout and γ;
- order 3: ``tx``, ``tdout``, ``tgamma`` — the gradients of ℓ₃ = Σ tgx·gx + Σ tgdout·gdout +
  Σ tggamma·ggamma (the double backward's vector-Jacobian product).

The implementations: ``generated`` (order 2: the generated ``double_backward``), ``exact``
(the chain rule's symbolic steps of :mod:`bnsym.higher` evaluated at the inputs in 50-digit
arithmetic), ``differences`` (complex-step differences of the generated order below:
``backward`` for order 2, ``double_backward`` for order 3; exact to rounding, unlike central
differences), and, where PyTorch is installed, ``torch-native`` (``F.batch_norm``,
``F.layer_norm``, … differentiated by autograd) and ``torch-elementary`` (autograd through
the same layer written in elementary operations). Every pair is compared; an implementation
that disagrees with all the others, which agree among themselves, is named the odd one out,
with its worst entry and both numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from bnsym import check
from bnsym.codegen_higher import GeneratedModule2, generate_higher
from bnsym.higher import derive_higher, evaluate
from bnsym.symbolic import Derivation

__all__ = ["HigherCheck", "run_check_higher"]

#: |a − b| ≤ RTOL·max|exact| per quantity: every implementation works in float64 (the exact
#: one in 50 digits) on data of order 1 with σ of order 1, where rounding stays near 1e-14
#: relative; 1e-9 leaves five orders of magnitude of margin, and a wrong term is O(1).
RTOL = 1e-9
NAMES = {2: ("gx", "gdout", "ggamma"), 3: ("tx", "tdout", "tgamma")}


@dataclass(frozen=True)
class Row:
    quantity: str
    pair: str
    abs_error: float
    rel_error: float
    worst: tuple[int, ...]
    a: float
    b: float

    @property
    def passed(self) -> bool:
        return bool(self.rel_error <= RTOL)


@dataclass(frozen=True)
class HigherCheck:
    """The rows of every pair and the odd ones out; ``table()`` prints them."""

    header: str
    rows: list[Row]
    odd: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        lines = [
            self.header,
            f"Relative error: max|a - b| / max|exact| per quantity; tolerance {RTOL:g}.",
            "",
            f"{'quantity':<8} {'pair':<36} {'max abs error':>13} {'max rel error':>13}  verdict",
        ]
        for r in self.rows:
            verdict = "ok" if r.passed else f"DIFFERS at {r.worst}: {r.a!r} vs {r.b!r}"
            lines.append(
                f"{r.quantity:<8} {r.pair:<36} {r.abs_error:13.2e} {r.rel_error:13.2e}  {verdict}"
            )
        lines.append("")
        lines += self.odd
        n = len(self.rows)
        bad = sum(not r.passed for r in self.rows)
        lines.append(f"OK: all {n} comparisons agree." if not bad else f"FAILED: {bad} of {n}.")
        return "\n".join(lines) + "\n"


def run_check_higher(
    d: Derivation, order: int, features: int = 3, seed: int = 0, torch: bool | None = None
) -> HigherCheck:
    """Compare the implementations of ``order`` (2 or 3) on seeded data (module docstring).

    ``torch=None`` uses PyTorch when it is importable; True requires it (CheckError if not).
    """
    gen = generate_higher(d)
    eps = 1e-5 if d.options.eps is None else float(d.options.eps)
    data = check._data(gen, features, seed)
    rng = np.random.default_rng(seed + 1)
    for name in ("gdx", "tgx", "tgdout"):
        data[name] = rng.standard_normal(data["x"].shape)
    for name in ("gdgamma", "gdbeta", "tggamma"):
        data[name] = rng.standard_normal(data["gamma"].shape)
    impls: dict[str, Callable[[], tuple[np.ndarray, ...]]] = {
        "exact": lambda: _exact(gen, data, eps, order),
        "differences": lambda: _differences(gen, data, eps, order),
    }
    if order == 2:
        impls = {"generated": lambda: _double(gen, data, eps), **impls}
    torch_mod = _import_torch(torch)
    if torch_mod is not None:
        if d.options.variance == "biased":
            impls["torch-native"] = lambda: _torch(torch_mod, gen, data, eps, order, native=True)
        impls["torch-elementary"] = lambda: _torch(torch_mod, gen, data, eps, order, native=False)
    results = {name: f() for name, f in impls.items()}
    rows = []
    names = list(results)
    for q, quantity in enumerate(NAMES[order]):
        scale = float(np.max(np.abs(results["exact"][q]))) or 1.0
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                rows.append(_compare(quantity, a, b, results[a][q], results[b][q], scale))
    o = d.options
    header = (
        f"bnsym check --order {order} --layer {o.layer}: m = {o.m}, x {data['x'].shape}, "
        f"seed = {seed}, eps = {eps:g}; {', '.join(names)}."
    )
    return HigherCheck(header, rows, _odd_one_out(rows, names))


def _compare(quantity: str, a: str, b: str, va: Any, vb: Any, scale: float) -> Row:
    va, vb = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
    diff = np.abs(va - vb)
    diff = np.where(np.isnan(diff), np.inf, diff)
    k = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    worst = tuple(int(i) for i in k)
    err = float(diff.max()) if diff.size else 0.0
    return Row(quantity, f"{a} vs {b}", err, err / scale, worst, float(va[k]), float(vb[k]))


def _odd_one_out(rows: list[Row], names: list[str]) -> list[str]:
    """Name an implementation whose every comparison failed on a quantity while the
    comparisons among the others passed: the others agree, so it is the one that is wrong."""
    out = []
    for name in names:
        for quantity in dict.fromkeys(r.quantity for r in rows):
            mine = [r for r in rows if r.quantity == quantity and name in r.pair.split(" vs ")]
            others = [r for r in rows if r.quantity == quantity and r not in mine]
            if (
                mine
                and others
                and not any(r.passed for r in mine)
                and all(r.passed for r in others)
            ):
                w = max(mine, key=lambda r: r.abs_error)
                first = w.pair.split(" vs ")[0] == name
                ours, theirs = (w.a, w.b) if first else (w.b, w.a)
                other = w.pair.split(" vs ")[1 if first else 0]
                out.append(
                    f"odd one out: {name} on {quantity}, which the others agree on; worst entry "
                    f"{w.worst}: {name} = {ours!r}, {other} = {theirs!r}."
                )
    return out


def _import_torch(torch: bool | None) -> Any:
    if torch is False:
        return None
    try:
        import torch as torch_mod
    except ImportError:
        if torch:
            raise check.CheckError("PyTorch is not installed; drop --torch.") from None
        return None
    return torch_mod


# --- the implementations ---------------------------------------------------------------------


def _has_beta(gen: GeneratedModule2) -> bool:
    return gen.derivation.symbols.layer.beta


def _double(gen: GeneratedModule2, data: dict[str, Any], eps: float) -> tuple[np.ndarray, ...]:
    beta = _has_beta(gen)
    cot = [data["gdgamma"], *([data["gdbeta"]] if beta else [])]
    params = [data["gamma"], *([data["beta"]] if beta else [])]
    return tuple(gen.double_backward(data["gdx"], *cot, data["dout"], data["x"], *params, eps=eps))


def _differences(
    gen: GeneratedModule2, data: dict[str, Any], eps: float, order: int
) -> tuple[np.ndarray, ...]:
    """∂ℓ/∂(x, dout, γ) entry by entry by the complex step: ℓ(v + i·h·e_j) has imaginary part
    h·∂ℓ/∂v_j + O(h³), with no cancellation, so h = 1e-20 gives the derivative to rounding."""
    beta = _has_beta(gen)
    h = 1e-20

    def loss(x: Any, dout: Any, gamma: Any) -> Any:
        params = [gamma, *([data["beta"]] if beta else [])]
        if order == 2:
            grads = gen.backward(dout, x, *params, eps=eps)
            cot = [data["gdx"], data["gdgamma"], *([data["gdbeta"]] if beta else [])]
        else:
            extra = [data["gdgamma"], *([data["gdbeta"]] if beta else [])]
            grads = gen.double_backward(data["gdx"], *extra, dout, x, *params, eps=eps)
            cot = [data["tgx"], data["tgdout"], data["tggamma"]]
        return sum(np.sum(c * g) for c, g in zip(cot, grads, strict=True))

    inputs = [data["x"], data["dout"], data["gamma"]]
    out = []
    for which, v in enumerate(inputs):
        grad = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            args = [a.astype(complex) for a in inputs]
            args[which][j] += 1j * h
            grad[j] = loss(*args).imag / h
        out.append(grad)
    return tuple(out)


def _groups(gen: GeneratedModule2, a: np.ndarray) -> np.ndarray:
    """x-shaped ``a`` as (N, P, m): the groups, as the generated module reads them."""
    o = gen.derivation.options
    if gen.derivation.symbols.layer.grouping == "columns":
        return a.T[None]
    return a.reshape(a.shape[0], -1, o.m)


def _exact(
    gen: GeneratedModule2, data: dict[str, Any], eps: float, order: int
) -> tuple[np.ndarray, ...]:
    """The chain rule's steps evaluated group by group in 50-digit arithmetic."""
    d = gen.derivation
    h = derive_higher(d, order)
    s = d.symbols
    K = len(s.gammas)
    steps = [*d.forward, *d.backward, *h.steps, *(h.third_steps if order == 3 else ())]
    results = h.results if order == 2 else h.third_results
    m = d.m

    def num(v: Any) -> sp.Float:
        return sp.Float(float(v), 50)

    xs = _groups(gen, data["x"])
    N, P, _ = xs.shape
    per_x = {n: _groups(gen, data[n]) for n in ("dout", "gdx", "tgx", "tgdout")}
    per_p = {n: data[n].reshape(P, K) for n in ("gamma", "gdgamma", "gdbeta", "tggamma")}
    gx, gdy, gg = np.zeros((N, P, m)), np.zeros((N, P, m)), np.zeros((P, K))
    for n in range(N):
        for p in range(P):
            values: dict[sp.Symbol, Any] = {s.eps: num(eps)}
            values.update(zip(s.x, map(num, xs[n, p]), strict=True))
            values.update(zip(s.dy, map(num, per_x["dout"][n, p]), strict=True))
            values.update(zip(s.gammas, map(num, per_p["gamma"][p]), strict=True))
            values.update(zip(h.gdx, map(num, per_x["gdx"][n, p]), strict=True))
            values.update(zip(h.gdgamma, map(num, per_p["gdgamma"][p]), strict=True))
            if h.gdbeta:  # RMS norm has no β
                values.update(zip(h.gdbeta, map(num, per_p["gdbeta"][p]), strict=True))
            if order == 3:
                t = [*per_x["tgx"][n, p], *per_x["tgdout"][n, p], *per_p["tggamma"][p]]
                values.update(zip(h.third_cotangents, map(num, t), strict=True))
            out = evaluate(steps, values)
            r = [float(out[st.lhs]) for st in results]
            gx[n, p], gdy[n, p] = r[:m], r[m : 2 * m]
            gg[p] += r[2 * m :]
    shape = data["x"].shape

    def back(a: np.ndarray) -> np.ndarray:
        return a[0].T if s.layer.grouping == "columns" else a.reshape(shape)

    return back(gx), back(gdy), gg.reshape(data["gamma"].shape)


def _torch(
    torch: Any, gen: GeneratedModule2, data: dict[str, Any], eps: float, order: int, native: bool
) -> tuple[np.ndarray, ...]:
    """autograd through the layer twice (or three times)."""
    o, decl = gen.derivation.options, gen.derivation.symbols.layer
    T = {n: torch.tensor(v, dtype=torch.float64) for n, v in data.items()}
    x, dout, gamma = (T[n].clone().requires_grad_(True) for n in ("x", "dout", "gamma"))
    beta = T["beta"].clone().requires_grad_(True) if decl.beta else None
    layer = _torch_native if native else _torch_elementary
    y = layer(torch, decl.torch, o, x, gamma, beta, eps)
    wrt = [x, gamma] + ([beta] if beta is not None else [])
    grads = torch.autograd.grad(y, wrt, dout, create_graph=True)
    cot = [T["gdx"], T["gdgamma"]] + ([T["gdbeta"]] if beta is not None else [])
    l2 = sum((c * g).sum() for c, g in zip(cot, grads, strict=True))
    second = torch.autograd.grad(l2, (x, dout, gamma), create_graph=order == 3, allow_unused=True)
    second = [
        torch.zeros_like(v) if g is None else g
        for g, v in zip(second, (x, dout, gamma), strict=True)
    ]
    if order == 2:
        return tuple(g.detach().numpy() for g in second)
    l3 = sum(
        (c * g).sum() for c, g in zip((T["tgx"], T["tgdout"], T["tggamma"]), second, strict=True)
    )
    third = torch.autograd.grad(l3, (x, dout, gamma), allow_unused=True)
    return tuple(
        (torch.zeros_like(v) if g is None else g).detach().numpy()
        for g, v in zip(third, (x, dout, gamma), strict=True)
    )


def _torch_native(torch: Any, name: str, o: Any, x: Any, gamma: Any, beta: Any, eps: float) -> Any:
    F = torch.nn.functional
    if name == "batch_norm":
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    if name == "layer_norm":
        return F.layer_norm(x, (o.m,), gamma, beta, eps)
    if name == "rms_norm":
        return F.rms_norm(x, (o.m,), gamma, eps)
    if name == "instance_norm":
        return F.instance_norm(x, weight=gamma, bias=beta, eps=eps)
    return F.group_norm(x, x.shape[1] // (o.channels or 1), gamma, beta, eps)


def _torch_elementary(
    torch: Any, name: str, o: Any, x: Any, gamma: Any, beta: Any, eps: float
) -> Any:
    """The layer in means, squares and a square root: no fused kernel, autograd's own rules."""
    k = 1.0 / (o.m - 1) if o.variance == "unbiased" else 1.0 / o.m
    if name == "batch_norm":
        g = x.T.unsqueeze(0)  # (1, D, m)
    else:
        g = x.reshape(x.shape[0], -1, o.m)
    if name == "rms_norm":
        xhat = g / torch.sqrt((g * g).mean(dim=-1, keepdim=True) + eps)
    else:
        xmu = g - g.mean(dim=-1, keepdim=True)
        xhat = xmu / torch.sqrt((xmu * xmu).sum(dim=-1, keepdim=True) * k + eps)
    xhat = xhat[0].T if name == "batch_norm" else xhat.reshape(x.shape)
    shape = [1] * x.ndim
    if name == "batch_norm":
        shape[1] = -1
    elif name in ("layer_norm", "rms_norm"):
        shape[-1] = -1
    else:
        shape[1] = -1
    y = xhat * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)
