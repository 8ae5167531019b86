"""Three-way agreement: generated code, the hand-written reference, numerical derivatives.

``run_check(d)`` generates NumPy code from the derivation ``d`` and runs it, the fused and the
staged hand-written versions (:mod:`bnsym.reference`) and, where PyTorch is importable and has
the variant, ``torch.nn.functional.batch_norm`` with autograd, on one seeded random batch. It
compares every pair of implementations on y, dx, dgamma and dbeta, and the generated backward
with numerical derivatives of the generated forward (:func:`bnsym.gradcheck.check.check_function`,
whose tolerance is its own). ``bnsym check`` prints :meth:`CheckResult.table`.

Relative errors are measured against the size of the *terms* of each result, per feature, not
against the result itself: at m = 2, dx = (g - mean(g) - x_hat*mean(g*x_hat))/std is a
difference of near-equal terms and O(eps) in size, so two correct implementations differ by
~5e-10 relative to dx's own maximum while agreeing to ~1e-16 relative to the terms.

>>> result = run_check(3, features=2, seed=0, torch=False)
>>> result.passed, len(result.rows)
(True, 15)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnsym.codegen.module import DEFAULT_EPS, GeneratedModule, generate
from bnsym.crosscheck.oracles import TORCH_NAMES
from bnsym.derivation import Derivation
from bnsym.errors import BnsymError
from bnsym.limits import check_size
from bnsym.reference._common import std_of

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
        lines.append(
            f"{'quantity':<9}{'pair':<28}{'max abs error':>14}{'max rel error':>15}"
            f"  {'tolerance':<26}verdict"
        )
        for r in self.rows:
            verdict = "ok" if r.passed else "DISAGREE"
            lines.append(
                f"{r.quantity:<9}{r.pair:<28}{r.max_abs_error:>14.2e}{r.max_rel_error:>15.2e}"
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


def run_check(
    derivation_or_m: Derivation | int | str,
    *,
    features: int = 3,
    seed: int = 0,
    torch: bool | None = None,
    **options: Any,
) -> CheckResult:
    """Compare generated, fused, staged (and torch) batch norm on seeded random float64 data.

    Args:
        derivation_or_m: a Derivation, or m with ``options`` for :func:`bnsym.derive`.
        features: D, the number of columns of x.
        seed: seeds x, gamma, beta, dout (and running statistics) and the gradient check.
        torch: None compares with PyTorch where it can (it is importable and has the
            variant), False never, True always: then CheckError says why it cannot.

    Returns:
        a :class:`CheckResult`; ``passed`` is the verdict, ``table()`` the report.

    Raises:
        CheckError: ``torch=True`` and no torch column is possible.
    """
    gen = generate(derivation_or_m, **options)
    o = gen.derivation.options
    features = check_size(o.m, features, seed)  # before any array is allocated
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    data = _data(gen, features, seed)
    impls: dict[str, Callable[[dict[str, Any], float], dict[str, Any]]] = {
        "generated": _generated(gen),
        "fused": _reference(gen, staged=False),
        "staged": _reference(gen, staged=True),
    }
    notes = []
    torch_impl, why_not = _torch(gen, eps) if torch is not False else (None, "")
    if torch_impl is not None:
        impls["torch"] = torch_impl
    elif torch:
        raise CheckError(f"no torch column is possible: {why_not}")
    elif torch is None:
        notes.append(f"torch: no column; {why_not}")
    results = {name: f(data, eps) for name, f in impls.items()}
    scales = _scales(gen, data, eps)
    rows = []
    names = list(results)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    pairs = [(a, b) for a, b in pairs if "torch" not in (a, b) or a == "generated"]
    for q in QUANTITIES:
        if q not in results["generated"]:
            continue
        for a, b in pairs:
            rows.append(_compare(q, f"{a} vs {b}", results[a][q], results[b][q], scales[q]))
    rows.extend(_numerical(gen, data, eps, seed))
    size = (
        f"D = {features}"
        if gen.derivation.symbols.layer.grouping == "columns"
        else (f"x {_shape(gen, features)}")
    )
    header = (
        f"bnsym check --layer {o.layer.name}: m = {o.m}, "
        f"{size}, seed = {seed}, eps = {eps:g}; "
        f"{_variant(gen)}.\n"
        "Relative errors are |a - b| divided, per feature, by the size of the terms of the\n"
        "result, not by the result (at m = 2 dx is O(eps), a difference of near-equal terms):\n"
        + "; ".join(f"{q} by {SCALES[q]}" for q in QUANTITIES if q in results["generated"])
        + ".\nNumerical rows use the gradient checker's own tolerance, atol + rtol·|numerical|."
    )
    return CheckResult(header, tuple(rows), tuple(notes))


# --- the implementations ----------------------------------------------------------------------


#: For a layer whose groups lie along the last axes: the groups (P) of each sample that
#: have their own parameters in the check's data (channels for instance norm, groups of
#: channels for group norm).
GROUPS = 2


def _shape(gen: GeneratedModule, D: int) -> tuple[int, ...]:
    """x's shape in the layer's layout: D is the batch axis's length (features for batch
    norm, samples for the others)."""
    o = gen.derivation.options
    grouping = gen.derivation.symbols.layer.grouping
    if grouping == "columns":
        return (o.m, D)
    if grouping == "rows":
        return (D, o.m)
    if grouping == "channels":
        return (D, GROUPS, o.m)
    channels = o.channels or 1
    return (D, GROUPS * channels, o.m // channels)


def _param_size(gen: GeneratedModule, shape: tuple[int, ...]) -> int:
    grouping = gen.derivation.symbols.layer.grouping
    return {"columns": shape[-1], "rows": shape[-1]}.get(grouping, shape[1])


def _data(gen: GeneratedModule, D: int, seed: int) -> dict[str, Any]:
    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    rng = np.random.default_rng(seed)
    shape = _shape(gen, D)
    P = _param_size(gen, shape)
    data: dict[str, Any] = {
        # an offset and a spread other than 0 and 1, so that centring and scaling matter
        "x": 1.5 + 2.0 * rng.standard_normal(shape),
        "dout": rng.standard_normal(shape),
    }
    gamma, beta = 1.0 + 0.5 * rng.standard_normal(P), rng.standard_normal(P)
    if o.affine:
        data.update(gamma=gamma, **({"beta": beta} if decl.beta else {}))
    if o.mode == "eval":
        data.update(running_mean=rng.standard_normal(P), running_var=rng.uniform(0.5, 2.0, P))
    return data


def _params(gen: GeneratedModule, data: dict[str, Any]) -> list[Any]:
    o = gen.derivation.options
    names = ([n for n in ("gamma", "beta") if n in data]) + (
        ["running_mean", "running_var"] if o.mode == "eval" else []
    )
    return [data[n] for n in names]


def _generated(gen: GeneratedModule) -> Callable[[dict[str, Any], float], dict[str, Any]]:
    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        params = _params(gen, data)
        y = gen.forward(data["x"], *params, eps=eps)
        grads = gen.backward(data["dout"], data["x"], *params, eps=eps)
        return _named(y, grads)

    return run


def _reference(
    gen: GeneratedModule, staged: bool
) -> Callable[[dict[str, Any], float], dict[str, Any]]:
    # Looked up at call time, so that a test can break one of them with monkeypatch.
    from bnsym import reference

    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    suffix = ("_eval" if o.mode == "eval" else "") + ("_staged" if staged else "")
    if decl.grouping != "columns":
        return _family_reference(gen, staged)

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        forward = getattr(reference, "batchnorm_forward" + suffix)
        backward = getattr(reference, "batchnorm_backward" + suffix)
        gamma, beta = (data["gamma"], data["beta"]) if o.affine else (None, None)
        if o.mode == "eval":
            y, cache = forward(
                data["x"],
                gamma,
                beta,
                data["running_mean"],
                data["running_var"],
                eps,
                eps_placement=o.eps_placement,
                affine=o.affine,
            )
        else:
            y, cache = forward(
                data["x"],
                gamma,
                beta,
                eps,
                variance=o.variance,
                eps_placement=o.eps_placement,
                affine=o.affine,
            )
        dx, dgamma, dbeta = backward(data["dout"], cache)
        return _named(y, (dx, dgamma, dbeta) if o.affine else dx)

    return run


def _family_reference(
    gen: GeneratedModule, staged: bool
) -> Callable[[dict[str, Any], float], dict[str, Any]]:
    """The hand-written ``<layer>_forward`` / ``_backward`` (or ``_staged``) of bnsym.reference
    for a layer of the family, called with the variant of the derivation."""
    from bnsym import reference

    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    suffix = "_staged" if staged else ""

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        forward = getattr(reference, f"{decl.name}_forward{suffix}")
        backward = getattr(reference, f"{decl.name}_backward{suffix}")
        params = [data.get("gamma")] + ([data.get("beta")] if decl.beta else [])
        if decl.grouping == "groups":
            params.append(data["x"].shape[1] // (o.channels or 1))  # G
        variant: dict[str, Any] = {"eps_placement": o.eps_placement, "affine": o.affine}
        if decl.centred:
            variant["variance"] = o.variance
        y, cache = forward(data["x"], *params, eps, **variant)
        grads = backward(data["dout"], cache)
        return _named(y, grads if o.affine else grads[0])

    return run


def _family_torch(gen: GeneratedModule, torch: Any) -> Callable[..., dict[str, Any]]:
    """torch.nn.functional.<layer> with autograd, in the layer's own layout."""
    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    F = torch.nn.functional

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        leaves = {
            n: torch.tensor(data[n], dtype=torch.float64, requires_grad=True)
            for n in ("x", "gamma", "beta")
            if n in data
        }
        x, gamma, beta = leaves["x"], leaves.get("gamma"), leaves.get("beta")
        if TORCH_NAMES[decl.name] == "layer_norm":
            y = F.layer_norm(x, (o.m,), gamma, beta, eps)
        elif TORCH_NAMES[decl.name] == "rms_norm":
            y = F.rms_norm(x, (o.m,), gamma, eps)
        elif TORCH_NAMES[decl.name] == "instance_norm":
            y = F.instance_norm(x, weight=gamma, bias=beta, eps=eps)
        else:
            y = F.group_norm(x, x.shape[1] // (o.channels or 1), gamma, beta, eps)
        y.backward(torch.tensor(data["dout"]))
        grads = [leaves[n].grad.numpy() for n in ("x", "gamma", "beta") if n in leaves]
        return _named(y.detach().numpy(), tuple(grads) if len(grads) > 1 else grads[0])

    return run


def _torch(
    gen: GeneratedModule, eps: float
) -> tuple[Callable[[dict[str, Any], float], dict[str, Any]] | None, str]:
    """torch.nn.functional's kernel of the layer with autograd, or None and why not."""
    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (pip install torch)."
    if decl.grouping != "columns":
        if o.variance != "biased" or o.eps_placement != "inside":
            return None, (
                f"torch.nn.functional.{TORCH_NAMES[decl.name]} normalizes with the biased "
                "variance and eps inside the square root only."
            )
        return _family_torch(gen, torch), ""
    if o.eps_placement != "inside" or (o.mode == "train" and o.variance != "biased"):
        return None, (
            "torch.nn.functional.batch_norm normalizes with the biased variance and eps "
            "inside the square root only."
        )
    if o.mode == "train" and eps == 0:
        return None, "torch.nn.functional.batch_norm refuses eps = 0 in training."

    def run(data: dict[str, Any], eps: float) -> dict[str, Any]:
        def leaf(name: str) -> Any:
            return torch.tensor(data[name], dtype=torch.float64, requires_grad=True)

        x = leaf("x")
        gamma, beta = (leaf("gamma"), leaf("beta")) if o.affine else (None, None)
        rm, rv = (
            torch.tensor(data[n]) if o.mode == "eval" else None
            for n in ("running_mean", "running_var")
        )
        y = torch.nn.functional.batch_norm(
            x, rm, rv, weight=gamma, bias=beta, training=o.mode == "train", momentum=0.0, eps=eps
        )
        y.backward(torch.tensor(data["dout"]))
        grads: Any = x.grad.numpy()
        if gamma is not None and beta is not None:
            grads = (grads, gamma.grad.numpy(), beta.grad.numpy())
        return _named(y.detach().numpy(), grads)

    return run, ""


def _named(y: Any, grads: Any) -> dict[str, Any]:
    if isinstance(grads, tuple):
        named = dict(zip(("dx", "dgamma", "dbeta"), grads, strict=False))
        return {"y": y, **{k: v for k, v in named.items() if v is not None}}
    return {"y": y, "dx": grads}


# --- the comparisons --------------------------------------------------------------------------


def _scales(gen: GeneratedModule, data: dict[str, Any], eps: float) -> dict[str, np.ndarray]:
    """Per feature, the size of the terms that make up each result (see the module docstring).

    Computed here with plain NumPy, independently of the implementations being compared;
    only an order of magnitude is needed.
    """
    o = gen.derivation.options
    x, dout = data["x"], data["dout"]
    if gen.derivation.symbols.layer.grouping != "columns":
        return _family_scales(gen, data, eps)
    if o.mode == "eval":
        mu, var = data["running_mean"], data["running_var"]
    else:
        mu, var = x.mean(axis=0), x.var(axis=0, ddof=0 if o.variance == "biased" else 1)
    std = std_of(var, eps, o.eps_placement)
    x_hat = (x - mu) / std
    gamma = data.get("gamma", np.ones(x.shape[1]))
    beta = data.get("beta", np.zeros(x.shape[1]))
    scales = {
        "y": np.abs(gamma) * np.abs(x_hat).max(axis=0) + np.abs(beta),
        "dx": np.abs(gamma * dout).max(axis=0) / std,
        "dgamma": np.abs(dout * x_hat).sum(axis=0),
        "dbeta": np.abs(dout).sum(axis=0),
    }
    tiny = np.finfo(np.float64).tiny
    return {q: np.maximum(s, tiny) for q, s in scales.items()}


def _family_scales(gen: GeneratedModule, data: dict[str, Any], eps: float) -> dict[str, Any]:
    """One scale per quantity, from plain NumPy over all groups: the largest size of its
    terms (the data are seeded normals of one spread, so the groups differ little)."""
    o = gen.derivation.options
    decl = gen.derivation.symbols.layer
    x, dout = data["x"], data["dout"]
    channels = o.channels or 1
    groups = (
        x.reshape(x.shape[0], -1, o.m)
        if decl.grouping != "groups"
        else x.reshape(x.shape[0], x.shape[1] // channels, o.m)
    )
    if decl.centred:
        mu = groups.mean(axis=-1, keepdims=True)
        var = groups.var(axis=-1, keepdims=True, ddof=0 if o.variance == "biased" else 1)
    else:
        mu, var = 0.0, (groups**2).mean(axis=-1, keepdims=True)
    std = std_of(var, eps, o.eps_placement)
    x_hat = (groups - mu) / std
    gamma = np.abs(data.get("gamma", np.ones(1))).max()
    beta = np.abs(data.get("beta", np.zeros(1))).max()
    scales = {
        "y": gamma * np.abs(x_hat).max() + beta,
        "dx": gamma * np.abs(dout).max() / std.min(),
        "dgamma": np.abs(dout.reshape(x_hat.shape) * x_hat).sum(axis=0).max(),
        "dbeta": np.abs(dout).sum(axis=0).max(),
    }
    tiny = np.finfo(np.float64).tiny
    return {q: np.maximum(np.float64(v), tiny) for q, v in scales.items()}


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
    rel = err / scale  # broadcasts over the batch axis: scale is per feature
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
