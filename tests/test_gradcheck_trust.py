"""The checker's promises on awkward arguments: it never changes the caller's arrays, its
derivatives are right for any memory layout and any floating-point scale, a forward or backward
that raises is a failed check with a report, and a bad argument is a one-line error naming it.
References are the formulas written out here."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import affine_backward, affine_forward

from bnsym.gradcheck.check import (
    GradientCheckError,
    assert_layer_gradients,
    check_function,
    check_layer,
    numerical_vjp,
)


def _double(x):
    return 2 * x


def _double_vjp(dout, x):
    return 2 * dout


# --- memory layout ------------------------------------------------------------------------------

_BASE = np.arange(1.0, 13.0).reshape(3, 4) / 7


@pytest.mark.parametrize("method", ["auto", "complex", "richardson"])
@pytest.mark.parametrize(
    "x",
    [
        np.arange(6.0).reshape(3, 2).T,
        np.asfortranarray(_BASE),
        _BASE[:, ::2],
        np.broadcast_to(np.arange(1.0, 4.0), (4, 3)),
    ],
    ids=["transposed", "fortran", "strided", "broadcast"],
)
def test_any_memory_layout_gets_the_right_derivatives(x, method):
    report = check_function(_double, _double_vjp, x, method=method, mode="full")
    assert report.passed, str(report)
    report = check_function(lambda x: x * x, lambda d, x: 2 * d * x, x, method=method)
    assert report.passed, str(report)


@pytest.mark.parametrize("method", ["complex", "richardson"])
def test_numerical_vjp_of_a_transposed_view(method):
    x = np.arange(6.0).reshape(3, 2).T
    dout = np.random.default_rng(0).normal(size=x.shape)
    (dx,) = numerical_vjp(lambda x: x * x, [x], dout, method=method)
    np.testing.assert_allclose(dx, 2 * x * dout, rtol=1e-8, atol=1e-9)


def test_the_readme_affine_layer_with_w_as_a_transposed_view():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)).T, rng.normal(size=2)
    report = check_layer(affine_forward, affine_backward, x, w, b)
    assert report.passed, str(report)


def test_the_same_array_passed_twice_is_two_inputs():
    a = np.random.default_rng(1).normal(size=(3, 3))
    report = check_function(lambda x, y: x * y, lambda d, x, y: (d * y, d * x), a, a)
    assert report.passed, str(report)
    wrong = check_function(lambda x, y: x * y, lambda d, x, y: (d * x, d * x), a, a.T)
    assert not wrong.passed


# --- the caller's arrays ----------------------------------------------------------------------


def test_a_float64_input_checked_with_a_float32_one_is_not_changed():
    # the float64 re-run of a float32 check used to hand the caller's float64 array to the
    # backward, which here zeroes it through the cache
    def forward(x, y):
        return x * y, (x, y)

    def backward(dout, cache):
        x, y = cache
        dx, dy = dout * y, dout * x
        x[...] = 0.0  # writes into the cached input
        return dx.astype(x.dtype), dy.astype(y.dtype)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=5), rng.normal(size=5).astype(np.float32)
    x_before, y_before = x.copy(), y.copy()
    report = check_layer(forward, backward, x, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert "(through the cache) in place" in str(report)


# --- scale ------------------------------------------------------------------------------------


def _square(x):
    return x * x


def _square_vjp(dout, x):
    return 2 * dout * x


def _tanh_vjp(dout, x):
    return dout * (1 - np.tanh(x) ** 2)


@pytest.mark.parametrize("method", ["auto", "richardson"])
@pytest.mark.parametrize("scale", [1e-310, 1e-300, 1e-200, 1e-150, 1e150])
@pytest.mark.parametrize(
    "f, vjp", [(_double, _double_vjp), (_square, _square_vjp), (np.tanh, _tanh_vjp)]
)
def test_correct_functions_pass_at_extreme_scales(f, vjp, scale, method):
    x = np.random.default_rng(0).normal(size=(3, 4)) * scale
    report = check_function(f, vjp, x, method=method)
    # x * x of 1e-300 is 0 in float64, and of 1e-200 too: a difference quotient of outputs
    # that are 0 resolves nothing below 1e-100 (the complex step does at 1e-200, where its
    # imaginary parts 2 x h can be kept above underflow; not at 1e-300): such a check compares
    # nothing, and says so instead of passing
    unseen = f is _square and (scale <= 1e-300 or (scale == 1e-200 and method == "richardson"))
    if unseen:
        assert not report.passed and not report["x"].judged
        assert "underflow" in str(report) and "could not be compared" in str(report)
    else:
        assert report.passed, str(report)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_a_wrong_gradient_still_fails_at_extreme_scales(scale):
    x = np.random.default_rng(0).normal(size=(3, 4)) * scale
    report = check_function(_square, lambda d, x: 2.01 * d * x, x)
    assert not report.passed
    assert "analytic = 1.005 x numerical" in str(report)


def test_an_output_that_overflows_is_reported_as_such():
    x = np.random.default_rng(0).normal(size=3) * 1e300
    report = check_function(_square, _square_vjp, x)
    assert not report.passed
    assert "the output of _square has 3 NaN/inf entries" in str(report)


# --- a forward or backward that raises ------------------------------------------------------


def test_a_raising_backward_is_a_failed_check_with_a_report():
    def backward(dout, cache):
        x, w = cache[0]  # a shape mismatch: ValueError: too many values to unpack
        return x, w

    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    report = check_layer(affine_forward, backward, x, w, b)
    assert not report.passed and report.raised == "backward"
    (problem,) = report.problems
    assert problem.startswith(
        "test_a_raising_backward_is_a_failed_check_with_a_report.<locals>.backward raised "
        "ValueError: too many values to unpack"
    )
    assert problem.endswith("(inputs x (4, 3), w (3, 2), b (2,))")
    assert [r.judged for r in report.inputs] == [False, False, False]
    with pytest.raises(GradientCheckError, match="backward raised ValueError"):
        assert_layer_gradients(affine_forward, backward, x, w, b)


def test_a_raising_forward_is_a_failed_check_with_a_report():
    report = check_function(lambda x: x[7], _double_vjp, np.ones(3))
    assert not report.passed and report.raised == "forward"
    assert "<lambda> raised IndexError: index 7 is out of bounds" in report.problems[0]
    assert "(inputs x (3,))" in report.problems[0]


def test_a_forward_raising_only_on_stepped_inputs_is_reported():
    def forward(x):
        if not np.all(x == np.round(x, 3)):
            raise ValueError("x must have three decimals")
        return 2 * x

    report = check_function(forward, _double_vjp, np.array([0.5, 0.25]))
    assert not report.passed and report.raised == "forward"
    assert "forward raised ValueError: x must have three decimals" in report.problems[0]
    assert "during the numerical derivatives" in report.problems[0]


@pytest.mark.parametrize("out", [None, "a"], ids=["None", "str"])
def test_an_output_that_is_not_an_array_of_numbers_is_named(out):
    report = check_function(lambda x: out, _double_vjp, np.ones(3))
    assert not report.passed
    assert f"is {type(out).__name__} {out!r}, not an array of real numbers" in report.problems[0]


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself warns
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: check_function(3, _double_vjp, np.ones(3)), TypeError, "forward must be callable"),
        (lambda: check_function(_double, None, np.ones(3)), TypeError, "backward must be callable"),
        (lambda: check_function(_double, _double_vjp, np.ones(3), seed=-1), ValueError, "seed"),
        (lambda: check_function(_double, _double_vjp, np.ones(3), seed=0.5), ValueError, "seed"),
        (
            lambda: check_function(_double, _double_vjp, np.ones(3), rtol="1e-3"),
            TypeError,
            "rtol must be a number such as 1e-6, not '1e-3'",
        ),
        (
            lambda: check_function(_double, _double_vjp, np.ones(3), wrt=[1.0]),
            TypeError,
            r"wrt=1.0: give inputs by position \(an int\) or by name",
        ),
        (
            lambda: check_function(_double, _double_vjp, [[1.0, 2.0], [3.0]]),
            ValueError,
            "input 'x' is a ragged list",
        ),
        (
            lambda: check_function(_double, _double_vjp, np.matrix([[1.0, 2.0]])),
            TypeError,
            "input 'x' is an np.matrix",
        ),
    ],
    ids=["forward", "backward", "seed-negative", "seed-float", "rtol-str", "wrt-float", "ragged",
         "matrix"],
)  # fmt: skip
def test_bad_arguments_raise_one_line_errors_naming_them(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)
