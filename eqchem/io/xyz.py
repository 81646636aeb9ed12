"""Read plain and extended xyz files (one or more frames, Å) and write multi-frame xyz files atomically."""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError
from .elements import atomic_number, symbol
from .extxyz import charge_spin_from_comment, comment_line, parse_comment, properties_columns
from .structure import Structure
from .textfile import read_text


def _parse_float(token: str) -> float:
    """A float, also accepting Fortran (1.0D-3) and Mathematica (1.0*^-3, as in raw QM9) exponents."""
    try:
        return float(token)
    except ValueError:
        return float(token.replace("*^", "e").replace("D", "e").replace("d", "e"))


def _parse_atom_line(line: str, species_col: int, pos_col: int, where: str) -> tuple[int, list[float]]:
    tokens = line.split()
    if len(tokens) < max(species_col + 1, pos_col + 3):
        raise InputError(f"{where}: expected an atom line 'Symbol x y z', got {line.strip()!r}")
    try:
        z = atomic_number(tokens[species_col])
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    try:
        xyz = [_parse_float(t) for t in tokens[pos_col:pos_col + 3]]
    except ValueError:
        raise InputError(f"{where}: non-numeric coordinates in {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in xyz):
        raise InputError(f"{where}: non-finite coordinates in {line.strip()!r}")
    return z, xyz


def _parse_count(line: str, where: str, frame: int) -> int:
    tokens = line.split()
    if not tokens or not re.fullmatch(r"[+]?\d+", tokens[0]):
        hint = " (the atom count of the previous frame may be wrong)" if frame else ""
        raise InputError(f"{where}: expected the number of atoms, got {line.strip()!r}{hint}")
    n = int(tokens[0])
    if n < 1:
        raise InputError(f"{where}: atom count is {n}; a frame needs at least one atom")
    return n


def _xyz_frames(path: Path, text: str) -> list[tuple[int, int, str, dict[str, str], list[int], list[list[float]]]]:
    """Parse all frames: (frame index, first line number, comment, comment keys, numbers, positions (Å))."""
    lines = text.splitlines()
    frames = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():  # tolerate blank lines between frames and at the end
            i += 1
            continue
        frame, start = len(frames), i + 1
        n = _parse_count(lines[i], f"{path} line {start} (frame {frame})", frame)
        if i + 2 + n > len(lines):
            have = max(0, len(lines) - i - 2)
            raise InputError(
                f"{path} frame {frame} (line {start}): declares {n} atoms but the file ends after {have} atom lines"
            )
        comment = lines[i + 1]
        keys = parse_comment(comment)
        species_col, pos_col = properties_columns(keys, f"{path} line {i + 2}")
        numbers, positions = [], []
        for k in range(n):
            z, xyz = _parse_atom_line(lines[i + 2 + k], species_col, pos_col, f"{path} line {i + 3 + k}")
            numbers.append(z)
            positions.append(xyz)
        frames.append((frame, start, comment, keys, numbers, positions))
        i += 2 + n
    return frames


def read_xyz(path: str | os.PathLike) -> list[Structure]:
    """Read a plain or extended xyz file with one or more frames (positions in Å).

    Name: the file stem for a single frame, ``<stem>_<frame>`` (0-based) for several, unless the comment line
    has an extxyz ``name=`` key. Source: ``"<path>"`` or ``"<path>#<frame>"``. Optional extxyz keys
    ``charge=``, ``spin=`` (2S) or ``multiplicity=`` (2S+1) set charge/spin; other keys go to ``info``.
    """
    path = Path(path)
    frames = _xyz_frames(path, read_text(path))
    multi = len(frames) > 1
    out = []
    for frame, start, comment, keys, numbers, positions in frames:
        charge, spin = charge_spin_from_comment(keys, f"{path} line {start + 1}")
        info = {k: v for k, v in keys.items()
                if k not in ("charge", "spin", "multiplicity", "name", "properties", "lattice", "pbc")}
        if comment.strip() and not keys:
            info["comment"] = comment.strip()
        default_name = f"{path.stem}_{frame}" if multi else path.stem
        out.append(Structure(
            numbers=np.array(numbers), positions=np.array(positions), charge=charge or 0, spin=spin,
            name=keys.get("name") or default_name, source=f"{path}#{frame}" if multi else str(path), info=info,
        ))
    return out


def _new_file_mode() -> int:
    """Permissions an ordinary new file gets under the current umask (mkstemp would give 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_xyz(path: str | os.PathLike, structures: Structure | Iterable[Structure]) -> Path:
    """Write structures as a multi-frame xyz file (Å), atomically (temp file + ``os.replace``).

    The comment line holds extxyz-style ``name=... charge=... spin=...`` which :func:`read_xyz` reads back.
    Returns the path written.
    """
    path = Path(path)
    if isinstance(structures, Structure):
        structures = [structures]
    blocks = []
    for s in structures:
        rows = [f"{s.n_atoms}", comment_line(s)]
        rows += [f"{symbol(int(z)):<2s} {x:16.10f} {y:16.10f} {zc:16.10f}" for z, (x, y, zc) in zip(s.numbers, s.positions)]
        blocks.append("\n".join(rows) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(blocks))
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
