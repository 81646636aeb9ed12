"""The ``eqchem`` Typer application and its global options; each command module registers on it."""
from __future__ import annotations

import os
from typing import Optional

import typer

from ..version import __version__
from .common import console

app = typer.Typer(
    name="eqchem",
    help="Equivariant ML of Kohn–Sham Hamiltonians: generate DFT data, train, predict orbitals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        console.print(f"eqchem {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
):
    """eqchem command-line interface."""
    if debug:
        os.environ["EQCHEM_DEBUG"] = "1"
