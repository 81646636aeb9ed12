"""Writing predictions: JSON records, eqchem HDF5 (same format as the data), molden and cube files."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from .. import __version__, keys
from ..data.store import sanitize_key, write_group
from .result import OrbitalResult


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, records: Sequence[dict]) -> None:
    _atomic_write_text(Path(path), json.dumps(list(records), indent=1))


def write_h5(path: Path, results: Sequence[OrbitalResult], model_attrs: dict) -> None:
    """Predictions in the eqchem HDF5 format (``/molecules/<name>``), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs[keys.FORMAT_VERSION_ATTR] = keys.FORMAT_VERSION
            f.attrs[keys.AO_CONVENTION] = "pyscf"
            f.attrs[keys.EQCHEM_VERSION] = __version__
            for k, v in model_attrs.items():
                f.attrs[k] = v if v is not None else ""
            mols = f.create_group(keys.MOLECULES)
            used: set[str] = set()
            for r in results:
                key = sanitize_key(r.name)
                n = 1
                while key in used:
                    n += 1
                    key = f"{sanitize_key(r.name)}_{n}"
                used.add(key)
                rec = {
                    keys.ATOMIC_NUMBERS: r.numbers.astype(np.int64), keys.POSITIONS: r.positions,
                    keys.HAMILTONIAN: r.hamiltonian, keys.OVERLAP: r.overlap, keys.DENSITY_MATRIX: r.density_matrix,
                    keys.ORBITAL_ENERGIES: r.orbital_energies, keys.ORBITAL_COEFFICIENTS: r.orbital_coefficients,
                    keys.ORBITAL_OCCUPATIONS: r.mo_occ, keys.DIPOLE: r.dipole,
                    "attrs": {keys.CHARGE: r.charge, keys.SPIN: 0, keys.CONVERGED: False, keys.SCF_CYCLES: 0,
                              keys.SOURCE: r.name, keys.NAME: r.name, "predicted_by": r.model,
                              "homo": r.homo, "lumo": r.lumo, "gap": r.gap},
                }
                if "energy" in r.settings:
                    rec[keys.ENERGY] = np.float64(r.settings["energy"])
                write_group(mols.create_group(key), rec)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_molden(path: Path, result: OrbitalResult) -> None:
    """Orbitals as a molden file (Jmol, Avogadro, IboView; PySCF reads it back)."""
    from pyscf.tools import molden

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    molden.from_mo(result.mole, str(tmp), result.orbital_coefficients, ene=result.orbital_energies,
                   occ=result.mo_occ)
    os.replace(tmp, path)


CUBE_KINDS = ("homo", "lumo", "density")


def write_cubes(directory: Path, result: OrbitalResult, kinds: Sequence[str], resolution: float | None = None
                ) -> list[Path]:
    """Gaussian cube files of the HOMO, LUMO and/or density (PySCF's cubegen; 80^3 grid by default)."""
    from pyscf.tools import cubegen

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for kind in kinds:
        path = directory / f"{sanitize_key(result.name)}_{kind}.cube"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        kw = {"resolution": resolution} if resolution else {}
        if kind == "density":
            cubegen.density(result.mole, str(tmp), result.density_matrix, **kw)
        else:
            idx = result.nocc - 1 if kind == "homo" else result.nocc
            cubegen.orbital(result.mole, str(tmp), result.orbital_coefficients[:, idx], **kw)
        os.replace(tmp, path)
        out.append(path)
    return out
