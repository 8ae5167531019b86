"""Term-level diagnosis for the normalization family: which term of the closed form is wrong.

A failed check of a member of the family (batch, layer, instance, group, RMS norm, spatial
batch and group norm, or a layer the caller declared) is read against the closed form::

    ∂ℓ/∂x = (g − c·mean(g) − k·r·x̂·Σ g·x̂)/std,   g = γ·∂ℓ/∂y        (bnsym.reference.terms)
    ∂ℓ/∂γ = Σ ∂ℓ/∂y·x̂,   ∂ℓ/∂β = Σ ∂ℓ/∂y   over the values that share γ and β

in two steps, a module each:

1. :mod:`~bnsym.gradcheck.recognise`: the forward is a member when its output at the check's
   point is the reference's for one of the layouts the declarations allow for x's shape, with
   γ and β among the other inputs, and ε, the variance's 1/m or 1/(m − 1) and ε's place solved
   from the output group by group (not assumed); or the caller names the layer.
2. :mod:`~bnsym.gradcheck.readings`: the difference between the user's gradient and the
   closed form is solved by least squares on the closed form's terms, for the layer's own g
   and means and for the usual slips (γ broadcast over another axis or left out, the means
   over other axes, ∂ℓ/∂γ summed over other axes, x for x̂); a reading is given only when it
   leaves nothing beyond the check's tolerance, and named in words: a term missing, of the
   wrong sign, twice, scaled by the wrong group size (1/N where the group has N·H·W values,
   1/(m − 1) for 1/m).

:func:`diagnose` joins them for the report. Where nothing explains the difference, the
diagnosis says so and the report stays as it was. NumPy, the family's declarations and the
references only: no SymPy, no symbolic core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bnsym.family.layers import LAYERS, Layer
from bnsym.gradcheck.readings import Notation, Reading, param_line, read_dx, read_param
from bnsym.gradcheck.recognise import recognise
from bnsym.gradcheck.report import Diagnosis, InputResult

__all__ = ["diagnose"]


def diagnose(
    outputs: Callable[[], list[np.ndarray]],
    inputs: Sequence[Any],
    douts: Sequence[np.ndarray],
    grads: Sequence[np.ndarray | None],
    results: list[InputResult],
    named: Layer | None,
) -> tuple[list[InputResult], str]:
    """Each failing gradient of x, γ or β read against the closed form, and the member the
    forward is, in words (``""`` where it is none).

    outputs: the forward's outputs at ``inputs`` (one call); inputs: the check's float64
    copies; douts, grads: the check's upstream gradient and the user's gradients; results:
    the check's verdicts; named: the layer the caller named, tried alone.
    """
    # a member maps x to an output of x's shape: anything else is settled without a call
    if len(douts) != 1 or not any(
        isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape == douts[0].shape for a in inputs
    ):
        return results, ""
    out = outputs()
    if len(out) != 1:
        return results, ""
    groups = [int(a) for a in inputs if isinstance(a, int | np.integer) and not isinstance(a, bool)]
    layers = [named] if named is not None else list(LAYERS.values())
    member = recognise(inputs, out[0], layers, groups)
    if member is None:
        if named is None:
            return results, ""
        return results, (
            f"{named.title} was named, but the forward's output is not its output for "
            "these inputs (no layout, γ, β, ε or variance of it fits): no term-level diagnosis"
        )
    dout = douts[0].astype(np.float64)
    x = np.asarray(inputs[member.x], dtype=np.float64)
    notation = Notation(member)
    kinds = {member.x: "x", member.gamma: "gamma", member.beta: "beta"}
    diagnosed = []
    for i, r in enumerate(results):
        kind = kinds.get(i)
        g = grads[i]
        # only a gradient whose values are wrong: a wrong shape alone is the problem it states
        if kind is None or r.passed or not r.judged or not r.n_failed or g is None:
            diagnosed.append(r)
            continue
        user = np.asarray(g, dtype=np.float64)

        def tolerance(size: float, r: InputResult = r) -> float:
            # the check's own tolerance, and the forward's distance from the reference
            return 4 * r.atol + 4 * r.rtol * size + 64 * member.fit * size

        if kind == "x":
            reading = read_dx(member, dout, user, tolerance, notation)
            line = notation.closed_form
        else:
            reading = read_param(kind, member, dout, x, user, tolerance)
            line = param_line(member, kind)
        exact = reading.exact.reshape(user.shape)
        # the worst entries by their multi-index (the probe's directions have none)
        points = [
            (tuple(int(k) for k in e.index), e)
            for e in r.worst
            if e.index[:1] != ("direction",) and len(e.index) == user.ndim
        ]
        entries = tuple((at, float(user[at]), float(exact[at])) for at, _ in points[:3])
        wrong = [
            (at, e) for at, e in points
            if abs(float(exact[at]) - e.numerical) > 4 * e.tolerance + 4 * e.error_estimate
        ]  # fmt: skip
        if wrong:  # the closed form must be what the numbers say, or there is no diagnosis
            at, e = wrong[0]
            reading = Reading(
                (f"the closed form gives {float(exact[at]):.12g} at {list(at)}, the numerical "
                 f"derivative {e.numerical:.12g}: the forward is not this layer everywhere, "
                 "no term-level diagnosis",),
                False, reading.residual, reading.exact,
            )  # fmt: skip
        diagnosis = Diagnosis(line, reading.findings, reading.explained, reading.residual, entries)
        diagnosed.append(replace(r, diagnosis=diagnosis))
    if all(r.diagnosis is None for r in diagnosed):
        return results, ""
    return diagnosed, member.describe(named is not None, inputs)
