"""What a prediction of one molecule takes from PySCF besides its network, packed to cross processes.

The guess Hamiltonian of the model's baseline, the overlap (the eigenproblem), the dipole integrals and
the AO offsets of the atoms (dipole, Mulliken charges), computed by a
:class:`~eqchem.dft.molecule.MoleculeContext` exactly as the prediction pipeline computes them, so that a
helper process (:mod:`eqchem.inference.integrals_ahead`) can compute them while the pipeline's process
starts, and the pipeline seeds its own context with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .molecule import MoleculeContext


@dataclass
class MoleculeIntegrals:
    """One molecule's integrals: ``guess`` (nao, nao) Eh of ``baseline`` (None for ``none``), ``overlap``
    (nao, nao), ``dipole_ao`` (3, nao, nao) Bohr about the origin, ``nuclear_charges`` (n,) e (ECP cores
    removed, as ``mol.atom_charges()``), ``ao_offsets`` (n + 1,): first AO of every atom, then nao."""

    baseline: str
    guess: np.ndarray | None
    overlap: np.ndarray
    dipole_ao: np.ndarray
    nuclear_charges: np.ndarray
    ao_offsets: np.ndarray


def molecule_integrals(numbers: np.ndarray, positions: np.ndarray, basis: str, xc: str, baseline: str = "none",
                       n_electrons: int | None = None, params: dict | None = None) -> MoleculeIntegrals:
    """:class:`MoleculeIntegrals` of atomic numbers (n,) at positions (n, 3) Å in ``basis``, with the guess
    of ``baseline`` (functional ``xc``; ``params``: its fitted parts) for ``n_electrons`` (default neutral)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    n = int(numbers.sum()) if n_electrons is None else int(n_electrons)
    m = MoleculeContext(numbers, positions, basis, charge=int(numbers.sum()) - n, spin=n % 2)
    return MoleculeIntegrals(baseline, m.guess(baseline, xc, params), m.overlap, m.dipole_ao, m.nuclear_charges,
                             m.ao_offsets)
