"""Read molecules from xyz/extxyz, SDF/MOL, SMILES strings and SMILES files; write multi-frame xyz.

Every reader returns ``list[Structure]`` with positions in Å. Any problem with the input raises
:class:`~eqchem.errors.InputError` with a one-line message naming the file (and line, frame or record).
The individual readers do not validate; :func:`read_structures` applies charge/spin overrides and then
calls :meth:`Structure.validate` on every structure.
"""
from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError
from .elements import atomic_number, symbol
from .structure import Structure

log = logging.getLogger(__name__)

XYZ_EXTENSIONS = (".xyz", ".extxyz")
SDF_EXTENSIONS = (".sdf", ".mol", ".sd")
SMILES_EXTENSIONS = (".smi", ".smiles", ".txt")
KNOWN_EXTENSIONS = XYZ_EXTENSIONS + SDF_EXTENSIONS + SMILES_EXTENSIONS

_KEY_VALUE = re.compile(r"""([A-Za-z_][\w\-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|\{[^}]*\}|\S+)""")


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    """Whole file as text; InputError if missing, unreadable, binary or empty."""
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a structure file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read file ({e.strerror or e})") from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    return text


def _parse_float(token: str) -> float:
    """A float, also accepting Fortran (1.0D-3) and Mathematica (1.0*^-3, as in raw QM9) exponents."""
    try:
        return float(token)
    except ValueError:
        return float(token.replace("*^", "e").replace("D", "e").replace("d", "e"))


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


def _charge_spin_from_comment(keys: dict[str, str], where: str) -> tuple[int | None, int | None]:
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


def _properties_columns(keys: dict[str, str], where: str) -> tuple[int, int]:
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


# ----------------------------------------------------------------------------------------------------------------------
# xyz
# ----------------------------------------------------------------------------------------------------------------------

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
        species_col, pos_col = _properties_columns(keys, f"{path} line {i + 2}")
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
    frames = _xyz_frames(path, _read_text(path))
    multi = len(frames) > 1
    out = []
    for frame, start, comment, keys, numbers, positions in frames:
        charge, spin = _charge_spin_from_comment(keys, f"{path} line {start + 1}")
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


def _format_value(value: object) -> str:
    text = str(value)
    if re.fullmatch(r"[\w.+\-]+", text):
        return text
    return '"' + text.replace('"', "'") + '"'


def _comment_line(s: Structure) -> str:
    items: dict[str, object] = {}
    if s.name:
        items["name"] = s.name
    items["charge"] = int(s.charge)
    if s.spin is not None:
        items["spin"] = int(s.spin)
    return " ".join(f"{k}={_format_value(v)}" for k, v in items.items())


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
        rows = [f"{s.n_atoms}", _comment_line(s)]
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


# ----------------------------------------------------------------------------------------------------------------------
# SDF / MOL
# ----------------------------------------------------------------------------------------------------------------------

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


def _rdkit_mol_to_structure(mol, name: str, source: str, info: dict, conf_id: int = -1) -> Structure:
    """Structure from an RDKit molecule (all atoms, including explicit H) and one conformer (Å)."""
    from rdkit import Chem

    conf = mol.GetConformer(conf_id)
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    return Structure(
        numbers=np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
        positions=np.array(conf.GetPositions(), dtype=np.float64),
        charge=Chem.GetFormalCharge(mol), spin=radicals or None, name=name, source=source, info=info,
    )


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
    return _rdkit_mol_to_structure(mol, name or default, f"{path}#{index}" if multi else str(path), info)


def read_sdf(path: str | os.PathLike) -> list[Structure]:
    """Read all records of an SDF or MOL file with RDKit, keeping hydrogens and the file's coordinates (Å).

    Charge = sum of formal charges; spin = number of radical electrons (``M  RAD``) or None. Heavy-atom-only
    records get their implicit hydrogens added with generated coordinates (``info["added_hydrogens"]``).
    Name: the record's title line, else ``<stem>_<i>`` (``<stem>`` for a single record).
    """
    path = Path(path)
    records = _sdf_records(_read_text(path))
    if not records:
        raise InputError(f"{path}: no molecule records found")
    multi = len(records) > 1
    return [_sdf_record_to_structure(path, i, lineno, block, multi) for i, (lineno, block) in enumerate(records)]


# ----------------------------------------------------------------------------------------------------------------------
# SMILES
# ----------------------------------------------------------------------------------------------------------------------

