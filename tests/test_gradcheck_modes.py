"""The checker in every mode (issue 17 item 5): check_jvp for NumPy code with its own jvp, and
check_torch(..., modes=..., order=1|2) for PyTorch's forward mode and the compositions. Right
jvps pass; every wrong one of the corpus (tests/corpus_jvp.py) fails with a report that leads
with the mode and order; PyTorch's fused F.layer_norm is caught wrong at the jvp of the jvp, as
research-17 found; bad input is a bnsym exception, a jvp that raises a report."""

from __future__ import annotations

import numpy as np
import pytest
from corpus_jvp_numpy import np_layer_norm, np_layer_norm_jvp

import bnsym
from bnsym.errors import BnsymError
from bnsym.gradcheck.inputs import DtypeError
from bnsym.gradcheck.jvp import check_jvp
from bnsym.gradcheck.words import ModesError, parse_modes, words

pytest_plugins = ["pytester"]


def _ln_inputs(shape=(8, 16), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    gamma = rng.normal(1.0, 0.3, size=shape[-1]).astype(dtype)
    beta = rng.normal(size=shape[-1]).astype(dtype)
    return x, gamma, beta


# --- check_jvp: NumPy code with its own jvp ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", [(8, 16), (4, 8, 64), (1, 3)], ids=str)
def test_a_right_jvp_passes(shape, dtype):
    inputs = _ln_inputs(shape, dtype)
    before = [a.copy() for a in inputs]
    report = check_jvp(np_layer_norm, np_layer_norm_jvp, *inputs)
    assert report.passed, str(report)
    assert report.word == ("fwd",) and [r.name for r in report.inputs] == ["x", "gamma", "beta"]
    for a, b in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("wrong", "culprit"), [("factor", "x"), ("mean", "x"), ("gamma", "gamma")])
def test_a_wrong_jvp_fails_naming_the_mode_and_the_input(wrong, culprit):
    def jvp(*args):
        return np_layer_norm_jvp(*args, wrong=wrong)

    report = check_jvp(np_layer_norm, jvp, *_ln_inputs())
    assert not report.passed
    failing = [r.name for r in report.inputs if not r.passed]
    assert failing == [culprit]
    first = str(report).splitlines()[0]
    assert first.startswith(f"forward mode, order 1: the jvp of {culprit} is wrong along a")


def test_a_jvp_off_by_a_factor_gets_the_factor_hint():
    def jvp(x, tx):
        return x**3, 2 * x**2 * tx  # 3 x^2 tx

    report = check_jvp(lambda x: x**3, jvp, np.linspace(1, 2, 5))
    assert not report.passed
    assert "0.666666667 x numerical for every entry" in report["x"].hints[0]


def test_a_dropped_tangent_says_so():
    def jvp(*args):
        return np_layer_norm_jvp(*args, wrong="gamma")

    report = check_jvp(np_layer_norm, jvp, *_ln_inputs())
    assert "is exactly 0 in every entry along a tangent of gamma alone" in report["gamma"].hints[0]


def test_the_numbers_agree_with_an_independent_jvp_to_1e_9():
    # the forward's jvp in closed form against the checker's central differences
    x = np.linspace(-2, 2, 7)
    report = check_jvp(np.sin, lambda x, tx: (np.sin(x), np.cos(x) * tx), x, method="richardson")
    assert report.passed and report["x"].max_rel_error < 1e-9


def test_the_jvp_may_return_the_tangent_alone_and_several_outputs():
    def f(x, w):
        return x * w, np.tanh(x)

    def jvp(x, w, tx, tw):
        return tx * w + x * tw, (1 - np.tanh(x) ** 2) * tx

    x, w = np.linspace(-1, 1, 4), np.full(4, 0.5)
    assert check_jvp(f, jvp, x, w).passed
    assert check_jvp(f, lambda *a: (f(*a[:2]), jvp(*a)), x, w).passed

    def wrong(x, w, tx, tw):
        return tx * w + x * tw, 2 * (1 - np.tanh(x) ** 2) * tx

    report = check_jvp(f, wrong, x, w)
    assert not report["x"].passed and report["w"].passed
    assert report["x"].worst[0].index[0] == 1  # output 1 first


