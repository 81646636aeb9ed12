"""The ``eqchem`` command: thin Typer commands over the library."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from .. import __version__
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


from . import data_commands  # noqa: E402,F401  (registers generate, info, merge)
from . import train_command  # noqa: E402,F401  (registers train)
from . import model_commands  # noqa: E402,F401  (registers predict, diagonalize, evaluate)


def run() -> None:
    """The ``eqchem`` console script: :data:`app`, then a quick exit.

    A finished command leaves with ``os._exit`` once its outputs are flushed and closed, skipping the
    interpreter's teardown of torch, PySCF and h5py (~0.4 s of a 3 s prediction; ``bench/vs_pyscf.py``
    times fresh processes). Where anything could still be unwritten (an open HDF5 file, a live worker
    thread or child process) it exits normally instead."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if _nothing_left_to_write():
        os._exit(code)
    sys.exit(code)


def _nothing_left_to_write() -> bool:
    """True when no HDF5 file is open, no other non-daemon thread runs, no child process lives and no
    profiler or tracer (cProfile, coverage) waits to write its report at exit."""
    import threading

    if sys.getprofile() is not None or sys.gettrace() is not None:
        return False
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return False
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].active_children():
        return False
    if "h5py" in sys.modules:
        h5f = sys.modules["h5py"].h5f
        if h5f.get_obj_ids(types=h5f.OBJ_FILE):
            return False
    return True
