"""NumPy code from the derivation: ``generate(d)`` writes batch norm for a batch of m rows.

The generated module is standalone (it imports NumPy only) and reads as the derivation does:
one line per node of the computation graph (``mu_B``, ``sigma2_B``, ``xhat1`` .. ``xhatm``,
then ``sum_dy``, ``sum_dy_xhat`` and the closed form of ``dx1`` .. ``dxm``), with the
subexpressions that several lines share pulled out as temporaries ``_t0``, ``_t1``, ...
(``sympy.cse``), printed by ``sympy.lambdify``'s NumPy printer. Each symbol stands for a
whole row, ``x1 = x[0]``, so one generated function serves every feature at once.

Why the graph, not the explicit expressions: written in terms of x1..xm alone, every x̂_i
repeats the mean and the variance and SymPy distributes the constants (``x1 - (x1 + x2)/2``
becomes ``x1/2 - x2/2``), so that CSE can no longer find the shared sums and the code costs
O(m²) row operations. Handing ``lambdify`` the graph's own definitions as the first
replacements keeps the mean, the variance and 1/√(σ²+ε) computed once: O(m) row operations,
as a person would write it.

>>> mod = generate(2)
>>> import numpy as np
>>> mod.forward(np.array([[0.0], [2.0]]), np.ones(1), np.zeros(1), eps=0.0)
array([[-1.],
       [ 1.]])
>>> print(mod.source.splitlines()[1])
# Batch normalization for a batch of m = 2 rows.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from bnsym import __version__
from bnsym.derivation import Derivation, derive
from bnsym.limits import float_eps
from bnsym.notes.escape import command_text

__all__ = ["GeneratedModule", "generate"]

DEFAULT_EPS = 1e-5


@dataclass(frozen=True)
class GeneratedModule:
    """A generated NumPy module: its ``source`` and the functions compiled from it.

    ``forward(x, gamma, beta, eps=1e-5) -> y`` and
    ``backward(dout, x, gamma, beta, eps=1e-5) -> (dx, dgamma, dbeta)`` take ``x`` and
    ``dout`` of shape (m, D) and ``gamma``, ``beta`` of shape (D,); eval mode adds
    ``running_mean, running_var`` (shape (D,)) after ``beta``, and ``affine=False`` drops
    ``gamma`` and ``beta`` (then ``backward`` returns ``dx`` alone). ``inspect.getsource``
    works on both. ``write(path)`` saves ``source`` atomically.
    """

    derivation: Derivation
    source: str
    forward: Callable[..., Any] = field(repr=False)
    backward: Callable[..., Any] = field(repr=False)

    @property
    def m(self) -> int:
        return self.derivation.m

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`source` to ``path`` atomically; raises ``OutputError`` if it cannot."""
        from bnsym.output import atomic_write

        return atomic_write(path, self.source)

    def __repr__(self) -> str:
        return f"<GeneratedModule {_variant_text(self.derivation)}>"


def generate(
    derivation_or_m: Derivation | int | str, *, command: str | None = None, **options: Any
) -> GeneratedModule:
    """Generate NumPy ``forward`` and ``backward`` functions from a derivation.

    Args:
        derivation_or_m: a :class:`~bnsym.derivation.Derivation`, or the batch size m, in
            which case ``options`` go to :func:`~bnsym.derivation.derive` (variance,
            eps_placement, affine, mode, eps).
        command: the command shown in the header comment; by default the Python call.

    The derivation's numeric ε, if any, becomes the default of the ``eps`` argument (else
    1e-5); it is never baked into the expressions. Worked-example ``values`` and ``dy`` are
    ignored.

    Returns:
        a :class:`GeneratedModule`.

    >>> import numpy as np
    >>> mod = generate(4, variance="unbiased")
    >>> print(mod.source.splitlines()[2])  # doctest: +ELLIPSIS
    # Variant: train mode, unbiased variance (1/(m-1)), eps inside the square root, ...
    >>> dx, dgamma, dbeta = mod.backward(np.ones((4, 3)), np.eye(4, 3), np.ones(3), np.zeros(3))
    >>> dx.shape, dgamma.shape, float(abs(dx).max()) < 1e-12   # a constant dout shifts y only
    ((4, 3), (3,), True)
    """
    if isinstance(derivation_or_m, Derivation):
        if options:
            raise TypeError("generate(derivation) takes no derive options; they are fixed by it")
        d = derivation_or_m
    else:
        d = derive(derivation_or_m, **options)  # type: ignore[arg-type]
    float_eps(d.options.eps)  # the default eps= of the module must be a float
    command = command_text(command)
    if command is None:
        command = _python_call(d)
    source = _module_source(d, command)
    # one name per distinct source (two modules may differ in their command line only)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    filename = f"<bnsym-generated {_variant_text(d)} {digest}>"
    # Registered with linecache, as lambdify does, so that inspect.getsource works.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "bnsym_generated"}
    exec(compile(source, filename, "exec"), namespace)
    return GeneratedModule(d, source, namespace["forward"], namespace["backward"])


