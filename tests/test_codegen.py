"""Generated NumPy code: equal to both hand-written versions, standalone, readable, strict;
and for layers declared here, outside the package, equal to plain NumPy and to finite
differences at orders 1 and 2."""

from __future__ import annotations

import inspect
import linecache
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from bnsym import reference
from bnsym.codegen.higher import generate_higher
from bnsym.codegen.module import GeneratedModule, generate
from bnsym.derivation import derive
from bnsym.family.layers import Layer

TRAIN = [
    dict(variance=v, eps_placement=p, affine=a)
    for v in ("biased", "unbiased")
    for p in ("inside", "outside")
    for a in (True, False)
]
EVAL = [dict(mode="eval", affine=True), dict(mode="eval", affine=False)]
VARIANTS = TRAIN + EVAL
IDS = ["-".join(str(v) for v in variant.values()) for variant in VARIANTS]
RTOL = 1e-12


def _data(module: GeneratedModule, D: int, seed: int) -> dict[str, np.ndarray]:
    o = module.derivation.options
    rng = np.random.default_rng(seed)
    data = {
        "x": 3.0 + 2.0 * rng.standard_normal((o.m, D)),
        "dout": rng.standard_normal((o.m, D)),
        "gamma": 1.0 + 0.5 * rng.standard_normal(D),
        "beta": rng.standard_normal(D),
        "running_mean": rng.standard_normal(D),
        "running_var": rng.uniform(0.5, 2.0, D),
    }
    if not o.affine:
        data["gamma"], data["beta"] = None, None
    return data


def _hand_written(module: GeneratedModule, data: dict, eps: float, staged: bool) -> tuple:
    o = module.derivation.options
    suffix = ("_eval" if o.mode == "eval" else "") + ("_staged" if staged else "")
    forward = getattr(reference, "batchnorm_forward" + suffix)
    backward = getattr(reference, "batchnorm_backward" + suffix)
    x, gamma, beta = data["x"], data["gamma"], data["beta"]
    if o.mode == "eval":
        rm, rv = data["running_mean"], data["running_var"]
        y, cache = forward(x, gamma, beta, rm, rv, eps, affine=o.affine)
    else:
        kw = dict(variance=o.variance, eps_placement=o.eps_placement, affine=o.affine)
        y, cache = forward(x, gamma, beta, eps, **kw)
    return y, backward(data["dout"], cache)


def _generated(module: GeneratedModule, data: dict, eps: float) -> tuple:
    o = module.derivation.options
    params = [data["gamma"], data["beta"]] if o.affine else []
    if o.mode == "eval":
        params += [data["running_mean"], data["running_var"]]
    y = module.forward(data["x"], *params, eps=eps)
    grads = module.backward(data["dout"], data["x"], *params, eps=eps)
    return y, grads if o.affine else (grads, None, None)


def _term_scales(module: GeneratedModule, data: dict, eps: float) -> dict[str, np.ndarray]:
    """Per feature, the size of the terms of each result (not of the result: at m = 2, dx is
    O(eps), a difference of near-equal terms, so it is compared relative to max|gamma*dout|/std).
    """
    o = module.derivation.options
    x, dout = data["x"], data["dout"]
    if o.mode == "eval":
        mu, var = data["running_mean"], data["running_var"]
    else:
        mu, var = x.mean(0), x.var(0, ddof=0 if o.variance == "biased" else 1)
    std = np.sqrt(var + eps) if o.eps_placement == "inside" else np.sqrt(var) + eps
    x_hat = (x - mu) / std
    gamma = data["gamma"] if o.affine else 1.0
    beta = data["beta"] if o.affine else 0.0
    return {
        "y": np.abs(gamma) * np.abs(x_hat).max(0) + np.abs(beta),
        "dx": np.abs(gamma * dout).max(0) / std,
        "dgamma": np.abs(dout * x_hat).sum(0),
        "dbeta": np.abs(dout).sum(0),
    }


