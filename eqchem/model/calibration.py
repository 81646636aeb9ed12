"""What a model file stores to estimate each prediction's error: the readouts' posterior and the scalars that
turn it into calibrated 1σ errors, fitted on validation molecules only (:mod:`eqchem.inference.calibrate`).

The estimates (:mod:`eqchem.inference.uncertainty`), per molecule:

- H MAE (µEh): ``exp(h_mae_log_scale) · L^h_mae_log_slope``, L = the mean leverage of its atoms and atom
  pairs (:mod:`eqchem.model.posterior`); a log-log fit on validation molecules.
- HOMO, LUMO (eV): ``scale · sqrt(v_i)``, v_i = Σ_blocks h_ab w_a,i w_b,i, the leverages of the on-site and
  atom-pair blocks weighted by where orbital i lives (w_a,i: its weight on atom a): first-order perturbation
  theory, δε_i = c_iᵀ δH c_i, with block errors of variance ∝ leverage; gap: the same with v_homo + v_lumo.
- dipole |μ| (Debye): ``dipole_scale · H MAE estimate (µEh) · sqrt(atoms)``.
- beyond the training molecules, each estimate grows: the H MAE (and so the dipole) by
  ``1 + h_mae_size_slope · s + h_mae_geometry_slope · g``, the HOMO, LUMO and gap each by its own
  ``1 + k_s · s + k_g · g`` (``orbital_slopes``; files before session 25: one pair ``orbital_size_slope``,
  ``orbital_geometry_slope`` for all three); s and g: how far the molecule's atom counts and its farthest-out
  nearest-neighbour distance or bond-valence sum lie beyond the training ranges, as the log of the ratio to
  the range's nearest end (0 within them;
  :class:`eqchem.inference.uncertainty.Domain`). The slopes (≥ 0) are fitted jointly with the scales on
  validation molecules that include ones beyond the ranges (``n_beyond``: stretched bonds, larger molecules);
  without such molecules they stay 0.
- out of domain (any reason below), no estimate falls under ``out_of_domain_floor`` times ``1 + max(s, g)``:
  beyond the training molecules the fitted growth is an extrapolation from few validation molecules (on session
  18's drug-sized test molecules it left the gap's 1σ covering 58 %), so the estimate promises no better than a
  typical molecule inside: per quantity, the mean estimate of the in-domain validation molecules; for the HOMO,
  LUMO and gap of a molecule within the training sizes (out of domain by its geometry or leverage) times a factor
  α (0–1, ``floor_factors``) fitted with their slopes (since session 25; before, and beyond the sizes, α = 1:
  with α fitted for all, the drug-sized test molecules' gap σ covered 38–42 % of their errors).
- in domain: atom count, heavy-atom count (``atoms_range``, ``heavy_atoms_range``: those of the training
  molecules the posterior was summed over), each atom's nearest-neighbour distance within the training
  molecules' ranges (``nearest_neighbour``, Å, per pair of elements, widened by ``distance_tolerance``), each
  atom's bond-valence sum Σ_j exp((R_i + R_j - d_ij) / 0.3 Å) within the training range of its environment
  (``valence_ranges``: per element and bonded neighbours with theirs, "C[C4,H1,H1,H1]", else per element; widened by
  ``valence_tolerance``: a C-C bond stretched by 30 % takes ~0.8 off both carbons' sums though their nearest
  neighbours stay), and no atom or pair leverage beyond ``leverage_limit``
  (the largest on the validation molecules times ``leverage_margin``).
- ``--check``: one cheap Fock build F = F[P(H)] from the predicted density, and the Coulomb potential J of the
  density change it causes, J[P(F) − P(H)] (density-fitted, no grid: ~1 % of the build). For ``check_signal =
  "response"`` (calibrations since session 24) the score (eV) is the check's estimate of the gap error beyond its
  typical value, |g − ``check_center_ev``|: g, the predicted gap minus the gap of X* = F + θλJ, where one step of
  Anderson mixing between H (residual F − H) and F (residual ≈ λJ: the Coulomb part of F's response to the
  density, scaled by λ = ``check_coulomb_scale`` for the rest, chiefly the exchange-correlation kernel that takes
  part of it back) puts the SCF's fixed point (:func:`eqchem.inference.consistency_check.anderson_gap_errors`); λ,
  of :data:`~eqchem.calibration_metrics.COULOMB_SCALES`, the one whose estimates lie closest to the validation
  molecules' gap errors, the center their median over the validation molecules whose gap is right. For
  ``check_signal = "residuals"`` (calibrations of session 23) the score is the check's estimate of the gap's error,
  ``exp(c · x) - RESIDUAL_OFFSET_EV`` (at least 0), c = ``check_coefficients``, x = (1, ln σ_gap, ln r_homo,
  ln r_lumo, ln(|d - check_center_ev| + RESIDUAL_OFFSET_EV)) (:func:`residual_features`): r_i = ‖(F − H) c_i‖
  orthogonal to c_i, the frontier orbitals' residuals in F (eV; Davidson's residual of each predicted orbital in
  the Fock matrix its own density builds: a wrong orbital mixes with its neighbours in F), d the gap shift of F's
  eigenvalues (eV) and check_center_ev its median over the validation molecules whose gap is right; c fitted by
  least squares to ln(|gap error| + RESIDUAL_OFFSET_EV) of the validation molecules. (Chosen on session 23's
  validation molecules by 5-fold cross-validated AUC for gaps off by > 0.3 eV, fast / accurate model: 0.90 /
  0.85 with all four; 0.89 / 0.83 without the shift; 0.88 / 0.76 the residuals alone; 0.87 / 0.81 σ and the
  shift alone; 0.87 / 0.82 the score of files calibrated in session 22: ``bench/check_scores.py``.) Files
  calibrated in sessions 16–22 score a gap shift d instead (``check_signal``: "first_order" or "eigenvalues",
  :data:`FOCK_SIGNALS`): ``sqrt((check_sigma_weight · σ_gap)² + (d - check_center_ev)²)``, the build's shift
  beyond its typical one added in quadrature to the gap σ (files before session 21 had center and weight 0).
  The molecule is flagged when the score exceeds ``check_threshold_ev``.
- ``check_partner``: the shipped model (``"accurate"``, ``"fast"``) whose prediction is the check's second
  opinion (a committee of two models trained apart); where it covers the molecule's elements, ``--check`` runs
  its whole prediction instead of the Fock build above (the accurate model: two cheap Fock builds, its minao
  guess and its Fock step; without the Fock step its gap tells little) and flags the molecule when the two gaps
  differ by more than ``partner_threshold_ev`` (eV) in the same score (d: the gap difference,
  ``partner_center_ev``, ``partner_sigma_weight``). None: the Fock build alone.
Fits on the validation molecules (the checks' in :mod:`eqchem.inference.calibrate_check`): the H MAE line and its slopes by least squares in log space; each orbital
scale so that ±σ covers 68 % of the in-domain molecules' HOMO, LUMO or gap errors (a quantile: the errors are
heavy-tailed, and a root-mean-square scale covered 85-96 % of them), its slopes and floor factor so that ±σ
covers 68 % of the errors of the molecules beyond the training ranges too (the quantile loss:
:mod:`eqchem.inference.calibrate_orbitals`; files before session 25: shared slopes by the Gaussian likelihood,
which over-covered heavy-tailed errors); the dipole scale so that ±σ
covers 68 % of the in-domain molecules' errors; the Fock build's coefficients by least squares (above); a
shift score's center, the median d over the validation molecules whose gap is right (error ≤ 0.3 eV), its σ
weight, the one of :data:`CHECK_SIGMA_WEIGHTS` whose score best separates
those from the wrong gaps (ROC AUC), and its threshold, the 95th percentile of the score over the right
gaps (about one right gap in twenty flagged).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping

from ..calibration_metrics import COULOMB_SCALES, RESIDUAL_SCORE_FIELDS, RESPONSE_FIELD, discrepancy_field

if TYPE_CHECKING:  # torch is imported only where a posterior is read (model headers stay torch-free)
    from .posterior import ReadoutPosterior


RESIDUAL_OFFSET_EV = 0.05
"""eV added to |gap error| before its log is fitted (errors of a few meV would otherwise weigh as much as wrong
gaps), and taken off the score again."""

def residual_features(gap_sigma_ev: float, homo_residual_ev: float, lumo_residual_ev: float,
                      shift_beyond_center_ev: float) -> list[float]:
    """x of the residual score (module docstring): 1, ln σ_gap, ln r_homo, ln r_lumo, ln(|d − center| + offset);
    every argument in eV (logs floored at 1e-6 eV)."""
    return [1.0] + [math.log(max(v, 1e-6)) for v in (gap_sigma_ev, homo_residual_ev, lumo_residual_ev,
                                                      abs(shift_beyond_center_ev) + RESIDUAL_OFFSET_EV)]


CHECK_SIGMA_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
"""The σ weights a calibration tries for each check's score (0: the check's discrepancy alone)."""


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
    check_threshold_ev: float       # score of one Fock build's check beyond which --check flags (eV)
    nearest_neighbour: dict = field(default_factory=dict)  # {"A-B": [min, max] Å}: atoms of A nearest to a B
    valence_ranges: dict = field(default_factory=dict)     # {"C": [min, max], "C[C4,H1,H1,H1]": ...}: bond-valence sums
    atoms_range: list | None = None         # [fewest, most] atoms of the posterior's training molecules
    heavy_atoms_range: list | None = None   # [fewest, most] heavy atoms of them
    distance_tolerance: float = 0.10
    valence_tolerance: float = 0.04         # per environment (files with per-element ranges stored 0.02)
    leverage_margin: float = 3.0
    h_mae_size_slope: float = 0.0           # growth per unit of size excess (module docstring)
    h_mae_geometry_slope: float = 0.0
    orbital_size_slope: float = 0.0         # files before session 25: one growth for HOMO, LUMO and gap
    orbital_geometry_slope: float = 0.0
    orbital_slopes: dict = field(default_factory=dict)  # {"homo_ev": [size, geometry], "lumo_ev": ..., "gap_ev": ...}
    n_beyond: int = 0                       # validation molecules beyond the training ranges the slopes saw
    out_of_domain_floor: dict = field(default_factory=dict)  # {"h_mae_uEh": ..., "gap_ev": ...}: see above
    floor_factors: dict = field(default_factory=dict)  # {"homo_ev": α, ...}: within the size range (see above)
    check_partner: str | None = None        # shipped model whose gap is the check's second opinion
    partner_threshold_ev: float = float("inf")  # score of the partner's check beyond which --check flags (eV)
    check_signal: str = "eigenvalues"       # "residuals" or the gap shift the score takes (:data:`FOCK_SIGNALS`)
    check_coefficients: list = field(default_factory=list)  # c of the residual score (module docstring)
    check_coulomb_scale: float = 0.5        # λ of the response score (module docstring; one of COULOMB_SCALES)
    check_center_ev: float = 0.0            # the Fock build's typical gap shift (eigenvalues' for "residuals")
    check_sigma_weight: float = 0.0         # weight of the gap σ in its score
    partner_center_ev: float = 0.0          # the partner's typical gap difference
    partner_sigma_weight: float = 0.0
    n_molecules: int = 0
    keys: list = field(default_factory=list)  # the validation keys fitted on

    def discrepancy_field(self, source: str) -> str:
        """The field of :class:`~eqchem.inference.uncertainty.Uncertainty` (and of an evaluation row) holding the
        signed discrepancy (eV) that a check by ``source`` ("partner", "fock") scores in quadrature with the σ (a
        Fock build's under a shift signal; the residual score reads its fields itself: :meth:`check_score`)."""
        return discrepancy_field(source, self.check_signal)

    def check_threshold(self, source: str) -> float:
        """The --check threshold (eV) of a check by ``source``: "partner" (the gap difference from the check
        partner's) or "fock" (the gap shift of one Fock build)."""
        return self.partner_threshold_ev if source == "partner" else self.check_threshold_ev

    def gap_error_estimate(self, measured: Mapping[str, Any]) -> float | None:
        """The check's estimate of the gap error (eV) at this calibration's Coulomb scale (the nearest of
        :data:`~eqchem.calibration_metrics.COULOMB_SCALES` to ``check_coulomb_scale``), from ``measured``'s estimates
        at every scale (:data:`~eqchem.calibration_metrics.RESPONSE_FIELD`); None without them."""
        estimates = measured.get(RESPONSE_FIELD)
        if not estimates:
            return None
        i = min(range(len(COULOMB_SCALES)), key=lambda k: abs(COULOMB_SCALES[k] - self.check_coulomb_scale))
        return float(estimates[i])

    def check_score(self, source: str, gap_sigma_ev: float, measured: Mapping[str, Any]) -> float:
        """The score (eV) of a check by ``source`` ("partner", "fock") on a molecule of estimated gap σ
        ``gap_sigma_ev``, from what the check ``measured`` (an :class:`~eqchem.inference.uncertainty.Uncertainty`'s
        fields or an evaluation row): the check's estimate of the gap error beyond its center (0 without one), the
        residual score of the frontier orbitals, or a discrepancy d (the partner's gap minus this one; the Fock
        build's gap shift) as sqrt((weight · σ)² + (d - center)²) (module docstring)."""
        if source == "fock" and self.check_signal == "response":  # no estimates (no LUMO, no response): no gap to judge
            estimate = self.gap_error_estimate(measured)
            return abs(estimate - self.check_center_ev) if estimate is not None else 0.0
        if source == "fock" and self.check_signal == "residuals":
            r_homo, r_lumo, shift = (float(measured[k]) for k in RESIDUAL_SCORE_FIELDS)
            x = residual_features(gap_sigma_ev, r_homo, r_lumo, shift - self.check_center_ev)
            log_error = sum(c * v for c, v in zip(self.check_coefficients, x))
            return max(math.exp(log_error) - RESIDUAL_OFFSET_EV, 0.0)
        center, weight = ((self.partner_center_ev, self.partner_sigma_weight) if source == "partner"
                          else (self.check_center_ev, self.check_sigma_weight))
        return math.hypot(weight * gap_sigma_ev, float(measured[self.discrepancy_field(source)]) - center)

    def measured_by(self, source: str, measured: Mapping[str, Any]) -> bool:
        """Whether ``measured`` (fields or a row) holds what a check by ``source`` scores."""
        if source == "fock" and self.check_signal == "response":
            return measured.get(RESPONSE_FIELD) is not None
        if source == "fock" and self.check_signal == "residuals":
            return all(measured.get(k) is not None for k in RESIDUAL_SCORE_FIELDS)
        return measured.get(self.discrepancy_field(source)) is not None

    def growth(self, quantity: str, size_excess: float, geometry_excess: float) -> float:
        """Factor ≥ 1 of the estimate of ``quantity`` ("h_mae_uEh", "homo_ev", "lumo_ev", "gap_ev") of a molecule
        ``size_excess`` and ``geometry_excess`` beyond the training ranges (the orbital energies' own slopes, or
        in files before session 25 one pair for all three)."""
        if quantity == "h_mae_uEh":
            k_size, k_geometry = self.h_mae_size_slope, self.h_mae_geometry_slope
        else:
            k_size, k_geometry = self.orbital_slopes.get(quantity, (self.orbital_size_slope,
                                                                    self.orbital_geometry_slope))
        return 1.0 + k_size * size_excess + k_geometry * geometry_excess

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
