"""The PySCF integrals a grid-free prediction of one molecule needs, computed together (PySCF AO order).

A model whose baseline is analytic (``core``, ``core-j``: :data:`eqchem.dft.guess.ANALYTIC_BASELINES`) and
that takes no Fock step needs from PySCF only exact integrals: its baseline, the overlap (the
eigenproblem), the dipole integrals and the AO offsets of the atoms (dipole, Mulliken charges). Computed in
one place so that they can be computed elsewhere (:mod:`eqchem.inference.integrals_ahead`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.structure import Structure
from .guess import ANALYTIC_BASELINES, analytic_guess
from .runner import build_mole, dipole_ao_integrals


@dataclass
class OneElectronIntegrals:
    """One molecule's integrals: ``guess`` (nao, nao) Eh (None without an analytic baseline), ``overlap``
    (nao, nao), ``dipole_ao`` (3, nao, nao) Bohr about the origin, ``nuclear_charges`` (n,) e (ECP cores
    removed, as ``mol.atom_charges()``), ``ao_offsets`` (n + 1,): first AO of every atom, then nao."""

    guess: np.ndarray | None
    overlap: np.ndarray
    dipole_ao: np.ndarray
    nuclear_charges: np.ndarray
    ao_offsets: np.ndarray


def one_electron_integrals(numbers: np.ndarray, positions: np.ndarray, basis: str, baseline: str = "none",
                           n_electrons: int | None = None) -> OneElectronIntegrals:
    """:class:`OneElectronIntegrals` of atomic numbers (n,) at positions (n, 3) Å in ``basis``; the guess of
    ``baseline`` when it is analytic (``n_electrons``, default neutral: the electron count its ``core-j``
    atomic densities are scaled to), else None. Same integrals, same Mole as the pipeline builds itself."""
    numbers = np.asarray(numbers)
    mol = build_mole(Structure(numbers, np.asarray(positions, dtype=float)), basis, spin=int(np.sum(numbers)) % 2)
    guess = analytic_guess(mol, basis, baseline, n_electrons) if baseline in ANALYTIC_BASELINES else None
    offsets = np.asarray([s[2] for s in mol.aoslice_by_atom()] + [mol.nao])
    return OneElectronIntegrals(guess, mol.intor_symmetric("int1e_ovlp"), dipole_ao_integrals(mol),
                                np.asarray(mol.atom_charges(), dtype=float), offsets)