def _assert_close(name: str, a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> None:
    assert a.shape == b.shape, (name, a.shape, b.shape)
    rel = np.max(np.abs(a - b) / scale)
    assert rel <= RTOL, f"{name}: scaled relative error {rel:.3g} > {RTOL}"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("m", range(2, 9))
def test_generated_equals_fused_and_staged(m: int, variant: dict) -> None:
    module = generate(m, **variant)
    for D, eps, seed in [(1, 1e-5, m), (3, 1e-3, 10 * m), (17, 0.0, 100 * m)]:
        data = _data(module, D, seed)
        scales = _term_scales(module, data, eps)
        y, (dx, dgamma, dbeta) = _generated(module, data, eps)
        assert isinstance(y, np.ndarray) and y.shape == (m, D)
        assert isinstance(dx, np.ndarray) and dx.shape == (m, D)
        for staged in (False, True):
            label = f"m={m} D={D} {'staged' if staged else 'fused'}"
            y_ref, (dx_ref, dgamma_ref, dbeta_ref) = _hand_written(module, data, eps, staged)
            _assert_close(f"y {label}", y, y_ref, scales["y"])
            _assert_close(f"dx {label}", dx, dx_ref, scales["dx"])
            if variant["affine"]:
                assert dgamma.shape == dbeta.shape == (D,)
                _assert_close(f"dgamma {label}", dgamma, dgamma_ref, scales["dgamma"])
                _assert_close(f"dbeta {label}", dbeta, dbeta_ref, scales["dbeta"])


def test_eval_mode_m_1() -> None:
    module = generate(1, mode="eval")
    data = _data(module, 4, 0)
    y, grads = _generated(module, data, 1e-5)
    y_ref, grads_ref = _hand_written(module, data, 1e-5, staged=False)
    np.testing.assert_allclose(y, y_ref, rtol=1e-14)
    for a, b in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)


# --- the module as a file -----------------------------------------------------------------------


def test_generated_module_imports_without_sympy(tmp_path) -> None:
    generate(4).write(tmp_path / "bn_m4.py")
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sympy"] = None  # any import of SymPy now fails
        import numpy as np
        import bn_m4
        x = np.arange(8.0).reshape(4, 2) ** 2
        y = bn_m4.forward(x, np.ones(2), np.zeros(2))
        dx, dgamma, dbeta = bn_m4.backward(np.ones((4, 2)), x, np.ones(2), np.zeros(2))
        assert y.shape == dx.shape == (4, 2) and dgamma.shape == (2,)
        assert "sympy" not in {m.split(".")[0] for m in sys.modules if sys.modules[m]}
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


GRAPH_NAMES = {"mu_B", "sigma2_B", "sigma_B", "std", "inv_std", "inv_sigma_B", "sum_dy"}
WRAPPER_NAMES = {"x", "dout", "D", "gamma", "beta", "running_mean", "running_var", "eps"}
WRAPPER_NAMES |= {"y", "grads", "dx", "a", "bad", "where", "total", "constant", "zero"}


def _natural(name: str) -> tuple[str, int]:
    prefix, digits = re.fullmatch(r"(\D*?)(\d*)", name).groups()
    return prefix, int(digits) if digits else -1


