"""A small per-file index of the structures of a data file, so that splits and statistics need no pass
over the data.

Splitting by molecule needs every structure's identity (QM9 index, SMILES or formula), its atomic
numbers, charge and spin: one HDF5 group and a few attributes per structure, which adds up for 10^5
structures. :func:`load_index` reads them once and caches them in ``<data>.index.npz`` next to the
data file (or, where that folder is not writable, in ``<run dir>/data_index/``). The cache records the
data file's size, modification time and inode and is rebuilt when any of them changes (``eqchem
generate`` and ``eqchem merge`` replace files atomically, so every rewrite invalidates it).

Memory: ~100 bytes per structure plus its atomic numbers (one byte per atom).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import keys
from ..data.reader import H5Dataset
from ..io.elements import heavy_atoms

INDEX_VERSION = 1
INDEX_SUFFIX = keys.INDEX_SUFFIX
_ATTRS = ("qm9_index", "smiles", keys.SOURCE, keys.CHARGE, keys.SPIN, "parent", keys.NAME)
"""The per-structure attributes the index keeps (what molecule_identity and the split messages use)."""


@dataclass
class FileIndex:
    """Per structure of one file, in the file's (sorted) key order: key, identity
    (:func:`eqchem.training.data.molecule_identity`), name (``parent`` or ``name`` attribute, else ''),
    charge, spin (2S) and atomic numbers (``numbers[offsets[i]:offsets[i+1]]``)."""

    keys: np.ndarray       # (S,) str
    identity: np.ndarray   # (S,) str
    name: np.ndarray       # (S,) str
    charge: np.ndarray     # (S,) int64
    spin: np.ndarray       # (S,) int64
    offsets: np.ndarray    # (S+1,) int64
    numbers: np.ndarray    # (sum of atoms,) uint8

    def __len__(self) -> int:
        return len(self.keys)

    def numbers_of(self, i: int) -> np.ndarray:
        """(n,) int64 atomic numbers of structure i."""
        return self.numbers[self.offsets[i]:self.offsets[i + 1]].astype(np.int64)

    def n_atoms(self) -> np.ndarray:
        return np.diff(self.offsets)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in ("keys", "identity", "name", "charge", "spin", "offsets", "numbers")}


def _stamp(path: Path) -> np.ndarray:
    st = path.stat()
    return np.array([INDEX_VERSION, st.st_size, st.st_mtime_ns, st.st_ino], dtype=np.int64)


def build_index(ds: H5Dataset) -> FileIndex:
    """Read the index of a data file (one pass over its groups' attributes and atomic numbers)."""
    from .data import molecule_identity

    f = ds._h5()[keys.MOLECULES] if len(ds) else None
    ident, names, charge, spin, counts, numbers = [], [], [], [], [], []
    for k in ds.keys():
        g = f[k]
        at = g.attrs
        attrs = {a: (v.decode() if isinstance(v, bytes) else v) for a in _ATTRS if a in at for v in (at[a],)}
        z = np.asarray(g[keys.ATOMIC_NUMBERS]).astype(np.int64)
        ident.append(molecule_identity(attrs, z, k))
        names.append(str(attrs.get("parent") or attrs.get(keys.NAME) or ""))
        charge.append(int(attrs.get(keys.CHARGE, 0)))
        spin.append(int(attrs.get(keys.SPIN, 0)))
        counts.append(len(z))
        numbers.append(z.astype(np.uint8))
    return FileIndex(np.array(ds.keys(), dtype=str), np.array(ident, dtype=str), np.array(names, dtype=str),
                     np.array(charge, dtype=np.int64), np.array(spin, dtype=np.int64),
                     np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
                     np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.uint8))


def index_paths(data_path: Path, run_dir: Path | None) -> list[Path]:
    """Where the index of ``data_path`` is cached, in order of preference: next to the data file, then
    in the run directory (named after the data file's absolute path)."""
    out = [data_path.with_name(data_path.name + INDEX_SUFFIX)]
    if run_dir is not None:
        tag = hashlib.sha1(str(data_path.resolve()).encode()).hexdigest()[:10]
        out.append(Path(run_dir) / "data_index" / f"{data_path.stem}-{tag}{INDEX_SUFFIX}")
    return out


