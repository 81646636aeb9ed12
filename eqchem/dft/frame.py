"""The principal-axes frame in which eqchem's cheap Fock builds run, and the cheap KS settings.

Equivariance: PySCF's Lebedev grids are fixed in the lab frame, so a plain Fock build changes by grid
noise when the molecule rotates. The guess is therefore built in the
molecule's principal-axes frame and rotated back with the exact AO Wigner matrices: Lebedev grids are
invariant under the axis sign flips left undetermined by that frame, so the result is equivariant to
round-off under rotations, reflections and translations (molecules with degenerate moments of inertia,
symmetric tops, keep grid noise of that size).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..basis import wigner_d_ao

GRID_LEVEL = 1
"""DFT grid level of the cheap Fock builds (guesses, the Fock step)."""
AUXBASIS = "def2-universal-jkfit"
"""Auxiliary basis of their density-fitted J/K."""


@dataclass
class CanonicalFrame:
    """A molecule in its principal-axes frame: PySCF ``mol`` there and the AO Wigner matrix ``d``
    (nao, nao) that takes matrices from that frame to the input one (``M_input = d @ M_frame @ d.T``).

    ``ks(xc)`` is the cheap KS object of that Mole, kept so that several Fock builds of one molecule (the
    guess, then the Fock step) share its integration grid and density-fitting tensors (built once, a large
    part of a first build's time).
    """

    mol: Any
    d: np.ndarray
    _ks: dict = field(default_factory=dict, repr=False)

    def ks(self, xc: str):
        if xc not in self._ks:
            self._ks[xc] = cheap_ks(self.mol, xc)
        return self._ks[xc]


def canonical_mole(numbers, positions, basis: str) -> CanonicalFrame:
    """The molecule (atomic numbers (n,), positions (n, 3) Å) in its principal-axes frame, with ``basis``."""
    from pyscf import gto

    numbers = np.asarray(numbers, dtype=int)
    positions = np.asarray(positions, dtype=float)
    # densities here are charge-independent; the spin is set only so that PySCF accepts the atoms
    frame, canonical = principal_axes_frame(numbers, positions)
    mol = gto.M(atom=[[int(z), tuple(map(float, r))] for z, r in zip(numbers, canonical)], basis=basis,
                unit="Angstrom", spin=int(numbers.sum()) % 2, verbose=0)
    return CanonicalFrame(mol, wigner_d_ao(mol, frame))


def cheap_ks(mol, xc: str):
    """Restricted KS object with the guess's settings: grid level 1, def2-universal-jkfit density fitting."""
    from pyscf import dft

    mf = dft.RKS(mol).density_fit(auxbasis=AUXBASIS)
    mf.xc = xc
    mf.grids.level = GRID_LEVEL
    mf.verbose = 0
    return mf


def principal_axes_frame(numbers, positions) -> tuple[np.ndarray, np.ndarray]:
    """Orthogonal (3, 3) ``V`` and positions ``y`` (n, 3) Å with ``positions - centre = y @ V.T``.

    ``y`` are the coordinates in the principal axes of the nuclear-charge-weighted inertia tensor
    (centred on the centre of nuclear charge), ascending moments; defined up to axis signs.
    """
    z = np.asarray(numbers, dtype=float)
    x = np.asarray(positions, dtype=float)
    centred = x - (z[:, None] * x).sum(0) / z.sum()
    inertia = (z[:, None, None] * ((centred ** 2).sum(1)[:, None, None] * np.eye(3)
                                   - centred[:, :, None] * centred[:, None, :])).sum(0)
    _, v = np.linalg.eigh(inertia)
    return v, centred @ v
