"""The in-memory structure every reader produces and every consumer (DFT, model) takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

MIN_DISTANCE_ANGSTROM = 0.1
"""Atoms closer than this are refused as overlapping."""


@dataclass
class Structure:
    """One molecular geometry.

    Attributes:
        numbers: (n,) int atomic numbers.
        positions: (n, 3) float64 Cartesian coordinates in Å.
        charge: total charge (e).
        spin: 2S = N_alpha - N_beta; ``None`` means "closed shell required".
        name: short identifier (file stem + frame, or SMILES + conformer).
        source: where it came from (file path with frame index, or the SMILES).
        info: free-form extra metadata (e.g. QM9 index, SMILES), stored as HDF5 attrs.
    """

    numbers: np.ndarray
    positions: np.ndarray
    charge: int = 0
    spin: int | None = None
    name: str = ""
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        if len(self.numbers) != len(self.positions):
            raise InputError(f"{self.label}: {len(self.numbers)} atomic numbers but {len(self.positions)} positions")

    @property
    def label(self) -> str:
        return self.name or self.source or "structure"

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def n_heavy_atoms(self) -> int:
        """Non-hydrogen atoms."""
        from .elements import heavy_atoms

        return heavy_atoms(self.numbers)

    @property
    def n_electrons(self) -> int:
        return int(self.numbers.sum()) - int(self.charge)

    @property
    def formula(self) -> str:
        """Hill formula, e.g. C2H6O."""
        from collections import Counter

        from .elements import symbol

        counts = Counter(symbol(int(z)) for z in self.numbers)
        order = (["C", "H"] if "C" in counts else []) + sorted(k for k in counts if k not in ("C", "H") or "C" not in counts)
        return "".join(f"{el}{counts[el] if counts[el] > 1 else ''}" for el in order)

    def effective_spin(self) -> int:
        """2S to use for DFT: the given spin, or 0 after checking the electron count is even."""
        if self.spin is not None:
            if (self.n_electrons - self.spin) % 2:
                raise InputError(f"{self.label}: {self.n_electrons} electrons cannot have spin (2S) = {self.spin}")
            return int(self.spin)
        if self.n_electrons % 2:
            raise InputError(
                f"{self.label}: odd number of electrons ({self.n_electrons}); give --spin (2S, e.g. 1) for an "
                f"open shell, or fix --charge (or the charge= / spin= keys of an xyz comment line)"
            )
        return 0

    def validate(self) -> "Structure":
        """Check atoms, distances and electron count; return self or raise :class:`InputError`."""
        from .elements import MAX_Z

        if self.n_atoms == 0:
            raise InputError(f"{self.label}: no atoms")
        if np.any(self.numbers < 1) or np.any(self.numbers > MAX_Z):
            raise InputError(f"{self.label}: atomic numbers out of range 1..{MAX_Z}")
        if not np.all(np.isfinite(self.positions)):
            raise InputError(f"{self.label}: non-finite coordinates")
        if self.n_atoms > 1:
            d = np.linalg.norm(self.positions[:, None] - self.positions[None], axis=-1)
            d[np.diag_indices_from(d)] = np.inf
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] < MIN_DISTANCE_ANGSTROM:
                raise InputError(
                    f"{self.label}: atoms {i + 1} and {j + 1} are {d[i, j]:.3f} Å apart "
                    f"(closer than {MIN_DISTANCE_ANGSTROM} Å: overlapping atoms)"
                )
        self.effective_spin()
        return self
