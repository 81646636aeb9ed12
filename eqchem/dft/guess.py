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

from dataclasses import dataclass, field
from typing import Any

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


def guess_and_overlap(numbers, positions, basis: str, xc: str, kind: str = "minao-fock",
                      frame=None, n_electrons: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The guess matrix (Eh) and the AO overlap matrix, both (nao, nao) in PySCF AO order.

    ``frame``: the molecule's :class:`CanonicalFrame` when the caller already built it (else built here).
    ``n_electrons`` (default: the neutral molecule's) scales the minao density, a superposition of neutral
    atoms, to the structure's electron count, so an ion's guess holds its own number of electrons.
    """
    check_baseline(kind)
    frame = frame or canonical_mole(numbers, positions, basis)
    mol, d = frame.mol, frame.d
    overlap = d @ mol.intor_symmetric("int1e_ovlp") @ d.T
    if kind == "none":
        return np.zeros((mol.nao, mol.nao)), overlap
    mf = frame.ks(xc)
    dm = mf.get_init_guess(mol, key="minao")
    neutral = int(np.sum(numbers))
    if n_electrons is not None and n_electrons != neutral:
        dm = dm * (n_electrons / neutral)
    fock = d @ mf.get_fock(dm=dm) @ d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64), overlap


def fock_of_density(numbers, positions, density: np.ndarray, basis: str, xc: str, frame=None) -> np.ndarray:
    """The Kohn–Sham matrix F[P] (nao, nao) Eh of the AO density ``density`` (nao, nao), PySCF AO order.

    One Fock build with the guess's cheap settings (grid level 1, density-fitted J/K) in the principal-axes
    frame, so it is equivariant like the guess. On QM9 at B3LYP/def2-SVP, F[P_scf] built this way differs
    from the converged matrix by ~2 µEh MAE: the cheap build is exact enough to refine predictions with.
    ``frame`` as in :func:`guess_and_overlap`.
    """
    frame = frame or canonical_mole(numbers, positions, basis)
    d = frame.d
    fock = d @ frame.ks(xc).get_fock(dm=d.T @ density @ d) @ d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64)


def fock_step(numbers, positions, hamiltonian: np.ndarray, overlap: np.ndarray, n_electrons: int, basis: str,
              xc: str, mixing: float, frame=None, spin: int = 0) -> np.ndarray:
    """One damped Fock step from a predicted Kohn–Sham matrix: ``H + mixing (F[P(H)] - H)``, (nao, nao) Eh.

    ``P(H)`` is the aufbau density of H C = S C ε with ``n_electrons`` electrons (closed shell, or with
    ``spin`` = 2S singly occupied orbitals, and then F the spin-restricted matrix of that total density). Why: a
    learned H errs mostly in how the density responds to bonding; F[P(H)] feeds that density back through
    the functional, so its errors are the network's errors screened by the density response, and a mix of
    the two cancels much of both (QM9 validation, stage-3 default model: H MAE 613 -> 394 µEh, gap MAE
    0.14 -> 0.06 eV at mixing 0.4). It is one SCF-like Fock build (same cheap settings as the guess), not an
    SCF; equivariant because the Fock build is (``fock_of_density``) and the mixing is a scalar.
    ``frame`` as in :func:`guess_and_overlap`.
    """
    from ..orbitals import density_from_occupations, occupations, solve_generalized

    e, c = solve_generalized(hamiltonian, overlap)
    try:
        occ = occupations(len(e), n_electrons, spin)
    except ValueError as exc:
        raise InputError(f"Fock step: {exc}") from None
    fock = fock_of_density(numbers, positions, density_from_occupations(c, occ), basis, xc, frame)
    return hamiltonian + mixing * (fock - hamiltonian)


@dataclass
class CanonicalFrame:
    """A molecule in its principal-axes frame: PySCF ``mol`` there and the AO Wigner matrix ``d``
    (nao, nao) that takes matrices from that frame to the input one (``M_input = d @ M_frame @ d.T``).

    ``ks(xc)`` is the cheap KS object of that Mole, kept so that several Fock builds of one molecule (the
    guess, then the Fock step) share its integration grid and density-fitting tensors (built once:
    ~2 s of the ~5 s a first build takes for aspirin's 222 AOs).
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
