"""How far to trust one prediction: calibrated 1σ error estimates, an in-domain verdict and the ``--check`` flag.

Where the numbers come from (:mod:`eqchem.model.calibration` has the formulas and the stored scalars):
the leverage of every atom's and atom pair's readout features against the training molecules' features
(:mod:`eqchem.model.posterior`), propagated to the orbital energies by first-order perturbation theory with
the orbitals' weights on the atoms, and scaled by factors fitted on validation molecules
(:mod:`eqchem.inference.calibrate`). :func:`self_check` adds the optional check: one cheap Fock build from
the predicted density, F[P(H)]; its residual F − H and the shift of the frontier orbitals it causes tell
whether the predicted orbitals are self-consistent (the accurate mode's Fock step builds F anyway).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..io.elements import heavy_atoms, symbol
from ..model.calibration import UncertaintyCalibration
from ..units import HARTREE_EV, MICRO_HARTREE


@dataclass(frozen=True)
class RawStatistics:
    """Uncalibrated inputs of the estimates of one molecule (dimensionless leverages)."""

    leverage_mean: float   # mean over its atoms and atom pairs
    leverage_max: float    # largest of any atom or pair
    v_homo: float          # Σ_blocks h_ab w_a w_b of the HOMO (module docstring)
    v_lumo: float
    n_atoms: int


@dataclass(frozen=True)
class Uncertainty:
    """Estimated 1σ errors of one prediction and whether to trust it.

    Attributes:
        h_mae_uEh: this molecule's estimated H MAE, µEh.
        homo_ev, lumo_ev, gap_ev: estimated 1σ errors of the HOMO, LUMO and gap, eV.
        dipole_debye: estimated 1σ error of |μ|, Debye.
        in_domain: False when the molecule lies outside the training data (``reasons`` say how).
        leverage_mean, leverage_max: the raw readout leverages behind the estimates (dimensionless).
        flagged: ``--check`` only (else None): one Fock build from the predicted density moved the gap by more
            than the model's threshold: the frontier orbitals are likely wrong.
        check_gap_shift_ev, check_homo_shift_ev, check_lumo_shift_ev: those shifts, eV (``--check``).
        residual_uEh: MAE of F[P(H)] − H, µEh (``--check``).
        seconds: wall time of the estimates (and of the check's Fock build), s.
    """

    h_mae_uEh: float
    homo_ev: float
    lumo_ev: float
    gap_ev: float
    dipole_debye: float
    in_domain: bool
    reasons: list = field(default_factory=list)
    leverage_mean: float = 0.0
    leverage_max: float = 0.0
    flagged: bool | None = None
    check_gap_shift_ev: float | None = None
    check_homo_shift_ev: float | None = None
    check_lumo_shift_ev: float | None = None
    residual_uEh: float | None = None
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-able: every field."""
        return asdict(self)


def orbital_weights(coefficients: np.ndarray, overlap: np.ndarray, ao_offsets: np.ndarray) -> np.ndarray:
    """Mulliken weight of each orbital on each atom, (n_atoms, n_orbitals) (clipped at 0, columns sum to 1)."""
    sc = overlap @ coefficients
    per_ao = coefficients * sc
    w = np.add.reduceat(per_ao, ao_offsets[:-1], axis=0)
    w = np.clip(w, 0.0, None)
    return w / np.maximum(w.sum(axis=0, keepdims=True), 1e-12)


def raw_statistics(atom_leverage: np.ndarray, pair_leverage: np.ndarray, pairs: np.ndarray,
                   coefficients: np.ndarray, overlap: np.ndarray, ao_offsets: np.ndarray, nocc: int) -> RawStatistics:
    """The leverages of a molecule's atoms (n,) and listed pairs (E,) on ``pairs`` (2, E), combined with its
    HOMO and LUMO (``coefficients`` (nao, nmo), ``nocc`` occupied)."""
    levs = np.concatenate([atom_leverage, pair_leverage])
    cols = [i for i in (nocc - 1, nocc) if 0 <= i < coefficients.shape[1]]
    w = orbital_weights(coefficients[:, cols], overlap, ao_offsets)
    v = atom_leverage @ (w ** 2) + pair_leverage @ (w[pairs[0]] * w[pairs[1]]) if pairs.size else atom_leverage @ (w ** 2)
    v_homo = float(v[0]) if nocc >= 1 else 0.0
    v_lumo = float(v[-1]) if nocc < coefficients.shape[1] else 0.0
    return RawStatistics(float(levs.mean()), float(levs.max()), v_homo, v_lumo, int(len(atom_leverage)))


def estimate(raw: RawStatistics, cal: UncertaintyCalibration, reasons: list[str]) -> Uncertainty:
    """Calibrated 1σ errors from ``raw`` (:mod:`eqchem.model.calibration`); ``reasons`` why it is out of domain."""
    h_mae = float(np.exp(cal.h_mae_log_scale) * max(raw.leverage_mean, 1e-30) ** cal.h_mae_log_slope)
    reasons = list(reasons)
    if raw.leverage_max > cal.leverage_limit:
        reasons.append(f"readout leverage {raw.leverage_max:.3g} beyond the validation molecules' "
                       f"{cal.leverage_limit / cal.leverage_margin:.3g} (x{cal.leverage_margin:g}): an environment "
                       f"unlike any training molecule's")
    return Uncertainty(
        h_mae_uEh=h_mae,
        homo_ev=float(cal.homo_scale * np.sqrt(raw.v_homo)),
        lumo_ev=float(cal.lumo_scale * np.sqrt(raw.v_lumo)),
        gap_ev=float(cal.gap_scale * np.sqrt(raw.v_homo + raw.v_lumo)),
        dipole_debye=float(cal.dipole_scale * h_mae * np.sqrt(raw.n_atoms)),
        in_domain=not reasons, reasons=reasons,
        leverage_mean=raw.leverage_mean, leverage_max=raw.leverage_max)


def domain_reasons(numbers: np.ndarray, positions: np.ndarray, cal: UncertaintyCalibration,
                   atoms_range: list | None, heavy_atoms_range: list | None) -> list[str]:
    """Why a structure lies outside the training data by size or geometry (empty: it does not): atom and
    heavy-atom counts outside the training ranges; an atom whose nearest neighbour is nearer or farther than
    in any training molecule (by more than ``cal.distance_tolerance``, relative)."""
    out = []
    n, heavy = len(numbers), heavy_atoms(numbers)
    if atoms_range and not atoms_range[0] <= n <= atoms_range[1]:
        out.append(f"{n} atoms, outside the training molecules' {atoms_range[0]}-{atoms_range[1]}")
    if heavy_atoms_range and not heavy_atoms_range[0] <= heavy <= heavy_atoms_range[1]:
        out.append(f"{heavy} heavy atoms, outside the training molecules' {heavy_atoms_range[0]}-{heavy_atoms_range[1]}")
    if n > 1 and cal.nearest_neighbour:
        d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        j, nearest = d.argmin(axis=1), d.min(axis=1)
        tol = cal.distance_tolerance
        for i, z in enumerate(numbers):
            pair = f"{symbol(int(z))}-{symbol(int(numbers[j[i]]))}"
            lo_hi = cal.nearest_neighbour.get(pair, cal.nearest_neighbour.get(symbol(int(z))))  # older: per element
            if lo_hi is None:
                out.append(f"atom {i + 1}: nearest neighbour {pair} at {nearest[i]:.2f} Å, never nearest neighbours "
                           "in a training molecule")
                break
            if not lo_hi[0] * (1 - tol) <= nearest[i] <= lo_hi[1] * (1 + tol):
                out.append(f"atom {i + 1} ({symbol(int(z))}): nearest neighbour {pair} at {nearest[i]:.2f} Å, training "
                           f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f} Å (a stretched or squeezed bond?)")
                break
    return out


def nearest_neighbour_ranges(molecules) -> dict[str, list[float]]:
    """{"A-B": [shortest, longest] distance, Å, of an atom of element A whose nearest neighbour is of element B}
    over (numbers, positions) pairs (per pair of elements: an S-H bond is longer than any C-H bond)."""
    out: dict[str, list[float]] = {}
    for numbers, positions in molecules:
        if len(numbers) < 2:
            continue
        d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        for z, j, r in zip(numbers, d.argmin(axis=1), d.min(axis=1)):
            s = f"{symbol(int(z))}-{symbol(int(numbers[j]))}"
            lo, hi = out.get(s, [np.inf, 0.0])
            out[s] = [float(min(lo, r)), float(max(hi, r))]
    return out


def self_check(unc: Uncertainty, fock: np.ndarray, hamiltonian: np.ndarray, overlap: np.ndarray, nocc: int,
               threshold_ev: float, seconds: float = 0.0) -> Uncertainty:
    """``unc`` with the check of one Fock build: ``fock`` = F[P(H)] (nao, nao) Eh of the predicted
    ``hamiltonian``'s aufbau density; flagged when it moves the gap by more than ``threshold_ev``."""
    from ..orbitals import solve_generalized

    e_h = solve_generalized(hamiltonian, overlap)[0]
    e_f = solve_generalized(fock, overlap)[0]
    homo = (e_f[nocc - 1] - e_h[nocc - 1]) * HARTREE_EV
    lumo = (e_f[nocc] - e_h[nocc]) * HARTREE_EV if nocc < len(e_h) else 0.0
    gap = lumo - homo
    return replace(unc, flagged=bool(abs(gap) > threshold_ev), check_gap_shift_ev=float(gap),
                   check_homo_shift_ev=float(homo), check_lumo_shift_ev=float(lumo),
                   residual_uEh=float(np.abs(fock - hamiltonian).mean() * MICRO_HARTREE),
                   seconds=unc.seconds + seconds)
