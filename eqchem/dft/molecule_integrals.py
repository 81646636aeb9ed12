"""What a prediction of one molecule takes from PySCF besides its network, computed together (PySCF AO order).

The guess Hamiltonian of the model's baseline (:mod:`eqchem.dft.guess`), the overlap (the eigenproblem),
the dipole integrals and the AO offsets of the atoms (dipole, Mulliken charges): computed in one place so
that they can be computed in another process (:mod:`eqchem.inference.integrals_ahead`) with the same
functions on the same Mole as the prediction pipeline uses itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..basis import mole_ao_offsets
from ..io.structure import Structure
from .guess import ANALYTIC_BASELINES, analytic_guess, guess_and_overlap
from .runner import build_mole, dipole_ao_integrals


@dataclass
class MoleculeIntegrals:
    """One molecule's integrals: ``guess`` (nao, nao) Eh (None for a model without a baseline), ``overlap``
    (nao, nao), ``dipole_ao`` (3, nao, nao) Bohr about the origin, ``nuclear_charges`` (n,) e (ECP cores
    removed, as ``mol.atom_charges()``), ``ao_offsets`` (n + 1,): first AO of every atom, then nao."""

    guess: np.ndarray | None
    overlap: np.ndarray
    dipole_ao: np.ndarray
    nuclear_charges: np.ndarray
    ao_offsets: np.ndarray


def molecule_integrals(numbers: np.ndarray, positions: np.ndarray, basis: str, xc: str, baseline: str = "none",
                       n_electrons: int | None = None, params: dict | None = None) -> MoleculeIntegrals:
    """:class:`MoleculeIntegrals` of atomic numbers (n,) at positions (n, 3) Å in ``basis``, with the guess
    of ``baseline`` for ``n_electrons`` (default neutral) as the pipeline builds it: an analytic one on the
    input's Mole, a Fock matrix (functional ``xc``) in the principal-axes frame (its overlap then too);
    ``params``: the baseline's fitted parts (a model's ``baseline_params``)."""
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=float)
    mol = build_mole(Structure(numbers, positions), basis, spin=int(np.sum(numbers)) % 2)
    if baseline in ANALYTIC_BASELINES or baseline == "none":
        guess = analytic_guess(mol, basis, baseline, n_electrons, params) if baseline != "none" else None
        overlap = mol.intor_symmetric("int1e_ovlp")
    else:
        guess, overlap = guess_and_overlap(numbers, positions, basis, xc, baseline, None, n_electrons)
    return MoleculeIntegrals(guess, overlap, dipole_ao_integrals(mol), np.asarray(mol.atom_charges(), dtype=float),
                             mole_ao_offsets(mol))