@pytest.mark.parametrize("m", [5, 12, 64])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_source_is_readable(variant: dict, m: int) -> None:
    module = generate(m, **variant)
    src = module.source
    assert "_Dummy" not in src and "Dummy" not in src
    assert src.startswith("# Generated by bnsym")
    assert f"# Command: bnsym.generate({m}" in src
    assert re.search(r"^import numpy$", src, re.M) and "sympy" not in src.split('"""')[-1]
    long = [line for line in src.splitlines() if len(line) > 100]
    assert not long, long[0]
    kernels = src[src.index("def _forward(") : src.index("# --- argument checks")]
    assignments = re.findall(r"^    (\w+) = (.*)$", kernels, re.M)
    assigned = {name for name, _ in assignments}
    rows = {f"{p}{i}" for p in ("xhat", "xmu") for i in range(1, m + 1)}
    for name in assigned:
        # temporaries never look like an input row x<i> or dy<i>
        assert not re.fullmatch(r"(x|dy)\d+", name), name
    temps = assigned - GRAPH_NAMES - rows - {"sum_dy_xhat"}
    assert all(re.fullmatch(r"_t\d+", t) for t in temps), temps
    for body in kernels.split("\n\n\ndef "):
        # each temporary defined once, numbered in the order it is computed
        defined = [n for n, _ in re.findall(r"^    (_t\d+) = (.*)$", body, re.M)]
        assert defined == [f"_t{k}" for k in range(len(defined))], defined
        # rows in row order, in sums and in the centred rows x_i - mu_B
        for line in re.findall(r"^    \w+ = .*(?:\n {8,}.*)*", body, re.M):
            for prefix in ("x", "xmu", "dy", "xhat"):
                numbers = [int(k) for k in re.findall(rf"\b{prefix}(\d+)\b", line)]
                assert numbers == sorted(numbers), line
        assert "= -" not in body
        # one output per line
        returned = body[body.index("    return [\n") : body.index("\n    ]")].splitlines()[1:]
        assert returned
        assert all(line.startswith("        ") and line.endswith(",") for line in returned)
    if variant.get("mode") != "eval":
        assert "    xmu1 = x1 - mu_B\n" in src
    assert f"def _forward({', '.join(f'x{i}' for i in range(1, min(m, 8) + 1))}," in src
    if variant.get("eps_placement") == "outside":
        assert kernels.count("1/std") == 2  # once in each kernel


def test_linecache_names_differ_when_only_the_command_does() -> None:
    a = generate(3, command="bnsym codegen --m 3")
    b = generate(3, command="bnsym codegen --m 3 -o bn.py")
    assert a.forward.__code__.co_filename != b.forward.__code__.co_filename
    # each filename maps to its own source in linecache, header included
    assert "".join(linecache.getlines(a.forward.__code__.co_filename)) == a.source
    assert "".join(linecache.getlines(b.forward.__code__.co_filename)) == b.source


def test_a_newline_in_the_command_stays_in_the_comment(tmp_path) -> None:
    module = generate(2, command="bnsym codegen --m 2 -o 'a\nb.py'\r\x00")
    header = [line for line in module.source.splitlines() if line.startswith("# Command:")]
    assert header == ["# Command: bnsym codegen --m 2 -o 'a\\nb.py'\\r\\x00"]
    compile(module.source, "bn.py", "exec")


def test_functions_are_inspectable_and_output_deterministic(tmp_path) -> None:
    module = generate(3)
    assert "def forward(x, gamma, beta, eps=1e-05):" in inspect.getsource(module.forward)
    assert inspect.getsource(module.backward).startswith("def backward(dout, x, gamma, beta")
    assert generate(3).source == module.source
    path = module.write(tmp_path / "bn.py")
    assert path.read_text() == module.source


def test_numeric_eps_of_the_derivation_is_the_default_not_baked_in() -> None:
    module = generate(2, eps="1/1000")
    assert "def forward(x, gamma, beta, eps=0.001):" in module.source
    assert "0.001" not in module.source.split("def _forward")[1].split("def _array")[0]


# --- bad input ----------------------------------------------------------------------------------

GOOD = dict(x=np.arange(12.0).reshape(4, 3) ** 2, gamma=np.ones(3), beta=np.zeros(3))


@pytest.mark.parametrize(
    "change, name, words",
    [
        (dict(x=np.ones((5, 3))), "x", "(4, D)"),
        (dict(x=np.ones(4)), "x", "(4, D)"),
        (dict(gamma=np.ones(4)), "gamma", "(3,)"),
        (dict(beta=np.ones((3, 1))), "beta", "(3,)"),
        (dict(x=np.where(np.eye(4, 3) > 0, np.nan, 1.0)), "x", "non-finite"),
        (dict(gamma=np.array([1.0, np.inf, 1.0])), "gamma", "non-finite"),
        (dict(x=np.array([["a"] * 3] * 4)), "x", "numbers"),
        (dict(eps=-1.0), "eps", ">= 0"),
        (dict(eps=True), "eps", ">= 0"),
    ],
    ids=["x-rows", "x-1d", "gamma", "beta", "x-nan", "gamma-inf", "x-str", "eps-neg", "eps-bool"],
)
def test_bad_arguments_name_the_argument(change: dict, name: str, words: str) -> None:
    module = generate(4)
    args = {**GOOD, **change}
    with pytest.raises(ValueError, match=re.escape(words)) as info:
        module.forward(**args)
    assert str(info.value).startswith(name)
    dout = np.ones(np.shape(args["x"])) if np.ndim(args["x"]) == 2 else np.ones((4, 3))
    with pytest.raises(ValueError, match=re.escape(words)):
        module.backward(dout, **args)


