"""Gradients returned in each other's places: the backward's dγ where dβ belongs, and dβ
where dγ belongs.

Two failing inputs p and q are swapped when what the backward returned for p has q's size
and agrees with the numerical derivative of L with respect to q along a random direction, and
the other way round: one directional derivative each, whatever the inputs' sizes, and whatever
their shapes. (Swapped gradients of different shapes otherwise show only as two shape
problems, one of them with the advice to sum over broadcast axes, which is wrong for them.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

import numpy as np

from bnsym.gradcheck.numeric import Loss, dot, signs
from bnsym.gradcheck.report import InputResult

# agreement of <a, w> with the numerical derivative along w, relative to |a|·|w|: far above
# the rounding of a float32 gradient (6e-8), far below any gradient that is not the other's
AGREE = 1e-6


def swapped(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    douts: Sequence[np.ndarray],
    names: Sequence[str],
    returned: Sequence[Any],
    results: list[InputResult],
    use_complex: bool,
    rng: np.random.Generator,
) -> tuple[list[InputResult], int]:
    """``results`` with the swapped pairs named, and the forward calls it took.

    returned: what the backward returned in each input's place (any shape); use_complex:
    whether the check's forward takes the complex step (else Richardson differences).
    A swapped input's hints become the swap alone, and a shape problem of it says whose shape
    it has instead of how to reshape it.
    """
    arrays: dict[int, np.ndarray] = {}
    for i, r in enumerate(results):
        g = returned[i] if i < len(returned) else None
        if r.passed or not r.judged or not r.checked or g is None:
            continue
        a = np.asarray(g)
        if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)):
            arrays[i] = a.astype(np.float64).reshape(-1)
    pairs = [
        (p, q)
        for p, q in combinations(sorted(arrays), 2)
        if arrays[p].size == np.size(inputs[q]) and arrays[q].size == np.size(inputs[p])
    ]
    if not pairs:
        return results, 0
    loss = Loss(f, inputs, douts, sorted({i for pair in pairs for i in pair}))
    loss.set_outputs(loss.outputs(loss.real))

    def agrees(i: int, a: np.ndarray) -> bool:
        """``a`` is the gradient of L with respect to input i along a random direction."""
        ws = {i: loss.direction(i, signs(rng, loss.base[i].shape))}
        value, err, taken = loss.directional(ws, use_complex)
        w = taken[i].reshape(-1)
        size = math.sqrt(float(dot(a, a)) * float(dot(w, w)))
        return abs(float(dot(a, w)) - value) <= 4 * err + AGREE * (abs(value) + size)

    found = {}
    for p, q in pairs:
        if p not in found and q not in found and agrees(q, arrays[p]) and agrees(p, arrays[q]):
            found[p], found[q] = q, p
    for p, q in found.items():
        hint = (
            f"the gradients of {names[min(p, q)]} and {names[max(p, q)]} look swapped: the "
            f"backward's d{names[p]} matches the numerical d{names[q]} and vice versa (along "
            "a random direction each)"
        )
        shape = np.shape(returned[p])
        stated = f"the gradient of {names[p]!r} has shape"
        problems = tuple(
            f"the gradient returned for {names[p]!r} has shape {shape}, the shape of "
            f"{names[q]!r}: it is d{names[q]}"
            if problem.startswith(stated)
            else problem
            for problem in results[p].problems
        )
        results[p] = replace(results[p], hints=(hint,), problems=problems)
    return results, loss.evals
