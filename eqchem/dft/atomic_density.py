"""Grid-free electrostatics of superposed atomic densities: the Coulomb part of the ``core-j`` guess.

Every element's neutral, spherically averaged atomic density (PySCF's atomic HF in the molecule's basis,
the density of the ``atom`` initial guess) is fitted, once per element and basis, by an even-tempered
set of s-Gaussians in the Coulomb metric with its charge held at Z. In a molecule that fit becomes one
contracted s function per atom, so the Coulomb matrix of the superposed densities,

    J_μν = Σ_A (μν | ρ_A),

costs one three-centre integral per AO pair and atom (libcint, ~milliseconds for QM9 molecules): no
DFT grid, no density-fitting basis. With the nuclear attraction it is the electrostatic potential of
neutral atoms, which decays exponentially away from each atom: T + V_nuc + J is a short-sighted,
physical Hamiltonian that leaves the network only the local exchange–correlation and charge-relaxation
response. s functions are rotation invariant, so J is exactly equivariant.

Units: exponents in bohr⁻², densities in electrons, matrices in Eh.
"""
from __future__ import annotations

import functools

import numpy as np

from ..io.elements import symbol

RATIO = 3.0
"""Ratio of consecutive fitting exponents (even-tempered; 10 functions for C, N, O in def2-SVP). A tighter
set fits better, but the three-centre integrals cost in proportion to its size, and the fit's error (a
~1 mEh MAE in water's J, mostly in its core on-site elements; tests/test_delta.py
bounds it) is a neutral, short-ranged, element-specific
correction that the network learns with the rest: the charge is exact, so the potential of each neutral
atom still vanishes away from it."""
_RADII = np.geomspace(1e-7, 40.0, 6000)  # bohr: radial quadrature of s functions

Fit = tuple[tuple[float, ...], tuple[float, ...]]
_FITS: dict[tuple[int, str], Fit] = {}  # (Z, basis) -> fit: a cache, computed once per process


def atomic_density_fit(z: int, basis: str) -> Fit:
    """(exponents α_k, coefficients c_k) with ρ_Z ≈ Σ_k c_k g_k, g_k the normalised s Gaussian of exponent
    α_k (PySCF's convention for contraction coefficients): the Coulomb-metric fit of element ``z``'s
    neutral spherical atomic density in ``basis``, its charge held at ``z`` electrons. Computed on first
    use (one atomic HF per element and basis), then cached."""
    key = (int(z), basis)
    if key not in _FITS:
        _FITS[key] = _fit_atomic_density(int(z), basis)
    return _FITS[key]


def _fit_atomic_density(z: int, basis: str) -> Fit:
    from pyscf import df, gto
    from pyscf.scf import atom_hf

    atom = gto.M(atom=[[int(z), (0.0, 0.0, 0.0)]], basis=basis, unit="Bohr", spin=int(z) % 2, verbose=0)
    (_, _, c, occ), = atom_hf.get_atm_nrhf(atom).values()
    dm = (c * occ) @ c.T
    exps = np.concatenate([atom.bas_exp(b) for b in range(atom.nbas)])
    lo, hi = 2.0 * exps.min(), 2.0 * exps.max()
    alphas = lo * RATIO ** np.arange(int(np.ceil(np.log(hi / lo) / np.log(RATIO))) + 1)
    aux = ghost_mole([("H", (0.0, 0.0, 0.0))], {"H": [[0, [float(a), 1.0]] for a in alphas]})  # one per exponent
    metric = aux.intor("int2c2e")                                       # (g_k | g_l)
    proj = np.einsum("ijk,ij->k", df.incore.aux_e2(atom, aux, "int3c2e", aosym="s1"), dm)  # (g_k | ρ)
    charges = s_function_charges(aux)
    # minimise (ρ - Σ c g | ρ - Σ c g) subject to Σ c_k q_k = z (Lagrange multiplier)
    inv = np.linalg.pinv(metric, rcond=1e-12, hermitian=True)
    c0, cq = inv @ proj, inv @ charges
    coef = c0 - cq * (charges @ c0 - z) / (charges @ cq)
    return tuple(float(a) for a in alphas), tuple(float(c) for c in coef)


def ghost_mole(centres, basis: dict):
    """A PySCF Mole of ghost atoms (no nuclei, no electrons): ``centres`` [(element symbol, (x, y, z) bohr)],
    ``basis`` {element symbol: PySCF basis of that element's ghosts}."""
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = [[f"ghost-{sym}", tuple(r)] for sym, r in centres]
    mol.basis = {f"ghost-{sym}": b for sym, b in basis.items()}
    mol.unit, mol.verbose, mol.spin, mol.charge = "Bohr", 0, 0, 0
    return mol.build()


def s_function_charges(mol) -> np.ndarray:
    """∫ φ d³r (nao,) of the s functions of a Mole whose functions sit at the origin (radial quadrature)."""
    r = _RADII
    vals = mol.eval_gto("GTOval_sph", np.stack([np.zeros_like(r), np.zeros_like(r), r], axis=1))
    return 4.0 * np.pi * np.trapezoid(vals * (r ** 2)[:, None], r, axis=0)


def _density_basis(numbers, basis: str) -> dict:
    """{element symbol: PySCF basis of one contracted s function}: each element's fitted atomic density
    (up to scale)."""
    out = {}
    for z in sorted(set(int(z) for z in numbers)):
        alphas, weights = atomic_density_fit(z, basis)
        out[symbol(z)] = [[0] + [[a, w] for a, w in zip(alphas, weights)]]
    return out


def superposed_density_coulomb(mol, basis: str, n_electrons: float | None = None) -> np.ndarray:
    """(nao, nao) Coulomb matrix J (Eh) of the superposed neutral atomic densities of ``mol`` (a PySCF
    Mole in ``basis``), scaled to ``n_electrons`` (default: the neutral count), in ``mol``'s AO order."""
    from pyscf import df, lib

    charges, coords = mol.atom_charges(), mol.atom_coords()
    real = charges > 0  # ghost atoms (charge 0) carry no density
    numbers = [int(z) for z in charges[real]]
    aux = ghost_mole([(symbol(z), r) for z, r in zip(numbers, coords[real])], _density_basis(numbers, basis))
    # PySCF normalises each contracted function: rescale so that atom A's function holds Z_A electrons
    scale = np.array([z / _origin_charge(z, basis) for z in numbers])
    j = lib.unpack_tril(df.incore.aux_e2(mol, aux, "int3c2e", aosym="s2ij") @ scale)  # μ >= ν only: half the cost
    neutral = float(sum(numbers))
    if n_electrons is not None and n_electrons != neutral:
        j = j * (n_electrons / neutral)
    return 0.5 * (j + j.T)


@functools.lru_cache(maxsize=None)
def _origin_charge(z: int, basis: str) -> float:
    """∫ φ d³r of element ``z``'s contracted density function as PySCF normalises it."""
    mol = ghost_mole([(symbol(z), (0.0, 0.0, 0.0))], _density_basis([z], basis))
    return float(s_function_charges(mol)[0])
