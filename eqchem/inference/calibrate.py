"""Give a model its error estimates: the readouts' posterior from its training molecules, the scalars that
calibrate it from validation molecules only (never test ones): :func:`calibrate`, ``eqchem calibrate``.

The estimates and their formulas: :mod:`eqchem.model.calibration`; applied per prediction by
:mod:`eqchem.inference.uncertainty`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import numpy as np

from ..calibration_metrics import RESPONSE_FIELD
from ..data.reader import H5Dataset
from ..errors import InputError
from ..io.elements import heavy_atoms
from ..model.calibration import ModelUncertainty, UncertaintyCalibration
from ..model.posterior import GramAccumulator, ReadoutPosterior
from .calibrate_check import fit_check, fit_residual_check, fit_response_check
from .calibrate_orbitals import COVERAGE, excesses, fit_orbitals, inside_rows, raw_sigmas
from .evaluate import check_level_of_theory, estimate_fields, uncertainty_row
from .model_file import EqchemModel
from .pipeline import PredictionPipeline
from .uncertainty import LEVERAGE_REASON, RawStatistics, estimate, nearest_neighbour_ranges, valence_ranges

MIN_VALIDATION = 5
"""Fewest validation molecules a calibration takes."""

UNIT = UncertaintyCalibration(h_mae_log_scale=0.0, h_mae_log_slope=1.0, homo_scale=1.0, lumo_scale=1.0, gap_scale=1.0,
                              dipole_scale=1.0, leverage_limit=float("inf"), check_threshold_ev=float("inf"))
"""The calibration under which the estimates are the raw statistics: mean leverage, sqrt(v) (the fit's inputs)."""


def _found(datasets: Sequence[H5Dataset], keys) -> list[tuple[H5Dataset, str]]:
    """(file, key) of every key found in ``datasets``, in the order of ``keys``."""
    where = {}
    for ds in datasets:
        for k in ds.keys():
            where.setdefault(k, ds)
    return [(where[k], k) for k in keys if k in where]


def fit_posterior(model: EqchemModel, molecules: Sequence[tuple[np.ndarray, np.ndarray]],
                  on_molecule: Callable[[int], None] | None = None) -> ReadoutPosterior:
    """ΦᵀΦ of both readouts' features over the training ``molecules`` ((numbers, positions Å) pairs; the atom
    pairs each prediction lists), whitened (:class:`~eqchem.model.posterior.ReadoutPosterior`)."""
    import torch

    from ..model.graph import local_pairs

    net = model.net
    dtype = next(net.parameters()).dtype
    cutoff = PredictionPipeline(model).pair_cutoff
    diag, offd = GramAccumulator(net.diag_readout), GramAccumulator(net.pair_head.readout)
    with torch.no_grad():
        for i, (numbers, positions) in enumerate(molecules):
            positions = np.asarray(positions, dtype=np.float64)
            f = net.head_features(torch.as_tensor(np.asarray(numbers), dtype=torch.int64),
                                  torch.from_numpy(positions).to(dtype), None,
                                  torch.from_numpy(local_pairs(positions, cutoff)))
            diag.add(f["diag"])
            offd.add(f["offd"])
            if on_molecule:
                on_molecule(i)
    return ReadoutPosterior.from_accumulators(diag, offd, len(molecules))


def validation_rows(model: EqchemModel, datasets: Sequence[H5Dataset], keys: Sequence[str], check: bool = True,
                    on_molecule: Callable[[str], None] | None = None, check_both: bool = False) -> list[dict]:
    """Per molecule of ``keys``: its signed errors against the reference and its estimates under ``model``'s
    calibration (under :data:`UNIT`: the raw statistics), with the check where ``check`` (both of its
    sources, the Fock build and the partner model, where ``check_both``)
    (:func:`eqchem.inference.evaluate.uncertainty_row`)."""
    pipeline = PredictionPipeline(model, check=check, check_both=check_both)
    rows = []
    for ds, k in _found(datasets, keys):
        rec = ds[k]
        h, unc = pipeline.estimates([(rec.numbers, rec.positions)], charges=[rec.charge])[0]
        rows.append(uncertainty_row(rec, h, unc, ds.basis))
        if on_molecule:
            on_molecule(k)
    return rows


def _fit_h_mae(rows: Sequence[dict]) -> tuple[float, float, float, float]:
    """(log scale, log slope, size slope, geometry slope) of the H MAE estimate: least squares of
    log(actual) - log(exp(a) L^b (1 + k_s s + k_g g)) over ``rows``, k ≥ 0; the line alone where no row lies
    beyond the training ranges."""
    from scipy.optimize import least_squares

    x = np.log([r["leverage_mean"] for r in rows])
    y = np.log([r["h_mae_uEh"] for r in rows])
    es, eg = excesses(rows)
    inside = (es == 0) & (eg == 0)
    base = inside if inside.sum() >= 3 else np.ones_like(inside)
    if base.sum() >= 3 and np.ptp(x[base]) > 0:
        b0, a0 = np.polyfit(x[base], y[base], 1)
    else:
        b0, a0 = 1.0, float(np.mean(y - x))
    if inside.all():
        return float(a0), float(b0), 0.0, 0.0

    def residual(p: np.ndarray) -> np.ndarray:
        return y - p[0] - p[1] * x - np.log1p(p[2] * es + p[3] * eg)

    p = least_squares(residual, [a0, b0, 0.0, 0.0], bounds=([-np.inf, -np.inf, 0, 0], [np.inf] * 4)).x
    return float(p[0]), float(p[1]), float(p[2]) * bool(es.any()), float(p[3]) * bool(eg.any())


def fit_calibration(rows: Sequence[dict], nearest_neighbour: dict, keys: Sequence[str],
                    check_floor_ev: float = 0.1, false_alarm: float = 0.05, wrong_gap_ev: float = 0.3,
                    domain: dict | None = None, check_partner: str | None = None) -> UncertaintyCalibration:
    """The scalars of :class:`UncertaintyCalibration` from validation ``rows`` computed under :data:`UNIT`
    (rows rescored under a calibration carry their orbitals' leverages and give the same fit, unless its leverage
    limit called more of them out of domain: :func:`rescored`), each with its ``size_excess`` and
    ``geometry_excess``: the H MAE line and its growth beyond the training
    ranges (:func:`_fit_h_mae`); the orbital scales, their growth and floor factors
    (:func:`~eqchem.inference.calibrate_orbitals.fit_orbitals`); for the dipole the scale whose ±σ covers
    :data:`~eqchem.inference.calibrate_orbitals.COVERAGE` of the in-domain rows' errors; the largest
    leverage of the validation molecules within the training ranges times the margin; the H MAE's and dipole's
    floor of out-of-domain estimates (:func:`out_of_domain_floor`); each check's score and threshold, with the gap σ of
    this calibration (:mod:`eqchem.inference.calibrate_check`): the Fock build's estimate of the gap error
    (:func:`fit_response_check`; rows without it: the frontier residuals, the gap shift and the σ,
    :func:`fit_residual_check`; rows without the residuals: the gap shift and the σ, :func:`fit_check`), the gap
    difference to ``check_partner``'s prediction where the rows have it (:func:`fit_check`); about one right gap
    (error ≤ ``wrong_gap_ev``) in twenty flagged."""
    intercept, slope, h_size, h_geometry = _fit_h_mae(rows)
    orbital, orbital_slopes, orbital_floors, floor_factors = fit_orbitals(rows)
    es, eg = excesses(rows)
    lev = np.array([r["leverage_mean"] for r in rows])
    h_est = np.exp(intercept) * lev ** slope * (1 + h_size * es + h_geometry * eg)
    dip = [abs(r["dipole_error_debye"]) / (h * np.sqrt(r["n_atoms"])) for r, h, i in zip(rows, h_est, inside_rows(rows))
           if r.get("dipole_error_debye") is not None and i]
    dipole_scale = float(np.quantile(dip, COVERAGE)) if dip else float("nan")
    inside = [r["leverage_max"] for r, a, b in zip(rows, es, eg) if a == 0 and b == 0] or \
        [r["leverage_max"] for r in rows]
    margin = UncertaintyCalibration.leverage_margin
    cal = UncertaintyCalibration(
        h_mae_log_scale=intercept, h_mae_log_slope=slope,
        homo_scale=orbital["homo_ev"], lumo_scale=orbital["lumo_ev"], gap_scale=orbital["gap_ev"],
        dipole_scale=dipole_scale,
        leverage_limit=float(max(inside) * margin),
        check_threshold_ev=float("inf"), check_partner=check_partner,
        nearest_neighbour=nearest_neighbour, h_mae_size_slope=h_size, h_mae_geometry_slope=h_geometry,
        orbital_slopes=orbital_slopes,
        n_beyond=int(np.sum((es > 0) | (eg > 0))), n_molecules=len(rows), keys=sorted(keys), **(domain or {}))
    cal = replace(cal, out_of_domain_floor={**out_of_domain_floor(rows, cal), **orbital_floors},
                  floor_factors=floor_factors)
    gap_sigma = [estimate(_raw(r), cal, r.get("reasons", [])).gap_ev for r in rows]
    checks = (fit_response_check(rows, check_floor_ev, false_alarm, wrong_gap_ev)
              or fit_residual_check(rows, gap_sigma, check_floor_ev, false_alarm, wrong_gap_ev)
              or fit_check(rows, gap_sigma, "fock", check_floor_ev, false_alarm, wrong_gap_ev))
    if check_partner:
        checks.update(fit_check(rows, gap_sigma, "partner", check_floor_ev, false_alarm, wrong_gap_ev))
    return replace(cal, **checks)


def _raw(row: dict) -> RawStatistics:
    """The raw statistics of a validation row (computed under :data:`UNIT`, or carrying its orbitals' leverages:
    :func:`~eqchem.inference.calibrate_orbitals.raw_sigmas`)."""
    homo, lumo, _ = raw_sigmas(row)
    return RawStatistics(row["leverage_mean"], row["leverage_max"], homo ** 2, lumo ** 2, row["n_atoms"],
                         row.get("size_excess", 0.0), row.get("geometry_excess", 0.0))


def out_of_domain_floor(rows: Sequence[dict], cal: UncertaintyCalibration) -> dict:
    """{"h_mae_uEh", "dipole_debye": mean estimate under ``cal``} over the in-domain ``rows`` (all rows where
    none is in domain): the least an out-of-domain prediction's estimate may be (:mod:`eqchem.model.calibration`;
    the orbital energies' floors are fitted with their growth:
    :func:`~eqchem.inference.calibrate_orbitals.fit_orbitals`)."""
    inside = [r for r in rows if r.get("in_domain", True)] or list(rows)
    est = [estimate(_raw(r), cal, []) for r in inside]
    return {q: float(np.mean([getattr(u, q) for u in est])) for q in ("h_mae_uEh", "dipole_debye")}


def read_molecules(found: Sequence[tuple[H5Dataset, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(numbers, positions Å) of ``(file, key)`` pairs, read once for the posterior and the domain ranges."""
    return [(ds.numbers(k).astype(np.int64), ds.read(k, overlap=False).positions) for ds, k in found]


def training_domain(molecules: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """Nearest-neighbour ranges per element pair (:func:`~eqchem.inference.uncertainty.nearest_neighbour_ranges`)
    and the ranges of the atom / heavy-atom counts and of the bond-valence sums per element
    (:func:`~eqchem.inference.uncertainty.valence_ranges`) of the training ``molecules`` ((numbers, positions)
    pairs): the fields of :class:`UncertaintyCalibration` that say where its training domain lies."""
    atoms = [len(z) for z, _ in molecules]
    heavy = [heavy_atoms(z) for z, _ in molecules]
    ranges = {"atoms_range": [min(atoms), max(atoms)], "heavy_atoms_range": [min(heavy), max(heavy)],
              "valence_ranges": valence_ranges(molecules)}
    return nearest_neighbour_ranges(molecules), ranges


def training_molecules(model: EqchemModel, datasets: Sequence[H5Dataset],
                       structures: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
                       ) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """(keys, (numbers, positions Å) pairs) of ``model``'s training molecules: from ``datasets`` where they hold
    the key, else from ``structures`` ({key: (numbers, positions)}: the training geometries whose labels are gone;
    the posterior and the domain ranges need no labels). Keys found in neither are left out."""
    keys = sorted(model.card.train_keys)
    found = _found(datasets, keys)
    have = {k for _, k in found}
    extra = [k for k in keys if k not in have and k in (structures or {})]
    molecules = read_molecules(found) + [(np.asarray(structures[k][0], dtype=np.int64),
                                          np.asarray(structures[k][1], dtype=np.float64)) for k in extra]
    return [k for _, k in found] + extra, molecules


def refresh_domain(model: EqchemModel, datasets: Sequence[H5Dataset],
                   structures: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> EqchemModel:
    """``model`` (calibrated) with its training-domain ranges recomputed from its training molecules found in
    ``datasets`` or ``structures`` (:func:`training_molecules`; the fitted scalars untouched): for files
    calibrated before the ranges were per element pair or held bond-valence sums."""
    _, molecules = training_molecules(model, datasets, structures)
    if model.uncertainty is None or not molecules:
        raise InputError("the model carries no error estimates, or none of its training keys is in the data")
    nn, domain = training_domain(molecules)
    cal = replace(model.uncertainty.calibration, nearest_neighbour=nn, **domain)
    return model.with_uncertainty(replace(model.uncertainty, calibration=cal))


def calibrate(model: EqchemModel, datasets: Sequence[H5Dataset], validation_keys: Sequence[str],
              on_molecule: Callable[[str], None] | None = None,
              check_partner: str | None = None,
              structures: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[EqchemModel, list[dict]]:
    """``model`` with its error estimates (posterior of its training molecules found in ``datasets`` or
    ``structures``: :func:`training_molecules`; calibration on ``validation_keys``) and the validation rows
    under the new calibration. ``check_partner``:
    the shipped model (``"accurate"``, ``"fast"``) whose gap ``--check`` compares with this model's where it
    covers the molecule (both check sources run on the validation molecules, each gets its threshold).

    Refuses a validation key that the model was trained on, and fewer than :data:`MIN_VALIDATION` found;
    skips validation molecules with elements the model lacks."""
    for ds in datasets:
        check_level_of_theory(ds, model)
    train = set(model.card.train_keys)
    if not train:
        raise InputError("the model file lists no training keys: its posterior cannot be computed")
    leaked = sorted(set(validation_keys) & train)
    if leaked:
        raise InputError(f"{len(leaked)} calibration keys are training keys of the model (e.g. {leaked[0]}); "
                         "calibrate on validation molecules only")
    elements = {int(z) for z in model.elements}
    val = [k for ds, k in _found(datasets, validation_keys) if set(ds.numbers(k).tolist()) <= elements]
    if len(val) < MIN_VALIDATION:
        raise InputError(f"{len(val)} of the validation keys found in the data; at least {MIN_VALIDATION} needed")
    train_keys, molecules = training_molecules(model, datasets, structures)
    if not molecules:
        raise InputError(f"none of the model's {len(train)} training keys is in the data given; its posterior is "
                         "summed over them: pass the files it was trained on (or their structures)")
    posterior = fit_posterior(model, molecules, (lambda i: on_molecule(train_keys[i])) if on_molecule else None)
    nn, domain = training_domain(molecules)
    unit = replace(UNIT, nearest_neighbour=nn, check_partner=check_partner, **domain)
    raw_model = model.with_uncertainty(ModelUncertainty(posterior, unit))
    raw_rows = validation_rows(raw_model, datasets, val, check=True, on_molecule=on_molecule,
                               check_both=bool(check_partner))
    cal = fit_calibration(raw_rows, nn, val, domain=domain, check_partner=check_partner)
    calibrated = model.with_uncertainty(ModelUncertainty(posterior, cal))
    return calibrated, [rescored(r, cal) for r in raw_rows]


def unit_row(row: dict) -> dict:
    """A validation row rescored under a calibration (:func:`rescored`, a report's ``molecules``) as it was under
    :data:`UNIT`: without the calibration's leverage reason (UNIT's limit is infinite), in domain where no other
    reason remains (its raw statistics it carries: :func:`_raw`)."""
    reasons = [x for x in row.get("reasons", []) if not x.startswith(LEVERAGE_REASON)]
    return {**row, "reasons": reasons, "in_domain": not reasons}


def refit(model: EqchemModel, rows: Sequence[dict]) -> tuple[EqchemModel, list[dict]]:
    """``model`` (calibrated) with its scalars fitted again on ``rows``, the validation rows of a calibration
    report of it (``eqchem calibrate --report``: predictions, errors and checks as they were, no prediction made
    again), and those rows under the new calibration; its posterior, training-domain ranges and check partner
    kept. Rows from before session 25 (without their orbitals' leverages) are refused."""
    if model.uncertainty is None:
        raise InputError("the model carries no error estimates to refit: run eqchem calibrate on it first")
    if any(r.get("leverage_homo") is None for r in rows):
        raise InputError("the report's rows lack their orbitals' leverages (written before session 25): "
                         "calibrate again from the data instead")
    old = model.uncertainty.calibration
    raw = [unit_row(r) for r in rows]
    domain = {"atoms_range": old.atoms_range, "heavy_atoms_range": old.heavy_atoms_range,
              "valence_ranges": old.valence_ranges}
    cal = fit_calibration(raw, old.nearest_neighbour, [r["key"] for r in raw], domain=domain,
                          check_partner=old.check_partner)
    return model.with_uncertainty(replace(model.uncertainty, calibration=cal)), [rescored(r, cal) for r in raw]


def write_report(path, cal: UncertaintyCalibration, summary: dict, rows: Sequence[dict]) -> None:
    """``eqchem calibrate --report``: JSON [{"calibration", "report" (``summary``), "molecules" (``rows``)}]."""
    from .writers import write_json

    write_json(path, [{"calibration": cal.to_dict(), "report": summary, "molecules": list(rows)}])


def report_rows(path) -> list[dict]:
    """The validation rows (``molecules``) of a report :func:`write_report` wrote; InputError naming ``path``
    where it is not one."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text())[0]["molecules"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise InputError(f"{path}: not a report of eqchem calibrate --report ({e})") from None


def rescored(row: dict, cal: UncertaintyCalibration) -> dict:
    """A validation row computed under :data:`UNIT` with its estimates, check scores and flag under ``cal``
    (no second prediction needed: the row keeps the raw statistics and the checks' discrepancies)."""
    unc = estimate(_raw(row), cal, row["reasons"])
    scores = {source: cal.check_score(source, unc.gap_ev, row) if cal.measured_by(source, row) else None
              for source in ("fock", "partner")}
    source = row.get("check_by") or "fock"
    checked = {k: row[k] for k in row if k.startswith("check_")}  # estimate() leaves the check out
    if row.get(RESPONSE_FIELD) is not None:  # the estimate at this calibration's Coulomb scale
        checked["check_gap_error_ev"] = cal.gap_error_estimate(row)
    score = scores[source]
    return {**row, **estimate_fields(unc), **checked, "check_score_ev": score,
            "check_fock_score_ev": scores["fock"], "check_partner_score_ev": scores["partner"],
            "flagged": bool(score is not None and score > cal.check_threshold(source))}
