"""The ``bnsym`` command: a thin click layer over the library.

Each command parses its options, calls the library, and prints. No mathematics lives here.
Bad input is reported as one line, ``Error: <what> — <what to do>``, with exit status 2
(:class:`BadInput`); a failed check exits with status 1.
"""

from __future__ import annotations

import click

from bnsym import __version__


class BadInput(click.ClickException):
    """One-line error for bad input: printed as ``Error: ...``, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnsym")
def main() -> None:
    """Batch normalization: derived exactly, generated as NumPy code, checked numerically."""


# --- derive ----------------------------------------------------------------------------------

# --- codegen ---------------------------------------------------------------------------------

# --- check -----------------------------------------------------------------------------------

# --- gradcheck -------------------------------------------------------------------------------


def _gradcheck_load(spec: str) -> object:
    """The object named by ``PKG.MODULE:NAME``; BadInput naming the spec otherwise."""
    import importlib
    import os
    import sys

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"{spec!r} is not of the form PKG.MODULE:NAME, e.g. mylayers:affine_forward")
    if os.getcwd() not in sys.path:  # so that a module in the current directory is found
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInput(f"cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadInput(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInput(f"{spec!r} is not callable")
    return obj


def _gradcheck_shape(text: str) -> tuple[int, ...]:
    """``"4,3"`` -> (4, 3); ``""`` or ``"scalar"`` -> (); BadInput otherwise."""
    text = text.strip().strip("()")
    if text in ("", "scalar"):
        return ()
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        shape = (-1,)
    if not shape or any(n < 1 for n in shape):
        raise BadInput(f"--input {text!r} is not a shape; give positive sizes like 4,3")
    return shape


@main.command("gradcheck")
@click.argument("forward", metavar="PKG.MODULE:FORWARD")
@click.argument("backward", metavar="PKG.MODULE:BACKWARD")
@click.option(
    "--input",
    "shapes",
    multiple=True,
    required=True,
    metavar="SHAPE",
    help="Shape of one input, e.g. 4,3; repeat once per input, in order ('' for a scalar).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Floating-point type of the random inputs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of inputs and check.")
@click.option(
    "--mode",
    type=click.Choice(["auto", "full", "probe"]),
    default="auto",
    show_default=True,
    help="full: every entry; probe: random directions and sampled entries; auto: by size.",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "complex", "richardson"]),
    default="auto",
    show_default=True,
    help="Numerical derivatives: complex step, Richardson finite differences, or auto.",
)
@click.option("--rtol", type=float, default=None, help="Override the relative tolerance.")
@click.option("--atol", type=float, default=None, help="Override the absolute tolerance.")
@click.option(
    "--function",
    "as_function",
    is_flag=True,
    help="FORWARD is f(*inputs) -> out and BACKWARD is vjp(dout, *inputs), not a layer "
    "forward -> (out, cache) with backward(dout, cache).",
)
def gradcheck(
    forward: str,
    backward: str,
    shapes: tuple[str, ...],
    dtype: str,
    seed: int,
    mode: str,
    method: str,
    rtol: float | None,
    atol: float | None,
    as_function: bool,
) -> None:
    """Check BACKWARD against numerical derivatives of FORWARD on seeded random inputs.

    Prints the report. Exit status 0 if the gradients are right, 1 if not, 2 for bad input.

    Example: bnsym gradcheck mylayers:affine_forward mylayers:affine_backward
    --input 4,3 --input 3,2 --input 2
    """
    import numpy as np

    from bnsym.gradcheck import check_function, check_layer

    fwd, bwd = _gradcheck_load(forward), _gradcheck_load(backward)
    sizes = [_gradcheck_shape(s) for s in shapes]
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(shape).astype(dtype) for shape in sizes]
    check = check_function if as_function else check_layer
    try:
        report = check(fwd, bwd, *inputs, seed=seed, mode=mode, method=method, rtol=rtol, atol=atol)
    except Exception as exc:
        shown = ", ".join(str(s) for s in sizes)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BadInput(
            f"{forward} failed on random inputs of shapes {shown} ({type(exc).__name__}: {first});"
            " check the --input shapes"
        ) from None
    click.echo(str(report))
    if not report.passed:
        raise SystemExit(1)
