"""Off-equilibrium geometries (MD17-like): Gaussian jitter and classical harmonic normal-mode sampling.

Units: positions and displacements in Å, temperatures in K, force-field energies in kcal/mol, Hessians in
kcal/mol/Å², masses in amu. Every sample keeps the atom order of its parent structure and has no two atoms
closer than :data:`MIN_SAMPLE_DISTANCE_ANGSTROM` (samples that would are redrawn).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from .structure import Structure

MIN_SAMPLE_DISTANCE_ANGSTROM = 0.5
"""Samples with two atoms closer than this (Å) are redrawn."""

BOLTZMANN_KCAL_PER_MOL_K = 0.0019872043
"""k_B in kcal/mol/K."""

WAVENUMBER_PER_SQRT_EIGENVALUE = 108.5913
"""cm⁻¹ per sqrt(kcal/mol/Å²/amu): wavenumber = this * sqrt(mass-weighted Hessian eigenvalue)."""

MAX_TRIES = 1000


def _min_distance(positions: np.ndarray) -> float:
    """Smallest interatomic distance (Å) of an (n, 3) array; inf for one atom."""
    if len(positions) < 2:
        return float("inf")
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    d[np.diag_indices_from(d)] = np.inf
    return float(d.min())


def _draw_sane(draw: Callable[[np.random.Generator], np.ndarray], base: np.ndarray, rng: np.random.Generator,
               label: str) -> np.ndarray:
    """``base + draw(rng)`` redrawn until all atoms are >= 0.5 Å apart; InputError after MAX_TRIES."""
    for _ in range(MAX_TRIES):
        positions = base + draw(rng)
        if _min_distance(positions) >= MIN_SAMPLE_DISTANCE_ANGSTROM:
            return positions
    raise InputError(
        f"{label}: no sample with all atoms >= {MIN_SAMPLE_DISTANCE_ANGSTROM} Å apart in {MAX_TRIES} tries; "
        f"lower the displacement amplitude"
    )


def _child(structure: Structure, positions: np.ndarray, suffix: str, info: dict) -> Structure:
    return Structure(
        numbers=structure.numbers.copy(), positions=positions, charge=structure.charge, spin=structure.spin,
        name=f"{structure.name or 'structure'}{suffix}", source=structure.source, info={**structure.info, **info},
    )


def _check_counts(n: int, label: str) -> None:
    if n < 0:
        raise InputError(f"{label}: number of samples must be >= 0, got {n}")


# ----------------------------------------------------------------------------------------------------------------------
# Gaussian jitter
# ----------------------------------------------------------------------------------------------------------------------

def gaussian_jitter(structure: Structure, sigma_angstrom: float, n: int, seed: int = 0) -> list[Structure]:
    """``n`` copies with independent N(0, sigma²) displacements (Å) on every Cartesian coordinate.

    Reproducible for a given ``seed``. Names get ``_j<k>``; ``info`` gets ``sampling="gaussian_jitter"``,
    ``sampling_sigma_angstrom``, ``sampling_seed``, ``sampling_index`` and ``parent`` (the parent's name).
    """
    _check_counts(n, structure.label)
    if not sigma_angstrom >= 0:
        raise InputError(f"{structure.label}: jitter sigma must be >= 0 Å, got {sigma_angstrom}")
    rng = np.random.default_rng(seed)
    shape = structure.positions.shape
    out = []
    for k in range(n):
        positions = _draw_sane(lambda r: r.normal(0.0, sigma_angstrom, size=shape), structure.positions, rng,
                               structure.label)
        info = {"sampling": "gaussian_jitter", "sampling_sigma_angstrom": float(sigma_angstrom),
                "sampling_seed": int(seed), "sampling_index": k, "parent": structure.name}
        out.append(_child(structure, positions, f"_j{k}", info))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# normal modes
# ----------------------------------------------------------------------------------------------------------------------

def _mol_with_coordinates(structure: Structure, mol=None):
    """RDKit molecule with bond orders and the structure's coordinates (Å) as its only conformer.

    ``mol`` (optional) supplies the bonds; it must hold the same atoms, hydrogens included, in the same order.
    Without it, bonds are perceived from the geometry with ``rdDetermineBonds``.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.rdBase import BlockLogs

    from .elements import symbol

    if mol is None:
        rows = [f"{symbol(int(z))} {x:.10f} {y:.10f} {zc:.10f}" for z, (x, y, zc) in
                zip(structure.numbers, structure.positions)]
        with BlockLogs():
            mol = Chem.MolFromXYZBlock(f"{structure.n_atoms}\n\n" + "\n".join(rows) + "\n")
            try:
                rdDetermineBonds.DetermineBonds(mol, charge=int(structure.charge))
            except (ValueError, RuntimeError) as e:
                raise InputError(
                    f"{structure.label}: cannot assign bonds for the force field ({e}); pass an RDKit mol"
                ) from None
        return mol
    if [a.GetAtomicNum() for a in mol.GetAtoms()] != [int(z) for z in structure.numbers]:
        raise InputError(f"{structure.label}: the RDKit mol's atoms do not match the structure (same order, with H)")
    mol = Chem.Mol(mol)
    mol.RemoveAllConformers()
    conf = Chem.Conformer(structure.n_atoms)
    conf.SetPositions(structure.positions.copy())
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    return mol


def _gradient_function(mol, label: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """(gradient(positions (n, 3) Å) -> (3n,) kcal/mol/Å, force-field name): MMFF94, else UFF.

    Inter-fragment terms are kept. A fresh force field is built per call: RDKit's ``ForceField.CalcGrad``
    returns wrong gradients when called repeatedly on one object, and setup is cheap.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.rdBase import BlockLogs

    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    with BlockLogs():
        props = AllChem.MMFFGetMoleculeProperties(mol)
        if props is not None and AllChem.MMFFHasAllMoleculeParams(mol):
            name = "MMFF94"

            def build():
                return AllChem.MMFFGetMoleculeForceField(mol, props, ignoreInterfragInteractions=False)
        elif AllChem.UFFHasAllMoleculeParams(mol):
            name = "UFF"

            def build():
                return AllChem.UFFGetMoleculeForceField(mol, ignoreInterfragInteractions=False)
        else:
            raise InputError(f"{label}: neither MMFF94 nor UFF has parameters for this molecule")

    def gradient(positions: np.ndarray) -> np.ndarray:
        conf.SetPositions(np.asarray(positions, dtype=np.float64).reshape(-1, 3))
        return np.asarray(build().CalcGrad())

    return gradient, name


def numerical_hessian(gradient: Callable[[np.ndarray], np.ndarray], positions: np.ndarray,
                      step: float = 5e-3) -> np.ndarray:
    """(3n, 3n) Hessian (kcal/mol/Å²) by central differences (step in Å) of ``gradient`` (kcal/mol/Å)."""
    x0 = np.asarray(positions, dtype=np.float64).ravel()
    hess = np.empty((x0.size, x0.size))
    for i in range(x0.size):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += step
        xm[i] -= step
        hess[i] = (gradient(xp) - gradient(xm)) / (2 * step)
    return 0.5 * (hess + hess.T)


def _rigid_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal (3n, k) basis of mass-weighted translations and rotations; k = 6, 5 (linear) or 3 (atom)."""
    sqrt_m = np.sqrt(masses)
    centered = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vectors = []
    for axis in np.eye(3):
        vectors.append((sqrt_m[:, None] * axis[None, :]).ravel())
        vectors.append((sqrt_m[:, None] * np.cross(centered, axis[None, :])).ravel())
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()]


def harmonic_modes(structure: Structure, mol=None, step: float = 5e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Vibrational modes of the force field at the structure's geometry.

    Returns (eigenvalues (m,) in kcal/mol/Å²/amu, mass-weighted eigenvectors (3n, m), masses (n,) in amu,
    force-field name), with the 6 (5 for linear molecules) rigid-body modes, i.e. the smallest |eigenvalue|
    after projecting out translations and rotations, dropped. Eigenvalues may be negative when the geometry
    is not a force-field minimum.
    """
    if structure.n_atoms < 2:
        raise InputError(f"{structure.label}: normal-mode sampling needs at least 2 atoms")
    mol = _mol_with_coordinates(structure, mol)
    gradient, ff_name = _gradient_function(mol, structure.label)
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    hess = numerical_hessian(gradient, structure.positions, step)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    hess_mw = hess * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    rigid = _rigid_basis(structure.positions, masses)
    proj = np.eye(len(hess_mw)) - rigid @ rigid.T
    evals, evecs = np.linalg.eigh(proj @ hess_mw @ proj)
    keep = np.sort(np.argsort(np.abs(evals))[rigid.shape[1]:])
    return evals[keep], evecs[:, keep], masses, ff_name


def normal_mode_samples(structure: Structure, temperature_kelvin: float, n: int, seed: int = 0, mol=None,
                        *, min_wavenumber: float = 50.0) -> list[Structure]:
    """``n`` classical thermal samples along the harmonic MMFF94 normal modes at ``temperature_kelvin`` (K).

    Bonds come from ``mol`` (an RDKit mol with H in the structure's atom order) or from RDKit's
    rdDetermineBonds. The Hessian (kcal/mol/Å²) is taken at the given geometry by central differences of
    MMFF94 gradients (UFF where MMFF has no parameters), mass-weighted (amu), with rigid-body modes dropped.
    Each mass-weighted mode amplitude q_k ~ N(0, k_B T / omega_k²) with omega_k² = |eigenvalue|, floored at
    ``min_wavenumber`` (cm⁻¹) so soft torsions cannot explode; Cartesian displacement = M^-1/2 sum_k q_k v_k (Å).
    Samples with atoms closer than 0.5 Å are redrawn. Names get ``_nm<k>``; ``info`` gets
    ``sampling="normal_modes"``, ``sampling_temperature_kelvin``, ``sampling_seed``, ``sampling_index``,
    ``sampling_force_field``, ``sampling_min_wavenumber_cm`` and ``parent``.
    """
    _check_counts(n, structure.label)
    if not temperature_kelvin >= 0:
        raise InputError(f"{structure.label}: temperature must be >= 0 K, got {temperature_kelvin}")
    evals, evecs, masses, ff_name = harmonic_modes(structure, mol)
    omega2 = np.maximum(np.abs(evals), (min_wavenumber / WAVENUMBER_PER_SQRT_EIGENVALUE) ** 2)
    sigma_q = np.sqrt(BOLTZMANN_KCAL_PER_MOL_K * temperature_kelvin / omega2)
    cart_modes = evecs * np.repeat(1.0 / np.sqrt(masses), 3)[:, None]  # (3n, m): Å per unit q

    def draw(rng: np.random.Generator) -> np.ndarray:
        return (cart_modes @ (sigma_q * rng.standard_normal(len(sigma_q)))).reshape(-1, 3)

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        positions = _draw_sane(draw, structure.positions, rng, structure.label)
        info = {"sampling": "normal_modes", "sampling_temperature_kelvin": float(temperature_kelvin),
                "sampling_seed": int(seed), "sampling_index": k, "sampling_force_field": ff_name,
                "sampling_min_wavenumber_cm": float(min_wavenumber), "parent": structure.name}
        out.append(_child(structure, positions, f"_nm{k}", info))
    return out
