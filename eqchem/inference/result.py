"""OrbitalResult: everything that follows from one predicted Hamiltonian, in PySCF's AO order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import orbitals
from ..units import ANGSTROM_BOHR, HARTREE_EV

if TYPE_CHECKING:
    from .uncertainty import Uncertainty


@dataclass
class OrbitalResult:
    """Predicted electronic structure of one molecule (Hartree, Debye, Å; AOs of ``gto.M(basis=basis)``).

    Attributes:
        name: structure name.
        numbers: (n,) atomic numbers; positions: (n, 3) Å.
        basis, xc: the model's level of theory.
        hamiltonian: (nao, nao) Kohn–Sham matrix; overlap: (nao, nao).
        orbital_energies: (nmo,) Eh; orbital_coefficients: (nao, nmo).
        density_matrix: (nao, nao) total density C diag(mo_occ) Cᵀ.
        nocc: occupied orbitals (doubly, plus the ``spin`` singly occupied ones of an open shell);
        homo, lumo, gap: Eh (the HOMO of an open shell is its highest singly occupied orbital).
        dipole: (3,) Debye; mulliken_charges: (n,) e.
        charge: total charge (e); spin: 2S = N_alpha - N_beta (open shells occupy one set of spatial
        orbitals, as ROKS does).
        warnings: what makes this prediction an extrapolation of the model (empty when it is not).
        uncertainty: how far to trust it (:class:`~eqchem.inference.uncertainty.Uncertainty`: estimated 1σ
            errors of H (µEh), HOMO, LUMO, gap (eV) and |μ| (Debye), ``in_domain`` and its reasons, and with
            ``check=True`` the self-consistency flag); None where the model file carries no estimates.
        seconds: wall time of the prediction (network share + diagonalization).
    """

    name: str
    numbers: np.ndarray
    positions: np.ndarray
    basis: str
    xc: str
    hamiltonian: np.ndarray
    overlap: np.ndarray
    orbital_energies: np.ndarray
    orbital_coefficients: np.ndarray
    density_matrix: np.ndarray
    nocc: int
    homo: float
    lumo: float
    gap: float
    dipole: np.ndarray
    mulliken_charges: np.ndarray
    charge: int = 0
    spin: int = 0
    warnings: list = field(default_factory=list)
    uncertainty: "Uncertainty | None" = None
    model: str = ""
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # grids_level, conv_tol of the model's data
    _mole: object = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        """Pickled without its PySCF Mole (rebuilt on first use), so results cross process boundaries."""
        return {**self.__dict__, "_mole": None}

    # -- PySCF views -------------------------------------------------------------------------
    @property
    def mole(self):
        """PySCF ``Mole`` of this structure in the model's basis."""
        if self._mole is None:
            from ..dft.runner import build_mole
            from ..io.structure import Structure

            self._mole = build_mole(Structure(self.numbers, self.positions, charge=self.charge), self.basis,
                                    spin=self.spin)
        return self._mole

    @property
    def formula(self) -> str:
        from ..io.structure import Structure

        return Structure(self.numbers, self.positions).formula

    @property
    def n_electrons(self) -> int:
        return int(self.numbers.sum()) - int(self.charge)

    @property
    def mo_occ(self) -> np.ndarray:
        """Occupations (nmo,): 2, 1 (the singly occupied orbitals of an open shell) or 0."""
        return orbitals.occupations(len(self.orbital_energies), self.n_electrons, self.spin)

    def __repr__(self) -> str:
        gap = f"{self.gap * HARTREE_EV:.3f} eV" if np.isfinite(self.gap) else "n/a"
        if self.uncertainty is not None and np.isfinite(self.gap):
            gap = f"{self.gap * HARTREE_EV:.3f} ± {self.uncertainty.gap_ev:.2f} eV"
        extra = f", charge={self.charge}" if self.charge else ""
        extra += f", spin={self.spin}" if self.spin else ""
        extra += ", extrapolation" if self.warnings else ""
        if self.uncertainty is not None:
            extra += "" if self.uncertainty.in_domain else ", out of domain"
            extra += ", flagged by the check" if self.uncertainty.flagged else ""
        return (f"OrbitalResult({self.name!r}, {self.formula}, {len(self.numbers)} atoms, nao={len(self.overlap)}, "
                f"{self.xc}/{self.basis}, HOMO {self.homo * HARTREE_EV:.3f} eV, gap {gap}{extra})")

    def _scf(self, settings=None):
        """PySCF SCF object of this structure at the model data's level of theory (ROKS for open shells)."""
        from ..dft.runner import make_scf

        return make_scf(self.mole, settings or self.dft_settings(), restricted_open=True)

    def to_pyscf(self):
        """A PySCF RKS (ROKS for open shells) object with mo_energy, mo_coeff, mo_occ set and ``e_tot`` the DFT
        energy of the predicted density (non-self-consistent; one energy evaluation on the data's grid)."""
        mf = self._scf()
        mf.mo_energy = self.orbital_energies.copy()
        mf.mo_coeff = self.orbital_coefficients.copy()
        mf.mo_occ = self.mo_occ
        mf.e_tot = float(mf.energy_tot(dm=mf.make_rdm1(mf.mo_coeff, mf.mo_occ)))
        mf.converged = False  # orbitals are predicted, not converged
        return mf

    def dft_settings(self):
        """The model data's level of theory as DFTSettings (functional, basis, grid, conv_tol)."""
        from ..dft.runner import DFTSettings

        return DFTSettings(xc=self.xc or "b3lyp", basis=self.basis,
                           grid_level=int(self.settings.get("grids_level") or 3),
                           conv_tol=float(self.settings.get("conv_tol") or 1e-10))

    def energy(self) -> float:
        """DFT total energy (Eh) of the predicted density, evaluated non-self-consistently."""
        mf = self._scf()
        return float(mf.energy_tot(dm=mf.make_rdm1(self.orbital_coefficients, self.mo_occ)))

    def refine(self, conv_tol: float | None = None) -> tuple["OrbitalResult", int]:
        """Converge PySCF's SCF from the predicted density; returns (converged result, SCF cycles)."""
        from ..dft.runner import run_scf

        settings = self.dft_settings()
        if conv_tol is not None:
            from dataclasses import replace

            settings = replace(settings, conv_tol=conv_tol)
        mf = self._scf(settings)
        cycles = run_scf(mf, dm0=mf.make_rdm1(self.orbital_coefficients, self.mo_occ))
        res = from_matrix(self.name, self.numbers, self.positions, np.asarray(mf.get_fock()), self.overlap,
                          self.basis, self.xc, self.charge, self.model, self.settings, mole=self.mole,
                          spin=self.spin)
        res.warnings = list(self.warnings)
        res.settings = {**self.settings, "converged": bool(mf.converged), "energy": float(mf.e_tot)}
        return res, cycles

    def minao_scf_cycles(self) -> int:
        """SCF cycles PySCF takes from its own minao guess at the same settings (what :meth:`refine` saves)."""
        from ..dft.runner import run_scf

        return run_scf(self._scf())

    # -- summaries ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """JSON-able record (energies in eV and Hartree, dipole in Debye)."""
        return {
            "name": self.name,
            "formula": self.formula,
            "n_atoms": int(len(self.numbers)),
            "charge": int(self.charge),
            "spin": int(self.spin),
            "multiplicity": int(self.spin) + 1,
            "extrapolation": bool(self.warnings),
            "warnings": list(self.warnings),
            "homo_ev": self.homo * HARTREE_EV,
            "lumo_ev": self.lumo * HARTREE_EV,
            "gap_ev": self.gap * HARTREE_EV,
            "orbital_energies_hartree": self.orbital_energies.tolist(),
            "dipole_debye": self.dipole.tolist(),
            "dipole_norm_debye": float(np.linalg.norm(self.dipole)),
            "mulliken_charges": self.mulliken_charges.tolist(),
            "model": self.model,
            "basis": self.basis,
            "xc": self.xc,
            "seconds": self.seconds,
            "uncertainty": self.uncertainty.summary() if self.uncertainty is not None else None,
        }


