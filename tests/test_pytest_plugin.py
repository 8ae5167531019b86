"""The pytest plugin, run the way a user runs it: a test file in a fresh directory, no
configuration, the fixture found through the pytest11 entry point."""

from __future__ import annotations

import numpy  # noqa: F401 - imported before pytester's in-process runs, which cannot re-import it
import pytest

pytest_plugins = ["pytester"]

LAYER = """
import numpy as np

def affine_forward(x, w, b):
    return x @ w + b, (x, w)

def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)

def affine_backward_scaled(dout, cache):
    x, w = cache
    return dout @ w.T * 1.001, x.T @ dout, dout.sum(axis=0)

rng = np.random.default_rng(0)
x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
"""


@pytest.fixture
def layer_tests(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(
        layers=LAYER,
        test_layers="""
from layers import affine_backward, affine_backward_scaled, affine_forward, b, w, x
import numpy as np

def test_right(gradcheck):
    report = gradcheck(affine_forward, affine_backward, x, w, b)
    assert report.passed

def test_wrong(gradcheck):
    gradcheck(affine_forward, affine_backward_scaled, x, w, b)

def test_function(gradcheck):
    gradcheck.function(np.sin, lambda dout, x: dout * np.cos(x), x)
""",
    )
    return pytester


def test_fixture_passes_right_and_shows_the_report_for_wrong(layer_tests):
    result = layer_tests.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientCheckError: gradient check FAILED: affine_backward_scaled*",
            "*x: 12 of 12 checked entries differ beyond*",
            "*hint: analytic = 1.001 x numerical for every entry of x*",
            "*reproduce with seed=0*",
        ]
    )
    # the report, not whole matrices, and no frames from inside the checker
    assert "bnsym/gradcheck/check.py" not in result.stdout.str()


def test_command_line_options_set_the_defaults(layer_tests):
    result = layer_tests.runpytest("-p", "no:cacheprovider", "--gradcheck-seed=5", "-k", "wrong")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*reproduce with seed=5*"])
    result = layer_tests.runpytest(
        "-p", "no:cacheprovider", "--gradcheck-rtol=1e-2", "--gradcheck-atol=1e-6"
    )
    result.assert_outcomes(passed=3)


def test_ini_file_sets_the_defaults(layer_tests):
    layer_tests.makeini("[pytest]\ngradcheck_rtol = 1e-2\ngradcheck_mode = probe\n")
    result = layer_tests.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_options_are_documented_in_help(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*bnsym gradient checker*", "*--gradcheck-seed*"])


@pytest.mark.parametrize(
    "args, ini, message",
    [
        (
            ["--gradcheck-mode=fast"],
            "",
            "gradcheck mode must be one of auto, full, probe, not 'fast'",
        ),
        ([], "gradcheck_mode = slow\n", "gradcheck mode must be one of auto, full, probe"),
        ([], "gradcheck_rtol = tight\n", "gradcheck_rtol = 'tight' in the ini file is not float"),
        (["--gradcheck-atol=-1"], "", "gradcheck atol must be a finite number >= 0, not -1.0"),
        # NaN is False against every bound: `value < 0` let it through, and it passed all
        (["--gradcheck-atol=nan"], "", "gradcheck atol must be a finite number >= 0, not nan"),
        (["--gradcheck-rtol=inf"], "", "gradcheck rtol must be a finite number >= 0, not inf"),
        ([], "gradcheck_rtol = nan\n", "gradcheck rtol must be a finite number >= 0, not nan"),
    ],
    ids=["option", "ini", "ini-not-a-number", "negative", "nan", "inf", "ini-nan"],
)
def test_bad_defaults_are_a_usage_error_at_start_up(layer_tests, args, ini, message):
    if ini:
        layer_tests.makeini("[pytest]\n" + ini)
    result = layer_tests.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()


def test_plugin_modes_are_the_checkers():
    from bnsym.gradcheck.check import MODES
    from bnsym.gradcheck.pytest_plugin import MODES as PLUGIN_MODES

    assert PLUGIN_MODES == MODES


def test_double_backward_fixture_says_which_order_failed(pytester):
    pytester.makepyfile(
        test_double="""
import numpy as np

def tanh_forward(x):
    t = np.tanh(x)
    return t, t

def tanh_backward(dout, t):
    return dout * (1 - t * t)

def tanh_double_backward(gdx, dout, t):
    return -2 * gdx * dout * t * (1 - t * t), gdx * (1 - t * t)

def tanh_double_backward_scaled(gdx, dout, t):
    return -2 * gdx * dout * t * (1 - t * t) * 1.001, gdx * (1 - t * t)

x = np.linspace(-2.0, 2.0, 12).reshape(3, 4)

def test_right(gradcheck):
    report = gradcheck.double_backward(tanh_forward, tanh_backward, tanh_double_backward, x)
    assert report.passed and report[2]["dout"].checked

def test_wrong(gradcheck):
    gradcheck.double_backward(tanh_forward, tanh_backward, tanh_double_backward_scaled, x)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-seed=3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientCheckError: double backward check FAILED at order 2:*",
            "*order 1 passed: tanh_backward vs. numerical derivatives of tanh_forward*",
            "*order 2: ∂/∂x of the backward is wrong at *: tanh_double_backward_scaled gives*",
            "*hint: analytic = 1.001 x numerical for every entry of x*",
            "*reproduce with seed=3*",
        ]
    )
    assert "bnsym/gradcheck/check.py" not in result.stdout.str()
