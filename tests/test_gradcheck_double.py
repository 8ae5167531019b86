"""check_double_backward and the fixture's gradcheck.double_backward: a hand-written double
backward checked as the derivative of the backward, with a report that says which order failed.

The corpus (tests/corpus_double.py) is written by hand; its right double backwards are compared
here with torch autograd's, and its wrong ones must differ from torch's where the report says.
"""

from __future__ import annotations

import numpy as np
import pytest
from corpus_double import RIGHT, WRONG, bn_backward, bn_double_backward, bn_forward, bn_inputs

from bnsym.gradcheck.check import GradientCheckError, OrdersReport, check_double_backward

EPS = 1e-5


# --- torch references, independent of the corpus and of the checker ----------------------------


def _torch_double_backward(torch, f, inputs, dout, ggrads):
    """(∂/∂input of sum(ggrads * grads), …, ∂/∂dout) by autograd, grads = ∂<dout, f>/∂inputs."""
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    d = torch.tensor(dout, requires_grad=True)
    grads = torch.autograd.grad(f(*ts), ts, d, create_graph=True, materialize_grads=True)
    ell2 = sum((torch.tensor(gg) * g).sum() for gg, g in zip(ggrads, grads, strict=True))
    second = torch.autograd.grad(ell2, [*ts, d], allow_unused=True, materialize_grads=True)
    return [s.detach().numpy() for s in second]


def _torch_bn(x, gamma, beta):
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    return gamma * (x - mu) / ((var + EPS) ** 0.5) + beta


TORCH_FORWARD = {
    "tanh": lambda x: x.tanh(),
    "affine": lambda x, w, b: x @ w + b,
    "affine, dict result": lambda x, w, b: x @ w + b,
    "batch norm": _torch_bn,
    "batch norm (64, 48)": _torch_bn,
}


def _ours(case, inputs, dout, ggrads):
    cache = case.forward(*inputs)[1]
    structured = ggrads[0] if len(ggrads) == 1 else tuple(ggrads)
    result = case.double_backward(structured, dout, cache)
    if isinstance(result, dict):
        result = [result[k] for k in ("gx", "gw", "gb", "gdout")]
    return list(result)


@pytest.mark.parametrize("case", RIGHT, ids=[c.name for c in RIGHT])
def test_right_double_backward_equals_torch_autograd(case, torch):
    inputs = case.inputs()
    rng = np.random.default_rng(3)
    out = case.forward(*inputs)[0]
    dout = rng.standard_normal(out.shape)
    ggrads = [rng.standard_normal(np.shape(a)) for a in inputs]
    ours = _ours(case, inputs, dout, ggrads)
    theirs = _torch_double_backward(torch, TORCH_FORWARD[case.name], inputs, dout, ggrads)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", RIGHT, ids=[c.name for c in RIGHT])
def test_right_double_backward_passes(case):
    report = check_double_backward(
        case.forward, case.backward, case.double_backward, *case.inputs()
    )
    assert isinstance(report, OrdersReport)
    assert report.passed and report.failed == (), str(report)
    names = [r.name for r in report[2].inputs]
    assert names[-1] == "dout" and names[:-1] == [r.name for r in report[1].inputs]
    assert str(report).startswith("double backward check passed")
    assert "order 1 passed" in str(report) and "order 2 passed" in str(report)


@pytest.mark.parametrize("case", WRONG, ids=[c.name for c in WRONG])
def test_wrong_double_backward_fails_naming_the_order(case):
    report = check_double_backward(
        case.forward, case.backward, case.double_backward, *case.inputs()
    )
    text = str(report)
    assert report.failed == case.failed, text
    assert not report.passed and not report
    for expected in case.expect:
        assert expected in text, f"{case.name}: {expected!r} missing from\n{text}"
    assert "reproduce with seed=0" in text


BN_BUGS = [c for c in WRONG if c.name.startswith("batch norm,")]


@pytest.mark.parametrize("case", BN_BUGS, ids=[c.name for c in BN_BUGS])
def test_reported_entry_is_where_torch_differs_most(case, torch):
    # full mode compares every entry: the report's worst entry of the failing input must be
    # where the wrong double backward departs most from torch autograd's, at the checker's own
    # point (its dout) and cotangents (ggrads), both passed in here
    inputs = bn_inputs(np.random.default_rng(0))
    rng = np.random.default_rng(11)
    dout = rng.standard_normal(inputs[0].shape)
    ggrads = [rng.standard_normal(np.shape(a)) for a in inputs]
    report = check_double_backward(
        case.forward, case.backward, case.double_backward, *inputs,
        dout=dout, ggrads=tuple(ggrads), mode="full",
    )  # fmt: skip
    wrong = _ours(case, inputs, dout, ggrads)
    right = _torch_double_backward(torch, _torch_bn, inputs, dout, ggrads)
    names = ["x", "gamma", "beta", "dout"]
    failing = [r for r in report[2].inputs if not r.passed]
    assert failing, str(report)
    for r in failing:
        k = names.index(r.name)
        diff = np.abs(wrong[k] - right[k])
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
        assert r.worst[0].index == worst, str(report)
        assert r.worst[0].analytic == pytest.approx(wrong[k][worst], rel=1e-12)
        assert r.worst[0].numerical == pytest.approx(right[k][worst], rel=1e-6, abs=1e-9)
    for k, name in enumerate(names):  # the inputs it passes are the ones torch agrees on
        agrees = np.allclose(wrong[k], right[k], rtol=1e-8, atol=1e-10)
        assert report[2][name].passed == agrees, (name, str(report))


