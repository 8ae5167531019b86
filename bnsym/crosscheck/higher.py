"""``bnsym check --order 2|3``: the double backward (and its derivative) checked four ways.

On seeded random data in the layer's layout (:mod:`bnsym.crosscheck.data`), each
implementation computes the results of the order:

- order 2: ``gx``, ``gdout``, ``ggamma`` — the gradients of ℓ₂ = Σ gdx·dx + Σ gdgamma·dgamma
  + Σ gdbeta·dbeta with respect to x, dout and γ;
- order 3: ``tx``, ``tdout``, ``tgamma`` — the gradients of ℓ₃ = Σ tgx·gx + Σ tgdout·gdout +
  Σ tggamma·ggamma (the double backward's vector-Jacobian product).

The implementations: ``generated`` (order 2: the generated ``double_backward``), ``exact``
(the chain rule's symbolic steps of :mod:`bnsym.proofs.higher` evaluated at the inputs in 50-digit
arithmetic), ``differences`` (complex-step differences of the generated order below:
``backward`` for order 2, ``double_backward`` for order 3; exact to rounding, unlike central
differences), and, where PyTorch is installed, ``torch-native`` (the layer's fused kernel in
the oracle table, ``F.batch_norm``, ``F.layer_norm``, …, differentiated by autograd, where it
computes the variant) and ``torch-elementary`` (autograd through the layer built from its
declaration in elementary operations, :func:`bnsym.crosscheck.pytorch.elementary`; the one
PyTorch column of a layer with no fused kernel, as the report says). Every pair is compared;
an implementation that disagrees with all the others, which agree among themselves, is named
the odd one out, with its worst entry and both numbers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from bnsym.codegen.higher import generate_higher
from bnsym.codegen.module import GeneratedModule
from bnsym.crosscheck import pytorch
from bnsym.crosscheck.data import make_data, param_size, params, x_shape
from bnsym.crosscheck.first import CheckError
from bnsym.crosscheck.oracles import known_defect, oracles_for, twin_note
from bnsym.crosscheck.pytorch import INSTALL, import_torch, no_kernel
from bnsym.crosscheck.scale import term_scale, terms_bound
from bnsym.derivation import Derivation
from bnsym.limits import bounded, check_size
from bnsym.proofs.higher import HigherDerivation, derive_higher, evaluate
from bnsym.reference.declared import groups, ungroup

__all__ = ["HigherCheck", "run_check_higher"]

#: |a − b| ≤ RTOL·scale per quantity (max|exact|, or the size of its terms where they cancel:
#: bnsym.crosscheck.scale): every implementation works in float64 (the exact
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
    notes: list[str] = field(default_factory=list)
    #: the failing rows that a known PyTorch defect explains, and what the report says of it
    known: list[Row] = field(default_factory=list)
    known_notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        lines = [
            self.header,
            "Relative error: max|a - b| / (max|exact|, or the size of its terms where they "
            f"cancel) per quantity; tolerance {RTOL:g}.",
            "",
            f"{'quantity':<8} {'pair':<36} {'max abs error':>13} {'max rel error':>13}  verdict",
        ]
        for r in self.rows:
            verdict = "ok" if r.passed else f"DIFFERS at {r.worst}: {r.a!r} vs {r.b!r}"
            lines.append(
                f"{r.quantity:<8} {r.pair:<36} {r.abs_error:13.2e} {r.rel_error:13.2e}  {verdict}"
            )
        lines.append("")
        lines += self.notes
        lines += self.odd
        lines += self.known_notes
        n = len(self.rows)
        bad = sum(not r.passed for r in self.rows)
        if not bad:
            lines.append(f"OK: all {n} comparisons agree.")
        elif len(self.known) == bad:
            lines.append(
                f"FAILED: {bad} of {n}, all from PyTorch's known defect above (not bnsym's: "
                "exact, differences and torch-elementary agree)."
            )
        else:
            lines.append(f"FAILED: {bad} of {n}.")
        return "\n".join(lines) + "\n"


def run_check_higher(
    d: Derivation, order: int, features: int = 3, seed: int = 0, torch: bool | None = None
) -> HigherCheck:
    """Compare the implementations of ``order`` (2 or 3) on seeded data (module docstring).

    ``torch=None`` uses PyTorch when it is importable; True requires it (CheckError if not).
    The request is bounded before any work (:mod:`bnsym.limits`: LimitError with the
    estimate; the complex-step differences grow as the square of the values).
    """
    o = d.options
    features = check_size(o.m, features, seed)  # before any array is allocated
    values = math.prod(x_shape(o, features))
    with bounded("check", o.m, features=features, order=order, values=values, force=o.force):
        return _run(d, order, features, seed, torch)


def _run(d: Derivation, order: int, features: int, seed: int, torch: bool | None) -> HigherCheck:
    o = d.options
    gen = generate_higher(d)
    eps = 1e-5 if o.eps is None else float(o.eps)
    data = make_data(o, features, seed)
    rng = np.random.default_rng(seed + 1)
    for name in ("gdx", "tgx", "tgdout"):
        data[name] = rng.standard_normal(data["x"].shape)
    size = param_size(o, features)
    for name in ("gdgamma", "gdbeta", "tggamma"):
        data[name] = rng.standard_normal(size)
    h = derive_higher(d, order)
    lower: Callable[..., tuple[Any, ...]]
    if order == 2:
        lower = functools.partial(_first, gen, data, eps)
    else:
        third_cot = (data["tgx"], data["tgdout"], *([data["tggamma"]] if o.affine else []))
        lower = lambda *args: (_double(gen, data, eps, *args), third_cot)  # noqa: E731
    impls: dict[str, Callable[[], tuple[np.ndarray, ...]]] = {
        "exact": lambda: _exact(gen, h, data, eps, order),
        "differences": lambda: _differences(gen, data, order, lower),
    }
    if order == 2:
        impls = {"generated": lambda: _double(gen, data, eps), **impls}
    notes = [note] if (note := twin_note(o.layer)) else []
    torch_mod = import_torch() if torch is not False else None
    kernel_name = None  # the fused kernel compared, if any
    if torch_mod is None and torch:
        raise CheckError(f"no torch column is possible: {INSTALL}")
    if torch_mod is None and torch is None:
        notes.append(f"torch-native, torch-elementary: no columns; {INSTALL}")
    if torch_mod is not None:
        kernel = oracles_for(o).torch
        if kernel is None:
            notes.append(f"torch-native: {no_kernel(o)}")
        elif why_not := kernel.why_not(o, eps):
            notes.append(f"torch-native: no column; {why_not}")
        else:
            native = pytorch.fused(torch_mod, kernel, o)
            kernel_name = kernel.name
            impls["torch-native"] = lambda: _torch(torch_mod, native, gen, data, eps, order)
        elementary = pytorch.elementary(torch_mod, o)
        impls["torch-elementary"] = lambda: _torch(torch_mod, elementary, gen, data, eps, order)
    results = {name: f() for name, f in impls.items()}
    rows = []
    names = list(results)
    # errors relative to the size of the terms (bnsym.crosscheck.scale): at m = 2 and ε = 0
    # the terms of gx cancel to 0, and rounding over max|exact| would read as a failure
    seeds = [data.get(n) for n in ("dout", "gdx", "gdgamma", "gdbeta")]
    seeds += [data.get(n) for n in ("tgx", "tgdout", "tggamma")] if order == 3 else []
    running = (data["running_mean"], data["running_var"]) if "running_var" in data else None
    params = [data.get("gamma"), data.get("beta")]
    bound = terms_bound(o, data["x"], params, seeds, eps, order, running)
    for q, quantity in enumerate(NAMES[order][: 3 if o.affine else 2]):
        scale = term_scale(results["exact"][q], bound)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                rows.append(_compare(quantity, a, b, results[a][q], results[b][q], scale))
    known, known_notes = _known_defects(rows, kernel_name, order, o.mode)
    variant = "" if _variant(d) == "train, eps inside, biased, affine" else f" ({_variant(d)})"
    header = (
        f"bnsym check --order {order} --layer {o.layer.name}: m = {o.m}, x {data['x'].shape}, "
        f"seed = {seed}, eps = {eps:g}{variant}; {', '.join(names)}."
    )
    return HigherCheck(header, rows, _odd_one_out(rows, names), notes, known, known_notes)


def _known_defects(
    rows: list[Row], kernel: str | None, order: int, mode: str
) -> tuple[list[Row], list[str]]:
    """The failing rows of torch-native that a known defect of its kernel explains (the oracle
    table's KNOWN_DEFECTS), and one line per defect naming it and its upstream issues."""
    if kernel is None:
        return [], []
    known, lines = [], []
    for quantity in dict.fromkeys(r.quantity for r in rows):
        defect = known_defect(kernel, order, mode, quantity)
        failing = [
            r
            for r in rows
            if r.quantity == quantity and not r.passed and "torch-native" in r.pair.split(" vs ")
        ]
        if defect is None or not failing:
            continue
        known += failing
        issues = " and ".join(defect.issues)
        lines.append(
            f"known PyTorch defect: torch.nn.functional.{kernel} on {quantity}: {defect.what} "
            f"(reported upstream: {issues}); the comparisons with torch-native on {quantity} "
            "still count as failed."
        )
    return known, lines


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
                # shown against the exact value where there is one (the others agree with it)
                vs_exact = [r for r in mine if "exact" in r.pair.split(" vs ")]
                w = max(vs_exact or mine, key=lambda r: r.abs_error)
                first = w.pair.split(" vs ")[0] == name
                ours, theirs = (w.a, w.b) if first else (w.b, w.a)
                other = w.pair.split(" vs ")[1 if first else 0]
                out.append(
                    f"odd one out: {name} on {quantity}, which the others agree on; worst entry "
                    f"{w.worst}: {name} = {ours!r}, {other} = {theirs!r}."
                )
    return out


# --- the implementations ---------------------------------------------------------------------


def _variant(d: Derivation) -> str:
    o = d.options
    return ", ".join(
        [o.mode, f"eps {o.eps_placement}", o.variance, "affine" if o.affine else "no affine"]
    )


def _cotangents(gen: GeneratedModule, data: dict[str, Any]) -> list[Any]:
    """gdgamma, gdbeta as far as the layer has γ and β."""
    o, decl = gen.derivation.options, gen.derivation.symbols.layer
    if not o.affine:
        return []
    return [data["gdgamma"], *([data["gdbeta"]] if decl.beta else [])]


def _first(
    gen: GeneratedModule, data: dict[str, Any], eps: float, x: Any, dout: Any, *gamma: Any
) -> tuple[Any, ...]:
    """The generated backward at (x, dout, γ) and its cotangents (gdx, gdgamma, gdbeta)."""
    args = params(gen.derivation.options, {**data, **({"gamma": gamma[0]} if gamma else {})})
    grads = gen.backward(dout, x, *args, eps=eps)
    grads = grads if isinstance(grads, tuple | list) else (grads,)
    return tuple(grads), (data["gdx"], *_cotangents(gen, data))


def _double(
    gen: Any, data: dict[str, Any], eps: float, x: Any = None, dout: Any = None, *gamma: Any
) -> tuple[Any, ...]:
    """The generated double backward (at x, dout, γ if given, else the data's)."""
    x = data["x"] if x is None else x
    dout = data["dout"] if dout is None else dout
    args = params(gen.derivation.options, {**data, **({"gamma": gamma[0]} if gamma else {})})
    out = gen.double_backward(data["gdx"], *_cotangents(gen, data), dout, x, *args, eps=eps)
    return tuple(out)


def _differences(
    gen: GeneratedModule, data: dict[str, Any], order: int, lower: Callable[..., Any]
) -> tuple[np.ndarray, ...]:
    """∂ℓ/∂(x, dout, γ) entry by entry by the complex step of the order below (``lower``,
    returning its results and their cotangents): ℓ(v + i·h·e_j) has imaginary part
    h·∂ℓ/∂v_j + O(h³), with no cancellation, so h = 1e-20 gives the derivative to rounding."""
    h = 1e-20

    def loss(*args: Any) -> Any:
        grads, cot = lower(*args)
        return sum(np.sum(c * g) for c, g in zip(cot, grads, strict=True))

    affine = gen.derivation.options.affine
    inputs = [data["x"], data["dout"], *([data["gamma"]] if affine else [])]
    out = []
    for which, v in enumerate(inputs):
        grad = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            args = [a.astype(complex) for a in inputs]
            args[which][j] += 1j * h
            grad[j] = loss(*args).imag / h
        out.append(grad)
    return tuple(out)


def _exact(
    gen: GeneratedModule, h: HigherDerivation, data: dict[str, Any], eps: float, order: int
) -> tuple[np.ndarray, ...]:
    """The chain rule's steps evaluated group by group in 50-digit arithmetic."""
    d = h.derivation
    s, o = d.symbols, d.options
    K = len(s.gammas)
    steps = [*d.forward, *d.backward, *h.steps, *(h.third_steps if order == 3 else ())]
    results = h.results if order == 2 else h.third_results
    m = d.m

    def num(v: Any) -> sp.Float:
        return sp.Float(float(v), 50)

    decl = s.layer
    xs = groups(decl, data["x"], m)
    N, P, _ = xs.shape
    per_x = {n: groups(decl, data[n], m) for n in ("dout", "gdx", "tgx", "tgdout")}
    per_p = {
        n: data[n].reshape(P, K) for n in ("gamma", "gdgamma", "gdbeta", "tggamma") if n in data
    }
    gx, gdy, gg = np.zeros((N, P, m)), np.zeros((N, P, m)), np.zeros((P, K))
    for n in range(N):
        for p in range(P):
            values: dict[sp.Symbol, Any] = {s.eps: num(eps)}
            values.update(zip(s.x, map(num, xs[n, p]), strict=True))
            values.update(zip(s.dy, map(num, per_x["dout"][n, p]), strict=True))
            values.update(zip(h.gdx, map(num, per_x["gdx"][n, p]), strict=True))
            if o.affine:
                values.update(zip(s.gammas, map(num, per_p["gamma"][p]), strict=True))
                values.update(zip(h.gdgamma, map(num, per_p["gdgamma"][p]), strict=True))
            if h.gdbeta:  # RMS norm and a layer without affine have no β
                values.update(zip(h.gdbeta, map(num, per_p["gdbeta"][p]), strict=True))
            if o.mode == "eval":
                values[s.running_mean] = num(data["running_mean"][p])  # one per group
                values[s.running_var] = num(data["running_var"][p])
            if order == 3:
                t = [*per_x["tgx"][n, p], *per_x["tgdout"][n, p]]
                t += [*per_p["tggamma"][p]] if o.affine else []
                values.update(zip(h.third_cotangents, map(num, t), strict=True))
            out = evaluate(steps, values)
            r = [float(out[st.lhs]) for st in results]
            gx[n, p], gdy[n, p] = r[:m], r[m : 2 * m]
            if o.affine:
                gg[p] += r[2 * m :]
    shape = data["x"].shape
    result = (ungroup(decl, gx, shape), ungroup(decl, gdy, shape))
    return (*result, gg.reshape(P * K)) if o.affine else result


def _torch(
    torch: Any,
    layer: pytorch.TorchLayer,
    gen: GeneratedModule,
    data: dict[str, Any],
    eps: float,
    order: int,
) -> tuple[np.ndarray, ...]:
    """autograd through the PyTorch ``layer`` twice (or three times)."""
    o, decl = gen.derivation.options, gen.derivation.symbols.layer
    T = {n: torch.tensor(v, dtype=torch.float64) for n, v in data.items()}
    x, dout = (T[n].clone().requires_grad_(True) for n in ("x", "dout"))
    gamma = T["gamma"].clone().requires_grad_(True) if o.affine else None
    beta = T["beta"].clone().requires_grad_(True) if o.affine and decl.beta else None
    stats = (T["running_mean"], T["running_var"]) if o.mode == "eval" else None
    y = layer(x, gamma, beta, eps, stats)
    params = [p for p in (gamma, beta) if p is not None]
    grads = torch.autograd.grad(y, [x, *params], dout, create_graph=True)
    cot = [T["gdx"], *([T["gdgamma"]] if gamma is not None else [])]
    cot += [T["gdbeta"]] if beta is not None else []
    l2 = sum((c * g).sum() for c, g in zip(cot, grads, strict=True))
    wrt = (x, dout, *([gamma] if gamma is not None else []))
    second = torch.autograd.grad(l2, wrt, create_graph=order == 3, allow_unused=True)
    second = [torch.zeros_like(v) if g is None else g for g, v in zip(second, wrt, strict=True)]
    if order == 2:
        return tuple(g.detach().numpy() for g in second)
    tcot = (T["tgx"], T["tgdout"], T["tggamma"])
    l3 = sum((c * g).sum() for c, g in zip(tcot, second, strict=False))
    if not l3.requires_grad:  # eval mode without γ: the double backward is constant
        return tuple(torch.zeros_like(v).detach().numpy() for v in wrt)
    third = torch.autograd.grad(l3, wrt, allow_unused=True)
    return tuple(
        (torch.zeros_like(v) if g is None else g).detach().numpy()
        for g, v in zip(third, wrt, strict=True)
    )
