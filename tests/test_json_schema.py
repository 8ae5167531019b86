"""The JSON matches its documentation (docs/derive.md, "JSON, and reading it back"), for every
layer of the registry and a layer declared here, every mode, orders 1 to 3; and every such
document is read back by load_json to the derivation's own expressions.

The checks read the written strings with a regular expression for names, not with bnsym's
reader, so that what a document uses is found independently of the code that wrote it.
"""

from __future__ import annotations

import json
import re

import pytest
import sympy as sp

from bnsym import derive, load_json
from bnsym.family.layers import LAYERS, Layer
from bnsym.notes.formats import render
from bnsym.proofs.higher import derive_higher

#: A layer declared in the test: rows, one γ per element, no β, not centred, with an eval mode.
DECLARED = Layer(
    name="rmsrun", centred=False, params="element", beta=False, modes=("train", "eval")
)
REGISTRY = {**LAYERS, "rmsrun": DECLARED}
CHANNELS = {"groupnorm": 2}
CASES = [
    (name, mode, order)
    for name, layer in REGISTRY.items()
    for mode in layer.modes
    for order in (1, 2, 3)
]
#: Names that are functions or keywords of the expressions, not symbols.
FUNCTIONS = {"sqrt", "Abs", "Rational", "Sum", "channel"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
KEYS = ["m", "options", "mean", "var", "x_hat", "y", "dx", "dgamma", "dbeta", "symbols",
        "identities", "verified", "proof_methods", "general"]  # fmt: skip


def names_in(text: str, functions: set[str] = FUNCTIONS) -> set[str]:
    return set(_NAME.findall(text)) - functions


def document(name: str, mode: str, order: int, **kw) -> tuple[dict, object, object]:
    d = derive(
        4, layer=REGISTRY[name], channels=kw.pop("channels", CHANNELS.get(name)), mode=mode, **kw
    )
    h = derive_higher(d, order) if order > 1 else None
    return json.loads(render(d, "json", higher=h)), d, h


def explicit_strings(obj: dict) -> list[str]:
    out = []
    for part in [obj, *obj.get("features", [])]:
        for key in ("mean", "var", "x_hat", "y", "dx", "dgamma", "dbeta"):
            value = part[key]
            out += [v for v in (value if isinstance(value, list) else [value]) if v is not None]
    return out


@pytest.mark.parametrize("name, mode, order", CASES)
def test_the_document_has_the_documented_keys_and_exactly_its_symbols(name, mode, order):
    obj, d, _ = document(name, mode, order)
    assert list(obj)[: len(KEYS)] == KEYS
    assert ("double_backward" in obj) == (order > 1) and ("third_order" in obj) == (order == 3)
    used = set().union(*(names_in(t) for t in explicit_strings(obj)))
    assert obj["symbols"] == sorted(obj["symbols"], key=_natural)
    assert set(obj["symbols"]) == used
    layer = REGISTRY[name]
    if mode == "train":
        assert not {"running_mean", "running_var"} & used
    K = layer.param_count(4, CHANNELS.get(name))
    if layer.params == "shared":
        assert isinstance(obj["dgamma"], str)
    else:  # per element or channel: always a list of K
        assert isinstance(obj["dgamma"], list) and len(obj["dgamma"]) == K
    if layer.beta and layer.params != "shared":
        assert isinstance(obj["dbeta"], list) and len(obj["dbeta"]) == K
    if not layer.beta:
        assert obj["dbeta"] is None


def _natural(name: str) -> tuple[str, int]:
    hit = re.fullmatch(r"(.*?)(\d*)", name)
    assert hit
    return hit[1], int(hit[2] or 0)


def test_one_channel_still_gives_lists_and_no_affine_no_parameters():
    obj, _, _ = document("groupnorm", "train", 1, channels=1)
    assert obj["dgamma"] == [obj["dgamma"][0]] and isinstance(obj["dbeta"], list)
    assert {"gamma1", "beta1"} <= set(obj["symbols"])
    obj, _, _ = document("batchnorm", "train", 1, affine=False)
    assert obj["dgamma"] is None and not {"gamma", "beta"} & set(obj["symbols"])


def test_features_name_their_own_parameters_and_running_statistics():
    d = derive(2, mode="eval", values="1,2;3,5", running_mean="0,1", running_var="1,4")
    obj = json.loads(d.to_json())
    assert {"gamma1", "gamma2"} <= set(obj["symbols"])
    assert not {"gamma", "running_mean", "running_mean1", "running_var2"} & set(obj["symbols"])
    assert obj["options"]["running_mean"] == [["0"], ["1"]]
    # none given: each feature's own mean and (biased) variance, exact (1, 2: 3/2 and 1/4)
    obj = json.loads(derive(2, mode="eval", values="1,2;3,5").to_json())
    assert obj["options"]["running_mean"] == [["3/2"], ["4"]]
    assert obj["options"]["running_var"] == [["1/4"], ["1"]]
    assert not {"running_mean1", "running_var2"} & set(obj["symbols"])
    assert set(obj["symbols"]) == set().union(*(names_in(t) for t in explicit_strings(obj)))


INPUTS = re.compile(r"(x|dy|gamma|beta|running_mean|running_var)\d*|epsilon")


@pytest.mark.parametrize("name, mode, order", CASES)
def test_every_name_of_general_and_of_the_higher_orders_is_defined_once(name, mode, order):
    obj, _, _ = document(name, mode, order)
    g = obj["general"]
    steps = [*g["forward"], *g["backward"]]
    lhs = [re.sub(r"\[.*\]", "", st["lhs"]) for st in steps]
    assert len(lhs) == len(set(lhs)), lhs  # each node once
    # channel(i) is a name of the general form too (defined in names)
    every = [*steps, g["closed_form"]]
    used = set().union(
        *(names_in(st["lhs"] + " " + st["rhs"], FUNCTIONS - {"channel"}) for st in every)
    )
    undefined = used - set(lhs)
    assert undefined == set(g["names"]), (undefined, g["names"])  # the rest is in names
    assert not set(g["names"]) & set(lhs)  # and nothing is both
    for section in ("double_backward", "third_order"):
        if section not in obj:
            continue
        part = obj[section]
        defined = set(part["cotangents"])
        if section == "third_order":  # it differentiates the double backward's graph and steps
            lower = obj["double_backward"]
            defined |= {st["lhs"] for st in (*lower["graph"], *lower["steps"])}
            defined |= set(lower["cotangents"])
        written = []
        for st in (*part.get("graph", []), *part["steps"]):
            rhs = names_in(st["rhs"])
            missing = {n for n in rhs - defined if not INPUTS.fullmatch(n)}
            assert not missing, (section, st["lhs"], missing)
            written.append(st["lhs"])
            defined.add(st["lhs"])
        assert len(written) == len(set(written)), section
        assert set(part["results"]) <= defined


def _same(a, b) -> bool:
    """Equal as read back: the same symbols (assumptions included) and the same value."""
    if a is None or b is None:
        return a is b
    return a == b or sp.expand(a - b) == 0


@pytest.mark.parametrize("name, mode, order", CASES)
def test_every_order_is_read_back_to_the_derivations_expressions(name, mode, order):
    obj, d, h = document(name, mode, order)
    back = load_json(json.dumps(obj))
    for key in ("mean", "var"):
        assert _same(back[key], d.features[0][key]), key
    for key in ("x_hat", "y", "dx"):
        assert all(_same(a, b) for a, b in zip(back[key], d.features[0][key], strict=True))
    for key in ("dgamma", "dbeta"):
        ours = d.features[0][key]
        theirs = back[key]
        pairs = zip(theirs, ours, strict=True) if isinstance(ours, tuple) else [(theirs, ours)]
        assert all(_same(a, b) for a, b in pairs), key
    if h is None:
        return
    db = back["double_backward"]
    assert db["cotangents"] == [*h.gdx, *h.gdgamma, *h.gdbeta]
    assert db["results"] == [st.lhs for st in h.results]
    for read, step in zip(db["graph"], (*d.forward, *d.backward), strict=True):
        assert read["lhs"] == step.lhs and _same(read["rhs"], step.rhs)
    for read, step in zip(db["steps"], h.steps, strict=True):
        assert read["lhs"] == step.lhs and _same(read["rhs"], step.rhs)
    for read, step in zip(db["closed_form"], h.closed_form, strict=True):
        assert read["lhs"] == step.lhs and _same(read["rhs"], step.rhs)
    if order == 3:
        third = back["third_order"]
        assert third["cotangents"] == list(h.third_cotangents)
        for read, step in zip(third["steps"], h.third_steps, strict=True):
            assert read["lhs"] == step.lhs and _same(read["rhs"], step.rhs)


def test_the_general_form_is_read_back():
    obj = json.loads(derive(4, layer="groupnorm", channels=2, eps_placement="outside").to_json())
    g = load_json(obj)["general"]
    channel = sp.Function("channel")
    assert g["closed_form"]["rhs"].has(channel(sp.Symbol("i", integer=True)))
    assert not any(s.name == "sigma" for s in g["closed_form"]["rhs"].free_symbols)
