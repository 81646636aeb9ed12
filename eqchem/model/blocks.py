"""Orbital blocks <-> irreps: Clebsch–Gordan assembly and PySCF-order conversion.

Every atom carries the padded shell slots of a :class:`~eqchem.basis.BasisLayout` (P padded AOs).
An atom-pair block is a (P, P) matrix in e3nn's real basis; its sub-block between slots of angular
momenta l1 and l2 is ``Σ_L CG(l1, l2, L) · x_L`` with irreps L = |l1−l2|..l1+l2 of parity (−1)^(l1+l2).
:class:`BlockAssembler` holds the constant orthogonal map between the (P·P,) block and the irreps
vector, so the network predicts irreps and the block follows exactly equivariantly.
"""
from __future__ import annotations

import numpy as np
import torch
from .e3nn_setup import import_e3nn

import_e3nn()  # before e3nn's first import: no torch._dynamo (see e3nn_setup)
from e3nn import o3  # noqa: E402
from torch import nn

from ..basis import BasisLayout


def block_irreps(layout: BasisLayout) -> tuple[o3.Irreps, np.ndarray]:
    """Irreps of a padded (P, P) block and the (P·P, dim) orthogonal map irreps -> block (e3nn basis).

    Returns the irreps sorted and simplified (e.g. ``14x0e+16x1o+...``) and the matrix whose columns
    follow that order.
    """
    ls, off = layout.slot_ls, layout.slot_offsets
    p = layout.padded_dim
    cols, irs = [], []
    for a, l1 in enumerate(ls):
        for b, l2 in enumerate(ls):
            for big_l in range(abs(l1 - l2), l1 + l2 + 1):
                cg = o3.wigner_3j(l1, l2, big_l, dtype=torch.float64).numpy()  # (2l1+1, 2l2+1, 2L+1)
                cg = cg / np.linalg.norm(cg.reshape(-1, 2 * big_l + 1), axis=0)  # orthonormal columns
                for m in range(2 * big_l + 1):
                    blk = np.zeros((p, p))
                    blk[off[a]:off[a + 1], off[b]:off[b + 1]] = cg[:, :, m]
                    cols.append(blk.reshape(-1))
                irs.append((big_l, (-1) ** (l1 + l2)))
    w = np.stack(cols, axis=1)  # (P*P, dim) in enumeration order
    irreps = o3.Irreps([(1, ir) for ir in irs])
    sorted_irreps, perm, _ = irreps.sort()  # perm[i] = new position of irrep i
    inv = np.argsort(np.asarray(perm))
    col_blocks = np.split(w, np.cumsum([ir.dim for _, ir in irreps])[:-1], axis=1)
    w_sorted = np.concatenate([col_blocks[i] for i in inv], axis=1)
    return sorted_irreps.simplify(), w_sorted


class BlockAssembler(nn.Module):
    """Irreps vector (..., dim) -> padded block (..., P, P) in e3nn's basis (and back)."""

    def __init__(self, layout: BasisLayout):
        super().__init__()
        self.irreps_out, w = block_irreps(layout)
        self.p = layout.padded_dim
        # a constant of the layout, rebuilt on construction: not stored in model files (4 MB for H-Br)
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.get_default_dtype()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.w.T).reshape(*x.shape[:-1], self.p, self.p)

    def decompose(self, block: torch.Tensor) -> torch.Tensor:
        """Padded block (..., P, P) -> irreps (..., dim) (exact: the map is orthogonal)."""
        return block.reshape(*block.shape[:-2], self.p * self.p) @ self.w


