"""``bnsym check --modes fwd,rev --order N``: every composition of the modes, checked five ways.

As JAX's ``check_grads(f, args, order=N, modes=...)`` does, every word over the modes up to
order N is a function of its own (:func:`bnsym.core.forward.compose`): ``"f"`` (the jvp) adds
a tangent for every input and returns the tangents of the outputs, ``"r"`` (the vjp) adds a
cotangent for every output and returns the adjoints of every input; ``"fr"`` is the jvp of the
vjp. Unlike JAX, whose cotangent at order 2 is the primal output, every tangent and cotangent
here is an independent seeded random array. Each composition is computed by:

- ``generated``: the generated NumPy code (orders 1-2: ``jvp``, ``backward``, ``jvp2`` and
  ``jvp`` for the jvp of the jvp, ``hvp`` and ``backward`` for the jvp of the vjp and the vjp
  of the jvp, ``double_backward`` for the vjp of the vjp);
- ``exact``: the composition's walks over the layer's graph (the chain rule forward and back)
  evaluated group by group in 50-digit arithmetic;
- ``differences``: the outer derivative taken numerically of the order below as the generated
  code computes it — along the tangent by one complex step, or entry by entry by the complex
  step — exact to rounding;
- ``torch-native``: ``torch.func.jvp``/``torch.func.vjp`` composed the same way over the
  layer's fused kernel (``F.layer_norm`` …, the oracle table), where it computes the variant;
- ``torch-elementary``: the same over the layer written in means, squares and a square root.

Each implementation is compared with ``exact``, composition by composition; one that differs
while the others agree among themselves is named the odd one out. Where it is PyTorch's fused
kernel, the report says so plainly, with the composition, the size of the error and the
upstream issues the oracle table records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from bnsym.codegen.modes import GeneratedModes, generate_modes
from bnsym.core.forward import compose, word_name, words
from bnsym.core.higher import evaluate
from bnsym.crosscheck import pytorch
from bnsym.crosscheck.data import make_data
from bnsym.crosscheck.first import CheckError
from bnsym.crosscheck.oracles import KNOWN_CAUSE, known_defect, oracles_for, twin_note
from bnsym.crosscheck.pytorch import INSTALL, import_torch, no_kernel
from bnsym.crosscheck.scale import term_scale, terms_bound
from bnsym.derivation import Derivation
from bnsym.proofs.forward import tangents
from bnsym.reference.declared import groups, ungroup

__all__ = ["RTOL", "ModesCheck", "run_check_modes"]

#: |a − b| ≤ RTOL·scale per output (max|exact|, or the size of its terms where they cancel:
#: bnsym.crosscheck.scale): every implementation works in float64 (the exact one
#: in 50 digits) on data of order 1, where rounding stays near 1e-14 relative; a wrong term is
#: O(1). The same tolerance as orders 2 and 3 of the reverse chain.
RTOL = 1e-9


@dataclass(frozen=True)
class Arg:
    """One array of a composition's inputs or outputs: its name, whether it has x's layout
    (``"x"``) or γ's (``"p"``), and (inputs) its value."""

    name: str
    kind: str
    value: Any = None


@dataclass(frozen=True)
class Row:
    """One composition computed by one implementation, compared with ``exact``: the worst
    output, its relative and absolute error, and the worst entry."""

    word: str
    impl: str
    output: str
    abs_error: float
    rel_error: float
    worst: tuple[int, ...]
    value: float
    exact: float

    @property
    def passed(self) -> bool:
        return bool(self.rel_error <= RTOL)


@dataclass(frozen=True)
class ModesCheck:
    """The rows of every composition, the odd ones out and the notes; ``table()`` prints them."""

    header: str
    rows: list[Row]
    odd: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        w = max(len("composition"), *(len(word_name(r.word)) for r in self.rows)) + 2
        lines = [
            self.header,
            "Relative error: max|a - exact| / (max|exact|, or the size of its terms where they "
            f"cancel) over each output; the worst output of each composition; tolerance {RTOL:g}.",
            "",
            f"{'composition':<{w}}{'implementation':<18}{'output':<12}{'max abs error':>14}"
            f"{'max rel error':>15}  verdict",
        ]
        for r in self.rows:
            verdict = "ok" if r.passed else f"DIFFERS at {r.worst}: {r.value!r} vs {r.exact!r}"
            lines.append(
                f"{word_name(r.word):<{w}}{r.impl:<18}{r.output:<12}{r.abs_error:>14.2e}"
                f"{r.rel_error:>15.2e}  {verdict}"
            )
        lines.append("")
        lines += self.odd
        lines += self.notes
        bad = sum(not r.passed for r in self.rows)
        n = len(self.rows)
        lines.append(f"OK: all {n} comparisons agree." if not bad else f"FAILED: {bad} of {n}.")
        return "\n".join(lines) + "\n"


