"""check_torch and the fixture's gradcheck.torch: autograd's gradients of PyTorch code against
bnsym's numerical derivatives. Right code must pass (float64 and float32), wrong backward
passes must fail naming the input or parameter, and order=2 must see a double backward that
order 1 cannot. PyTorch is installed wherever the tests run (CI installs the torch extra)."""

from __future__ import annotations

import numpy as np
import pytest

from bnsym.gradcheck.pytorch import check_torch

# Every test of this module checks PyTorch code (its layers below are torch.autograd.Function
# classes), so the module needs PyTorch; the checks of check_torch that do not are in
# test_gradcheck.py.
torch = pytest.importorskip("torch")  # the torch extra; CI installs it (tests/conftest.py)

pytest_plugins = ["pytester"]


class Cube(torch.autograd.Function):
    """x**3 with a hand-written backward, differentiable itself (double backward right)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * dout


class CubeWrong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * dout * 1.001  # 0.1% off


class CubeDetached(torch.autograd.Function):
    """Right at order 1; its backward detaches x, so the double backward misses d/dx."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return 3 * x.detach() ** 2 * dout


def _x(dtype=torch.float64, shape=(4, 3)):
    return torch.from_numpy(np.random.default_rng(0).normal(size=shape)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "fn",
    [torch.tanh, Cube.apply, lambda x: torch.nn.functional.layer_norm(x, (3,))],
    ids=["tanh", "custom-function", "layer-norm"],
)
def test_correct_torch_functions_pass(fn, dtype):
    x = _x(dtype)
    before = x.clone()
    report = check_torch(fn, x)
    assert report.passed, str(report)
    assert report.inputs[0].dtype == str(dtype).removeprefix("torch.")
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # never modified


def test_a_wrong_custom_function_fails_with_the_hint():
    report = check_torch(CubeWrong.apply, _x())
    assert not report.passed
    text = str(report)
    assert "autograd backward of CubeWrong.apply vs. numerical derivatives" in text
    assert (
        "analytic = 1.001 x numerical for every entry of x" in text
    )  # named after forward(ctx, x)


def test_the_numbers_agree_with_autograd_of_an_independent_formula():
    # the checker's numerical side is independent of torch: a right Cube agrees to 1e-9
    report = check_torch(Cube.apply, _x(), mode="full")
    assert report.passed and report["x"].max_rel_error < 1e-9


class ScaledLinear(torch.nn.Module):
    """y = x @ weight.T * scale + bias, with a custom Function that gets dweight wrong."""

    def __init__(self, wrong: bool):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(2, 3, generator=gen, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.randn(2, generator=gen, dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))
        self.wrong = wrong

    def forward(self, x):
        self.calls += 1  # a buffer the module updates, like running statistics
        return _Linear.apply(x, self.weight, self.wrong) + self.bias


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, wrong):
        ctx.save_for_backward(x, weight)
        ctx.wrong = wrong
        return x @ weight.T

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        dweight = dout.T @ x
        if ctx.wrong:
            dweight = dweight.clone()
            dweight[:, 1] *= 2  # one wrong column of the parameter's gradient
        return dout @ weight, dweight, None


def test_a_module_with_a_wrong_parameter_gradient_names_the_parameter():
    x = _x(shape=(5, 3))
    module = ScaledLinear(wrong=True)
    weight_before = module.weight.detach().clone()
    report = check_torch(module, x)
    assert [r.name for r in report.inputs] == ["x", "weight", "bias"]
    assert not report.passed
    assert report["x"].passed and report["bias"].passed and not report["weight"].passed
    assert "mismatches are in weight[:, 1]" in str(report)
    torch.testing.assert_close(module.weight.detach(), weight_before, rtol=0, atol=0)
    assert float(module.calls) == 0  # buffers copied per call: the module is left as it was
    assert check_torch(ScaledLinear(wrong=False), x).passed


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_correct_module_passes_with_its_parameters(dtype):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    module = module.to(dtype)
    report = check_torch(module, _x(dtype, (5, 4)))
    assert report.passed, str(report)
    assert [r.name for r in report.inputs] == [
        "input", "0.weight", "0.bias", "2.weight", "2.bias"
    ]  # fmt: skip


def test_order_2_sees_a_double_backward_that_order_1_cannot():
    x = _x()
    assert check_torch(CubeDetached.apply, x).passed
    report = check_torch(CubeDetached.apply, x, order=2)
    assert not report.passed and not report["x"].passed
    assert "autograd double backward of CubeDetached.apply" in str(report)
    right = check_torch(Cube.apply, x, order=2)
    assert right.passed, str(right)
    assert [r.name for r in right.inputs] == ["x", "dout"]