def test_given_tangents_and_integer_constants():
    def f(x, labels):
        return x[np.arange(len(labels)), labels] ** 2

    def jvp(x, labels, tx, tlabels):
        assert tlabels is None  # integers get no tangent
        rows = np.arange(len(labels))
        return 2 * x[rows, labels] * tx[rows, labels]

    x = np.arange(6.0).reshape(3, 2) + 1
    labels = np.array([0, 1, 1])
    report = check_jvp(f, jvp, x, labels, tangents=[np.ones((3, 2)), None])
    assert report.passed and not report["labels"].checked


@pytest.mark.parametrize(
    ("jvp", "problem"),
    [
        (lambda x, tx: 1 / 0, "raised ZeroDivisionError: division by zero"),
        (lambda x, tx: tx[:2], "has shape (2,), the output of"),
        (lambda x, tx: np.full(3, np.nan), "has 3 NaN/inf entries"),
        (lambda x, tx: tx.astype(int), "dtype int64"),
    ],
    ids=["raises", "shape", "nan", "integer"],
)
def test_a_jvp_that_raises_or_returns_nonsense_is_a_report(jvp, problem):
    report = check_jvp(lambda x: 2 * x, jvp, np.ones(3))
    assert not report.passed and problem in report.problems[0]
    assert str(report).startswith("forward mode, order 1: problem:")
    assert report.raised == ("jvp" if "raised" in problem else None)


def test_a_forward_that_raises_or_changes_shape_is_a_report():
    report = check_jvp(lambda x: 1 / 0, lambda x, tx: tx, np.ones(3))
    assert report.raised == "forward" and "ZeroDivisionError" in report.problems[0]
    report = check_jvp(lambda x: x if np.all(x == 1) else x[:2], lambda x, tx: tx, np.ones(3))
    assert "on inputs moved by a small step" in report.problems[0]


def test_nothing_to_differentiate_never_passes():
    report = check_jvp(lambda x: x, lambda x, tx: tx, np.arange(3))
    assert not report.passed and "nothing to differentiate" in report.problems[0]


def test_bad_arguments_are_bnsym_errors():
    f, jvp = np_layer_norm, np_layer_norm_jvp
    with pytest.raises(BnsymError, match="method must be one of"):
        check_jvp(f, jvp, *_ln_inputs(), method="complex")
    with pytest.raises(BnsymError, match="names has 1 name"):
        check_jvp(f, jvp, *_ln_inputs(), names=["x"])
    with pytest.raises(BnsymError, match="tangents has 1 entries for 3 inputs"):
        check_jvp(f, jvp, *_ln_inputs(), tangents=[np.ones((8, 16))])


def test_check_jvp_is_exported():
    assert bnsym.check_jvp is check_jvp and "check_jvp" in bnsym.__all__


# --- words -----------------------------------------------------------------------------------


def test_modes_are_parsed_and_unknown_words_refused():
    assert parse_modes("fwd,rev") == ("fwd", "rev") == parse_modes(["fwd", "rev", "fwd"])
    assert words(("fwd",), 2) == [("fwd",), ("fwd", "fwd")]
    for bad in ("forward", ("fwd", "jvp"), "", 3):
        with pytest.raises(ModesError):
            parse_modes(bad)


# --- check_torch in every mode ------------------------------------------------------------------


@pytest.fixture
def corpus(torch):
    import corpus_jvp

    return corpus_jvp


def test_a_right_custom_function_passes_every_composition(torch, corpus):
    inputs = corpus.layer_norm_inputs()
    for fn in (corpus.layer_norm_function().apply, corpus.OldStyleLayerNorm.apply):
        report = bnsym.check_torch(fn, *inputs, modes=("fwd", "rev"), order=2)
        assert report.passed, str(report)
    # the jvp of the jvp of a custom Function is what PyTorch cannot compute: said, not blamed
    words_checked = [r.word for r in report.checks]
    assert ("fwd", "fwd") not in words_checked and len(words_checked) == 5
    assert "pytorch/pytorch#197867" in str(report)


