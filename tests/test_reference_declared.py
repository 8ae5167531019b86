"""``DeclaredReference``: the NumPy reference of any declared layer, against independent numbers.

References: the hand-written layers of ``bnsym.reference`` (called as ``bnsym check`` calls them,
through the oracle table) -- the same numbers in every variant; central differences of the
scalar ``<dout, out>``, which read the forward pass only; ScaleNorm and an uncentred batch norm
(as PowerNorm uses it) written out below in plain NumPy. Needs NumPy only.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from bnsym.crosscheck.oracles import ORACLES
from bnsym.family.layers import LAYERS, Layer
from bnsym.reference import DeclaredReference, GroupSizeError, NormError
from bnsym.reference.declared import groups, ungroup

# float64 rounding over a few dozen operations on values of size 1
TOL = 1e-12
# central differences with step FD_H: truncation ~ FD_H**2, rounding ~ 1e-16 / FD_H
FD_H = 1e-6
FD_TOL = 1e-7

#: Layers the five do not cover, declared here as a user would.
SCALENORM = Layer(name="scalenorm", centred=False, beta=False)  # one γ for a row, no β
POWERNORM = Layer(name="powernorm", centred=False, grouping="columns", modes=("train", "eval"))
GROUP_RMS = Layer(name="grouprms", centred=False, params="channel", grouping="groups", beta=False)
ROW_SHARED = Layer(name="rowshared")  # centred, one γ and β for a row
USER = [SCALENORM, POWERNORM, GROUP_RMS, ROW_SHARED]
EVERY = [*LAYERS.values(), *USER]


def _channels(decl: Layer) -> int | None:
    return 2 if decl.has_channels else None


def _data(decl: Layer, m: int = 4, seed: int = 0, mode: str = "train") -> dict:
    """x in the layer's layout (several samples and groups where it has them), dout, γ, β of
    (P*K,), running statistics of (P,)."""
    g = decl.grouping_
    N, P = (3, 2) if g.samples else (1, 3)
    K = decl.param_count(m, _channels(decl))
    rng = np.random.default_rng(seed)
    x = 1.5 + 2.0 * rng.standard_normal(g.shape(N, P, m, K))
    P = x.size // (N * m)  # 1 for a layout with one group per sample
    data = {
        "x": x,
        "dout": rng.standard_normal(x.shape),
        "gamma": 1.0 + 0.5 * rng.standard_normal(P * K),
        "beta": rng.standard_normal(P * K) if decl.beta else None,
    }
    if mode == "eval":
        data.update(running_mean=rng.standard_normal(P), running_var=rng.uniform(0.5, 2.0, P))
    return data


def _variants(decl: Layer):
    variances = ("biased", "unbiased") if decl.centred else ("biased",)
    placements = ("inside", "outside", "sqrt-outside")
    return list(itertools.product(variances, placements, (True, False)))


def _run(ref: DeclaredReference, data: dict, eps: float, staged: bool, mode: str = "train", **kw):
    gamma, beta = (data["gamma"], data["beta"]) if kw.get("affine", True) else (None, None)
    if mode == "eval":
        forward = ref.forward_eval_staged if staged else ref.forward_eval
        backward = ref.backward_eval_staged if staged else ref.backward_eval
        stats = data["running_mean"], data["running_var"]
        out, cache = forward(data["x"], gamma, beta, *stats, eps, **kw)
    else:
        forward = ref.forward_staged if staged else ref.forward
        backward = ref.backward_staged if staged else ref.backward
        out, cache = forward(data["x"], gamma, beta, eps, **kw)
    return out, backward(data["dout"], cache)


# --- the same numbers as the hand-written five --------------------------------------------


@pytest.mark.parametrize(
    "decl, variance, placement, affine",
    [(d, *v) for d in LAYERS.values() for v in _variants(d)],
    ids=lambda v: v.name if isinstance(v, Layer) else str(v),
)
def test_the_hand_written_layers_numbers(decl, variance, placement, affine):
    m = 4
    data = _data(decl, m)
    if not affine:
        data.update(gamma=None, beta=None)
    o = SimpleNamespace(
        m=m,
        channels=_channels(decl),
        variance=variance,
        eps_placement=placement,
        affine=affine,
        mode="train",
    )
    ref = DeclaredReference(decl, m, _channels(decl))
    variant = {"variance": variance, "eps_placement": placement, "affine": affine}
    for staged in (False, True):
        hand = (ORACLES[decl].staged if staged else ORACLES[decl].fused)["train"]
        want = hand({k: v for k, v in data.items() if v is not None}, o, 1e-3)
        out, (dx, dgamma, dbeta) = _run(ref, data, 1e-3, staged, **variant)
        got = {"y": out, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
        assert set(want) == {k for k, v in got.items() if v is not None}
        for q, w in want.items():
            np.testing.assert_allclose(got[q], w, rtol=TOL, atol=TOL, err_msg=f"{q} {staged=}")


@pytest.mark.parametrize("placement", ["inside", "outside", "sqrt-outside"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norms_eval_mode_numbers(placement, affine):
    decl = LAYERS["batchnorm"]
    data = _data(decl, 4, mode="eval")
    if not affine:
        data.update(gamma=None, beta=None)
    o = SimpleNamespace(eps_placement=placement, affine=affine, variance="biased")
    ref = DeclaredReference(decl, 4)
    for staged in (False, True):
        hand = (ORACLES[decl].staged if staged else ORACLES[decl].fused)["eval"]
        want = hand({k: v for k, v in data.items() if v is not None}, o, 1e-3)
        out, grads = _run(ref, data, 1e-3, staged, "eval", eps_placement=placement, affine=affine)
        for q, g in zip(("y", "dx", "dgamma", "dbeta"), (out, *grads), strict=True):
            if q in want:
                np.testing.assert_allclose(g, want[q], rtol=TOL, atol=TOL)
            else:
                assert g is None


# --- central differences, every declaration and variant ---------------------------------------


def _fd(f, inputs: list[np.ndarray], dout: np.ndarray) -> list[np.ndarray]:
    """∂<dout, f(*inputs)>/∂ each input, entry by entry, by central differences."""
    grads = []
    for k, v in enumerate(inputs):
        grad = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            plus = [a.copy() for a in inputs]
            minus = [a.copy() for a in inputs]
            plus[k][j] += FD_H
            minus[k][j] -= FD_H
            grad[j] = np.sum(dout * (f(*plus) - f(*minus))) / (2 * FD_H)
        grads.append(grad)
    return grads


@pytest.mark.parametrize(
    "decl, variance, placement, affine",
    [(d, *v) for d in EVERY for v in _variants(d)],
    ids=lambda v: v.name if isinstance(v, Layer) else str(v),
)
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_every_declaration_against_finite_differences(decl, variance, placement, affine, staged):
    m, eps = 4, 1e-2
    ref = DeclaredReference(decl, m, _channels(decl))
    data = _data(decl, m, seed=1)
    variant = {"variance": variance, "eps_placement": placement, "affine": affine}
    names = ["x", *(["gamma"] if affine else []), *(["beta"] if affine and decl.beta else [])]

    def f(x, gamma=None, beta=None):
        forward = ref.forward_staged if staged else ref.forward
        return forward(x, gamma, beta, eps, **variant)[0]

    inputs = [data[n] for n in names]
    out, grads = _run(ref, data, eps, staged, **variant)
    np.testing.assert_allclose(out, f(*inputs), rtol=0, atol=0)  # deterministic
    want = _fd(f, inputs, data["dout"])
    got = [g for g in grads if g is not None]
    assert len(got) == len(names)
    for name, g, w in zip(names, got, want, strict=True):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, atol=FD_TOL, err_msg=name)


@pytest.mark.parametrize("decl", [LAYERS["batchnorm"], POWERNORM], ids=lambda d: d.name)
@pytest.mark.parametrize("placement", ["inside", "outside", "sqrt-outside"])
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_eval_mode_against_finite_differences(decl, placement, staged):
    eps = 1e-2
    ref = DeclaredReference(decl, 4)
    data = _data(decl, 4, seed=2, mode="eval")
    stats = data["running_mean"], data["running_var"]

    def f(x, gamma, beta):
        forward = ref.forward_eval_staged if staged else ref.forward_eval
        return forward(x, gamma, beta, *stats, eps, eps_placement=placement)[0]

    inputs = [data["x"], data["gamma"], data["beta"]]
    _, grads = _run(ref, data, eps, staged, "eval", eps_placement=placement)
    for g, w in zip(grads, _fd(f, inputs, data["dout"]), strict=True):
        np.testing.assert_allclose(g, w, atol=FD_TOL)


@pytest.mark.parametrize("decl", EVERY, ids=lambda d: d.name)
@pytest.mark.parametrize("placement", ["outside", "sqrt-outside"])
@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_a_constant_group_with_eps_outside_takes_the_limit(decl, placement, staged):
    """σ = 0 (all equal values; all zero for a mean square): √σ² is not differentiable there,
    the layer is -- along v, x̂ changes by (v - mean(v))/e (by v/e uncentred), e = ε or √ε --
    so dx = (g - mean(g))/e with g = γ·dout, the limit the reference must return. The other
    groups are as central differences find them."""
    m, eps = 4, 1e-2
    ref = DeclaredReference(decl, m, _channels(decl))
    data = _data(decl, m, seed=3)
    g = groups(decl, data["x"], m).copy()
    g[0, 0] = 0.0 if not decl.centred else 2.5  # the first group constant
    x = ungroup(decl, g, data["x"].shape)

    def f(x):
        forward = ref.forward_staged if staged else ref.forward
        return forward(x, data["gamma"], data["beta"], eps, eps_placement=placement)[0]

    _, (dx, _, _) = _run(ref, {**data, "x": x}, eps, staged, eps_placement=placement)
    dx = groups(decl, dx, m)
    K, index = decl.param_count(m, _channels(decl)), list(decl.param_index(m, _channels(decl)))
    gamma = data["gamma"].reshape(-1, K)[0, index]  # the first group's γ, value by value
    g = gamma * groups(decl, data["dout"], m)[0, 0]
    e = eps if placement == "outside" else np.sqrt(eps)
    np.testing.assert_allclose(dx[0, 0], (g - g.mean() if decl.centred else g) / e, rtol=TOL)
    # central differences are O(h/ε) off at the kink: compared on the other groups only
    fd = groups(decl, _fd(f, [x], data["dout"])[0], m)
    others = np.ones(dx.shape[:2], dtype=bool)
    others[0, 0] = False
    np.testing.assert_allclose(dx[others], fd[others], atol=FD_TOL)


# --- plain NumPy: ScaleNorm and the uncentred batch norm ----------------------------------


@pytest.mark.parametrize("staged", [False, True], ids=["fused", "staged"])
def test_scalenorm_is_gamma_x_over_the_root_mean_square(staged):
    """y = γ·x/r, r = √(mean(x²) + ε) per row, one γ; by hand: dx = γ/r·(dout − x̂·mean(dout·x̂)),
    dγ = Σ dout·x̂ over every value."""
    rng = np.random.default_rng(4)
    x, dout, gamma, eps = rng.standard_normal((5, 6)), rng.standard_normal((5, 6)), [1.7], 1e-3
    r = np.sqrt((x**2).mean(axis=1, keepdims=True) + eps)
    x_hat = x / r
    ref = DeclaredReference(SCALENORM, 6)
    forward = ref.forward_staged if staged else ref.forward
    backward = ref.backward_staged if staged else ref.backward
    out, cache = forward(x, gamma, None, eps)
    np.testing.assert_allclose(out, 1.7 * x_hat, rtol=TOL)
    dx, dgamma, dbeta = backward(dout, cache)
    want_dx = 1.7 / r * (dout - x_hat * (dout * x_hat).mean(axis=1, keepdims=True))
    np.testing.assert_allclose(dx, want_dx, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dgamma, [(dout * x_hat).sum()], rtol=TOL)
    assert dbeta is None


def test_uncentred_batch_norm_in_train_and_eval_mode():
    rng = np.random.default_rng(5)
    x, gamma, beta = 1 + rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3)
    rm, rv, eps = rng.standard_normal(3), rng.uniform(0.5, 2, 3), 1e-3
    ref = DeclaredReference(POWERNORM, 4)
    out, _ = ref.forward(x, gamma, beta, eps)
    np.testing.assert_allclose(out, gamma * x / np.sqrt((x**2).mean(axis=0) + eps) + beta, rtol=TOL)
    # eval mode: an uncentred layer divides by its running mean square; there is no mean
    out, _ = ref.forward_eval(x, gamma, beta, rm, rv, eps, eps_placement="outside")
    np.testing.assert_allclose(out, gamma * x / (np.sqrt(rv) + eps) + beta, rtol=TOL)


def test_layouts_with_spatial_axes_and_inputs_left_alone():
    """Group norm's positions may come as several axes, as PyTorch lays them out: the same
    numbers as the flat layout; nothing the caller holds is changed."""
    decl = LAYERS["groupnorm"]
    ref = DeclaredReference(decl, 8, channels=2)
    rng = np.random.default_rng(6)
    x, dout = rng.standard_normal((2, 4, 2, 2)), rng.standard_normal((2, 4, 2, 2))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    kept = [a.copy() for a in (x, dout, gamma, beta)]
    out, cache = ref.forward(x, gamma, beta)
    grads = ref.backward(dout, cache)
    flat_out, flat_cache = ref.forward(x.reshape(2, 4, 4), gamma, beta)
    flat = ref.backward(dout.reshape(2, 4, 4), flat_cache)
    np.testing.assert_array_equal(out.reshape(2, 4, 4), flat_out)
    assert grads[0].shape == x.shape
    np.testing.assert_array_equal(grads[0].reshape(2, 4, 4), flat[0])
    for a, b in zip((x, dout, gamma, beta), kept, strict=True):
        np.testing.assert_array_equal(a, b)


# --- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: DeclaredReference(SCALENORM, 0), NormError, "m must be"),
        (lambda: DeclaredReference(SCALENORM, 4, channels=2), NormError, "no channels"),
        (lambda: DeclaredReference(GROUP_RMS, 4, channels=3), NormError, "dividing m = 4"),
        (lambda: DeclaredReference("scalenorm", 4), NormError, "bnsym Layer"),
        (
            lambda: DeclaredReference(SCALENORM, 4).forward(np.ones((2, 4)), [1.0], [0.0]),
            NormError,
            "scalenorm has no beta",
        ),
        (
            lambda: DeclaredReference(SCALENORM, 4).forward(np.ones((2, 5)), [1.0], None),
            NormError,
            "x must have shape (N, m) for scalenorm with m = 4; got (2, 5)",
        ),
        (
            lambda: DeclaredReference(POWERNORM, 4).forward(np.ones((4, 2, 1)), None, None),
            NormError,
            "x must have shape (m, D)",
        ),
        (
            lambda: DeclaredReference(SCALENORM, 4).forward(
                np.ones((2, 4)), [1.0], None, variance="unbiased"
            ),
            NormError,
            "no unbiased variant",
        ),
        (
            lambda: DeclaredReference(SCALENORM, 4).forward_eval(
                np.ones((2, 4)), [1.0], None, [0.0], [1.0]
            ),
            NormError,
            "scalenorm has no eval mode",
        ),
        (
            lambda: DeclaredReference(POWERNORM, 4).forward_eval(
                np.ones((4, 2)), None, None, [0.0], [1.0, 1.0], affine=False
            ),
            NormError,
            "running_mean must have shape (P,) = (2,)",
        ),
        (
            lambda: DeclaredReference(ROW_SHARED, 1).forward(np.ones((2, 1)), [1.0], [0.0]),
            GroupSizeError,
            "variance of one value is zero",
        ),
        (
            lambda: DeclaredReference(ROW_SHARED, 2).backward_staged(
                np.ones((1, 2)),
                DeclaredReference(ROW_SHARED, 2).forward(np.eye(2)[:1], [1.0], [0.0])[1],
            ),
            NormError,
            "the staged backward pass needs the cache returned by forward_staged",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_importing_it_imports_neither_sympy_nor_the_symbolic_core():
    code = (
        "import sys, bnsym.reference.declared; "
        "bad = {m for m in sys.modules if m in ('sympy', 'torch') or m.startswith('bnsym.core')}; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
