"""Output statistics of the model (per-element means, per-irrep scales, neighbor counts) from one
streaming pass over a bounded sample of training structures.

:meth:`eqchem.model.hamiltonian.HamiltonianModel.set_output_statistics` computes the same numbers from all
target blocks at once (held in memory); :class:`OutputStatistics` accumulates them sample by sample, in
float64, with Chan's pairwise update of means and squared deviations, so memory stays O(elements × irreps).
"""
from __future__ import annotations

import numpy as np
import torch

from ..basis import BasisLayout
from ..model.blocks import block_irreps
from .data import bounded_sample


class OutputStatistics:
    """Accumulates :class:`~eqchem.training.data.Sample` s; :meth:`apply` sets a model's ``diag_shift``,
    ``diag_scale`` and ``offd_scale`` buffers, :attr:`avg_neighbors` its message normalization."""

    def __init__(self, layout: BasisLayout, cutoff: float, floor: float = 1e-6):
        self.irreps, w = block_irreps(layout)
        self.w = torch.from_numpy(w)  # (P*P, dim) float64: padded block -> irreps (orthogonal)
        self.cutoff = cutoff
        self.floor = floor
        table = np.full(119, -1, dtype=np.int64)
        table[list(layout.elements)] = np.arange(len(layout.elements))
        self.species_of_z = table
        n_sp, dim = len(layout.elements), self.irreps.dim
        self.count = np.zeros(n_sp, dtype=np.int64)
        self.mean = torch.zeros(n_sp, dim, dtype=torch.float64)
        self.m2 = torch.zeros(n_sp, dim, dtype=torch.float64)     # squared deviations from the species mean
        self.sq = torch.zeros(n_sp, dim, dtype=torch.float64)     # raw sums of squares
        self.offd_sq = torch.zeros(dim, dtype=torch.float64)
        self.n_offd = 0
        self._neighbors: list[float] = []   # per structure: mean neighbors within the cutoff
        self.n_structures = 0
        self.atoms_range: tuple[int, int] | None = None

    def add(self, sample) -> None:
        n = len(sample.numbers)
        p2 = self.w.shape[0]
        d = torch.from_numpy(np.ascontiguousarray(sample.diag, dtype=np.float64)).reshape(n, p2) @ self.w
        species = self.species_of_z[np.asarray(sample.numbers, dtype=np.int64)]
        for s in np.unique(species):
            x = d[torch.from_numpy(species == s)]
            nb, na = len(x), int(self.count[s])
            mb = x.mean(0)
            delta = mb - self.mean[s]
            tot = na + nb
            self.mean[s] += delta * (nb / tot)
            self.m2[s] += ((x - mb) ** 2).sum(0) + delta ** 2 * (na * nb / tot)
            self.sq[s] += (x ** 2).sum(0)
            self.count[s] = tot
        if len(sample.offd):
            o = torch.from_numpy(np.ascontiguousarray(sample.offd, dtype=np.float64)).reshape(-1, p2) @ self.w
            self.offd_sq += (o ** 2).sum(0)
            self.n_offd += len(o)
        dist = np.linalg.norm(sample.pos[:, None] - sample.pos[None], axis=-1)
        self._neighbors.append(float(((dist < self.cutoff).sum(1) - 1).mean()))
        self.n_structures += 1
        lo, hi = self.atoms_range or (n, n)
        self.atoms_range = (min(lo, n), max(hi, n))

    @property
    def avg_neighbors(self) -> float:
        """Mean number of neighbors within the cutoff (at least 1)."""
        return float(max(1.0, np.mean(self._neighbors))) if self._neighbors else 1.0

    def _rms(self, sums: torch.Tensor, count: int) -> torch.Tensor:
        """(dim,) RMS per irrep copy (its 2L+1 components together) from per-component sums of squares."""
        out = torch.ones(self.irreps.dim, dtype=torch.float64)
        start = 0
        for mul, ir in self.irreps:
            for _ in range(mul):
                sl = slice(start, start + ir.dim)
                out[sl] = (sums[sl].sum() / (count * ir.dim)).sqrt().clamp_min(self.floor)
                start += ir.dim
        return out

    def scalar_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.irreps.dim, dtype=torch.bool)
        for sl, (_, ir) in zip(self.irreps.slices(), self.irreps):
            if ir.l == 0 and ir.p == 1:
                mask[sl] = True
        return mask

    @torch.no_grad()
    def apply(self, model) -> None:
        """Set the model's output statistics (as ``set_output_statistics`` would from the same blocks)."""
        scalar = self.scalar_mask()
        seen = torch.from_numpy(self.count > 0)
        shift = torch.where(scalar & seen[:, None], self.mean, torch.zeros(()))
        resid_sq = torch.where(scalar, self.m2, self.sq)[seen].sum(0)
        dtype = model.diag_scale.dtype
        model.diag_shift.copy_(shift.to(dtype))
        model.diag_scale.copy_(self._rms(resid_sq, int(self.count.sum())).to(dtype))
        if self.n_offd:
            model.offd_scale.copy_(self._rms(self.offd_sq, self.n_offd).to(dtype))


def _as_list(samples):
    """collate_fn that keeps a batch a list of samples (statistics pass in worker processes)."""
    return samples


def training_statistics(train_ds, layout: BasisLayout, cutoff: float, max_structures: int, seed: int,
                        num_workers: int = 0) -> OutputStatistics:
    """Output statistics from one pass over at most ``max_structures`` training structures (a seeded sample
    of ``train_ds``, a :class:`~eqchem.training.data.BlockDataset`; converted in DataLoader workers when
    ``num_workers > 0``)."""
    stats = OutputStatistics(layout, cutoff)
    idx = bounded_sample(len(train_ds), max_structures, seed)
    if num_workers > 0:
        own_rng = torch.Generator().manual_seed(seed)  # leaves the global RNG (epoch shuffles) untouched
        samples = (s for b in torch.utils.data.DataLoader(torch.utils.data.Subset(train_ds, idx.tolist()),
                                                          batch_size=8, collate_fn=_as_list, generator=own_rng,
                                                          num_workers=num_workers) for s in b)
    else:
        samples = (train_ds[int(i)] for i in idx)
    for s in samples:
        stats.add(s)
    return stats
