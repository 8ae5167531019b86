"""Bounds checked before work starts, and caps held while it runs: the one place that knows
what every request may cost.

A request — ``derive``, ``codegen`` or ``check``, at an order, in a mode of differentiation,
to an output format — is estimated from m, the check's values and the format with the cost
models of :data:`COSTS` (a row per command, order and mode: the parts the request runs, each
a sum of power laws fitted to measurements, ``benchmarks/calibrate_limits.py``). The
estimate is compared with a budget of time and memory before any work:

- :data:`LIMIT` without ``--force`` (``force=False``),
- :data:`FORCED` with it — raised, never unbounded.

A request over its budget raises :class:`LimitError` at once, with the estimate and what to
change (the largest m or features that fit). A request within it runs under :func:`bounded`,
which holds the process to the budget: the data segment is capped (``RLIMIT_DATA``, so an
allocation past it raises ``MemoryError``) and a CPU-time alarm is set (``ITIMER_PROF``);
reaching either ends the request with a one-line :class:`LimitError`, so no request runs
past the stated bound even where the estimate is wrong.

A new mode of differentiation is a row per command and order in :data:`COSTS` (see
:func:`estimate`); a new output format a row in :data:`RENDER` (a format without one is
costed as the dearest measured).

>>> estimate("derive", 4).seconds < 1
True
>>> admit("check", 4, features=10**12)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
bnsym.limits.LimitError: check(m=4, features=1000000000000) would take about ...
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from bnsym.errors import BnsymError, option

__all__ = [
    "COSTS",
    "FORCED",
    "LIMIT",
    "RENDER",
    "Budget",
    "Estimate",
    "LimitError",
    "admit",
    "bounded",
    "estimate",
    "HIGHER_MAX_M",
    "MAX_EXAMPLE_VALUES",
]


class LimitError(BnsymError, ValueError):
    """A request whose cost would exceed the bounds, or that reached a cap while running;
    the message gives the estimate and what to change."""


# --- budgets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """What one request may take: CPU seconds and bytes of memory (its data segment)."""

    seconds: float
    bytes: float

    def text(self) -> str:
        return f"{_duration(self.seconds)} and {_size(self.bytes)}"


def _physical_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8e9


#: Without --force: a minute of CPU time and 2 GB. That admits derive and codegen up to m of
#: about 450 (m = 128 takes 3 s and 140 MB in every format), check at order 1 up to about
#: 5.6·10⁶ values, at orders 2 and 3 about 13,000 and 5,600 (their exact evaluation takes
#: milliseconds a value).
LIMIT = Budget(seconds=60.0, bytes=2e9)
#: With --force: ten minutes of CPU time and 8 GB, or three quarters of the machine's memory
#: if less: derive up to m of about 740, check at order 1 up to about 2.5·10⁷ values.
FORCED = Budget(seconds=600.0, bytes=min(8e9, 0.75 * _physical_bytes()))


# --- cost models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """``c · m^a · v^b`` for ``lo ≤ m ≤ hi``: m the group size, v the values of the check's x
    (0 outside check, where a term in v is 0)."""

    c: float
    a: float = 0.0
    b: float = 0.0
    lo: int = 1
    hi: int | None = None

    def __call__(self, m: float, v: float) -> float:
        if (self.b and not v) or m < self.lo or (self.hi is not None and m > self.hi):
            return 0.0
        return self.c * m**self.a * v**self.b


@dataclass(frozen=True)
class Part:
    """One stage of a request (the derivation, the double backward, the check's arrays ...):
    its CPU seconds and its memory, each a sum of :class:`Term`."""

    name: str
    seconds: tuple[Term, ...]
    bytes: tuple[Term, ...]

    def cost(self, m: float, v: float) -> tuple[float, float]:
        return sum(t(m, v) for t in self.seconds), sum(t(m, v) for t in self.bytes)


@dataclass(frozen=True)
class Row:
    """The parts a request runs, and the largest m its proofs are written for (None: no bound
    but the budget)."""

    parts: tuple[Part, ...]
    max_m: int | None = None
    why_max_m: str = ""


# Fitted to whole processes on the shared 2-core development machine: CPU seconds (user +
# system) and peak resident memory, benchmarks/calibrate_limits.py, which prints each
# measurement beside its estimate (the estimates err high: measured / estimated 0.3 to 1).
MB = 1e6
#: Python, SymPy, NumPy and bnsym imported (and compiled, where no bytecode is cached), and a
#: derivation at m of a few: 0.75 s and 60 to 90 MB (codegen and check import more).
START = Part("starting", (Term(0.75),), (Term(90 * MB),))
#: The graph, the chain rule and the proofs of order 1 (derive --m M, all told: 128 took
#: 2.3 s and 120 MB, 256 7.2 s and 414 MB, 512 48 s and 2.6 GB: the proofs' polynomials grow
#: as m³ in time and m^2.85 in memory).
DERIVATION = Part(
    "the derivation",
    (Term(8e-3, 1), Term(3.2e-7, 3)),
    (Term(0.15 * MB, 1), Term(50.0, 2.85)),
)
#: The double backward's chain rule and proofs (m ≤ 16): 0.75 s and 70 MB at m = 16.
ORDER_2 = Part("the double backward", (Term(1.8e-4, 3),), (Term(1.7e4, 3),))
#: The largest m at which the third order is also derived from the closed form of order 2
#: (bnsym.proofs.higher.THIRD_CLOSED_MAX_M): that grows as m⁵ (2.1 s and 140 MB at m = 8);
#: above it the third order is the chain rule's alone (0.55 s at m = 16).
ORDER_3_CLOSED_MAX_M = 8
ORDER_3 = Part(
    "the third order",
    (Term(0.2), Term(6.4e-5, 5, hi=ORDER_3_CLOSED_MAX_M), Term(1.3e-4, 3, lo=9)),
    (Term(4300.0, 5, hi=ORDER_3_CLOSED_MAX_M), Term(1e4, 3, lo=9)),
)
#: The generated NumPy module, printed and compiled: 0.8 s at m = 128, 1.6 s at 256.
MODULE = Part("the generated module", (Term(6.5e-3, 1),), (Term(0.2 * MB, 1),))
MODULE_2 = Part("the generated double backward", (Term(7e-3, 1),), (Term(0.2 * MB, 1),))
#: check at order 1: the implementations' arrays of the values, and the gradient check's
#: directions (4·10⁶ values took 5.9 s and 1.0 GB more than 4000 values).
CHECK_1 = Part("the check's arrays", (Term(1.6e-6, 0, 1),), (Term(270.0, 0, 1),))
#: The PyTorch columns, where PyTorch is importable (counted always): importing it, and its
#: tensors (check -D 10⁶ at m = 4: 1.7 s and 330 MB more than without).
TORCH = Part("PyTorch", (Term(1.5), Term(1e-7, 0, 1)), (Term(200 * MB), Term(40.0, 0, 1)))
#: check at order 2: the exact chain rule evaluated group by group in 50-digit arithmetic
#: (3.7 ms a value at m = 4 and 16: 4000 values took 15 s), and complex-step differences, one
#: evaluation of the generated backward per entry of x, dout and γ (quadratic in the values).
CHECK_2 = Part(
    "the check's exact values and differences",
    (Term(3.7e-3, 0, 1), Term(5e-8, 0, 2)),
    (Term(2000.0, 0, 1),),
)
#: check at order 3: the same over the third order's steps (9.7 ms a value: 4000 took 39 s).
CHECK_3 = Part(
    "the check's exact values and differences",
    (Term(9.7e-3, 0, 1), Term(1e-7, 0, 2)),
    (Term(3000.0, 0, 1),),
)

#: Forward mode (bnsym.proofs.modes), measured in process beside the first-order derivation:
#: the jvp's walk, closed form and proofs 0.04 s at m = 4 and 0.26 s at 128, a few MB;
#: order 2 in every composition 0.16 s at m = 4, 0.76 s at 8, 3 s at 16 (290 MB); the
#: forward chain's third order 0.44 s and 25 MB at m = 4, 9 s and 670 MB at 8.
FORWARD_1 = Part("forward mode", (Term(2e-3, 1),), (Term(0.1 * MB, 1),))
FORWARD_2 = Part("the second order in every composition", (Term(4e-3, 3),), (Term(6e4, 3),))
FORWARD_3 = Part("the forward chain's third order", (Term(1.1e-3, 4.35),), (Term(3.5e4, 4.75),))
MODULE_MODES = Part("the generated jvp and hvp", (Term(7e-3, 1),), (Term(0.2 * MB, 1),))

#: The largest m of derive and check at orders 2 and 3: their chain rule and proofs take 2 s
#: at m = 16 and minutes at 32, and are written (and tested) up to 16.
HIGHER_MAX_M = 16
_HIGHER_M = f"derived and proved up to m = {HIGHER_MAX_M} (the proofs grow as m⁴)"
#: Order 3 with forward mode (the forward chain's third derivative): proved up to m = 8.
THIRD_FORWARD_MAX_M = 8
_THIRD_FORWARD_M = (
    f"derived and proved up to m = {THIRD_FORWARD_MAX_M} with forward mode (the proofs grow "
    "faster than m⁴)"
)
#: Values of a worked example (derive --values), features × m: each takes about 7 ms.
MAX_EXAMPLE_VALUES = 1024

#: The rows: (command, order, mode of differentiation) -> the parts it runs. "rev" is reverse
#: mode (the backward pass and its derivatives); a new mode adds its rows.
COSTS: dict[tuple[str, int, str], Row] = {
    ("derive", 1, "rev"): Row((START, DERIVATION)),
    ("derive", 2, "rev"): Row((START, DERIVATION, ORDER_2), HIGHER_MAX_M, _HIGHER_M),
    ("derive", 3, "rev"): Row((START, DERIVATION, ORDER_2, ORDER_3), HIGHER_MAX_M, _HIGHER_M),
    ("codegen", 1, "rev"): Row((START, DERIVATION, MODULE)),
    ("codegen", 2, "rev"): Row((START, DERIVATION, MODULE_2)),
    ("check", 1, "rev"): Row((START, DERIVATION, MODULE, TORCH, CHECK_1)),
    ("check", 2, "rev"): Row(
        (START, DERIVATION, ORDER_2, MODULE_2, TORCH, CHECK_2), HIGHER_MAX_M, _HIGHER_M
    ),
    ("check", 3, "rev"): Row(
        (START, DERIVATION, ORDER_2, ORDER_3, MODULE_2, TORCH, CHECK_3), HIGHER_MAX_M, _HIGHER_M
    ),
    # forward mode (--modes fwd): with fwd,rev both rows count, each stage once
    ("derive", 1, "fwd"): Row((START, DERIVATION, FORWARD_1)),
    ("derive", 2, "fwd"): Row((START, DERIVATION, FORWARD_1, FORWARD_2), HIGHER_MAX_M, _HIGHER_M),
    ("derive", 3, "fwd"): Row(
        (START, DERIVATION, FORWARD_1, FORWARD_2, FORWARD_3), THIRD_FORWARD_MAX_M, _THIRD_FORWARD_M
    ),
    ("codegen", 1, "fwd"): Row((START, DERIVATION, FORWARD_1, MODULE_MODES)),
    ("codegen", 2, "fwd"): Row(
        (START, DERIVATION, FORWARD_1, FORWARD_2, MODULE_MODES), HIGHER_MAX_M, _HIGHER_M
    ),
    ("check", 1, "fwd"): Row((START, DERIVATION, FORWARD_1, MODULE_MODES, TORCH, CHECK_2)),
    ("check", 2, "fwd"): Row(
        (START, DERIVATION, FORWARD_1, FORWARD_2, MODULE_MODES, TORCH, CHECK_2),
        HIGHER_MAX_M,
        _HIGHER_M,
    ),
    ("check", 3, "fwd"): Row(
        (START, DERIVATION, FORWARD_1, FORWARD_2, FORWARD_3, MODULE_MODES, TORCH, CHECK_3),
        THIRD_FORWARD_MAX_M,
        _THIRD_FORWARD_M,
    ),
}

#: Writing the notes, by format (derive only). Above m = 8 the notes show each element's
#: lines once, so text, LaTeX and Markdown grow about as m (LaTeX 0.5 s at m = 128, 1 s at
#: 512); the JSON holds every element's explicit results, O(m) terms each: m² (2.5 MB at 128).
RENDER: dict[str, Part] = {
    "text": Part("the text", (Term(2e-3, 1),), (Term(0.1 * MB, 1),)),
    "json": Part("the JSON", (Term(2e-5, 2),), (Term(400.0, 2),)),
    "latex": Part("the LaTeX", (Term(4e-3, 1),), (Term(0.2 * MB, 1),)),
    "markdown": Part("the Markdown", (Term(4e-3, 1),), (Term(0.2 * MB, 1),)),
    "pdf": Part("the PDF (LaTeX, then pdflatex)", (Term(1.0), Term(4e-3, 1)), (Term(0.2 * MB, 1),)),
}
#: A format without a row of its own is costed as the dearest of the others.
RENDER_DEFAULT = Part(
    "the notes", (Term(1.0), Term(4e-3, 1), Term(2e-5, 2)), (Term(0.2 * MB, 1), Term(400.0, 2))
)


# --- estimates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """What a request would take: CPU ``seconds`` and ``bytes`` at its peak, the ``request``
    as a command line would give it, and the part that costs most."""

    request: str
    seconds: float
    bytes: float
    dearest: str

    def text(self) -> str:
        return f"{_duration(self.seconds)} and {_size(self.bytes)}"

    def within(self, budget: Budget) -> bool:
        return self.seconds <= budget.seconds and self.bytes <= budget.bytes


def estimate(
    kind: str,
    m: int,
    *,
    features: int | None = None,
    order: int = 1,
    modes: tuple[str, ...] = ("rev",),
    fmt: str | None = None,
    values: int | None = None,
) -> Estimate:
    """CPU seconds and peak memory of ``bnsym KIND --m M [--features D] --order N [--modes]
    [--format F]``: the sum of the parts of its rows in :data:`COSTS` (each part counted once
    when several modes share it) and, for derive, of writing ``fmt``.

    ``values`` is the number of values of the check's x (m·D for batch norm, m·D·groups for a
    layer with several groups a sample); by default m·features. No work is done: an
    estimate takes microseconds whatever the size.

    >>> e = estimate("derive", 128, fmt="json")
    >>> 1 < e.seconds < 10 and e.bytes < 3e8
    True
    """
    parts: dict[str, Part] = {}
    for mode in modes:
        row = COSTS.get((kind, order, mode))
        if row is None:
            raise LimitError(f"no cost is known for {kind} at order {order} in mode {mode!r}.")
        parts.update((p.name, p) for p in row.parts)
    if kind == "derive" and fmt is not None:
        render = RENDER.get(fmt, RENDER_DEFAULT)
        parts[render.name] = render
    v = float(values if values is not None else m * (features or 0))
    costs = {name: p.cost(float(m), v) for name, p in parts.items()}
    seconds = sum(c[0] for c in costs.values())
    peak = sum(c[1] for c in costs.values())
    dearest = max(costs, key=lambda n: costs[n][0] / LIMIT.seconds + costs[n][1] / LIMIT.bytes)
    return Estimate(_request(kind, m, features, order, modes, fmt), seconds, peak, dearest)


def _request(
    kind: str, m: int, features: int | None, order: int, modes: tuple[str, ...], fmt: str | None
) -> str:
    """The request as the caller wrote it: ``derive --m 4 --order 2`` on the command line,
    ``derive(m=4, order=2)`` from Python (:func:`bnsym.errors.option`)."""
    words = [option("m", m)]
    if features is not None:
        words.append(option("features", features))
    if order != 1:
        words.append(option("order", order))
    if modes != ("rev",):
        words.append(option("modes", ",".join(modes)))
    if fmt is not None:
        words.append(option("format", fmt))
    if words[0].startswith("--"):
        return " ".join([kind, *words])
    return f"{kind}({', '.join(words)})"


def admit(
    kind: str,
    m: int,
    *,
    features: int | None = None,
    order: int = 1,
    modes: tuple[str, ...] = ("rev",),
    fmt: str | None = None,
    values: int | None = None,
    force: bool = False,
) -> Estimate:
    """The estimate of the request if it fits the budget (:data:`FORCED` with ``force``,
    else :data:`LIMIT`); :class:`LimitError` with the estimate and what to change if not.
    Takes well under a second whatever the size (the largest m or features that fit is
    found by bisection over the cost models)."""
    for mode in modes:
        row = COSTS.get((kind, order, mode))
        if row is not None and row.max_m is not None and m > row.max_m:
            raise LimitError(f"{option('order', order)} is {row.why_max_m}; got m = {m}.")
    est = estimate(kind, m, features=features, order=order, modes=modes, fmt=fmt, values=values)
    budget = FORCED if force else LIMIT
    if est.within(budget):
        return est
    per_value = None if values is None or not features else values / (m * features)
    advice = _advice(kind, m, features, order, modes, fmt, per_value, budget)
    if not force and est.within(FORCED):
        advice += f", or pass {option('force', True)} (up to {FORCED.text()}, enforced)"
    flag = option("force", True)
    which = f"what {flag} allows" if force else f"the limit without {flag}"
    raise LimitError(
        f"{est.request} would take about {est.text()} (mostly {est.dearest}), above {which} "
        f"({budget.text()}); {advice}."
    )


def _advice(
    kind: str,
    m: int,
    features: int | None,
    order: int,
    modes: tuple[str, ...],
    fmt: str | None,
    per_value: float | None,
    budget: Budget,
) -> str:
    """What to change: the largest features (for a check) or m that fits ``budget``."""

    def fits(mm: int, dd: int | None) -> bool:
        values = None if per_value is None or dd is None else round(mm * dd * per_value)
        e = estimate(kind, mm, features=dd, order=order, modes=modes, fmt=fmt, values=values)
        return e.within(budget)

    if features is not None:
        best = _largest(lambda d: fits(m, d), features)
        if best:
            return f"give {option('features')} ≤ {best} (or a smaller {option('m')})"
    best = _largest(lambda mm: fits(mm, features), m)
    if best:
        return f"give {option('m')} ≤ {best}"
    return f"no size of this request fits; try a lower {option('order')}"


def _largest(ok: Callable[[int], bool], above: int) -> int:
    """The largest n < ``above`` with ``ok(n)`` (``ok`` monotone: true below a threshold), or
    0 if even 1 fails. About 2·log2(above) calls."""
    if not ok(1):
        return 0
    lo, hi = 1, max(2, above)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


# --- caps while a request runs -------------------------------------------------------------------


class _TimeUp(BaseException):
    """Raised by the CPU-time alarm; a BaseException so that no ``except Exception`` on the
    way swallows it (as KeyboardInterrupt)."""


_ACTIVE = threading.local()


@contextlib.contextmanager
def bounded(
    kind: str,
    m: int,
    *,
    features: int | None = None,
    order: int = 1,
    modes: tuple[str, ...] = ("rev",),
    fmt: str | None = None,
    values: int | None = None,
    force: bool = False,
) -> Iterator[Estimate]:
    """:func:`admit` the request, then run the body within its budget: the data segment
    capped at its size now plus the budget's bytes, and (in the main thread, when no other
    SIGPROF handler is installed) a CPU-time alarm at the budget's seconds. A ``MemoryError``
    or the alarm in the body becomes :class:`LimitError`; the limits are restored on the way
    out. Nested requests (derive inside check) are admitted but run under the outer caps."""
    est = admit(
        kind,
        m,
        features=features,
        order=order,
        modes=modes,
        fmt=fmt,
        values=values,
        force=force,
    )
    if getattr(_ACTIVE, "on", False):
        yield est
        return
    budget = FORCED if force else LIMIT
    _ACTIVE.on = True
    restore_memory = _cap_memory(budget.bytes)
    restore_time = _cap_time(budget.seconds)
    try:
        yield est
    except MemoryError:
        raise LimitError(
            f"{est.request} stopped at the memory cap ({_size(budget.bytes)} more than when it "
            f"started; estimated {_size(est.bytes)}){_what_next(force)}."
        ) from None
    except _TimeUp:
        raise LimitError(
            f"{est.request} stopped at the time cap ({_duration(budget.seconds)} of CPU time; "
            f"estimated {_duration(est.seconds)}){_what_next(force)}."
        ) from None
    finally:
        restore_time()
        restore_memory()
        _ACTIVE.on = False


def _what_next(force: bool) -> str:
    smaller = f": give a smaller {option('m')} or {option('features')}"
    if force:
        return smaller
    return f"{smaller}, or pass {option('force', True)} (up to {FORCED.text()})"


def _data_bytes() -> int | None:
    """The data segment's size now (VmData of /proc/self/status), or None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _cap_memory(allowed: float) -> Callable[[], None]:
    """Cap the data segment at its size now plus ``allowed``; return the undo."""
    try:
        import resource
    except ImportError:  # not POSIX: no cap to set
        return lambda: None
    now = _data_bytes()
    if now is None:
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = now + int(allowed)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        return lambda: None  # a tighter cap is already in place
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (ValueError, OSError):
        return lambda: None
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _cap_time(seconds: float) -> Callable[[], None]:
    """A CPU-time alarm after ``seconds`` (then every second, should the first be swallowed);
    return the undo. Only the main thread can take signals; elsewhere the memory cap holds."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        return lambda: None
    previous = signal.getsignal(signal.SIGPROF)
    if previous not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return lambda: None  # someone else's profiler or alarm: leave it alone

    def stop(signum: int, frame: object) -> None:
        raise _TimeUp

    signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds, 1.0)

    def undo() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)

    return undo


def _duration(seconds: float) -> str:
    for unit, scale in (("years", 3.15e7), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * scale if unit != "min" else seconds >= scale:
            return f"{_number(seconds / scale)} {unit}"
    return f"{_number(seconds)} s"


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{_number(n / scale)} {unit}"
    return f"{_number(n / 1e3)} kB"


def _number(x: float) -> str:
    """Two significant digits, as a person reads them: 0.79, 1.3, 14, 140, 2,600; 3.2e+09."""
    if x >= 1e6:
        return f"{x:.1e}"
    rounded = float(f"{x:.2g}")
    return f"{rounded:,.0f}" if rounded.is_integer() else f"{rounded:g}"


# --- other bounds ---------------------------------------------------------------------------------


def check_size(m: int, features: object, seed: object = 0) -> int:
    """D, after checking that it is a whole number ≥ 1 (and the seed ≥ 0); the size itself is
    bounded by :func:`admit`."""
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise LimitError(f"{option('features')} must be a whole number ≥ 1, not {features!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LimitError(f"{option('seed')} must be a whole number ≥ 0, not {seed!r}.")
    return features


def float_eps(eps: object) -> float | None:
    """ε as the float64 that generated code uses by default; LimitError when it has none.

    >>> float_eps(Fraction(1, 100000))
    1e-05
    """
    if eps is None:
        return None
    exact = Fraction(str(eps))
    try:
        value = float(exact)  # the nearest float; OverflowError above 1.8e308
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or (value == 0) != (exact == 0):
        raise LimitError(
            f"eps = {_short(eps)} has no float64 value (floats reach from about 5e-324 to "
            "1.8e308), which the generated code needs; give eps within that range."
        )
    return value


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: TeX measures nothing beyond \maxdimen, 16383.99 pt: about 3300 letters of display maths
#: (a row of 3313 letters failed with "Dimension too large"). Rows above this are refused
#: with room to spare; a row that wide is about 60 pages across anyway.
MAX_TEX_ROW_LETTERS = 2500


# --- the modes of differentiation (--modes) ----------------------------------------------------

#: The words ``--modes`` takes: forward mode (jvp) and reverse mode (vjp).
MODES = ("fwd", "rev")
#: The highest order of the compositions each command gives: derive and check go to 3 (derive:
#: the forward chain, and the reverse chain of bnsym.proofs.higher), codegen to 2.
MODES_MAX_ORDER = {"derive": 3, "codegen": 2, "check": 3}
#: check --modes with forward mode evaluates every composition's walks exactly, group by group:
#: at order 3 about 0.1 s per composition and group at m = 4, growing as m²; m = 16 keeps a
#: check within a minute.
MODES_CHECK_MAX_M = 16


class ModesError(BnsymError, ValueError):
    """A bad --modes: an unknown word, or an order or m the modes are not given for."""


def parse_modes(text: str) -> tuple[str, ...]:
    """``"fwd,rev"`` as ``("fwd", "rev")`` (in that order, each once); ModesError otherwise.

    >>> parse_modes("rev,fwd"), parse_modes("fwd")
    (('fwd', 'rev'), ('fwd',))
    """
    words = [w.strip() for w in str(text).split(",")]
    bad = [w for w in words if w not in MODES]
    if bad or not any(words):
        shown = ", ".join(repr(w[:20]) for w in bad) or repr(text[:20])
        raise ModesError(
            f"--modes {shown} is not a mode; give fwd, rev or fwd,rev (forward mode is the jvp, "
            "reverse mode the vjp)."
        )
    return tuple(m for m in MODES if m in words)


def check_modes(command: str, modes: tuple[str, ...], order: int, m: int) -> None:
    """The bounds of forward mode for ``command``: its highest order, and check's m."""
    highest = MODES_MAX_ORDER[command]
    if order > highest:
        raise ModesError(
            f"--order {order} with --modes {','.join(modes)}: {command} gives orders up to "
            f"{highest}; give --order {highest} or less."
        )
    if order == 3 and "fwd" in modes and m > THIRD_FORWARD_MAX_M:
        raise ModesError(f"{option('order', order)} is {_THIRD_FORWARD_M}; got m = {m}.")
    if command == "check" and "fwd" in modes and order > 1 and m > MODES_CHECK_MAX_M:
        raise ModesError(
            f"check --modes {','.join(modes)} --order {order} evaluates every composition "
            f"exactly, up to m = {MODES_CHECK_MAX_M}; got m = {m}. Give a smaller --m."
        )
