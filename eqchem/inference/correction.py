"""Shaping of a Δ-model's learned correction at prediction time: overlap-subspace filter and pair switch.

Pure NumPy; both keep exact equivariance (a spectral projector of S, a function of distance).
"""
from __future__ import annotations

import numpy as np


def filter_correction(correction: np.ndarray, overlap: np.ndarray, cutoff: float) -> np.ndarray:
    """``P C P`` with ``P`` the projector on the eigenvectors of ``overlap`` with eigenvalues > ``cutoff``.

    Why: in the generalized eigenproblem H C = S C ε an error δH along a near-null direction of S
    (eigenvalue s) enters the orthogonalized matrix as δH / s; near-linear-dependent bases (small s) turn
    small network errors there into large spurious orbital energies. Projecting those directions
    out of the learned correction leaves the guess (a physical operator, consistent with S) in charge
    of them. P is a spectral projector of S, so the filter keeps exact equivariance. Shapes (nao, nao).
    """
    if cutoff <= 0:
        return correction
    s, u = np.linalg.eigh(overlap)
    keep = u[:, s > cutoff]
    p = keep @ keep.T
    out = p @ correction @ p
    return 0.5 * (out + out.T)


def pair_switch(distances: np.ndarray, cutoff: float, width: float = 1.0) -> np.ndarray:
    """Weights (E,) of atom-pair corrections at ``distances`` (E,) Å: 1 below ``cutoff - width``, 0 beyond
    ``cutoff``, a cosine step between (smooth, so predicted matrices stay continuous in the geometry).

    Why: far apart, the guess is already close to the SCF matrix while an unconstrained pair head adds
    errors there; leaving distant pairs to the guess is more accurate where validation says so (the cutoff
    is chosen on validation molecules, ``datasets/qm9/tune_prediction.py``). A function of distance only, so equivariance is kept.
    ``cutoff <= 0`` keeps every pair.
    """
    d = np.asarray(distances, dtype=float)
    if cutoff <= 0:
        return np.ones_like(d)
    t = np.clip((d - (cutoff - width)) / width, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))