def run_check_modes(
    d: Derivation,
    modes: Sequence[str],
    order: int,
    features: int = 3,
    seed: int = 0,
    torch: bool | None = None,
) -> ModesCheck:
    """Every composition of ``modes`` up to ``order`` on seeded data (module docstring).

    ``torch=None`` uses PyTorch when it is importable; True requires it (CheckError if not).
    """
    o = d.options
    gen = generate_modes(d, ("fwd", "rev"), 2 if order > 1 else 1)
    eps = 1e-5 if o.eps is None else float(o.eps)
    data = make_data(o, features, seed)
    rng = np.random.default_rng(seed + 1)
    stats = [data[n] for n in ("running_mean", "running_var") if n in data]
    base = [Arg(n, "x" if n == "x" else "p", data[n]) for n in ("x", "gamma", "beta") if n in data]
    notes = [note] if (note := twin_note(o.layer)) else []
    torch_layers: dict[str, Callable[..., Any]] = {}
    torch_mod = import_torch() if torch is not False else None
    if torch_mod is None and torch:
        raise CheckError(f"no torch column is possible: {INSTALL}")
    if torch_mod is None and torch is None:
        notes.append(f"torch-native, torch-elementary: no columns; {INSTALL}")
    kernel = oracles_for(o).torch
    if torch_mod is not None:
        if kernel is None:
            notes.append(f"torch-native: {no_kernel(o)}")
        elif why_not := kernel.why_not(o, eps):
            notes.append(f"torch-native: no column; {why_not}")
        else:
            torch_layers["torch-native"] = pytorch.fused(torch_mod, kernel, o)
        torch_layers["torch-elementary"] = pytorch.elementary(torch_mod, o)
    rows: list[Row] = []
    odd: list[str] = []
    names: list[str] = []
    for word in words(modes, order):
        args = _arguments(word, base, rng, gen, stats, eps)
        outputs = _outputs(word, base)
        results: dict[str, list[Any]] = {}
        if len(word) <= 2:
            values = [a.value for a in args]
            results["generated"] = _generated(word, gen, values, stats, eps, len(base))
        results["exact"] = _exact(word, d, args, outputs, stats, eps)
        results["differences"] = _differences(word, gen, args, stats, eps)
        for name, layer in torch_layers.items():
            results[name] = _torch(torch_mod, layer, word, args, stats, eps)
        names = list(results)
        params, seeds = [a.value for a in base[1:]], [a.value for a in args[len(base) :]]
        bound = terms_bound(o, base[0].value, params, seeds, eps, len(word), _running(stats))
        word_rows, agree = _compare(word, results, outputs, bound)
        rows += word_rows
        odd += _odd_one_out(word, word_rows, agree, kernel, notes, o.mode)
    variant = ", ".join(
        [o.mode, f"eps {o.eps_placement}", o.variance, "affine" if o.affine else "no affine"]
    )
    header = (
        f"bnsym check --modes {','.join(modes)} --order {order} --layer {o.layer.name}: "
        f"m = {o.m}, x {data['x'].shape}, seed = {seed}, eps = {eps:g} ({variant}); "
        f"{', '.join(names)}.\nCompositions as JAX's check_grads composes them (outer first), "
        "with independent random tangents and cotangents; outputs are named t<name> (a "
        "tangent), d<name> (an adjoint), c<name> (a cotangent)."
    )
    return ModesCheck(header, rows, odd, notes)


# --- the composition's arguments ----------------------------------------------------------------


def _outputs(word: str, base: Sequence[Arg]) -> list[Arg]:
    """The outputs of the composition ``word`` (names and kinds; no values)."""
    ins, outs = list(base), [Arg("y", "x")]
    for mode in reversed(word):
        if mode == "f":
            new = [Arg("t" + a.name, a.kind) for a in ins]
            outs = [Arg("t" + o.name, o.kind) for o in outs]
        else:
            new = [Arg("c" + o.name, o.kind) for o in outs]
            outs = [Arg("d" + a.name, a.kind) for a in ins]
        ins += new
    return outs


