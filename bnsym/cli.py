"""The ``bnsym`` command: a thin click layer over the library.

Each command parses its options, calls the library, and prints. No mathematics lives here.
Bad input is reported as one line, ``Error: <what> — <what to do>``, with exit status 2
(:class:`BadInput`); a failed check exits with status 1.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from bnsym import __version__
from bnsym.errors import BnsymError
from bnsym.family.layers import LAYERS


class BadInput(click.ClickException):
    """One-line error for bad input: printed as ``Error: ...``, exit status 2."""

    exit_code = 2


class _OneLineErrors(click.Group):
    """A group whose usage errors are one line (``Error: ...``, exit 2), without the usage."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _INVOKED[:] = list(sys.argv[1:] if args is None else args)
        from bnsym.errors import command_line
        from bnsym.output import cleanup_on_signals

        # SIGTERM, SIGHUP: temporary files are removed; messages name --flags, not arguments
        with cleanup_on_signals(), command_line():
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)

    def _main(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        standalone_mode: bool,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
            sys.stdout.flush()  # here, not at exit: a full device is reported below
        except OSError as exc:
            _output_failed(exc)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None and exc.ctx.command_path:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except BnsymError as exc:  # every bnsym exception, converted here once
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(
    cls=_OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@click.version_option(__version__, prog_name="bnsym")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Normalization layers (batch, layer, instance, group, RMS norm, or your own): derived
    exactly, generated as NumPy code, checked numerically and against PyTorch."""
    if ctx.invoked_subcommand is None:  # bare `bnsym`: the help, not an error
        click.echo(ctx.get_help())


_INVOKED: list[str] = []  # the arguments of this invocation (not sys.argv under CliRunner)


def _output_failed(exc: OSError) -> None:
    """Standard output could not be written (a full device, a closed pipe): one line, exit 1.

    Standard output is then pointed at /dev/null, so that Python's own flush at exit finds
    nothing left to write and prints no second error."""
    import errno

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture)
        pass
    if exc.errno == errno.EPIPE:
        sys.exit(1)  # the reader stopped reading (`bnsym derive | head`): nothing to say
    reason = exc.strerror or str(exc)
    click.echo(f"Error: cannot write the output: {reason}; write to a file with -o.", err=True)
    sys.exit(1)


def _command_line() -> str:
    """The command as typed, for the header of generated files (shell-quoted)."""
    return " ".join(["bnsym", *(shlex.quote(a) for a in _INVOKED)])


def _variant_options(f: Any) -> Any:
    """The options that choose the variant, shared by derive, codegen and check."""
    options = [
        click.option(
            "--layer",
            default="batchnorm",
            show_default=True,
            metavar="NAME",
            help=f"{', '.join(LAYERS)}; or your own declaration (bnsym.Layer) as FILE.py:NAME "
            "or module:NAME.",
        ),
        click.option(
            "--channels",
            default=None,
            metavar="C",
            help="Group norm: the group's m values are C channels of m/C values each.",
        ),
        click.option(
            "--m",
            "m",
            default="4",
            show_default=True,
            metavar="M",
            help="Values normalized together: the batch (batch norm), the features of a "
            "sample (layer, RMS norm), the positions of a channel (instance norm), "
            "channels × positions of a group (group norm).",
        ),
        click.option(
            "--eps",
            default=None,
            metavar="EPS",
            help="ε as a number ≥ 0 read exactly (1e-5, 0); when omitted, symbolic in derive "
            "and 1e-5 (the generated code's default) in codegen and check.",
        ),
        click.option(
            "--variance",
            default="biased",
            show_default=True,
            help="biased (1/m, the paper and PyTorch) or unbiased (1/(m-1)).",
        ),
        click.option(
            "--eps-placement",
            default="inside",
            show_default=True,
            help="inside the root √(σ²+ε); outside it, σ+ε; or sqrt-outside, σ+√ε (a different "
            "layer: √(σ²+ε) ≠ σ+√ε).",
        ),
        click.option(
            "--affine/--no-affine",
            default=True,
            show_default=True,
            help="Scale and shift by γ and β (--no-affine: y = x̂).",
        ),
        click.option(
            "--mode",
            default="train",
            show_default=True,
            help="train (batch statistics) or eval (running statistics).",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Raise the limit on the estimated cost of the request from a minute and 2 GB "
            "to ten minutes and 8 GB, held to while it runs (bnsym.limits).",
        ),
    ]

    @functools.wraps(f)
    def command(**kwargs: Any) -> Any:
        # The command receives the variant as one dict, ready for _derive.
        variant = {name: kwargs.pop(name) for name in _VARIANT}
        return f(variant=variant, **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


_VARIANT = ("layer", "channels", "m", "eps", "variance", "eps_placement", "affine", "mode", "force")


def _options(variant: dict[str, Any], **examples: Any) -> Any:
    """The validated options of the variant (and values, dy, ...): no derivation yet, so that
    the request is bounded (bnsym.limits) before any work; --layer may name a declaration."""
    from bnsym.core.options import make_options
    from bnsym.family.load import load_layer

    options = dict(variant)
    m = options.pop("m")
    options["layer"] = load_layer(options["layer"])
    return make_options(m, **options, **examples)


def _derive(options: Any) -> Any:
    """bnsym.derive of validated options."""
    from bnsym.derivation import from_options

    return from_options(options)


def _order_option(highest: int) -> Any:
    """``--order N``: 1 (default) up to ``highest``; a bad value is one line, exit 2."""

    def parse(ctx: Any, param: Any, value: str) -> int:
        allowed = ", ".join(str(n) for n in range(1, highest + 1))
        if value.strip() not in [str(n) for n in range(1, highest + 1)]:
            raise BadInput(f"--order {value[:20]!r} is not one of {allowed} for this command.")
        return int(value)

    return click.option(
        "--order",
        default="1",
        show_default=True,
        metavar="N",
        callback=parse,
        help=f"Order of the derivative: 1 (backward) up to {highest} (see bnsym.proofs.higher).",
    )


def _modes_option(command: str) -> Any:
    """``--modes fwd|rev|fwd,rev`` (default rev: today's reverse chain); a bad word is one
    line, exit 2 (bnsym.limits.ModesError)."""

    def parse(ctx: Any, param: Any, value: str) -> tuple[str, ...]:
        from bnsym.limits import parse_modes

        return parse_modes(value)

    what = {
        "derive": "derive forward mode (the JVP; at order 2 the jvp of the jvp and, with rev, "
        "the jvp of the vjp and the vjp of the jvp; at order 3 the forward chain) besides "
        "reverse mode",
        "codegen": "add jvp (and at --order 2 jvp2 and hvp) to the module",
        "check": "check every composition of the modes up to --order, as JAX's check_grads does",
    }[command]
    return click.option(
        "--modes",
        default="rev",
        show_default=True,
        metavar="MODES",
        callback=parse,
        help=f"fwd, rev or fwd,rev: with fwd, {what}.",
    )


def _modes(d: Any, modes: tuple[str, ...], order: int) -> Any:
    """bnsym.proofs.modes.derive_modes(d, modes, order), or None for reverse mode alone."""
    if "fwd" not in modes:
        return None
    from bnsym.proofs.modes import derive_modes

    return derive_modes(d, modes, order)


def _higher(d: Any, order: int) -> Any:
    """bnsym.proofs.higher.derive_higher(d, order)."""
    from bnsym.proofs.higher import derive_higher

    return derive_higher(d, order)


# --- derive ----------------------------------------------------------------------------------


def _formats() -> Any:
    """The table of output formats (bnsym.notes.formats: standard library only)."""
    from bnsym.notes.formats import FORMATS

    return FORMATS


_FORMATS = _formats()
_FIRST = [f.extensions[0] for f in _FORMATS.values()]
_EXTENSIONS = ", ".join(_FIRST[:-1]) + " or " + _FIRST[-1]


@main.command("derive")
@_variant_options
@click.option(
    "--values",
    default=None,
    metavar="X1,X2,...",
    help="A worked example: m numbers per feature, features separated by ';'.",
)
@click.option(
    "--dy",
    default=None,
    metavar="DY1,DY2,...",
    help="Upstream gradients ∂ℓ/∂y_i, laid out as --values.",
)
@click.option(
    "--gamma",
    default=None,
    metavar="G,...",
    help="The example's γ: one per feature (batch, instance norm), m per row (layer, RMS "
    "norm), one per channel (group norm); rows separated by ';'.",
)
@click.option("--beta", default=None, metavar="B,...", help="The example's β, laid out as --gamma.")
@click.option(
    "--running-mean",
    default=None,
    metavar="MU,...",
    help="Eval mode: the example's running mean, one per feature.",
)
@click.option(
    "--running-var",
    default=None,
    metavar="VAR,...",
    help="Eval mode: the example's running variance (≥ 0), one per feature.",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    help="; ".join(f"{f.name}: {f.help}" for f in _FORMATS.values())
    + ". Default: from -o's extension, else text; an extension that names another format "
    "is refused.",
)
@click.option("--ascii", "ascii_", is_flag=True, help="Plain ASCII text instead of Unicode math.")
@click.option(
    "--standalone/--fragment",
    default=None,
    help="LaTeX: a complete document that compiles with pdflatex (the default), or a "
    "fragment to \\input into one.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help=f"Write to FILE ({_EXTENSIONS}) instead of standard output.",
)
@_order_option(3)
@_modes_option("derive")
def derive_command(
    variant: dict[str, Any],
    order: int,
    modes: tuple[str, ...],
    values: str | None,
    dy: str | None,
    gamma: str | None,
    beta: str | None,
    running_mean: str | None,
    running_var: str | None,
    fmt: str | None,
    ascii_: bool,
    standalone: bool | None,
    output: str | None,
) -> None:
    """Derive a normalization layer (batch norm unless --layer) for m values, with proofs."""
    from bnsym.notes.formats import render
    from bnsym.output import atomic_write, check_writable

    row = _output_format(fmt, output)
    given_standalone = standalone is not None
    for flag, name, on in (
        ("--ascii", "ascii", ascii_),
        ("--standalone" if standalone else "--fragment", "standalone", given_standalone),
    ):
        if on and name not in row.options:
            takes = [f.name for f in _FORMATS.values() if name in f.options]
            raise BadInput(
                f"{flag} applies to {' and '.join(takes)} output, not {row.name}; drop {flag} "
                f"or choose --format {takes[0]}."
            )
    if output not in (None, "-"):
        check_writable(output)
    from bnsym.limits import bounded, check_modes

    o = _options(
        variant,
        values=values,
        dy=dy,
        gamma=gamma,
        beta=beta,
        running_mean=running_mean,
        running_var=running_var,
    )
    if "fwd" in modes:
        check_modes("derive", modes, order, o.m)
    with bounded("derive", o.m, order=order, modes=modes, fmt=row.name, force=o.force):
        d = _derive(o)
        md = _modes(d, modes, order)
        h = _higher(d, order) if order > 1 and "rev" in modes else None
        data = render(
            d,
            row.name,
            higher=h,
            modes=md,
            command=_command_line(),
            ascii=ascii_,
            standalone=standalone is not False,  # LaTeX compiles unless --fragment
        )
    if output in (None, "-"):
        click.echo(data, nl=False)
        return
    atomic_write(output, data)


def _output_format(fmt: str | None, output: str | None) -> Any:
    """The row of the format table: --format if given, else -o's extension, else text."""
    from pathlib import Path

    from bnsym.notes.formats import by_extension

    to_file = output not in (None, "-")
    ext = Path(output).suffix.lower() if to_file and output else ""
    chosen = by_extension(ext) if ext else None
    if fmt is not None:
        if fmt not in _FORMATS:
            raise BadInput(f"--format {fmt!r} is not known; use {', '.join(_FORMATS)}.")
        row = _FORMATS[fmt]
        if row.file_only and not to_file:
            raise BadInput(f"--format {fmt} writes a file; add -o FILE{row.extensions[0]}.")
        if chosen is not None and chosen is not row:  # the name would say another format
            raise BadInput(
                f"-o {output!r} and --format {fmt} disagree: a {ext} file holds {chosen.name} "
                f"output; drop --format (the extension chooses) or name the file "
                f"*{row.extensions[0]}."
            )
        return row
    if not to_file:
        return _FORMATS["text"]
    if chosen is None:
        raise BadInput(
            f"cannot tell the format of {output!r} from its extension {ext or '(none)'!r}; "
            f"use {_EXTENSIONS}, or give --format."
        )
    return chosen


# --- codegen ---------------------------------------------------------------------------------


@main.command("codegen")
@_variant_options
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write the module to FILE (atomically); '-' or none prints it.",
)
@_order_option(2)
@_modes_option("codegen")
def codegen_command(
    variant: dict[str, Any],
    output: str | None,
    order: int,
    modes: tuple[str, ...],
) -> None:
    """Generate a standalone NumPy module with forward() and backward() for groups of m."""
    from bnsym.codegen.module import generate
    from bnsym.output import check_writable

    if output not in (None, "-"):
        check_writable(output)
        suffix = os.path.splitext(output)[1]
        if suffix and suffix.lower() != ".py":
            raise BadInput(
                f"-o {output!r}: codegen writes a Python module, not a {suffix} file; "
                "give a .py name (derive writes notes)."
            )
    from bnsym.limits import bounded, check_modes

    o = _options(variant)
    if "fwd" in modes:
        check_modes("codegen", modes, order, o.m)
    module: Any
    with bounded("codegen", o.m, order=order, modes=modes, force=o.force):
        d = _derive(o)
        if "fwd" in modes:
            from bnsym.codegen.modes import generate_modes

            module = generate_modes(d, modes, order, command=_command_line())
        elif order == 2:
            from bnsym.codegen.higher import generate_higher

            module = generate_higher(d, command=_command_line())
        else:
            module = generate(d, command=_command_line())
    if output in (None, "-"):
        click.echo(module.source, nl=False)
        return
    module.write(output)


# --- check -----------------------------------------------------------------------------------


@main.command("check")
@_variant_options
@click.option(
    "--features",
    "-D",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="D, the number of features (columns of x) in the random batch; for the other "
    "layers the number of samples N.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed (≥ 0) of the random batch and of the gradient check.",
)
@click.option(
    "--torch/--no-torch",
    "use_torch",
    default=None,
    help="Compare with PyTorch too (default: when it is importable).",
)
@_order_option(3)
@_modes_option("check")
def check_command(
    variant: dict[str, Any],
    features: int,
    seed: int,
    use_torch: bool | None,
    order: int,
    modes: tuple[str, ...],
) -> None:
    """Compare generated code, the hand-written reference (fused, staged), numerical
    derivatives and, where installed, PyTorch on seeded random data.

    Prints a table. Exit status 0 if all agree, 1 if any pair disagrees, 2 for bad input.
    """
    import math

    from bnsym.crosscheck.data import x_shape
    from bnsym.limits import bounded, check_modes

    o = _options(variant)
    if "fwd" in modes:
        check_modes("check", modes, order, o.m)
    values = math.prod(x_shape(o, features))
    with bounded(
        "check", o.m, features=features, order=order, modes=modes, values=values, force=o.force
    ):
        import numpy as np

        from bnsym.crosscheck.first import CheckError, run_check

        d = _derive(o)
        report: Any
        try:
            # NumPy's overflow warnings would only repeat the table, which judges every result
            # (a non-finite one disagrees); printed, they look like a failure of a passing run.
            with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
                if "fwd" in modes:  # every composition of the modes up to the order
                    from bnsym.crosscheck.modes import run_check_modes

                    report = run_check_modes(d, modes, order, features, seed, torch=use_torch)
                elif order > 1:
                    from bnsym.crosscheck.higher import run_check_higher

                    _higher(d, order)  # the variant's refusal, if any, as one line
                    report = run_check_higher(
                        d, order, features=features, seed=seed, torch=use_torch
                    )
                else:
                    report = run_check(d, features=features, seed=seed, torch=use_torch)
        except CheckError as exc:  # the one refusal that is about an option: --torch
            raise BadInput(f"--torch: {exc}") from None
    click.echo(report.table(), nl=False)
    if not report.passed:
        raise SystemExit(1)


# --- gradcheck -------------------------------------------------------------------------------


def _gradcheck_load(spec: str) -> Callable[..., Any]:
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


def _gradcheck_raised_in(exc: BaseException, fn: Callable[..., Any]) -> bool:
    """True if the traceback of ``exc`` passes through the body of ``fn``."""
    code = getattr(fn, "__code__", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


@main.command("gradcheck")
@click.argument("forward", metavar="PKG.MODULE:FORWARD")
@click.argument("backward", metavar="PKG.MODULE:BACKWARD")
@click.option(
    "--input",
    "shapes",
    multiple=True,
    required=True,
    metavar="INPUT",
    help="One input, in order: a shape of random floats (4,3; '' for a scalar), integers "
    "int:LOW-HIGH:SHAPE (labels: int:0-9:64), or a file (x.npy, data.npz:x).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Floating-point type of the random inputs.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of inputs and check (an integer >= 0).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "full", "probe"]),
    default="auto",
    show_default=True,
    help="full: every entry; auto: a random direction per input, every entry where it fails "
    "(up to 512); probe: directions, sampled entries and bisection.",
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

    A loss with integer labels: bnsym gradcheck mylayers:softmax_loss
    mylayers:softmax_loss_backward --input 64,10 --input int:0-9:64
    """
    import numpy as np

    from bnsym.gradcheck.check import NotALayerError, check_function, check_layer

    for option, value in (("--rtol", rtol), ("--atol", atol)):
        if value is not None and not (np.isfinite(value) and value >= 0):  # NaN passes all
            raise BadInput(f"{option} must be a finite number >= 0, not {value}")
    from bnsym.gradcheck.arrays import make_inputs

    fwd, bwd = _gradcheck_load(forward), _gradcheck_load(backward)
    inputs = make_inputs(shapes, dtype, seed)
    sizes = [a.shape for a in inputs]
    check = check_function if as_function else check_layer
    try:
        report = check(fwd, bwd, *inputs, seed=seed, mode=mode, method=method, rtol=rtol, atol=atol)
    except NotALayerError:
        raise BadInput(
            f"{forward} does not return (out, cache); if it is f(*inputs) -> out with "
            f"{backward} as vjp(dout, *inputs), pass --function"
        ) from None
    except Exception as exc:
        shown = ", ".join(str(s) for s in sizes)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raised = f"({type(exc).__name__}: {first})"
        if _gradcheck_raised_in(exc, bwd) and not _gradcheck_raised_in(exc, fwd):
            raise BadInput(
                f"{backward} raised {raised} on random inputs of shapes {shown}"
            ) from None
        if _gradcheck_raised_in(exc, fwd):
            raise BadInput(
                f"{forward} raised {raised} on random inputs of shapes {shown}; "
                "check the --input shapes"
            ) from None
        raise BadInput(f"the check failed on random inputs of shapes {shown} {raised}") from None
    click.echo(str(report))
    if report.raised == "forward" and report.evaluations <= 1:
        click.echo(f"  hint: {forward} raised on the random inputs: check the --input shapes")
    if not report.passed:
        raise SystemExit(1)