def test_integer_targets_are_constants_and_a_loss_is_checked():
    x = _x(shape=(6, 4))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    report = check_torch(torch.nn.functional.cross_entropy, x, y)
    assert report.passed, str(report)
    assert not report.inputs[1].checked


def test_bad_order_and_fn_are_one_line_errors():
    with pytest.raises(ValueError, match="order must be 1 .* or 2"):
        check_torch(torch.tanh, _x(), order=3)
    with pytest.raises(TypeError, match="fn must be a function of tensors or an nn.Module"):
        check_torch(3, _x())


def test_the_fixture_checks_torch_code(pytester):
    pytester.makepyfile(
        test_torch_layers="""
import torch

class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, dout):
        return 3 * dout

def test_right(gradcheck):
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    assert gradcheck.torch(torch.sin, x).passed
    assert gradcheck.torch(torch.nn.Linear(6, 2).double(), x, order=2).passed

def test_wrong(gradcheck):
    gradcheck.torch(Double.apply, torch.ones(3, dtype=torch.float32))
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientCheckError: gradient check FAILED: autograd backward of Double.apply*",
            "*hint: analytic = 1.5 x numerical for every entry of x*",
        ]
    )


# --- bad input found by the attack run ---------------------------------------------------------


@pytest.mark.parametrize("modes", [None, "rev", "fwd,rev"])
def test_complex_step_is_refused_where_autograd_is_differentiated_again(modes):
    # a complex step through autograd's x*x backward flipped the sign of a right double
    # backward (PyTorch's complex derivatives are conjugate Wirtinger, not holomorphic)
    from bnsym.gradcheck.inputs import CheckValueError

    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckValueError) as info:
        check_torch(lambda x: x * x, x, order=2, modes=modes, method="complex")
    message = str(info.value)
    assert "\n" not in message and "method=" in message and "'richardson'" in message
    # order 1 keeps the complex step; Richardson checks the double backward
    assert check_torch(lambda x: x * x, x, method="complex").passed
    assert check_torch(lambda x: x * x, x, order=2, modes=modes, method="richardson").passed


@pytest.mark.parametrize("order", [2.0, 1.0, "2", True, None])
@pytest.mark.parametrize("modes", [None, "rev"])
def test_order_must_be_the_int_1_or_2(order, modes):
    # order=2.0 got past `order in (1, 2)` and raised TypeError inside the checker
    from bnsym.gradcheck.words import ModesError

    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    with pytest.raises(ModesError, match="order must be 1 .* or 2"):
        check_torch(torch.tanh, x, order=order, modes=modes)


@pytest.mark.parametrize("modes", [None, "fwd", "fwd,rev"])
@pytest.mark.parametrize("option", ["mode", "method"])
def test_forward_mode_validates_mode_and_method(modes, option):
    # forward mode alone accepted mode="bogus" / method="bogus" and passed
    from bnsym.gradcheck.inputs import CheckValueError

    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    with pytest.raises(CheckValueError, match=f"{option} must be one of .* not 'bogus'"):
        check_torch(torch.tanh, x, modes=modes, **{option: "bogus"})


def _layer_norm_5(x, g, b):
    return torch.nn.functional.layer_norm(x, (5,), g, b)


@pytest.mark.parametrize("modes", [None, "rev"])
@pytest.mark.parametrize("case", ["raises", "int64 x"])
def test_a_forward_that_raises_at_order_2_is_a_report(case, modes):
    # order 2 drew its dout from a forward call of its own, whose exception escaped
    g, b = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    if case == "raises":
        args, error = (lambda x: 1 / 0, torch.ones(4, 5, dtype=torch.float64)), "ZeroDivisionError"
    else:
        args, error = (_layer_norm_5, torch.ones(4, 5, dtype=torch.int64), g, b), "RuntimeError"
    report = check_torch(*args, order=2, modes=modes)
    assert not report.passed
    second = report if modes is None else report["rev", "rev"]
    assert second.raised == "forward" and f"raised {error}" in second.problems[0]
    assert not any(r.checked and r.judged for r in second.inputs)


def test_a_complex_input_the_forward_raises_on_at_order_2_is_a_dtype_error():
    # as at order 1: a complex x given to a real layer is bad input, not a bug of the layer
    from bnsym.gradcheck.inputs import DtypeError

    g, b = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    x = torch.ones(4, 5, dtype=torch.complex128)
    with pytest.raises(DtypeError, match="input 'x' has dtype complex128"):
        check_torch(_layer_norm_5, x, g, b, order=2)