def _arguments(
    word: str, base: Sequence[Arg], rng: Any, gen: Any, stats: list[Any], eps: float
) -> list[Arg]:
    """The composition's inputs, in JAX's order: the base inputs, then what each letter adds
    (inner first), seeded random arrays of the right layouts."""
    ins = list(base)
    outs = [Arg("y", "x")]
    shape = {"x": base[0].value.shape}
    if len(base) > 1:
        shape["p"] = base[1].value.shape
    for mode in reversed(word):
        if mode == "f":
            new = [Arg("t" + a.name, a.kind, rng.standard_normal(shape[a.kind])) for a in ins]
            outs = [Arg("t" + o.name, o.kind) for o in outs]
        else:
            new = [Arg("c" + o.name, o.kind, rng.standard_normal(shape[o.kind])) for o in outs]
            outs = [Arg("d" + a.name, a.kind) for a in ins]
        ins += new
    return ins


# --- the implementations --------------------------------------------------------------------


def _split(values: Sequence[Any], n: int) -> tuple[list[Any], list[Any]]:
    return list(values[:n]), list(values[n:])


def _tuple(out: Any) -> list[Any]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _generated(
    word: str, gen: GeneratedModes, args: Sequence[Any], stats: list[Any], eps: float, n: int
) -> list[Any]:
    """The composition by the generated functions (orders 1 and 2); ``n`` base inputs."""
    theta, rest = _split(args, n)
    x, p = theta[0], theta[1:]

    def backward(dout: Any) -> list[Any]:
        return _tuple(gen.backward(dout, x, *p, *stats, eps=eps))

    if word == "f":
        return [gen.jvp(x, *p, *stats, *rest, eps=eps)[1]]
    if word == "r":
        return backward(rest[0])
    assert gen.jvp2 is not None and gen.hvp is not None and gen.double_backward is not None
    if word == "ff":  # (θ, t; s, ṫ): T[t, s] + J ṫ
        t, s, tt = rest[:n], rest[n : 2 * n], rest[2 * n :]
        second = gen.jvp2(x, *p, *stats, *t, *s, eps=eps)[3]
        return [second + gen.jvp(x, *p, *stats, *tt, eps=eps)[1]]
    if word == "fr":  # (θ, c; t, ċ): T[c; ·, t] + Jᵀċ
        c, t, dc = rest[0], rest[1 : 1 + n], rest[1 + n]
        h = _tuple(gen.hvp(x, *p, *stats, c, *t, eps=eps))
        return [a + b for a, b in zip(h, backward(dc), strict=True)]
    if word == "rf":  # (θ, t; w): (T[w; ·, t], Jᵀw)
        t, w = rest[:n], rest[n]
        return [*_tuple(gen.hvp(x, *p, *stats, w, *t, eps=eps)), *backward(w)]
    if word == "rr":  # (θ, c; a): (T[c; a, ·], J a): double_backward's gx, ggamma, 0, gdout
        c, a = rest[0], rest[1:]
        gx, gdout, *gg = _tuple(gen.double_backward(*a, c, x, *p, *stats, eps=eps))
        zero = [np.zeros_like(p[1])] if len(p) > 1 else []  # dbeta does not read β
        return [gx, *gg, *zero, gdout]
    raise ValueError(f"no generated code for the composition {word!r}")


def _base_function(gen: GeneratedModes, stats: list[Any], eps: float) -> Callable[..., Any]:
    def f(x: Any, *p: Any) -> list[Any]:
        return [gen.forward(x, *p, *stats, eps=eps)]

    return f


def _inner(
    word: str, gen: GeneratedModes, stats: list[Any], eps: float, n: int
) -> Callable[..., Any]:
    """The composition ``word`` as a function of its arguments, by the generated code (the
    forward pass for the empty word)."""
    if not word:
        return _base_function(gen, stats, eps)
    return lambda *args: _generated(word, gen, args, stats, eps, n)


def _differences(
    word: str, gen: GeneratedModes, args: Sequence[Arg], stats: list[Any], eps: float
) -> list[Any]:
    """The outer letter taken numerically of the order below (the generated code), by the
    complex step: ``"f"`` one evaluation at θ + i·h·θ̇; ``"r"`` the gradient of
    ⟨c, F(θ)⟩ entry by entry. Im F(θ + i·h·v)/h = ∂F[v] + O(h²) with no cancellation, so
    h = 1e-20 gives the derivative to rounding."""
    h = 1e-20
    base = [a for a in args if a.name in ("x", "gamma", "beta")]
    inner = _inner(word[1:], gen, stats, eps, len(base))
    values = [a.value for a in args]
    added = len(values) // 2 if word[0] == "f" else len(_outputs(word[1:], base))
    theta, extra = values[: len(values) - added], values[len(values) - added :]
    if word[0] == "f":
        moved = [a + 1j * h * t for a, t in zip(theta, extra, strict=True)]
        return [np.imag(o) / h for o in _tuple(inner(*moved))]
    out = []
    for k, a in enumerate(theta):
        grad = np.zeros(a.shape)
        for j in np.ndindex(a.shape):
            moved = [b.astype(complex) for b in theta]
            moved[k][j] += 1j * h
            loss = sum(np.sum(c * o) for c, o in zip(extra, _tuple(inner(*moved)), strict=True))
            grad[j] = np.imag(loss) / h
        out.append(grad)
    return out


