"""The checker on every kind of input (issue 20 item 6), drawn by hypothesis: dtypes (float64 to
float16 and bfloat16, integers, booleans, complex), magnitudes from subnormal to 1e300, shapes
(empty, size 1, 0-d), layouts (transposed, strided, broadcast) and argument kinds (arrays,
lists, Python numbers, strings, None) for check_function, check_layer and check_torch.

Every call ends in a report or a bnsym exception — never another exception — and ``passed`` is
never true for a check that compared nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnsym.errors import BnsymError
from bnsym.gradcheck.check import check_function, check_layer
from bnsym.gradcheck.report import Report

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAGNITUDES = [0.0, 5e-324, 1e-310, 1e-200, 1e-100, 1e-8, 1.0, 1e8, 1e100, 1e200, 1e300]
DTYPES = ["float64", "float32", "float16", "int64", "bool", "complex128"]
SHAPES = [(), (0,), (1,), (3,), (2, 3), (0, 3), (3, 1), (4, 2)]
LAYOUTS = ["plain", "transposed", "strided", "broadcast"]
KINDS = ["array", "list", "number", "string", "none"]

# right functions and their vjps, written for any shape and dtype
FUNCTIONS = {
    "double": (lambda x: 2 * x, lambda d, x: 2 * d),
    "square": (lambda x: x * x, lambda d, x: 2 * x * d),
    "tanh": (np.tanh, lambda d, x: d * (1 - np.tanh(x) ** 2)),
    "sum": (lambda x: np.sum(x) * np.ones(2), lambda d, x: np.sum(d) * np.ones_like(x)),
}


@st.composite
def arrays(draw):
    """One input: an array of a drawn dtype, magnitude, shape and layout, or another kind."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "string":
        return "x"
    if kind == "none":
        return None
    dtype = draw(st.sampled_from(DTYPES))
    magnitude = draw(st.sampled_from(MAGNITUDES))
    shape = draw(st.sampled_from(SHAPES if kind != "number" else [()]))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(size=shape) * magnitude
    if dtype == "complex128":
        values = values + 1j * values[::-1] if values.ndim else values + 1j
    with np.errstate(all="ignore"):  # 1e300 in float16 is inf: an input like any other
        a = np.asarray(values).astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "transposed" and a.ndim == 2:
        a = np.ascontiguousarray(a.T).T
    elif layout == "strided" and a.ndim >= 1 and a.shape[0] > 0:
        a = np.repeat(a, 2, axis=0)[::2]
    elif layout == "broadcast" and a.ndim >= 1 and a.size:
        a = np.broadcast_to(a[:1], a.shape)
    if kind == "list":
        return a.tolist()
    if kind == "number":
        return a.item() if a.ndim == 0 else a
    return a


def _judged_something(report: Report) -> bool:
    return any(r.checked and r.judged and r.n_checked > 0 for r in report.inputs)


def _ends_well(call) -> None:
    """The call returns a report (never passed without a comparison) or raises a bnsym error."""
    try:
        report = call()
    except BnsymError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    assert isinstance(report, Report)
    text = str(report)  # the report renders
    assert text.startswith(("gradient check", "jvp check"))
    if report.passed:
        assert _judged_something(report), text


@SETTINGS
@given(name=st.sampled_from(sorted(FUNCTIONS)), x=arrays(), seed=st.integers(0, 3))
def test_check_function_ends_in_a_report_or_a_bnsym_error(name, x, seed):
    f, vjp = FUNCTIONS[name]
    _ends_well(lambda: check_function(f, vjp, x, seed=seed))


@SETTINGS
@given(
    name=st.sampled_from(sorted(FUNCTIONS)),
    x=arrays(),
    y=arrays(),
    mode=st.sampled_from(["auto", "full", "probe"]),
    method=st.sampled_from(["auto", "richardson"]),
)
def test_check_layer_ends_in_a_report_or_a_bnsym_error(name, x, y, mode, method):
    f, vjp = FUNCTIONS[name]

    def forward(x, y):
        return f(x) + 0 * np.sum(y), (x, y)

    def backward(dout, cache):
        x, y = cache
        return vjp(dout, x), np.zeros_like(np.asarray(y, dtype=float))

    _ends_well(lambda: check_layer(forward, backward, x, y, mode=mode, method=method))


@SETTINGS
@given(name=st.sampled_from(sorted(FUNCTIONS)), x=arrays(), names=st.sampled_from(
    [None, ["x"], ["x", "y"], [1], "x", ["x", "x"]]
))  # fmt: skip
def test_names_of_any_kind_end_well(name, x, names):
    f, vjp = FUNCTIONS[name]
    _ends_well(lambda: check_function(f, vjp, x, names=names))


TORCH_DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "bool", "complex64"]
TORCH_FUNCTIONS = ["tanh", "square", "layer_norm", "sum"]


@SETTINGS
@given(
    x=arrays(),
    dtype=st.sampled_from(TORCH_DTYPES),
    name=st.sampled_from(TORCH_FUNCTIONS),
    modes=st.sampled_from([None, ("rev",), ("fwd",), ("fwd", "rev")]),
)
def test_check_torch_ends_in_a_report_or_a_bnsym_error(torch, x, dtype, name, modes):
    from bnsym.gradcheck.modes import ModesReport
    from bnsym.gradcheck.pytorch import check_torch

    functions = {
        "tanh": torch.tanh,
        "square": lambda t: t * t,
        "layer_norm": lambda t: torch.nn.functional.layer_norm(t, t.shape[-1:]),
        "sum": lambda t: t.sum() * torch.ones(2, dtype=t.dtype),
    }
    tensor = x
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiubc":
        with warnings.catch_warnings():  # complex drawn, a real dtype asked for: the test's cast
            warnings.simplefilter("ignore")
            tensor = torch.from_numpy(np.array(x)).to(getattr(torch, dtype))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = check_torch(functions[name], tensor, modes=modes)
    except BnsymError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    finally:
        torch.set_num_threads(threads)
    reports = result.checks if isinstance(result, ModesReport) else (result,)
    str(result)
    for report in reports:
        if report.passed:
            assert _judged_something(report), str(report)


@pytest.mark.parametrize("x", [np.zeros((0, 3)), np.arange(3), np.ones(3, dtype=complex)])
def test_a_check_that_compared_nothing_is_never_passed(x):
    report = check_function(lambda x: x * 2, lambda d, x: 2 * d, x)
    assert not report.passed and not _judged_something(report)