# --- the expressions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kernel:
    """One function for lambdify: arguments, outputs, and the graph definitions behind them."""

    name: str
    args: tuple[sp.Symbol, ...]
    outputs: tuple[sp.Expr, ...]
    definitions: tuple[tuple[sp.Symbol, sp.Expr], ...]


def _kernels(d: Derivation) -> tuple[_Kernel, _Kernel]:
    """The forward and backward kernels, in the graph symbols of the derivation.

    The graph, in the order it is computed: ``mu_B``; the centred rows ``xmu_i = x_i - mu_B``
    (eval mode: ``x_i - running_mean``); ``sigma2_B``; ``sigma_B`` where ε is outside the root;
    the denominator ``std`` of x̂ and ``inv_std = 1/std``; ``xhat_i = xmu_i*inv_std``.
    """
    s, o = d.symbols, d.options
    eps = sp.Symbol("eps", positive=True)  # the argument's name, not the paper's ε
    rename: dict[sp.Expr, sp.Expr] = {s.eps: eps}
    if s.var is not None:
        rename[sp.sqrt(s.var)] = s.sigma  # sigma_B by name wherever it appears
    params: tuple[sp.Symbol, ...] = ()
    if o.affine:
        params = (*s.gammas, *(s.betas if s.layer.beta else ()))
    if o.mode == "eval":
        params += (s.running_mean, s.running_var)
    nodes = {step.lhs: step.rhs.xreplace(rename) for step in d.forward}
    xmu = tuple(sp.Symbol(f"xmu{i}", real=True) for i in range(1, o.m + 1))
    centred = {sp.numer(nodes[xh]): c for xh, c in zip(s.x_hat, xmu, strict=True)}
    stds = {sp.denom(nodes[xh]) for xh in s.x_hat}
    if len(stds) != 1:  # pragma: no cover - every row is divided by the same denominator
        raise RuntimeError("the rows of x_hat do not share one denominator")
    std_expr = stds.pop()
    std = sp.Symbol("std", positive=True)
    inv_std = sp.Symbol("inv_std", positive=True)
    graph: list[tuple[sp.Symbol, sp.Expr]] = []
    if s.mu in nodes:
        graph.append((s.mu, nodes[s.mu]))
    if s.layer.centred or o.mode == "eval":
        graph += [(c, numer) for numer, c in centred.items()]
    else:  # RMS norm divides x_i itself: no centred rows
        xmu = s.x
        centred = {}
    if s.var in nodes:
        graph.append((s.var, nodes[s.var].xreplace(centred)))
        if std_expr.has(s.sigma):
            graph.append((s.sigma, sp.sqrt(s.var)))
    graph += [(std, std_expr), (inv_std, 1 / std)]
    graph += [(xh, c * inv_std) for xh, c in zip(s.x_hat, xmu, strict=True)]
    y = tuple(nodes[yi] for yi in s.y)
    forward = _Kernel("_forward", (*s.x, *params, eps), y, tuple(graph))

    # The backward: the two sums of the closed form, then dx_i, dgamma, dbeta; the closed
    # form written with std and inv_std, and, where eps is outside the root, with
    # inv_sigma_B for 1/sigma_B (see _INV_SIGMA).
    inverses: dict[sp.Expr, sp.Expr] = {1 / std: inv_std}
    defs: list[tuple[sp.Symbol, sp.Expr]] = []
    if std_expr.has(s.sigma):
        inv_sigma = sp.Symbol("inv_sigma_B", nonnegative=True)
        inverses[1 / s.sigma] = inv_sigma
        defs.append((inv_sigma, _InverseOrZero(s.sigma)))

    def in_graph_terms(e: sp.Expr) -> sp.Expr:
        e = sp.factor_terms(e.xreplace(rename), radical=False, clear=False)
        return e.subs(std_expr, std).xreplace(inverses)

    closed = {step.lhs: step.rhs for step in d.closed_form[1:]}
    dx = tuple(in_graph_terms(closed[dxi]) for dxi in s.dx)
    named = {sym.name: sym for e in dx for sym in e.free_symbols}
    # The closed form's two sums: of dy_i (and dy_i*xhat_i) where gamma is shared, of
    # gamma_i*dy_i where it is per element or channel (sum_gdy, sum_gdy_xhat).
    g: Sequence[sp.Expr] = s.dy
    prefix = "sum_dy"
    gdy_defs: tuple[tuple[sp.Symbol, sp.Expr], ...] = ()
    if o.affine and not s.shared:
        # gdy_i = gamma_i*dy_i, once: ∂ℓ/∂x depends on dy only through it
        gdy = tuple(sp.Symbol(f"gdy{i + 1}", real=True) for i in range(o.m))
        gdy_defs = tuple((gi, s.gamma_of(i) * s.dy[i]) for i, gi in enumerate(gdy))
        to_gdy = {s.dy[i]: gdy[i] / s.gamma_of(i) for i in range(o.m)}
        dx = tuple(e.xreplace(to_gdy) for e in dx)
        g, prefix = gdy, "sum_gdy"
    sums = {
        prefix: sp.Add(*g),
        f"{prefix}_xhat": sp.Add(*[gi * xh for gi, xh in zip(g, s.x_hat, strict=True)]),
    }
    sum_defs = tuple((named.get(n, sp.Symbol(n, real=True)), e) for n, e in sums.items())
    outputs = dx
    if o.affine:
        by_value = {e: sym for sym, e in sum_defs}
        adjoint = {step.lhs: step.rhs for step in d.backward}
        # dgamma = sum(dy_i * xhat_i), dbeta = sum(dy_i): the sums already defined.
        grads = (*s.dgammas, *(s.dbetas if s.layer.beta else ()))
        outputs += tuple(adjoint[a].xreplace(by_value) for a in grads)
    backward = _Kernel(
        "_backward",
        (*s.dy, *s.x, *params, eps),
        outputs,
        (*graph, *defs, *gdy_defs, *sum_defs),
    )
    for kernel in (forward, backward):
        known = set(kernel.args) | {sym for sym, _ in kernel.definitions}
        used = {
            sym
            for e in (*kernel.outputs, *(e for _, e in kernel.definitions))
            for sym in e.free_symbols
        }
        if used - known:  # a symbol of the derivation that the code would not define
            names = ", ".join(sorted(str(sym) for sym in used - known))
            raise RuntimeError(f"the derivation uses {names}, which codegen does not define")
    return forward, backward


