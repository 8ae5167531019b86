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
import linecache
import os
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnsym import __version__
from bnsym.codegen.kernels import kernels
from bnsym.codegen.printer import kernel_source
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


# --- the module -------------------------------------------------------------------------------


def _module_source(d: Derivation, command: str) -> str:
    if d.symbols.layer.grouping != "columns":
        return _grouped_module_source(d, command)
    o = d.options
    fwd_kernel, bwd_kernel = kernels(d)
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
        kernel_source(fwd_kernel),
        "",
        kernel_source(bwd_kernel),
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
    fwd_kernel, bwd_kernel = kernels(d)
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
        kernel_source(fwd_kernel),
        "",
        kernel_source(bwd_kernel),
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
