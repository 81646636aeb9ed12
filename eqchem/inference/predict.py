"""``eqchem.predict``: structures in, predicted Hamiltonians and orbitals out.

The one road: :func:`~eqchem.inference.inputs.as_structures` -> :func:`~eqchem.inference.checks.check_structures`
(every refusal before any work) -> batches through :class:`~eqchem.inference.pipeline.PredictionPipeline`,
in this process or in helper processes (:mod:`eqchem.inference.parallel`) -> results in input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from ..cpu import inference_threads, limit_threads
from ..io.structure import Structure
from .checks import check_structures
from .inputs import as_structures
from .model_file import EqchemModel, load_model
from .parallel import helper_processes, parallel_predictions
from .pipeline import PredictionPipeline, StageTimings
from .result import OrbitalResult

if TYPE_CHECKING:
    from .integrals_ahead import IntegralsAhead


@dataclass
class PredictionRun:
    """What :func:`run_predictions` returns: the results in input order and the stage timings."""

    results: list[OrbitalResult]
    timings: StageTimings


def predict(source, model: EqchemModel | str | Path | None = None, batch_size: int = 16, device: str = "cpu",
            fock_step: bool = True, extrapolate: bool = False, timings: StageTimings | None = None,
            workers: int = 1, check: bool = False) -> OrbitalResult | list[OrbitalResult]:
    """Predict the Kohn–Sham Hamiltonian and orbitals of one or several structures.

    ``source``: a file path, (numbers, positions Å), an ``ase.Atoms``, a PySCF ``Mole``, a Structure or a list.
    ``fock_step=False`` skips the model's damped Fock step (``model.fock_mixing``): the network's matrix only.
    A charge or spin outside the model's training data raises :class:`~eqchem.errors.ModelError` unless
    ``extrapolate=True``; then each result lists why in ``result.warnings``.
    ``timings``: a :class:`~eqchem.inference.pipeline.StageTimings` that gets the wall time (s) of every
    stage added (``timings.seconds``, ``timings.per_molecule()``), e.g. ``t = StageTimings(); predict(..., timings=t)``.
    ``workers`` > 1: many structures are shared out over that many processes in all (one thread each;
    :mod:`eqchem.inference.parallel`), e.g. ``workers=eqchem.cpu.available_cores()``.
    Where the model file carries error estimates (the shipped models do), ``result.uncertainty`` holds them
    (:class:`~eqchem.inference.uncertainty.Uncertainty`); ``check=True`` adds the self-consistency check (one
    cheap Fock build per molecule where the model takes no Fock step) and its ``flagged`` verdict.
    Returns one :class:`OrbitalResult` for a single structure, a list otherwise.
    """
    if not isinstance(model, EqchemModel):
        model = load_model(model)
    results = run_predictions(source, model, batch_size, device, fock_step, extrapolate, timings, workers,
                              check).results
    single = isinstance(source, (Structure, tuple)) or (not isinstance(source, list) and len(results) == 1)
    return results[0] if single else results


def run_predictions(source, model: EqchemModel, batch_size: int = 16, device: str = "cpu", fock_step: bool = True,
                    extrapolate: bool = False, timings: StageTimings | None = None, workers: int = 1,
                    check: bool = False) -> PredictionRun:
    """Every result of ``source`` (anything :func:`predict` takes) and the stage timings of the run."""
    timings = timings if timings is not None else StageTimings()
    with timings.stage("structures"):
        structures = as_structures(source)
        found = check_structures(model, structures, extrapolate)
    with limit_threads(inference_threads()):  # one thread per library unless OMP_NUM_THREADS says otherwise
        results = list(iter_predictions(structures, model, batch_size, device, fock_step, checked=found,
                                        timings=timings, workers=workers, check=check))
    return PredictionRun(results, timings)


def predict_structures(structures: Sequence[Structure], model: EqchemModel, batch_size: int = 16,
                       device: str = "cpu", fock_step: bool = True, extrapolate: bool = False,
                       timings: StageTimings | None = None) -> list[OrbitalResult]:
    """All predictions of :func:`iter_predictions` as a list."""
    return list(iter_predictions(structures, model, batch_size, device, fock_step, extrapolate, timings=timings))


def iter_predictions(structures: Sequence[Structure], model: EqchemModel, batch_size: int = 16,
                     device: str = "cpu", fock_step: bool = True, extrapolate: bool = False,
                     checked: Sequence[list[str]] | None = None,
                     timings: StageTimings | None = None, workers: int = 1,
                     integrals_ahead: "IntegralsAhead | None" = None, check: bool = False) -> Iterator[OrbitalResult]:
    """Predictions one structure at a time, ``batch_size`` structures per network call.

    Every structure is checked (:func:`check_structures`; ``checked``: its result when the caller already
    ran it) before the first prediction, so a bad one stops the run before any work; results come as they
    are done (a caller can write them as they finish). ``timings`` (:class:`StageTimings`) gets the wall
    time (s) of every stage added; ``workers`` as in :func:`predict`; ``integrals_ahead``: PySCF integrals
    of the first structures computed by a helper process (:mod:`eqchem.inference.integrals_ahead`).
    """
    timings = timings if timings is not None else StageTimings()
    if checked is None:
        known = integrals_ahead.shells() if integrals_ahead is not None else None
        with timings.stage("structures"):
            checked = check_structures(model, structures, extrapolate, known)
    found = list(checked)
    if helper_processes(len(structures), batch_size, workers, device, model.path):
        yield from parallel_predictions(model, structures, found, batch_size, fock_step, workers, timings, check)
        return
    pipeline = PredictionPipeline(model, batch_size=batch_size, device=device, fock_step=fock_step, timings=timings,
                                  integrals_ahead=integrals_ahead, check=check)
    for start in range(0, len(structures), batch_size):
        yield from pipeline.results(structures[start:start + batch_size], found[start:start + batch_size])