def _cse(definitions: Sequence[tuple[sp.Symbol, sp.Expr]]) -> Callable[[Any], Any]:
    """A ``cse=`` function for lambdify: the graph definitions first, then ``sympy.cse``.

    ``sympy.cse`` runs over the definitions and the outputs together, naming what they share
    ``_t0``, ``_t1``, ... (a prefix no input or graph symbol has); the assignments are then
    ordered so that each follows everything it reads.
    """

    def cse(exprs: Any) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
        exprs = list(exprs)
        lhs = [sym for sym, _ in definitions]
        temps, reduced = sp.cse(
            [rhs for _, rhs in definitions] + exprs,
            symbols=sp.numbered_symbols("_t"),
            order="none",
        )
        assignments = list(temps) + list(zip(lhs, reduced[: len(lhs)], strict=True))
        outputs = [_tidy(e) for e in reduced[len(lhs) :]]
        needed = _needed(assignments, outputs)
        ordered = _in_dependency_order([(a, _tidy(e)) for a, e in assignments if a in needed])
        # number the temporaries in the order they are computed: _t0, _t1, ...
        temp_names = (sym for sym, _ in ordered if sym.name.startswith("_t"))
        renumber = {sym: sp.Symbol(f"_t{k}") for k, sym in enumerate(temp_names)}
        ordered = [(renumber.get(a, a), e.xreplace(renumber)) for a, e in ordered]
        return ordered, [e.xreplace(renumber) for e in outputs]

    return cse


def _tidy(e: sp.Expr) -> sp.Expr:
    """``x1/3 + x2/3 + x3/3`` -> ``(x1 + x2 + x3)/3``: one multiplication, not m."""
    return sp.factor_terms(e, radical=False, clear=False)


def _needed(
    assignments: list[tuple[sp.Symbol, sp.Expr]], outputs: Iterable[sp.Expr]
) -> set[sp.Symbol]:
    """The assigned symbols the outputs read, directly or through other assignments."""
    definition = dict(assignments)
    needed: set[sp.Symbol] = set()
    todo = [sym for e in outputs for sym in e.free_symbols]
    while todo:
        sym = todo.pop()
        if sym in definition and sym not in needed:
            needed.add(sym)
            todo.extend(definition[sym].free_symbols)
    return needed


