"""Neighbour and pair lists: of one molecule (NumPy, for data and prediction) and of a batch (torch).

Index-based, no loops over atoms; no e3nn, training or inference imports.
"""
from __future__ import annotations

import numpy as np
import torch


def local_pairs(pos: np.ndarray, cutoff: float) -> np.ndarray:
    """Ordered pairs (2, E) int64 with i != j and distance < cutoff (Å), row-major (the model's order).

    Args:
        pos: (n, 3) positions of one molecule in Å.
    """
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mask = d < cutoff
    np.fill_diagonal(mask, False)
    return np.stack(np.nonzero(mask)).astype(np.int64)


def pairs_within(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Ordered pairs (i, j), i != j, same molecule, |r_j - r_i| < cutoff; shape (2, E).

    Args:
        pos: (N, 3) positions in Å.
        batch: (N,) molecule index of every atom.
    """
    same = batch[:, None] == batch[None, :]
    d = torch.cdist(pos.detach(), pos.detach())
    mask = same & (d < cutoff)
    mask.fill_diagonal_(False)
    return mask.nonzero().T.contiguous()


def reverse_index(pair_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """For every pair (i, j) the position of (j, i) in the same list; shape (E,)."""
    i, j = pair_index
    code = i * num_nodes + j
    rev_code = j * num_nodes + i
    order = torch.argsort(code)
    pos = torch.searchsorted(code[order], rev_code)
    return order[pos]