def test_generated_double_backward_of_bnsym_passes_the_checker():
    # bnsym's own generated group-norm double backward, through the layer convention
    from bnsym.codegen.higher import generate_higher
    from bnsym.derivation import derive

    mod = generate_higher(derive(4, layer="groupnorm", channels=2))
    rng = np.random.default_rng(5)
    x, gamma, beta = rng.normal(size=(3, 8, 2)), rng.normal(size=8), rng.normal(size=8)

    def forward(x, gamma, beta):
        return mod.forward(x, gamma, beta), (x, gamma, beta)

    def backward(dout, cache):
        return mod.backward(dout, *cache)

    def double_backward(ggrads, dout, cache):
        gx, gdout, ggamma = mod.double_backward(*ggrads, dout, *cache)
        return gx, ggamma, np.zeros_like(cache[2]), gdout

    report = check_double_backward(forward, backward, double_backward, x, gamma, beta)
    assert report.passed, str(report)


def test_options_wrt_seed_and_errors():
    x, gamma, beta = bn_inputs(np.random.default_rng(0))
    report = check_double_backward(
        bn_forward, bn_backward, bn_double_backward, x, gamma, beta, wrt=["x"], seed=4
    )
    assert report.passed and report.seed == 4
    assert [r.checked for r in report[2].inputs] == [True, False, False, True]
    with pytest.raises(KeyError, match="orders are 1 to 2"):
        report[3]
    with pytest.raises(TypeError, match="the double_backward must be callable"):
        check_double_backward(bn_forward, bn_backward, None, x, gamma, beta)

    def raises(ggrads, dout, cache):
        raise ValueError("not written yet")

    failed = check_double_backward(bn_forward, bn_backward, raises, x, gamma, beta)
    assert failed.failed == (2,) and failed[2].raised == "backward"
    text = str(failed)
    assert "order 2: problem: " in text and "raises raised ValueError: not written yet" in text
    assert str(GradientCheckError(failed)) == text  # the exception takes the orders' report


def test_importing_the_checker_does_not_import_sympy():
    import subprocess
    import sys

    code = (
        "import sys, bnsym; bnsym.check_double_backward; import bnsym.gradcheck.check; "
        "print('sympy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- calling conventions: integer constants, float32, several outputs ---------------------------


def _ce_forward(x, labels):
    z = np.exp(x - x.max(1, keepdims=True))
    p = z / z.sum(1, keepdims=True)
    return -np.log(p[np.arange(len(labels)), labels]).mean(), (p, labels)


def _ce_backward(dout, cache):
    p, labels = cache
    dx = p.copy()
    dx[np.arange(len(labels)), labels] -= 1
    return dx * dout / len(labels), None


def _ce_double_backward(ggrads, dout, cache, *, centred=True):
    gdx, _ = ggrads  # None for the labels, as the backward returns
    p, labels = cache
    n = len(labels)
    s = (p * gdx).sum(1, keepdims=True) if centred else 0.0
    dx = p.copy()
    dx[np.arange(n), labels] -= 1
    return dout / n * p * (gdx - s), None, np.asarray(np.sum(gdx * dx) / n)


def test_integer_labels_are_constants_at_both_orders(torch):
    x = np.random.default_rng(0).standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    report = check_double_backward(_ce_forward, _ce_backward, _ce_double_backward, x, labels)
    assert report.passed, str(report)
    assert [(r.name, r.checked) for r in report[2].inputs] == [
        ("x", True),
        ("labels", False),
        ("dout", True),
    ]

    def wrong(ggrads, dout, cache):  # the softmax's Jacobian without its rank-one part
        return _ce_double_backward(ggrads, dout, cache, centred=False)

    failed = check_double_backward(_ce_forward, _ce_backward, wrong, x, labels)
    assert failed.failed == (2,) and "order 2: ∂/∂x of the backward is wrong at" in str(failed)
    # torch: the same loss, differentiated twice
    t = torch.tensor(x, requires_grad=True)
    d = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    (dx,) = torch.autograd.grad(loss, t, d, create_graph=True)
    gdx = np.random.default_rng(1).standard_normal(x.shape)
    gx, gd = torch.autograd.grad((torch.tensor(gdx) * dx).sum(), (t, d))
    ours = _ce_double_backward((gdx, None), 0.7, _ce_forward(x, labels)[1])
    np.testing.assert_allclose(ours[0], gx.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours[2], gd.numpy(), rtol=1e-12)


def test_float32_and_several_outputs():
    def cube_forward(x):
        return x**3, x

    def cube_backward(dout, x):
        return 3 * x**2 * dout

    def cube_double_backward(gdx, dout, x):
        return 6 * x * dout * gdx, 3 * x**2 * gdx

    x32 = np.linspace(-1, 1, 6, dtype=np.float32)
    report = check_double_backward(cube_forward, cube_backward, cube_double_backward, x32)
    assert report.passed and report[2]["x"].dtype == "float32", str(report)

    def two_forward(x):
        return (np.sin(x), x**2), x

    def two_backward(dout, x):
        return dout[0] * np.cos(x) + 2 * x * dout[1]

    def two_double_backward(gdx, dout, x):
        return -np.sin(x) * dout[0] * gdx + 2 * dout[1] * gdx, np.cos(x) * gdx, 2 * x * gdx

    x = np.linspace(-1, 1, 5)
    report = check_double_backward(two_forward, two_backward, two_double_backward, x)
    assert report.passed and [r.name for r in report[2].inputs] == ["x", "dout0", "dout1"]
