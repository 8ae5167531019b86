"""Calling conventions and safety checks of the gradient checker.

How inputs and gradients are accepted (a tuple, a list, a dict keyed by name, one array), named
(after the forward's parameters), selected (``wrt``), copied and compared, and the messages for
what is wrong with them: the count, shape or dtype of a gradient, NaN/inf, an input changed in
place.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bnsym.errors import BnsymError
from bnsym.gradcheck.report import InputResult


class NotALayerError(BnsymError, TypeError):
    """check_layer's forward did not return ``(out, cache)``."""


class CheckValueError(BnsymError, ValueError):
    """An argument of a check that cannot be used (a bad ``seed``, ``wrt``, ``names``, a
    ragged list): the message names the argument."""


class CheckTypeError(BnsymError, TypeError):
    """An argument of a check of the wrong kind (a forward that is not callable, a tolerance
    that is not a number): the message names the argument."""


class DtypeError(BnsymError, ValueError):
    """An input whose dtype the checker cannot judge (integers to differentiate, complex, a
    low-precision tensor on a device it cannot read): the message names the input and dtype."""


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def unchecked(name: str, a: Any, checked: bool) -> InputResult:
    arr = np.asarray(a)
    return InputResult(name, tuple(arr.shape), arr.dtype.name, not checked, checked=checked)


def validate_call(
    forward: Any,
    backward: Any,
    inputs: Sequence[Any],
    names: Sequence[str] | None,
    backward_role: str = "backward",
) -> list[Any]:
    """The inputs as the check uses them (numbers and lists as arrays), or a TypeError /
    ValueError naming the argument that cannot be checked (``backward_role``: what the
    second function is called, ``"jvp"`` in forward mode)."""
    for role, fn in (("forward", forward), (backward_role, backward)):
        if not callable(fn):
            raise CheckTypeError(
                f"the {role} must be callable (a function), not {type(fn).__name__} {fn!r:.60}"
            )
    names = validate_names(names, len(inputs)) or param_names(forward, len(inputs))
    arrays = []
    for k, a in enumerate(inputs):
        label = f"input {k}" if k >= len(names) else f"input {names[k]!r}"
        if isinstance(a, np.matrix):
            raise CheckTypeError(
                f"{label} is an np.matrix, whose * is a matrix product and whose reductions "
                "keep 2 axes; pass np.asarray(...) of it"
            )
        if isinstance(a, bool | int | float | list | tuple):
            try:
                a = np.asarray(a)
            except ValueError:
                raise CheckValueError(
                    f"{label} is a ragged list (rows of different lengths); give an array "
                    "with one length per axis"
                ) from None
            if a.dtype == object:
                raise CheckValueError(f"{label} is not a list of numbers; give a numeric array")
        arrays.append(a)
    return arrays


def validate_names(names: Any, n: int) -> list[str] | None:
    """``names`` as a list of ``n`` distinct strings (None stays None), or an error naming it."""
    if names is None:
        return None
    if isinstance(names, str | bytes) or not isinstance(names, Sequence):
        raise CheckTypeError(
            f"names must be a list of {n} strings, one per input, not {type(names).__name__} "
            f"{names!r:.60}"
        )
    bad = [k for k in names if not isinstance(k, str)]
    if bad:
        raise CheckTypeError(
            f"names must be strings, one per input; {bad[0]!r:.40} is {type(bad[0]).__name__}"
        )
    if len(names) != n:
        raise CheckValueError(
            f"names has {len(names)} name(s) {list(names)!r:.80} for {n} input(s); give one "
            "name per input"
        )
    if len(set(names)) != len(names):
        twice = next(k for k in names if list(names).count(k) > 1)
        raise CheckValueError(f"names must be distinct; {twice!r} is given twice")
    return list(names)


def validate_options(seed: Any, rtol: Any, atol: Any) -> None:
    """TypeError / ValueError naming ``seed``, ``rtol`` or ``atol`` when it is unusable."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise CheckValueError(f"seed must be an integer >= 0, not {seed!r}")
    for option, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise CheckTypeError(f"{option} must be a number such as 1e-6, not {value!r}")
        # NaN compares False with everything, so a NaN tolerance would pass any gradient
        if not (np.isfinite(value) and value >= 0):
            raise CheckValueError(f"{option} must be a finite number >= 0, not {value!r}")


def shapes_text(names: Sequence[str], inputs: Sequence[Any]) -> str:
    """``x (4, 3), w (3, 2)``: the inputs' names and shapes, for a report."""
    return ", ".join(f"{n} {tuple(np.shape(a))}" for n, a in zip(names, inputs, strict=True))


