"""Reports for every failure: shape and value problems together, and the hints for plain
patterns (one wrong entry per row at the labels, a gradient that is exactly zero, an error that
grows with the input's values). The wrong layers are written out here; the expected numbers
come from their formulas, not from the checker."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import (
    bn_backward,
    bn_forward,
    bn_inputs,
    softmax_ce_backward,
    softmax_ce_forward,
    softmax_inputs,
)

from bnsym.gradcheck.check import check_function, check_layer

BN = bn_inputs(8, 3)


@pytest.mark.parametrize("mode", ["auto", "full", "probe"])
def test_a_wrong_shape_and_a_wrong_value_are_both_reported(mode):
    # dgamma as (1, D) and 1% off: before, the shape message hid the wrong values
    def backward(dout, cache):
        dx, dgamma, dbeta = bn_backward(dout, cache)
        return dx, (dgamma * 1.01)[None, :], dbeta

    report = check_layer(bn_forward, backward, *BN(np.random.default_rng(0)), mode=mode)
    text = str(report)
    assert not report["gamma"].passed and report["x"].passed and report["beta"].passed
    assert "the gradient of 'gamma' has shape (1, 3), expected (3,)" in text
    assert "`param -= lr * grad` then broadcasts to the wrong shape or fails" in text
    if mode != "probe":  # entry by entry: the factor is named
        assert "analytic = 1.01 x numerical for every entry of gamma" in text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda dx: dx.T, "has shape (3, 8), expected (8, 3) like the input - the transpose"),
        (lambda dx: dx.reshape(-1), "has shape (24,), expected (8, 3) like the input - same size"),
    ],
    ids=["transposed", "flattened"],
)
def test_a_wrong_shape_with_right_values_fails_on_the_shape_alone(change, message):
    def backward(dout, cache):
        dx, dgamma, dbeta = bn_backward(dout, cache)
        return change(dx), dgamma, dbeta

    report = check_layer(bn_forward, backward, *BN(np.random.default_rng(0)))
    assert not report.passed and not report["x"].passed
    assert message in str(report)
    assert report["x"].n_failed == 0 and report["x"].n_checked > 0  # values compared, right


def test_one_wrong_entry_per_row_at_the_labels_is_named():
    x, y = softmax_inputs(np.random.default_rng(0))

    def backward(dout, cache):  # -0.5 instead of -1 at the labels
        p, y = cache
        dx = p.copy()
        dx[np.arange(p.shape[0]), y] -= 0.5
        return dx * dout / p.shape[0], None

    report = check_layer(softmax_ce_forward, backward, x, y)
    text = str(report)
    assert not report.passed
    assert (
        "one entry per row of x differs, at the position y gives in each row (x[i, y[i]])" in text
    )
    assert check_layer(softmax_ce_forward, softmax_ce_backward, x, y).passed


def test_one_wrong_entry_per_row_elsewhere_is_named_without_labels():
    def f(x):
        return np.tanh(x)

    def vjp(dout, x):
        dx = dout * (1 - np.tanh(x) ** 2)
        dx[np.arange(4), [2, 0, 1, 2]] *= 1.5
        return dx

    report = check_function(f, vjp, np.random.default_rng(1).normal(size=(4, 3)))
    assert "one entry per row of x differs (4 rows)" in str(report)


@pytest.mark.parametrize("mode", ["auto", "probe"])
def test_a_gradient_exactly_zero_for_an_input_the_forward_uses(mode):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(100, 10)), rng.normal(size=(10, 8))

    def vjp(dout, x, w):
        return dout @ w.T, np.zeros_like(w)

    report = check_function(lambda x, w: x @ w, vjp, x, w, mode=mode)
    assert not report["w"].passed and report["x"].passed
    assert "the analytic gradient of w is zero everywhere (exactly 0 in every entry) though the " \
        "forward depends on w" in str(report)  # fmt: skip


def test_an_error_proportional_to_the_input_is_named():
    # a loss with an L2 penalty 0.5 * reg * |w|^2 whose backward forgets reg * w
    reg = 0.3
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))

    def f(x, w):
        return np.sum(np.tanh(x @ w)) + 0.5 * reg * np.sum(w * w)

    def vjp(dout, x, w):
        dz = dout * (1 - np.tanh(x @ w) ** 2)
        return dz @ w.T, x.T @ dz  # the penalty's reg * w * dout is missing

    report = check_function(f, vjp, x, w, dout=np.float64(2.0))
    assert not report["w"].passed and report["x"].passed
    # analytic - numerical = -reg * dout * w
    assert "analytic - numerical = -0.6 * w at the failing entries" in str(report)
    assert "regularization" in str(report)
