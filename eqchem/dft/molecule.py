"""One molecule's PySCF objects for a prediction, each built once, on first use.

A :class:`MoleculeContext` is what the prediction stages share for one molecule: the input-frame
``Mole`` (overlap, dipole integrals, AO offsets, analytic guesses, the result's PySCF views), the
principal-axes frame of the grid-based Fock builds (:mod:`eqchem.dft.frame`), and the guess of the
model's baseline (:mod:`eqchem.dft.baselines`). Integrals computed ahead in another process
(:class:`~eqchem.dft.molecule_integrals.MoleculeIntegrals`) seed it; what they lack is computed here.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..basis import mole_ao_offsets
from .frame import CanonicalFrame, canonical_mole


class MoleculeContext:
    """Atomic numbers (n,), positions (n, 3) Å, ``basis``, total ``charge`` (e) and ``spin`` (2S).

    Properties (built on first use): ``mole`` (PySCF Mole in the input frame), ``frame``
    (:class:`CanonicalFrame`), ``overlap`` (nao, nao), ``dipole_ao`` (3, nao, nao) Bohr about the origin,
    ``nuclear_charges`` (n,) e, ``ao_offsets`` (n + 1,); :meth:`guess` the baseline's guess (nao, nao) Eh.
    ``seed``: integrals of this molecule computed elsewhere (:class:`MoleculeIntegrals`), used as given.
    """

    def __init__(self, numbers, positions, basis: str, charge: int = 0, spin: int = 0, seed=None):
        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.basis = basis
        self.charge = int(charge)
        self.spin = int(spin)
        self.seed = seed
        self._guesses: dict[str, np.ndarray | None] = {}
        if seed is not None and seed.guess is not None:
            self._guesses[seed.baseline] = seed.guess

    @property
    def n_electrons(self) -> int:
        return int(self.numbers.sum()) - self.charge

    @cached_property
    def mole(self):
        """PySCF Mole of the molecule in ``basis`` with its charge and spin."""
        from ..io.structure import Structure
        from .runner import build_mole

        return build_mole(Structure(self.numbers, self.positions, charge=self.charge), self.basis, spin=self.spin)

    @cached_property
    def frame(self) -> CanonicalFrame:
        """The molecule in its principal-axes frame (grid-based Fock builds run there)."""
        return canonical_mole(self.numbers, self.positions, self.basis)

    @cached_property
    def overlap(self) -> np.ndarray:
        if self.seed is not None:
            return self.seed.overlap
        return self.mole.intor_symmetric("int1e_ovlp")

    @cached_property
    def dipole_ao(self) -> np.ndarray:
        from .runner import dipole_ao_integrals

        return self.seed.dipole_ao if self.seed is not None else dipole_ao_integrals(self.mole)

    @cached_property
    def nuclear_charges(self) -> np.ndarray:
        if self.seed is not None:
            return self.seed.nuclear_charges
        return np.asarray(self.mole.atom_charges(), dtype=float)

    @cached_property
    def ao_offsets(self) -> np.ndarray:
        return self.seed.ao_offsets if self.seed is not None else mole_ao_offsets(self.mole)

    def has_mole(self) -> bool:
        """Whether the Mole was built already (a result then keeps it)."""
        return "mole" in self.__dict__

    def guess(self, baseline: str, xc: str, params: dict | None = None) -> np.ndarray | None:
        """The guess Hamiltonian (nao, nao) Eh of ``baseline`` (:mod:`eqchem.dft.baselines`; None for
        ``none``) with this molecule's electron count; ``params``: the baseline's fitted parts."""
        if baseline not in self._guesses:
            from .baselines import get_baseline

            self._guesses[baseline] = get_baseline(baseline).guess(self, xc, params)
        return self._guesses[baseline]