@pytest.mark.parametrize(("wrong", "culprit"), [("factor", "x"), ("mean", "x"), ("gamma", "gamma")])
def test_every_wrong_jvp_of_the_corpus_fails_in_forward_mode_order_1(torch, corpus, wrong, culprit):
    fn = corpus.layer_norm_function(wrong).apply
    report = bnsym.check_torch(fn, *corpus.layer_norm_inputs(), modes=("fwd", "rev"))
    assert report.failed == (("fwd",),)  # the backward is right
    text = str(report)
    assert text.splitlines()[0].startswith("modes check FAILED in forward mode, order 1")
    assert text.splitlines()[1].startswith(
        f"  forward mode, order 1: the jvp of {culprit} is wrong"
    )


def test_a_right_but_not_differentiable_jvp_fails_at_order_2_only(torch, corpus):
    fn = corpus.layer_norm_function("detached").apply
    inputs = corpus.layer_norm_inputs()
    assert bnsym.check_torch(fn, *inputs, modes=("fwd",)).passed
    report = bnsym.check_torch(fn, *inputs, modes=("fwd", "rev"), order=2)
    assert report.failed == (("rev", "fwd"),)
    assert "reverse over forward mode, order 2: the vjp of the jvp is wrong in ∂/∂x" in str(report)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_fused_layer_norm_is_caught_wrong_at_the_jvp_of_the_jvp(torch, affine):
    # research-17 §3: F.layer_norm's jvp∘jvp and vjp∘jvp are wrong in PyTorch 2.13 (the
    # saved mean and rstd have no forward formula); the other compositions are right
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    extra = (torch.randn(5, generator=gen, dtype=torch.float64) + 1,) * affine
    report = bnsym.check_torch(
        lambda x, *w: F.layer_norm(x, (5,), *w), x, *extra, modes=("fwd", "rev"), order=2
    )
    assert ("fwd", "fwd") in report.failed and ("rev", "fwd") in report.failed
    assert set(report.failed) == {("fwd", "fwd"), ("rev", "fwd")}
    assert str(report).startswith("modes check FAILED in forward over forward mode, order 2")
    assert (
        "forward over forward mode, order 2: the jvp of the jvp, along a random tangent of x"
        in (str(report))
    )


@pytest.mark.parametrize("layer", ["group_norm", "rms_norm"])
def test_fused_group_and_rms_norm_pass_every_composition(torch, layer):
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    fn = (
        (lambda x: F.group_norm(x, 2)) if layer == "group_norm" else (lambda x: F.rms_norm(x, (3,)))
    )
    report = bnsym.check_torch(fn, x, modes="fwd,rev", order=2)
    assert report.passed, str(report)
    assert len(report.checks) == 6


def test_a_module_in_forward_mode_names_its_parameters(torch):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    report = bnsym.check_torch(module, x, modes=("fwd",))
    assert report.passed, str(report)
    assert [r.name for r in report["fwd"].inputs] == ["input", "0.weight", "0.bias"]


def test_float32_in_forward_mode(torch, corpus):
    inputs = corpus.layer_norm_inputs(dtype=torch.float32)
    assert bnsym.check_torch(corpus.layer_norm_function().apply, *inputs, modes=("fwd",)).passed
    report = bnsym.check_torch(corpus.layer_norm_function("mean").apply, *inputs, modes=("fwd",))
    assert report.failed == (("fwd",),)


def test_bad_modes_and_functions_without_a_jvp_are_bnsym_errors(torch, corpus):
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ModesError, match="unknown mode 'jvp'"):
        bnsym.check_torch(torch.sin, x, modes=("jvp",))
    with pytest.raises(ModesError, match="order must be 1 .* or 2"):
        bnsym.check_torch(torch.sin, x, modes=("fwd",), order=3)
    with pytest.raises(ModesError, match="NoJvp.apply has no jvp, so forward mode cannot be"):
        bnsym.check_torch(corpus.NoJvp.apply, x, modes=("fwd",))
    assert bnsym.check_torch(corpus.NoJvp.apply, x, modes=("rev",)).passed


