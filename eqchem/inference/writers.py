"""Writing predictions: JSON records, eqchem HDF5 (same format as the data), molden and cube files."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from typing import TYPE_CHECKING

import numpy as np

from .. import keys
from ..version import __version__
from .result import OrbitalResult

if TYPE_CHECKING:  # h5py and the store are imported where HDF5 is written (a JSON run needs neither)
    import h5py


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, records: Sequence[dict]) -> None:
    _atomic_write_text(Path(path), json.dumps(list(records), indent=1))


def check_output_path(path: Path, option: str, directory: bool = False) -> None:
    """Raise InputError (naming ``option`` and ``path``) unless ``path`` can be written: a file, or with
    ``directory`` a folder, whose missing parents can be created. Checked before any work is done."""
    from ..errors import InputError

    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        raise InputError(f"{option} {path}: is {'a file' if directory else 'a directory'}; give "
                         f"{'a directory' if directory else 'a file path'}")
    parent = path if directory and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: {parent} is a file, not a directory")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise InputError(f"{option} {path}: {target} is not writable; choose another location")


def _h5_record(r: OrbitalResult) -> dict:
    """One prediction as a group of the eqchem HDF5 format (names from :mod:`eqchem.keys`)."""
    rec = {
        keys.ATOMIC_NUMBERS: r.numbers.astype(np.int64), keys.POSITIONS: r.positions,
        keys.HAMILTONIAN: r.hamiltonian, keys.OVERLAP: r.overlap, keys.DENSITY_MATRIX: r.density_matrix,
        keys.ORBITAL_ENERGIES: r.orbital_energies, keys.ORBITAL_COEFFICIENTS: r.orbital_coefficients,
        keys.ORBITAL_OCCUPATIONS: r.mo_occ, keys.DIPOLE: r.dipole,
        "attrs": {keys.CHARGE: r.charge, keys.SPIN: r.spin, keys.CONVERGED: False, keys.SCF_CYCLES: 0,
                  keys.SOURCE: r.name, keys.NAME: r.name, "predicted_by": r.model,
                  "homo": r.homo, "lumo": r.lumo, "gap": r.gap, "extrapolation": bool(r.warnings),
                  "warnings": "; ".join(r.warnings)},
    }
    if "energy" in r.settings:
        rec[keys.ENERGY] = np.float64(r.settings["energy"])
    if r.uncertainty is not None:  # every estimate as an attribute uncertainty_<field> (units in the field name)
        for k, v in r.uncertainty.summary().items():
            if v is not None:
                if isinstance(v, list):  # the reasons, "; "-joined; numbers (the check's estimates) as an array
                    v = "; ".join(v) if all(isinstance(x, str) for x in v) else np.asarray(v, dtype=np.float64)
                rec["attrs"][f"uncertainty_{k}"] = v
    return rec


def _h5_header(f: h5py.File, model_attrs: dict) -> h5py.Group:
    f.attrs[keys.FORMAT_VERSION_ATTR] = keys.FORMAT_VERSION
    f.attrs[keys.AO_CONVENTION] = "pyscf"
    f.attrs[keys.EQCHEM_VERSION] = __version__
    for k, v in model_attrs.items():
        f.attrs[k] = v if v is not None else ""
    return f.create_group(keys.MOLECULES)


def _unique_key(name: str, used: set[str]) -> str:
    from ..data.store import sanitize_key

    key = base = sanitize_key(name)
    n = 1
    while key in used:
        n += 1
        key = f"{base}_{n}"
    used.add(key)
    return key


def write_h5(path: Path, results: Sequence[OrbitalResult], model_attrs: dict) -> None:
    """Predictions in the eqchem HDF5 format (``/molecules/<name>``), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    import h5py

    from ..data.store import write_group

    try:
        with h5py.File(tmp, "w") as f:
            mols = _h5_header(f, model_attrs)
            used: set[str] = set()
            for r in results:
                write_group(mols.create_group(_unique_key(r.name, used)), _h5_record(r))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ResultStream:
    """Predictions written as each one finishes, so an interrupted run keeps what it finished.

    ``.json``: a JSON array of :meth:`OrbitalResult.summary` records that is complete (valid JSON) after
    every record; ``.h5``: the eqchem HDF5 format, the file closed after every structure. The file is
    created (replacing an older one) when the stream opens, before any prediction.
    """

    def __init__(self, path: Path, model_attrs: dict):
        self.path = Path(path)
        self.count = 0
        self._used: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".json":
            self.path.write_text("[\n]\n")
        else:
            import h5py

            with h5py.File(self.path, "w") as f:
                _h5_header(f, model_attrs)

    def add(self, result: OrbitalResult, record: dict) -> None:
        if self.path.suffix == ".json":
            text = json.dumps(record, indent=1)
            with open(self.path, "r+b") as f:
                f.seek(-len(b"]\n"), os.SEEK_END)
                f.write(((",\n" if self.count else "") + text + "\n]\n").encode())
        else:
            import h5py

            from ..data.store import write_group

            with h5py.File(self.path, "a") as f:
                write_group(f[keys.MOLECULES].create_group(_unique_key(result.name, self._used)), _h5_record(result))
        self.count += 1


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

    from ..data.store import sanitize_key

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