def _parse_smiles(smiles: str, where: str):
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    with BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise InputError(f"{where}: cannot parse SMILES {smiles!r}")
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() < 1:
            raise InputError(f"{where}: SMILES {smiles!r} contains a dummy atom '*'")
    return mol


def _embed(mol, n_conformers: int, seed: int, where: str) -> list[int]:
    """ETKDGv3 conformers (random coordinates as fallback); InputError when none can be embedded."""
    from rdkit.Chem import AllChem
    from rdkit.rdBase import BlockLogs

    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    with BlockLogs():
        cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
        if len(cids) < n_conformers:
            params.useRandomCoords = True
            cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not cids:
        raise InputError(f"{where}: 3D embedding failed (ETKDGv3, seed {seed}); try another seed or give coordinates")
    return cids


FRAGMENT_GAP_ANGSTROM = 3.0
"""Gap (Å) between the bounding boxes of disconnected fragments (salts, complexes) before relaxation."""


def _separate_fragments(mol, cids: list[int]) -> None:
    """Line disconnected fragments up along x, FRAGMENT_GAP_ANGSTROM apart (ETKDG stacks them on each other)."""
    from rdkit import Chem

    fragments = Chem.GetMolFrags(mol)
    if len(fragments) < 2:
        return
    for cid in cids:
        conf = mol.GetConformer(cid)
        positions = conf.GetPositions()
        right_edge = None
        for atoms in fragments:
            block = positions[list(atoms)]
            block -= block.mean(axis=0)
            if right_edge is not None:
                block[:, 0] += right_edge + FRAGMENT_GAP_ANGSTROM - block[:, 0].min()
            right_edge = block[:, 0].max()
            positions[list(atoms)] = block
        conf.SetPositions(positions)


def _relax(mol) -> str:
    """Relax all conformers in place with MMFF94, or UFF where MMFF lacks parameters; returns the force field.

    Inter-fragment interactions are kept, so salts and complexes relax to contact distances.
    """
    from rdkit.Chem import AllChem
    from rdkit.rdBase import BlockLogs

    with BlockLogs():
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000, ignoreInterfragInteractions=False)
            return "MMFF94"
        if AllChem.UFFHasAllMoleculeParams(mol):
            AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000, ignoreInterfragInteractions=False)
            return "UFF"
    return "none"


def read_smiles(smiles: str, n_conformers: int = 1, seed: int = 0, name: str | None = None,
                *, where: str | None = None) -> list[Structure]:
    """3D conformers of a SMILES: RDKit AddHs + ETKDGv3 (randomSeed=seed) + MMFF94 (UFF fallback) relaxation.

    Returns up to ``n_conformers`` structures (Å) named ``<name or canonical SMILES>_c<k>``; charge = sum of
    formal charges, spin = radical electrons or None; ``info`` has the canonical SMILES and the force field.
    ``where`` prefixes error messages (e.g. ``"file.smi line 3"``).
    """
    from rdkit import Chem

    where = where or "SMILES"
    if n_conformers < 1:
        raise InputError(f"{where}: n_conformers must be >= 1, got {n_conformers}")
    mol = _parse_smiles(smiles, where)
    canonical = Chem.MolToSmiles(mol)
    mol = Chem.AddHs(mol)
    cids = _embed(mol, n_conformers, seed, f"{where} {smiles!r}")
    _separate_fragments(mol, cids)
    force_field = _relax(mol)
    base = name or canonical
    return [
        _rdkit_mol_to_structure(
            mol, f"{base}_c{k}", smiles.strip(),
            {"smiles": canonical, "conformer": k, "seed": int(seed), "force_field": force_field}, conf_id=cid,
        )
        for k, cid in enumerate(cids)
    ]


def read_smiles_file(path: str | os.PathLike, n_conformers: int = 1, seed: int = 0) -> list[Structure]:
    """SMILES file: one ``SMILES [name]`` per line; blank lines, ``#`` comments and a ``SMILES`` header skipped."""
    path = Path(path)
    out: list[Structure] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#") or (lineno == 1 and tokens[0].lower() == "smiles"):
            continue
        name = tokens[1] if len(tokens) > 1 else None
        structures = read_smiles(tokens[0], n_conformers, seed, name, where=f"{path} line {lineno}")
        for s in structures:
            s.source = f"{path}:{lineno}"
        out += structures
    if not out:
        raise InputError(f"{path}: no SMILES found (only blank or comment lines)")
    return out


# ----------------------------------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------------------------------

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
            _parse_smiles(text, "SMILES")
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
