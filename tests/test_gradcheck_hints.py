"""Hints that are right (issue 19, item 3): each hint fires where its pattern holds and stays
silent where it does not. The wrong layers are written out here, each with its one bug."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import (
    affine_backward,
    affine_forward,
    bn_backward,
    bn_backward_no_mean_term,
    bn_backward_swapped,
    bn_forward,
    bn_forward_npvar,
    bn_inputs,
    leaky_relu_backward_relu,
    leaky_relu_forward,
    softmax_ce_backward_no_mean,
    softmax_ce_forward,
    softmax_inputs,
)

from bnsym.gradcheck.check import check_layer


def _affine(n=4, d=3, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(d, k)), rng.normal(size=k)


def _changed(change):
    """The affine backward with ``change(dx, dw, db)`` applied to its gradients."""

    def backward(dout, cache):
        return change(*(g.copy() for g in affine_backward(dout, cache)))

    return backward


def _hints(report, name):
    return " | ".join(report[name].hints)


# --- a constant factor: the factor first, a missing 1/m only where an axis has that length ------


def test_a_plain_factor_of_two_is_not_a_missing_one_over_m():
    # x (4, 3), w (3, 2): w's and the output's axes of length 2 are not x's
    report = check_layer(affine_forward, _changed(lambda dx, dw, db: (2 * dx, dw, db)), *_affine())
    hints = _hints(report, "x")
    assert hints.startswith("analytic = 2 x numerical for every entry of x: a factor of 2 (")
    assert "a term counted twice" in hints and "1/m" not in hints


def test_a_factor_that_is_no_axis_of_the_input_is_only_the_factor():
    report = check_layer(
        affine_forward, _changed(lambda dx, dw, db: (5 * dx, dw, db)), *_affine(k=5)
    )
    assert _hints(report, "x") == "analytic = 5 x numerical for every entry of x: a factor of 5"


def test_a_missing_one_over_m_is_named_with_the_axis_it_belongs_to():
    x, y = softmax_inputs(np.random.default_rng(0))  # x (6, 4): the mean over 6 rows
    report = check_layer(softmax_ce_forward, softmax_ce_backward_no_mean, x, y)
    assert _hints(report, "x") == (
        "analytic = 6 x numerical for every entry of x: a factor of 6 (a missing 1/m with "
        "m = 6, the length of axis 0 of x?)"
    )


def test_an_extra_one_over_m_of_a_broadcast_input_names_the_output_axis():
    # db = dout.mean(0): b (2,) is broadcast over the output's 4 rows
    report = check_layer(affine_forward, _changed(lambda dx, dw, db: (dx, dw, db / 4)), *_affine())
    assert _hints(report, "b") == (
        "analytic = numerical / 4 for every entry of b: a factor of 1/4 (an extra 1/m with "
        "m = 4, the length of the output's axis 0, over which b is broadcast?)"
    )


def test_a_flipped_sign_and_a_small_factor():
    report = check_layer(affine_forward, _changed(lambda dx, dw, db: (-dx, dw, db)), *_affine())
    assert _hints(report, "x") == "analytic = -numerical for every entry of x: a flipped sign"
    report = check_layer(
        affine_forward, _changed(lambda dx, dw, db: (1.001 * dx, dw, db)), *_affine()
    )
    assert "a constant factor (+0.1%)" in _hints(report, "x")
    assert "flipped" not in _hints(report, "x")


# --- the hints that fit come first, the guesses only where none fits ----------------------------


def _zero_column(dx, dw, db):
    dw[:, 1] = 0.0
    return dx, dw, db


def test_a_zeroed_column_is_named_alone():
    report = check_layer(affine_forward, _changed(_zero_column), *_affine())
    assert report["w"].hints == (
        "the analytic gradient of w is 0 in w[:, 1] (3 checked entries) where the numerical "
        "one is not, and right elsewhere: that slice is never computed, or overwritten with 0?",
    )  # no ReLU mask, no one-hot, no repeated "one wrong column"


def test_scattered_zeros_are_a_mask_and_not_a_slice():
    x = np.random.default_rng(0).normal(size=(4, 5))
    report = check_layer(leaky_relu_forward, leaky_relu_backward_relu, x)
    hints = _hints(report, "x")
    assert "a mask that drops entries (a ReLU mask where the slope is not 0?)" in hints
    assert "slice is never computed" not in hints


def test_one_wrong_column_is_not_a_one_hot():
    def one_column(dx, dw, db):
        dw[:, 1] *= 1.5
        return dx, dw, db

    report = check_layer(affine_forward, _changed(one_column), *_affine())
    hints = _hints(report, "w")
    assert "all 3 mismatches are in w[:, 1] (index 1 along axis 1)" in hints
    assert "one-hot" not in hints and "mask" not in hints


# --- swapped gradients: named by their numbers, whatever their shapes -----------------------


def test_swapped_gradients_of_different_shapes_are_named_not_reshaped():
    report = check_layer(affine_forward, _changed(lambda dx, dw, db: (dx, db, dw)), *_affine())
    text = str(report)
    assert "the gradients of w and b look swapped" in text
    assert (
        "problem: the gradient returned for 'w' has shape (2,), the shape of 'b': it is db" in text
    )
    assert "sum the gradient over those axes" not in text  # the advice for a broadcast input
    assert report["x"].passed and not report["w"].passed and not report["b"].passed


def test_swapped_gradients_above_the_entrywise_size_are_named():
    # dx and dw of 100 entries each: beyond SMALL_INPUT, compared by random directions
    x, w, b = _affine(10, 10, 10, seed=1)
    report = check_layer(affine_forward, _changed(lambda dx, dw, db: (dw, dx, db)), x, w, b)
    assert "the gradients of x and w look swapped" in _hints(report, "x")


def test_swapped_gradients_of_the_same_shape():
    report = check_layer(
        bn_forward, bn_backward_swapped, *bn_inputs(8, 3)(np.random.default_rng(0))
    )
    assert _hints(report, "gamma").startswith("the gradients of gamma and beta look swapped")


def test_two_wrong_gradients_of_one_size_are_not_called_swapped():
    def both_off(dout, cache):
        dx, dgamma, dbeta = bn_backward(dout, cache)
        return dx, 1.01 * dgamma, 0.99 * dbeta

    report = check_layer(bn_forward, both_off, *bn_inputs(8, 3)(np.random.default_rng(0)))
    assert not report["gamma"].passed and not report["beta"].passed
    assert "look swapped" not in str(report)


# --- notes about the method only where they bear on the verdict -------------------------------


@pytest.mark.parametrize(
    "backward, shown", [(bn_backward, False), (bn_backward_no_mean_term, True)]
)
def test_the_complex_step_note_is_shown_on_a_failure_only(backward, shown):
    report = check_layer(bn_forward_npvar, backward, *bn_inputs(8, 3)(np.random.default_rng(0)))
    assert report.passed is not shown
    assert report.method_notes and "complex step not used" in report.method_notes[0]
    assert ("complex step not used" in str(report)) is shown