def from_matrix(name, numbers, positions, hamiltonian, overlap, basis, xc, charge=0, model="", settings=None,
                mole=None, threshold: float = orbitals.DEFAULT_LINDEP_THRESHOLD, spin: int = 0,
                molecule=None) -> OrbitalResult:
    """Diagonalize a Hamiltonian (with its overlap) into an :class:`OrbitalResult` (``spin`` = 2S: aufbau
    occupations 2/1/0 of its orbitals, restricted open shell). The dipole and Mulliken charges come from
    ``molecule`` (a :class:`~eqchem.dft.molecule.MoleculeContext` of this molecule: its dipole integrals,
    nuclear charges and AO offsets, and its Mole if it built one) when given, else from the Mole (``mole``,
    or built from ``basis``)."""
    from ..dft.runner import dipole_from_integrals

    numbers = np.asarray(numbers)
    nelec = int(numbers.sum()) - int(charge)
    e, c = orbitals.solve_generalized(hamiltonian, overlap, threshold)
    occ = orbitals.occupations(len(e), nelec, spin)
    nocc = int(np.count_nonzero(occ))
    dm = orbitals.density_from_occupations(c, occ)
    homo, lumo, gap = orbitals.frontier(e, nocc)
    if molecule is not None and mole is None and molecule.has_mole():
        mole = molecule.mole
    res = OrbitalResult(
        name=name, numbers=numbers, positions=np.asarray(positions, dtype=float), basis=basis, xc=xc,
        hamiltonian=hamiltonian, overlap=overlap, orbital_energies=e, orbital_coefficients=c,
        density_matrix=dm, nocc=nocc, homo=homo, lumo=lumo, gap=gap, dipole=np.zeros(3),
        mulliken_charges=np.zeros(len(numbers)), charge=int(charge), spin=int(spin), model=model,
        settings=dict(settings or {}),
        _mole=mole,
    )
    if molecule is not None:
        res.dipole = dipole_from_integrals(molecule.dipole_ao, molecule.nuclear_charges,
                                           res.positions * ANGSTROM_BOHR, dm)
        offsets = molecule.ao_offsets
    else:
        from ..basis import mole_ao_offsets
        from ..dft.runner import dipole_from_density

        mol = res.mole
        res.dipole = dipole_from_density(mol, dm)
        offsets = mole_ao_offsets(mol)
    res.mulliken_charges = orbitals.mulliken_charges(dm, overlap, numbers, offsets)
    return res
