"""The term-level diagnosis of a wrong backward of the normalization family (issue 19, item 1).

Every wrong layer is written out in tests/corpus.py (the textbook backward with one knob
turned) and must get the reading written beside it; the closed form's values the report shows
are compared with that textbook backward, not with the checker; correct layers, the students'
corpus and bugs the closed form's terms cannot express get no reading."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import (
    CORRECT,
    FAMILY_CORRECT,
    FAMILY_WRONG,
    LAYER,
    SPATIAL,
    WRONG,
    bn_backward,
    bn_backward_eps_outside_sqrt,
    bn_backward_no_mean_term,
    bn_backward_one_feature,
    bn_forward,
    bn_inputs,
    family_backward,
    family_forward,
    family_inputs,
    layernorm_backward,
    layernorm_forward,
)

from bnsym.family.layers import LAYERS, Layer, LayerError
from bnsym.gradcheck.check import check_function, check_layer

pytest_plugins = ["pytester"]

# --- the corpus of wrong family backwards ------------------------------------------------------


@pytest.mark.parametrize("case", FAMILY_WRONG, ids=[c.name for c in FAMILY_WRONG])
def test_every_wrong_family_backward_gets_its_diagnosis(case):
    report = check_layer(case.forward, case.backward, *case.inputs())
    text = str(report)
    assert not report.passed
    for expected in case.expect:
        assert expected in text, f"{case.name}: {expected!r} missing from\n{text}"
    diagnosed = [r for r in report.inputs if r.diagnosis is not None]
    assert diagnosed and all(r.diagnosis.explained for r in diagnosed), text
    assert report.family and "recognised from the forward's output" in report.family


def test_the_corpus_has_every_bug_for_every_layer():
    names = {c.name for c in FAMILY_WRONG}
    for norm in ("batch norm", "layer norm", "group norm", "spatial batch norm"):
        for bug in ("∂ℓ/∂y term dropped", "mean term dropped", "x̂ term dropped",
                    "∂ℓ/∂y term's sign", "mean term's sign", "x̂ term's sign",
                    "1/(m − 1) for 1/m in the x̂ term", "gamma broadcast over the wrong axis",
                    "dgamma summed over the wrong axis"):  # fmt: skip
            assert f"{norm}: {bug}" in names
    assert "spatial batch norm: 1/N for 1/m in both means" in names
    assert "group norm: 1/(H·W) for 1/m in both means" in names


@pytest.mark.parametrize("case", FAMILY_CORRECT + CORRECT, ids=lambda c: c.name)
def test_no_correct_layer_gets_a_diagnosis(case):
    report = check_layer(case.forward, case.backward, *case.inputs(), **case.options)
    assert report.passed, str(report)
    assert report.family == "" and all(r.diagnosis is None for r in report.inputs)
    assert "diagnosis" not in str(report) and "family:" not in str(report)


@pytest.mark.parametrize("case", WRONG, ids=[c.name for c in WRONG])
def test_the_students_corpus_keeps_its_reports(case):
    # every bug still caught with its message; a diagnosis only where the closed form's terms
    # explain the whole difference, else none, or one that says it explains nothing
    report = check_layer(case.forward, case.backward, *case.inputs(), **case.options)
    assert not report.passed
    for expected in case.expect:
        assert expected in str(report)
    for r in report.inputs:
        if r.diagnosis is not None and not r.diagnosis.explained:
            assert r.hints or r.worst  # today's report stays beside it


def test_the_closed_form_shown_is_the_textbook_gradient():
    # the values beside yours are the corpus' right backward at the same entries
    inputs = bn_inputs(8, 3)(np.random.default_rng(0))
    dout = np.random.default_rng(5).standard_normal((8, 3))
    report = check_layer(bn_forward, bn_backward_no_mean_term, *inputs, dout=dout)
    right = bn_backward(dout, bn_forward(*inputs)[1])[0]
    wrong = bn_backward_no_mean_term(dout, bn_forward(*inputs)[1])[0]
    d = report["x"].diagnosis
    assert d is not None and d.explained and len(d.entries) == 3
    for index, yours, exact in d.entries:
        assert yours == pytest.approx(wrong[index], rel=1e-14)
        assert exact == pytest.approx(right[index], rel=1e-12)
    # the missing term is -mean(dout * gamma) / std: what is left after it is rounding
    assert d.residual < 1e-12
    text = str(report)
    assert "diagnosis: ∂ℓ/∂x = γ·(∂ℓ/∂y − mean(∂ℓ/∂y) − x̂·mean(∂ℓ/∂y·x̂))/√(σ²_B + ε)" in text
    assert "your ∂ℓ/∂x lacks the −mean(∂ℓ/∂y) term" in text
    assert "closed form" in text.split("diagnosis:")[1]


@pytest.mark.parametrize(
    "backward, why",
    [
        (bn_backward_eps_outside_sqrt, "ε placed otherwise in the backward only"),
        (bn_backward_one_feature, "one feature off by 0.1%"),
    ],
)
def test_a_bug_the_terms_cannot_express_is_said_so_and_the_report_kept(backward, why):
    report = check_layer(bn_forward, backward, *bn_inputs(8, 3)(np.random.default_rng(0)))
    d = report["x"].diagnosis
    assert not report.passed and d is not None and not d.explained, why
    assert "no combination of the closed form's terms explains the difference" in d.findings[0]
    assert "with that put right" not in str(report)
    assert report["x"].worst  # the entries are still shown


# --- recognition ----------------------------------------------------------------------------


def _bn(eps=1e-5, ddof=0, outside=False):
    """Batch norm written out, with its variant; the backward lacks the mean term."""

    def forward(x, gamma, beta):
        var = x.var(axis=0, ddof=ddof)
        std = np.sqrt(var) + eps if outside else np.sqrt(var + eps)
        x_hat = (x - x.mean(axis=0)) / std
        return gamma * x_hat + beta, (x_hat, gamma, std, x)

    def backward(dout, cache):
        x_hat, gamma, std, x = cache
        m = x.shape[0]
        dx_hat = dout * gamma
        # the right x-hat term for this variant: k * r * x_hat * sum(dx_hat * x_hat)
        sigma = np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=0) / (m - ddof))
        r = std / sigma if outside else 1.0
        dx = (dx_hat - r * x_hat * (dx_hat * x_hat).sum(axis=0) / (m - ddof)) / std
        return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)

    return forward, backward


@pytest.mark.parametrize(
    "variant, words",
    [
        (dict(eps=1e-3), "ε = 0.001 inside the root, biased variance (1/m)"),
        (dict(eps=0.0), "ε = 0 inside the root, biased variance (1/m)"),
        (dict(ddof=1), "ε = 1e-05 inside the root, unbiased variance (1/(m − 1))"),
        (dict(eps=1e-3, outside=True), "ε = 0.001 outside the root, biased variance (1/m)"),
    ],
    ids=["eps 1e-3", "eps 0", "unbiased", "eps outside"],
)
def test_eps_and_the_variance_are_solved_from_the_output(variant, words):
    forward, backward = _bn(**variant)
    x, gamma, beta = bn_inputs(8, 3)(np.random.default_rng(2))
    report = check_layer(forward, backward, x, gamma, beta)
    assert words in report.family, report.family
    assert report["x"].diagnosis.findings == ("your ∂ℓ/∂x lacks the −mean(∂ℓ/∂y) term",)


def test_a_layer_without_gamma_and_beta_and_one_not_centred():
    x = np.random.default_rng(3).normal(size=(6, 5))

    def rms(x, gamma):
        std = np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-6)
        return gamma * x / std, (x / std, gamma, std)

    def rms_backward(dout, cache):  # the x-hat term forgotten
        x_hat, gamma, std = cache
        return dout * gamma / std, (dout * x_hat).sum(axis=0)

    report = check_layer(rms, rms_backward, x, np.linspace(0.5, 1.5, 5))
    assert report.family.startswith("RMS normalization of x (6, 5)")
    d = report["x"].diagnosis
    assert d.closed_form == "∂ℓ/∂x = (g − x̂·mean(g·x̂))/√(ν² + ε),  g = γ·∂ℓ/∂y"
    assert d.findings == ("your ∂ℓ/∂x lacks the −x̂·mean(g·x̂) term",)

    def plain(x):  # layer norm without γ and β, its sign flipped
        xc = x - x.mean(axis=1, keepdims=True)
        return xc / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + 1e-5)

    def plain_vjp(dout, x):
        out, cache = layernorm_forward(x, np.ones(5), np.zeros(5))
        return -layernorm_backward(dout, cache)[0]

    report = check_function(plain, plain_vjp, x)
    assert "no γ or β" in report.family
    assert report["x"].diagnosis.findings == ("your ∂ℓ/∂x has every term with the wrong sign",)


def test_cs231n_spatial_group_norm_with_its_g_and_param_dict():
    # x (N, C, H, W), gamma and beta (1, C, 1, 1), G and gn_param passed through
    def forward(x, gamma, beta, G, gn_param):
        N, C, H, W = x.shape
        xg = x.reshape(N, G, -1)
        mu, var = xg.mean(axis=2, keepdims=True), xg.var(axis=2, keepdims=True)
        std = np.sqrt(var + gn_param["eps"])
        x_hat = ((xg - mu) / std).reshape(x.shape)
        return gamma * x_hat + beta, (x_hat, gamma, std, G)

    def backward(dout, cache):  # the mean term's sign flipped
        x_hat, gamma, std, G = cache
        N, C, H, W = dout.shape
        g = (dout * gamma).reshape(N, G, -1)
        xh = x_hat.reshape(N, G, -1)
        dx = (g + g.mean(axis=2, keepdims=True) - xh * (g * xh).mean(axis=2, keepdims=True)) / std
        return (dx.reshape(dout.shape), (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True),
                dout.sum(axis=(0, 2, 3), keepdims=True), None, None)  # fmt: skip

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 3, 2))
    gamma, beta = rng.normal(1, 0.3, size=(1, 6, 1, 1)), rng.normal(size=(1, 6, 1, 1))
    report = check_layer(forward, backward, x, gamma, beta, 3, {"eps": 1e-5})
    assert report.family.startswith("Group normalization of x (2, 6, 3, 2), groups of m = "
                                    "(C/G)·H·W = 12 values")  # fmt: skip
    assert report["x"].diagnosis.findings == (
        "your ∂ℓ/∂x has the −mean(g) term with the wrong sign",
    )


# --- the layer named by the caller ------------------------------------------------------------


def test_a_named_layer_is_tried_alone():
    forward, backward = family_forward(LAYER), family_backward(LAYER, w_mean=0.0)
    inputs = family_inputs(LAYER)(np.random.default_rng(0))
    for named in ("layernorm", LAYERS["layernorm"], Layer(name="mine", params="element")):
        report = check_layer(forward, backward, *inputs, layer=named)
        assert report.family.endswith("; as named")
        assert report["x"].diagnosis.findings == ("your ∂ℓ/∂x lacks the −mean(g) term",)
    report = check_layer(forward, backward, *inputs, layer="batchnorm")
    assert not report.passed and report["x"].diagnosis is None
    assert report.family.startswith("Batch normalization was named, but the forward's output is")
    with pytest.raises(LayerError, match="unknown layer 'batchnrm'"):
        check_layer(forward, backward, *inputs, layer="batchnrm")


def test_check_function_and_the_fixture_take_the_layer(pytester):
    forward, backward = family_forward(SPATIAL), family_backward(SPATIAL, w_xhat=-1.0)
    x, gamma, beta = family_inputs(SPATIAL)(np.random.default_rng(0))
    report = check_function(
        lambda *a: forward(*a)[0], lambda d, *a: backward(d, forward(*a)[1]), x, gamma, beta,
        layer="batchnorm", names=["x", "gamma", "beta"],
    )  # fmt: skip
    assert report["x"].diagnosis.findings == (
        "your ∂ℓ/∂x has the −x̂·mean(∂ℓ/∂y·x̂) term with the wrong sign",
    )
    pytester.makepyfile(
        """
        import numpy as np

        def forward(x, gamma, beta):
            mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
            x_hat = (x - mu) / np.sqrt(var + 1e-5)
            return gamma * x_hat + beta, (x_hat, gamma, np.sqrt(var + 1e-5))

        def backward(dout, cache):  # layer norm without its mean term
            x_hat, gamma, std = cache
            g = dout * gamma
            dx = (g - x_hat * (g * x_hat).mean(axis=1, keepdims=True)) / std
            return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)

        def test_layernorm(gradcheck):
            rng = np.random.default_rng(0)
            x, gamma, beta = rng.normal(size=(4, 5)), rng.normal(size=5), rng.normal(size=5)
            gradcheck(forward, backward, x, gamma, beta, layer="layernorm")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*your ∂ℓ/∂x lacks the −mean(g) term*"])


def test_check_torch_gets_the_diagnosis_of_a_custom_function(torch):
    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            mu, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
            std = (var + 1e-5).sqrt()
            x_hat = (x - mu) / std
            ctx.save_for_backward(x_hat, w, std)
            return w * x_hat + b

        @staticmethod
        def backward(ctx, dout):  # the x-hat term's sign flipped
            x_hat, w, std = ctx.saved_tensors
            g = dout * w
            dx = (g - g.mean(1, keepdim=True) + x_hat * (g * x_hat).mean(1, keepdim=True)) / std
            return dx, (dout * x_hat).sum(0), dout.sum(0)

    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, dtype=torch.float64, generator=gen) for s in ((4, 6), (6,), (6,)))
    from bnsym.gradcheck.pytorch import check_torch

    report = check_torch(LayerNorm.apply, x, w, b)
    assert report.family.startswith("Layer normalization of x (4, 6)")
    assert report["x"].diagnosis.findings == (
        "your ∂ℓ/∂x has the −x̂·mean(g·x̂) term with the wrong sign",
    )
    assert check_torch(torch.nn.LayerNorm(6).double(), x).family == ""  # right: nothing said
