"""Element symbols <-> atomic numbers (PySCF's table)."""
from __future__ import annotations

from ..errors import InputError

MAX_Z = 86


def _table():
    from pyscf.data.elements import ELEMENTS

    return ELEMENTS  # index = Z, ELEMENTS[0] = "X" (ghost)


def atomic_number(sym: str) -> int:
    """Atomic number of an element symbol (case-insensitive) or a numeric string."""
    s = sym.strip()
    if s.isdigit():
        z = int(s)
        if 1 <= z <= MAX_Z:
            return z
        raise InputError(f"unknown element number '{sym}'")
    s = s.capitalize()
    table = _table()
    if s in table[1:MAX_Z + 1]:
        return table.index(s)
    raise InputError(f"unknown element symbol '{sym}'")


def symbol(z: int) -> str:
    if not 1 <= int(z) <= MAX_Z:
        raise InputError(f"unknown atomic number {z}")
    return _table()[int(z)]