def test_bad_dout_and_running_var() -> None:
    module = generate(4, mode="eval", affine=False)
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"^dout must have the shape of x"):
        module.backward(np.ones((4, 3)), x, np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match=r"^dout has 2 non-finite value\(s\)"):
        module.backward(np.where(np.eye(4, 2) > 0, -np.inf, 0), x, np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match=r"^running_var must be >= 0"):
        module.forward(x, np.zeros(2), np.array([1.0, -1.0]))


def test_zero_variance_with_eps_zero_is_an_error_not_nan() -> None:
    module = generate(3)
    x = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])  # feature 0 is constant
    with pytest.raises(ValueError, match="zero variance"):
        module.forward(x, np.ones(2), np.zeros(2), eps=0.0)
    assert np.isfinite(module.forward(x, np.ones(2), np.zeros(2))).all()


@pytest.mark.parametrize("m", ["1.5", "0", "abc"])
def test_bad_m(m: str) -> None:
    from bnsym.core.options import DerivationError

    with pytest.raises(DerivationError, match="m must"):
        generate(m)


def test_generate_from_a_derivation_takes_no_options() -> None:
    from bnsym.derivation import derive

    d = derive(3, affine=False)
    assert "def forward(x, eps=1e-05):" in generate(d).source
    with pytest.raises(TypeError, match="no derive options"):
        generate(d, affine=True)


# --- limits, messages, and input forms ---------------------------------------------------------


@pytest.mark.parametrize("variance", ["biased", "unbiased"])
def test_outside_backward_takes_the_limit_for_a_constant_feature(variance: str) -> None:
    """eps outside the root, sigma_B = 0 and eps > 0 is valid input: dx = gamma*(dout -
    mean(dout))/eps there, as in the reference and by finite differences (not 0*inf = NaN)."""
    module = generate(4, variance=variance, eps_placement="outside")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3))
    x[:, 1] = 2.0  # a constant feature
    dout, gamma, beta = rng.standard_normal((4, 3)), rng.uniform(0.5, 2, 3), np.zeros(3)
    eps = 1e-2
    dx, dgamma, dbeta = module.backward(dout, x, gamma, beta, eps=eps)
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx[:, 1], gamma[1] * (dout[:, 1] - dout[:, 1].mean()) / eps)
    _, cache = reference.batchnorm_forward(
        x, gamma, beta, eps, variance=variance, eps_placement="outside"
    )
    np.testing.assert_allclose(dx, reference.batchnorm_backward(dout, cache)[0], rtol=1e-12)
    # Central differences of sum(y * dout) along the constant column. sigma_B = c|h| has a
    # kink there, which central differences cancel; what is left is O(c*h/eps) relative.
    h = 1e-8
    for i in range(4):
        up, down = x.copy(), x.copy()
        up[i, 1] += h
        down[i, 1] -= h
        y_up = module.forward(up, gamma, beta, eps=eps)
        y_down = module.forward(down, gamma, beta, eps=eps)
        numerical = np.sum((y_up - y_down) * dout) / (2 * h)
        assert abs(numerical - dx[i, 1]) <= 1e-5 * abs(dx[i, 1]), (i, numerical, dx[i, 1])


