"""The ``eqchem`` command: the application (:mod:`eqchem.cli.app`) with every command module registered."""
from __future__ import annotations

import os
import sys

from . import calibrate_command, data_commands, model_commands, train_command  # noqa: F401  (each registers its commands on app)
from .app import app


def run() -> None:
    """The ``eqchem`` console script: :data:`app`, then a quick exit.

    A finished command leaves with ``os._exit`` once its outputs are flushed and closed, skipping the
    interpreter's teardown of torch, PySCF and h5py (a noticeable part of a short prediction;
    ``bench/vs_pyscf.py`` times fresh processes). Where anything could still be unwritten (an open HDF5 file, a live worker
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