def _composition(word: str, d: Derivation) -> Any:
    """The composition's walks over the variant's graph, built once per variant."""
    s, o = d.symbols, d.options
    key = (word, o.m, o.layer, o.channels, o.variance, o.eps_placement, o.affine, o.mode)
    if key not in _COMPOSITIONS:
        _COMPOSITIONS[key] = compose(word, d.forward, tangents(s, o.affine, "").all, s.y)
    return _COMPOSITIONS[key]


_COMPOSITIONS: dict[tuple[Any, ...], Any] = {}


def _exact(
    word: str,
    d: Derivation,
    args: Sequence[Arg],
    outputs: Sequence[Arg],
    stats: list[Any],
    eps: float,
) -> list[Any]:
    """The composition's walks evaluated group by group in 50 digits."""
    s = d.symbols
    decl, m, K = s.layer, d.m, len(s.gammas)
    c = _composition(word, d)
    size = {"x": m, "p": K}
    x = args[0].value
    xs = groups(decl, x, m)
    N, P, _ = xs.shape

    def per_group(a: Arg) -> Any:
        return groups(decl, a.value, m) if a.kind == "x" else a.value.reshape(P, K)

    grouped = [per_group(a) for a in args]
    symbols = list(c.inputs)
    result = [np.zeros((N, P, m)) if o.kind == "x" else np.zeros((P, K)) for o in outputs]
    for n in range(N):
        for p in range(P):
            values: dict[sp.Symbol, Any] = {s.eps: sp.Float(eps, 50)}
            k = 0
            for a, g in zip(args, grouped, strict=True):
                block = g[n, p] if a.kind == "x" else g[p]
                block_symbols = symbols[k : k + size[a.kind]]
                numbers = [sp.Float(float(v), 50) for v in block]
                values.update(zip(block_symbols, numbers, strict=True))
                k += size[a.kind]
            if stats:
                values[s.running_mean] = sp.Float(float(stats[0][p]), 50)
                values[s.running_var] = sp.Float(float(stats[1][p]), 50)
            out = evaluate(c.steps, values)
            flat = [float(sp.sympify(e).xreplace(out)) for e in c.outputs]
            k = 0
            for o, r in zip(outputs, result, strict=True):
                block = flat[k : k + size[o.kind]]
                if o.kind == "x":
                    r[n, p] = block
                else:
                    r[p] += block
                k += size[o.kind]
    return [
        ungroup(decl, r, x.shape) if o.kind == "x" else r.reshape(P * K)
        for o, r in zip(outputs, result, strict=True)
    ]


def _torch(
    torch: Any,
    layer: pytorch.TorchLayer,
    word: str,
    args: Sequence[Arg],
    stats: list[Any],
    eps: float,
) -> list[Any]:
    """torch.func.jvp and torch.func.vjp composed as ``word`` says over the PyTorch ``layer``."""
    T = [torch.tensor(a.value, dtype=torch.float64) for a in args]
    running = tuple(torch.tensor(v, dtype=torch.float64) for v in stats) if stats else None
    n_base = sum(1 for a in args if a.name in ("x", "gamma", "beta"))
    has_beta = any(a.name == "beta" for a in args)

    def base(x: Any, *p: Any) -> tuple[Any, ...]:
        gamma = p[0] if p else None
        beta = p[1] if has_beta else None
        return (layer(x, gamma, beta, eps, running),)

    g: Callable[..., tuple[Any, ...]] = base
    n_in, n_out = n_base, 1
    for mode in reversed(word):
        if mode == "f":  # a tangent for every input
            g, n_in = _fwd(torch, g, n_in), 2 * n_in
        else:  # a cotangent for every output; the adjoints of every input
            g, n_in, n_out = _rev(torch, g, n_in), n_in + n_out, n_in
    return [_numpy(torch, o) for o in g(*T)]