class AOConverter:
    """PySCF-order AO matrices <-> padded e3nn blocks for the elements of a layout (NumPy, float64).

    ``q[z]`` is the (P, nao_z) matrix taking element z's AO vector (PySCF order) to padded e3nn order.
    ``change_of_basis``: the PySCF<->e3nn matrices ``{l: M_l}`` (as stored with data and model files,
    ``keys.AO_CHANGE_OF_BASIS``) or a function of l; default :func:`eqchem.basis.change_of_basis`, which
    computes them with PySCF.
    """

    def __init__(self, layout: BasisLayout, change_of_basis=None):
        if change_of_basis is None:
            from ..basis import change_of_basis as cob
        elif callable(change_of_basis):
            cob = change_of_basis
        else:
            table = dict(change_of_basis)
            missing = sorted(set(layout.slot_ls) - set(table))
            if missing:
                raise ValueError(f"the change of basis lacks l = {missing}")
            cob = table.__getitem__
        self.layout = layout
        self.q: dict[int, np.ndarray] = {}
        self.mask: dict[int, np.ndarray] = {}
        for z, shells in layout.shells.items():
            idx = layout.element_index(z)
            q = np.zeros((layout.padded_dim, len(idx)))
            col = 0
            for l in shells:
                n = 2 * l + 1
                q[idx[col:col + n], col:col + n] = cob(l).T
                col += n
            self.q[z] = q
            self.mask[z] = layout.element_mask(z)

    def offsets(self, numbers: np.ndarray) -> np.ndarray:
        """(n+1,) AO offsets of the atoms (:func:`eqchem.data.reader.atom_ao_offsets`, the one owner of the layout)."""
        from ..data.reader import atom_ao_offsets

        self.check_elements(numbers)
        return atom_ao_offsets(numbers, self.layout.shells)

    def missing_elements(self, numbers) -> list[int]:
        """The atomic numbers among ``numbers`` that this layout has no blocks for (sorted; empty: it covers them)."""
        return sorted({int(z) for z in numbers} - set(self.q))

    def check_elements(self, numbers) -> None:
        """Refuse ``numbers`` with an element of :meth:`missing_elements` (ModelError naming them and the known)."""
        from ..errors import ModelError
        from ..io.elements import symbol

        missing = self.missing_elements(numbers)
        if missing:
            raise ModelError(f"element(s) {', '.join(symbol(z) for z in missing)} not covered "
                             f"(known: {', '.join(symbol(z) for z in sorted(self.q))})")

    def to_blocks(self, matrix: np.ndarray, numbers: np.ndarray, pairs: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(nao, nao) PySCF matrix -> diagonal blocks (n, P, P), pair blocks (E, P, P) and their masks."""
        off = self.offsets(numbers)
        qs = [self.q[int(z)] for z in numbers]
        ms = [self.mask[int(z)] for z in numbers]
        n = len(numbers)
        diag = np.stack([qs[i] @ matrix[off[i]:off[i + 1], off[i]:off[i + 1]] @ qs[i].T for i in range(n)])
        dmask = np.stack([np.outer(ms[i], ms[i]) for i in range(n)])
        offd = np.stack([qs[i] @ matrix[off[i]:off[i + 1], off[j]:off[j + 1]] @ qs[j].T for i, j in pairs.T]) \
            if pairs.shape[1] else np.zeros((0,) + diag.shape[1:])
        omask = np.stack([np.outer(ms[i], ms[j]) for i, j in pairs.T]) \
            if pairs.shape[1] else np.zeros((0,) + diag.shape[1:], dtype=bool)
        return diag, offd, dmask, omask

    def to_matrix(self, diag: np.ndarray, offd: np.ndarray, numbers: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Padded blocks -> (nao, nao) PySCF-order matrix; pairs not listed stay zero."""
        off = self.offsets(numbers)
        qs = [self.q[int(z)] for z in numbers]
        out = np.zeros((off[-1], off[-1]))
        for i in range(len(numbers)):
            out[off[i]:off[i + 1], off[i]:off[i + 1]] = qs[i].T @ diag[i] @ qs[i]
        for e, (i, j) in enumerate(pairs.T):
            out[off[i]:off[i + 1], off[j]:off[j + 1]] = qs[i].T @ offd[e] @ qs[j]
        return out
