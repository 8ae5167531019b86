"""The seeded data of a check, in the layer's own layout, read from its declaration's grouping.

Every grouping reads x as groups ``(N, P, m)`` and the parameters as ``(P*K,)``
(:mod:`bnsym.family.layers`); the check's ``D`` is the length of the layout's batch axis: the
samples N where the layout has them (then P = :data:`GROUPS` groups per sample where it has
several), else the groups P themselves (batch norm's D features).

ScaleNorm, one γ shared by the m values of a row:

>>> from bnsym.core.options import make_options
>>> from bnsym.family.layers import Layer
>>> o = make_options(4, layer=Layer(name="scalenorm", centred=False, beta=False))
>>> x_shape(o, 3), param_size(o, 3)
((3, 4), 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GROUPS", "groups_of", "make_data", "param_size", "params", "x_shape"]

#: For a layout with several groups per sample: the groups (P) of each sample that have their
#: own parameters in the check's data (channels for instance norm, groups of channels for
#: group norm).
GROUPS = 2


def groups_of(o: Any, D: int) -> tuple[int, int]:
    """``(N, P)``: samples and groups per sample of the check's x, D the batch axis's length."""
    g = o.layer.grouping_
    if not g.samples:
        return 1, D
    return D, (GROUPS if g.per_sample else 1)


def x_shape(o: Any, D: int) -> tuple[int, ...]:
    """x's shape in the layer's layout (``o``: the derivation's options)."""
    N, P = groups_of(o, D)
    return o.layer.grouping_.shape(N, P, o.m, o.layer.param_count(o.m, o.channels))


def param_size(o: Any, D: int) -> int:
    """P*K, the length of γ (and β and their cotangents)."""
    return groups_of(o, D)[1] * o.layer.param_count(o.m, o.channels)


def make_data(o: Any, D: int, seed: int) -> dict[str, Any]:
    """x and dout of :func:`x_shape`, γ and β of :func:`param_size` (as far as the variant has
    them), and in eval mode the running statistics, one per group: seeded float64."""
    rng = np.random.default_rng(seed)
    shape = x_shape(o, D)
    size = param_size(o, D)
    data: dict[str, Any] = {
        # an offset and a spread other than 0 and 1, so that centring and scaling matter
        "x": 1.5 + 2.0 * rng.standard_normal(shape),
        "dout": rng.standard_normal(shape),
    }
    gamma, beta = 1.0 + 0.5 * rng.standard_normal(size), rng.standard_normal(size)
    if o.affine:
        data.update(gamma=gamma, **({"beta": beta} if o.layer.beta else {}))
    if o.mode == "eval":
        P = groups_of(o, D)[1]
        data.update(running_mean=rng.standard_normal(P), running_var=rng.uniform(0.5, 2.0, P))
    return data


def params(o: Any, data: dict[str, Any]) -> list[Any]:
    """The generated module's arguments after x: γ, β (as far as present), running statistics."""
    names: list[str] = [n for n in ("gamma", "beta") if n in data]
    names += ["running_mean", "running_var"] if o.mode == "eval" else []
    return [data[n] for n in names]
