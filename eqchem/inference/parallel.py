"""Many structures on several CPU cores: the pipeline in helper processes, one thread each.

One Python process does not keep two cores busy with predictions: the network's many small torch
operations and the Python around PySCF's integrals hold the GIL, and several thread pools (torch's and
PySCF's OpenMP, NumPy's OpenBLAS) on the same cores get in each other's way. So
:func:`parallel_predictions` starts helper processes (``spawn``, with one thread for every library:
safe whatever this process has imported), each loading the same model file, hands each a batch at a
time and yields their :class:`~eqchem.inference.result.OrbitalResult` objects in input order, so a
caller writes them as they come. Every helper runs :meth:`PredictionPipeline.results`: the same
numbers as one process gives, up to the float32 network's round-off under another thread count
(tests/test_parallel_predict.py bounds the difference).

Stage timings are summed over the helpers (so their total exceeds the wall time).
"""
from __future__ import annotations

import contextlib
import sys
import types
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from ..io.structure import Structure
    from .pipeline import PredictionPipeline
    from .result import OrbitalResult

_HELPER: dict = {}  # in a helper process: its pipeline


def _start_helper(model_path: str, batch_size: int, fock_step: bool) -> None:
    """Helper initializer: the model loaded from its file, one torch thread."""
    import torch

    from .model_file import load_model
    from .pipeline import PredictionPipeline

    torch.set_num_threads(1)
    _HELPER["pipeline"] = PredictionPipeline(load_model(model_path), batch_size=batch_size, fock_step=fock_step)


def _helper_results(structures, found) -> tuple[list, dict[str, float], int]:
    """In a helper: the results of one batch and the stage seconds they took."""
    from .pipeline import StageTimings

    pipeline = _HELPER["pipeline"]
    pipeline.timings = StageTimings()
    results = pipeline.results(structures, found)
    return results, pipeline.timings.seconds, pipeline.timings.molecules


@contextlib.contextmanager
def helper_start_environment():
    """While helpers start: one thread per library in their environment, and an empty ``__main__`` so that
    ``spawn`` does not re-run the caller's script in them (a script without ``if __name__ == "__main__":``
    would otherwise predict again, recursively)."""
    from ..cpu import worker_threads

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        with worker_threads(1):
            yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def parallel_predictions(pipeline: "PredictionPipeline", structures: Sequence["Structure"],
                         found: Sequence[list[str]], workers: int) -> Iterator["OrbitalResult"]:
    """The results of ``pipeline.results`` for every structure, in input order, from ``workers`` helper
    processes (at most one per batch). Needs ``pipeline.model.path``: helpers load the model from it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = pipeline.batch_size
    batches = [range(i, min(i + size, len(structures))) for i in range(0, len(structures), size)]
    helpers = max(1, min(workers, len(batches)))
    pool = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_helper,
                               initargs=(str(pipeline.model.path), size, pipeline.fock_step))
    try:
        with helper_start_environment():  # the pool starts its processes as the first batches arrive
            futures = [pool.submit(_helper_results, [structures[i] for i in b], [list(found[i]) for i in b])
                       for b in batches]
        for future in futures:
            results, seconds, molecules = future.result()
            for k, v in seconds.items():
                pipeline.timings.seconds[k] += v
            pipeline.timings.molecules += molecules
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
