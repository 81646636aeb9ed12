"""OrbitalResult: everything that follows from one predicted Hamiltonian, in PySCF's AO order."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import orbitals
from ..units import HARTREE_EV


@dataclass
class OrbitalResult:
    """Predicted electronic structure of one molecule (Hartree, Debye, Å; AOs of ``gto.M(basis=basis)``).

    Attributes:
        name: structure name.
        numbers: (n,) atomic numbers; positions: (n, 3) Å.
        basis, xc: the model's level of theory.
        hamiltonian: (nao, nao) Kohn–Sham matrix; overlap: (nao, nao).
        orbital_energies: (nmo,) Eh; orbital_coefficients: (nao, nmo).
        density_matrix: (nao, nao) total density 2 C_occ C_occᵀ.
        nocc: doubly occupied orbitals; homo, lumo, gap: Eh.
        dipole: (3,) Debye; mulliken_charges: (n,) e.
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
    model: str = ""
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # grids_level, conv_tol of the model's data
    _mole: object = field(default=None, repr=False)

    # -- PySCF views -------------------------------------------------------------------------
    @property
    def mole(self):
        """PySCF ``Mole`` of this structure in the model's basis."""
        if self._mole is None:
            from ..dft.runner import build_mole
            from ..io.structure import Structure

            self._mole = build_mole(Structure(self.numbers, self.positions, charge=self.charge), self.basis, spin=0)
        return self._mole

    @property
    def formula(self) -> str:
        from ..io.structure import Structure

        return Structure(self.numbers, self.positions).formula

    @property
    def mo_occ(self) -> np.ndarray:
        occ = np.zeros(len(self.orbital_energies))
        occ[: self.nocc] = 2.0
        return occ

    def to_pyscf(self):
        """A PySCF RKS object with mo_energy, mo_coeff and mo_occ set (for PySCF's analysis tools)."""
        from ..dft.runner import make_scf

        mf = make_scf(self.mole, self.dft_settings())
        mf.mo_energy = self.orbital_energies.copy()
        mf.mo_coeff = self.orbital_coefficients.copy()
        mf.mo_occ = self.mo_occ
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
        from ..dft.runner import make_scf

        mf = make_scf(self.mole, self.dft_settings())
        return float(mf.energy_tot(dm=self.density_matrix))

    def refine(self, conv_tol: float | None = None) -> tuple["OrbitalResult", int]:
        """Converge PySCF's SCF from the predicted density; returns (converged result, SCF cycles)."""
        from ..dft.runner import make_scf, run_scf

        settings = self.dft_settings()
        if conv_tol is not None:
            from dataclasses import replace

            settings = replace(settings, conv_tol=conv_tol)
        mf = make_scf(self.mole, settings)
        cycles = run_scf(mf, dm0=self.density_matrix)
        res = from_matrix(self.name, self.numbers, self.positions, np.asarray(mf.get_fock()), self.overlap,
                          self.basis, self.xc, self.charge, self.model, self.settings, mole=self.mole)
        res.settings = {**self.settings, "converged": bool(mf.converged), "energy": float(mf.e_tot)}
        return res, cycles

    # -- summaries ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """JSON-able record (energies in eV and Hartree, dipole in Debye)."""
        return {
            "name": self.name,
            "formula": self.formula,
            "n_atoms": int(len(self.numbers)),
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
        }


def from_matrix(name, numbers, positions, hamiltonian, overlap, basis, xc, charge=0, model="", settings=None,
                mole=None, threshold: float = orbitals.DEFAULT_LINDEP_THRESHOLD) -> OrbitalResult:
    """Diagonalize a Hamiltonian (with its overlap) into an :class:`OrbitalResult`."""
    numbers = np.asarray(numbers)
    nelec = int(numbers.sum()) - int(charge)
    nocc = nelec // 2
    e, c = orbitals.solve_generalized(hamiltonian, overlap, threshold)
    dm = orbitals.density_matrix(c, nocc)
    homo, lumo, gap = orbitals.frontier(e, nocc)
    res = OrbitalResult(
        name=name, numbers=numbers, positions=np.asarray(positions, dtype=float), basis=basis, xc=xc,
        hamiltonian=hamiltonian, overlap=overlap, orbital_energies=e, orbital_coefficients=c,
        density_matrix=dm, nocc=nocc, homo=homo, lumo=lumo, gap=gap, dipole=np.zeros(3),
        mulliken_charges=np.zeros(len(numbers)), charge=int(charge), model=model, settings=dict(settings or {}),
        _mole=mole,
    )
    from ..dft.runner import dipole_from_density

    mol = res.mole
    res.dipole = dipole_from_density(mol, dm)
    offsets = np.asarray([s[2] for s in mol.aoslice_by_atom()] + [mol.nao])
    res.mulliken_charges = orbitals.mulliken_charges(dm, overlap, numbers, offsets)
    return res
