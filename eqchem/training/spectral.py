"""Orbital-energy ("spectral") loss: errors of the predicted occupied and lowest virtual orbital energies.

Block losses weigh every matrix element alike, but orbital energies (and the HOMO-LUMO gap) depend on
coherent sums of many elements. This module solves the generalized eigenproblem inside the loss, for
exactly the matrix that prediction builds and exactly as the metrics solve it:

    H = G + P C P,   C = Qᵀ B Q,   X = U s^(-1/2)  (S = U s Uᵀ, canonical orthogonalization)
    ε = eigvalsh(Xᵀ H X) = eigvalsh(A + Yᵀ B Y),   A = Xᵀ G X,   Y = Q P X

with ``G`` the guess (Δ-models; zero otherwise), ``B`` the predicted padded e3nn blocks of the molecule
(nP, nP), ``Q`` the padded-basis map of :class:`~eqchem.model.blocks.AOConverter` and ``P`` the overlap
projector of :func:`eqchem.inference.correction.filter_correction` (identity without a cutoff). ``A``, ``Y`` and the
reference energies are constants of a structure, computed once in float64; the eigenvalues are
differentiated (torch.linalg.eigvalsh: no eigenvector gaps enter the gradient, so degenerate levels are
safe). The guess keeps the near-null overlap directions that P removes from the correction, and they
couple to the rest through G, so the full space (not only the kept one) is solved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import block_diag

from ..orbitals import DEFAULT_LINDEP_THRESHOLD


@dataclass
class SpectralTarget:
    """Constants of one structure: ``y`` (nP, m), ``a`` (m, m), reference energies ``eps`` (k,) in Eh of the
    ``nocc`` occupied and the lowest virtual orbitals."""

    y: np.ndarray
    a: np.ndarray
    eps: np.ndarray
    nocc: int


def spectral_target(reference: np.ndarray, guess: np.ndarray | None, overlap: np.ndarray, q_blocks: list[np.ndarray],
                    nocc: int, n_virtual: int, cutoff: float) -> SpectralTarget:
    """Constants of the loss for one structure.

    ``reference``, ``guess``, ``overlap``: (nao, nao) PySCF order (Eh); ``q_blocks``: per atom the (P, nao_a)
    map from its AOs to the padded e3nn slots; the reference energies are the lowest ``nocc + n_virtual``
    eigenvalues of the reference, as :func:`eqchem.orbitals.solve_generalized` gives them.
    """
    s, u = np.linalg.eigh(0.5 * (overlap + overlap.T))
    x = u[:, s > DEFAULT_LINDEP_THRESHOLD] / np.sqrt(s[s > DEFAULT_LINDEP_THRESHOLD])
    kept = u[:, s > cutoff] if cutoff > 0 else u
    px = kept @ (kept.T @ x)  # P X: the correction reaches only overlap directions above the cutoff
    q = block_diag(*q_blocks)  # (n·P, nao): PySCF AOs -> padded e3nn slots of every atom
    a = x.T @ guess @ x if guess is not None else np.zeros((x.shape[1], x.shape[1]))
    k = min(x.shape[1], nocc + n_virtual)
    eps = np.linalg.eigvalsh(x.T @ (0.5 * (reference + reference.T)) @ x)[:k]
    return SpectralTarget(q @ px, 0.5 * (a + a.T), eps, int(nocc))


def padded_matrix(diag: torch.Tensor, offd: torch.Tensor, pair_index: torch.Tensor) -> torch.Tensor:
    """Blocks of one molecule -> its (n·P, n·P) padded matrix; ``diag`` (n, P, P), ``offd`` (E, P, P),
    ``pair_index`` (2, E) local atom indices; pairs not listed stay zero."""
    n, p = diag.shape[0], diag.shape[1]
    full = diag.new_zeros(n, n, p, p)
    idx = torch.arange(n, device=diag.device)
    full = full.index_put((idx, idx), diag)
    if offd.shape[0]:
        full = full.index_put((pair_index[0], pair_index[1]), offd)
    return full.permute(0, 2, 1, 3).reshape(n * p, n * p)


def orbital_energy_errors(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """Predicted minus reference orbital energies (Eh, float64): ``eps`` concatenated over the molecules of
    ``batch`` and ``gap`` (one HOMO-LUMO gap error per molecule with a virtual orbital in the target).

    ``batch`` holds ``spectral`` (a list of SpectralTarget, one per molecule) and ``batch``/``pair_index``
    as collated.
    """
    atom_mol = batch["batch"]
    pairs = pred.get("pair_index", batch["pair_index"])
    pair_mol = atom_mol[pairs[0]]
    errors, gaps = [], []
    for m, target in enumerate(batch["spectral"]):
        atoms = (atom_mol == m).nonzero().flatten()  # contiguous, as collated
        sel = (pair_mol == m).nonzero().flatten()
        b = padded_matrix(pred["diag"][atoms].double(), pred["offd"][sel].double(), pairs[:, sel] - atoms[0])
        y = torch.as_tensor(target.y, device=b.device)
        h = torch.as_tensor(target.a, device=b.device) + y.T @ b @ y
        eps = torch.linalg.eigvalsh(0.5 * (h + h.T))[:len(target.eps)]
        errors.append(eps - torch.as_tensor(target.eps, device=b.device))
        if 0 < target.nocc < len(target.eps):
            gaps.append(errors[-1][target.nocc] - errors[-1][target.nocc - 1])
    empty = pred["diag"].new_zeros(0, dtype=torch.float64)
    return {"eps": torch.cat(errors) if errors else empty, "gap": torch.stack(gaps) if gaps else empty}
