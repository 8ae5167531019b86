"""The argument checks and result checks written into every generated module.

The generated module imports NumPy only, so its checks are part of its source: each is a small
function that raises a one-line ``ValueError`` naming the argument (``_array``, ``_eps``,
``_param``, ``_running``, ``_nonnegative``) or, for a result that is not finite, its cause: a
group of x that is constant (or all zero, not centred) with eps = 0, a running variance + eps
of 0, or an overflow (``_finite_result``). :func:`checks_source` assembles the ones a variant
needs; how a group is named in the messages comes from the layout's grouping
(``group_word``, ``samples``), not from the layer's name.
"""

from __future__ import annotations

from bnsym.codegen.layout import Layout

__all__ = ["ERRSTATE", "checks_source", "errstate"]

ARRAY = """\
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
"""

EPS = """\
def _eps(eps):
    if isinstance(eps, numpy.ndarray) and eps.shape == ():
        eps = eps[()]  # a 0-d array, numpy.array(1e-5): its scalar
    if isinstance(eps, bool) or not isinstance(eps, (int, float, numpy.integer, numpy.floating)):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    if not numpy.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    return float(eps)
"""

PARAM = """\
def _param(name, a, P):
    # {names} {shape}: K values for each of the P groups of a sample, read as (P, K)
    a = _array(name, a)
    if a.shape != (P * K,):
        raise ValueError(
            f"{{name}} must have shape {param}({{P * K}},) to match x; got {{a.shape}}"
        )
    return a.reshape(P, K)


def _param_grad(columns):
    # the kernel's K columns (N, P), each summed over the N samples (where N = 1, as for a
    # layout without samples, its row: no copy), laid out as gamma (P*K,)
    sums = [c[0] if len(c) == 1 else c.sum(axis=0) for c in columns]
    return sums[0] if len(sums) == 1 else numpy.stack(sums, axis=-1).ravel()
"""

RUNNING = """\
def _running(name, a, P):
    # running_mean, running_var {shape}: one value per group of a sample
    a = _array(name, a)
    if a.shape != (P,):
        raise ValueError(
            f"{{name}} must have shape {p}({{P}},) to match x; got {{a.shape}}"
        )
    return a


def _nonnegative(name, a):
    if numpy.any(a.real < 0):
        raise ValueError(f"{{name}} must be >= 0; got {{a.real.min()}} in it")
"""

FINITE_TRAIN = """\
def _finite_result(name, a, groups, eps):
    with numpy.errstate(over="ignore", invalid="ignore"):
        if numpy.isfinite(a.sum()):
            return
    bad = numpy.argwhere({constant})
    if eps == 0 and bad.size:
        raise ValueError(
            f"{{name}} is not finite: {where} of x "
            "is {what} and eps = 0 leaves 0/0; use eps > 0"
        )
    raise ValueError(
        f"{{name}} is not finite: the computation overflowed float64; scale x (and dout) down"
    )
"""

FINITE_EVAL = """\
def _finite_result(name, a, running_var, eps):
    with numpy.errstate(over="ignore", invalid="ignore"):
        if numpy.isfinite(a.sum()):
            return
    zero = numpy.flatnonzero(running_var + eps == 0)
    if zero.size:
        raise ValueError(
            f"{{name}} is not finite: running_var + eps = 0 for {word} {{int(zero[0])}}, "
            "a division by zero; use eps > 0"
        )
    raise ValueError(
        f"{{name}} is not finite: the computation overflowed float64; scale x (and dout) down"
    )
"""

ERRSTATE = (
    "    # 0/0 and overflow are reported by _finite_result, by {word}, not as warnings\n"
    "    with numpy.errstate(divide='ignore', invalid='ignore', over='ignore'):"
)


def errstate(layout: Layout) -> str:
    """The ``with numpy.errstate(...)`` that the kernels run in, with its comment."""
    return ERRSTATE.format(word=layout.grouping.group_word)


def _equals(shape: str) -> str:
    """``"(D,) = "`` before the number in a message, where the shape has a letter."""
    return f"{shape} = " if any(c.isalpha() for c in shape) else ""


def checks_source(
    layout: Layout, *, params: list[str], param_shape: str, centred: bool, eval_mode: bool
) -> str:
    """The checks a variant's module calls, in the order they are called.

    Args:
        layout: the module's layout.
        params: the names of the parameters (``gamma``, ``beta``), none without affine (then
            no ``_param``).
        param_shape: their shape in the layout's letters, ``"(D,)"``.
        centred: a constant group gives 0/0 (else a group of zeros does).
        eval_mode: the statistics are the running ones (``_running``, and ``_finite_result``
            looks at running_var).
    """
    g = layout.grouping
    parts = [ARRAY]
    if params:
        parts.append(
            PARAM.format(names=" and ".join(params), shape=param_shape, param=_equals(param_shape))
        )
    if eval_mode:
        p = layout.p_text
        parts += [RUNNING.format(shape=p, p=_equals(p)), EPS, FINITE_EVAL.format(word=g.group_word)]
    else:
        # a group is named by its index among x's groups: (sample, group), or the group
        # alone where x has no sample axis (batch norm's feature = its column)
        where = (
            f"{g.group_word} {{tuple(int(i) for i in bad[0])}} (sample, {g.group_word})"
            if g.samples
            else f"{g.group_word} {{int(bad[0][1])}}"
        )
        constant = "(groups == groups[..., :1])" if centred else "(groups == 0)"
        constant += ".all(axis=-1)"
        what = "constant (zero variance)" if centred else "all zero (zero mean square)"
        parts += [EPS, FINITE_TRAIN.format(constant=constant, where=where, what=what)]
    return "\n\n".join(parts)
