"""The CPU this process may use: its cores, the thread environment of worker processes it spawns, and the
threads of a prediction in this process.

One place for all three, used by ``eqchem generate`` (DFT workers), prediction helpers
(:mod:`eqchem.inference.parallel`, :mod:`eqchem.inference.integrals_ahead`), ``eqchem predict`` and the
training record of its hardware.

Thread policy of a prediction (:func:`inference_threads`, :func:`limit_threads`): one thread for every
library (torch's intra-op threads, PySCF's OpenMP, each loaded OpenBLAS) unless the user chose a count
(``--threads`` / OMP_NUM_THREADS). The many small operations of one small-molecule prediction gain little
from a second thread, and where the cores are shared with other busy processes, threads that wait for each
other spin on them (``bench/shared_machine.py`` measures both). Many molecules use several cores through
helper processes of one thread each (``--workers``, :mod:`eqchem.inference.parallel`).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import types
from typing import Callable, Iterator

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


INFERENCE_THREADS = 1
"""Threads of a prediction in this process when the user chose none (see the module's thread policy)."""

_OPENBLAS_CALLS = (("openblas_get_num_threads", "openblas_set_num_threads"),
                   ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                   ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                   ("openblas_get_num_threads64_", "openblas_set_num_threads64_"))
"""(get, set) thread-count functions of OpenBLAS builds: plain, NumPy's and SciPy's (``scipy_openblas``)."""


def inference_threads(threads: int | None = None) -> int | None:
    """Threads for a prediction in this process: ``threads`` where given (an explicit option); None (leave
    every library as it is) where OMP_NUM_THREADS is set, the user's choice; else :data:`INFERENCE_THREADS`."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return int(threads)
    return None if os.environ.get("OMP_NUM_THREADS") else INFERENCE_THREADS


def thread_counts() -> dict[str, int]:
    """Threads each loaded library would use now: ``torch``, ``pyscf`` (its OpenMP), each OpenBLAS by file name
    (libraries not imported yet are left out)."""
    out = {}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    if "pyscf.lib" in sys.modules:
        out["pyscf"] = sys.modules["pyscf.lib"].num_threads()
    for name, (get, _) in _openblas_libraries().items():
        out[name] = get()
    return out


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """While it lasts: torch's intra-op threads, PySCF's OpenMP threads and the threads of every OpenBLAS loaded
    now set to ``threads`` (None: nothing changes); restored afterwards. Libraries loaded inside read
    OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, which are ``threads`` meanwhile (child processes inherit it)."""
    if threads is None:
        yield
        return
    undo = _set_threads(threads)
    try:
        with worker_threads(threads):
            yield
    finally:
        for restore in reversed(undo):
            restore()


def use_inference_threads(threads: int | None = None) -> int | None:
    """For a process that only predicts (``eqchem predict``): :func:`inference_threads` for the rest of the
    process, in the libraries loaded now and, through the environment (:data:`THREAD_VARIABLES`), in those
    loaded later; returns that count (None: the user's OMP_NUM_THREADS, left as it is)."""
    n = inference_threads(threads)
    if n is not None:
        _set_threads(n)
        os.environ.update({k: str(n) for k in THREAD_VARIABLES})
    return n


def _set_threads(threads: int) -> list[Callable[[], None]]:
    """Set the threads of torch, PySCF's OpenMP and every loaded OpenBLAS (those imported); the calls that undo it."""
    undo: list[Callable[[], None]] = []
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        undo.append(lambda n=torch.get_num_threads(): torch.set_num_threads(n))
        torch.set_num_threads(threads)
    if "pyscf.lib" in sys.modules:
        lib = sys.modules["pyscf.lib"]
        undo.append(lambda n=lib.num_threads(): lib.num_threads(n))
        lib.num_threads(threads)
    for get, put in _openblas_libraries().values():
        undo.append(lambda n=get(), put=put: put(n))
        put(threads)
    return undo


def _openblas_libraries() -> dict[str, tuple[Callable[[], int], Callable[[int], None]]]:
    """{file name: (get, set) thread count} of the OpenBLAS libraries loaded in this process (Linux: read from
    /proc/self/maps; elsewhere none)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()
                            and ".so" in line})
    except OSError:
        return {}
    out = {}
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for get_name, set_name in _OPENBLAS_CALLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, put = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, put.argtypes, put.restype = ctypes.c_int, [ctypes.c_int], None
                out[os.path.basename(path)] = (get, put)
                break
    return out
