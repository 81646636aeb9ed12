"""The CPU this process may use: its cores, and the thread environment of worker processes it spawns.

One place for both, used by ``eqchem generate`` (DFT workers), prediction helpers
(:mod:`eqchem.inference.parallel`, :mod:`eqchem.inference.integrals_ahead`) and the training record of
its hardware.
"""
from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Iterator

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that fix the OpenMP (PySCF, torch) and BLAS threads of a process at its start."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity; all cores where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def processor_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform`` elsewhere): where a benchmark ran."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


@contextlib.contextmanager
def spawn_environment(threads: int) -> Iterator[None]:
    """While ``spawn`` worker processes start: :func:`worker_threads` of ``threads``, and an empty
    ``__main__``, so that spawning does not re-run the caller's script in them (a script without
    ``if __name__ == "__main__":`` would otherwise run again, recursively, in every worker)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        with worker_threads(threads):
            yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