def _fwd(torch: Any, g: Callable[..., Any], n: int) -> Callable[..., tuple[Any, ...]]:
    def h(*args: Any) -> tuple[Any, ...]:
        _, t = torch.func.jvp(lambda *a: tuple(g(*a)), tuple(args[:n]), tuple(args[n:]))
        return tuple(t)

    return h


def _rev(torch: Any, g: Callable[..., Any], n: int) -> Callable[..., tuple[Any, ...]]:
    def h(*args: Any) -> tuple[Any, ...]:
        _, pull = torch.func.vjp(lambda *a: tuple(g(*a)), *args[:n])
        return tuple(pull(tuple(args[n:])))

    return h


def _numpy(torch: Any, t: Any) -> Any:
    """A result as NumPy: autograd may return a ZeroTensor for a structurally zero
    gradient (eval mode without γ), which ``.numpy()`` refuses."""
    t = t.detach()
    return np.zeros(tuple(t.shape)) if t._is_zerotensor() else t.numpy()


# --- the comparisons ----------------------------------------------------------------------------


def _running(stats: list[Any]) -> tuple[Any, Any] | None:
    return (stats[0], stats[1]) if len(stats) == 2 else None


def _compare(
    word: str, results: dict[str, list[Any]], outputs: Sequence[Arg], bound: float
) -> tuple[list[Row], dict[tuple[str, str], bool]]:
    """One row per implementation against exact (its worst output), and whether each pair of
    implementations agrees on every output; errors relative to the size of the terms
    (``bound``, :mod:`bnsym.crosscheck.scale`), not to a result that the terms cancel in."""
    exact = results["exact"]
    scales = [term_scale(e, bound) for e in exact]

    def error(a: list[Any], b: list[Any]) -> list[tuple[float, float, tuple[int, ...], Any]]:
        out = []
        for va, vb, sc in zip(a, b, scales, strict=True):
            va, vb = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
            diff = np.abs(va - vb)
            diff = np.where(np.isnan(diff), np.inf, diff)
            k = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
            err = float(diff.max()) if diff.size else 0.0
            out.append((err, err / sc, tuple(int(i) for i in k), (va[k], vb[k])))
        return out

    rows = []
    for name, value in results.items():
        if name == "exact":
            continue
        errs = error(value, exact)
        q = max(range(len(errs)), key=lambda i: errs[i][1])
        err, rel, where, (a, b) = errs[q]
        rows.append(Row(word, name, outputs[q].name, err, rel, where, float(a), float(b)))
    names = list(results)
    agree = {
        (a, b): all(e[1] <= RTOL for e in error(results[a], results[b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    return rows, agree


def _odd_one_out(
    word: str,
    rows: list[Row],
    agree: dict[tuple[str, str], bool],
    kernel: Any,
    notes: list[str],
    mode: str,
) -> list[str]:
    """Name an implementation that disagrees with every other while they agree among
    themselves; for PyTorch's fused kernel, say so plainly with the known upstream issues."""
    names = sorted({n for pair in agree for n in pair})
    out = []

    def ok(a: str, b: str) -> bool:
        return agree.get((a, b), agree.get((b, a), True))

    for name in names:
        others = [n for n in names if n != name]
        if not others or any(ok(name, o) for o in others):
            continue
        if len(others) > 1 and not all(ok(a, b) for a in others for b in others if a < b):
            continue
        row = next((r for r in rows if r.impl == name), None)
        where = (
            ""
            if row is None
            else (
                f" on {row.output}, worst entry {row.worst}: {name} = {row.value!r}, "
                f"exact = {row.exact!r} (relative error {row.rel_error:.2g})"
            )
        )
        out.append(f"odd one out: {name} in the {word_name(word)}{where}.")
        if name == "torch-native" and kernel is not None and row is not None:
            defect = known_defect(kernel.name, word, mode, row.output) or known_defect(
                kernel.name, f"order{len(word)}", mode, row.output
            )
            issue = " and ".join(defect.issues) if defect is not None else ""
            out.append(
                f"  PyTorch's fused kernel torch.nn.functional.{kernel.name} is wrong in the "
                f"{word_name(word)} (relative error {row.rel_error:.2g} on {row.output}); the "
                "elementary PyTorch layer, the exact derivation and the numerical derivatives "
                f"agree. Upstream: {issue or 'not reported as far as bnsym knows'}."
            )
            if KNOWN_CAUSE not in notes:
                notes.append(KNOWN_CAUSE)
    return out
