"""The checker on odd but legitimate inputs and on the library attacks of issue 20: every call
ends in a report or a bnsym exception naming the argument, a check that compared nothing never
passes, and nothing is blamed on the user's code that the user's code did not do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bnsym.errors import BnsymError
from bnsym.gradcheck.check import check_double_backward, check_function, check_layer


def _double(x):
    return 2 * x


def _double_vjp(dout, x):
    return 2 * dout


# --- a forward whose output changes shape --------------------------------------------------


def test_a_forward_whose_output_shape_changes_under_a_step_gets_a_failed_report():
    def f(x):  # integer-valued inputs give 3 outputs, moved ones 2
        return 2 * x if np.all(x == np.round(x)) else (2 * x)[:2]

    report = check_function(f, _double_vjp, np.ones(3))
    assert not report.passed and report.raised is None
    assert "returned output shape(s) [(2,)] on inputs moved by a small step, [(3,)]" in str(report)
    assert not report["x"].judged  # the gradient was not found wrong: nothing was compared


def test_a_forward_whose_output_shape_changes_between_calls_is_nondeterministic():
    calls = []

    def f(x):
        calls.append(1)
        return (2 * x)[: 1 + len(calls) % 2]

    report = check_function(f, _double_vjp, np.ones(3))
    assert not report.passed
    assert "two calls on the same inputs return outputs of shape(s) [(2,)] and [(1,)]" in str(
        report
    )


# --- underflow and subnormal inputs -----------------------------------------------------------


def test_a_right_square_at_1e_200_passes_and_a_wrong_one_fails():
    # the forward underflows (x ** 2 = 0); the complex step, grown until its imaginary parts
    # keep their digits, still resolves the gradient 2x = 2e-200, and the report says how far
    x = np.array([1e-200, 2e-200, -3e-200])
    report = check_function(lambda x: x**2, lambda d, x: 2 * x * d, x)
    assert report.passed, str(report)
    assert "underflow" in str(report) and "finer than it" in str(report)
    wrong = check_function(lambda x: x**2, lambda d, x: 3 * x * d, x)
    assert not wrong.passed and wrong["x"].judged
    assert "analytic = 1.5 x numerical" in str(wrong)
    # finite differences of outputs that are 0 see nothing: not judged, never passed
    blind = check_function(lambda x: x**2, lambda d, x: 0 * x * d, x, method="richardson")
    assert not blind.passed and not blind["x"].judged
    assert "could not be compared" in str(blind)


@pytest.mark.parametrize(
    "x",
    [
        np.array([5e-324, -5e-324, 1e-323]),
        np.array([1e-310, 2e-310, 3e-309]),
        np.full(3, 5e-320),
        np.zeros(3),
    ],
    ids=["smallest", "subnormal", "equal-subnormal", "zeros"],
)
@pytest.mark.parametrize("method", ["auto", "richardson"])
@pytest.mark.parametrize("mode", ["auto", "full", "probe"])
def test_subnormal_inputs_end_in_a_report_and_a_wrong_gradient_never_passes(x, method, mode):
    options = dict(method=method, mode=mode)
    # a linear layer is resolved at any size (its outputs are normal numbers along the steps)
    assert check_function(lambda x: 3 * x, lambda d, x: 3 * d, x, **options).passed
    assert not check_function(lambda x: 3 * x, lambda d, x: 3.3 * d, x, **options).passed
    # the gradient of x * x there is itself subnormal: not resolved, so not passed either way
    # (at 0 it is exactly 0, which 2 x and 3 x both give)
    for factor in (2, 3):
        report = check_function(lambda x: x * x, lambda d, x, k=factor: k * x * d, x, **options)
        assert report.passed == (not x.any()), str(report)


# --- names= ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["x"], r"names has 1 name\(s\) \['x'\] for 2 input\(s\)"),
        (["x", "y", "z"], r"names has 3 name\(s\)"),
        ([1, 2], "names must be strings, one per input; 1 is int"),
        ("xy", "names must be a list of 2 strings"),
        (["x", "x"], "names must be distinct; 'x' is given twice"),
    ],
    ids=["short", "long", "not-strings", "a-string", "twice"],
)
def test_names_of_the_wrong_length_or_kind_are_a_bnsym_error_naming_the_argument(names, match):
    def f(x, y):
        return x * y

    def vjp(d, x, y):
        return d * y, d * x

    for check in (check_function, check_layer):
        forward = f if check is check_function else (lambda x, y: (x * y, (x, y)))
        backward = vjp if check is check_function else (lambda d, c: vjp(d, *c))
        with pytest.raises(BnsymError, match=match):
            check(forward, backward, np.ones(3), np.ones(3), names=names)


# --- nothing to differentiate ---------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs",
    [(np.arange(3),), (np.ones(3, dtype=complex),), (np.ones(3, dtype=complex), np.arange(3))],
    ids=["integer", "complex", "both"],
)
def test_nothing_to_differentiate_is_a_report_that_blames_no_code(inputs):
    def f(*a):
        raise AssertionError("the forward must not be blamed: it is not even called")

    report = check_function(f, f, *inputs)
    assert not report.passed and report.raised is None
    assert "there is nothing to differentiate" in report.problems[0]
    assert all(not r.checked for r in report.inputs)
    assert "raised" not in str(report)


def test_a_complex_or_integer_input_asked_for_by_wrt_is_a_dtype_error():
    from bnsym.gradcheck.inputs import DtypeError

    with pytest.raises(DtypeError, match="wrt: input 'x' has dtype complex128; complex gradients"):
        check_function(_double, _double_vjp, np.ones(3, dtype=complex), wrt=["x"])
    with pytest.raises(DtypeError, match="wrt: input 'x' has dtype int64; only floating-point"):
        check_function(_double, _double_vjp, np.arange(3), wrt=[0])


# --- check_double_backward's seeds --------------------------------------------------------


def _tanh_layer():
    def forward(x):
        t = np.tanh(x)
        return t, t

    def backward(dout, t):
        return dout * (1 - t**2)

    return forward, backward


def test_the_double_backward_calls_its_seeds_ggrads_not_dout():
    forward, backward = _tanh_layer()

    def writes_into_its_seeds(gdx, dout, t):
        gx = 2 * gdx * dout * t * (1 - t**2)
        gdout = gdx * (1 - t**2)
        gdx *= 0  # writes into ggrads
        return -gx, gdout

    report = check_double_backward(forward, backward, writes_into_its_seeds, np.linspace(-1, 1, 5))
    text = str(report[2])
    assert "modifies ggrads in place" in text and "modifies dout" not in text
    with pytest.raises(BnsymError, match=r"ggrads has shape\(s\) \[\(3,\)\]"):
        check_double_backward(
            forward, backward, writes_into_its_seeds, np.linspace(-1, 1, 5), ggrads=np.ones(3)
        )


# --- PyTorch ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["complex128", "int64", "both"])
def test_check_torch_with_nothing_to_differentiate_says_so(torch, dtype):
    from bnsym.gradcheck.pytorch import check_torch

    tensors = {
        "complex128": (torch.ones(3, dtype=torch.complex128),),
        "int64": (torch.arange(3),),
        "both": (torch.ones(3, dtype=torch.complex128), torch.arange(3)),
    }[dtype]
    report = check_torch(lambda *t: t[0] * 2, *tensors)
    assert not report.passed and report.raised is None
    assert "there is nothing to differentiate" in report.problems[0]
    assert "autograd" not in str(report) or "raised" not in str(report)


def test_check_torch_keeps_pytorchs_complex_casting_warning_to_itself(torch):
    from bnsym.gradcheck.pytorch import check_torch

    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check_torch(lambda t: t.double() * 2, x)
        assert check_torch(lambda t: torch.zeros_like(t).copy_(t) * t, x).passed
    assert report.passed, str(report)
    assert not [w for w in caught if "Casting complex" in str(w.message)]
