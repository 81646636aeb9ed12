"""Element symbols <-> atomic numbers, H to Rn (the same symbols as PySCF's ``pyscf.data.elements``;
tests/test_io.py checks; kept here so that reading a structure file does not import PySCF)."""
from __future__ import annotations

from ..errors import InputError

MAX_Z = 86

_SYMBOLS = ("X "  # index = Z; 0 is a ghost
            "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
            "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
            "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn").split()


def atomic_number(sym: str) -> int:
    """Atomic number of an element symbol (case-insensitive) or a numeric string."""
    s = sym.strip()
    if s.isdigit():
        z = int(s)
        if 1 <= z <= MAX_Z:
            return z
        raise InputError(f"unknown element number '{sym}'")
    s = s.capitalize()
    if s in _SYMBOLS[1:MAX_Z + 1]:
        return _SYMBOLS.index(s)
    raise InputError(f"unknown element symbol '{sym}'")


def heavy_atoms(numbers) -> int:
    """Non-hydrogen atoms (Z > 1) among ``numbers`` (atomic numbers)."""
    return sum(1 for z in numbers if int(z) > 1)


def symbol(z: int) -> str:
    if not 1 <= int(z) <= MAX_Z:
        raise InputError(f"unknown atomic number {z}")
    return _SYMBOLS[int(z)]


SINGLE_BOND_RADII = {1: 0.32, 5: 0.85, 6: 0.75, 7: 0.71, 8: 0.63, 9: 0.64, 14: 1.16, 15: 1.11, 16: 1.03, 17: 0.99,
                     35: 1.14, 53: 1.33}
"""Covalent single-bond radii, Å (Pyykkö & Atsumi, Chem. Eur. J. 15, 186 (2009)), of the organic elements."""
