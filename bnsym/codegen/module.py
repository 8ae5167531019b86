"""NumPy code from a derivation: ``generate(d)`` writes ``forward`` and ``backward``.

One template for every layer of the family. The generated module is standalone (it imports
NumPy only): ``forward`` and ``backward`` check their arguments (:mod:`~bnsym.codegen.runtime`),
view x as groups (N, P, M) as the layer's grouping says (:mod:`~bnsym.codegen.layout`), and
call the kernels ``_forward`` and ``_backward`` (:mod:`~bnsym.codegen.kernels`), which read as
the derivation does — one line per node of the computation graph (``mu``, ``sigma2``,
``xhat1`` .. ``xhatm``, then ``sum_dy``, ``sum_dy_xhat`` and the closed form of ``dx1`` ..
``dxm``), printed by ``sympy.lambdify``'s NumPy printer (:mod:`~bnsym.codegen.printer`).
Each kernel argument x_i is the i-th value of every group at once, an (N, P) array, so one
call serves all the groups. What differs between layers — the view, the shapes of γ and of the
running statistics, what a group is called in the messages — is read from the declaration.

>>> mod = generate(2)
>>> import numpy as np
>>> mod.forward(np.array([[0.0], [2.0]]), np.ones(1), np.zeros(1), eps=0.0)
array([[-1.],
       [ 1.]])
>>> print(mod.source.splitlines()[1])
# Batch normalization for a batch of m = 2 values.
"""

from __future__ import annotations

import hashlib
import linecache
import os
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp

from bnsym import __version__
from bnsym.codegen.kernels import kernels
from bnsym.codegen.layout import Layout
from bnsym.codegen.naming import comment_text, python_call, variant_text
from bnsym.codegen.printer import kernel_source, wrap
from bnsym.codegen.runtime import checks_source, errstate
from bnsym.core.options import make_options
from bnsym.derivation import Derivation, from_options
from bnsym.limits import admit, bounded, float_eps
from bnsym.notes.escape import command_text

__all__ = ["DEFAULT_EPS", "GeneratedModule", "generate"]

# bnsym.crosscheck reads the variant's words from here
_variant_text = variant_text

DEFAULT_EPS = 1e-5


@dataclass(frozen=True)
class GeneratedModule:
    """A generated NumPy module: its ``source`` and the functions compiled from it.

    ``forward(x, gamma, beta, eps=1e-5) -> y`` and
    ``backward(dout, x, gamma, beta, eps=1e-5) -> (dx, dgamma, dbeta)`` take ``x`` and
    ``dout`` in the layer's layout (batch norm: (m, D)) and ``gamma``, ``beta`` in its
    parameter layout (batch norm: (D,)); eval mode adds ``running_mean, running_var`` (one
    per group of a sample: batch norm (D,)) after ``beta``; a layer without β has no
    ``beta`` and no ``dbeta``, and ``affine=False`` drops ``gamma`` and ``beta`` (then
    ``backward`` returns ``dx`` alone). ``inspect.getsource`` works on both. ``write(path)``
    saves ``source`` atomically.
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
        return f"<GeneratedModule {variant_text(self.derivation)}>"


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
        opts = make_options(derivation_or_m, **options)
        admit("codegen", opts.m, force=opts.force)  # before the derivation, not after it
        d = from_options(opts)
    float_eps(d.options.eps)  # the default eps= of the module must be a float
    command = command_text(command)
    if command is None:
        command = python_call(d)
    with bounded("codegen", d.m, force=d.options.force):
        source = module_source(d, command)
        namespace = compile_source(source, variant_text(d))
    return GeneratedModule(d, source, namespace["forward"], namespace["backward"])


def compile_source(source: str, label: str) -> dict[str, Any]:
    """Run the generated ``source`` and return its namespace; registered with linecache, as
    lambdify does, under a name of its own, so that ``inspect.getsource`` works."""
    # one name per distinct source (two modules may differ in their command line only)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    filename = f"<bnsym-generated {label} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "bnsym_generated"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


# --- the module -------------------------------------------------------------------------------


def layout_of(d: Derivation) -> Layout:
    """The layout of the derivation's layer, for groups of m values (K channels each, where
    the group holds several)."""
    return Layout(d.symbols.layer.grouping_, d.options.m, d.options.channels or 1)


def arguments(d: Derivation) -> tuple[list[str], list[str]]:
    """The names of the parameters (``gamma``, ``beta``; none without affine, no ``beta``
    for a layer without β) and of the running statistics (eval mode)."""
    o, decl = d.options, d.symbols.layer
    params = (["gamma", "beta"] if decl.beta else ["gamma"]) if o.affine else []
    stats = ["running_mean", "running_var"] if o.mode == "eval" else []
    return params, stats


def check_lines(params: list[str], stats: list[str]) -> list[str]:
    """The lines of ``forward`` and ``backward`` (and ``double_backward``) after
    ``groups = _groups('x', x)``: each parameter and running statistic checked against x's
    P groups per sample, then eps."""
    lines = ["    P = groups.shape[1]"] if params or stats else []
    lines += [f"    {p} = _param({p!r}, {p}, P)" for p in params]
    lines += [f"    {p} = _running({p!r}, {p}, P)" for p in stats]
    if stats:
        lines.append("    _nonnegative('running_var', running_var)")
    return [*lines, "    eps = _eps(eps)"]


def finite_args(d: Derivation) -> str:
    """What ``_finite_result`` looks at to name a cause: x's groups, or the running variance."""
    return "running_var, eps" if d.options.mode == "eval" else "groups, eps"


