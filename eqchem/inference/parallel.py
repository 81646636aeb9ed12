"""Many structures on several CPU cores: the pipeline in helper processes, one thread each.

One Python process does not keep two cores busy with predictions: the network's many small torch
operations and the Python around PySCF's integrals hold the GIL, and several thread pools (torch's and
PySCF's OpenMP, NumPy's OpenBLAS) on the same cores get in each other's way. So
:func:`parallel_predictions` starts helper processes (``spawn``, with one thread for every library:
safe whatever this process has imported), each loading the same model file, hands each a batch at a
time and yields their :class:`~eqchem.inference.result.OrbitalResult` objects in input order, so a
caller writes them as they come. Every helper runs :meth:`~eqchem.inference.pipeline.PredictionPipeline.results`: the same
numbers as one process gives, up to the float32 network's round-off under another thread count
(tests/test_parallel_predict.py bounds the difference).

Stage timings are summed over the helpers (so their total exceeds the wall time).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from ..io.structure import Structure
    from .model_file import EqchemModel
    from .pipeline import StageTimings
    from .result import OrbitalResult

_HELPER: dict = {}  # in a helper process: its pipeline


def _start_helper(model_path: str, batch_size: int, fock_step: bool, settings: dict, check: bool = False) -> None:
    """Helper initializer: the model loaded from its file with the caller's prediction settings, one torch
    thread."""
    import torch

    from .model_file import load_model
    from .pipeline import PredictionPipeline

    torch.set_num_threads(1)
    _HELPER["pipeline"] = PredictionPipeline(load_model(model_path).with_settings(**settings), batch_size=batch_size,
                                             fock_step=fock_step, check=check)


def _helper_results(structures, found) -> tuple[list, "StageTimings"]:
    """In a helper: the results of one batch and the stage seconds they took."""
    from .pipeline import StageTimings

    pipeline = _HELPER["pipeline"]
    pipeline.timings = StageTimings()
    results = pipeline.results(structures, found)
    return results, pipeline.timings


def helper_processes(n_structures: int, batch_size: int, workers: int, device: str, model_path) -> int:
    """Helper processes a run of ``n_structures`` gets from ``workers`` (0: it runs in this process): at most one
    per batch, and only for more than one batch on the CPU of a model with a file to load."""
    if workers <= 1 or n_structures <= batch_size or device != "cpu" or not model_path:
        return 0
    return min(workers, -(-n_structures // batch_size))


def parallel_predictions(model: "EqchemModel", structures: Sequence["Structure"], found: Sequence[list[str]],
                         batch_size: int, fock_step: bool, workers: int,
                         timings: "StageTimings", check: bool = False) -> Iterator["OrbitalResult"]:
    """The pipeline's results for every structure (checked; ``found``: their warnings), in input order, from
    ``workers`` helper processes (at most one per batch) that load ``model.path``; their stage seconds are
    added to ``timings``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..cpu import spawn_environment

    batches = [range(i, min(i + batch_size, len(structures))) for i in range(0, len(structures), batch_size)]
    helpers = max(1, helper_processes(len(structures), batch_size, workers, "cpu", model.path))
    pool = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_helper,
                               initargs=(str(model.path), batch_size, fock_step, model.settings.to_dict(), check))
    try:
        with spawn_environment(1):  # the pool starts its processes as the first batches arrive
            futures = [pool.submit(_helper_results, [structures[i] for i in b], [list(found[i]) for i in b])
                       for b in batches]
        for future in futures:
            results, seconds = future.result()
            timings.add(seconds)
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