def _read_cached(path: Path, stamp: np.ndarray) -> FileIndex | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not np.array_equal(z["stamp"], stamp):
                return None
            return FileIndex(**{f: z[f] for f in ("keys", "identity", "name", "charge", "spin", "offsets",
                                                  "numbers")})
    except (OSError, KeyError, ValueError):
        return None


def _write_cached(path: Path, index: FileIndex, stamp: np.ndarray) -> bool:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, stamp=stamp, **index.arrays())
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def load_index(ds: H5Dataset, run_dir: Path | None = None) -> tuple[FileIndex, Path | None]:
    """The index of one data file and where it is cached (None: could not be written): a valid cache is
    read, otherwise the index is built and written to the first writable place of :func:`index_paths`."""
    stamp = _stamp(ds.path)
    places = index_paths(ds.path, run_dir)
    for p in places:
        if p.exists():
            idx = _read_cached(p, stamp)
            if idx is not None and list(idx.keys) == ds.keys():
                return idx, p
    idx = build_index(ds)
    for p in places:
        if _write_cached(p, idx, stamp):
            return idx, p
    return idx, None


class DataIndex:
    """The structures of several data files by key (a key in two files: the first file's copy is used):
    ``identity`` (key -> molecule identity), ``where`` (key -> (file number, key)) and per-key numbers,
    charge, spin and name, all from the files' :class:`FileIndex` (cached, see :func:`load_index`)."""

    def __init__(self, dss, run_dir: Path | None = None):
        self.files: list[FileIndex] = []
        self.cached_at: list[Path | None] = []
        self.identity: dict[str, str] = {}
        self.where: dict[str, tuple[int, str]] = {}
        self._row: dict[str, int] = {}
        for di, ds in enumerate(dss):
            idx, at = load_index(ds, run_dir)
            self.files.append(idx)
            self.cached_at.append(at)
            for row, (k, ident) in enumerate(zip(idx.keys.tolist(), idx.identity.tolist())):
                if k in self.where:
                    continue
                self.identity[k] = ident
                self.where[k] = (di, k)
                self._row[k] = row

    def _file(self, key: str) -> tuple[FileIndex, int]:
        return self.files[self.where[key][0]], self._row[key]

    def numbers(self, key: str) -> np.ndarray:
        f, row = self._file(key)
        return f.numbers_of(row)

    def n_atoms(self, key: str) -> int:
        f, row = self._file(key)
        return int(f.offsets[row + 1] - f.offsets[row])

    def charge(self, key: str) -> int:
        f, row = self._file(key)
        return int(f.charge[row])

    def spin(self, key: str) -> int:
        f, row = self._file(key)
        return int(f.spin[row])

    def name(self, key: str) -> str:
        f, row = self._file(key)
        return str(f.name[row])

    def size_ranges(self, keys_used: Sequence[str]) -> tuple[list[int] | None, list[int] | None]:
        """([fewest, most] atoms, [fewest, most] heavy atoms (Z > 1)) of the structures ``keys_used``
        (None, None without any): a model card's ``atoms_range`` and ``heavy_atoms_range``."""
        if not keys_used:
            return None, None
        atoms = [self.n_atoms(k) for k in keys_used]
        heavy = [heavy_atoms(self.numbers(k)) for k in keys_used]
        return [int(min(atoms)), int(max(atoms))], [int(min(heavy)), int(max(heavy))]


def size_ranges_in(paths: Sequence[str | Path], keys_used: Sequence[str]) -> tuple[list | None, list | None, int]:
    """:meth:`DataIndex.size_ranges` of ``keys_used`` read from the data files ``paths``, and how many of the keys
    the files hold: the ranges are None unless they hold every key (a range of some keys is not the card's)."""
    index = DataIndex([H5Dataset(p) for p in paths])
    found = [k for k in keys_used if k in index.where]
    atoms, heavy = index.size_ranges(found) if len(found) == len(keys_used) else (None, None)
    return atoms, heavy, len(found)
