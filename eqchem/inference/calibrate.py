"""Give a model its error estimates: the readouts' posterior from its training molecules, the scalars that
calibrate it from validation molecules only (never test ones): :func:`calibrate`, ``eqchem calibrate``.

The estimates and their formulas: :mod:`eqchem.model.calibration`; applied per prediction by
:mod:`eqchem.inference.uncertainty`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..data.reader import H5Dataset
from ..errors import InputError
from ..io.elements import heavy_atoms
from ..model.calibration import ModelUncertainty, UncertaintyCalibration
from ..model.posterior import GramAccumulator, ReadoutPosterior
from .evaluate import check_level_of_theory, estimate_fields, uncertainty_row
from .model_file import EqchemModel
from .pipeline import PredictionPipeline
from .uncertainty import RawStatistics, estimate, nearest_neighbour_ranges

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
                    on_molecule: Callable[[str], None] | None = None) -> list[dict]:
    """Per molecule of ``keys``: its signed errors against the reference and its estimates under ``model``'s
    calibration (under :data:`UNIT`: the raw statistics), with the check where ``check``
    (:func:`eqchem.inference.evaluate.uncertainty_row`)."""
    pipeline = PredictionPipeline(model, check=check)
    rows = []
    for ds, k in _found(datasets, keys):
        rec = ds[k]
        h, unc = pipeline.estimates([(rec.numbers, rec.positions)], charges=[rec.charge])[0]
        rows.append(uncertainty_row(rec, h, unc, ds.basis))
        if on_molecule:
            on_molecule(k)
    return rows


def fit_calibration(rows: Sequence[dict], nearest_neighbour: dict, keys: Sequence[str],
                    check_floor_ev: float = 0.1, false_alarm: float = 0.05, wrong_gap_ev: float = 0.3,
                    sizes: dict | None = None) -> UncertaintyCalibration:
    """The scalars of :class:`UncertaintyCalibration` from validation ``rows`` computed under :data:`UNIT`:
    a log-log least-squares line for the H MAE; for the orbital energies and the dipole the scale that makes
    the root mean square of error/σ one; the largest validation leverage times the margin; the check threshold
    at the (1 - ``false_alarm``) quantile of the check scores of the validation molecules whose gap is right
    (error ≤ ``wrong_gap_ev``), at least ``check_floor_ev``: about one right gap in twenty flagged."""
    lev = np.array([r["leverage_mean"] for r in rows])
    mae = np.array([r["h_mae_uEh"] for r in rows])
    x, y = np.log(lev), np.log(mae)
    if len(rows) >= 3 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
    else:
        slope, intercept = 1.0, float(np.mean(y - x))

    def scale(err_key: str, raw_key: str) -> float:
        err = np.array([r[err_key] for r in rows], dtype=float)
        raw = np.array([r[raw_key] for r in rows], dtype=float)
        return float(np.sqrt(np.mean((err / np.maximum(raw, 1e-30)) ** 2)))

    h_est = np.exp(intercept) * lev ** slope
    dip = [(r["dipole_error_debye"], h * np.sqrt(r["n_atoms"])) for r, h in zip(rows, h_est)
           if r.get("dipole_error_debye") is not None]
    dipole_scale = float(np.sqrt(np.mean([(e / s) ** 2 for e, s in dip]))) if dip else float("nan")
    shifts = [r["check_score_ev"] for r in rows
              if r.get("check_score_ev") is not None and abs(r["gap_error_ev"]) <= wrong_gap_ev]
    margin = UncertaintyCalibration.leverage_margin
    return UncertaintyCalibration(
        h_mae_log_scale=float(intercept), h_mae_log_slope=float(slope),
        homo_scale=scale("homo_error_ev", "uncertainty_homo_ev"),
        lumo_scale=scale("lumo_error_ev", "uncertainty_lumo_ev"),
        gap_scale=scale("gap_error_ev", "uncertainty_gap_ev"),
        dipole_scale=dipole_scale,
        leverage_limit=float(max(r["leverage_max"] for r in rows) * margin),
        check_threshold_ev=float(max(check_floor_ev, np.quantile(shifts, 1 - false_alarm) if shifts else 0.0)),
        nearest_neighbour=nearest_neighbour, n_molecules=len(rows), keys=sorted(keys), **(sizes or {}))


def read_molecules(found: Sequence[tuple[H5Dataset, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(numbers, positions Å) of ``(file, key)`` pairs, read once for the posterior and the domain ranges."""
    return [(ds.numbers(k).astype(np.int64), ds.read(k, overlap=False).positions) for ds, k in found]


