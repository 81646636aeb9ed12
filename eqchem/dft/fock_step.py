"""Kohn–Sham matrices of a given density with the cheap settings, and the damped Fock step after the network."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .frame import canonical_mole


def fock_of_density(numbers, positions, density: np.ndarray, basis: str, xc: str, frame=None) -> np.ndarray:
    """The Kohn–Sham matrix F[P] (nao, nao) Eh of the AO density ``density`` (nao, nao), PySCF AO order.

    One Fock build with the guess's cheap settings (grid level 1, density-fitted J/K) in the principal-axes
    frame, so it is equivariant like the guess. Built from the converged density it stays close to the
    converged matrix (the grid and the density fitting are its only approximations), so it is exact enough to
    refine predictions with.
    ``frame``: the molecule's :class:`~eqchem.dft.frame.CanonicalFrame` when the caller built it already.
    """
    frame = frame or canonical_mole(numbers, positions, basis)
    d = frame.d
    fock = d @ frame.ks(xc).get_fock(dm=d.T @ density @ d) @ d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64)


def coulomb_response(numbers, positions, hamiltonian: np.ndarray, fock: np.ndarray, overlap: np.ndarray,
                     n_electrons: int, basis: str, xc: str, frame=None, spin: int = 0) -> np.ndarray:
    """J[P(F) − P(H)] (nao, nao) Eh: the Coulomb potential of the density change from the aufbau density of the
    predicted ``hamiltonian`` to that of its Fock build ``fock`` = F[P(H)] (both (nao, nao) Eh, PySCF AO order).

    The check's second look at the prediction (:func:`eqchem.inference.consistency_check.self_check`): with it, one step
    of Anderson mixing between H and F estimates where the SCF would go, the Coulomb part standing in for the whole
    response of F to the density (the calibration scales it). Density-fitted J only, in the principal-axes frame
    like the Fock build: no grid, no exchange, ~1 % of a Fock build's time.
    ``frame``: the molecule's :class:`~eqchem.dft.frame.CanonicalFrame` when the caller built it already (its KS
    object of ``xc``, and so the fitted integrals, are then shared with the Fock build)."""
    frame = frame or canonical_mole(numbers, positions, basis)
    change = aufbau_density(fock, overlap, n_electrons, spin) - aufbau_density(hamiltonian, overlap, n_electrons, spin)
    d = frame.d
    j = d @ frame.ks(xc).get_j(dm=d.T @ change @ d) @ d.T
    return np.asarray(0.5 * (j + j.T), dtype=np.float64)


def fock_step(numbers, positions, hamiltonian: np.ndarray, overlap: np.ndarray, n_electrons: int, basis: str,
              xc: str, mixing: float, frame=None, spin: int = 0) -> np.ndarray:
    """One damped Fock step from a predicted Kohn–Sham matrix: ``H + mixing (F[P(H)] - H)``, (nao, nao) Eh.

    ``P(H)`` is the aufbau density of H C = S C ε with ``n_electrons`` electrons (closed shell, or with
    ``spin`` = 2S singly occupied orbitals, and then F the spin-restricted matrix of that total density). Why: a
    learned H errs mostly in how the density responds to bonding; F[P(H)] feeds that density back through
    the functional, so its errors are the network's errors screened by the density response, and a mix of
    the two cancels much of both (the accurate model's card holds its test metrics with and without the step;
    ``datasets/qm9/tune_prediction.py`` chooses the mixing on validation molecules). It is one SCF-like Fock build (same cheap settings as the guess), not an
    SCF; equivariant because the Fock build is (``fock_of_density``) and the mixing is a scalar.
    ``frame``: the molecule's :class:`~eqchem.dft.frame.CanonicalFrame` when the caller built it already.
    """
    fock = fock_of_prediction(numbers, positions, hamiltonian, overlap, n_electrons, basis, xc, frame, spin)
    return hamiltonian + mixing * (fock - hamiltonian)


def fock_of_prediction(numbers, positions, hamiltonian: np.ndarray, overlap: np.ndarray, n_electrons: int,
                       basis: str, xc: str, frame=None, spin: int = 0) -> np.ndarray:
    """F[P(H)] (nao, nao) Eh: one cheap Fock build (:func:`fock_of_density`) from the aufbau density of the
    predicted ``hamiltonian`` (H C = S C ε, ``n_electrons`` electrons, ``spin`` = 2S singly occupied orbitals)."""
    return fock_of_density(numbers, positions, aufbau_density(hamiltonian, overlap, n_electrons, spin), basis, xc,
                           frame)


def aufbau_density(matrix: np.ndarray, overlap: np.ndarray, n_electrons: int, spin: int = 0) -> np.ndarray:
    """The total aufbau density (nao, nao) of a Kohn–Sham ``matrix`` (M C = S C ε, ``n_electrons`` electrons,
    ``spin`` = 2S singly occupied orbitals); an impossible occupation is the user's one-line error."""
    from ..orbitals import density_from_occupations, occupations, solve_generalized

    e, c = solve_generalized(matrix, overlap)
    try:
        occ = occupations(len(e), n_electrons, spin)
    except ValueError as exc:
        raise InputError(f"Fock step: {exc}") from None
    return density_from_occupations(c, occ)
