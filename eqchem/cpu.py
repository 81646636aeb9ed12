"""The CPU this process may use: its cores, and the thread environment of worker processes it spawns.

One place for both, used by ``eqchem generate`` (DFT workers), prediction helpers
(:mod:`eqchem.inference.parallel`) and the training record of its hardware.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that fix the OpenMP (PySCF, torch) and BLAS threads of a process at its start."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity; all cores where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def worker_threads(threads: int) -> Iterator[None]:
    """While worker processes start (``spawn``): their OpenMP and BLAS threads fixed to ``threads`` before
    they import NumPy; this process's environment is restored afterwards."""
    old = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
