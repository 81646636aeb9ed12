"""Read SDF/MOL files with RDKit: every record, hydrogens and the file's 3D coordinates (Å) kept."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputError
from .rdkit_mol import rdkit_mol_to_structure
from .structure import Structure
from .textfile import read_text

log = logging.getLogger("eqchem.io.readers")  # the logger these messages had before the readers were split


def _sdf_records(text: str) -> list[tuple[int, str]]:
    """Split SDF text at ``$$$$`` lines: (first line number, mol block) per non-empty record."""
    records, current, start = [], [], 1
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip() == "$$$$":
            if any(r.strip() for r in current):
                records.append((start, "\n".join(current) + "\n"))
            current, start = [], lineno + 1
        else:
            current.append(line)
    if any(r.strip() for r in current):
        records.append((start, "\n".join(current) + "\n"))
    return records


def _sdf_record_to_structure(path: Path, index: int, lineno: int, block: str, multi: bool) -> Structure:
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    where = f"{path} record {index} (line {lineno})"
    with BlockLogs():
        mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
    if mol is None:
        raise InputError(f"{where}: cannot parse the molecule block (malformed MOL/SDF record)")
    if mol.GetNumAtoms() == 0:
        raise InputError(f"{where}: record has no atoms")
    if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
        raise InputError(f"{where}: record has only 2D coordinates (all z = 0); give 3D coordinates, xyz or SMILES")
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() < 1:
            raise InputError(f"{where}: unknown element symbol {atom.GetSymbol()!r} (atom {atom.GetIdx() + 1})")
    info: dict = {}
    with BlockLogs():
        failed = Chem.SanitizeMol(mol, catchErrors=True)
    if failed == Chem.SanitizeFlags.SANITIZE_NONE:
        n_implicit = sum(a.GetNumImplicitHs() for a in mol.GetAtoms())
        if n_implicit:
            mol = Chem.AddHs(mol, addCoords=True)
            info["added_hydrogens"] = n_implicit
            log.warning("%s: added %d missing hydrogen atoms with generated coordinates", where, n_implicit)
    name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    default = f"{path.stem}_{index}" if multi else path.stem
    return rdkit_mol_to_structure(mol, name or default, f"{path}#{index}" if multi else str(path), info)


def read_sdf(path: str | os.PathLike) -> list[Structure]:
    """Read all records of an SDF or MOL file with RDKit, keeping hydrogens and the file's coordinates (Å).

    Charge = sum of formal charges; spin = number of radical electrons (``M  RAD``) or None. Heavy-atom-only
    records get their implicit hydrogens added with generated coordinates (``info["added_hydrogens"]``).
    Name: the record's title line, else ``<stem>_<i>`` (``<stem>`` for a single record).
    """
    path = Path(path)
    records = _sdf_records(read_text(path))
    if not records:
        raise InputError(f"{path}: no molecule records found")
    multi = len(records) > 1
    return [_sdf_record_to_structure(path, i, lineno, block, multi) for i, (lineno, block) in enumerate(records)]