def test_non_finite_results_name_their_cause() -> None:
    train = generate(3)
    x = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    with pytest.raises(ValueError, match=r"^y is not finite: feature 0 of x is constant"):
        train.forward(x, np.ones(2), np.zeros(2), eps=0.0)
    with pytest.raises(ValueError, match=r"^dx is not finite: feature 0 of x is constant"):
        train.backward(np.ones((3, 2)), x, np.ones(2), np.zeros(2), eps=0.0)
    evaluation = generate(3, mode="eval")
    with pytest.raises(ValueError, match=r"^y is not finite: running_var \+ eps = 0 for feature 1"):
        evaluation.forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.array([1.0, 0.0]), eps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of the checks
        with pytest.raises(ValueError, match=r"^y is not finite: the computation overflowed"):
            train.forward(x + np.eye(3, 2), np.array([1.7e308, 1.0]), np.zeros(2))
        with pytest.raises(ValueError, match=r"^x has 1 non-finite"):
            train.forward(np.array([[1e308, 1], [1e308, 1], [np.inf, 1]]), np.ones(2), np.zeros(2))


def test_ragged_input_names_the_argument() -> None:
    module = generate(2)
    with pytest.raises(ValueError, match=r"^x must be a rectangular array of numbers"):
        module.forward([[1.0, 2.0], [3.0]], np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"^gamma must be a rectangular array of numbers"):
        module.forward(np.ones((2, 2)), [[1.0], [1.0, 2.0]], np.zeros(2))


def test_eps_as_a_0d_array_and_complex_input() -> None:
    module = generate(3)
    x = np.array([[0.0, 1.0], [1.0, 5.0], [3.0, 2.0]])
    y = module.forward(x, np.ones(2), np.zeros(2), eps=np.array(1e-3))
    np.testing.assert_array_equal(y, module.forward(x, np.ones(2), np.zeros(2), eps=1e-3))
    with pytest.raises(ValueError, match="^eps must be"):
        module.forward(x, np.ones(2), np.zeros(2), eps=np.array([1e-3]))
    assert "complex" in module.source.split('"""')[1]  # documented in the module docstring
    h = 1e-30  # complex step: Im f(x + ih)/h is the derivative, exact to rounding
    w = np.array([[0.5, 1.0], [-1.0, 2.0], [2.0, 0.0]])
    xc = x.astype(complex)
    xc[1, 0] += 1j * h
    derivative = np.sum(w * module.forward(xc, np.ones(2), np.zeros(2), eps=1e-3)).imag / h
    dx = module.backward(w, x, np.ones(2), np.zeros(2), eps=1e-3)[0]
    assert abs(derivative - dx[1, 0]) <= 1e-12 * abs(dx[1, 0])


# --- layers declared here, outside the package ------------------------------------------------
#
# Three members the five shipped layers do not cover, generated at orders 1 and 2 and compared
# with plain NumPy written below in each layer's own layout (no group view, no bnsym code) and
# with central differences of it. Nothing in bnsym knows these names.

SCALENORM = Layer(name="scalenorm", centred=False, beta=False)  # y = γ·x/√(mean(x²) + ε), rows
POWERNORM = Layer(name="powernorm", centred=False, grouping="columns")  # without running avg
EVALROWS = Layer(name="evalrows", params="element", modes=("train", "eval"))
# not centred, with running statistics: eval mode divides by the running mean square only
POWERNORM_EVAL = Layer(name="powernorm", centred=False, grouping="columns", modes=("train", "eval"))


@dataclass(frozen=True)
class Declared:
    """A declared layer in one mode: x's shape in its layout (m = 4), the axis a group runs
    along, and γ's length."""

    layer: Layer
    mode: str
    shape: tuple[int, ...]
    axis: int
    P: int

    def __str__(self) -> str:
        return f"{self.layer.name}-{self.mode}"


DECLARED = [
    pytest.param(Declared(SCALENORM, "train", (3, 4), 1, 1), id="scalenorm"),
    pytest.param(Declared(POWERNORM, "train", (4, 3), 0, 3), id="powernorm"),
    pytest.param(Declared(EVALROWS, "train", (3, 4), 1, 4), id="evalrows-train"),
    pytest.param(Declared(EVALROWS, "eval", (3, 4), 1, 4), id="evalrows-eval"),
    pytest.param(Declared(POWERNORM_EVAL, "eval", (4, 3), 0, 3), id="powernorm-eval"),
]
PLACEMENTS = ["inside", "outside"]


