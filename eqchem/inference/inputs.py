"""Anything a user hands ``eqchem.predict`` -> :class:`~eqchem.io.structure.Structure` objects, with charge
and spin: files, (numbers, positions Å), ``ase.Atoms``, PySCF ``Mole``, Structures, or lists of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.structure import Structure
from ..units import BOHR_ANGSTROM


def _int_info(info: dict, key: str) -> int | None:
    value = info.get(key)
    return None if value is None else int(round(float(value)))


def _from_ase(atoms) -> Structure:
    """``ase.Atoms`` -> Structure: charge from ``info['charge']`` (else the summed initial charges), spin (2S)
    from ``info['spin']``, ``info['multiplicity']`` (2S+1) or the summed initial magnetic moments."""
    info = dict(atoms.info)
    charge = _int_info(info, "charge")
    if charge is None and atoms.has("initial_charges"):
        charge = int(round(float(np.sum(atoms.get_initial_charges()))))
    spin = _int_info(info, "spin")
    if spin is None and info.get("multiplicity") is not None:
        spin = _int_info(info, "multiplicity") - 1
    if spin is None and atoms.has("initial_magmoms"):
        spin = int(round(abs(float(np.sum(atoms.get_initial_magnetic_moments()))))) or None
    name = str(info.get("name") or atoms.get_chemical_formula())
    return Structure(atoms.get_atomic_numbers(), atoms.get_positions(), charge=charge or 0, spin=spin, name=name,
                     source="ase.Atoms")


def _from_mole(mol) -> Structure:
    """PySCF ``Mole`` -> Structure with its charge and spin; its basis is kept in ``info['basis']`` so that
    prediction can refuse a Mole built in another basis than the model's."""
    s = Structure(mol.atom_charges(), mol.atom_coords() * BOHR_ANGSTROM, charge=int(mol.charge),
                  spin=int(mol.spin) or None, source="pyscf.gto.Mole")
    s.name = f"Mole {s.formula}"
    s.info["basis"] = mol.basis
    return s


def as_structures(source) -> list[Structure]:
    """A file path, (numbers, positions Å), an ``ase.Atoms``, a PySCF ``Mole``, a Structure or a list."""
    if isinstance(source, Structure):
        return [source]
    if isinstance(source, (str, Path)):
        from ..io.readers import read_structures

        return read_structures(str(source))
    if type(source).__name__ == "Atoms" and hasattr(source, "get_atomic_numbers"):
        return [_from_ase(source)]
    if hasattr(source, "atom_charges") and hasattr(source, "atom_coords"):  # PySCF Mole
        return [_from_mole(source)]
    if isinstance(source, tuple) and len(source) == 2:
        return [Structure(np.asarray(source[0]), np.asarray(source[1]), name="structure")]
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            out.extend(as_structures(s))
        return out
    raise InputError(f"cannot read a structure from {type(source).__name__}")
