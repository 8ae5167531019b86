"""Forward mode: the chain rule walked forward, and compositions of the two walks.

:func:`push_forward` is :func:`bnsym.core.graph.chain_rule` the other way round. Given tangents
of a graph's inputs (ẋ_i, γ̇, β̇), it walks the nodes in their order and gives each node v its
tangent v̇ = Σ over the symbols p that v's definition reads of ∂v/∂p · ṗ, with ∂v/∂p from
``sympy.diff`` of v's own definition (once per shape, as the reverse walk does). It knows no
layer: the normalization layers' graphs give μ̇, σ̇², x̂̇_i, ẏ_i; the graph of a backward pass
gives the tangent of every adjoint (a Hessian-vector product); the graph of a forward walk gives
the second tangents (forward over forward).

:func:`compose` builds every composition of the two walks as JAX's ``check_grads`` does
(``jax/_src/public_test_util.py``): a word over ``"f"`` and ``"r"``, read outer first (``"fr"``
is the jvp of the vjp), each letter a function of *all* the inputs of the one below it. ``"f"``
adds a tangent for every input and returns the tangents of the outputs; ``"r"`` adds a
cotangent for every output and returns the adjoints of every input (the reverse walk of
:func:`bnsym.core.higher.differentiate`). Unlike JAX, whose cotangent at order 2 is the primal
output itself, every cotangent here is a free symbol.

>>> x, w, y = sp.symbols("x w y", real=True)
>>> steps, tangent = push_forward([Step(y, w * x**2)], {x: sp.Symbol("dotx")}, "dot")
>>> steps[0].lhs, steps[0].rhs
(doty, 2*dotx*w*x)
>>> c = compose("fr", [Step(y, w * x**2)], [x, w], [y])
>>> [str(v) for v in c.inputs], [str(v) for v in c.outputs]
(['x', 'w', 'c1_y', 't2_x', 't2_w', 't2_c1_y'], ['t2_c1_x', 't2_c1_w'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp

from bnsym.core.graph import Step, derivative
from bnsym.core.higher import differentiate

__all__ = ["MODES", "WORDS", "Composed", "compose", "push_forward", "word_name", "words"]

#: The modes of differentiation, by the words the command line takes.
MODES = {"fwd": "f", "rev": "r"}


def push_forward(
    nodes: Sequence[Step],
    tangents: Mapping[sp.Symbol, sp.Expr],
    prefix: str,
    rule: str = "pushed forward",
) -> tuple[list[Step], dict[sp.Symbol, sp.Expr]]:
    """Forward-mode differentiation of the graph ``nodes`` along ``tangents``.

    ``nodes`` are in topological order (each defined in terms of earlier ones and inputs);
    ``tangents`` maps inputs to their tangent symbols. Each node that depends on an input with
    a tangent gets one Step ``prefix + name = Σ_p ∂rhs/∂p · ṗ``, in the nodes' order, the rule
    ``"<the node's rule> <rule>"``; a node that depends on none has a zero tangent and no step.
    Returns the steps and the map of every input and node to its tangent symbol (zero ones
    left out).
    """
    tangent: dict[sp.Symbol, sp.Expr] = dict(tangents)
    shapes: dict[tuple[sp.Expr, sp.Symbol], sp.Expr] = {}
    steps = []
    for n in nodes:
        rhs = n.rhs if n.rhs.is_Atom else n.rhs.func(*n.rhs.args)  # unevaluated sums evaluated
        # the part of the definition that reads p: σ² = k·Σ(x_j − μ)² has m terms, of which
        # ∂/∂x_i needs one (the reverse walk's trick, which keeps the walk O(m))
        part: dict[sp.Symbol, sp.Expr] = {}
        for term in sp.Add.make_args(rhs):
            for p in term.free_symbols:
                if p in tangent:
                    part[p] = part.get(p, sp.Integer(0)) + term
        terms = [
            derivative(part[p], p, shapes) * tangent[p] for p in sorted(part, key=lambda v: v.name)
        ]
        value = sp.Add(*terms)
        if value == 0:
            continue
        name = sp.Symbol(prefix + n.lhs.name, real=True)
        steps.append(Step(name, value, f"{n.rule} {rule}".strip()))
        tangent[n.lhs] = name
    return steps, tangent


@dataclass(frozen=True)
class Composed:
    """A composition of forward and reverse mode over a graph (see :func:`compose`).

    ``word`` is read outer first (``"fr"``: forward over reverse); ``inputs`` are the composed
    function's inputs in JAX's order (the base inputs, then what each letter added, inner
    first); ``outputs`` its outputs (a symbol, or 0 where the result is identically zero);
    ``steps`` every node, the base graph's first; ``added`` the inputs each letter added,
    inner letter first.
    """

    word: str
    inputs: tuple[sp.Symbol, ...]
    outputs: tuple[sp.Expr, ...]
    steps: tuple[Step, ...]
    added: tuple[tuple[sp.Symbol, ...], ...]


def compose(
    word: str,
    nodes: Sequence[Step],
    inputs: Sequence[sp.Symbol],
    outputs: Sequence[sp.Expr],
    prefixes: Sequence[str] | None = None,
) -> Composed:
    """The composition ``word`` of the walks over the graph ``nodes`` (inputs → outputs).

    Letters are applied inner first (``word[-1]``). Level n (1 for the inner letter) names
    its new symbols with ``prefixes[n - 1]`` + the name of what they belong to, by default
    ``t<n>_`` for a tangent and ``c<n>_`` for a cotangent and an adjoint:

    - ``"f"``: a tangent for every input; the outputs become the outputs' tangents;
    - ``"r"``: a cotangent for every output; the outputs become the adjoints of every input,
      :func:`bnsym.core.higher.differentiate` seeded with the cotangents.
    """
    steps = list(nodes)
    ins, outs = list(inputs), list(outputs)
    added: list[tuple[sp.Symbol, ...]] = []
    for level, mode in enumerate(reversed(word), start=1):
        default = f"t{level}_" if mode == "f" else f"c{level}_"
        prefix = prefixes[level - 1] if prefixes else default
        if mode == "f":
            new = tuple(sp.Symbol(prefix + v.name, real=True) for v in ins)
            walk, tangent = push_forward(steps, dict(zip(ins, new, strict=True)), prefix)
            steps += walk
            outs = [tangent.get(o, sp.Integer(0)) if isinstance(o, sp.Symbol) else 0 for o in outs]
            outs = [sp.sympify(o) for o in outs]
        elif mode == "r":
            new = tuple(
                sp.Symbol(prefix + (o.name if isinstance(o, sp.Symbol) else f"zero{k}"), real=True)
                for k, o in enumerate(outs)
            )
            seeds = {o: c for o, c in zip(outs, new, strict=True) if isinstance(o, sp.Symbol)}
            walk = differentiate(steps, seeds, ins, prefix)
            steps += walk
            outs = [st.lhs for st in walk[len(walk) - len(ins) :]]
        else:
            raise ValueError(f"a composition is a word over 'f' and 'r', not {word!r}")
        ins += new
        added.append(new)
    return Composed(word, tuple(ins), tuple(outs), tuple(steps), tuple(added))


#: How each composition is called in words, outer first: the jvp of the vjp, …
_WORD = {"f": "jvp", "r": "vjp"}


def word_name(word: str) -> str:
    """The composition in words, outer first, as the reports name it.

    >>> word_name("f"), word_name("fr"), word_name("rff")
    ('jvp', 'jvp of the vjp', 'vjp of the jvp of the jvp')
    """
    return " of the ".join(_WORD[c] for c in word)


def words(modes: Sequence[str], order: int) -> list[str]:
    """Every composition of ``modes`` (``"fwd"``, ``"rev"``) up to ``order``, as JAX's
    check_grads runs them: order by order, forward before reverse.

    >>> words(("fwd", "rev"), 2)
    ['f', 'r', 'ff', 'fr', 'rf', 'rr']
    """
    letters = [MODES[m] for m in MODES if m in modes]
    out = [""]
    result = []
    for _ in range(order):
        out = [a + w for a in letters for w in out]
        result += out
    return result


WORDS = words(("fwd", "rev"), 3)
