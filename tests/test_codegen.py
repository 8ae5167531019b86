"""Generated NumPy code: equal to both hand-written versions, standalone, readable, strict."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bnsym import reference
from bnsym.codegen import GeneratedModule, generate

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


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_source_is_readable(variant: dict) -> None:
    m = 5
    module = generate(m, **variant)
    src = module.source
    assert "_Dummy" not in src and "Dummy" not in src
    assert src.startswith("# Generated by bnsym")
    assert "# Command: bnsym.generate(5" in src
    assert re.search(r"^import numpy$", src, re.M) and "sympy" not in src.split('"""')[-1]
    assigned = set(re.findall(r"^    (\w+) = ", src, re.M))
    graph = {"mu_B", "sigma2_B", "sigma_B", "sum_dy", "sum_dy_xhat"} | {
        f"xhat{i}" for i in range(1, m + 1)
    }
    for name in assigned:
        # temporaries never look like an input row x<i> or dy<i>
        assert not re.fullmatch(r"(x|dy)\d+", name), name
    temps = (
        assigned
        - graph
        - {
            "x",
            "dout",
            "D",
            "gamma",
            "beta",
            "running_mean",
            "running_var",
            "eps",
            "y",
            "grads",
            "dx",
            "a",
            "bad",
            "where",
        }
    )
    assert all(re.fullmatch(r"_t\d+", t) for t in temps), temps
    assert f"def _forward({', '.join(f'x{i}' for i in range(1, m + 1))}," in src


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
    from bnsym.symbolic import DerivationError

    with pytest.raises(DerivationError, match="m must"):
        generate(m)


def test_generate_from_a_derivation_takes_no_options() -> None:
    from bnsym.symbolic import derive

    d = derive(3, affine=False)
    assert "def forward(x, eps=1e-05):" in generate(d).source
    with pytest.raises(TypeError, match="no derive options"):
        generate(d, affine=True)
