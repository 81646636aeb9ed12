"""Crash-safe writing of the eqchem HDF5 format.

HDF5 files can be left unreadable if a process dies while writing them, so the main file is never
written in place. Finished structures go first to a *journal* directory ``<out>.parts/`` as one small
HDF5 file each (written to a temporary name, then renamed: atomic). :func:`consolidate` copies the
current main file to a temporary file, appends the journal, and atomically renames it over the main
file, then deletes the journal entries it absorbed. A ``kill -9`` at any moment leaves the main file
either in its old or its new state (both readable) and the finished structures in the journal, which
the next run absorbs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from .. import __version__, keys
from ..errors import DataError

_KEY_RE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def sanitize_key(name: str) -> str:
    """An HDF5-safe group name from a structure name (no '/', no spaces)."""
    key = _KEY_RE.sub("_", name).strip("_.") or "structure"
    return key[:200]


def journal_dir(out: Path) -> Path:
    return Path(str(out) + ".parts")


def write_group(group: h5py.Group, record: dict) -> None:
    """Write one structure's arrays (and ``record["attrs"]``) into an HDF5 group."""
    for name, value in record.items():
        if name == "attrs":
            continue
        if name == keys.DENSITY_COEFFICIENTS:
            sub = group.create_group(name)
            for i, c in enumerate(value):
                sub.create_dataset(str(i), data=np.asarray(c, dtype=np.float64))
            continue
        group.create_dataset(name, data=np.asarray(value))
    for k, v in record.get("attrs", {}).items():
        group.attrs[k] = v if v is not None else ""


def _atomic_h5(path: Path):
    """Context manager: an HDF5 file written under a temporary name, renamed to ``path`` on success."""

    class _Ctx:
        def __enter__(self):
            self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            self.f = h5py.File(self.tmp, "w")
            return self.f

        def __exit__(self, exc_type, exc, tb):
            self.f.close()
            if exc_type is None:
                _fsync(self.tmp)
                os.replace(self.tmp, path)
            else:
                self.tmp.unlink(missing_ok=True)
            return False

    return _Ctx()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def save_part(out: Path, key: str, record: dict | None = None, failure: dict | None = None) -> Path:
    """Atomically write one finished (or failed) structure into the journal of ``out``."""
    jdir = journal_dir(out)
    jdir.mkdir(parents=True, exist_ok=True)
    path = jdir / f"{key}.h5"
    with _atomic_h5(path) as f:
        if record is not None:
            write_group(f.create_group(f"{keys.MOLECULES}/{key}"), record)
        else:
            g = f.create_group(f"{keys.FAILURES}/{key}")
            for k, v in (failure or {}).items():
                g.attrs[k] = v
    return path


def journal_keys(out: Path) -> dict[str, str]:
    """Keys in the journal of ``out`` mapped to 'molecules' or 'failures'."""
    found = {}
    jdir = journal_dir(out)
    if not jdir.is_dir():
        return found
    for p in sorted(jdir.glob("*.h5")):
        try:
            with h5py.File(p, "r") as f:
                for grp in (keys.MOLECULES, keys.FAILURES):
                    if grp in f:
                        for k in f[grp]:
                            found[k] = grp
        except OSError:  # a part from a writer killed before its rename never exists; be lenient anyway
            p.unlink(missing_ok=True)
    return found


def file_keys(out: Path) -> dict[str, str]:
    """Keys stored in the main file ``out`` mapped to 'molecules' or 'failures'."""
    found: dict[str, str] = {}
    if not Path(out).exists():
        return found
    with h5py.File(out, "r") as f:
        for grp in (keys.FAILURES, keys.MOLECULES):  # a success overrides an older failure
            if grp in f:
                for k in f[grp]:
                    found[k] = grp
    return found


def root_attrs(out: Path) -> dict:
    with h5py.File(out, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def check_compatible(existing: dict, wanted: dict, what: str) -> None:
    """Refuse to mix data of different levels of theory (xc, basis, grid, conv_tol, density fitting)."""
    for k in (keys.XC, keys.BASIS, keys.GRIDS_LEVEL, keys.CONV_TOL, keys.DENSITY_FIT):
        if k in existing and k in wanted and str(existing[k]).lower() != str(wanted[k]).lower():
            raise DataError(f"{what} has {k}={existing[k]!r} but this run uses {k}={wanted[k]!r}; "
                            f"write to another file")


def consolidate(out: Path, attrs: dict) -> int:
    """Absorb the journal of ``out`` into ``out`` atomically; return the number of entries absorbed."""
    out = Path(out)
    jdir = journal_dir(out)
    parts = sorted(jdir.glob("*.h5")) if jdir.is_dir() else []
    if not parts and out.exists():
        return 0
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if out.exists():
            shutil.copyfile(out, tmp)
        with h5py.File(tmp, "a") as f:
            for k, v in attrs.items():
                if k not in f.attrs or k == "basis_shells":  # the layout grows with new elements
                    f.attrs[k] = v
            f.require_group(keys.MOLECULES)
            f.require_group(keys.FAILURES)
            for p in parts:
                with h5py.File(p, "r") as part:
                    for grp in (keys.MOLECULES, keys.FAILURES):
                        if grp not in part:
                            continue
                        for k in part[grp]:
                            if k in f[keys.MOLECULES]:
                                continue  # never duplicate or overwrite a finished structure
                            if k in f[keys.FAILURES]:
                                del f[keys.FAILURES][k]  # a retried failure: the new outcome wins
                            part.copy(part[grp][k], f[grp], name=k)
        _fsync(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    for p in parts:
        p.unlink(missing_ok=True)
    if jdir.is_dir() and not any(jdir.iterdir()):
        jdir.rmdir()
    return len(parts)


def default_root_attrs(settings_attrs: dict, xc_description: str, pyscf_version: str) -> dict:
    """Root attributes of a new file (format version, level of theory, provenance)."""
    return {
        keys.FORMAT_VERSION_ATTR: keys.FORMAT_VERSION,
        keys.XC: settings_attrs["xc"],
        keys.XC_DESCRIPTION: xc_description,
        keys.BASIS: settings_attrs["basis"].lower(),
        keys.PYSCF_VERSION: pyscf_version,
        keys.AO_CONVENTION: "pyscf",
        keys.GRIDS_LEVEL: int(settings_attrs["grid_level"]),
        keys.CONV_TOL: float(settings_attrs["conv_tol"]),
        keys.DENSITY_FIT: bool(settings_attrs["density_fit"]),
        keys.EQCHEM_VERSION: __version__,
        "settings": json.dumps(settings_attrs),
    }
