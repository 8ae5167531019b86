"""The options of a derivation, read and validated: m, ε, the variant, a worked example.

Numbers are read exactly (``"8.9"`` is 89/10) and bounded in size; every bad input raises
:class:`DerivationError` with one sentence naming the value and what to do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import sympy as sp

from bnsym.errors import BnsymError, option
from bnsym.family.layers import Layer, LayerError
from bnsym.family.layers import layer as find_layer
from bnsym.limits import MAX_EXAMPLE_VALUES

Variance = Literal["biased", "unbiased"]
Placement = Literal["inside", "outside", "sqrt-outside"]
Mode = Literal["train", "eval"]


class DerivationError(BnsymError, ValueError):
    """Bad input to :func:`derive`: the message names the value and says what to do."""


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The variant being derived, validated. See :func:`derive` for the meaning of each field."""

    m: int
    layer: Layer = field(default_factory=lambda: find_layer("batchnorm"))
    channels: int | None = None
    eps: sp.Rational | None = None
    variance: Variance = "biased"
    eps_placement: Placement = "inside"
    affine: bool = True
    mode: Mode = "train"
    values: tuple[tuple[sp.Rational, ...], ...] | None = None
    dy: tuple[tuple[sp.Rational, ...], ...] | None = None
    gamma: tuple[tuple[sp.Rational, ...], ...] | None = None
    beta: tuple[tuple[sp.Rational, ...], ...] | None = None
    running_mean: tuple[tuple[sp.Rational, ...], ...] | None = None
    running_var: tuple[tuple[sp.Rational, ...], ...] | None = None
    #: Derived with ``force=True``: generating and checking it may use the raised budget
    #: (:data:`bnsym.limits.FORCED`). Not part of the variant: not compared, not exported.
    force: bool = field(default=False, compare=False)
    #: eval mode's worked example took the running statistics from its own values (the mean
    #: and the variance of each feature's m values), none being given
    running_from_values: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ε and values as exact strings (``"1/100000"``), None as null."""

        def rows(v: tuple[tuple[sp.Rational, ...], ...] | None) -> Any:
            return None if v is None else [[str(n) for n in row] for row in v]

        return {
            "m": self.m,
            "layer": self.layer.name,
            "channels": self.channels,
            "eps": None if self.eps is None else str(self.eps),
            "variance": self.variance,
            "eps_placement": self.eps_placement,
            "affine": self.affine,
            "mode": self.mode,
            "values": rows(self.values),
            "dy": rows(self.dy),
            "gamma": rows(self.gamma),
            "beta": rows(self.beta),
            "running_mean": rows(self.running_mean),
            "running_var": rows(self.running_var),
        }


#: Numbers are read exactly, so their size is bounded: digits per number and the exponent.
MAX_DIGITS = 200
MAX_EXPONENT = 300
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE](?P<exp>[+-]?\d+))?(/[+-]?\d+)?")


def exact_number(value: object, what: str) -> sp.Rational:
    """Read a number exactly: ``"8.9"`` -> 89/10, ``1e-5`` -> 1/100000, ``"1/3"`` -> 1/3.

    Floats are read through their shortest decimal form (``repr``), which is what the user
    typed, rather than their binary expansion.

    >>> exact_number("8.9", "values"), exact_number(1e-5, "eps")
    (89/10, 1/100000)
    """
    if isinstance(value, bool):
        raise DerivationError(f"{what} must be a number, not {value!r}.")
    if isinstance(value, sp.Rational):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DerivationError(f"{what} must be finite, not {value!r}.")
        value = repr(float(value))  # float(): NumPy 2 reprs np.float64 as "np.float64(8.9)"
    text = str(value).strip()
    if len(text) > MAX_DIGITS or not _NUMBER.fullmatch(text):
        raise DerivationError(
            f"{what}: {text[:40]!r}{'…' if len(text) > 40 else ''} is not a number; write "
            "integers, decimals or fractions such as 2, 8.9, 1e-5 or 1/3."
        )
    exponent = _NUMBER.fullmatch(text).group("exp")  # type: ignore[union-attr]
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise DerivationError(
            f"{what}: {text!r} has an exponent beyond ±{MAX_EXPONENT}; exact arithmetic with "
            "such numbers is not useful here: rescale the values."
        )
    try:
        frac = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise DerivationError(
            f"{what}: {text!r} is not a number; write integers, decimals or fractions "
            "such as 2, 8.9, 1e-5 or 1/3."
        ) from None
    return sp.Rational(frac.numerator, frac.denominator)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short_int(m: object) -> str:
    """A whole number too long to print (Python refuses str() above 4300 digits): its size."""
    if isinstance(m, int) and m.bit_length() > 128:
        return f"a number of {m.bit_length()} bits"
    return _short(m).strip("'")


def _rows(raw: object, m: int, what: str) -> tuple[tuple[sp.Rational, ...], ...]:
    """Parse ``values``/``dy``: one row of m numbers per feature (a flat list is one row)."""
    if isinstance(raw, str):
        rows: list[Any] = [r.split(",") for r in raw.split(";")]
    else:
        if not hasattr(raw, "__iter__"):
            raise DerivationError(
                f"{what} must be a string such as '2,0,2,4' or a list of numbers (one list per "
                f"feature), not {_short(raw)}."
            )
        seq = list(raw)
        # A list of rows, or one row of numbers (NumPy scalars included)?
        nested = bool(seq) and hasattr(seq[0], "__iter__") and not isinstance(seq[0], str)
        rows = [list(r) for r in seq] if nested else [seq]
    if len(rows) * m > MAX_EXAMPLE_VALUES:  # before any number is read
        raise DerivationError(
            f"{what} has {len(rows)} features of m = {m} values; the worked example would take "
            f"about {len(rows) * m * 0.007:.3g} s (it is limited to {MAX_EXAMPLE_VALUES} values, "
            "features × m): give fewer features."
        )
    out = []
    for f, row in enumerate(rows, start=1):
        if any(isinstance(v, str) and not v.strip() for v in row):
            raise DerivationError(
                f"{what} has an empty field in {','.join(map(str, row))!r}; give m numbers "
                "separated by commas, features separated by ';'."
            )
        nums = tuple(exact_number(v, what) for v in row)
        if len(nums) != m:
            where = f" (feature {f})" if len(rows) > 1 else ""
            raise DerivationError(
                f"{what}{where} has {len(nums)} value(s) but m = {m}; give exactly m "
                "comma-separated numbers per feature, features separated by ';'."
            )
        out.append(nums)
    return tuple(out)


def _channels(decl: Any, channels: object, m: int) -> int | None:
    """Group norm's channels per group: a whole number ≥ 1 that divides m; None elsewhere."""
    if not decl.has_channels:
        if channels is not None:
            raise DerivationError(
                f"--channels is for group norm; {decl.name} has no channels within a group "
                "(drop --channels, or use --layer groupnorm)."
            )
        return None
    if channels is None:
        return 1
    text = str(channels).strip()
    if isinstance(channels, bool) or not re.fullmatch(r"[+-]?\d{1,6}", text):
        raise DerivationError(
            f"{option('channels')} must be a whole number, not {channels!r}; try 2."
        )
    c = int(text)
    if c < 1 or m % c:
        raise DerivationError(
            f"{option('channels', c)} must be at least 1 and divide m = {m}: the group's m "
            "values are "
            f"channels × positions; try a divisor of {m}."
        )
    return c


