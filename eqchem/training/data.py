"""Training data: HDF5 records -> padded orbital blocks, batched graphs, splits by molecule identity.

Streaming: :class:`BlockDataset` reads one structure per item from its file (one HDF5 handle per
process, opened on first use, so DataLoader workers never share one) and converts it there (pair list,
padded blocks, orbital-energy loss constants); a bounded in-memory cache keeps converted samples up to
``cache_mb``, so memory does not grow with the number of structures.

No PySCF import: the AO layout comes from the data file (``basis_shells``) and the PySCF<->e3nn matrices
from its ``keys.AO_CHANGE_OF_BASIS`` root attribute (:func:`change_of_basis_of`; older files: computed
with PySCF where it is installed).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .. import keys
from ..basis import BasisLayout, change_of_basis_table
from ..data.reader import H5Dataset, Record
from ..errors import DataError
from ..model.blocks import AOConverter
from ..model.graph import local_pairs  # also importable from here, as before
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
    cutoff of the correction projector (``PredictionSettings.correction_overlap_cutoff``, the config's
    ``prediction:`` section)."""

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


def change_of_basis_of(dss: Sequence[H5Dataset], ls) -> dict[int, np.ndarray]:
    """``{l: M_l}`` for the angular momenta ``ls`` from the data files' ``keys.AO_CHANGE_OF_BASIS`` root
    attribute (the first file that has it; files that disagree are refused), else computed with PySCF;
    a one-line DataError where neither is possible."""
    stored, source = None, None
    for ds in dss:
        table = ds.change_of_basis()
        if table is None:
            continue
        if stored is None:
            stored, source = table, ds.path
        elif any(l in stored and not np.allclose(stored[l], m, atol=1e-10) for l, m in table.items()):
            raise DataError(f"{ds.path} and {source} store different AO changes of basis "
                            f"({keys.AO_CHANGE_OF_BASIS}); they cannot be trained on together")
    try:
        return change_of_basis_table(ls, stored)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    except ImportError:
        files = ", ".join(str(ds.path) for ds in dss)
        raise DataError(f"{files} lack the AO change of basis ({keys.AO_CHANGE_OF_BASIS}, written by newer eqchem) "
                        f"and PySCF, which computes it, is not installed: install PySCF or re-save the data "
                        f"with a newer eqchem (e.g. eqchem merge FILE --out NEW.h5)") from None


def sample_nbytes(s: Sample) -> int:
    """Memory of one converted sample (its arrays)."""
    n = sum(a.nbytes for a in (s.numbers, s.pos, s.pair_index, s.diag, s.offd, s.diag_mask, s.offd_mask))
    if s.spectral is not None:
        n += s.spectral.y.nbytes + s.spectral.a.nbytes + s.spectral.eps.nbytes
    return n + 1000


class BlockDataset(torch.utils.data.Dataset):
    """Samples of one or more HDF5 files, read and converted per item (in DataLoader workers when there
    are any).

    ``sources``: (dataset, key) per item. ``guesses``: Δ-models, ``{data path: GuessFile}`` (read per item;
    targets are matrix - guess). ``cache_mb``: converted samples are kept in memory, first come first kept,
    up to this many MB per process (None: no bound; 0: no cache); with shuffled epochs a cache smaller
    than the data keeps that fraction of reads. ``change_of_basis``: ``{l: M_l}`` (:func:`change_of_basis_of`;
    default: computed with PySCF).
    """

    def __init__(self, sources: list[tuple[H5Dataset, str]], layout: BasisLayout, pair_cutoff: float,
                 target: str = "hamiltonian", cache_mb: float | None = None, guesses: dict | None = None,
                 spectral: SpectralSettings | None = None, change_of_basis=None):
        self.sources = sources  # (dataset, key)
        self.spectral = spectral
        self.guesses = guesses
        self.layout = layout
        self.pair_cutoff = pair_cutoff
        self.target = target
        self.converter = AOConverter(layout, change_of_basis)
        self.cache_bytes = None if cache_mb is None else int(cache_mb * 2**20)
        self.cache: dict[int, Sample] = {}
        self._cached_bytes = 0
        # the overlap is read only where the conversion needs it
        self._read_overlap = spectral is not None or target != "hamiltonian"

    def __len__(self) -> int:
        return len(self.sources)

    def __getstate__(self):  # to a worker process (spawn): the cache stays behind
        state = self.__dict__.copy()
        state["cache"], state["_cached_bytes"] = {}, 0
        return state

    def __getitem__(self, idx: int) -> Sample:
        s = self.cache.get(idx)
        if s is not None:
            return s
        ds, key = self.sources[idx]
        base = self.guesses[ds.path][key] if self.guesses is not None else None
        s = make_sample(ds.read(key, overlap=self._read_overlap), self.converter, self.pair_cutoff, self.target,
                        base, self.spectral)
        if self.cache_bytes is None or self._cached_bytes < self.cache_bytes:
            n = sample_nbytes(s)
            if self.cache_bytes is None or self._cached_bytes + n <= self.cache_bytes:
                self.cache[idx] = s
                self._cached_bytes += n
        return s


def bounded_sample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` items (all of them when n <= limit; else a seeded
    random choice, the same in every process)."""
    if limit <= 0 or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


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