def _declared_data(case: Declared, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": 1.0 + 2.0 * rng.standard_normal(case.shape),
        "dout": rng.standard_normal(case.shape),
        "gdx": rng.standard_normal(case.shape),
        "gamma": 1.0 + 0.5 * rng.standard_normal(case.P),
        "beta": rng.standard_normal(case.P),
        "gdgamma": rng.standard_normal(case.P),
        "gdbeta": rng.standard_normal(case.P),
        # one running mean and variance per group of a sample: rows have one group each
        "running_mean": rng.standard_normal(1 if case.axis else case.P),
        "running_var": rng.uniform(0.5, 2.0, 1 if case.axis else case.P),
    }


def _np_statistics(case: Declared, x: np.ndarray, data: dict, eps: float, placement: str):
    """mu, std and r = d(std)/d(sqrt(var)) · std/sqrt(var) (1 with eps inside the root)."""
    if case.mode == "eval":  # an uncentred layer subtracts no mean, a running one neither
        mu = data["running_mean"] if case.layer.centred else 0.0
        var = data["running_var"]
    else:
        mu = x.mean(case.axis, keepdims=True) if case.layer.centred else 0.0
        var = ((x - mu) ** 2).mean(case.axis, keepdims=True)
    # ** 0.5, not numpy.sqrt: the torch test runs np_forward on tensors
    if placement == "inside":
        return mu, (var + eps) ** 0.5, 1.0
    return mu, var**0.5 + eps, (var**0.5 + eps) / var**0.5


def np_forward(case: Declared, x, gamma, beta, data, eps, placement="inside"):
    mu, std, _ = _np_statistics(case, x, data, eps, placement)
    return gamma * (x - mu) / std + (beta if case.layer.beta else 0.0)


def np_backward(case: Declared, dout, x, gamma, data, eps, placement="inside"):
    """(dx, dgamma, dbeta): the textbook closed form, g = γ·dout,
    dx = (g − mean(g) − r·x̂·mean(g·x̂))/std (no mean(g) where not centred; g/std in eval)."""
    mu, std, r = _np_statistics(case, x, data, eps, placement)
    x_hat = (x - mu) / std
    g = gamma * dout
    if case.mode == "eval":
        dx = g / std
    else:
        mean_g = g.mean(case.axis, keepdims=True) if case.layer.centred else 0.0
        dx = (g - mean_g - r * x_hat * (g * x_hat).mean(case.axis, keepdims=True)) / std
    # γ runs along x's last axis in these layouts: sum over everything else
    return dx, (dout * x_hat).reshape(-1, case.P).sum(0), dout.reshape(-1, case.P).sum(0)


def central_gradient(f, arrays: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """∂f/∂a for each array a of ``arrays`` by central differences, f a scalar function."""
    out = []
    for k, a in enumerate(arrays):
        grad = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            up, down = [b.copy() for b in arrays], [b.copy() for b in arrays]
            up[k][j] += h
            down[k][j] -= h
            grad[j] = (f(*up) - f(*down)) / (2 * h)
        out.append(grad)
    return out


def _args(case: Declared, data: dict, names: list[str]) -> list[np.ndarray]:
    """The generated function's arguments of ``names`` that this layer and mode have."""
    has = {"beta": case.layer.beta, "gdbeta": case.layer.beta}
    has |= dict.fromkeys(("running_mean", "running_var"), case.mode == "eval")
    return [data[n] for n in names if has.get(n, True)]


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("case", DECLARED)
def test_declared_layer_order_1_agrees_with_numpy_and_finite_differences(case, placement):
    mod = generate(4, layer=case.layer, mode=case.mode, eps_placement=placement)
    data, eps = _declared_data(case), 1e-3
    x, dout, gamma, beta = data["x"], data["dout"], data["gamma"], data["beta"]
    params = _args(case, data, ["gamma", "beta", "running_mean", "running_var"])
    y = mod.forward(x, *params, eps=eps)
    assert y.shape == x.shape
    np.testing.assert_allclose(
        y, np_forward(case, x, gamma, beta, data, eps, placement), atol=1e-12
    )
    grads = mod.backward(dout, x, *params, eps=eps)
    assert len(grads) == (3 if case.layer.beta else 2)
    want = np_backward(case, dout, x, gamma, data, eps, placement)
    for got, w, what in zip(grads, want, ("dx", "dgamma", "dbeta"), strict=False):
        assert got.shape == w.shape, what
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12, err_msg=what)

    def loss(x, gamma, beta):
        return np.sum(dout * np_forward(case, x, gamma, beta, data, eps, placement))

    numerical = central_gradient(loss, [x, gamma, beta])
    for got, w, what in zip(grads, numerical, ("dx", "dgamma", "dbeta"), strict=False):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7, err_msg=what)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("case", DECLARED)
