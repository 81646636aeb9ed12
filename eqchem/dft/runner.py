"""One PySCF Kohn–Sham calculation per structure: the labels every other part of eqchem learns from."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import keys
from ..errors import BasisError, InputError
from ..io.structure import Structure
from ..units import AU_DEBYE


LABEL_PRESETS: dict[str, dict] = {
    "fast-labels": {"grid_level": 1, "conv_tol": 1e-8, "density_fit": True, "auxbasis": "def2-universal-jkfit"},
    "reference": {"grid_level": 3, "conv_tol": 1e-10, "density_fit": False, "auxbasis": None},
}
"""Named numerical label settings (``eqchem generate --preset NAME``); the level of theory (xc, basis) stays
apart. ``fast-labels``: the shared data's cheap part (density-fitted J/K on def2-universal-jkfit, grid level 1,
conv_tol 1e-8); ``reference``: eqchem's defaults, those of the shared data's QM9 parts."""

PRESET_FIELDS = ("grid_level", "conv_tol", "density_fit", "auxbasis")
"""The settings a preset fixes, in the order its conflicts are reported."""

_FLAGS = {"grid_level": "--grid-level", "conv_tol": "--conv-tol", "density_fit": "--density-fit",
          "auxbasis": "--auxbasis"}


@dataclass(frozen=True)
class DFTSettings:
    """Level of theory and numerical settings of a dataset (stored as root attributes)."""

    xc: str = "b3lyp"
    basis: str = "def2-svp"
    grid_level: int = 3
    conv_tol: float = 1e-10
    max_cycles: int = 100
    density_fit: bool = False
    forces: bool = False
    density_coefficients: str | None = None
    """Auxiliary basis name (e.g. ``def2-universal-jkfit``) to fit the density on, or None."""
    auxbasis: str | None = None
    """Auxiliary basis of density-fitted J/K (with ``density_fit``); None: PySCF's default for the basis and
    functional (def2-universal-jkfit for def2-SVP and a hybrid such as B3LYP, def2-universal-jfit for PBE)."""

    def to_attrs(self) -> dict:
        d = asdict(self)
        d["density_coefficients"] = d["density_coefficients"] or ""
        d["auxbasis"] = d["auxbasis"] or ""
        return d

    def resolved_auxbasis(self) -> str:
        """The auxiliary basis density-fitted J/K use, by its canonical PySCF name (``""`` without density
        fitting): ``auxbasis`` or the one PySCF picks for the basis and functional."""
        if not self.density_fit:
            return ""
        if self.auxbasis:
            return canonical_basis_name(self.auxbasis)
        from pyscf import dft, gto
        from pyscf.df.addons import make_auxbasis

        mol = gto.M(atom="H 0 0 0", basis=self.basis, spin=1, verbose=0)
        mf = dft.UKS(mol)
        mf.xc = self.xc
        name = mf.density_fit().with_df.auxbasis  # None: PySCF picks per element when the DF object builds
        if name is None:
            name = make_auxbasis(mol).get("H")
        return canonical_basis_name(name) if isinstance(name, str) else "even-tempered (PySCF default)"

    def label_preset(self) -> str:
        """The name of the preset (:data:`LABEL_PRESETS`) whose numerical settings these are, else ``""``."""
        for name, preset in LABEL_PRESETS.items():
            if (self.grid_level == preset["grid_level"] and self.conv_tol == preset["conv_tol"]
                    and self.density_fit == preset["density_fit"]
                    and (not self.density_fit or self.resolved_auxbasis() == canonical_basis_name(preset["auxbasis"]))):
                return name
        return ""


def canonical_basis_name(name: str) -> str:
    """A basis name as the PySCF basis file it loads (``def2-svp-jkfit`` and ``weigendjkfit`` are both
    ``def2-universal-jkfit``), lower case; names PySCF has no alias for unchanged (lower case)."""
    import os

    from pyscf.gto import basis as pyscf_basis

    alias = pyscf_basis.ALIAS.get(name.lower().replace("-", "").replace("_", "").replace(" ", ""))
    if isinstance(alias, str) and alias.endswith(".dat"):
        return os.path.basename(alias)[:-4].lower()
    return name.lower()


def preset_settings(preset: str | None, given: dict, **other) -> DFTSettings:
    """DFTSettings of the preset named ``preset`` (None: the defaults, :class:`DFTSettings`'s) with the numerical
    settings ``given`` explicitly ({field of :data:`PRESET_FIELDS`: value}) and the ``other`` fields (xc,
    basis, max_cycles...), which no preset fixes.

    An explicit setting that contradicts the preset is refused (InputError, one line): a preset's settings
    are never overridden, so data labelled with a preset's name has its settings. Explicit settings equal
    to the preset's are accepted; so is ``auxbasis`` naming the same basis file. ``auxbasis`` needs
    density fitting.
    """
    unknown = set(given) - set(PRESET_FIELDS)
    if unknown:
        raise ValueError(f"not a preset setting: {sorted(unknown)}")
    if preset is None:
        values = {**{f: v for f, v in asdict(DFTSettings()).items() if f in PRESET_FIELDS}, **given}
    elif preset not in LABEL_PRESETS:
        raise InputError(f"unknown --preset '{preset}' (known: {', '.join(LABEL_PRESETS)})")
    else:
        values = dict(LABEL_PRESETS[preset])
        for field in PRESET_FIELDS:
            if field in given and not _same_setting(field, given[field], values[field]):
                raise InputError(f"--preset {preset} sets {_describe(field, values[field])}, which "
                                 f"{_describe(field, given[field])} contradicts: drop one of them")
    if values["auxbasis"] and not values["density_fit"]:
        raise InputError(f"--auxbasis {values['auxbasis']} needs --density-fit")
    return DFTSettings(**other, **values)


def _same_setting(field: str, a, b) -> bool:
    if field == "auxbasis":
        return (canonical_basis_name(a) if a else None) == (canonical_basis_name(b) if b else None)
    return a == b


def _describe(field: str, value) -> str:
    if field == "density_fit":
        return "--density-fit" if value else "no density fitting"
    if field == "auxbasis":
        return f"--auxbasis {value}" if value else "no density fitting"  # a preset with it names its basis
    return f"{_FLAGS[field]} {value:g}"


def build_mole(structure: Structure, basis: str, spin: int | None = None):
    """PySCF ``Mole`` for a structure (Å) in a basis; raises BasisError / InputError on bad input."""
    from pyscf import gto

    spin = structure.effective_spin() if spin is None else spin
    try:
        return gto.M(
            atom=[[int(z), tuple(map(float, r))] for z, r in zip(structure.numbers, structure.positions)],
            basis=basis, unit="Angstrom", charge=int(structure.charge), spin=int(spin), verbose=0,
        )
    except (KeyError, ValueError, RuntimeError) as exc:  # PySCF reports unknown bases in several ways
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "basis" in msg.lower() or isinstance(exc, KeyError):
            raise BasisError(f"basis '{basis}' is not available for {structure.formula} in PySCF ({msg})") from None
        raise InputError(f"{structure.label}: PySCF rejected the molecule ({msg})") from None


def check_basis_name(basis: str) -> None:
    """Raise BasisError if PySCF does not know ``basis`` (checked on a hydrogen atom)."""
    from pyscf import gto

    try:
        gto.M(atom="H 0 0 0", basis=basis, spin=1, verbose=0)
    except Exception:
        raise BasisError(f"unknown basis set '{basis}' (PySCF does not know it)") from None


def xc_description(xc: str) -> str:
    """PySCF/libxc's parsed form of a functional string: libxc names and weights, exact-exchange fraction.

    E.g. 'b3lyp' -> 'HYB_GGA_XC_B3LYP (libxc 402) x1; exact exchange 0.2'; it pins down the VWN variant
    and any range separation behind a short name.
    """
    from pyscf.dft import libxc

    try:
        _, terms = libxc.parse_xc(xc)
        exact = libxc.hybrid_coeff(xc)
        omega, alpha, beta = libxc.rsh_coeff(xc)
    except Exception as exc:  # noqa: BLE001 - libxc raises assorted errors
        raise InputError(f"unknown functional '{xc}' ({exc})") from None
    names: dict[int, str] = {}
    for name, code in libxc.XC_CODES.items():  # full libxc names (GGA_X_B88) first, short aliases (B88) after
        if isinstance(code, (int, np.integer)):
            names.setdefault(int(code), name)
    parts = [f"{names.get(int(i), '?')} (libxc {int(i)}) x{float(w):g}" for i, w in terms]
    text = " + ".join(parts) + f"; exact exchange {float(exact):g}"
    if omega:
        text += f"; range separation omega={float(omega):g} alpha={float(alpha):g} beta={float(beta):g}"
    return text


def make_scf(mol, settings: DFTSettings, restricted_open: bool = False):
    """RKS for closed shells, UKS for ``mol.spin > 0`` (ROKS with ``restricted_open``: one set of spatial
    orbitals, as a closed-shell model predicts them), with the dataset's numerical settings."""
    from pyscf import dft

    mf = dft.RKS(mol) if mol.spin == 0 else (dft.ROKS(mol) if restricted_open else dft.UKS(mol))
    mf.xc = settings.xc
    mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycles
    if settings.density_fit:
        mf = mf.density_fit(auxbasis=settings.auxbasis)
    return mf


def kohn_sham_of_density(mol, density: np.ndarray, xc: str, grid_level: int, label: str = "") -> np.ndarray:
    """The restricted Kohn–Sham matrix F[P] (nao, nao) Eh of a closed-shell AO density (nao, nao) on the
    data's grid (what a density-matrix model's prediction becomes before diagonalisation)."""
    if mol.spin:
        raise InputError(f"{label or 'structure'}: density-matrix models predict closed shells only (spin 0)")
    mf = make_scf(mol, DFTSettings(xc=xc, grid_level=grid_level))
    return np.asarray(mf.get_fock(dm=density))


class _CycleCounter:
    def __init__(self):
        self.cycles = 0

    def __call__(self, envs):
        self.cycles = int(envs.get("cycle", self.cycles - 1)) + 1


def run_scf(mf, dm0=None) -> int:
    """Run an SCF (optionally from a density guess) and return its number of cycles."""
    counter = _CycleCounter()
    mf.callback = counter
    mf.kernel(dm0=dm0)
    return counter.cycles


def run_dft(structure: Structure, settings: DFTSettings) -> dict:
    """Kohn–Sham DFT for one structure.

    Returns a dict with the per-structure datasets of the format (numpy arrays; names from
    :mod:`eqchem.keys`) and an ``"attrs"`` dict. ``converged`` may be False: callers decide.
    """
    t0 = time.perf_counter()
    structure.validate()
    mol = build_mole(structure, settings.basis)
    mf = make_scf(mol, settings)
    cycles = run_scf(mf)
    fock = np.asarray(mf.get_fock())
    dm = np.asarray(mf.make_rdm1())
    dm_total = dm if dm.ndim == 2 else dm[0] + dm[1]
    out = {
        keys.ATOMIC_NUMBERS: structure.numbers.astype(np.int64),
        keys.POSITIONS: structure.positions.astype(np.float64),
        keys.HAMILTONIAN: fock,
        keys.OVERLAP: np.asarray(mol.intor_symmetric("int1e_ovlp")),
        keys.DENSITY_MATRIX: dm_total,
        keys.ORBITAL_ENERGIES: np.asarray(mf.mo_energy),
        keys.ORBITAL_COEFFICIENTS: np.asarray(mf.mo_coeff),
        keys.ORBITAL_OCCUPATIONS: np.asarray(mf.mo_occ),
        keys.ENERGY: np.float64(mf.e_tot),
        keys.DIPOLE: np.asarray(mf.dip_moment(unit="Debye", verbose=0)),
    }
    if settings.forces:
        out[keys.FORCES] = -np.asarray(mf.nuc_grad_method().kernel())
    if settings.density_coefficients:
        out[keys.DENSITY_COEFFICIENTS] = density_fit_coefficients(mol, dm_total, settings.density_coefficients)
    out["attrs"] = {
        keys.CHARGE: int(structure.charge),
        keys.SPIN: int(mol.spin),
        keys.CONVERGED: bool(mf.converged),
        keys.SCF_CYCLES: int(cycles),
        keys.SOURCE: structure.source or structure.name,
        keys.NAME: structure.name,
        keys.SECONDS: time.perf_counter() - t0,
        **{k: v for k, v in structure.info.items() if isinstance(v, (str, int, float, bool))},
    }
    return out


def density_fit_coefficients(mol, dm: np.ndarray, auxbasis: str) -> list[np.ndarray]:
    """Coulomb-metric fit of the density on an auxiliary basis; per-atom coefficient arrays.

    Solves ``(P|Q) c_Q = (P|ij) D_ij`` and splits ``c`` by auxiliary-basis atom.
    """
    from pyscf import df

    auxmol = df.addons.make_auxmol(mol, auxbasis)
    int3c = df.incore.aux_e2(mol, auxmol, intor="int3c2e")  # (nao, nao, naux)
    rhs = np.einsum("ijp,ij->p", int3c, dm)
    metric = auxmol.intor("int2c2e")
    coeff = np.linalg.solve(metric, rhs)
    return [coeff[s[2]:s[3]] for s in auxmol.aoslice_by_atom()]


def dipole_from_density(mol, dm: np.ndarray) -> np.ndarray:
    """Dipole moment (3,) in Debye of a total AO density matrix (nuclear + electronic)."""
    return dipole_from_integrals(dipole_ao_integrals(mol), mol.atom_charges(), mol.atom_coords(), dm)


def dipole_ao_integrals(mol) -> np.ndarray:
    """AO integrals <μ|r|ν> (3, nao, nao) about the origin, Bohr."""
    with mol.with_common_orig((0.0, 0.0, 0.0)):
        return mol.intor_symmetric("int1e_r", comp=3)


def dipole_from_integrals(ao_dipole: np.ndarray, nuclear_charges: np.ndarray, coords_bohr: np.ndarray,
                          dm: np.ndarray) -> np.ndarray:
    """Dipole (3,) Debye from :func:`dipole_ao_integrals` (3, nao, nao), the nuclear charges (n,) (of the
    ECP-reduced cores, as ``mol.atom_charges()``), their positions (n, 3) Bohr and a total density (nao, nao)."""
    el = np.einsum("xij,ji->x", ao_dipole, dm).real
    nuc = np.einsum("i,ix->x", nuclear_charges, coords_bohr)
    return (nuc - el) * AU_DEBYE