def make_options(
    m: object,
    *,
    layer: str | Layer = "batchnorm",
    channels: object = None,
    eps: object = None,
    variance: str = "biased",
    eps_placement: str = "inside",
    affine: bool = True,
    mode: str = "train",
    values: object = None,
    dy: object = None,
    gamma: object = None,
    beta: object = None,
    running_mean: object = None,
    running_var: object = None,
    force: bool = False,
) -> Options:
    """Validate the arguments of :func:`derive`; raise DerivationError with one sentence."""
    if isinstance(m, bool) or not (isinstance(m, int) or re.fullmatch(r"\s*[+-]?\d+\s*", str(m))):
        raise DerivationError(
            f"{option('m')} must be a whole number, not {_short(m)}; try {option('m', 4)}."
        )
    # No m near 10^12 is within any bound; and str() of an int above 4300 digits raises.
    if m.bit_length() > 40 if isinstance(m, int) else len(str(m).strip().lstrip("+-")) > 12:
        raise DerivationError(
            f"m = {_short_int(m)} is far above what any request can take, even with --force."
        )
    m = int(str(m))
    for name, flag in (("affine", affine), ("force", force)):
        if not isinstance(flag, bool):  # "no" would be truthy
            raise DerivationError(f"{name} must be True or False, not {_short(flag)}.")
    if m < 1:
        raise DerivationError(f"{option('m')} must be at least 1, not {m}; the batch needs values.")
    try:
        decl = find_layer(layer)
    except LayerError as exc:
        raise DerivationError(str(exc)) from None
    channels = _channels(decl, channels, m)
    if mode in ("train", "eval") and mode not in decl.modes:
        raise DerivationError(
            f"{decl.name} has no {mode} mode: its statistics are those of each group, in "
            "training and inference alike; drop --mode."
        )
    if not decl.centred and variance != "biased":
        raise DerivationError(
            f"{decl.name} divides by its root mean square, which has no unbiased variant; "
            "drop --variance."
        )
    if mode not in ("train", "eval"):
        raise DerivationError(f"{option('mode')} must be 'train' or 'eval', not {mode!r}.")
    if variance not in ("biased", "unbiased"):
        raise DerivationError(
            f"{option('variance')} must be 'biased' or 'unbiased', not {variance!r}."
        )
    if eps_placement not in ("inside", "outside", "sqrt-outside"):
        raise DerivationError(
            f"{option('eps_placement')} must be 'inside' (√(σ² + ε)), 'outside' (σ + ε) or "
            "'sqrt-outside' "
            f"(σ + √ε), not {_short(eps_placement)}."
        )
    if m < decl.min_m(mode) and "eval" not in decl.modes:
        raise DerivationError(
            f"m = {m} for {decl.name}: the variance of one value is 0, so x̂ = 0/√ε; "
            "normalize at least 2 values (--m 2 or more)."
        )
    if m < decl.min_m(mode):
        raise DerivationError(
            "m = 1 in train mode: the variance of one value is 0, so x̂ = 0/√ε and there is "
            f"nothing to learn (PyTorch refuses it too); use {option('mode', 'eval')} or m ≥ 2."
        )
    if mode == "eval" and variance != "biased":
        # ε's placement is the layer's own (the notes' test-time layer divides by σ_run + ε);
        # the variance's divisor belongs to the batch statistics, which eval mode does not use.
        raise DerivationError(
            "variance describes the batch statistics, which eval mode does not use (its "
            "running variance is given); drop --variance or use --mode train."
        )
    eps_r = None if eps is None else exact_number(eps, option("eps"))
    if eps_r is not None and eps_r < 0:
        raise DerivationError(
            f"{option('eps')} must be ≥ 0, not {eps_r}; ε is a small positive constant."
        )
    if eps_r == 0 and mode == "eval":
        pass  # running_var is symbolic and positive: no division by zero
    if dy is not None and values is None:
        raise DerivationError(
            f"{option('dy')} gives the upstream gradients of a worked example; give "
            f"{option('values')} too."
        )
    value_rows = None if values is None else _rows(values, m, option("values"))
    dy_rows = None if dy is None else _rows(dy, m, option("dy"))
    if value_rows is not None and dy_rows is not None and len(dy_rows) != len(value_rows):
        raise DerivationError(
            f"dy has {len(dy_rows)} feature(s) but values has {len(value_rows)}; give one row "
            "of upstream gradients per row of values."
        )
    if value_rows is not None and mode == "train":
        # A constant group (all 0 for RMS norm) has σ = 0. With ε > 0 the layer is still
        # differentiable there, ε outside the root included: only the intermediate σ = √σ² is
        # not, and the derivation takes the limit (bnsym.proofs.forms.constant_limit).
        for f, row in enumerate(value_rows, start=1):
            singular = len(set(row)) == 1 if decl.centred else not any(row)
            if singular and eps_r == 0:
                where = f" (feature {f})" if len(value_rows) > 1 else ""
                what = "variance" if decl.centred else "mean square"
                raise DerivationError(
                    f"values{where} all equal {row[0]}: their {what} is 0 and ε = 0, so "
                    "x̂ divides by zero; give ε > 0 (--eps 1e-5) or values that differ."
                )
    params = _example_params(
        decl, m, channels, affine, mode, eps_r, value_rows, gamma, beta, running_mean, running_var
    )
    return Options(
        m=m,
        layer=decl,
        channels=channels,
        eps=eps_r,
        variance=variance,  # type: ignore[arg-type]
        eps_placement=eps_placement,  # type: ignore[arg-type]
        affine=affine,
        mode=mode,  # type: ignore[arg-type]
        values=value_rows,
        dy=dy_rows,
        force=force,
        **params,
    )