def raised(fn_name: str, exc: BaseException, names: Sequence[str], inputs: Sequence[Any]) -> str:
    """One line for a forward or backward that raised: what, where, on which inputs."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{fn_name} raised {type(exc).__name__}: {first} (inputs {shapes_text(names, inputs)})"


def changed_shape(fn_name: str, exc: Any) -> str:
    """One line for a forward whose outputs change shape (or number) under a small step."""
    return (
        f"{fn_name} returned output shape(s) {exc.after} on inputs moved by a small step, "
        f"{exc.before} at the inputs: the output's shape depends on the inputs' values, so "
        "it has no derivative there; nothing was compared"
    )


def complex_input(
    fn_name: str, exc: BaseException, names: Sequence[str], inputs: Sequence[Any]
) -> None:
    """A :class:`DtypeError` when a forward raised on its very inputs and one of them is
    complex: a complex array given to a layer of real numbers is bad input, not a bug of the
    layer."""
    found = [(n, np.asarray(a).dtype) for n, a in zip(names, inputs, strict=True)]
    found = [(n, d) for n, d in found if d.kind == "c"]
    if found:
        first = str(exc).splitlines()[0] if str(exc) else ""
        name, dtype = found[0]
        raise DtypeError(
            f"input {name!r} has dtype {dtype} and {fn_name} raised on it "
            f"({type(exc).__name__}: {first:.120}); give real inputs: the checker differentiates "
            "real floating-point inputs"
        )


def nothing_to_differentiate(names: Sequence[str], inputs: Sequence[Any]) -> str:
    """The problem of a check with no real floating-point input with entries."""
    kinds = ", ".join(
        f"{n} {np.asarray(a).dtype} {tuple(np.shape(a))}"
        for n, a in zip(names, inputs, strict=True)
    )
    return (
        f"no input was checked: there is nothing to differentiate (inputs: {kinds or 'none'}); "
        "the checker differentiates real floating-point inputs with entries (integer and "
        "complex inputs are constants), so give at least one"
    )


def copy_input(a: Any) -> Any:
    """A fresh C-ordered, writable copy of an array (a view, a broadcast, an alias of another
    input included); other objects as they are."""
    return np.array(a, order="C") if isinstance(a, np.ndarray) else a


def same(p: Any, q: Any) -> bool:
    p, q = np.asarray(p), np.asarray(q)
    if p.shape != q.shape:
        return False
    if np.array_equal(p, q):  # the common case, without equal_nan's passes over the arrays
        return True
    if p.dtype.kind in "fc" and q.dtype.kind in "fc":
        return bool(np.array_equal(p, q, equal_nan=True))
    return bool(np.array_equal(p, q))


def where_differs(a: np.ndarray, orig: np.ndarray) -> str:
    diff = np.argwhere(~np.isclose(a, orig, rtol=0, atol=0, equal_nan=True))
    if diff.size == 0:
        return "its values changed"
    first = tuple(int(t) for t in diff[0])
    return (
        f"{len(diff)} entries changed, first at index {first}: "
        f"{float(orig[first]):.6g} -> {float(a[first]):.6g}"
    )


def nonfinite(o: np.ndarray) -> str:
    bad = np.argwhere(~np.isfinite(o))
    first = tuple(int(t) for t in bad[0])
    return f"{len(bad)} NaN/inf entries, first at index {first} ({float(o[first])})"


def output_label(k: int, outs: Sequence[Any]) -> str:
    return f" {k}" if len(outs) > 1 else ""


def as_outputs(out: Any) -> list[np.ndarray]:
    """The forward's outputs as arrays; one that is no array of numbers (a ragged tuple, a
    cache of mixed things) becomes an object array, which the safety step reports."""
    return [_as_array(o) for o in (out if isinstance(out, tuple | list) else [out])]


def _as_array(o: Any) -> np.ndarray:
    try:
        return np.asarray(o)
    except (ValueError, TypeError):  # ragged: NumPy refuses to guess a shape
        boxed = np.empty((), dtype=object)
        boxed[()] = o
        return boxed


def float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def eps_of(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if np.dtype(dtype).kind in "fc" else 0.0


def callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def param_names(fn: Callable[..., Any], n: int) -> list[str]:
    """The forward's positional parameter names when they match the inputs, else x0, x1, ..."""
    try:
        return list(_param_names(fn, n))
    except TypeError:  # an unhashable callable
        return list(_param_names.__wrapped__(fn, n))


@functools.lru_cache(maxsize=256)  # inspect.signature costs as much as a small layer's forward
def _param_names(fn: Callable[..., Any], n: int) -> tuple[str, ...]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= n and not any(p.kind == p.VAR_POSITIONAL for p in params[:n]):
        return tuple(positional[:n])
    return tuple(f"x{i}" for i in range(n))


