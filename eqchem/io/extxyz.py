"""The comment line of an (ext)xyz frame: ``key=value`` pairs read (charge, spin/multiplicity,
``Properties=`` columns) and written (``name= charge= spin=``)."""
from __future__ import annotations

import math
import re

from ..errors import InputError
from .structure import Structure

_KEY_VALUE = re.compile(r"""([A-Za-z_][\w\-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|\{[^}]*\}|\S+)""")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].replace('\\"', '"')
    return value


def parse_comment(comment: str) -> dict[str, str]:
    """``key=value`` pairs of an extxyz comment line (keys lower-cased, quotes removed); {} for plain comments."""
    return {m.group(1).lower(): _unquote(m.group(2)) for m in _KEY_VALUE.finditer(comment)}


def _int_key(keys: dict[str, str], key: str, where: str) -> int | None:
    if key not in keys:
        return None
    try:
        value = float(keys[key])
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise InputError(f"{where}: {key}={keys[key]!r} in the comment line is not an integer")
    return int(value)


def charge_spin_from_comment(keys: dict[str, str], where: str) -> tuple[int | None, int | None]:
    """(charge, spin=2S) from ``charge=``, ``spin=`` or ``multiplicity=`` keys; None where absent."""
    charge = _int_key(keys, "charge", where)
    spin = _int_key(keys, "spin", where)
    mult = _int_key(keys, "multiplicity", where)
    if mult is not None:
        if mult < 1:
            raise InputError(f"{where}: multiplicity={mult} must be >= 1")
        if spin is not None and spin != mult - 1:
            raise InputError(f"{where}: spin={spin} (2S) contradicts multiplicity={mult} (2S+1)")
        spin = mult - 1
    if spin is not None and spin < 0:
        raise InputError(f"{where}: spin={spin} (2S) must be >= 0")
    return charge, spin


def properties_columns(keys: dict[str, str], where: str) -> tuple[int, int]:
    """(species column, first position column) from an extxyz ``Properties=`` key; (0, 1) when absent."""
    spec = keys.get("properties")
    if spec is None:
        return 0, 1
    fields = spec.split(":")
    if len(fields) % 3:
        raise InputError(f"{where}: malformed Properties={spec!r} in the comment line")
    species = pos = None
    col = 0
    for name, _kind, count in zip(fields[0::3], fields[1::3], fields[2::3]):
        if not count.isdigit():
            raise InputError(f"{where}: malformed Properties={spec!r} in the comment line")
        if name.lower() in ("species", "element", "symbols") and species is None:
            species = col
        elif name.lower() in ("pos", "positions") and pos is None:
            pos = col
        col += int(count)
    if species is None or pos is None:
        raise InputError(f"{where}: Properties={spec!r} lacks species or pos columns")
    return species, pos


def _format_value(value: object) -> str:
    text = str(value)
    if re.fullmatch(r"[\w.+\-]+", text):
        return text
    return '"' + text.replace('"', "'") + '"'


def comment_line(s: Structure) -> str:
    items: dict[str, object] = {}
    if s.name:
        items["name"] = s.name
    items["charge"] = int(s.charge)
    if s.spin is not None:
        items["spin"] = int(s.spin)
    return " ".join(f"{k}={_format_value(v)}" for k, v in items.items())