def _in_dependency_order(
    assignments: list[tuple[sp.Symbol, sp.Expr]],
) -> list[tuple[sp.Symbol, sp.Expr]]:
    """Order assignments so that each comes after those it reads, else keeping their order."""
    assigned = {sym for sym, _ in assignments}
    done: set[sp.Symbol] = set()
    pending = list(assignments)
    ordered = []
    while pending:
        for k, (sym, rhs) in enumerate(pending):
            if (rhs.free_symbols & assigned) <= done:
                ordered.append(pending.pop(k))
                done.add(sym)
                break
        else:  # pragma: no cover - the graph is acyclic
            raise RuntimeError("cyclic definitions in the generated code")
    return ordered


def _natural(name: str) -> tuple[str, int]:
    """``x10`` -> ("x", 10): rows sort as 1, 2, ..., 10, not as strings."""
    match = re.fullmatch(r"(.*?)(\d*)", name)
    assert match is not None  # the pattern matches every string
    prefix, digits = match.groups()
    return prefix, int(digits) if digits else -1


class _Printer(NumPyPrinter):
    """lambdify's NumPy printer, with terms in row order and a few spellings a person uses."""

    def _as_ordered_terms(self, expr: Any, order: Any = None) -> list[Any]:
        # Row order (x1 + x2 + ... + x10), positive terms first (x1 - mu_B), then simpler
        # terms first (4*dy1 - sum_dy - _t1*xhat1, as the textbook writes it).
        def key(term: Any) -> tuple[Any, ...]:
            names = sorted((_natural(sym.name) for sym in term.free_symbols), key=str)
            names.sort()
            return (term.could_extract_minus_sign(), len(term.free_symbols), names, str(term))

        return sorted(expr.args, key=key)

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp == -1:  # 1/std, not std**(-1.0)
            return f"1/{self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE['Pow'])}"
        return str(super()._print_Pow(expr, rational=rational))

    def _print__InverseOrZero(self, expr: Any) -> str:
        a = self._print(expr.args[0])
        return f"numpy.where({a} > 0, 1/{a}, 0.0)"


class _InverseOrZero(sp.Function):
    """1/a where a > 0, else 0 (a Piecewise would collapse: sigma_B is declared positive)."""

    is_real = True


# Where eps is outside the root, the closed form of dx has the term
# x̂_i·sum_dy_xhat·std/sigma_B, which is 0·∞ for a constant feature; its limit is 0 (x̂ = 0).
_INV_SIGMA = (
    "    # 1/sigma_B, or 0 for a constant feature (sigma_B = 0): there x_hat = 0, and the term\n"
    "    # xhat_i*sum_dy_xhat*std/sigma_B of dx tends to 0, its limit (as in bnsym.reference)\n"
)