def test_a_jvp_that_raises_is_a_report_naming_the_mode(torch, corpus):
    report = bnsym.check_torch(corpus.RaisingJvp.apply, torch.ones(3), modes=("fwd",))
    assert not report.passed and report["fwd"].raised == "jvp"
    assert str(report).splitlines()[1] == (
        "  forward mode, order 1: problem: forward-mode AD of RaisingJvp.apply raised "
        "RuntimeError: jvp not written yet (inputs x (3,))"
    )


def test_without_modes_check_torch_is_as_before(torch):
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    report = bnsym.check_torch(torch.tanh, x, order=2)
    assert report.word == () and [r.name for r in report.inputs] == ["x0", "dout"]
    assert str(report).startswith("gradient check passed: autograd double backward of tanh")


def test_the_fixture_spells_modes_and_jvp(pytester, torch):
    pytester.makepyfile(
        test_modes="""
import numpy as np
import torch

def test_torch_modes(gradcheck):
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    report = gradcheck.torch(torch.sin, x, modes=("fwd", "rev"), order=2)
    assert len(report.checks) == 6

def test_jvp(gradcheck):
    gradcheck.jvp(np.sin, lambda x, tx: np.cos(x) * tx, np.linspace(-1, 1, 5))

def test_wrong_jvp(gradcheck):
    gradcheck.jvp(np.sin, lambda x, tx: 2 * np.cos(x) * tx, np.linspace(-1, 1, 5))
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*GradientCheckError: forward mode, order 1: the jvp of x is wrong along*"]
    )


def test_a_forward_that_returns_out_and_cache_is_a_report_not_a_numpy_error():
    # a course-style forward (out, cache) given where f(*inputs) -> out belongs
    def forward(x, g):
        return g * x, (x, g, np.ones(3))

    def jvp(x, g, tx, tg):
        return g * x, g * tx + tg * x

    def vjp(dout, x, g):
        return dout * g, (dout * x).sum(0)

    x, g = np.linspace(-1, 1, 6).reshape(2, 3), np.ones(3)
    for report in (bnsym.check_jvp(forward, jvp, x, g), bnsym.check_function(forward, vjp, x, g)):
        assert not report.passed
        (problem,) = report.problems
        assert "forward is tuple (array(" in problem and "\n" not in problem
        assert "returns out alone (check_layer takes one that returns (out, cache))" in problem


# --- bad input found by the attack run ---------------------------------------------------------


def _tanh_w():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3)), rng.standard_normal((4, 3))


def _f_tanh(x, w):
    return np.tanh(x) * w


def _jvp_tanh(x, w, tx, tw):
    return _f_tanh(x, w), (1 - np.tanh(x) ** 2) * tx * w + np.tanh(x) * tw


def test_check_jvp_refuses_float16_inputs():
    # a jvp 30% wrong in its x term passed in float16, whose tolerance hides it
    x, w = _tanh_w()

    def bad(x, w, tx, tw):
        return _f_tanh(x, w), 1.3 * (1 - np.tanh(x) ** 2) * tx * w + np.tanh(x) * tw

    with pytest.raises(DtypeError) as info:
        check_jvp(_f_tanh, bad, x.astype(np.float16), w.astype(np.float16))
    message = str(info.value)
    assert "\n" not in message and "'x'" in message and "float16" in message
    assert "float32 or float64" in message
    # the same jvp is caught in float32 (independent truth: 1.3 x the derivative of tanh)
    assert not check_jvp(_f_tanh, bad, x.astype(np.float32), w.astype(np.float32)).passed


@pytest.mark.parametrize(
    "returned",
    [
        lambda x, w, tx, tw: (_f_tanh(x, w), tx * w, 1),  # three things
        lambda x, w, tx, tw: (_f_tanh(x, w), tx * w, tw),  # three arrays of the output's shape
        lambda x, w, tx, tw: (_f_tanh(x, w), [tx[0], tx[1, :2]]),  # a ragged tangent output
    ],
    ids=["3 things", "3 arrays", "ragged"],
)
def test_a_jvp_returning_what_is_not_a_tangent_is_a_report(returned):
    # np.asarray of (out, tout, 1) raised NumPy's "inhomogeneous shape" ValueError
    x, w = _tanh_w()
    report = check_jvp(_f_tanh, returned, x, w)
    assert not report.passed and len(report.problems) == 1
    assert "<lambda>" in report.problems[0] and "\n" not in report.problems[0]


def test_an_empty_input_is_not_blamed_in_forward_mode():
    # "the jvp of x is wrong" for an x with no entries: nothing moves along its tangent
    w = np.linspace(1.0, 2.0, 3)

    def f(x, w):
        return x.sum() + w * w

    def jvp(x, w, tx, tw):
        return f(x, w), tx.sum() + 2 * w * tw

    report = check_jvp(f, jvp, np.zeros((0, 3)), w)
    assert report.passed, str(report)
    assert not report["x"].checked and report["w"].checked and report["w"].n_checked == 3

    def wrong(x, w, tx, tw):
        return f(x, w), tx.sum() + 3 * w * tw

    report = check_jvp(f, wrong, np.zeros((0, 3)), w)
    assert not report.passed and not report["w"].passed and report["x"].passed


def test_an_empty_output_in_forward_mode_compares_nothing_and_blames_no_code():
    def f(x, w):
        return x * w

    def jvp(x, w, tx, tw):
        return x * w, tx * w + x * tw

    report = check_jvp(f, jvp, np.zeros((0, 3)), np.ones(3))
    assert not report.passed and report.raised is None
    assert "nothing to differentiate" in report.problems[0]
    assert "wrong" not in str(report)


def test_an_empty_input_to_torch_forward_mode_is_not_blamed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    g, b = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    x = torch.zeros(0, 5, dtype=torch.float64)
    report = bnsym.check_torch(lambda x, g, b: F.layer_norm(x, (5,), g, b), x, g, b, modes="fwd")
    jvp = report["fwd"]
    assert not report.passed and jvp.raised is None
    assert "nothing to differentiate" in jvp.problems[0] and "wrong" not in str(report)


def test_a_jvp_that_is_not_callable_is_named_the_jvp():
    x, w = _tanh_w()
    with pytest.raises(bnsym.gradcheck.inputs.CheckTypeError, match="^the jvp must be callable"):
        check_jvp(_f_tanh, None, x, w)


@pytest.mark.parametrize("bad", ["complex", "strings", "ragged"])
def test_a_tangent_that_is_not_real_is_refused_naming_it(bad):
    # a complex tangent lost its imaginary part (ComplexWarning) and the check passed
    x, w = _tanh_w()
    tx = {
        "complex": x + 1j * x,
        "strings": np.full(x.shape, "a"),
        "ragged": [[1.0, 2.0], [3.0]],
    }[bad]
    with pytest.raises(BnsymError, match="tangent of 'x'") as info:
        check_jvp(_f_tanh, _jvp_tanh, x, w, tangents=[tx, w])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("factor", [2.0, 3.0], ids=["right", "wrong"])
def test_a_jvp_at_underflow_is_not_judged_and_never_passes(factor):
    # x*x at 1e-200 is 0 in float64: the right jvp 2 x t was failed against "numerical 0,
    # tolerance 0"; no difference quotient resolves 4e-200, so the input is not judged
    x = np.array([1e-200, 1e-210])
    report = check_jvp(lambda x: x * x, lambda x, t: (x * x, factor * x * t), x)
    assert not report.passed
    assert not report["x"].judged and "underflow" in report["x"].problems[0]
    assert "wrong" not in str(report)


def test_a_jvp_near_underflow_that_resolves_is_judged():
    # at 1e-100 the outputs (1e-200) keep their digits: right passes, 1.5x wrong fails
    x = np.array([1e-100, 2e-100])
    assert check_jvp(lambda x: x * x, lambda x, t: (x * x, 2 * x * t), x).passed
    assert not check_jvp(lambda x: x * x, lambda x, t: (x * x, 3 * x * t), x).passed
