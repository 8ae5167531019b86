"""Forward mode and its compositions with reverse mode: derived, proved, and checked against
references that share nothing with bnsym's walks or closed forms.

The reference is one group of m values written below in plain NumPy (:func:`layer_np`), every
composition of it computed numerically as JAX's check_grads composes them
(:func:`numeric_word`): the innermost derivative by the complex step (exact to rounding), the
outer one by central differences. The walks of :mod:`bnsym.core.forward` and the compositions
of :func:`bnsym.proofs.modes.derive_modes` are evaluated exactly (50 digits) and compared with
it; the proofs are tampered with and must fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

from bnsym.core import forward as core_forward
from bnsym.core.build import forward_graph
from bnsym.core.graph import Step, Symbols
from bnsym.core.higher import evaluate
from bnsym.core.options import DerivationError
from bnsym.derivation import derive
from bnsym.family.layers import LAYERS, Layer
from bnsym.proofs import forward as closed_forms
from bnsym.proofs import general as general_proofs
from bnsym.proofs import modes
from bnsym.proofs.modes import derive_modes

SCALENORM = Layer(name="scalenorm", centred=False, beta=False)  # one γ per row, no β
EPS = 1e-5


def _decls():
    out = [
        (name, decl, {"channels": 2} if decl.has_channels else {}) for name, decl in LAYERS.items()
    ]
    return [*out, ("scalenorm", SCALENORM, {})]


DECLS = _decls()


# --- the reference: one group in plain NumPy ----------------------------------------------------


def layer_np(decl, m, channels, variance, placement, mode, x, gamma, beta, stats=None):
    """y of one group of m values (x: (m,)), γ and β given per parameter (K,), in NumPy."""
    index = list(decl.param_index(m, channels))
    if mode == "eval":
        mu, var = (stats[0] if decl.centred else 0.0), stats[1]
    elif decl.centred:
        mu = x.mean()
        var = ((x - mu) ** 2).sum() / (m - 1 if variance == "unbiased" else m)
    else:
        mu, var = 0.0, (x * x).mean()
    if placement == "inside":
        D = np.sqrt(var + EPS)
    else:
        D = np.sqrt(var) + (np.sqrt(EPS) if placement == "sqrt-outside" else EPS)
    xhat = (x - mu) / D
    g = 1.0 if gamma is None else gamma[index]
    b = 0.0 if beta is None else beta[index]
    return g * xhat + b


def numeric_word(word, f, args):
    """The composition ``word`` (outer first) of ``f`` (a function of a list of arrays
    returning a list of arrays) at ``args``: a list of input lists, one per level (base inputs
    first, then what each letter adds), as JAX's check_grads composes them."""
    if not word:
        return f(args[0])
    inner = word[1:]
    n_in = len(args) - 1

    def g(flat):
        return numeric_word(inner, f, flat)

    base = args[:n_in]
    extra = args[n_in]
    mode = word[0]
    level = len(word)
    flat_inputs = [a for grp in base for a in grp]
    sizes = [len(grp) for grp in base]

    def regroup(flat):
        out, k = [], 0
        for n in sizes:
            out.append(flat[k : k + n])
            k += n
        return out

    def G(flat):
        return g(regroup(flat))

    if mode == "f":  # directional derivative along `extra` (one tangent per input)
        if level == 1:  # innermost: complex step, exact to rounding
            h = 1e-30
            moved = [a + 1j * h * t for a, t in zip(flat_inputs, extra, strict=True)]
            return [np.imag(o) / h for o in G(moved)]
        h = 1e-5
        plus = [a + h * t for a, t in zip(flat_inputs, extra, strict=True)]
        minus = [a - h * t for a, t in zip(flat_inputs, extra, strict=True)]
        return [(p - q) / (2 * h) for p, q in zip(G(plus), G(minus), strict=True)]

    # "r": the gradient of <extra, G> with respect to every input, entry by entry
    def loss(flat):
        return sum(np.sum(c * o) for c, o in zip(extra, G(flat), strict=True))

    out = []
    for k, a in enumerate(flat_inputs):
        grad = np.zeros(a.shape)
        for j in np.ndindex(a.shape):
            if level == 1:
                moved = [b.astype(complex) for b in flat_inputs]
                moved[k][j] += 1e-30j
                grad[j] = np.imag(loss(moved)) / 1e-30
            else:
                h = 1e-5
                plus = [b.copy() for b in flat_inputs]
                minus = [b.copy() for b in flat_inputs]
                plus[k][j] += h
                minus[k][j] -= h
                grad[j] = (loss(plus) - loss(minus)) / (2 * h)
        out.append(grad)
    return out


# --- the exact side: bnsym's walks at numbers ---------------------------------------------------