def _kernel_source(kernel: _Kernel) -> str:
    """The kernel's Python source, printed by lambdify's NumPy printer with our CSE."""
    fn = sp.lambdify(
        kernel.args,
        list(kernel.outputs),
        modules="numpy",
        # fully qualified: numpy.sqrt, as the module imports numpy and nothing from it
        printer=_Printer(
            {"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": True}
        ),
        cse=_cse(kernel.definitions),
        dummify=False,
        docstring_limit=None,
    )
    text = inspect.getsource(fn)
    text = re.sub(r"^def _lambdifygenerated\(", f"def {kernel.name}(", text)
    if "_Dummy" in text:  # pragma: no cover - every argument is a named Symbol
        raise RuntimeError("lambdify introduced a dummy name")
    lines = []
    for line in text.rstrip().splitlines():
        if line.startswith("    inv_sigma_B = "):
            lines.append(_INV_SIGMA.rstrip())
        if line.startswith("    return [") and line.endswith("]"):
            items = _split_top_level(line[len("    return [") : -1], ", ")
            lines += ["    return [", *(f"        {item}," for item in items), "    ]"]
        else:
            lines.append(_wrap(line))
    return "\n".join(lines) + "\n"


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` at each ``sep`` outside parentheses and brackets."""
    parts, depth, start, k = [], 0, 0, 0
    while k < len(text):
        ch = text[k]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and text.startswith(sep, k):
            parts.append(text[start:k])
            k += len(sep)
            start = k
            continue
        k += 1
    parts.append(text[start:])
    return parts


def _wrap(line: str, width: int = 99) -> str:
    """Break a long line inside its parentheses before ``+``/``-`` or after ``,``.

    A sum over m = 64 rows would otherwise be one line of 700 characters.
    """
    if len(line) <= width:
        return line
    lhs, equals, rhs = line.partition(" = ")
    if equals and len(_split_top_level(rhs, " + ")) > 1:  # a sum: parenthesize to break it
        line = f"{lhs} = ({rhs})"
    indent = " " * (len(line) - len(line.lstrip()) + 8)
    out, current, depth = [], "", 0
    k = 0
    while k < len(line):
        ch = line[k]
        depth += ch in "([{"
        depth -= ch in ")]}"
        current += ch
        k += 1
        at_break = depth > 0 and (
            ch == "," or line.startswith(" + ", k) or line.startswith(" - ", k)
        )
        if at_break and len(current) > width - 20 and len(current) > len(indent) + 20:
            out.append(current.rstrip())
            current = indent
            while k < len(line) and line[k] == " ":
                k += 1
    out.append(current)
    return "\n".join(out)


# --- the module -------------------------------------------------------------------------------


def _module_source(d: Derivation, command: str) -> str:
    if d.symbols.layer.grouping != "columns":
        return _grouped_module_source(d, command)
    o = d.options
    fwd_kernel, bwd_kernel = _kernels(d)
    params = (["gamma", "beta"] if o.affine else []) + (
        ["running_mean", "running_var"] if o.mode == "eval" else []
    )
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    sig = ", ".join(["x", *params, f"eps={eps!r}"])
    checks = [f"    {p} = _vector({p!r}, {p}, D)" for p in params]
    if o.mode == "eval":
        checks.append("    _nonnegative('running_var', running_var)")
    call = ", ".join(["*x", *params, "eps"])
    finite_args = "running_var, eps" if o.mode == "eval" else "x, eps"
    returns = "(dx, dgamma, dbeta)" if o.affine else "dx"
    lines = [
        f"# Generated by bnsym {__version__} from its derivation; regenerate rather than edit.",
        f"# Batch normalization for a batch of m = {o.m} rows.",
        *textwrap.wrap(
            f"Variant: {_variant_text(d, long=True)}.",
            width=97,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        ),
        f"# Command: {_comment_text(command)}",
        "#",
        "# forward and backward check their arguments and call the kernels _forward and",
        "# _backward, printed by sympy.lambdify (NumPy printer) from the computation graph:",
        "# x1..xm and dy1..dym are the rows of x and dout, each (D,); in train mode mu_B is the",
        "# batch mean, sigma2_B the batch variance, sigma_B its root; xmu_i = x_i - mu_B the",
        "# centred rows, std the denominator of x_hat and inv_std = 1/std; xhat_i the normalized",
        "# rows, sum_dy = sum(dy_i), sum_dy_xhat = sum(dy_i * xhat_i); _t0, _t1, ... are",
        "# shared subexpressions.",
        f'"""Batch normalization for m = {o.m} rows, generated by bnsym (NumPy only).',
        "",
        "Arguments are array-likes of real numbers (integers are converted to float64); complex",
        "input is accepted too and carried through, for the complex-step derivative check.",
        '"""',
        "",
        "import numpy",
        "",
        f"M = {o.m}",
        "",
        "",
        f"def forward({sig}):",
        '    """The forward pass: x of shape (m, D) -> y of shape (m, D)."""',
        "    x = _matrix('x', x)",
        "    D = x.shape[1]",
        *checks,
        "    eps = _eps(eps)",
        _ERRSTATE,
        f"        y = numpy.stack(_forward({call}))",
        f"    _finite_result('y', y, {finite_args})",
        "    return y",
        "",
        "",
        f"def backward(dout, {sig}):",
        f'    """The backward pass: dout of shape (m, D) -> {returns}.',
        "",
        "    dx has the shape of x"
        + (', dgamma and dbeta the shape (D,)."""' if o.affine else '."""'),
        "    x = _matrix('x', x)",
        "    dout = _matrix('dout', dout)",
        "    D = x.shape[1]",
        "    if dout.shape != x.shape:",
        "        raise ValueError(f'dout must have the shape of x {x.shape}; got {dout.shape}')",
        *checks,
        "    eps = _eps(eps)",
        _ERRSTATE,
        f"        grads = _backward(*dout, {call})",
        "    dx = numpy.stack(grads[:M])",
        f"    _finite_result('dx', dx, {finite_args})",
        "    return (dx, grads[M], grads[M + 1])" if o.affine else "    return dx",
        "",
        "",
        _kernel_source(fwd_kernel),
        "",
        _kernel_source(bwd_kernel),
        "",
        _CHECKS,
        _FINITE_EVAL if o.mode == "eval" else _FINITE_TRAIN,
    ]
    return "\n".join(lines).rstrip() + "\n"


#: For each grouping (bnsym.family.layers.Grouping): the shape x must have, and how _groups reads
#: it as (N, P, M) — N samples, P groups of each sample that have their own parameters, M
#: values per group — without copying.
_GROUPINGS = {
    "rows": (
        "(N, m)",
        """\
    if x.ndim != 2 or x.shape[1] != M:
        raise ValueError(f"{name} must have shape (N, m) = (N, {M}); got {x.shape}")
    return x[:, None, :]""",
    ),
    "channels": (
        "(N, C, *spatial)",
        """\
    if x.ndim < 3 or numpy.prod(x.shape[2:]) != M:
        raise ValueError(
            f"{name} must have shape (N, C, *spatial) with {M} positions per channel; got {x.shape}"
        )
    return x.reshape(x.shape[0], x.shape[1], M)""",
    ),
    "groups": (
        "(N, G*C, *spatial)",
        """\
    if x.ndim < 3 or x.shape[1] % CHANNELS or numpy.prod(x.shape[2:]) * CHANNELS != M:
        raise ValueError(
            f"{name} must have shape (N, G*{CHANNELS}, *spatial): groups of {CHANNELS} channels "
            f"with {M // CHANNELS} positions each; got {x.shape}"
        )
    return x.reshape(x.shape[0], x.shape[1] // CHANNELS, M)""",
    ),
}


def _grouped_module_source(d: Derivation, command: str) -> str:
    """The module for a layer whose groups lie along the last axes (layer, instance, group
    and RMS norm): ``_groups`` views x as (N, P, M) and each kernel argument x_i is
    ``groups[..., i - 1]``, of shape (N, P); gamma of shape (P*K,) is read as (P, K), its
    column k broadcasting over the samples; ∂ℓ/∂γ_k is summed over the samples."""
    o, s = d.options, d.symbols
    decl = s.layer
    fwd_kernel, bwd_kernel = _kernels(d)
    errstate = _ERRSTATE.replace("by feature", "by group")
    params = (["gamma", "beta"] if decl.beta else ["gamma"]) if o.affine else []
    K = len(s.gammas)
    x_shape, groups_body = _GROUPINGS[decl.grouping]
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    sig = ", ".join(["x", *params, f"eps={eps!r}"])
    checks = [f"    {p} = _param({p!r}, {p}, P)" for p in params]
    columns = [f"*{p}.T" for p in params]
    call = ", ".join(["*xs", *columns, "eps"])
    grads = ", ".join(f"d{p}" for p in params)
    returns = f"(dx, {grads})" if params else "dx"
    param_lines = []
    for n, p in enumerate(params):
        start = f"M + {n * K}" if n else "M"
        param_lines.append(f"    d{p} = _param_grad(grads[{start}:M + {(n + 1) * K}])")
    title = f"{decl.title} for groups of m = {o.m} values"
    lines = [
        f"# Generated by bnsym {__version__} from its derivation; regenerate rather than edit.",
        f"# {title}{f', {o.channels} channels each' if o.channels else ''}.",
        *textwrap.wrap(
            f"Variant: {_variant_text(d, long=True)}.",
            width=97,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        ),
        f"# Command: {_comment_text(command)}",
        "#",
        *textwrap.wrap(
            f"Layout: {decl.layout}.",
            width=97,
            initial_indent="# ",
            subsequent_indent="#   ",
        ),
        "# forward and backward check their arguments, view x as groups (N, P, M) and call the",
        "# kernels _forward and _backward, printed by sympy.lambdify (NumPy printer) from the",
        "# computation graph: x1..xm and dy1..dym are the m values of every group, each (N, P);",
        "# gamma1..gammaK (beta1..) the parameters of the group's values, each (P,); the rest",
        "# as in the derivation (xmu_i centred values, std the denominator of x_hat, inv_std =",
        "# 1/std, sum_... the sums of the closed form); _t0, _t1, ... shared subexpressions.",
        f'"""{title}, generated by bnsym (NumPy only).',
        "",
        "Arguments are array-likes of real numbers (integers are converted to float64); complex",
        "input is accepted too and carried through, for the complex-step derivative check.",
        '"""',
        "",
        "import numpy",
        "",
        f"M = {o.m}  # values per group",
        f"K = {K}  # gamma{' (and beta)' if decl.beta else ''} values per group",
        *([f"CHANNELS = {o.channels}  # channels per group"] if o.channels else []),
        "",
        "",
        f"def forward({sig}):",
        f'    """The forward pass: x of shape {x_shape} -> y of the same shape."""',
        "    x = _array('x', x)",
        "    groups = _groups('x', x)",
        *(["    P = groups.shape[1]"] if params else []),
        *checks,
        "    eps = _eps(eps)",
        "    xs = _elements(groups)",
        errstate,
        f"        y = _from_elements(_forward({call}))",
        "    _finite_result('y', y, groups, eps)",
        "    return y.reshape(x.shape)",
        "",
        "",
        f"def backward(dout, {sig}):",
        f'    """The backward pass: dout of the shape of x -> {returns}.',
        "",
        "    dx has the shape of x"
        + (f", {grads} the shape of {params[0]}." if params else ".")
        + '"""',
        "    x = _array('x', x)",
        "    dout = _array('dout', dout)",
        "    if dout.shape != x.shape:",
        "        raise ValueError(f'dout must have the shape of x {x.shape}; got {dout.shape}')",
        "    groups = _groups('x', x)",
        *(["    P = groups.shape[1]"] if params else []),
        *checks,
        "    eps = _eps(eps)",
        "    xs = _elements(groups)",
        "    dys = _elements(_groups('dout', dout))",
        errstate,
        f"        grads = _backward(*dys, {call})",
        "    dx = _from_elements(grads[:M])",
        "    _finite_result('dx', dx, groups, eps)",
        "    dx = dx.reshape(x.shape)",
        *param_lines,
        f"    return {returns}",
        "",
        "",
        _kernel_source(fwd_kernel),
        "",
        _kernel_source(bwd_kernel),
        "",
        _CHECKS.split("\n\ndef _matrix")[0],
        "",
        "",
        "def _groups(name, x):",
        groups_body,
        "",
        "",
        "def _elements(groups):",
        "    # x1..xm, each (N, P): one contiguous copy, so that every kernel line reads memory",
        "    # in order (the strided views groups[..., i] are several times slower). The copy",
        "    # is a transposition, done in blocks of rows that fit in the cache (about 32 KB):",
        "    # NumPy's plain transposing copy is 2-4x slower at these sizes.",
        "    rows = groups.reshape(-1, M)",
        "    out = numpy.empty((M, rows.shape[0]), dtype=rows.dtype)",
        "    block = max(64, 4096 // M)",
        "    for start in range(0, rows.shape[0], block):",
        "        out[:, start:start + block] = rows[start:start + block].T",
        "    return out.reshape((M,) + groups.shape[:-1])",
        "",
        "",
        "def _from_elements(values):",
        "    # (N, P, M) again, as a view of the stacked values (copied only where x's layout",
        "    # needs it): the values are written once, in order",
        "    return numpy.moveaxis(numpy.stack(values), 0, -1)",
        "",
        "",
        "def _param(name, a, P):",
        "    a = _array(name, a)",
        "    if a.shape != (P * K,):",
        "        raise ValueError(f'{name} must have shape ({P * K},) to match x; got {a.shape}')",
        "    return a.reshape(P, K)",
        "",
        "",
        "def _param_grad(columns):",
        "    # the K columns (N, P), each summed over the samples (no stacked copy), laid out",
        "    # as gamma (P*K,)",
        "    return numpy.stack([c.sum(axis=0) for c in columns]).T.ravel()",
        "",
        "",
        _EPS_FN,
        _FINITE_GROUPED.format(
            constant="(groups == groups[..., :1]).all(axis=-1)"
            if decl.centred
            else "(groups == 0).all(axis=-1)",
            what="constant (zero variance)" if decl.centred else "all zero (zero mean square)",
        ),
    ]
    return "\n".join(lines).rstrip() + "\n"


_CHECKS = """\
# --- argument checks: a ValueError naming the argument -------------------------------------


def _array(name, a):
    try:
        a = numpy.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of numbers; {exc}") from None
    if a.dtype.kind in "iu":
        a = a.astype(numpy.float64)
    elif a.dtype.kind not in "fc":
        raise ValueError(f"{name} must be an array of numbers; got dtype {a.dtype}")
    # One pass instead of two: a sum is finite only if every entry is (inf and nan spread);
    # a sum that overflows is looked at entry by entry, without a warning.
    with numpy.errstate(over="ignore", invalid="ignore"):
        total = a.sum()
    if not numpy.isfinite(total):
        bad = numpy.argwhere(~numpy.isfinite(a))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"{name} has {len(bad)} non-finite value(s), the first {a[where]} at index {where}"
            )
    return a


def _matrix(name, a):
    a = _array(name, a)
    if a.ndim != 2 or a.shape[0] != M or a.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (m, D) = ({M}, D), D >= 1, for this module generated "
            f"for m = {M}; got {a.shape}"
        )
    return a


def _vector(name, a, D):
    a = _array(name, a)
    if a.shape != (D,):
        raise ValueError(f"{name} must have shape (D,) = ({D},) to match x; got {a.shape}")
    return a


def _nonnegative(name, a):
    if numpy.any(a.real < 0):
        raise ValueError(f"{name} must be >= 0; got {a.real.min()} in it")
"""

_EPS_FN = """\
def _eps(eps):
    if isinstance(eps, numpy.ndarray) and eps.shape == ():
        eps = eps[()]  # a 0-d array, numpy.array(1e-5): its scalar
    if isinstance(eps, bool) or not isinstance(eps, (int, float, numpy.integer, numpy.floating)):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    if not numpy.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    return float(eps)
"""
_CHECKS += "\n\n" + _EPS_FN  # the same text as before the split: bn_m4.py is unchanged

_FINITE_GROUPED = """
def _finite_result(name, a, groups, eps):
    with numpy.errstate(over="ignore", invalid="ignore"):
        if numpy.isfinite(a.sum()):
            return
    bad = numpy.argwhere({constant})
    if eps == 0 and bad.size:
        raise ValueError(
            f"{{name}} is not finite: group {{tuple(int(i) for i in bad[0])}} (sample, group) of x "
            "is {what} and eps = 0 leaves 0/0; use eps > 0"
        )
    raise ValueError(
        f"{{name}} is not finite: the computation overflowed float64; scale x (and dout) down"
    )
"""

_ERRSTATE = (
    "    # 0/0 and overflow are reported by _finite_result, by feature, not as warnings\n"
    "    with numpy.errstate(divide='ignore', invalid='ignore', over='ignore'):"
)

_FINITE_TRAIN = """
def _finite_result(name, a, x, eps):
    with numpy.errstate(over="ignore", invalid="ignore"):
        if numpy.isfinite(a.sum()):
            return
    constant = numpy.flatnonzero((x == x[0]).all(axis=0))
    if eps == 0 and constant.size:
        raise ValueError(
            f"{name} is not finite: feature {int(constant[0])} of x is constant (zero variance) "
            "and eps = 0 leaves 0/0; use eps > 0"
        )
    raise ValueError(
        f"{name} is not finite: the computation overflowed float64; scale x (and dout) down"
    )
"""

_FINITE_EVAL = """
def _finite_result(name, a, running_var, eps):
    with numpy.errstate(over="ignore", invalid="ignore"):
        if numpy.isfinite(a.sum()):
            return
    zero = numpy.flatnonzero(running_var + eps == 0)
    if zero.size:
        raise ValueError(
            f"{name} is not finite: running_var + eps = 0 for feature {int(zero[0])}, "
            "a division by zero; use eps > 0"
        )
    raise ValueError(
        f"{name} is not finite: the computation overflowed float64; scale x (and dout) down"
    )
"""


# --- naming the variant -----------------------------------------------------------------------


_PLACEMENT_TEXT = {
    "inside": "eps inside the square root",
    "outside": "eps outside the root",
    "sqrt-outside": "sqrt(eps) outside the root (sigma + sqrt(eps), not sqrt(sigma**2 + eps))",
}


def _variant_text(d: Derivation, long: bool = False) -> str:
    o = d.options
    layer = d.symbols.layer
    if not long:
        parts = [f"m={o.m}", o.mode]
        if o.mode == "train":
            parts += [o.variance if layer.centred else "mean-square", f"eps-{o.eps_placement}"]
        elif o.eps_placement != "inside":
            parts.append(f"eps-{o.eps_placement}")
        parts.append("affine" if o.affine else "no-affine")
        return " ".join(parts)
    parts = [f"{o.mode} mode"]
    if o.mode == "train":
        if not layer.centred:  # RMS norm: the mean square, no variance
            parts.append("mean square (1/m)")
        else:
            parts.append(
                "biased variance (1/m)" if o.variance == "biased" else "unbiased variance (1/(m-1))"
            )
        parts.append(_PLACEMENT_TEXT[o.eps_placement])
    else:
        parts.append("running statistics")
        if o.eps_placement != "inside":
            parts.append(_PLACEMENT_TEXT[o.eps_placement])
    if not o.affine:
        parts.append("no affine")
    else:
        parts.append("affine (gamma, beta)" if layer.beta else "affine (gamma)")
    return ", ".join(parts)


def _comment_text(text: str) -> str:
    """``text`` fit for one comment line: line breaks and other control characters escaped.

    A newline in a command-line argument would otherwise end the comment and leave the rest
    of the command as code.
    """
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", lambda c: repr(c.group())[1:-1], text)


def _python_call(d: Derivation) -> str:
    o = d.options
    defaults = {"variance": "biased", "eps_placement": "inside", "affine": True, "mode": "train"}
    args: Iterable[str] = [str(o.m)] + [
        f"{k}={getattr(o, k)!r}" for k, v in defaults.items() if getattr(o, k) != v
    ]
    if o.eps is not None:
        args = [*args, f"eps={str(o.eps)!r}"]
    return f"bnsym.generate({', '.join(args)})"
