"""Read molecules from xyz/extxyz, SDF/MOL, SMILES strings and SMILES files; write multi-frame xyz.

Every reader returns ``list[Structure]`` with positions in Å. Any problem with the input raises
:class:`~eqchem.errors.InputError` with a one-line message naming the file (and line, frame or record).
The individual readers do not validate; :func:`read_structures` applies charge/spin overrides and then
calls :meth:`Structure.validate` on every structure.

This module dispatches on the input (file extension, or a SMILES string) and re-exports the readers:
:mod:`~eqchem.io.xyz` (with :mod:`~eqchem.io.extxyz` for comment lines), :mod:`~eqchem.io.sdf` and
:mod:`~eqchem.io.smiles`.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .extxyz import parse_comment
from .sdf import read_sdf
from .smiles import FRAGMENT_GAP_ANGSTROM, parse_smiles, read_smiles, read_smiles_file
from .structure import Structure
from .xyz import read_xyz, write_xyz

__all__ = [
    "XYZ_EXTENSIONS", "SDF_EXTENSIONS", "SMILES_EXTENSIONS", "KNOWN_EXTENSIONS", "FRAGMENT_GAP_ANGSTROM",
    "parse_comment", "read_xyz", "write_xyz", "read_sdf", "read_smiles", "read_smiles_file", "read_structures",
]

XYZ_EXTENSIONS = (".xyz", ".extxyz")
SDF_EXTENSIONS = (".sdf", ".mol", ".sd")
SMILES_EXTENSIONS = (".smi", ".smiles", ".txt")
KNOWN_EXTENSIONS = XYZ_EXTENSIONS + SDF_EXTENSIONS + SMILES_EXTENSIONS


def _read_path(path: Path, n_conformers: int, seed: int) -> list[Structure]:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a structure file")
    ext = path.suffix.lower()
    if ext in XYZ_EXTENSIONS:
        return read_xyz(path)
    if ext in SDF_EXTENSIONS:
        return read_sdf(path)
    if ext in SMILES_EXTENSIONS:
        return read_smiles_file(path, n_conformers, seed)
    raise InputError(f"{path}: unknown file extension {ext or '(none)'!r}; expected one of {', '.join(KNOWN_EXTENSIONS)}")


def _validated(s: Structure) -> Structure:
    try:
        return s.validate()
    except InputError as e:
        msg = str(e)
        if s.source and s.source not in msg:
            msg = f"{s.source}: {msg}"
        raise InputError(msg) from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a long SMILES is "file name too long"
        return False


def read_structures(inp: str | os.PathLike, *, charge: int | None = None, spin: int | None = None,
                    n_conformers: int = 1, seed: int = 0) -> list[Structure]:
    """Read a structure file (xyz/extxyz, sdf/mol/sd, smi/smiles/txt) or a SMILES string; validate all.

    A string that is neither an existing path nor ends with a known extension is parsed as SMILES.
    ``charge`` (e) and ``spin`` (2S) override what the input says when not None. ``n_conformers`` and
    ``seed`` apply to SMILES input only.
    """
    text = str(os.fspath(inp))
    if not text.strip():
        raise InputError("empty input: give a structure file or a SMILES string")
    path = Path(text)
    if _exists(path):
        structures = _read_path(path, n_conformers, seed)
    elif path.suffix.lower() in KNOWN_EXTENSIONS or isinstance(inp, os.PathLike):
        raise InputError(f"file not found: {path}")
    else:
        try:
            parse_smiles(text, "SMILES")
        except InputError:
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise InputError(f"{shown!r} is neither an existing file nor a valid SMILES string") from None
        structures = read_smiles(text, n_conformers, seed)
    for s in structures:
        if charge is not None:
            s.charge = int(charge)
        if spin is not None:
            s.spin = int(spin)
    return [_validated(s) for s in structures]
