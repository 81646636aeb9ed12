"""Hyper-parameters of the Hamiltonian model (a typed config, stored in every model file)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

BASELINES = ("none", "minao-fock", "core", "core-j", "core-jx")
"""Guess Hamiltonians a model can correct (``ModelConfig.baseline``; computed by eqchem.dft.guess)."""
FOCK_BUILD_BASELINES = ("minao-fock",)
"""The baselines that cost a Kohn–Sham matrix build (grid, density fitting); ``core``, ``core-j`` and
``core-jx`` are analytic (one- and three-centre integrals)."""

PREDICTION_ONLY = ("correction_overlap_cutoff", "correction_pair_cutoff", "fock_mixing")
"""ModelConfig fields used only at prediction time: changing them needs no retraining."""


@dataclass
class ModelConfig:
    """Architecture of :class:`eqchem.model.hamiltonian.HamiltonianModel`.

    Distances in Å. ``hidden`` gives multiplicities per l as ``"m0,m1,m2,..."``: each l > 0 gets both
    parities (needed for the odd-parity pseudo-tensors in orbital blocks). The model raises the
    hidden l and the pair spherical harmonics to the basis' largest shell l when needed, so every
    block irrep (up to L = 2 l_max) is reachable.
    """

    hidden: str = "32,16,8"
    lmax_sh: int = 2
    num_layers: int = 2
    num_basis: int = 8
    radial_hidden: int = 32
    cutoff: float = 5.0
    pair_cutoff: float = 20.0
    pair_channels: str = "8,4,4"
    diag_channels: int = 8            # copies of every block irrep made by the diagonal head's self product
    radial: str = "gaussian"          # gaussian | log_gaussian | bessel (eqchem.model.radial)
    pair_num_basis: int = 0           # radial functions of the pair head; 0: 2 * num_basis
    target: str = "hamiltonian"
    baseline: str = "none"            # none | minao-fock | core | core-j | core-jx: Δ-model of target - guess (eqchem.dft.guess)
    correction_overlap_cutoff: float = 0.0  # Δ-models: predicted corrections are projected onto overlap
                                            # eigenvectors with eigenvalue > this (eqchem.inference.correction.filter_correction)
    correction_pair_cutoff: float = 0.0     # Δ-models: atom-pair corrections fade out smoothly over the last Å
                                            # before this distance (Å; eqchem.inference.correction.pair_switch); 0: never
    fock_mixing: float = 0.0                # Hamiltonian models: one damped Fock step after the network,
                                            # H <- H + α (F[P(H)] - H) (eqchem.dft.fock_step); 0: none

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.baseline not in BASELINES:
            from ..errors import EqchemError

            raise EqchemError(f"unknown model baseline '{cfg.baseline}' ({' or '.join(BASELINES)})")
        return cfg
