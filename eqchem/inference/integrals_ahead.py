"""A small prediction's PySCF work before the network, done in a second process while this one imports torch.

Most of a fresh ``eqchem predict`` of one molecule is importing torch (with building the network it loads),
importing PySCF (with SciPy) and, for the accurate mode, building the guess Fock matrix. None of these lets
another run meanwhile in the same process (Python and C initialisation under the GIL), but a second core
can: :func:`start_integrals_ahead` starts one ``spawn`` helper *before* torch is imported, which imports
PySCF and computes, for every structure of the run's first network batch, the
:class:`~eqchem.dft.molecule_integrals.MoleculeIntegrals` the pipeline would compute (the baseline's guess,
overlap, dipole integrals, AO offsets) and each element's shell layout (the basis check). This process
meanwhile imports torch and builds the network; the pipeline then takes the integrals by geometry
(:meth:`IntegralsAhead.integrals`) and computes whatever is missing itself, so the results are the same
(the same functions on the same Mole). A model with no Fock build (the ``fast`` mode) writes its JSON
without ever importing PySCF in this process; one with a Fock step still imports it for that step.

It applies to one process predicting on the CPU with two cores or more (one helper thread beside this
process's import). If the helper fails, nothing is taken from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..dft.molecule_integrals import MoleculeIntegrals
    from ..io.structure import Structure


def _geometry_key(numbers: np.ndarray, positions: np.ndarray, n_electrons: int) -> tuple:
    return (np.asarray(numbers, dtype=np.int64).tobytes(), np.asarray(positions, dtype=np.float64).tobytes(),
            int(n_electrons))


def _compute(basis: str, xc: str, baseline: str, params: dict | None,
             molecules: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[dict[int, tuple[int, ...]], list]:
    """In the helper: each element's shell layout and each molecule's integrals ((numbers, positions Å,
    electrons) in, the same order out)."""
    from ..basis import element_shells
    from ..dft.molecule_integrals import molecule_integrals

    elements = sorted({int(z) for numbers, _, _ in molecules for z in numbers})
    shells = {z: element_shells(basis, z) for z in elements}
    return shells, [molecule_integrals(z, r, basis, xc, baseline, n, params) for z, r, n in molecules]


class IntegralsAhead:
    """The helper's integrals of some structures, waited for on first use (:func:`start_integrals_ahead`)."""

    def __init__(self, pool, future, keys: list[tuple], basis: str):
        self._pool, self._future, self._keys, self.basis = pool, future, keys, basis
        self._by_key: dict[tuple, "MoleculeIntegrals"] | None = None
        self._shells: dict[int, tuple[int, ...]] = {}

    def _collect(self) -> dict[tuple, "MoleculeIntegrals"]:
        if self._by_key is None:
            try:
                self._shells, integrals = self._future.result()
            except Exception:  # noqa: BLE001 - a failed helper only means this process computes them itself
                self._shells, integrals = {}, []
            self._by_key = dict(zip(self._keys, integrals))
            self.close()
        return self._by_key

    def shells(self) -> dict[int, tuple[int, ...]]:
        """{Z: shell l's} of the basis as PySCF gave them in the helper (waits for it; empty if it failed):
        the basis check of this process needs no PySCF then."""
        self._collect()
        return dict(self._shells)

    def integrals(self, numbers: np.ndarray, positions: np.ndarray, n_electrons: int) -> "MoleculeIntegrals | None":
        """The helper's integrals of this geometry and electron count, or None (not among its structures)."""
        return self._collect().get(_geometry_key(numbers, positions, n_electrons))

    def close(self) -> None:
        """Let the helper go (it has nothing left to do once its result is here)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def start_integrals_ahead(model: str | Path | None, structures: Sequence["Structure"]) -> IntegralsAhead | None:
    """Start the helper for ``structures`` (the first network batch) of a prediction with ``model`` (a path
    or mode, as :func:`~eqchem.inference.model_file.load_model` takes), or None where it cannot gain or
    cannot start: fewer than two cores, a model file whose header does not read (loading it says why)."""
    from ..cpu import available_cores
    from ..errors import EqchemError
    from ..model.file import model_path, read_header

    if available_cores() < 2 or not structures:
        return None
    try:
        header = read_header(model_path(model))
    except EqchemError:  # an unknown mode: loading the model says so
        return None
    if header is None:
        return None
    basis, xc = header.basis, header.xc
    if not basis or not xc:
        return None
    molecules = [(np.asarray(s.numbers, dtype=np.int64), np.asarray(s.positions, dtype=np.float64), s.n_electrons)
                 for s in structures]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..cpu import spawn_environment

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    with spawn_environment(1):
        future = pool.submit(_compute, basis, xc, header.config.baseline, header.card.baseline_params, molecules)
    return IntegralsAhead(pool, future, [_geometry_key(*m) for m in molecules], basis)
