"""Evaluate a model on a reference data file: the field's metrics and (optionally) SCF acceleration."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.reader import H5Dataset, atom_ao_offsets
from ..errors import BasisError
from ..calibration_metrics import calibration_report
from ..metrics import aggregate, chemistry_groups, grouped_aggregate, molecule_metrics
from .model_file import EqchemModel
from .pipeline import PredictionPipeline, StageTimings

SCF_FIELDS = ("scf_cycles_pred", "scf_cycles_minao", "scf_converged", "prediction_fock_builds")
"""The per-molecule fields :func:`scf_acceleration` adds to a row of :func:`evaluate`."""


def check_level_of_theory(ds: H5Dataset, model: EqchemModel) -> None:
    """Refuse data computed in another basis (or with another functional) than the model's."""
    if ds.basis.lower() != model.basis.lower():
        raise BasisError(f"{ds.path} uses basis '{ds.basis}' but the model predicts '{model.basis}'")
    if model.xc and ds.xc and ds.xc.lower() != model.xc.lower():
        raise BasisError(f"{ds.path} was computed with xc '{ds.xc}' but the model was trained on '{model.xc}'")


def evaluate(ds: H5Dataset, model: EqchemModel, scf: bool = False, batch_size: int = 16, limit: int | None = None,
             on_molecule: Callable[[str], None] | None = None, fock_step: bool = True,
             timings: StageTimings | None = None, check: bool = False, check_both: bool = False) -> dict:
    """Per-molecule metrics and their means; with ``scf`` the SCF cycle ratio vs PySCF's minao guess.

    Records with a reference dipole also get ``dipole_mae_debye`` (error of |μ|, Debye).

    ``fock_step=False`` evaluates the network's matrix without the model's damped Fock step. Besides
    ``scf_ratio`` (SCF cycles from the predicted density / from minao), ``scf_ratio_with_builds`` counts
    the cheap Fock builds the prediction itself made (guess, Fock step) as cycles: the whole cost.

    The matrices come from :class:`~eqchem.inference.pipeline.PredictionPipeline`; ``timings``
    (:class:`~eqchem.inference.pipeline.StageTimings`) gets the wall time (s) of its stages added.

    Returns ``{"summary": {...}, "groups": {group: {...}}, "molecules": [{key, metrics..., groups}], "parity":
    {"ref": [...], "pred": [...]}}`` (groups: :func:`eqchem.metrics.chemistry_groups`, chemistry and size;
    parity holds a sample of H elements for a plot). A model with error estimates also gets ``"calibration"``
    (:func:`eqchem.calibration_metrics.calibration_report`: coverage, reliability, rank correlation, and with
    ``check`` the AUC of the check; ``check_both``: of each of its sources, the Fock build and the partner
    model, where the model file names one) and ``"uncertainty"``, the per-molecule estimates and signed errors
    it was computed from.
    """
    check_level_of_theory(ds, model)
    keys = ds.keys()[:limit] if limit else ds.keys()
    shells = ds.basis_shells()
    rows, ref_sample, pred_sample = [], [], []
    rng = np.random.default_rng(0)
    pipeline = PredictionPipeline(model, batch_size=batch_size, fock_step=fock_step, timings=timings, check=check,
                                  check_both=check_both)
    uncertainty_rows = []
    for start in range(0, len(keys), batch_size):
        recs = [ds[k] for k in keys[start:start + batch_size]]
        preds = pipeline.estimates([(r.numbers, r.positions) for r in recs], charges=[r.charge for r in recs])
        for r, (h, unc) in zip(recs, preds):
            if unc is not None and model.target != "density_matrix":
                uncertainty_rows.append(uncertainty_row(r, h, unc, ds.basis))
            if model.target == "density_matrix":
                ref = r.ensure_orbitals().density_matrix
                m = {"p_mae_uEh": float(np.abs(h - ref).mean() * 1e6)}
            else:
                ref = r.hamiltonian
                m = molecule_metrics(h, ref, r.overlap, atom_ao_offsets(r.numbers, shells), r.nocc)
                if r.dipole is not None:
                    m["dipole_mae_debye"] = dipole_error(r, h, ds.basis)
                if scf:
                    m.update(scf_acceleration(r, h, ds, model.fock_builds(fock_step)))
            rows.append({"key": r.key, "n_atoms": int(len(r.numbers)), **m,
                         "groups": chemistry_groups(r.key, r.numbers)})
            idx = rng.choice(ref.size, size=min(2000, ref.size), replace=False)
            ref_sample.extend(ref.reshape(-1)[idx].tolist())
            pred_sample.extend(h.reshape(-1)[idx].tolist())
            if on_molecule:
                on_molecule(r.key)
    summary = aggregate([{k: v for k, v in row.items() if k not in ("key", "groups")} for row in rows])
    if scf and rows and "scf_cycles_pred" in rows[0]:
        summary.update(scf_ratios(rows))
    summary["n_molecules"] = len(rows)
    out = {"summary": summary, "groups": grouped_aggregate(rows), "molecules": rows,
           "parity": {"ref": ref_sample, "pred": pred_sample}}
    if uncertainty_rows:
        out["calibration"] = calibration_report(uncertainty_rows)
        out["uncertainty"] = uncertainty_rows
    return out