def _variant(decl, kw, **options):
    m = 4 if decl.has_channels else 3
    return derive(m, layer=decl, **kw, **options)


def _numbers(rng, shapes):
    return [rng.standard_normal(s) for s in shapes]


def _base(d, rng):
    """x (m,), γ (K,), β (K,) as far as the variant has them, and the running statistics."""
    s, o = d.symbols, d.options
    K = len(s.gammas)
    x = 1.5 + 2.0 * rng.standard_normal(d.m)
    params = []
    if o.affine:
        params.append(1.0 + 0.5 * rng.standard_normal(K))
        if s.layer.beta:
            params.append(rng.standard_normal(K))
    stats = (0.3, 1.7) if o.mode == "eval" else None
    return [x, *params], stats


def _np_function(d, stats):
    s, o = d.symbols, d.options

    def f(inputs):
        x, *params = inputs
        gamma = params[0] if params else None
        beta = params[1] if len(params) > 1 else None
        return [
            layer_np(
                s.layer, d.m, o.channels, o.variance, o.eps_placement, o.mode, x, gamma, beta, stats
            )
        ]

    return f


def _exact(c, base_symbols, values, stats_values):
    """The composition ``c`` (core.forward.Composed) evaluated in 50 digits."""
    vals = {}
    for syms, arrays in zip(base_symbols, values, strict=True):
        vals.update({sym: sp.Float(float(v), 50) for sym, v in zip(syms, arrays, strict=True)})
    vals.update(stats_values)
    out = evaluate(c.steps, vals)
    return [float(sp.sympify(o).xreplace(out)) for o in c.outputs]


WORDS2 = core_forward.words(("fwd", "rev"), 2)


@pytest.mark.parametrize(("name", "decl", "kw"), DECLS, ids=[n for n, *_ in DECLS])
@pytest.mark.parametrize(
    "options",
    [{}, {"eps_placement": "outside", "variance": "unbiased"}, {"eps_placement": "sqrt-outside"}],
    ids=["inside", "outside-unbiased", "sqrt-outside"],
)
def test_every_composition_of_order_2_is_plain_numpys(name, decl, kw, options):
    """f, r, ff, fr, rf, rr by the generic walks, against plain NumPy differentiated
    numerically: every layer of the registry and ScaleNorm, ε in each place."""
    if not decl.centred and "variance" in options:
        options = {"eps_placement": "outside"}
    d = _variant(decl, kw, **options)
    s = d.symbols
    rng = np.random.default_rng(7)
    base, stats = _base(d, rng)
    f = _np_function(d, stats)
    theta = [s.x, *([s.gammas] if len(base) > 1 else []), *([s.betas] if len(base) > 2 else [])]
    flat_theta = [v for g in theta for v in g]
    eps = {s.eps: sp.Float(EPS, 50)}
    for word in WORDS2:
        c = core_forward.compose(word, d.forward, flat_theta, s.y)
        # random numbers for what each level adds: a tangent per input of the level below, or
        # a cotangent per output of it (computed once for its shape)
        args = [base]
        for level in range(1, len(word) + 1):
            below = word[len(word) - level + 1 :]
            if word[len(word) - level] == "f":
                new = [rng.standard_normal(a.shape) for grp in args for a in grp]
            else:
                new = [rng.standard_normal(np.shape(o)) for o in numeric_word(below, f, args)]
            args.append(new)
        levels = [np.concatenate([np.ravel(a) for a in grp]) for grp in args]
        exact = _exact(c, [flat_theta, *c.added], levels, eps)
        numeric = np.concatenate([np.ravel(o) for o in numeric_word(word, f, args)])
        scale = max(1.0, float(np.max(np.abs(numeric))))
        err = float(np.max(np.abs(np.asarray(exact) - numeric))) / scale
        assert err < 1e-6, f"{name} {options} {core_forward.word_name(word)}: error {err:.2e}"


# --- derive_modes: every variant's proofs, and the closed forms at numbers ---------------------


VARIANTS = [
    {},
    {"eps_placement": "outside"},
    {"eps_placement": "sqrt-outside", "variance": "unbiased"},
    {"affine": False},
]


@pytest.mark.parametrize(("name", "decl", "kw"), DECLS, ids=[n for n, *_ in DECLS])
@pytest.mark.parametrize(
    "options", VARIANTS, ids=["inside", "outside", "sqrt-unbiased", "no-affine"]
)
def test_every_variant_is_proved_at_order_2(name, decl, kw, options):
    if not decl.centred:
        options = {k: v for k, v in options.items() if k != "variance"}
    d = _variant(decl, kw, **options)
    md = derive_modes(d, ("fwd", "rev"), 2)
    assert [c.word for c in md.compositions] == ["f", "ff", "fr", "rf"]
    assert md.verified and all(md.verified.values()), {
        k: v for k, v in md.verified.items() if not v
    }
    assert set(md.verified) >= {
        "jvp_closed_form",
        "jvp_transpose",
        "ff_closed_form",
        "ff_symmetric",
        "hvp_closed_form",
        "rf_closed_form",
        "tensor_ff_fr",
        "tensor_symmetric",
        "tensor_rf",
        "tensor_rr",
    }


