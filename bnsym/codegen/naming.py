"""How a generated module names its variant and the command that made it.

``variant_text(d)`` is the variant in a few words (the linecache name, ``repr``) or in a
sentence (the header's ``# Variant:`` line, ``bnsym check``'s header); ``python_call(d)`` is
the ``bnsym.generate(...)`` call that makes the module again, for the ``# Command:`` line.
"""

from __future__ import annotations

import inspect
import re

from bnsym.derivation import Derivation, derive
from bnsym.family.layers import LAYERS
from bnsym.family.layers import layer as find_layer

__all__ = ["comment_text", "python_call", "variant_text"]

PLACEMENT_TEXT = {
    "inside": "eps inside the square root",
    "outside": "eps outside the root",
    "sqrt-outside": "sqrt(eps) outside the root (sigma + sqrt(eps), not sqrt(sigma**2 + eps))",
}


def variant_text(d: Derivation, long: bool = False) -> str:
    o = d.options
    layer = d.symbols.layer
    if not long:
        parts = [f"m={o.m}", o.mode]
        if o.mode == "train":
            parts += [o.variance if layer.centred else "mean-square", f"eps-{o.eps_placement}"]
        elif o.eps_placement != "inside":
            parts.append(f"eps-{o.eps_placement}")
        parts.append("affine" if o.affine else "no-affine")
        return " ".join(parts)
    parts = [f"{o.mode} mode"]
    if o.mode == "train":
        if not layer.centred:  # RMS norm: the mean square, no variance
            parts.append("mean square (1/m)")
        else:
            parts.append(
                "biased variance (1/m)" if o.variance == "biased" else "unbiased variance (1/(m-1))"
            )
        parts.append(PLACEMENT_TEXT[o.eps_placement])
    else:
        parts.append("running statistics")
        if o.eps_placement != "inside":
            parts.append(PLACEMENT_TEXT[o.eps_placement])
    if not o.affine:
        parts.append("no affine")
    else:
        parts.append("affine (gamma, beta)" if layer.beta else "affine (gamma)")
    return ", ".join(parts)


def comment_text(text: str) -> str:
    """``text`` fit for one comment line: line breaks and other control characters escaped.

    A newline in a command-line argument would otherwise end the comment and leave the rest
    of the command as code.
    """
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", lambda c: repr(c.group())[1:-1], text)


def python_call(d: Derivation) -> str:
    """``bnsym.generate(4, layer='layernorm', ...)``: the options that differ from derive's
    defaults (a layer declared outside the package is named as the variable it would be)."""
    o = d.options
    defaults = inspect.signature(derive).parameters
    args = [str(o.m)]
    if o.layer != find_layer(defaults["layer"].default):
        shipped = LAYERS.get(o.layer.name) == o.layer
        args.append(f"layer={o.layer.name!r}" if shipped else f"layer={o.layer.name}")
    if o.channels is not None:
        args.append(f"channels={o.channels}")
    for k in ("variance", "eps_placement", "affine", "mode"):
        if getattr(o, k) != defaults[k].default:
            args.append(f"{k}={getattr(o, k)!r}")
    if o.eps is not None:
        args.append(f"eps={str(o.eps)!r}")
    return f"bnsym.generate({', '.join(args)})"