def uncertainty_row(record, h_pred: np.ndarray, unc, basis: str) -> dict:
    """One molecule's estimates beside its signed errors (keys of :mod:`eqchem.calibration_metrics`)."""
    from .. import orbitals
    from ..units import HARTREE_EV, MICRO_HARTREE

    e_p = orbitals.solve_generalized(h_pred, record.overlap)[0]
    e_r = orbitals.solve_generalized(record.hamiltonian, record.overlap)[0]
    (hp, lp, gp), (hr, lr, gr) = orbitals.frontier(e_p, record.nocc), orbitals.frontier(e_r, record.nocc)
    return {"key": record.key, "n_atoms": int(len(record.numbers)),
            "h_mae_uEh": float(np.abs(h_pred - record.hamiltonian).mean() * MICRO_HARTREE),
            "homo_error_ev": float((hp - hr) * HARTREE_EV), "lumo_error_ev": float((lp - lr) * HARTREE_EV),
            "gap_error_ev": float((gp - gr) * HARTREE_EV),
            "dipole_error_debye": dipole_error(record, h_pred, basis) if record.dipole is not None else None,
            **estimate_fields(unc)}


_ROW_NAMES = {**{q: f"uncertainty_{q}" for q in ("h_mae_uEh", "homo_ev", "lumo_ev", "gap_ev", "dipole_debye")},
              "residual_uEh": "check_residual_uEh"}
"""Fields of :class:`~eqchem.inference.uncertainty.Uncertainty` named otherwise in an evaluation row."""


def estimate_fields(unc) -> dict:
    """An :class:`~eqchem.inference.uncertainty.Uncertainty` as the estimate fields of an evaluation row: every
    field, the 1σ estimates prefixed ``uncertainty_`` and the check's residual MAE ``check_residual_uEh``."""
    return {_ROW_NAMES.get(k, k): v for k, v in unc.summary().items()}


def dipole_error(record, h_pred: np.ndarray, basis: str) -> float:
    """Absolute error (Debye) of the dipole magnitude |μ| (QM9's ``mu``) of the predicted density (aufbau
    occupations of H C = S C ε with the reference S) against the record's reference dipole."""
    from .. import orbitals
    from ..dft.runner import build_mole, dipole_from_density
    from ..io.structure import Structure

    mol = build_mole(Structure(record.numbers, record.positions, charge=record.charge), basis, spin=0)
    _, c = orbitals.solve_generalized(h_pred, record.overlap)
    mu = dipole_from_density(mol, orbitals.density_matrix(c, record.nocc))
    return float(abs(np.linalg.norm(mu) - np.linalg.norm(record.dipole)))


def scf_ratios(rows: list[dict]) -> dict:
    """Mean SCF cycles from the predictions / from minao, without and with the prediction's Fock builds."""
    minao = np.mean([r["scf_cycles_minao"] for r in rows])
    pred = np.mean([r["scf_cycles_pred"] for r in rows])
    builds = np.mean([r.get("prediction_fock_builds", 0) for r in rows])
    return {"scf_ratio": float(pred / minao), "scf_ratio_with_builds": float((pred + builds) / minao)}


def scf_acceleration(record, h_pred: np.ndarray, ds: H5Dataset, prediction_fock_builds: int = 0) -> dict:
    """SCF cycles from the predicted density vs from PySCF's minao guess (the data's settings).

    ``prediction_fock_builds``: the cheap Fock builds the prediction made, recorded beside the cycles.
    """
    from .. import keys, orbitals
    from ..dft.runner import DFTSettings, build_mole, make_scf, run_scf
    from ..io.structure import Structure

    settings = DFTSettings(xc=ds.xc, basis=ds.basis, grid_level=int(ds.attrs.get(keys.GRIDS_LEVEL, 3)),
                           conv_tol=float(ds.attrs.get(keys.CONV_TOL, 1e-10)))
    mol = build_mole(Structure(record.numbers, record.positions, charge=record.charge), ds.basis, spin=0)
    _, c = orbitals.solve_generalized(h_pred, record.overlap)
    dm0 = orbitals.density_matrix(c, record.nocc)
    mf = make_scf(mol, settings)
    n_pred = run_scf(mf, dm0=dm0)
    n_minao = int(record.attrs.get(keys.SCF_CYCLES, 0)) or run_scf(make_scf(mol, settings))
    return dict(zip(SCF_FIELDS, (n_pred, n_minao, bool(mf.converged), prediction_fock_builds)))