def training_domain(molecules: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """Nearest-neighbour ranges per element pair (:func:`~eqchem.inference.uncertainty.nearest_neighbour_ranges`)
    and the atom / heavy-atom count ranges of the training ``molecules`` ((numbers, positions) pairs)."""
    atoms = [len(z) for z, _ in molecules]
    heavy = [heavy_atoms(z) for z, _ in molecules]
    sizes = {"atoms_range": [min(atoms), max(atoms)], "heavy_atoms_range": [min(heavy), max(heavy)]}
    return nearest_neighbour_ranges(molecules), sizes


def refresh_domain(model: EqchemModel, datasets: Sequence[H5Dataset]) -> EqchemModel:
    """``model`` (calibrated) with its training-domain ranges recomputed from its training molecules found in
    ``datasets`` (the fitted scalars untouched): for files calibrated before the ranges were per element pair."""
    from dataclasses import replace

    found = _found(datasets, sorted(model.card.train_keys))
    if model.uncertainty is None or not found:
        raise InputError("the model carries no error estimates, or none of its training keys is in the data")
    nn, sizes = training_domain(read_molecules(found))
    cal = replace(model.uncertainty.calibration, nearest_neighbour=nn, **sizes)
    return model.with_uncertainty(replace(model.uncertainty, calibration=cal))


def calibrate(model: EqchemModel, datasets: Sequence[H5Dataset], validation_keys: Sequence[str],
              on_molecule: Callable[[str], None] | None = None) -> tuple[EqchemModel, list[dict]]:
    """``model`` with its error estimates (posterior of its training molecules found in ``datasets``,
    calibration on ``validation_keys``) and the validation rows under the new calibration.

    Refuses a validation key that the model was trained on, and fewer than :data:`MIN_VALIDATION` found."""
    for ds in datasets:
        check_level_of_theory(ds, model)
    train = set(model.card.train_keys)
    if not train:
        raise InputError("the model file lists no training keys: its posterior cannot be computed")
    leaked = sorted(set(validation_keys) & train)
    if leaked:
        raise InputError(f"{len(leaked)} calibration keys are training keys of the model (e.g. {leaked[0]}); "
                         "calibrate on validation molecules only")
    val = [k for _, k in _found(datasets, validation_keys)]
    if len(val) < MIN_VALIDATION:
        raise InputError(f"{len(val)} of the validation keys found in the data; at least {MIN_VALIDATION} needed")
    found_train = _found(datasets, sorted(train))
    if not found_train:
        raise InputError(f"none of the model's {len(train)} training keys is in the data given; its posterior is "
                         "summed over them: pass the files it was trained on")
    molecules = read_molecules(found_train)
    posterior = fit_posterior(model, molecules, (lambda i: on_molecule(found_train[i][1])) if on_molecule else None)
    nn, sizes = training_domain(molecules)
    raw_model = model.with_uncertainty(ModelUncertainty(posterior, UNIT))
    raw_rows = validation_rows(raw_model, datasets, val, check=True, on_molecule=on_molecule)
    cal = fit_calibration(raw_rows, nn, val, sizes=sizes)
    calibrated = model.with_uncertainty(ModelUncertainty(posterior, cal))
    rows = []
    for r in raw_rows:  # the same molecules under the fitted scalars (no second prediction needed)
        raw = RawStatistics(r["leverage_mean"], r["leverage_max"], r["uncertainty_homo_ev"] ** 2,
                            r["uncertainty_lumo_ev"] ** 2, r["n_atoms"])
        rows.append({**r, **estimate_fields(estimate(raw, cal, r["reasons"])), "check_score_ev": r["check_score_ev"],
                     "flagged": bool(r["check_score_ev"] is not None and r["check_score_ev"] > cal.check_threshold_ev)})
    return calibrated, rows
