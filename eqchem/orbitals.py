"""Orbitals from a Hamiltonian: the generalized eigenproblem H C = S C ε and what follows from it.

Pure NumPy/SciPy (no PySCF), float64 throughout. Energies in Eh, AO matrices in PySCF order.
"""
from __future__ import annotations

import numpy as np

DEFAULT_LINDEP_THRESHOLD = 1e-8
"""Overlap eigenvalues below this are dropped (canonical orthogonalization)."""


def solve_generalized(h: np.ndarray, s: np.ndarray, threshold: float = DEFAULT_LINDEP_THRESHOLD
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Solve H C = S C ε for symmetric H (nao, nao) and positive (semi)definite S.

    Uses canonical orthogonalization X = U s^-1/2 over the overlap eigenvectors with eigenvalue
    above ``threshold``, so nearly linearly dependent bases give nmo < nao orbitals instead of noise.

    Returns:
        energies (nmo,) ascending, coefficients (nao, nmo) with C.T S C = 1.
    """
    h = 0.5 * (h + h.T)
    sval, svec = np.linalg.eigh(0.5 * (s + s.T))
    keep = sval > threshold
    x = svec[:, keep] / np.sqrt(sval[keep])
    e, v = np.linalg.eigh(x.T @ h @ x)
    return e, x @ v


def density_matrix(coefficients: np.ndarray, nocc: int) -> np.ndarray:
    """Closed-shell total density 2 C_occ C_occᵀ, (nao, nao)."""
    c = coefficients[:, :nocc]
    return 2.0 * c @ c.T


def occupations(n_orbitals: int, n_electrons: int, spin: int = 0) -> np.ndarray:
    """Aufbau occupations (n_orbitals,) of one set of spatial orbitals: 2 for the (N - 2S)/2 lowest, 1 for the
    next 2S (restricted open shell, as ROKS occupies them), 0 above. ``spin`` is 2S = N_alpha - N_beta."""
    if spin < 0 or (n_electrons - spin) % 2 or n_electrons - spin < 0:
        raise ValueError(f"{n_electrons} electrons cannot have spin (2S) = {spin}")
    n_double = (n_electrons - spin) // 2
    if n_double + spin > n_orbitals:
        raise ValueError(f"{n_electrons} electrons do not fit in {n_orbitals} orbitals")
    occ = np.zeros(n_orbitals)
    occ[:n_double] = 2.0
    occ[n_double:n_double + spin] = 1.0
    return occ


def density_from_occupations(coefficients: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Total density C diag(occ) Cᵀ, (nao, nao), for occupations ``occ`` (nmo,)."""
    c = coefficients[:, : len(occ)]
    return (c * occ) @ c.T


def frontier(energies: np.ndarray, nocc: int) -> tuple[float, float, float]:
    """(HOMO, LUMO, gap) in Eh with ``nocc`` occupied orbitals (doubly or singly: the HOMO of an open shell is
    its highest singly occupied orbital); LUMO and gap are NaN when there are no virtual orbitals."""
    homo = float(energies[nocc - 1])
    lumo = float(energies[nocc]) if nocc < len(energies) else float("nan")
    return homo, lumo, lumo - homo


def mulliken_charges(dm: np.ndarray, s: np.ndarray, numbers: np.ndarray, ao_offsets: np.ndarray) -> np.ndarray:
    """Mulliken charges (n,) in e: Z_A - sum_{mu in A} (P S)_mu,mu."""
    pop = np.einsum("ij,ji->i", dm, s)
    per_atom = np.add.reduceat(pop, ao_offsets[:-1])
    return numbers.astype(np.float64) - per_atom


def occupied_cosine_similarity(c_pred: np.ndarray, c_ref: np.ndarray, nocc: int) -> float:
    """Mean |cos| between predicted and reference occupied orbitals along the AO axis (QH9's ψ metric)."""
    a, b = c_pred[:, :nocc], c_ref[:, :nocc]
    num = np.abs(np.sum(a * b, axis=0))
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return float(np.mean(num / den))
