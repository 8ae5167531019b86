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
