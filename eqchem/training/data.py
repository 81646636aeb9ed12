"""Training data: HDF5 records -> padded orbital blocks, batched graphs, splits by molecule identity.

No PySCF import: the AO layout comes from the data file and the PySCF<->e3nn matrices from
:func:`eqchem.basis.change_of_basis` (cached values when PySCF is absent).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from .. import keys
from ..basis import BasisLayout
from ..data.reader import H5Dataset, Record
from ..errors import DataError
from ..model.blocks import AOConverter
from .spectral import SpectralTarget, spectral_target


def molecule_identity(record_attrs: dict, numbers: np.ndarray, key: str) -> str:
    """What counts as 'the same molecule' for splitting: QM9 index, SMILES, else the formula.

    Conformers, jittered copies and trajectory frames of one molecule share their formula (or
    SMILES), so they land on the same side of a split.
    """
    for k in ("qm9_index", "smiles"):
        v = record_attrs.get(k)
        if v not in (None, ""):
            return f"{k}:{v}"
    src = str(record_attrs.get(keys.SOURCE, ""))
    if src.startswith("qm9:"):
        return f"qm9_index:{src[4:]}"
    counts = np.bincount(numbers, minlength=1)
    return "formula:" + ",".join(f"{z}:{c}" for z, c in enumerate(counts) if c)


def molecule_label(identity: str, names: set[str], numbers: np.ndarray) -> str:
    """A short human name of one molecule for messages: the records' common name (their ``parent``
    or ``name`` attribute) and the Hill formula, e.g. 'water, H2O'; the identity if neither is known."""
    try:
        from ..io.structure import Structure

        formula = Structure(np.asarray(numbers), np.zeros((len(numbers), 3))).formula
    except Exception:  # noqa: BLE001 - no element table (PySCF absent): the identity string
        formula = identity
    name = next(iter(names)) if len(names) == 1 else ""
    return f"{name}, {formula}" if name and name != formula else formula


SPLIT_MODES = ("auto", "molecule", "structure")


def resolve_split_by(identities: dict[str, str], by: str) -> str:
    """The split mode to use: ``'auto'`` is by molecule when the data holds two or more molecules
    (identities), else by structure (the frames of one molecule, MD17-style); others as given."""
    if by not in SPLIT_MODES:
        raise DataError(f"--split-by must be 'auto', 'molecule' or 'structure', got '{by}'")
    if by == "auto":
        return "molecule" if len(set(identities.values())) > 1 else "structure"
    return by


def split_keys(identities: dict[str, str], val_fraction: float, test_fraction: float = 0.0,
               by: str = "molecule", seed: int = 0) -> dict[str, list[str]]:
    """Deterministic train/val/test split of keys; ``by='molecule'`` keeps identities together
    (``'auto'``: see :func:`resolve_split_by`).

    Fractions apply to molecules (or structures). With a single molecule, splitting by molecule
    is impossible and raises DataError (use ``by='structure'``).
    """
    by = resolve_split_by(identities, by)
    groups: dict[str, list[str]] = {}
    for k, ident in identities.items():
        groups.setdefault(ident if by == "molecule" else k, []).append(k)
    names = sorted(groups, key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    n = len(names)
    n_val = int(round(val_fraction * n)) if val_fraction > 0 else 0
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_val + n_test >= n:
        raise DataError(f"cannot split {n} {'molecules' if by == 'molecule' else 'structures'} into "
                        f"train/validation; use more data{' or --split-by structure' if by == 'molecule' else ''}")
    out = {"val": [], "test": [], "train": []}
    for idx, g in enumerate(names):
        part = "val" if idx < n_val else "test" if idx < n_val + n_test else "train"
        out[part].extend(sorted(groups[g]))
    return out


@dataclass
class Sample:
    """One structure as the model sees it (float64 NumPy; pairs are local atom indices)."""

    key: str
    numbers: np.ndarray      # (n,)
    pos: np.ndarray          # (n, 3) Å
    pair_index: np.ndarray   # (2, E)
    diag: np.ndarray         # (n, P, P) target, padded e3nn basis
    offd: np.ndarray         # (E, P, P)
    diag_mask: np.ndarray    # (n, P, P) bool
    offd_mask: np.ndarray    # (E, P, P) bool
    spectral: SpectralTarget | None = None  # orbital-energy loss constants (TrainConfig.eig_weight > 0)


def local_pairs(pos: np.ndarray, cutoff: float) -> np.ndarray:
    """Ordered pairs (2, E) with i != j and distance < cutoff, row-major (the model's order)."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mask = d < cutoff
    np.fill_diagonal(mask, False)
    return np.stack(np.nonzero(mask)).astype(np.int64)


def target_matrix(record: Record, target: str) -> np.ndarray:
    if target == "hamiltonian":
        m = record.hamiltonian
    elif target == "density_matrix":
        m = record.ensure_orbitals().density_matrix
    else:
        raise DataError(f"unknown target '{target}' (hamiltonian or density_matrix)")
    if m.ndim != 2:
        raise DataError(f"{record.key}: spin-polarized (UKS) matrices are not supported for training yet")
    return m


@dataclass(frozen=True)
class SpectralSettings:
    """What the orbital-energy loss needs: virtual orbitals beyond the occupied ones and the overlap
    cutoff of the correction projector (``ModelConfig.correction_overlap_cutoff``)."""

    n_virtual: int = 1
    overlap_cutoff: float = 0.0


def make_sample(record: Record, converter: AOConverter, pair_cutoff: float, target: str,
                baseline: np.ndarray | None = None, spectral: SpectralSettings | None = None) -> Sample:
    """Blocks of the target matrix (minus ``baseline`` (nao, nao) for Δ-models) of one record, plus the
    constants of the orbital-energy loss when ``spectral`` is given (Hamiltonian targets only)."""
    pairs = local_pairs(record.positions, pair_cutoff)
    matrix = target_matrix(record, target)
    spec = None
    if spectral is not None:
        if target != "hamiltonian":
            raise DataError("the orbital-energy loss (eig_weight > 0) needs a Hamiltonian target")
        spec = spectral_target(matrix, baseline, record.overlap, [converter.q[int(z)] for z in record.numbers],
                               record.nocc, spectral.n_virtual, spectral.overlap_cutoff)
    if baseline is not None:
        matrix = matrix - baseline
    diag, offd, dmask, omask = converter.to_blocks(matrix, record.numbers, pairs)
    return Sample(record.key, record.numbers, record.positions, pairs, diag, offd, dmask, omask, spec)


class BlockDataset(torch.utils.data.Dataset):
    """Samples of one or more HDF5 files (lazy; converted samples are cached in memory)."""

    def __init__(self, sources: list[tuple[H5Dataset, str]], layout: BasisLayout, pair_cutoff: float,
                 target: str = "hamiltonian", cache: bool = True, guesses: dict | None = None,
                 spectral: SpectralSettings | None = None):
        self.sources = sources  # (dataset, key)
        self.spectral = spectral
        self.guesses = guesses  # Δ-models: {data path: GuessFile}; targets are matrix - guess
        self.layout = layout
        self.pair_cutoff = pair_cutoff
        self.target = target
        self.converter = AOConverter(layout)
        self.cache = {} if cache else None

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, idx: int) -> Sample:
        if self.cache is not None and idx in self.cache:
            return self.cache[idx]
        ds, key = self.sources[idx]
        base = self.guesses[ds.path][key] if self.guesses is not None else None
        s = make_sample(ds[key], self.converter, self.pair_cutoff, self.target, base, self.spectral)
        if self.cache is not None:
            self.cache[idx] = s
        return s


def collate(samples: list[Sample], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Concatenate samples into one batch (atom indices offset per molecule)."""
    offsets = np.cumsum([0] + [len(s.numbers) for s in samples])
    extra = {"spectral": [s.spectral for s in samples]} if samples and samples[0].spectral is not None else {}
    return {
        **extra,
        "numbers": torch.from_numpy(np.concatenate([s.numbers for s in samples])),
        "pos": torch.from_numpy(np.concatenate([s.pos for s in samples])).to(dtype),
        "batch": torch.cat([torch.full((len(s.numbers),), i, dtype=torch.long) for i, s in enumerate(samples)]),
        "pair_index": torch.from_numpy(np.concatenate([s.pair_index + o for s, o in zip(samples, offsets)], axis=1)),
        "diag": torch.from_numpy(np.concatenate([s.diag for s in samples])).to(dtype),
        "offd": torch.from_numpy(np.concatenate([s.offd for s in samples])).to(dtype),
        "diag_mask": torch.from_numpy(np.concatenate([s.diag_mask for s in samples])),
        "offd_mask": torch.from_numpy(np.concatenate([s.offd_mask for s in samples])),
        "num_molecules": torch.tensor(len(samples)),
    }
