"""Hyper-parameters of the Hamiltonian model (a typed config, stored in every model file).

How a trained model's predictions run (correction filters, the Fock step) is apart from it:
:class:`eqchem.model.settings.PredictionSettings`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..dft.baselines import get_baseline


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
    baseline: str = "none"            # a kind of eqchem.dft.baselines: Δ-model of target - guess

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = cls(**d)
        get_baseline(cfg.baseline)  # an unknown kind: one line naming the known ones
        return cfg