def test_eval_mode_is_proved_at_order_2():
    for affine in (True, False):
        d = derive(3, mode="eval", affine=affine)
        md = derive_modes(d, ("fwd", "rev"), 2)
        assert all(md.verified.values()), md.verified


@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "rmsnorm"])
def test_order_3_along_the_forward_chain_is_proved(name):
    d = derive(2, layer=name, eps_placement="outside")
    md = derive_modes(d, ("fwd",), 3)
    assert [c.word for c in md.compositions] == ["f", "ff", "fff"]
    assert all(md.verified.values()), md.verified
    assert {"fff_closed_form", "fff_symmetric"} <= set(md.verified)


def test_the_closed_form_of_the_jvp_has_the_coefficient_k_times_r():
    """ẏ = (γ/D)·(ẋ − mean(ẋ) − k·r·x̂·Σẋ·x̂) + γ̇·x̂ + β̇ with k = 1/(m−1) and r = (σ+ε)/σ,
    evaluated at numbers against the NumPy layer's complex step."""
    d = derive(4, variance="unbiased", eps_placement="outside")
    s = d.symbols
    md = derive_modes(d, ("fwd",), 1)
    f = md.composition("f")
    rng = np.random.default_rng(3)
    x = 1.0 + rng.standard_normal(4)
    gamma, beta, tx, tg, tb = 1.3, -0.2, rng.standard_normal(4), 0.7, -0.4
    h = 1e-30
    y = layer_np(
        s.layer, 4, None, "unbiased", "outside", "train", x + 1j * h * tx,
        np.array([gamma + 1j * h * tg]), np.array([beta + 1j * h * tb]),
    )  # fmt: skip
    values = {s.eps: EPS, s.gamma: gamma, s.beta: beta, sp.Symbol("dotgamma", real=True): tg}
    values[sp.Symbol("dotbeta", real=True)] = tb
    values.update(zip(s.x, x, strict=True))
    values.update({sp.Symbol(f"dotx{i + 1}", real=True): tx[i] for i in range(4)})
    values = {k: sp.Float(float(v), 50) for k, v in values.items()}
    out = evaluate([*d.forward, *f.closed_form], values)
    closed = [float(out[st.lhs]) for st in f.results]
    np.testing.assert_allclose(closed, np.imag(y) / h, rtol=1e-12)


# --- the proofs fail when the derivation is wrong ----------------------------------------------


OFF_BY_ONE_PERCENT = sp.Rational(101, 100)


def _tampered(fn, name, factor=OFF_BY_ONE_PERCENT):
    def wrapped(*args, **kwargs):
        steps = list(fn(*args, **kwargs))
        k = next(i for i, st in enumerate(steps) if st.lhs.name == name)
        steps[k] = dataclasses.replace(steps[k], rhs=steps[k].rhs * factor)
        return tuple(steps)

    return wrapped


@pytest.mark.parametrize(
    ("function", "step", "proof"),
    [
        ("jvp_closed_form", "dotD", "jvp_closed_form"),
        ("jvp_closed_form", "doty2", "jvp_closed_form"),
        ("ff_closed_form", "deldotD", "ff_closed_form"),
        ("ff_closed_form", "B", "ff_closed_form"),
        ("hvp_closed_form", "coef_xhat", "hvp_closed_form"),
        ("hvp_closed_form", "dotdgamma2", "hvp_closed_form"),
        ("rf_closed_form", "bardotx1", "rf_closed_form"),
    ],
)
def test_a_wrong_coefficient_fails_its_proof(monkeypatch, function, step, proof):
    monkeypatch.setattr(modes, function, _tampered(getattr(closed_forms, function), step))
    monkeypatch.setattr(modes, "_CACHE", {})
    d = derive(3, layer="layernorm", eps_placement="outside")
    md = derive_modes(d, ("fwd", "rev"), 2)
    assert md.verified[proof] is False
    assert sum(not ok for ok in md.verified.values()) == 1


