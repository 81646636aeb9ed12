"""Neighbour and pair lists of a batch of molecules (index-based, no loops over atoms)."""
from __future__ import annotations

import torch


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
