"""Cheap guess Hamiltonians: the baselines that Δ-models correct (``ModelConfig.baseline``).

``core`` is the core Hamiltonian T + V_nuc: analytic one-electron integrals (milliseconds, no grid, no
density fitting), exactly equivariant; the network then learns the whole electronic response J + V_xc - K.

``core-j`` adds the Coulomb matrix of the superposed neutral atomic densities (:mod:`eqchem.dft.atomic_density`):
the electrostatics of neutral atoms, still grid-free (one three-centre integral per AO pair and atom);
the network then learns the local exchange–correlation and charge-relaxation response.

``core-jx`` is T + V_nuc, the long-range Coulomb potential of the atoms' electrons (one Gaussian charge per
atom) and fitted spherical effective atomic potentials (:mod:`eqchem.dft.atomic_potential`) that hold the rest
of the atoms' electrostatics and their exchange–correlation: one three-centre overlap integral per AO pair and
atom, still grid-free, cheaper than core-j and ~10× closer to the SCF matrix; a few dozen coefficients per basis
and functional, solved by least squares on training structures (``eqchem guess --kind core-jx``) and carried
as ``params`` (``{"atomic_potentials": fit, "omega": ω}``) by guess files and model files.

``minao-fock`` is the Kohn–Sham matrix F[P_minao] of the functional, built once from PySCF's minao
(superposition of atomic densities) guess density, with a coarse grid (level 1) and density-fitted
Coulomb/exchange (def2-universal-jkfit): one Fock build, no SCF. On QM9 molecules at B3LYP/def2-SVP it
takes ~0.5–2 s on one core and differs from the converged matrix by ~4.5 mEh MAE; the network then
learns only the (smaller, smoother) SCF response F - F[P_minao].

Fock builds happen in the molecule's principal-axes frame (:mod:`eqchem.dft.frame`), so guesses are
equivariant to round-off.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.config import BASELINES
from .frame import canonical_mole


ANALYTIC_BASELINES = ("core", "core-j", "core-jx")
"""Guesses made of exact integrals only (no grid): equivariant in any frame."""
FITTED_BASELINES = ("core-jx",)
"""Guesses with parameters fitted on training data (``params``: what guess files and model files carry)."""


def analytic_guess(mol, basis: str, kind: str, n_electrons: int | None, params: dict | None = None) -> np.ndarray:
    """T + V_nuc (``core``), plus J of the superposed neutral atomic densities (``core-j``); or T + V_nuc +
    J_lr + the fitted atomic potentials ``params`` (``core-jx``, :mod:`eqchem.dft.atomic_potential`); Eh."""
    if kind == "core-jx":
        from .atomic_potential import superposed_potential, unfitted_part

        fit = fitted_potentials(params)
        return unfitted_part(mol, n_electrons, float(params["omega"])) + superposed_potential(mol, fit)
    hcore = mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")
    if kind == "core-j":
        from .atomic_density import superposed_density_coulomb

        hcore = hcore + superposed_density_coulomb(mol, basis, n_electrons)
    return hcore


def fitted_potentials(params: dict | None) -> dict:
    """The atomic potential fit of a ``core-jx`` guess's ``params``; an error a user can act on without one."""
    fit = (params or {}).get("atomic_potentials")
    if not fit or "omega" not in params:
        raise InputError("the core-jx guess needs fitted atomic potentials (eqchem guess --kind core-jx fits them; "
                         "a core-jx model file carries its own)")
    return fit


def check_baseline(kind: str) -> None:
    if kind not in BASELINES:
        raise InputError(f"unknown guess/baseline '{kind}'; choose from {', '.join(BASELINES)}")


def guess_hamiltonian(numbers, positions, basis: str, xc: str, kind: str = "minao-fock",
                      params: dict | None = None) -> np.ndarray:
    """(nao, nao) guess matrix in Eh, PySCF AO order, for atomic numbers (n,) and positions (n, 3) Å."""
    return guess_and_overlap(numbers, positions, basis, xc, kind, params=params)[0]


def guess_and_overlap(numbers, positions, basis: str, xc: str, kind: str = "minao-fock",
                      frame=None, n_electrons: int | None = None,
                      params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The guess matrix (Eh) and the AO overlap matrix, both (nao, nao) in PySCF AO order.

    ``frame``: the molecule's :class:`CanonicalFrame` when the caller already built it (else built here).
    ``n_electrons`` (default: the neutral molecule's) scales the minao density, a superposition of neutral
    atoms, to the structure's electron count, so an ion's guess holds its own number of electrons.
    ``params``: the fitted parts of a ``core-jx`` guess (:func:`fitted_potentials`).
    """
    check_baseline(kind)
    if frame is None and kind in ANALYTIC_BASELINES:  # exact integrals need no frame: the input's own Mole
        from ..io.structure import Structure
        from .runner import build_mole

        mol = build_mole(Structure(numbers, positions), basis, spin=int(np.sum(numbers)) % 2)
        return analytic_guess(mol, basis, kind, n_electrons, params), mol.intor_symmetric("int1e_ovlp")
    frame = frame or canonical_mole(numbers, positions, basis)
    mol, d = frame.mol, frame.d
    overlap = d @ mol.intor_symmetric("int1e_ovlp") @ d.T
    if kind == "none":
        return np.zeros((mol.nao, mol.nao)), overlap
    if kind in ANALYTIC_BASELINES:  # a frame the caller shares for a Fock step: rotate back
        return d @ analytic_guess(mol, basis, kind, n_electrons, params) @ d.T, overlap
    mf = frame.ks(xc)
    dm = mf.get_init_guess(mol, key="minao")
    neutral = int(np.sum(numbers))
    if n_electrons is not None and n_electrons != neutral:
        dm = dm * (n_electrons / neutral)
    fock = d @ mf.get_fock(dm=dm) @ d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64), overlap