def test_the_ε_outside_coefficient_k_r_is_needed(monkeypatch):
    """k in place of k·r (the issue's batch-norm formula, right only with ε inside) fails."""
    real = closed_forms.facts

    def without_r(*args):
        f = real(*args)
        return dataclasses.replace(f, r=sp.Integer(1), r_steps=())

    monkeypatch.setattr(closed_forms, "facts", without_r)
    monkeypatch.setattr(modes, "_CACHE", {})
    outside = derive_modes(derive(3, eps_placement="outside"), ("fwd",), 1)
    inside = derive_modes(derive(3), ("fwd",), 1)
    assert outside.verified["jvp_closed_form"] is False
    assert inside.verified["jvp_closed_form"] is True


def test_a_wrong_walk_fails_the_transpose_and_the_tensor(monkeypatch):
    real = modes.push_forward

    def wrong(nodes, tangents, prefix, rule="pushed forward"):
        steps, tangent = real(nodes, tangents, prefix, rule)
        k = next(i for i, st in enumerate(steps) if st.lhs.name.startswith(prefix + "xhat"))
        steps[k] = dataclasses.replace(steps[k], rhs=steps[k].rhs * sp.Rational(11, 10))
        return steps, tangent

    monkeypatch.setattr(modes, "push_forward", wrong)
    monkeypatch.setattr(modes, "_CACHE", {})
    md = derive_modes(derive(3, layer="layernorm"), ("fwd", "rev"), 2)
    assert md.verified["jvp_transpose"] is False
    assert md.verified["jvp_closed_form"] is False
    assert md.verified["tensor_rr"] is False


def test_a_wrong_general_form_fails_its_proofs(monkeypatch):
    real = general_proofs.general_forward

    def wrong(g):
        steps, closed = real(g)
        last = steps[-1]
        return (*steps[:-1], dataclasses.replace(last, value=last.value * 2)), closed

    monkeypatch.setattr(general_proofs, "general_forward", wrong)
    general_proofs.derive_general_forward.cache_clear()
    try:
        g = general_proofs.derive_general_forward("groupnorm")
        assert g.verified == {"jvp_closed_form": False, "jvp_transpose": False}
    finally:
        general_proofs.derive_general_forward.cache_clear()


def test_above_m_16_the_general_form_proves_forward_mode():
    md = derive_modes(derive(20, layer="rmsnorm"), ("fwd",), 1)
    assert md.verified == {"jvp_closed_form": True, "jvp_transpose": True}
    assert "not redone for m = 20" in md.proof_methods["jvp_transpose"]
    assert md.general is not None and md.general.closed_form.rhs.has(sp.Sum)


# --- bad input ----------------------------------------------------------------------------------


def test_bad_modes_and_orders_are_one_line():
    d = derive(3)
    with pytest.raises(DerivationError, match="modes must be one or both of fwd, rev; got 'lin'"):
        derive_modes(d, ("lin",), 1)
    with pytest.raises(DerivationError, match="order must be 1, 2 or 3"):
        derive_modes(d, ("fwd",), 4)
    with pytest.raises(DerivationError, match="up to m = 16"):
        derive_modes(derive(17), ("fwd", "rev"), 2)
    with pytest.raises(DerivationError, match="up to m = 8"):
        derive_modes(derive(9), ("fwd",), 3)


def test_push_forward_knows_no_layer():
    x, w, y, z = sp.symbols("x w y z", real=True)
    steps, tangent = core_forward.push_forward(
        [Step(y, sp.sin(x) * w), Step(z, y**2)], {x: sp.Symbol("tx")}, "t"
    )
    assert [str(st.lhs) for st in steps] == ["ty", "tz"]
    tz = steps[1].rhs.xreplace({steps[0].lhs: steps[0].rhs, y: sp.sin(x) * w})
    assert sp.simplify(tz) == sp.simplify(sp.diff((sp.sin(x) * w) ** 2, x) * sp.Symbol("tx"))
    assert w not in tangent  # no tangent given: a constant


def test_words_are_jaxs():
    assert core_forward.words(("fwd",), 3) == ["f", "ff", "fff"]
    assert core_forward.words(("rev",), 2) == ["r", "rr"]
    assert len(core_forward.words(("fwd", "rev"), 3)) == 2 + 4 + 8
    assert core_forward.word_name("rf") == "vjp of the jvp"


def test_the_walk_of_a_layer_reads_as_the_notes_write_it():
    s = Symbols.of(3, "batchnorm")
    forward = forward_graph(s, "biased", "inside", True, "train")
    dot = closed_forms.tangents(s, True, "dot")
    steps, _ = core_forward.push_forward(
        forward, dict(zip(closed_forms.inputs(s, True), dot.all, strict=True)), "dot"
    )
    assert [str(st.lhs) for st in steps] == [
        "dotmu_B", "dotsigma2_B", "dotxhat1", "dotxhat2", "dotxhat3", "doty1", "doty2", "doty3"
    ]  # fmt: skip
    assert steps[0].rule == "mini-batch mean pushed forward"