def test_declared_layer_order_2_agrees_with_finite_differences_of_numpy(case, placement):
    """double_backward against central differences of Σ gdx·dx + Σ gdgamma·dgamma
    (+ Σ gdbeta·dbeta), the first-order gradients from the NumPy backward above."""
    mod = generate_higher(derive(4, layer=case.layer, mode=case.mode, eps_placement=placement))
    data, eps = _declared_data(case, seed=8), 1e-3
    x, dout, gamma = data["x"], data["dout"], data["gamma"]
    cot = _args(case, data, ["gdx", "gdgamma", "gdbeta"])

    def l2(x, dout, gamma):
        grads = np_backward(case, dout, x, gamma, data, eps, placement)
        return sum(np.sum(c * g) for c, g in zip(cot, grads, strict=False))

    params = _args(case, data, ["gamma", "beta", "running_mean", "running_var"])
    got = mod.double_backward(*cot, dout, x, *params, eps=eps)
    want = central_gradient(l2, [x, dout, gamma])
    for g, w, what in zip(got, want, ("gx", "gdout", "ggamma"), strict=True):
        assert g.shape == w.shape, what
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=what)


@pytest.mark.parametrize("case", DECLARED)
def test_declared_layer_order_2_agrees_with_torch_autograd(case):
    torch = pytest.importorskip("torch")
    mod = generate_higher(derive(4, layer=case.layer, mode=case.mode))
    data, eps = _declared_data(case, seed=9), 1e-5
    T = {k: torch.tensor(v, requires_grad=True) for k, v in data.items()}
    y = np_forward(case, T["x"], T["gamma"], T["beta"], T, eps)  # the same formula, in torch
    wrt = [T["x"], T["gamma"]] + ([T["beta"]] if case.layer.beta else [])
    grads = torch.autograd.grad(y, wrt, T["dout"], create_graph=True)
    cot = _args(case, data, ["gdx", "gdgamma", "gdbeta"])
    l2 = sum((torch.tensor(c) * g).sum() for c, g in zip(cot, grads, strict=True))
    want = torch.autograd.grad(l2, (T["x"], T["dout"], T["gamma"]), allow_unused=True)
    params = _args(case, data, ["gamma", "beta", "running_mean", "running_var"])
    got = mod.double_backward(*cot, data["dout"], data["x"], *params, eps=eps)
    for g, w, what in zip(got, want, ("gx", "gdout", "ggamma"), strict=True):
        w = np.zeros_like(g) if w is None else w.detach().numpy()
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=what)


def test_declared_layers_name_their_shapes_in_messages() -> None:
    scale = generate(4, layer=SCALENORM)
    with pytest.raises(ValueError, match=r"^gamma must have shape \(1,\) to match x; got \(4,\)"):
        scale.forward(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, m\) = \(N, 4\); got \(4, 3\)"):
        scale.forward(np.ones((4, 3)), np.ones(1))
    power = generate(4, layer=POWERNORM)
    with pytest.raises(ValueError, match=r"^y is not finite: feature 1 of x is all zero"):
        power.forward(np.eye(4, 3) * [1, 0, 1], np.ones(3), np.zeros(3), eps=0.0)
    assert scale.source.splitlines()[1] == "# Scalenorm for groups of m = 4 values."
    assert "bnsym.generate(4, layer=scalenorm)" in scale.source
