"""The closed form split into its terms (bnsym.reference.terms): the terms of every layout a
declaration reads x in add up to the textbook backward written out in tests/corpus.py, and
each term is the piece of that formula it names."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import BATCH, EPS, FAMILY, GROUP, LAYER, SPATIAL, family_backward, family_forward

import bnsym.reference._core as _core
from bnsym.family.layers import LAYERS, Layer
from bnsym.reference.terms import axis_sums, dx_terms, layouts_for, param_sum

#: the corpus' layer -> (declaration, G)
DECLARED = {BATCH: ("batchnorm", ()), LAYER: ("layernorm", ()), SPATIAL: ("batchnorm", ()),
            GROUP: ("groupnorm", (2,))}  # fmt: skip


@pytest.mark.parametrize("norm", FAMILY, ids=lambda n: n.name)
def test_the_terms_add_up_to_the_textbook_backward(norm):
    rng = np.random.default_rng(0)
    C = norm.shape[1]
    x, gamma, beta = rng.normal(size=norm.shape), rng.normal(1, 0.3, C), rng.normal(size=C)
    dout = rng.normal(size=norm.shape)
    name, groups = DECLARED[norm]
    (layout,) = layouts_for(LAYERS[name], norm.shape, groups)
    out, cache = _core.forward(layout, x, gamma, beta, EPS)
    np.testing.assert_allclose(out, family_forward(norm)(x, gamma, beta)[0], atol=1e-13)
    terms = dx_terms(cache, dout)
    dx, dgamma, dbeta = family_backward(norm)(dout, family_forward(norm)(x, gamma, beta)[1])
    np.testing.assert_allclose(sum(terms.values()), dx, atol=1e-12)
    # each term is the formula's piece: dropping it is the corpus' backward without it
    for name, knob in (("dy", "w_dy"), ("mean", "w_mean"), ("xhat", "w_xhat")):
        without = family_backward(norm, **{knob: 0.0})(
            dout, family_forward(norm)(x, gamma, beta)[1]
        )
        np.testing.assert_allclose(dx - without[0], terms[name], atol=1e-12)
    x_hat = cache.x_hat.reshape(norm.shape)
    np.testing.assert_allclose(param_sum(dout * x_hat, layout), dgamma, atol=1e-12)
    np.testing.assert_allclose(param_sum(dout, layout), dbeta, atol=1e-12)


def test_layouts_follow_the_declarations_data():
    shape = (2, 6, 3, 4)
    assert [lay.axes for lay in layouts_for(LAYERS["batchnorm"], shape)] == [(0, 2, 3)]
    assert [lay.axes for lay in layouts_for(LAYERS["instancenorm"], shape)] == [(2, 3)]
    assert [lay.bcast for lay in layouts_for(LAYERS["layernorm"], shape)] == [(1, 6, 3, 4)]
    groups = layouts_for(LAYERS["groupnorm"], shape)
    assert [lay.view[1] for lay in groups] == [1, 2, 3, 6]  # every G dividing C
    assert [lay.view for lay in layouts_for(LAYERS["groupnorm"], shape, [3])] == [(2, 3, 2, 3, 4)]
    assert layouts_for(LAYERS["instancenorm"], (4, 3)) == []  # (N, C, m) needs three axes
    scalenorm = Layer(name="scalenorm", centred=False, beta=False)
    (lay,) = layouts_for(scalenorm, (4, 3))
    assert lay.axes == (1,) and lay.bcast == (1, 1) and not lay.centred


def test_the_means_over_other_axes_and_the_sums_that_fit():
    rng = np.random.default_rng(1)
    x, dout = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    (layout,) = layouts_for(LAYERS["layernorm"], x.shape)
    _, cache = _core.forward(layout, x, np.ones(4), np.zeros(4), 0.0)
    wrong = dx_terms(cache, dout, axes=(0,))
    x_hat, std = cache.x_hat, 1 / cache.inv_std
    np.testing.assert_allclose(wrong["mean"], -dout.mean(axis=0) / std, atol=1e-12)
    np.testing.assert_allclose(
        wrong["xhat"], -x_hat * (dout * x_hat).mean(axis=0) / std, atol=1e-12
    )
    assert axis_sums((4, 4), 4) == [(0,), (1,)]
    assert axis_sums((2, 3, 4, 3), 3) == [(0, 1, 2), (0, 2, 3)]