def _running_from_values(
    decl: Any, value_rows: tuple[tuple[sp.Rational, ...], ...]
) -> dict[str, Any]:
    """Eval mode's running statistics when a worked example gives none: each feature's own
    mean and variance (1/m; the mean square where nothing is subtracted), as if the values
    were the population the running averages estimate, so that the example has numbers."""
    means, variances = [], []
    for row in value_rows:
        mean = sp.Add(*row) / len(row) if decl.centred else sp.Integer(0)
        means.append((mean,))
        variances.append((sp.Add(*[(v - mean) ** 2 for v in row]) / len(row),))
    out: dict[str, Any] = {"running_var": tuple(variances), "running_from_values": True}
    if decl.centred:
        out["running_mean"] = tuple(means)
    return out


def _example_params(
    decl: Any,
    m: int,
    channels: int | None,
    affine: bool,
    mode: str,
    eps: sp.Rational | None,
    value_rows: tuple[tuple[sp.Rational, ...], ...] | None,
    gamma: object,
    beta: object,
    running_mean: object,
    running_var: object,
) -> dict[str, Any]:
    """γ, β and the running statistics of a worked example, checked against the layer."""
    from bnsym.core.example import example_rows

    given = {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}
    given = {k: v for k, v in given.items() if v is not None}
    taken = {}
    if mode == "eval" and value_rows is not None and running_mean is running_var is None:
        taken = _running_from_values(decl, value_rows)
    if not given:
        return taken
    flag = option(next(iter(given)))
    if value_rows is None:
        raise DerivationError(
            f"{flag} gives a number of the worked example; give {option('values')} too."
        )
    if not affine and ("gamma" in given or "beta" in given):
        raise DerivationError(
            f"{flag} with {option('affine', False)}: the layer has no γ, β; drop one."
        )
    if "beta" in given and not decl.beta:
        beta = option("beta")
        raise DerivationError(f"{beta}: {decl.name} has no β (y = γ·x̂); drop {beta}.")
    if mode != "eval" and ("running_mean" in given or "running_var" in given):
        which = option("running_mean" if "running_mean" in given else "running_var")
        raise DerivationError(
            f"{which} is for eval mode (running statistics); add {option('mode', 'eval')} or "
            "drop it."
        )
    k = decl.param_count(m, channels)
    each = {
        "shared": "one per feature",
        "element": f"one per element, m = {m}",
        "channel": f"one per channel, {k}",
    }[decl.params]
    n = len(value_rows)
    out: dict[str, Any] = {}
    for name in ("gamma", "beta"):
        if name in given:
            out[name] = example_rows(
                given[name], option(name), k, n, each, exact_number, DerivationError
            )
    for name in ("running_mean", "running_var"):
        if name in given:
            out[name] = example_rows(
                given[name], option(name), 1, n, "one per feature", exact_number, DerivationError
            )
    if taken and "running_mean" not in out and "running_var" not in out:
        out.update(taken)
    for row in out.get("running_var", ()):
        if row[0] < 0:
            raise DerivationError(
                f"{option('running_var')} must be ≥ 0, not {row[0]}; it is a variance (σ²_run)."
            )
        if row[0] == 0 and eps == 0:
            raise DerivationError(
                f"{option('running_var')} = 0 with ε = 0 divides by zero; give ε > 0 "
                f"({option('eps', '1e-5')}) or a "
                "positive running variance."
            )
    return out
