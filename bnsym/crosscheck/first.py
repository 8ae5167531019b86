"""Order 1: generated code, the NumPy references, numerical derivatives and PyTorch agree.

``run_check(d)`` generates NumPy code from the derivation ``d`` and runs it, and the layer's
oracles (:mod:`bnsym.crosscheck.oracles`) on one seeded random batch in the layer's layout:
the fused and the staged NumPy references (hand-written in :mod:`bnsym.reference`, or built
from the declaration of a layer that has none) and, where PyTorch is importable, the layer's
fused kernel (``torch.nn.functional.batch_norm``, ``layer_norm``, ...) where it computes the
variant, or for a layer with no fused kernel the torch-elementary layer built from its
declaration, each with autograd. It compares every pair of implementations on y, dx, dgamma
and dbeta, and the generated backward with numerical derivatives of the generated forward
(:func:`bnsym.gradcheck.check.check_function`, whose tolerance is its own). ``bnsym check``
prints :meth:`CheckResult.table`.

Relative errors are measured against the size of the *terms* of each result, per group, not
against the result itself: at m = 2, dx = (g - mean(g) - x_hat*mean(g*x_hat))/std is a
difference of near-equal terms and O(eps) in size, so two correct implementations differ by
~5e-10 relative to dx's own maximum while agreeing to ~1e-16 relative to the terms.

>>> result = run_check(3, features=2, seed=0, torch=False)
>>> result.passed, len(result.rows)
(True, 15)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnsym.codegen.module import DEFAULT_EPS, GeneratedModule, generate
from bnsym.core.options import make_options
from bnsym.crosscheck import pytorch
from bnsym.crosscheck.data import make_data, params, x_shape
from bnsym.crosscheck.oracles import called, oracles_for, results, twin_note
from bnsym.crosscheck.pytorch import INSTALL, import_torch, no_kernel
from bnsym.derivation import Derivation, from_options
from bnsym.errors import BnsymError
from bnsym.limits import bounded, check_size
from bnsym.reference._common import std_of
from bnsym.reference.declared import groups, ungroup

__all__ = ["RTOL", "CheckError", "CheckResult", "Row", "run_check"]


class CheckError(BnsymError, ValueError):
    """The check cannot run as asked; the message is one sentence for the user."""


#: Agreement required between two implementations, relative to the size of the terms (float64
#: rounding of a few dozen operations is ~1e-15; 1e-12 leaves room for m up to a few hundred).
RTOL = 1e-12

QUANTITIES = ("y", "dx", "dgamma", "dbeta")
SCALES = {
    "y": "|gamma|·max|x_hat| + |beta|",
    "dx": "max|gamma·dout| / std",
    "dgamma": "sum|dout·x_hat|",
    "dbeta": "sum|dout|",
}


@dataclass(frozen=True)
class Row:
    """One comparison: ``quantity`` (y, dx, ... or an input's name) between ``pair``."""

    quantity: str
    pair: str
    max_abs_error: float
    max_rel_error: float
    tolerance: str
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The rows of a check, its verdict ``passed``, and what it ran on."""

    header: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        """The report printed by ``bnsym check``: header, one line per row, the verdict."""
        lines = [self.header, ""]
        # 28 fits "generated vs numerical"; wider only for a longer column's name
        w = max([28, *(len(r.pair) + 1 for r in self.rows)])
        lines.append(
            f"{'quantity':<9}{'pair':<{w}}{'max abs error':>14}{'max rel error':>15}"
            f"  {'tolerance':<26}verdict"
        )
        for r in self.rows:
            verdict = "ok" if r.passed else "DISAGREE"
            lines.append(
                f"{r.quantity:<9}{r.pair:<{w}}{r.max_abs_error:>14.2e}{r.max_rel_error:>15.2e}"
                f"  {r.tolerance:<26}{verdict}{'  ' + r.note if r.note else ''}"
            )
        lines.append("")
        lines.extend(self.notes)
        failed = [r for r in self.rows if not r.passed]
        if failed:
            lines.append(f"FAILED: {len(failed)} of {len(self.rows)} comparisons disagree.")
            lines.extend(_odd_one_out(failed, self.rows))
        else:
            lines.append(f"OK: all {len(self.rows)} comparisons agree.")
        return "\n".join(lines) + "\n"


#: One implementation as the check runs it: ``(data, eps) -> {"y", "dx", "dgamma", "dbeta"}``.
Implementation = Callable[[dict[str, Any], float], dict[str, Any]]

#: The PyTorch columns: the layer's fused kernel, or the layer built from elementary operations
#: where it has none (:mod:`bnsym.crosscheck.pytorch`).
TORCH_COLUMNS = ("torch", "torch-elementary")


def run_check(
    derivation_or_m: Derivation | int | str,
    *,
    features: int = 3,
    seed: int = 0,
    torch: bool | None = None,
    **options: Any,
) -> CheckResult:
    """Compare the generated code with the layer's oracles on seeded random float64 data.

    Args:
        derivation_or_m: a Derivation, or m with ``options`` for :func:`bnsym.derive`.
        features: the length of the layout's batch axis: D, the columns of batch norm's x;
            N, the samples, of the other layers.
        seed: seeds x, gamma, beta, dout (and running statistics) and the gradient check.
        torch: None compares with PyTorch where it can (it is importable, and the layer's
            fused kernel computes the variant or the layer has none), False never, True
            always: then CheckError says why it cannot.

    Returns:
        a :class:`CheckResult`; ``passed`` is the verdict, ``table()`` the report.

    Raises:
        CheckError: ``torch=True`` and no torch column is possible.
        LimitError: the check would exceed its budget (:mod:`bnsym.limits`; before any
            work), or reached its cap.
    """
    if isinstance(derivation_or_m, Derivation):
        if options:
            raise TypeError("run_check(derivation) takes no derive options; they are fixed by it")
        o = derivation_or_m.options
    else:
        o = make_options(derivation_or_m, **options)
    features = check_size(o.m, features, seed)  # before any array is allocated
    values = math.prod(x_shape(o, features))
    with bounded("check", o.m, features=features, values=values, force=o.force):
        d = derivation_or_m if isinstance(derivation_or_m, Derivation) else from_options(o)
        return _run(generate(d), features, seed, torch)


def _run(gen: GeneratedModule, features: int, seed: int, torch: bool | None) -> CheckResult:
    o = gen.derivation.options
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    data = make_data(o, features, seed)
    oracles = oracles_for(o)
    fused, staged = oracles.fused[o.mode], oracles.staged[o.mode]
    impls: dict[str, Implementation] = {
        "generated": _generated(gen),
        "fused": lambda data, eps: fused(data, o, eps),
        "staged": lambda data, eps: staged(data, o, eps),
    }
    notes = [note] if (note := twin_note(o.layer)) else []
    if not oracles.hand_written:
        notes.append(
            f"fused, staged: no hand-written reference of {called(o.layer)}; both are built "
            "from its declaration (bnsym.reference.DeclaredReference)."
        )
    column, why_not = _torch(gen, eps) if torch is not False else (None, "")
    if column is not None:
        name, run = column
        impls[name] = run
        if why_not:
            notes.append(f"torch: {why_not}")
    elif torch:
        raise CheckError(f"no torch column is possible: {why_not}")
    elif torch is None:
        notes.append(f"torch: no column; {why_not}")
    results = {name: f(data, eps) for name, f in impls.items()}
    scales = _scales(gen, data, eps)
    rows = []
    names = list(results)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    # PyTorch is compared with the generated code alone: the references agree with it already
    pairs = [(a, b) for a, b in pairs if b not in TORCH_COLUMNS or a == "generated"]
    for q in QUANTITIES:
        if q not in results["generated"]:
            continue
        for a, b in pairs:
            rows.append(_compare(q, f"{a} vs {b}", results[a][q], results[b][q], scales[q]))
    rows.extend(_numerical(gen, data, eps, seed))
    grouping = o.layer.grouping_
    # the batch axis by its name where it is the groups (batch norm's D), else x's shape
    size = f"{grouping.p_name} = {features}" if not grouping.samples else f"x {data['x'].shape}"
    header = (
        f"bnsym check --layer {o.layer.name}: m = {o.m}, "
        f"{size}, seed = {seed}, eps = {eps:g}; "
        f"{_variant(gen)}.\n"
        "Relative errors are |a - b| divided, per group, by the size of the terms of the\n"
        "result, not by the result (at m = 2 dx is O(eps), a difference of near-equal terms):\n"
        + "; ".join(f"{q} by {SCALES[q]}" for q in QUANTITIES if q in results["generated"])
        + ".\nNumerical rows use the gradient checker's own tolerance, atol + rtol·|numerical|."
    )
    return CheckResult(header, tuple(rows), tuple(notes))


# --- the implementations ----------------------------------------------------------------------


def _generated(gen: GeneratedModule) -> Implementation:
    o = gen.derivation.options

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        args = params(o, data)
        y = gen.forward(data["x"], *args, eps=eps)
        return results(y, gen.backward(data["dout"], data["x"], *args, eps=eps))

    return run


def _torch(gen: GeneratedModule, eps: float) -> tuple[tuple[str, Implementation] | None, str]:
    """The PyTorch column ``(name, implementation)`` and what the report says of it, or None and
    why there is none: the layer's fused kernel with autograd where the oracle table has one
    and it computes the variant; else the torch-elementary layer (autograd through the
    declaration's means, squares and root), with the reason beside it."""
    o = gen.derivation.options
    torch = import_torch()
    if torch is None:
        return None, INSTALL
    kernel = oracles_for(o).torch
    if kernel is None:
        return ("torch-elementary", _autograd(torch, pytorch.elementary(torch, o))), no_kernel(o)
    why_not = kernel.why_not(o, eps)
    if why_not:
        elementary = _autograd(torch, pytorch.elementary(torch, o))
        return ("torch-elementary", elementary), f"{why_not} Compared with torch-elementary."
    return ("torch", _autograd(torch, pytorch.fused(torch, kernel, o))), ""


def _autograd(torch: Any, layer: pytorch.TorchLayer) -> Implementation:
    """y of the PyTorch ``layer`` and its gradients by autograd, on the check's data."""

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        leaves = {
            n: torch.tensor(data[n], dtype=torch.float64, requires_grad=True)
            for n in ("x", "gamma", "beta")
            if n in data
        }
        running = None
        if "running_mean" in data:  # eval mode: constants
            running = tuple(torch.tensor(data[n]) for n in ("running_mean", "running_var"))
        y = layer(leaves["x"], leaves.get("gamma"), leaves.get("beta"), eps, running)
        y.backward(torch.tensor(data["dout"]))
        return results(y.detach().numpy(), tuple(v.grad.numpy() for v in leaves.values()))

    return run


# --- the comparisons --------------------------------------------------------------------------


def _scales(gen: GeneratedModule, data: dict[str, Any], eps: float) -> dict[str, np.ndarray]:
    """Per group, the size of the terms that make up each result (see the module docstring):
    arrays of x's shape for y and dx, of γ's for dgamma and dbeta.

    Computed here with plain NumPy over the groups ``(N, P, m)``, independently of the
    implementations being compared; only an order of magnitude is needed.
    """
    o = gen.derivation.options
    decl, m = o.layer, o.m
    x, dout = groups(decl, data["x"], m), groups(decl, data["dout"], m)
    N, P, _ = x.shape
    if o.mode == "eval":
        mu, var = data["running_mean"][:, None], data["running_var"][:, None]
    elif decl.centred:
        mu = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True, ddof=0 if o.variance == "biased" else 1)
    else:
        mu, var = np.zeros(1), (x**2).mean(axis=-1, keepdims=True)
    std = std_of(var, eps, o.eps_placement)
    x_hat = (x - mu) / std
    K = decl.param_count(m, o.channels)
    index = list(decl.param_index(m, o.channels))
    # each value's γ and β (P, m); the sum over the values that share a parameter, (P*K,)
    gamma = data["gamma"].reshape(P, K)[:, index] if "gamma" in data else np.ones(1)
    beta = data["beta"].reshape(P, K)[:, index] if "beta" in data else np.zeros(1)
    shares = np.eye(K)[index]  # (m, K): value i uses parameter k

    def per_group(a: np.ndarray) -> np.ndarray:
        largest = np.broadcast_to(a.max(axis=-1, keepdims=True), x.shape)
        return ungroup(decl, largest, data["x"].shape)

    def per_parameter(a: np.ndarray) -> np.ndarray:
        return (a.sum(axis=0) @ shares).ravel()

    scales = {
        "y": per_group(np.abs(gamma * x_hat) + np.abs(beta)),
        "dx": per_group(np.abs(gamma * dout) / std),
        "dgamma": per_parameter(np.abs(dout * x_hat)),
        "dbeta": per_parameter(np.abs(dout)),
    }
    tiny = np.finfo(np.float64).tiny
    return {q: np.maximum(s, tiny) for q, s in scales.items()}


def _compare(quantity: str, pair: str, a: Any, b: Any, scale: np.ndarray) -> Row:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return Row(
            quantity,
            pair,
            np.inf,
            np.inf,
            f"{RTOL:.0e}",
            False,
            f"shapes differ: {a.shape} vs {b.shape}",
        )
    err = np.abs(a - b)
    rel = err / scale  # scale: the size of the terms of each entry's group
    max_abs, max_rel = float(err.max()), float(rel.max())
    passed = bool(max_rel <= RTOL)  # False for NaN too
    note = ""
    if not passed:
        where = np.unravel_index(int(np.nanargmax(rel)) if np.isfinite(rel).any() else 0, rel.shape)
        index = tuple(int(i) for i in where)
        note = f"worst at {index}: {a[where]:.17g} vs {b[where]:.17g}"
    return Row(quantity, pair, max_abs, max_rel, f"{RTOL:.0e}", passed, note)


def _numerical(gen: GeneratedModule, data: dict[str, Any], eps: float, seed: int) -> list[Row]:
    """The generated backward against numerical derivatives of the generated forward."""
    from bnsym.gradcheck.check import check_function

    o = gen.derivation.options
    names = ["x"] + [n for n in ("gamma", "beta") if n in data]
    stats = ["running_mean", "running_var"] if o.mode == "eval" else []
    inputs = [data[n] for n in names + stats]

    def f(*args: Any) -> Any:
        return gen.forward(*args, eps=eps)

    def vjp(dout: Any, *args: Any) -> Sequence[Any]:
        grads = gen.backward(dout, *args, eps=eps)
        grads = list(grads) if isinstance(grads, tuple) else [grads]
        return grads + [None] * len(stats)  # the running statistics are constants

    report = check_function(f, vjp, *inputs, names=names + stats, wrt=names, seed=seed)
    rows = []
    for r in report.inputs:
        if not r.checked:
            continue
        rows.append(
            Row(
                "d" + r.name,
                "generated vs numerical",
                r.max_abs_error,
                r.max_rel_error,
                f"rtol {r.rtol:.0e} + atol {r.atol:.1e}",
                r.passed and report.passed,
                r.method
                if r.passed and report.passed
                else (r.hints or report.problems or ("",))[0],
            )
        )
    return rows


def _odd_one_out(failed: list[Row], rows: Sequence[Row]) -> list[str]:
    """A hint when one implementation disagrees with all the others that agree among themselves.

    A side is blamed only if, on some quantity, every comparison involving it failed while
    the comparisons without it passed: torch is compared with the generated code alone, so
    when torch is off, generated vs fused and generated vs staged still pass and the
    generated code is not blamed.
    """
    exact = [r for r in rows if " vs " in r.pair and "numerical" not in r.pair]
    sides = {side for r in exact for side in r.pair.split(" vs ")}
    hints = []
    for side in sorted(sides):
        mine = [r for r in exact if side in r.pair.split(" vs ")]
        others = [r for r in exact if side not in r.pair.split(" vs ")]
        bad = [r for r in failed if side in r.pair.split(" vs ")]
        if not bad or len(bad) != len(failed) or not others or not all(r.passed for r in others):
            continue
        quantities = [
            q
            for q in QUANTITIES
            if any(r.quantity == q for r in bad)
            and all(not r.passed for r in mine if r.quantity == q)
        ]
        if quantities:
            hints.append(
                f"hint: {side} disagrees with the others on {', '.join(quantities)}, "
                "which agree among themselves."
            )
    return hints


def _variant(gen: GeneratedModule) -> str:
    from bnsym.codegen.module import _variant_text

    return _variant_text(gen.derivation, long=True)
