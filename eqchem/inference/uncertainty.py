"""How far to trust one prediction: calibrated 1σ error estimates, an in-domain verdict and the ``--check`` flag.

Where the numbers come from (:mod:`eqchem.model.calibration` has the formulas and the stored scalars):
the leverage of every atom's and atom pair's readout features against the training molecules' features
(:mod:`eqchem.model.posterior`), propagated to the orbital energies by first-order perturbation theory with
the orbitals' weights on the atoms, and scaled by factors fitted on validation molecules
(:mod:`eqchem.inference.calibrate`). :mod:`eqchem.inference.consistency_check` adds the optional check: one
cheap Fock build from the predicted density, F[P(H)], and the Coulomb potential of the density change it causes
tell where the SCF would take the gap (the accurate mode's Fock step builds F anyway); or a second model trained
apart (the model file's ``check_partner``) predicts the same molecule, and the two gaps' difference flags it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..io.elements import heavy_atoms, symbol
from ..model.calibration import UncertaintyCalibration


LEVERAGE_REASON = "readout leverage"
"""How the reason that a molecule's leverage lies beyond the calibration's limit begins (a calibration's own
reason: the unit calibration has none, :func:`eqchem.inference.calibrate.unit_row`)."""


@dataclass(frozen=True)
class RawStatistics:
    """Uncalibrated inputs of the estimates of one molecule (dimensionless leverages)."""

    leverage_mean: float   # mean over its atoms and atom pairs
    leverage_max: float    # largest of any atom or pair
    v_homo: float          # Σ_blocks h_ab w_a w_b of the HOMO (module docstring)
    v_lumo: float
    n_atoms: int
    size_excess: float = 0.0      # :class:`Domain`
    geometry_excess: float = 0.0


@dataclass(frozen=True)
class Uncertainty:
    """Estimated 1σ errors of one prediction and whether to trust it.

    Attributes:
        h_mae_uEh: this molecule's estimated H MAE, µEh.
        homo_ev, lumo_ev, gap_ev: estimated 1σ errors of the HOMO, LUMO and gap, eV.
        dipole_debye: estimated 1σ error of |μ|, Debye.
        in_domain: False when the molecule lies outside the training data (``reasons`` say how).
        leverage_mean, leverage_max: the raw readout leverages behind the estimates (dimensionless).
        leverage_homo, leverage_lumo: the HOMO's and LUMO's, v_i = Σ_blocks h_ab w_a,i w_b,i
            (:mod:`eqchem.model.calibration`; dimensionless): with the leverages and excesses, all a calibration
            needs to give this molecule its estimates again (:func:`eqchem.inference.calibrate.rescored`).
        size_excess, geometry_excess: how far beyond the training molecules it lies (log of the ratio to the
            training range's nearest end; 0 within): its atom or heavy-atom count; its farthest-out nearest-
            neighbour distance or bond-valence sum (:class:`Domain`); the estimates grow with them as
            fitted on validation molecules beyond the ranges.
        flagged: ``--check`` only (else None): the frontier orbitals are likely wrong: the check's score beyond
            the model's threshold; the score (eV; :meth:`~eqchem.model.calibration.UncertaintyCalibration.
            check_score`): the check's estimate of the gap error from one Fock build (the frontier orbitals'
            residuals in it and its gap shift) and the calibrated gap σ (or, in files calibrated before, a gap
            shift or the partner model's gap difference with the σ in quadrature).
        check_score_ev: the score the flag thresholds (eV); check_fock_score_ev, check_partner_score_ev: each
            source's where it ran (both where an evaluation asked for both).
        check_by: what the check used: ``"partner"`` (the model file's ``check_partner``) or ``"fock"``.
        check_partner_gap_diff_ev: the partner model's gap minus this prediction's, eV (``check_by="partner"``).
        check_gap_first_order_ev, check_homo_first_order_ev, check_lumo_first_order_ev: the Fock build F's shifts
            of the predicted orbitals' energies to first order, c_iᵀ (F − H) c_i, eV (``check_by="fock"``, or
            where both were asked for).
        check_gap_shift_ev, check_homo_shift_ev, check_lumo_shift_ev: the shifts of F's eigenvalues from the
            prediction's, eV.
        check_homo_residual_ev, check_lumo_residual_ev: the frontier orbitals' residuals in F, ‖(F − H) c_i‖
            orthogonal to c_i in the predicted orbitals' orthonormal basis, eV: how far each is from an
            eigenvector of F. The score takes these (calibrations since session 23, ``check_signal =
            "residuals"``) or one of the gap shifts (earlier files, :data:`~eqchem.calibration_metrics.FOCK_SIGNALS`).
        check_gap_error_ev: the check's estimate of the gap error, eV: the predicted gap minus the gap where one
            step of Anderson mixing between H and F would take the SCF
            (:func:`~eqchem.inference.consistency_check.anderson_gap_errors`), at the
            calibration's Coulomb scale; what the score of calibrations since session 24 takes
            (``check_signal = "response"``). check_gap_error_estimates_ev: the same at each of
            :data:`~eqchem.calibration_metrics.COULOMB_SCALES` (what a calibration chooses the scale from).
        residual_uEh: MAE of F[P(H)] − H, µEh (with the Fock build).
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
    leverage_homo: float = 0.0
    leverage_lumo: float = 0.0
    size_excess: float = 0.0
    geometry_excess: float = 0.0
    flagged: bool | None = None
    check_score_ev: float | None = None
    check_fock_score_ev: float | None = None
    check_partner_score_ev: float | None = None
    check_by: str | None = None
    check_partner_gap_diff_ev: float | None = None
    check_gap_first_order_ev: float | None = None
    check_homo_first_order_ev: float | None = None
    check_lumo_first_order_ev: float | None = None
    check_gap_shift_ev: float | None = None
    check_homo_shift_ev: float | None = None
    check_lumo_shift_ev: float | None = None
    check_homo_residual_ev: float | None = None
    check_lumo_residual_ev: float | None = None
    check_gap_error_ev: float | None = None
    check_gap_error_estimates_ev: list | None = None
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
    def grow(q: str) -> float:
        return cal.growth(q, raw.size_excess, raw.geometry_excess)

    h_mae = grow("h_mae_uEh") * float(np.exp(cal.h_mae_log_scale) * max(raw.leverage_mean, 1e-30) ** cal.h_mae_log_slope)
    reasons = list(reasons)
    if raw.leverage_max > cal.leverage_limit:
        reasons.append(f"{LEVERAGE_REASON} {raw.leverage_max:.3g} beyond the validation molecules' "
                       f"{cal.leverage_limit / cal.leverage_margin:.3g} (x{cal.leverage_margin:g}): an environment "
                       f"unlike any training molecule's")
    sigma = {"h_mae_uEh": h_mae,
             "homo_ev": float(grow("homo_ev") * cal.homo_scale * np.sqrt(raw.v_homo)),
             "lumo_ev": float(grow("lumo_ev") * cal.lumo_scale * np.sqrt(raw.v_lumo)),
             "gap_ev": float(grow("gap_ev") * cal.gap_scale * np.sqrt(raw.v_homo + raw.v_lumo)),
             "dipole_debye": float(cal.dipole_scale * h_mae * np.sqrt(raw.n_atoms))}
    if reasons:  # beyond the training molecules: no better than a typical one inside (model.calibration)
        beyond = 1.0 + max(raw.size_excess, raw.geometry_excess)
        factors = cal.floor_factors if raw.size_excess == 0 else {}
        sigma = {q: max(v, beyond * factors.get(q, 1.0) * float(cal.out_of_domain_floor.get(q, 0.0)))
                 for q, v in sigma.items()}
    return Uncertainty(
        **sigma,
        in_domain=not reasons, reasons=reasons,
        leverage_mean=raw.leverage_mean, leverage_max=raw.leverage_max,
        leverage_homo=raw.v_homo, leverage_lumo=raw.v_lumo, size_excess=raw.size_excess, geometry_excess=raw.geometry_excess)


def _nearest(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index (n,) and distance (n,) Å of each atom's nearest neighbour (n ≥ 2)."""
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.argmin(axis=1), d.min(axis=1)


def _pair_range(cal: UncertaintyCalibration, z: int, z_nearest: int) -> list | None:
    """[shortest, longest] Å of an atom of ``z`` nearest to one of ``z_nearest`` in training (files before the
    ranges were per pair: per element), None where training had no such pair."""
    pair = f"{symbol(z)}-{symbol(z_nearest)}"
    return cal.nearest_neighbour.get(pair, cal.nearest_neighbour.get(symbol(z)))


def _beyond(x: float, lo_hi: list | None, tolerance: float = 0.0) -> float:
    """How far ``x`` (> 0) lies outside [lo, hi] widened by ``tolerance``: ln(x / hi) above, ln(lo / x) below
    (≈ the relative excess where small; 0 inside or without a range)."""
    if not lo_hi or x <= 0:
        return 0.0
    return max(0.0, float(np.log(x / (lo_hi[1] * (1 + tolerance)))), float(np.log(lo_hi[0] * (1 - tolerance) / x)))


@dataclass(frozen=True)
class Domain:
    """Where a structure lies against its model's training molecules (:func:`domain_verdict`).

    Attributes:
        size_excess: how far its atom or heavy-atom count lies beyond the training range, as the log of the
            ratio to the range's nearest end (0 within; ≈ the relative excess where small): 18 heavy atoms
            against at most 9 -> ln 2 = 0.69.
        geometry_excess: the same of its farthest-out nearest-neighbour distance against the range of its pair
            of elements (a C-H bond at 1.44 Å against at most 1.11 -> 0.26) or bond-valence sum against its
            environment's (:func:`valence_range`; a carbon at 3.0 against at least 3.6 -> 0.18); pairs and
            elements that training lacks count 0 (their reasons say so).
        reasons: why it lies outside the training data (empty: it does not).
    """

    size_excess: float
    geometry_excess: float
    reasons: list[str]


def domain_verdict(numbers: np.ndarray, positions: np.ndarray, cal: UncertaintyCalibration,
                   atoms_range: list | None, heavy_atoms_range: list | None) -> Domain:
    """How far a structure (``numbers`` (n,), ``positions`` (n, 3) Å) lies beyond its model's training molecules,
    and why it is out of domain: atom and heavy-atom counts outside the training ranges; an atom whose nearest
    neighbour is nearer or farther than in any training molecule (by more than ``cal.distance_tolerance``,
    relative); else an atom whose bond-valence sum lies outside the training range of its environment
    (:func:`valence_environments`; its element's where training had few such atoms) by more than
    ``cal.valence_tolerance``: a bond stretched or squeezed though the atom's nearest neighbour is not. The
    excesses (:class:`Domain`) take no tolerance; the reasons name the first geometric one only."""
    reasons: list[str] = []
    n, heavy = len(numbers), heavy_atoms(numbers)
    if atoms_range and not atoms_range[0] <= n <= atoms_range[1]:
        reasons.append(f"{n} atoms, outside the training molecules' {atoms_range[0]}-{atoms_range[1]}")
    if heavy_atoms_range and not heavy_atoms_range[0] <= heavy <= heavy_atoms_range[1]:
        reasons.append(f"{heavy} heavy atoms, outside the training molecules' "
                       f"{heavy_atoms_range[0]}-{heavy_atoms_range[1]}")
    size = max(_beyond(n, atoms_range), _beyond(heavy, heavy_atoms_range))
    geometry, told = 0.0, False  # told: a geometric reason given (one is enough)
    if n > 1 and cal.nearest_neighbour:
        j, nearest = _nearest(numbers, positions)
        for i, (z, r) in enumerate(zip(numbers, nearest)):
            pair = f"{symbol(int(z))}-{symbol(int(numbers[j[i]]))}"
            lo_hi = _pair_range(cal, int(z), int(numbers[j[i]]))
            geometry = max(geometry, _beyond(float(r), lo_hi))
            if told:
                continue
            if lo_hi is None:
                reasons.append(f"atom {i + 1}: nearest neighbour {pair} at {r:.2f} Å, never nearest neighbours "
                               "in a training molecule")
                told = True
            elif _beyond(float(r), lo_hi, cal.distance_tolerance) > 0:
                reasons.append(f"atom {i + 1} ({symbol(int(z))}): nearest neighbour {pair} at {r:.2f} Å, training "
                               f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f} Å (a stretched or squeezed bond?)")
                told = True
    if n > 1 and cal.valence_ranges:
        for i, (v, label) in enumerate(zip(*valence_environments(numbers, positions))):
            lo_hi = valence_range(cal.valence_ranges, label)
            geometry = max(geometry, _beyond(float(v), lo_hi))
            if not told and _beyond(float(v), lo_hi, cal.valence_tolerance) > 0:
                reasons.append(f"atom {i + 1} ({label}): bond-valence sum {v:.2f}, training "
                               f"{valence_key(cal.valence_ranges, label)} {lo_hi[0]:.2f}-"
                               f"{lo_hi[1]:.2f} (a stretched, squeezed or broken bond?)")
                told = True
    return Domain(float(size), float(geometry), reasons)


BOND_ORDER_DECAY = 0.30
"""b, Å, of the bond order exp((R_a + R_b - d) / b) between atoms at distance d (Pauling's relation has 0.26,
the bond-valence model 0.37)."""
BONDED_ORDER = 0.30
"""Bond order above which two atoms count as bonded neighbours in an atom's environment label (d below
R_a + R_b + 0.36 Å: every bond of a training molecule, no 1,3 pair)."""
MIN_ENVIRONMENT_ATOMS = 3
"""Training atoms an environment needs for its own bond-valence range (else its element's range serves)."""


def _bond_orders(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """exp((R_i + R_j - d_ij) / b) (n, n), 0 on the diagonal (R: :data:`eqchem.io.elements.SINGLE_BOND_RADII`)."""
    from ..io.elements import SINGLE_BOND_RADII

    radii = np.array([SINGLE_BOND_RADII.get(int(z), 1.5) for z in numbers])
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.exp((radii[:, None] + radii[None] - d) / BOND_ORDER_DECAY)


def bond_valences(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each atom's bond-valence sum (n,): Σ_j exp((R_i + R_j - d_ij) / b), R the single-bond radii
    (:data:`eqchem.io.elements.SINGLE_BOND_RADII`), b :data:`BOND_ORDER_DECAY`: about 4 for a carbon, 1 for a
    hydrogen at their usual bond lengths; a bond stretched by 30 % takes about 0.8 off both its atoms', which
    nearest-neighbour distances miss where the atom keeps a shorter bond."""
    return _bond_orders(numbers, positions).sum(axis=1)


def valence_environments(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each atom's bond-valence sum (n,) (:func:`bond_valences`) and environment label: its element and its
    bonded neighbours (bond order above :data:`BONDED_ORDER`), each with its own number of bonded neighbours,
    sorted: "C[C4,H1,H1,H1]" for ethane's carbons, "O[C3]" for a carbonyl oxygen, "O[S4]" for a sulfonyl's and
    "O[S3]" for a sulfoxide's. A carbon's sum spans 3.6-4.7 over organic molecules, much less within one
    environment, where a bond stretched by 30 % stands out."""
    orders = _bond_orders(numbers, positions)
    bonded = [np.flatnonzero(row > BONDED_ORDER) for row in orders]
    labels = [f"{symbol(int(z))}[{','.join(sorted(f'{symbol(int(numbers[j]))}{len(bonded[j])}' for j in nb))}]"
              for z, nb in zip(numbers, bonded)]
    return orders.sum(axis=1), labels


def valence_key(ranges: dict, label: str) -> str | None:
    """The key of ``ranges`` that judges an atom of environment ``label`` ("C[C4,H1,H1,H1]"): the label itself, its
    element ("C") where training had fewer than :data:`MIN_ENVIRONMENT_ATOMS` such atoms (or the model file
    predates environments), None where training lacked the element."""
    if label in ranges:
        return label
    element = label.split("[")[0]
    return element if element in ranges else None


def valence_range(ranges: dict, label: str) -> list | None:
    """[smallest, largest] training bond-valence sum of an atom of environment ``label`` (:func:`valence_key`)."""
    key = valence_key(ranges, label)
    return ranges[key] if key else None


def valence_ranges(molecules) -> dict[str, list[float]]:
    """{"C": [smallest, largest] bond-valence sum (:func:`bond_valences`) of a carbon, "C[C4,H1,H1,H1]": the same of a
    carbon in that environment (:func:`valence_environments`; those of at least
    :data:`MIN_ENVIRONMENT_ATOMS` atoms)} over (numbers, positions) pairs."""
    out: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for numbers, positions in molecules:
        for z, v, label in zip(numbers, *valence_environments(numbers, positions)):
            _extend_range(out, symbol(int(z)), float(v))
            _extend_range(out, label, float(v))
            counts[label] = counts.get(label, 0) + 1
    return {k: v for k, v in out.items() if "[" not in k or counts[k] >= MIN_ENVIRONMENT_ATOMS}


def nearest_neighbour_ranges(molecules) -> dict[str, list[float]]:
    """{"A-B": [shortest, longest] distance, Å, of an atom of element A whose nearest neighbour is of element B}
    over (numbers, positions) pairs (per pair of elements: an S-H bond is longer than any C-H bond)."""
    out: dict[str, list[float]] = {}
    for numbers, positions in molecules:
        if len(numbers) < 2:
            continue
        for z, j, r in zip(numbers, *_nearest(numbers, positions)):
            _extend_range(out, f"{symbol(int(z))}-{symbol(int(numbers[j]))}", float(r))
    return out


def _extend_range(ranges: dict[str, list[float]], key: str, value: float) -> None:
    """Widen ``ranges[key]`` = [smallest, largest] to take ``value``."""
    lo, hi = ranges.get(key, [np.inf, -np.inf])
    ranges[key] = [float(min(lo, value)), float(max(hi, value))]