def resolve_wrt(
    wrt: Sequence[int | str] | None, inputs: Sequence[Any], names: Sequence[str]
) -> list[int]:
    floating = [i for i, a in enumerate(inputs) if np.asarray(a).dtype.kind == "f"]
    if wrt is None:
        return floating
    idx = []
    for w in [wrt] if isinstance(wrt, int | str) else wrt:
        if isinstance(w, bool) or not isinstance(w, int | str | np.integer):
            raise CheckTypeError(
                f"wrt={w!r}: give inputs by position (an int) or by name (a str); "
                f"inputs are {list(names)}"
            )
        if isinstance(w, str):
            if w not in names:
                raise CheckValueError(f"wrt={w!r} is not an input; inputs are {list(names)}")
            i = list(names).index(w)
        else:
            if not -len(inputs) <= w < len(inputs):
                raise CheckValueError(f"wrt={w} is out of range for {len(inputs)} inputs")
            i = int(w) % len(inputs)
        if i not in floating:
            dtype = np.asarray(inputs[i]).dtype
            why = (
                "complex gradients are not defined for a real loss; check the real and "
                "imaginary parts as two real inputs"
                if dtype.kind == "c"
                else "only floating-point inputs can be differentiated"
            )
            raise DtypeError(f"wrt: input {names[i]!r} has dtype {dtype}; {why}")
        idx.append(i)
    return sorted(set(idx))


def returned_grads(
    raw: Any, names: Sequence[str], wrt_idx: Sequence[int]
) -> tuple[list[Any], str | None]:
    """What the backward returned in each input's place (None where nothing), as returned:
    by position (one per input, or one per checked input), by name (``"x"`` or ``"dx"``), or
    a single gradient for a single input; or the problem with the count, for all inputs."""
    n = len(names)
    grads: list[Any] = [None] * n
    if isinstance(raw, Mapping):
        for i in range(n):
            for key in (names[i], "d" + names[i], i):
                if key in raw:
                    grads[i] = raw[key]
                    break
    elif isinstance(raw, tuple | list):
        if len(raw) == n:
            grads = list(raw)
        elif len(raw) == len(wrt_idx):
            for i, g in zip(wrt_idx, raw, strict=True):
                grads[i] = g
        else:
            msg = f"the backward returned {len(raw)} gradients for {n} inputs ({', '.join(names)})"
            return grads, msg
    elif n == 1 or len(wrt_idx) == 1:
        grads[wrt_idx[0] if wrt_idx else 0] = raw
    else:
        return grads, (
            f"the backward returned one {type(raw).__name__} for {n} inputs "
            f"({', '.join(names)}); return a tuple with one gradient per input"
        )
    return grads, None


def normalize_grads(
    raw: Any, inputs: Sequence[Any], names: Sequence[str], wrt_idx: Sequence[int]
) -> tuple[list[np.ndarray | None], dict[int, str], str | None]:
    """One gradient per input (None for constants), a problem per input, a problem for all.

    A gradient of the wrong shape but the input's size is returned too (reshaped, or
    transposed for a transposed matrix), with its problem: its values are still compared.
    """
    n = len(inputs)
    problems: dict[int, str] = {}
    grads, msg = returned_grads(raw, names, wrt_idx)
    if msg is not None:
        return grads, dict.fromkeys(wrt_idx, ""), msg
    out: list[np.ndarray | None] = [None] * n
    for i in wrt_idx:
        g = grads[i]
        name = names[i]
        shape = tuple(np.shape(inputs[i]))
        if g is None:
            problems[i] = f"no gradient was returned for {name!r}"
            continue
        g = np.asarray(g)
        if g.dtype.kind != "f":
            problems[i] = (
                f"the gradient of {name!r} has dtype {g.dtype}; "
                "a gradient must be a real floating-point array"
            )
        elif g.shape != shape:
            hint = ""
            if g.shape == shape[::-1] and len(shape) == 2:
                hint = " - the transpose: return the gradient, not its .T?"
                values = g.T  # its values are compared as the transpose they likely are
            elif g.size == int(np.prod(shape)):
                dropped = [n for n in g.shape if n != 1] == [n for n in shape if n != 1]
                hint = (
                    " - an axis of size 1 more or less: `param -= lr * grad` then broadcasts "
                    "to the wrong shape or fails"
                    if dropped
                    else " - same size: a reshape is missing?"
                )
                values = g.reshape(shape)  # its values are compared after the reshape
            elif broadcasts_to(shape, g.shape):
                hint = " - the input is broadcast in the forward: sum the gradient over those axes"
                values = None
            else:
                hint = ": an update `param -= lr * grad` needs the input's shape"
                values = None
            problems[i] = (
                f"the gradient of {name!r} has shape {g.shape}, "
                f"expected {shape} like the input{hint}"
            )
            if values is not None and np.all(np.isfinite(values)):
                out[i] = values  # a wrong value must not hide behind the shape message
        elif not np.all(np.isfinite(g)):
            problems[i] = f"the gradient of {name!r} has {nonfinite(g)}"
        else:
            out[i] = g
    return out, problems, None