def module_source(d: Derivation, command: str) -> str:
    """The source of the generated module (see the module docstring)."""
    o, s = d.options, d.symbols
    decl = s.layer
    layout = layout_of(d)
    fwd_kernel, bwd_kernel = kernels(d)
    params, stats = arguments(d)
    K = len(s.gammas)
    eps = DEFAULT_EPS if o.eps is None else float(o.eps)
    sig = ", ".join(["x", *params, *stats, f"eps={eps!r}"])
    call = ", ".join([*(f"*{p}.T" for p in params), *stats, "eps"])
    grads = [f"d{p}" for p in params]
    returns = f"({', '.join(['dx', *grads])})" if params else "dx"
    grad_lines = [
        f"    {g} = _param_grad(grads[M + {n * K}:M + {(n + 1) * K}])"
        if n
        else f"    {g} = _param_grad(grads[M:M + {K}])"
        for n, g in enumerate(grads)
    ]
    x_text = layout.x_text
    lines = [
        *header(d, command, fwd_kernel.definitions + bwd_kernel.definitions),
        "",
        "import numpy",
        "",
        f"M = {o.m}  # values per group",
        *([f"K = {K}  # {' and '.join(params)} values per group"] if params else []),
        "",
        "",
        f"def forward({sig}):",
        f'    """The forward pass: x of shape {x_text} -> y of the same shape."""',
        "    x = _array('x', x)",
        "    groups = _groups('x', x)",
        *check_lines(params, stats),
        "    xs = _elements(groups)",
        errstate(layout),
        wrap(f"        ys = _forward(*xs, {call})"),
        "    y = _from_elements(ys, x.shape)",
        f"    _finite_result('y', y, {finite_args(d)})",
        "    return y",
        "",
        "",
        f"def backward(dout, {sig}):",
        f'    """The backward pass: dout of the shape of x -> {returns}.',
        "",
        "    dx has the shape of x"
        + (f", {' and '.join(grads)} the shape of gamma." if params else ".")
        + '"""',
        "    x = _array('x', x)",
        "    groups = _groups('x', x)",
        "    dout = _array('dout', dout)",
        "    if dout.shape != x.shape:",
        "        raise ValueError(f'dout must have the shape of x {x.shape}; got {dout.shape}')",
        *check_lines(params, stats),
        "    xs = _elements(groups)",
        "    dys = _elements(_groups('dout', dout))",
        errstate(layout),
        wrap(f"        grads = _backward(*dys, *xs, {call})"),
        "    dx = _from_elements(grads[:M], x.shape)",
        f"    _finite_result('dx', dx, {finite_args(d)})",
        *grad_lines,
        f"    return {returns}",
        "",
        "",
        kernel_source(fwd_kernel),
        "",
        kernel_source(bwd_kernel),
        "",
        _banner("argument checks: a ValueError naming the argument"),
        "",
        "",
        checks_source(
            layout,
            params=params,
            param_shape=decl.grouping_.param_text(decl.params),
            centred=decl.centred,
            eval_mode=bool(stats),
        ),
        "",
        _banner("the layout: x as groups (N, P, M)"),
        "",
        "",
        layout.source(),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _banner(text: str) -> str:
    """A section line of the generated module: ``# --- text ------``, 93 characters."""
    return f"# --- {text} ".ljust(93, "-")


def header(d: Derivation, command: str, definitions: Iterable[tuple[sp.Symbol, Any]]) -> list[str]:
    """The comments and docstring at the top of a generated module: what it is, the variant,
    the command that makes it again, the layout, and what each symbol of the kernels is."""
    o, decl = d.options, d.symbols.layer
    title = f"{decl.title} for {decl.of_m} of m = {o.m} values"
    channels = f", {o.channels} channels each" if o.channels else ""

    def comment(text: str) -> list[str]:
        return textwrap.wrap(
            text, width=97, initial_indent="# ", subsequent_indent="#   ", break_on_hyphens=False
        )

    layout = layout_of(d)
    legend = (
        f"forward and backward check their arguments, view x as groups (N, P, M) = "
        f"{layout.groups_text} and call the kernels _forward and _backward, printed by "
        "sympy.lambdify (NumPy printer) from the computation graph. In the kernels, "
        + "; ".join(_legend(d, {sym.name for sym, _ in definitions}))
        + "."
    )
    return [
        f"# Generated by bnsym {__version__} from its derivation; regenerate rather than edit.",
        f"# {title}{channels}.",
        *comment(f"Variant: {variant_text(d, long=True)}."),
        f"# Command: {comment_text(command)}",
        "#",
        *comment(f"Layout: {decl.layout}."),
        *textwrap.wrap(legend, width=97, initial_indent="# ", subsequent_indent="# "),
        f'"""{title}, generated by bnsym (NumPy only).',
        "",
        "Arguments are array-likes of real numbers (integers are converted to float64); complex",
        "input is accepted too and carried through, for the complex-step derivative check.",
        '"""',
    ]


def _legend(d: Derivation, defined: set[str]) -> list[str]:
    """What each name of the kernels is, for the names they define."""
    o, s = d.options, d.symbols
    layout = layout_of(d)
    K = len(s.gammas)
    rows = " (the rows of x and dout)" if layout.grouping.transposed else ""
    out = [f"x1..xm and dy1..dym are the m values of every group, each {layout.element_text}{rows}"]
    if o.affine:
        names = "gamma, beta" if s.layer.beta else "gamma"
        if K > 1:
            names = f"gamma1..gamma{K}" + (f" (beta1..beta{K})" if s.layer.beta else "")
        whose = {"shared": "", "element": ", one per value", "channel": ", one per channel"}
        out.append(f"{names} the group's parameters{whose[s.layer.params]}, each {layout.p_text}")
    if o.mode == "eval":
        out.append(f"running_mean, running_var the running statistics, each {layout.p_text}")
    stat = "variance" if s.layer.centred else "mean square"
    centre = "running_mean" if o.mode == "eval" else (s.mu.name if s.mu is not None else "")
    table = [
        (s.mu.name if s.mu is not None else "", f"{s.mu} the mean"),
        (s.var.name, f"{s.var} the {stat}"),
        (s.sigma.name, f"{s.sigma} its root"),
        ("xmu1", f"xmu_i = x_i - {centre} the centred values"),
        ("std", "std the denominator of x_hat and inv_std = 1/std"),
        (f"inv_{s.sigma}", f"inv_{s.sigma} = 1/{s.sigma} (0 where {s.sigma} = 0)"),
        ("xhat1", "xhat_i the normalized values"),
        ("gdy1", "gdy_i = gamma*dy_i (the gamma of value i)"),
        ("sum_dy", "sum_dy = sum(dy_i), sum_dy_xhat = sum(dy_i*xhat_i)"),
        ("sum_gdy", "sum_gdy = sum(gdy_i), sum_gdy_xhat = sum(gdy_i*xhat_i)"),
    ]
    out += [text for name, text in table if name in defined]
    return [*out, "_t0, _t1, ... shared subexpressions"]
