"""Cheap guess Hamiltonians: the baselines that Δ-models correct (``ModelConfig.baseline``).

``minao-fock`` is the Kohn–Sham matrix F[P_minao] of the functional, built once from PySCF's minao
(superposition of atomic densities) guess density, with a coarse grid (level 1) and density-fitted
Coulomb/exchange (def2-universal-jkfit): one Fock build, no SCF. On QM9 molecules at B3LYP/def2-SVP it
takes ~0.5–2 s on one core and differs from the converged matrix by ~4.5 mEh MAE; the network then
learns only the (smaller, smoother) SCF response F - F[P_minao].

Equivariance: PySCF's Lebedev grids are fixed in the lab frame, so a plain Fock build changes by grid
noise (~1e-4 Eh at most at level 1) when the molecule rotates. The guess is therefore built in the
molecule's principal-axes frame and rotated back with the exact AO Wigner matrices: Lebedev grids are
invariant under the axis sign flips left undetermined by that frame, so the result is equivariant to
round-off under rotations, reflections and translations (molecules with degenerate moments of inertia,
symmetric tops, keep grid noise of that size).
"""
from __future__ import annotations

import numpy as np

from ..basis import wigner_d_ao
from ..errors import InputError
from ..model.config import BASELINES
GRID_LEVEL = 1
AUXBASIS = "def2-universal-jkfit"


def check_baseline(kind: str) -> None:
    if kind not in BASELINES:
        raise InputError(f"unknown guess/baseline '{kind}'; choose from {', '.join(BASELINES)}")


def guess_hamiltonian(numbers, positions, basis: str, xc: str, kind: str = "minao-fock") -> np.ndarray:
    """(nao, nao) guess matrix in Eh, PySCF AO order, for atomic numbers (n,) and positions (n, 3) Å."""
    return guess_and_overlap(numbers, positions, basis, xc, kind)[0]


def guess_and_overlap(numbers, positions, basis: str, xc: str, kind: str = "minao-fock") -> tuple[np.ndarray, np.ndarray]:
    """The guess matrix (Eh) and the AO overlap matrix, both (nao, nao) in PySCF AO order."""
    from pyscf import dft, gto

    check_baseline(kind)
    numbers = np.asarray(numbers, dtype=int)
    positions = np.asarray(positions, dtype=float)
    # the minao density is charge-independent; the spin is set only so that PySCF accepts the atoms
    frame, canonical = principal_axes_frame(numbers, positions)
    mol = gto.M(atom=[[int(z), tuple(map(float, r))] for z, r in zip(numbers, canonical)], basis=basis,
                unit="Angstrom", spin=int(numbers.sum()) % 2, verbose=0)
    d = wigner_d_ao(mol, frame)
    overlap = d @ mol.intor_symmetric("int1e_ovlp") @ d.T
    if kind == "none":
        return np.zeros((mol.nao, mol.nao)), overlap
    mf = dft.RKS(mol).density_fit(auxbasis=AUXBASIS)
    mf.xc = xc
    mf.grids.level = GRID_LEVEL
    mf.verbose = 0
    dm = mf.get_init_guess(mol, key="minao")
    fock = d @ mf.get_fock(dm=dm) @ d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64), overlap


def filter_correction(correction: np.ndarray, overlap: np.ndarray, cutoff: float) -> np.ndarray:
    """``P C P`` with ``P`` the projector on the eigenvectors of ``overlap`` with eigenvalues > ``cutoff``.

    Why: in the generalized eigenproblem H C = S C ε an error δH along a near-null direction of S
    (eigenvalue s) enters the orthogonalized matrix as δH / s; QM9 def2-SVP overlaps reach s ~ 3e-4, so
    ~1 mEh of network error there becomes Eh-sized spurious orbital energies. Projecting those directions
    out of the learned correction leaves the guess (a physical operator, consistent with S) in charge
    of them. P is a spectral projector of S, so the filter keeps exact equivariance. Shapes (nao, nao).
    """
    if cutoff <= 0:
        return correction
    s, u = np.linalg.eigh(overlap)
    keep = u[:, s > cutoff]
    p = keep @ keep.T
    out = p @ correction @ p
    return 0.5 * (out + out.T)


def pair_switch(distances: np.ndarray, cutoff: float, width: float = 1.0) -> np.ndarray:
    """Weights (E,) of atom-pair corrections at ``distances`` (E,) Å: 1 below ``cutoff - width``, 0 beyond
    ``cutoff``, a cosine step between (smooth, so predicted matrices stay continuous in the geometry).

    Why: far apart, the minao Fock matrix is already close to the SCF one (QM9 validation: ~50 µEh MAE
    at 5–7 Å) while an unconstrained pair head adds errors of a few hundred µEh there; leaving distant
    pairs to the guess is more accurate. A function of distance only, so equivariance is kept.
    ``cutoff <= 0`` keeps every pair.
    """
    d = np.asarray(distances, dtype=float)
    if cutoff <= 0:
        return np.ones_like(d)
    t = np.clip((d - (cutoff - width)) / width, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


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
