"""Lazy reading of the eqchem HDF5 format: per-structure records and atom-pair orbital blocks.

Does not import PySCF when the file carries its AO layout (``basis_shells`` root attribute), so
training nodes without PySCF can read data written by ``eqchem generate``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import keys
from ..errors import DataError

BASIS_SHELLS_ATTR = "basis_shells"  # root attr: JSON {Z: [l of every shell, PySCF order]}


@dataclass
class Record:
    """One structure of a dataset. Arrays in Å / Eh / Debye, PySCF AO order."""

    key: str
    numbers: np.ndarray               # (n,) int
    positions: np.ndarray             # (n, 3) Å
    hamiltonian: np.ndarray           # (nao, nao) Eh; UKS: (2, nao, nao)
    overlap: np.ndarray | None        # (nao, nao); None when read with overlap=False
    energy: float | None = None       # Eh
    orbital_energies: np.ndarray | None = None  # (nmo,) Eh
    orbital_coefficients: np.ndarray | None = None  # (nao, nmo)
    density_matrix: np.ndarray | None = None  # (nao, nao)
    dipole: np.ndarray | None = None  # (3,) Debye
    attrs: dict = field(default_factory=dict)

    @property
    def charge(self) -> int:
        return int(self.attrs.get(keys.CHARGE, 0))

    @property
    def n_electrons(self) -> int:
        return int(self.numbers.sum()) - self.charge

    @property
    def nocc(self) -> int:
        """Doubly occupied orbitals of a closed-shell structure."""
        return self.n_electrons // 2

    def ensure_orbitals(self) -> "Record":
        """Fill orbital energies/coefficients and the density matrix from H and S where missing."""
        if self.hamiltonian.ndim != 2:
            return self
        if self.orbital_coefficients is None or self.orbital_energies is None:
            from ..orbitals import solve_generalized

            self.orbital_energies, self.orbital_coefficients = solve_generalized(self.hamiltonian, self.overlap)
        if self.density_matrix is None:
            c = self.orbital_coefficients[:, : self.nocc]
            self.density_matrix = 2.0 * c @ c.T
        return self


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


class H5Dataset:
    """Read-only, lazy view of an eqchem HDF5 file: ``len``, ``keys``, ``ds[i]`` or ``ds[key]``.

    The file handle is opened on first access in each process (safe with DataLoader workers).
    """

    def __init__(self, path: str | Path, keys_subset: list[str] | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"data file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: _decode(v) for k, v in f.attrs.items()}
                names = sorted(f[keys.MOLECULES].keys()) if keys.MOLECULES in f else []
                self.failures = (
                    {k: _decode(f[keys.FAILURES][k].attrs.get(keys.REASON, "")) for k in f[keys.FAILURES]}
                    if keys.FAILURES in f else {}
                )
        except OSError as exc:
            raise DataError(f"{self.path} is not a readable HDF5 file ({exc})") from None
        self._keys = names if keys_subset is None else list(keys_subset)
        self._file: h5py.File | None = None
        self._pid = None

    # -- container protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)

    def subset(self, keys_subset: list[str]) -> "H5Dataset":
        return H5Dataset(self.path, keys_subset)

    def _h5(self) -> h5py.File:
        import os

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __getitem__(self, item: int | str) -> Record:
        return self.read(item)

    def read(self, item: int | str, overlap: bool = True) -> Record:
        """One record; ``overlap=False`` skips reading the overlap matrix (``Record.overlap`` is then None),
        for readers that need only the target matrix (training without the orbital-energy loss)."""
        key = self._keys[item] if isinstance(item, (int, np.integer)) else item
        g = self._h5()[keys.MOLECULES][key]

        def opt(name):
            return np.asarray(g[name]) if name in g else None

        energy = opt(keys.ENERGY)
        return Record(
            key=key,
            numbers=np.asarray(g[keys.ATOMIC_NUMBERS]).astype(np.int64),
            positions=np.asarray(g[keys.POSITIONS], dtype=np.float64),
            hamiltonian=np.asarray(g[keys.HAMILTONIAN], dtype=np.float64),
            overlap=np.asarray(g[keys.OVERLAP], dtype=np.float64) if overlap else None,
            energy=None if energy is None else float(energy),
            orbital_energies=opt(keys.ORBITAL_ENERGIES),
            orbital_coefficients=opt(keys.ORBITAL_COEFFICIENTS),
            density_matrix=opt(keys.DENSITY_MATRIX),
            dipole=opt(keys.DIPOLE),
            attrs={k: _decode(v) for k, v in g.attrs.items()},
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def numbers(self, key: str) -> np.ndarray:
        """Atomic numbers of one structure without reading its matrices."""
        return np.asarray(self._h5()[keys.MOLECULES][key][keys.ATOMIC_NUMBERS]).astype(np.int64)

    # -- level of theory and AO layout --------------------------------------------------------
    @property
    def basis(self) -> str:
        return str(self.attrs.get(keys.BASIS, "")).lower()

    @property
    def xc(self) -> str:
        return str(self.attrs.get(keys.XC, ""))

    def elements(self) -> list[int]:
        els: set[int] = set()
        for k in self._keys:
            els.update(int(z) for z in np.unique(self.numbers(k)))
        return sorted(els)

    def basis_shells(self) -> dict[int, tuple[int, ...]]:
        """Per element, the l of its shells (from the file, else computed with PySCF)."""
        if BASIS_SHELLS_ATTR in self.attrs:
            return {int(z): tuple(ls) for z, ls in json.loads(self.attrs[BASIS_SHELLS_ATTR]).items()}
        from ..basis import element_shells

        return {z: element_shells(self.basis, z) for z in self.elements()}


    def change_of_basis(self) -> dict[int, np.ndarray] | None:
        """``{l: M_l}``, the PySCF<->e3nn change of basis stored with the data (root attribute
        ``keys.AO_CHANGE_OF_BASIS``; :func:`eqchem.basis.change_of_basis`), or None in files written
        before eqchem stored it."""
        text = self.attrs.get(keys.AO_CHANGE_OF_BASIS)
        if not text:
            return None
        from ..basis import change_of_basis_from_json

        try:
            return change_of_basis_from_json(str(text))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{self.path}: unreadable root attribute {keys.AO_CHANGE_OF_BASIS} ({exc})") from None


def atom_ao_offsets(numbers: np.ndarray, shells: dict[int, tuple[int, ...]]) -> np.ndarray:
    """(n+1,) AO offsets of the atoms of a molecule (PySCF order: atom by atom)."""
    sizes = [sum(2 * l + 1 for l in shells[int(z)]) for z in numbers]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def ao_shells(numbers, shells: dict[int, tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Per AO of a molecule in PySCF order (atom by atom, shell by shell, 2l + 1 each): its shell's l (nao,) and
    that shell's index within its atom (nao,; 0: the atom's first shell, a heavy atom's 1s). ``shells``: per
    element, shell l in PySCF order (:func:`eqchem.basis.element_shells`)."""
    per_shell = [(l, k) for z in numbers for k, l in enumerate(shells[int(z)])]
    sizes = [2 * l + 1 for l, _ in per_shell]
    return (np.repeat([l for l, _ in per_shell], sizes).astype(np.int64),
            np.repeat([k for _, k in per_shell], sizes).astype(np.int64))


def atom_pair_blocks(matrix: np.ndarray, numbers: np.ndarray, shells: dict[int, tuple[int, ...]]) -> dict:
    """Cut an (nao, nao) AO matrix into ``{(i, j): (nao_i, nao_j) block}`` for all atom pairs."""
    off = atom_ao_offsets(numbers, shells)
    if off[-1] != matrix.shape[-1]:
        raise DataError(f"matrix has {matrix.shape[-1]} AOs but the basis layout gives {off[-1]}")
    n = len(numbers)
    return {(i, j): matrix[..., off[i]:off[i + 1], off[j]:off[j + 1]] for i in range(n) for j in range(n)}
