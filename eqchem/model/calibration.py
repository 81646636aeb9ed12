"""What a model file stores to estimate each prediction's error: the readouts' posterior and the scalars that
turn it into calibrated 1σ errors, fitted on validation molecules only (:mod:`eqchem.inference.calibrate`).

The estimates (:mod:`eqchem.inference.uncertainty`), per molecule:

- H MAE (µEh): ``exp(h_mae_log_scale) · L^h_mae_log_slope``, L = the mean leverage of its atoms and atom
  pairs (:mod:`eqchem.model.posterior`); a log-log fit on validation molecules.
- HOMO, LUMO (eV): ``scale · sqrt(v_i)``, v_i = Σ_blocks h_ab w_a,i w_b,i, the leverages of the on-site and
  atom-pair blocks weighted by where orbital i lives (w_a,i: its weight on atom a): first-order perturbation
  theory, δε_i = c_iᵀ δH c_i, with block errors of variance ∝ leverage; gap: the same with v_homo + v_lumo.
- dipole |μ| (Debye): ``dipole_scale · H MAE estimate (µEh) · sqrt(atoms)``.
- in domain: atom count, heavy-atom count (``atoms_range``, ``heavy_atoms_range``: those of the training
  molecules the posterior was summed over), each atom's nearest-neighbour distance within the training
  molecules' ranges (``nearest_neighbour``, Å, per element, widened by ``distance_tolerance``), and no atom or
  pair leverage beyond ``leverage_limit`` (the largest on the validation molecules times
  ``leverage_margin``).
- ``check_threshold_ev``: with ``--check`` a molecule is flagged when one cheap Fock build from its predicted
  density moves the gap by more than this (eV).
Each scale is set so that the root mean square of error/σ is 1 on the validation molecules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only where a posterior is read (model headers stay torch-free)
    from .posterior import ReadoutPosterior


@dataclass(frozen=True)
class UncertaintyCalibration:
    """Scalars of the error estimates (module docstring); fitted on ``n_molecules`` validation molecules."""

    h_mae_log_scale: float
    h_mae_log_slope: float
    homo_scale: float               # eV per sqrt(leverage)
    lumo_scale: float
    gap_scale: float
    dipole_scale: float             # Debye per (µEh · sqrt(atoms))
    leverage_limit: float           # largest in-domain leverage of an atom or pair block
    check_threshold_ev: float       # |gap shift| of one Fock build beyond which --check flags
    nearest_neighbour: dict = field(default_factory=dict)  # {"A-B": [min, max] Å}: atoms of A nearest to a B
    atoms_range: list | None = None         # [fewest, most] atoms of the posterior's training molecules
    heavy_atoms_range: list | None = None   # [fewest, most] heavy atoms of them
    distance_tolerance: float = 0.10
    leverage_margin: float = 3.0
    n_molecules: int = 0
    keys: list = field(default_factory=list)  # the validation keys fitted on

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UncertaintyCalibration":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ModelUncertainty:
    """The posterior of the readouts (from training molecules) and its calibration (from validation ones)."""

    posterior: "ReadoutPosterior"
    calibration: UncertaintyCalibration

    def to_dict(self) -> dict:
        return {"posterior": self.posterior.to_dict(), "calibration": self.calibration.to_dict()}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelUncertainty | None":
        if not d:
            return None
        from .posterior import ReadoutPosterior

        return cls(ReadoutPosterior.from_dict(d["posterior"]), UncertaintyCalibration.from_dict(d["calibration"]))
